#!/usr/bin/env bash
# One command for the whole benchmark (README "Performance"):
#   bash bench/run.sh [--quick] [--scale F] [--reps N] [--impls ...] [--modes ...] [--sizes ...]
# Builds the library, the bench program, the Python package (build/venv) and
# the Lua module if they are missing, installs pyzmq and uvloop for the
# comparisons, then runs bench/run.py.  A smoke test of every row in seconds
# (numbers meaningless): --quick --scale 0.02.  The asyncio rows
# (bench/bench_asyncio.py, pinned Unix socket only) add about 20 s a
# repetition.  Estimated at about 10 minutes on 2 idle cores (7 before
# issue 15's rows; not measured idle since), a quarter of it the
# Lua floor, LuaSocket, Lua read-ahead and Python floor rows (14-17 minutes
# as measured with other work sharing the cores; --quick: about 2).
# The TLS rows (c-mpconn-tls, connect-tls; TCP only) make their certificates
# per run with tests/tls/make_certs.sh, which needs the openssl command
# (without it they are left out with a note).
# The Python package is reinstalled when its sources changed since the last run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MPCONN_BUILD:-$root/build}
if [ ! -x "$build/venv/bin/python" ]; then
  python3 -m venv "$build/venv"
fi
# Reinstall the Python package whenever a source it is built from changed
# since the last install (a stale venv would measure old code).
stamp="$build/venv/.mpconn-installed"
if ! "$build/venv/bin/python" -c 'import mpconn' 2>/dev/null || [ ! -e "$stamp" ] ||
   [ -n "$(find "$root/python" "$root/bindings" "$root/c_core" "$root/setup.py" "$root/pyproject.toml" \
            -newer "$stamp" -type f -print -quit 2>/dev/null)" ]; then
  touch "$stamp.new"  # the time the sources were taken
  "$build/venv/bin/pip" install -q "$root"
  mv "$stamp.new" "$stamp"
fi
"$build/venv/bin/python" -c 'import zmq' 2>/dev/null || "$build/venv/bin/pip" install -q pyzmq
# uvloop for the asyncio rows' second loop (bench/bench_asyncio.py); without
# it those rows say "uvloop not installed" and the rest still runs.
"$build/venv/bin/python" -c 'import uvloop' 2>/dev/null || "$build/venv/bin/pip" install -q uvloop ||
  echo "bench: uvloop could not be installed; its asyncio rows will be skipped" >&2
cmake -S "$root" -B "$build" -DMPCONN_BUILD_LUA=ON -DMPCONN_BUILD_TESTS=OFF -DMPCONN_PYTHON="$build/venv/bin/python" >/dev/null
cmake --build "$build" -j2 >/dev/null
exec "$build/venv/bin/python" "$root/bench/run.py" "$@"
