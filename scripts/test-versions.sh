#!/bin/bash
# test-versions.sh - `make test-versions`: the whole end-to-end suite
# (tests/e2e, every case) against every Kamailio of scripts/kamailio-versions
# that this machine does not run itself (`make test` covers that one).
#
#   package SUITE  in a debootstrapped root of SUITE with its kamailio
#                  package (scripts/kamailio-root.sh); the Rust crate and the
#                  module are built in there, against that version's source
#   source SUITE   Kamailio built from SUITE's source package under .cache/
#                  (scripts/kamailio-build.sh); the module is built against
#                  that tree, the suite runs with that kamailio and kamcmd
#
# Each module goes to build/<version>/push_redirect.so (build/push_redirect.so
# stays the installed Kamailio's).  Roots, Kamailio builds and cargo's
# targets are cached under .cache/: a second run rebuilds only what changed.
#
# Prints every case's result per version, a "<version>: N passed, N failed"
# line per version, the wall times, and exits non-zero if any case failed
# or a version could not be set up.  Logs: .cache/test-versions/.
#
#   TEST_VERSIONS="6.0 6.1"   only these series (default: every one of the
#                             table that is not the installed one)
#   E2E_FILTER=push_f         only the cases whose name holds this

set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TABLE="$ROOT/scripts/kamailio-versions"
LOGDIR="$ROOT/.cache/test-versions"
# the suite as make test-e2e runs it (without the stock control of the crash
# loop), or the cases E2E_FILTER names
E2E_ARGS="--release --locked --test e2e -- --ignored --test-threads=1 ${E2E_FILTER:---skip crash_loop_stock}"
mkdir -p "$LOGDIR"
T0=$(date +%s)

say() { printf 'test-versions: %s\n' "$*"; }

upstream_of() { echo "$1" | sed -e 's/^[0-9]*://' -e 's/-[^-]*$//'; }

installed=$(dpkg-query -W -f='${db:Status-Abbrev}|${Version}' kamailio 2>/dev/null |
	sed -n 's/^ii *|//p')
installed_up=$(upstream_of "$installed")
host_suite=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")

# the series to test: every row but the machine's own Kamailio
rows=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$TABLE")
todo=
while read -r series how suite _; do
	if [ -n "${TEST_VERSIONS:-}" ]; then
		case " $TEST_VERSIONS " in
		*" $series "*) ;;
		*) continue ;;
		esac
	elif [ -n "$installed_up" ]; then
		case "$installed_up" in
		"$series".*)
			say "$series: skipped, this machine runs kamailio $installed (make test)"
			continue
			;;
		esac
	elif [ "$how" = package ] && [ "$suite" = "$host_suite" ]; then
		say "$series: skipped, this machine's own release ($suite: make test)"
		continue
	fi
	todo="$todo $series:$how:$suite"
done <<EOF
$rows
EOF
[ -n "$todo" ] || {
	say "nothing to test"
	exit 0
}

# Prints the cases of log $1 and a summary line for version $2; sets
# PASSED, FAILED
report() {
	log=$1 ver=$2
	PASSED=$(grep -cE '^test .* \.\.\. ok$' "$log")
	FAILED=$(grep -cE '^test .* \.\.\. FAILED$' "$log")
	grep -E '^test .* \.\.\. (ok|FAILED|ignored)$' "$log" | sed "s/^/  [$ver] /"
	if ! grep -qE '^test result: ' "$log"; then
		say "$ver: the suite did not finish (see $log):"
		tail -n 25 "$log" | sed 's/^/    /'
		FAILED=$((FAILED + 1))
	fi
	if [ "$FAILED" -gt 0 ]; then
		echo "  [$ver] failed cases (see $log):"
		grep -E '^test .* \.\.\. FAILED$' "$log" | sed 's/^test \(.*\) \.\.\. FAILED$/    \1/'
	fi
}

# --- one series from a package of another release, in a root of it
test_package() { # series suite log
	series=$1 suite=$2 log=$3
	# in the root: the installed kamailio there is the one; its source,
	# the Rust core (the root's libc), the module, the suite
	"$ROOT/scripts/kamailio-root.sh" "$suite" '
		set -eo pipefail
		v=$(dpkg-query -W -f="\${Version}" kamailio | sed -e "s/^[0-9]*://" -e "s/-[^-]*\$//")
		case "$v" in '"$series"'.*) ;; *) echo "kamailio $v in the root is not '"$series"'" >&2; exit 1 ;; esac
		echo "VERSION $v"
		echo "== cargo build (target $CARGO_TARGET_DIR)"
		nice -n 10 cargo build --release --locked 2>&1 | tail -n 3
		echo "== module against kamailio $v"
		PR_LIB="$CARGO_TARGET_DIR/release/libpush_redirect.a" \
			PR_OUT="$PWD/build/$v/push_redirect.so" scripts/build-module.sh
		echo "== e2e"
		E2E_PR_MODULE="$PWD/build/$v/push_redirect.so" \
			cargo test '"$E2E_ARGS"' 2>&1
	' >"$log" 2>&1
}

# --- one series built from source on this machine
test_source() { # series log
	series=$1 log=$2
	(
		set -eo pipefail
		# sipp for the terminals (`make test` installs it too)
		command -v sipp >/dev/null || {
			echo "apt-get install sip-tester"
			apt-get -q update >/dev/null
			DEBIAN_FRONTEND=noninteractive apt-get -q install -y \
				--no-install-recommends sip-tester >/dev/null
		}
		out=$("$ROOT/scripts/kamailio-build.sh" "$series" | tail -n 1)
		prefix=${out% *}
		corepath=${out#* }
		v=$("$prefix/sbin/kamailio" -v | sed -n 's/^version: kamailio \([^ ]*\).*/\1/p')
		echo "VERSION $v"
		echo "== cargo build"
		(cd "$ROOT" && nice -n 10 cargo build --release --locked 2>&1 | tail -n 3)
		echo "== module against kamailio $v ($corepath)"
		KAMAILIO_SRC=$corepath PR_OUT="$ROOT/build/$v/push_redirect.so" \
			"$ROOT/scripts/build-module.sh"
		echo "== e2e"
		# shellcheck disable=SC2086
		(cd "$ROOT" && KAMAILIO="$prefix/sbin/kamailio" KAMCMD="$prefix/sbin/kamcmd" \
			E2E_PR_MODULE="$ROOT/build/$v/push_redirect.so" \
			cargo test $E2E_ARGS 2>&1)
	) >"$log" 2>&1
}

total_p=0 total_f=0 bad=0 summary=
for item in $todo; do
	IFS=: read -r series how suite <<<"$item"
	log="$LOGDIR/$series.log"
	t=$(date +%s)
	say "$series ($how $suite): setting up and running the e2e suite (log $log)"
	case "$how" in
	package) test_package "$series" "$suite" "$log" ;;
	source) test_source "$series" "$log" ;;
	*)
		say "$series: unknown way '$how' in $TABLE"
		bad=1
		continue
		;;
	esac
	st=$?
	ver=$(sed -n 's/^VERSION //p' "$log" | head -n 1)
	ver=${ver:-$series}
	report "$log" "$ver"
	secs=$(($(date +%s) - t))
	[ "$st" -eq 0 ] || [ "$FAILED" -gt 0 ] || {
		say "$ver: exit status $st (see $log)"
		tail -n 25 "$log" | sed 's/^/    /'
		FAILED=1
	}
	line="$ver: $PASSED passed, $FAILED failed"
	echo "$line"
	summary="$summary$line ($how $suite, ${secs} s)
"
	total_p=$((total_p + PASSED))
	total_f=$((total_f + FAILED))
done

echo
say "summary (wall time $(($(date +%s) - T0)) s):"
printf '%s' "$summary" | sed 's/^/  /'
echo "test-versions: $total_p passed, $total_f failed"
[ "$total_f" -eq 0 ] && [ "$bad" -eq 0 ]
