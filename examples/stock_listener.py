"""A plain CPython multiprocessing.connection Listener (no mpconn inside).

Prints its address as "ADDRESS host:port" first, then, for every message
of every client, a line "received: <repr>", and replies b"ack: " + message.
Serves clients one after another until killed (or --clients N are done).

    python3 examples/stock_listener.py [--authkey KEY] [--clients N]
"""
import argparse
import sys
from multiprocessing.connection import Listener


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--authkey", default=None)
    ap.add_argument("--clients", type=int, default=0, help="exit after N clients (0 = never)")
    args = ap.parse_args()
    key = args.authkey.encode() if args.authkey is not None else None
    with Listener(("127.0.0.1", 0), authkey=key) as listener:
        print("ADDRESS %s:%d" % listener.address, flush=True)
        served = 0
        while not args.clients or served < args.clients:
            with listener.accept() as conn:
                while True:
                    try:
                        msg = conn.recv_bytes()
                    except EOFError:
                        break
                    print("received: %r" % msg, flush=True)
                    conn.send_bytes(b"ack: " + msg)
            served += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
