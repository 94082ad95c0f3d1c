"""Interop suite configuration: collects every matrix cell's outcome and
prints the matrix (rows: peer interpreter; columns: direction/family/auth)
at the end of the run."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# (table name, row, column) -> "ok" | "FAIL" | "skip"; plus skip reasons.
_cells = {}
_skip_reasons = {}
_RANK = {"ok": 0, "skip": 1, "FAIL": 2}

DIR_TITLE = {"to_cli": "CPython Client -> mpconn listen",
             "from_cli": "mpconn send -> CPython Listener"}


def _cell_of(item):
    params = getattr(getattr(item, "callspec", None), "params", None)
    if not params or "interp" not in params:
        return None
    row = params["interp"].label
    if "direction" in params:
        return ("matrix", row, (params["direction"], params["family"], params["auth"]))
    if "dialect" in params:
        role = "send" if "send_dialect" in item.name else "listen"
        return ("dialect", row, role + ":" + params["dialect"])
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    key = _cell_of(item)
    if key is None:
        return
    if rep.skipped:
        verdict = "skip"
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        _skip_reasons[key[1]] = reason.replace("Skipped: ", "")
    elif rep.failed:
        verdict = "FAIL"
    elif rep.when == "call":
        verdict = "ok"
    else:
        return
    old = _cells.get(key)
    if old is None or _RANK[verdict] > _RANK[old]:
        _cells[key] = verdict


def _rows(table):
    rows = []
    for (t, row, _col) in _cells:
        if t == table and row not in rows:
            rows.append(row)
    return rows


def matrix_lines():
    """The matrix tables as text lines."""
    out = []
    rows = _rows("matrix")
    if rows:
        width = max(len(r) for r in rows + ["peer"]) + 1
        fams = ["tcp", "unix", "abstract"]
        auths = ["none", "right", "wrong"]
        cw = 6
        group = cw * len(auths)
        out.append(" " * width + "".join("| " + DIR_TITLE[d].ljust(len(fams) * (group + 1) - 1)
                                         for d in DIR_TITLE).rstrip())
        out.append("peer".ljust(width) + "".join(
            "".join("|" + (" " + f).ljust(group) for f in fams) for _d in DIR_TITLE).rstrip())
        line3 = " " * width + "".join(
            "".join("|" + "".join((" " + a).ljust(cw) for a in auths) for _f in fams) for _d in DIR_TITLE)
        out.append(line3.rstrip())
        out.append("-" * len(line3))
        for row in rows:
            cells = []
            for d in DIR_TITLE:
                for f in fams:
                    part = "".join((" " + _cells.get(("matrix", row, (d, f, a)), "-")).ljust(cw) for a in auths)
                    cells.append("|" + part)
            out.append((row.ljust(width) + "".join(cells)).rstrip())
    drows = _rows("dialect")
    if drows:
        out.append("")
        out.append("--dialect X of `mpconn listen` (CPython Client) and `mpconn send` (CPython "
                   "Listener), TCP, right key;")
        out.append("'ok' for strict with a <= 3.11 peer means it was refused, as expected:")
        width = max(len(r) for r in drows + ["peer"]) + 1
        dialects = ["listen:modern", "listen:legacy", "listen:strict", "send:legacy", "send:strict"]
        out.append("peer".ljust(width) + "".join("| " + d.ljust(14) for d in dialects).rstrip())
        for row in drows:
            out.append((row.ljust(width) + "".join(
                "| " + _cells.get(("dialect", row, d), "-").ljust(14) for d in dialects)).rstrip())
    counts = {}
    for v in _cells.values():
        counts[v] = counts.get(v, 0) + 1
    out.append("")
    out.append("cells: %d ok, %d FAIL, %d skip" % (counts.get("ok", 0), counts.get("FAIL", 0),
                                                  counts.get("skip", 0)))
    for row, reason in sorted(_skip_reasons.items()):
        out.append("skipped %s: %s" % (row, reason))
    return out


def pytest_terminal_summary(terminalreporter):
    if not _cells:
        return
    title = "interop matrix: mpconn CLI <-> stock CPython"
    lines = matrix_lines()
    terminalreporter.section(title)
    for line in lines:
        terminalreporter.write_line(line)
    # ctest shows test output only on failure; keep a copy for run_all.sh.
    path = os.environ.get("MPCONN_INTEROP_MATRIX")
    if path:
        with open(path, "w") as f:
            f.write("== %s ==\n" % title)
            f.write("\n".join(lines) + "\n")
