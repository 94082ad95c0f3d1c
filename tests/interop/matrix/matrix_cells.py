"""The interop matrix of issue 6: every pair of implementations (stock
CPython 2.7 and 3.6-3.13, mpconn Python, the mpconn CLI, the C library
directly, mpconn Lua) with at least one of ours, plus one stock<->stock
control row; authkey none / right / wrong; TCP, Unix path, abstract name;
messages of 0 B to 64 MiB both ways, byte-exact.  See matrix.py.

All cells run once, concurrently, in the session fixture; each test then
reports its own cell."""
import pytest

import matrix

CELLS = matrix.matrix().cells


@pytest.fixture(scope="session")
def ran_matrix():
    m = matrix.matrix()
    m.execute()
    return m


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_every_message_comes_back_byte_exact_and_a_wrong_key_fails_on_both_sides(ran_matrix,
                                                                                 cell):
    res = cell.result
    assert res is not None, "cell %s did not run" % cell.id
    if res.status == "skip":
        pytest.skip(res.reason)
    assert res.status == "pass", "%s\n%s" % (res.reason, res.detail)
