#!/bin/sh
# kamailio-src.sh - provide a configured Kamailio source tree matching the
# installed kamailio package, for building push_redirect.so out of tree.
#
# Usage: scripts/kamailio-src.sh
#
# Installs (as root, via apt) what building the module needs: a C compiler,
# make, bison, flex, pkg-config, dpkg-dev and kamailio itself.  Then fetches
# the Debian source of exactly the installed kamailio version into
# .cache/kamailio-src/<version>/ (once: later runs reuse it), runs its
# "make cfg" and prints the tree's COREPATH (the directory holding
# Makefile.defs and core/) as the last line on stdout.
#
# KAMAILIO_SRC=<dir>   use this Kamailio tree (top directory or its src/)
#                      instead of downloading one; it is configured with
#                      "make cfg" if it has not been yet.
#
# Progress goes to stderr, tool output to .cache/kamailio-src/log; on
# failure the end of that log is shown.

set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE="$ROOT/.cache/kamailio-src"
LOG="$CACHE/log"
SRC_LIST=/etc/apt/sources.list.d/push-redirect-deb-src
# what building the module needs, as commands and as Debian packages
NEED_CMDS="gcc make nm bison flex pkg-config dpkg-source kamailio"
NEED_PKGS="gcc make libc6-dev binutils bison flex pkg-config dpkg-dev xz-utils kamailio"

mkdir -p "$CACHE"
: >"$LOG"

say() { printf 'kamailio-src: %s\n' "$*" >&2; }

die() {
	say "error: $*"
	if [ -s "$LOG" ]; then
		say "last lines of $LOG:"
		tail -n 20 "$LOG" >&2
	fi
	exit 1
}

# run a command, its output into the log
quiet() { "$@" >>"$LOG" 2>&1; }

as_root() {
	[ "$(id -u)" -eq 0 ] || die "must run as root to $* (or set KAMAILIO_SRC)"
}

APT_UPDATED=
apt_update() {
	[ -z "$APT_UPDATED" ] || return 0
	say "apt-get update"
	quiet apt-get -q update || die "apt-get update failed"
	APT_UPDATED=1
}

# the installed kamailio version, or nothing
kam_version() {
	dpkg-query -W -f='${db:Status-Abbrev}|${Version}' kamailio 2>/dev/null |
		sed -n 's/^ii *|//p'
}

# $1: "nokam" when an operator's tree is used (their kamailio may not be
# a Debian package)
install_tools() {
	missing=
	for c in $NEED_CMDS; do
		command -v "$c" >/dev/null 2>&1 || missing=1
	done
	[ "${1:-}" = nokam ] || [ -n "$(kam_version)" ] || missing=1
	[ -n "$missing" ] || return 0
	as_root "install build tools"
	if ! apt-cache show kamailio >/dev/null 2>&1 ||
		[ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep _Packages)" ]; then
		apt_update
	fi
	say "apt-get install $NEED_PKGS"
	if ! DEBIAN_FRONTEND=noninteractive quiet apt-get -q -y \
		--no-install-recommends install $NEED_PKGS; then
		apt_update
		DEBIAN_FRONTEND=noninteractive quiet apt-get -q -y \
			--no-install-recommends install $NEED_PKGS ||
			die "apt-get install $NEED_PKGS failed"
	fi
}

# Write deb-src twins of the configured "deb" entries, in files of our own
# (existing apt configuration is left untouched).
enable_deb_src() {
	as_root "enable deb-src entries"
	if [ ! -e "$SRC_LIST.sources" ]; then
		for f in /etc/apt/sources.list.d/*.sources; do
			[ -f "$f" ] || continue
			[ "$f" = "$SRC_LIST.sources" ] && continue
			# one deb822 stanza per paragraph; keep those whose
			# Types has "deb" but not "deb-src", retyped to deb-src
			awk 'BEGIN { RS = ""; ORS = "\n\n" }
			{
				n = split($0, l, "\n"); keep = 0; out = ""
				for (i = 1; i <= n; i++) {
					if (l[i] ~ /^Types:/) {
						t = " " substr(l[i], 7) " "
						if (t ~ /[ \t]deb[ \t]/ &&
							t !~ /[ \t]deb-src[ \t]/)
							keep = 1
						l[i] = "Types: deb-src"
					}
					out = out l[i] "\n"
				}
				if (keep) { sub(/\n$/, "", out); print out }
			}' "$f"
		done >"$SRC_LIST.sources.tmp"
		if [ -s "$SRC_LIST.sources.tmp" ]; then
			mv "$SRC_LIST.sources.tmp" "$SRC_LIST.sources"
		else
			rm -f "$SRC_LIST.sources.tmp"
		fi
	fi
	if [ ! -e "$SRC_LIST.list" ]; then
		for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
			[ -f "$f" ] || continue
			[ "$f" = "$SRC_LIST.list" ] && continue
			sed -n 's/^[ \t]*deb\([ \t]\)/deb-src\1/p' "$f"
		done >"$SRC_LIST.list.tmp"
		if [ -s "$SRC_LIST.list.tmp" ]; then
			mv "$SRC_LIST.list.tmp" "$SRC_LIST.list"
		else
			rm -f "$SRC_LIST.list.tmp"
		fi
	fi
	[ -e "$SRC_LIST.sources" ] || [ -e "$SRC_LIST.list" ] ||
		die "no 'deb' entries found in /etc/apt to mirror as deb-src"
	say "enabled deb-src in $SRC_LIST.*"
	APT_UPDATED=
	apt_update
}

# the COREPATH (directory with Makefile.defs and core/) inside tree $1
corepath_of() {
	if [ -f "$1/src/Makefile.defs" ] && [ -d "$1/src/core" ]; then
		echo "$1/src"
	elif [ -f "$1/Makefile.defs" ] && [ -d "$1/core" ]; then
		echo "$1"
	fi
}

# make cfg options matching how the installed kamailio was built, so that
# the module's compile flags string (checked against the core's at load
# time, see ksr_version_control()) is the same
cfg_opts() {
	# the core's flags say whether it was built with libssl's shared
	# pthread mutex workaround; without libssl-dev "make cfg" would not
	# detect it and the module would be refused
	if kamailio -v 2>/dev/null | grep -q TLS_PTHREAD_MUTEX_SHARED; then
		echo "LIBSSL_SET_MUTEX_SHARED=1"
	fi
	if [ "${1:-}" = debian ]; then
		# as debian/rules configures it: paths, hardening flags
		ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null ||
			gcc -print-multiarch)
		echo "prefix=/usr"
		echo "LIBDIR=lib/$ma"
		echo "cfg_target=/etc/kamailio/"
		echo "FLAVOUR=kamailio"
		echo "CC_EXTRA_OPTS=$(dpkg-buildflags --get CPPFLAGS)" \
			"$(dpkg-buildflags --get CFLAGS |
			sed 's/-ffile-prefix-map=[^ ]*//') -DVERSION_NODATE"
		echo "LD_EXTRA_OPTS=$(dpkg-buildflags --get LDFLAGS)"
	fi
}

# make cfg, once per tree and set of options: generates config.mak and
# modules.lst, which Makefile.defs and Makefile.modules read when building
# a module.  $1: COREPATH, $2: "debian" for a tree fetched here
configure_tree() {
	cp=$1
	opts=$(cfg_opts "${2:-}")
	stamp="$cp/.push-redirect-cfg"
	if [ -f "$cp/config.mak" ]; then
		# an operator's tree that is configured already: keep it
		[ -n "${2:-}" ] || [ -f "$stamp" ] || return 0
		[ -f "$stamp" ] && [ "$(cat "$stamp")" = "$opts" ] && return 0
	fi
	say "make cfg in $cp"
	# one option per line, values may hold spaces
	(
		set --
		while IFS= read -r o; do
			[ -n "$o" ] && set -- "$@" "$o"
		done <<EOF
$opts
EOF
		quiet make -C "$cp" cfg "$@"
	) || die "make cfg failed in $cp"
	[ -f "$cp/config.mak" ] || die "make cfg did not write $cp/config.mak"
	printf '%s\n' "$opts" >"$stamp"
}

if [ -n "${KAMAILIO_SRC:-}" ]; then
	[ -d "$KAMAILIO_SRC" ] || die "KAMAILIO_SRC=$KAMAILIO_SRC: no such directory"
	cp=$(corepath_of "$(cd "$KAMAILIO_SRC" && pwd)")
	[ -n "$cp" ] ||
		die "KAMAILIO_SRC=$KAMAILIO_SRC is not a Kamailio tree (no Makefile.defs and core/)"
	install_tools nokam
	configure_tree "$cp"
	echo "$cp"
	exit 0
fi

install_tools
VERSION=$(kam_version)
[ -n "$VERSION" ] || die "kamailio is not installed"
# an epoch ("1:") is not welcome in a path
DIR="$CACHE/$(echo "$VERSION" | tr ':' '_')"

cp=
if [ -d "$DIR" ]; then
	for t in "$DIR"/*/; do
		[ -d "$t" ] || continue
		cp=$(corepath_of "${t%/}")
		[ -z "$cp" ] || break
	done
fi

if [ -z "$cp" ] || [ ! -f "$DIR/.complete" ]; then
	as_root "download the kamailio source"
	# apt can print the URIs only when a deb-src entry has the version
	if ! apt-get -q source --print-uris "kamailio=$VERSION" \
		>/dev/null 2>&1; then
		enable_deb_src
		apt-get -q source --print-uris "kamailio=$VERSION" \
			>>"$LOG" 2>&1 ||
			die "no source for kamailio=$VERSION in the apt sources"
	fi
	rm -rf "$DIR"
	mkdir -p "$DIR"
	say "apt-get source kamailio=$VERSION into $DIR"
	# _apt cannot write into a directory under /root or /work: download
	# unsandboxed, we are root anyway
	(cd "$DIR" && quiet apt-get -q -o APT::Sandbox::User=root \
		source "kamailio=$VERSION") ||
		die "apt-get source kamailio=$VERSION failed"
	for t in "$DIR"/*/; do
		[ -d "$t" ] || continue
		cp=$(corepath_of "${t%/}")
		[ -z "$cp" ] || break
	done
	[ -n "$cp" ] || die "no Kamailio tree found in $DIR after apt-get source"
	# keep the unpacked tree only
	rm -f "$DIR"/*.tar.* "$DIR"/*.dsc
	: >"$DIR/.complete"
fi

configure_tree "$cp" debian
echo "$cp"
