"""Shared fixtures for the mpconn Python suite.

No fixed ports (port 0 and the bound address), scratch paths under tmp_path,
and every test runs under a deadline (faulthandler dumps the stacks and ends
the run if a test blocks for longer than TEST_DEADLINE seconds).
"""

import faulthandler
import glob
import os
import shutil
import subprocess
import sys
import threading
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PEER = os.path.join(HERE, "peers", "stock_peer.py")
TEST_DEADLINE = float(os.environ.get("MPCONN_TEST_DEADLINE", "120"))


@pytest.fixture(autouse=True)
def deadline():
    faulthandler.dump_traceback_later(TEST_DEADLINE, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


FAMILIES = ["AF_INET", "AF_UNIX", "abstract"]


def make_address(kind, tmp_path):
    """A fresh address of the given kind (port 0 for TCP)."""
    if kind == "AF_INET":
        return ("127.0.0.1", 0)
    if kind == "AF_INET6":
        return ("::1", 0)
    if kind == "AF_UNIX":
        return str(tmp_path / ("s-%s.sock" % uuid.uuid4().hex[:8]))
    if kind == "abstract":
        return "\0mpconn-test-%s" % uuid.uuid4().hex
    raise ValueError(kind)


@pytest.fixture(params=FAMILIES)
def family_kind(request):
    return request.param


@pytest.fixture
def address(family_kind, tmp_path):
    return make_address(family_kind, tmp_path)


class Thread(threading.Thread):
    """A thread that records its result/exception; join() re-raises."""

    def __init__(self, target, *args, **kwargs):
        super().__init__(daemon=True)
        self._fn, self._args, self._kwargs = target, args, kwargs
        self.result = None
        self.error = None

    def run(self):
        try:
            self.result = self._fn(*self._args, **self._kwargs)
        except BaseException as e:  # noqa: B902 - handed to join()
            self.error = e

    def join(self, timeout=30):
        super().join(timeout)
        assert not self.is_alive(), "thread did not finish within %ss" % timeout
        if self.error is not None:
            raise self.error
        return self.result


def start_thread(target, *args, **kwargs):
    t = Thread(target, *args, **kwargs)
    t.start()
    return t


# ---------------------------------------------------------------- interpreters


def _version_of(python):
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=30, check=True,
        ).stdout
        return out.decode().strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine_python3():
    """The machine's python3 (outside any virtualenv)."""
    venv_bin = os.path.dirname(sys.executable)
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep)
        if p and os.path.abspath(p) != os.path.abspath(venv_bin)
    )
    found = shutil.which("python3", path=path)
    if found:
        return found
    return getattr(sys, "_base_executable", None) or sys.executable


def stock_interpreters():
    """[(label, path, version)]: the machine's python3 and every pyenv
    interpreter, each once (by version)."""
    result = []
    seen = set()
    main = machine_python3()
    v = _version_of(main)
    if v:
        result.append(("python3-%s" % v, main, v))
        seen.add(v)
    root = os.environ.get("PYENV_ROOT", "/root/.pyenv")
    for path in sorted(glob.glob(os.path.join(root, "versions", "*", "bin", "python"))):
        v = _version_of(path)
        if v and v not in seen:
            seen.add(v)
            result.append(("pyenv-%s" % v, path, v))
    return result


_STOCK = None


def get_stock_interpreters():
    global _STOCK
    if _STOCK is None:
        _STOCK = stock_interpreters()
    return _STOCK


def version_tuple(v):
    return tuple(int(x) for x in v.split(".")[:2])
