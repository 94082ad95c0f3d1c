"""mpconn-Python TLS peer for test_tls.lua (needs the project's mpconn
package, with TLS; run by MPCONN_PYTHON).

    py_tls_peer.py listen ADDRESS CERTDIR KEYHEX COUNT [mtls]
        a Listener with TLS(certfile=server.pem, keyfile=server.key) (and
        cafile=ca.pem with "mtls": client certificates required); prints
        "ADDRESS <addr>", then serves COUNT clients one after another: a
        failed accept prints "PY-ACCEPT-FAILED <exception class> <message>"
        and the next client is served; an accepted one runs the exchange
        below as the server ("PY-SERVED").
    py_tls_peer.py client ADDRESS CERTDIR KEYHEX [mtls]
        a Client with TLS(cafile=ca.pem, server_hostname="localhost") (and
        the client certificate with "mtls"), then the exchange as the client.

The exchange: MESSAGES (py_peer.py's, as H.MESSAGES) sent by the client,
checked and echoed by the server; then VALUES sent with send(), received
with recv() by the other side, compared and sent back.  PY-OK at the end
(exit 0), PY-FAIL <why> otherwise (exit 1).  An alarm ends a stuck run after
60 seconds.
"""
import os
import signal
import sys

from mpconn import TLS, Client, Listener

from py_peer import MESSAGES, exchange_as_client, exchange_as_server, fail, to_mpconn, to_python

# Must equal VALUES in test_tls.lua (as Lua sends them).
VALUES = [None, True, 42, -7, 2.5, "text", b"by\x00tes", [1, "two", [3.0]], {"a": 1, "b": [None]}]


def values_as_client(conn):
    for v in VALUES:
        conn.send(v)
    for i, v in enumerate(VALUES):
        got = conn.recv()
        if got != v or type(got) is not type(v):
            fail("value %d came back as %r, expected %r" % (i, got, v))


def values_as_server(conn):
    got = [conn.recv() for _ in VALUES]
    for i, (g, v) in enumerate(zip(got, VALUES)):
        if g != v or type(g) is not type(v):
            fail("value %d is %r, expected %r" % (i, g, v))
    for g in got:
        conn.send(g)


def main():
    signal.alarm(60)
    mode, address, certdir, keyhex = sys.argv[1:5]
    key = None if keyhex == "-" else bytes.fromhex(keyhex)

    def cert(name):
        return os.path.join(certdir, name)

    if mode == "listen":
        count = int(sys.argv[5])
        mtls = sys.argv[6:7] == ["mtls"]
        tls = TLS(certfile=cert("server.pem"), keyfile=cert("server.key"),
                  cafile=cert("ca.pem") if mtls else None)
        listener = Listener(to_python(address), authkey=key, tls=tls, handshake_timeout=10)
        print("ADDRESS", to_mpconn(listener.address), flush=True)
        for _ in range(count):
            try:
                conn = listener.accept()
            except Exception as e:  # noqa: BLE001 - reported, then the next client
                print("PY-ACCEPT-FAILED", type(e).__name__, e, flush=True)
                continue
            exchange_as_server(conn)
            values_as_server(conn)
            try:
                conn.recv_bytes()
                fail("unexpected extra message")
            except EOFError:
                pass
            conn.close()
            print("PY-SERVED", flush=True)
        listener.close()
    else:
        mtls = sys.argv[5:6] == ["mtls"]
        tls = TLS(cafile=cert("ca.pem"), server_hostname="localhost",
                  certfile=cert("client.pem") if mtls else None,
                  keyfile=cert("client.key") if mtls else None)
        conn = Client(to_python(address), authkey=key, tls=tls)
        exchange_as_client(conn)
        values_as_client(conn)
        conn.close()
    print("PY-OK", flush=True)


if __name__ == "__main__":
    main()
