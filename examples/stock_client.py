"""A plain CPython multiprocessing.connection Client (no mpconn inside).

Sends each MESSAGE and prints the reply to each.

    python3 examples/stock_client.py HOST:PORT [--authkey KEY] MESSAGE...
"""
import argparse
import sys
from multiprocessing.connection import Client


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("address")
    ap.add_argument("messages", nargs="+")
    ap.add_argument("--authkey", default=None)
    args = ap.parse_args()
    host, port = args.address.rsplit(":", 1)
    key = args.authkey.encode() if args.authkey is not None else None
    with Client((host, int(port)), authkey=key) as conn:
        for text in args.messages:
            conn.send_bytes(text.encode())
            print("sent %r, reply: %r" % (text, conn.recv_bytes()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
