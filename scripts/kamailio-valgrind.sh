#!/bin/sh
# kamailio-valgrind.sh - run Kamailio under valgrind memcheck (used by
# `make e2e-valgrind` as KAMAILIO=...). Every process (Kamailio forks its
# workers; valgrind follows forks) writes its own log under $VG_DIR.
VG_DIR=${VG_DIR:-/tmp/push_redirect-valgrind}
mkdir -p "$VG_DIR"
exec valgrind --tool=memcheck --error-limit=no --num-callers=30 \
	--leak-check=no --track-origins=no \
	--suppressions="$(dirname "$0")/kamailio-valgrind.supp" \
	--log-file="$VG_DIR/vg.%p.log" \
	kamailio "$@"
