#!/bin/sh
# kamailio-src.sh - provide a configured Kamailio source tree, for building
# push_redirect.so out of tree.
#
# Usage: scripts/kamailio-src.sh [VERSION]
#
# Without VERSION: the tree of the installed kamailio package.  Installs
# (as root, via apt) what building the module needs: a C compiler, make,
# bison, flex, pkg-config, dpkg-dev and kamailio itself.  Then fetches the
# Debian source of exactly the installed kamailio version into
# .cache/kamailio-src/<version>/ (once: later runs reuse it), runs its
# "make cfg" as Debian configures it and prints the tree's COREPATH (the
# directory holding Makefile.defs and core/) as the last line on stdout.
#
# VERSION: a series of scripts/kamailio-versions (6.1), an upstream version
# (6.1.4) or a Debian version (6.1.4-1) of another Kamailio than the
# installed one: the newest matching Debian source package of the suites
# in that table, fetched with a private apt configuration under .cache/apt/
# (the host's apt sources are not touched), into the same cache.  Its
# "make cfg" takes the options in KAMAILIO_CFG_OPTS (one per line; default
# none).  The Debian version fetched is in <tree>/../.version.
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
	cmds=$NEED_CMDS
	pkgs=$NEED_PKGS
	if [ "${1:-}" = nokam ]; then
		# a tree of another Kamailio: the package is not needed
		cmds=$(echo "$cmds" | sed 's/ kamailio$//')
		pkgs=$(echo "$pkgs" | sed 's/ kamailio$//')
	fi
	for c in $cmds; do
		command -v "$c" >/dev/null 2>&1 || missing=1
	done
	[ "${1:-}" = nokam ] || [ -n "$(kam_version)" ] || missing=1
	[ -n "$missing" ] || return 0
	as_root "install build tools"
	if ! apt-cache show kamailio >/dev/null 2>&1 ||
		[ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep _Packages)" ]; then
		apt_update
	fi
	say "apt-get install $pkgs"
	if ! DEBIAN_FRONTEND=noninteractive quiet apt-get -q -y \
		--no-install-recommends install $pkgs; then
		apt_update
		DEBIAN_FRONTEND=noninteractive quiet apt-get -q -y \
			--no-install-recommends install $pkgs ||
			die "apt-get install $pkgs failed"
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
	if [ "${1:-}" = other ]; then
		# another version than the installed one: the caller's options
		printf '%s\n' "${KAMAILIO_CFG_OPTS:-}"
		return 0
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
# a module.  $1: COREPATH, $2: "debian" for a tree fetched here for the
# installed kamailio, "other" for one of another version (its own stamp, so
# that KAMAILIO_SRC=<that tree> later keeps its configuration)
configure_tree() {
	cp=$1
	opts=$(cfg_opts "${2:-}")
	stamp="$cp/.push-redirect-cfg"
	[ "${2:-}" != other ] || stamp="$stamp-other"
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

# ---------------------------------------------------------------- VERSION
# Another Kamailio than the installed one, from the suites of
# scripts/kamailio-versions, through apt with a configuration of our own.

TABLE="$ROOT/scripts/kamailio-versions"
PAPT="$ROOT/.cache/apt"

# the table's rows ("series how suite pin"), without comments
table_rows() { sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$TABLE"; }

# the upstream part of a Debian version (no epoch, no revision)
upstream_of() { echo "$1" | sed -e 's/^[0-9]*://' -e 's/-[^-]*$//'; }

# true when Debian version $1 is what $2 names: that Debian version, its
# upstream version, or its series (6.1 names 6.1.4, not 6.10.1)
version_is() {
	[ -n "$1" ] || return 1
	vi_up=$(upstream_of "$1")
	case "$2" in
	"$1" | "$vi_up") return 0 ;;
	esac
	case "$vi_up" in
	"$2".*) return 0 ;;
	esac
	return 1
}

# the host's mirror of archive $1 (debian or debian-security), from its apt
# sources (deb822 or one-line), else deb.debian.org
host_mirror() {
	m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
		sed -n 's/^URIs:[[:space:]]*//p' | tr ' ' '\n' || true)
	m="$m
$(sed -n 's/^[[:space:]]*deb\(-src\)\{0,1\}[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\([^[:space:]]*\).*/\3/p' \
		/etc/apt/sources.list 2>/dev/null || true)"
	echo "$m" | sed 's#/*$##' | grep -m 1 "/$1\$" ||
		echo "http://deb.debian.org/$1"
}

papt_opts() {
	echo "-o Dir::Etc::SourceList=$PAPT/sources.list" \
		"-o Dir::Etc::SourceParts=$PAPT/none" \
		"-o Dir::State::Lists=$PAPT/lists -o Dir::Cache=$PAPT/cache" \
		"-o APT::Sandbox::User=root"
}
# shellcheck disable=SC2046
papt_get() { apt-get -q $(papt_opts) "$@"; }
# shellcheck disable=SC2046
papt_cache() { apt-cache $(papt_opts) "$@"; }

# deb-src of every suite in the table (a stable suite with its -updates and
# -security), "apt-get update" when that list changed or is 6 hours old
papt_update() {
	mkdir -p "$PAPT/lists/partial" "$PAPT/cache/archives/partial" "$PAPT/none"
	main=$(host_mirror debian)
	sec=$(host_mirror debian-security)
	table_rows | while read -r _ _ suite _; do
		echo "deb-src $main $suite main"
		case "$suite" in
		sid | unstable | experimental) ;;
		*)
			echo "deb-src $main $suite-updates main"
			echo "deb-src $sec $suite-security main"
			;;
		esac
	done | sort -u >"$PAPT/sources.list.new"
	if cmp -s "$PAPT/sources.list.new" "$PAPT/sources.list" &&
		[ -n "$(find "$PAPT/lists" -maxdepth 1 -name '*Sources*' -mmin -360)" ]; then
		rm -f "$PAPT/sources.list.new"
		return 0
	fi
	mv "$PAPT/sources.list.new" "$PAPT/sources.list"
	say "apt-get update (deb-src of $(table_rows | awk '{ print $3 }' | sort -u | tr '\n' ' ')in .cache/apt)"
	if ! quiet papt_get update; then
		# a mirror that stopped following unstable serves a Release file
		# past its Valid-Until: say so, and take what it has
		grep -q 'is expired' "$LOG" || die "apt-get update of .cache/apt failed"
		say "warning: an expired Release file (a stale mirror):" \
			"$(grep -o 'http[^ ]*InRelease' "$LOG" | sort -u | tr '\n' ' ')"
		say "apt-get update again, without its Valid-Until check"
		quiet papt_get -o Acquire::Check-Valid-Until=false update ||
			die "apt-get update of .cache/apt failed"
	fi
}

# the newest Debian version of the kamailio source package that $1 names
resolve_version() {
	papt_cache showsrc kamailio 2>/dev/null | sed -n 's/^Version: //p' |
		while read -r v; do
			if version_is "$v" "$1"; then echo "$v"; fi
		done | sort -V | tail -n 1
}

# the table's pin for what $1 names, if any
pin_of() {
	table_rows | while read -r _ _ _ pin; do
		[ "$pin" != - ] || continue
		if version_is "$pin" "$1"; then echo "$pin"; fi
	done | head -n 1
}

# fetch Debian source package kamailio $1 from the pool, by its .dsc
# (a version the indexes no longer list); dpkg-source checks the checksums
fetch_dsc() {
	dir=$(papt_cache showsrc kamailio 2>/dev/null |
		sed -n 's/^Directory: //p' | head -n 1)
	[ -n "$dir" ] || dir=pool/main/k/kamailio
	base="$(host_mirror debian)/$dir"
	dsc="kamailio_$(echo "${1#*:}" | sed 's/+/%2b/g').dsc"
	say "fetching $base/$dsc"
	get() { curl -fsS -o "$2" "$1" || wget -q -O "$2" "$1"; }
	get "$base/$dsc" "$(echo "$dsc" | sed 's/%2b/+/g')" >>"$LOG" 2>&1 ||
		return 1
	dsc=$(echo "$dsc" | sed 's/%2b/+/g')
	for f in $(awk '/^Files:/ { f = 1; next } /^[^ ]/ { f = 0 } f { print $3 }' "$dsc"); do
		get "$base/$f" "$f" >>"$LOG" 2>&1 || return 1
	done
	quiet dpkg-source -x "$dsc"
}

# fetch Kamailio $1 (a Debian version) into $CACHE/<version>, with the
# table's pin $2 as a fallback; sets cp (COREPATH) and VERSION
fetch_other() {
	VERSION=$1
	DIR="$CACHE/$(echo "$VERSION" | tr ':' '_')"
	if [ -f "$DIR/.complete" ]; then
		for t in "$DIR"/*/; do
			cp=$(corepath_of "${t%/}")
			[ -z "$cp" ] || return 0
		done
	fi
	rm -rf "$DIR"
	mkdir -p "$DIR"
	say "apt-get source kamailio=$VERSION into $DIR"
	if ! (cd "$DIR" && quiet papt_get source "kamailio=$VERSION"); then
		[ -n "$2" ] && [ "$2" != "$VERSION" ] ||
			die "apt-get source kamailio=$VERSION failed"
		say "the mirror does not serve kamailio $VERSION; the table's pin $2 instead"
		rm -rf "$DIR"
		VERSION=$2
		DIR="$CACHE/$(echo "$VERSION" | tr ':' '_')"
		if [ ! -f "$DIR/.complete" ]; then
			rm -rf "$DIR"
			mkdir -p "$DIR"
			(cd "$DIR" && fetch_dsc "$VERSION") ||
				die "cannot fetch kamailio $VERSION from the pool either"
		fi
	fi
	cp=
	for t in "$DIR"/*/; do
		cp=$(corepath_of "${t%/}")
		[ -z "$cp" ] || break
	done
	[ -n "$cp" ] || die "no Kamailio tree found in $DIR"
	rm -f "$DIR"/*.tar.* "$DIR"/*.dsc
	echo "$VERSION" >"$DIR/.version"
	: >"$DIR/.complete"
}

WANT=${1:-}
if [ -n "$WANT" ] && ! version_is "$(kam_version)" "$WANT"; then
	install_tools nokam
	papt_update
	v=$(resolve_version "$WANT")
	pin=$(pin_of "$WANT")
	[ -n "$v" ] || v=$pin
	[ -n "$v" ] ||
		die "no kamailio source package $WANT in the suites of $TABLE"
	fetch_other "$v" "$pin"
	configure_tree "$cp" other
	say "kamailio $VERSION: $cp"
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
