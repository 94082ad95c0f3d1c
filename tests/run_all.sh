#!/usr/bin/env bash
# Runs every test suite of mpconn with one command (the README's test command).
#
#   bash tests/run_all.sh
#
# 0. the Debian packages the suites need (.ci/deps.sh test: installed when
#    missing if this runs as root or with passwordless sudo, else it prints
#    the apt-get command to run and stops),
# 1. a virtualenv at build/venv with pytest, uvloop and trustme (and the mpconn Python package when
#    the repository has one: `pip install .`),
# 2. CMake configure + build into build/ (-j2),
# 3. ctest over every registered suite (C unit tests, Python, Lua, interop),
#    except the slow valgrind runs of the Lua event-loop tests (label
#    slow_valgrind), which CI runs on its own (.ci/run).
# Re-running reuses build/ and the venv.  The last line printed is ctest's
# verdict, "100% tests passed, 0 tests failed out of N"; the exit status is
# ctest's.
#
# Environment knobs: MPCONN_BUILD_DIR (default <repo>/build), MPCONN_JOBS
# (default 2), PYTHON (the interpreter that creates the venv; default python3),
# MPCONN_CMAKE_ARGS (more -D options for the configure, e.g. -DMPCONN_WERROR=ON),
# MPCONN_SKIP_DEPS=1 (skip step 0).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${MPCONN_BUILD_DIR:-$ROOT/build}"
JOBS="${MPCONN_JOBS:-2}"
PY="${PYTHON:-python3}"
VENV="$BUILD/venv"

step() { printf '\n==> %s\n' "$*"; }
die() { printf '\nrun_all.sh: FAILED: %s\n' "$*" >&2; exit 1; }

cd "$ROOT"
PYTHON="$PY" bash "$ROOT/.ci/deps.sh" test || exit 1
mkdir -p "$BUILD"

step "Python virtualenv: $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV" || die "'$PY -m venv' failed (on Debian: apt-get install python3-venv)"
fi
VPY="$VENV/bin/python"
if ! "$VPY" -c 'import pytest' 2>/dev/null; then
  "$VPY" -m pip install -q --disable-pip-version-check pytest || die "pip install pytest"
fi
# uvloop: tests/python/test_asyncio.py runs every item on asyncio's loop and
# on uvloop; without it the uvloop items skip and say so.
if ! "$VPY" -c 'import uvloop' 2>/dev/null; then
  "$VPY" -m pip install -q --disable-pip-version-check uvloop \
    || echo "run_all.sh: pip install uvloop failed: the uvloop items of test_asyncio.py will skip" >&2
fi
# trustme: tests/python/test_tls.py makes its certificates with it.
if ! "$VPY" -c 'import trustme' 2>/dev/null; then
  "$VPY" -m pip install -q --disable-pip-version-check trustme || die "pip install trustme"
fi

if [ -f "$ROOT/setup.py" ] || [ -f "$ROOT/pyproject.toml" ]; then
  step "pip install . (the mpconn Python package)"
  "$VPY" -m pip install -q --disable-pip-version-check "$ROOT" \
    || die "pip install . failed: the mpconn Python package did not build (see the output above)"
  # Import from outside the source tree so the installed copy is what we test.
  (cd "$BUILD" && "$VPY" -c 'import mpconn') \
    || die "the mpconn package installed but 'import mpconn' fails"
fi

step "CMake configure: $BUILD"
# Tests and Lua are required here (a missing part is an error, not a skip).
# The Python extension the suites use is the one `pip install .` built above
# (through this same CMake project), so it is not built a second time here.
cmake -S "$ROOT" -B "$BUILD" -DMPCONN_BUILD_TESTS=ON -DMPCONN_BUILD_LUA=ON -DMPCONN_BUILD_PYTHON=OFF \
  -DMPCONN_PYTHON="$VPY" ${MPCONN_CMAKE_ARGS:-} || die "cmake configure"

step "CMake build (-j$JOBS)"
cmake --build "$BUILD" -j"$JOBS" || die "build"

step "ctest"
LOG="$BUILD/ctest-last.log"
# Tables the suites write (ctest hides the output of passing tests).
REPORTS=("$BUILD/tests/interop/interop-matrix.txt"
         "$BUILD/tests/interop/matrix.txt"
         "$BUILD/tests/reliability/reliability-figures.txt"
         "$BUILD/tests/hostile/hostile-table.txt")
rm -f "${REPORTS[@]}"
set +e
ctest --test-dir "$BUILD" --output-on-failure -j"$JOBS" --timeout 900 -LE slow_valgrind 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
# ctest prints its verdict and then the total time (and any failure list);
# repeat the verdict so it is the last line, which is what CI reads.  CMake
# 4 drops ", 0 tests failed" when nothing failed; we always print the
# long form: "100% tests passed, 0 tests failed out of N".
raw="$(grep -E '^[0-9]+% tests passed(, [0-9]+ tests? failed)? out of [0-9]+' "$LOG" | tail -n 1 || true)"
if [ -n "$raw" ]; then
  pct="$(sed -E 's/^([0-9]+)%.*/\1/' <<<"$raw")"
  total="$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$raw")"
  failed=0
  if grep -qE 'tests? failed' <<<"$raw"; then
    failed="$(sed -E 's/.*, ([0-9]+) tests? failed.*/\1/' <<<"$raw")"
  fi
  verdict="$pct% tests passed, $failed tests failed out of $total"
else
  verdict="ctest produced no verdict (exit status $status)"
  [ "$status" -ne 0 ] || status=1
fi
# The interop matrix (written by tests/interop/conftest.py) is worth seeing
# even when everything passed, which ctest would not show.
for report in "${REPORTS[@]}"; do
  if [ -f "$report" ]; then
    echo
    cat "$report"
  fi
done
echo
echo "$verdict"
exit "$status"
