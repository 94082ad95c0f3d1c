#!/usr/bin/env bash
# Builds the CPython 3.13 venv the CPython-suite test uses (MPCONN_PY313):
#   setup_venv313.sh VENV_DIR SOURCE_TREE
# Needs pyenv's 3.13.0.  Without it prints why and exits 0: the pytest items
# for 3.13 then skip with that reason (visible in the report).
set -euo pipefail
VENV="$1"; SRC="$2"
PY313=""
if command -v pyenv >/dev/null 2>&1; then
  PY313="$(pyenv prefix 3.13.0 2>/dev/null || true)/bin/python"
fi
if [ -z "$PY313" ] || [ ! -x "$PY313" ]; then
  echo "setup_venv313: no CPython 3.13.0 (pyenv prefix 3.13.0); the 3.13 CPython-suite items will skip"
  rm -rf "$VENV"
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY313" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "$SRC"
(cd / && "$VENV/bin/python" -c 'import mpconn, test._test_multiprocessing; print("setup_venv313: mpconn", mpconn.__version__, "on", __import__("sys").version.split()[0])')
