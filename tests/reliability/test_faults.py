"""Faults across real hosts: peers in different network namespaces exchange
thousands of messages of mixed sizes (0 B to 1 MiB) through the fault proxy
and through tbf shaping.  Every message arrives once, intact and in order, or
the connection fails with a clear error; nothing hangs (every wait has a
deadline); a peer killed with SIGKILL in the middle of a 64 MiB message gives
the other side a clear error."""
import re
import signal
import time

import pytest

from conftest import KEY, PyPeer, get_peer, note, record, start_proxy, stop_proxy

COUNT = 2000
DEADLINE = 90.0
MIB = 1 << 20


def sender_result(peer, proc, rc):
    if isinstance(peer, PyPeer):
        return peer.result(proc, rc, 0, 0)
    err = None
    if rc is None:
        err = "HANG: still running at the deadline (killed)"
    elif rc != 0:
        err = (proc.stderr().strip().splitlines() or ["exit %d, no message" % rc])[-1]
    return {"sent": None, "error": err}


def exchange(hosts, tmp, sender_name, receiver_name, seed, count=COUNT, via_proxy=True, proxy_args=()):
    snd, rcv = get_peer(sender_name), get_peer(receiver_name)
    r = rcv.start_recv(hosts.b, hosts.b_ip + ":0", KEY, seed, count, tmp, "recv")
    addr = r.wait_line(r"listening on (\S+)").group(1)
    proxy = None
    target = addr
    if via_proxy:
        proxy = start_proxy(hosts, addr, tmp, "proxy", seed, proxy_args)
        target = proxy.addr
    t0 = time.monotonic()
    s = snd.start_send(hosts.a, target, KEY, seed, count, tmp, "send")
    rc_s = s.wait(DEADLINE)
    left = max(5.0, DEADLINE - (time.monotonic() - t0))
    if getattr(rcv, "client_error_rx", None):
        rc_r = r.wait_exit_or_line(rcv.client_error_rx, left)
    else:
        rc_r = r.wait(left)
    secs = time.monotonic() - t0
    faults = stop_proxy(proxy) if proxy else {}
    rres = rcv.result(r, rc_r, seed, count)
    sres = sender_result(snd, s, rc_s)
    return rres, sres, faults, secs


def fault_summary(faults):
    keys = ("tiny_segments", "odd_segments", "delays", "stalls", "resets")
    return {k: faults.get(k, 0) for k in keys}


CLEAN_PAIRS = [
    ("py3.11", "c-cli"), ("c-cli", "py3.13"), ("mpconn-py", "py3.11"), ("py3.13", "mpconn-py"),
    ("c-cli", "mpconn-py"), ("mpconn-py", "c-cli"), ("lua", "py3.11"), ("py3.11", "lua"),
    ("c-cli", "lua"), ("lua", "mpconn-py"), ("py3.11", "py3.13"),
]


@pytest.mark.parametrize("sender,receiver", CLEAN_PAIRS, ids=["%s->%s" % p for p in CLEAN_PAIRS])
def test_every_message_arrives_once_intact_in_order_through_the_fault_proxy(hosts, tmp_path, sender, receiver):
    seed = 1000 + CLEAN_PAIRS.index((sender, receiver))
    rres, sres, faults, secs = exchange(hosts, tmp_path, sender, receiver, seed)
    record(kind="fault proxy (delays, 1-byte/odd re-chunking, stalls)", pair="%s->%s" % (sender, receiver),
           sent=COUNT if sres["error"] is None else sres.get("sent"), received=rres["ok"],
           lost=COUNT - rres["ok"], corrupt=rres["bad"], faults=fault_summary(faults),
           bytes=faults.get("bytes_c2s"), secs=round(secs, 2),
           errors=[e for e in (rres["error"], sres["error"]) if e])
    assert rres["error"] is None, "receiver failed: %s" % rres["error"]
    assert sres["error"] is None, "sender failed: %s" % sres["error"]
    assert rres["bad"] == 0, "first bad message: %s" % rres["first_bad"]
    assert rres["ok"] == COUNT
    assert faults.get("segments", 0) > 0, "the proxy forwarded nothing: %r" % faults


TBF_PAIRS = [("py3.11", "c-cli"), ("c-cli", "mpconn-py"), ("lua", "py3.13"), ("mpconn-py", "lua")]


@pytest.fixture
def shaped(hosts):
    hosts.tbf(True)
    yield hosts
    hosts.tbf(False)


@pytest.mark.parametrize("sender,receiver", TBF_PAIRS, ids=["%s->%s" % p for p in TBF_PAIRS])
def test_every_message_arrives_through_tbf_shaping_at_50mbit(shaped, tmp_path, sender, receiver):
    seed = 2000 + TBF_PAIRS.index((sender, receiver))
    rres, sres, faults, secs = exchange(shaped, tmp_path, sender, receiver, seed, via_proxy=False)
    total = sum(len(m) for m in __import__("peer").plan(seed, COUNT))
    record(kind="tbf 50mbit (routed through ns r)", pair="%s->%s" % (sender, receiver),
           sent=COUNT if sres["error"] is None else sres.get("sent"), received=rres["ok"],
           lost=COUNT - rres["ok"], corrupt=rres["bad"], bytes=total, secs=round(secs, 2),
           mbit_s=round(total * 8 / secs / 1e6, 1), errors=[e for e in (rres["error"], sres["error"]) if e])
    assert rres["error"] is None, "receiver failed: %s" % rres["error"]
    assert sres["error"] is None, "sender failed: %s" % sres["error"]
    assert rres["bad"] == 0, "first bad message: %s" % rres["first_bad"]
    assert rres["ok"] == COUNT
    # tbf really shaped the path: 50 mbit/s plus a burst allowance.
    assert total * 8 / secs < 80e6, "%.1f Mbit/s is faster than the 50mbit tbf" % (total * 8 / secs / 1e6)


def test_netem_latency_and_loss_when_the_kernel_has_it(hosts, tmp_path):
    ok, why = hosts.netem_available()
    if not ok:
        note("netem is missing on this kernel (tc: %s): latency/loss emulation skipped; "
             "tbf shaping and the fault proxy cover the path" % why)
        pytest.skip("netem qdisc unavailable on this kernel: %s" % why)
    try:
        rres, sres, faults, secs = exchange(hosts, tmp_path, "py3.11", "c-cli", 3000, via_proxy=False)
    finally:
        hosts.clear_qdisc()
    record(kind="netem delay 2ms loss 0.5%", pair="py3.11->c-cli", sent=COUNT, received=rres["ok"],
           lost=COUNT - rres["ok"], corrupt=rres["bad"], secs=round(secs, 2))
    assert rres["error"] is None and sres["error"] is None, (rres["error"], sres["error"])
    assert rres["ok"] == COUNT and rres["bad"] == 0


RESET_CASES = [
    ("py3.11", "c-cli", 11, (1, 3_000_000)), ("c-cli", "py3.11", 12, (1, 3_000_000)),
    ("mpconn-py", "mpconn-py", 13, (1, 3_000_000)), ("py3.13", "mpconn-py", 14, (1, 3_000_000)),
    ("lua", "c-cli", 15, (1, 3_000_000)), ("mpconn-py", "lua", 16, (1, 3_000_000)),
    ("c-cli", "mpconn-py", 17, (1, 3_000_000)), ("py3.11", "lua", 18, (1, 3_000_000)),
    # a reset inside the authentication handshake
    ("py3.11", "c-cli", 21, (1, 120)), ("mpconn-py", "py3.11", 22, (1, 120)),
    ("c-cli", "lua", 23, (1, 120)),
]

RESET_ERROR = re.compile(r"reset|end of file|EOF|broken pipe|closed|auth|digest|truncat", re.I)


@pytest.mark.parametrize("sender,receiver,seed,span", RESET_CASES,
                         ids=["%s->%s-seed%d" % c[:3] for c in RESET_CASES])
def test_a_reset_at_a_random_point_gives_a_clear_error_and_never_corrupts(hosts, tmp_path, sender, receiver,
                                                                         seed, span):
    rres, sres, faults, secs = exchange(hosts, tmp_path, sender, receiver, seed,
                                        proxy_args=["--reset-min", str(span[0]), "--reset-max", str(span[1])])
    record(kind="fault proxy with a TCP reset at a random byte offset", pair="%s->%s" % (sender, receiver),
           reset_span="%d..%d" % span, received=rres["ok"], undelivered=COUNT - rres["ok"], corrupt=rres["bad"],
           faults=fault_summary(faults), secs=round(secs, 2),
           receiver_error=rres["error"], sender_error=sres["error"])
    assert faults.get("resets") == 1, "the proxy did not inject its reset: %r" % faults
    for side, res in (("receiver", rres), ("sender", sres)):
        assert not (res["error"] or "").startswith("HANG"), "%s hung after the reset" % side
    assert rres["bad"] == 0, "silent corruption after a reset: %s" % rres["first_bad"]
    assert rres["ok"] < COUNT, "the reset came after the last message; the test proves nothing"
    # The receiver did not get everything, so it must say why, clearly.
    assert rres["error"], "receiver stopped after %d of %d messages without an error" % (rres["ok"], COUNT)
    assert RESET_ERROR.search(rres["error"]), "unclear receiver error: %r" % rres["error"]


KILL_RECEIVERS = ["py3.11", "mpconn-py", "c-cli", "lua"]
TRUNC_ERROR = re.compile(r"end of file during message|TRUNCATED|EOFError|end of file", re.I)


def wait_bytes(hosts, ns, port, proc, want, deadline=30.0):
    end = time.monotonic() + deadline
    while True:
        got = hosts.bytes_received(ns, port)
        if got >= want:
            return got
        assert proc.p.poll() is None, "%s exited before %d bytes arrived: %s" % (proc.name, want, proc.stderr())
        assert time.monotonic() < end, "only %d of %d bytes arrived within %.0f s" % (got, want, deadline)
        time.sleep(0.02)


def start_big_receiver(peer, hosts, tmp):
    if hasattr(peer, "start_bigrecv"):
        return peer.start_bigrecv(hosts.b, hosts.b_ip + ":0", KEY, 64 * MIB, tmp, "recv")
    return peer.start_recv(hosts.b, hosts.b_ip + ":0", KEY, 0, 1, tmp, "recv")


@pytest.mark.parametrize("receiver", KILL_RECEIVERS)
def test_a_sender_killed_in_the_middle_of_64_mib_gives_the_receiver_a_clear_error(shaped, tmp_path, receiver):
    rcv, snd = get_peer(receiver), get_peer("py3.11")
    r = start_big_receiver(rcv, shaped, tmp_path)
    addr = r.wait_line(r"listening on (\S+)").group(1)
    port = int(addr.rsplit(":", 1)[1])
    s = snd.start_bigsend(shaped.a, addr, KEY, 64 * MIB, tmp_path, "send")
    got = wait_bytes(shaped, shaped.b, port, r, 4 * MIB)
    t0 = time.monotonic()
    s.kill(signal.SIGKILL)
    if getattr(rcv, "client_error_rx", None):
        rc = r.wait_exit_or_line(rcv.client_error_rx, 30.0)
    else:
        rc = r.wait(30.0)
    secs = time.monotonic() - t0
    res = rcv.result(r, rc, 0, 1)
    err = res["error"] or ""
    record(kind="SIGKILL mid-message (64 MiB over tbf)", killed="sender py3.11", survivor=receiver,
           bytes_before_kill=got, secs_to_error=round(secs, 2), error=err)
    assert rc is not None, "the receiver hung after its peer was killed"
    assert rc != 0 and err, "the receiver exited %s without an error" % rc
    assert TRUNC_ERROR.search(err), "unclear error: %r" % err


KILL_SENDERS = ["py3.11", "mpconn-py", "lua"]
PEER_GONE = re.compile(r"reset|broken pipe|EPIPE|ECONNRESET", re.I)


@pytest.mark.parametrize("sender", KILL_SENDERS)
def test_a_receiver_killed_in_the_middle_of_64_mib_gives_the_sender_a_clear_error(shaped, tmp_path, sender):
    snd, rcv = get_peer(sender), get_peer("py3.11")
    r = rcv.start_bigrecv(shaped.b, shaped.b_ip + ":0", KEY, 64 * MIB, tmp_path, "recv")
    addr = r.wait_line(r"listening on (\S+)").group(1)
    port = int(addr.rsplit(":", 1)[1])
    s = snd.start_bigsend(shaped.a, addr, KEY, 64 * MIB, tmp_path, "send")
    got = wait_bytes(shaped, shaped.b, port, r, 4 * MIB)
    t0 = time.monotonic()
    r.kill(signal.SIGKILL)
    rc = s.wait(30.0)
    secs = time.monotonic() - t0
    res = sender_result(snd, s, rc)
    err = res["error"] or ""
    record(kind="SIGKILL mid-message (64 MiB over tbf)", killed="receiver py3.11", survivor=sender,
           bytes_before_kill=got, secs_to_error=round(secs, 2), error=err)
    assert rc is not None, "the sender hung after its peer was killed"
    assert rc != 0 and err, "the sender exited %s without an error" % rc
    assert PEER_GONE.search(err), "unclear error: %r" % err
