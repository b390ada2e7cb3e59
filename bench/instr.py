#!/usr/bin/env python3
"""Instructions per request of each bench configuration, under callgrind.

`make bench-instr` runs this (python3 standard library, valgrind). CPU
seconds (`make bench`) are what an operator pays; side by side they compare
to about 1%, but they do not say where a difference goes. The instructions
and cache misses of a Kamailio worker for the same requests do, and repeat
exactly: this is the deterministic complement.

For each configuration it runs bench.py once (one repetition, no step
search) with Kamailio under `valgrind --tool=callgrind --cache-sim=yes
--toggle-collect=receive_msg` (the workers' handling of every SIP message,
requests and replies; not the timer processes), then reads every process's
profile with callgrind_annotate and reports, per MESSAGE sent, marginally (each configuration runs twice,
INSTR_COUNT and a third of it, and the difference is divided by the
difference in MESSAGEs: what a run pays once, start-up, REGISTERs, warm-up,
each worker's first store read, cancels out):

  total        instructions under receive_msg
  module       inclusive cost of push_lookup() + push_redirect()
  replaced     inclusive cost of what the stock routing runs in their place:
               registrar lookup() + uac_redirect get_redirect() (behind
               get_redirects()) + tm t_check_status()

  I1 / L1 / LL misses   the simulated caches' misses (instruction cache;
               all first-level; last level): a worker runs the module's
               code once per message, cold, so the code it touches costs
               more than its instruction count says
  CEst         KCachegrind's cycle estimate, Ir + 10 x L1 + 100 x LL misses

and the ratios F1/stock and F6/plain of the instructions and of CEst. The
simulation sees one process alone: on the machine, the other processes
(sipp, the other workers) evict more, so CPU seconds weigh misses more.

Environment: INSTR_CONFIGS (plain,stock,F1,F6,F2; also script-F1,
script-F6: cfg/script.cfg, whose module column is 0), INSTR_COUNT (3000: a
worker's first store read, SQLite opening its schema, is then spread over
as many requests as in `make bench`), INSTR_KEEP=1 (keep the callgrind
profiles, for callgrind_annotate), INSTR_RATE (150; callgrind runs
Kamailio ~50x slower), INSTR_OUT
(bench/results/instr), VALGRIND, KAMAILIO (the binary under valgrind).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = [c.strip() for c in os.environ.get("INSTR_CONFIGS", "plain,stock,F1,F6,F2").split(",") if c.strip()]
COUNT = int(os.environ.get("INSTR_COUNT", "3000"))
RATE = int(os.environ.get("INSTR_RATE", "150"))
OUT = os.environ.get("INSTR_OUT", os.path.join(HERE, "results", "instr"))
VALGRIND = os.environ.get("VALGRIND") or shutil.which("valgrind") or "valgrind"
KAMAILIO = os.environ.get("KAMAILIO") or shutil.which("kamailio", path=os.environ.get("PATH", "") + ":/usr/sbin") or "kamailio"
ANNOTATE = shutil.which("callgrind_annotate") or "callgrind_annotate"

MODULE = ("w_push_lookup", "w_push_redirect")
REPLACED = ("lookup", "get_redirect", "t_check_status")
# The module's instructions per request (push_lookup() + push_redirect(),
# inclusive), the targets of the restructuring issue: the simpler data path
# (one decision view, no callback round trip). bench.py prints them too.
TARGETS = {"F1": 15000, "F6": 8000}


def target_lines(module_by_config):
    """One line per target: the measured figure and a verdict."""
    out = []
    for config, limit in TARGETS.items():
        got = module_by_config.get(config)
        if got is None:
            continue
        out.append(f"  {config}: {got:,.0f} module instructions per request -- target <= {limit:,}: "
                   + ("met" if got <= limit else "MISSED"))
    return ["targets (module instructions per request, callgrind):"] + out if out else []


ROW = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*)$")


EVENTS = ("Ir", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw")


def annotate(path, inclusive, event="Ir"):
    """(total, {function name: cost}) of one event in one callgrind profile."""
    out = subprocess.run(
        [ANNOTATE, f"--inclusive={'yes' if inclusive else 'no'}", f"--show={event}",
         f"--sort={event}", "--auto=no", "--threshold=100", path],
        capture_output=True, text=True, check=False).stdout
    total, funcs = 0, {}
    for line in out.splitlines():
        m = ROW.match(line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        name = m.group(2)
        if "PROGRAM TOTALS" in name:
            total = n
            continue
        # "file:function [object]": the function's own name. Lines without
        # an object repeat the cost of inlined code: not counted twice.
        if " [" not in name:
            continue
        fn = name.split(" [")[0]
        fn = fn.rsplit(":", 1)[-1] if "::" not in fn else fn.split(":", 1)[-1]
        funcs[fn] = funcs.get(fn, 0) + n
    return total, funcs


def totals(path):
    """{event: total} of one profile, every event of EVENTS."""
    out = subprocess.run([ANNOTATE, "--auto=no", "--threshold=100", path],
                         capture_output=True, text=True, check=False).stdout
    shown, got = [], {}
    for line in out.splitlines():
        if line.startswith("Events shown:"):
            shown = line.split(":", 1)[1].split()
        elif "PROGRAM TOTALS" in line:
            nums = re.findall(r"([\d,]+) \(", line) or re.findall(r"([\d,]+)", line)
            got = {e: int(v.replace(",", "")) for e, v in zip(shown, nums)}
    return {e: got.get(e, 0) for e in EVENTS}


def cest(t):
    """KCachegrind's cycle estimate: Ir + 10 x L1 misses + 100 x LL misses."""
    l1 = t["I1mr"] + t["D1mr"] + t["D1mw"]
    ll = t["ILmr"] + t["DLmr"] + t["DLmw"]
    return t["Ir"] + 10 * l1 + 100 * ll


def run_config(name, workdir):
    """Marginal instructions per MESSAGE of a config: two runs, COUNT and
    COUNT/3 MESSAGEs, and the difference divided by the difference in
    MESSAGEs, so that what every run pays once (start-up, REGISTERs,
    warm-up, each worker's first store read) cancels out."""
    small = max(COUNT // 3, 1)
    a = run_once(name, small, workdir)
    b = run_once(name, COUNT, workdir)
    n = COUNT - small
    row = {k: (b[k] - a[k]) / n for k in b}
    row["config"] = name
    return row


def run_once(name, count, workdir):
    """Instructions of one run of `count` MESSAGEs (all processes summed)."""
    outdir = os.path.join(workdir, f"{name}-{count}")
    os.makedirs(outdir)
    wrapper = os.path.join(workdir, f"kamailio-{name}-{count}.sh")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\n"
                f"exec {VALGRIND} --tool=callgrind --cache-sim=yes --toggle-collect=receive_msg "
                f"--callgrind-out-file={outdir}/callgrind.%p {KAMAILIO} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    env = dict(os.environ, KAMAILIO=wrapper, BENCH_CONFIGS=name, BENCH_COUNT=str(count),
               BENCH_RATE=str(RATE), BENCH_REPS="1", BENCH_SEARCH="0",
               BENCH_OUT=os.path.join(workdir, f"bench-{name}-{count}"))
    log = os.path.join(workdir, f"bench-{name}-{count}.log")
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, os.path.join(HERE, "bench.py")], env=env,
                            stdout=f, stderr=subprocess.STDOUT, check=False).returncode
    if rc != 0:
        raise RuntimeError(f"{name}: bench.py under callgrind failed (rc {rc}), see {log}")
    sums = dict.fromkeys(("total", "module", "replaced", "i1", "module_i1", "l1", "ll", "cest"), 0)
    for p in sorted(os.listdir(outdir)):
        path = os.path.join(outdir, p)
        t = totals(path)
        if t["Ir"] == 0:
            continue
        sums["total"] += t["Ir"]
        sums["i1"] += t["I1mr"]
        sums["l1"] += t["I1mr"] + t["D1mr"] + t["D1mw"]
        sums["ll"] += t["ILmr"] + t["DLmr"] + t["DLmw"]
        sums["cest"] += cest(t)
        _, incl = annotate(path, inclusive=True)
        sums["module"] += sum(incl.get(f, 0) for f in MODULE)
        sums["replaced"] += sum(incl.get(f, 0) for f in REPLACED)
        _, incl = annotate(path, inclusive=True, event="I1mr")
        sums["module_i1"] += sum(incl.get(f, 0) for f in MODULE)
    return sums


def main():
    for tool in (VALGRIND, ANNOTATE, KAMAILIO):
        if not shutil.which(tool):
            print(f"bench-instr: {tool} not found", file=sys.stderr)
            return 1
    os.makedirs(OUT, exist_ok=True)
    work = tempfile.mkdtemp(prefix="push_redirect-instr-")
    rows = []
    try:
        for name in CONFIGS:
            print(f"bench-instr: {name}: {max(COUNT // 3, 1)} then {COUNT} MESSAGEs at {RATE}/s under callgrind",
                  flush=True)
            rows.append(run_config(name, work))
    finally:
        if os.environ.get("INSTR_KEEP") == "1":
            print(f"bench-instr: profiles kept in {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    by = {r["config"]: r for r in rows}
    cw = max([7] + [len(r["config"]) for r in rows])
    lines = [f"per MESSAGE under receive_msg (callgrind --cache-sim=yes; marginal: runs of {COUNT} and "
             f"{max(COUNT // 3, 1)} MESSAGEs at {RATE}/s; Kamailio workers, user space)",
             "instr: instructions; module / replaced: push_lookup()+push_redirect() / what stock runs",
             "instead; I1 miss: instruction-cache misses (module: its share); L1 / LL miss: all first-",
             "and last-level misses; CEst: KCachegrind's cycle estimate, instr + 10 L1 + 100 LL misses",
             f"{'config':<{cw}} {'instr':>9} {'module':>8} {'replaced':>8} {'I1 miss':>8} {'module':>7}"
             f" {'L1 miss':>8} {'LL miss':>7} {'CEst':>9}  instr ratio     CEst ratio",
             f"{'-' * cw} {'-' * 9} {'-' * 8} {'-' * 8} {'-' * 8} {'-' * 7} {'-' * 8} {'-' * 7} {'-' * 9}"
             "  -----------     ----------"]
    for r in rows:
        base = {"F1": "stock", "F2": "stock", "F6": "plain",
                "script-F1": "stock", "script-F6": "plain"}.get(r["config"])
        ratio = (f"{r['total'] / by[base]['total']:.3f}x {base:<5}    {r['cest'] / by[base]['cest']:.3f}x {base}"
                 if base in by else "")
        lines.append(f"{r['config']:<{cw}} {r['total']:>9,.0f} {r['module']:>8,.0f} {r['replaced']:>8,.0f}"
                     f" {r['i1']:>8,.0f} {r['module_i1']:>7,.0f} {r['l1']:>8,.0f} {r['ll']:>7,.0f}"
                     f" {r['cest']:>9,.0f}  {ratio}")
    lines += target_lines({r["config"]: r["module"] for r in rows})
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(OUT, "instr.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(OUT, "instr.csv"), "w") as f:
        f.write("config,instructions_per_message,module,replaced,i1_misses,module_i1_misses,"
                "l1_misses,ll_misses,cycle_estimate\n")
        for r in rows:
            f.write(f"{r['config']},{r['total']:.0f},{r['module']:.0f},{r['replaced']:.0f},"
                    f"{r['i1']:.0f},{r['module_i1']:.0f},{r['l1']:.0f},{r['ll']:.0f},{r['cest']:.0f}\n")
    print(f"bench-instr: wrote {OUT}/instr.txt, instr.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
