#!/bin/bash
# fuzz/run.sh - what `make fuzz` runs (see fuzz/README.md).
#
#   FUZZ_SECONDS=600      time per target
#   FUZZ_TARGETS="reply_parser engine c_abi history_info"
#   FUZZ_JOBS=1           >1: libFuzzer -fork=N (N processes per target,
#                         crashes recorded and fuzzing goes on)
#   FUZZ_MAX_RESTARTS=5   with FUZZ_JOBS=1, libFuzzer stops at a crash: it is
#                         restarted (same corpus) for the time left, so often
#   FUZZ_SANITIZER=address  (or none)
#
# 1. installs what is missing: a C++ compiler (libFuzzer is built from
#    source by libfuzzer-sys), cargo-fuzz (cargo install);
# 2. builds the targets instrumented (cargo fuzz build; nightly -Z flags on
#    the stable toolchain through RUSTC_BOOTSTRAP=1; without cargo-fuzz the
#    same flags are given to cargo build directly);
# 3. seeds fuzz/corpus/reply_parser (if empty) from tests/data/*.sip,
#    fuzz/seeds/reply_parser and the regression inputs;
# 4. runs each target in turn for FUZZ_SECONDS and prints its run time,
#    executions, exec/s, corpus size and crashes;
# 5. turns every new crash (or timeout / OOM) into a regression input under
#    tests/data/fuzz/<target>/open-<artifact>[.case], replayed by
#    tests/fuzz_regressions.rs.

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FUZZ_SECONDS=${FUZZ_SECONDS:-600}
FUZZ_TARGETS=${FUZZ_TARGETS:-reply_parser engine c_abi history_info}
FUZZ_JOBS=${FUZZ_JOBS:-1}
FUZZ_MAX_RESTARTS=${FUZZ_MAX_RESTARTS:-5}
FUZZ_SANITIZER=${FUZZ_SANITIZER:-address}
CARGO=${CARGO:-cargo}
export RUSTC_BOOTSTRAP=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}
HOST=$(rustc -vV | sed -n 's/^host: //p')
BIN=$ROOT/fuzz/target/$HOST/release
LOGS=$ROOT/fuzz/target/fuzz-logs
mkdir -p "$LOGS"

say() { echo "fuzz: $*" >&2; }

# ------------------------------------------------------------ 1. install
if ! command -v c++ >/dev/null && ! command -v clang++ >/dev/null; then
	if [ "$(id -u)" -eq 0 ]; then
		say "installing clang (libFuzzer is built from source)"
		export DEBIAN_FRONTEND=noninteractive
		apt-get -q update >/dev/null
		apt-get -q install -y --no-install-recommends clang libc6-dev >/dev/null
	else
		say "no C++ compiler: install clang or g++" && exit 1
	fi
fi
if ! $CARGO fuzz --version >/dev/null 2>&1; then
	say "installing cargo-fuzz (cargo install)"
	$CARGO install cargo-fuzz --locked || say "cargo-fuzz could not be installed: building with cargo directly"
fi

# ------------------------------------------------------------ 2. build
if $CARGO fuzz --version >/dev/null 2>&1; then
	say "building with $($CARGO fuzz --version) (RUSTC_BOOTSTRAP=1, sanitizer=$FUZZ_SANITIZER)"
	for t in $FUZZ_TARGETS; do
		$CARGO fuzz build --sanitizer "$FUZZ_SANITIZER" "$t"
	done
else
	flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
	flags="$flags -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
	flags="$flags -Cllvm-args=-sanitizer-coverage-pc-table"
	flags="$flags -Cllvm-args=-sanitizer-coverage-trace-compares"
	flags="$flags -Cllvm-args=-sanitizer-coverage-stack-depth"
	flags="$flags --cfg fuzzing -Cdebug-assertions -Ccodegen-units=1"
	[ "$FUZZ_SANITIZER" = none ] || flags="$flags -Zsanitizer=$FUZZ_SANITIZER"
	say "building with cargo build (RUSTFLAGS: $flags)"
	bins=""
	for t in $FUZZ_TARGETS; do bins="$bins --bin $t"; done
	# shellcheck disable=SC2086
	RUSTFLAGS="$flags" $CARGO build --manifest-path fuzz/Cargo.toml --release \
		--target "$HOST" $bins
fi

# ------------------------------------------------------------ 3. seeds
seed_reply_parser() {
	local dir=fuzz/corpus/reply_parser
	mkdir -p "$dir"
	if [ -z "$(ls -A "$dir")" ]; then
		cp tests/data/*.sip "$dir"/
		cp fuzz/seeds/reply_parser/* "$dir"/
		if [ -d tests/data/fuzz/reply_parser ]; then
			for f in tests/data/fuzz/reply_parser/*; do
				[ -f "$f" ] && cp "$f" "$dir/regression-$(basename "$f")"
			done
		fi
		say "seeded $dir with $(ls "$dir" | wc -l) replies"
	fi
}
seed_reply_parser
for t in $FUZZ_TARGETS; do mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"; done

# ------------------------------------------------------------ 4. run
declare -A R_TIME R_EXECS R_CORPUS R_CRASHES R_NEW R_KNOWN
stat_of() { sed -n "s/^stat::$1: *//p" "$2" | tail -1; }

for t in $FUZZ_TARGETS; do
	corpus=fuzz/corpus/$t
	arts=fuzz/artifacts/$t
	before=$(ls "$arts" | sort)
	args=(-print_final_stats=1 -timeout=10 "-artifact_prefix=$arts/")
	case $t in
	reply_parser | engine | history_info) args+=("-dict=fuzz/dict/sip.dict") ;;
	esac
	log=$LOGS/$t.log
	: >"$log"
	start=$(date +%s)
	execs=0
	say "$t: fuzzing for ${FUZZ_SECONDS}s (log: $log)"
	if [ "$FUZZ_JOBS" -gt 1 ]; then
		"$BIN/$t" "${args[@]}" -fork="$FUZZ_JOBS" -ignore_crashes=1 -ignore_timeouts=1 \
			-ignore_ooms=1 -max_total_time="$FUZZ_SECONDS" "$corpus" >>"$log" 2>&1 || true
		# "#N: cov: .. exec/s: .. oom/timeout/crash: a/b/c time: Ts job: .."
		execs=$(grep -E '^#[0-9]+: cov' "$log" | tail -1 | sed -E 's/^#([0-9]+):.*/\1/')
		execs=${execs:-0}
	else
		runs=0
		while :; do
			left=$((FUZZ_SECONDS - ($(date +%s) - start)))
			[ "$left" -ge 5 ] || break
			one=$LOGS/$t.run$runs.log
			rc=0
			"$BIN/$t" "${args[@]}" -max_total_time="$left" "$corpus" >"$one" 2>&1 || rc=$?
			cat "$one" >>"$log"
			n=$(stat_of number_of_executed_units "$one")
			execs=$((execs + ${n:-0}))
			runs=$((runs + 1))
			[ "$rc" -ne 0 ] || break
			say "$t: stopped with rc=$rc (crash?), run $runs of at most $((FUZZ_MAX_RESTARTS + 1))"
			[ "$runs" -le "$FUZZ_MAX_RESTARTS" ] || break
			# A target that dies at once (no executions) would loop: stop.
			[ "${n:-0}" -gt 0 ] || break
		done
	fi
	secs=$(($(date +%s) - start))
	new=$(comm -13 <(echo "$before") <(ls "$arts" | sort) | grep -E '^(crash|timeout|oom|leak)-' || true)
	R_TIME[$t]=$secs
	R_EXECS[$t]=$execs
	R_CORPUS[$t]=$(ls "$corpus" | wc -l)
	R_CRASHES[$t]=$(echo -n "$new" | grep -c . || true)
	R_NEW[$t]=$new
	# Known (reported, open) bugs the target reached: tolerated, see README.
	R_KNOWN[$t]=$(sed -n 's/^fuzz: known bug \([^ ]*\) reached.*/\1/p' "$log" | sort -u | tr '\n' ' ')
	say "$t: ${secs}s, ${execs} executions ($((execs / (secs > 0 ? secs : 1))) exec/s), corpus ${R_CORPUS[$t]}, new crashes ${R_CRASHES[$t]}"

	# -------------------------------------------------- 5. regressions
	if [ -n "$new" ]; then
		mkdir -p "tests/data/fuzz/$t"
		for a in $new; do
			case $t in
			reply_parser | history_info)
				cp "$arts/$a" "tests/data/fuzz/$t/open-$a"
				;;
			*)
				# The target writes the case it runs (text form), then
				# crashes again on it.
				PR_FUZZ_EXPORT="tests/data/fuzz/$t/open-$a.case" \
					"$BIN/$t" "$arts/$a" >"$LOGS/$t.$a.replay.log" 2>&1 || true
				;;
			esac
			say "$t: $a -> tests/data/fuzz/$t/open-$a$(case $t in reply_parser | history_info) ;; *) echo .case ;; esac)"
		done
	fi
done

echo
printf '%-14s %8s %14s %9s %8s %8s  %s\n' target seconds executions exec/s corpus crashes \
	"known bugs reached"
for t in $FUZZ_TARGETS; do
	s=${R_TIME[$t]}
	printf '%-14s %8s %14s %9s %8s %8s  %s\n' "$t" "$s" "${R_EXECS[$t]}" \
		"$((R_EXECS[$t] / (s > 0 ? s : 1)))" "${R_CORPUS[$t]}" "${R_CRASHES[$t]}" \
		"${R_KNOWN[$t]:--}"
done
total=0
for t in $FUZZ_TARGETS; do total=$((total + R_CRASHES[$t])); done
if [ "$total" -gt 0 ]; then
	echo
	echo "New crashes (regression inputs written under tests/data/fuzz/, named open-*):"
	for t in $FUZZ_TARGETS; do
		for a in ${R_NEW[$t]}; do echo "  $t: fuzz/artifacts/$t/$a"; done
	done
	echo "Replay: cargo test --test fuzz_regressions -- --ignored"
fi
