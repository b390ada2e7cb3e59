#!/bin/bash
# deb-smoke.sh - the package path as an operator takes it, on a fresh
# Debian 12 or 13, as root: make deb, dpkg -i, Kamailio started as its
# service starts it, F1 and F6 (and F6 again after a restart) with sipp,
# the counts, and lintian's report of the package.
#
# Usage: scripts/deb-smoke.sh [PACKAGE.deb]     (default: make deb's)
#
# "As its service": the ExecStart of the installed kamailio.service, with
# its Environment= defaults and /etc/default/kamailio, run as its
# User=/Group= (setpriv: real and effective ids and the user's groups, as
# systemd sets them), daemonized (Type=forking), its RuntimeDirectory
# /run/kamailio made as systemd makes it (kamailio, 0770); systemd itself is
# not needed (a chroot has none). CFGFILE is the package's example
# (/usr/share/doc/kamailio-push-redirect-module/examples/push-redirect.cfg):
# push_redirect.so from Kamailio's module folder, the store at its default
# path /var/lib/kamailio/push_redirect.sqlite, udp:127.0.0.1:5060.
# SMOKE_PORT=<port> puts it on another port (a cfg that defines SIP_PORT and
# includes the example); SMOKE_N requests per flow (20). Terminals use
# UDP ports 5071-5074 on 127.0.0.1. Exits 0 only if every count is as
# expected; stops what it started.

set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PKG=kamailio-push-redirect-module
N=${SMOKE_N:-20}
PORT=${SMOKE_PORT:-5060}
S="$ROOT/tests/e2e/scenarios"
say() { printf 'deb-smoke: %s\n' "$*"; }
die() {
	say "error: $*" >&2
	exit 1
}
[ "$(id -u)" -eq 0 ] || die "run as root (dpkg -i, the service's user)"

# --- the package
if [ $# -ge 1 ]; then
	DEB=$1
else
	say "make deb"
	make -C "$ROOT" deb | tee /tmp/deb-smoke.make.log
	DEB=$(sed -n 's/^push_redirect: package //p' /tmp/deb-smoke.make.log | tail -n 1)
fi
[ -f "$DEB" ] || die "no package ($DEB)"
"$ROOT/scripts/install-deps.sh" run # sipp for the terminals

say "dpkg -i $DEB"
dpkg -i "$DEB"
dpkg-query -W -f='${Package} ${Version} ${Status}\n  Depends: ${Depends}\n' "$PKG"
MODDIR=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)/kamailio/modules
ls -l "$MODDIR/push_redirect.so"
say "the store's folder after postinst: $(stat -c '%n %U:%G %a' /var/lib/kamailio)"
[ "$(stat -c '%U:%G %a' /var/lib/kamailio)" = "kamailio:kamailio 750" ] ||
	die "/var/lib/kamailio is not kamailio:kamailio 0750"

# --- the service, as its unit starts it
# (looked up only now: on a bare machine kamailio, and its unit, come with
# make deb's dependencies above)
UNIT=
for u in /lib/systemd/system/kamailio.service /usr/lib/systemd/system/kamailio.service; do
	[ -f "$u" ] && UNIT=$u && break
done
[ -n "$UNIT" ] || die "no kamailio.service (Debian's kamailio package ships it)"
exec_start=$(sed -n 's/^ExecStart=//p' "$UNIT")
unit_user=$(sed -n 's/^User=//p' "$UNIT")
unit_group=$(sed -n 's/^Group=//p' "$UNIT")
pidfile=$(sed -n 's/^PIDFile=//p' "$UNIT")
rundir=/run/$(sed -n 's/^RuntimeDirectory=//p' "$UNIT")
runmode=$(sed -n 's/^RuntimeDirectoryMode=//p' "$UNIT")
say "unit $UNIT: User=$unit_user Group=$unit_group ExecStart=$exec_start"

EXAMPLE=/usr/share/doc/$PKG/examples/push-redirect.cfg
[ -f "$EXAMPLE" ] || die "$EXAMPLE missing from the package"
WORK=$(mktemp -d /tmp/push_redirect-smoke.XXXXXX)
chmod 0755 "$WORK"
CFG=$EXAMPLE
if [ "$PORT" != 5060 ]; then
	CFG=$WORK/kamailio.cfg
	printf '#!KAMAILIO\n#!define SIP_PORT %s\ninclude_file "%s"\n' "$PORT" "$EXAMPLE" >"$CFG"
	chmod 0644 "$CFG"
fi

KPID=
TPIDS=()
cleanup() {
	for p in "${TPIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	if [ -n "$KPID" ]; then
		kill -TERM -- "-$KPID" 2>/dev/null || true
	fi
}
trap cleanup EXIT

# the unit's environment: its Environment= lines, then /etc/default/kamailio
# (EnvironmentFile=), then CFGFILE as the operator sets it
unit_env() {
	sed -n "s/^Environment=//p" "$UNIT" | tr -d "'\""
	[ ! -r /etc/default/kamailio ] ||
		grep -E '^[A-Z_]+=' /etc/default/kamailio || true
	echo "CFGFILE=$CFG"
}

start_service() {
	# a Kamailio service of this machine (systemd starts one after
	# apt-get install kamailio) holds the unit's PID file and port
	if [ -s "$pidfile" ] && [ -d "/proc/$(cat "$pidfile")" ]; then
		die "a Kamailio runs with $pidfile (pid $(cat "$pidfile")): stop it first (systemctl stop kamailio)"
	fi
	# RuntimeDirectory=, as systemd makes it before ExecStart
	install -d -o "$unit_user" -g "$unit_group" -m "${runmode:-0755}" "$rundir"
	rm -f "$pidfile"
	say "start: setpriv --reuid=$unit_user --regid=$unit_group --init-groups -- env $(unit_env | tr '\n' ' ')sh -c 'exec $exec_start'"
	# shellcheck disable=SC2046
	(cd / && setpriv --reuid="$unit_user" --regid="$unit_group" --init-groups -- \
		env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin $(unit_env) sh -c "exec $exec_start") ||
		die "ExecStart failed (the log is in syslog, facility LOCAL0)"
	for _ in $(seq 100); do
		[ -s "$pidfile" ] && break
		sleep 0.1
	done
	[ -s "$pidfile" ] || die "no PID in $pidfile"
	main=$(cat "$pidfile")
	KPID=$(stat_field "$main" 3)
	[ -n "$KPID" ] || die "kamailio $main is gone"
	say "kamailio main process $main (group $KPID); its processes (user, pid, command):"
	for p in $(group_pids); do
		printf '    %s %s %s\n' "$(stat -c %U "/proc/$p")" "$p" \
			"$(tr '\0' ' ' <"/proc/$p/cmdline")"
		[ "$(stat -c %U "/proc/$p")" = "$unit_user" ] ||
			die "process $p does not run as $unit_user"
	done
}

# field N (1: state, 2: ppid, 3: process group) of /proc/PID/stat, after
# the command name (no ps: procps may not be installed)
stat_field() { # pid n
	local line
	read -r line <"/proc/$1/stat" 2>/dev/null || return 0
	echo "${line##*) }" | awk -v n="$2" '{ print $n }'
}

# the processes of the service's group, zombies left out (without an init
# that reaps, the daemon's first child may stay one)
group_pids() {
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v g="$KPID" \
		'{ pid = $1; sub(/^.*\) /, ""); if ($3 == g && $1 != "Z") print pid }'
}

alive() {
	[ -n "$(group_pids)" ]
}

stop_service() {
	kill -TERM -- "-$KPID"
	for _ in $(seq 100); do
		alive || break
		sleep 0.1
	done
	! alive || die "kamailio did not stop within 10 s"
	say "stopped (SIGTERM to its processes, as systemctl stop)"
	KPID=
}

terminal() { # name port scenario [contact]
	local name=$1 port=$2 sc=$3 contact=${4:-}
	local args=(-sf "$S/$sc" -i 127.0.0.1 -p "$port" -key extra "" -nostdin
		-trace_logs -log_file "$WORK/$name.log")
	[ -z "$contact" ] || args+=(-key contact "<$contact>")
	sipp "${args[@]}" >/dev/null 2>&1 &
	TPIDS+=($!)
}

register() { # aor name port q
	sipp -sf "$S/register.xml" -i 127.0.0.1 -p 5090 -m 1 -nostdin -key extra "" -key cparams "" \
		-key aor "$1" -key contact "sip:$2@127.0.0.1:$3" -key q "$4" -key expires 3600 \
		-recv_timeout 5000 -timeout 10s -trace_logs -log_file "$WORK/register.log" \
		"127.0.0.1:$PORT" >/dev/null 2>&1 || die "REGISTER $2 for $1 failed"
}

SENT=0
send() { # aor count -> sets OK (200 finals)
	SENT=$((SENT + 1))
	local log="$WORK/sender.$SENT.log"
	sipp -sf "$S/sender_message.xml" -i 127.0.0.1 -p 5091 -m "$2" -r 50 -nostdin \
		-key ruri "$1" -key ctype text/plain -key extra "" -key event "" -key totag "" \
		-recv_timeout 10000 -timeout 60s -trace_logs -log_file "$log" \
		"127.0.0.1:$PORT" >/dev/null 2>&1 || true
	OK=$(grep -c '^FINAL 200 ' "$log" || true)
	ALL=$(grep -c '^FINAL ' "$log" || true)
}

received() { # name: requests its sipp handled (one "RECV MESSAGE <Call-ID>" each)
	local n
	n=$(grep -c '^RECV MESSAGE ' "$WORK/$1.log" 2>/dev/null) || true
	echo "${n:-0}"
}

prstat() { # name
	kamcmd stats.get_statistics push_redirect: 2>/dev/null |
		awk -F= -v k="push_redirect:$1" '{ gsub(/[ \t]/, ""); } $1 == k { print $2 }'
}

FAIL=0
check() { # what got want
	if [ "$2" = "$3" ]; then
		say "  ok   $1: $2"
	else
		say "  FAIL $1: $2, expected $3"
		FAIL=1
	fi
}

start_service
sleep 0.5
# a store left by an earlier run: the test AORs start without forwardings
for aor in sip:u1@example.com sip:u2@example.com; do
	kamcmd push_redirect.remove "$aor" >/dev/null 2>&1 || true
done
terminal t2 5072 uas_200.xml
terminal t1 5071 uas_302_contact.xml "sip:t2@127.0.0.1:5072"
terminal t4 5074 uas_200.xml
terminal t3 5073 uas_301_contact.xml "sip:t4@127.0.0.1:5074"
sleep 0.5

say "F1: t1 answers 302 with Contact t2; $N MESSAGEs to sip:u1@example.com"
register sip:u1@example.com t1 5071 1.0
register sip:u1@example.com t2 5072 0.5
send sip:u1@example.com "$N"
sleep 1
check "F1 sender: 200 finals (of $ALL finals)" "$OK" "$N"
check "F1 t1 (302) received" "$(received t1)" "$N"
check "F1 t2 (200) received" "$(received t2)" "$N"
check "F1 redirects_followed" "$(prstat redirects_followed)" "$N"

say "F6: t3 answers 301 with Contact t4; 1 MESSAGE, then $N to sip:u2@example.com"
register sip:u2@example.com t3 5073 1.0
register sip:u2@example.com t4 5074 0.5
send sip:u2@example.com 1
check "F6 learning request: 200" "$OK" 1
send sip:u2@example.com "$N"
sleep 1
check "F6 sender: 200 finals (of $ALL finals)" "$OK" "$N"
check "F6 t3 (301) received" "$(received t3)" 1
check "F6 t4 (200) received" "$(received t4)" $((N + 1))
check "F6 forwardings_learned" "$(prstat forwardings_learned)" 1
check "F6 forwardings_applied" "$(prstat forwardings_applied)" "$N"
kamcmd push_redirect.list | sed 's/^/    /'

say "restart"
stop_service
start_service
sleep 0.5
say "F6 after the restart: the terminals register again (usrloc in memory); $N MESSAGEs"
register sip:u2@example.com t3 5073 1.0
register sip:u2@example.com t4 5074 0.5
send sip:u2@example.com "$N"
sleep 1
check "F6 sender: 200 finals (of $ALL finals)" "$OK" "$N"
check "F6 t3 (301) received, in all" "$(received t3)" 1
check "F6 t4 (200) received, in all" "$(received t4)" $((2 * N + 1))
check "F6 forwardings_applied" "$(prstat forwardings_applied)" "$N"
say "the default store:"
ls -l /var/lib/kamailio | sed 's/^/    /'
stop_service

say "lintian --pedantic --display-info --show-overrides $(basename "$DEB"):"
lintian --pedantic --display-info --show-overrides "$DEB" 2>&1 | grep -v '^N:' || true
if [ "$FAIL" = 0 ]; then
	say "PASS (work folder $WORK)"
else
	say "FAIL (work folder $WORK)"
fi
exit "$FAIL"
