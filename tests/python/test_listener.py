"""Listener / Client behaviour, mirroring CPython's _TestListener,
_TestListenerClient, TestInvalidFamily and the address/authkey facts of
PROTOCOL.md section 3."""

import os
import socket
import time

import pytest

import mpconn
from mpconn import AuthenticationError, Client, Listener

from conftest import make_address, start_thread


def client_sends(address, payload, **kw):
    with Client(address, **kw) as c:
        c.send(payload)


def test_listener_and_client_exchange_messages_for_every_family(address):
    with Listener(address) as l:
        t = start_thread(client_sends, l.address, "hello")
        with l.accept() as conn:
            assert conn.recv() == "hello"
        t.join()


def test_listener_address_has_cpythons_getsockname_form(family_kind, tmp_path):
    addr = make_address(family_kind, tmp_path)
    with Listener(addr) as l:
        if family_kind == "AF_INET":
            host, port = l.address
            assert host == "127.0.0.1" and isinstance(port, int) and port > 0
        elif family_kind == "AF_UNIX":
            assert l.address == addr and isinstance(l.address, str)
        else:
            assert l.address == b"\0" + addr[1:].encode()


def test_localhost_is_reported_as_127_0_0_1():
    with Listener(("localhost", 0)) as l:
        assert l.address[0] == "127.0.0.1"


def test_ipv6_listener_and_client(tmp_path):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support in this Python")
    try:
        l = Listener(("::1", 0), family="AF_INET6")
    except OSError as e:
        pytest.skip("IPv6 loopback unavailable: %s" % e)
    with l:
        assert len(l.address) == 4 and l.address[0] == "::1"
        t = start_thread(client_sends, l.address, [6])
        with l.accept() as conn:
            assert conn.recv() == [6]
            assert len(l.last_accepted) == 4
        t.join()


def test_last_accepted_is_none_then_the_peer_address():
    with Listener(("127.0.0.1", 0)) as l:
        assert l.last_accepted is None
        t = start_thread(client_sends, l.address, 1)
        with l.accept() as c:
            c.recv()
        t.join()
        host, port = l.last_accepted
        assert host == "127.0.0.1" and port > 0


def test_last_accepted_is_an_empty_string_for_unix_sockets(tmp_path):
    for addr in (make_address("AF_UNIX", tmp_path), make_address("abstract", tmp_path)):
        with Listener(addr) as l:
            t = start_thread(client_sends, l.address, 1)
            with l.accept() as c:
                c.recv()
            t.join()
            assert l.last_accepted == ""


def test_a_second_listener_on_the_same_address_fails(address):
    with Listener(address) as l1:
        with pytest.raises(OSError):
            Listener(l1.address)


def test_context_managers_and_accept_after_close(address):
    with Listener(address) as l:
        t = start_thread(client_sends, l.address, 42)
        with l.accept() as c:
            assert c.recv() == 42
        t.join()
        assert c.closed
    with pytest.raises(OSError, match="listener is closed"):
        l.accept()
    l.close()  # twice is fine
    with pytest.raises(AttributeError):
        l.address


def test_data_sent_before_accept_can_still_be_read(address):
    with Listener(address) as l:
        c = Client(l.address)
        c.send(1234)
        c.close()
        with l.accept() as conn:
            assert conn.recv() == 1234
            with pytest.raises(EOFError):
                conn.recv()


def test_after_accept_the_client_sees_the_servers_message():
    with Listener(("127.0.0.1", 0)) as l:
        c = Client(l.address)
        with l.accept() as s:
            s.send(9)
            assert c.poll(5)
            assert c.recv() == 9
        c.close()


def test_unix_socket_file_is_removed_on_close_and_on_garbage_collection(tmp_path):
    path = make_address("AF_UNIX", tmp_path)
    l = Listener(path)
    assert os.path.exists(path)
    l.close()
    assert not os.path.exists(path)
    path2 = make_address("AF_UNIX", tmp_path)
    l = Listener(path2)
    assert os.path.exists(path2)
    del l
    import gc

    gc.collect()
    assert not os.path.exists(path2)


def test_default_listener_uses_a_fresh_unix_path():
    with Listener() as l:
        assert isinstance(l.address, str) and os.path.exists(l.address)
        t = start_thread(client_sends, l.address, "x")
        with l.accept() as c:
            assert c.recv() == "x"
        t.join()


def test_a_relative_unix_path_with_a_colon_is_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Listener("odd:name", family="AF_UNIX") as l:
        assert os.path.exists(tmp_path / "odd:name")
        t = start_thread(client_sends, "odd:name", 5)
        with l.accept() as c:
            assert c.recv() == 5
        t.join()


def test_abstract_socket_round_trip_and_accept_after_close():
    name = "\0mpconn-abs-%d" % os.getpid()
    with Listener(name) as l:
        t = start_thread(client_sends, l.address, "abstract")
        with l.accept() as c:
            assert c.recv() == "abstract"
        t.join()
    with pytest.raises(OSError):
        l.accept()


def test_abstract_bytes_address_works_for_client():
    name = b"\0mpconn-absb-%d" % os.getpid()
    with Listener(name) as l:
        assert l.address == name
        t = start_thread(client_sends, name, 1)
        with l.accept() as c:
            assert c.recv() == 1
        t.join()


def test_af_pipe_family_is_rejected_on_posix():
    with pytest.raises(ValueError, match="Family AF_PIPE is not recognized."):
        Listener(r"\\.\test")
    with pytest.raises(ValueError):
        Client(r"\\.\pipe\x")


def test_address_type_and_arbitrary_address_are_cpythons():
    assert mpconn.address_type(("h", 1)) == "AF_INET"
    assert mpconn.address_type("/tmp/x") == "AF_UNIX"
    assert mpconn.address_type(b"\0abs") == "AF_UNIX"
    with pytest.raises(ValueError):
        mpconn.address_type(b"nope")
    assert mpconn.arbitrary_address("AF_INET") == ("localhost", 0)
    with pytest.raises(ValueError):
        mpconn.arbitrary_address("AF_WHAT")


def test_authkey_of_the_wrong_type_is_a_typeerror():
    with pytest.raises(TypeError, match="authkey should be a byte string"):
        Listener(("127.0.0.1", 0), authkey="str")
    with Listener(("127.0.0.1", 0)) as l:
        with pytest.raises(TypeError, match="authkey should be a byte string"):
            Client(l.address, authkey="str")


@pytest.mark.parametrize("dialect", ["modern", "legacy", "strict"])
def test_matching_keys_authenticate_in_every_dialect(address, dialect):
    key = os.urandom(32)
    with Listener(address, authkey=key, dialect=dialect) as l:
        t = start_thread(client_sends, l.address, "ok", authkey=key, dialect=dialect)
        with l.accept() as c:
            assert c.recv() == "ok"
        t.join()


def test_an_empty_authkey_is_a_real_key():
    with Listener(("127.0.0.1", 0), authkey=b"") as l:
        t = start_thread(client_sends, l.address, "empty", authkey=b"")
        with l.accept() as c:
            assert c.recv() == "empty"
        t.join()
        # ... so a client with a different key is refused
        t = start_thread(client_sends, l.address, "x", authkey=b"other")
        with pytest.raises(AuthenticationError):
            l.accept()
        with pytest.raises(AuthenticationError):
            t.join()


def test_wrong_authkey_fails_on_both_sides_with_cpythons_messages():
    with Listener(("127.0.0.1", 0), authkey=b"right") as l:
        t = start_thread(client_sends, l.address, "x", authkey=b"wrong")
        with pytest.raises(AuthenticationError, match="digest received was wrong"):
            l.accept()
        with pytest.raises(AuthenticationError, match="digest sent was rejected"):
            t.join()
        # the listener stays usable
        t = start_thread(client_sends, l.address, "y", authkey=b"right")
        with l.accept() as c:
            assert c.recv() == "y"
        t.join()


def test_accept_timeout_raises_timeouterror_and_the_listener_stays_usable():
    with Listener(("127.0.0.1", 0)) as l:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            l.accept(timeout=0.2)
        assert time.monotonic() - t0 >= 0.19
        t = start_thread(client_sends, l.address, 3)
        with l.accept(timeout=10) as c:
            assert c.recv() == 3
        t.join()


def test_client_timeout_covers_a_handshake_with_a_silent_server():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            Client(s.getsockname(), authkey=b"k", timeout=0.3)
        assert time.monotonic() - t0 < 10
    finally:
        s.close()


def test_connecting_to_nothing_is_connection_refused(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    addr = s.getsockname()
    s.close()
    with pytest.raises(ConnectionRefusedError):
        Client(addr)
    with pytest.raises(FileNotFoundError):
        Client(str(tmp_path / "missing.sock"))


def test_close_from_another_thread_wakes_a_blocked_accept():
    l = Listener(("127.0.0.1", 0))
    t = start_thread(l.accept)
    time.sleep(0.2)
    l.close()
    with pytest.raises(OSError):
        t.join(10)


def test_a_unix_listener_serves_many_clients_in_turn(tmp_path):
    with Listener(make_address("AF_UNIX", tmp_path), backlog=5) as l:
        clients = [start_thread(client_sends, l.address, i) for i in range(5)]
        got = set()
        for _ in range(5):
            with l.accept() as c:
                got.add(c.recv())
        for t in clients:
            t.join()
        assert got == set(range(5))


def test_stock_listener_and_mpconn_client_in_one_process():
    import multiprocessing.connection as stock

    with stock.Listener(("127.0.0.1", 0), authkey=b"k") as l:
        t = start_thread(client_sends, l.address, {"a": 1}, authkey=b"k")
        with l.accept() as c:
            assert c.recv() == {"a": 1}
        t.join()
