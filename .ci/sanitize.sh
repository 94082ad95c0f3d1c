#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the C library and its
# cmocka tests.
#
#   .ci/sanitize.sh
#
# Configures <repo>/build-asan (MPCONN_ASAN_BUILD overrides) with
# -DMPCONN_SANITIZE=ON (-fsanitize=address,undefined, no recovery), builds
# the library and the C tests, and runs `ctest -R '^c\.'` with leak
# detection on.  Exits non-zero on any failing test or any sanitizer report;
# the last line is a one-line summary.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${MPCONN_ASAN_BUILD:-$ROOT/build-asan}"
JOBS="${MPCONN_JOBS:-2}"
LOG="$BUILD/sanitize-ctest.log"
start=$(date +%s)

fail() {
  echo "sanitize.sh: FAIL: $* ($(( $(date +%s) - start )) s)"
  exit 1
}

mkdir -p "$BUILD"

# tests/CMakeLists.txt wants a python with pytest for the pytest suites even
# though only the C tests run here.
PY="${MPCONN_PYTHON:-}"
if [ -z "$PY" ]; then
  if python3 -c 'import pytest' >/dev/null 2>&1; then
    PY="$(command -v python3)"
  else
    if [ ! -x "$BUILD/venv/bin/python" ]; then
      python3 -m venv "$BUILD/venv" || fail "python3 -m venv"
    fi
    "$BUILD/venv/bin/python" -c 'import pytest' >/dev/null 2>&1 ||
      "$BUILD/venv/bin/python" -m pip install -q --disable-pip-version-check pytest || fail "pip install pytest"
    PY="$BUILD/venv/bin/python"
  fi
fi

echo "==> configure $BUILD (MPCONN_SANITIZE=ON)"
cmake -S "$ROOT" -B "$BUILD" -DMPCONN_SANITIZE=ON -DMPCONN_BUILD_TESTS=ON -DMPCONN_BUILD_LUA=OFF \
  -DMPCONN_BUILD_PYTHON=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPCONN_PYTHON="$PY" >"$BUILD/sanitize-configure.log" 2>&1 ||
  { tail -n 30 "$BUILD/sanitize-configure.log"; fail "cmake configure"; }

echo "==> build"
cmake --build "$BUILD" -j"$JOBS" >"$BUILD/sanitize-build.log" 2>&1 ||
  { grep -E 'error|Error' "$BUILD/sanitize-build.log" | head -n 30; fail "build"; }

echo "==> ctest -R '^c\\.' under ASan+UBSan"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export LSAN_OPTIONS="report_objects=1"
ctest --test-dir "$BUILD" -R '^c\.' -j"$JOBS" -V --timeout 300 >"$LOG" 2>&1
status=$?

ntests=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: c\.' "$LOG" || true)
findings=$(grep -cE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$LOG" || true)
verdict=$(grep -E '^[0-9]+% tests passed' "$LOG" | tail -n 1)

if [ "$findings" -gt 0 ]; then
  grep -nE -A12 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$LOG" | head -n 80
fi
if [ "$status" -ne 0 ]; then
  grep -E 'Failed|\*\*\*' "$LOG" | tail -n 20
fi
elapsed=$(( $(date +%s) - start ))
if [ "$ntests" -eq 0 ]; then
  fail "no C tests ran (see $LOG)"
fi
if [ "$status" -ne 0 ] || [ "$findings" -gt 0 ]; then
  echo "sanitize.sh: FAIL: $ntests C test programs under ASan+UBSan, $findings sanitizer findings, ctest: ${verdict:-exit $status} (${elapsed} s; log $LOG)"
  exit 1
fi
echo "sanitize.sh: PASS: $ntests C test programs under ASan+UBSan (leak detection on), 0 sanitizer findings, ctest: $verdict (${elapsed} s)"
