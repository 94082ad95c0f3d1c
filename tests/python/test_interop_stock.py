"""mpconn (this process) against stock CPython processes, both directions:
the machine's python3 and every pyenv interpreter, with and without an
authkey, a wrong key, both of our challenge dialects, TCP / Unix / abstract.

The peer (peers/stock_peer.py) uses only `multiprocessing.connection`."""

import binascii
import os
import queue
import subprocess
import sys
import threading
import uuid

import pytest

from mpconn import AuthenticationError, Client, Listener

from conftest import PEER, get_stock_interpreters, version_tuple

INTERPRETERS = get_stock_interpreters()
SIZES = [0, 1, 16384, 16385, 1 << 20]
KEY = b"interop secret \x00\xff"


class Peer:
    def __init__(self, python, role, address, authkey):
        key = "-" if authkey is None else binascii.hexlify(authkey).decode()
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # a stock interpreter, nothing of ours
        env.pop("PYTHONHOME", None)
        self.proc = subprocess.Popen(
            [python, PEER, role, repr(address), key],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        self.lines = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def line(self, timeout=30):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("peer said nothing within %ss" % timeout)
        if line is None:
            raise AssertionError("peer ended early: %s" % self.stderr())
        return line

    def stderr(self):
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        return self.proc.stderr.read().decode("utf-8", "replace")

    def finish(self, timeout=30):
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
            self.proc.stderr.close()


def peer_address(kind, tmp_path):
    if kind == "tcp":
        return ("127.0.0.1", 0)
    if kind == "unix":
        return str(tmp_path / ("p-%s.sock" % uuid.uuid4().hex[:8]))
    return "\0mpconn-interop-%s" % uuid.uuid4().hex


def run_session(conn, version):
    for size in SIZES:
        msg = os.urandom(size)
        conn.send_bytes(msg)
        assert conn.recv_bytes() == msg, "echo of %d bytes differs" % size
    if version_tuple(version) >= (3, 0):
        value = {"name": "Alice", "level": 42, "scores": [1.5, -2], "tag": b"\x00\xff", "t": (1, None)}
        conn.send_bytes(b"!obj")
        conn.send(value)
        assert conn.recv() == value
    conn.send_bytes(b"!bye")


# Optional peers: each missing one shows up as a skip with its reason.
OPTIONAL = ["2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]


def _missing():
    have = {".".join(v.split(".")[:2]) for _, _, v in INTERPRETERS}
    return [m for m in OPTIONAL if m not in have]


def _skip(minor, suffix=""):
    return pytest.param(None, minor, *([None] * suffix.count("-")), id="missing-%s%s" % (minor, suffix),
                        marks=pytest.mark.skip(reason="no CPython %s interpreter found "
                                                      "(pyenv versions)" % minor))


def _params():
    cells = []
    for label, python, version in INTERPRETERS:
        for kind in ("tcp", "unix", "abstract"):
            for dialect in ("modern", "legacy"):
                cells.append(pytest.param(python, version, kind, dialect,
                                          id="%s-%s-%s" % (label, kind, dialect)))
    cells += [_skip(minor, "-any-any") for minor in _missing()]
    return cells


def _by_interpreter():
    cells = [pytest.param(python, version, id=label) for label, python, version in INTERPRETERS]
    return cells + [_skip(minor) for minor in _missing()]


def test_the_machines_python3_is_among_the_peers():
    assert INTERPRETERS, "no stock python3 found"
    assert INTERPRETERS[0][0].startswith("python3-")


def test_every_pyenv_interpreter_found_is_a_peer():
    root = os.environ.get("PYENV_ROOT", "/root/.pyenv")
    versions_dir = os.path.join(root, "versions")
    if not os.path.isdir(versions_dir):
        pytest.skip("no pyenv at %s: only the machine's python3 is a peer" % root)
    found = {v for _, _, v in INTERPRETERS}
    for name in os.listdir(versions_dir):
        if os.path.exists(os.path.join(versions_dir, name, "bin", "python")):
            assert name in found, "pyenv %s is not used as a peer" % name


@pytest.mark.parametrize("python,version,kind,dialect", _params())
def test_mpconn_client_talks_to_a_stock_listener(python, version, kind, dialect, tmp_path):
    peer = Peer(python, "server", peer_address(kind, tmp_path), KEY)
    try:
        line = peer.line()
        assert line.startswith("ADDR "), line
        import ast

        address = ast.literal_eval(line[5:])
        with Client(address, authkey=KEY, dialect=dialect, timeout=30) as conn:
            assert peer.line() == "READY"
            run_session(conn, version)
        assert peer.line() == "DONE"
    finally:
        code = peer.finish()
    assert code == 0


@pytest.mark.parametrize("python,version,kind,dialect", _params())
def test_a_stock_client_talks_to_an_mpconn_listener(python, version, kind, dialect, tmp_path):
    with Listener(peer_address(kind, tmp_path), authkey=KEY, dialect=dialect) as l:
        address = l.address
        if isinstance(address, bytes):
            address = address.decode("latin-1")  # py2-safe literal for the peer
        peer = Peer(python, "client", address, KEY)
        try:
            with l.accept(timeout=30) as conn:
                assert peer.line() == "READY"
                run_session(conn, version)
            assert peer.line() == "DONE"
        finally:
            code = peer.finish()
    assert code == 0


@pytest.mark.parametrize("python,version", _by_interpreter())
def test_no_authkey_on_either_side_means_no_handshake(python, version, tmp_path):
    peer = Peer(python, "server", ("127.0.0.1", 0), None)
    try:
        import ast

        address = ast.literal_eval(peer.line()[5:])
        with Client(address) as conn:
            assert peer.line() == "READY"
            run_session(conn, version)
    finally:
        code = peer.finish()
    assert code == 0
    with Listener(("127.0.0.1", 0)) as l:
        peer = Peer(python, "client", l.address, None)
        try:
            with l.accept(timeout=30) as conn:
                run_session(conn, version)
        finally:
            code = peer.finish()
    assert code == 0


@pytest.mark.parametrize("python,version", _by_interpreter())
def test_a_wrong_key_fails_on_both_sides_against_a_stock_listener(python, version):
    peer = Peer(python, "server", ("127.0.0.1", 0), b"their key")
    try:
        import ast

        address = ast.literal_eval(peer.line()[5:])
        with pytest.raises(AuthenticationError, match="digest sent was rejected"):
            Client(address, authkey=b"our key", timeout=30)
        assert peer.line().startswith("AUTHFAIL")
    finally:
        code = peer.finish()
    assert code == 3


@pytest.mark.parametrize("python,version", _by_interpreter())
def test_a_wrong_key_fails_on_both_sides_against_a_stock_client(python, version):
    with Listener(("127.0.0.1", 0), authkey=b"our key") as l:
        peer = Peer(python, "client", l.address, b"their key")
        try:
            with pytest.raises(AuthenticationError, match="digest received was wrong"):
                l.accept(timeout=30)
            assert peer.line().startswith("AUTHFAIL")
        finally:
            code = peer.finish()
    assert code == 3
