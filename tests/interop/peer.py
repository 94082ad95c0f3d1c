#!/usr/bin/env python
"""A stock-CPython peer for the mpconn interop tests.

Runs under every CPython the suite drives (2.7 and 3.6+): only the standard
library's multiprocessing.connection, nothing from mpconn.

  peer.py client ADDRESS [--authkey-hex HEX] [--echo] SPEC...
      Connects with multiprocessing.connection.Client and sends one message
      per SPEC (see msgdata.py).  With --echo, reads a reply after each
      message and checks it is byte-for-byte the message sent; with
      --echo-after, sends them all first and then reads and checks all the
      replies (what `peer.py listen --echo` sends).
  peer.py listen FAMILY [--dir DIR] [--authkey-hex HEX] [--count N] [--echo]
      FAMILY is tcp, unix or abstract.  Prints "ADDRESS <addr>" (mpconn
      syntax: "127.0.0.1:PORT", "/path", "@name") first, then accepts one
      client and prints "MSG <len> <sha256>" for each of N messages.  With
      --echo, sends all N back once all N have arrived (so a peer that sends
      everything before reading cannot deadlock against us).

Exit status: 0 success, 3 AuthenticationError (line "AUTHERROR <text>"),
4 any other error (line "ERROR <type>: <text>"), 5 echo mismatch.
"""
from __future__ import print_function

import argparse
import binascii
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msgdata  # noqa: E402

from multiprocessing import AuthenticationError  # noqa: E402
from multiprocessing.connection import Client, Listener  # noqa: E402


def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def to_cpython_address(addr):
    """mpconn address syntax -> the address object CPython expects."""
    if addr.startswith("@"):
        return "\0" + addr[1:]
    if addr.startswith("["):
        host, port = addr[1:].rsplit("]:", 1)
        return (host, int(port))
    if "/" in addr or ":" not in addr:
        return addr
    host, port = addr.rsplit(":", 1)
    return (host, int(port))


def key_of(args):
    if args.authkey_hex is None:
        return None
    return binascii.unhexlify(args.authkey_hex.encode("ascii"))


def run_client(args):
    conn = Client(to_cpython_address(args.address), authkey=key_of(args))
    out("CONNECTED")
    for spec in args.specs:
        data = msgdata.from_spec(spec)
        conn.send_bytes(data)
        out("SENT " + msgdata.digest(data))
        if args.echo:
            back = conn.recv_bytes()
            if back != data:
                out("ECHO-MISMATCH sent %s got %s" % (msgdata.digest(data), msgdata.digest(back)))
                return 5
            out("ECHO-OK " + msgdata.digest(back))
    if args.echo_after:
        for spec in args.specs:
            data = msgdata.from_spec(spec)
            back = conn.recv_bytes()
            if back != data:
                out("ECHO-MISMATCH sent %s got %s" % (msgdata.digest(data), msgdata.digest(back)))
                return 5
            out("ECHO-OK " + msgdata.digest(back))
    conn.close()
    return 0


def make_listener(args):
    key = key_of(args)
    if args.family == "tcp":
        lst = Listener(("127.0.0.1", 0), authkey=key)
        host, port = lst.address[0], lst.address[1]
        return lst, "%s:%d" % (host, port)
    if args.family == "unix":
        path = os.path.join(args.dir, "peer-%d.sock" % os.getpid())
        lst = Listener(path, family="AF_UNIX", authkey=key)
        return lst, path
    if args.family == "abstract":
        name = "mpconn-peer-%d-%s" % (os.getpid(), binascii.hexlify(os.urandom(6)).decode("ascii"))
        lst = Listener("\0" + name, family="AF_UNIX", authkey=key)
        return lst, "@" + name
    raise SystemExit("unknown family %r" % args.family)


def close_listener(lst):
    # Before bpo-39850 (3.9) CPython tries to unlink an abstract name on
    # close and raises; that is CPython's problem, not the peer's.
    try:
        lst.close()
    except Exception as exc:  # pragma: no cover - depends on the version
        sys.stderr.write("note: Listener.close: %s: %s\n" % (type(exc).__name__, exc))


def run_listener(args):
    lst, address = make_listener(args)
    out("ADDRESS " + address)
    try:
        conn = lst.accept()
        out("ACCEPTED")
        got = []
        while len(got) < args.count:
            try:
                data = conn.recv_bytes()
            except EOFError:
                out("EOF after %d messages" % len(got))
                return 4
            out("MSG " + msgdata.digest(data))
            got.append(data)
        if args.echo:
            for data in got:
                conn.send_bytes(data)
            out("ECHOED %d" % len(got))
            # Wait for the peer to hang up so nothing is cut off by our close.
            if conn.poll(30):
                try:
                    conn.recv_bytes()
                    out("UNEXPECTED extra message")
                except EOFError:
                    pass
        conn.close()
    finally:
        close_listener(lst)
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd")
    c = sub.add_parser("client")
    c.add_argument("address")
    c.add_argument("specs", nargs="*")
    c.add_argument("--authkey-hex")
    c.add_argument("--echo", action="store_true")
    c.add_argument("--echo-after", action="store_true")
    l = sub.add_parser("listen")
    l.add_argument("family", choices=["tcp", "unix", "abstract"])
    l.add_argument("--dir", default="/tmp")
    l.add_argument("--authkey-hex")
    l.add_argument("--count", type=int, default=1)
    l.add_argument("--echo", action="store_true")
    args = ap.parse_args()
    try:
        if args.cmd == "client":
            return run_client(args)
        return run_listener(args)
    except AuthenticationError as exc:
        out("AUTHERROR %s" % (exc,))
        return 3
    except Exception as exc:
        out("ERROR %s: %s" % (type(exc).__name__, exc))
        return 4


if __name__ == "__main__":
    sys.exit(main())
