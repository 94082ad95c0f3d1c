#!/usr/bin/env bash
# mpconn demo: byte-level messages between unmodified CPython
# (multiprocessing.connection) and mpconn, in both directions.
#
#   bash examples/demo.sh
#
# 1. a stock CPython Listener receives from the mpconn C CLI (and from the
#    mpconn Python package and the Lua module when they have been built:
#    build/venv with mpconn installed, build/lua/);
# 2. `mpconn listen` receives from a stock CPython Client and echoes back.
# Builds build/bin/mpconn with CMake first if it is missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${MPCONN_BUILD_DIR:-$ROOT/build}"
MPCONN="$BUILD/bin/mpconn"
PY="${PYTHON:-python3}"
KEY="demo-secret"
TMP="$(mktemp -d)"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

label() { printf '\n== %s\n' "$*"; }
prefix() { sed -u "s/^/  [$1] /"; }

# Waits (up to 10 s) for a line matching $2 in file $1 and prints the match.
wait_line() {
  local i
  for i in $(seq 1 1000); do
    if grep -m1 -E "$2" "$1" 2>/dev/null; then return 0; fi
    sleep 0.01
  done
  echo "demo: timed out waiting for '$2' in $1" >&2
  cat "$1" >&2
  return 1
}

if [ ! -x "$MPCONN" ]; then
  label "building the mpconn CLI (cmake into $BUILD)"
  { cmake -S "$ROOT" -B "$BUILD" -DMPCONN_BUILD_TESTS=OFF &&
    cmake --build "$BUILD" -j2 --target mpconn_cli; } >"$TMP/build.log" 2>&1 \
    || { cat "$TMP/build.log" >&2; echo "demo: building the mpconn CLI failed" >&2; exit 1; }
fi

VPY="$BUILD/venv/bin/python"
HAVE_PY=0
if [ -x "$VPY" ] && (cd "$TMP" && "$VPY" -c 'import mpconn' 2>/dev/null); then HAVE_PY=1; fi
LUA="$(command -v lua5.4 || true)"
export LUA_CPATH="$BUILD/lua/?.so;;" LUA_PATH="$BUILD/lua/?.lua;$ROOT/lua/?.lua;;"
HAVE_LUA=0
if [ -n "$LUA" ] && "$LUA" -e 'require "mpconn"' 2>/dev/null; then HAVE_LUA=1; fi
CLIENTS=$((1 + HAVE_PY + HAVE_LUA))

# ---------------------------------------------------------------------------
label "1. stock CPython Listener  <-  mpconn clients   (authkey '$KEY', TCP)"
timeout 60 "$PY" -u "$ROOT/examples/stock_listener.py" --authkey "$KEY" --clients "$CLIENTS" \
  >"$TMP/listener.out" 2>&1 &
PIDS+=($!)
LISTENER_PID=$!
ADDR="$(wait_line "$TMP/listener.out" '^ADDRESS ' | cut -d' ' -f2)"
echo "stock CPython Listener is on $ADDR"

echo "-- C: $MPCONN send $ADDR --authkey $KEY --recv 2 'hello from C' 'bytes: é'"
timeout 20 "$MPCONN" send "$ADDR" --authkey "$KEY" --recv 2 "hello from C" "bytes: é" | prefix "mpconn send"

if [ "$HAVE_PY" = 1 ]; then
  echo "-- Python: from mpconn import Client (build/venv)"
  (cd "$TMP" && timeout 20 "$VPY" - "$ADDR" "$KEY" <<'PYEOF') | prefix "mpconn Python"
import sys
from mpconn import Client
host, port = sys.argv[1].rsplit(":", 1)
with Client((host, int(port)), authkey=sys.argv[2].encode()) as c:
    c.send_bytes(b"hello from Python through mpconn")
    print("reply:", c.recv_bytes())
PYEOF
else
  echo "-- Python client skipped: build/venv has no mpconn package yet (run: bash tests/run_all.sh)"
fi

if [ "$HAVE_LUA" = 1 ]; then
  echo "-- Lua: require 'mpconn' (build/lua)"
  timeout 20 "$LUA" - "$ADDR" "$KEY" <<'LUAEOF' | prefix "mpconn Lua"
local mpconn = require "mpconn"
local c = assert(mpconn.connect(arg[1], {authkey = arg[2]}))
assert(c:send_bytes("hello from Lua through mpconn"))
print("reply: " .. assert(c:recv_bytes()))
c:close()
LUAEOF
else
  echo "-- Lua client skipped: the Lua module is not built in $BUILD/lua yet"
fi

# The listener exits once it has served all $CLIENTS clients.
wait "$LISTENER_PID"
echo "-- what the stock CPython Listener printed:"
grep -v '^ADDRESS ' "$TMP/listener.out" | prefix "CPython Listener"

# ---------------------------------------------------------------------------
label "2. mpconn listen  <-  stock CPython Client   (authkey '$KEY', TCP, --echo)"
timeout 30 "$MPCONN" listen 127.0.0.1:0 --authkey "$KEY" --count 2 --echo \
  >"$TMP/cli.out" 2>"$TMP/cli.err" &
PIDS+=($!)
CLI_PID=$!
ADDR="$(wait_line "$TMP/cli.err" '^listening on ' | cut -d' ' -f3)"
echo "mpconn listen is on $ADDR"
timeout 20 "$PY" "$ROOT/examples/stock_client.py" "$ADDR" --authkey "$KEY" \
  "hello from CPython" "second message" | prefix "CPython Client"
wait "$CLI_PID"
echo "-- what mpconn listen printed:"
prefix "mpconn listen" <"$TMP/cli.out"

label "done"
