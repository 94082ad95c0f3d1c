#!/usr/bin/env bash
# valgrind memcheck of the mpconn CLI in the interop cases: the CLI under
# valgrind talks to a stock CPython multiprocessing.connection peer.
#
#   .ci/valgrind.sh [path/to/mpconn]
#
# The CLI defaults to $MPCONN_CLI, else <repo>/build/bin/mpconn (built with
# CMake first if missing).  Cases: `mpconn listen` receiving from a stock
# Client (no key, right key, --echo, a wrong key followed by a good client)
# and `mpconn send` to a stock Listener (no key, right key with --recv, a
# wrong key); messages of 0 B, 1 B, 16384 B, 16385 B and 1 MiB, byte-exact.
# Every valgrind run uses --error-exitcode=99 --leak-check=full
# --errors-for-leak-kinds=definite; any memcheck error, definite leak, wrong
# byte or wrong exit status fails.  The last line is a one-line summary.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLI="${1:-${MPCONN_CLI:-$ROOT/build/bin/mpconn}}"
PY="${PYTHON:-python3}"
start=$(date +%s)

command -v valgrind >/dev/null 2>&1 || { echo "valgrind.sh: FAIL: valgrind is not installed"; exit 1; }
if [ ! -x "$CLI" ]; then
  echo "==> building the CLI into $ROOT/build"
  cmake -S "$ROOT" -B "$ROOT/build" >/dev/null && cmake --build "$ROOT/build" -j2 --target mpconn_cli >/dev/null ||
    { echo "valgrind.sh: FAIL: cannot build the CLI"; exit 1; }
  CLI="$ROOT/build/bin/mpconn"
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$PY" - "$CLI" "$WORK" "$start" <<'PYEOF'
import os
import re
import subprocess
import sys
import threading
import time
from multiprocessing.connection import AuthenticationError, Client, Listener

CLI, WORK, START = sys.argv[1], sys.argv[2], int(sys.argv[3])
MSGS = [b"", b"\x01", bytes(range(256)) * 64, (bytes(range(256)) * 65)[:16385],
        bytes((i * 7 + 3) & 0xFF for i in range(1 << 20))]
VG = ["valgrind", "--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=definite",
      "--show-leak-kinds=definite", "--track-origins=yes", "--num-callers=30"]
results = []  # (name, ok, detail)
n = [0]


def vg(args, stdin_data=None, name="case"):
    n[0] += 1
    log = os.path.join(WORK, "vg-%d.log" % n[0])
    out = open(os.path.join(WORK, "out-%d" % n[0]), "w+b")
    err = open(os.path.join(WORK, "err-%d" % n[0]), "w+b")
    p = subprocess.Popen(VG + ["--log-file=" + log, CLI] + args, stdin=subprocess.PIPE,
                         stdout=out, stderr=err)
    if stdin_data is not None:
        def feed():
            try:
                p.stdin.write(stdin_data)
                p.stdin.close()
            except BrokenPipeError:
                pass  # the CLI stopped reading (e.g. the handshake failed first)
        threading.Thread(target=feed, daemon=True).start()
    else:
        p.stdin.close()
    p.log, p.outf, p.errf, p.name = log, out, err, name
    return p


def text(f):
    f.seek(0)
    return f.read().decode("utf-8", "replace")


def wait_listening(p, deadline=60):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        m = re.search(r"listening on (\S+)", text(p.errf))
        if m:
            host, _, port = m.group(1).rpartition(":")
            return (host, int(port))
        if p.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError("CLI did not start listening: " + text(p.errf)[-500:])


def finish(p, want_rc, check=None, deadline=180):
    try:
        rc = p.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        results.append((p.name, False, "hung (killed after %d s)" % deadline))
        return
    with open(p.log) as f:
        log = f.read()
    m = re.search(r"ERROR SUMMARY: (\d+) errors", log)
    errors = int(m.group(1)) if m else -1
    definite = re.search(r"definitely lost: ([\d,]+) bytes", log)
    detail = "rc=%s, memcheck errors=%s, definitely lost=%s" % (rc, errors, definite.group(1) if definite else "0")
    ok = rc == want_rc and errors == 0
    if rc == 99 or errors != 0:
        detail += "\n" + log[-3000:]
    elif rc != want_rc:
        detail += " (expected rc %s); stderr: %s" % (want_rc, text(p.errf)[-500:])
    if ok and check:
        problem = check(text(p.outf), text(p.errf))
        if problem:
            ok, detail = False, detail + "; " + problem
    results.append((p.name, ok, detail))


def hexlines(msgs):
    return "".join(m.hex() + "\n" for m in msgs)


def expect_hex(msgs):
    want = hexlines(msgs)
    return lambda out, err: None if out == want else "output differs from the messages (%d vs %d chars)" % (
        len(out), len(want))


def client_send(addr, key, msgs, echo=False):
    c = Client(addr, authkey=key)
    try:
        for m in msgs:
            c.send_bytes(m)
            if echo:
                if not c.poll(120):
                    return "no echo within 120 s"
                got = c.recv_bytes()
                if got != m:
                    return "echo differs (%d bytes vs %d)" % (len(got), len(m))
    finally:
        c.close()
    return None


def listen_case(name, key, echo=False):
    args = ["listen", "127.0.0.1:0", "--hex", "--count", str(len(MSGS)), "--timeout", "120"]
    if key:
        args += ["--authkey", key.decode()]
    if echo:
        args.append("--echo")
    p = vg(args, name=name)
    try:
        problem = client_send(wait_listening(p), key, MSGS, echo)
    except Exception as e:  # noqa: BLE001
        problem = "client: %s: %s" % (type(e).__name__, e)
    finish(p, 0, expect_hex(MSGS))
    if problem:
        results.append((name + " (CPython client side)", False, problem))


listen_case("listen, no authkey <- CPython Client", None)
listen_case("listen, authkey <- CPython Client", b"vg-secret")
listen_case("listen --echo, authkey <-> CPython Client", b"vg-secret", echo=True)

# A wrong key: the client is refused, the listener goes on and serves a good one.
p = vg(["listen", "127.0.0.1:0", "--hex", "--count", "1", "--timeout", "120", "--authkey", "vg-secret"],
       name="listen, wrong authkey then a good client")
addr = wait_listening(p)
try:
    Client(addr, authkey=b"not-the-key").close()
    results.append(("wrong key refused by the CLI listener", False, "the wrong key was accepted"))
except AuthenticationError:
    results.append(("wrong key refused by the CLI listener", True, "CPython: AuthenticationError"))
except Exception as e:  # noqa: BLE001
    results.append(("wrong key refused by the CLI listener", False, "%s: %s" % (type(e).__name__, e)))
problem = client_send(addr, b"vg-secret", [MSGS[4]])
finish(p, 0, expect_hex([MSGS[4]]))


def send_case(name, key, recv=0, cli_key=None, want_rc=0):
    lst = Listener(("127.0.0.1", 0), authkey=key)
    got, errs = [], []
    replies = [b"reply-one", MSGS[4]][:recv]

    def serve():
        try:
            c = lst.accept()
        except Exception as e:  # noqa: BLE001
            errs.append("%s: %s" % (type(e).__name__, e))
            return
        try:
            for _ in MSGS:
                if not c.poll(120):
                    errs.append("no message within 120 s")
                    return
                got.append(c.recv_bytes())
            for r in replies:
                c.send_bytes(r)
            c.poll(120)  # until the CLI closes
        except EOFError:
            pass
        except Exception as e:  # noqa: BLE001
            errs.append("%s: %s" % (type(e).__name__, e))
        finally:
            c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    args = ["send", "%s:%d" % lst.address, "--hex", "--timeout", "120"]
    k = cli_key if cli_key is not None else key
    if k:
        args += ["--authkey", k.decode()]
    if recv:
        args += ["--recv", str(recv)]
    p = vg(args, stdin_data=hexlines(MSGS).encode(), name=name)
    finish(p, want_rc, expect_hex(replies) if want_rc == 0 else None)
    t.join(150)
    lst.close()
    if want_rc == 0:
        if errs or got != MSGS:
            results.append((name + " (CPython listener side)", False,
                            "; ".join(errs) or "received %d messages, not the %d sent byte-exact" % (len(got), len(MSGS))))
    elif not any("AuthenticationError" in e for e in errs):
        results.append((name + " (CPython listener side)", False, "expected AuthenticationError, got %r" % errs))


send_case("send, no authkey -> CPython Listener", None)
send_case("send --recv 2, authkey <-> CPython Listener", b"vg-secret", recv=2)
send_case("send, wrong authkey -> CPython Listener", b"vg-secret", cli_key=b"wrong-key", want_rc=4)

bad = [r for r in results if not r[1]]
for name, ok, detail in results:
    print("%s %s: %s" % ("ok  " if ok else "FAIL", name, detail.splitlines()[0] if ok else detail))
runs = n[0]
secs = int(time.time()) - START
if bad:
    print("valgrind.sh: FAIL: %d of %d checks failed over %d CLI runs under valgrind memcheck (%d s)"
          % (len(bad), len(results), runs, secs))
    sys.exit(1)
print("valgrind.sh: PASS: %d CLI runs under valgrind memcheck (listen and send vs stock CPython %d.%d, "
      "0 B..1 MiB, no key/key/wrong key), 0 errors, 0 definite leaks (%d s)"
      % (runs, sys.version_info[0], sys.version_info[1], secs))
PYEOF
