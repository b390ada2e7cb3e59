#!/bin/sh
# install-deps.sh - install the Debian packages a make target needs.
#
# Usage: scripts/install-deps.sh build|test|run|deb|bench|bench-core
#
#   build  a C compiler and make (the Kamailio source tree and the rest of
#          the module's build needs come from scripts/kamailio-src.sh)
#   run    build + kamailio (the release's own: 5.6 on Debian 12, 6.0 on
#          Debian 13) + sip-tester (sipp)
#          (kamailio carries registrar, usrloc, path and nathelper, which the
#          e2e cfgs load, on both releases)
#   test   run + kamailio-tls-modules (the e2e TLS terminals' proxy),
#          openssl (the e2e test CA) and python3 (support/tls_terminal.py:
#          Debian's sipp has no TLS), libcmocka-dev, valgrind, gdb, clang
#          and the compiler-rt
#          package of that clang (its ASan/UBSan runtimes: a recommendation
#          of clang, so --no-install-recommends would leave it out; its
#          name carries the release's LLVM version, found by asking apt),
#          kamailio-lua-modules and kamailio-python3-modules (app_lua and
#          app_python3, for the KEMI end-to-end cases; same names on 12, 13)
#   deb    build + kamailio (the package is built for the installed one),
#          dpkg-dev (dpkg-shlibdeps), binutils (strip) and lintian
#   bench  python3 (bench/bench.py) and gnuplot-nox (its PNG chart);
#          bench-core: python3 only
#
# Installs only what is missing (dpkg-query), runs apt-get update first when
# something must be installed, and is silent when everything is there.

set -eu

case "${1:-}" in
bench) PKGS="python3 gnuplot-nox redis-server" ;;
bench-core) PKGS="python3" ;;
build) PKGS="gcc make libc6-dev pkg-config" ;;
run) PKGS="gcc make libc6-dev pkg-config kamailio sip-tester" ;;
deb) PKGS="gcc make libc6-dev pkg-config kamailio dpkg-dev binutils lintian" ;;
test) PKGS="gcc make libc6-dev pkg-config kamailio sip-tester libcmocka-dev valgrind gdb clang kamailio-lua-modules kamailio-python3-modules kamailio-tls-modules openssl python3 redis-server redis-sentinel" ;;
*)
	echo "usage: $0 build|test|run|deb|bench|bench-core" >&2
	exit 2
	;;
esac

APT_UPDATED=
apt_update() {
	[ -z "$APT_UPDATED" ] || return 0
	apt-get -q update >/dev/null
	APT_UPDATED=1
}

# libclang-rt-N-dev for the release's default clang (clang depends on
# clang-N): Debian 12 has N=14, Debian 13 N=19; nothing is hard-coded
clang_rt_pkg() {
	v=$(apt-cache depends clang 2>/dev/null |
		sed -n 's/^ *Depends: clang-\([0-9][0-9]*\)$/\1/p' | head -n 1)
	if [ -z "$v" ] && [ "$(id -u)" -eq 0 ]; then
		apt_update
		v=$(apt-cache depends clang 2>/dev/null |
			sed -n 's/^ *Depends: clang-\([0-9][0-9]*\)$/\1/p' | head -n 1)
	fi
	[ -n "$v" ] && echo "libclang-rt-$v-dev"
}
if [ "$1" = test ]; then
	rt=$(clang_rt_pkg) || true
	[ -n "$rt" ] || {
		echo "install-deps: cannot tell which libclang-rt package goes with clang" >&2
		exit 1
	}
	PKGS="$PKGS $rt"
fi

missing=
for p in $PKGS; do
	st=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
	case "$st" in
	ii*) ;;
	*) missing="$missing $p" ;;
	esac
done
[ -n "$missing" ] || exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages:$missing (run as root, or install them)" >&2
	exit 1
fi
echo "install-deps: apt-get install$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt_update
# shellcheck disable=SC2086
apt-get -q install -y --no-install-recommends $missing >/dev/null
