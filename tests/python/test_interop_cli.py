"""mpconn Python against the `mpconn` C command-line tool (MPCONN_CLI), in
both directions, TCP / Unix / abstract, with and without a key."""

import binascii
import os
import queue
import subprocess
import threading
import uuid

import pytest

from mpconn import AuthenticationError, Client, Listener

CLI = os.environ.get("MPCONN_CLI")

pytestmark = pytest.mark.skipif(
    not CLI or not os.access(CLI, os.X_OK),
    reason="MPCONN_CLI is not set to the built `mpconn` tool (build/bin/mpconn)",
)

MESSAGES = [b"hello", b"", b"\x00\xff binary \n", os.urandom(16385), os.urandom(1 << 20)]


class Proc:
    def __init__(self, args):
        self.proc = subprocess.Popen([CLI] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.err = queue.Queue()
        self.out = []
        threading.Thread(target=self._read_err, daemon=True).start()
        # stdout is drained all along: a big --hex message must not fill the pipe
        self._out_reader = threading.Thread(target=self._read_out, daemon=True)
        self._out_reader.start()

    def _read_out(self):
        for chunk in iter(lambda: self.proc.stdout.read(65536), b""):
            self.out.append(chunk)

    def _read_err(self):
        for raw in self.proc.stderr:
            self.err.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.err.put(None)

    def listening_address(self, timeout=30):
        while True:
            line = self.err.get(timeout=timeout)
            assert line is not None, "the CLI ended before listening"
            if line.startswith("listening on "):
                return line[len("listening on "):].strip()

    def finish(self, timeout=60):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the CLI did not finish within %ss" % timeout)
        self._out_reader.join(timeout)
        return self.proc.returncode, b"".join(self.out)


def cli_address(kind, tmp_path):
    if kind == "tcp":
        return "127.0.0.1:0"
    if kind == "unix":
        return str(tmp_path / ("c-%s.sock" % uuid.uuid4().hex[:8]))
    return "@mpconn-cli-%s" % uuid.uuid4().hex


def python_address(text):
    if text.startswith("@"):
        return "\0" + text[1:]
    if text.startswith("/"):
        return text
    host, port = text.rsplit(":", 1)
    return (host.strip("[]"), int(port))


def cli_text(address):
    if isinstance(address, tuple):
        return "%s:%d" % address[:2]
    if isinstance(address, bytes):
        return "@" + address[1:].decode()
    return address


@pytest.mark.parametrize("kind", ["tcp", "unix", "abstract"])
@pytest.mark.parametrize("dialect", ["modern", "legacy"])
def test_python_client_to_cli_listener_echoes_byte_for_byte(kind, dialect, tmp_path):
    cli = Proc(["listen", cli_address(kind, tmp_path), "--authkey", "k3y", "--dialect", dialect,
                "--count", str(len(MESSAGES)), "--echo", "--hex", "--timeout", "60"])
    try:
        address = python_address(cli.listening_address())
        with Client(address, authkey=b"k3y", dialect=dialect, timeout=30) as conn:
            for msg in MESSAGES:
                conn.send_bytes(msg)
                assert conn.recv_bytes() == msg
    finally:
        code, out = cli.finish()
    assert code == 0
    lines = out.decode().splitlines()
    assert lines == [binascii.hexlify(m).decode() for m in MESSAGES]


@pytest.mark.parametrize("kind", ["tcp", "unix", "abstract"])
def test_cli_send_to_python_listener(kind, tmp_path):
    addr = {"tcp": ("127.0.0.1", 0), "unix": str(tmp_path / "l.sock"),
            "abstract": "\0mpconn-py-%s" % uuid.uuid4().hex}[kind]
    sent = [b"first", b"", b"\x01\x02"]
    with Listener(addr, authkey=b"k3y") as l:
        cli = Proc(["send", cli_text(l.address), "--authkey", "k3y", "--hex", "--recv", "1",
                    "--timeout", "60"] + [binascii.hexlify(m).decode() for m in sent])
        try:
            with l.accept(timeout=30) as conn:
                assert [conn.recv_bytes() for _ in sent] == sent
                conn.send_bytes(b"reply \xff")
        finally:
            code, out = cli.finish()
    assert code == 0
    assert out.decode().split() == [binascii.hexlify(b"reply \xff").decode()]


def test_cli_without_key_and_python_without_key():
    with Listener(("127.0.0.1", 0)) as l:
        cli = Proc(["send", cli_text(l.address), "plain"])
        try:
            with l.accept(timeout=30) as conn:
                assert conn.recv_bytes() == b"plain"
        finally:
            code, _ = cli.finish()
    assert code == 0


def test_a_wrong_key_fails_on_both_sides_with_the_cli_as_client():
    with Listener(("127.0.0.1", 0), authkey=b"right") as l:
        cli = Proc(["send", cli_text(l.address), "--authkey", "wrong", "x", "--timeout", "30"])
        try:
            with pytest.raises(AuthenticationError):
                l.accept(timeout=30)
        finally:
            code, _ = cli.finish()
    assert code == 4


def test_a_wrong_key_fails_on_both_sides_with_the_cli_as_listener(tmp_path):
    cli = Proc(["listen", "127.0.0.1:0", "--authkey", "right", "--count", "1", "--timeout", "10"])
    try:
        address = python_address(cli.listening_address())
        with pytest.raises(AuthenticationError):
            Client(address, authkey=b"wrong", timeout=30)
    finally:
        cli.proc.kill()
        cli.finish()


@pytest.mark.parametrize("read_ahead", [False, True])
def test_cli_listener_in_both_read_modes_takes_a_burst_of_messages(read_ahead):
    """Many messages written at once (one system call, send_bytes_many) reach
    a CLI listener byte for byte whether it reads exactly (the default) or
    through its read-ahead buffer (--read-ahead)."""
    burst = [b"m%d" % i for i in range(200)] + [os.urandom(70000), b"", b"end"]
    args = ["listen", "127.0.0.1:0", "--count", str(len(burst)), "--hex", "--timeout", "60"]
    cli = Proc(args + (["--read-ahead"] if read_ahead else []))
    try:
        with Client(python_address(cli.listening_address()), timeout=30) as conn:
            conn.send_bytes_many(burst)
    finally:
        code, out = cli.finish()
    assert code == 0
    assert out.decode().splitlines() == [binascii.hexlify(m).decode() for m in burst]
