"""Load and soak: at least 200 concurrent clients against one listener (the
threaded C server example, and a threaded server on the mpconn Python
package), each exchanging verified messages; a soak of 1,000,000 small
messages through one connection with the server's resident memory measured
before and after and asserted flat."""
import json
import os
import re
import struct
import threading
import time
import zlib
from multiprocessing.connection import Client

import pytest

from conftest import EXAMPLES_DIR, HERE, KEY, MPCONN_PY, Proc, _can_run, record

CLIENTS = 250
MSGS_PER_CLIENT = 5
SOAK_COUNT = 1_000_000
RSS_BOUND = 8 * 1024 * 1024


def example(name):
    path = os.path.join(EXAMPLES_DIR, name)
    if not os.path.exists(path):
        pytest.skip("%s is not built (%s): add_subdirectory(examples/c) to the top-level "
                    "CMakeLists.txt" % (name, path))
    return path


def vm_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


def client_msg(cid, k):
    size = (0, 1, 100, 16385, 70000)[k % 5]
    if size < 8:
        return bytes((cid + k + j) & 0xFF for j in range(size))
    body = bytes((cid * 131 + k * 17 + j) & 0xFF for j in range(size - 8))
    return struct.pack(">HHI", cid, k, zlib.crc32(body) & 0xFFFFFFFF) + body


def run_clients(address, n):
    """n clients connect (authkey), all wait until every one is connected
    (so the server has n at once), then each sends MSGS_PER_CLIENT messages
    and checks each echo byte for byte."""
    host, _, port = address.rpartition(":")
    barrier = threading.Barrier(n, timeout=90)
    failures = []
    verified = [0]
    lock = threading.Lock()

    def one(cid):
        try:
            c = Client((host, int(port)), authkey=KEY.encode())
            try:
                barrier.wait()
                for k in range(MSGS_PER_CLIENT):
                    m = client_msg(cid, k)
                    c.send_bytes(m)
                    if not c.poll(60):
                        raise TimeoutError("no echo within 60 s")
                    got = c.recv_bytes()
                    if got != m:
                        raise AssertionError("echo %d differs (%d bytes, sent %d)" % (k, len(got), len(m)))
                    with lock:
                        verified[0] += 1
            finally:
                c.close()
        except Exception as e:  # noqa: BLE001
            with lock:
                failures.append("client %d: %s: %s" % (cid, type(e).__name__, e))
            barrier.abort()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    end = time.monotonic() + 120
    for t in threads:
        t.join(max(0.1, end - time.monotonic()))
    hung = sum(t.is_alive() for t in threads)
    return verified[0], failures, hung


STATS_RX = re.compile(r"served (\d+) clients, (\d+) messages, (\d+) bytes, peak (\d+) concurrent, "
                      r"(\d+) errors, (\d+) handshake failures")


def test_the_threaded_c_server_serves_250_concurrent_clients(tmp_path):
    exe = example("threaded_server")
    srv = Proc([exe, "127.0.0.1:0", "--authkey", KEY, "--max-clients", str(CLIENTS), "--backlog", "512",
                "--accept-timeout", "60"], tmp_path, "server")
    addr = srv.wait_line(r"listening on (\S+)").group(1)
    t0 = time.monotonic()
    verified, failures, hung = run_clients(addr, CLIENTS)
    rc = srv.wait(60)
    secs = time.monotonic() - t0
    m = STATS_RX.search(srv.stderr())
    stats = dict(zip(("clients", "messages", "bytes", "peak", "errors", "hs_failures"),
                     map(int, m.groups()))) if m else {}
    record(kind="load", server="examples/c/threaded_server", clients=CLIENTS, peak_concurrent=stats.get("peak"),
           messages_verified=verified, server_messages=stats.get("messages"), errors=len(failures),
           secs=round(secs, 2))
    assert not failures, "%d clients failed, first: %s" % (len(failures), failures[0])
    assert hung == 0, "%d clients hung" % hung
    assert rc == 0, "server exit %s: %s" % (rc, srv.stderr()[-2000:])
    assert m, "no stats line from the server: %s" % srv.stderr()[-2000:]
    assert verified == CLIENTS * MSGS_PER_CLIENT
    assert stats["clients"] == CLIENTS and stats["messages"] == CLIENTS * MSGS_PER_CLIENT
    assert stats["peak"] >= 200, "only %d clients were connected at once" % stats["peak"]
    assert stats["errors"] == 0 and stats["hs_failures"] == 0


@pytest.mark.parametrize("impl", ["mpconn", "stock"])
def test_a_threaded_python_server_serves_250_concurrent_clients(tmp_path, impl):
    import sys
    py = MPCONN_PY if impl == "mpconn" else sys.executable
    if impl == "mpconn" and not _can_run([py, "-c", "import mpconn"]):
        pytest.skip("the mpconn package is not importable by %s" % py)
    srv = Proc([py, os.path.join(HERE, "py_threaded_server.py"), "127.0.0.1:0", "--impl", impl,
                "--authkey", KEY, "--max-clients", str(CLIENTS), "--deadline", "150"], tmp_path, "server")
    addr = srv.wait_line(r"listening on (\S+)").group(1)
    t0 = time.monotonic()
    verified, failures, hung = run_clients(addr, CLIENTS)
    rc = srv.wait(60)
    secs = time.monotonic() - t0
    try:
        stats = json.loads(srv.stdout_bytes().decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        stats = {}
    record(kind="load", server="py_threaded_server.py (%s)" % impl, clients=CLIENTS,
           peak_concurrent=stats.get("peak"), messages_verified=verified, server_messages=stats.get("messages"),
           errors=len(failures), secs=round(secs, 2))
    assert not failures, "%d clients failed, first: %s" % (len(failures), failures[0])
    assert hung == 0, "%d clients hung" % hung
    assert rc == 0, "server exit %s: %s" % (rc, srv.stderr()[-2000:])
    assert verified == CLIENTS * MSGS_PER_CLIENT
    assert stats.get("clients") == CLIENTS and stats.get("messages") == CLIENTS * MSGS_PER_CLIENT
    assert stats["peak"] >= 200, "only %d clients were connected at once" % stats["peak"]


def soak(tmp_path, server_argv, label, count=SOAK_COUNT):
    client = example("soak_client")
    srv = Proc(server_argv, tmp_path, "server")
    addr = srv.wait_line(r"listening on (\S+)").group(1)
    # Warm up (allocator arenas, thread stacks), then take the baseline.
    warm = Proc([client, addr, "--authkey", KEY, "--count", "20000"], tmp_path, "warmup")
    assert warm.wait(60) == 0, "warm-up failed: %s" % warm.stderr()
    rss_before = vm_rss(srv.pid)
    t0 = time.monotonic()
    run = Proc([client, addr, "--authkey", KEY, "--count", str(count), "--timeout", "30"], tmp_path, "soak")
    peak = rss_before
    while run.p.poll() is None:
        peak = max(peak, vm_rss(srv.pid))
        if time.monotonic() - t0 > 90:
            run.kill()
            break
        time.sleep(0.2)  # sampling interval of the RSS probe, not a wait for an event
    secs = time.monotonic() - t0
    rc = run.p.returncode
    rss_after = vm_rss(srv.pid)
    fin = Proc([client, addr, "--authkey", KEY, "--count", "1"], tmp_path, "final")
    fin.wait(30)
    src = srv.wait(60)
    out = run.stdout_bytes().decode()
    record(kind="soak", server=label, messages=count if rc == 0 else 0, secs=round(secs, 2),
           rss_before_kib=rss_before // 1024, rss_peak_kib=peak // 1024, rss_after_kib=rss_after // 1024,
           growth_kib=(rss_after - rss_before) // 1024)
    assert rc == 0, "soak client failed (exit %s): %s" % (rc, run.stderr()[-2000:])
    assert "%d messages echoed and verified" % count in out, out
    assert src == 0, "server exit %s: %s" % (src, srv.stderr()[-2000:])
    assert rss_after - rss_before < RSS_BOUND, "server RSS grew by %d KiB" % ((rss_after - rss_before) // 1024)
    assert peak - rss_before < RSS_BOUND, "server RSS peaked %d KiB above the baseline" % ((peak - rss_before) // 1024)
    assert secs < 60, "the soak took %.1f s" % secs


def test_a_million_messages_through_the_c_server_keep_its_memory_flat(tmp_path):
    exe = example("threaded_server")
    soak(tmp_path, [exe, "127.0.0.1:0", "--authkey", KEY, "--max-clients", "3", "--accept-timeout", "120"],
         "examples/c/threaded_server")


def test_a_million_messages_through_the_mpconn_python_server_keep_its_memory_flat(tmp_path):
    if not _can_run([MPCONN_PY, "-c", "import mpconn"]):
        pytest.skip("the mpconn package is not importable by %s" % MPCONN_PY)
    soak(tmp_path, [MPCONN_PY, os.path.join(HERE, "py_threaded_server.py"), "127.0.0.1:0", "--impl", "mpconn",
                    "--authkey", KEY, "--max-clients", "3", "--deadline", "200"], "py_threaded_server.py (mpconn)")
