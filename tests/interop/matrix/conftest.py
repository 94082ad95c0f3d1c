"""Interop matrix configuration: which cells pytest selected (so -k runs a
subset), and the matrix table at the end of the run, on the terminal and in
$MPCONN_MATRIX_OUT (ctest: <build>/tests/interop/matrix.txt)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import matrix  # noqa: E402

TITLE = "interop matrix: servers x clients x authkey x address family"


def pytest_collection_finish(session):
    # After -k/-m deselection: only the chosen cells run.
    ids = set()
    for item in session.items:
        cell = getattr(getattr(item, "callspec", None), "params", {}).get("cell")
        if isinstance(cell, matrix.Cell):
            ids.add(cell.id)
    if ids:
        matrix.matrix().selected = ids


def pytest_terminal_summary(terminalreporter):
    if not matrix._MATRIX or not matrix.matrix().ran:
        return
    lines = matrix.matrix().table_lines()
    terminalreporter.section(TITLE)
    for line in lines:
        terminalreporter.write_line(line)
    path = os.environ.get("MPCONN_MATRIX_OUT")
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write("== %s ==\n" % TITLE)
            f.write("\n".join(lines) + "\n")
        terminalreporter.write_line("(written to %s)" % path)
