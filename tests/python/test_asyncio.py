"""mpconn.asyncio: the synchronous objects in non-blocking mode, driven by the
running loop, on asyncio's default loop and on uvloop.

Plain asyncio.run (no pytest-asyncio).  Stock CPython peers (every
interpreter conftest finds) run peers/stock_peer.py and peers/stock_crowd.py,
which use only multiprocessing.connection.  In-process "raw" peers are plain
sockets speaking the framing by hand, so a test can stop mid-frame.
"""

import ast
import asyncio
import binascii
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import uuid

import pytest

import mpconn
import mpconn.asyncio as aio
from mpconn import AuthenticationError, BufferTooShort

from conftest import HERE, ROOT, get_stock_interpreters, machine_python3, make_address, version_tuple
from test_interop_stock import KEY, Peer, _missing, _skip, peer_address

try:
    import uvloop
except ImportError:  # visible as a skip of every uvloop item
    uvloop = None

CROWD = os.path.join(HERE, "peers", "stock_crowd.py")
INTERPRETERS = get_stock_interpreters()
SIZES = [0, 1, 16384, 16385, 1 << 20]
BIG_SIZES = [0, 1, 65535, 65536, 65537, (16 << 20) + 3, 64 << 20]

LOOPS = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param("uvloop", id="uvloop", marks=pytest.mark.skipif(
        uvloop is None, reason="uvloop is not installed (pip install uvloop)")),
]


if uvloop is not None:

    class TrackingUVLoop(uvloop.Loop):
        """uvloop's loop, whose remove_reader()/remove_writer() say whether
        they removed something, as asyncio's do (uvloop's return None)."""

        def __init__(self):
            super().__init__()
            self.tracked = ({}, {})

        def _track(self, which, fd, on):
            fd = fd if isinstance(fd, int) else fd.fileno()
            was = fd in self.tracked[which]
            if on:
                self.tracked[which][fd] = True
            else:
                self.tracked[which].pop(fd, None)
            return was

        def add_reader(self, fd, callback, *args):
            super().add_reader(fd, callback, *args)
            self._track(0, fd, True)

        def remove_reader(self, fd):
            super().remove_reader(fd)
            return self._track(0, fd, False)

        def add_writer(self, fd, callback, *args):
            super().add_writer(fd, callback, *args)
            self._track(1, fd, True)

        def remove_writer(self, fd):
            super().remove_writer(fd)
            return self._track(1, fd, False)


def run_in(kind, coro, timeout=60):
    """Runs coro to its end on a new loop of the given kind, under a deadline."""

    async def guarded():
        loop = asyncio.get_running_loop()
        if kind == "uvloop":
            assert isinstance(loop, uvloop.Loop)
        else:
            assert type(loop).__module__.split(".")[0] == "asyncio"
        return await asyncio.wait_for(coro, timeout)

    if kind == "uvloop":
        if hasattr(asyncio, "Runner"):
            with asyncio.Runner(loop_factory=TrackingUVLoop) as runner:
                return runner.run(guarded())
        loop = TrackingUVLoop()
        try:
            asyncio.set_event_loop(loop)
            return loop.run_until_complete(guarded())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
    return asyncio.run(guarded())


@pytest.fixture(params=LOOPS)
def loop_kind(request):
    return request.param


@pytest.fixture
def run(loop_kind):
    """run(async_fn, *args, timeout=60): async_fn(*args) on the loop kind."""

    def runner(fn, *args, timeout=60):
        return run_in(loop_kind, fn(*args), timeout)

    return runner


# ------------------------------------------------------------------ helpers

_BIG = []


def big():
    """64 MiB of random bytes (made once)."""
    if not _BIG:
        _BIG.append(os.urandom(64 << 20))
    return _BIG[0]


def payload(size):
    return big()[:size] if size > (1 << 20) else os.urandom(size)


def frame(data):
    """CPython's framing of one message (lengths below 2 GiB)."""
    return struct.pack("!i", len(data)) + data


def raw_pair():
    """(async Connection, raw non-blocking socket) at the two ends of a
    socketpair: the raw end speaks the framing by hand."""
    a, b = socket.socketpair()
    conn = aio.wrap(mpconn.Connection(a.detach()))
    b.setblocking(False)
    return conn, b


async def recv_exactly(sock, n):
    loop = asyncio.get_running_loop()
    chunks = []
    while n:
        chunk = await loop.sock_recv(sock, min(n, 1 << 20))
        assert chunk, "end of file with %d bytes to go" % n
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


async def settle():
    """Lets the tasks just made run up to their first wait."""
    for _ in range(5):
        await asyncio.sleep(0)


def assert_unregistered(conn):
    """Nothing of conn is left registered on the running loop but the read
    registration a receive keeps for the next one (remove_* says whether it
    removed something; see TrackingUVLoop)."""
    loop = asyncio.get_running_loop()
    fd = conn.fileno()
    assert loop.remove_writer(fd) is False, "a writer was left registered"
    io = conn._io
    kept = bool(io._rreg and io._rkeep and not io._readers)
    assert loop.remove_reader(fd) is kept, "a reader was left registered"
    if kept:  # put it back as it was
        loop.add_reader(fd, io._on_readable)


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def hexkey(key):
    return "-" if key is None else binascii.hexlify(key).decode()


# ------------------------------------------------------------------ basics over Pipe


def test_a_pipe_carries_bytes_objects_and_buffers_exactly(run):
    async def main():
        a, b = aio.Pipe()
        async with a, b:
            for size in (0, 1, 4, 5, 16384, 16385, 1 << 20, 8 << 20):
                msg = payload(size)
                await a.send_bytes(msg)  # taken whole: the loop writes the rest
                assert await b.recv_bytes() == msg
            await a.send_bytes(b"0123456789", 2, 5)
            assert await b.recv_bytes() == b"23456"
            await a.send_bytes(bytearray(b"abcdef"), 3)
            assert await b.recv_bytes() == b"def"
            value = {"k": [1, 2.5, None], "b": b"\x00\xff", "t": (1, "x")}
            await b.send(value)
            assert await a.recv() == value
            buf = bytearray(10)
            await a.send_bytes(b"xyz")
            assert await b.recv_bytes_into(buf, 4) == 3
            assert buf == bytearray(4) + b"xyz" + bytearray(3)
            await a.send_bytes(b"too long for it")
            with pytest.raises(BufferTooShort) as e:
                await b.recv_bytes_into(bytearray(4))
            assert e.value.args[0] == b"too long for it"
            await a.send_bytes(b"still in step")
            assert await b.recv_bytes(13) == b"still in step"
            await a.send_bytes(b"x" * 100)
            with pytest.raises(OSError, match="^bad message length$"):
                await b.recv_bytes(10)
        assert a.closed and b.closed

    run(main)


def test_bad_arguments_raise_what_the_synchronous_api_raises(run):
    def outcome(fn, *args):
        try:
            fn(*args)
        except Exception as e:  # noqa: B902 - compared below
            return type(e), str(e)
        return None

    async def aoutcome(fn, *args):
        try:
            await fn(*args)
        except Exception as e:  # noqa: B902
            return type(e), str(e)
        return None

    async def main():
        s1, s2 = mpconn.Pipe()
        a, b = aio.Pipe()
        cases = [("send_bytes", (b"abc", 4)), ("send_bytes", (b"abc", -1)),
                 ("send_bytes", (b"abc", 1, 5)), ("send_bytes", (b"abc", 0, -1)),
                 ("send_bytes", ("text",)), ("recv_bytes", (-1,)),
                 ("recv_bytes_into", (b"immutable",)), ("recv_bytes_into", (bytearray(2), 3)),
                 ("recv_bytes_into", (bytearray(2), -1)), ("send", (lambda: 0,))]
        for name, args in cases:
            expected = outcome(getattr(s1, name), *args)
            assert expected is not None, name
            assert await aoutcome(getattr(a, name), *args) == expected, (name, args)
        # the same checks while earlier output waits (b does not read)
        await a.send_bytes(big())
        for args in [c[1] for c in cases if c[0] == "send_bytes"]:
            assert await aoutcome(a.send_bytes, *args) == outcome(s1.send_bytes, *args), args
        for c in (s1, s2, a, b):
            c.close()

    run(main)


def test_one_way_pipes_and_closed_connections_raise_the_synchronous_errors(run):
    async def main():
        r, w = aio.Pipe(duplex=False)
        assert (r.readable, r.writable, w.readable, w.writable) == (True, False, False, True)
        for op in (lambda: r.send_bytes(b"x"), lambda: r.send(1)):
            with pytest.raises(OSError, match="^connection is read-only$"):
                await op()
        for op in (w.recv_bytes, w.recv, lambda: w.recv_bytes_into(bytearray(1)), w.poll):
            with pytest.raises(OSError, match="^connection is write-only$"):
                await op()
        await w.send_bytes(b"one way")
        assert await r.recv_bytes() == b"one way"
        w.close()
        w.close()
        assert w.closed
        with pytest.raises(EOFError):
            await r.recv_bytes()
        assert await r.poll(None) is True  # end of file reads as readable
        for op in (lambda: w.send_bytes(b"x"), lambda: w.send(1), w.poll):
            with pytest.raises(OSError, match="^handle is closed$"):
                await op()
        with pytest.raises(OSError, match="^handle is closed$"):
            w.fileno()
        r.close()
        with pytest.raises(OSError, match="^handle is closed$"):
            await r.recv()

    run(main)


def test_async_for_yields_every_value_until_end_of_file(run):
    values = [None, 0, "text", b"\x00" * 100000, [1, {"x": 2}], bytes(3 << 20)]

    async def main():
        a, b = aio.Pipe()

        async def producer():
            async with b:
                for v in values:
                    await b.send(v)

        task = asyncio.ensure_future(producer())
        got = [v async for v in a]
        await task
        assert got == values
        assert b.closed
        with pytest.raises(EOFError):
            await a.recv()
        a.close()

    run(main)


def test_close_wakes_a_waiting_receive_and_a_waiting_accept(run):
    async def main():
        a, b = aio.Pipe()
        fd = a.fileno()
        task = asyncio.ensure_future(a.recv_bytes())
        await settle()
        assert not task.done()
        a.close()
        with pytest.raises(OSError, match="^handle is closed$"):
            await task
        loop = asyncio.get_running_loop()
        assert loop.remove_reader(fd) is False
        b.close()
        listener = aio.Listener(("127.0.0.1", 0))
        task = asyncio.ensure_future(listener.accept())
        await settle()
        listener.close()
        with pytest.raises(OSError, match="^listener is closed$"):
            await task

    run(main)


def test_a_second_concurrent_receiver_or_sender_gets_runtime_error(run):
    async def main():
        a, b = aio.Pipe()
        first = asyncio.ensure_future(a.recv_bytes())
        await settle()
        for op in (a.recv_bytes, a.recv, lambda: a.recv_bytes_into(bytearray(8))):
            with pytest.raises(RuntimeError, match="another task is already receiving"):
                await op()
        assert await a.poll(0) is False  # poll may run beside a receiver
        poller = asyncio.ensure_future(a.poll(None))
        await settle()
        await b.send_bytes(b"first")
        assert await first == b"first"
        await settle()
        assert not poller.done()  # woken with the receiver, but the data is gone
        await b.send_bytes(b"second")
        assert await poller is True
        assert await a.recv_bytes() == b"second"
        data, data2 = bytes(32 << 20), b"\x01" * (32 << 20)
        await b.send_bytes(data)  # taken at once; most of it waits inside b
        sender = asyncio.ensure_future(b.send_bytes(data2))
        await settle()
        assert not sender.done()  # a does not read: it waits for the first to be written
        for op in (lambda: b.send_bytes(b"x"), lambda: b.send("x")):
            with pytest.raises(RuntimeError, match="another task is already sending"):
                await op()
        assert await a.recv_bytes() == data
        assert await a.recv_bytes() == data2
        await sender
        await b.send_bytes(b"after")
        assert await a.recv_bytes() == b"after"
        assert_unregistered(a)
        assert_unregistered(b)
        a.close()
        b.close()

    run(main)


def test_one_sender_and_one_receiver_per_end_share_each_connection(run):
    sizes = [4 << 20, 1, 1 << 20, 0, 3 << 20, 17, 2 << 20]

    async def main():
        a, b = aio.Pipe()
        to_b = [payload(n) for n in sizes]
        to_a = [os.urandom(n) for n in reversed(sizes)]

        async def send_all(conn, msgs):
            for m in msgs:
                await conn.send_bytes(m)

        async def recv_all(conn, n):
            return [await conn.recv_bytes() for _ in range(n)]

        _, _, got_a, got_b = await asyncio.gather(
            send_all(a, to_b), send_all(b, to_a), recv_all(a, len(to_a)), recv_all(b, len(to_b)))
        assert got_a == to_a
        assert got_b == to_b
        assert_unregistered(a)
        assert_unregistered(b)
        a.close()
        b.close()

    run(main)


def test_poll_waits_with_the_loop_up_to_its_timeout(run):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = aio.Pipe()
        assert await a.poll() is False
        assert await a.poll(-1) is False
        t0 = loop.time()
        assert await a.poll(0.1) is False
        assert 0.09 <= loop.time() - t0 < 5
        waiter = asyncio.ensure_future(a.poll(None))
        await settle()
        assert not waiter.done()
        await b.send_bytes(b"now")
        assert await waiter is True
        assert await a.poll(10) is True
        assert await a.recv_bytes() == b"now"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(a.recv_bytes(), 0.05)
        assert_unregistered(a)
        await b.send_bytes(b"later")
        assert await a.recv_bytes() == b"later"
        a.close()
        b.close()

    run(main)


def test_read_ahead_buffered_messages_are_returned_without_waiting_on_the_descriptor(run):
    async def main():
        a, b = aio.Pipe(read_ahead=True)
        for i in range(50):
            await b.send_bytes(b"m%d" % i)
        assert await a.recv_bytes() == b"m0"  # reads ahead: the rest is now in a's buffer
        for i in range(1, 50):
            assert await asyncio.wait_for(a.poll(None), 5) is True
            assert await asyncio.wait_for(a.recv_bytes(), 5) == b"m%d" % i
        assert await a.poll(0) is False
        a.close()
        b.close()

    run(main)


def test_the_read_registration_kept_after_a_receive_goes_when_nobody_waits(run):
    """A receive keeps its add_reader registration for the next one (no
    selector call per message); it goes at the first readiness that finds
    nobody waiting, at close(), and before a connection dropped without
    close() closes its descriptor."""
    import gc

    async def received_while_waiting(receiver, sender, data):
        """receiver waits, then sender sends data: what the receiver got."""
        waiter = asyncio.ensure_future(receiver.recv_bytes())
        await settle()
        await sender.send_bytes(data)
        return await waiter

    async def main():
        loop = asyncio.get_running_loop()
        a, b = aio.Pipe()
        fd = a.fileno()
        assert await received_while_waiting(a, b, b"one") == b"one"
        assert a._io._rreg, "kept for the next receive"
        await b.send_bytes(b"unawaited")  # readable, nobody waits: it goes
        for _ in range(5):
            await asyncio.sleep(0)
        assert not a._io._rreg
        assert loop.remove_reader(fd) is False
        assert await a.recv_bytes() == b"unawaited"  # (from the socket, no wait)
        assert await received_while_waiting(a, b, b"two") == b"two"
        assert a._io._rreg
        a.close()
        assert loop.remove_reader(fd) is False, "close() leaves nothing registered"
        # Dropped without close(): unregistered before the descriptor closes.
        c, d = aio.Pipe()
        fd = c.fileno()
        assert await received_while_waiting(c, d, b"three") == b"three"
        assert c._io._rreg
        del c
        gc.collect()
        assert loop.remove_reader(fd) is False, "a dropped connection left its reader registered"
        with pytest.raises(OSError):
            os.fstat(fd)  # ... and its descriptor is closed
        b.close()
        d.close()

    run(main)


def test_a_connection_goes_on_receiving_in_the_next_event_loop(loop_kind):
    """A read registration kept on a loop that has ended does not stop a
    receive in the next one (asyncio.run() twice with one connection)."""
    a, b = mpconn.Pipe()
    a, b = aio.wrap(a), aio.wrap(b)

    async def exchange(tag):
        waiter = asyncio.ensure_future(a.recv_bytes())
        await settle()
        await b.send_bytes(tag)
        return await asyncio.wait_for(waiter, 10)

    for tag in (b"first loop", b"second loop", b"third loop"):
        assert run_in(loop_kind, exchange(tag), 30) == tag
    a.close()
    b.close()


def test_small_sends_queued_behind_a_full_socket_arrive_whole_and_in_order(run):
    """bytes, bytearray and memoryview slices sent while the socket is full
    (queued in Python and written many per system call) arrive in order."""
    async def main():
        a, b = aio.Pipe()
        sent = []
        queued = []

        async def send_all():
            for i in range(30000):
                m = b"%d:" % i + b"x" * (i % 37)
                kind = i % 3
                if kind == 0:
                    await a.send_bytes(m)
                elif kind == 1:
                    await a.send_bytes(bytearray(m))
                else:
                    await a.send_bytes(b"??" + m + b"!!", 2, len(m))
                sent.append(m)
                queued.append(a._queued)
            await a.send_bytes(b"last")

        async def recv_all():
            got = []
            while True:
                m = await b.recv_bytes()
                if m == b"last":
                    return got
                got.append(m)

        _, got = await asyncio.gather(send_all(), recv_all())
        assert sum(queued) > 1000, "the socket filled up: many sends were queued"
        assert got == sent
        a.close()
        b.close()

    run(main)


def test_wrap_makes_an_async_connection_of_a_synchronous_one(run):
    async def main():
        s1, s2 = mpconn.Pipe()
        a = aio.wrap(s1)
        assert isinstance(a, aio.Connection)
        assert a.fileno() == s1.fileno()
        s2.send_bytes(b"sync to async")
        assert await a.recv_bytes() == b"sync to async"
        await a.send(("async", 1))
        assert s2.recv() == ("async", 1)
        a.close()
        assert s1.closed
        s2.close()
        import multiprocessing

        stock_a, stock_b = multiprocessing.Pipe()
        for other in (stock_a, object(), 3):
            with pytest.raises(TypeError):
                aio.wrap(other)
        stock_a.close()
        stock_b.close()

    run(main)


def test_no_thread_is_started(run):
    before = threading.active_count()

    async def main():
        a, b = aio.Pipe()
        async with aio.Listener(("127.0.0.1", 0), authkey=KEY) as listener:
            accepted = asyncio.ensure_future(listener.accept())
            c = await aio.Client(listener.address, authkey=KEY)
            s = await accepted
            _, got = await asyncio.gather(c.send_bytes(bytes(4 << 20)), s.recv_bytes())
            assert got == bytes(4 << 20)
            await a.send(1)
            assert await b.recv() == 1
            assert threading.active_count() == before
            for conn in (a, b, c, s):
                conn.close()

    run(main)
    assert threading.active_count() == before


# ------------------------------------------------------------------ Listener and Client


@pytest.mark.parametrize("dialect", ["modern", "legacy", "strict"])
def test_an_async_client_and_listener_talk_over_every_family(run, family_kind, tmp_path, dialect):
    address = make_address(family_kind, tmp_path)

    async def main():
        async with aio.Listener(address, authkey=KEY, dialect=dialect) as listener:
            assert listener.last_accepted is None
            accepted = asyncio.ensure_future(listener.accept())
            c = await aio.Client(listener.address, authkey=KEY, dialect=dialect)
            s = await accepted
            if family_kind == "AF_INET":
                assert listener.last_accepted[0] == "127.0.0.1"
            else:
                assert listener.last_accepted == ""
            async with c, s:
                await c.send_bytes(b"hello")
                assert await s.recv_bytes() == b"hello"
                await s.send({"x": 1})
                assert await c.recv() == {"x": 1}
            assert c.closed and s.closed
        with pytest.raises(AttributeError):
            listener.address

    run(main)
    if family_kind == "AF_UNIX":
        assert not os.path.exists(address)


@pytest.mark.parametrize("dialect", ["modern", "legacy"])
def test_a_wrong_key_fails_on_both_sides_and_the_listener_stays_usable(run, dialect):
    async def main():
        async with aio.Listener(("127.0.0.1", 0), authkey=b"ours", dialect=dialect) as listener:
            accepted = asyncio.ensure_future(listener.accept())
            with pytest.raises(AuthenticationError, match="digest sent was rejected"):
                await aio.Client(listener.address, authkey=b"theirs", dialect=dialect)
            with pytest.raises(AuthenticationError, match="digest received was wrong"):
                await accepted
            assert listener.last_accepted[0] == "127.0.0.1"
            accepted = asyncio.ensure_future(listener.accept())
            c = await aio.Client(listener.address, authkey=b"ours", dialect=dialect)
            s = await accepted
            await c.send_bytes(b"in")
            assert await s.recv_bytes() == b"in"
            c.close()
            s.close()

    run(main)


def test_two_tasks_may_accept_on_one_listener(run):
    async def main():
        async with aio.Listener(("127.0.0.1", 0), backlog=4) as listener:
            acceptors = [asyncio.ensure_future(listener.accept()) for _ in range(2)]
            await settle()
            clients = [await aio.Client(listener.address) for _ in range(2)]
            servers = await asyncio.gather(*acceptors)
            for i, (c, s) in enumerate(zip(clients, servers)):
                await c.send(i)
            assert sorted([await s.recv() for s in servers]) == [0, 1]
            for conn in clients + servers:
                conn.close()

    run(main)


def test_connecting_nowhere_raises_what_the_synchronous_client_raises(run, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    free = s.getsockname()
    s.close()
    addresses = [free, str(tmp_path / "nobody.sock"), "\0mpconn-nobody-%s" % uuid.uuid4().hex]

    async def main():
        for address in addresses:
            with pytest.raises(OSError) as sync_error:
                mpconn.Client(address)
            with pytest.raises(OSError) as async_error:
                await aio.Client(address)
            assert type(async_error.value) is type(sync_error.value)
            assert async_error.value.errno == sync_error.value.errno

    run(main)


def test_keyword_extras_are_the_synchronous_ones(run, tmp_path):
    async def main():
        async with aio.Listener(("127.0.0.1", 0), authkey=KEY, dialect="legacy", digest="sha256",
                                handshake_timeout=30, read_ahead=True, backlog=2) as listener:
            accepted = asyncio.ensure_future(listener.accept())
            c = await aio.Client(listener.address, "AF_INET", KEY, dialect="legacy",
                                 digest="sha256", read_ahead=True)
            s = await accepted
            await c.send_bytes(b"extras")
            assert await s.recv_bytes() == b"extras"
            c.close()
            s.close()
            for bad in (dict(timeout=1), dict(handshake_timeout=1), dict(nonsense=1)):
                with pytest.raises(TypeError):
                    aio.Client(listener.address, **bad)
            with pytest.raises(TypeError):
                listener.accept(timeout=1)
        with pytest.raises(TypeError):
            aio.Listener(("127.0.0.1", 0), timeout=1)
        with pytest.raises(ValueError) as sync_error:
            mpconn.Listener(("127.0.0.1", 0), dialect="bogus")
        with pytest.raises(ValueError) as async_error:
            aio.Listener(("127.0.0.1", 0), dialect="bogus")
        assert str(async_error.value) == str(sync_error.value)

    run(main)


def test_handshake_timeout_bounds_a_silent_clients_handshake_without_blocking_the_loop(run):
    async def main():
        loop = asyncio.get_running_loop()
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick = asyncio.ensure_future(ticker())
        async with aio.Listener(("127.0.0.1", 0), authkey=KEY, handshake_timeout=0.3) as listener:
            silent = socket.create_connection(listener.address)
            t0 = loop.time()
            with pytest.raises(TimeoutError, match="^handshake timed out$"):
                await listener.accept()
            assert 0.25 <= loop.time() - t0 < 10
            assert ticks >= 5
            silent.setblocking(False)
            rest = b""
            while True:  # the challenge, then end of file: the listener closed it
                chunk = await loop.sock_recv(silent, 4096)
                if not chunk:
                    break
                rest += chunk
            assert b"#CHALLENGE#" in rest
            silent.close()
            accepted = asyncio.ensure_future(listener.accept())
            c = await aio.Client(listener.address, authkey=KEY)
            s = await accepted
            await s.send_bytes(b"usable")
            assert await c.recv_bytes() == b"usable"
            c.close()
            s.close()
        tick.cancel()

    run(main)


def test_a_client_cut_short_mid_handshake_closes_its_socket(run):
    async def main():
        loop = asyncio.get_running_loop()
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.setblocking(False)
        # the server accepts but never sends its challenge
        connecting = asyncio.ensure_future(
            asyncio.wait_for(aio.Client(server.getsockname(), authkey=KEY), 0.2))
        peer, _ = await loop.sock_accept(server)
        with pytest.raises(asyncio.TimeoutError):
            await connecting
        peer.setblocking(False)
        assert await loop.sock_recv(peer, 100) == b""  # closed by the cancelled Client
        peer.close()
        server.close()

    run(main)


def test_restricted_receives_decode_with_the_allow_list(run):
    import pickle

    evil = b"cos\nsystem\n(S'true'\ntR."  # a pickle that would call os.system

    async def main():
        async with aio.Listener(("127.0.0.1", 0), restricted=True) as listener:
            accepted = asyncio.ensure_future(listener.accept())
            c = await aio.Client(listener.address, restricted=True)
            s = await accepted
            assert c.restricted and s.restricted
            value = {"a": [1, 2.5, None, (True, b"\x00")], "s": {1, 2}}
            await c.send(value)
            assert await s.recv() == value
            await c.send_bytes(evil)
            with pytest.raises(mpconn.RestrictedPickleError):
                await s.recv()
            await c.send(("still", "in step"))
            assert await s.recv() == ("still", "in step")
            s.restricted = False
            await c.send(1)
            assert await s.recv() == 1
            await c.send_bytes(evil)
            with pytest.raises(pickle.UnpicklingError):
                await s.recv(restricted=True)
            task = asyncio.ensure_future(s.recv(restricted=True))  # waits, then decodes
            await settle()
            await c.send_bytes(evil)
            with pytest.raises(mpconn.RestrictedPickleError):
                await task
            c.close()
            s.close()

    run(main)


# ------------------------------------------------------------------ TLS


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make the test certificates")
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(["bash", os.path.join(ROOT, "tests", "tls", "make_certs.sh"), str(d)],
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return {name: str(d / name) for name in os.listdir(str(d))}


def test_tls_connections_carry_every_size_and_verify_the_server(run, certs):
    import ssl

    server = mpconn.TLS(certfile=certs["server.pem"], keyfile=certs["server.key"])
    client = mpconn.TLS(cafile=certs["ca.pem"])
    sizes = [0, 1, 16384, 16385, 1 << 20, 16 << 20]

    async def main():
        async with aio.Listener(("127.0.0.1", 0), authkey=KEY, tls=server,
                                handshake_timeout=10) as listener:
            accepted = asyncio.ensure_future(listener.accept())
            c = await aio.Client(listener.address, authkey=KEY, tls=client)
            s = await accepted
            async with c, s:
                for size in sizes:
                    msg = payload(size)
                    await c.send_bytes(msg)
                    assert await s.recv_bytes() == msg
                    await s.send_bytes(msg)
                    assert await c.recv_bytes() == msg
                small = [b"%d" % i for i in range(3000)]

                async def send_all():
                    for m in small:
                        await c.send_bytes(m)

                sender = asyncio.ensure_future(send_all())
                assert [await s.recv_bytes() for _ in small] == small
                await sender
                await s.send(("over", "tls"))
                assert await c.recv() == ("over", "tls")
            # a client that does not trust the server's CA refuses it
            accepted = asyncio.ensure_future(listener.accept())
            with pytest.raises(ssl.SSLCertVerificationError):
                await aio.Client(listener.address, authkey=KEY,
                                 tls=mpconn.TLS(cafile=certs["other-ca.pem"]))
            with pytest.raises(ssl.SSLError):
                await accepted
            # and the listener goes on
            accepted = asyncio.ensure_future(listener.accept())
            c = await aio.Client(listener.address, authkey=KEY, tls=client)
            s = await accepted
            await c.send_bytes(b"again")
            assert await s.recv_bytes() == b"again"
            c.close()
            s.close()

    run(main, timeout=120)


# ------------------------------------------------------------------ stock CPython peers


async def stock_session(conn, version, sizes=SIZES):
    for size in sizes:
        msg = payload(size)
        await conn.send_bytes(msg)
        got = await conn.recv_bytes()
        assert len(got) == size and got == msg, "echo of %d bytes differs" % size
    if version_tuple(version) >= (3, 0):
        value = {"name": "Alice", "level": 42, "scores": [1.5, -2], "tag": b"\x00\xff", "t": (1, None)}
        await conn.send_bytes(b"!obj")
        await conn.send(value)
        assert await conn.recv() == value
    await conn.send_bytes(b"!bye")


def _matrix():
    cells = []
    for label, python, version in INTERPRETERS:
        for kind in ("tcp", "unix", "abstract"):
            for dialect in ("modern", "legacy"):
                cells.append(pytest.param(python, version, kind, dialect,
                                          id="%s-%s-%s" % (label, kind, dialect)))
    return cells + [_skip(minor, "-any-any") for minor in _missing()]


def _by_interpreter():
    cells = [pytest.param(python, version, id=label) for label, python, version in INTERPRETERS]
    return cells + [_skip(minor) for minor in _missing()]


def _extremes():
    """The oldest and the newest stock interpreter (2.7 when there is one)."""
    ordered = sorted(INTERPRETERS, key=lambda i: tuple(int(x) for x in i[2].split(".")))
    picked = [ordered[0], ordered[-1]] if len(ordered) > 1 else ordered
    return [pytest.param(python, version, id=label) for label, python, version in picked]


def stock_address(line):
    assert line.startswith("ADDR "), line
    return ast.literal_eval(line[5:])


def for_peer(address):
    """An address as a literal a py2 peer reads too (abstract names are bytes
    on our side)."""
    return address.decode("latin-1") if isinstance(address, bytes) else address


async def async_client_session(python, version, address_kind, dialect, tmp_path, sizes):
    peer = Peer(python, "server", peer_address(address_kind, tmp_path), KEY)
    try:
        address = stock_address(peer.line())
        conn = await aio.Client(address, authkey=KEY, dialect=dialect)
        async with conn:
            assert peer.line() == "READY"  # said once its handshake is done
            await stock_session(conn, version, sizes)
        assert peer.line() == "DONE"
    finally:
        code = peer.finish()
    assert code == 0


async def async_listener_session(python, version, address_kind, dialect, tmp_path, sizes):
    async with aio.Listener(peer_address(address_kind, tmp_path), authkey=KEY,
                            dialect=dialect) as listener:
        peer = Peer(python, "client", for_peer(listener.address), KEY)
        try:
            conn = await listener.accept()
            async with conn:
                assert peer.line() == "READY"
                await stock_session(conn, version, sizes)
            assert peer.line() == "DONE"
        finally:
            code = peer.finish()
    assert code == 0


@pytest.mark.parametrize("python,version,kind,dialect", _matrix())
def test_an_async_client_talks_to_a_stock_listener(run, python, version, kind, dialect, tmp_path):
    run(async_client_session, python, version, kind, dialect, tmp_path, SIZES)


@pytest.mark.parametrize("python,version,kind,dialect", _matrix())
def test_a_stock_client_talks_to_an_async_listener(run, python, version, kind, dialect, tmp_path):
    run(async_listener_session, python, version, kind, dialect, tmp_path, SIZES)


@pytest.mark.parametrize("python,version", _extremes())
@pytest.mark.parametrize("kind", ["tcp", "unix", "abstract"])
def test_messages_from_0_bytes_to_64_mib_cross_byte_exact_both_ways(run, python, version, kind,
                                                                   tmp_path):
    run(async_client_session, python, version, kind, "modern", tmp_path, BIG_SIZES, timeout=120)
    run(async_listener_session, python, version, kind, "legacy", tmp_path, BIG_SIZES, timeout=120)


@pytest.mark.parametrize("python,version", _by_interpreter())
def test_a_wrong_key_fails_on_both_sides_against_stock_peers(run, python, version):
    async def main():
        peer = Peer(python, "server", ("127.0.0.1", 0), b"their key")
        try:
            address = stock_address(peer.line())
            with pytest.raises(AuthenticationError, match="digest sent was rejected"):
                await aio.Client(address, authkey=b"our key")
            assert peer.line().startswith("AUTHFAIL")
        finally:
            code = peer.finish()
        assert code == 3
        async with aio.Listener(("127.0.0.1", 0), authkey=b"our key") as listener:
            peer = Peer(python, "client", listener.address, b"their key")
            try:
                with pytest.raises(AuthenticationError, match="digest received was wrong"):
                    await listener.accept()
                assert peer.line().startswith("AUTHFAIL")
            finally:
                code = peer.finish()
        assert code == 3

    run(main)


@pytest.mark.parametrize("python,version", _by_interpreter())
def test_no_authkey_on_either_side_means_no_handshake_with_stock_peers(run, python, version):
    async def main():
        peer = Peer(python, "server", ("127.0.0.1", 0), None)
        try:
            conn = await aio.Client(stock_address(peer.line()))
            async with conn:
                await stock_session(conn, version, [0, 100])
        finally:
            code = peer.finish()
        assert code == 0
        async with aio.Listener(("127.0.0.1", 0)) as listener:
            peer = Peer(python, "client", listener.address, None)
            try:
                async with await listener.accept() as conn:
                    await stock_session(conn, version, [0, 100])
            finally:
                code = peer.finish()
        assert code == 0

    run(main)


def test_one_loop_serves_1000_stock_clients_with_flat_memory(run):
    nproc, nconn, rounds = 10, 100, 100
    total_conns = nproc * nconn
    python = machine_python3()
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)

    async def main():
        state = {"first": 0, "echoes": 0, "baseline": None, "final": None}

        async def handle(conn):
            n = 0
            async with conn:
                while True:
                    try:
                        msg = await conn.recv_bytes()
                    except EOFError:
                        return n
                    await conn.send_bytes(msg)
                    n += 1
                    state["echoes"] += 1
                    if n == 1:
                        state["first"] += 1
                        if state["first"] == total_conns:
                            state["baseline"] = rss_bytes()
                    if state["echoes"] == total_conns * rounds:
                        state["final"] = rss_bytes()

        procs = []
        handlers = []
        ok = False
        try:
            async with aio.Listener(("127.0.0.1", 0), authkey=KEY, backlog=1024) as listener:
                for _ in range(nproc):
                    procs.append(subprocess.Popen(
                        [python, CROWD, repr(listener.address), hexkey(KEY), str(nconn),
                         str(rounds)],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        env=env))
                while len(handlers) < total_conns:
                    conn = await asyncio.wait_for(listener.accept(), 30)
                    handlers.append(asyncio.ensure_future(handle(conn)))
                for p in procs:
                    p.stdin.write(b"go\n")
                    p.stdin.flush()
                counts = await asyncio.gather(*handlers)
                ok = True
        finally:
            outputs = []
            for p in procs:
                if not ok and p.poll() is None:
                    p.kill()
                try:
                    out, err = p.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    out, err = p.communicate()
                outputs.append((p.returncode, out.decode(), err.decode()))
        for code, out, err in outputs:
            assert code == 0, err
            assert out.split("\n")[:2] == ["CONNECTED", "DONE %d" % (nconn * rounds)], (out, err)
        assert counts == [rounds] * total_conns
        return state

    state = run(main, timeout=240)
    if "asan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("every round trip checked; RSS not compared under AddressSanitizer "
                    "(its quarantine holds freed memory)")
    growth = state["final"] - state["baseline"]
    print("RSS after round 1: %.1f MiB; after round %d: %.1f MiB (%+.0f KiB)"
          % (state["baseline"] / 2**20, rounds, state["final"] / 2**20, growth / 1024))
    assert growth < (4 << 20), "RSS grew by %d KiB over %d round trips" % (growth // 1024,
                                                                       total_conns * rounds)


# ------------------------------------------------------------------ cancellation and stalls


def test_a_receive_cancelled_in_the_middle_of_a_64_mib_message_loses_nothing(run):
    import pickle

    async def cut_then_finish(conn, raw, wire, first, then):
        """Starts first(), feeds half of wire (the call returns once the
        receiver has taken all but what the socket buffers hold: it is in
        the middle of the message), cancels it, then feeds the rest to
        then()."""
        loop = asyncio.get_running_loop()
        half = len(wire) // 2
        task = asyncio.ensure_future(first())
        await loop.sock_sendall(raw, wire[:half])
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert_unregistered(conn)
        task = asyncio.ensure_future(then())
        await loop.sock_sendall(raw, wire[half:])
        return await task

    async def main():
        loop = asyncio.get_running_loop()
        conn, raw = raw_pair()
        data = big()
        wire = frame(data)
        assert await cut_then_finish(conn, raw, wire, conn.recv_bytes, conn.recv_bytes) == data
        buf = bytearray(len(data) + 8)
        assert await cut_then_finish(conn, raw, wire, conn.recv_bytes,
                                     lambda: conn.recv_bytes_into(buf, 8)) == len(data)
        assert buf[8:] == data
        del buf
        value = ["a pickle", data[:16 << 20]]
        assert await cut_then_finish(conn, raw, frame(pickle.dumps(value, protocol=2)),
                                     conn.recv, conn.recv) == value
        await loop.sock_sendall(raw, frame(b"next"))
        assert await conn.recv_bytes() == b"next"
        assert_unregistered(conn)
        conn.close()
        raw.close()

    run(main, timeout=120)


def test_receives_cut_short_by_timeouts_against_a_stock_peer_lose_nothing(run):
    async def main():
        peer = Peer(machine_python3(), "server", ("127.0.0.1", 0), None)
        try:
            conn = await aio.Client(stock_address(peer.line()))
            # A small receive window: the echo comes in many pieces, and the
            # receive waits between them.  (A peer that keeps up with the
            # reader is read in one call, with no point to cut it at.)
            s = socket.socket(fileno=os.dup(conn.fileno()))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            s.close()
            async with conn:
                data = big()[:16 << 20]
                await conn.send_bytes(data)
                # once the echo starts arriving, every cut is mid-message
                assert await conn.poll(30) is True
                cuts = 0
                while True:
                    try:
                        got = await asyncio.wait_for(conn.recv_bytes(), 0.001)
                        break
                    except asyncio.TimeoutError:
                        cuts += 1
                assert cuts >= 1
                assert len(got) == len(data) and got == data
                del got
                await conn.send_bytes(b"in step")
                assert await conn.recv_bytes() == b"in step"
                await conn.send_bytes(b"!bye")
            assert peer.line() == "READY"
            assert peer.line() == "DONE"
        finally:
            code = peer.finish()
        assert code == 0

    run(main, timeout=120)


def test_a_send_cancelled_mid_frame_leaves_a_well_formed_stream(run):
    import pickle

    async def main():
        conn, raw = raw_pair()
        first = big()
        await conn.send_bytes(first)  # taken whole: most of it waits inside conn
        head = await recv_exactly(raw, 1 << 20)  # the first MiB of its frame
        assert head[:4] == struct.pack("!i", len(first))
        # A large message waits until the first is written: cancelled
        # meanwhile (mid-frame on the wire), it has sent nothing.
        sending = asyncio.ensure_future(conn.send_bytes(bytes(range(256)) * (64 << 12)))
        await settle()
        assert not sending.done()
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        # Small ones queue up to the high-water mark, then a send waits:
        # cancelled there, it has sent nothing either.
        small = [b"%05d" % i + bytes(1019) for i in range(200)]
        sent = []

        async def send_small():
            for i, m in enumerate(small):
                await conn.send_bytes(m)
                sent.append(i)

        sending = asyncio.ensure_future(send_small())
        await settle()
        assert 0 < len(sent) < len(small)
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        expected = (frame(first) + b"".join(frame(small[i]) for i in sent) + frame(b"after")
                    + frame(pickle.dumps(("value", 1), protocol=pickle.DEFAULT_PROTOCOL)))
        reader = asyncio.ensure_future(recv_exactly(raw, len(expected) - len(head)))
        await conn.send_bytes(b"after")  # (waits for room: the queue is full)
        await conn.send(("value", 1))
        assert head + await reader == expected
        for _ in range(100):  # the pump stops once everything is out
            await asyncio.sleep(0)
        assert_unregistered(conn)
        conn.close()
        raw.setblocking(True)
        assert raw.recv(1) == b""  # nothing more on the wire
        raw.close()

    run(main, timeout=120)


def test_close_writes_queued_output_in_the_background_then_closes(run):
    async def main():
        loop = asyncio.get_running_loop()
        conn, raw = raw_pair()
        data = big()
        await conn.send_bytes(data)
        tail = [b"tail %d" % i for i in range(10)]
        for m in tail:
            await conn.send_bytes(m)
        conn.close()
        assert conn.closed
        for op in (lambda: conn.send_bytes(b"x"), conn.recv_bytes, conn.poll):
            with pytest.raises(OSError, match="^handle is closed$"):
                await op()
        with pytest.raises(OSError, match="^handle is closed$"):
            conn.fileno()
        expected = frame(data) + b"".join(frame(m) for m in tail)
        assert await recv_exactly(raw, len(expected)) == expected
        assert await loop.sock_recv(raw, 1) == b""  # then end of file
        raw.close()

    run(main, timeout=120)


def test_a_closed_connection_gives_up_writing_to_a_peer_that_never_reads(run, monkeypatch):
    monkeypatch.setattr(aio, "_LINGER", 0.3)

    async def main():
        loop = asyncio.get_running_loop()
        conn, raw = raw_pair()
        data = big()
        await conn.send_bytes(data)
        conn.close()
        await asyncio.sleep(0.6)
        got = b""
        while True:  # what the socket held, then end of file: it was closed
            chunk = await loop.sock_recv(raw, 1 << 20)
            if not chunk:
                break
            got += chunk
        assert 0 < len(got) < len(data) + 4
        assert got == frame(data)[:len(got)]
        raw.close()

    run(main)


def test_an_error_writing_queued_output_is_raised_by_the_next_send(run):
    async def main():
        conn, raw = raw_pair()
        await conn.send_bytes(big())  # most of it waits inside conn
        raw.close()  # the peer goes away
        with pytest.raises((BrokenPipeError, ConnectionResetError)) as first:
            for _ in range(200):
                await conn.send_bytes(b"x")
                await asyncio.sleep(0.01)
        with pytest.raises(type(first.value)):
            await conn.send(1)  # and every later send
        with pytest.raises(type(first.value)):
            await conn.send_bytes(b"y")
        conn.close()

    run(main, timeout=120)


def test_sends_cut_short_by_timeouts_leave_a_stream_a_stock_peer_reads_whole(run, tmp_path):
    async def main():
        peer = Peer(machine_python3(), "server", peer_address("unix", tmp_path), None)
        try:
            conn = await aio.Client(stock_address(peer.line()))
            msgs = [bytes([i]) * ((16 << 20) + i) for i in range(8)]
            echoes = []

            async def read_echoes():
                while True:
                    m = await conn.recv_bytes()
                    if m == b"end":
                        return
                    echoes.append(m)

            reader = asyncio.ensure_future(read_echoes())
            completed, cut = [], []
            for i, m in enumerate(msgs):
                try:
                    await asyncio.wait_for(conn.send_bytes(m), 0.002)
                    completed.append(i)
                except asyncio.TimeoutError:
                    cut.append(i)
            await conn.send_bytes(b"end")
            await reader
            assert cut, "no send was cut short"
            seen = []
            for e in echoes:  # every echo is one whole message, in order
                assert e in msgs, "an echo of %d bytes is no message sent" % len(e)
                seen.append(msgs.index(e))
            assert seen == sorted(set(seen))
            assert set(completed) <= set(seen)
            await conn.send_bytes(b"!bye")
            conn.close()
            assert peer.line() == "READY"
            assert peer.line() == "DONE"
        finally:
            code = peer.finish()
        assert code == 0

    run(main, timeout=120)


def test_a_peer_that_stalls_mid_frame_does_not_block_the_loop(run):
    async def main():
        loop = asyncio.get_running_loop()
        conn, raw = raw_pair()
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick = asyncio.ensure_future(ticker())
        data = os.urandom(1 << 20)
        wire = frame(data)
        await loop.sock_sendall(raw, wire[:1000])  # a header and a little: then silence
        receiving = asyncio.ensure_future(conn.recv_bytes())
        start = ticks
        await asyncio.sleep(0.3)
        assert not receiving.done()
        assert ticks - start >= 5
        await loop.sock_sendall(raw, wire[1000:])
        assert await receiving == data
        # a peer that stops reading while we send
        await conn.send_bytes(big())  # taken whole
        sending = asyncio.ensure_future(conn.send_bytes(data))  # waits for the first
        start = ticks
        await asyncio.sleep(0.3)
        assert not sending.done()
        assert ticks - start >= 5
        got = await recv_exactly(raw, len(big()) + 4 + len(wire))
        await sending
        assert got == frame(big()) + wire
        tick.cancel()
        conn.close()
        raw.close()

    run(main, timeout=120)


CTRL_C_SCRIPT = r"""
import asyncio, sys
import mpconn.asyncio as aio

async def main():
    a, b = aio.Pipe()
    print("WAITING", flush=True)
    await a.recv()

if sys.argv[1] == "uvloop":
    import uvloop
    if hasattr(asyncio, "Runner"):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    else:
        uvloop.install()
        asyncio.run(main())
else:
    asyncio.run(main())
print("NOT REACHED", flush=True)
"""


def test_ctrl_c_ends_a_loop_waiting_in_recv_as_asyncio_does(loop_kind, tmp_path):
    p = subprocess.Popen([sys.executable, "-c", CTRL_C_SCRIPT, loop_kind],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(tmp_path))
    try:
        assert p.stdout.readline() == b"WAITING\n", p.stderr.read()
        # the main task is now waiting in recv (its next step after the print)
        import time

        time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert b"NOT REACHED" not in out
    assert err.rstrip().splitlines()[-1] == b"KeyboardInterrupt", err
    assert p.returncode == -signal.SIGINT, err
