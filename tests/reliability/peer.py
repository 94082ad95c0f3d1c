#!/usr/bin/env python3
"""A Python peer for the reliability suite (stock multiprocessing.connection
or the mpconn package), and the shared message plan.

    peer.py recv --impl stock|mpconn --address HOST:PORT [--authkey K] --seed S --count N
    peer.py send --impl stock|mpconn --address HOST:PORT [--authkey K] --seed S --count N
    peer.py bigsend|bigrecv --impl ... --address ... --size BYTES

recv listens (prints "listening on HOST:PORT" on stderr), accepts one client
and receives; send connects and sends.  bigsend sends one message of --size
bytes; bigrecv receives one (used by the SIGKILL tests).  Every peer ends by
printing one JSON line on stdout: {"role", "impl", "python", "sent",
"received", "ok", "bad", "first_bad", "error"}; "error" is "ExcType: text"
or null.  Every blocking step has a deadline (--deadline seconds overall,
--idle seconds between messages); running out of it is reported as an error
and the process exits 3.  Runs on Python 3.6+.

Message i of a plan (seed, count) has a size drawn from a mix of sizes from
0 B to 1 MiB; messages of 12 bytes or more start with (seq: u64 BE,
crc32(body): u32 BE) so a receiver can tell a loss, a duplicate, a reorder
and a corruption apart; shorter ones have a fixed content per position.
"""
import argparse
import json
import os
import random
import struct
import sys
import threading
import time
import zlib

HDR = struct.Struct(">QI")
MIB = 1 << 20


def plan_sizes(seed, count):
    rng = random.Random(seed)
    sizes = []
    for i in range(count):
        r = rng.random()
        if r < 0.004:
            s = rng.randint(MIB // 2, MIB)
        elif r < 0.05:
            s = rng.randint(4096, 70000)
        elif r < 0.08:
            s = rng.randint(0, 11)
        else:
            s = rng.randint(12, 600)
        sizes.append(s)
    # The boundary sizes are always in the plan.
    fixed = [0, 1, 16384, 16385, MIB]
    for k, s in enumerate(fixed):
        if k + 1 < count:
            sizes[k + 1] = s
    return sizes


def payload(seed, i, size):
    if size < HDR.size:
        return bytes((i * 7 + k + 1) & 0xFF for k in range(size))
    n = size - HDR.size
    body = random.Random(seed * 1000003 + i).getrandbits(8 * n).to_bytes(n, "little") if n else b""
    return HDR.pack(i, zlib.crc32(body) & 0xFFFFFFFF) + body


def plan(seed, count):
    return [payload(seed, i, s) for i, s in enumerate(plan_sizes(seed, count))]


class Checker:
    """Checks received messages against the plan, in order."""

    def __init__(self, seed, count):
        self.seed, self.count = seed, count
        self.sizes = plan_sizes(seed, count)
        self.received = 0
        self.ok = 0
        self.bad = 0
        self.first_bad = None

    def check(self, msg):
        j = self.received
        self.received += 1
        if j < self.count and len(msg) == self.sizes[j] and msg == payload(self.seed, j, self.sizes[j]):
            self.ok += 1
            return True
        self.bad += 1
        if self.first_bad is None:
            self.first_bad = "message %d: %s" % (j, self.describe(j, msg))
        return False

    def describe(self, j, msg):
        if j >= self.count:
            return "extra message of %d bytes" % len(msg)
        if len(msg) >= HDR.size:
            seq, crc = HDR.unpack_from(msg)
            body = msg[HDR.size:]
            if zlib.crc32(body) & 0xFFFFFFFF != crc:
                return "corrupt (%d bytes, checksum mismatch, seq field %d)" % (len(msg), seq)
            if seq < j:
                return "duplicate or reordered (seq %d)" % seq
            if seq > j:
                return "gap: messages %d..%d lost (got seq %d)" % (j, seq - 1, seq)
        return "expected %d bytes, got %d bytes" % (self.sizes[j], len(msg))


def load_impl(name):
    if name == "stock":
        from multiprocessing.connection import Client, Listener
    else:
        from mpconn import Client, Listener
    return Listener, Client


def parse_addr(text):
    host, _, port = text.rpartition(":")
    return (host, int(port))


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["send", "recv", "bigsend", "bigrecv"])
    p.add_argument("--impl", choices=["stock", "mpconn"], default="stock")
    p.add_argument("--address", required=True)
    p.add_argument("--authkey")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--size", type=int, default=64 * MIB)
    p.add_argument("--deadline", type=float, default=120.0)
    p.add_argument("--idle", type=float, default=30.0)
    o = p.parse_args(argv)

    result = {"role": o.role, "impl": o.impl, "python": "%d.%d.%d" % sys.version_info[:3],
              "sent": 0, "received": 0, "ok": 0, "bad": 0, "first_bad": None, "error": None}
    lock = threading.Lock()

    def report(code):
        with lock:
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
            os._exit(code)

    def watchdog():
        result["error"] = "deadline: no result within %.0f s" % o.deadline
        report(3)

    timer = threading.Timer(o.deadline, watchdog)
    timer.daemon = True
    timer.start()

    key = o.authkey.encode() if o.authkey is not None else None
    Listener, Client = load_impl(o.impl)
    addr = parse_addr(o.address)
    code = 0
    conn = None
    try:
        if o.role in ("recv", "bigrecv"):
            listener = Listener(addr, authkey=key)
            host, port = listener.address[:2]
            sys.stderr.write("listening on %s:%d\n" % (host, port))
            sys.stderr.flush()
            conn = listener.accept()
            if o.role == "recv":
                chk = Checker(o.seed, o.count)
                try:
                    while chk.received < o.count:
                        if not conn.poll(o.idle):
                            raise TimeoutError("no message within %.0f s (after %d messages)"
                                               % (o.idle, chk.received))
                        chk.check(conn.recv_bytes())
                finally:
                    result.update(received=chk.received, ok=chk.ok, bad=chk.bad, first_bad=chk.first_bad)
            else:
                if not conn.poll(o.idle):
                    raise TimeoutError("no message within %.0f s" % o.idle)
                msg = conn.recv_bytes()
                result["received"] = 1
                result["ok"] = int(len(msg) == o.size)
        else:
            conn = Client(addr, authkey=key)
            sys.stderr.write("connected\n")
            sys.stderr.flush()
            if o.role == "send":
                for i, s in enumerate(plan_sizes(o.seed, o.count)):
                    conn.send_bytes(payload(o.seed, i, s))
                    result["sent"] = i + 1
                # Wait for the receiver to close, so a reset after our last
                # write is still seen here.
                try:
                    if conn.poll(o.idle):
                        conn.recv_bytes()
                except EOFError:
                    pass
            else:
                big = b"\xa5" * o.size
                sys.stderr.write("sending %d bytes\n" % o.size)
                sys.stderr.flush()
                conn.send_bytes(big)
                result["sent"] = 1
    except Exception as e:  # noqa: BLE001 - every failure is the result
        result["error"] = "%s: %s" % (type(e).__name__, e)
        code = 1
    if result["bad"]:
        code = 2
    report(code)


if __name__ == "__main__":
    main()
