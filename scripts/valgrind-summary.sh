#!/bin/sh
# valgrind-summary.sh DIR - what memcheck said about Kamailio and about the
# module in the logs of scripts/kamailio-valgrind.sh. Exits 1 if any error
# has a frame in push_redirect.so (the module or its Rust core).
DIR=${1:-/tmp/push_redirect-valgrind}
logs=$(ls "$DIR"/vg.*.log 2>/dev/null | wc -l)
[ "$logs" -gt 0 ] || { echo "valgrind-summary: no logs in $DIR" >&2; exit 2; }
total=$(cat "$DIR"/vg.*.log | sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' |
	awk '{s+=$1} END {print s+0}')
finished=$(grep -l "ERROR SUMMARY" "$DIR"/vg.*.log | wc -l)
# an error block runs from "==PID== <kind>" to the blank "==PID== " line
module=$(awk '
	/^==[0-9]+== [A-Z][a-z]/ && !/ERROR SUMMARY|HEAP SUMMARY|LEAK SUMMARY|Memcheck|Copyright|Using Valgrind|Command:|Parent PID|For lists|For counts|Use --/ { inblk=1; blk=$0 "\n"; next }
	inblk && /^==[0-9]+== *$/ { if (blk ~ /push_redirect|pr_[a-z_]+ |push_redirect::/) { n++; print blk > "/dev/stderr" } inblk=0; next }
	inblk { blk = blk $0 "\n" }
	END { print n+0 }' "$DIR"/vg.*.log 2>"$DIR/module-errors.txt")
echo "valgrind: $logs Kamailio process logs ($finished with a final summary);" \
	"$total errors in all; $module with a push_redirect frame"
if [ "$module" -gt 0 ]; then
	echo "valgrind: errors in the module (first 60 lines of $DIR/module-errors.txt):"
	head -n 60 "$DIR/module-errors.txt"
	exit 1
fi
exit 0
