"""TLS between mpconn peers (Listener/Client tls=mpconn.TLS(...)).

Certificates are made at test time with trustme.  What is checked:
messages of every size round-trip byte-exact; the server is verified by
default (no CA, a wrong CA, a wrong name, an expired certificate each raise
ssl.SSLCertVerificationError) and verify=False is explicit; a listener
given a CA requires a client certificate; a stock plaintext peer and a TLS
peer fail within the handshake deadline both ways; an independent TLS peer
(the ssl module, speaking the framing and CPython's own handshake functions
over an SSLSocket) talks to us both ways; openssl s_client sending garbage
after the TLS handshake is refused; after every failure the listener
serves the next client; a recording proxy sees no payload byte in clear.
"""

import datetime
import multiprocessing.connection as stock
import os
import shutil
import socket
import ssl
import struct
import sys
import subprocess
import threading
import time

import pytest

import mpconn
from mpconn import TLS, Client, Listener

from conftest import Thread

trustme = pytest.importorskip("trustme", reason="trustme (PyPI) makes the test certificates")

KEY = b"tls-test-key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    other = trustme.CA()
    files = {}

    def save(name, blob):
        p = str(d / name)
        blob.write_to_path(p)
        files[name] = p

    save("ca.pem", ca.cert_pem)
    save("other-ca.pem", other.cert_pem)
    server = ca.issue_cert("localhost", "127.0.0.1")
    save("server.pem", server.cert_chain_pems[0])
    save("server.key", server.private_key_pem)
    client = ca.issue_cert("client.example")
    save("client.pem", client.cert_chain_pems[0])
    save("client.key", client.private_key_pem)
    now = datetime.datetime.now(datetime.timezone.utc)
    expired = ca.issue_cert("localhost", "127.0.0.1", not_before=now - datetime.timedelta(days=3),
                            not_after=now - datetime.timedelta(days=1))
    save("expired.pem", expired.cert_chain_pems[0])
    save("expired.key", expired.private_key_pem)
    return files


def server_tls(pki, **kw):
    return TLS(certfile=pki["server.pem"], keyfile=pki["server.key"], **kw)


class Server(object):
    """A TLS Listener in a thread echoing every message of `clients`
    connections in turn; accept failures are recorded, not raised."""

    def __init__(self, tls, clients=1, handshake_timeout=5.0, authkey=KEY, read_ahead=False):
        self.listener = Listener(("127.0.0.1", 0), authkey=authkey, tls=tls,
                                 handshake_timeout=handshake_timeout, read_ahead=read_ahead)
        self.outcomes = []
        self.thread = Thread(self._run, clients)
        self.thread.start()

    def _run(self, clients):
        for _ in range(clients):
            try:
                conn = self.listener.accept()
            except Exception as e:  # noqa: B902 - recorded for the test
                self.outcomes.append(e)
                continue
            self.outcomes.append("ok")
            with conn:
                try:
                    while True:
                        conn.send_bytes(conn.recv_bytes())
                except EOFError:
                    pass

    @property
    def address(self):
        return self.listener.address

    def join(self):
        self.thread.join(60)
        self.listener.close()
        return self.outcomes


@pytest.mark.parametrize("read_ahead", [False, True], ids=["exact", "read-ahead"])
def test_messages_of_every_size_round_trip(pki, read_ahead):
    srv = Server(server_tls(pki), read_ahead=read_ahead)
    with Client(srv.address, authkey=KEY, tls=TLS(cafile=pki["ca.pem"]),
                read_ahead=read_ahead) as c:
        c.send_bytes_many([b"a", b"", b"bc" * 1000])
        assert [c.recv_bytes() for _ in range(3)] == [b"a", b"", b"bc" * 1000]
        for n in (0, 1, 100, 70000, 1 << 20, 16 << 20):
            data = os.urandom(n)
            c.send_bytes(data)
            assert c.recv_bytes() == data
        c.send({"x": [1, 2.5, "é", None]})
        assert c.recv() == {"x": [1, 2.5, "é", None]}
    assert srv.join() == ["ok"]


def test_the_server_is_verified_by_default(pki):
    srv = Server(server_tls(pki), clients=4)
    # No CA given: the system store does not know the test CA.
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        Client(srv.address, authkey=KEY, tls=TLS())
    with pytest.raises(ssl.SSLCertVerificationError):
        Client(srv.address, authkey=KEY, tls=TLS(cafile=pki["other-ca.pem"]))
    with pytest.raises(ssl.SSLCertVerificationError, match="hostname mismatch"):
        Client(srv.address, authkey=KEY,
               tls=TLS(cafile=pki["ca.pem"], server_hostname="elsewhere.example"))
    # Turning verification off is explicit, and works.
    with Client(srv.address, authkey=KEY, tls=TLS(verify=False)) as c:
        c.send_bytes(b"hi")
        assert c.recv_bytes() == b"hi"
    outcomes = srv.join()
    assert all(isinstance(o, ssl.SSLError) for o in outcomes[:3]), outcomes
    assert outcomes[3] == "ok"


def test_an_expired_certificate_does_not_verify(pki):
    srv = Server(TLS(certfile=pki["expired.pem"], keyfile=pki["expired.key"]), clients=1)
    with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
        Client(srv.address, authkey=KEY, tls=TLS(cafile=pki["ca.pem"]))
    srv.join()


def test_a_listener_with_a_ca_requires_a_client_certificate(pki):
    srv = Server(server_tls(pki, cafile=pki["ca.pem"]), clients=2)
    # TLS 1.3: the refusal can reach the client after its side of the TLS
    # handshake, in the authkey handshake; an SSLError either way.
    with pytest.raises(ssl.SSLError):
        Client(srv.address, authkey=KEY, tls=TLS(cafile=pki["ca.pem"]))
    tls = TLS(certfile=pki["client.pem"], keyfile=pki["client.key"], cafile=pki["ca.pem"])
    with Client(srv.address, authkey=KEY, tls=tls) as c:
        c.send_bytes(b"mutual")
        assert c.recv_bytes() == b"mutual"
    outcomes = srv.join()
    assert isinstance(outcomes[0], ssl.SSLError) and outcomes[1] == "ok"


def test_a_stock_plaintext_client_at_a_tls_listener_fails_within_the_deadline(pki):
    srv = Server(server_tls(pki), clients=2, handshake_timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises((EOFError, OSError)):
        # Stock CPython waits for a challenge; the listener, for a TLS
        # ClientHello: its deadline ends it.
        stock.Client(srv.address, authkey=KEY)
    assert time.monotonic() - t0 < 5
    with Client(srv.address, authkey=KEY, tls=TLS(cafile=pki["ca.pem"])) as c:
        c.send_bytes(b"after")
        assert c.recv_bytes() == b"after"
    outcomes = srv.join()
    assert isinstance(outcomes[0], (ssl.SSLError, TimeoutError)), outcomes
    assert outcomes[1] == "ok"


def test_a_tls_client_at_a_stock_plaintext_listener_fails_fast(pki):
    with stock.Listener(("127.0.0.1", 0), authkey=KEY) as ls:
        def accept():
            try:
                ls.accept()
            except Exception:  # noqa: B902 - the stock side fails too
                pass

        t = Thread(accept)
        t.start()
        t0 = time.monotonic()
        with pytest.raises(ssl.SSLError):
            Client(ls.address, authkey=KEY, tls=TLS(cafile=pki["ca.pem"]))
        assert time.monotonic() - t0 < 3
        t.join()


class SSLFraming(object):
    """The protocol's framing over an ssl.SSLSocket, written independently:
    the duck-typed connection CPython's own deliver_challenge() and
    answer_challenge() take."""

    def __init__(self, sock):
        self.sock = sock

    def _exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return bytes(buf)

    def send_bytes(self, data):
        self.sock.sendall(struct.pack("!i", len(data)) + bytes(data))

    def recv_bytes(self, maxlength=None):
        (n,) = struct.unpack("!i", self._exact(4))
        if maxlength is not None and n > maxlength:
            raise OSError("bad message length")
        return self._exact(n)


def test_an_independent_tls_server_speaks_with_our_client(pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["server.pem"], pki["server.key"])
    lsock = socket.create_server(("127.0.0.1", 0))

    def serve():
        raw, _ = lsock.accept()
        with ctx.wrap_socket(raw, server_side=True) as s:
            conn = SSLFraming(s)
            stock.deliver_challenge(conn, KEY)
            stock.answer_challenge(conn, KEY)
            conn.send_bytes(b"from-ssl-module:" + conn.recv_bytes())

    t = Thread(serve)
    t.start()
    with Client(lsock.getsockname(), authkey=KEY, tls=TLS(cafile=pki["ca.pem"])) as c:
        c.send_bytes(b"ping")
        assert c.recv_bytes() == b"from-ssl-module:ping"
    t.join()
    lsock.close()


def test_an_independent_tls_client_speaks_with_our_listener(pki):
    srv = Server(server_tls(pki))
    ctx = ssl.create_default_context(cafile=pki["ca.pem"])
    with socket.create_connection(srv.address) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            conn = SSLFraming(s)
            stock.answer_challenge(conn, KEY)
            stock.deliver_challenge(conn, KEY)
            payload = os.urandom(100000)
            conn.send_bytes(payload)
            assert conn.recv_bytes() == payload
    assert srv.join() == ["ok"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
def test_garbage_after_the_tls_handshake_is_refused_and_the_listener_goes_on(pki):
    srv = Server(server_tls(pki), clients=2, handshake_timeout=3)
    host, port = srv.address
    p = subprocess.run(
        ["openssl", "s_client", "-connect", "%s:%d" % (host, port), "-quiet",
         "-CAfile", pki["ca.pem"]],
        input=b"\xff\xff\xff\x00GET / HTTP/1.0\r\n\r\n" * 50, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, timeout=30)
    del p
    with Client(srv.address, authkey=KEY, tls=TLS(cafile=pki["ca.pem"])) as c:
        c.send_bytes(b"still serving")
        assert c.recv_bytes() == b"still serving"
    outcomes = srv.join()
    assert outcomes[0] != "ok" and outcomes[1] == "ok", outcomes


def _recording_proxy(target):
    """A TCP proxy to target that records every byte both ways."""
    lsock = socket.create_server(("127.0.0.1", 0))
    seen = bytearray()

    def pump(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                seen.extend(d)
                b.sendall(d)
        except OSError:
            pass
        finally:
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def run():
        c, _ = lsock.accept()
        s = socket.create_connection(target)
        t = threading.Thread(target=pump, args=(s, c), daemon=True)
        t.start()
        pump(c, s)
        t.join(10)
        c.close()
        s.close()
        lsock.close()

    th = Thread(run)
    th.start()
    return lsock.getsockname(), seen, th


@pytest.mark.parametrize("use_tls", [True, False], ids=["tls", "plaintext-control"])
def test_a_recording_proxy_sees_no_payload_in_clear(pki, use_tls):
    marker = b"SECRET-PAYLOAD-" + os.urandom(8).hex().encode()
    srv = Server(server_tls(pki) if use_tls else None)
    addr, seen, th = _recording_proxy(srv.address)
    tls = TLS(cafile=pki["ca.pem"], server_hostname="localhost") if use_tls else None
    with Client(addr, authkey=KEY, tls=tls) as c:
        c.send_bytes(marker * 3)
        assert c.recv_bytes() == marker * 3
    srv.join()
    th.join()
    assert len(seen) > 3 * len(marker)
    # The control proves the proxy records what passes.
    assert (marker in bytes(seen)) is (not use_tls)


def test_bad_tls_settings_are_clear_errors(pki, tmp_path):
    with pytest.raises(TypeError):
        Client(("127.0.0.1", 1), tls="yes")
    with pytest.raises(ssl.SSLError, match="certificate"):
        Listener(("127.0.0.1", 0), tls=TLS())  # a listener needs a certificate
    with pytest.raises(ssl.SSLError, match="nope.pem"):
        Listener(("127.0.0.1", 0), tls=TLS(certfile=str(tmp_path / "nope.pem")))
    assert repr(TLS(cafile="x", verify=False)) == "TLS(cafile='x', verify=False)"
    assert mpconn.TLS is TLS


CLI = os.environ.get("MPCONN_CLI")


@pytest.mark.skipif(not CLI, reason="MPCONN_CLI is not set to the built `mpconn` tool (ctest sets it)")
def test_python_and_the_c_cli_over_tls_both_ways(pki):
    # The CLI (C) listens with TLS; mpconn Python connects, verifying it.
    p = subprocess.Popen([CLI, "listen", "127.0.0.1:0", "--authkey", "k", "--count", "2",
                          "--echo", "--tls-cert", pki["server.pem"], "--tls-key", pki["server.key"],
                          "--timeout", "30"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = p.stderr.readline().decode()
    assert line.startswith("listening on "), line
    host, port = line.split()[-1].rsplit(":", 1)
    with Client((host, int(port)), authkey=b"k", tls=TLS(cafile=pki["ca.pem"])) as c:
        c.send_bytes(b"to the C listener")
        assert c.recv_bytes() == b"to the C listener"
        c.send_bytes(b"")
        assert c.recv_bytes() == b""
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    # mpconn Python listens with TLS; the CLI connects, verifying it.
    srv = Server(server_tls(pki), authkey=b"k")
    host, port = srv.address
    r = subprocess.run([CLI, "send", "%s:%d" % (host, port), "--authkey", "k", "--recv", "1",
                        "--tls-ca", pki["ca.pem"], "from the C client"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == "from the C client"
    assert srv.join() == ["ok"]
    # A wrong CA: the CLI's TLS exit status, and the listener goes on.
    srv = Server(server_tls(pki), authkey=b"k", clients=2)
    host, port = srv.address
    r = subprocess.run([CLI, "send", "%s:%d" % (host, port), "--authkey", "k",
                        "--tls-ca", pki["other-ca.pem"], "x"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 9 and b"certificate verify failed" in r.stderr, r
    with Client(srv.address, authkey=b"k", tls=TLS(cafile=pki["ca.pem"])) as c:
        c.send_bytes(b"next")
        assert c.recv_bytes() == b"next"
    assert srv.join()[1] == "ok"


def test_import_mpconn_does_not_load_the_ssl_module():
    # A wheel carries its own OpenSSL; Python's ssl module (with the
    # system's copy) is loaded only at the first TLS failure.
    code = "import sys, mpconn, mpconn.connection; sys.exit('_ssl' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
