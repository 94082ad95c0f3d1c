"""deliver_challenge / answer_challenge, mirroring CPython's OtherTest and
ChallengeResponseTest, plus the handshake against stock Connections in both
dialects and for every digest."""

import hmac
import multiprocessing.connection as stock

import pytest

import mpconn
from mpconn import AuthenticationError, Pipe, answer_challenge, deliver_challenge

from conftest import start_thread

DIGESTS = ["md5", "sha256", "sha384", "sha3_256", "sha3_384"]


class FakeConnection:
    """Scripted peer: replies from a list, records what was sent."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.sent = []

    def send_bytes(self, data):
        self.sent.append(bytes(data))

    def recv_bytes(self, maxlength=None):
        return self.replies.pop(0)


def test_deliver_challenge_rejects_a_bogus_reply():
    conn = FakeConnection([b"something bogus"])
    with pytest.raises(AuthenticationError):
        deliver_challenge(conn, b"abc")
    assert conn.sent[-1] == b"#FAILURE#"


def test_answer_challenge_rejects_a_bogus_welcome():
    conn = FakeConnection([b"#CHALLENGE#" + b"x" * 20, b"bogus"])
    with pytest.raises(AuthenticationError, match="digest sent was rejected"):
        answer_challenge(conn, b"abc")


def test_answer_challenge_without_the_challenge_prefix_is_an_auth_error():
    conn = FakeConnection([b"not a challenge at all, honestly"])
    with pytest.raises(AuthenticationError):
        answer_challenge(conn, b"abc")


@pytest.mark.parametrize("prefix", [b"", b"{md5}", b"{sha256}"])
def test_challenge_response_carries_the_same_prefix_and_verifies(prefix):
    key = b"supadupasecretkey"
    message = prefix + b"is-twenty-bytes-long"
    conn = FakeConnection([b"#CHALLENGE#" + message, b"#WELCOME#"])
    answer_challenge(conn, key)
    reply = conn.sent[0]
    if not prefix:
        assert reply == hmac.new(key, message, "md5").digest()
    else:
        name = prefix[1:-1].decode()
        assert reply == prefix + hmac.new(key, message, name).digest()


def test_a_non_bytes_key_is_a_valueerror():
    a, b = Pipe()
    with pytest.raises(ValueError, match="Authkey must be bytes, not <class 'str'>"):
        deliver_challenge(a, "key")
    with pytest.raises(ValueError, match="Authkey must be bytes"):
        answer_challenge(a, 1)


@pytest.mark.parametrize("digest", DIGESTS)
def test_mpconn_pipe_handshake_with_every_digest(digest):
    a, b = Pipe()
    key = b"k" * 7
    t = start_thread(lambda: (answer_challenge(b, key), deliver_challenge(b, key)))
    deliver_challenge(a, key, digest)
    answer_challenge(a, key)
    t.join()
    a.send_bytes(b"after")
    assert b.recv_bytes() == b"after"


@pytest.mark.parametrize("digest", DIGESTS)
def test_mpconn_challenges_a_stock_connection_with_every_digest(digest):
    """Our C leg challenging a stock CPython answer_challenge."""
    import socket

    s1, s2 = socket.socketpair()
    ours = mpconn.Connection(s1.detach())
    theirs = stock.Connection(s2.detach())
    key = b"secret"
    t = start_thread(stock.answer_challenge, theirs, key)
    deliver_challenge(ours, key, digest)
    t.join()
    theirs.close()


@pytest.mark.parametrize("digest", DIGESTS)
def test_python_level_challenge_on_a_stock_connection_with_every_digest(digest):
    """deliver_challenge() given a stock Connection runs our sans-I/O
    handshake over that object's send_bytes/recv_bytes."""
    sa, sb = stock.Pipe()
    key = b"secret"
    t = start_thread(stock.answer_challenge, sb, key)
    deliver_challenge(sa, key, digest)
    t.join()
    t = start_thread(stock.deliver_challenge, sb, key)
    answer_challenge(sa, key)
    t.join()


def test_a_wrong_key_between_mpconn_and_stock_fails_on_both_sides():
    sa, sb = stock.Pipe()
    t = start_thread(stock.answer_challenge, sb, b"wrong")
    with pytest.raises(AuthenticationError, match="digest received was wrong"):
        deliver_challenge(sa, b"right")
    with pytest.raises(AuthenticationError):
        t.join()


def test_legacy_dialect_sends_a_20_byte_challenge():
    conn = FakeConnection([b"", b""])
    with pytest.raises(AuthenticationError):
        deliver_challenge(conn, b"k", dialect="legacy")
    assert len(conn.sent[0]) == len(b"#CHALLENGE#") + 20


def test_modern_dialect_sends_a_sha256_challenge():
    conn = FakeConnection([b""])
    with pytest.raises(AuthenticationError):
        deliver_challenge(conn, b"k")
    assert conn.sent[0].startswith(b"#CHALLENGE#{sha256}")
    assert len(conn.sent[0]) == len(b"#CHALLENGE#{sha256}") + 40


def test_strict_dialect_refuses_to_answer_a_legacy_challenge():
    conn = FakeConnection([b"#CHALLENGE#" + b"x" * 20, b"#WELCOME#"])
    with pytest.raises(AuthenticationError):
        answer_challenge(conn, b"k", dialect="strict")


def test_an_oversized_handshake_frame_is_bad_message_length():
    a, b = Pipe()
    b.send_bytes(b"#CHALLENGE#" + b"x" * 300)
    with pytest.raises(OSError, match="bad message length"):
        answer_challenge(a, b"k")
