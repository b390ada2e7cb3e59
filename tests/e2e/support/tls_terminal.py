#!/usr/bin/env python3
"""A SIP terminal over TLS for the e2e tests (Debian's sipp is built
without TLS: `sipp -v` shows no TLS, and `-t l1` is refused).

It listens on --ip:--port with --cert/--key, reads SIP messages from each
connection (framed by Content-Length), writes each one to --log in the
format of sipp's -trace_msg (so the harness counts it as it counts a sipp
terminal's), one "RECV <method> <call-id>" line per request to --actions,
and answers every request with --code (0: never answers). It exits after
--lifetime seconds at the latest; the harness kills it by PID before.
"""
import argparse
import datetime
import socket
import ssl
import sys
import threading
import time

SEP = "-----------------------------------------------"


def header(head, name):
    """The values of header `name` (case-insensitive, compact forms of Via,
    From, To, Call-ID and Content-Length included), in order."""
    compact = {"via": "v", "from": "f", "to": "t", "call-id": "i", "content-length": "l"}
    want = {name.lower(), compact.get(name.lower(), "")}
    out = []
    for line in head.split("\r\n")[1:]:
        n, sep, v = line.partition(":")
        if sep and n.strip().lower() in want:
            out.append(v.strip())
    return out


class Terminal:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.n = 0

    def log(self, msg):
        now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")
        text = msg.decode("latin-1")
        with self.lock, open(self.args.log, "a", encoding="latin-1") as f:
            f.write(f"{SEP} {now}\nTLS message received [{len(msg)}] bytes :\n\n{text}\n\n")

    def handled(self, method, call_id):
        with self.lock, open(self.args.actions, "a", encoding="latin-1") as f:
            f.write(f"RECV {method} {call_id}\n")

    def reply(self, head):
        self.n += 1
        lines = [f"SIP/2.0 {self.args.code} {'OK' if self.args.code < 300 else 'Failed'}"]
        lines += [f"Via: {v}" for v in header(head, "Via")]
        lines += [f"From: {v}" for v in header(head, "From")[:1]]
        for to in header(head, "To")[:1]:
            lines.append(f"To: {to}" if ";tag=" in to else f"To: {to};tag=tls{self.n}")
        lines += [f"Call-ID: {v}" for v in header(head, "Call-ID")[:1]]
        lines += [f"CSeq: {v}" for v in header(head, "CSeq")[:1]]
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def serve(self, conn):
        buf = b""
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while True:
                    buf = buf.lstrip(b"\r\n")  # keep-alive CRLFs
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head = buf[:end].decode("latin-1")
                    cl = header(head, "Content-Length")
                    length = int(cl[0]) if cl and cl[0].isdigit() else 0
                    if len(buf) < end + 4 + length:
                        break
                    msg, buf = buf[: end + 4 + length], buf[end + 4 + length :]
                    self.log(msg)
                    if head.startswith("SIP/2.0"):
                        continue
                    method = head.split(" ", 1)[0]
                    call_id = (header(head, "Call-ID") or ["-"])[0]
                    self.handled(method, call_id)
                    if self.args.code and method != "ACK":
                        conn.sendall(self.reply(head))
        except (OSError, ssl.SSLError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def run(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.args.cert, self.args.key)
        family = socket.AF_INET6 if ":" in self.args.ip else socket.AF_INET
        srv = socket.socket(family, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((self.args.ip, self.args.port))
        srv.listen(64)
        srv.settimeout(0.5)
        end = time.monotonic() + self.args.lifetime
        while time.monotonic() < end:
            try:
                raw, _ = srv.accept()
            except socket.timeout:
                continue
            try:
                raw.settimeout(self.args.lifetime)
                conn = ctx.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError) as e:
                print(f"handshake failed: {e}", file=sys.stderr, flush=True)
                raw.close()
                continue
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ip", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--code", type=int, default=200)
    ap.add_argument("--log", required=True)
    ap.add_argument("--actions", required=True)
    ap.add_argument("--lifetime", type=float, default=300.0)
    Terminal(ap.parse_args()).run()


if __name__ == "__main__":
    main()
