#!/usr/bin/env python3
"""Side-by-side benchmark of push_redirect against Kamailio's own uac_redirect.

`make bench` runs this (python3 standard library only). For each repetition it
runs every configuration once, all of them at the same time (side by side: a
Kamailio each, their senders started together, so whatever the machine does
meanwhile hits all of them alike; run one after another, a configuration's CPU
moved by 15-20% from run to run with the VM, side by side the ratios repeat to
about 1%). Each run is a fresh Kamailio (children=4, udp:127.0.0.1), two sipp
terminals t1 (q=1.0) and t2 (q=0.5) registered for sip:u1@example.com, and one
sipp sender of BENCH_COUNT MESSAGEs at BENCH_RATE per second:

  plain  stock.cfg  t1 answers 200                       (the floor)
  stock  stock.cfg  t1 answers 302 Contact t2, t2 200    (uac_redirect: the anchor)
  F1     push.cfg   t1 answers 302 Contact t2, t2 200    (push_redirect)
  F6     push.cfg   t1 answers 301 Contact t2 once (learned), then all go to t2
  F2     push.cfg   t1 answers 480, t2 200               (serial failover)
  F6-redis  as F6, with the store on a redis-server the bench starts (AOF
            on, free port, its folder; Kamailio's CPU only, as for F6):
            BENCH_CONFIGS=F6,F6-redis puts the two side by side
  OS-plain, OS-stock, OS-F1  the same three flows on OpenSIPS 3.6
            (cfg/opensips-stock.cfg: uac_redirect's get_redirects();
            cfg/opensips-push.cfg: push_redirect), OpenSIPS's CPU; their
            ratios are against OS-stock: BENCH_CONFIGS=OS-stock,OS-F1 (after
            make opensips)

Per run: requests sent, 200s, failures, sender retransmissions, p50/p99
response time (first MESSAGE sent -> 200 received, from the sender's
-trace_msg timestamps in microseconds), the terminals' received counts (a check
that the flow really happened), and Kamailio's CPU seconds: utime+stime of the
main process and every descendant, just before the sender starts and
BENCH_SETTLE seconds after it ends (tm frees a transaction wt_timer = 5 s
after its final reply, in the timer process: that work is part of a
request's cost). The sum is read at nanosecond precision from
/proc/<pid>/schedstat (the kernel's sum_exec_runtime, which it splits into
utime and stime); /proc/<pid>/stat gives utime and stime in 10 ms clock
ticks, each truncated, so the nine processes of a run carried up to
+-0.1 s of rounding (its figures stay in runs.csv: kam_ticks_s, and the
user/system split).

Then a short step search for the highest clean rate (every request 200, no
failure, no retransmission, the rate reached) of stock and F1.

Environment (defaults; BENCH_QUICK=1 changes those marked *):
  BENCH_RATE=500  BENCH_COUNT=10000*  BENCH_REPS=5*  BENCH_WARMUP=20
  BENCH_SETTLE=6*  BENCH_CONFIGS=plain,stock,F1,F6,F2 (also: plain-push, and
  script-F1, script-F6: cfg/script.cfg, the checks in the routing script;
  F1-hi0, F2-hi0, F6-hi0, plain-push-hi0: history_info = 0, the base of
  History-Info's cost, e.g. BENCH_CONFIGS=F1,F1-hi0,F2,F2-hi0)
  BENCH_MODE=side (serial: one configuration after another, in an order
  that rotates with the repetition)  BENCH_SEARCH=1 (0: no step search)  BENCH_STEP_RATES=2000,4000,6000,7000,...,12000*
  BENCH_STEP_SECONDS=4*  BENCH_OUT=bench/results (quick: bench/results/quick)
  BENCH_KEEP=1 keeps the per-run directories (always kept when a run fails)
  BENCH_SHM=1024 BENCH_PKG=16 (Kamailio -m/-M, MB)
  BENCH_MEMMGR=tlsf (Kamailio -x: tlsf, qm = Kamailio's default, fm; "default": no -x)
  BENCH_CHILDREN=4
  PR_MODULE=build/push_redirect.so  KAMAILIO, SIPP, KAMCMD, GNUPLOT (binaries)
  OS_PR_MODULE=build/opensips/push_redirect.so  OPENSIPS (default: the
  binary of the tree make opensips built, build/opensips/tree)
  OS_MPATH=build/opensips/modules/ (make opensips links the modules there)
  BENCH_BASELINE=<another push_redirect.so>: adds F1@base, F6@base, F2@base
  (and plain-push@base), the same scenarios with that module, to be named
  in BENCH_CONFIGS: a change measured side by side against the build
  before it (e.g. BENCH_CONFIGS=stock,F1,F1@base)
"""

import atexit
import csv
import hashlib
import ctypes
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
AOR = "sip:u1@example.com"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def env_int(name, default):
    v = os.environ.get(name, "").strip()
    return int(v) if v else default


def env_str(name, default):
    v = os.environ.get(name, "").strip()
    return v if v else default


QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
RATE = env_int("BENCH_RATE", 500)
COUNT = env_int("BENCH_COUNT", 2000 if QUICK else 10000)
REPS = env_int("BENCH_REPS", 2 if QUICK else 5)
WARMUP = env_int("BENCH_WARMUP", 20)
SETTLE = float(env_str("BENCH_SETTLE", "2" if QUICK else "6"))
CHILDREN = env_int("BENCH_CHILDREN", 4)
SHM_MB = env_int("BENCH_SHM", 1024)
PKG_MB = env_int("BENCH_PKG", 16)
# Kamailio's memory manager (-x). Default tlsf: with Kamailio's own default
# (qm), qm_malloc's walk over its free-list buckets is ~90% of the user-space
# instructions of every request (callgrind) and varies with the heap's history,
# which hides the routing's cost and makes the CPU figures noisy (README).
MEMMGR = env_str("BENCH_MEMMGR", "tlsf")
MEM_ARGS = ["-x", MEMMGR] if MEMMGR not in ("default", "none") else []
SEARCH = os.environ.get("BENCH_SEARCH", "1") not in ("", "0")
SIDE_BY_SIDE = env_str("BENCH_MODE", "side") != "serial"
STEP_RATES = [
    int(x)
    for x in env_str(
        "BENCH_STEP_RATES",
        "1000,3000,6000" if QUICK else "2000,4000,6000,7000,8000,9000,10000,11000,12000",
    ).split(",")
]
STEP_SECONDS = float(env_str("BENCH_STEP_SECONDS", "2" if QUICK else "4"))
OUT = env_str("BENCH_OUT", os.path.join(HERE, "results", "quick") if QUICK else os.path.join(HERE, "results"))
KEEP = os.environ.get("BENCH_KEEP", "") not in ("", "0")
PR_MODULE = os.path.abspath(env_str("PR_MODULE", os.path.join(ROOT, "build", "push_redirect.so")))
MODULE_COPY = PR_MODULE  # main() points it at a private copy
OS_PR_MODULE = os.path.abspath(env_str("OS_PR_MODULE", os.path.join(ROOT, "build", "opensips", "push_redirect.so")))
OS_MODULE_COPY = OS_PR_MODULE  # main() points it at a private copy
OS_MPATH = os.path.abspath(env_str("OS_MPATH", os.path.join(ROOT, "build", "opensips", "modules"))) + "/"


def tool(env, name):
    if os.environ.get(env):
        return os.environ[env]
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin:/sbin") or name


KAMAILIO = tool("KAMAILIO", "kamailio")
SIPP = tool("SIPP", "sipp")
KAMCMD = tool("KAMCMD", "kamcmd")
GNUPLOT = tool("GNUPLOT", "gnuplot")


def opensips_bin():
    """OPENSIPS, else the binary of the tree `make opensips` built."""
    if os.environ.get("OPENSIPS"):
        return os.environ["OPENSIPS"]
    try:
        with open(os.path.join(ROOT, "build", "opensips", "tree")) as f:
            return os.path.join(f.read().strip(), "opensips")
    except OSError:
        return "opensips"


OPENSIPS = opensips_bin()

# cfg, the terminals' scenarios, whether a 301 is learned first, and what t1/t2
# must receive during the load ("n": every request, "0": none)
CONFIGS = {
    "plain": dict(cfg="stock.cfg", t1="uas_200.xml", t2="uas_200.xml", learn=False,
                  desc="t1 answers 200 (no redirect): the floor", expect=("n", "0")),
    # not in the default set: push_lookup() with a terminal that answers 200
    "plain-push": dict(cfg="push.cfg", t1="uas_200.xml", t2="uas_200.xml", learn=False,
                       desc="push.cfg, t1 answers 200: push_lookup() alone", expect=("n", "0")),
    "stock": dict(cfg="stock.cfg", t1="uas_302.xml", t2="uas_200.xml", learn=False,
                  desc="t1 302 Contact t2, uac_redirect get_redirects(): the anchor", expect=("n", "n")),
    "F1": dict(cfg="push.cfg", t1="uas_302.xml", t2="uas_200.xml", learn=False,
               desc="t1 302 Contact t2, push_redirect", expect=("n", "n")),
    "F6": dict(cfg="push.cfg", t1="uas_301.xml", t2="uas_200.xml", learn=True,
               desc="after a learned 301: straight to t2", expect=("0", "n")),
    "F2": dict(cfg="push.cfg", t1="uas_480.xml", t2="uas_200.xml", learn=False,
               desc="t1 480, t2 200 (serial failover)", expect=("n", "n")),
    # not in the default set: F6 with the store on Redis (SPEC §6)
    "F6-redis": dict(cfg="push.cfg", t1="uas_301.xml", t2="uas_200.xml", learn=True,
                     store="redis",
                     desc="after a learned 301, store on Redis: straight to t2",
                     expect=("0", "n")),
    # not in the default set: stock modules making push_redirect's checks for
    # one Contact in the routing script (cfg/script.cfg), the F1 and F6 flows
    "script-F1": dict(cfg="script.cfg", t1="uas_302.xml", t2="uas_200.xml", learn=False,
                      desc="t1 302 Contact t2, the checks in the script", expect=("n", "n")),
    "script-F6": dict(cfg="script.cfg", t1="uas_301.xml", t2="uas_200.xml", learn=True,
                      learned_stat=None,
                      desc="after a 301 learned by the script: straight to t2", expect=("0", "n")),
    # not in the default set: OpenSIPS 3.6 (make opensips), its stock
    # uac_redirect against push_redirect; their ratios are to OS-stock
    "OS-plain": dict(cfg="opensips-stock.cfg", proxy="opensips", anchor="OS-stock",
                     t1="uas_200.xml", t2="uas_200.xml", learn=False,
                     desc="OpenSIPS, t1 answers 200 (no redirect): the floor", expect=("n", "0")),
    "OS-stock": dict(cfg="opensips-stock.cfg", proxy="opensips", anchor="OS-stock",
                     t1="uas_302.xml", t2="uas_200.xml", learn=False,
                     desc="OpenSIPS, t1 302 Contact t2, uac_redirect get_redirects()",
                     expect=("n", "n")),
    "OS-F1": dict(cfg="opensips-push.cfg", proxy="opensips", anchor="OS-stock",
                  t1="uas_302.xml", t2="uas_200.xml", learn=False,
                  desc="OpenSIPS, t1 302 Contact t2, push_redirect", expect=("n", "n")),
}
# not in the default set: the push configurations with history_info = 0, the
# base of History-Info's cost (BENCH_CONFIGS=F1,F1-hi0,F2,F2-hi0)
for _name in ("plain-push", "F1", "F6", "F2"):
    CONFIGS[f"{_name}-hi0"] = dict(CONFIGS[_name], defines={"HISTORY_INFO": "0"},
                                   desc=CONFIGS[_name]["desc"] + ", history_info=0")
BASELINE = env_str("BENCH_BASELINE", "")
BASELINE_COPY = BASELINE  # main() points it at a private copy
if BASELINE:
    for _name in ("plain-push", "F1", "F6", "F2"):
        CONFIGS[f"{_name}@base"] = dict(CONFIGS[_name], module="baseline",
                                        desc=CONFIGS[_name]["desc"] + ", BENCH_BASELINE's module")
ORDER = [c.strip() for c in env_str("BENCH_CONFIGS", "plain,stock,F1,F6,F2").split(",") if c.strip()]
for c in ORDER:
    if c not in CONFIGS:
        sys.exit(f"bench: unknown configuration {c!r} (known: {', '.join(CONFIGS)})")


def log(msg):
    print(msg, flush=True)


# ------------------------------------------------------------------ processes

_libc = ctypes.CDLL(None, use_errno=True)
STARTED = []  # every Popen this script started (Kamailio: group leader)


def _die_with_parent():
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def spawn(args, cwd, out_name, group=False):
    out = open(os.path.join(cwd, out_name), "wb")
    p = subprocess.Popen(
        args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent, process_group=0 if group else None,
    )
    out.close()
    p.is_group = group
    STARTED.append(p)
    return p


def stop(p, grace=5.0):
    """SIGTERM (to the group if p leads one), then SIGKILL; reaps p."""
    if p.poll() is None:
        try:
            if p.is_group:
                os.killpg(p.pid, signal.SIGTERM)
            else:
                p.terminate()
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    if p.is_group:
        try:  # the group may outlive its leader for a moment
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if p.poll() is None:
        p.kill()
        p.wait()
    if p in STARTED:
        STARTED.remove(p)


def stop_all():
    for p in list(STARTED):
        stop(p, grace=2.0)


atexit.register(stop_all)
for _s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_s, lambda s, f: sys.exit(128 + s))


def proc_tree(root):
    """root and all its descendants (from /proc)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ticks(pid):
    """(utime, stime) of one process, in clock ticks ((0, 0) if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return (0, 0)
    fields = s[s.rfind(")") + 2:].split()
    return (int(fields[11]), int(fields[12]))


def cpu_ns(pid):
    """utime+stime of one process in nanoseconds: the kernel's
    sum_exec_runtime, first field of /proc/<pid>/schedstat (which
    /proc/<pid>/stat splits into utime and stime, each truncated to 10 ms
    clock ticks); None if unreadable (0 if the process is gone)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except FileNotFoundError:
        return 0 if not os.path.exists(f"/proc/{pid}") else None
    except (OSError, ValueError, IndexError):
        return None


def cpu_snapshot(root):
    """{pid: (utime ticks, stime ticks, run ns or None)} over root's whole
    process tree."""
    return {p: cpu_ticks(p) + (cpu_ns(p),) for p in proc_tree(root)}


def cpu_delta(before, after):
    """(user, system, total) CPU seconds between two snapshots (a process
    new in `after` counts from 0). user and system come from the clock
    ticks; total is their sum at nanosecond precision (schedstat) when
    every process had it, else the ticks' sum."""
    zero = (0, 0, 0)
    user = sum(a[0] - before.get(p, zero)[0] for p, a in after.items()) / CLK_TCK
    system = sum(a[1] - before.get(p, zero)[1] for p, a in after.items()) / CLK_TCK
    runs = [(a[2], before.get(p, zero)[2]) for p, a in after.items()]
    if all(a is not None and b is not None for a, b in runs):
        total = sum(a - b for a, b in runs) / 1e9
    else:
        total = user + system
    return user, system, total


def machine_ticks():
    """(busy, total) clock ticks of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    total = sum(v[:8])  # guest time is already in user
    return total - idle, total


def udp_port_bound(port):
    want = ("0100007F:%04X" % port, "00000000:%04X" % port)
    try:
        with open("/proc/net/udp") as f:
            next(f)
            return any(line.split()[1] in want for line in f)
    except OSError:
        return False


_given = set()


def ephemeral_low():
    """First port of the kernel's ephemeral range (32768 if unreadable)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A UDP port on 127.0.0.1 free a moment ago, never handed out twice.
    Taken below the kernel's ephemeral range: no socket bound to port 0 in
    the meantime (our SIP probes, sipp's own sockets) can be given it before
    the Kamailio or sipp it is meant for binds it."""
    low = 20000
    high = max(ephemeral_low() - 1, low + 1000)
    rng = random.Random(os.getpid() ^ time.time_ns())
    for _ in range(2000):
        port = rng.randint(low, high)
        if port in _given:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _given.add(port)
        return port
    raise RuntimeError(f"no free UDP port in {low}..{high}")


# ------------------------------------------------------------------ SIP by hand

def sip_request(port, text, timeout=5.0):
    """Sends one request over UDP (retransmitted every 0.5 s); the status code of
    the first final response, or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    lp = s.getsockname()[1]
    data = text.replace("LOCALPORT", str(lp)).encode()
    end = time.time() + timeout
    try:
        while time.time() < end:
            s.sendto(data, ("127.0.0.1", port))
            s.settimeout(0.5)
            try:
                while True:
                    reply, _ = s.recvfrom(65535)
                    code = int(reply.split(b" ", 2)[1])
                    if code >= 200:
                        return code
            except (socket.timeout, ValueError, IndexError):
                continue
    finally:
        s.close()
    return None


def probe(port):
    tag = os.urandom(4).hex()
    return sip_request(port, (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bK-probe{tag}\r\n"
        f"From: <sip:bench@127.0.0.1>;tag={tag}\r\nTo: <sip:127.0.0.1:{port}>\r\n"
        f"Call-ID: probe-{tag}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 0\r\n"
        "Content-Length: 0\r\n\r\n"), timeout=0.6)


def register(port, contact, q):
    tag = os.urandom(4).hex()
    return sip_request(port, (
        "REGISTER sip:example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:LOCALPORT;branch=z9hG4bK-reg{tag}\r\n"
        f"From: <{AOR}>;tag={tag}\r\nTo: <{AOR}>\r\nCall-ID: reg-{tag}\r\n"
        f"CSeq: 1 REGISTER\r\nContact: <{contact}>;q={q};expires=3600\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"))


# ------------------------------------------------------------------ sipp output

def sipp_stats(path):
    """Last row of a sipp -trace_stat CSV: column -> value (integers only)."""
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f, delimiter=";") if r]
    except OSError:
        return {}
    if len(rows) < 2:
        return {}
    out = {}
    for k, v in zip(rows[0], rows[-1]):
        try:
            out[k.strip()] = int(v)
        except ValueError:
            pass
    return out


def sipp_messages(path):
    """The messages of a sipp -trace_msg file: (time, "sent" or "recv",
    first line, Call-ID) each; none for a file that cannot be read."""
    base = {}
    t = None
    direction = None
    first = None
    try:
        f = open(path, errors="replace")
    except OSError:
        return
    with f:
        for line in f:
            if line.startswith("-----------------------------------------------"):
                stamp = line.rstrip().rsplit(" ", 2)
                direction = None
                first = None
                if len(stamp) < 3:
                    # a separator without its time (sipp writes such for
                    # a late reply to a call it ended: a retransmission's
                    # 200 under load): the message after it is not timed
                    t = None
                    continue
                day, clock = stamp[-2], stamp[-1]
                if day not in base:
                    base[day] = time.mktime(time.strptime(day, "%Y-%m-%d"))
                h, m, sec = clock.split(":")
                t = base[day] + int(h) * 3600 + int(m) * 60 + float(sec)
            elif t is None:
                continue
            elif direction is None and line.startswith("UDP message"):
                direction = "sent" if "sent" in line else "recv"
            elif first is None and direction and line.strip():
                first = line.strip()
            elif first and line[:8].lower() == "call-id:":
                yield t, direction, first, line[8:].strip()
                first = "-"  # header done for this message


def response_times(path):
    """From a sender's -trace_msg file: per Call-ID, the time from the first
    MESSAGE sent to the 200 received, in ms (sorted)."""
    sent, done = {}, {}
    for t, direction, first, cid in sipp_messages(path):
        if direction == "sent" and first.startswith("MESSAGE "):
            sent.setdefault(cid, t)
        elif direction == "recv" and first.startswith("SIP/2.0 200"):
            done.setdefault(cid, t)
    return sorted((done[c] - sent[c]) * 1000.0 for c in done if c in sent)


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = max(0, math.ceil(p / 100.0 * len(sorted_values)) - 1)
    return sorted_values[k]


# ------------------------------------------------------------------ one setup

class Setup:
    """A Kamailio with one cfg, its two terminals registered, ready for load."""

    def __init__(self, name, base_dir):
        self.name = name
        self.c = CONFIGS[name]
        self.dir = tempfile.mkdtemp(prefix=f"{name}-", dir=base_dir)
        self.port = free_port()
        self.p1, self.p2 = free_port(), free_port()
        self.kam = None
        self.terms = []
        self.sends = 0

    def store(self):
        """The store's location: an SQLite file in the setup's folder, or a
        redis-server started here (free TCP port, AOF on, stopped with the
        rest)."""
        if self.c.get("store") != "redis":
            return os.path.join(self.dir, "store.sqlite")
        if getattr(self, "redis_url", None):
            return self.redis_url  # another setup's (bench/propagation.py)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        d = os.path.join(self.dir, "redis")
        os.makedirs(d)
        spawn([tool("REDIS_SERVER", "redis-server"), "--bind", "127.0.0.1", "--port", str(port),
               "--dir", d, "--appendonly", "yes", "--save", "", "--daemonize", "no"],
              d, "redis.out")
        end = time.time() + 10
        while time.time() < end:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        self.redis_url = f"redis://127.0.0.1:{port}/0"
                        return self.redis_url
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name}: redis-server did not answer ({d}/redis.out)")

    def t_uri(self, n):
        return f"sip:t{n}@127.0.0.1:{self.p1 if n == 1 else self.p2}"

    def opensips_args(self):
        """OpenSIPS's command line, its cfg written into the setup's folder
        with the placeholders (#@define NAME default) substituted."""
        with open(os.path.join(HERE, "cfg", self.c["cfg"])) as f:
            text = f.read()
        values = {}
        for line in text.splitlines():
            if line.startswith("#@define "):
                name, _, default = line[len("#@define "):].partition(" ")
                values[name] = default.strip()
        values.update(SIP_PORT=str(self.port), CHILDREN=str(CHILDREN), MPATH=OS_MPATH,
                      MI_FIFO=os.path.join(self.dir, "fifo"), PR_MODULE=OS_MODULE_COPY,
                      PR_STORE=self.store())
        for name, v in values.items():
            text = text.replace(f"@{name}@", v)
        cfg = os.path.join(self.dir, "opensips.cfg")
        with open(cfg, "w") as f:
            f.write(text)
        return [OPENSIPS, "-F", "-m", str(SHM_MB), "-M", str(PKG_MB), "-f", cfg, "-w", self.dir]

    def start(self):
        ctl = os.path.join(self.dir, "ctl")
        run = os.path.join(self.dir, "run")
        os.makedirs(run, exist_ok=True)
        self.ctl = f"unix:{ctl}"
        args = self.opensips_args() if self.c.get("proxy") == "opensips" else [
            KAMAILIO, "-DD", "-E", "-m", str(SHM_MB), "-M", str(PKG_MB), *MEM_ARGS,
            "-f", os.path.join(HERE, "cfg", self.c["cfg"]),
            "-A", f"SIP_PORT={self.port}", "-A", f"CHILDREN={CHILDREN}",
            "-A", f'CTL_SOCK="{self.ctl}"',
            "-A", f'PR_MODULE="{BASELINE_COPY if self.c.get("module") == "baseline" else MODULE_COPY}"',
            "-A", f'PR_STORE="{self.store()}"',
            *[a for k, v in self.c.get("defines", {}).items() for a in ("-A", f"{k}={v}")],
            "-Y", run, "-w", self.dir,
        ]
        self.kam = spawn(args, self.dir, "kamailio.log", group=True)
        end = time.time() + 20
        while time.time() < end:
            if self.kam.poll() is not None:
                raise RuntimeError(f"{self.name}: the proxy exited: see {self.dir}/kamailio.log")
            if probe(self.port) is not None:
                break
        else:
            raise RuntimeError(f"{self.name}: Kamailio did not answer within 20 s ({self.dir})")
        for n, scen in ((1, self.c["t1"]), (2, self.c["t2"])):
            port = self.p1 if n == 1 else self.p2
            d = os.path.join(self.dir, f"t{n}")
            os.makedirs(d)
            args = [SIPP, "-sf", os.path.join(HERE, "scenarios", scen),
                    "-i", "127.0.0.1", "-p", str(port), "-nostdin",
                    "-timeout", "3600s", "-trace_stat", "-stf", os.path.join(d, "stats.csv"),
                    "-fd", "1"]
            if "30" in scen:
                args += ["-key", "contact", f"<{self.t_uri(2)}>"]
            p = spawn(args, d, "sipp.out")
            self.terms.append((p, d))
            end = time.time() + 10
            while not udp_port_bound(port):
                if p.poll() is not None or time.time() > end:
                    raise RuntimeError(f"{self.name}: terminal t{n} did not start ({d}/sipp.out)")
                time.sleep(0.02)
        for n, q in ((1, "1.0"), (2, "0.5")):
            code = register(self.port, self.t_uri(n), q)
            if code != 200:
                raise RuntimeError(f"{self.name}: REGISTER t{n}: {code}")
        if self.c["learn"]:
            r = self.send(1, 1, trace=False)
            stat = self.c.get("learned_stat", "push_redirect:forwardings_learned")
            if r["ok"] != 1 or (stat is not None and self.stat(stat) != 1):
                raise RuntimeError(f"{self.name}: the 301 was not learned ({self.dir})")
        if WARMUP:
            r = self.send(WARMUP, min(RATE, 200), trace=False)
            if r["ok"] != WARMUP:
                raise RuntimeError(f"{self.name}: warm-up: {r['ok']}/{WARMUP} got 200 ({self.dir})")
        # the terminals write their counts every second (-fd 1)
        time.sleep(1.2)
        return self

    def received(self):
        """(t1, t2): requests each terminal's sipp took (IncomingCall)."""
        return tuple(sipp_stats(os.path.join(d, "stats.csv")).get("IncomingCall(C)", -1)
                     for _, d in self.terms)

    def stat(self, name):
        """One Kamailio statistic ("group:name") through kamcmd (None if absent)."""
        group = name.split(":", 1)[0] + ":"
        try:
            out = subprocess.run([KAMCMD, "-s", self.ctl, "stats.get_statistics", group],
                                 capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        for line in out.splitlines():
            k, _, v = line.partition("=")
            if k.strip() == name:
                try:
                    return int(v.strip())
                except ValueError:
                    return None
        return None

    def send(self, count, rate, trace=True, measure=False):
        """One sipp sender run; returns its figures (and Kamailio's CPU if measure)."""
        h = self.send_begin(count, rate, trace, measure)
        while not self.send_done(h):
            time.sleep(0.01)
        if measure:
            time.sleep(SETTLE)
        return self.send_end(h)

    def send_begin(self, count, rate, trace=True, measure=False):
        """Starts a sender (Kamailio's CPU counted from here if measure)."""
        self.sends += 1
        d = os.path.join(self.dir, f"sender-{self.sends}")
        os.makedirs(d)
        budget = count / rate + 20
        args = [SIPP, "-sf", os.path.join(HERE, "scenarios", "sender.xml"),
                "-key", "ruri", AOR, "-i", "127.0.0.1", "-p", str(free_port()),
                f"127.0.0.1:{self.port}", "-m", str(count), "-r", str(rate), "-rp", "1000",
                "-recv_timeout", "5000", "-timeout", f"{int(budget)}s", "-nostdin",
                "-trace_stat", "-stf", os.path.join(d, "stats.csv"), "-fd", "1",
                "-trace_err", "-error_file", os.path.join(d, "errors.log")]
        if trace:
            args += ["-trace_msg", "-message_file", os.path.join(d, "messages.log")]
        h = dict(d=d, budget=budget, trace=trace, measure=measure, rusage=None, killed=False)
        h["recv0"] = self.received() if measure else None
        h["before"] = cpu_snapshot(self.kam.pid) if measure else None
        h["mach0"] = machine_ticks()
        h["t0"] = time.time()
        h["p"] = spawn(args, d, "sipp.out")
        return h

    def send_done(self, h):
        """Whether the sender has ended (reaped here: wait4 also gives its
        own CPU time); one past its budget is killed."""
        if h["rusage"] is not None:
            return True
        p = h["p"]
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            h["rusage"] = ru
            h["wall"] = time.time() - h["t0"]
            p.returncode = os.waitstatus_to_exitcode(status)
            STARTED.remove(p)
            return True
        if time.time() - h["t0"] > h["budget"] + 15 and not h["killed"]:
            p.kill()
            h["killed"] = True
        return False

    def send_end(self, h):
        """The figures of an ended sender; Kamailio's CPU is counted up to
        now (the caller has let the transactions settle)."""
        d, rusage = h["d"], h["rusage"]
        st = sipp_stats(os.path.join(d, "stats.csv"))
        r = {
            "sent": st.get("OutgoingCall(C)", 0),
            "ok": st.get("SuccessfulCall(C)", 0),
            "failed": st.get("FailedCall(C)", 0),
            "timeouts": st.get("FailedTimeoutOnRecv(C)", 0) + st.get("FailedMaxUDPRetrans(C)", 0),
            "unexpected": st.get("FailedUnexpectedMessage(C)", 0),
            "retrans": st.get("Retransmissions(C)", 0),
            "exit": h["p"].returncode,
            "killed": h["killed"],
            "wall_s": h["wall"],
            "sender_cpu_s": (rusage.ru_utime + rusage.ru_stime) if rusage else float("nan"),
            "dir": d,
        }
        if h["measure"]:
            before = h["before"]
            after = cpu_snapshot(self.kam.pid)
            mach0, mach1 = h["mach0"], machine_ticks()
            r["kam_user_s"], r["kam_sys_s"], r["kam_cpu_s"] = cpu_delta(before, after)
            r["kam_ticks_s"] = r["kam_user_s"] + r["kam_sys_s"]
            # how busy the whole machine was meanwhile (0..1 of all CPUs), and
            # how much of that was not this Kamailio (sipp, the other
            # Kamailios side by side, anything else)
            total = max(mach1[1] - mach0[1], 1)
            r["machine_busy"] = (mach1[0] - mach0[0]) / total
            r["other_busy"] = max(0.0, r["machine_busy"] - r["kam_cpu_s"] * CLK_TCK / total)
            r["kam_procs"] = len(after)
            recv0, recv1 = h["recv0"], self.received()
            r["t1_received"] = recv1[0] - recv0[0]
            r["t2_received"] = recv1[1] - recv0[1]
        if h["trace"]:
            rt = response_times(os.path.join(d, "messages.log"))
            r["p50_ms"] = percentile(rt, 50)
            r["p99_ms"] = percentile(rt, 99)
            r["rtt_n"] = len(rt)
            if not KEEP:
                os.remove(os.path.join(d, "messages.log"))
        return r

    def stop(self):
        for p, _ in self.terms:
            stop(p)
        self.terms = []
        if self.kam:
            stop(self.kam)
            self.kam = None


def flow_ok(name, r, count):
    """Did each terminal receive what the flow says (all requests / none)?"""
    want = {"n": count, "0": 0}
    e1, e2 = CONFIGS[name]["expect"]
    return r["t1_received"] == want[e1] and r["t2_received"] == want[e2]


def clean(r, count, rate):
    return (r["sent"] == count and r["ok"] == count and r["failed"] == 0
            and r["retrans"] == 0 and not r["killed"]
            and r["wall_s"] <= count / rate * 1.10 + 1.5)


# ------------------------------------------------------------------ phases

RUN_FIELDS = ["rep", "config", "rate", "count", "sent", "ok", "failed", "timeouts",
              "unexpected", "retrans", "p50_ms", "p99_ms", "kam_cpu_s", "kam_ticks_s", "kam_user_s", "kam_sys_s", "cpu_per_10k",
              "cpu_vs_sender", "kam_procs", "t1_received", "t2_received", "flow_ok", "sender_cpu_s",
              "machine_busy", "other_busy", "wall_s", "exit"]


def side_by_side(rep, base):
    """One repetition with every configuration at once: all Kamailios up,
    then all senders started together, each Kamailio's CPU measured over
    the same seconds. [(name, setup, figures or the exception)]."""
    setups, out = [], []
    for name in ORDER:
        s = Setup(name, base)
        try:
            s.start()
            setups.append((name, s))
        except Exception as e:  # noqa: BLE001 - reported, the bench goes on
            s.stop()
            out.append((name, s, e))
    # Started together from this thread (no fork from a second thread),
    # reaped as each ends, measured after one common settle.
    handles, results = [], {}
    for name, s in setups:
        try:
            handles.append((name, s, s.send_begin(COUNT, RATE, trace=True, measure=True)))
        except Exception as e:  # noqa: BLE001 - reported, the bench goes on
            results[name] = e
    while not all([s.send_done(h) for _, s, h in handles]):
        time.sleep(0.01)
    time.sleep(SETTLE)
    for name, s, h in handles:
        try:
            results[name] = s.send_end(h)
        except Exception as e:  # noqa: BLE001 - reported, the bench goes on
            results[name] = e
    for name, s in setups:
        s.stop()
        out.append((name, s, results.get(name, RuntimeError("no result"))))
    return out


def one_after_another(rep, base):
    """One repetition, one configuration at a time, in an order that
    rotates with the repetition."""
    k = (rep - 1) % len(ORDER)
    out = []
    for name in ORDER[k:] + ORDER[:k]:
        s = Setup(name, base)
        try:
            s.start()
            r = s.send(COUNT, RATE, trace=True, measure=True)
        except Exception as e:  # noqa: BLE001 - reported, the bench goes on
            r = e
        s.stop()
        out.append((name, s, r))
    return out


def measured_runs(base):
    runs = []
    failed_dirs = []
    for rep in range(1, REPS + 1):
        one_rep = side_by_side if SIDE_BY_SIDE else one_after_another
        for name, s, r in one_rep(rep, base):
            if isinstance(r, Exception):
                log(f"  rep {rep} {name:6s} ERROR {r}")
                failed_dirs.append(s.dir)
                continue
            r.update(rep=rep, config=name, rate=RATE, count=COUNT)
            r["cpu_per_10k"] = r["kam_cpu_s"] * 10000.0 / max(r["sent"], 1)
            # Kamailio's CPU in units of the sender's: the sender does the same
            # work in every config, so this cancels a machine-wide slowdown
            r["cpu_vs_sender"] = r["kam_cpu_s"] / r["sender_cpu_s"] if r["sender_cpu_s"] > 0 else float("nan")
            r["flow_ok"] = flow_ok(name, r, COUNT)
            runs.append(r)
            bad = (r["ok"] != COUNT or r["failed"] or not r["flow_ok"])
            if bad:
                failed_dirs.append(s.dir)
            elif not KEEP:
                shutil.rmtree(s.dir, ignore_errors=True)
            log(f"  rep {rep} {name:6s} sent {r['sent']:6d} 200 {r['ok']:6d} failed {r['failed']:4d}"
                f" retrans {r['retrans']:4d}  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:7.2f} ms"
                f"  kamailio {r['kam_cpu_s']:6.2f} s CPU = {r['cpu_per_10k']:5.2f} s/10k"
                f"  t1/t2 got {r['t1_received']}/{r['t2_received']}"
                + ("" if r["flow_ok"] else "  FLOW MISMATCH")
                + (f"  (kept {s.dir})" if bad else ""))
    return runs, failed_dirs


def step_search(base):
    """Highest clean rate of stock and of F1: rates in order, each config
    until a step fails twice. Both Kamailios stay up; steps alternate."""
    names = [n for n in ("stock", "F1", "OS-stock", "OS-F1") if n in ORDER]
    setups = {}
    best = {n: None for n in names}
    steps = []
    try:
        for n in names:
            setups[n] = Setup(n, base).start()
        live = list(names)
        for rate in STEP_RATES:
            for n in list(live):
                count = max(int(rate * STEP_SECONDS), 100)
                verdict = None
                for attempt in (1, 2):
                    r = setups[n].send(count, rate, trace=False)
                    ok = clean(r, count, rate)
                    steps.append(dict(config=n, rate=rate, count=count, attempt=attempt,
                                      sent=r["sent"], ok=r["ok"], failed=r["failed"],
                                      retrans=r["retrans"], wall_s=round(r["wall_s"], 2),
                                      sender_cpu_s=round(r["sender_cpu_s"], 2), clean=ok))
                    log(f"  step {n:6s} {rate:5d}/s x {count:6d}: 200 {r['ok']:6d} failed {r['failed']:4d}"
                        f" retrans {r['retrans']:5d} in {r['wall_s']:5.1f} s"
                        f" (sender CPU {r['sender_cpu_s']:4.1f} s) -> {'clean' if ok else 'NOT clean'}")
                    # a pause between steps (tm frees a step's transactions 5 s after
                    # their final reply, in its timer process: cheap, see the README)
                    time.sleep(1.5 if QUICK else 3)
                    if ok:
                        verdict = True
                        break
                if verdict:
                    best[n] = rate
                else:
                    live.remove(n)
            if not live:
                break
    finally:
        for s in setups.values():
            s.stop()
            if not KEEP:
                shutil.rmtree(s.dir, ignore_errors=True)
    top = STEP_RATES[-1]
    return {n: (best[n], best[n] == top) for n in names}, steps


# ------------------------------------------------------------------ report

def summarize(runs):
    rows = []
    for name in ORDER:
        rs = [r for r in runs if r["config"] == name]
        if not rs:
            continue
        cpu = [r["cpu_per_10k"] for r in rs]
        rows.append(dict(
            config=name, desc=CONFIGS[name]["desc"], runs=len(rs),
            rate=RATE, count_per_run=COUNT,
            sent=sum(r["sent"] for r in rs), ok=sum(r["ok"] for r in rs),
            failed=sum(r["failed"] for r in rs), retrans=sum(r["retrans"] for r in rs),
            flow_ok=all(r["flow_ok"] for r in rs),
            p50_ms=statistics.median(r["p50_ms"] for r in rs),
            p99_ms=statistics.median(r["p99_ms"] for r in rs),
            cpu_per_10k=statistics.median(cpu), cpu_min=min(cpu), cpu_max=max(cpu),
        ))
    for r in rows:
        # Kamailio's configurations against stock, OpenSIPS's against OS-stock
        a = CONFIGS[r["config"]].get("anchor", "stock")
        anchor = next((x for x in rows if x["config"] == a), None)
        stock_by_rep = {x["rep"]: x["cpu_per_10k"] for x in runs if x["config"] == a}
        stock_norm = {x["rep"]: x["cpu_vs_sender"] for x in runs if x["config"] == a}
        norm = [x["cpu_vs_sender"] / stock_norm[x["rep"]] for x in runs
                if x["config"] == r["config"] and stock_norm.get(x["rep"])]
        r["cpu_norm_vs_stock"] = statistics.median(norm) if norm else float("nan")
        r["cpu_norm_min"] = min(norm) if norm else float("nan")
        r["cpu_norm_max"] = max(norm) if norm else float("nan")
        pairs = [x["cpu_per_10k"] / stock_by_rep[x["rep"]] for x in runs
                 if x["config"] == r["config"] and stock_by_rep.get(x["rep"])]
        r["cpu_paired_vs_stock"] = statistics.median(pairs) if pairs else float("nan")
        r["cpu_paired_min"] = min(pairs) if pairs else float("nan")
        r["cpu_paired_max"] = max(pairs) if pairs else float("nan")
        r["other_busy"] = statistics.median(x["other_busy"] for x in runs if x["config"] == r["config"])
        for k in ("cpu_per_10k", "p50_ms", "p99_ms"):
            r[f"{k}_vs_stock"] = (r[k] / anchor[k]) if anchor and anchor[k] else float("nan")
    return rows


def paired(runs, config, base, key="cpu_per_10k"):
    """Per repetition, config's `key` / base's `key` of the same repetition."""
    by_rep = {r["rep"]: r[key] for r in runs if r["config"] == base and r[key]}
    return [r[key] / by_rep[r["rep"]] for r in runs
            if r["config"] == config and by_rep.get(r["rep"])]


def targets(runs, rows, rates):
    """The issue's targets, each with its measured figure and a verdict."""
    out = []

    def ratio(config, base, target=None):
        raw, norm = paired(runs, config, base), paired(runs, config, base, "cpu_vs_sender")
        if not raw:
            return
        med = statistics.median(raw)
        verdict = ("no target: the price of SPEC section 3" if target is None
                   else f"target <= {target:.2f}: " + ("met" if med <= target else "MISSED"))
        out.append(
            f"  {config} CPU / {base} CPU, median of {len(raw)} paired runs: {med:.3f}"
            f" (per run {', '.join(f'{x:.3f}' for x in raw)}; sender-normalized"
            f" {statistics.median(norm):.3f}) -- {verdict}")

    ratio("F1", "stock")
    ratio("F6", "plain")
    ratio("OS-F1", "OS-stock")
    # SPEC section 6: F6 with the store on Redis against F6 on SQLite
    ratio("F6-redis", "F6", 1.03)
    # History-Info's cost, when the history_info=0 configurations ran
    for config in ("F1", "F2", "F6", "plain-push"):
        raw = paired(runs, config, f"{config}-hi0")
        if raw:
            med = statistics.median(raw)
            out.append(
                f"  {config} CPU / {config}-hi0 CPU (history_info 1 / 0), median of {len(raw)}"
                f" paired runs: {med:.3f} (per run {', '.join(f'{x:.3f}' for x in raw)})"
                + (" -- target <= 1.03: " + ("met" if med <= 1.03 else "MISSED")
                   if config in ("F1", "F2") else ""))
    # The targets are instructions (make bench-instr), which repeat
    # exactly; CPU seconds compare to about 1%.
    out += ["  " + line for line in instr_targets()]
    failed = {r["config"]: r["failed"] + r["retrans"] for r in rows}
    if failed:
        bad = [c for c, n in failed.items() if n]
        out.append(f"  failures or retransmissions at {RATE}/s: "
                   + ("none in any configuration -- target met" if not bad
                      else "in " + ", ".join(bad) + " -- target MISSED"))
    if "F1" in rates and "stock" in rates:
        f1, st = rates["F1"], rates["stock"]
        # (best rate, whether it is the top step): at the top, the search
        # could not tell a higher one
        met = f1[1] or (not st[1] and (f1[0] or 0) >= (st[0] or 0))
        out.append(f"  highest clean rate: F1 {fmt_rate(f1)}, stock {fmt_rate(st)} -- target F1 >= stock: "
                   + ("met" if met else "MISSED"))
    out = ["targets and ratios:"] + out if out else []
    # Not targets: the module against stock modules making its checks in
    # the routing script (cfg/script.cfg), when those configs ran.
    same = []
    for config, base in (("F1", "script-F1"), ("F6", "script-F6")):
        raw = paired(runs, config, base)
        if raw:
            same.append(f"  {config} CPU / {base} CPU, median of {len(raw)} paired runs:"
                        f" {statistics.median(raw):.2f} (per run {', '.join(f'{x:.2f}' for x in raw)})")
    if same:
        out += ["the same checks in the routing script (cfg/script.cfg):"] + same
    return out


def instr_targets():
    """The instruction targets, with the figures of the last `make
    bench-instr` (bench/results/instr/instr.csv) when there are any."""
    sys.path.insert(0, HERE)
    import instr  # noqa: E402 (bench/instr.py: the targets' one table)
    got = {}
    path = os.path.join(HERE, "results", "instr", "instr.csv")
    if os.path.exists(path):
        with open(path) as f:
            for row in csv.DictReader(f):
                got[row["config"]] = float(row["module"])
    lines = instr.target_lines(got)
    if not lines:
        lines = ["targets (module instructions per request): "
                 + ", ".join(f"{c} <= {n:,}" for c, n in instr.TARGETS.items())
                 + " -- run make bench-instr to measure"]
    else:
        lines[0] = lines[0].replace("callgrind", "callgrind, last make bench-instr")
    return lines


def fmt_rate(v):
    if v is None:
        return "-"
    best, capped = v
    if best is None:
        return f"<{STEP_RATES[0]}/s"
    return f">={best}/s" if capped else f"{best}/s"


def table(rows, rates):
    head = ("config", "sent", "200", "fail", "retr", "p50 ms", "p99 ms", "CPU s/10k",
            "min-max", "CPU/stock", "paired", "sender-normalized", "p50/stock", "p99/stock",
            "clean rate")
    lines = [head]
    for r in rows:
        lines.append((
            r["config"], str(r["sent"]), str(r["ok"]), str(r["failed"]), str(r["retrans"]),
            f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['cpu_per_10k']:.3f}",
            f"{r['cpu_min']:.3f}-{r['cpu_max']:.3f}",
            f"{r['cpu_per_10k_vs_stock']:.2f}",
            f"{r['cpu_paired_vs_stock']:.2f}",
            f"{r['cpu_norm_vs_stock']:.2f} ({r['cpu_norm_min']:.2f}-{r['cpu_norm_max']:.2f})",
            f"{r['p50_ms_vs_stock']:.2f}",
            f"{r['p99_ms_vs_stock']:.2f}", fmt_rate(rates.get(r["config"])),
        ))
    w = [max(len(l[i]) for l in lines) for i in range(len(head))]
    out = []
    for i, l in enumerate(lines):
        out.append("  ".join(c.ljust(w[j]) if j == 0 else c.rjust(w[j]) for j, c in enumerate(l)))
        if i == 0:
            out.append("  ".join("-" * x for x in w))
    return "\n".join(out)


def write_csv(path, rows, fields):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})


def chart(rows, path, subtitle):
    colors = {"plain": "0x9e9e9e", "plain-push": "0xc8c8c8", "stock": "0x4c72b0", "F1": "0xdd8452", "F6": "0x55a868", "F2": "0xc44e52",
              "script-F1": "0x8172b3", "script-F6": "0x937860"}
    dat = path[:-4] + ".dat"
    with open(dat, "w") as f:
        f.write("# config median min max color ratio-to-stock paired-ratio-to-stock\n")
        for r in rows:
            ratio = float(r["cpu_per_10k_vs_stock"])
            norm = float(r.get("cpu_paired_vs_stock", "nan"))
            f.write(f"{r['config']} {float(r['cpu_per_10k']):.4f} {float(r['cpu_min']):.4f}"
                    f" {float(r['cpu_max']):.4f} {int(colors.get(r['config'], '0x777777'), 16)}"
                    f" {ratio if ratio == ratio else 0:.3f} {norm if norm == norm else 0:.3f}\n")
    ymax = max(float(r["cpu_max"]) for r in rows) * 1.35
    gp = f"""
set terminal pngcairo size 1000,560 font "sans,11"
set output '{path}'
set title "Kamailio CPU seconds per 10,000 MESSAGEs (all processes)\\n{subtitle}"
set ylabel "CPU seconds per 10k requests (median; whiskers min-max)"
set label 1 "x stock: ratio of the medians; paired: median over repetitions of CPU / stock's CPU in the same repetition (the targets' figure)" at graph 0.01, graph 0.97 font "sans,9"
set style fill solid 0.75 border -1
set boxwidth 0.6
set yrange [0:{ymax:.2f}]
set offsets 0.5, 0.5, 0, 0
set grid ytics
set xtics nomirror
set key off
plot '{dat}' using 0:2:5:xtic(1) with boxes lc rgb variable, \\
     '' using 0:2:3:4 with yerrorbars lc rgb 'black' lw 1.5 pt 0, \\
     '' using 0:4:($6 > 0 ? sprintf("%.2f s\\n%.2fx stock\\npaired %.2fx", $2, $6, $7) : sprintf("%.2f s", $2)) with labels offset 0,2.8
"""
    try:
        res = subprocess.run([GNUPLOT], input=gp, text=True, capture_output=True, timeout=60)
        if res.returncode != 0:
            log(f"bench: gnuplot failed: {res.stderr.strip()}")
            return False
    except (OSError, subprocess.TimeoutExpired) as e:
        log(f"bench: no chart ({e}); install gnuplot-nox")
        return False
    return True


def main():
    t_start = time.time()
    kam = any(CONFIGS[n].get("proxy") != "opensips" for n in ORDER)
    ops = any(CONFIGS[n].get("proxy") == "opensips" for n in ORDER)
    for b, pkg in ((KAMAILIO, "kamailio"), (SIPP, "sip-tester"), (KAMCMD, "kamailio")):
        if (kam or b == SIPP) and not shutil.which(b) and not os.path.isfile(b):
            sys.exit(f"bench: {b} not found (Debian package {pkg}; make bench installs it)")
    if kam and not os.path.isfile(PR_MODULE):
        sys.exit(f"bench: {PR_MODULE} not found: make build")
    if ops and not (os.path.isfile(OS_PR_MODULE) and os.path.isfile(OPENSIPS)):
        sys.exit(f"bench: {OS_PR_MODULE} or {OPENSIPS} not found: make opensips")
    os.makedirs(OUT, exist_ok=True)
    base = tempfile.mkdtemp(prefix="push_redirect-bench-")
    # a private copy: a rebuild of build/ during the bench cannot swap the
    # module under a running Kamailio
    global MODULE_COPY
    MODULE_COPY = os.path.join(base, "push_redirect.so")
    if kam:
        shutil.copy2(PR_MODULE, MODULE_COPY)
    if ops:
        global OS_MODULE_COPY
        os.makedirs(os.path.join(base, "opensips"), exist_ok=True)
        OS_MODULE_COPY = os.path.join(base, "opensips", "push_redirect.so")
        shutil.copy2(OS_PR_MODULE, OS_MODULE_COPY)
    if BASELINE:
        if not os.path.isfile(BASELINE):
            sys.exit(f"bench: BENCH_BASELINE {BASELINE} not found")
        global BASELINE_COPY
        os.makedirs(os.path.join(base, "baseline"), exist_ok=True)
        BASELINE_COPY = os.path.join(base, "baseline", "push_redirect.so")
        shutil.copy2(BASELINE, BASELINE_COPY)
    with open(MODULE_COPY if kam else OS_MODULE_COPY, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    log(f"bench: {REPS} reps x {len(ORDER)} configs ({', '.join(ORDER)}), {COUNT} MESSAGEs at {RATE}/s each"
        f" ({'side by side' if SIDE_BY_SIDE else 'one after another'}),"
        f" children={CHILDREN}, settle {SETTLE:g} s; work dir {base}")
    load0 = open("/proc/loadavg").read().split()[:3]
    log(f"bench: module {PR_MODULE} (sha256 {digest}, copied); {os.cpu_count()} CPUs;"
        f" load average {' '.join(load0)}")
    runs, failed_dirs = measured_runs(base)
    rates, steps = {}, []
    if SEARCH:
        log(f"bench: step search (stock, F1): rates {STEP_RATES}, {STEP_SECONDS:g} s per step")
        try:
            rates, steps = step_search(base)
        except Exception as e:  # noqa: BLE001
            log(f"bench: step search failed: {e}")
    rows = summarize(runs)
    for r in rows:
        r["clean_rate"] = fmt_rate(rates.get(r["config"]))
    text = table(rows, rates)
    elapsed = time.time() - t_start
    load1 = open("/proc/loadavg").read().split()[:3]
    subtitle = (f"{RATE}/s, {COUNT} per run, {REPS} runs each "
                f"({'side by side' if SIDE_BY_SIDE else 'one after another'}), children={CHILDREN}, "
                f"{os.cpu_count()} CPUs, allocator {MEM_ARGS[1] if MEM_ARGS else 'Kamailio default (qm)'}")
    header = (f"push_redirect bench: {subtitle}; p50/p99 = first MESSAGE sent -> 200 (sender's clock);\n"
              f"CPU = utime+stime of every Kamailio process from /proc, medians over runs; "
              f"paired = median over reps of CPU(config)/CPU(stock) of the same rep;\n"
              f"sender-normalized = the same with each CPU divided by the sipp sender's CPU of its run "
              f"(the sender's work is the same in every config: this cancels a machine-wide slowdown), "
              f"median (min-max); "
              f"clean rate = step search ({STEP_SECONDS:g} s per step).\n"
              f"Module sha256 {digest}; memory manager {MEM_ARGS[1] if MEM_ARGS else 'Kamailio default (qm)'}, shm {SHM_MB} MB; "
              f"load average {' '.join(load0)} at start, {' '.join(load1)} at end.")
    goals = targets(runs, rows, rates)
    log("")
    log(header)
    log(text)
    for line in goals:
        log(line)
    write_csv(os.path.join(OUT, "runs.csv"), runs, RUN_FIELDS)
    write_csv(os.path.join(OUT, "summary.csv"), rows,
              ["config", "desc", "runs", "rate", "count_per_run", "sent", "ok", "failed", "retrans",
               "flow_ok", "p50_ms", "p99_ms", "cpu_per_10k", "cpu_min", "cpu_max",
               "cpu_per_10k_vs_stock", "cpu_paired_vs_stock", "cpu_paired_min", "cpu_paired_max",
               "cpu_norm_vs_stock", "cpu_norm_min", "cpu_norm_max",
               "p50_ms_vs_stock", "p99_ms_vs_stock", "other_busy", "clean_rate"])
    if steps:
        write_csv(os.path.join(OUT, "steps.csv"), steps,
                  ["config", "rate", "count", "attempt", "sent", "ok", "failed", "retrans",
                   "wall_s", "sender_cpu_s", "clean"])
    png = os.path.join(OUT, "cpu_per_10k.png")
    have_png = bool(rows) and chart(rows, png, subtitle)
    with open(os.path.join(OUT, "summary.txt"), "w") as f:
        f.write(header + "\n" + text + "\n")
        if goals:
            f.write("\n" + "\n".join(goals) + "\n")
        f.write(f"\nbench.py wall time {elapsed:.0f} s\n")
    log("")
    log(f"bench: wrote {OUT}/summary.csv, runs.csv" + (", steps.csv" if steps else "")
        + (", cpu_per_10k.png" if have_png else "") + ", summary.txt")
    log(f"bench: wall time {elapsed:.0f} s")
    if failed_dirs:
        log("bench: runs with failures or a flow mismatch kept in: " + " ".join(failed_dirs))
    elif not KEEP:
        shutil.rmtree(base, ignore_errors=True)
    complete = all(len([r for r in runs if r["config"] == n]) == REPS for n in ORDER)
    flows = all(r["flow_ok"] for r in runs)
    lost = sum(r["count"] - r["ok"] for r in runs)
    if lost:
        log(f"bench: WARNING: {lost} requests did not get their 200 (see runs.csv)")
    if not flows:
        log("bench: ERROR: a terminal did not receive what its flow says: the figures are not comparable")
    if not complete:
        log("bench: ERROR: some runs did not complete")
    return 0 if complete and flows else 1


def chart_only(out):
    """`bench.py --chart [DIR]`: redraws DIR/cpu_per_10k.png from DIR/summary.csv."""
    with open(os.path.join(out, "summary.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    r0 = rows[0]
    subtitle = f"{r0['rate']}/s, {r0['count_per_run']} per run, {r0['runs']} runs each"
    try:  # the first line of summary.txt has the full subtitle
        first = open(os.path.join(out, "summary.txt")).readline()
        subtitle = first.split("push_redirect bench: ", 1)[1].split("; p50", 1)[0]
    except (OSError, IndexError):
        pass
    return 0 if chart(rows, os.path.join(out, "cpu_per_10k.png"), subtitle) else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--chart":
        sys.exit(chart_only(sys.argv[2] if len(sys.argv) > 2 else OUT))
    sys.exit(main())
