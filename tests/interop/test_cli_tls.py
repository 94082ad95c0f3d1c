"""The CLI with TLS (SPEC 9, issue 18): `mpconn listen --tls-cert/--tls-key`
and `mpconn send --tls-ca ...` against each other (TCP and Unix socket,
bytes, hex and values both ways, mutual TLS), exit status 9 with a clear
line for every TLS failure (wrong CA, wrong name, missing files, no client
certificate, a TLS client at a plaintext listener, the CLI's or stock
CPython's), a plaintext client at a TLS listener rejected while the listener
goes on serving, and no payload byte in clear on the wire (a recording
proxy).  Certificates are made per module by tests/tls/make_certs.sh (the
openssl command) in a temporary directory."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CLI = os.environ.get("MPCONN_CLI")
KEY = "tls-key"
EXIT_TLS = 9


def _cli():
    if not CLI or not os.access(CLI, os.X_OK):
        pytest.fail("MPCONN_CLI must point to the built mpconn CLI (set by ctest)")
    return CLI


@pytest.fixture(scope="module")
def certs():
    if not shutil.which("openssl"):
        pytest.fail("the TLS tests need the openssl command (to make their certificates)")
    d = tempfile.mkdtemp(prefix="mpconn-cli-tls-")
    try:
        subprocess.run(["bash", os.path.join(ROOT, "tests", "tls", "make_certs.sh"), d],
                       check=True, timeout=60)
        yield lambda name: os.path.join(d, name)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def server_tls(certs, ca=False):
    args = ["--tls-cert", certs("server.pem"), "--tls-key", certs("server.key")]
    return args + (["--tls-ca", certs("ca.pem")] if ca else [])


class Listener(object):
    """`mpconn listen ...` in the background; .address once it listens."""

    def __init__(self, address, args, key=KEY):
        env = dict(os.environ)
        env.pop("MPCONN_AUTHKEY", None)
        if key is not None:
            env["MPCONN_AUTHKEY"] = key
        self.p = subprocess.Popen([_cli(), "listen", address] + args, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env)
        line = self.p.stderr.readline().decode()
        if not line.startswith("listening on "):
            self.p.kill()
            out, err = self.p.communicate()
            pytest.fail("listener did not start: %r %r %r" % (line, out, err))
        self.address = line[len("listening on "):].strip()
        # Drained from now on: a listener printing 2 MiB of hex must not
        # block on a full pipe while the test waits on its client.
        self.out, self.err = [], []
        self.drains = [threading.Thread(target=lambda f=f, acc=acc: acc.append(f.read()),
                                        daemon=True)
                       for f, acc in ((self.p.stdout, self.out), (self.p.stderr, self.err))]
        for t in self.drains:
            t.start()

    @property
    def port(self):
        return int(self.address.rsplit(":", 1)[1])

    def finish(self, timeout=30):
        """(exit status, stdout lines, stderr text) after it exits."""
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        for t in self.drains:
            t.join(30)
        out, err = b"".join(self.out), b"".join(self.err)
        if self.p.returncode < 0:
            pytest.fail("listener did not exit: %r %r" % (out[-500:], err[-2000:]))
        return self.p.returncode, out.decode().splitlines(), err.decode()

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


@pytest.fixture
def listeners():
    made = []

    def start(address, args, key=KEY):
        made.append(Listener(address, args, key))
        return made[-1]
    yield start
    for l in made:
        l.kill()


def send(address, args, key=KEY, stdin=None, timeout=30):
    env = dict(os.environ)
    env.pop("MPCONN_AUTHKEY", None)
    if key is not None:
        env["MPCONN_AUTHKEY"] = key
    return subprocess.run([_cli(), "send", address] + args, input=stdin, capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_tls_cli_to_cli_bytes_hex_and_values(certs, listeners):
    ca = ["--tls-ca", certs("ca.pem")]
    # Bytes, echoed: the name checked is the address's host (127.0.0.1 is in
    # the certificate's IP SANs) and then "localhost" (a DNS SAN).
    l = listeners("127.0.0.1:0", server_tls(certs) + ["--echo", "--count", "3"])
    r = send(l.address, ca + ["--recv", "2", "hello", "wörld"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["hello", "wörld"]
    r = send("localhost:%d" % l.port, ca + ["--recv", "1", "by-name"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "by-name\n"
    rc, out, err = l.finish()
    assert rc == 0, err
    assert out == ["hello", "wörld", "by-name"]

    # 1 MiB as hex from stdin, many TLS records each way, read-ahead on both ends.
    big = bytes(range(256)) * 4096
    l = listeners("127.0.0.1:0", server_tls(certs) + ["--echo", "--hex", "--count", "2",
                                                      "--read-ahead"])
    r = send(l.address, ca + ["--hex", "--recv", "2", "--read-ahead"],
             stdin=big.hex() + "\n\n")
    assert r.returncode == 0, r.stderr[-500:]
    assert r.stdout.splitlines() == [big.hex(), ""]
    rc, out, err = l.finish()
    assert rc == 0, err
    assert out == [big.hex(), ""]

    # Values (pickles), decoded and echoed, over a Unix socket (no host in
    # the address: the name to check is given).
    path = os.path.join(tempfile.mkdtemp(prefix="mpconn-cli-tls-"), "s.sock")
    try:
        l = listeners(path, server_tls(certs) + ["--decode", "--echo", "--count", "2"])
        values = ["{'a': [1, 2.5, b'x', None]}", "(1, 'two', {3}, frozenset(), True)"]
        args = ca + ["--tls-server-name", "localhost", "--decode", "--recv", "2"]
        for v in values:
            args += ["--value", v]
        r = send(path, args)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == values
        rc, out, err = l.finish()
        assert rc == 0, err
        assert out == values
    finally:
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def test_tls_failures_exit_9_and_the_listener_goes_on(certs, listeners):
    l = listeners("127.0.0.1:0", server_tls(certs) + ["--handshake-timeout", "1",
                                                      "--count", "1"])
    # A server certificate from another CA.
    r = send(l.address, ["--tls-ca", certs("other-ca.pem"), "x"])
    assert r.returncode == EXIT_TLS, r.stderr
    assert "certificate verify failed" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("mpconn: TLS"), r.stderr
    # The system's store (no --tls-ca) does not know the test CA either.
    r = send(l.address, ["x"] + ["--tls-server-name", "localhost"])
    assert r.returncode == EXIT_TLS and "certificate verify failed" in r.stderr, r.stderr
    # The right CA, the wrong name.
    r = send(l.address, ["--tls-ca", certs("ca.pem"), "--tls-server-name", "other.example",
                         "x"])
    assert r.returncode == EXIT_TLS and "hostname mismatch" in r.stderr, r.stderr
    # A plaintext CLI client: it waits for the challenge, the listener for
    # the TLS hello, until the listener's handshake deadline.
    t0 = time.monotonic()
    r = send(l.address, ["--timeout", "10", "plain"])
    assert r.returncode not in (0, EXIT_TLS), r
    assert time.monotonic() - t0 < 8
    # A plaintext client without a key sends its message at once (and may
    # well exit 0: nothing tells it); the listener rejects it.
    send(l.address, ["plain-no-key"], key=None)
    # Stock CPython's Client, plaintext.
    py = subprocess.run(
        [sys.executable, "-c",
         "from multiprocessing.connection import Client\n"
         "try:\n"
         "    Client(('127.0.0.1', %d), authkey=%r).send_bytes(b'stock')\n"
         "except Exception as e:\n"
         "    print(type(e).__name__)\n" % (l.port, KEY.encode())],
        capture_output=True, text=True, timeout=30)
    assert py.stdout.strip(), py  # it failed (EOFError or ConnectionResetError)
    # The listener is still there and serves a good client.
    assert l.p.poll() is None
    r = send(l.address, ["--tls-ca", certs("ca.pem"), "after-failures"])
    assert r.returncode == 0, r.stderr
    rc, out, err = l.finish()
    assert rc == 0, err
    assert out == ["after-failures"]
    rejected = [x for x in err.splitlines() if x.startswith("mpconn: client rejected: TLS")]
    assert len(rejected) >= 5, err
    assert any("alert" in x and "ca" in x for x in rejected), err
    assert any("timed out" in x for x in rejected), err  # the silent plaintext client


def test_tls_client_at_a_plaintext_listener_exits_9_at_once(certs, listeners):
    l = listeners("127.0.0.1:0", ["--count", "1"])
    t0 = time.monotonic()
    r = send(l.address, ["--tls-ca", certs("ca.pem"), "x"])
    assert r.returncode == EXIT_TLS, r.stderr
    assert r.stderr.startswith("mpconn: TLS"), r.stderr
    assert time.monotonic() - t0 < 5
    r = send(l.address, ["plain-after"])
    assert r.returncode == 0, r.stderr
    rc, out, err = l.finish()
    assert rc == 0 and out == ["plain-after"], err
    # Stock CPython's Listener: its challenge is not a TLS record.
    srv = subprocess.Popen(
        [sys.executable, "-c",
         "import sys\n"
         "from multiprocessing.connection import Listener\n"
         "l = Listener(('127.0.0.1', 0), authkey=%r)\n"
         "print(l.address[1], flush=True)\n"
         "try:\n"
         "    l.accept()\n"
         "except Exception as e:\n"
         "    print(type(e).__name__, flush=True)\n" % KEY.encode()],
        stdout=subprocess.PIPE, text=True)
    try:
        port = int(srv.stdout.readline())
        t0 = time.monotonic()
        r = send("127.0.0.1:%d" % port, ["--tls-ca", certs("ca.pem"), "x"])
        assert r.returncode == EXIT_TLS, r.stderr
        assert time.monotonic() - t0 < 5
        srv.communicate(timeout=30)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.communicate()


def test_mutual_tls(certs, listeners):
    l = listeners("127.0.0.1:0", server_tls(certs, ca=True) + ["--count", "1"])
    ca = ["--tls-ca", certs("ca.pem")]
    r = send(l.address, ca + ["no-client-cert"])
    assert r.returncode == EXIT_TLS, r.stderr
    assert "certificate required" in r.stderr, r.stderr
    # A client certificate from another CA.
    r = send(l.address, ca + ["--tls-cert", certs("other.pem"), "--tls-key",
                              certs("other.key"), "wrong-client-ca"])
    assert r.returncode == EXIT_TLS, r.stderr
    r = send(l.address, ca + ["--tls-cert", certs("client.pem"), "--tls-key",
                              certs("client.key"), "mutual"])
    assert r.returncode == 0, r.stderr
    rc, out, err = l.finish()
    assert rc == 0 and out == ["mutual"], err
    assert "did not return a certificate" in err, err


def test_tls_no_verify_is_explicit(certs, listeners):
    l = listeners("127.0.0.1:0", server_tls(certs) + ["--count", "1"])
    r = send(l.address, ["--tls-no-verify", "unverified"])
    assert r.returncode == 0, r.stderr
    rc, out, err = l.finish()
    assert rc == 0 and out == ["unverified"], err


def test_tls_options_checked(certs):
    def run(cmd, *args):
        return subprocess.run([_cli(), cmd] + list(args), capture_output=True, text=True,
                              timeout=30)
    missing = certs("nope.pem")
    r = run("listen", "127.0.0.1:0", "--tls-cert", missing)
    assert r.returncode == EXIT_TLS and "--tls-cert" in r.stderr and missing in r.stderr, r
    r = run("send", "127.0.0.1:1", "--tls-ca", os.path.dirname(missing), "x")
    assert r.returncode == EXIT_TLS and "Is a directory" in r.stderr, r
    r = run("send", "127.0.0.1:1", "--tls-capath", certs("ca.pem"), "x")
    assert r.returncode == EXIT_TLS and "Not a directory" in r.stderr, r
    # A key that is not the certificate's: the core's own message.
    r = run("listen", "127.0.0.1:0", "--tls-cert", certs("server.pem"), "--tls-key",
            certs("other.key"))
    assert r.returncode == EXIT_TLS and "private key" in r.stderr, r
    for args in (["listen", "127.0.0.1:0", "--tls-ca", certs("ca.pem")],  # no certificate
                 ["listen", "127.0.0.1:0", "--tls-cert", certs("server.pem"),
                  "--tls-server-name", "x"],
                 ["listen", "127.0.0.1:0", "--tls-cert", certs("server.pem"), "--tls-no-verify"],
                 ["send", "127.0.0.1:1", "--tls-no-verify", "--tls-ca", certs("ca.pem"), "x"],
                 ["send", "127.0.0.1:1", "--tls-key", certs("client.key"), "x"],
                 ["send", "127.0.0.1:1", "--tls-ca"]):
        r = run(*args)
        assert r.returncode == 2, (args, r)
        assert r.stderr.startswith("mpconn: "), r
    h = run("--help")
    assert "--tls-cert FILE" in h.stdout and "9 TLS error" in h.stdout


def test_no_payload_in_clear_on_the_wire(certs, listeners):
    """A recording TCP proxy between `mpconn send` and `mpconn listen`: the
    messages cross it both ways, and no payload appears in what it saw."""
    l = listeners("127.0.0.1:0", server_tls(certs) + ["--echo", "--count", "2"])
    front = socket.socket()
    front.bind(("127.0.0.1", 0))
    front.listen(1)
    seen = []

    def pump(src, dst):
        try:
            while True:
                b = src.recv(65536)
                if not b:
                    break
                seen.append(b)
                dst.sendall(b)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def proxy():
        a, _ = front.accept()
        b = socket.create_connection(("127.0.0.1", l.port))
        t = threading.Thread(target=pump, args=(b, a), daemon=True)
        t.start()
        pump(a, b)
        t.join(30)
        a.close()
        b.close()

    t = threading.Thread(target=proxy, daemon=True)
    t.start()
    secret = "TOP-SECRET-PAYLOAD-" * 50
    r = send("127.0.0.1:%d" % front.getsockname()[1],
             ["--tls-ca", certs("ca.pem"), "--tls-server-name", "localhost", "--recv", "2",
              secret, "SECOND-IN-CLEAR?"])
    t.join(30)
    front.close()
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [secret, "SECOND-IN-CLEAR?"]
    rc, out, err = l.finish()
    assert rc == 0, err
    wire = b"".join(seen)
    assert len(wire) > len(secret)
    for needle in (b"TOP-SECRET", b"SECOND-IN-CLEAR", KEY.encode(), b"#CHALLENGE#",
                   b"#WELCOME#"):
        assert needle not in wire, needle
