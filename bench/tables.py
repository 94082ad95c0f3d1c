"""Renders a results file of bench/run.py as the Markdown tables of
docs/performance.md (one table per placement and transport), followed by the
SPEC 6 target check of that run.  Both read modes side by side: every cell
is "ratio to the best plain C / ratio to plain C with CPython's read
pattern"; SPEC 6 reads the read-ahead columns against the first and the
default-mode columns against the second on small messages, and both modes
against the first on large ones.  The asyncio rows (pinned, Unix socket)
get tables of their own: each against the best plain C, and mpconn.asyncio
over each pure-asyncio way.

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
         ("c-mpconn-tls", "mpconn C over TLS"),
         ("py-mpconn", "mpconn Python"), ("py-mpconn-ra", "mpconn Python read-ahead"),
         ("py-floor", "Python floor ‡"),
         ("lua-mpconn", "mpconn Lua"), ("lua-mpconn-ra", "mpconn Lua read-ahead"),
         ("lua-floor", "Lua floor"), ("lua-luasocket", "LuaSocket (pure Lua)"),
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
           "exactly (the default)." + (
               " ‡ Python floor: what the best possible Python binding could reach, the "
               "plain C program's time per message plus the interpreter's alone (a Python "
               "loop making the same C calls, which do nothing: %s)." % floor_note(by)
               if any(k[2] == "py-floor" for k in by) else ""), "",
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


def floor_note(by):
    notes = []
    for mode, label in (("pingpong", "ping-pong"), ("stream", "stream")):
        r = by.get((mode, 16, "py-floor"))
        if r and "floor_us" in r:
            notes.append("%.3f µs a 16 B %s message" % (r["floor_us"], label))
    return ", ".join(notes) or "not measured"


LUA_COLS = [("lua-mpconn", "mpconn Lua"), ("lua-mpconn-ra", "mpconn Lua read-ahead"),
            ("lua-luasocket", "LuaSocket (pure Lua)")]


def lua_table(results, placement, transport):
    """Lua against its references (SPEC 6): time per message over the Lua
    floor's (target: within 1.10x, read-ahead on small messages, both modes
    on large ones) and speed over the pure-Lua LuaSocket framing (target:
    at least 3x)."""
    by = {(r["mode"], r["size"], r["impl"]): r for r in results
          if (r["placement"], r["transport"]) == (placement, transport)}
    if not any(k[2] == "lua-floor" for k in by):
        return None
    out = ["### Lua against the Lua floor: %s, %s" % (TITLES[placement], TITLES[transport]), "",
           "First three columns: time per message over the Lua floor's (lower is better; "
           "the target is at most 1.10, for the read-ahead mode on small messages and both "
           "modes on large ones). Last two: mpconn Lua's speed over the pure-Lua LuaSocket "
           "framing (the target is at least 3). Same mode as the row: batched rows compare "
           "`send_many` with `send_many`.", "",
           "| case | Lua floor (ops/s) | " + " | ".join(n for _, n in LUA_COLS) +
           " | mpconn Lua ÷ LuaSocket | read-ahead ÷ LuaSocket |",
           "|---|---|" + "---|" * (len(LUA_COLS) + 2)]
    f = lambda v: "%.2f" % v if v else "–"
    for mode, label in (("pingpong", "ping-pong"), ("stream", "stream"),
                        ("batch", "stream, batched send")):
        for size in run.SIZES:
            fl = by.get((mode, size, "lua-floor"))
            if not fl or "ops_per_s" not in fl:
                continue
            cells = [f(by.get((mode, size, i), {}).get("x_lua_floor")) for i, _ in LUA_COLS]
            cells += [f(by.get((mode, size, i), {}).get("vs_luasocket"))
                      for i in ("lua-mpconn", "lua-mpconn-ra")]
            out.append("| %s %s | %s | %s |" % (run.human(size), label,
                                                "{:,.0f}".format(fl["ops_per_s"]),
                                                " | ".join(cells)))
    return "\n".join(out)


AIO_COLS = [("aio-mpconn", "mpconn.asyncio"), ("aio-mpconn-ra", "mpconn.asyncio read-ahead"),
            ("aio-streams", "asyncio streams"), ("aio-protocol", "asyncio.Protocol framer"),
            ("aio-threads", "thread pool")]
AIO_OTHERS = AIO_COLS[2:]
AIO_CASES = [("pingpong", 16, "16 B ping-pong", 1.3), ("stream", 16, "16 B stream", 1.3),
             ("stream", 1 << 20, "1 MiB stream", 1.0)]
# The comparison rows: the targets hold for the read-ahead mode on 16 B (the
# pure-asyncio framers read ahead into a buffer too), the default mode on
# 1 MiB; the default mode's 16 B rows are reported.
AIO_VS = [("pingpong", 16, "16 B ping-pong, read-ahead", "aio-mpconn-ra", "≥ 1.3; ≥ 10"),
          ("stream", 16, "16 B stream, read-ahead", "aio-mpconn-ra", "≥ 1.3; ≥ 10"),
          ("stream", 1 << 20, "1 MiB stream", "aio-mpconn", "≥ 1.0; ≥ 10"),
          ("pingpong", 16, "16 B ping-pong, default mode", "aio-mpconn", "reported"),
          ("stream", 16, "16 B stream, default mode", "aio-mpconn", "reported")]
AIO_LOOPS = [("", "default loop"), ("-uv", "uvloop")]


def asyncio_tables(results, placement, transport):
    """The asyncio rows (SPEC 6, issue 16): each against the best plain C,
    then mpconn.asyncio's speed over each pure-asyncio way on the same loop
    (targets: >= 1.3x streams and the Protocol framer on 16 B rows, >= 1.0x
    on 1 MiB, >= 10x the thread pool)."""
    by = {(r["mode"], r["size"], r["impl"]): r for r in results
          if (r["placement"], r["transport"]) == (placement, transport)}
    if not any(k[2].startswith("aio-") for k in by):
        return None
    f = lambda v: "%.2f" % v if v else "–"
    cols = [(impl + uv, "%s (%s)" % (name, loop)) for uv, loop in AIO_LOOPS
            for impl, name in AIO_COLS]
    why = {}
    for r in by.values():
        if r["impl"].startswith("aio-") and "skipped" in r:
            why.setdefault(r["skipped"], set()).add(r["impl"])
    skipped = ["%s (%s)" % (", ".join(sorted(impls)), w) for w, impls in sorted(why.items())]
    out = ["### asyncio: %s, %s" % (TITLES[placement], TITLES[transport]), "",
           "Each cell: ratio to the best plain C (higher is better); first column: ops/s of "
           "the best plain C. Both peers are the same asyncio implementation, each in its own "
           "process with its own loop (`bench/bench_asyncio.py`)." +
           (" Skipped here: %s." % "; ".join(skipped) if skipped else ""), "",
           "| case | best plain C (ops/s) | " + " | ".join(n for _, n in cols) + " |",
           "|---|---|" + "---|" * len(cols)]
    for mode, size, label, _ in AIO_CASES:
        bases = [by.get((mode, size, i)) for i in ("c-plainbuf", "c-plain")]
        bases = [b for b in bases if b and "ops_per_s" in b]
        best = "{:,.0f}".format(max(b["ops_per_s"] for b in bases)) if bases else "–"
        cells = []
        for impl, _ in cols:
            r = by.get((mode, size, impl), {})
            cells.append("skipped" if "skipped" in r else f(r.get("vs_best_c")))
        out.append("| %s | %s | %s |" % (label, best, " | ".join(cells)))
    out += ["", "### mpconn.asyncio against the other asyncio ways: %s, %s" % (
        TITLES[placement], TITLES[transport]), "",
        "Each cell: mpconn.asyncio's speed over that way's, same loop and case (the SPEC 6 "
        "target in the first column).", "",
        "| case (target over streams and Protocol; over the thread pool) | " +
        " | ".join("÷ %s (%s)" % (name, loop) for uv, loop in AIO_LOOPS
                   for _, name in AIO_OTHERS) + " |",
        "|---|" + "---|" * (len(AIO_LOOPS) * len(AIO_OTHERS))]
    for mode, size, label, impl, target in AIO_VS:
        cells = []
        for uv, _ in AIO_LOOPS:
            r = by.get((mode, size, impl + uv), {})
            for other, _ in AIO_OTHERS:
                cells.append("skipped" if "skipped" in r else
                             f(r.get("vs_" + other.replace("-", "_"))))
        out.append("| %s (%s) | %s |" % (label, target, " | ".join(cells)))
    return "\n".join(out)


def tls_table(results, placement):
    """TLS (SPEC 9, issue 18), TCP only: mpconn C over TLS against plaintext
    mpconn C in the same run (target: the 1 MiB stream at >= 0.5x), and the
    cost of a connection with TLS beside a TCP connect."""
    by = {(r["mode"], r["size"], r["impl"]): r for r in results
          if (r["placement"], r["transport"]) == (placement, "tcp") and "ops_per_s" in r}
    if not any(k[2] == "c-mpconn-tls" or k[0] == "connect-tls" for k in by):
        return None
    out = ["### TLS: %s, %s" % (TITLES[placement], TITLES["tcp"]), "",
           "mpconn C over TLS (certificates of `tests/tls/make_certs.sh`: EC P-256; TLS 1.3) "
           "against plaintext mpconn C, both default reads and no authkey, same run. The "
           "target is the 1 MiB stream at ≥ 0.5×.", "",
           "| case | mpconn C (ops/s) | MB/s | over TLS (ops/s) | MB/s | TLS ÷ plaintext |",
           "|---|---|---|---|---|---|"]
    for mode, label in (("pingpong", "ping-pong"), ("stream", "stream")):
        for size in run.SIZES:
            p, t = by.get((mode, size, "c-mpconn")), by.get((mode, size, "c-mpconn-tls"))
            if not t:
                continue
            out.append("| %s %s | %s | %s | %s | %.1f | %s |" % (
                run.human(size), label,
                "{:,.0f}".format(p["ops_per_s"]) if p else "–",
                "%.1f" % p["mb_per_s"] if p else "–",
                "{:,.0f}".format(t["ops_per_s"]), t["mb_per_s"],
                "%.2f" % t["vs_mpconn"] if t.get("vs_mpconn") else "–"))
    conns = [(m, l) for m, l in (("connect", "TCP connection, no key"),
                                 ("connect-auth", "with the authkey handshake"),
                                 ("connect-tls", "with TLS and then the authkey handshake"))
             if (m, 0, "c-mpconn") in by]
    if conns:
        tcp = by.get(("connect", 0, "c-mpconn"))
        out += ["", "| connection (connect, accept, one 1-byte message) | µs | × TCP connection |",
                "|---|---|---|"]
        for m, label in conns:
            us = 1e6 / by[(m, 0, "c-mpconn")]["ops_per_s"]
            out.append("| %s | %.1f | %s |" % (
                label, us, "%.1f" % (us * tcp["ops_per_s"] / 1e6) if tcp else "–"))
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
                lt = lua_table(results, pl, tr)
                if lt:
                    print(lt)
                    print()
                at = asyncio_tables(results, pl, tr)
                if at:
                    print(at)
                    print()
                tt = tls_table(results, pl) if tr == "tcp" else None
                if tt:
                    print(tt)
                    print()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        run.print_handshake_cost(results)
        run.print_targets(results)
    print("```\n" + buf.getvalue().strip("\n") + "\n```")


if __name__ == "__main__":
    main()
