"""The mpconn CLI against unmodified CPython multiprocessing.connection peers.

Matrix: peer interpreter x direction x address family x authkey mode.
  direction "to_cli":   a CPython Client sends to `mpconn listen --echo`;
                        the CLI prints what it received and echoes it, the
                        Client checks each echo byte for byte.
  direction "from_cli": `mpconn send --recv N` sends to a CPython Listener,
                        which prints length+sha256 of each message and then
                        echoes them all; the CLI prints the echoes.
  auth "none":  no handshake; small text messages in raw (non-hex) mode.
  auth "right": handshake with the same key on both sides, and the full size
                set (0 B, 1 B, 16384 B, 16385 B, 1 MiB, 16 MiB) in hex mode.
  auth "wrong": different keys: both sides must say "authentication".
The CLI's key comes from --authkey for TCP, --authkey-file for Unix paths
and MPCONN_AUTHKEY for abstract names, so all three sources are exercised.
"""
import binascii
import os

import pytest

import harness
import msgdata
from harness import Child, cleanup, listening_address, peer_address

DIRECTIONS = ["to_cli", "from_cli"]
FAMILIES = ["tcp", "unix", "abstract"]
AUTHS = ["none", "right", "wrong"]

KEY_TEXT = "interop-key-right"  # CLI --authkey takes text; keep it ASCII
WRONG_TEXT = "interop-key-WRONG"

FULL_SIZES = [0, 1, 16384, 16385, 1 << 20, 16 << 20]
TEXT_MESSAGES = ["hello", "x", "a b c", ""]

INTERPS = harness.interpreters()


def interp_id(interp):
    return interp.label.split(" ")[0] if interp.path else interp.label.replace(" ", "")


@pytest.fixture
def cli():
    return harness.cli_path()


def cli_key_args(family, key_text, tmp_path):
    """(extra argv, env) giving the CLI key_text through this family's source."""
    env = dict(os.environ)
    env.pop("MPCONN_AUTHKEY", None)
    if key_text is None:
        return [], env
    if family == "tcp":
        return ["--authkey", key_text], env
    if family == "unix":
        path = tmp_path / "authkey.bin"
        path.write_bytes(key_text.encode("ascii"))
        return ["--authkey-file", str(path)], env
    env["MPCONN_AUTHKEY"] = key_text
    return [], env


def peer_key_args(key_text):
    if key_text is None:
        return []
    return ["--authkey-hex", binascii.hexlify(key_text.encode("ascii")).decode("ascii")]


def cli_listen_address(family, tmp_path):
    if family == "tcp":
        return "127.0.0.1:0"
    if family == "unix":
        return str(tmp_path / "cli.sock")
    return "@mpconn-interop-%d-%s" % (os.getpid(), binascii.hexlify(os.urandom(6)).decode())


def split_lines(data):
    """CLI stdout -> list of lines (bytes); every line must end with \\n."""
    assert data == b"" or data.endswith(b"\n"), "output does not end with a newline: %r" % data[-80:]
    return data.split(b"\n")[:-1] if data else []


def assert_lines_equal(got_lines, expected, what):
    """Compares without dumping megabytes into the failure message."""
    assert len(got_lines) == len(expected), "%s: %d lines, expected %d (%s)" % (
        what, len(got_lines), len(expected), [len(x) for x in got_lines][:10])
    for i, (g, e) in enumerate(zip(got_lines, expected)):
        if g != e:
            pytest.fail("%s: line %d differs: got %d bytes %r..., expected %d bytes %r..." % (
                what, i, len(g), g[:60], len(e), e[:60]))


def full_specs():
    return ["%d:%d" % (size, i + 1) for i, size in enumerate(FULL_SIZES)]


def hex_line(data):
    return binascii.hexlify(data)


def check_peer_digests(peer, messages):
    lines = [l for l in peer.text("stdout").splitlines() if l.startswith("MSG ")]
    want = ["MSG " + msgdata.digest(m) for m in messages]
    assert lines == want, "CPython Listener received something else\n" + peer.describe()


# --------------------------------------------------------------------------
# direction to_cli: CPython Client -> mpconn listen


def run_to_cli(cli, interp, family, auth, tmp_path):
    peer_cmd = [interp.path, harness.PEER, "client"]
    if auth == "none":
        key_args, env = cli_key_args(family, None, tmp_path)
        cmd = [cli, "listen", cli_listen_address(family, tmp_path),
               "--count", str(len(TEXT_MESSAGES)), "--echo"] + key_args
        listener = Child(cmd, "mpconn listen", env=env, deadline=60)
        client = None
        try:
            addr = listening_address(listener)
            client = Child(peer_cmd + ["--echo", addr] + ["=" + m for m in TEXT_MESSAGES],
                           "CPython %s Client" % interp.version, deadline=60)
            assert client.finish() == 0, client.describe()
            assert listener.finish() == 0, listener.describe()
            expected = [m.encode() for m in TEXT_MESSAGES]
            assert_lines_equal(split_lines(listener.data("stdout")), expected, "mpconn listen stdout")
            assert client.text("stdout").count("ECHO-OK") == len(TEXT_MESSAGES), client.describe()
        finally:
            cleanup(listener, client)
        return

    key_args, env = cli_key_args(family, KEY_TEXT, tmp_path)
    if auth == "right":
        specs = full_specs()
        messages = [msgdata.from_spec(s) for s in specs]
        cmd = [cli, "listen", cli_listen_address(family, tmp_path), "--hex", "--echo",
               "--count", str(len(specs))] + key_args
        listener = Child(cmd, "mpconn listen", env=env, deadline=120)
        client = None
        try:
            addr = listening_address(listener)
            client = Child(peer_cmd + peer_key_args(KEY_TEXT) + ["--echo", addr] + specs,
                           "CPython %s Client" % interp.version, deadline=120)
            assert client.finish() == 0, client.describe() + "\n" + listener.describe()
            assert listener.finish() == 0, listener.describe()
            assert_lines_equal(split_lines(listener.data("stdout")),
                               [hex_line(m) for m in messages], "mpconn listen --hex stdout")
            echoed = [l for l in client.text("stdout").splitlines() if l.startswith("ECHO-OK ")]
            assert echoed == ["ECHO-OK " + msgdata.digest(m) for m in messages], client.describe()
        finally:
            cleanup(listener, client)
        return

    # auth == "wrong": the bad client is refused, the listener reports it and
    # then serves a well-behaved client.
    cmd = [cli, "listen", cli_listen_address(family, tmp_path), "--hex", "--count", "1"] + key_args
    listener = Child(cmd, "mpconn listen", env=env, deadline=60)
    bad = good = None
    try:
        addr = listening_address(listener)
        bad = Child(peer_cmd + peer_key_args(WRONG_TEXT) + [addr, "=never delivered"],
                    "CPython %s Client (wrong key)" % interp.version, deadline=30)
        assert bad.finish() == 3, "the Client with the wrong key must raise AuthenticationError\n" + bad.describe()
        assert "AUTHERROR" in bad.text("stdout")
        listener.wait_for_line("stderr", r"(?i)authenticat", timeout=15)
        assert listener.running(), "listener exited after a failed handshake\n" + listener.describe()
        good = Child(peer_cmd + peer_key_args(KEY_TEXT) + [addr, "=after the wrong key"],
                     "CPython %s Client (right key)" % interp.version, deadline=30)
        assert good.finish() == 0, good.describe() + "\n" + listener.describe()
        assert listener.finish() == 0, listener.describe()
        assert_lines_equal(split_lines(listener.data("stdout")),
                           [hex_line(b"after the wrong key")], "mpconn listen stdout")
    finally:
        cleanup(listener, bad, good)


# --------------------------------------------------------------------------
# direction from_cli: mpconn send -> CPython Listener


def run_from_cli(cli, interp, family, auth, tmp_path):
    peer_cmd = [interp.path, harness.PEER, "listen", "--dir", str(tmp_path)]
    if auth == "none":
        key_args, env = cli_key_args(family, None, tmp_path)
        peer = Child(peer_cmd + ["--count", str(len(TEXT_MESSAGES)), "--echo", family],
                     "CPython %s Listener" % interp.version, deadline=60)
        sender = None
        try:
            addr = peer_address(peer)
            sender = Child([cli, "send", addr, "--recv", str(len(TEXT_MESSAGES))] + key_args
                           + TEXT_MESSAGES, "mpconn send", env=env, deadline=60)
            assert sender.finish() == 0, sender.describe() + "\n" + peer.describe()
            assert peer.finish() == 0, peer.describe()
            messages = [m.encode() for m in TEXT_MESSAGES]
            check_peer_digests(peer, messages)
            assert_lines_equal(split_lines(sender.data("stdout")), messages, "mpconn send --recv stdout")
        finally:
            cleanup(peer, sender)
        return

    key_args, env = cli_key_args(family, KEY_TEXT if auth == "right" else WRONG_TEXT, tmp_path)
    if auth == "right":
        specs = full_specs()
        messages = [msgdata.from_spec(s) for s in specs]
        peer = Child(peer_cmd + peer_key_args(KEY_TEXT) + ["--count", str(len(specs)), "--echo", family],
                     "CPython %s Listener" % interp.version, deadline=120)
        sender = None
        try:
            addr = peer_address(peer)
            stdin = b"".join(hex_line(m) + b"\n" for m in messages)
            sender = Child([cli, "send", addr, "--hex", "--recv", str(len(messages))] + key_args,
                           "mpconn send", stdin_data=stdin, env=env, deadline=120)
            assert sender.finish() == 0, sender.describe() + "\n" + peer.describe()
            assert peer.finish() == 0, peer.describe()
            check_peer_digests(peer, messages)
            assert_lines_equal(split_lines(sender.data("stdout")),
                               [hex_line(m) for m in messages], "mpconn send --hex --recv stdout")
        finally:
            cleanup(peer, sender)
        return

    # auth == "wrong"
    peer = Child(peer_cmd + peer_key_args(KEY_TEXT) + ["--count", "1", family],
                 "CPython %s Listener" % interp.version, deadline=60)
    sender = None
    try:
        addr = peer_address(peer)
        sender = Child([cli, "send", addr] + key_args + ["never delivered"], "mpconn send (wrong key)",
                       env=env, deadline=30)
        rc = sender.finish()
        assert rc != 0, "mpconn send with a wrong key must fail\n" + sender.describe()
        err = sender.text("stderr").strip().splitlines()
        assert len(err) == 1 and "authenticat" in err[0].lower(), (
            "expected one line about authentication on stderr\n" + sender.describe())
        assert sender.data("stdout") == b"", sender.describe()
        assert peer.finish() == 3, "the Listener must raise AuthenticationError\n" + peer.describe()
        assert "AUTHERROR" in peer.text("stdout")
    finally:
        cleanup(peer, sender)


@pytest.mark.parametrize("auth", AUTHS)
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("interp", INTERPS, ids=interp_id)
def test_cli_exchanges_exact_bytes_with_stock_cpython(cli, interp, direction, family, auth, tmp_path):
    harness.require_interp(interp)
    if direction == "to_cli":
        run_to_cli(cli, interp, family, auth, tmp_path)
    else:
        run_from_cli(cli, interp, family, auth, tmp_path)


# --------------------------------------------------------------------------
# Handshake dialects of `mpconn listen` against each CPython Client.


@pytest.mark.parametrize("dialect", ["modern", "legacy", "strict"])
@pytest.mark.parametrize("interp", INTERPS, ids=interp_id)
def test_listen_dialect_against_stock_client(cli, interp, dialect, tmp_path):
    """modern and legacy accept every CPython; strict (no MD5) accepts only
    3.12+ Clients and refuses the raw-MD5 replies of 3.11 and older (the
    matrix shows 'ok' when the outcome is the expected one)."""
    harness.require_interp(interp)
    listener = Child([cli, "listen", "127.0.0.1:0", "--hex", "--count", "1", "--dialect", dialect,
                      "--authkey", KEY_TEXT], "mpconn listen --dialect " + dialect, deadline=60)
    client = None
    expect_ok = dialect != "strict" or interp.modern
    try:
        addr = listening_address(listener)
        client = Child([interp.path, harness.PEER, "client"] + peer_key_args(KEY_TEXT) + [addr, "=dialect"],
                       "CPython %s Client" % interp.version, deadline=30)
        rc = client.finish()
        if expect_ok:
            assert rc == 0, client.describe() + "\n" + listener.describe()
            assert listener.finish() == 0, listener.describe()
            assert_lines_equal(split_lines(listener.data("stdout")), [hex_line(b"dialect")], "listen stdout")
        else:
            assert rc == 3 and "AUTHERROR" in client.text("stdout"), client.describe()
            listener.wait_for_line("stderr", r"(?i)authenticat", timeout=15)
            assert listener.running(), listener.describe()
    finally:
        cleanup(listener, client)


@pytest.mark.parametrize("dialect", ["legacy", "strict"])
@pytest.mark.parametrize("interp", INTERPS, ids=interp_id)
def test_send_dialect_against_stock_listener(cli, interp, dialect, tmp_path):
    """As responder, legacy answers every CPython Listener; strict refuses the
    20-byte MD5 challenge of 3.11 and older and fails with one clear line."""
    harness.require_interp(interp)
    peer = Child([interp.path, harness.PEER, "listen", "--dir", str(tmp_path)] + peer_key_args(KEY_TEXT)
                 + ["--count", "1", "tcp"], "CPython %s Listener" % interp.version, deadline=60)
    sender = None
    expect_ok = dialect != "strict" or interp.modern
    try:
        addr = peer_address(peer)
        sender = Child([cli, "send", addr, "--authkey", KEY_TEXT, "--dialect", dialect, "dialect"],
                       "mpconn send --dialect " + dialect, deadline=30)
        rc = sender.finish()
        if expect_ok:
            assert rc == 0, sender.describe() + "\n" + peer.describe()
            assert peer.finish() == 0, peer.describe()
            check_peer_digests(peer, [b"dialect"])
        else:
            assert rc != 0, sender.describe()
            err = sender.text("stderr").strip().splitlines()
            assert len(err) == 1 and "authenticat" in err[0].lower(), sender.describe()
            # The CPython Listener sees the connection drop mid-handshake.
            assert peer.finish() != 0, peer.describe()
    finally:
        cleanup(peer, sender)
