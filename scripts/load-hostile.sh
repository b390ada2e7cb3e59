#!/bin/bash
# load-hostile.sh - `make load-hostile`: push_redirect under a steady load
# while the terminals answer a hostile mix, on 127.0.0.1 only.
#
# Kamailio (children=4) with tests/e2e/cfg/push-redirect.cfg; seven AORs,
# each served by terminals that answer one way: 200; 302 to another
# terminal; 300 with 200 Contacts; 480 then a good terminal; 603; a 302 of
# garbage Contacts; silence (then a good terminal after branch_timeout).
# A sipp sender sends LOAD_RATE MESSAGEs/s for LOAD_SECONDS to random AORs.
#
# Reports: requests sent, final responses received (must be equal: nothing
# lost), crashes (Kamailio processes that died: must be 0), Kamailio's RSS
# before and after (all processes), CPU seconds per 10,000 requests.
# Exits non-zero if anything was lost or Kamailio crashed.
#
#   LOAD_RATE=300 LOAD_SECONDS=60 scripts/load-hostile.sh

set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RATE=${LOAD_RATE:-300}
SECONDS_=${LOAD_SECONDS:-60}
COUNT=$((RATE * SECONDS_))
WORK=$(mktemp -d /tmp/push_redirect-load.XXXXXX)
S=$ROOT/tests/e2e/scenarios
PORT=${LOAD_PORT:-5360}
PIDS=()
KPID=

cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	if [ -n "$KPID" ]; then
		kill -TERM -- "-$KPID" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$KPID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL -- "-$KPID" 2>/dev/null || true
	fi
	wait 2>/dev/null || true
}
trap cleanup EXIT

say() { printf 'load-hostile: %s\n' "$*"; }

[ -f "$ROOT/build/push_redirect.so" ] || { say "build/push_redirect.so missing: make build"; exit 1; }

# Kamailio's processes: the group led by $KPID.
kam_pids() { ps -e -o pid=,pgid= | awk -v g="$KPID" '$2 == g { print $1 }'; }
kam_rss_kb() { for p in $(kam_pids); do awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null; done | awk '{ s += $1 } END { print s + 0 }'; }
# private memory (pkg pool, libc heap: what a leak in the module would grow)
kam_private_kb() { for p in $(kam_pids); do awk '/^Private_Dirty:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null; done | awk '{ s += $1 } END { print s + 0 }'; }
# bytes of Kamailio's shared memory pool in use (transactions, usrloc, ...)
kam_shm_used() { kamcmd -s "unix:$WORK/ctl" core.shmmem 2>/dev/null | awk '$1 == "used:" { print $2; exit }'; }
mem_sample() { printf '%s\t%s\t%s\t%s\n' "$1" "$(kam_rss_kb)" "$(kam_private_kb)" "$(kam_shm_used)"; }
kam_cpu_ticks() { for p in $(kam_pids); do awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null; done | awk '{ s += $1 } END { print s + 0 }'; }

# --- Kamailio
say "work dir $WORK"
setsid kamailio -DD -E -f "$ROOT/tests/e2e/cfg/push-redirect.cfg" \
	-A "SIP_PORT=$PORT" -A CHILDREN=4 -A "CTL_SOCK=\"unix:$WORK/ctl\"" \
	-A "PR_MODULE=\"$ROOT/build/push_redirect.so\"" -A "PR_STORE=\"$WORK/store.sqlite\"" \
	-A 'ALLOWED_DOMAINS="localhost"' -A BRANCH_TIMEOUT=1000 -A QUIET \
	-Y "$WORK" -w "$WORK" >"$WORK/kamailio.log" 2>&1 &
KPID=$!
for _ in $(seq 100); do
	ss -lun "sport = :$PORT" | grep -q ":$PORT" && break
	sleep 0.1
done
ss -lun "sport = :$PORT" | grep -q ":$PORT" || { say "Kamailio did not start"; tail "$WORK/kamailio.log"; exit 1; }
sleep 1
NPROC_BEFORE=$(kam_pids | wc -l)

# --- terminals: term NAME SCENARIO EXTRA_HEADERS [sipp args...]; its port
# in $TPORT (sipp keeps the first value of a repeated -key)
TPORT=5399
term() {
	local name=$1 scen=$2 extra=$3; shift 3
	TPORT=$((TPORT + 1))
	sipp -sf "$S/$scen" -i 127.0.0.1 -p "$TPORT" -key extra "$extra" "$@" \
		-nostdin -timeout "$((SECONDS_ + 120))s" -trace_err -error_file "$WORK/$name.err" \
		>/dev/null 2>&1 &
	PIDS+=($!)
}
reg() { # aor contact q
	sipp -sf "$S/register.xml" -i 127.0.0.1 -p 0 -m 1 -nostdin -key extra "" -key cparams "" \
		-key aor "$1" -key contact "$2" -key q "$3" -key expires 3600 \
		-timeout 10s "127.0.0.1:$PORT" >/dev/null 2>&1 || { say "REGISTER $1 $2 failed"; exit 1; }
}

term ok uas_200.xml ""; P_OK=$TPORT
term ok2 uas_200.xml ""; P_OK2=$TPORT
term r302 uas_302_contact.xml "" -key contact "<sip:ok2@127.0.0.1:$P_OK2>"; P_302=$TPORT
many=$(for k in $(seq 199); do printf '<sip:x%s@localhost:9>;q=0.1,' "$k"; done)
term r300 uas_300.xml "$(printf '\r\nContact: %s<sip:ok@localhost:%s>;q=1' "$many" "$P_OK")"; P_300=$TPORT
term busy uas_480.xml ""; P_480=$TPORT
term decline uas_603.xml ""; P_603=$TPORT
term garbage uas_302.xml "$(printf '\r\nContact: <sip:@@>, "unterminated <tel:+1>, <http://x/>, <sip:%s' "$(head -c 300 /dev/zero | tr '\0' 'z')")"; P_GARB=$TPORT
term silent uas_noanswer.xml ""; P_SIL=$TPORT
sleep 1

reg sip:u1@example.com "sip:ok@127.0.0.1:$P_OK" 1.0
reg sip:u2@example.com "sip:r302@127.0.0.1:$P_302" 1.0
reg sip:u2@example.com "sip:ok2@127.0.0.1:$P_OK2" 0.5
reg sip:u3@example.com "sip:r300@127.0.0.1:$P_300" 1.0
reg sip:u4@example.com "sip:busy@127.0.0.1:$P_480" 1.0
reg sip:u4@example.com "sip:ok@127.0.0.1:$P_OK" 0.5
reg sip:u5@example.com "sip:decline@127.0.0.1:$P_603" 1.0
reg sip:u6@example.com "sip:garbage@127.0.0.1:$P_GARB" 1.0
reg sip:u6@example.com "sip:ok2@127.0.0.1:$P_OK2" 0.5
reg sip:u7@example.com "sip:silent@127.0.0.1:$P_SIL" 1.0
reg sip:u7@example.com "sip:ok@127.0.0.1:$P_OK" 0.5

{
	echo RANDOM
	for u in 1 2 3 4 5 6 7; do echo "sip:u$u@example.com;"; done
} >"$WORK/aors.csv"

# Warm-up (a tenth of the run, at least 5 s): the first touch of Kamailio's
# shared and private memory pools grows RSS once; "before" is after it.
WARM=$(( SECONDS_ / 10 > 5 ? SECONDS_ / 10 : 5 ))
say "warm-up: $((RATE * WARM)) MESSAGEs in ${WARM}s"
( cd "$WORK" && sipp -sf "$ROOT/scripts/load/sender_inf.xml" -inf "$WORK/aors.csv" \
	-i 127.0.0.1 -p 0 -key extra "" -key ctype text/plain \
	-m "$((RATE * WARM))" -r "$RATE" -l 5000 -recv_timeout 40000 -timeout "$((WARM + 60))s" \
	-nostdin "127.0.0.1:$PORT" >/dev/null 2>&1 ) || true
# tm frees a transaction 5 s after its final reply: let the warm-up's go
SETTLE=${LOAD_SETTLE:-10}
sleep "$SETTLE"
SHM0=$(kam_shm_used)
RSS0=$(kam_rss_kb)
CPU0=$(kam_cpu_ticks)
say "sending $COUNT MESSAGEs at $RATE/s for ${SECONDS_}s to 7 AORs (random) ..."
# memory every LOAD_SAMPLE seconds while the load runs (bounded: the run's
# length plus a minute)
SAMPLE=${LOAD_SAMPLE:-10}
printf 'second\trss_kb\tprivate_kb\tshm_used\n' >"$WORK/mem.tsv"
(
	for k in $(seq 0 "$SAMPLE" "$((SECONDS_ + 60))"); do
		[ -e "$WORK/load.done" ] && break
		mem_sample "$k" >>"$WORK/mem.tsv"
		sleep "$SAMPLE"
	done
) &
SAMPLER=$!
PIDS+=("$SAMPLER")
set +e
( cd "$WORK" && sipp -sf "$ROOT/scripts/load/sender_inf.xml" -inf "$WORK/aors.csv" \
	-i 127.0.0.1 -p 0 -key extra "" -key ctype text/plain \
	-m "$COUNT" -r "$RATE" -l 5000 -recv_timeout 40000 -timeout "$((SECONDS_ + 90))s" \
	-nostdin -trace_logs -log_file "$WORK/sender.log" -trace_stat -stf "$WORK/sender.csv" \
	"127.0.0.1:$PORT" >/dev/null 2>&1 )
SIPP_RC=$?
set -e
touch "$WORK/load.done"
wait "$SAMPLER" 2>/dev/null || true
LAST_IN_RUN=$(tail -1 "$WORK/mem.tsv")
sleep "$SETTLE"
mem_sample end >>"$WORK/mem.tsv"
SHM1=$(kam_shm_used)
CPU1=$(kam_cpu_ticks)
RSS1=$(kam_rss_kb)
NPROC_AFTER=$(kam_pids | wc -l)

finals=$(grep -c '^FINAL ' "$WORK/sender.log" 2>/dev/null || echo 0)
dups=$(awk '/^FINAL /{print $3}' "$WORK/sender.log" | sort | uniq -d | wc -l)
sent=$(awk -F';' 'NR==1 { for (i=1;i<=NF;i++) if ($i=="OutgoingCall(C)") c=i } END { print $c + 0 }' "$WORK/sender.csv" 2>/dev/null || echo "$COUNT")
[ "$sent" -gt 0 ] || sent=$COUNT
codes=$(awk '/^FINAL /{print $2}' "$WORK/sender.log" | sort | uniq -c | awk '{printf "%s x%s  ", $2, $1}')
crashes=$((NPROC_BEFORE - NPROC_AFTER))
crash_lines=$(grep -ciE 'segfault|signal 11|core dumped|panic' "$WORK/kamailio.log" || true)
tck=$(getconf CLK_TCK)
cpu_s=$(awk -v a="$CPU0" -v b="$CPU1" -v t="$tck" 'BEGIN { printf "%.2f", (b - a) / t }')
cpu_10k=$(awk -v c="$cpu_s" -v n="$sent" 'BEGIN { printf "%.3f", c * 10000 / n }')

echo
echo "| figure | value |"
echo "|---|---|"
echo "| requests sent | $sent |"
echo "| final responses received | $finals (duplicates: $dups) |"
echo "| final codes | $codes|"
echo "| Kamailio processes died (crashes) | $crashes (crash lines in log: $crash_lines) |"
echo "| Kamailio RSS after warm-up / after the run (all processes) | $((RSS0 / 1024)) MiB / $((RSS1 / 1024)) MiB |"
echo "| Kamailio CPU | ${cpu_s} s, ${cpu_10k} s per 10,000 requests |"
# flat: what grew over the second half of the run (from the sample nearest
# the middle to the last one taken while the load ran), per 10,000 requests
# of that half
half=$(awk -F'\t' -v m="$((SECONDS_ / 2))" 'NR > 1 && $1 != "end" && $1 >= m { print; exit }' "$WORK/mem.tsv")
growth() { # column
	awk -F'\t' -v c="$1" -v a="$half" -v b="$LAST_IN_RUN" -v r="$RATE" 'BEGIN {
		split(a, x, "\t"); split(b, y, "\t"); d = y[c] - x[c]; n = r * (y[1] - x[1]);
		printf "%+d kB from second %s to %s (%+.1f kB per 10,000 requests)", d, x[1], y[1], (n > 0 ? d * 10000 / n : 0) }'
}
echo "| RSS growth, second half of the run (all processes) | $(growth 2) |"
echo "| private memory growth (pkg pools, libc heap), second half | $(growth 3) |"
echo "| shm in use, idle after warm-up / idle after the run (${SETTLE} s settle each) | ${SHM0} / ${SHM1} bytes ($((SHM1 - SHM0)) bytes) |"
echo
echo "Memory during the run (all Kamailio processes; second: since the load started):"
column -t "$WORK/mem.tsv" 2>/dev/null || cat "$WORK/mem.tsv"
echo "| sipp exit | $SIPP_RC |"
echo
stats=$(kamcmd -s "unix:$WORK/ctl" stats.get_statistics push_redirect: 2>/dev/null | tr '\n' ' ')
say "module statistics: $stats"

if [ "$finals" -ne "$sent" ] || [ "$dups" -ne 0 ] || [ "$crashes" -ne 0 ] || [ "$crash_lines" -ne 0 ]; then
	say "FAILED: lost or duplicated finals, or a crash (logs in $WORK)"
	exit 1
fi
say "ok: nothing lost, no crash"
rm -rf "$WORK"
