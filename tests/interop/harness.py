"""Process plumbing for the interop tests: interpreters, the CLI, deadlines.

Every child process gets a deadline; a child that outlives it is killed and
the test fails with everything it printed.  Output is drained by threads from
the moment a child starts, so a chatty child (32 MiB of hex) never blocks on a
full pipe while the test waits on its peer.
"""
import os
import re
import select
import shutil
import subprocess
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "peer.py")

# The CPython minors the suite expects to find under pyenv; a missing one is a
# visible skip.  Any other pyenv interpreter found is added as well.
EXPECTED_MINORS = ["2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]


class Interp(object):
    """One stock CPython used as a peer.  path None = missing (skip)."""

    def __init__(self, label, path, version, skip_reason=None):
        self.label = label
        self.path = path
        self.version = version
        self.skip_reason = skip_reason

    @property
    def version_tuple(self):
        return tuple(int(x) for x in self.version.split(".")[:2]) if self.version else (0, 0)

    @property
    def modern(self):
        """True for CPython >= 3.12 (the {sha256} handshake dialect)."""
        return self.version_tuple >= (3, 12)

    def __repr__(self):
        return self.label


def _probe(path):
    """(version, realpath of sys.executable) of an interpreter, or None."""
    try:
        out = subprocess.check_output(
            [path, "-c", "import sys,os; print('%d.%d.%d' % sys.version_info[:3]); "
                         "print(os.path.realpath(sys.executable))"],
            stderr=subprocess.STDOUT, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.decode("utf-8", "replace").split()
    return (lines[0], lines[1]) if len(lines) >= 2 else None


def _pyenv_root():
    root = os.environ.get("PYENV_ROOT")
    if root:
        return root
    exe = shutil.which("pyenv")
    if exe:
        try:
            return subprocess.check_output([exe, "root"], timeout=30).decode().strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return os.path.expanduser("~/.pyenv")


def discover_interpreters():
    """The machine's python3 first (never skipped), then every pyenv CPython."""
    found = []
    py3 = shutil.which("python3")
    probe = _probe(py3) if py3 else None
    if probe is None:
        # The machine's python3 is mandatory: make its absence a failure.
        found.append(Interp("python3", None, None, skip_reason="FAIL: no working python3 on PATH"))
        py3_real = None
    else:
        found.append(Interp("python3 (%s)" % probe[0], py3, probe[0]))
        py3_real = probe[1]
    seen = {py3_real}
    minors = set()
    if probe:
        minors.add(".".join(probe[0].split(".")[:2]))
    root = _pyenv_root()
    vdir = os.path.join(root, "versions")
    entries = sorted(os.listdir(vdir)) if os.path.isdir(vdir) else []

    def vkey(name):
        return [int(x) if x.isdigit() else 0 for x in re.split(r"[.\-]", name)]

    for name in sorted(entries, key=vkey):
        path = os.path.join(vdir, name, "bin", "python")
        if not os.path.exists(path):
            continue
        p = _probe(path)
        if p is None or p[1] in seen:
            if p is not None:
                minors.add(".".join(p[0].split(".")[:2]))
            continue
        seen.add(p[1])
        minors.add(".".join(p[0].split(".")[:2]))
        found.append(Interp(p[0], path, p[0]))
    for minor in EXPECTED_MINORS:
        if minor not in minors:
            found.append(Interp(minor + " (missing)", None, minor,
                                skip_reason="no CPython %s interpreter under %s/versions" % (minor, root)))
    return found


_INTERPS = []


def interpreters():
    """discover_interpreters(), computed once per pytest process."""
    if not _INTERPS:
        _INTERPS.extend(discover_interpreters())
    return list(_INTERPS)


def require_interp(interp):
    if interp.path is None:
        if interp.label.startswith("python3"):
            pytest.fail(interp.skip_reason)
        pytest.skip(interp.skip_reason)


def cli_path():
    path = os.environ.get("MPCONN_CLI")
    if not path:
        pytest.fail("MPCONN_CLI is not set: point it at the built mpconn CLI "
                    "(ctest sets it to $<TARGET_FILE:mpconn_cli>; by hand: "
                    "MPCONN_CLI=build/bin/mpconn python3 -m pytest tests/interop)")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("MPCONN_CLI=%s is not an executable file" % path)
    return path


class Child(object):
    """A child process whose stdout and stderr are drained from the start."""

    def __init__(self, argv, name, stdin_data=None, env=None, deadline=60.0):
        self.name = name
        self.argv = argv
        self.deadline = time.monotonic() + deadline
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self._chunks = {"stdout": [], "stderr": []}
        self._cond = threading.Condition()
        self._threads = []
        for stream in ("stdout", "stderr"):
            t = threading.Thread(target=self._drain, args=(stream,))
            t.daemon = True
            t.start()
            self._threads.append(t)
        if stdin_data is not None:
            t = threading.Thread(target=self._feed, args=(stdin_data,))
            t.daemon = True
            t.start()
            self._threads.append(t)

    @property
    def pid(self):
        return self.proc.pid

    def _drain(self, stream):
        fd = getattr(self.proc, stream).fileno()
        while True:
            data = os.read(fd, 1 << 20)
            with self._cond:
                if not data:
                    self._chunks[stream].append(None)
                    self._cond.notify_all()
                    return
                self._chunks[stream].append(data)
                self._cond.notify_all()

    def _feed(self, data):
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # the child exited early; its output tells why

    def text(self, stream):
        with self._cond:
            return b"".join(c for c in self._chunks[stream] if c).decode("utf-8", "replace")

    def data(self, stream):
        with self._cond:
            return b"".join(c for c in self._chunks[stream] if c)

    def wait_for_line(self, stream, pattern, timeout=15.0):
        """Waits until a line of stream matches the regex; returns the match."""
        rx = re.compile(pattern, re.M)
        end = min(time.monotonic() + timeout, self.deadline)
        with self._cond:
            while True:
                text = b"".join(c for c in self._chunks[stream] if c).decode("utf-8", "replace")
                m = rx.search(text)
                if m:
                    return m
                closed = self._chunks[stream] and self._chunks[stream][-1] is None
                left = end - time.monotonic()
                if closed or left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
        self.kill()
        pytest.fail("%s: no line matching %r within %.0fs\n%s" % (
            self.name, pattern, timeout, self.describe()))

    def wait_text(self, stream, needle, timeout=15.0):
        return self.wait_for_line(stream, re.escape(needle), timeout)

    def finish(self, timeout=None):
        """Waits for exit (up to the deadline); returns the exit status."""
        left = self.deadline - time.monotonic() if timeout is None else timeout
        try:
            self.proc.wait(timeout=max(left, 0.1))
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("%s did not finish before its deadline\n%s" % (self.name, self.describe()))
        for t in self._threads:
            t.join(10)
        return self.proc.returncode

    def running(self):
        return self.proc.poll() is None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def describe(self, limit=4000):
        def clip(s):
            return s if len(s) <= limit else s[:limit // 2] + "\n...[%d chars]...\n" % len(s) + s[-limit // 2:]
        return "--- %s: %s (rc=%s)\n[stdout]\n%s\n[stderr]\n%s" % (
            self.name, " ".join(self.argv[:8]) + (" ..." if len(self.argv) > 8 else ""),
            self.proc.returncode, clip(self.text("stdout")), clip(self.text("stderr")))


def cleanup(*children):
    for c in children:
        if c is not None:
            c.kill()


def listening_address(child, timeout=15.0):
    """The address from the CLI's 'listening on ADDRESS' stderr line."""
    return child.wait_for_line("stderr", r"^listening on (\S+)\s*$", timeout).group(1)


def peer_address(child, timeout=30.0):
    """The address from a peer.py listener's 'ADDRESS ...' stdout line."""
    return child.wait_for_line("stdout", r"^ADDRESS (\S+)\s*$", timeout).group(1)


def vm_status(pid):
    """{'VmRSS': kB, 'VmPeak': kB, 'VmHWM': kB, ...} from /proc/PID/status."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Vm"):
                key, val = line.split(":", 1)
                out[key] = int(val.split()[0])
    return out


def proc_io(pid):
    """{'rchar': n, 'wchar': n, ...} from /proc/PID/io."""
    out = {}
    with open("/proc/%d/io" % pid) as f:
        for line in f:
            key, val = line.split(":", 1)
            out[key] = int(val)
    return out


def wait_until(predicate, timeout, what):
    """Polls predicate() every 10 ms until it is true; fails after timeout."""
    end = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > end:
            pytest.fail("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(0.01)
