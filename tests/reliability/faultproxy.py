#!/usr/bin/env python3
"""faultproxy: a fault-injecting TCP proxy for the mpconn reliability suite.

    faultproxy.py --listen HOST:PORT --upstream HOST:PORT [--seed N] [options]

Every accepted connection is joined to a fresh connection to the upstream
address, and bytes are forwarded in both directions with faults injected on
the way (each decision drawn from a random.Random seeded with the seed, the
connection number and the direction, so a run is repeatable as far as the
kernel's chunking allows):

  - re-chunking: with probability --p-tiny, the first 1..--tiny-max bytes of a
    received chunk are forwarded one byte per send() (TCP_NODELAY, so one
    segment each); the rest goes out in odd-sized segments of 1..--odd-max
    bytes;
  - delays: with probability --p-delay per segment, a sleep of up to
    --delay-max-ms milliseconds;
  - stalls: with probability --p-stall per received chunk, a pause of
    --stall-min-ms..--stall-max-ms milliseconds;
  - resets: with --reset-min/--reset-max, the client-to-server direction is
    cut with a TCP reset (SO_LINGER 0 on both sockets, then close) at a random
    byte offset in that range; --p-reset adds a per-chunk chance of a reset at
    a random point inside the chunk, in either direction.

Prints "faultproxy listening on HOST:PORT" on stdout once bound (port 0 picks
a free port).  On SIGTERM/SIGINT it writes the counters as JSON to
--stats-file (also rewritten whenever a connection ends) and exits 0.
Standard library only; runs on Python 3.6+.
"""
import argparse
import json
import os
import random
import signal
import socket
import struct
import sys
import threading
import time


def parse_addr(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class Stats:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.c = {
            "connections": 0, "connections_closed": 0, "bytes_c2s": 0, "bytes_s2c": 0,
            "segments": 0, "tiny_segments": 0, "odd_segments": 0, "delays": 0,
            "stalls": 0, "resets": 0, "upstream_failures": 0,
        }

    def add(self, key, n=1):
        with self.lock:
            self.c[key] = self.c.get(key, 0) + n

    def dump(self):
        if not self.path:
            return
        with self.lock:
            data = json.dumps(self.c, sort_keys=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(data + "\n")
        os.replace(tmp, self.path)


class Pair:
    """One proxied connection: the client socket and the upstream socket."""

    def __init__(self, a, b):
        self.a, self.b = a, b
        self.lock = threading.Lock()
        self.dead = False
        self.done = 0

    def reset(self):
        with self.lock:
            if self.dead:
                return
            self.dead = True
            # SO_LINGER 0 makes the final close send a RST.  The other pump
            # thread may be blocked in recv() on one of these sockets, which
            # holds a reference: close() alone would then send nothing until
            # that recv returns.  shutdown(SHUT_RD) wakes it (recv returns
            # b"") without putting anything on the wire; its exit drops the
            # last reference and the kernel resets the connection.
            for s in (self.a, self.b):
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.shutdown(socket.SHUT_RD)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass

    def finish_one(self):
        with self.lock:
            self.done += 1
            last = self.done == 2
            if last and not self.dead:
                self.dead = True
                for s in (self.a, self.b):
                    try:
                        s.close()
                    except OSError:
                        pass
        return last


def plan_segments(data, rng, o):
    """Splits one received chunk into the segments to send."""
    segs = []
    pos = 0
    if o.p_tiny > 0 and rng.random() < o.p_tiny:
        n = min(len(data), rng.randint(1, o.tiny_max))
        segs.extend(("tiny", data[i:i + 1]) for i in range(n))
        pos = n
    while pos < len(data):
        if o.odd_max > 1:
            size = rng.randrange(1, o.odd_max + 1, 2)  # odd sizes only
        else:
            size = len(data) - pos
        segs.append(("odd", data[pos:pos + size]))
        pos += size
    return segs


def pump(pair, src, dst, rng, o, stats, direction, reset_at):
    key = "bytes_" + direction
    moved = 0
    try:
        while True:
            data = src.recv(65536)
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                break
            if o.p_stall > 0 and rng.random() < o.p_stall:
                stats.add("stalls")
                time.sleep(rng.uniform(o.stall_min_ms, o.stall_max_ms) / 1000.0)
            cut = None
            if reset_at is not None and moved + len(data) > reset_at:
                cut = reset_at - moved
            elif o.p_reset > 0 and rng.random() < o.p_reset:
                cut = rng.randrange(0, len(data))
            if cut is not None:
                data = data[:cut]
            for kind, seg in plan_segments(data, rng, o):
                if o.p_delay > 0 and rng.random() < o.p_delay:
                    stats.add("delays")
                    time.sleep(rng.uniform(0, o.delay_max_ms) / 1000.0)
                dst.sendall(seg)
                stats.add("segments")
                stats.add(kind + "_segments")
                stats.add(key, len(seg))
                moved += len(seg)
            if cut is not None:
                stats.add("resets")
                pair.reset()
                return
    except OSError:
        pass  # the other direction reset or closed the pair
    finally:
        if pair.finish_one():
            stats.add("connections_closed")
            stats.dump()


def serve(o):
    stats = Stats(o.stats_file)
    lhost, lport = parse_addr(o.listen)
    up = parse_addr(o.upstream)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((lhost, lport))
    ls.listen(256)
    host, port = ls.getsockname()[:2]
    print("faultproxy listening on %s:%d" % (host, port), flush=True)

    def on_signal(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    n = 0
    try:
        while True:
            c, _ = ls.accept()
            n += 1
            stats.add("connections")
            try:
                u = socket.create_connection(up, timeout=10)
                u.settimeout(None)
            except OSError as e:
                stats.add("upstream_failures")
                print("faultproxy: upstream %s:%d: %s" % (up[0], up[1], e), file=sys.stderr, flush=True)
                c.close()
                continue
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pair = Pair(c, u)
            reset_at = None
            if o.reset_max > 0:
                reset_at = random.Random("%d:%d:reset" % (o.seed, n)).randint(o.reset_min, o.reset_max)
            for src, dst, d, r in ((c, u, "c2s", reset_at), (u, c, "s2c", None)):
                rng = random.Random("%d:%d:%s" % (o.seed, n, d))
                t = threading.Thread(target=pump, args=(pair, src, dst, rng, o, stats, d, r), daemon=True)
                t.start()
    finally:
        stats.dump()
        print("faultproxy stats: " + json.dumps(stats.c, sort_keys=True), file=sys.stderr, flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", required=True)
    p.add_argument("--upstream", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stats-file")
    p.add_argument("--p-tiny", type=float, default=0.05)
    p.add_argument("--tiny-max", type=int, default=48)
    p.add_argument("--odd-max", type=int, default=4095)
    p.add_argument("--p-delay", type=float, default=0.002)
    p.add_argument("--delay-max-ms", type=float, default=3.0)
    p.add_argument("--p-stall", type=float, default=0.01)
    p.add_argument("--stall-min-ms", type=float, default=50.0)
    p.add_argument("--stall-max-ms", type=float, default=250.0)
    p.add_argument("--p-reset", type=float, default=0.0)
    p.add_argument("--reset-min", type=int, default=0)
    p.add_argument("--reset-max", type=int, default=0)
    o = p.parse_args(argv)
    if o.odd_max > 1 and o.odd_max % 2 == 0:
        o.odd_max -= 1
    serve(o)


if __name__ == "__main__":
    main()
