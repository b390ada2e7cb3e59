#!/bin/sh
# bench/core.sh - `make bench-core`: the Rust core's criterion benchmarks
# (benches/parse_decide.rs, benches/store.rs), then one line per benchmark with
# its median (target/criterion/<group>/<case>/new/estimates.json), also written
# to bench/results/core.csv.
set -eu
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
PYTHON3=${PYTHON3:-python3}
TARGET=${CARGO_TARGET_DIR:-target}
stamp=$(mktemp)
trap 'rm -f "$stamp"' EXIT
$CARGO bench --locked --bench parse_decide
$CARGO bench --locked --bench store
mkdir -p bench/results
$PYTHON3 - "$TARGET/criterion" "$stamp" bench/results/core.csv <<'PY'
import json, os, sys
root, stamp, out = sys.argv[1], os.path.getmtime(sys.argv[2]), sys.argv[3]
rows = []
for dirpath, _, files in os.walk(root):
    if os.path.basename(dirpath) == "new" and "estimates.json" in files:
        p = os.path.join(dirpath, "estimates.json")
        if os.path.getmtime(p) < stamp:
            continue  # not from this run
        m = json.load(open(p))["median"]
        name = os.path.relpath(os.path.dirname(dirpath), root)
        rows.append((name, m["point_estimate"], m["confidence_interval"]["lower_bound"],
                     m["confidence_interval"]["upper_bound"]))
def human(ns):
    for unit, f in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= f:
            return f"{ns / f:.3g} {unit}"
    return f"{ns:.3g} ns"
rows.sort()
w = max([len(r[0]) for r in rows] + [9])
print(f"\n{'benchmark'.ljust(w)}  {'median':>10}  95% CI of the median")
for name, med, lo, hi in rows:
    print(f"{name.ljust(w)}  {human(med):>10}  {human(lo)} - {human(hi)}")
with open(out, "w") as f:
    f.write("benchmark,median_ns,ci_low_ns,ci_high_ns\n")
    for r in rows:
        f.write(f"{r[0]},{r[1]:.1f},{r[2]:.1f},{r[3]:.1f}\n")
print(f"\n(written to {out})")
if not rows:
    sys.exit("bench-core: no criterion estimates from this run")
PY
