"""Renders a results file of bench/run.py as the Markdown tables of
docs/performance.md (one table per placement and transport, ratios to the
plain C baseline), followed by the SPEC 6 target check of that run.

    python bench/tables.py [build/bench-results.json]
"""
import contextlib
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the driver: SIZES, human(), print_targets())

IMPLS = [("c-mpconn", "mpconn C"), ("py-mpconn", "mpconn Python"), ("lua-mpconn", "mpconn Lua"),
         ("py-stock", "stock CPython"), ("py-zmq", "pyzmq")]
TITLES = {"pinned": "Both peers pinned to CPU 0", "free": "Free placement",
          "unix": "Unix socket", "tcp": "TCP loopback"}


def table(results, placement, transport):
    by = {(r["mode"], r["size"], r["impl"]): r for r in results
          if (r["placement"], r["transport"]) == (placement, transport)}
    out = ["### %s, %s" % (TITLES[placement], TITLES[transport]), "",
           "Ratio to the plain C baseline (higher is better); ops/s of the baseline in the "
           "first column.", "",
           "| case | plain C (ops/s) | " + " | ".join(n for _, n in IMPLS) + " |",
           "|---|---|" + "---|" * len(IMPLS)]
    for mode, label in (("pingpong", "ping-pong"), ("stream", "stream"),
                        ("batch", "stream, batched send")):
        for size in run.SIZES:
            base = by.get(("stream" if mode == "batch" else mode, size, "c-plain"))
            if not base or "ops_per_s" not in base:
                continue
            cells = []
            for impl, _ in IMPLS:
                r = by.get((mode, size, impl))
                cells.append("%.2f" % r["vs_plain_c"] if r and r.get("vs_plain_c") else "–")
            if all(c == "–" for c in cells):
                continue
            first = "{:,.0f}".format(base["ops_per_s"])
            if mode == "batch":
                first = "(stream) " + first
            out.append("| %s %s | %s | %s |" % (run.human(size), label, first, " | ".join(cells)))
    return "\n".join(out)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(run.BUILD, "bench-results.json")
    with open(path) as f:
        data = json.load(f)
    results = data["results"]
    for pl in ("pinned", "free"):
        for tr in ("unix", "tcp"):
            if any((r["placement"], r["transport"]) == (pl, tr) for r in results):
                print(table(results, pl, tr))
                print()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        run.print_handshake_cost(results)
        run.print_targets(results)
    print("```\n" + buf.getvalue().strip("\n") + "\n```")


if __name__ == "__main__":
    main()
