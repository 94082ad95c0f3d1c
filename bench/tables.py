"""Renders a results file of bench/run.py as the Markdown tables of
docs/performance.md (one table per placement and transport), followed by the
SPEC 6 target check of that run.  Both read modes side by side: every cell
is "ratio to the best plain C / ratio to plain C with CPython's read
pattern"; SPEC 6 reads the read-ahead columns against the first and the
default-mode columns against the second on small messages, and both modes
against the first on large ones.

    python bench/tables.py [build/bench-results.json]
"""
import contextlib
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the driver: SIZES, human(), print_targets())

IMPLS = [("c-plain", "plain C, CPython's reads"), ("c-plainbuf", "plain C, buffered"),
         ("c-mpconn", "mpconn C"), ("c-mpconn-ra", "mpconn C read-ahead"),
         ("py-mpconn", "mpconn Python"), ("py-mpconn-ra", "mpconn Python read-ahead"),
         ("lua-mpconn", "mpconn Lua"), ("lua-mpconn-ra", "mpconn Lua read-ahead"),
         ("py-stock", "stock CPython"), ("py-zmq", "pyzmq")]
TITLES = {"pinned": "Both peers pinned to CPU 0", "free": "Free placement",
          "unix": "Unix socket", "tcp": "TCP loopback"}


def table(results, placement, transport):
    by = {(r["mode"], r["size"], r["impl"]): r for r in results
          if (r["placement"], r["transport"]) == (placement, transport)}
    present = [(impl, name) for impl, name in IMPLS
               if any(k[2] == impl for k in by)]
    out = ["### %s, %s" % (TITLES[placement], TITLES[transport]), "",
           "Each cell: ratio to the best plain C / ratio to plain C with CPython's read "
           "pattern (higher is better). First column: ops/s of the best plain C (the "
           "buffered program unless marked †: there plain C with CPython's reads was "
           "faster). Read-ahead columns: `read_ahead` on both ends; the others read "
           "exactly (the default).", "",
           "| case | best plain C (ops/s) | " + " | ".join(n for _, n in present) + " |",
           "|---|---|" + "---|" * len(present)]
    for mode, label in (("pingpong", "ping-pong"), ("stream", "stream"),
                        ("batch", "stream, batched send")):
        for size in run.SIZES:
            bmode = "stream" if mode == "batch" else mode
            bases = [by.get((bmode, size, i)) for i in ("c-plainbuf", "c-plain")]
            bases = [b for b in bases if b and "ops_per_s" in b]
            if not bases:
                continue
            best = max(bases, key=lambda b: b["ops_per_s"])
            cells = []
            for impl, _ in present:
                r = by.get((mode, size, impl))
                if r and (r.get("vs_best_c") or r.get("vs_plain_c")):
                    f = lambda v: "%.2f" % v if v else "–"
                    cells.append("%s / %s" % (f(r.get("vs_best_c")), f(r.get("vs_plain_c"))))
                else:
                    cells.append("–")
            if mode == "batch" and all(c == "–" for c in cells):
                continue
            first = "{:,.0f}".format(best["ops_per_s"])
            if best["impl"] == "c-plain":
                first += " †"
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
