#!/bin/sh
# build-module.sh - build the Kamailio module build/push_redirect.so
#
# Usage: scripts/build-module.sh [install]
#
# Gets a configured Kamailio source tree matching the installed kamailio
# (scripts/kamailio-src.sh, which installs what is missing), builds
# kamailio-module/ against it with the Rust core's staticlib linked in,
# and copies the result to build/push_redirect.so.  With "install", also
# installs it into Kamailio's module directory
# (/usr/lib/<multiarch>/kamailio/modules/ for Debian's kamailio) and makes
# the default store's folder, /var/lib/kamailio, the kamailio user's
# (scripts/install-store-dir.sh), printing what it did.
#
# The Rust core must be built first (cargo build --release); override its
# location with PR_LIB=<path to libpush_redirect.a>.  KAMAILIO_SRC=<dir>
# uses an operator's own Kamailio tree (see kamailio-src.sh);
# KAMAILIO_VERSION=<x.y> the source of another version of
# scripts/kamailio-versions (kamailio-src.sh VERSION).  PR_OUT=<file> writes
# the module there instead of build/push_redirect.so (e.g.
# build/6.1.4/push_redirect.so), compiled in a folder of its own beside it
# (<dir of PR_OUT>/obj), so that objects of another Kamailio tree are never
# mixed in.

set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PR_LIB=${PR_LIB:-$ROOT/target/release/libpush_redirect.a}
PR_INCLUDE=${PR_INCLUDE:-$ROOT/include}
PR_OUT=${PR_OUT:-$ROOT/build/push_redirect.so}

die() {
	printf 'build-module: error: %s\n' "$*" >&2
	exit 1
}

case "${1:-}" in
"" | install) ;;
*) die "usage: $0 [install]" ;;
esac

# shellcheck disable=SC2086 # no VERSION argument when it is empty
COREPATH=$("$ROOT/scripts/kamailio-src.sh" ${KAMAILIO_VERSION:-} | tail -n 1) ||
	die "no Kamailio source tree (see the messages above)"
[ -f "$COREPATH/Makefile.defs" ] ||
	die "kamailio-src.sh gave '$COREPATH', not a Kamailio tree"
[ -f "$PR_LIB" ] ||
	die "$PR_LIB missing: build the Rust core first (cargo build --release)"
[ -f "$PR_INCLUDE/push_redirect.h" ] ||
	die "$PR_INCLUDE/push_redirect.h missing"

# where to compile: kamailio-module/ itself, or a copy of its sources for
# another output (another Kamailio tree)
SRCDIR="$ROOT/kamailio-module"
if [ "$PR_OUT" != "$ROOT/build/push_redirect.so" ]; then
	SRCDIR="$(dirname "$PR_OUT")/obj"
	mkdir -p "$SRCDIR"
	# -p keeps the times, so make recompiles only what changed
	cp -p "$ROOT"/kamailio-module/Makefile "$ROOT"/kamailio-module/*.[ch] \
		"$ROOT"/kamailio-module/*.map "$SRCDIR/"
	[ "$(cat "$SRCDIR/.corepath" 2>/dev/null)" = "$COREPATH" ] ||
		rm -f "$SRCDIR"/*.o "$SRCDIR"/*.d
	echo "$COREPATH" >"$SRCDIR/.corepath"
fi

# always relink: make would not notice PR_LIB pointing at another file
rm -f "$SRCDIR/push_redirect.so"
make -s -C "$SRCDIR" COREPATH="$COREPATH" PR_LIB="$PR_LIB" \
	PR_INCLUDE="$PR_INCLUDE" ||
	die "building $SRCDIR/push_redirect.so failed"

# a shared object may keep undefined symbols (Kamailio's core resolves its
# own at load time), so a Rust core lacking one would only fail in dlopen():
# catch it here
missing=$(nm -D --undefined-only "$SRCDIR/push_redirect.so" |
	awk '$2 ~ /^pr_/ { print $2 }')
[ -z "$missing" ] ||
	die "$PR_LIB lacks:" $missing

mkdir -p "$(dirname "$PR_OUT")"
cp "$SRCDIR/push_redirect.so" "$PR_OUT"

if [ "${1:-}" = install ]; then
	make -s -C "$SRCDIR" COREPATH="$COREPATH" \
		PR_LIB="$PR_LIB" PR_INCLUDE="$PR_INCLUDE" install ||
		die "installing push_redirect.so failed"
	moddir=$(make -s -C "$SRCDIR" COREPATH="$COREPATH" PR_LIB="$PR_LIB" \
		PR_INCLUDE="$PR_INCLUDE" print-modules-dir 2>/dev/null || true)
	moddir=$(echo "$moddir" | sed 's#//*#/#g')
	echo "push_redirect: installed push_redirect.so in ${moddir:-Kamailio's module folder}" >&2
	"$ROOT/scripts/install-store-dir.sh" >&2 ||
		die "making the store folder failed"
fi
echo "$PR_OUT"
