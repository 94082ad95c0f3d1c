"""A stock CPython multiprocessing.connection peer for mpconn's interop tests.

Runs unchanged under every CPython (2.7 and 3.x) and never imports mpconn.

    stock_peer.py server ADDRESS AUTHKEY
    stock_peer.py client ADDRESS AUTHKEY

ADDRESS is a Python literal: ('127.0.0.1', 0), '/path/to.sock' or
'\\x00abstract-name'.  AUTHKEY is hex, or '-' for None (no handshake).

The server prints "ADDR <repr(listener.address)>" before it accepts.  Then,
in both roles, "READY" once the connection is up, and an echo session:
  b"!obj" -> recv() one object and send() it back (pickle interop)
  b"!bye" -> end of session (prints "DONE")
  anything else -> sent back unchanged with send_bytes().
An AuthenticationError prints "AUTHFAIL <message>" and exits with 3.
"""
from __future__ import print_function

import ast
import binascii
import sys
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener


def out(*args):
    print(*args)
    sys.stdout.flush()


def session(conn):
    out("READY")
    while True:
        msg = conn.recv_bytes()
        if msg == b"!bye":
            break
        if msg == b"!obj":
            conn.send(conn.recv())
        else:
            conn.send_bytes(msg)
    out("DONE")


def main():
    role, address, key = sys.argv[1], ast.literal_eval(sys.argv[2]), sys.argv[3]
    authkey = None if key == "-" else binascii.unhexlify(key.encode("ascii"))
    try:
        if role == "server":
            listener = Listener(address, authkey=authkey)
            out("ADDR %r" % (listener.address,))
            conn = listener.accept()
            session(conn)
            conn.close()
            try:
                listener.close()
            except Exception:  # old versions try to unlink abstract names
                pass
        else:
            conn = Client(address, authkey=authkey)
            session(conn)
            conn.close()
    except AuthenticationError as e:
        out("AUTHFAIL %s" % (e,))
        sys.exit(3)


if __name__ == "__main__":
    main()
