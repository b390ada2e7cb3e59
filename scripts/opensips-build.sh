#!/bin/sh
# opensips-build.sh - provide a built OpenSIPS source tree, for building the
# OpenSIPS push_redirect module against it and running the end-to-end tests
# through it.  OpenSIPS is not packaged by Debian: an operator builds against
# their own tree.
#
# Usage: scripts/opensips-build.sh
#
#   OPENSIPS_SRC=DIR        an OpenSIPS 3.6 source tree (the top directory,
#                           holding Makefile.conf.template and modules/); it
#                           is built in place if its core is not built yet
#   OPENSIPS_TARBALL=FILE   a release tarball (opensips-3.6.8.tar.xz): it is
#                           unpacked once into .cache/opensips/<name>/ and
#                           built there; later runs reuse it
#
# Builds the core ("make app") and the modules the module and its tests use
# (OPENSIPS_MODULES below), installs what that needs (scripts/install-deps.sh
# opensips, as root), and prints the tree's top directory as the last line on
# stdout.  Progress on stderr, compiler output in <tree>/../build.log (the end
# of it is shown on failure).

set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE="$ROOT/.cache/opensips"
# tm, sl, usrloc, registrar, signaling: what push_redirect binds to; maxfwd,
# rr, textops, sipmsgops, path: the test cfgs; mi_fifo: the MI commands;
# (proto_udp and proto_tcp are built into the core, under net/)
# uac_redirect: the stock baseline
OPENSIPS_MODULES="tm sl usrloc registrar signaling maxfwd rr mi_fifo textops sipmsgops path uac_redirect"

say() { printf 'opensips-build: %s\n' "$*" >&2; }
die() {
	say "error: $*"
	if [ -n "${LOG:-}" ] && [ -s "$LOG" ]; then
		say "last lines of $LOG:"
		tail -n 20 "$LOG" >&2
	fi
	exit 1
}

"$ROOT/scripts/install-deps.sh" opensips || die "cannot install the build dependencies"

if [ -n "${OPENSIPS_SRC:-}" ]; then
	TREE=$(cd "$OPENSIPS_SRC" && pwd) || die "OPENSIPS_SRC=$OPENSIPS_SRC: no such directory"
	LOG="$TREE/.push_redirect-build.log"
elif [ -n "${OPENSIPS_TARBALL:-}" ]; then
	[ -f "$OPENSIPS_TARBALL" ] || die "OPENSIPS_TARBALL=$OPENSIPS_TARBALL: no such file"
	name=$(basename "$OPENSIPS_TARBALL")
	name=${name%.tar.*}
	mkdir -p "$CACHE"
	TREE="$CACHE/$name/$name"
	LOG="$CACHE/$name/build.log"
	if [ ! -f "$TREE/Makefile" ]; then
		say "unpacking $OPENSIPS_TARBALL into $CACHE/$name"
		rm -rf "$CACHE/$name.tmp"
		mkdir -p "$CACHE/$name.tmp"
		tar -xf "$OPENSIPS_TARBALL" -C "$CACHE/$name.tmp" || die "cannot unpack $OPENSIPS_TARBALL"
		top=$(ls "$CACHE/$name.tmp")
		[ "$(echo "$top" | wc -l)" -eq 1 ] || die "$OPENSIPS_TARBALL has more than one top directory"
		rm -rf "$CACHE/$name"
		mkdir -p "$CACHE/$name"
		mv "$CACHE/$name.tmp/$top" "$TREE"
		rmdir "$CACHE/$name.tmp"
	fi
else
	die "set OPENSIPS_SRC=DIR (an OpenSIPS source tree) or OPENSIPS_TARBALL=FILE"
fi

[ -f "$TREE/Makefile" ] && [ -d "$TREE/modules/tm" ] || die "$TREE is not an OpenSIPS source tree"

mods=
need=
for m in $OPENSIPS_MODULES; do
	mods="$mods modules/$m"
	[ -f "$TREE/modules/$m/$m.so" ] || need=1
done
[ -x "$TREE/opensips" ] || need=1
if [ -n "$need" ]; then
	jobs=$(nproc 2>/dev/null || echo 2)
	say "building OpenSIPS in $TREE (core and$mods), -j$jobs"
	: >"$LOG"
	# shellcheck disable=SC2086
	make -C "$TREE" -j"$jobs" app modules modules="${mods# }" >>"$LOG" 2>&1 ||
		die "the OpenSIPS build failed"
	for m in $OPENSIPS_MODULES; do
		[ -f "$TREE/modules/$m/$m.so" ] || die "modules/$m/$m.so was not built"
	done
fi
echo "$TREE"
