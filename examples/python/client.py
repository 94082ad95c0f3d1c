"""The client of a typical multiprocessing.connection program: it connects to
the listener and sends a dict of player data.

Runs with stock CPython as is.  To run it with mpconn, change only the
import line to:  from mpconn import Client

Usage: client.py [ADDRESS] [AUTHKEY]   (as listener.py)
"""
import os
import sys

from multiprocessing.connection import Client


def parse_address(text):
    if ":" in text and "/" not in text:
        host, port = text.rsplit(":", 1)
        return (host, int(port))
    return text


def main():
    args = sys.argv[1:]
    address = parse_address(args[0] if args else os.environ.get("PLAYER_ADDRESS", "localhost:6000"))
    authkey = (args[1] if len(args) > 1 else os.environ.get("PLAYER_AUTHKEY", "secret password")).encode()

    player = {
        "name": "Alice",
        "level": 42,
        "score": 1337.5,
        "inventory": ["sword", "shield", "potion"],
        "position": (10, -3),
        "online": True,
    }
    with Client(address, authkey=authkey) as conn:
        conn.send(player)
        print("Sent player data, listener replied: {}".format(conn.recv()), flush=True)


if __name__ == "__main__":
    main()
