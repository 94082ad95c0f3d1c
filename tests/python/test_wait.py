"""mpconn.wait(), mirroring CPython's TestWait."""

import multiprocessing
import multiprocessing.connection as stock
import os
import socket
import time

import pytest

from mpconn import Pipe, wait

from conftest import start_thread


def _writer(w, n, delay):
    for i in range(n):
        if delay:
            time.sleep(delay)
        w.send((i, os.getpid()))
    w.close()


@pytest.mark.parametrize("delay", [0, 0.05])
def test_wait_collects_messages_and_eof_from_four_pipes(delay):
    readers = []
    threads = []
    for _ in range(4):
        r, w = Pipe(duplex=False)
        readers.append(r)
        threads.append(start_thread(_writer, w, 10, delay))
    messages = []
    while readers:
        for r in wait(readers):
            try:
                messages.append(r.recv())
            except EOFError:
                readers.remove(r)
                r.close()
    for t in threads:
        t.join()
    assert len(messages) == 40


def test_wait_accepts_sockets_and_reports_eof_as_ready():
    pairs = [socket.socketpair() for _ in range(3)]
    ours = [p[0] for p in pairs]
    for i, (_, theirs) in enumerate(pairs):
        theirs.sendall(b"%d" % i)
        theirs.close()
    got = []
    while ours:
        ready = wait(ours, 5)
        assert ready, "wait timed out"
        for s in ready:
            data = s.recv(32)
            if data:
                got.append(data)
            else:
                ours.remove(s)
                s.close()
    assert sorted(got) == [b"0", b"1", b"2"]


def test_wait_returns_empty_after_the_timeout_then_the_ready_connection():
    a, b = Pipe()
    t0 = time.monotonic()
    assert wait([a], 0.3) == []
    assert time.monotonic() - t0 >= 0.28
    b.send(None)
    t0 = time.monotonic()
    assert wait([a], 5) == [a]
    assert time.monotonic() - t0 < 4


def test_negative_or_zero_timeout_is_one_quick_check():
    a, b = Pipe()
    t0 = time.monotonic()
    assert wait([a], -1) == []
    assert wait([a], 0) == []
    assert time.monotonic() - t0 < 1.0
    b.send_bytes(b"x")
    assert wait([a], -1) == [a]


def test_wait_mixes_process_sentinels_and_connections():
    ctx = multiprocessing.get_context("fork")
    a, b = Pipe()
    p = ctx.Process(target=time.sleep, args=(0.2,))
    p.start()
    try:
        ready = wait([a, p.sentinel], 10)
        assert ready == [p.sentinel]
        b.send_bytes(b"now")
        assert wait([a, p.sentinel], 10) == [a, p.sentinel]
    finally:
        p.join(10)


def test_wait_accepts_raw_descriptors():
    r, w = os.pipe()
    try:
        assert wait([r], 0) == []
        os.write(w, b"x")
        assert wait([r], 5) == [r]
    finally:
        os.close(r)
        os.close(w)


def test_wait_accepts_stock_multiprocessing_connections():
    sa, sb = stock.Pipe()
    a, b = Pipe()
    assert wait([sa, a], 0) == []
    sb.send(1)
    assert wait([sa, a], 5) == [sa]
    b.send(2)
    ready = wait([sa, a], 5)
    assert set(map(id, ready)) == {id(sa), id(a)}


def test_a_connection_with_buffered_data_counts_as_ready():
    a, b = Pipe()
    # two small messages usually arrive in one read: after the first recv the
    # second sits in our buffer and the socket itself is no longer readable.
    b.send_bytes_many([b"one", b"two"])
    assert a.recv_bytes() == b"one"
    assert wait([a], 0) == [a]
    assert a.recv_bytes() == b"two"
    assert wait([a], 0) == []


def test_wait_blocks_until_a_thread_sends():
    a, b = Pipe()
    t = start_thread(lambda: (time.sleep(0.1), b.send("late")))
    assert wait([a]) == [a]
    assert a.recv() == "late"
    t.join()
