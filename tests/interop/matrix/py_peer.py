#!/usr/bin/env python
"""One side of an interop-matrix cell, for stock CPython and mpconn Python.

Runs unchanged under every CPython the matrix drives (2.7 and 3.6+): no
f-strings, no type hints, no bytes.hex().  --impl stock uses the standard
library's multiprocessing.connection; --impl mpconn uses `from mpconn import
Listener, Client` (the drop-in API), with exactly the same calls.

  py_peer.py --impl IMPL server ADDRESS --sizes A,B,... --seed S [--mode each|all]
  py_peer.py --impl IMPL client ADDRESS --sizes A,B,... --seed S

ADDRESS uses mpconn's syntax: "host:port", "/path" or "@abstract".  The
authkey comes from the environment (MATRIX_AUTHKEY, text); without it there
is no handshake (authkey=None).  Message i is pattern(seed, i, size) (see
pattern.py; c_peer.c and lua_peer.lua compute the same bytes).

The server prints "ADDRESS <bound address>" and accepts one client.  The
client sends every message; the server echoes each one back (--mode each:
right after it arrives; --mode all: after all have arrived, for a client
that sends everything before it reads).  Both sides check every message they
receive against the pattern and print

  RECV <index> <length> <sha256 hex> ok|BAD

and never the data.  The server then waits for the client to hang up.
Last line "DONE".  Exit status: 0 success, 3 authentication error (line
"AUTHERROR <text>"), 4 any other error ("ERROR <type>: <text>"), 5 a
received message was not byte-exact.
"""
from __future__ import print_function

import argparse
import hashlib
import os
import sys

BLOCK_LEN = 65521  # prime: shifted copies never line up with the period
OFFSET_STEP = 7919


def pattern_block(seed):
    x = (seed * 2654435761 + 12345) & 0x7FFFFFFF
    out = bytearray(BLOCK_LEN)
    for i in range(BLOCK_LEN):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out[i] = (x >> 16) & 0xFF
    return bytes(out)


def pattern(block, index, size):
    """Message `index`: `size` bytes of the block, cyclically, from a
    per-index offset."""
    if size == 0:
        return b""
    off = (index * OFFSET_STEP) % BLOCK_LEN
    reps = (off + size) // BLOCK_LEN + 1
    return (block * reps)[off:off + size]


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def native_address(addr):
    """mpconn address syntax -> what Listener/Client take."""
    if addr.startswith("@"):
        return "\0" + addr[1:]
    if "/" in addr or ":" not in addr:
        return addr
    host, port = addr.rsplit(":", 1)
    return (host, int(port))


def format_address(a):
    if isinstance(a, tuple):
        return "%s:%d" % (a[0], a[1])
    if isinstance(a, bytes) and not isinstance(a, str):
        a = a.decode("latin-1")
    if a.startswith("\0"):
        return "@" + a[1:]
    return a


class Checker(object):
    def __init__(self, seed, sizes):
        self.block = pattern_block(seed)
        self.sizes = sizes
        self.bad = 0

    def expected(self, i):
        return pattern(self.block, i, self.sizes[i])

    def check(self, i, data, expected=None):
        ok = data == (self.expected(i) if expected is None else expected)
        if not ok:
            self.bad += 1
        out("RECV %d %d %s %s" % (i, len(data), hashlib.sha256(data).hexdigest(),
                                  "ok" if ok else "BAD"))
        return data


def run_server(args, mod, key, chk):
    native = native_address(args.address)
    family = None if isinstance(native, tuple) else "AF_UNIX"
    lst = mod.Listener(native, family=family, authkey=key)
    out("ADDRESS " + format_address(lst.address))
    try:
        conn = lst.accept()
        out("ACCEPTED")
        n = len(chk.sizes)
        if args.mode == "each":
            for i in range(n):
                data = chk.check(i, conn.recv_bytes())
                conn.send_bytes(data)
                out("SENT %d %d" % (i, len(data)))
        else:
            got = [chk.check(i, conn.recv_bytes()) for i in range(n)]
            for i, data in enumerate(got):
                conn.send_bytes(data)
                out("SENT %d %d" % (i, len(data)))
            del got
        # The client hangs up once it has every echo; wait for that so our
        # close cannot cut anything off.
        if not conn.poll(120):
            out("ERROR Timeout: the client did not hang up")
            return 4
        try:
            conn.recv_bytes()
            out("ERROR Protocol: unexpected extra message")
            return 4
        except EOFError:
            pass
        conn.close()
    finally:
        try:
            lst.close()
        except Exception as exc:  # CPython < 3.9 tries to unlink abstract names
            sys.stderr.write("note: Listener.close: %s: %s\n" % (type(exc).__name__, exc))
    return 0


def run_client(args, mod, key, chk):
    conn = mod.Client(native_address(args.address), authkey=key)
    out("CONNECTED")
    for i in range(len(chk.sizes)):
        data = chk.expected(i)
        conn.send_bytes(data)
        out("SENT %d %d" % (i, len(data)))
        chk.check(i, conn.recv_bytes(), data)
        del data
    conn.close()
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=["stock", "mpconn"], required=True)
    ap.add_argument("role", choices=["server", "client"])
    ap.add_argument("address")
    ap.add_argument("--sizes", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mode", choices=["each", "all"], default="each")
    args = ap.parse_args()
    if args.impl == "mpconn":
        import mpconn as mod
    else:
        import multiprocessing.connection as mod
    from multiprocessing import AuthenticationError
    key = os.environ.get("MATRIX_AUTHKEY")
    key = key.encode("ascii") if key is not None else None
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else []
    chk = Checker(args.seed, sizes)
    try:
        if args.role == "server":
            rc = run_server(args, mod, key, chk)
        else:
            rc = run_client(args, mod, key, chk)
    except AuthenticationError as exc:
        out("AUTHERROR %s" % (exc,))
        return 3
    except Exception as exc:
        out("ERROR %s: %s" % (type(exc).__name__, exc))
        return 4
    if chk.bad:
        return 5
    out("DONE")
    return rc


if __name__ == "__main__":
    sys.exit(main())
