"""Stock-CPython peer for the Lua interop tests (standard library only).

    py_peer.py client ADDRESS KEYHEX      send MESSAGES, expect them echoed back
    py_peer.py listen ADDRESS KEYHEX      print the bound address, accept one
                                          client, expect MESSAGES, echo them
    py_peer.py client-badkey ADDRESS KEYHEX   expect AuthenticationError
    py_peer.py listen-badkey ADDRESS KEYHEX   expect AuthenticationError

ADDRESS uses mpconn's string syntax ("host:port", "/path", "@abstract");
With PY_PEER_IMPL=mpconn the peer uses the project's mpconn package instead.
KEYHEX is the authkey in hex, or "-" for none.  Prints PY-OK / PY-AUTHERROR
on success (exit 0), PY-FAIL ... otherwise (exit 1).  An alarm ends a stuck
run after 60 seconds.
"""
import os
import signal
import sys
from multiprocessing import AuthenticationError

if os.environ.get("PY_PEER_IMPL") == "mpconn":
    # The project's drop-in package (same names, same exceptions).
    from mpconn import Client, Listener
else:
    from multiprocessing.connection import Client, Listener

ALL256 = bytes(range(256))
# Must equal H.MESSAGES in harness.lua.
MESSAGES = [
    b"",
    b"\x00",
    ALL256,
    b"hello\x00world\xff",
    (ALL256 * 65)[:16385],
    ALL256 * 4096,
]


def to_python(address):
    if address.startswith("@"):
        return "\0" + address[1:]
    if address.startswith("["):
        host, _, port = address[1:].rpartition("]:")
        return (host, int(port))
    if ":" in address and "/" not in address:
        host, _, port = address.rpartition(":")
        return (host, int(port))
    return address


def to_mpconn(address):
    if isinstance(address, tuple):
        return "%s:%d" % address[:2]
    if isinstance(address, bytes):
        address = address.decode()
    if address.startswith("\0"):
        return "@" + address[1:]
    return address


def fail(why):
    print("PY-FAIL", why, flush=True)
    sys.exit(1)


def exchange_as_client(conn):
    for m in MESSAGES:
        conn.send_bytes(m)
    for i, m in enumerate(MESSAGES):
        got = conn.recv_bytes()
        if got != m:
            fail("echo %d differs: %d bytes, expected %d" % (i, len(got), len(m)))


def exchange_as_server(conn):
    got = [conn.recv_bytes() for _ in MESSAGES]
    for i, (g, m) in enumerate(zip(got, MESSAGES)):
        if g != m:
            fail("message %d differs: %r..., expected %r..." % (i, g[:20], m[:20]))
    for g in got:
        conn.send_bytes(g)


def main():
    signal.alarm(60)
    mode, address, keyhex = sys.argv[1:4]
    key = None if keyhex == "-" else bytes.fromhex(keyhex)
    if mode.startswith("client"):
        try:
            conn = Client(to_python(address), authkey=key)
        except AuthenticationError as e:
            if mode == "client-badkey":
                print("PY-AUTHERROR", e, flush=True)
                return
            raise
        if mode == "client-badkey":
            fail("connected despite a wrong key")
        exchange_as_client(conn)
        conn.close()
    else:
        listener = Listener(to_python(address), authkey=key)
        print("ADDRESS", to_mpconn(listener.address), flush=True)
        try:
            conn = listener.accept()
        except AuthenticationError as e:
            if mode == "listen-badkey":
                print("PY-AUTHERROR", e, flush=True)
                return
            raise
        if mode == "listen-badkey":
            fail("accepted despite a wrong key")
        exchange_as_server(conn)
        # Wait for the peer to close, so it reads every echo first.
        try:
            conn.recv_bytes()
            fail("unexpected extra message")
        except EOFError:
            pass
        conn.close()
        listener.close()
    print("PY-OK", flush=True)


if __name__ == "__main__":
    main()
