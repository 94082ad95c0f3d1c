"""Stock-CPython peer for the Lua value tests (standard library only; runs
on Python 2.7 and 3.x).

    py_values_peer.py listen ADDRESS KEYHEX  Listener: print
                                     "ADDRESS <addr>", accept one client
    py_values_peer.py client ADDRESS KEYHEX           Client: connect

Then it obeys commands the Lua side sends with send_bytes (KEYHEX is the
authkey in hex, or "-" for none):

    CHECK <expr>         receive one value with conn.recv() and compare it
                         with eval(<expr>), strictly (types, float signs,
                         dict key order on Python 3); reply (send_bytes)
                         "OK <repr>" or "MISMATCH <repr> != <repr>"
    SEND <p> <expr>      send eval(<expr>): with conn.send() if <p> is
                         "default", else send_bytes(pickle.dumps(v, p))
    CLASSIC <marker>     send_bytes the classic os.system pickle
                         (GLOBAL os system ... REDUCE) that touches <marker>
    REDUCE <p> <marker>  send_bytes(pickle.dumps(obj, p)) of an object whose
                         __reduce__ returns (os.system, ('touch <marker>',))
    BYE                  close and exit

Everything received is printed ("PY got: <repr>"); the last line is PY-OK
(exit 0), or PY-FAIL <why> (exit 1).  An alarm ends a stuck run after 60
seconds.  The expressions are the test's own literals, evaluated here to
build the expected Python values.
"""
from __future__ import print_function

import math
import os
import pickle
import signal
import sys
from multiprocessing.connection import Client, Listener

PY2 = sys.version_info[0] == 2


def to_python(address):
    if address.startswith("@"):
        return "\0" + address[1:]
    if ":" in address and "/" not in address:
        host, _, port = address.rpartition(":")
        return (host, int(port))
    return address


def to_mpconn(address):
    if isinstance(address, tuple):
        return "%s:%d" % address[:2]
    if isinstance(address, bytes) and not PY2:
        address = address.decode()
    if address.startswith("\0"):
        return "@" + address[1:]
    return address


def same(a, b):
    """a == b, and the same types all the way down (and -0.0 is not 0.0)."""
    if PY2 and type(a) in (int, long) and type(b) in (int, long):  # noqa: F821
        return a == b  # int and long are one type in Python 3
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        if not PY2 and not all(same(x, y) for x, y in zip(a, b)):
            return False  # key order too (Python 3.7+ dicts keep it)
        for k in a:
            if k not in b or not same(a[k], b[k]):
                return False
        bk = dict((k, k) for k in b)
        return all(same(k, bk[k]) for k in a)
    if isinstance(a, (set, frozenset)):
        if a != b:
            return False
        bk = dict((k, k) for k in b)
        return all(same(k, bk[k]) for k in a)
    return a == b


class Evil(object):
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch " + self.marker,))


def text(b):
    return b if PY2 else b.decode("utf-8")


def serve(conn):
    while True:
        cmd = text(conn.recv_bytes())
        verb, _, rest = cmd.partition(" ")
        if verb == "BYE":
            return
        if verb == "CHECK":
            want = eval(rest)
            got = conn.recv()
            shown = repr(got)
            # Short: the Lua side reads this output only at the end, so a
            # long one would fill the pipe and stall this process.
            print("PY got: %s" % (shown if len(shown) <= 200 else shown[:200] + "...(%d chars)" % len(shown)))
            sys.stdout.flush()
            if same(got, want):
                reply = "OK " + shown
            else:
                reply = "MISMATCH %s != %r" % (shown[:2000], want)
            conn.send_bytes(reply.encode("utf-8") if not PY2 else reply)
        elif verb == "SEND":
            proto, _, expr = rest.partition(" ")
            value = eval(expr)
            if proto == "default":
                conn.send(value)
            else:
                conn.send_bytes(pickle.dumps(value, int(proto)))
        elif verb == "CLASSIC":
            conn.send_bytes(("cos\nsystem\n(S'touch %s'\ntR." % rest).encode("ascii"))
        elif verb == "REDUCE":
            proto, _, marker = rest.partition(" ")
            conn.send_bytes(pickle.dumps(Evil(marker), int(proto)))
        else:
            raise ValueError("unknown command %r" % cmd)


def main():
    signal.signal(signal.SIGALRM, lambda *a: (print("PY-FAIL alarm"), sys.stdout.flush(), os._exit(1)))
    signal.alarm(60)
    mode, address, keyhex = sys.argv[1:4]
    key = None if keyhex == "-" else bytearray.fromhex(keyhex)
    if key is not None:
        key = bytes(key)
    try:
        if mode == "listen":
            listener = Listener(to_python(address), authkey=key)
            print("ADDRESS %s" % to_mpconn(listener.address))
            sys.stdout.flush()
            conn = listener.accept()
            serve(conn)
            conn.close()
            listener.close()
        else:
            conn = Client(to_python(address), authkey=key)
            serve(conn)
            conn.close()
    except Exception as e:
        print("PY-FAIL %s: %s" % (type(e).__name__, e))
        sys.exit(1)
    print("PY-OK")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
