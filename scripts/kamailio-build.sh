#!/bin/sh
# kamailio-build.sh - build a Kamailio of scripts/kamailio-versions from its
# Debian source package, for the end-to-end tests of another version than
# the installed one (`make test-versions`).
#
# Usage: scripts/kamailio-build.sh VERSION      (a series: 6.1)
#
# Fetches the source with scripts/kamailio-src.sh VERSION, builds the core,
# kamcmd and only the modules our cfgs load (every `loadmodule "x.so"` of
# the Kamailio cfgs in tests/e2e/cfg/ and cfg-examples/, plus $EXTRA_MODULES that
# upcoming cases need, each kept only if it builds with this machine's
# libraries) and installs them under .cache/kamailio-<x.y.z>/ (sbin/kamailio,
# sbin/kamcmd, lib/kamailio/modules/, which is the binary's default module
# path).  A stamp there records what it was built from: a second run with
# the same inputs does nothing.  The configured tree is the one to build
# push_redirect.so against (KAMAILIO_SRC).
#
# Prints "<prefix> <COREPATH>" as the last line on stdout; progress on
# stderr, compiler output in <prefix>.log.

set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WANT=${1:-}
[ -n "$WANT" ] || {
	echo "usage: $0 VERSION (a series of scripts/kamailio-versions)" >&2
	exit 2
}
# modules not loaded by today's cfgs that the next cases will load (the
# ones the stock etc/kamailio.cfg loads are added below, from the tree)
EXTRA_MODULES=${EXTRA_MODULES:-tls nathelper path htable uac_redirect app_lua app_python3}
# Debian packages the core, kamcmd and those modules build with
BUILD_PKGS="gcc make libc6-dev bison flex pkg-config dpkg-dev xz-utils curl
libssl-dev libreadline-dev liblua5.4-dev python3-dev"

say() { printf 'kamailio-build: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	[ -z "${LOG:-}" ] || [ ! -s "$LOG" ] || tail -n 30 "$LOG" >&2
	exit 1
}

missing=
for p in $BUILD_PKGS; do
	case "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)" in
	ii*) ;;
	*) missing="$missing $p" ;;
	esac
done
if [ -n "$missing" ]; then
	[ "$(id -u)" -eq 0 ] || die "missing packages:$missing (run as root)"
	say "apt-get install$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -q update >/dev/null
	# shellcheck disable=SC2086
	apt-get -q install -y --no-install-recommends $missing >/dev/null ||
		die "apt-get install$missing failed"
fi

COREPATH=$("$ROOT/scripts/kamailio-src.sh" "$WANT") ||
	die "no source tree for kamailio $WANT"
COREPATH=$(echo "$COREPATH" | tail -n 1)
[ -f "$COREPATH/Makefile.defs" ] || die "no source tree for kamailio $WANT"
DEBVER=$(cat "$COREPATH/../../.version")
UPSTREAM=$(echo "$DEBVER" | sed -e 's/^[0-9]*://' -e 's/-[^-]*$//')
PREFIX="$ROOT/.cache/kamailio-$UPSTREAM"
LOG="$PREFIX.log"

# the modules: what the cfgs load, then the extras
# (Kamailio cfgs only: their first line is #!KAMAILIO; cfg-examples/ holds
# an OpenSIPS one too, whose modules Kamailio does not have)
needed=$(for f in "$ROOT"/tests/e2e/cfg/*.cfg "$ROOT"/cfg-examples/*.cfg; do
	[ "$(head -n 1 "$f")" = '#!KAMAILIO' ] && cat "$f"
done |
	sed -n 's/^[[:space:]]*loadmodule[[:space:]]*"\([a-z0-9_]*\)\.so".*/\1/p' |
	grep -v '^push_redirect$' | sort -u | tr '\n' ' ')
# and what this version's stock etc/kamailio.cfg loads outside any #!ifdef
# (tests/e2e/stock_cfg.rs runs it; 6.1's adds dlgs, for one)
needed="$needed $(awk '/^#!if/ { d++ } /^#!endif/ { d-- }
	d == 0 && /^[[:space:]]*loadmodule/ {
		if (match($0, /"[a-z0-9_]+\.so"/)) print substr($0, RSTART + 1, RLENGTH - 5)
	}' "$COREPATH/../etc/kamailio.cfg" 2>/dev/null | sort -u | tr '\n' ' ')"

# what the build depends on: rebuild when any of it changes
inputs() {
	echo "kamailio $DEBVER in $COREPATH"
	echo "modules: $needed"
	echo "extra: $EXTRA_MODULES"
	gcc --version | head -n 1
	cat "$0"
}
STAMP="$PREFIX/.built"
if [ -x "$PREFIX/sbin/kamailio" ] && [ -f "$STAMP" ] &&
	[ "$(cat "$STAMP")" = "$(inputs)" ]; then
	say "kamailio $DEBVER: cached in $PREFIX"
	echo "$PREFIX $COREPATH"
	exit 0
fi

# make cfg for an install under $PREFIX with only the modules $1
configure() {
	others=$(cd "$COREPATH/modules" && for m in *; do
		case " $1 " in
		*" $m "*) ;;
		*) [ -d "$m" ] && printf '%s ' "$m" ;;
		esac
	done)
	make -C "$COREPATH" cfg prefix="$PREFIX/" LIBDIR=lib \
		include_modules="$1" exclude_modules="$others" >>"$LOG" 2>&1 ||
		die "make cfg failed"
}

: >"$LOG"
rm -rf "$PREFIX"
start=$(date +%s)
# the extras that build here: each on its own, against the core's config
modules=$needed
configure "$needed"
for m in $EXTRA_MODULES; do
	[ -d "$COREPATH/modules/$m" ] || {
		say "no module $m in kamailio $DEBVER: skipped"
		continue
	}
	if nice -n 10 make -C "$COREPATH/modules/$m" >>"$LOG" 2>&1; then
		modules="$modules $m"
	else
		say "module $m does not build here (see $LOG): left out"
	fi
done
configure "$modules"
say "building kamailio $DEBVER (core, kamcmd, modules: $modules) into $PREFIX"
nice -n 10 make -C "$COREPATH" -j "$(nproc)" all >>"$LOG" 2>&1 ||
	die "make all failed"
nice -n 10 make -C "$COREPATH" install >>"$LOG" 2>&1 ||
	die "make install failed"
[ -x "$PREFIX/sbin/kamailio" ] || die "no $PREFIX/sbin/kamailio after make install"
[ -x "$PREFIX/sbin/kamcmd" ] || die "no $PREFIX/sbin/kamcmd after make install"
for m in $modules; do
	[ -f "$PREFIX/lib/kamailio/modules/$m.so" ] ||
		die "module $m.so not installed in $PREFIX/lib/kamailio/modules"
done
inputs >"$STAMP"
say "kamailio $DEBVER built in $(($(date +%s) - start)) s"
echo "$PREFIX $COREPATH"
