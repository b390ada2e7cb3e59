#!/bin/sh
# install-store-dir.sh - make the folder of push_redirect's store usable by
# the user Kamailio runs as (`make install` runs it).
#
# Usage: scripts/install-store-dir.sh [DIR]
#
# DIR defaults to /var/lib/kamailio, the folder of the `store` parameter's
# default (/var/lib/kamailio/push_redirect.sqlite).  Creates DIR if missing
# and makes it owned by $KAMAILIO_USER:$KAMAILIO_GROUP (kamailio:kamailio,
# the user Debian's kamailio package creates and its systemd unit and init
# script run Kamailio as), mode 0750; store files already in it are given
# to that user too.  Prints what it did.  Run as root.

set -eu

DIR=${1:-/var/lib/kamailio}
KAMAILIO_USER=${KAMAILIO_USER:-kamailio}
KAMAILIO_GROUP=${KAMAILIO_GROUP:-kamailio}

die() {
	printf 'install-store-dir: error: %s\n' "$*" >&2
	exit 1
}

[ "$(id -u)" -eq 0 ] || die "run as root (to give $DIR to $KAMAILIO_USER)"
id "$KAMAILIO_USER" >/dev/null 2>&1 ||
	die "no user '$KAMAILIO_USER': Debian's kamailio package creates it (apt-get install kamailio)"
getent group "$KAMAILIO_GROUP" >/dev/null 2>&1 ||
	die "no group '$KAMAILIO_GROUP'"

if [ -d "$DIR" ]; then
	what="existing folder"
else
	what="new folder"
fi
install -d -o "$KAMAILIO_USER" -g "$KAMAILIO_GROUP" -m 0750 "$DIR"
echo "push_redirect: store folder $DIR ($what): owner $KAMAILIO_USER:$KAMAILIO_GROUP, mode 0750"
# store files left by a Kamailio that ran as root
for f in "$DIR"/push_redirect.sqlite "$DIR"/push_redirect.sqlite-wal \
	"$DIR"/push_redirect.sqlite-shm "$DIR"/push_redirect.sqlite-gen; do
	[ -e "$f" ] || continue
	owner=$(stat -c %U:%G "$f")
	if [ "$owner" != "$KAMAILIO_USER:$KAMAILIO_GROUP" ]; then
		chown "$KAMAILIO_USER:$KAMAILIO_GROUP" "$f"
		echo "push_redirect: $f: owner $owner -> $KAMAILIO_USER:$KAMAILIO_GROUP"
	fi
done
