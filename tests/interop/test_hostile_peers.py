"""Hostile peers against `mpconn listen`, driven from raw Python sockets.

Each attack is followed by a well-behaved stock CPython Client on the SAME
listener process, which must be served normally; at the end the listener
exits 0 having printed exactly the well-behaved messages.  A hostile length
header must never make the listener reserve the claimed size: its peak
virtual size (VmPeak) and peak resident size (VmHWM) are checked.
"""
import binascii
import hashlib
import hmac
import os
import re
import socket
import struct
import time

import pytest

import harness
from harness import Child, cleanup, listening_address

KEY = "hostile-test-key"
MiB = 1 << 20


@pytest.fixture
def cli():
    return harness.cli_path()


def split_addr(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def frame(payload):
    return struct.pack("!i", len(payload)) + payload


class Raw(object):
    """A raw TCP client with a deadline on every operation."""

    def __init__(self, addr, timeout=10.0):
        self.sock = socket.create_connection(split_addr(addr), timeout=timeout)

    def send(self, data, tolerate_reset=False):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            # The listener may rightly drop us before taking everything.
            if not tolerate_reset:
                raise

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError("peer closed after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return buf

    def recv_frame(self, maxlen=1 << 16):
        (n,) = struct.unpack("!i", self.recv_exact(4))
        assert 0 <= n <= maxlen, "unexpected frame length %d" % n
        return self.recv_exact(n)

    def wait_closed(self, timeout=10.0):
        """True once the listener closes its end (EOF or reset) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def handshake(self, key):
        """Client side of the handshake (answer, then deliver), done by hand."""
        key = key.encode()
        challenge = self.recv_frame(256)
        assert challenge.startswith(b"#CHALLENGE#")
        rest = challenge[len(b"#CHALLENGE#"):]
        if len(rest) == 20:
            reply = hmac.new(key, rest, "md5").digest()
        else:
            name = rest[1:rest.index(b"}")].decode()
            reply = b"{" + name.encode() + b"}" + hmac.new(key, rest, name).digest()
        self.send(frame(reply))
        assert self.recv_frame(256) == b"#WELCOME#"
        mine = os.urandom(20)
        self.send(frame(b"#CHALLENGE#" + mine))
        answer = self.recv_frame(256)
        assert hmac.compare_digest(answer, hmac.new(key, mine, "md5").digest()), answer
        self.send(frame(b"#WELCOME#"))

    def close(self):
        self.sock.close()


def stderr_lines(listener):
    return listener.text("stderr").splitlines()


def wait_new_report(listener, before, timeout=15.0):
    """Waits for stderr to grow past `before` lines; returns the new lines."""
    harness.wait_until(lambda: len(stderr_lines(listener)) > before or not listener.running(),
                       timeout, "the listener to report the attack on stderr")
    lines = stderr_lines(listener)
    assert len(lines) > before, "the listener reported nothing about the attack\n" + listener.describe()
    return lines[before:]


def good_client(listener, addr, key, text):
    """A stock CPython Client (the machine's python3) sends one message."""
    py3 = harness.interpreters()[0]
    harness.require_interp(py3)
    args = [py3.path, harness.PEER, "client"]
    if key is not None:
        args += ["--authkey-hex", binascii.hexlify(key.encode()).decode()]
    c = Child(args + [addr, "=" + text], "well-behaved CPython Client", deadline=30)
    try:
        assert c.finish() == 0, "the listener did not serve a well-behaved client after the attack\n" \
            + c.describe() + "\n" + listener.describe()
    finally:
        cleanup(c)


def memory_ok(listener, base):
    vm = harness.vm_status(listener.pid)
    # Claimed sizes are >= 2 GiB; a listener that reserved them would show it
    # in VmPeak even without touching the pages.
    assert vm["VmPeak"] - base["VmPeak"] < 256 * 1024, "VmPeak grew from %d kB to %d kB" % (
        base["VmPeak"], vm["VmPeak"])
    assert vm["VmHWM"] < 64 * 1024, "peak RSS %d kB" % vm["VmHWM"]
    return vm


def test_listener_without_key_survives_hostile_length_headers(cli):
    attacks = [
        # (name, bytes sent, then: close)
        ("header claiming 2 GiB - 1 (0x7FFFFFFF) then 1 MiB then close",
         struct.pack("!i", 0x7FFFFFFF) + b"\xab" * MiB),
        ("-1 + 8-byte length 2^31 (2 GiB) then 1 MiB then close",
         struct.pack("!iQ", -1, 1 << 31) + b"\xcd" * MiB),
        ("-1 + 8-byte length 2^63", struct.pack("!iQ", -1, 1 << 63)),
        ("-1 + 8-byte length 2^64-1", struct.pack("!iQ", -1, (1 << 64) - 1)),
        ("negative header -2", struct.pack("!i", -2) + b"junk"),
        ("truncated header then close", b"\x00\x00"),
        ("truncated extended header then close", struct.pack("!i", -1) + b"\x00\x00\x01"),
    ]
    listener = Child([cli, "listen", "127.0.0.1:0", "--count", str(len(attacks))], "mpconn listen",
                     deadline=120)
    try:
        addr = listening_address(listener)
        base = harness.vm_status(listener.pid)
        for i, (name, data) in enumerate(attacks):
            before = len(stderr_lines(listener))
            read_before = harness.proc_io(listener.pid)["rchar"]
            raw = Raw(addr)
            raw.send(data, tolerate_reset=True)
            if len(data) > MiB:
                # Mid-message: once the listener has read the 1 MiB we sent of
                # a claimed 2 GiB, it must not have reserved the claimed size.
                # (A listener that refuses the claim outright reports it
                # instead, which is just as good.)
                harness.wait_until(lambda: harness.proc_io(listener.pid)["rchar"] - read_before >= MiB
                                   or len(stderr_lines(listener)) > before or not listener.running(),
                                   15, "the listener to read 1 MiB or report the claim")
                memory_ok(listener, base)
            raw.close()
            report = wait_new_report(listener, before)
            assert listener.running(), "listener died after: %s\n%s" % (name, listener.describe())
            assert any(line.strip() for line in report), name
            memory_ok(listener, base)
            good_client(listener, addr, None, "good after attack %d" % i)
        assert listener.finish() == 0, listener.describe()
        assert listener.text("stdout").splitlines() == ["good after attack %d" % i for i in range(len(attacks))]
    finally:
        cleanup(listener)


def test_listener_with_key_survives_hostile_handshakes(cli):
    listener = Child([cli, "listen", "127.0.0.1:0", "--authkey", KEY, "--count", "6", "--timeout", "2"],
                     "mpconn listen", deadline=120)
    try:
        addr = listening_address(listener)
        base = harness.vm_status(listener.pid)
        n = 0

        # 1. a 300-byte reply to the challenge (every handshake frame is capped at 256).
        before = len(stderr_lines(listener))
        raw = Raw(addr)
        assert raw.recv_frame(256).startswith(b"#CHALLENGE#")
        raw.send(frame(b"\x01" * 300))
        assert raw.wait_closed(10), "listener kept a connection that sent a 300-byte handshake frame"
        raw.close()
        wait_new_report(listener, before)
        good_client(listener, addr, KEY, "after 300-byte frame")
        n += 1

        # 2. a 300-byte frame sent before even reading the challenge.
        before = len(stderr_lines(listener))
        raw = Raw(addr)
        raw.send(frame(b"#CHALLENGE#" + b"\x02" * 289))
        assert raw.wait_closed(10)
        raw.close()
        wait_new_report(listener, before)
        good_client(listener, addr, KEY, "after unsolicited 300-byte frame")
        n += 1

        # 3. a client that connects and sends nothing: the handshake deadline
        # (--timeout 2) must drop it; well before our 10 s patience runs out.
        before = len(stderr_lines(listener))
        raw = Raw(addr)
        t0 = time.monotonic()
        closed = raw.wait_closed(10)
        waited = time.monotonic() - t0
        raw.close()
        assert closed, "a silent client was not dropped within 10 s (--timeout 2)"
        assert 1 <= waited < 8, waited
        report = wait_new_report(listener, before)
        assert any(re.search(r"(?i)time", l) for l in report), report
        good_client(listener, addr, KEY, "after silent client")
        n += 1

        # 4. a header claiming 2 GiB after a correct handshake, then close.
        before = len(stderr_lines(listener))
        raw = Raw(addr)
        raw.handshake(KEY)
        raw.send(struct.pack("!iQ", -1, 1 << 31) + b"\xee" * MiB, tolerate_reset=True)
        raw.close()
        wait_new_report(listener, before)
        memory_ok(listener, base)
        good_client(listener, addr, KEY, "after 2 GiB claim")
        n += 1

        # 5. -1 + 2^63 after a correct handshake.
        before = len(stderr_lines(listener))
        raw = Raw(addr)
        raw.handshake(KEY)
        raw.send(struct.pack("!iQ", -1, 1 << 63))
        raw.wait_closed(10)
        raw.close()
        wait_new_report(listener, before)
        memory_ok(listener, base)
        good_client(listener, addr, KEY, "after 2^63 claim")
        n += 1

        # 6. a wrong raw-MD5 reply: an authentication failure, not a crash.
        before = len(stderr_lines(listener))
        raw = Raw(addr)
        raw.recv_frame(256)
        raw.send(frame(b"\x00" * 16))
        assert raw.recv_frame(256) == b"#FAILURE#"
        raw.close()
        report = wait_new_report(listener, before)
        assert any(re.search(r"(?i)authenticat", l) for l in report), report
        good_client(listener, addr, KEY, "after wrong digest")
        n += 1

        assert listener.finish() == 0, listener.describe()
        assert listener.text("stdout").splitlines() == [
            "after 300-byte frame", "after unsolicited 300-byte frame", "after silent client",
            "after 2 GiB claim", "after 2^63 claim", "after wrong digest"]
    finally:
        cleanup(listener)


def test_listener_without_key_drops_a_silent_client_after_its_timeout(cli):
    # Without a key there is no handshake; --timeout bounds the wait for a
    # message, so a client that connects and says nothing is dropped.
    listener = Child([cli, "listen", "127.0.0.1:0", "--count", "1", "--timeout", "2"], "mpconn listen",
                     deadline=60)
    try:
        addr = listening_address(listener)
        before = len(stderr_lines(listener))
        raw = Raw(addr)
        t0 = time.monotonic()
        closed = raw.wait_closed(10)
        waited = time.monotonic() - t0
        raw.close()
        assert closed, "a silent client was not dropped within 10 s (--timeout 2)"
        assert 1 <= waited < 8, waited
        report = wait_new_report(listener, before)
        assert any(re.search(r"(?i)time", l) for l in report), report
        good_client(listener, addr, None, "after silent client")
        assert listener.finish() == 0, listener.describe()
        assert listener.text("stdout").splitlines() == ["after silent client"]
    finally:
        cleanup(listener)


def test_sha256_of_nothing_is_what_the_peers_print():
    # Sanity for the digest lines the matrix compares (guards msgdata itself).
    import msgdata
    assert msgdata.digest(b"") == "0 " + hashlib.sha256(b"").hexdigest()
    assert msgdata.message(70000, 1)[:65521] == msgdata.message(65521, 1)
    assert msgdata.message(70000, 1) != msgdata.message(70000, 2)
