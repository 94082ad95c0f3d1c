#!/usr/bin/env python3
"""Checks that every public function of the C core is a decision of the
Python binding: each `mpc_` function declared MPC_API in
c_core/include/mpconn.h is either

  - wrapped by SWIG, named in a `%thread NAME;` or `%nothread NAME;` line of
    bindings/python/mpconn_python.i (the decision about the GIL is the
    wrapping decision), or
  - ignored, by `%ignore NAME;` or a `%rename("$ignore", regextarget=1)
    "REGEX";` in that file or in the shared bindings/mpconn.i it includes,
    with its reason: a comment on the same line, or a comment block right
    above it (other %ignore lines in between are fine).

A function that is neither, both, or ignored without a reason fails the
check, which exits 1 and says which.  Run from anywhere:

    python3 .ci/check_python_api.py
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = os.path.join(ROOT, "c_core", "include", "mpconn.h")
INTERFACES = [os.path.join(ROOT, "bindings", "python", "mpconn_python.i"),
              os.path.join(ROOT, "bindings", "mpconn.i")]


def public_functions(path):
    with open(path) as f:
        text = f.read()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return sorted(set(re.findall(r"\bMPC_API\b[^;{]*?\b(mpc_\w+)\s*\(", text)))


def has_reason(lines, i):
    """Line i (an %ignore or %rename) has a comment on it, or a comment
    block ends right above it (past other %ignore/%rename lines)."""
    if "/*" in lines[i] or "//" in lines[i]:
        return True
    j = i - 1
    while j >= 0 and re.match(r"\s*%(ignore|rename)\b", lines[j]):
        j -= 1
    return j >= 0 and lines[j].rstrip().endswith("*/")


def decisions(paths):
    wrapped, ignored, unexplained, patterns = {}, {}, [], []
    for path in paths:
        rel = os.path.relpath(path, ROOT)
        with open(path) as f:
            lines = f.read().split("\n")
        for i, line in enumerate(lines):
            where = "%s:%d" % (rel, i + 1)
            m = re.match(r"\s*%(?:no)?thread\s+(mpc_\w+)\s*;", line)
            if m:
                wrapped[m.group(1)] = where
                continue
            m = re.match(r"\s*%ignore\s+(mpc_\w+)\s*;", line)
            if m:
                ignored[m.group(1)] = where
                if not has_reason(lines, i):
                    unexplained.append((m.group(1), where))
                continue
            m = re.match(r'\s*%rename\("\$ignore",\s*regextarget=1\)\s*"([^"]+)"\s*;', line)
            if m:
                patterns.append((re.compile(m.group(1)), where, has_reason(lines, i)))
    return wrapped, ignored, unexplained, patterns


def main():
    funcs = public_functions(HEADER)
    wrapped, ignored, unexplained, patterns = decisions(INTERFACES)
    problems = []
    for name in funcs:
        ign = ignored.get(name)
        if not ign:
            for rx, where, reason in patterns:
                if rx.search(name):
                    ign = where
                    if not reason:
                        unexplained.append((name, where))
                    break
        if name in wrapped and ign:
            problems.append("%s: both wrapped (%s) and ignored (%s)" % (name, wrapped[name], ign))
        elif name not in wrapped and not ign:
            problems.append("%s: neither wrapped (a %%thread/%%nothread line) nor %%ignore'd in "
                            "bindings/python/mpconn_python.i" % name)
    for name, where in unexplained:
        problems.append("%s: %%ignore'd at %s without a reason (a comment on the line or "
                        "the block above)" % (name, where))
    for name, where in sorted(wrapped.items()):
        if name not in funcs:
            problems.append("%s: named at %s but not a public function of mpconn.h" % (name, where))
    n_wrapped = sum(1 for n in funcs if n in wrapped)
    print("check_python_api: %d public mpc_ functions: %d wrapped by SWIG, %d ignored with a reason"
          % (len(funcs), n_wrapped, len(funcs) - n_wrapped - len(
              [p for p in problems if "neither" in p])))
    if problems:
        for p in problems:
            print("  FAIL " + p)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
