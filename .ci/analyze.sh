#!/usr/bin/env bash
# Static analysis of the C core, the CLI and the bindings' hand-written C
# (bindings/lua/*.c, bindings/python/*.c; not SWIG's generated wrappers):
# clang's static analyzer (clang --analyze, one translation unit at a time,
# its default checkers) and cppcheck (warning, style, performance and
# portability checks).  Every finding fails the check unless
# .ci/analyze.supp names it as a false positive, with its reason; an entry
# there that no longer matches anything fails it too.  Called by .ci/run;
# about 45 s of CPU time (25 s on two idle cores), nearly all of it the
# analyzer.
#
#   bash .ci/analyze.sh
#
# Environment: CLANG (default clang), CPPCHECK (default cppcheck),
# MPCONN_JOBS (parallel analyzer runs, default 2); for the bindings'
# headers, as the CMake build finds them: PYTHON (default python3, whose
# sysconfig names Python.h's folders) and LUA_INCDIR (default: pkg-config
# lua${MPCONN_LUA_VERSION:-5.4}).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
CLANG="${CLANG:-clang}"
CPPCHECK="${CPPCHECK:-cppcheck}"
PYTHON="${PYTHON:-python3}"
JOBS="${MPCONN_JOBS:-2}"
for tool in "$CLANG" "$CPPCHECK" "$PYTHON" python3; do
  command -v "$tool" >/dev/null || { echo "analyze.sh: $tool not found (bash .ci/deps.sh test installs it)" >&2; exit 1; }
done

# The bindings' third-party headers (the analyzer needs them; cppcheck is
# given its own descriptions of these APIs instead, --library=lua/python,
# as it is given no system headers).
if [ -n "${LUA_INCDIR:-}" ]; then
  LUA_FLAGS=(-I"$LUA_INCDIR")
else
  lua_pc="lua${MPCONN_LUA_VERSION:-5.4}"
  lua_cflags="$(pkg-config --cflags "$lua_pc" 2>/dev/null)" ||
    { echo "analyze.sh: pkg-config has no $lua_pc (apt-get install liblua5.4-dev, or LUA_INCDIR=...)" >&2; exit 1; }
  read -r -a LUA_FLAGS <<<"$lua_cflags"
fi
mapfile -t py_inc < <("$PYTHON" -c 'import sysconfig as s; p = s.get_paths(); print(p["include"]); print(p["platinclude"])')
[ -f "${py_inc[0]:-}/Python.h" ] ||
  { echo "analyze.sh: $PYTHON has no headers (${py_inc[0]:-its include folder}/Python.h; on Debian: apt-get install python3-dev)" >&2; exit 1; }
PY_FLAGS=(-I"${py_inc[0]}" -I"${py_inc[1]}")

out="$(mktemp -d "${TMPDIR:-/tmp}/mpconn-analyze.XXXXXX")"
trap 'rm -rf "$out"' EXIT

# The sources, in three groups with the flags the build gives each (CMake:
# c_core/CMakeLists.txt, bindings/CMakeLists.txt): every .c of the core
# (c_core/sources.cmake lists the same files) and the CLI; the Lua module's
# and the Python extension's hand-written C, which see only the public
# header and their own (no MPC_BUILDING, no _GNU_SOURCE).
find c_core/src c_core/tools -name '*.c' | LC_ALL=C sort >"$out/core.list"
find bindings/lua -name '*.c' ! -name '*_wrap.c' | LC_ALL=C sort >"$out/lua.list"
find bindings/python -name '*.c' ! -name '*_wrap.c' | LC_ALL=C sort >"$out/python.list"
CORE_FLAGS=(-std=gnu11 -D_GNU_SOURCE -DMPC_BUILDING -Ic_core/include -Ic_core/src)
LUA_C_FLAGS=(-std=gnu11 -Ic_core/include -Ibindings/lua)
PY_C_FLAGS=(-std=gnu11 -Ic_core/include -Ibindings/python)

# clang --analyze over one group: analyze LIST FLAGS...
# -analyzer-output=text: each report is followed by the path that leads to
# it (the "note:" lines), printed when the finding is not suppressed.
analyze() {
  local list="$1"
  shift
  xargs -P "$JOBS" -I{} sh -c '"$0" --analyze "$@" -Xanalyzer -analyzer-output=text -o /dev/null {} >"$1/$(echo {} | tr / _).log" 2>&1' \
    "$CLANG" "$out" "$@" <"$list" || true
}
start=$SECONDS
analyze "$out/core.list" "${CORE_FLAGS[@]}"
analyze "$out/lua.list" "${LUA_C_FLAGS[@]}" "${LUA_FLAGS[@]}"
analyze "$out/python.list" "${PY_C_FLAGS[@]}" "${PY_FLAGS[@]}"
cat "$out"/*.log >"$out/clang.txt"
clang_secs=$((SECONDS - start))

# cppcheck over one group: cppcheck_group LIST FLAGS...
cppcheck_group() {
  local list="$1"
  shift
  "$CPPCHECK" -q --enable=warning,style,performance,portability --std=c11 -j "$JOBS" "$@" \
    --template='{file}:{line}:{column}: {severity}: {message} [{id}]' \
    --file-list="$list" 2>>"$out/cppcheck.txt" >/dev/null
}
start=$SECONDS
: >"$out/cppcheck.txt"
# OPENSSL_VERSION_NUMBER: the configuration built on OpenSSL 3 (without
# system headers cppcheck would take the pre-3 branch of handshake.c).
cppcheck_group "$out/core.list" -D_GNU_SOURCE -DMPC_BUILDING -DOPENSSL_VERSION_NUMBER=0x30000000L \
  -Ic_core/include -Ic_core/src
# --library: cppcheck's own model of the Lua and CPython C APIs (without
# it, Py_BEGIN_ALLOW_THREADS reads as a type and every statement after it
# as a declaration: a dozen bogus uninitialised variables).
cppcheck_group "$out/lua.list" --library=lua -Ic_core/include -Ibindings/lua
cppcheck_group "$out/python.list" --library=python -Ic_core/include -Ibindings/python
cppcheck_secs=$((SECONDS - start))

status=0
python3 - "$out/clang.txt" "$out/cppcheck.txt" .ci/analyze.supp <<'PY' || status=$?
import re, sys

clang_txt, cppcheck_txt, supp_path = sys.argv[1:]
finding = re.compile(r"^(\S+?):(\d+):(\d+): (?:warning|error|style|performance|portability|information): .*\[([\w.-]+)\]$")

supps = []
for n, line in enumerate(open(supp_path), 1):
    if not line.strip() or line.startswith("#"):
        continue
    f = [x.strip() for x in line.split(" | ")]
    if len(f) != 5 or not all(f):
        sys.exit("%s:%d: expected 'tool | file | check | text | reason'" % (supp_path, n))
    supps.append({"at": "%s:%d" % (supp_path, n), "tool": f[0], "file": f[1], "check": f[2], "text": f[3], "used": 0})

def source_line(path, lineno):
    try:
        with open(path, errors="replace") as fh:
            for i, l in enumerate(fh, 1):
                if i == lineno:
                    return l
    except OSError:
        pass
    return ""

failed = 0
counts = {}
for tool, path in (("clang", clang_txt), ("cppcheck", cppcheck_txt)):
    lines = open(path, errors="replace").read().splitlines()
    counts[tool] = [0, 0]
    for i, l in enumerate(lines):
        m = finding.match(l)
        if not m:
            # A file the analyzer could not compile (a header not found)
            # was not analyzed: that fails the check, it is not silence.
            if tool == "clang" and re.match(r"^\S+:\d+:\d+: (fatal )?error: ", l):
                failed = 1
                print("clang: not analyzed: %s" % l)
            continue
        file, lineno, check = m.group(1), int(m.group(2)), m.group(4)
        code = source_line(file, lineno)
        hit = [s for s in supps if s["tool"] == tool and s["file"] == file and s["check"] == check and s["text"] in code]
        if hit:
            hit[0]["used"] += 1
            counts[tool][1] += 1
            continue
        counts[tool][0] += 1
        failed = 1
        print("%s: %s" % (tool, l))
        # the analyzer's path to the report, up to the next report
        for nl in lines[i + 1:]:
            if finding.match(nl):
                break
            if ": note: " in nl:
                print("    " + nl)
for s in supps:
    if not s["used"]:
        failed = 1
        print("%s: this suppression matches no finding (%s %s %s): remove it" % (s["at"], s["tool"], s["file"], s["check"]))
for tool, (bad, quiet) in counts.items():
    print("%s: %d finding(s), %d suppressed as false positives (.ci/analyze.supp)" % (tool, bad, quiet))
sys.exit(failed)
PY
echo "analyze.sh: clang --analyze ${clang_secs}s, cppcheck ${cppcheck_secs}s over $(cat "$out"/*.list | wc -l) files" \
  "($(wc -l <"$out/core.list") core and CLI, $(wc -l <"$out/lua.list") Lua binding, $(wc -l <"$out/python.list") Python binding)"
exit $status
