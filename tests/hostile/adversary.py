"""A scripted raw-socket adversary for mpconn's hostile-peer suite.

Only the Python standard library: the adversary speaks the wire protocol
by hand (PROTOCOL.md sections 1 and 2), so it can break it on purpose.

Two halves:

* `Raw`, a hostile *client* connection with a deadline on every operation,
  and `ATTACKS_ON_LISTENERS`, the catalogue of what it does to a listener;
* `HostileServer`, a hostile *listener* that runs one scripted behaviour per
  accepted connection against our clients, and `ATTACKS_ON_CLIENTS`.

Each attack function returns a short text of what the adversary itself
observed (for example "got #FAILURE#" or "closed by the listener"); the
expected outcome on the other side is stated in test_hostile.py.
"""
import hmac
import os
import select
import socket
import struct
import threading
import time

CHALLENGE = b"#CHALLENGE#"
WELCOME = b"#WELCOME#"
FAILURE = b"#FAILURE#"
MiB = 1 << 20
DIGESTS = ("md5", "sha256", "sha384", "sha3_256", "sha3_384")


def frame(payload):
    """One message as CPython frames it (4-byte big-endian signed length)."""
    return struct.pack("!i", len(payload)) + payload


def mac_reply(key, challenge_body):
    """The responder's reply to a challenge body (after #CHALLENGE#)."""
    if len(challenge_body) == 20:
        return hmac.new(key, challenge_body, "md5").digest()
    name = challenge_body[1:challenge_body.index(b"}")].decode()
    assert name in DIGESTS, name
    return b"{" + name.encode() + b"}" + hmac.new(key, challenge_body, name).digest()


def reply_is_valid(key, body, reply):
    """What a modern challenger accepts for its challenge body `body`."""
    if len(reply) in (16, 20):
        return hmac.compare_digest(reply, hmac.new(key, body, "md5").digest())
    if reply[:1] != b"{" or b"}" not in reply[:10]:
        return False
    name = reply[1:reply.index(b"}")].decode("ascii", "replace")
    if name not in DIGESTS:
        return False
    return hmac.compare_digest(reply[len(name) + 2:], hmac.new(key, body, name).digest())


def split_addr(addr):
    """'host:port' -> (host, port); anything with a '/' is a Unix path."""
    if "/" in addr:
        return addr
    host, port = addr.rsplit(":", 1)
    return host, int(port)


class Raw(object):
    """A raw client connection with a deadline on every operation."""

    def __init__(self, addr, timeout=10.0):
        target = split_addr(addr)
        if isinstance(target, str):
            # A blocking connect: on a Unix socket whose backlog is full it
            # waits for room (a connect with a timeout would fail at once
            # with EAGAIN instead).
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(target)
            self.sock.settimeout(timeout)
        else:
            self.sock = socket.create_connection(target, timeout=timeout)
        self.timeout = timeout

    # -- sending --------------------------------------------------------
    def send(self, data):
        """Sends data; False if the listener already dropped us (reset/pipe)."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def send_frame(self, payload):
        return self.send(frame(payload))

    # -- receiving ------------------------------------------------------
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
        if not 0 <= n <= maxlen:
            raise AssertionError("unexpected frame length %d" % n)
        return self.recv_exact(n)

    def wait_closed(self, timeout=None):
        """Reads and discards until the listener closes: 'eof', 'reset' or
        None if it is still open after timeout (default: self.timeout)."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return "eof"
        except (ConnectionResetError, BrokenPipeError):
            return "reset"
        except socket.timeout:
            return None
        finally:
            self.sock.settimeout(self.timeout)

    # -- the well-formed client handshake, by hand ------------------------
    def handshake(self, key):
        """Client side (answer, then deliver) done correctly."""
        self.answer(key)
        self.deliver(key)

    def answer(self, key):
        challenge = self.recv_frame(256)
        assert challenge.startswith(CHALLENGE), challenge
        self.send_frame(mac_reply(key, challenge[len(CHALLENGE):]))
        got = self.recv_frame(256)
        assert got == WELCOME, got

    def deliver(self, key):
        body = b"{sha256}" + os.urandom(40)
        self.send_frame(CHALLENGE + body)
        reply = self.recv_frame(256)
        assert reply_is_valid(key, body, reply), reply
        self.send_frame(WELCOME)

    # -- endings -----------------------------------------------------------
    def close(self):
        self.sock.close()

    def reset(self):
        """Close with SO_LINGER 0: TCP sends RST instead of FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def ended(raw, timeout=None, who="listener"):
    """'closed by the listener (eof|reset)' or 'still open'."""
    how = raw.wait_closed(timeout)
    return "closed by the %s (%s)" % (who, how) if how else "still open"


# ---------------------------------------------------------------------------
# Attacks on listeners.  fn(addr, key, ctx) -> what the adversary observed.
# key is the listener's authkey (bytes) or None.  ctx offers hooks:
#   ctx.mark(): remember how much the listener has read so far
#   ctx.wait_read(n): wait until it has read n more bytes since mark()
#   ctx.mid_message(n): wait_read(n), then sample the listener's memory
#     (called while a claimed-huge message is only partly sent)
#   ctx.note_wait(seconds), ctx.flood_size, ctx.flood_done(records)
# ---------------------------------------------------------------------------
def _pre(addr, key, timeout=10.0):
    """Connects; with a key, completes the handshake correctly first (so the
    attack hits the framing of an authenticated connection)."""
    raw = Raw(addr, timeout)
    if key is not None:
        raw.handshake(key)
    return raw


def _header_then_close(data, payload_mib=0):
    def attack(addr, key, ctx):
        raw = _pre(addr, key)
        ctx.mark()
        ok = raw.send(data)
        if payload_mib:
            ok = ok and raw.send(b"\xab" * (payload_mib * MiB))
            if ok:
                ctx.mid_message(len(data) + payload_mib * MiB)
        raw.close()
        return "sent %d header bytes%s, then closed" % (
            len(data), " + %d MiB" % payload_mib if payload_mib else "")
    return attack


def _header_then_wait(data):
    """Sends a header the listener must refuse on sight and waits for it to
    close the connection (no close from our side)."""
    def attack(addr, key, ctx):
        raw = _pre(addr, key)
        raw.send(data)
        try:
            return ended(raw)
        finally:
            raw.close()
    return attack


def reset_mid_message(addr, key, ctx):
    raw = _pre(addr, key)
    ctx.mark()
    raw.send(struct.pack("!i", 1000) + b"\x5a" * 500)
    # Let the listener take the first half before the reset arrives.
    ctx.wait_read(504)
    raw.reset()
    return "sent 4 + 500 of 1004 bytes, then RST (SO_LINGER 0)"


def reset_mid_handshake(addr, key, ctx):
    raw = Raw(addr)
    challenge = raw.recv_frame(256)
    assert challenge.startswith(CHALLENGE)
    ctx.mark()
    raw.send(struct.pack("!i", 40) + b"{sha256}")
    ctx.wait_read(12)
    raw.reset()
    return "sent 12 of 44 bytes of the reply, then RST"


def reply_300_bytes(addr, key, ctx):
    raw = Raw(addr)
    challenge = raw.recv_frame(256)
    assert challenge.startswith(CHALLENGE)
    raw.send_frame(b"{sha256}" + b"\x01" * 292)
    try:
        return ended(raw)
    finally:
        raw.close()


def reply_header_2gib(addr, key, ctx):
    raw = Raw(addr)
    raw.recv_frame(256)
    raw.send(struct.pack("!i", 0x7FFFFFFF))
    try:
        return ended(raw)
    finally:
        raw.close()


def wrong_digest_reply(addr, key, ctx):
    raw = Raw(addr)
    raw.recv_frame(256)
    raw.send_frame(b"\x00" * 16)
    try:
        got = raw.recv_frame(256)
        return "got %s, then %s" % (got.decode("latin-1"), ended(raw))
    except EOFError:
        return "closed without a verdict"
    finally:
        raw.close()


def _leg2(challenge_payload, wait=True):
    """Leg 1 done correctly (we are the responder), then our challenge in
    leg 2 is `challenge_payload` (the whole frame payload, prefix included)."""
    def attack(addr, key, ctx):
        raw = Raw(addr)
        raw.answer(key)
        raw.send_frame(challenge_payload)
        try:
            return ended(raw)
        finally:
            raw.close()
    return attack


def _leg2_welcome(welcome_bytes, close_after=False):
    """Leg 1 correct; our leg-2 challenge correct; the listener answers it;
    then we send `welcome_bytes` (raw wire bytes) instead of #WELCOME#."""
    def attack(addr, key, ctx):
        raw = Raw(addr)
        raw.answer(key)
        body = b"{sha256}" + os.urandom(40)
        raw.send_frame(CHALLENGE + body)
        reply = raw.recv_frame(256)
        valid = reply_is_valid(key, body, reply)
        raw.send(welcome_bytes)
        if close_after:
            raw.close()
            return "listener's answer %s; sent %r, then closed" % (
                "valid" if valid else "INVALID", welcome_bytes)
        try:
            return "listener's answer %s; %s" % ("valid" if valid else "INVALID", ended(raw))
        finally:
            raw.close()
    return attack


def silent(addr, key, ctx):
    raw = Raw(addr, timeout=30)
    t0 = time.monotonic()
    try:
        how = raw.wait_closed(30)
        ctx.note_wait(time.monotonic() - t0)
        return "closed by the listener (%s) after %.2f s" % (how, time.monotonic() - t0) if how \
            else "still open after 30 s"
    finally:
        raw.close()


def flood(addr, key, ctx):
    n = ctx.flood_size
    records, threads = open_flood(addr, n, timeout=ctx.flood_patience)
    end = time.monotonic() + ctx.flood_patience
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    ctx.flood_done(records)
    dropped = [r for r in records if r.get("how") in ("eof", "reset")]
    held = sorted(r["closed"] - r["first_byte"] for r in dropped if "first_byte" in r)
    if not held:
        return "0/%d dropped" % n
    return "%d/%d dropped; challenge->drop %.2f/%.2f/%.2f s (min/median/max)" % (
        len(dropped), n, held[0], held[len(held) // 2], held[-1])


class Attack(object):
    def __init__(self, ident, title, fn, on, expect, adversary=None, claim=0, phase="recv"):
        self.id = ident          # short id for test names and the table
        self.title = title
        self.fn = fn
        self.on = on             # "key", "nokey" or "both"
        self.expect = expect     # expected listener-side category (see test module)
        self.adversary = adversary  # regex the adversary's observation must match
        self.claim = claim       # bytes claimed (for the memory assertion)
        # Where the listener fails: "handshake" (accept fails), "recv" (after
        # accept) or "first" (handshake with a key, recv without).
        self.phase = phase

    def applies(self, keyed):
        return self.on == "both" or (self.on == "key") == keyed

    def expected_phase(self, keyed):
        if self.phase == "first":
            return "handshake" if keyed else "recv"
        return self.phase


GiB = 1 << 30
_CLOSED = r"closed by the listener"
ATTACKS_ON_LISTENERS = [
    # --- framing: on a keyless listener from the first byte, on a keyed one
    #     after a correct handshake done by hand --------------------------
    # End of file right after a header is end of file, as in CPython (which
    # raises EOFError there): the listener ends that client normally.
    Attack("len-2g-close", "header 0x7FFFFFFF (2 GiB - 1), then close",
           _header_then_close(struct.pack("!i", 0x7FFFFFFF)), "both", "EOF", claim=2 * GiB,
           phase="end"),
    Attack("len-2g+1MiB-close", "header 0x7FFFFFFF + 1 MiB of payload, then close",
           _header_then_close(struct.pack("!i", 0x7FFFFFFF), payload_mib=1), "both", "TRUNCATED",
           claim=2 * GiB),
    Attack("len-neg2", "negative header -2 (+ 4 bytes)",
           _header_then_wait(struct.pack("!i", -2) + b"junk"), "both", "PROTO", _CLOSED),
    Attack("len-int32min", "negative header INT32_MIN",
           _header_then_wait(struct.pack("!i", -2 ** 31)), "both", "PROTO", _CLOSED),
    Attack("ext-2^31+1MiB-close", "-1 + 8-byte length 2^31, + 1 MiB, then close",
           _header_then_close(struct.pack("!iQ", -1, 1 << 31), payload_mib=1), "both", "TRUNCATED",
           claim=2 * GiB),
    Attack("ext-2^63", "-1 + 8-byte length 2^63, then wait",
           _header_then_wait(struct.pack("!iQ", -1, 1 << 63)), "both", "TOOLONG", _CLOSED,
           claim=1 << 63),
    Attack("ext-2^64-1", "-1 + 8-byte length 2^64-1, then wait",
           _header_then_wait(struct.pack("!iQ", -1, (1 << 64) - 1)), "both", "TOOLONG", _CLOSED,
           claim=(1 << 64) - 1),
    Attack("trunc-header", "2 of 4 header bytes, then close",
           _header_then_close(b"\x00\x00"), "both", "TRUNCATED"),
    Attack("trunc-ext-header", "-1 + 3 of 8 length bytes, then close",
           _header_then_close(struct.pack("!i", -1) + b"\x00\x00\x01"), "both", "TRUNCATED"),
    Attack("trunc-payload", "header 100 + 50 payload bytes, then close",
           _header_then_close(struct.pack("!i", 100) + b"x" * 50), "both", "TRUNCATED"),
    Attack("reset-mid-message", "header 1000 + 500 bytes, then RST (SO_LINGER 0)",
           reset_mid_message, "both", "RESET"),
    Attack("slowloris", "connect and send nothing",
           silent, "both", "TIMEOUT", _CLOSED, phase="first"),
    # --- the handshake, listener as challenger (leg 1) ------------------
    Attack("reply-300", "a 300-byte reply to the challenge",
           reply_300_bytes, "key", "TOOLONG", _CLOSED, phase="handshake"),
    Attack("reply-len-2g", "a reply header claiming 0x7FFFFFFF",
           reply_header_2gib, "key", "TOOLONG", _CLOSED, claim=2 * GiB, phase="handshake"),
    Attack("reply-wrong", "a wrong 16-byte MD5 reply",
           wrong_digest_reply, "key", "AUTH", r"got #FAILURE#, then " + _CLOSED, phase="handshake"),
    Attack("reset-mid-handshake", "12 of 44 bytes of the reply, then RST",
           reset_mid_handshake, "key", "RESET", phase="handshake"),
    # --- the handshake, listener as responder (leg 2) --------------------
    Attack("chal-no-prefix", "leg-2 challenge without #CHALLENGE#",
           _leg2(b"{sha256}" + b"\x07" * 40), "key", "AUTH", _CLOSED, phase="handshake"),
    Attack("chal-sha512", "leg-2 challenge naming {sha512}",
           _leg2(CHALLENGE + b"{sha512}" + b"\x07" * 40), "key", "AUTH", _CLOSED, phase="handshake"),
    Attack("chal-x", "leg-2 challenge naming {x}",
           _leg2(CHALLENGE + b"{x}" + b"\x07" * 40), "key", "AUTH", _CLOSED, phase="handshake"),
    Attack("chal-short", "leg-2 challenge of 10 bytes (< 20)",
           _leg2(CHALLENGE + b"\x07" * 10), "key", "AUTH", _CLOSED, phase="handshake"),
    Attack("chal-300", "leg-2 challenge frame of 300 bytes",
           _leg2(CHALLENGE + b"{sha256}" + b"\x07" * 281), "key", "TOOLONG", _CLOSED, phase="handshake"),
    Attack("welcome-wrong", "#WELCOMX# instead of #WELCOME#",
           _leg2_welcome(frame(b"#WELCOMX#")), "key", "AUTH", r"answer valid; " + _CLOSED,
           phase="handshake"),
    Attack("welcome-extra", "#WELCOME#x (one byte too many)",
           _leg2_welcome(frame(b"#WELCOME#x")), "key", "AUTH", r"answer valid; " + _CLOSED,
           phase="handshake"),
    Attack("welcome-trunc", "#WELCOME# header + 4 of 9 bytes, then close",
           _leg2_welcome(struct.pack("!i", 9) + b"#WEL", close_after=True), "key", "TRUNCATED",
           r"answer valid", phase="handshake"),
    # --- many at once -----------------------------------------------------
    Attack("flood", "50 connections at once, all silent",
           flood, "key", "TIMEOUT", r"^(\d+)/\1 dropped", phase="handshake"),
]


# ---------------------------------------------------------------------------
# The hostile server: one scripted behaviour per connection.
# ---------------------------------------------------------------------------
class HostileServer(object):
    """Listens on 127.0.0.1:0; serves each accepted connection with the
    behaviour set by `arm(fn)`: fn(sock_as_Raw, key) in a thread."""

    def __init__(self, key):
        self.key = key
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.behaviour = None
        self.observed = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def arm(self, fn):
        self.behaviour = fn
        self.observed = []

    def _run(self):
        while not self._stop:
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s, self.behaviour), daemon=True).start()

    def _serve(self, s, fn):
        raw = Raw.__new__(Raw)
        raw.sock = s
        raw.timeout = 15.0
        s.settimeout(15.0)
        try:
            self.observed.append(fn(raw, self.key))
        except Exception as e:  # the client may hang up at any point
            self.observed.append("server side: %s: %s" % (type(e).__name__, e))
        finally:
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self._stop = True
        self._thread.join(5)
        self.sock.close()


def _challenge_then(payload):
    def behaviour(raw, key):
        raw.send_frame(payload)
        return ended(raw, who="client")
    return behaviour


def _leg1_then_welcome(welcome_bytes):
    def behaviour(raw, key):
        body = b"{sha256}" + os.urandom(40)
        raw.send_frame(CHALLENGE + body)
        reply = raw.recv_frame(256)
        raw.send(welcome_bytes)
        return "client's reply %s; %s" % ("valid" if reply_is_valid(key, body, reply) else "INVALID",
                                           ended(raw, who="client"))
    return behaviour


def _truncated_welcome(raw, key):
    body = b"{sha256}" + os.urandom(40)
    raw.send_frame(CHALLENGE + body)
    raw.recv_frame(256)
    raw.send(struct.pack("!i", 9) + b"#WEL")
    raw.sock.shutdown(socket.SHUT_WR)
    return ended(raw, who="client")


def _wrong_answer_in_leg2(raw, key):
    body = b"{sha256}" + os.urandom(40)
    raw.send_frame(CHALLENGE + body)
    raw.recv_frame(256)
    raw.send_frame(WELCOME)
    raw.recv_frame(256)  # the client's challenge
    raw.send_frame(b"{sha256}" + b"\x00" * 32)
    got = raw.recv_frame(256)
    return "got %s; %s" % (got.decode("latin-1"), ended(raw, who="client"))


def _silent_server(raw, key):
    return ended(raw, 20, who="client")


def _full_handshake_then(data):
    """A correct server-side handshake (deliver, then answer), then `data`
    (raw bytes), then close."""
    def behaviour(raw, key):
        body = b"{sha256}" + os.urandom(40)
        raw.send_frame(CHALLENGE + body)
        ok = reply_is_valid(key, body, raw.recv_frame(256))
        raw.send_frame(WELCOME if ok else FAILURE)
        chal = raw.recv_frame(256)
        raw.send_frame(mac_reply(key, chal[len(CHALLENGE):]))
        assert raw.recv_frame(256) == WELCOME
        raw.send(data)
        raw.sock.shutdown(socket.SHUT_WR)
        return "handshake done (client's reply %s); sent %d bytes; %s" % (
            "valid" if ok else "INVALID", len(data), ended(raw, who="client"))
    return behaviour


class ClientAttack(object):
    def __init__(self, ident, title, fn, expect, adversary=None):
        self.id = ident
        self.title = title
        self.fn = fn
        self.expect = expect
        self.adversary = adversary


ATTACKS_ON_CLIENTS = [
    ClientAttack("chal-no-prefix", "challenge without #CHALLENGE#",
                 _challenge_then(b"{sha256}" + b"\x07" * 40), "AUTH", r"closed"),
    ClientAttack("chal-sha512", "challenge with unsupported digest {sha512}",
                 _challenge_then(CHALLENGE + b"{sha512}" + b"\x07" * 40), "AUTH", r"closed"),
    ClientAttack("chal-x", "challenge with unsupported digest {x}",
                 _challenge_then(CHALLENGE + b"{x}" + b"\x07" * 40), "AUTH", r"closed"),
    ClientAttack("chal-short", "challenge of 10 bytes (< 20)",
                 _challenge_then(CHALLENGE + b"\x07" * 10), "AUTH", r"closed"),
    ClientAttack("chal-300", "a 300-byte challenge frame",
                 _challenge_then(CHALLENGE + b"{sha256}" + b"\x07" * 281), "TOOLONG", r"closed"),
    ClientAttack("chal-len-2g", "challenge header claiming 0x7FFFFFFF",
                 lambda raw, key: (raw.send(struct.pack("!i", 0x7FFFFFFF)), ended(raw, who="client"))[1],
                 "TOOLONG", r"closed"),
    ClientAttack("welcome-wrong", "#WELCOMX# instead of #WELCOME#",
                 _leg1_then_welcome(frame(b"#WELCOMX#")), "AUTH", r"reply valid; closed"),
    ClientAttack("welcome-extra", "#WELCOME#x (one byte too many)",
                 _leg1_then_welcome(frame(b"#WELCOME#x")), "AUTH", r"reply valid; closed"),
    ClientAttack("welcome-trunc", "#WELCOME# header + 4 of 9 bytes, then close",
                 _truncated_welcome, "TRUNCATED", r"closed"),
    ClientAttack("failure", "#FAILURE# instead of #WELCOME#",
                 _leg1_then_welcome(frame(FAILURE)), "AUTH", r"reply valid; closed"),
    ClientAttack("wrong-answer", "a wrong answer to the client's own challenge (leg 2)",
                 _wrong_answer_in_leg2, "AUTH", r"got #FAILURE#"),
    ClientAttack("silent", "accepts and never says anything",
                 _silent_server, "TIMEOUT", r"closed"),
    ClientAttack("msg-2^63", "after the handshake, a header claiming 2^63, then close",
                 _full_handshake_then(struct.pack("!iQ", -1, 1 << 63)), "TOOLONG",
                 r"handshake done \(client's reply valid\)"),
    ClientAttack("msg-neg2", "after the handshake, a header of -2, then close",
                 _full_handshake_then(struct.pack("!i", -2)), "PROTO",
                 r"handshake done \(client's reply valid\)"),
    ClientAttack("msg-2g-trunc", "after the handshake, 0x7FFFFFFF + 1 KiB, then close",
                 _full_handshake_then(struct.pack("!i", 0x7FFFFFFF) + b"z" * 1024), "TRUNCATED",
                 r"handshake done \(client's reply valid\)"),
]


def open_flood(addr, n, timeout=60.0):
    """Opens n connections at once (one thread each, blocking connect with a
    deadline, so a full backlog just makes connect wait) and leaves them
    silent.  Returns the list of per-socket records, filled in by the
    threads: {"connected": t, "first_byte": t, "closed": t, "how": ...}."""
    records = [dict() for _ in range(n)]
    start = threading.Barrier(n + 1)

    def one(rec):
        start.wait()
        t0 = time.monotonic()
        try:
            raw = Raw(addr, timeout)
        except OSError as e:
            rec["error"] = "connect: %s" % e
            return
        rec["connected"] = time.monotonic() - t0
        try:
            raw.sock.settimeout(timeout)
            got = b""
            while True:
                chunk = raw.sock.recv(4096)
                if not chunk:
                    rec["how"] = "eof"
                    break
                if not got:
                    rec["first_byte"] = time.monotonic()
                got += chunk
        except (ConnectionResetError, BrokenPipeError):
            rec["how"] = "reset"
        except socket.timeout:
            rec["how"] = "still open"
        rec["closed"] = time.monotonic()
        rec["got"] = len(got)
        raw.close()

    threads = [threading.Thread(target=one, args=(r,), daemon=True) for r in records]
    for t in threads:
        t.start()
    start.wait()
    return records, threads
