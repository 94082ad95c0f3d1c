"""Reliability suite fixtures: network namespaces joined by veth pairs, the
peers (stock CPython, the mpconn Python package, the mpconn C CLI, the mpconn
Lua module) as processes inside them, and the figures table printed at the
end of the run.

Topology (one set per session, names mpc-<random>-{a,r,b}):

    ns a (client host)          ns r (router + fault proxy)        ns b (server host)
    10.200.1.2/24  <-- veth --> 10.200.1.1/24 | 10.200.2.1/24 <-- veth --> 10.200.2.2/24

a and b route to each other through r (ip_forward on in r), so a client in a
reaches a listener in b either directly (routed; tbf shaping is applied to r's
two veths) or through the fault proxy listening on 10.200.1.1 in r.

Environment (set by tests/reliability/CMakeLists.txt under ctest; defaults
point into <repo>/build-rel): MPCONN_CLI, MPCONN_PYTHON (a python with the
mpconn package), MPCONN_LUA_DIR (holds mpconn.lua and mpconn/core.so),
MPCONN_EXAMPLES_DIR (the examples/c programs), MPCONN_RELIABILITY_REPORT
(a file the figures table is also written to).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import peer as peermod  # noqa: E402

BUILD = os.environ.get("MPCONN_BUILD_DIR", os.path.join(ROOT, "build-rel"))
CLI = os.environ.get("MPCONN_CLI", os.path.join(BUILD, "bin", "mpconn"))
MPCONN_PY = os.environ.get("MPCONN_PYTHON") or os.path.join(BUILD, "venv", "bin", "python")
LUA_DIR = os.environ.get("MPCONN_LUA_DIR", os.path.join(BUILD, "lua"))
EXAMPLES_DIR = os.environ.get("MPCONN_EXAMPLES_DIR", os.path.join(BUILD, "examples", "c"))
REPORT = os.environ.get("MPCONN_RELIABILITY_REPORT", os.path.join(BUILD, "reliability-figures.txt"))
PY313 = "/root/.pyenv/versions/3.13.0/bin/python"
LUA = shutil.which("lua5.4") or shutil.which("lua")
KEY = "reliability-key"

# ---------------------------------------------------------------------------
# Figures: every exchange appends a row; the table is printed at the end.
# ---------------------------------------------------------------------------
FIGURES = []
NOTES = []


def record(**row):
    FIGURES.append(row)
    print("FIGURES " + json.dumps(row, sort_keys=True))


def note(text):
    NOTES.append(text)
    print("NOTE " + text)


def pytest_terminal_summary(terminalreporter):
    if not FIGURES and not NOTES:
        return
    lines = ["", "mpconn reliability figures", "=" * 26]
    groups = {}
    for row in FIGURES:
        groups.setdefault(row.get("kind", "other"), []).append(row)
    for kind, rows in groups.items():
        lines.append("")
        lines.append("[%s]" % kind)
        keys = []
        for r in rows:
            for k in r:
                if k != "kind" and k not in keys:
                    keys.append(k)
        widths = {k: max(len(k), *(len(str(r.get(k, ""))) for r in rows)) for k in keys}
        lines.append("  ".join(k.ljust(widths[k]) for k in keys))
        for r in rows:
            lines.append("  ".join(str(r.get(k, "")).ljust(widths[k]) for k in keys))
    tot = {}
    for r in FIGURES:
        # Message totals over the runs that must deliver everything (a run
        # with an injected reset counts its undelivered messages apart).
        keys = ("sent", "received", "lost", "corrupt") if "lost" in r else ("undelivered", "corrupt")
        for k in keys:
            if isinstance(r.get(k), int):
                tot[k] = tot.get(k, 0) + r[k]
        for k, v in (r.get("faults") or {}).items():
            tot["fault:" + k] = tot.get("fault:" + k, 0) + v
    if tot:
        lines.append("")
        lines.append("totals: " + ", ".join("%s=%s" % kv for kv in sorted(tot.items())))
    for n in NOTES:
        lines.append("note: " + n)
    text = "\n".join(lines) + "\n"
    terminalreporter.write(text)
    try:
        os.makedirs(os.path.dirname(REPORT), exist_ok=True)
        with open(REPORT, "w") as f:
            f.write(text)
    except OSError:
        pass


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------
class Proc:
    """A child process with its stdout/stderr in files (no pipe deadlocks)."""

    def __init__(self, argv, tmpdir, name, ns=None, stdin_path=None, env=None):
        self.name = name
        self.out_path = os.path.join(str(tmpdir), name + ".out")
        self.err_path = os.path.join(str(tmpdir), name + ".err")
        if ns:
            argv = ["ip", "netns", "exec", ns] + list(argv)
        self.argv = argv
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.p = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=err,
                                      env=env, start_new_session=True)
        if stdin_path:
            stdin.close()
        self.pid = self.p.pid

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stdout_bytes(self):
        with open(self.out_path, "rb") as f:
            return f.read()

    def wait_line(self, pattern, deadline=15.0, stream="err"):
        """Polls the output file until a line matches; returns the match."""
        end = time.monotonic() + deadline
        rx = re.compile(pattern)
        path = self.err_path if stream == "err" else self.out_path
        while True:
            with open(path, "rb") as f:
                m = rx.search(f.read().decode("utf-8", "replace"))
            if m:
                return m
            if self.p.poll() is not None:
                raise AssertionError("%s exited (%s) before printing %r; stderr: %s"
                                     % (self.name, self.p.returncode, pattern, self.stderr()[-2000:]))
            if time.monotonic() > end:
                raise AssertionError("%s printed no %r within %.0f s; stderr: %s"
                                     % (self.name, pattern, deadline, self.stderr()[-2000:]))
            time.sleep(0.02)

    def wait(self, deadline):
        """Waits up to deadline seconds; a process still running is a hang:
        it is killed and None is returned."""
        try:
            return self.p.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def wait_exit_or_line(self, pattern, deadline):
        """Waits until the process exits or its stderr matches pattern (a
        server that reports a failed client and goes on serving); returns
        the exit status, "reported" (then the process is killed), or None
        (a hang: killed at the deadline)."""
        end = time.monotonic() + deadline
        rx = re.compile(pattern)
        while True:
            rc = self.p.poll()
            if rc is not None:
                return rc
            if rx.search(self.stderr()):
                self.kill()
                return "reported"
            if time.monotonic() > end:
                self.kill()
                return None
            time.sleep(0.02)

    def kill(self, sig=signal.SIGKILL):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


# ---------------------------------------------------------------------------
# Peers.  Each kind can listen-and-receive a plan (checked with peer.Checker)
# and connect-and-send a plan.
# ---------------------------------------------------------------------------
def _can_run(argv):
    try:
        return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def lua_env():
    env = dict(os.environ)
    env["LUA_CPATH"] = os.path.join(LUA_DIR, "?.so") + ";;"
    env["LUA_PATH"] = os.path.join(LUA_DIR, "?.lua") + ";;"
    return env


class PyPeer:
    def __init__(self, label, exe, impl):
        self.label, self.exe, self.impl = label, exe, impl

    def unavailable(self):
        if not self.exe or not os.path.exists(self.exe):
            return "%s: interpreter %s not found" % (self.label, self.exe)
        if self.impl == "mpconn" and not _can_run([self.exe, "-c", "import mpconn"]):
            return "%s: the mpconn package is not importable by %s" % (self.label, self.exe)
        return None

    def _argv(self, role, addr, key, seed, count, extra=()):
        argv = [self.exe, os.path.join(HERE, "peer.py"), role, "--impl", self.impl,
                "--address", addr, "--seed", str(seed), "--count", str(count), "--deadline", "75"] + list(extra)
        if key is not None:
            argv += ["--authkey", key]
        return argv

    def start_recv(self, ns, addr, key, seed, count, tmp, name):
        return Proc(self._argv("recv", addr, key, seed, count), tmp, name, ns)

    def start_send(self, ns, addr, key, seed, count, tmp, name):
        return Proc(self._argv("send", addr, key, seed, count), tmp, name, ns)

    def start_bigsend(self, ns, addr, key, size, tmp, name):
        return Proc(self._argv("bigsend", addr, key, 0, 0, ["--size", str(size)]), tmp, name, ns)

    def start_bigrecv(self, ns, addr, key, size, tmp, name):
        return Proc(self._argv("bigrecv", addr, key, 0, 0, ["--size", str(size)]), tmp, name, ns)

    def result(self, proc, rc, seed, count):
        try:
            res = json.loads(proc.stdout_bytes().decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            res = {"received": 0, "ok": 0, "bad": 0, "first_bad": None, "sent": 0,
                   "error": "no result line (exit %s): %s" % (rc, proc.stderr()[-500:])}
        if rc is None:
            res["error"] = "HANG: still running at the deadline (killed)"
        return res


class CliPeer:
    """The mpconn C CLI: `listen --hex` prints one hex line per message,
    `send --hex` reads one hex line per message from stdin."""
    label = "c-cli"
    # `mpconn listen` reports a failed client on stderr and goes on serving.
    client_error_rx = r"mpconn: client [^\n]*\n"

    def unavailable(self):
        if not os.path.exists(CLI):
            return "mpconn CLI not built at %s" % CLI
        try:
            out = subprocess.run([CLI, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 timeout=10).stdout.decode("utf-8", "replace")
        except (OSError, subprocess.TimeoutExpired) as e:
            return "mpconn CLI does not run: %s" % e
        if "listen" not in out or "--hex" not in out:
            return "mpconn CLI at %s has no listen/--hex yet (--help: %r)" % (CLI, out[:80])
        return None

    def start_recv(self, ns, addr, key, seed, count, tmp, name):
        argv = [CLI, "listen", addr, "--count", str(count), "--hex", "--timeout", "20"]
        if key is not None:
            argv += ["--authkey", key]
        return Proc(argv, tmp, name, ns)

    def start_send(self, ns, addr, key, seed, count, tmp, name):
        path = os.path.join(str(tmp), name + ".in")
        with open(path, "wb") as f:
            for m in peermod.plan(seed, count):
                f.write(m.hex().encode() + b"\n")
        argv = [CLI, "send", addr, "--hex", "--timeout", "30"]
        if key is not None:
            argv += ["--authkey", key]
        return Proc(argv, tmp, name, ns, stdin_path=path)

    def messages(self, proc):
        data = proc.stdout_bytes()
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        return [bytes.fromhex(line.decode()) for line in lines]

    def result(self, proc, rc, seed, count):
        return line_result(self, proc, rc, seed, count)


class LuaPeer:
    """The mpconn Lua module through tests/reliability/peer.lua (records of
    8-byte length + bytes on stdin/stdout)."""
    label = "lua"

    def unavailable(self):
        if not LUA:
            return "no lua5.4 interpreter"
        if not _can_run([LUA, "-e", 'require "mpconn"'] if False else
                        ["env", "LUA_CPATH=%s/?.so;;" % LUA_DIR, "LUA_PATH=%s/?.lua;;" % LUA_DIR,
                         LUA, "-e", 'require "mpconn"']):
            return "the mpconn Lua module is not loadable from %s" % LUA_DIR
        return None

    def _argv(self, mode, addr, key, extra=()):
        argv = [LUA, os.path.join(HERE, "peer.lua"), mode, addr] + list(extra)
        if key is not None:
            argv += ["--authkey", key]
        return argv

    def start_recv(self, ns, addr, key, seed, count, tmp, name):
        return Proc(self._argv("listen", addr, key, ["--count", str(count)]), tmp, name, ns, env=lua_env())

    def start_send(self, ns, addr, key, seed, count, tmp, name):
        path = os.path.join(str(tmp), name + ".in")
        with open(path, "wb") as f:
            for m in peermod.plan(seed, count):
                f.write(len(m).to_bytes(8, "big") + m)
        return Proc(self._argv("send", addr, key), tmp, name, ns, stdin_path=path, env=lua_env())

    def start_bigsend(self, ns, addr, key, size, tmp, name):
        return Proc(self._argv("bigsend", addr, key, ["--size", str(size)]), tmp, name, ns, env=lua_env())

    def start_bigrecv(self, ns, addr, key, size, tmp, name):
        return Proc(self._argv("listen", addr, key, ["--count", "1"]), tmp, name, ns, env=lua_env())

    def messages(self, proc):
        data = proc.stdout_bytes()
        out, pos = [], 0
        while pos + 8 <= len(data):
            n = int.from_bytes(data[pos:pos + 8], "big")
            if pos + 8 + n > len(data):
                break
            out.append(data[pos + 8:pos + 8 + n])
            pos += 8 + n
        return out

    def result(self, proc, rc, seed, count):
        return line_result(self, proc, rc, seed, count)


def line_result(kind, proc, rc, seed, count):
    chk = peermod.Checker(seed, count)
    try:
        msgs = kind.messages(proc)
    except ValueError as e:
        msgs = []
        chk.bad += 1
        chk.first_bad = "unparsable output: %s" % e
    for m in msgs:
        chk.check(m)
    err = None
    if rc is None:
        err = "HANG: still running at the deadline (killed)"
    elif rc != 0:
        lines = [ln for ln in proc.stderr().strip().splitlines() if not ln.startswith(("listening on", "connected"))]
        err = " | ".join(lines) or "exit %s, no message" % rc
    return {"received": chk.received, "ok": chk.ok, "bad": chk.bad, "first_bad": chk.first_bad,
            "sent": None, "error": err}


PEERS = {
    "py3.11": PyPeer("py3.11", shutil.which("python3"), "stock"),
    "py3.13": PyPeer("py3.13", PY313, "stock"),
    "mpconn-py": PyPeer("mpconn-py", MPCONN_PY, "mpconn"),
    "c-cli": CliPeer(),
    "lua": LuaPeer(),
}


def get_peer(name):
    p = PEERS[name]
    why = p.unavailable()
    if why:
        if name == "py3.11":
            pytest.fail("the machine's python3 must always be available: " + why)
        pytest.skip(why)
    return p


# ---------------------------------------------------------------------------
# Network namespaces
# ---------------------------------------------------------------------------
def sh(*argv, check=True):
    r = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(argv), r.stdout.decode("utf-8", "replace").strip()))
    return r


class Hosts:
    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.a, self.r, self.b = ("mpc-%s-%s" % (tag, x) for x in "arb")
        self.a_ip, self.ra_ip, self.rb_ip, self.b_ip = "10.200.1.2", "10.200.1.1", "10.200.2.1", "10.200.2.2"
        self.veth_ra, self.veth_rb = "mr%sa" % tag, "mr%sb" % tag  # r's ends
        self.veth_a, self.veth_b = "ma%s" % tag, "mb%s" % tag
        self.created = []
        self.shaped = False

    def setup(self):
        for ns in (self.a, self.r, self.b):
            sh("ip", "netns", "add", ns)
            self.created.append(ns)
        for mine, theirs, ns in ((self.veth_a, self.veth_ra, self.a), (self.veth_b, self.veth_rb, self.b)):
            sh("ip", "link", "add", mine, "type", "veth", "peer", "name", theirs)
            sh("ip", "link", "set", mine, "netns", ns)
            sh("ip", "link", "set", theirs, "netns", self.r)
        cfg = ((self.a, self.veth_a, self.a_ip), (self.r, self.veth_ra, self.ra_ip),
               (self.r, self.veth_rb, self.rb_ip), (self.b, self.veth_b, self.b_ip))
        for ns, dev, ip in cfg:
            sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        for ns in (self.a, self.r, self.b):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.a, "route", "add", "default", "via", self.ra_ip)
        sh("ip", "-n", self.b, "route", "add", "default", "via", self.rb_ip)
        sh("ip", "netns", "exec", self.r, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")

    def teardown(self):
        for ns in self.created:
            r = sh("ip", "netns", "pids", ns, check=False)
            for pid in r.stdout.decode().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ValueError, ProcessLookupError):
                    pass
        for ns in reversed(self.created):
            sh("ip", "netns", "del", ns, check=False)
        self.created = []

    def tbf(self, on, rate="50mbit"):
        for dev in (self.veth_ra, self.veth_rb):
            sh("tc", "-n", self.r, "qdisc", "del", "dev", dev, "root", check=False)
            if on:
                sh("tc", "-n", self.r, "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate,
                   "burst", "32kbit", "latency", "50ms")
        self.shaped = on

    def netem_available(self):
        """Tries to add a netem qdisc on r's veth to b; returns (ok, reason)."""
        r = sh("tc", "-n", self.r, "qdisc", "add", "dev", self.veth_rb, "root", "netem",
               "delay", "2ms", "1ms", "loss", "0.5%", check=False)
        text = r.stdout.decode("utf-8", "replace").strip()
        if r.returncode != 0:
            return False, text or "tc exited %d" % r.returncode
        return True, ""

    def clear_qdisc(self):
        for dev in (self.veth_ra, self.veth_rb):
            sh("tc", "-n", self.r, "qdisc", "del", "dev", dev, "root", check=False)
        self.shaped = False

    def bytes_received(self, ns, port):
        """Bytes received so far on the established TCP connection(s) whose
        local port is port in namespace ns (from `ss -tin`)."""
        r = sh("ip", "netns", "exec", ns, "ss", "-tinH", "state", "established", "sport", "=", ":%d" % port,
               check=False)
        total = 0
        for m in re.finditer(r"bytes_received:(\d+)", r.stdout.decode()):
            total += int(m.group(1))
        return total


@pytest.fixture(scope="session")
def hosts():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (euid %d): fault tests across hosts skipped" % os.geteuid())
    if not shutil.which("ip"):
        pytest.skip("iproute2 (`ip`) is not installed: fault tests across hosts skipped")
    h = Hosts()
    try:
        h.setup()
    except Exception as e:  # noqa: BLE001
        h.teardown()
        pytest.skip("cannot create network namespaces here: %s" % e)
    yield h
    h.teardown()


def start_proxy(hosts, upstream, tmp, name, seed, extra=()):
    stats = os.path.join(str(tmp), name + ".stats.json")
    argv = [sys.executable, os.path.join(HERE, "faultproxy.py"), "--listen", hosts.ra_ip + ":0",
            "--upstream", upstream, "--seed", str(seed), "--stats-file", stats] + list(extra)
    p = Proc(argv, tmp, name, hosts.r)
    m = p.wait_line(r"faultproxy listening on (\S+)", stream="out")
    p.addr = m.group(1)
    p.stats_path = stats
    return p


def stop_proxy(p):
    p.kill(signal.SIGTERM)
    try:
        with open(p.stats_path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}
