"""Security review points of issue 6 that are visible from outside a process:
the authkey never appears in what the CLI prints or in its process listing,
and a wrong key fails on both sides without leaking anything.

Peers are stock CPython (the machine's python3) and the mpconn CLI.
"""
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

CLI = os.environ.get("MPCONN_CLI")
KEY = "S3cret-Key-xyzzy-4242"
OTHER = "another-key-0000"

STOCK_LISTENER = textwrap.dedent("""
    import sys
    from multiprocessing.connection import Listener
    from multiprocessing import AuthenticationError
    l = Listener(('127.0.0.1', 0), authkey=sys.argv[1].encode())
    print(l.address[1], flush=True)
    try:
        c = l.accept()
        print("accepted", flush=True)
    except AuthenticationError as e:
        print("auth-error", e, flush=True)
""")


def _cli():
    if not CLI or not os.access(CLI, os.X_OK):
        pytest.fail("MPCONN_CLI must point to the built mpconn CLI (set by ctest)")
    return CLI


def test_a_wrong_key_never_echoes_either_key_in_the_cli_output():
    stock = subprocess.Popen([sys.executable, "-c", STOCK_LISTENER, OTHER],
                             stdout=subprocess.PIPE, text=True)
    try:
        port = stock.stdout.readline().strip()
        env = dict(os.environ, MPCONN_AUTHKEY=KEY)
        p = subprocess.run([_cli(), "send", "127.0.0.1:" + port, "--timeout", "10", "hi"],
                           capture_output=True, text=True, timeout=30, env=env)
        verdict = stock.stdout.readline()
    finally:
        stock.kill()
        stock.wait()
    assert p.returncode != 0
    assert "authentication" in p.stderr
    assert verdict.startswith("auth-error")
    for secret in (KEY, OTHER):
        assert secret not in p.stderr and secret not in p.stdout


def test_a_key_from_a_file_or_the_environment_stays_out_of_the_process_listing(tmp_path):
    keyfile = tmp_path / "key"
    keyfile.write_text(KEY + "\n")
    sock = str(tmp_path / "s.sock")
    for how, extra, env in (
            ("file", ["--authkey-file", str(keyfile)], dict(os.environ)),
            ("env", [], dict(os.environ, MPCONN_AUTHKEY=KEY))):
        p = subprocess.Popen([_cli(), "listen", sock, "--count", "1", "--timeout", "20"] + extra,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            # Wait for the socket, then read what `ps` would show.
            deadline = time.time() + 10
            while not os.path.exists(sock) and time.time() < deadline:
                time.sleep(0.02)
            assert os.path.exists(sock), how
            with open("/proc/%d/cmdline" % p.pid, "rb") as f:
                cmdline = f.read()
            assert KEY.encode() not in cmdline, how
            # The listener works with that key: a stock client authenticates.
            client = subprocess.run(
                [sys.executable, "-c",
                 "from multiprocessing.connection import Client;"
                 "c=Client(%r, authkey=%r); c.send_bytes(b'ok')" % (sock, KEY.encode())],
                capture_output=True, text=True, timeout=30)
            assert client.returncode == 0, client.stderr
            out, err = p.communicate(timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert out == b"ok\n", (how, out, err)
        assert KEY.encode() not in err


def test_a_listener_rejecting_a_wrong_key_does_not_print_either_key():
    with tempfile.TemporaryDirectory() as d:
        sock = os.path.join(d, "s.sock")
        env = dict(os.environ, MPCONN_AUTHKEY=KEY)
        p = subprocess.Popen([_cli(), "listen", sock, "--count", "1", "--timeout", "20"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            deadline = time.time() + 10
            while not os.path.exists(sock) and time.time() < deadline:
                time.sleep(0.02)
            bad = subprocess.run(
                [sys.executable, "-c",
                 "from multiprocessing.connection import Client\n"
                 "from multiprocessing import AuthenticationError\n"
                 "try:\n Client(%r, authkey=%r)\nexcept AuthenticationError: print('rejected')"
                 % (sock, OTHER.encode())],
                capture_output=True, text=True, timeout=30)
            assert bad.stdout.strip() == "rejected"
            good = subprocess.run(
                [sys.executable, "-c",
                 "from multiprocessing.connection import Client;"
                 "Client(%r, authkey=%r).send_bytes(b'after')" % (sock, KEY.encode())],
                capture_output=True, text=True, timeout=30)
            assert good.returncode == 0, good.stderr
            out, err = p.communicate(timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert out == b"after\n"
        assert b"authentication" in err or b"digest" in err
        assert KEY.encode() not in err and OTHER.encode() not in err
