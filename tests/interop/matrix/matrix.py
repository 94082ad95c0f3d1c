"""The interop matrix engine: implementations, cells, peer processes, verdicts.

A cell is (server implementation, client implementation, address family,
authkey case).  It runs one server process and one client process (the CLI
client against the CLI server: one `mpconn send` per message, because
`mpconn listen --echo` answers each message at once while `mpconn send`
sends all of its messages before it reads).  The client sends every message
of the size sequence; the server echoes each back; both sides check every
message byte for byte against the deterministic pattern (py_peer.pattern),
and the harness checks what each side reported (length, SHA-256, verdict)
against its own expectation.  Data itself is never printed.

With a wrong key both sides must fail with an authentication error (and no
message may pass); the error text each side saw is recorded for the table.

Cells run concurrently on a small thread pool (MATRIX_WORKERS, default 3),
heaviest first.  Every child process has a deadline and is killed past it.
"""
import binascii
import collections
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import py_peer  # noqa: E402  (the pattern lives in the Python peer: one definition)
sys.path.insert(1, os.path.dirname(HERE))
from harness import _probe  # noqa: E402  (interpreter probing: one definition, tests/interop)

PY_PEER = os.path.join(HERE, "py_peer.py")
LUA_PEER = os.path.join(HERE, "lua_peer.lua")

SMALL = [0, 1, 16384, 16385]
FULL = SMALL + [1 << 20, 64 << 20]
SEED = 1213
FAMILIES = ["tcp", "unix", "abstract"]
AUTHS = ["none", "right", "wrong"]

# The CPython minors the matrix expects under pyenv (the machine's python3
# is one of them); a missing one is a visible skip, python3 never is.
EXPECTED_MINORS = ["2.7", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]

# Per-process deadlines (seconds); MATRIX_DEADLINE_SCALE scales them (a
# test of the harness itself uses a small one).
_SCALE = float(os.environ.get("MATRIX_DEADLINE_SCALE", "1"))
DEADLINE_FULL = 180.0 * _SCALE
DEADLINE_SMALL = 60.0 * _SCALE
DEADLINE_ADDRESS = 30.0 * _SCALE


# ---------------------------------------------------------------------------
# Implementations
# ---------------------------------------------------------------------------
class Impl(object):
    """One implementation that can play server and client.

    kind: 'stock' (CPython's multiprocessing.connection), 'mpconn-py',
    'cli' (`mpconn listen/send`), 'c' (c_peer on libmpconn), 'lua'.
    skip: reason the cells are skipped (missing optional piece);
    broken: reason the cells fail (a required piece is missing)."""

    def __init__(self, name, kind, exe=None, skip=None, broken=None, env=None, version=None):
        self.name = name
        self.kind = kind
        self.exe = exe
        self.skip = skip
        self.broken = broken
        self.env = env or {}
        self.version = version

    @property
    def ident(self):
        """The name in characters pytest -k accepts ("stock-3.11.7-python3")."""
        return re.sub(r"[^A-Za-z0-9.]+", "-", self.name).strip("-")

    @property
    def ours(self):
        return self.kind != "stock"

    def peer_argv(self, role, address, sizes, mode):
        """argv of a generic peer (not the CLI)."""
        tail = [role, address, "--sizes", ",".join(str(s) for s in sizes),
                "--seed", str(SEED)]
        if role == "server":
            tail += ["--mode", mode]
        if self.kind == "stock":
            return [self.exe, PY_PEER, "--impl", "stock"] + tail
        if self.kind == "mpconn-py":
            return [self.exe, PY_PEER, "--impl", "mpconn"] + tail
        if self.kind == "c":
            return [self.exe] + tail
        if self.kind == "lua":
            return [self.exe, LUA_PEER] + tail
        raise ValueError(self.kind)

    def __repr__(self):
        return self.name


def _pyenv_versions():
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    vdir = os.path.join(root, "versions")
    names = sorted(os.listdir(vdir)) if os.path.isdir(vdir) else []

    def vkey(name):
        return [int(x) if x.isdigit() else 0 for x in re.split(r"[.\-]", name)]

    return vdir, [os.path.join(vdir, n, "bin", "python") for n in sorted(names, key=vkey)]


def stock_impls():
    """The machine's python3 first (never skipped), then every other pyenv
    CPython, then a skip entry for every expected minor not found."""
    found = []
    py3 = shutil.which("python3")
    probe = _probe(py3) if py3 else None
    minors = set()
    seen = set()
    if probe is None:
        found.append(Impl("stock python3", "stock",
                          broken="the machine's python3 is missing or does not run"))
    else:
        # The real interpreter, not the pyenv shim (a shell script).
        found.append(Impl("stock %s (python3)" % probe[0], "stock", exe=probe[1], version=probe[0]))
        seen.add(probe[1])
        minors.add(".".join(probe[0].split(".")[:2]))
    vdir, paths = _pyenv_versions()
    for path in paths:
        if not os.path.exists(path):
            continue
        p = _probe(path)
        if p is None or p[1] in seen:
            continue
        seen.add(p[1])
        minors.add(".".join(p[0].split(".")[:2]))
        found.append(Impl("stock %s" % p[0], "stock", exe=p[1], version=p[0]))
    for minor in EXPECTED_MINORS:
        if minor not in minors:
            found.append(Impl("stock %s" % minor, "stock",
                              skip="no CPython %s interpreter (looked under %s)" % (minor, vdir)))
    return found


def our_impls():
    impls = []
    # The C library directly.
    path = os.environ.get("MPCONN_C_PEER")
    if not path or not os.access(path, os.X_OK):
        impls.append(Impl("c-lib", "c", broken="MPCONN_C_PEER=%r is not the built c_peer" % path))
    else:
        impls.append(Impl("c-lib", "c", exe=path))
    # The CLI.
    path = os.environ.get("MPCONN_CLI")
    if not path or not os.access(path, os.X_OK):
        impls.append(Impl("cli", "cli", broken="MPCONN_CLI=%r is not the built mpconn CLI" % path))
    else:
        impls.append(Impl("cli", "cli", exe=path))
    # mpconn Python: the interpreter that has the package installed.
    py = os.environ.get("MPCONN_MATRIX_PYTHON") or sys.executable
    try:
        subprocess.check_output([py, "-c", "import mpconn"], stderr=subprocess.STDOUT, timeout=60)
        impls.append(Impl("mpconn-py", "mpconn-py", exe=py))
    except (OSError, subprocess.SubprocessError) as exc:
        impls.append(Impl("mpconn-py", "mpconn-py",
                          broken="%s cannot import mpconn (pip install the project into it): %s"
                          % (py, getattr(exc, "output", exc))))
    # Lua: a visible skip when the module is not built.
    lua_dir = os.environ.get("MPCONN_LUA_DIR", "")
    lua = os.environ.get("MPCONN_LUA_EXE") or shutil.which("lua5.4") or shutil.which("lua")
    so = os.path.join(lua_dir, "mpconn", "core.so")
    if not lua_dir or not os.path.exists(so):
        impls.append(Impl("lua", "lua", skip="Lua module not built (no %s)" % so))
    elif not lua:
        impls.append(Impl("lua", "lua", skip="Lua module built but no lua5.4 interpreter"))
    else:
        env = {"LUA_PATH": os.path.join(lua_dir, "?.lua") + ";;",
               "LUA_CPATH": os.path.join(lua_dir, "?.so") + ";;"}
        impls.append(Impl("lua", "lua", exe=lua, env=env))
    return impls


# ---------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------
class Cell(object):
    def __init__(self, index, server, client, family, auth, group):
        self.index = index
        self.server = server
        self.client = client
        self.family = family
        self.auth = auth
        self.group = group  # table section
        if auth == "right":
            self.sizes = FULL
        elif auth == "none" and none_full(self):
            self.sizes = FULL
        else:
            self.sizes = SMALL
        self.result = None

    @property
    def pair(self):
        return "%s -> %s" % (self.server.name, self.client.name)

    @property
    def id(self):
        """server:client:family:auth, in characters pytest -k accepts."""
        return "%s:%s:%s:%s" % (self.server.ident, self.client.ident, self.family, self.auth)

    def weight(self):
        """Rough cost, for scheduling the heaviest cells first."""
        w = sum(self.sizes) / float(1 << 20) + 1
        for impl in (self.server, self.client):
            if impl.kind == "cli":
                w *= 2
            if impl.kind == "stock" and impl.version and impl.version < "3.8":
                w *= 1.3
        return w


def none_mode():
    """MATRIX_NONE_SIZES: which no-key cells get the full size sequence:
    'subset' (default: ours <-> ours and the control row; the others get
    the small sizes, to keep the run inside its time budget), 'full', or
    'small'.  Without a key only the handshake is skipped: the framing is
    the same code as with a key, which every pair runs at full size."""
    mode = os.environ.get("MATRIX_NONE_SIZES", "subset")
    if mode not in ("subset", "full", "small"):
        raise ValueError("MATRIX_NONE_SIZES=%r: subset, full or small" % mode)
    return mode


def none_full(cell):
    mode = none_mode()
    if mode == "subset":
        return (cell.server.ours and cell.client.ours) or not (cell.server.ours or
                                                                cell.client.ours)
    return mode == "full"


class Result(object):
    def __init__(self, status, reason="", detail="", seconds=0.0, errors=None):
        self.status = status  # "pass" | "FAIL" | "skip"
        self.reason = reason
        self.detail = detail
        self.seconds = seconds
        self.errors = errors or {}  # {"server": text, "client": text} for a wrong key


def build_cells():
    stocks = stock_impls()
    ours = our_impls()
    python3 = stocks[0]
    pairs = []
    for s in ours:
        for c in ours:
            pairs.append((s, c, "ours <-> ours"))
    for s in ours:
        for c in stocks:
            pairs.append((s, c, "ours (server) <-> stock CPython (client)"))
    for s in stocks:
        for c in ours:
            pairs.append((s, c, "stock CPython (server) <-> ours (client)"))
    pairs.append((python3, python3, "control: stock <-> stock"))
    cells = []
    for s, c, group in pairs:
        for fam in FAMILIES:
            for auth in AUTHS:
                cells.append(Cell(len(cells), s, c, fam, auth, group))
    return cells


# ---------------------------------------------------------------------------
# Expected messages
# ---------------------------------------------------------------------------
_block = py_peer.pattern_block(SEED)
_sha_cache = {}
_sha_lock = threading.Lock()


def expected(index, size):
    return py_peer.pattern(_block, index, size)


def expected_sha(index, size, hex_text=False):
    """SHA-256 of message (index, size), or of its lowercase hex text."""
    key = (index, size, hex_text)
    with _sha_lock:
        if key in _sha_cache:
            return _sha_cache[key]
    data = expected(index, size)
    if hex_text:
        data = binascii.hexlify(data)
    h = hashlib.sha256(data).hexdigest()
    with _sha_lock:
        _sha_cache[key] = h
    return h


def scratch_root():
    """Where big scratch files go: RAM (/dev/shm) when there is one."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        return shm
    return None


class HexFiles(object):
    """stdin files for `mpconn send --hex`: one message per line."""

    def __init__(self, root):
        self.root = root
        self._lock = threading.Lock()
        self._files = {}

    def get(self, indices_sizes):
        key = tuple(indices_sizes)
        with self._lock:
            path = self._files.get(key)
            if path is None:
                path = os.path.join(self.root, "msgs-%d.hex" % len(self._files))
                with open(path, "wb") as f:
                    for i, size in key:
                        f.write(binascii.hexlify(expected(i, size)))
                        f.write(b"\n")
                self._files[key] = path
        return path


# ---------------------------------------------------------------------------
# Child processes
# ---------------------------------------------------------------------------
class Child(object):
    """A child with a deadline whose stdout and stderr are drained by threads
    from the start, or whose stdout goes to a file (stdout_path: the CLI's
    echo of 64 MiB messages; the harness reads it afterwards instead of
    pulling it through Python threads while other cells run)."""

    def __init__(self, argv, name, env, deadline, stdin_path=None, stdout_path=None):
        self.name = name
        self.argv = argv
        self.deadline = time.monotonic() + deadline
        self.timed_out = False
        self.stdout_path = stdout_path
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        stdout = open(stdout_path, "wb") if stdout_path else subprocess.PIPE
        try:
            self.proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout,
                                         stderr=subprocess.PIPE, env=env)
        finally:
            if stdin_path:
                stdin.close()
            if stdout_path:
                stdout.close()
        self._chunks = {"stdout": [], "stderr": []}
        self._closed = {"stdout": bool(stdout_path), "stderr": False}
        self._cond = threading.Condition()
        streams = ("stderr",) if stdout_path else ("stdout", "stderr")
        self._threads = [threading.Thread(target=self._drain, args=(s,), daemon=True)
                         for s in streams]
        for t in self._threads:
            t.start()

    def _drain(self, stream):
        fd = getattr(self.proc, stream).fileno()
        while True:
            data = os.read(fd, 1 << 20)
            with self._cond:
                if not data:
                    self._closed[stream] = True
                    self._cond.notify_all()
                    return
                self._chunks[stream].append(data)
                self._cond.notify_all()

    def data(self, stream, limit=None):
        if stream == "stdout" and self.stdout_path:
            with open(self.stdout_path, "rb") as f:
                return f.read(limit if limit is not None else -1)
        with self._cond:
            return b"".join(self._chunks[stream])

    def text(self, stream, limit=None):
        if stream == "stdout" and self.stdout_path and limit is not None:
            size = os.path.getsize(self.stdout_path)
            d = self.data(stream, limit)
            if size > limit:
                d += b"\n...[%d bytes in all]" % size
            return d.decode("utf-8", "replace")
        d = self.data(stream)
        if limit is not None and len(d) > limit:
            d = d[:limit // 2] + (b"\n...[%d bytes]...\n" % len(d)) + d[-limit // 2:]
        return d.decode("utf-8", "replace")

    def wait_line(self, stream, pattern, timeout):
        """The first match of the regex in stream (multi-line), or None once
        the stream closed or the timeout/deadline passed."""
        rx = re.compile(pattern, re.M)
        end = min(time.monotonic() + timeout, self.deadline)
        with self._cond:
            while True:
                # Only the first 64 KiB matter for status lines.
                head = b"".join(self._chunks[stream])[:65536].decode("utf-8", "replace")
                m = rx.search(head)
                if m:
                    return m
                left = end - time.monotonic()
                if self._closed[stream] or left <= 0:
                    return None
                self._cond.wait(min(left, 1.0))

    def finish(self, timeout=None):
        """Waits for exit up to the deadline (killing it past that); returns
        the exit status (None if it had to be killed)."""
        left = self.deadline - time.monotonic() if timeout is None else timeout
        try:
            self.proc.wait(timeout=max(left, 0.1))
        except subprocess.TimeoutExpired:
            self.timed_out = True
            self.kill()
            return None
        finally:
            for t in self._threads:
                t.join(30)
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for t in self._threads:
            t.join(10)

    def describe(self, limit=3000):
        rc = self.proc.poll()
        if rc is None:
            rc = "(still running; killed after this report)"
        return "--- %s: %s\n    rc=%s%s\n[stdout]\n%s\n[stderr]\n%s" % (
            self.name, " ".join(self.argv), rc, " (killed at its deadline)" if self.timed_out else "",
            self.text("stdout", limit).rstrip(), self.text("stderr", limit).rstrip())


# ---------------------------------------------------------------------------
# Running a cell
# ---------------------------------------------------------------------------
class CellFailure(Exception):
    pass


def _env(impl, key):
    env = dict(os.environ)
    for var in ("MATRIX_AUTHKEY", "MPCONN_AUTHKEY"):
        env.pop(var, None)
    if impl.kind == "stock":
        # A stock interpreter must not see the runner's Python settings
        # (2.7 cannot read a 3.x PYTHONPATH) nor mpconn.
        for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
            env.pop(var, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(impl.env)
    if key is not None:
        env["MPCONN_AUTHKEY" if impl.kind == "cli" else "MATRIX_AUTHKEY"] = key
    return env


def _bind_address(cell, tmp):
    if cell.family == "tcp":
        return "127.0.0.1:0"
    if cell.family == "unix":
        return os.path.join(tmp, "s.sock")
    return "@mpconn-matrix-%d-%d-%s" % (os.getpid(), cell.index, secrets.token_hex(4))


def _check(cond, what, *children):
    if not cond:
        raise CellFailure(what + "\n" + "\n".join(c.describe() for c in children if c))


def _peer_reports(child, sizes):
    """Checks a generic peer's RECV lines: one per message, in order, the
    right length, 'ok' (byte-exact against the pattern on that side) and,
    when the peer can hash, the expected SHA-256."""
    lines = [l.split() for l in child.text("stdout").splitlines() if l.startswith("RECV ")]
    _check(len(lines) == len(sizes), "%s reported %d received messages, expected %d"
           % (child.name, len(lines), len(sizes)), child)
    for i, (parts, size) in enumerate(zip(lines, sizes)):
        _check(len(parts) == 5 and parts[1] == str(i) and parts[2] == str(size),
               "%s: message %d: bad report %r (expected length %d)" % (child.name, i, parts, size),
               child)
        _check(parts[4] == "ok", "%s: message %d (%d B) is not byte-exact" % (child.name, i, size),
               child)
        _check(parts[3] == "-" or parts[3] == expected_sha(i, size),
               "%s: message %d (%d B): sha256 %s, expected %s"
               % (child.name, i, size, parts[3], expected_sha(i, size)), child)


def _cli_output(child, first_index, sizes, hex_text):
    """What the CLI printed: each message, raw (`mpconn listen`) or as
    lowercase hex (`mpconn send --hex`), then a newline.  Checked message by
    message against the expected SHA-256 (of the hex text for hex), read
    straight from the file."""
    what = "hex " if hex_text else ""
    with open(child.stdout_path, "rb") as f:
        for k, size in enumerate(sizes):
            i = first_index + k
            n = 2 * size if hex_text else size
            chunk = f.read(n)
            _check(len(chunk) == n and f.read(1) == b"\n",
                   "%s: its output ends inside message %d (%d B)" % (child.name, i, size), child)
            _check(hashlib.sha256(chunk).hexdigest() == expected_sha(i, size, hex_text),
                   "%s: message %d (%d B, printed as %stext) is not byte-exact"
                   % (child.name, i, size, what), child)
            del chunk
        rest = len(f.read(1 << 16))
    _check(rest == 0, "%s: unexpected output after the last message" % child.name, child)


def _auth_error_of(child, kind):
    """The authentication error text a side reported, or None."""
    if kind == "cli":
        m = re.search(r"^mpconn: (.*authentication failed.*)$", child.text("stderr"), re.M)
        return m.group(1) if m else None
    m = re.search(r"^AUTHERROR (.*)$", child.text("stdout"), re.M)
    return m.group(1) if m else None


def run_cell(cell, hexfiles):
    """Runs one cell; returns its Result."""
    t0 = time.monotonic()
    for impl in (cell.server, cell.client):
        if impl.broken:
            return Result("FAIL", reason=impl.broken)
    for impl in (cell.server, cell.client):
        if impl.skip:
            return Result("skip", reason=impl.skip)
    key = "matrix-key-" + secrets.token_hex(8)
    server_key = client_key = None
    if cell.auth == "right":
        server_key = client_key = key
    elif cell.auth == "wrong":
        server_key, client_key = key, "wrong-key-" + secrets.token_hex(8)
    sizes = cell.sizes
    deadline = DEADLINE_FULL if sizes is FULL else DEADLINE_SMALL
    children = []
    tmp = tempfile.mkdtemp(prefix="mpm-", dir=scratch_root())
    try:
        errors = _run(cell, hexfiles, tmp, sizes, deadline, server_key, client_key, children)
        return Result("pass", seconds=time.monotonic() - t0, errors=errors)
    except CellFailure as exc:
        return Result("FAIL", reason=str(exc).split("\n", 1)[0], detail=str(exc),
                      seconds=time.monotonic() - t0)
    except Exception as exc:  # a harness bug must show up as a failed cell
        return Result("FAIL", reason="harness error: %s: %s" % (type(exc).__name__, exc),
                      detail="\n".join(c.describe() for c in children),
                      seconds=time.monotonic() - t0)
    finally:
        for c in children:
            c.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def _start_server(cell, tmp, sizes, deadline, key, children):
    srv = cell.server
    bind = _bind_address(cell, tmp)
    env = _env(srv, key)
    if srv.kind == "cli":
        argv = [srv.exe, "listen", bind, "--echo", "--timeout", str(int(deadline))]
        if cell.auth != "wrong":
            argv += ["--count", str(len(sizes))]
        child = Child(argv, "server " + srv.name, env, deadline,
                      stdout_path=os.path.join(tmp, "server.out"))
        children.append(child)
        m = child.wait_line("stderr", r"^listening on (\S+)\s*$", DEADLINE_ADDRESS)
    else:
        # `mpconn send` sends all before it reads: echo once all arrived.
        mode = "all" if cell.client.kind == "cli" else "each"
        argv = srv.peer_argv("server", bind, sizes, mode)
        child = Child(argv, "server " + srv.name, env, deadline)
        children.append(child)
        m = child.wait_line("stdout", r"^ADDRESS (\S+)\s*$", DEADLINE_ADDRESS)
    _check(m is not None, "the server did not report its address", child)
    address = m.group(1)
    if cell.family == "abstract":
        _check(address == bind, "the server bound %s, asked for %s" % (address, bind), child)
    elif cell.family == "unix":
        _check(address == bind and os.path.exists(bind),
               "the server bound %s, asked for %s" % (address, bind), child)
    else:
        _check(re.match(r"^127\.0\.0\.1:[1-9][0-9]*$", address) is not None,
               "the server reported %s for 127.0.0.1:0" % address, child)
    return child, address


def _run(cell, hexfiles, tmp, sizes, deadline, server_key, client_key, children):
    server, address = _start_server(cell, tmp, sizes, deadline, server_key, children)
    cli = cell.client
    env = _env(cli, client_key)
    clients = []  # (child, first message index, sizes)
    if cli.kind == "cli":
        base = [cli.exe, "send", address, "--hex", "--timeout", str(int(deadline))]
        if cell.server.kind == "cli" and cell.auth != "wrong":
            # One connection per message (see the module docstring).
            for i, size in enumerate(sizes):
                c = Child(base + ["--recv", "1"], "client %s #%d" % (cli.name, i), env, deadline,
                          stdin_path=hexfiles.get([(i, size)]),
                          stdout_path=os.path.join(tmp, "client-%d.out" % i))
                children.append(c)
                clients.append((c, i, [size]))
                c.finish()
                if c.proc.returncode != 0:
                    break
        else:
            c = Child(base + ["--recv", str(len(sizes))], "client " + cli.name, env, deadline,
                      stdin_path=hexfiles.get(list(enumerate(sizes))),
                      stdout_path=os.path.join(tmp, "client.out"))
            children.append(c)
            clients.append((c, 0, sizes))
            c.finish()
    else:
        c = Child(cli.peer_argv("client", address, sizes, None), "client " + cli.name, env,
                  deadline)
        children.append(c)
        clients.append((c, 0, sizes))
        c.finish()

    if cell.auth == "wrong":
        c = clients[0][0]
        cerr = _auth_error_of(c, cli.kind)
        want_rc = 4 if cli.kind == "cli" else 3
        _check(c.proc.returncode == want_rc and cerr,
               "the client did not fail with an authentication error (wanted exit %d)" % want_rc,
               c, server)
        if cell.server.kind == "cli":
            # `mpconn listen` reports the rejected client and serves on.
            m = server.wait_line("stderr", r"^mpconn: client rejected: .*authentication failed.*$",
                                 DEADLINE_ADDRESS)
            _check(m is not None, "the server did not report an authentication error", server, c)
            serr = m.group(0)[len("mpconn: "):]
            server.kill()
        else:
            rc = server.finish()
            serr = _auth_error_of(server, cell.server.kind)
            _check(rc == 3 and serr, "the server did not fail with an authentication error "
                   "(wanted exit 3)", server, c)
            _check("ACCEPTED" not in server.text("stdout"), "the server accepted the client",
                   server, c)
        if cli.kind == "cli":
            got_past = bool(c.data("stdout").strip())
        else:
            got_past = re.search(r"^(CONNECTED|RECV)", c.text("stdout"), re.M) is not None
        _check(not got_past, "the client got past the handshake", c, server)
        return {"server": serr, "client": cerr}

    for c, first, csizes in clients:
        _check(c.proc.returncode == 0, "the client failed", c, server)
    rc = server.finish()
    _check(rc == 0, "the server failed", server, *[c for c, _, _ in clients])
    if cell.server.kind == "cli":
        _cli_output(server, 0, sizes, hex_text=False)
    else:
        _peer_reports(server, sizes)
    for c, first, csizes in clients:
        if cli.kind == "cli":
            _cli_output(c, first, csizes, hex_text=True)
        else:
            _peer_reports(c, csizes)
    return {}


# ---------------------------------------------------------------------------
# The whole run
# ---------------------------------------------------------------------------
class Matrix(object):
    def __init__(self):
        self.cells = build_cells()
        self.selected = None  # set of cell ids chosen by pytest (-k)
        self.ran = False
        self.seconds = 0.0
        self.cpu = (0.0, 0.0)  # CPU seconds: this process, the peers
        self.workers = int(os.environ.get("MATRIX_WORKERS", "3"))
        self._lock = threading.Lock()

    def execute(self):
        if self.ran:
            return
        self.ran = True
        todo = [c for c in self.cells if self.selected is None or c.id in self.selected]
        todo.sort(key=lambda c: -c.weight())
        t0 = time.monotonic()
        cpu0 = os.times()
        # One line per finished cell, as it finishes (pytest captures the
        # terminal until the end): $MPCONN_MATRIX_OUT.log.
        out = os.environ.get("MPCONN_MATRIX_OUT")
        if out:
            os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        log = open(out + ".log", "w") if out else None
        hexroot = tempfile.mkdtemp(prefix="mpm-hex-", dir=scratch_root())
        hexfiles = HexFiles(hexroot)
        done = [0]

        def one(cell):
            cell.result = run_cell(cell, hexfiles)
            with self._lock:
                done[0] += 1
                if log:
                    log.write("[%3d/%d %6.1fs] %-4s %5.2fs %s %s\n" % (
                        done[0], len(todo), time.monotonic() - t0, cell.result.status,
                        cell.result.seconds, cell.id, cell.result.reason[:200]))
                    log.flush()

        try:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                list(pool.map(one, todo))
        finally:
            shutil.rmtree(hexroot, ignore_errors=True)
            if log:
                log.close()
        self.seconds = time.monotonic() - t0
        cpu1 = os.times()
        self.cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system,
                    cpu1.children_user + cpu1.children_system
                    - cpu0.children_user - cpu0.children_system)

    # -- the table --------------------------------------------------------
    def table_lines(self):
        cells = [c for c in self.cells if c.result is not None]
        if not cells:
            return []
        mark = {"pass": "ok", "FAIL": "FAIL", "skip": "skip"}
        by_pair = collections.OrderedDict()
        for c in self.cells:
            by_pair.setdefault((c.group, c.pair), {})[(c.family, c.auth)] = c
        width = max(len(p) for _, p in by_pair) + 2
        col = 6
        fam_w = col * len(AUTHS)
        out = []
        head1 = "server -> client".ljust(width) + "".join("| " + f.ljust(fam_w - 1)
                                                          for f in FAMILIES)
        head2 = " " * width + "".join("|" + "".join((" " + a).ljust(col) for a in AUTHS)
                                      for _ in FAMILIES)
        group = None
        for (g, pair), row in by_pair.items():
            if not any(c.result is not None for c in row.values()):
                continue
            if g != group:
                group = g
                out.append("")
                out.append("== %s ==" % g)
                out.append(head1.rstrip())
                out.append(head2.rstrip())
                out.append("-" * len(head2))
            line = pair.ljust(width)
            for f in FAMILIES:
                line += "|" + "".join(
                    (" " + (mark[row[(f, a)].result.status] if row[(f, a)].result else "-"))
                    .ljust(col) for a in AUTHS)
            out.append(line.rstrip())
        counts = collections.Counter(c.result.status for c in cells)
        out.append("")
        small = " ".join(str(s) for s in SMALL) + " B"
        none_sizes = {"subset": "the same for ours <-> ours and the control row, %s for the "
                                "pairs with a stock CPython" % small,
                      "full": "the same", "small": small}[none_mode()]
        out.append("Messages, client -> server -> back, each checked byte-exact (pattern + "
                   "sha256) on both sides:")
        out.append("  right key: %s B; no key: %s;" % (" ".join(str(s) for s in FULL), none_sizes))
        out.append("  wrong key: no message may pass and both sides must report an "
                   "authentication error.")
        out.append("cells: %d passed, %d failed, %d skipped (of %d); %.1f s with %d workers"
                   % (counts["pass"], counts["FAIL"], counts["skip"], len(cells), self.seconds,
                      self.workers))
        out.append("CPU: harness %.1f s, peers %.1f s" % self.cpu)
        reasons = collections.Counter(c.result.reason for c in cells if c.result.status == "skip")
        for reason, n in sorted(reasons.items()):
            out.append("  skipped %d: %s" % (n, reason))
        # Which authentication error each implementation reported.
        seen = collections.OrderedDict()
        for c in cells:
            if c.auth == "wrong" and c.result.status == "pass":
                for role, impl in (("server", c.server), ("client", c.client)):
                    kind = impl.name if impl.ours else "stock CPython"
                    if impl.kind == "stock":
                        kind = "stock %s" % impl.version
                    seen.setdefault((role, kind), collections.Counter())[c.result.errors[role]] += 1
        if seen:
            out.append("")
            out.append("wrong key: the authentication error each side reported (cells):")
            for (role, kind), texts in sorted(seen.items(), key=lambda kv: kv[0][0] != "server"):
                for text, n in texts.items():
                    out.append("  %-6s %-22s %3d x %s" % (role, kind, n, text))
        fails = [c for c in cells if c.result.status == "FAIL"]
        if fails:
            out.append("")
            out.append("FAILED cells:")
            for c in fails:
                out.append("  %s: %s" % (c.id, c.result.reason))
        slow = sorted(cells, key=lambda c: -c.result.seconds)[:5]
        out.append("")
        out.append("slowest cells: " + ", ".join("%s %.1fs" % (c.id, c.result.seconds)
                                                 for c in slow))
        return out


_MATRIX = []


def matrix():
    """The one Matrix of this process (built on first use)."""
    if not _MATRIX:
        _MATRIX.append(Matrix())
    return _MATRIX[0]
