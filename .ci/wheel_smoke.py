"""Interop smoke test of an installed mpconn wheel (run by .ci/wheel.sh).

    <venv>/bin/python -I wheel_smoke.py FORBIDDEN_DIR... -- STOCK_PYTHON...

Run from a copy outside the source tree, with the wheel installed in a fresh
virtualenv.  Checks:
  - mpconn (and its extension) is imported from the virtualenv, not from any
    FORBIDDEN_DIR (the source tree, the build directories);
  - the libcrypto and libssl the extension uses are the copies auditwheel
    put in the wheel (mpconn.libs/), and the only ones mapped;
  - against each stock CPython (multiprocessing.connection, nothing else):
    mpconn Client -> stock Listener and stock Client -> mpconn Listener, each
    with the right key (a 16 MiB message byte-exact both ways, and a pickled
    value) and with a wrong key (AuthenticationError on the side that
    connects).
With "peer" as first argument it is the stock side instead (run by each
STOCK_PYTHON; it imports only the standard library).
"""

import os
import subprocess
import sys

KEY = b"wheel-smoke-key"
BIG = 16 << 20


def pattern(n):
    block = bytes((i * 131 + 7) & 0xFF for i in range(65536))
    return (block * (n // len(block) + 1))[:n]


def peer(role, arg):
    """The stock CPython side."""
    from multiprocessing.connection import AuthenticationError, Client, Listener

    if role == "listen":  # serves one good client (echo), then refuses one with a wrong key
        with Listener(("127.0.0.1", 0), authkey=KEY) as lst:
            print(lst.address[1], flush=True)
            with lst.accept() as c:
                c.send_bytes(c.recv_bytes())
                c.send(c.recv())
            try:
                lst.accept().close()
                print("FAIL: the stock listener accepted a wrong key", flush=True)
                sys.exit(1)
            except AuthenticationError:
                print("ok: stock listener refused the wrong key", flush=True)
    else:  # connect: right key with the echo check, then a wrong key
        port = int(arg)
        data = pattern(BIG)
        with Client(("127.0.0.1", port), authkey=KEY) as c:
            c.send_bytes(data)
            if c.recv_bytes() != data:
                print("FAIL: 16 MiB echo from mpconn differs", flush=True)
                sys.exit(1)
            c.send({"n": 1, "b": b"\x00\xff"})
            if c.recv() != {"n": 1, "b": b"\x00\xff"}:
                print("FAIL: value echo differs", flush=True)
                sys.exit(1)
        try:
            Client(("127.0.0.1", port), authkey=b"wrong").close()
            print("FAIL: mpconn accepted a stock client with a wrong key", flush=True)
            sys.exit(1)
        except AuthenticationError:
            print("ok: stock client got AuthenticationError for the wrong key", flush=True)


def main(forbidden, stock):
    import mpconn
    import mpconn._mpconn as ext
    from mpconn import AuthenticationError, Client, Listener

    failures = []
    here = [os.path.realpath(mpconn.__file__), os.path.realpath(ext.__file__)]
    for f in here:
        for d in forbidden:
            if f.startswith(os.path.realpath(d) + os.sep):
                failures.append("%s is imported from %s" % (f, d))
    if not here[1].startswith(os.path.realpath(sys.prefix) + os.sep):
        failures.append("the extension %s is not in the virtualenv %s" % (here[1], sys.prefix))
    print("mpconn %s from %s" % (mpconn.__version__, os.path.dirname(here[0])))

    data = pattern(BIG)
    for py in stock:
        ver = subprocess.run([py, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout.strip()
        # mpconn Client -> stock Listener
        p = subprocess.Popen([py, "-I", os.path.abspath(__file__), "peer", "listen", "-"],
                             stdout=subprocess.PIPE, universal_newlines=True)
        port = int(p.stdout.readline())
        with Client(("127.0.0.1", port), authkey=KEY) as c:
            c.send_bytes(data)
            ok_big = c.recv_bytes() == data
            c.send([1, "two", 3.0])
            ok_val = c.recv() == [1, "two", 3.0]
        try:
            Client(("127.0.0.1", port), authkey=b"wrong").close()
            ok_wrong = False
        except AuthenticationError:
            ok_wrong = True
        out = p.communicate(timeout=120)[0]
        for name, ok in (("16 MiB echo byte-exact", ok_big), ("value echo", ok_val),
                         ("wrong key -> AuthenticationError", ok_wrong), ("stock side", p.returncode == 0)):
            print("%s: mpconn Client -> stock CPython %s Listener: %s" % ("ok  " if ok else "FAIL", ver, name))
            if not ok:
                failures.append("Client -> %s: %s %s" % (ver, name, out))

        # stock Client -> mpconn Listener
        with Listener(("127.0.0.1", 0), authkey=KEY) as lst:
            p = subprocess.Popen([py, "-I", os.path.abspath(__file__), "peer", "connect", str(lst.address[1])],
                                 stdout=subprocess.PIPE, universal_newlines=True)
            with lst.accept() as c:
                got = c.recv_bytes()
                ok_big = got == data
                c.send_bytes(got)
                c.send(c.recv())
            try:
                lst.accept().close()
                ok_wrong = False
            except AuthenticationError:
                ok_wrong = True
            out = p.communicate(timeout=120)[0]
        for name, ok in (("16 MiB received byte-exact", ok_big), ("wrong key -> AuthenticationError", ok_wrong),
                         ("stock side (16 MiB echo, value, wrong key)", p.returncode == 0)):
            print("%s: stock CPython %s Client -> mpconn Listener: %s" % ("ok  " if ok else "FAIL", ver, name))
            if not ok:
                failures.append("%s -> Listener: %s %s" % (ver, name, out))

    # The OpenSSL in use (libcrypto, and libssl for TLS) is the wheel's own
    # copy (auditwheel's mpconn.libs), the only one mapped: `import mpconn`
    # must not load Python's ssl module (and with it the system's copy).
    with open("/proc/self/maps") as f:
        maps = [line.split()[-1] for line in f if "/" in line]
    for lib in ("libcrypto", "libssl"):
        found = sorted({m for m in maps if os.path.basename(m).startswith(lib)})
        bundled = [c for c in found if os.sep + "mpconn.libs" + os.sep in c]
        ok = bool(bundled) and len(found) == 1
        print("%s: %s in use: %s" % ("ok  " if ok else "FAIL", lib, ", ".join(found)))
        if not ok:
            failures.append("%s is not (only) the wheel's copy: %s" % (lib, found))

    if failures:
        print("wheel_smoke.py: FAIL:\n  " + "\n  ".join(failures))
        return 1
    print("wheel_smoke.py: PASS against stock CPython %s" % ", ".join(stock))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["peer"]:
        peer(sys.argv[2], sys.argv[3])
    else:
        sep = sys.argv.index("--")
        sys.exit(main(sys.argv[1:sep], sys.argv[sep + 1:]))
