"""Stock-CPython peer for test_restricted.py (standard library only; runs on
Python 2.7 and 3.x).

    restricted_peer.py ADDRESS KEYHEX

Connects to ADDRESS (repr of a Python address) with
multiprocessing.connection.Client (KEYHEX: the authkey in hex), says
"HELLO <version> <highest protocol>", then obeys commands received with
recv_bytes():

    CASE <expr>     evaluates <expr> (a Python literal expression the test
                    gives; u'' and b'' prefixes, so that 2.7 reads it too)
                    and, for every protocol 0..HIGHEST_PROTOCOL, sends
                    either b"D" + pickle.dumps(v, p) followed by the same
                    pickle once more as a message of its own, or b"E" + why
                    when this Python cannot pickle it at that protocol
    SEND <expr>     conn.send(eval(<expr>)): the default protocol of
                    multiprocessing (ForkingPickler)
    EVIL <p> <marker>  send_bytes(pickle.dumps(obj, p)) of an object whose
                    __reduce__ is (os.system, ('touch <marker>',))
    BYE             close and exit 0

An alarm ends a stuck run after 120 seconds.
"""
from __future__ import print_function

import binascii
import os
import pickle
import signal
import sys
from multiprocessing.connection import Client

PY2 = sys.version_info[0] == 2


class Evil(object):
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ("touch " + self.marker,))


def text(b):
    return b if PY2 else b.decode("utf-8")


def data(b):
    return b if PY2 else b.encode("utf-8")


def main():
    signal.signal(signal.SIGALRM, lambda *a: os._exit(3))
    signal.alarm(120)
    address = eval(sys.argv[1])
    key = binascii.unhexlify(sys.argv[2])
    conn = Client(address, authkey=key)
    version = "%d.%d.%d" % sys.version_info[:3]
    conn.send_bytes(data("HELLO %s %d" % (version, pickle.HIGHEST_PROTOCOL)))
    while True:
        cmd = text(conn.recv_bytes())
        verb, _, rest = cmd.partition(" ")
        if verb == "BYE":
            break
        if verb == "CASE":
            value = eval(rest)
            for proto in range(pickle.HIGHEST_PROTOCOL + 1):
                try:
                    p = pickle.dumps(value, proto)
                except Exception as e:  # e.g. 3.11+: str() of a huge int at protocol 0
                    conn.send_bytes(b"E" + data("%s: %s" % (type(e).__name__, e)))
                    continue
                conn.send_bytes(b"D" + p)
                conn.send_bytes(p)
        elif verb == "SEND":
            conn.send(eval(rest))
        elif verb == "EVIL":
            proto, _, marker = rest.partition(" ")
            conn.send_bytes(pickle.dumps(Evil(marker), int(proto)))
        else:
            raise SystemExit("unknown command %r" % cmd)
    conn.close()


if __name__ == "__main__":
    main()
