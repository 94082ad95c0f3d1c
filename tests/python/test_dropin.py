"""Issue 13: mpconn must behave as CPython's multiprocessing.connection where
multiprocessing itself relies on it.  One test (or parametrized family) per
broken case of items 1-5; item 6 is in test_dropin_errors.py.

Where it is cheap a test runs the same steps on stock CPython as a control
(impl="stock"): the control must pass, which shows the test asserts
CPython's behaviour and not an invention.  Every blocking step is bounded:
poll() timeouts, Timer backstops that unblock a stuck call so a regression
fails instead of hanging, and subprocesses with timeouts for cases that
could spin or crash.
"""

import asyncio
import multiprocessing
import multiprocessing.connection as stock
import os
import select
import selectors
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid

import pytest

import mpconn

from conftest import start_thread

HERE = os.path.dirname(os.path.abspath(__file__))
DROPIN = os.path.join(HERE, "dropin")

# The pytest process never swaps; make sure these really are stock's.
STOCK_PIPE, STOCK_WAIT = stock.Pipe, stock.wait
assert STOCK_PIPE is not mpconn.Pipe and STOCK_WAIT is not mpconn.wait

IMPLS = {"stock": stock, "mpconn": mpconn}
T = 10  # seconds: the bound on every wait that should succeed quickly


def run_python(args, timeout=60, env=None):
    """Runs a Python subprocess; returns (returncode, combined output)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        p = subprocess.run([sys.executable] + args, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout, env=full_env, cwd=HERE)
    except subprocess.TimeoutExpired as e:
        pytest.fail("subprocess %s did not finish within %ss:\n%s"
                    % (args, timeout, (e.output or b"").decode(errors="replace")[-3000:]))
    return p.returncode, p.stdout.decode(errors="replace")


# ===================================================================== item 1
# Read-ahead must not take bytes past the message being returned: all unread
# data stays in the kernel, so descriptors can be shared, forked, handed
# over and selected on.


def _take_one_under_lock(r, lock, report):
    with lock:
        got = r.recv_bytes() if r.poll(3) else None
    report.send(got)
    report.close()


def test_two_forked_workers_sharing_a_one_way_pipe_each_get_one_message():
    """Guards item 1: two forked workers share Pipe(duplex=False)'s read end
    and take one message each under a lock (what SimpleQueue/Pool do).  With
    read-ahead the first worker buffers both and the second gets nothing."""
    ctx = multiprocessing.get_context("fork")
    r, w = mpconn.Pipe(duplex=False)
    w.send_bytes(b"first")
    w.send_bytes(b"second")
    lock = ctx.Lock()
    reports = []
    procs = []
    for _ in range(2):
        rep_r, rep_w = STOCK_PIPE(duplex=False)
        p = ctx.Process(target=_take_one_under_lock, args=(r, lock, rep_w))
        p.start()
        rep_w.close()
        reports.append(rep_r)
        procs.append(p)
    got = [rep.recv() if rep.poll(T) else "no report" for rep in reports]
    for p in procs:
        p.join(T)
    assert sorted(got, key=repr) == [b"first", b"second"], got


def _receive_if_any(conn, report, wait=1.5):
    report.send(conn.recv_bytes() if conn.poll(wait) else None)
    report.close()


def test_fork_does_not_deliver_a_message_twice():
    """Guards item 1: after fork, parent and child must not both receive the
    same message (read-ahead copied the buffered 'second' into the child)."""
    ctx = multiprocessing.get_context("fork")
    a, b = mpconn.Pipe()
    a.send_bytes(b"first")
    a.send_bytes(b"second")
    assert b.recv_bytes() == b"first"
    rep_r, rep_w = STOCK_PIPE(duplex=False)
    p = ctx.Process(target=_receive_if_any, args=(b, rep_w))
    p.start()
    rep_w.close()
    child_got = rep_r.recv() if rep_r.poll(T) else "no report"
    p.join(T)
    parent_got = b.recv_bytes() if b.poll(0.5) else None
    deliveries = [x for x in (child_got, parent_got) if x == b"second"]
    assert len(deliveries) == 1, (child_got, parent_got)


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_connection_with_a_queued_message_can_be_handed_to_a_child(method):
    """Guards item 1: a connection whose next message is already queued
    (after another was received) is handed to a spawned child, which
    receives that message.  Stock hands it over; read-ahead refused with
    'cannot pickle a Connection with unread buffered data'."""
    ctx = multiprocessing.get_context(method)
    a, b = mpconn.Pipe()
    a.send_bytes(b"first")
    a.send_bytes(b"second")
    assert b.recv_bytes() == b"first"
    rep_r, rep_w = STOCK_PIPE(duplex=False)
    p = ctx.Process(target=_receive_if_any, args=(b, rep_w, T))
    p.start()
    rep_w.close()
    try:
        got = rep_r.recv() if rep_r.poll(3 * T) else "no report"
    finally:
        p.join(T)
    assert got == b"second"
    assert not b.poll(0.2)  # taken by the child, not left in this process


def _select_select(conn, timeout):
    return conn.fileno() in select.select([conn.fileno()], [], [], timeout)[0]


def _selectors(conn, timeout):
    with selectors.DefaultSelector() as sel:
        sel.register(conn.fileno(), selectors.EVENT_READ)
        return bool(sel.select(timeout))


def _stock_wait(conn, timeout):
    # stock's wait() registers conn.fileno(), as code written for CPython does
    return STOCK_WAIT([conn], timeout) == [conn]


def _asyncio_add_reader(conn, timeout):
    async def main():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        loop.add_reader(conn.fileno(), lambda: fut.done() or fut.set_result(True))
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            return False
        finally:
            loop.remove_reader(conn.fileno())
    return asyncio.run(main())


@pytest.mark.parametrize("impl", ["stock", "mpconn"])
@pytest.mark.parametrize("waiter", [_select_select, _selectors, _stock_wait, _asyncio_add_reader],
                         ids=["select", "selectors", "stock_wait", "asyncio"])
def test_selecting_on_fileno_sees_a_queued_message(waiter, impl):
    """Guards item 1: select/selectors/loop.add_reader/stock wait() on
    fileno() must see a message that is queued; with read-ahead mpconn had
    it in its own buffer and the kernel had nothing, so they waited forever."""
    a, b = IMPLS[impl].Pipe()
    a.send_bytes(b"first")
    a.send_bytes(b"second")
    assert b.recv_bytes() == b"first"
    assert waiter(b, 2.0) is True
    assert b.recv_bytes() == b"second"


# ===================================================================== item 2
# close() in a forked child must not change the socket for the parent.


def _fork_and_close_in_child(obj):
    pid = os.fork()
    if pid == 0:
        try:
            obj.close()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0


@pytest.mark.parametrize("impl", ["stock", "mpconn"])
def test_close_in_a_forked_child_leaves_the_parents_socketpair_working(impl):
    """Guards item 2: a thread of the parent is blocked in recv_bytes() when
    the process forks; the child closes its copy of the connection.  The
    parent's reader must then get the next message, not EOFError (mpconn
    used to shutdown(SHUT_RDWR) the shared socket from the child)."""
    a, b = IMPLS[impl].Pipe()
    reader = start_thread(b.recv_bytes)
    time.sleep(0.3)  # reader is blocked in the call
    _fork_and_close_in_child(b)
    a.send_bytes(b"still here")
    assert reader.join(T) == b"still here"
    a.send_bytes(b"again")
    assert b.poll(T) and b.recv_bytes() == b"again"


@pytest.mark.parametrize("family", ["AF_INET", "AF_UNIX"])
@pytest.mark.parametrize("impl", ["stock", "mpconn"])
def test_close_in_a_forked_child_leaves_the_parents_listener_working(impl, family, tmp_path):
    """Guards item 2: a thread of the parent is blocked in accept() when the
    process forks; the child closes its copy of the Listener.  The parent
    must still accept clients (mpconn shut the listening socket down, so new
    clients were refused) and a Unix socket file must still exist."""
    m = IMPLS[impl]
    addr = ("127.0.0.1", 0) if family == "AF_INET" else str(tmp_path / "l.sock")
    l = m.Listener(addr)
    try:
        acceptor = start_thread(l.accept)
        time.sleep(0.3)
        _fork_and_close_in_child(l)
        if family == "AF_UNIX":
            assert os.path.exists(addr)
        with m.Client(l.address) as c:
            c.send("hi")
            with acceptor.join(T) as s:
                assert s.poll(T) and s.recv() == "hi"
    finally:
        l.close()


# ===================================================================== item 3


def _valgrind():
    from shutil import which
    return which("valgrind")


def test_arguments_that_close_the_connection_do_not_use_freed_memory():
    """Guards item 3: offset/size/maxlength/timeout objects whose
    __index__/__float__ close the connection (or listener) during
    send_bytes/recv_bytes/recv_bytes_into/poll/Listener.accept(timeout=).
    The call must end with OSError('handle is closed'/'listener is closed')
    and send nothing; freed memory is poisoned (PYTHONMALLOC=malloc,
    MALLOC_PERTURB_) so a use after free shows as a crash or wrong result."""
    rc, out = run_python([os.path.join(DROPIN, "uaf_cases.py")], timeout=60,
                         env={"PYTHONMALLOC": "malloc", "MALLOC_PERTURB_": "165",
                              "MALLOC_CHECK_": "3"})
    assert rc == 0, out
    cases = dict(line.split(" ", 2)[1:] for line in out.splitlines() if line.startswith("CASE "))
    assert len(cases) == 8, out
    for name, result in cases.items():
        if name.endswith("_peer_got_data"):
            assert result == "False", (name, out)
        elif name == "accept_timeout":
            assert result == "raised OSError: listener is closed", (name, out)
        else:
            assert result == "raised OSError: handle is closed", (name, out)


@pytest.mark.skipif(not _valgrind(), reason="valgrind is not installed")
def test_arguments_that_close_the_connection_are_valgrind_clean():
    """Guards item 3 under valgrind: no invalid read/write in the same cases.
    Only errors whose stack passes through mpconn (mpc_*/mpcpy_*/_mpconn)
    count: the interpreter's own valgrind noise is not ours to judge."""
    rc, out = run_python_under_valgrind([os.path.join(DROPIN, "uaf_cases.py")])
    ours = [block for block in valgrind_error_blocks(out)
            if "mpc_" in block or "mpcpy_" in block or "_mpconn" in block]
    assert not ours, "\n\n".join(ours)[-8000:]
    assert "CASE accept_timeout" in out, out[-3000:]


def valgrind_error_blocks(out):
    """Valgrind's error reports: blank-line separated blocks of ==pid== lines."""
    blocks, cur = [], []
    for line in out.splitlines():
        if line.startswith("=="):
            text = line.split("==", 2)[-1].strip()
            if not text:
                if cur:
                    blocks.append("\n".join(cur))
                cur = []
            else:
                cur.append(text)
    if cur:
        blocks.append("\n".join(cur))
    return blocks


def run_python_under_valgrind(args, timeout=300):
    cmd = [_valgrind(), "-q", "--leak-check=no", "--num-callers=30",
           sys.executable] + args
    env = dict(os.environ, PYTHONMALLOC="malloc")
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, env=env, cwd=HERE)
    except subprocess.TimeoutExpired:
        pytest.fail("valgrind run did not finish within %ss" % timeout)
    return p.returncode, p.stdout.decode(errors="replace")


# ===================================================================== item 4
# Signals: Ctrl-C and raising handlers end a blocked send or recv.

BIG = 64 * 1024 * 1024
_BIG_BUF = None


def big_message():
    global _BIG_BUF
    if _BIG_BUF is None:
        _BIG_BUF = bytes(BIG)
    return _BIG_BUF


def make_pair(impl, kind):
    """(writer, reader, extras_to_close) for kind socketpair/pipe/tcp."""
    m = IMPLS[impl]
    if kind == "socketpair":
        a, b = m.Pipe()
        return a, b, []
    if kind == "pipe":
        r, w = m.Pipe(duplex=False)
        return w, r, []
    l = m.Listener(("127.0.0.1", 0))
    acceptor = start_thread(l.accept)
    c = m.Client(l.address)
    s = acceptor.join(T)
    return c, s, [l]


class Drainer:
    """Backstop: after `delay` seconds reads (and discards) whatever arrives
    on fd, so a send that ignored the signal completes and the test fails on
    its timing instead of hanging."""

    def __init__(self, fd, delay):
        self.fd, self.delay = fd, delay
        self.stop = threading.Event()
        self.thread = start_thread(self._run)

    def _run(self):
        if self.stop.wait(self.delay):
            return
        while not self.stop.is_set():
            ready = select.select([self.fd], [], [], 0.1)[0]
            if ready:
                try:
                    if not os.read(self.fd, 1 << 20):
                        return
                except OSError:
                    return

    def close(self):
        self.stop.set()
        self.thread.join(T)


@pytest.fixture
def default_sigint():
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def _timed(fn, exc_type):
    t0 = time.monotonic()
    try:
        fn()
    except exc_type:
        return time.monotonic() - t0
    return None


@pytest.mark.parametrize("kind", ["socketpair", "pipe", "tcp"])
@pytest.mark.parametrize("impl", ["stock", "mpconn"])
def test_ctrl_c_interrupts_a_large_send_that_has_started_writing(impl, kind, default_sigint):
    """Guards item 4: a 64 MiB send_bytes to a peer that does not read;
    SIGINT after 0.5 s must raise KeyboardInterrupt at once (stock does);
    mpconn stayed blocked once part of the message was written."""
    writer, reader, extras = make_pair(impl, kind)
    msg = big_message()
    drain = Drainer(reader.fileno(), 6.0)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        elapsed = _timed(lambda: writer.send_bytes(msg), KeyboardInterrupt)
    finally:
        timer.cancel()
        drain.close()
        for c in [writer, reader] + extras:
            c.close()
    assert elapsed is not None, "send_bytes finished without KeyboardInterrupt"
    assert elapsed < 3.0, "KeyboardInterrupt only after %.1fs" % elapsed


class Alarm(Exception):
    pass


@pytest.fixture
def raising_sigalrm():
    def handler(signum, frame):
        raise Alarm()
    old = signal.signal(signal.SIGALRM, handler)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("op", ["recv_bytes", "send_bytes"])
@pytest.mark.parametrize("impl", ["stock", "mpconn"])
def test_a_raising_sigalrm_handler_ends_a_blocked_call(impl, op, raising_sigalrm):
    """Guards item 4: a SIGALRM handler that raises must end a blocked
    recv_bytes (nothing to read) or send_bytes (peer not reading) with its
    exception, as in stock (PEP 475 retries only when the handler returns)."""
    writer, reader, extras = make_pair(impl, "socketpair")
    backstop = None
    if op == "recv_bytes":
        backstop = threading.Timer(6.0, writer.send_bytes, (b"backstop",))
        backstop.start()
        call = reader.recv_bytes
    else:
        msg = big_message()
        backstop = Drainer(reader.fileno(), 6.0)
        call = lambda: writer.send_bytes(msg)  # noqa: E731
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        elapsed = _timed(call, Alarm)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if isinstance(backstop, Drainer):
            backstop.close()
        else:
            backstop.cancel()
        for c in [writer, reader] + extras:
            c.close()
    assert elapsed is not None, "%s finished without the handler's exception" % op
    assert elapsed < 3.0, "the handler's exception only after %.1fs" % elapsed


# ===================================================================== item 5

LISTENER_CLOSE_SCRIPT = r"""
import json, os, stat, sys, threading, time
from mpconn import Listener
addr = sys.argv[1]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
l = Listener(addr)
fd = l.fileno()
result = {}
def accept():
    try:
        l.accept()
        result["accept"] = "returned"
    except BaseException as e:
        result["accept"] = type(e).__name__ + ": " + str(e)
t = threading.Thread(target=accept, daemon=True)
t.start()
time.sleep(0.3)
cpu0 = time.process_time()
l.close()
t.join(3)
result["thread_finished"] = not t.is_alive()
try:
    result["fd_still_a_socket"] = stat.S_ISSOCK(os.fstat(fd).st_mode)
except OSError:
    result["fd_still_a_socket"] = False
time.sleep(1.0)
result["cpu_seconds"] = time.process_time() - cpu0
result["file_exists"] = (not addr.startswith("\0")) and os.path.exists(addr)
print("RESULT " + json.dumps(result))
sys.stdout.flush()
os._exit(0)
"""


@pytest.mark.parametrize("kind", ["AF_UNIX", "abstract"])
def test_closing_a_unix_listener_while_accept_blocks_in_another_thread(kind, tmp_path):
    """Guards item 5: close() while accept() blocks in another thread must
    end that accept (OSError), not spin a CPU (POLLHUP + EAGAIN loop), must
    close the descriptor and remove the socket file.  Runs in a subprocess
    so a spinning thread cannot slow the rest of the suite."""
    import json
    addr = (str(tmp_path / "l.sock") if kind == "AF_UNIX"
            else "@mpconn-i13-%s" % uuid.uuid4().hex)  # "@": NUL on its command line
    rc, out = run_python(["-c", LISTENER_CLOSE_SCRIPT, addr], timeout=30)
    lines = [l for l in out.splitlines() if l.startswith("RESULT ")]
    assert rc == 0 and lines, out
    r = json.loads(lines[-1][len("RESULT "):])
    assert r["thread_finished"], r
    assert r["accept"].startswith("OSError"), r
    assert r["cpu_seconds"] < 0.5, r
    assert not r["fd_still_a_socket"], r
    assert not r["file_exists"], r
