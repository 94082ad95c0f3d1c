"""Many stock CPython clients in one process, for mpconn's asyncio load test.

Uses only multiprocessing.connection (never imports mpconn); Python 3.

    stock_crowd.py ADDRESS AUTHKEY NCONN ROUNDS

Opens NCONN Client connections to ADDRESS (a Python literal; AUTHKEY hex or
'-'), prints "CONNECTED", then waits for a line on stdin (the go signal, so
that every process is connected before any round starts).  Each round sends
one message on every connection and collects every echo with wait(), so
all NCONN connections have a round trip in flight at once.  Each echo must
be exactly the message sent.  Prints "DONE <round trips>" and closes.
"""
import ast
import binascii
import sys
from multiprocessing.connection import Client, wait


def main():
    address = ast.literal_eval(sys.argv[1])
    key = sys.argv[2]
    authkey = None if key == "-" else binascii.unhexlify(key.encode("ascii"))
    nconn, rounds = int(sys.argv[3]), int(sys.argv[4])
    conns = [Client(address, authkey=authkey) for _ in range(nconn)]
    print("CONNECTED", flush=True)
    sys.stdin.readline()
    done = 0
    for r in range(rounds):
        expected = {}
        for i, conn in enumerate(conns):
            msg = b"%d:%d:" % (r, i) + bytes([i % 256]) * (i % 50)
            conn.send_bytes(msg)
            expected[conn] = msg
        while expected:
            ready = wait(list(expected), 60)
            if not ready:
                raise SystemExit("round %d: no echo within 60 s" % r)
            for conn in ready:
                got = conn.recv_bytes()
                if got != expected[conn]:
                    raise SystemExit("round %d: echo %r != sent %r" % (r, got, expected[conn]))
                del expected[conn]
                done += 1
    for conn in conns:
        conn.close()
    print("DONE %d" % done, flush=True)


if __name__ == "__main__":
    main()
