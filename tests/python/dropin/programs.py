"""Ordinary multiprocessing programs, run with mpconn swapped in.

    python programs.py START_METHOD SCENARIO

The module's top level puts mpconn's Listener, Client, Pipe and wait into
multiprocessing.connection (mpconn_swap.install()) before anything imports
multiprocessing.pool or multiprocessing.managers.  Under fork the children
inherit that; under spawn and forkserver multiprocessing re-runs this module
in the child (as __mp_main__) / preloads it in the fork server, so the
children run the same swap.  Every child calls mpconn_swap.check() and the
parent checks that the queues, pools and managers really carry mpconn
Connections, so a program that silently fell back to stock CPython fails.

Prints "OK <scenario> <method>" and exits 0 on success; anything else is a
failure.  Every blocking call has a timeout.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mpconn_swap  # noqa: E402

# MPCONN_DROPIN_STOCK=1 runs the same programs on stock CPython (no swap, no
# mpconn checks): the control that shows a failure is mpconn's, not the
# program's.
STOCK = os.environ.get("MPCONN_DROPIN_STOCK") == "1"
if not STOCK:
    mpconn_swap.install()
else:
    mpconn_swap.check = lambda *a: True

import multiprocessing  # noqa: E402
import multiprocessing.managers  # noqa: E402
import multiprocessing.pool  # noqa: E402
import queue as _queue  # noqa: E402

import mpconn  # noqa: E402

T = float(os.environ.get("MPCONN_DROPIN_TIMEOUT", "20"))  # every wait is bounded


def _is_mpconn(conn):
    return STOCK or isinstance(conn, mpconn.Connection)


# ------------------------------------------------------------------ workers


def square(x):
    mpconn_swap.check()
    return x * x


def whoami(_):
    mpconn_swap.check()
    return os.getpid()


def queue_worker(inq, outq, n):
    mpconn_swap.check()
    for _ in range(n):
        item = inq.get(timeout=T) if hasattr(inq, "put_nowait") else inq.get()
        outq.put((os.getpid(), item, _is_mpconn(getattr(outq, "_writer", None))))


def manager_worker(d, lst, q, key):
    mpconn_swap.check()
    d[key] = os.getpid()
    lst.append(key)
    q.put(key)


def conn_worker(conn, n):
    """Echo n messages back reversed, over a connection handed to us."""
    mpconn_swap.check()
    assert _is_mpconn(conn), type(conn)
    for _ in range(n):
        msg = conn.recv_bytes()
        conn.send_bytes(msg[::-1])
    conn.send(("done", os.getpid()))
    conn.close()


def conn_forwarder(carrier):
    """Receives a connection *over another connection* and uses it."""
    mpconn_swap.check()
    conn = carrier.recv()
    assert _is_mpconn(conn), type(conn)
    conn.send(("forwarded", os.getpid(), conn.recv()))
    conn.close()
    carrier.close()


def listener_client_worker(address, authkey):
    mpconn_swap.check()
    with multiprocessing.connection.Client(address, authkey=authkey) as c:
        assert _is_mpconn(c)
        c.send(("hello", os.getpid()))
        assert c.recv() == "bye"


# ---------------------------------------------------------------- scenarios


def scenario_pool(ctx):
    with ctx.Pool(2) as pool:
        assert _is_mpconn(pool._inqueue._reader) and _is_mpconn(pool._outqueue._writer)
        assert pool.map_async(square, range(200), chunksize=1).get(timeout=T) == [
            x * x for x in range(200)]
        assert pool.apply_async(square, (7,)).get(timeout=T) == 49
        assert sorted(pool.imap_unordered(square, range(50))) == [x * x for x in range(50)]
        pids = set(pool.map_async(whoami, range(40), chunksize=1).get(timeout=T))
        assert 1 <= len(pids) <= 2, pids
        pool.close()
        pool.join()


def _queue_scenario(ctx, make_queue, bounded_get):
    inq, outq = make_queue(), make_queue()
    assert _is_mpconn(inq._reader) and _is_mpconn(inq._writer)
    n_workers, per_worker = 2, 50
    procs = [ctx.Process(target=queue_worker, args=(inq, outq, per_worker))
             for _ in range(n_workers)]
    for p in procs:
        p.start()
    for i in range(n_workers * per_worker):
        inq.put(i)
    got = [bounded_get(outq) for _ in range(n_workers * per_worker)]
    for p in procs:
        p.join(T)
        assert p.exitcode == 0, p.exitcode
    assert sorted(item for _, item, _ in got) == list(range(n_workers * per_worker))
    assert all(flag for _, _, flag in got)


def _simple_get(q):
    # SimpleQueue.get() has no timeout: poll its reader first.
    if not q._reader.poll(T):
        raise TimeoutError("SimpleQueue.get: nothing within %ss" % T)
    return q.get()


def scenario_simplequeue(ctx):
    _queue_scenario(ctx, ctx.SimpleQueue, _simple_get)


def scenario_queue(ctx):
    def get(q):
        try:
            return q.get(timeout=T)
        except _queue.Empty:
            raise TimeoutError("Queue.get: nothing within %ss" % T) from None
    _queue_scenario(ctx, ctx.Queue, get)
    # JoinableQueue too (task_done/join over the same pipes)
    q = ctx.JoinableQueue()
    q.put(1)
    assert q.get(timeout=T) == 1
    q.task_done()
    q.join()


class MathsManager(multiprocessing.managers.BaseManager):
    pass


class Counter:
    def __init__(self):
        self.n = 0

    def add(self, k):
        self.n += k
        return self.n

    def pid(self):
        mpconn_swap.check()
        return os.getpid()


MathsManager.register("Counter", Counter)


def scenario_manager(ctx):
    mpconn_swap.check()  # managers.listener_client must be mpconn's
    with MathsManager(ctx=ctx) as m:
        c = m.Counter()
        assert [c.add(k) for k in (1, 2, 3)] == [1, 3, 6]
        assert c.pid() != os.getpid()
        assert _is_mpconn(m._Client(m.address, authkey=m._authkey))
    with ctx.Manager() as sm:
        d, lst, q = sm.dict(), sm.list(), sm.Queue()
        procs = [ctx.Process(target=manager_worker, args=(d, lst, q, k)) for k in ("a", "b")]
        for p in procs:
            p.start()
        keys = sorted(q.get(timeout=T) for _ in procs)
        for p in procs:
            p.join(T)
            assert p.exitcode == 0
        assert keys == ["a", "b"] and sorted(lst) == ["a", "b"] and set(d.keys()) == {"a", "b"}
        lock, ev = sm.Lock(), sm.Event()
        with lock:
            ev.set()
        assert ev.wait(T)


def scenario_process(ctx):
    # 1. a Pipe end handed to a child as a Process argument
    a, b = multiprocessing.connection.Pipe()
    assert _is_mpconn(a)
    p = ctx.Process(target=conn_worker, args=(b, 3))
    p.start()
    b.close()
    for msg in (b"abc", b"", b"x" * 200000):
        a.send_bytes(msg)
        assert a.poll(T)
        assert a.recv_bytes() == msg[::-1]
    assert a.poll(T) and a.recv()[0] == "done"
    p.join(T)
    assert p.exitcode == 0
    # 2. a connection sent over another connection to a running child
    carrier_parent, carrier_child = ctx.Pipe()
    p = ctx.Process(target=conn_forwarder, args=(carrier_child,))
    p.start()
    carrier_child.close()
    mine, theirs = multiprocessing.connection.Pipe()
    carrier_parent.send(theirs)
    theirs.close()
    mine.send("ping")
    assert mine.poll(T)
    tag, pid, payload = mine.recv()
    assert (tag, pid, payload) == ("forwarded", p.pid, "ping")
    p.join(T)
    assert p.exitcode == 0
    # 3. a Listener in the parent, Client in the child; wait() on sentinels
    with multiprocessing.connection.Listener(("127.0.0.1", 0), authkey=b"key") as l:
        p = ctx.Process(target=listener_client_worker, args=(l.address, b"key"))
        p.start()
        with l.accept() as c:
            assert _is_mpconn(c)
            assert c.poll(T)
            assert c.recv()[0] == "hello"
            c.send("bye")
        assert multiprocessing.connection.wait([p.sentinel], T) == [p.sentinel]
        p.join(T)
        assert p.exitcode == 0


SCENARIOS = {
    "pool": scenario_pool,
    "simplequeue": scenario_simplequeue,
    "queue": scenario_queue,
    "manager": scenario_manager,
    "process": scenario_process,
}


def main(argv):
    method, scenario = argv[1], argv[2]
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["__main__"])
    mpconn_swap.check()
    SCENARIOS[scenario](ctx)
    print("OK", scenario, method)


if __name__ == "__main__":
    main(sys.argv)
