#!/usr/bin/env bash
# The Debian packages mpconn needs, in one place: examples/demo.sh,
# tests/run_all.sh and .ci/run all call this first.
#
#   bash .ci/deps.sh [demo|test]      (default: test)
#
#   demo  what the demo needs: the C build (gcc, make, cmake, pkg-config,
#         libssl-dev), SWIG, Lua 5.4 with headers, Python with venv/headers;
#   test  the above plus what the test suites and CI use (cmocka, valgrind,
#         clang with its sanitizer/fuzzer runtime, cppcheck, iproute2, and
#         the Lua event-loop libraries cqueues and luv).
#
# Only what is missing is installed.  As root, or with passwordless sudo, it
# installs it (one line says what; apt's own output goes to a log shown only
# on failure).  Otherwise it prints the one command to run and exits 1.
# Exits 0 at once when everything is there.  On a machine without dpkg it
# only names the packages it would want and goes on.
#
# Environment: PYTHON (the interpreter the caller will use; default python3),
# MPCONN_SKIP_DEPS=1 (do nothing: for machines set up some other way).
set -uo pipefail

want="${1:-test}"
PY="${PYTHON:-python3}"

DEMO_PKGS=(gcc make pkg-config libssl-dev swig lua5.4 liblua5.4-dev)
TEST_PKGS=("${DEMO_PKGS[@]}" libcmocka-dev valgrind clang libclang-rt-14-dev cppcheck iproute2 lua-cqueues lua-luv lua-socket)

case "$want" in
  demo) PKGS=("${DEMO_PKGS[@]}") ;;
  test) PKGS=("${TEST_PKGS[@]}") ;;
  *) echo "usage: $0 [demo|test]" >&2; exit 2 ;;
esac

[ "${MPCONN_SKIP_DEPS:-0}" = 1 ] && exit 0

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "deps.sh: not a Debian system; make sure these (Debian names) are installed: ${PKGS[*]} cmake python3-venv python3-dev"
  exit 0
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# cmake may come from pip or elsewhere: Debian's only when none runs.
cmake --version >/dev/null 2>&1 || missing+=(cmake)
# Python with venv and headers (pyenv's and python.org's have both; Debian
# splits them into python3-venv and python3-dev).
if ! command -v "$PY" >/dev/null 2>&1; then
  missing+=(python3 python3-venv python3-dev)
else
  "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
  "$PY" -c 'import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' \
    >/dev/null 2>&1 || missing+=(python3-dev)
fi

[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  SUDO=(sudo -n)
else
  echo "mpconn needs these Debian packages, which are not installed: ${missing[*]}" >&2
  echo "Install them with this command, then run this again:" >&2
  echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

echo "==> installing Debian packages: ${missing[*]}"
log="$(mktemp "${TMPDIR:-/tmp}/mpconn-apt.XXXXXX")"
export DEBIAN_FRONTEND=noninteractive
if "${SUDO[@]}" apt-get update -q >"$log" 2>&1 &&
   "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
  rm -f "$log"
  exit 0
fi
tail -n 30 "$log" >&2
echo "deps.sh: apt-get failed (full log: $log)" >&2
exit 1
