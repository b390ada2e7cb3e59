#!/bin/bash
# crash-loop.sh - issue 14's case, many times: a first terminal that is
# silent, answers 302 or 480, has nothing listening on its port, or (TCP)
# drops the connection; a second one that answers 200; both over TCP, or
# both over UDP; five MESSAGEs 200 ms apart, branch_timeout 2 s, then a
# clean stop (half the runs SIGTERM to the main process, half SIGTERM to
# every process). Any process that dies by a signal, any core file
# (printed with its gdb backtrace) or a main process that does not exit 0
# by itself fails the run.
#
#   CRASH_LOOP_RUNS=N   runs per transport, over its variants in turn (500:
#                       500 over TCP and 500 over UDP)
#   CRASH_LOOP_PAR=K    runs at once (3)
#   CRASH_LOOP_VALGRIND=1  every Kamailio process under valgrind memcheck
#                       (slow: use a small CRASH_LOOP_RUNS)
#   CRASH_LOOP_ONLY=tcp|udp  one transport only; =stock: the UDP loop through
#                       stock Kamailio (registrar + uac_redirect, no module)
#   CRASH_LOOP_STOP=main|group  stop every run that way only
#   CRASH_LOOP_STOCK_MODULE=1  the stock loop with push_redirect loaded (never
#                       called): what its process life cycle alone changes
#
# Core files: Kamailio runs in each case's folder (-w) with RLIMIT_CORE
# unlimited; the kernel's core_pattern decides their name ("core" on
# Debian; with kernel.core_uses_pid=1, core.PID).
set -uo pipefail
cd "$(dirname "$0")/.."
ulimit -c unlimited
export CRASH_LOOP_RUNS=${CRASH_LOOP_RUNS:-500}
export CRASH_LOOP_PAR=${CRASH_LOOP_PAR:-3}
case "${CRASH_LOOP_ONLY:-}" in
tcp) filter=crash_loop_tcp ;;
udp) filter=crash_loop_udp ;;
stock) filter=crash_loop_stock_udp ;;
*) filter="crash_loop_tcp crash_loop_udp" ;;
esac
if [ "${CRASH_LOOP_VALGRIND:-0}" = 1 ]; then
	export VG_DIR=${VG_DIR:-/tmp/push_redirect-valgrind}
	rm -rf "$VG_DIR"
	export KAMAILIO="$PWD/scripts/kamailio-valgrind.sh" E2E_READY_SECS=60 \
		E2E_STOP_SECS=30 E2E_SLOW=5
fi
start=$(date +%s)
${CARGO:-cargo} test --release --locked --test e2e -- --ignored \
	--test-threads=1 --nocapture $filter 2>&1 |
	grep --line-buffered -E '^---|^#[0-9]|lock=|rdi=|still running|^! |^\[crash|^test |test result|core |^#|^log:|main process|FAILED|panicked'
rc=${PIPESTATUS[0]}
echo "crash-loop: $(( $(date +%s) - start )) s, rc=$rc"
if [ "${CRASH_LOOP_VALGRIND:-0}" = 1 ]; then
	scripts/valgrind-summary.sh "$VG_DIR" || rc=1
fi
exit "$rc"
