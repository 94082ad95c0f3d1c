#!/usr/bin/env bash
# Static analysis of the C core and the CLI: clang's static analyzer
# (clang --analyze, one translation unit at a time, its default checkers)
# and cppcheck (warning, style, performance and portability checks).  Every
# finding fails the check unless .ci/analyze.supp names it as a false
# positive, with its reason; an entry there that no longer matches anything
# fails it too.  Called by .ci/run; about 40 s of CPU time (20 s on two
# idle cores), nearly all of it the analyzer.
#
#   bash .ci/analyze.sh
#
# Environment: CLANG (default clang), CPPCHECK (default cppcheck),
# MPCONN_JOBS (parallel analyzer runs, default 2).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
CLANG="${CLANG:-clang}"
CPPCHECK="${CPPCHECK:-cppcheck}"
JOBS="${MPCONN_JOBS:-2}"
for tool in "$CLANG" "$CPPCHECK" python3; do
  command -v "$tool" >/dev/null || { echo "analyze.sh: $tool not found (bash .ci/deps.sh test installs it)" >&2; exit 1; }
done

out="$(mktemp -d "${TMPDIR:-/tmp}/mpconn-analyze.XXXXXX")"
trap 'rm -rf "$out"' EXIT

# The sources: every .c of the core (c_core/sources.cmake lists the same
# files for the build) and the CLI, with the build's defines.
find c_core/src c_core/tools -name '*.c' | LC_ALL=C sort >"$out/sources"
FLAGS=(-std=gnu11 -D_GNU_SOURCE -DMPC_BUILDING -Ic_core/include -Ic_core/src)

start=$SECONDS
# -analyzer-output=text: each report is followed by the path that leads to
# it (the "note:" lines), printed when the finding is not suppressed.
xargs -P "$JOBS" -I{} sh -c '"$0" --analyze "$@" -Xanalyzer -analyzer-output=text -o /dev/null {} >"$1/$(echo {} | tr / _).log" 2>&1' \
  "$CLANG" "$out" "${FLAGS[@]}" <"$out/sources" || true
cat "$out"/*.log >"$out/clang.txt"
clang_secs=$((SECONDS - start))

start=$SECONDS
# OPENSSL_VERSION_NUMBER: the configuration built on OpenSSL 3 (without
# system headers cppcheck would take the pre-3 branch of handshake.c).
"$CPPCHECK" -q --enable=warning,style,performance,portability --std=c11 -j "$JOBS" \
  -D_GNU_SOURCE -DMPC_BUILDING -DOPENSSL_VERSION_NUMBER=0x30000000L -Ic_core/include -Ic_core/src \
  --template='{file}:{line}:{column}: {severity}: {message} [{id}]' \
  --file-list="$out/sources" 2>"$out/cppcheck.txt" >/dev/null
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
echo "analyze.sh: clang --analyze ${clang_secs}s, cppcheck ${cppcheck_secs}s over $(wc -l <"$out/sources") files"
exit $status
