"""Stock-CPython peers for the event-loop tests (standard library only).

    py_cq_peer.py clients ADDRESS KEYHEX THREADS ROUNDS [echo]
        THREADS concurrent Clients (one thread each) to ADDRESS; all connect,
        then each makes ROUNDS round trips: even threads send() the tuple
        ("ping", thread, i) and expect ("pong", thread, i) back; odd threads
        send_bytes() b"ping <thread> <i>" and expect b"pong <thread> <i>".
        With "echo": each expects what it sent.
        Prints PY-OK <threads> (exit 0) or PY-FAIL ... (exit 1).
    py_cq_peer.py listen ADDRESS KEYHEX CLIENTS
        A Listener; prints its address, then serves CLIENTS connections, each
        in its own thread: the first message names the mode, b"bytes" (echo
        recv_bytes -> send_bytes) or b"values" (echo recv -> send), until end
        of file.  A client with a wrong key counts as served (the
        AuthenticationError is expected).  Prints PY-OK <served>.

KEYHEX is the authkey in hex, "-" for none.  An alarm ends a stuck run.
"""
import signal
import sys
import threading
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener


def address_of(s):
    if s.startswith("@"):
        return "\0" + s[1:]
    if ":" in s and "/" not in s:
        host, _, port = s.rpartition(":")
        return (host, int(port))
    return s


def clients(address, key, nthreads, rounds, echo=False):
    errors = []
    barrier = threading.Barrier(nthreads)

    def run(t):
        try:
            conn = Client(address, authkey=key)
            barrier.wait(timeout=60)
            for i in range(rounds):
                if t % 2 == 0:
                    conn.send(("ping", t, i))
                    got = conn.recv()
                    want = ("ping" if echo else "pong", t, i)
                else:
                    conn.send_bytes(b"ping %d %d" % (t, i))
                    got = conn.recv_bytes()
                    want = (b"ping %d %d" if echo else b"pong %d %d") % (t, i)
                if got != want:
                    raise AssertionError("thread %d round %d: got %r" % (t, i, got))
            conn.close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append("%d: %r" % (t, e))

    threads = [threading.Thread(target=run, args=(t,)) for t in range(nthreads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        print("PY-FAIL %d errors, first: %s" % (len(errors), errors[0]), flush=True)
        sys.exit(1)
    print("PY-OK %d" % nthreads, flush=True)


def serve_one(conn):
    try:
        mode = conn.recv_bytes()
        while True:
            try:
                if mode == b"values":
                    conn.send(conn.recv())
                else:
                    conn.send_bytes(conn.recv_bytes())
            except EOFError:
                break
    finally:
        conn.close()


def listen(address, key, nclients):
    # backlog 16: the Lua clients connect at once (the default 1 drops SYNs,
    # and their retransmission waits 1, 3, 7 ... seconds).
    listener = Listener(address, authkey=key, backlog=16)
    a = listener.address
    if isinstance(a, tuple):
        a = "%s:%d" % a
    elif a.startswith("\0"):
        a = "@" + a[1:]
    print(a, flush=True)
    threads = []
    served = 0
    while served < nclients:
        try:
            conn = listener.accept()
        except AuthenticationError:
            served += 1
            continue
        served += 1
        th = threading.Thread(target=serve_one, args=(conn,))
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    listener.close()
    print("PY-OK %d" % served, flush=True)


def main():
    signal.alarm(120)
    mode, address = sys.argv[1], address_of(sys.argv[2])
    key = None if sys.argv[3] == "-" else bytes.fromhex(sys.argv[3])
    if mode == "clients":
        clients(address, key, int(sys.argv[4]), int(sys.argv[5]), sys.argv[6:7] == ["echo"])
    elif mode == "listen":
        listen(address, key, int(sys.argv[4]))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
