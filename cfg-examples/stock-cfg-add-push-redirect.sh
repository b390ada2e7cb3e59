#!/bin/sh
# stock-cfg-add-push-redirect.sh - add push_redirect to Debian's stock
# /etc/kamailio/kamailio.cfg (Kamailio 5.6, 6.0, 6.1), behind
# `#!define WITH_PUSH_REDIRECT`, the way the stock file switches its other
# features (WITH_AUTH, WITH_NAT, ...).
#
# Usage: stock-cfg-add-push-redirect.sh [--enable] CFG [OUT]
#
#   CFG       the stock kamailio.cfg (read)
#   OUT       where to write the result (default: CFG itself, after saving
#             it as CFG.orig)
#   --enable  also add `#!define WITH_PUSH_REDIRECT` under `#!KAMAILIO`
#             (else: define it there yourself, in kamailio-local.cfg, or
#             with `kamailio -A WITH_PUSH_REDIRECT`)
#
# What it adds (each block inside #!ifdef WITH_PUSH_REDIRECT ... #!endif),
# at lines the stock files of 5.6, 6.0 and 6.1 all have:
#   1. the feature's line in the header's list of features, before
#      "####### Include Local Config If Exists #########";
#   2. loadmodule "push_redirect.so" at the end of the Modules Section
#      (after tm and usrloc, which it binds), before
#      "# ----------------- setting module-specific parameters ---------------";
#   3. its parameters, before "####### Routing Logic ########";
#   4. in route[LOCATION], before "$avp(oexten) = $rU;" (after the alias
#      and speed-dial lookups, instead of lookup("location")): an
#      out-of-dialog MESSAGE or NOTIFY goes to route(PUSH_REDIRECT);
#   5. route[PUSH_REDIRECT] and failure_route[PUSH_FAILURE] at the end.
# Refuses a file that already has WITH_PUSH_REDIRECT, or lacks an anchor.

set -eu

ENABLE=
if [ "${1:-}" = --enable ]; then
	ENABLE=1
	shift
fi
[ $# -ge 1 ] && [ $# -le 2 ] || {
	echo "usage: $0 [--enable] CFG [OUT]" >&2
	exit 2
}
CFG=$1
OUT=${2:-$1}

die() {
	echo "stock-cfg-add-push-redirect: $*" >&2
	exit 1
}

[ -r "$CFG" ] || die "cannot read $CFG"
! grep -q WITH_PUSH_REDIRECT "$CFG" || die "$CFG already mentions WITH_PUSH_REDIRECT"

A_FEATURES='####### Include Local Config If Exists #########'
A_MODULES='# ----------------- setting module-specific parameters ---------------'
A_ROUTING='####### Routing Logic ########'
A_LOCATION='	$avp(oexten) = $rU;'
for a in "$A_FEATURES" "$A_MODULES" "$A_ROUTING" "$A_LOCATION"; do
	[ "$(grep -cxF -- "$a" "$CFG")" = 1 ] || die "$CFG: no single line '$a' (not a stock kamailio.cfg?)"
done

TMP=$(mktemp)
trap 'rm -f "$TMP"' EXIT

awk -v enable="$ENABLE" \
	-v a_features="$A_FEATURES" -v a_modules="$A_MODULES" \
	-v a_routing="$A_ROUTING" -v a_location="$A_LOCATION" '
NR == 1 && enable && $0 ~ /^#!KAMAILIO/ {
	print
	print "#!define WITH_PUSH_REDIRECT"
	next
}
$0 == a_features {
	print "# *** To forward PUSH requests (out-of-dialog MESSAGE, NOTIFY) between a"
	print "#     subscriber'"'"'s terminals when one answers 3xx, 4xx or nothing"
	print "#     (push_redirect module: package kamailio-push-redirect-module):"
	print "#     - define WITH_PUSH_REDIRECT"
	print "#     - the store of learned forwardings is"
	print "#       /var/lib/kamailio/push_redirect.sqlite (PUSH_REDIRECT_STORE),"
	print "#       in a folder the kamailio user can write"
	print ""
	print
	next
}
$0 == a_modules {
	print "#!ifdef WITH_PUSH_REDIRECT"
	print "#!trydef PUSH_REDIRECT_MODULE \"push_redirect.so\""
	print "loadmodule PUSH_REDIRECT_MODULE"
	print "#!endif"
	print ""
	print
	next
}
$0 == a_routing {
	print "#!ifdef WITH_PUSH_REDIRECT"
	print "# ----- push_redirect params -----"
	print "#!trydef PUSH_REDIRECT_STORE \"/var/lib/kamailio/push_redirect.sqlite\""
	print "modparam(\"push_redirect\", \"store\", PUSH_REDIRECT_STORE)"
	print "/* a terminal that does not answer leaves time to try the next one */"
	print "modparam(\"push_redirect\", \"branch_timeout\", 5000)"
	print "#!endif"
	print ""
	print
	next
}
$0 == a_location {
	print "#!ifdef WITH_PUSH_REDIRECT"
	print "\t# PUSH requests: to the terminals push_redirect picks, with failover"
	print "\tif (is_method(\"MESSAGE|NOTIFY\") && !has_totag()) {"
	print "\t\troute(PUSH_REDIRECT);"
	print "\t}"
	print "#!endif"
	print ""
	print
	next
}
{ print }
END {
	print ""
	print "#!ifdef WITH_PUSH_REDIRECT"
	print "# PUSH request (out-of-dialog MESSAGE or NOTIFY) to a local user: the"
	print "# stored forwarding or the registered terminals, first one(s) per"
	print "# fork_mode; a redirect or failure reply is handled in PUSH_FAILURE"
	print "route[PUSH_REDIRECT] {"
	print "\tif (!push_lookup()) {"
	print "\t\tsl_send_reply(\"404\", \"Not Found\");"
	print "\t\texit;"
	print "\t}"
	print "\tt_on_failure(\"PUSH_FAILURE\");"
	print "\troute(RELAY);"
	print "\texit;"
	print "}"
	print ""
	print "# a terminal answered 3xx, a failover code or nothing: follow its"
	print "# redirect or try the next terminal; else the reply goes to the sender"
	print "failure_route[PUSH_FAILURE] {"
	print "\tif (t_is_canceled()) exit;"
	print "\tif (push_redirect()) {"
	print "\t\tt_on_failure(\"PUSH_FAILURE\");"
	print "\t\tt_relay();"
	print "\t}"
	print "}"
	print "#!endif"
}
' "$CFG" >"$TMP"

if [ "$OUT" = "$CFG" ]; then
	cp -p "$CFG" "$CFG.orig"
	echo "stock-cfg-add-push-redirect: saved $CFG as $CFG.orig" >&2
fi
cat "$TMP" >"$OUT"
echo "stock-cfg-add-push-redirect: $OUT: push_redirect added behind WITH_PUSH_REDIRECT${ENABLE:+ (defined)}" >&2
