#!/bin/sh
# install-deps.sh - install the Debian packages a make target needs.
#
# Usage: scripts/install-deps.sh build|test|run|bench|bench-core
#
#   build  a C compiler and make (the Kamailio source tree and the rest of
#          the module's build needs come from scripts/kamailio-src.sh)
#   run    build + kamailio (5.6 from Debian 12) + sip-tester (sipp)
#   test   run + libcmocka-dev, valgrind, clang (C harness, sanitizers)
#   bench  python3 (bench/bench.py) and gnuplot-nox (its PNG chart);
#          bench-core: python3 only
#
# Installs only what is missing (dpkg-query), runs apt-get update first when
# something must be installed, and is silent when everything is there.

set -eu

case "${1:-}" in
bench) PKGS="python3 gnuplot-nox" ;;
bench-core) PKGS="python3" ;;
build) PKGS="gcc make libc6-dev pkg-config" ;;
run) PKGS="gcc make libc6-dev pkg-config kamailio sip-tester" ;;
test) PKGS="gcc make libc6-dev pkg-config kamailio sip-tester libcmocka-dev valgrind clang" ;;
*)
	echo "usage: $0 build|test|run|bench|bench-core" >&2
	exit 2
	;;
esac

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
apt-get -q update >/dev/null
# shellcheck disable=SC2086
apt-get -q install -y --no-install-recommends $missing >/dev/null
