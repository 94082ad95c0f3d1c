"""CLI options for long-lived listeners: --handshake-timeout (drop silent
clients quickly without an idle deadline) and --backlog.  Peers: raw
sockets and the machine's stock python3."""
import os
import socket
import subprocess
import sys
import time

import pytest

CLI = os.environ.get("MPCONN_CLI")
KEY = "hs-key"


def _cli():
    if not CLI or not os.access(CLI, os.X_OK):
        pytest.fail("MPCONN_CLI must point to the built mpconn CLI (set by ctest)")
    return CLI


def _start(args):
    p = subprocess.Popen([_cli(), "listen", "127.0.0.1:0"] + args, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=dict(os.environ, MPCONN_AUTHKEY=KEY))
    line = p.stderr.readline().decode()
    assert line.startswith("listening on "), line
    return p, int(line.rsplit(":", 1)[1])


def _good_client(port, text):
    return subprocess.run(
        [sys.executable, "-c",
         "from multiprocessing.connection import Client;"
         "Client(('127.0.0.1', %d), authkey=%r).send_bytes(%r)" % (port, KEY.encode(), text)],
        capture_output=True, text=True, timeout=30)


def test_handshake_timeout_drops_a_silent_client_while_the_listener_waits_without_limit():
    p, port = _start(["--handshake-timeout", "0.5", "--count", "1"])
    try:
        silent = socket.create_connection(("127.0.0.1", port))
        silent.settimeout(10)
        t0 = time.monotonic()
        assert silent.recv(4096)            # the challenge arrives...
        assert silent.recv(4096) == b""     # ...and the listener hangs up at its deadline
        waited = time.monotonic() - t0
        assert 0.3 <= waited < 5, waited
        silent.close()
        # No --timeout: the listener did not exit while idle; it serves the next client.
        time.sleep(1.0)
        assert p.poll() is None
        r = _good_client(port, b"after-silent")
        assert r.returncode == 0, r.stderr
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert out == b"after-silent\n"
    assert b"timed out" in err


def test_backlog_is_accepted_and_checked():
    p, port = _start(["--backlog", "16", "--count", "1"])
    try:
        r = _good_client(port, b"with-backlog")
        assert r.returncode == 0, r.stderr
        out, _ = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert out == b"with-backlog\n"
    bad = subprocess.run([_cli(), "listen", "127.0.0.1:0", "--backlog", "0"],
                         capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "backlog" in bad.stderr
    bad = subprocess.run([_cli(), "send", "127.0.0.1:1", "--backlog", "4", "x"],
                         capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2
