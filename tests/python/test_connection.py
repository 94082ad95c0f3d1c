"""Connection behaviour, mirroring CPython's _TestConnection / _TestPoll /
TestInvalidHandle (PROTOCOL.md section 5), over Pipe() and socket pairs."""

import array
import gc
import multiprocessing
import os
import socket
import time

import pytest

import mpconn
from mpconn import BufferTooShort, Connection, Pipe

from conftest import start_thread

LONG = 16 * 1024 * 1024


def echo(conn):
    """Echo every message back (bytes level) until EOF."""
    try:
        while True:
            conn.send_bytes(conn.recv_bytes())
    except EOFError:
        pass
    finally:
        conn.close()


@pytest.fixture
def echo_pair():
    a, b = Pipe()
    t = start_thread(echo, b)
    yield a
    a.close()
    t.join()


def test_exceptions_are_multiprocessings_own_classes():
    assert mpconn.AuthenticationError is multiprocessing.AuthenticationError
    assert mpconn.BufferTooShort is multiprocessing.BufferTooShort
    assert issubclass(mpconn.BufferTooShort, multiprocessing.ProcessError)
    import multiprocessing.connection as stock

    assert mpconn.families == stock.families
    assert mpconn.default_family == stock.default_family
    assert set(["Client", "Listener", "Pipe", "wait"]) <= set(mpconn.connection.__all__)


def test_objects_round_trip_through_an_echo_peer(echo_pair):
    conn = echo_pair
    seq = [1, 2.25, None, "text", {"a": [1, 2]}, (3, b"x")]
    conn.send(seq)
    assert conn.recv() == seq
    conn.send_bytes(b"hello")
    assert conn.recv_bytes() == b"hello"


def test_send_pickles_with_forkingpickler_at_the_default_protocol():
    import pickle

    a, b = Pipe()
    a.send(None)
    raw = b.recv_bytes()
    assert raw == pickle.dumps(None, pickle.DEFAULT_PROTOCOL)
    a.send_bytes(pickle.dumps({"k": 1}))
    assert b.recv() == {"k": 1}


def test_recv_bytes_into_an_int_array_at_offset_zero_and_at_a_byte_offset(echo_pair):
    conn = echo_pair
    arr = array.array("i", range(4))
    conn.send_bytes(arr)
    buffer = array.array("i", [0] * 10)
    assert conn.recv_bytes_into(buffer) == len(arr) * arr.itemsize
    assert list(buffer) == [0, 1, 2, 3, 0, 0, 0, 0, 0, 0]

    conn.send_bytes(arr)
    buffer = array.array("i", [0] * 10)
    assert conn.recv_bytes_into(buffer, 3 * buffer.itemsize) == len(arr) * arr.itemsize
    assert list(buffer) == [0, 0, 0, 0, 1, 2, 3, 0, 0, 0]


def test_recv_bytes_into_a_bytearray_at_an_offset_leaves_the_rest_alone(echo_pair):
    conn = echo_pair
    buf = bytearray(b"." * 10)
    conn.send_bytes(b"abc")
    assert conn.recv_bytes_into(buf, 4) == 3
    assert buf == bytearray(b"....abc...")
    conn.send_bytes(b"zz")
    assert conn.recv_bytes_into(memoryview(buf)[8:]) == 2
    assert buf == bytearray(b"....abc.zz")


def test_buffer_too_short_carries_the_whole_message_and_keeps_the_stream_in_step():
    a, b = Pipe()
    msg = b"x" * 110
    a.send_bytes(msg)
    a.send_bytes(b"next")
    buffer = bytearray(40)
    with pytest.raises(BufferTooShort) as info:
        b.recv_bytes_into(buffer)
    assert info.value.args == (msg,)
    assert b.recv_bytes() == b"next"


def test_buffer_too_short_counts_the_offset():
    a, b = Pipe()
    a.send_bytes(b"12345")
    with pytest.raises(BufferTooShort) as info:
        b.recv_bytes_into(bytearray(8), 4)
    assert info.value.args[0] == b"12345"


def test_recv_bytes_into_checks_the_offset():
    a, b = Pipe()
    a.send_bytes(b"ab")
    with pytest.raises(ValueError, match="negative offset"):
        b.recv_bytes_into(bytearray(4), -1)
    with pytest.raises(ValueError, match="offset too large"):
        b.recv_bytes_into(bytearray(4), 5)
    # offset == size is allowed (and then the message does not fit)
    with pytest.raises(BufferTooShort):
        b.recv_bytes_into(bytearray(4), 4)


def test_poll_returns_at_once_when_nothing_is_pending_and_waits_for_a_timeout():
    a, b = Pipe()
    assert b.poll() is False
    assert b.poll(-1) is False
    t0 = time.monotonic()
    assert b.poll(0.3) is False
    elapsed = time.monotonic() - t0
    assert 0.28 <= elapsed < 3.0
    a.send_bytes(b"x")
    assert b.poll(5) is True
    assert b.poll() is True


def test_poll_none_waits_until_data_arrives():
    a, b = Pipe()
    t = start_thread(lambda: (time.sleep(0.05), a.send_bytes(b"late")))
    assert b.poll(None) is True
    assert b.recv_bytes() == b"late"
    t.join()


def test_a_16_mib_message_round_trips(echo_pair):
    conn = echo_pair
    really_big_msg = os.urandom(LONG)
    conn.send_bytes(really_big_msg)
    assert conn.recv_bytes() == really_big_msg


def test_a_16_mib_message_round_trips_through_recv_bytes_into(echo_pair):
    conn = echo_pair
    msg = bytes(range(256)) * (LONG // 256)
    conn.send_bytes(msg)
    buf = bytearray(LONG + 16)
    assert conn.recv_bytes_into(buf, 16) == LONG
    assert buf[16:] == msg


def test_peer_close_gives_eof_and_keeps_the_flags():
    a, b = Pipe()
    a.close()
    assert b.readable and b.writable
    with pytest.raises(EOFError):
        b.recv()
    with pytest.raises(EOFError):
        b.recv_bytes()
    assert b.poll() is True  # EOF counts as pending


def test_eof_in_the_middle_of_a_message_is_an_oserror():
    s1, s2 = socket.socketpair()
    b = Connection(s2.detach())
    s1.sendall(b"\x00\x00\x00\x10abc")
    s1.close()
    with pytest.raises(OSError, match="got end of file during message"):
        b.recv_bytes()


def test_eof_inside_the_header_is_an_oserror():
    s1, s2 = socket.socketpair()
    b = Connection(s2.detach())
    s1.sendall(b"\x00\x00")
    s1.close()
    with pytest.raises(OSError, match="got end of file during message"):
        b.recv_bytes()


def test_the_extended_header_is_accepted_for_a_small_length():
    s1, s2 = socket.socketpair()
    b = Connection(s2.detach())
    s1.sendall(b"\xff\xff\xff\xff" + (3).to_bytes(8, "big") + b"abc")
    assert b.recv_bytes() == b"abc"
    s1.close()


def test_duplex_false_gives_a_reader_and_a_writer():
    reader, writer = Pipe(duplex=False)
    assert reader.readable and not reader.writable
    assert writer.writable and not writer.readable
    writer.send(1)
    assert reader.recv() == 1
    with pytest.raises(OSError, match="connection is read-only"):
        reader.send(2)
    with pytest.raises(OSError, match="connection is read-only"):
        reader.send_bytes(b"2")
    with pytest.raises(OSError, match="connection is write-only"):
        writer.recv()
    with pytest.raises(OSError, match="connection is write-only"):
        writer.recv_bytes()
    with pytest.raises(OSError, match="connection is write-only"):
        writer.poll()


def test_sendbytes_offset_and_size_matrix():
    a, b = Pipe()
    msg = b"abcdefghijklmnopqrstuvwxyz"
    a.send_bytes(msg)
    assert b.recv_bytes() == msg
    a.send_bytes(msg, 5)
    assert b.recv_bytes() == msg[5:]
    a.send_bytes(msg, 7, 8)
    assert b.recv_bytes() == msg[7:7 + 8]
    a.send_bytes(msg, 26)
    assert b.recv_bytes() == b""
    a.send_bytes(msg, 26, 0)
    assert b.recv_bytes() == b""
    a.send_bytes(msg, size=3, offset=2)
    assert b.recv_bytes() == b"cde"
    with pytest.raises(ValueError, match="buffer length < offset"):
        a.send_bytes(msg, 27)
    with pytest.raises(ValueError, match=r"buffer length < offset \+ size"):
        a.send_bytes(msg, 22, 5)
    with pytest.raises(ValueError, match=r"buffer length < offset \+ size"):
        a.send_bytes(msg, 26, 1)
    with pytest.raises(ValueError, match="offset is negative"):
        a.send_bytes(msg, -1)
    with pytest.raises(ValueError, match="size is negative"):
        a.send_bytes(msg, 4, -1)
    assert b.poll() is False  # none of the failures wrote anything


def test_send_bytes_takes_any_buffer_as_raw_bytes():
    a, b = Pipe()
    arr = array.array("i", [1, 2, 3])
    a.send_bytes(arr, 4, 4)  # offset and size count bytes
    assert b.recv_bytes() == arr.tobytes()[4:8]
    a.send_bytes(memoryview(b"xyz"))
    assert b.recv_bytes() == b"xyz"
    a.send_bytes(bytearray(b"q"))
    assert b.recv_bytes() == b"q"


def test_recv_bytes_maxlength_rules():
    a, b = Pipe()
    with pytest.raises(ValueError, match="negative maxlength"):
        b.recv_bytes(-1)
    a.send_bytes(b"12345")
    assert b.recv_bytes(5) == b"12345"  # equal to maxlength is fine
    a.send_bytes(b"123456")
    with pytest.raises(OSError, match="bad message length"):
        b.recv_bytes(5)
    # a duplex connection stops being readable but can still send
    assert not b.readable
    with pytest.raises(OSError, match="connection is write-only"):
        b.recv_bytes()
    b.send_bytes(b"still")
    assert a.recv_bytes() == b"still"


def test_bad_message_length_closes_a_read_only_connection():
    reader, writer = Pipe(duplex=False)
    writer.send_bytes(b"123456")
    with pytest.raises(OSError, match="bad message length"):
        reader.recv_bytes(2)
    assert reader.closed


def test_context_manager_closes_both_ends():
    a, b = Pipe()
    with a, b:
        a.send(1729)
        assert b.recv() == 1729
    assert a.closed and b.closed
    with pytest.raises(OSError, match="handle is closed"):
        a.recv()
    with pytest.raises(OSError, match="handle is closed"):
        b.send(1)


def test_every_method_says_handle_is_closed_after_close_and_close_is_idempotent():
    a, b = Pipe()
    a.close()
    a.close()
    assert a.closed
    for call in (a.fileno, a.recv, a.recv_bytes, a.poll, lambda: a.send(1),
                 lambda: a.send_bytes(b"x"), lambda: a.recv_bytes_into(bytearray(4))):
        with pytest.raises(OSError, match="handle is closed"):
            call()


def test_poll_does_not_consume_an_empty_message():
    a, b = Pipe()
    a.send_bytes(b"")
    for _ in range(3):
        assert b.poll() is True
    assert b.recv_bytes() == b""
    assert b.poll() is False


def test_messages_of_mixed_sizes_arrive_in_order_and_poll_does_not_merge_them():
    a, b = Pipe()
    strings = [b"hello", b"", b"a", b"b", b"cd", b"", b"x" * 20000, b"", b"e"]
    for s in strings:
        a.send_bytes(s)
    got = []
    for _ in strings:
        assert b.poll(5)
        got.append(b.recv_bytes())
    assert got == strings


def test_poll_in_another_process_does_not_consume_part_of_a_message():
    r, w = Pipe(False)
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=_poll_and_send, args=(r,))
    # The child polls the same reader; data must stay whole for us.
    w.send_bytes(b"x" * 1000 + b"END")
    p.start()
    p.join(30)
    assert p.exitcode == 0
    assert r.recv_bytes() == b"x" * 1000 + b"END"


def _poll_and_send(r):
    for _ in range(100):
        r.poll()


def test_connection_on_a_negative_handle_is_invalid():
    with pytest.raises(ValueError, match="invalid handle"):
        Connection(-1)
    with pytest.raises(ValueError, match="at least one of `readable` and `writable` must be True"):
        Connection(0, readable=False, writable=False)


def test_a_bogus_descriptor_raises_instead_of_crashing():
    # CPython fails at poll(); libmpconn already checks the descriptor when
    # the Connection is made.  Either way: an exception, not a crash.
    with pytest.raises((ValueError, OSError)):
        conn = Connection(44977608)
        try:
            conn.poll()
        finally:
            conn.close()


def test_a_connection_takes_over_an_existing_socket_descriptor():
    s1, s2 = socket.socketpair()
    a = Connection(s1.detach())
    b = Connection(s2.detach(), readable=True, writable=True)
    a.send({"x": 1})
    assert b.recv() == {"x": 1}
    fd = a.fileno()
    a.close()
    with pytest.raises(OSError):
        os.fstat(fd)  # closed with the Connection
    with pytest.raises(OSError, match="handle is closed"):
        a.fileno()
    b.close()


def test_garbage_collection_closes_the_descriptor():
    a, b = Pipe()
    fd = a.fileno()
    del a
    gc.collect()
    with pytest.raises(EOFError):
        b.recv_bytes()


def test_send_bytes_many_writes_each_buffer_as_its_own_message():
    a, b = Pipe()
    msgs = [b"one", b"", bytearray(b"three"), memoryview(b"four"), array.array("b", [5]),
            b"x" * 70000]
    a.send_bytes_many(msgs)
    for m in msgs:
        assert b.recv_bytes() == bytes(m)
    a.send_bytes_many([])
    assert b.poll() is False
    with pytest.raises(TypeError):
        a.send_bytes_many([b"ok", 5])


def test_timeouts_set_by_socket_setdefaulttimeout_do_not_affect_connections():
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(0.1)
    try:
        a, b = Pipe()
        t = start_thread(lambda: (time.sleep(0.3), a.send_bytes(b"slow")))
        assert b.recv_bytes() == b"slow"
        t.join()
        with mpconn.Listener(("127.0.0.1", 0)) as l:
            t = start_thread(lambda: (time.sleep(0.3), mpconn.Client(l.address).send(1)))
            with l.accept() as c:
                assert c.recv() == 1
            t.join()
    finally:
        socket.setdefaulttimeout(old)


def test_a_corrupt_header_gives_an_oserror_not_a_hang():
    s1, s2 = socket.socketpair()
    b = Connection(s2.detach())
    s1.sendall(b"\xff\xff\xff\xfe")
    with pytest.raises(OSError):
        b.recv_bytes()
    s1.close()
    b.close()
