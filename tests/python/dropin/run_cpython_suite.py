"""Runs CPython's own multiprocessing.connection test classes, unmodified,
with mpconn swapped into multiprocessing.connection.

    MPCONN_CPYTHON_START=fork python run_cpython_suite.py [ClassName ...]

The classes come from the running interpreter's own ``test`` package
(``test._test_multiprocessing``); nothing of them is copied.  This module's
top level swaps mpconn's Listener, Client, Pipe, wait, Connection,
deliver_challenge and answer_challenge into multiprocessing.connection
*before* importing the test module (which binds ``wait`` at import), and
then builds the 'processes' test classes into its own namespace with
CPython's install_tests_in_module_dict(), exactly as
test_multiprocessing_<method>/test_processes.py does.  Because the swap is
at module top level, spawn and forkserver children (which re-run this
module as __mp_main__) run the swap too.

Output: unittest's verbose report, then one line
``SUITE-RESULT <json>`` with per-class counts and the failure texts.
Exit status 77: this interpreter has no ``test`` package.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mpconn_swap  # noqa: E402

mpconn_swap.install(mpconn_swap.EXTENDED)

START = os.environ.get("MPCONN_CPYTHON_START", "fork")

try:
    import test._test_multiprocessing as _tm  # noqa: E402
except ImportError as e:  # pragma: no cover - depends on the interpreter
    if __name__ == "__main__":
        print("SUITE-SKIP this interpreter has no test package: %s" % e)
        sys.exit(77)
    raise

import unittest  # noqa: E402

_tm.install_tests_in_module_dict(globals(), START, only_type="processes")

# The connection classes of issue 13 (names as in 3.11 and 3.13; those a
# version lacks are reported as absent).
CLASSES = [
    "WithProcessesTestConnection",
    "WithProcessesTestListener",
    "WithProcessesTestListenerClient",
    "WithProcessesTestPoll",
    "WithProcessesTestPollEintr",
    "WithProcessesTestPicklingConnections",
    "TestInvalidHandle",
    "OtherTest",
    "TestWait",
    "TestInvalidFamily",
    "TestTimeouts",
    "TestIgnoreEINTR",
    "ChallengeResponseTest",
]

# Plain unittest.TestCase classes are not installed for only_type=
# 'processes' (CPython runs them from test_misc); take them from the module
# as they are.
for _name in CLASSES:
    if _name not in globals() and hasattr(_tm, _name):
        globals()[_name] = getattr(_tm, _name)


class _Result(unittest.TextTestResult):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.passed = []

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed.append(test)


def main(argv):
    mpconn_swap.check(mpconn_swap.EXTENDED)
    wanted = argv[1:] or CLASSES
    module = sys.modules[__name__]
    suite = unittest.TestSuite()
    absent = []
    for name in wanted:
        if name in globals():
            suite.addTests(unittest.defaultTestLoader.loadTestsFromName(name, module))
        else:
            absent.append(name)
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=_Result)
    result = runner.run(suite)

    def cls(test):
        return type(test).__name__ if isinstance(test, unittest.TestCase) else str(test)

    summary = {n: {"passed": 0, "failed": 0, "skipped": 0, "failures": [], "skips": []}
               for n in wanted if n not in absent}
    summary.update({n: {"absent": True} for n in absent})
    for t in result.passed:
        summary.setdefault(cls(t), {}).setdefault("passed", 0)
        summary[cls(t)]["passed"] += 1
    for t, text in result.failures + result.errors + [(t, "unexpected success")
                                                      for t in result.unexpectedSuccesses]:
        entry = summary.setdefault(cls(t), {"passed": 0, "failed": 0, "skipped": 0,
                                            "failures": [], "skips": []})
        entry["failed"] += 1
        entry["failures"].append([getattr(t, "_testMethodName", str(t)), text[-1500:]])
    for t, reason in result.skipped:
        entry = summary.setdefault(cls(t), {"passed": 0, "failed": 0, "skipped": 0,
                                            "failures": [], "skips": []})
        entry["skipped"] += 1
        entry["skips"].append([getattr(t, "_testMethodName", str(t)), reason])
    print("SUITE-RESULT " + json.dumps({"python": sys.version.split()[0], "start": START,
                                        "classes": summary}))
    sys.stdout.flush()
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
