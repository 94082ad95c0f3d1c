"""Signals and threads: EINTR during big transfers (CPython's
TestIgnoreEINTR), Ctrl-C interrupting blocked calls, and the GIL being
released while a call blocks."""

import os
import signal
import threading
import time

import pytest

from mpconn import Listener, Pipe

from conftest import start_thread

# Bigger than a pipe's and a socketpair's buffer, so the send blocks.
BIG = 8 * 1024 * 1024


@pytest.fixture
def sigusr1_counter():
    hits = []
    old = signal.signal(signal.SIGUSR1, lambda signum, frame: hits.append(signum))
    yield hits
    signal.signal(signal.SIGUSR1, old)


def _kill_repeatedly(stop, signum=signal.SIGUSR1, every=0.01):
    pid = os.getpid()
    while not stop.is_set():
        os.kill(pid, signum)
        time.sleep(every)


@pytest.mark.parametrize("duplex", [True, False])
def test_signal_handlers_during_a_large_send_and_recv_do_not_break_them(sigusr1_counter, duplex):
    a, b = Pipe(duplex)
    reader, writer = (a, b) if not duplex else (b, a)
    msg = os.urandom(BIG)
    stop = threading.Event()
    killer = start_thread(_kill_repeatedly, stop)
    try:
        # the main thread (where handlers run) is the one blocked in send
        receiver = start_thread(lambda: (time.sleep(0.2), reader.recv_bytes())[1])
        writer.send_bytes(msg)
        got = receiver.join(60)
        # and now the main thread blocks in recv while signals arrive
        sender = start_thread(lambda: (time.sleep(0.2), writer.send_bytes(msg)))
        assert reader.recv_bytes() == msg
        sender.join(60)
    finally:
        stop.set()
        killer.join()
    assert got == msg
    assert len(sigusr1_counter) > 0


def test_accept_survives_signals(sigusr1_counter):
    from mpconn import Client

    with Listener(("127.0.0.1", 0)) as l:
        stop = threading.Event()
        killer = start_thread(_kill_repeatedly, stop)
        client = start_thread(lambda: (time.sleep(0.3), Client(l.address).send("hi")))
        try:
            with l.accept() as c:
                assert c.recv() == "hi"
        finally:
            stop.set()
            killer.join()
        client.join()
    assert len(sigusr1_counter) > 0


def _sigint_later(delay=0.3):
    time.sleep(delay)
    os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture
def default_sigint():
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_ctrl_c_interrupts_a_blocked_recv(default_sigint):
    a, b = Pipe()
    t = start_thread(_sigint_later)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        a.recv_bytes()
    assert time.monotonic() - t0 < 10
    t.join()
    # the connection is still in step: nothing of a message was consumed
    b.send_bytes(b"after")
    assert a.recv_bytes() == b"after"


def test_ctrl_c_interrupts_a_blocked_poll_and_accept(default_sigint):
    a, b = Pipe()
    t = start_thread(_sigint_later)
    with pytest.raises(KeyboardInterrupt):
        a.poll(None)
    t.join()
    with Listener(("127.0.0.1", 0)) as l:
        t = start_thread(_sigint_later)
        with pytest.raises(KeyboardInterrupt):
            l.accept()
        t.join()


def test_a_blocked_recv_does_not_stop_other_python_threads():
    a, b = Pipe()
    blocked = start_thread(a.recv_bytes)
    time.sleep(0.05)
    # Pure-Python work in this thread must proceed while the other thread
    # sits in recv: if the GIL were held, this loop could not run at all
    # until the recv returned.
    counter = 0
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        counter += 1
    assert blocked.is_alive()
    assert counter > 10000
    b.send_bytes(b"release")
    assert blocked.join(10) == b"release"


def test_a_blocked_accept_and_poll_do_not_stop_other_threads():
    with Listener(("127.0.0.1", 0)) as l:
        acc = start_thread(l.accept, timeout=5)
        a, b = Pipe()
        pol = start_thread(a.poll, 5)
        ticks = 0
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            ticks += 1
        assert ticks > 10000
        assert acc.is_alive() and pol.is_alive()
        b.send(1)
        assert pol.join(10) is True
        from mpconn import Client

        c = Client(l.address)
        acc.join(10).close()
        c.close()


def test_close_from_another_thread_leaves_the_socket_to_the_blocked_recv():
    """close() while another thread is blocked in recv_bytes() neither shuts
    the socket down (a forked child or another process may share it) nor
    frees what the blocked call uses: as with CPython, the call is not woken;
    it returns the next message, then the close is finished."""
    a, b = Pipe()
    t = start_thread(a.recv_bytes)
    time.sleep(0.2)
    a.close()
    assert a.closed
    # The peer sees no end of file: the socket was not shut down.
    assert not b.poll(0.2)
    b.send_bytes(b"after close")
    assert t.join(10) == b"after close"
    with pytest.raises(OSError):
        a.fileno()
    # Now closed for real: the peer sees end of file.
    assert b.poll(5)
    with pytest.raises(EOFError):
        b.recv_bytes()
