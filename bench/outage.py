#!/usr/bin/env python3
"""A Redis outage in the middle of a run (SPEC §6: requests lost: 0).

One Kamailio node (cfg/push.cfg) on a redis-server started here (AOF on),
the F6 flow (t1 answers 301 Contact t2, learned first): a sipp sender sends
BENCH_COUNT MESSAGEs at BENCH_RATE per second; a third of the way in, the
redis-server is killed (-9), two thirds in it is started again on the same
port and folder. With BENCH_OUTAGE=sentinel instead: a master, a replica
and a sentinel (quorum 1, down after 500 ms); the master is killed a third
of the way in and the replica promoted.

Printed: sent, 200s, failures, timeouts, retransmissions (requests lost =
sent - 200s), what t1 and t2 received (t1: the requests routed through the
redirect while the store could not be read), and store_errors.

  python3 bench/outage.py        (the lead's `make bench` does not run it)
"""

import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ["BENCH_CONFIGS"] = "F6"
import bench  # noqa: E402

MODE = bench.env_str("BENCH_OUTAGE", "restart")
COUNT = bench.env_int("BENCH_COUNT", 6000)
RATE = bench.RATE
REDIS = bench.tool("REDIS_SERVER", "redis-server")
SENTINEL = bench.tool("REDIS_SENTINEL", "redis-sentinel")

bench.CONFIGS["outage"] = dict(cfg="push.cfg", t1="uas_301.xml", t2="uas_200.xml", learn=True,
                               store="redis", desc="F6 on Redis, outage", expect=("0", "n"))


def tcp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def answers(port, cmd=b"PING\r\n", want=b"+PONG"):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3) as c:
            c.sendall(cmd)
            return c.recv(256).startswith(want)
    except OSError:
        return False


def redis(d, port, *extra):
    os.makedirs(d, exist_ok=True)
    p = bench.spawn([REDIS, "--bind", "127.0.0.1", "--port", str(port), "--dir", d,
                     "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                     "--daemonize", "no", *extra], d, "redis.out")
    end = time.time() + 10
    while not answers(port):
        if time.time() > end:
            raise RuntimeError(f"redis-server on {port} did not answer ({d})")
        time.sleep(0.05)
    return p


def kill9(p):
    p.kill()
    p.wait()
    bench.STARTED.remove(p)


def master_port(sentinel_port):
    try:
        with socket.create_connection(("127.0.0.1", sentinel_port), timeout=0.3) as c:
            c.sendall(b"SENTINEL get-master-addr-by-name mymaster\r\n")
            reply = c.recv(256).decode(errors="replace").split("\r\n")
            return int(reply[4]) if len(reply) > 4 and reply[4].isdigit() else None
    except OSError:
        return None


def main():
    work = tempfile.mkdtemp(prefix="push_redirect-outage-")
    try:
        port = tcp_port()
        master = redis(os.path.join(work, "redis"), port)
        url = f"redis://127.0.0.1:{port}/0"
        if MODE == "sentinel":
            rport, sport = tcp_port(), tcp_port()
            redis(os.path.join(work, "replica"), rport, "--replicaof", "127.0.0.1", str(port))
            sd = os.path.join(work, "sentinel")
            os.makedirs(sd)
            conf = os.path.join(sd, "sentinel.conf")
            with open(conf, "w") as f:
                f.write(f"bind 127.0.0.1\nport {sport}\ndir {sd}\n"
                        f"sentinel monitor mymaster 127.0.0.1 {port} 1\n"
                        "sentinel down-after-milliseconds mymaster 500\n"
                        "sentinel failover-timeout mymaster 2000\n")
            bench.spawn([SENTINEL, conf], sd, "sentinel.out")
            end = time.time() + 10
            while master_port(sport) != port:
                if time.time() > end:
                    raise RuntimeError("the sentinel does not watch the master")
                time.sleep(0.05)
            url = f"redis+sentinel://127.0.0.1:{sport}/mymaster/0"
        s = bench.Setup("outage", work)
        s.redis_url = url
        s.start()
        if MODE == "sentinel":
            time.sleep(1.0)  # the learned forwarding reaches the replica
        errors0 = s.stat("push_redirect:store_errors") or 0
        h = s.send_begin(COUNT, RATE, trace=True, measure=True)
        third = COUNT / RATE / 3
        time.sleep(third)
        kill9(master)
        print(f"outage: {'master' if MODE == 'sentinel' else 'redis-server'} killed at {third:.1f} s")
        if MODE != "sentinel":
            time.sleep(third)
            master = redis(os.path.join(work, "redis"), port)
            print(f"outage: redis-server back at {2 * third:.1f} s")
        while not s.send_done(h):
            time.sleep(0.1)
        r = s.send_end(h)
        errors = (s.stat("push_redirect:store_errors") or 0) - errors0
        lost = r["sent"] - r["ok"]
        print(f"outage ({MODE}): sent {r['sent']} 200 {r['ok']} failed {r['failed']} "
              f"timeouts {r.get('timeouts')} retrans {r['retrans']} -> requests lost {lost}; "
              f"t1/t2 received {r['t1_received']}/{r['t2_received']}; store_errors {errors}; "
              f"p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms")
        return 0 if lost == 0 and r["failed"] == 0 else 1
    finally:
        bench.stop_all()


if __name__ == "__main__":
    sys.exit(main())
