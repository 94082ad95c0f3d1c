#!/usr/bin/env python3
"""A threaded echo server on the mpconn Python package (or, for comparison,
stock multiprocessing.connection): one accept loop, one thread per client.

    py_threaded_server.py ADDRESS [--impl mpconn|stock] [--authkey K]
                          [--max-clients N] [--backlog N]

Prints "listening on HOST:PORT" on stderr, echoes every message back until
the client closes, and after --max-clients clients stops accepting, joins
the client threads and prints one JSON line on stdout: {"clients",
"messages", "bytes", "peak", "errors"}.  Exits 0 when errors is 0.  A
watchdog ends the process (exit 3) after --deadline seconds.
"""
import argparse
import json
import os
import sys
import threading


def main():
    p = argparse.ArgumentParser()
    p.add_argument("address")
    p.add_argument("--impl", choices=["mpconn", "stock"], default="mpconn")
    p.add_argument("--authkey")
    p.add_argument("--max-clients", type=int, default=1)
    p.add_argument("--backlog", type=int, default=512)
    p.add_argument("--deadline", type=float, default=240.0)
    o = p.parse_args()
    if o.impl == "mpconn":
        from mpconn import Listener
    else:
        from multiprocessing.connection import Listener

    def watchdog():
        sys.stderr.write("py_threaded_server: deadline of %.0f s reached\n" % o.deadline)
        sys.stderr.flush()
        os._exit(3)

    t = threading.Timer(o.deadline, watchdog)
    t.daemon = True
    t.start()

    host, _, port = o.address.rpartition(":")
    key = o.authkey.encode() if o.authkey is not None else None
    listener = Listener((host, int(port)), backlog=o.backlog, authkey=key)
    h, pt = listener.address[:2]
    sys.stderr.write("listening on %s:%d\n" % (h, pt))
    sys.stderr.flush()

    lock = threading.Lock()
    st = {"clients": 0, "messages": 0, "bytes": 0, "peak": 0, "errors": 0, "handshake_failures": 0}
    active = [0]

    def serve(conn, cid):
        n = b = 0
        err = 0
        try:
            while True:
                try:
                    msg = conn.recv_bytes()
                except EOFError:
                    break
                conn.send_bytes(msg)
                n += 1
                b += len(msg)
        except Exception as e:  # noqa: BLE001
            sys.stderr.write("client %d: %s: %s\n" % (cid, type(e).__name__, e))
            err = 1
        finally:
            conn.close()
            with lock:
                st["messages"] += n
                st["bytes"] += b
                st["errors"] += err
                active[0] -= 1

    threads = []
    while st["clients"] < o.max_clients:
        try:
            conn = listener.accept()
        except Exception as e:  # noqa: BLE001 - a failed handshake loses that client only
            sys.stderr.write("accept: %s: %s\n" % (type(e).__name__, e))
            with lock:
                st["handshake_failures"] += 1
            continue
        with lock:
            st["clients"] += 1
            active[0] += 1
            st["peak"] = max(st["peak"], active[0])
        th = threading.Thread(target=serve, args=(conn, st["clients"]), daemon=True)
        th.start()
        threads.append(th)
    listener.close()
    for th in threads:
        th.join()
    sys.stdout.write(json.dumps(st) + "\n")
    sys.stdout.flush()
    os._exit(0 if st["errors"] == 0 else 1)


if __name__ == "__main__":
    main()
