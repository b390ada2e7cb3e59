#!/usr/bin/env python3
"""Propagation delay of the shared store (SPEC §6): from a write on node A
to the requests on node B that use it, under load.

Two Kamailio nodes (cfg/push.cfg) on one redis-server (started here, AOF
on). On B, a sipp sender sends MESSAGEs for sip:u9@example.com, which has
no registered terminal, at BENCH_RATE per second: 404 while no forwarding is
stored, 200 (through u1's terminal) while one is. Every half second, A
provisions (`push_redirect.set u9 u1`) or removes it, alternately, through
kamcmd; T = when kamcmd returned (the write is in Redis and published).
Per write, from the sender's trace (microsecond timestamps, same clock):
  first = the first request sent after T with the new answer, minus T
  all   = the last request sent after T (before the next write began) with the
          old answer, minus T: every worker of B has applied the write by
          then (0 when none)
p50/p99 of both over BENCH_CYCLES writes (default 40). Resolution: one
request interval (2 ms at 500/s).

  python3 bench/propagation.py      (the lead's `make bench` does not run it)

Environment: BENCH_RATE=500 BENCH_CYCLES=40 BENCH_CHILDREN=4 BENCH_OUT=...
"""

import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ["BENCH_CONFIGS"] = "F6"
import bench  # noqa: E402

RATE = bench.RATE
CYCLES = bench.env_int("BENCH_CYCLES", 40)
U9 = "sip:u9@example.com"

bench.CONFIGS["prop"] = dict(cfg="push.cfg", t1="uas_200.xml", t2="uas_200.xml", learn=False,
                             store="redis", desc="propagation", expect=("n", "0"))


def trace(path):
    """Per Call-ID: (time the MESSAGE was first sent, final code)."""
    sent, final = {}, {}
    for t, direction, first, cid in bench.sipp_messages(path):
        if direction == "sent" and first.startswith("MESSAGE "):
            sent.setdefault(cid, t)
        elif direction == "recv" and first[:11] in ("SIP/2.0 200", "SIP/2.0 404"):
            final.setdefault(cid, int(first[8:11]))
    return sorted((sent[c], final[c]) for c in final if c in sent)


def pct(v, p):
    return bench.percentile(sorted(v), p)


def main():
    work = tempfile.mkdtemp(prefix="push_redirect-propagation-")
    out = bench.OUT
    os.makedirs(out, exist_ok=True)
    try:
        a = bench.Setup("prop", work).start()
        b = bench.Setup("prop", work)
        b.redis_url = a.redis_url
        b.start()
        d = os.path.join(b.dir, "sender-prop")
        os.makedirs(d)
        count = int(RATE * (CYCLES * 0.5 + 2))
        sender = bench.spawn(
            [bench.SIPP, "-sf", os.path.join(HERE, "scenarios", "sender.xml"), "-key", "ruri", U9,
             "-i", "127.0.0.1", "-p", str(bench.free_port()), f"127.0.0.1:{b.port}",
             "-m", str(count), "-r", str(RATE), "-rp", "1000", "-recv_timeout", "5000",
             "-timeout", f"{int(count / RATE + 30)}s", "-nostdin",
             "-trace_msg", "-message_file", os.path.join(d, "messages.log")],
            d, "sipp.out")
        time.sleep(1.0)
        writes = []
        for i in range(CYCLES):
            cmd = (["push_redirect.set", U9, bench.AOR] if i % 2 == 0
                   else ["push_redirect.remove", U9])
            started = time.time()
            r = subprocess.run([bench.KAMCMD, "-s", a.ctl, *cmd], capture_output=True,
                               text=True, timeout=10)
            writes.append((time.time(), 200 if i % 2 == 0 else 404, started))
            if r.returncode != 0 or "error" in r.stdout:
                raise RuntimeError(f"kamcmd {cmd}: {r.stdout} {r.stderr}")
            time.sleep(0.5)
        sender.wait(timeout=count / RATE + 60)
        reqs = trace(os.path.join(d, "messages.log"))
        first, every = [], []
        for k, (t0, new, _) in enumerate(writes):
            # up to the start of the next write (its kamcmd may land it in
            # Redis before it returns)
            t1 = writes[k + 1][2] if k + 1 < len(writes) else float("inf")
            window = [(s, code) for s, code in reqs if t0 <= s < t1]
            hits = [s for s, code in window if code == new]
            stale = [s for s, code in window if code != new]
            if hits:
                first.append((hits[0] - t0) * 1000.0)
            every.append((max(stale) - t0) * 1000.0 if stale else 0.0)
        line = (f"propagation A->B, {len(writes)} writes under {RATE}/s on B: "
                f"first use p50 {pct(first, 50):.1f} ms p99 {pct(first, 99):.1f} ms; "
                f"every worker p50 {pct(every, 50):.1f} ms p99 {pct(every, 99):.1f} ms "
                f"({len(reqs)} requests traced)")
        print(line)
        with open(os.path.join(out, "propagation.txt"), "w") as f:
            f.write(line + "\n")
            for k, (t0, new, _) in enumerate(writes):
                f.write(f"{k} {new} first={first[k] if k < len(first) else 'nan'} every={every[k]}\n")
    finally:
        bench.stop_all()


if __name__ == "__main__":
    main()
