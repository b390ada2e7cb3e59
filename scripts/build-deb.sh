#!/bin/sh
# build-deb.sh - a Debian package of push_redirect.so for the installed
# Kamailio (`make deb` runs it after `make build`).
#
# Usage: scripts/build-deb.sh            prints the .deb's path last
#
# The package, kamailio-push-redirect-module, holds
#   /usr/lib/<multiarch>/kamailio/modules/push_redirect.so  (stripped)
#   /usr/share/doc/kamailio-push-redirect-module/  README, the module's
#       document (README.push_redirect), copyright, changelog.Debian and
#       examples/ (cfg-examples/: the native cfg, the KEMI cfg with its Lua
#       and Python scripts, the stock kamailio.cfg snippet and its script)
# and depends on exactly the installed kamailio version (the module is
# built against that version's source: another Kamailio would refuse it)
# and on the libraries dpkg-shlibdeps finds.  Its postinst makes the
# default store's folder /var/lib/kamailio the kamailio user's (mode 0750
# when it makes it; a dpkg-statoverride of the folder wins); the kamailio
# package creates that user.  Purging it removes the store files at the
# default path.
#
# Built with dpkg-deb from a staged tree (no debian/ source package: the
# binary is built by make, against the installed Kamailio, and there is
# nothing for debhelper to do that these few lines do not).  Needs
# dpkg-dev (dpkg-shlibdeps, dpkg-architecture) and binutils (strip):
# `scripts/install-deps.sh deb` installs them and lintian.
#
# DEB_OUT=<dir> (default build/deb), DEB_MAINTAINER="Name <mail>" (default:
# the author of the last commit),
# PR_MODULE_SO=<module> (default build/push_redirect.so).

set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${DEB_OUT:-$ROOT/build/deb}
SO=${PR_MODULE_SO:-$ROOT/build/push_redirect.so}
PKG=kamailio-push-redirect-module
# the author of the commit built, unless told
MAINTAINER=${DEB_MAINTAINER:-$(git -C "$ROOT" log -1 --format='%an <%ae>' 2>/dev/null || true)}
[ -n "$MAINTAINER" ] || MAINTAINER="push_redirect maintainers <maintainers@push-redirect.example>"

die() {
	printf 'build-deb: error: %s\n' "$*" >&2
	exit 1
}

[ -f "$SO" ] || die "$SO missing: make build first"
for t in dpkg-deb dpkg-shlibdeps dpkg-architecture strip; do
	command -v "$t" >/dev/null || die "$t missing: scripts/install-deps.sh deb"
done
KAMVER=$(dpkg-query -W -f='${Version}' kamailio 2>/dev/null) ||
	die "kamailio is not installed (the package is built for the installed one)"
[ -n "$KAMVER" ] || die "kamailio is not installed"
# the module must be the one built for this kamailio: it says so itself
# (Kamailio's module_version string, checked at load time)
KAMUP=$(echo "$KAMVER" | sed -e 's/^[0-9]*://' -e 's/-[^-]*$//')
strings "$SO" | grep -q "^kamailio $KAMUP (" ||
	die "$SO was not built for kamailio $KAMUP (make build builds against the installed one)"

CRATE=$(sed -n 's/^version *= *"\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n 1)
[ -n "$CRATE" ] || die "no version in Cargo.toml"
# 0.1.0+kam5.6.3-1: our version, for that Kamailio
VERSION="$CRATE+kam$KAMUP-1"
ARCH=$(dpkg --print-architecture)
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null)
# the date of the last commit, for a package that builds the same twice
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

STAGE="$OUT/stage"
rm -rf "$STAGE"
MODDIR="$STAGE/usr/lib/$MULTIARCH/kamailio/modules"
DOC="$STAGE/usr/share/doc/$PKG"
mkdir -p "$MODDIR" "$DOC/examples" "$STAGE/DEBIAN"

# the module, stripped as dh_strip strips
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
	-o "$MODDIR/push_redirect.so" "$SO"
chmod 0644 "$MODDIR/push_redirect.so"

# documentation (compressed as dh_compress does: gzip -9n)
gzip -9nc "$ROOT/README.md" >"$DOC/README.md.gz"
if [ -f "$ROOT/kamailio-module/README" ]; then
	gzip -9nc "$ROOT/kamailio-module/README" >"$DOC/README.push_redirect.gz"
fi
for f in "$ROOT"/cfg-examples/*; do
	[ -f "$f" ] || continue
	# the OpenSIPS example belongs to the OpenSIPS module, not this package
	case "$(basename "$f")" in opensips-*) continue ;; esac
	install -m 0644 "$f" "$DOC/examples/"
done
chmod 0755 "$DOC/examples"/*.sh 2>/dev/null || true

cat >"$DOC/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: push_redirect
Comment: push_redirect.so links in its Rust core and the crates it uses
 (Cargo.lock of the source), among them SQLite (public domain, through
 rusqlite's bundled copy), nom, rusqlite and libc (MIT or Apache-2.0).

Files: *
Copyright: push_redirect developers
License: GPL-2+
 This program is free software; you can redistribute it and/or modify
 it under the terms of the GNU General Public License as published by
 the Free Software Foundation; either version 2 of the License, or
 (at your option) any later version.
 .
 On Debian systems, the full text of the GNU General Public
 License version 2 can be found in the file '/usr/share/common-licenses/GPL-2'.
EOF

# the lintian tags that stay, each with its reason (README, "Debian package")
mkdir -p "$STAGE/usr/share/lintian/overrides"
cat >"$STAGE/usr/share/lintian/overrides/$PKG" <<EOF
# Built by make deb for the installed kamailio, not uploaded to Debian: no
# ITP bug to close.
$PKG: initial-upload-closes-no-bugs
# "#!KAMAILIO" is the first line of every kamailio.cfg, Kamailio's marker
# of its cfg dialect, not an interpreter: the examples are cfg files.
$PKG: example-interpreter-not-absolute KAMAILIO [usr/share/doc/$PKG/examples/*]
$PKG: example-unusual-interpreter KAMAILIO [usr/share/doc/$PKG/examples/*]
# Read out of the machine code and tables of the Rust core that the module
# links in ("ment", "nAM" on Debian 12), not text of ours; which fragments
# differ with each build, hence the wildcard.
$PKG: spelling-error-in-binary * [usr/lib/$MULTIARCH/kamailio/modules/push_redirect.so]
EOF

DATE=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
cat <<EOF | gzip -9n >"$DOC/changelog.Debian.gz"
$PKG ($VERSION) unstable; urgency=medium

  * push_redirect $CRATE built for kamailio $KAMVER.

 -- $MAINTAINER  $DATE
EOF

# the libraries the module needs (dpkg-shlibdeps reads a debian/control)
SHL="$OUT/shlibdeps"
rm -rf "$SHL"
mkdir -p "$SHL/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PKG" "$PKG" >"$SHL/debian/control"
SHLIBS=$(cd "$SHL" && dpkg-shlibdeps -O "$MODDIR/push_redirect.so" 2>/dev/null |
	sed -n 's/^shlibs:Depends=//p')
[ -n "$SHLIBS" ] || die "dpkg-shlibdeps found no dependencies"

cat >"$STAGE/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# the folder of push_redirect's default store (/var/lib/kamailio/
# push_redirect.sqlite), for the user the kamailio package runs Kamailio
# as; a dpkg-statoverride of the folder is left to rule
set -e

STORE_DIR=/var/lib/kamailio

if [ "$1" = configure ]; then
	if ! getent passwd kamailio >/dev/null || ! getent group kamailio >/dev/null; then
		echo "push_redirect: no kamailio user or group (the kamailio package makes them):" \
			"make $STORE_DIR writable by the user Kamailio runs as" >&2
	elif ! dpkg-statoverride --list "$STORE_DIR" >/dev/null 2>&1; then
		if [ ! -d "$STORE_DIR" ]; then
			mkdir -m 0750 "$STORE_DIR"
		fi
		chown kamailio:kamailio "$STORE_DIR"
	fi
fi

exit 0
EOF
cat >"$STAGE/DEBIAN/postrm" <<'EOF'
#!/bin/sh
# purge: the forwardings at the default store path go with the package
set -e

STORE_DIR=/var/lib/kamailio

if [ "$1" = purge ]; then
	for f in push_redirect.sqlite push_redirect.sqlite-wal \
		push_redirect.sqlite-shm push_redirect.sqlite-gen; do
		rm -f "$STORE_DIR/$f"
	done
	rmdir --ignore-fail-on-non-empty "$STORE_DIR" 2>/dev/null || true
fi

exit 0
EOF
chmod 0755 "$STAGE/DEBIAN/postinst" "$STAGE/DEBIAN/postrm"

SIZE=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat >"$STAGE/DEBIAN/control" <<EOF
Package: $PKG
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $SIZE
Depends: kamailio (= $KAMVER), $SHLIBS
Section: net
Priority: optional
Description: Kamailio module forwarding SIP PUSH requests between terminals
 push_redirect forwards SIP PUSH requests (out-of-dialog MESSAGE and
 NOTIFY) between the registered terminals of one subscriber: when a
 terminal answers 3xx, a failover code or nothing, the proxy re-sends the
 request to the Contact it names or to the subscriber's next terminal,
 through tm, and learns permanent (301) and temporary (302) forwardings in
 an embedded store shared by all Kamailio processes.
 .
 Built for kamailio $KAMVER; script functions push_lookup() and
 push_redirect(), KEMI exports for Lua and Python routing, RPC commands
 and statistics.
EOF

(cd "$STAGE" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$STAGE/DEBIAN/md5sums"
chmod 0644 "$STAGE/DEBIAN/md5sums" "$STAGE/DEBIAN/control"
# every folder 0755, every file as set above (umask-proof)
find "$STAGE" -type d -exec chmod 0755 {} +

DEB="$OUT/${PKG}_${VERSION}_$ARCH.deb"
rm -f "$DEB"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$DEB" >/dev/null
rm -rf "$SHL"
echo "$DEB"
