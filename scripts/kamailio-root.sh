#!/bin/bash
# kamailio-root.sh - a Debian root of another release with its own kamailio
# package, to build and test push_redirect against it (`make test-versions`).
#
# Usage: scripts/kamailio-root.sh SUITE COMMAND
#
# Makes (once) .cache/roots/SUITE: debootstrap's minbase of SUITE from the
# host's Debian mirror, with kamailio, sip-tester and what building the
# module and the Rust crate needs.  A stamp (.cache/roots/SUITE.stamp) holds
# what it was made from; the root is made again when the suite or mirror
# changes, the packages installed when only their list changes, and
# upgraded when the stamp is a week old.
#
# Then runs COMMAND (bash -c) as root in it, in a mount namespace of its
# own: /proc, /sys (read-only), /dev, /dev/pts, a fresh /dev/shm, the Rust
# toolchain (rustup's home and cargo's bin folder, read-only) and this
# project tree at the same path (read-write) are mounted, COMMAND runs in
# the project tree with CARGO_HOME in the root (crates are downloaded once)
# and CARGO_TARGET_DIR=.cache/target-SUITE, and everything is unmounted
# when it ends, however it ends (trap; the namespace goes away with it
# even after a SIGKILL).  Exits with COMMAND's status.

set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SUITE=${1:-}
CMD=${2:-}
[ -n "$SUITE" ] && [ -n "$CMD" ] || {
	echo "usage: $0 SUITE COMMAND" >&2
	exit 2
}
DIR="$ROOT/.cache/roots/$SUITE"
STAMP="$DIR.stamp"
LOG="$DIR.log"
# packages of the root: kamailio (with app_lua, app_python3 for the KEMI
# cases; the tls module, openssl and python3 for the e2e TLS terminals) and
# sipp for the tests, a C toolchain and what scripts/kamailio-src.sh needs
# for the module, curl and certificates for cargo, gdb for the crash loop's
# backtraces, redis-server and redis-sentinel for the shared store's cases
# (tests/e2e/shared_store.rs)
PKGS="kamailio kamailio-lua-modules kamailio-python3-modules kamailio-tls-modules
sip-tester openssl python3 gcc make libc6-dev binutils bison flex pkg-config
dpkg-dev xz-utils ca-certificates curl procps iproute2 gdb redis-server
redis-sentinel"

say() { printf 'kamailio-root: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	[ ! -s "$LOG" ] || tail -n 30 "$LOG" >&2
	exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot, mount)"

# the host's mirror of archive $1 (debian, debian-security)
host_mirror() {
	{
		cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
			sed -n 's/^URIs:[[:space:]]*//p' | tr ' ' '\n'
		sed -n 's/^[[:space:]]*deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]*\).*/\2/p' \
			/etc/apt/sources.list 2>/dev/null || true
	} | sed 's#/*$##' | awk -v a="/$1" '
		!f && substr($0, length($0) - length(a) + 1) == a { print; f = 1 }
		END { if (!f) print "http://deb.debian.org" a }'
}
MIRROR=$(host_mirror debian)
SECURITY=$(host_mirror debian-security)

inputs() {
	echo "suite $SUITE from $MIRROR and $SECURITY"
	echo "packages $PKGS" | tr '\n' ' '
	echo
}

mounts_under() {
	awk -v p="$1" '$5 == p || index($5, p "/") == 1 { print $5 }' \
		/proc/self/mountinfo
}

# --- the root -----------------------------------------------------------------
in_root() { # a command in the root, with /proc and /dev (for apt, dpkg)
	unshare --mount --propagation private bash -c '
		set -e
		mount --bind /proc "$1/proc"
		mount --bind /dev "$1/dev"
		mount --bind /dev/pts "$1/dev/pts"
		shift
		exec chroot "$@"' _ "$DIR" "$DIR" /usr/bin/env -i \
		PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive "$@"
}

make_root() {
	[ -z "$(mounts_under "$DIR")" ] || die "something is mounted under $DIR"
	command -v debootstrap >/dev/null || {
		say "apt-get install debootstrap"
		apt-get -q update >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get -q install -y \
			--no-install-recommends debootstrap >/dev/null ||
			die "cannot install debootstrap"
	}
	rm -rf --one-file-system "$DIR" "$STAMP"
	mkdir -p "$(dirname "$DIR")"
	: >"$LOG"
	say "debootstrap $SUITE into $DIR (log $LOG)"
	nice -n 10 debootstrap --variant=minbase "$SUITE" "$DIR" "$MIRROR" \
		>>"$LOG" 2>&1 || die "debootstrap $SUITE failed"
	rm -f "$DIR/etc/apt/sources.list"
	{
		printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n' \
			"$MIRROR" "$SUITE" "$SUITE"
		printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n'
		printf 'Types: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' \
			"$SECURITY" "$SUITE"
		printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
	} >"$DIR/etc/apt/sources.list.d/debian.sources"
	cp -L /etc/resolv.conf "$DIR/etc/resolv.conf"
	say "apt-get install kamailio sip-tester and build tools in $SUITE"
	# shellcheck disable=SC2086
	in_root apt-get -q update >>"$LOG" 2>&1 || die "apt-get update in $SUITE failed"
	# shellcheck disable=SC2086
	in_root apt-get -q install -y --no-install-recommends $PKGS >>"$LOG" 2>&1 ||
		die "apt-get install in $SUITE failed"
	in_root apt-get clean >>"$LOG" 2>&1 || true
	inputs >"$STAMP"
}

if [ ! -f "$STAMP" ] || [ "$(head -n 1 "$STAMP")" != "$(inputs | head -n 1)" ] ||
	[ ! -x "$DIR/usr/sbin/kamailio" ]; then
	start=$(date +%s)
	make_root
	say "root $SUITE made in $(($(date +%s) - start)) s: $(in_root dpkg-query -W -f='kamailio ${Version}' kamailio)"
elif [ "$(cat "$STAMP")" != "$(inputs)" ]; then
	# the same suite, another package list: install it, no new root
	say "packages changed: apt-get install them in $SUITE"
	cp -L /etc/resolv.conf "$DIR/etc/resolv.conf"
	# shellcheck disable=SC2086
	{ in_root apt-get -q update &&
		in_root apt-get -q install -y --no-install-recommends $PKGS &&
		in_root apt-get clean; } >>"$LOG" 2>&1 ||
		die "apt-get install in $SUITE failed"
	inputs >"$STAMP"
elif [ -n "$(find "$STAMP" -mtime +7)" ]; then
	say "root $SUITE is a week old: apt-get upgrade"
	cp -L /etc/resolv.conf "$DIR/etc/resolv.conf"
	{ in_root apt-get -q update && in_root apt-get -q upgrade -y && in_root apt-get clean; } \
		>>"$LOG" 2>&1 || die "apt-get upgrade in $SUITE failed"
	touch "$STAMP"
fi

# --- run COMMAND in it ----------------------------------------------------------
RUSTUP_HOME=${RUSTUP_HOME:-$(rustup show home 2>/dev/null || echo "$HOME/.rustup")}
CARGO_BIN=$(dirname "$(command -v cargo)")
[ -d "$RUSTUP_HOME" ] || die "no rustup home ($RUSTUP_HOME): the Rust toolchain"
cp -L /etc/resolv.conf "$DIR/etc/resolv.conf"
# bookworm's minbase has no /etc/hosts: "localhost" must resolve (the tests'
# allowed_domains)
grep -qs '^127\.0\.0\.1[[:space:]].*localhost' "$DIR/etc/hosts" ||
	printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
		>>"$DIR/etc/hosts"
# where the host reaches registries through a TLS proxy whose CA it trusts
# (/usr/local/share/ca-certificates), the root trusts it too
cas=
for f in /usr/local/share/ca-certificates/*.crt; do
	[ -f "$f" ] || continue
	cmp -s "$f" "$DIR$f" || {
		mkdir -p "$DIR/usr/local/share/ca-certificates"
		cp "$f" "$DIR$f"
		cas=1
	}
done
if [ -n "$cas" ]; then
	in_root update-ca-certificates >>"$LOG" 2>&1 ||
		die "update-ca-certificates in $SUITE failed"
fi
PASS_ENV=
for v in SSL_CERT_FILE SSL_CERT_DIR CURL_CA_BUNDLE http_proxy https_proxy \
	no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY RUSTUP_AUTO_INSTALL \
	CRASH_LOOP_RUNS CRASH_LOOP_PAR CRASH_LOOP_STOP CRASH_LOOP_STOCK_MODULE E2E_KEEP; do
	[ -z "${!v:-}" ] || PASS_ENV="$PASS_ENV $v=${!v}"
done

# a .cache that is a link out of the tree (a git worktree sharing another
# checkout's) is mounted at its own path too, so it resolves in the root
CACHE_REAL=
if [ -L "$ROOT/.cache" ]; then
	CACHE_REAL=$(readlink -f "$ROOT/.cache")
	case "$CACHE_REAL" in "$ROOT"/*) CACHE_REAL= ;; esac
fi

export DIR PASS_ENV ROOT RUSTUP_HOME CARGO_BIN CMD SUITE CACHE_REAL
# the mounts live in a namespace of this run only; the trap unmounts them
# (deepest first) and is there for a clean exit, the namespace for the rest
unshare --mount --propagation private bash -c '
	set -eu
	MOUNTED=
	cleanup() {
		st=$?
		for m in $MOUNTED; do umount "$m" 2>/dev/null || umount -l "$m"; done
		exit $st
	}
	trap cleanup EXIT
	trap "exit 130" INT
	trap "exit 143" TERM
	bindm() { # SRC DST [ro]
		mkdir -p "$2"
		mount --bind "$1" "$2"
		MOUNTED="$2 $MOUNTED"
		if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
	}
	bindm /proc "$DIR/proc"
	bindm /sys "$DIR/sys" ro
	bindm /dev "$DIR/dev"
	bindm /dev/pts "$DIR/dev/pts"
	mkdir -p "$DIR/dev/shm"
	mount -t tmpfs -o mode=1777,nosuid,nodev shm "$DIR/dev/shm"
	MOUNTED="$DIR/dev/shm $MOUNTED"
	bindm "$RUSTUP_HOME" "$DIR$RUSTUP_HOME" ro
	bindm "$CARGO_BIN" "$DIR$CARGO_BIN" ro
	bindm "$ROOT" "$DIR$ROOT"
	if [ -n "$CACHE_REAL" ]; then bindm "$CACHE_REAL" "$DIR$CACHE_REAL"; fi
	chmod 1777 "$DIR/tmp"
	mkdir -p "$DIR/var/cache/cargo-home"
	chroot "$DIR" /usr/bin/env -i \
		PATH="$CARGO_BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
		HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" CI="${CI:-}" \
		RUSTUP_HOME="$RUSTUP_HOME" CARGO_HOME=/var/cache/cargo-home \
		CARGO_TARGET_DIR="$ROOT/.cache/target-$SUITE" \
		CARGO_TERM_COLOR=never DEBIAN_FRONTEND=noninteractive $PASS_ENV \
		bash -c "cd \"\$1\" && $CMD" _ "$ROOT"
'
