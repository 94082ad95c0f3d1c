"""The listener of a typical multiprocessing.connection program: it waits for
a client and prints the player data the client sends.

Runs with stock CPython as is.  To run it with mpconn, change only the
import line to:  from mpconn import Listener

Usage: listener.py [ADDRESS] [AUTHKEY]
  ADDRESS  "host:port" (port 0 picks a free port) or a Unix socket path;
           default $PLAYER_ADDRESS or "localhost:6000"
  AUTHKEY  default $PLAYER_AUTHKEY or "secret password"
"""
import os
import sys

from multiprocessing.connection import Listener


def parse_address(text):
    if ":" in text and "/" not in text:
        host, port = text.rsplit(":", 1)
        return (host, int(port))
    return text


def main():
    args = sys.argv[1:]
    address = parse_address(args[0] if args else os.environ.get("PLAYER_ADDRESS", "localhost:6000"))
    authkey = (args[1] if len(args) > 1 else os.environ.get("PLAYER_AUTHKEY", "secret password")).encode()

    with Listener(address, authkey=authkey) as listener:
        print("Listening on {!r}".format(listener.address), flush=True)
        with listener.accept() as conn:
            print("Connection accepted from {!r}".format(listener.last_accepted), flush=True)
            data = conn.recv()
            print("Player Data Received: {}".format(data), flush=True)
            conn.send("thanks")


if __name__ == "__main__":
    main()
