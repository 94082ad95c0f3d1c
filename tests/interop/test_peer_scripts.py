"""Control cells: the peer scripts talk to each other, stock CPython to stock
CPython, with no mpconn involved.  When a matrix cell fails and these pass,
the fault is on the mpconn side, not in the harness."""
import pytest

import harness
import msgdata
from harness import Child, cleanup, peer_address

INTERPS = harness.interpreters()
SPECS = ["0:1", "1:2", "16385:3", "%d:4" % (1 << 20)]


@pytest.mark.parametrize("family", ["tcp", "abstract"])
@pytest.mark.parametrize("interp", INTERPS, ids=lambda i: i.label.split(" ")[0])
def test_peer_scripts_interoperate_between_cpython_versions(interp, family, tmp_path):
    harness.require_interp(interp)
    base = harness.interpreters()[0]
    harness.require_interp(base)
    # interp listens, python3 connects; then python3 listens, interp connects.
    for server, client in ((interp, base), (base, interp)):
        peer = Child([server.path, harness.PEER, "listen", "--dir", str(tmp_path), "--authkey-hex", "6b6579",
                      "--count", str(len(SPECS)), "--echo", family], "Listener %s" % server.version, deadline=60)
        cl = None
        try:
            addr = peer_address(peer)
            # The listener echoes only after all messages have arrived.
            cl = Child([client.path, harness.PEER, "client", "--authkey-hex", "6b6579", "--echo-after", addr]
                       + SPECS,
                       "Client %s" % client.version, deadline=60)
            assert cl.finish() == 0, cl.describe()
            assert peer.finish() == 0, peer.describe()
            got = [l for l in peer.text("stdout").splitlines() if l.startswith("MSG ")]
            want = [msgdata.digest(msgdata.from_spec(s)) for s in SPECS]
            assert got == ["MSG " + d for d in want], peer.describe()
            echoed = [l for l in cl.text("stdout").splitlines() if l.startswith("ECHO-OK ")]
            assert echoed == ["ECHO-OK " + d for d in want], cl.describe()
        finally:
            cleanup(peer, cl)
