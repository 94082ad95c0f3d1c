#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer runs of the binding suites:
# the Python suite against an extension built with -DMPCONN_SANITIZE=ON
# (PYTHONMALLOC=malloc, the runtime preloaded into the uninstrumented
# interpreter) and the Lua suite against a sanitized Lua module (leak
# detection on, with the suppressions in .ci/lsan.supp).
#
#   .ci/sanitize_bindings.sh
#
# Skipped there: tests that run valgrind (it cannot run under ASan) and the
# capped-allocator Lua host (it replaces the allocator ASan intercepts).
# Exits non-zero on any failing test or sanitizer report.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${MPCONN_ASAN_BINDINGS_BUILD:-$ROOT/build-asan-bindings}"
JOBS="${MPCONN_JOBS:-2}"
PY="${PYTHON:-python3}"
start=$(date +%s)
fail() { echo "sanitize_bindings.sh: FAIL: $* ($(( $(date +%s) - start )) s)"; exit 1; }

ASAN_LIB="$(gcc -print-file-name=libasan.so)"
[ -f "$ASAN_LIB" ] || fail "no libasan.so from gcc"
mkdir -p "$BUILD"

# --- Python -----------------------------------------------------------------
VENV="$BUILD/venv"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV" || fail "venv"
"$VENV/bin/python" -c 'import pytest' 2>/dev/null ||
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check pytest || fail "pip install pytest"
CMAKE_ARGS="-DMPCONN_SANITIZE=ON" MPCONN_SETUPTOOLS_BUILD="$BUILD/setuptools" \
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$ROOT" \
  || fail "pip install of the sanitized extension"

# The Lua module, the CLI (for the Python suite's CLI tests) and the Lua tests.
cmake -S "$ROOT" -B "$BUILD/cmake" -DMPCONN_SANITIZE=ON -DMPCONN_BUILD_LUA=ON -DMPCONN_BUILD_TESTS=ON \
  -DMPCONN_BUILD_PYTHON=OFF -DMPCONN_PYTHON="$VENV/bin/python" >"$BUILD/cmake.log" 2>&1 || fail "cmake configure (see $BUILD/cmake.log)"
cmake --build "$BUILD/cmake" -j"$JOBS" >>"$BUILD/cmake.log" 2>&1 || fail "build (see $BUILD/cmake.log)"

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
echo "==> Python suite, sanitized extension"
# CPython leaks by design at exit: leak detection stays off for Python.
(cd "$BUILD" && LD_PRELOAD="$ASAN_LIB" PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 \
  MPCONN_CLI="$BUILD/cmake/bin/mpconn" MPCONN_TEST_DEADLINE=600 \
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$ROOT/tests/python" \
  -k 'not cpython_suite and not valgrind') || fail "the Python suite under ASan/UBSan"

echo "==> Lua suite, sanitized module"
LD_PRELOAD="$ASAN_LIB" ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 \
  LSAN_OPTIONS="suppressions=$ROOT/.ci/lsan.supp:print_suppressions=0" \
  ctest --test-dir "$BUILD/cmake" -R '^lua\.' -E 'valgrind|capped' -j"$JOBS" --output-on-failure \
  || fail "the Lua suite under ASan/UBSan"

echo "sanitize_bindings.sh: PASS: the Python and Lua suites under ASan+UBSan ($(( $(date +%s) - start )) s)"
