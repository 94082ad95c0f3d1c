"""Values (pickles) between the mpconn CLI and unmodified CPython peers.

  to_cli:   a stock Client sends each case of valuedata.py with conn.send(obj)
            (protocol "default") or conn.send_bytes(pickle.dumps(obj, P)) for
            every protocol P the interpreter has (0-2 for 2.7, 0-4 for 3.6 and
            3.7, 0-5 for 3.8+); `mpconn listen --decode` must print, line for
            line, exactly the text of repr(obj): the sender's own repr for
            Python 3 peers, and this process's repr of the same case for every
            peer (Python 2's repr spells things differently).
  from_cli: `mpconn send --value EXPR` (EXPR = this process's repr of the
            case; --protocol P, default 4, 2 for Python 2.7) to a stock
            Listener calling conn.recv(); the peer checks the received value
            is exactly the case (types, -0.0, nan, dict order) and prints its
            repr, which Python 3 peers must print as this process does.
  hostile:  a stock Client sends pickles that would run os.system (the
            classic GLOBAL/REDUCE payload, pickle.dumps(os.system), an object
            whose __reduce__ calls os.system at every protocol, and eval),
            each followed by a normal value.  The CLI refuses each with a
            line naming the opcode and the global, prints the normal values,
            and nothing runs: the marker file the payloads would create
            does not exist (while pickle.loads of the same payload does
            create it, so the payload is real).
"""
import binascii
import os
import pickle
import subprocess
import sys

import pytest

import harness
import valuedata
from harness import Child, cleanup, listening_address, peer_address

HERE = os.path.dirname(os.path.abspath(__file__))
VALUE_PEER = os.path.join(HERE, "value_peer.py")
KEY = "value-interop-key"
KEY_HEX = binascii.hexlify(KEY.encode("ascii")).decode("ascii")

INTERPS = harness.interpreters()


def interp_id(interp):
    return interp.label.split(" ")[0] if interp.path else interp.label.replace(" ", "")


@pytest.fixture
def cli():
    return harness.cli_path()


def max_protocol(interp):
    v = interp.version_tuple
    return 2 if v[0] == 2 else (4 if v < (3, 8) else 5)


def flags_of(name):
    return [f for n, _b, f in valuedata.CASES if n == name][0]


def clip(s, at=None, width=160):
    if at is None:
        return s if len(s) <= 2 * width else s[:width] + "...[%d chars]" % len(s)
    lo = max(0, at - width // 2)
    return "...%s..." % s[lo:lo + width]


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def assert_same_text(got, want, what):
    if got != want:
        at = first_diff(got, want)
        pytest.fail("%s differs at char %d (lengths %d, %d):\n got: %s\nwant: %s"
                    % (what, at, len(got), len(want), clip(got, at), clip(want, at)))


def eval_repr(text):
    """The value a repr printed by the CLI denotes (the CLI's own output:
    literals only, evaluated without builtins)."""
    names = {"__builtins__": {}, "inf": float("inf"), "nan": float("nan"), "set": set,
             "frozenset": frozenset, "bytearray": bytearray}
    return eval(text, names)


def stdout_lines(child):
    text = child.text("stdout")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


@pytest.mark.parametrize("protocol", ["default", "0", "1", "2", "3", "4", "5"])
@pytest.mark.parametrize("interp", INTERPS, ids=interp_id)
def test_listen_decode_prints_exactly_python_repr(cli, interp, protocol, tmp_path):
    harness.require_interp(interp)
    if protocol != "default" and int(protocol) > max_protocol(interp):
        pytest.skip("CPython %s has no pickle protocol %s" % (interp.version, protocol))
    names = valuedata.case_names(interp.version_tuple)
    listener = Child([cli, "listen", "127.0.0.1:0", "--decode", "--count", str(len(names)),
                      "--authkey", KEY, "--timeout", "60"], "mpconn listen --decode", deadline=90)
    peer = None
    try:
        addr = listening_address(listener)
        peer = Child([interp.path, VALUE_PEER, "send", addr, "--authkey-hex", KEY_HEX,
                      "--protocol", protocol] + names, "value_peer send (%s)" % interp.label,
                     deadline=90)
        assert peer.finish() == 0, peer.describe()
        assert listener.finish() == 0, listener.describe()
        got = stdout_lines(listener)
        sent = [l[5:] for l in stdout_lines(peer) if l.startswith("REPR ")]
        assert len(sent) == len(names), peer.describe()
        assert len(got) == len(names), listener.describe()
        errors = [l for l in listener.text("stderr").splitlines() if not l.startswith("listening on")]
        assert errors == [], listener.describe()
        for name, line, theirs in zip(names, got, sent):
            if interp.version_tuple[0] >= 3:
                assert_same_text(line, theirs, "case %r: CLI output vs the sender's repr" % name)
            flags = flags_of(name)
            if "strset" not in flags and "setorder" not in flags:
                assert_same_text(line, repr(valuedata.build(name)),
                                 "case %r: CLI output vs repr of the case" % name)
            else:
                # Set order depends on the sender (hash seed, version): the
                # text must still denote exactly the case's value.
                assert valuedata.same(valuedata.build(name), eval_repr(line)), \
                    "case %r: %s" % (name, clip(line))
    finally:
        cleanup(listener, peer)


@pytest.mark.parametrize("protocol", ["default", "2", "3", "4", "5"])
@pytest.mark.parametrize("interp", INTERPS, ids=interp_id)
def test_send_value_arrives_as_the_python_value(cli, interp, protocol, tmp_path):
    harness.require_interp(interp)
    readable = max_protocol(interp)
    wire = 4 if protocol == "default" else int(protocol)
    if wire > readable:
        pytest.skip("CPython %s reads pickle protocols up to %d" % (interp.version, readable))
    if interp.version_tuple[0] == 2 and protocol != "2":
        pytest.skip("Python 2.7 peers are sent --protocol 2")
    names = valuedata.case_names(interp.version_tuple)
    peer = Child([interp.path, VALUE_PEER, "recv", "--authkey-hex", KEY_HEX] + names,
                 "value_peer recv (%s)" % interp.label, deadline=90)
    sender = None
    try:
        addr = peer_address(peer)
        # Long cases exceed the 128 KiB limit of one argv string: all values
        # go through stdin ("--value -"), except the first, given inline, so
        # both ways are used.
        exprs = [repr(valuedata.build(n)) for n in names]
        argv = [cli, "send", addr, "--authkey", KEY, "--timeout", "60", "--value", exprs[0],
                "--value", "-"]
        if protocol != "default":
            argv += ["--protocol", protocol]
        stdin = "".join(e + "\n" for e in exprs[1:]).encode("utf-8")
        sender = Child(argv, "mpconn send --value", stdin_data=stdin, deadline=90)
        assert sender.finish() == 0, sender.describe()
        assert peer.finish() == 0, peer.describe()
        lines = [l for l in stdout_lines(peer) if l.startswith("GOT ")]
        assert len(lines) == len(names), peer.describe()
        for name, line, expr in zip(names, lines, exprs):
            _got, gname, verdict, text = line.split(" ", 3)
            assert gname == name
            assert verdict == "OK", "case %r: %s" % (name, clip(line))
            flags = flags_of(name)
            if interp.version_tuple[0] >= 3 and "strset" not in flags and "setorder" not in flags:
                assert_same_text(text, expr, "case %r: the peer's repr" % name)
    finally:
        cleanup(peer, sender)


HOSTILE_INTERPS = [i for i in INTERPS if i.label.startswith("python3") or i.version_tuple[0] == 2
                   or i.version_tuple >= (3, 13)]


@pytest.mark.parametrize("interp", HOSTILE_INTERPS, ids=interp_id)
def test_a_pickle_calling_os_system_is_refused_and_the_next_value_printed(cli, interp, tmp_path):
    harness.require_interp(interp)
    marker = tmp_path / "pwned"
    listener = Child([cli, "listen", "127.0.0.1:0", "--decode", "--authkey", KEY, "--timeout", "60"],
                     "mpconn listen --decode", deadline=90)
    peer = None
    try:
        addr = listening_address(listener)
        peer = Child([interp.path, VALUE_PEER, "hostile", addr, str(marker), "--authkey-hex", KEY_HEX],
                     "value_peer hostile (%s)" % interp.label, deadline=60)
        assert peer.finish() == 0, peer.describe()
        sent = [l[5:] for l in stdout_lines(peer) if l.startswith("SENT ")]
        assert len(sent) >= 5
        # Every normal value that followed a hostile one is printed.
        listener.wait_text("stdout", "'after %d'" % (len(sent) - 1), timeout=30)
        listener.kill()
        assert stdout_lines(listener) == ["'after %d'" % i for i in range(len(sent))], \
            listener.describe()
        refusals = [l for l in listener.text("stderr").splitlines() if l.startswith("mpconn:")]
        assert len(refusals) == len(sent), listener.describe()
        for what, line in zip(sent, refusals):
            assert line.startswith("mpconn: refused value from client 127.0.0.1:"), line
            assert "refused opcode " in line and " at offset " in line, line
            if what == "eval builtin":
                assert "'builtins.eval'" in line or "'__builtin__.eval'" in line, line
            else:
                assert "'os.system'" in line or "'posix.system'" in line, line
        assert "refused opcode GLOBAL of global 'os.system' at offset 0" in refusals[0]
        assert not marker.exists(), "a hostile pickle was executed"
    finally:
        cleanup(listener, peer)


def test_the_hostile_payload_is_real_when_pickle_loads_it(tmp_path):
    """Guards the test above: the same classic payload, given to the stock
    pickle.loads, does create the marker file."""
    marker = tmp_path / "loaded"
    payload = ("cos\nsystem\n(S'touch %s'\ntR." % marker).encode("ascii")
    proc = subprocess.run([sys.executable, "-c",
                           "import pickle,sys; pickle.loads(sys.stdin.buffer.read())"],
                          input=payload, timeout=60)
    assert proc.returncode == 0
    assert marker.exists()


def test_listen_decode_echo_and_send_recv_decode_round_trip(cli, tmp_path):
    """`mpconn send --value ... --recv N --decode` against `mpconn listen
    --decode --echo`: values go out as pickles, come back re-pickled, and
    both sides print the same repr; a bad --value is a usage error."""
    exprs = ["{'name': 'Ada', 'pos': (1.5, -0.0), 'tags': {1, 2}, 'raw': b'\\x00'}",
             "[None, True, 12345678901234567890123, 'caf\u00e9 \U0001f600', bytearray(b'x')]",
             "frozenset()"]
    listener = Child([cli, "listen", "127.0.0.1:0", "--decode", "--echo", "--count", "3",
                      "--protocol", "2", "--timeout", "30"], "mpconn listen --decode --echo",
                     deadline=60)
    sender = None
    try:
        addr = listening_address(listener)
        argv = [cli, "send", addr, "--recv", "3", "--decode", "--timeout", "30"]
        for e in exprs:
            argv += ["--value", e]
        sender = Child(argv, "mpconn send --recv --decode", deadline=60)
        assert sender.finish() == 0, sender.describe()
        assert listener.finish() == 0, listener.describe()
        want = [repr(eval(e)) for e in exprs]
        assert stdout_lines(listener) == want
        assert stdout_lines(sender) == want
    finally:
        cleanup(listener, sender)
    bad = Child([cli, "send", "127.0.0.1:1", "--value", "[1, 2"], "mpconn send (bad value)",
                deadline=30)
    assert bad.finish() == 2
    assert "bad --value" in bad.text("stderr") and "offset" in bad.text("stderr"), bad.describe()


def test_stock_client_gets_back_what_listen_decode_echo_sends(cli, tmp_path):
    """The value the CLI sends (mpc_send_value, protocol 4) is what a stock
    Client's recv() returns."""
    listener = Child([cli, "listen", "127.0.0.1:0", "--decode", "--echo", "--count", "1",
                      "--authkey", KEY, "--timeout", "30"], "mpconn listen --decode --echo",
                     deadline=60)
    client = None
    try:
        addr = listening_address(listener)
        host, port = addr.rsplit(":", 1)
        code = ("import sys; from multiprocessing.connection import Client\n"
                "c = Client((%r, %d), authkey=%r)\n"
                "v = {'name': 'Ada', 'big': -2**80, 'f': float('-inf'), 's': frozenset([3])}\n"
                "c.send(v); back = c.recv(); print(repr(back)); sys.exit(0 if back == v else 5)\n"
                % (host, int(port), KEY.encode("ascii")))
        client = Child([sys.executable, "-c", code], "stock client", deadline=60)
        assert client.finish() == 0, client.describe()
        assert listener.finish() == 0, listener.describe()
        assert stdout_lines(listener) == stdout_lines(client)
    finally:
        cleanup(listener, client)


def memo_bomb(levels=64):
    """A protocol 2 pickle of a few hundred bytes: list k holds list k-1
    twice (through the memo), so its repr would be about 2**levels chars."""
    out = bytearray(b"\x80\x02]q\x000")
    for _ in range(levels):
        out += b"(h\x00h\x00lq\x000"
    out += b"h\x00."
    return bytes(out)


def listen_decode_count(cli, payloads):
    """Runs `mpconn listen --decode --count len(payloads)`, has a stock
    Client send the payloads (raw messages), and returns the finished
    listener's exit status, stdout lines and stderr "mpconn:" lines."""
    listener = Child([cli, "listen", "127.0.0.1:0", "--decode", "--count", str(len(payloads)),
                      "--timeout", "30"], "mpconn listen --decode --count", deadline=60)
    client = None
    try:
        addr = listening_address(listener)
        host, port = addr.rsplit(":", 1)
        code = ("from multiprocessing.connection import Client\n"
                "c = Client((%r, %d))\n"
                "for p in %r: c.send_bytes(p)\n"
                "c.close()\n" % (host, int(port), payloads))
        client = Child([sys.executable, "-c", code], "stock client", deadline=60)
        assert client.finish() == 0, client.describe()
        rc = listener.finish()
        err = [l for l in listener.text("stderr").splitlines() if l.startswith("mpconn:")]
        return rc, stdout_lines(listener), err
    finally:
        cleanup(listener, client)


def test_a_value_whose_repr_is_astronomical_is_not_printed_and_the_next_is(cli, tmp_path):
    bomb = memo_bomb()
    small = pickle.loads(memo_bomb(3))
    assert repr(small).count("[]") == 8  # the construction really doubles
    rc, out, err = listen_decode_count(cli, [bomb, pickle.dumps("after the bomb")])
    # Not printed counts as refused: exit status 8 (issue 14, item 10).
    assert rc == 8, (rc, out, err)
    assert out == ["'after the bomb'"]
    assert len(err) == 1 and err[0].startswith("mpconn: value from client 127.0.0.1:"), err
    assert err[0].endswith("not printed: the repr is longer than 16777216 bytes"), err


def test_listen_decode_count_ends_with_status_8_when_a_value_was_refused(cli, tmp_path):
    """`listen --decode --count N` counts refused messages toward N (the
    stream stays in step) but ends with exit status 8, so scripts notice;
    when nothing was refused it ends with 0 (issue 14, item 10)."""
    refused = b"cos\nsystem\n(S'true'\ntR."  # GLOBAL os.system: refused, never run
    for payloads, want, printed in (([refused, refused], 8, []),
                                    ([refused, pickle.dumps("fine")], 8, ["'fine'"]),
                                    ([pickle.dumps("a"), pickle.dumps("b")], 0, ["'a'", "'b'"])):
        rc, out, err = listen_decode_count(cli, payloads)
        assert (rc, out) == (want, printed), err
        assert len([l for l in err if "refused value" in l]) == payloads.count(refused), err


def cyclic_values():
    a = []
    a.append(a)
    d = {}
    d["self"] = [d, (d,)]
    tl = []
    t = (1, tl, 2, 3)
    tl.append(t)
    n1 = []
    n1.append([n1])
    n1.append(n1)
    return [a, d, t, tl, n1]


def test_listen_decode_prints_python_repr_of_cycles_at_every_protocol(cli, tmp_path):
    """Containers that contain themselves (issue 14, item 5): `--decode`
    prints "[...]", "{...}" and "(...)" exactly where repr() does."""
    payloads, want = [], []
    for v in cyclic_values():
        for proto in range(pickle.HIGHEST_PROTOCOL + 1):
            payloads.append(pickle.dumps(v, proto))
            want.append(repr(v))
    rc, out, err = listen_decode_count(cli, payloads)
    assert (rc, err) == (0, [])
    assert out == want
