"""Issue 13 item 7: CPython's own multiprocessing.connection test classes,
unmodified, pass against mpconn.

dropin/run_cpython_suite.py imports ``test._test_multiprocessing`` from the
interpreter's own ``test`` package after swapping mpconn into
multiprocessing.connection (in the parent and, through its module top
level, in spawn/forkserver children) and runs the connection classes.  One
pytest item per (interpreter, start method, class): every CPython test that
runs must pass.

Interpreters: this venv's (3.11) and the 3.13 venv with mpconn installed
that the ctest fixture builds (MPCONN_PY313, see
tests/python/setup_venv313.sh).  A missing 3.13 venv or a missing ``test``
package is a visible skip, never a pass.
"""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(HERE, "dropin", "run_cpython_suite.py")
METHODS = ["fork", "spawn", "forkserver"]
CLASSES = [
    "WithProcessesTestConnection", "WithProcessesTestListener",
    "WithProcessesTestListenerClient", "WithProcessesTestPoll",
    "WithProcessesTestPollEintr", "WithProcessesTestPicklingConnections",
    "TestInvalidHandle", "OtherTest", "TestWait", "TestInvalidFamily",
    "TestTimeouts", "TestIgnoreEINTR", "ChallengeResponseTest",
]
# Present from this version on (absent before: not a failure).
SINCE = {"ChallengeResponseTest": (3, 12)}


def _interpreters():
    return {"venv": sys.executable, "py313": os.environ.get("MPCONN_PY313", "")}


_CACHE = {}


def suite_result(which, method):
    key = (which, method)
    if key in _CACHE:
        return _CACHE[key]
    python = _interpreters()[which]
    if not python or not os.path.exists(python):
        res = ("skip", "no 3.13 interpreter with mpconn (MPCONN_PY313=%r; the ctest fixture "
                       "python.venv313 builds it when pyenv has 3.13.0)" % python)
    else:
        env = dict(os.environ, MPCONN_CPYTHON_START=method)
        env.pop("PYTHONPATH", None)
        try:
            p = subprocess.run([python, RUNNER], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=env, timeout=600, cwd="/")
            out = p.stdout.decode(errors="replace")
        except subprocess.TimeoutExpired as e:
            out = (e.output or b"").decode(errors="replace")
            res = ("error", "the CPython suite did not finish in 600 s:\n" + out[-4000:])
        else:
            if p.returncode == 77:
                res = ("skip", out.strip().splitlines()[-1])
            else:
                lines = [l for l in out.splitlines() if l.startswith("SUITE-RESULT ")]
                if not lines:
                    res = ("error", "no result line (exit %s):\n%s" % (p.returncode, out[-4000:]))
                else:
                    res = ("ok", json.loads(lines[-1][len("SUITE-RESULT "):]))
    _CACHE[key] = res
    return res


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("which", ["venv", "py313"])
def test_cpython_connection_tests_pass_on_mpconn(which, method, cls):
    status, data = suite_result(which, method)
    if status == "skip":
        pytest.skip(data)
    assert status == "ok", data
    entry = data["classes"].get(cls)
    assert entry is not None, data
    if entry.get("absent"):
        since = SINCE.get(cls)
        version = tuple(int(x) for x in data["python"].split(".")[:2])
        assert since and version < since, "%s missing from CPython %s" % (cls, data["python"])
        pytest.skip("%s does not exist in CPython %s" % (cls, data["python"]))
    failures = "\n\n".join("%s:\n%s" % (name, text) for name, text in entry["failures"])
    assert entry["failed"] == 0, "CPython %s (%s): %s failed:\n%s" % (
        data["python"], method, cls, failures)
    assert entry["passed"] > 0, entry  # a class where nothing ran proves nothing
