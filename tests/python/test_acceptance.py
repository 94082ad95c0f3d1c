"""Issue 13 acceptance: ordinary multiprocessing programs (Pool, SimpleQueue,
Queue/JoinableQueue, BaseManager/SyncManager, Process hand-offs of
connections) run unchanged with multiprocessing.connection's Listener,
Client, Pipe and wait replaced by mpconn's, under fork, spawn and forkserver.

Each program runs in its own interpreter (dropin/programs.py, whose module
top level does the swap, so spawn/forkserver children get it too and prove
it with mpconn_swap.check()).  Guards: read-ahead stealing messages from
other readers of a shared pipe (Pool hangs, Queue/SimpleQueue lose items,
issue 13 item 1) and anything else that makes the drop-in differ from stock
for these programs.  The "stock" control runs the same program without the
swap and must always pass: if it fails, the program is wrong, not mpconn.
"""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAMS = os.path.join(HERE, "dropin", "programs.py")
METHODS = ["fork", "spawn", "forkserver"]
SCENARIOS = ["pool", "simplequeue", "queue", "manager", "process"]
PER_CALL = "15"   # seconds each blocking call in a program may take
HARD = 120        # the whole program


def run_program(method, scenario, stock=False):
    env = dict(os.environ, MPCONN_DROPIN_TIMEOUT=PER_CALL)
    env.pop("MPCONN_DROPIN_STOCK", None)
    if stock:
        env["MPCONN_DROPIN_STOCK"] = "1"
    try:
        p = subprocess.run([sys.executable, PROGRAMS, method, scenario], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=HARD, cwd=HERE)
    except subprocess.TimeoutExpired as e:
        pytest.fail("%s/%s did not finish within %ss:\n%s"
                    % (scenario, method, HARD, (e.output or b"").decode(errors="replace")[-3000:]))
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0 and ("OK %s %s" % (scenario, method)) in out, out[-3000:]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_multiprocessing_program_runs_on_mpconn(scenario, method):
    run_program(method, scenario)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_same_program_on_stock_cpython(scenario):
    """Control: the program itself is right (fork only, to keep it cheap)."""
    run_program("fork", scenario, stock=True)
