"""Python side of the benchmark: stock multiprocessing.connection, mpconn and
pyzmq PAIR sockets, driven identically.

    python bench_py.py IMPL MODE SIZE COUNT TRANSPORT

IMPL: stock | mpconn (default: exact reads) | mpconn-ra (read_ahead=True on
both ends) | restricted (the measuring end is a restricted Client:
its recv() decodes with the allow-list decoder) | zmq | floor (the
interpreter floor: both loops on C calls that do nothing, no sockets, no
fork; pingpong and stream; TRANSPORT ignored).  MODE: pingpong | stream |
batch (mpconn: send_bytes_many; zmq: not offered) | stream_into
(recv_bytes_into a preallocated buffer) | values (the peer streams pickled
values, the parent takes them with recv(): SIZE picks the set, 0 the
interop value set, 1 a list of 1000 records; issue 18's restricted recv()
against recv()).  The parent measures; a forked child is the peer.
Prints one JSON object like bench_c.  Placement (pinning) is done by the
driver with taskset, which children inherit.
"""
import json
import os
import pickle
import sys
import tempfile
import time

BATCH = 256


def value_set(which):
    """The values of the "values" mode: 0, the interop value set (the kinds
    and shapes tests/python/test_restricted.py sends: scalars, str, bytes,
    containers, nesting, sharing, cycles; a message each); 1, one list of
    1000 records (a result set of about 60 KiB)."""
    if which == 1:
        return [[{"id": i, "name": "user%d" % i, "email": "user%d@example.com" % i,
                  "score": i / 3.0, "tags": ["a", "b", "c"][: i % 4], "active": i % 2 == 0,
                  "data": b"\x00\x01" * (i % 8)} for i in range(1000)]]
    shared = [1, 2]
    cyc = []
    cyc.append(cyc)
    return [None, True, 42, -7, 2**31, 2**64, -(10**30), 1.5, -0.0, float("inf"), "", "hello",
            "\U0001d11e\xe9\u20ac", "x" * 1000, b"", b"abc", b"\x00\xff" * 100,
            bytearray(b"ab"), [], [1, [2, [3, []]]], (), (1, "a"), (1, 2, 3, 4), {},
            {"a": None, "b": [None, 1]}, {(1, 2): "p", frozenset([1]): "f", None: 0, 2.5: True},
            set(), {1, 2, 3}, frozenset(["a", (1, 2)]),
            {"name": "Alice", "level": 42, "score": 1337.5,
             "inventory": ["sword", "shield", "potion"], "position": (10, -3), "online": True},
            [[i, (i, str(i))] for i in range(50)], [shared, shared, {"k": shared}], cyc,
            {"k%d" % i: i * 1.5 for i in range(100)}, list(range(1000))]


def endpoints(impl, transport):
    if impl == "zmq":
        if transport == "tcp":
            return "tcp://127.0.0.1:*"
        return "ipc://" + os.path.join(tempfile.mkdtemp(), "z.sock")
    if transport == "tcp":
        return ("127.0.0.1", 0)
    return os.path.join(tempfile.mkdtemp(), "b.sock")


class ZmqConn:
    """The few Connection methods the driver uses, over a zmq PAIR socket."""

    def __init__(self, sock):
        self.sock = sock

    def send_bytes(self, b):
        self.sock.send(b, copy=len(b) < 65536)

    def recv_bytes(self):
        return self.sock.recv(copy=True)

    def recv_bytes_into(self, buf):
        frame = self.sock.recv(copy=False)
        n = len(frame.buffer)
        buf[:n] = frame.buffer
        return n


def open_pair(impl, transport):
    """Returns (server_setup, client_setup): callables run in child/parent."""
    addr = endpoints(impl, transport)
    if impl == "zmq":
        # zmq contexts do not survive fork: the child makes its own socket,
        # binds, and reports the real endpoint through a pipe.
        import zmq

        rfd, wfd = os.pipe()

        def server():
            os.close(rfd)
            srv = zmq.Context().socket(zmq.PAIR)
            srv.bind(addr)
            os.write(wfd, srv.getsockopt(zmq.LAST_ENDPOINT))
            os.close(wfd)
            return ZmqConn(srv)

        def client():
            os.close(wfd)
            real = b""
            while True:
                chunk = os.read(rfd, 512)
                if not chunk:
                    break
                real += chunk
            os.close(rfd)
            c = zmq.Context().socket(zmq.PAIR)
            c.connect(real.decode())
            return ZmqConn(c)

        return server, client
    kw = {}
    if impl == "stock":
        from multiprocessing.connection import Client, Listener
    else:
        from mpconn import Client, Listener
        if impl == "mpconn-ra":
            kw = {"read_ahead": True}
        elif impl != "mpconn" and impl != "restricted":
            raise SystemExit("unknown implementation %r" % impl)
    listener = Listener(addr, **kw)
    real = listener.address

    def checked(conn):
        if kw and not conn.read_ahead:
            raise SystemExit("read_ahead did not take")
        return conn

    def server():
        return checked(listener.accept())

    def client():
        if impl == "restricted":
            conn = Client(real, restricted=True)
            if not conn.restricted:
                raise SystemExit("restricted did not take")
            return conn
        return checked(Client(real, **kw))

    return server, client


def serve(conn, mode, count, size):
    if mode == "values":
        # Pickled once, at the default protocol of multiprocessing's
        # send(); sent raw, so the sender's cost is the same for all.
        payloads = [pickle.dumps(v, 4) for v in value_set(size)]
        n = len(payloads)
        for i in range(count):
            conn.send_bytes(payloads[i % n])
        conn.recv_bytes()
    elif mode == "pingpong":
        for _ in range(count):
            conn.send_bytes(conn.recv_bytes())
    elif mode == "stream_into":
        buf = bytearray(size + 64)
        for _ in range(count):
            conn.recv_bytes_into(buf)
        conn.send_bytes(b"k")
    else:
        for _ in range(count):
            conn.recv_bytes()
        conn.send_bytes(b"k")


class FloorConn:
    """The interpreter floor's connection: send_bytes and recv_bytes are C
    calls that do nothing, with the arity of the real ones.  send_bytes is
    len (one argument); recv_bytes is the payload's __bytes__ (no argument;
    returns the payload itself, so the ping-pong peer sends it back).  Both
    are builtin methods, as mpconn's are, looked up as attributes."""

    def __init__(self, payload):
        self.send_bytes = len
        self.recv_bytes = getattr(payload, "__bytes__", payload.strip)


def drive(conn, mode, count, payload):
    """The measuring side's loop; returns (seconds, latencies)."""
    lat = []
    clock = time.perf_counter
    t0 = clock()
    if mode == "values":
        recv = conn.recv
        for _ in range(count):
            recv()
        conn.send_bytes(b"k")
    elif mode == "pingpong":
        send, recv = conn.send_bytes, conn.recv_bytes
        for _ in range(count):
            a = clock()
            send(payload)
            recv()
            lat.append(clock() - a)
    elif mode == "batch":
        batch = [payload] * BATCH
        left = count
        while left > 0:
            k = min(left, BATCH)
            conn.send_bytes_many(batch if k == BATCH else batch[:k])
            left -= k
        conn.recv_bytes()
    else:
        send = conn.send_bytes
        for _ in range(count):
            send(payload)
        conn.recv_bytes()
    return clock() - t0, lat


def floor(mode, size, count):
    """The interpreter floor (SPEC 6): both sides' loops, drive() and
    serve(), run one after the other in this process on a FloorConn, so the
    same number of C calls per message as a real run and nothing else.  The
    seconds are the interpreter's time for count messages (both peers);
    ops_per_s is its inverse rate.  bench/run.py adds this time to the plain
    C baselines' to get what the best possible binding could reach."""
    if mode not in ("pingpong", "stream"):
        raise SystemExit("floor: pingpong or stream")
    payload = b"x" * size
    conn = FloorConn(payload)
    t_client, _ = drive(conn, mode, count, payload)
    t0 = time.perf_counter()
    serve(conn, mode, count, size)
    secs = t_client + time.perf_counter() - t0
    print(json.dumps({
        "impl": "py-floor", "mode": mode, "size": size, "count": count,
        "seconds": secs, "ops_per_s": count / secs, "mb_per_s": count * size / secs / 1e6,
        "floor_us": secs / count * 1e6,
    }))


def main():
    impl, mode, size, count, transport = sys.argv[1:6]
    size, count = int(size), int(count)
    if impl == "floor":
        return floor(mode, size, count)
    server_setup, client_setup = open_pair(impl, transport)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            serve(server_setup(), mode, count, size)
        except BaseException as e:  # report, never hang the parent
            sys.stderr.write("server: %r\n" % (e,))
            code = 2
        os._exit(code)
    conn = client_setup()
    payload = b"x" * size
    if mode == "values":
        sizes = [len(pickle.dumps(v, 4)) for v in value_set(size)]
        payload = b"x" * (sum(sizes[i % len(sizes)] for i in range(count)) // count)
    secs, lat = drive(conn, mode, count, payload)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        sys.exit("server failed")
    p50 = p99 = 0.0
    if lat:
        lat.sort()
        p50 = lat[len(lat) // 2] * 1e6
        p99 = lat[int(len(lat) * 0.99)] * 1e6
    print(json.dumps({
        "impl": "py-" + impl, "mode": mode, "size": size, "count": count,
        "seconds": secs, "ops_per_s": count / secs,
        "mb_per_s": count * len(payload) / secs / 1e6, "p50_us": p50, "p99_us": p99,
    }))


if __name__ == "__main__":
    main()
