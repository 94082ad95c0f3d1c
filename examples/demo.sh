#!/usr/bin/env bash
# mpconn demo: plain Python values cross the language line, both ways,
# with unmodified CPython programs on the other side.
#
#   bash examples/demo.sh
#
# 1. The typical stock CPython program examples/python/listener.py
#    (multiprocessing.connection.Listener; it prints "Player Data Received:
#    {...}" for what conn.recv() returns and replies conn.send("thanks"))
#    receives player data sent with send() by
#      a. a C client: examples/c/value_client.c (mpc_send_value) and the
#         mpconn CLI (mpconn send --value "{...}");
#      b. a Python client through mpconn: examples/python/client.py with its
#         import line changed to "from mpconn import Client";
#      c. a Lua client through mpconn: conn:send(table).
# 2. The reverse: the unmodified stock CPython client examples/python/client.py
#    sends with conn.send(player) to
#      a. a C listener: mpconn listen --decode (prints Python's repr);
#      b. a Lua listener: conn:recv().
# 3. Safety: a stock client sends a pickle that would run os.system; the C
#    listener refuses it, names the opcode and the global, runs nothing,
#    and prints the next message.
#
# First the Debian packages the demo needs (.ci/deps.sh demo): installed
# when missing if this runs as root or with passwordless sudo, else the
# demo prints the apt-get command to run and stops.
# The C parts are built with CMake into build/ (or $MPCONN_BUILD_DIR) when
# missing.  The Python step needs an interpreter that can import the mpconn
# package (build/venv, or $MPCONN_PYTHON, or python3 if it is installed
# there); the Lua steps need the Lua module (built here when lua5.4 and
# SWIG are present) with value support.  A step whose part is not available
# prints "skipped: <reason>"; a step that runs and fails makes the demo exit 1.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${MPCONN_BUILD_DIR:-$ROOT/build}"
MPCONN="$BUILD/bin/mpconn"
VALUE_CLIENT="$BUILD/examples/c/value_client"
PY="${PYTHON:-python3}"
KEY="demo-secret"
TMP="$(mktemp -d)"
PIDS=()
FAILED=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

label() { printf '\n== %s\n' "$*"; }
sub() { printf -- '-- %s\n' "$*"; }
prefix() { sed -u "s/^/  [$1] /"; }
skipped() { printf '  skipped: %s\n' "$*"; }
fail() { printf '  FAILED: %s\n' "$*"; FAILED+=("$*"); }

# Waits (up to 10 s) for a line matching $2 in file $1 and prints it.
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

# ---------------------------------------------------------------- building
PYTHON="$PY" bash "$ROOT/.ci/deps.sh" demo || exit 1
# Incremental: a no-op taking about a second when everything is up to date,
# so the demo always shows the current sources.  A fresh tree is configured
# without the test suites (they need pytest; tests/run_all.sh sets them up).
LUA="$(command -v lua5.4 || true)"
TARGETS=(mpconn_cli mpconn_value_client)
[ -n "$LUA" ] && TARGETS+=(mpconn_lua)
label "building ${TARGETS[*]} (cmake into $BUILD)"
{ { [ -f "$BUILD/CMakeCache.txt" ] ||
    cmake -S "$ROOT" -B "$BUILD" -DMPCONN_BUILD_TESTS=OFF -DMPCONN_BUILD_LUA=ON; } &&
  cmake --build "$BUILD" -j2 --target "${TARGETS[@]}"; } >"$TMP/build.log" 2>&1 \
  || { cat "$TMP/build.log" >&2; echo "demo: building failed" >&2; exit 1; }
echo "built $MPCONN, $VALUE_CLIENT${LUA:+ and $BUILD/lua/mpconn/core.so}"
export LUA_CPATH="$BUILD/lua/?.so;;" LUA_PATH="$BUILD/lua/?.lua;$ROOT/lua/?.lua;;"
LUA_WHY=""
if [ -z "$LUA" ]; then
  LUA_WHY="lua5.4 is not installed"
elif ! "$LUA" -e 'require "mpconn"' >/dev/null 2>&1; then
  LUA_WHY="the Lua module is not built in $BUILD/lua"
elif ! "$LUA" -e 'local m = require "mpconn"
    os.exit(type(m.Connection) == "table" and type(m.Connection.send) == "function"
            and type(m.Connection.recv) == "function" and 0 or 1)' >/dev/null 2>&1; then
  LUA_WHY="Lua send/recv not built (this Lua module moves bytes only)"
fi

PYM=""
for cand in "${MPCONN_PYTHON:-}" "$BUILD/venv/bin/python" "$ROOT/build/venv/bin/python" python3; do
  [ -n "$cand" ] || continue
  if (cd "$TMP" && "$cand" -c 'from mpconn import Client' >/dev/null 2>&1); then PYM="$cand"; break; fi
done
if [ -z "$PYM" ]; then
  # First run: install the package the way a user would (pip install .).
  label "installing the mpconn Python package into $BUILD/venv (pip install ., first run only)"
  { [ -x "$BUILD/venv/bin/python" ] || "$PY" -m venv "$BUILD/venv"; } >"$TMP/pip.log" 2>&1 &&
    "$BUILD/venv/bin/python" -m pip install -q --disable-pip-version-check "$ROOT" >>"$TMP/pip.log" 2>&1 \
    || { cat "$TMP/pip.log" >&2; echo "demo: pip install . failed" >&2; exit 1; }
  PYM="$BUILD/venv/bin/python"
  echo "installed; $PYM can import mpconn"
fi

# ------------------------------------------------------ the stock listener
# Starts examples/python/listener.py (stock CPython, one client) and sets
# ADDR to its address.
start_stock_listener() {
  timeout 30 "$PY" -u "$ROOT/examples/python/listener.py" 127.0.0.1:0 "$KEY" \
    >"$TMP/listener.out" 2>&1 &
  LISTENER_PID=$!
  PIDS+=("$LISTENER_PID")
  local line
  line="$(wait_line "$TMP/listener.out" "^Listening on ")" || return 1
  ADDR="127.0.0.1:$(sed -E 's/.*, ([0-9]+)\)$/\1/' <<<"$line")"
}

# Waits for the stock listener and shows what it printed; $1 = what the
# "Player Data Received" line must contain.
finish_stock_listener() {
  wait "$LISTENER_PID"
  local rc=$?
  prefix "stock CPython Listener" <"$TMP/listener.out"
  if [ $rc -ne 0 ] || ! grep -qF "Player Data Received: $1" "$TMP/listener.out"; then
    fail "the stock listener did not print the player data ($1...)"
  fi
}

# ---------------------------------------------------------------------------
label "1. a stock CPython Listener (examples/python/listener.py) <- mpconn clients' send()"

sub "1a. C: examples/c/value_client.c (mpc_send_value of a dict built in C)"
if start_stock_listener; then
  timeout 20 "$VALUE_CLIENT" "$ADDR" "$KEY" 2>&1 | prefix "C client"
  [ "${PIPESTATUS[0]}" -eq 0 ] || fail "the C value client"
  finish_stock_listener "{'name': 'Ada', 'level': 42"
else
  fail "starting the stock listener"
fi

VALUE="{'name': 'Grace', 'level': 7, 'score': -0.5, 'inventory': ['compiler', b'\\x00raw'], 'position': (1, 2), 'online': True}"
sub "1a. C: mpconn send --value \"$VALUE\" --recv 1 --decode"
if start_stock_listener; then
  timeout 20 "$MPCONN" send "$ADDR" --authkey "$KEY" --value "$VALUE" --recv 1 --decode 2>&1 \
    | prefix "mpconn send"
  [ "${PIPESTATUS[0]}" -eq 0 ] || fail "mpconn send --value"
  finish_stock_listener "$VALUE"
else
  fail "starting the stock listener"
fi

sub "1b. Python through mpconn: examples/python/client.py with 'from mpconn import Client'"
if [ -n "$PYM" ]; then
  sed 's/^from multiprocessing.connection import Client$/from mpconn import Client/' \
    "$ROOT/examples/python/client.py" >"$TMP/client_mpconn.py"
  if ! grep -q '^from mpconn import Client$' "$TMP/client_mpconn.py"; then
    fail "examples/python/client.py has no 'from multiprocessing.connection import Client' line"
  elif start_stock_listener; then
    (cd "$TMP" && timeout 20 "$PYM" client_mpconn.py "$ADDR" "$KEY") 2>&1 | prefix "Python+mpconn client"
    [ "${PIPESTATUS[0]}" -eq 0 ] || fail "the Python client through mpconn"
    finish_stock_listener "{'name': 'Alice'"
  else
    fail "starting the stock listener"
  fi
else
  skipped "no Python can import the mpconn package (build/venv, \$MPCONN_PYTHON or python3; run: bash tests/run_all.sh)"
fi

sub "1c. Lua through mpconn: conn:send(table)"
if [ -z "$LUA_WHY" ]; then
  if start_stock_listener; then
    timeout 20 "$LUA" - "$ADDR" "$KEY" 2>&1 <<'LUAEOF' | prefix "Lua client"
local mpconn = require "mpconn"
local conn = assert(mpconn.connect(arg[1], { authkey = arg[2] }))
-- a table with keys 1..n is a list, other tables are dicts
assert(conn:send({ name = "Lua", level = 5, inventory = { "lamp", "map" }, online = true }))
print("Sent player data, listener replied: " .. tostring(assert(conn:recv())))
conn:close()
LUAEOF
    [ "${PIPESTATUS[0]}" -eq 0 ] || fail "the Lua client"
    finish_stock_listener "{"
    grep -qF "'name': 'Lua'" "$TMP/listener.out" || fail "the Lua player data did not arrive"
  else
    fail "starting the stock listener"
  fi
else
  skipped "$LUA_WHY"
fi

# ---------------------------------------------------------------------------
label "2. mpconn listeners <- the unmodified stock CPython client (examples/python/client.py)"

sub "2a. C: mpconn listen --decode --echo (prints Python's repr; echoes the value back)"
timeout 30 "$MPCONN" listen 127.0.0.1:0 --authkey "$KEY" --decode --echo --count 1 \
  >"$TMP/cli.out" 2>"$TMP/cli.err" &
CLI_PID=$!
PIDS+=("$CLI_PID")
if ADDR="$(wait_line "$TMP/cli.err" '^listening on ' | cut -d' ' -f3)"; then
  timeout 20 "$PY" "$ROOT/examples/python/client.py" "$ADDR" "$KEY" 2>&1 | prefix "stock CPython Client"
  [ "${PIPESTATUS[0]}" -eq 0 ] || fail "the stock client against mpconn listen"
  wait "$CLI_PID" || fail "mpconn listen --decode"
  prefix "mpconn listen" <"$TMP/cli.out"
  grep -qF "{'name': 'Alice', 'level': 42" "$TMP/cli.out" || fail "mpconn listen did not print the dict"
else
  fail "starting mpconn listen"
fi

sub "2b. Lua: conn:recv()"
if [ -z "$LUA_WHY" ]; then
  # The Lua example itself (examples/lua/listener.lua): it prints exactly
  # what the Python listener prints, via conn:recv{ordered=true} + mpconn.repr.
  timeout 30 "$LUA" "$ROOT/examples/lua/listener.lua" 127.0.0.1:0 "$KEY" >"$TMP/lua.out" 2>&1 &
  LUA_PID=$!
  PIDS+=("$LUA_PID")
  if ADDR="$(wait_line "$TMP/lua.out" '^Listening on ' | cut -d' ' -f3)"; then
    timeout 20 "$PY" "$ROOT/examples/python/client.py" "$ADDR" "$KEY" 2>&1 | prefix "stock CPython Client"
    [ "${PIPESTATUS[0]}" -eq 0 ] || fail "the stock client against the Lua listener"
    wait "$LUA_PID" || fail "the Lua listener"
    prefix "Lua listener" <"$TMP/lua.out"
    grep -q "Player Data Received: .*Alice" "$TMP/lua.out" || fail "the Lua listener did not print the data"
  else
    fail "starting the Lua listener"
  fi
else
  skipped "$LUA_WHY"
fi

# ---------------------------------------------------------------------------
label "3. safety: a pickle that would run os.system is refused by mpconn listen --decode"
MARKER="$TMP/pwned"
timeout 30 "$MPCONN" listen 127.0.0.1:0 --authkey "$KEY" --decode --count 2 \
  >"$TMP/safe.out" 2>"$TMP/safe.err" &
CLI_PID=$!
PIDS+=("$CLI_PID")
if ADDR="$(wait_line "$TMP/safe.err" '^listening on ' | cut -d' ' -f3)"; then
  timeout 20 "$PY" - "$ADDR" "$KEY" "$MARKER" 2>&1 <<'PYEOF' | prefix "stock CPython Client"
import sys
from multiprocessing.connection import Client
host, port = sys.argv[1].rsplit(":", 1)
payload = ("cos\nsystem\n(S'touch %s'\ntR." % sys.argv[3]).encode()
with Client((host, int(port)), authkey=sys.argv[2].encode()) as c:
    c.send_bytes(payload)          # pickle.loads() of this would run the command
    c.send({"still": "connected"})
print("sent %r, then {'still': 'connected'}" % payload)
PYEOF
  # Exit status 8: a value was refused (README's exit status list), the
  # one outcome this step expects.
  rc=0
  wait "$CLI_PID" || rc=$?
  [ "$rc" -eq 8 ] || fail "mpconn listen --decode (safety): exit status $rc, expected 8 (a value refused)"
  echo "  (mpconn listen ended with exit status 8: a value was refused)"
  grep -v '^listening on' "$TMP/safe.err" | prefix "mpconn listen stderr"
  prefix "mpconn listen" <"$TMP/safe.out"
  grep -qF "refused opcode GLOBAL of global 'os.system'" "$TMP/safe.err" || fail "the refusal line"
  grep -qF "{'still': 'connected'}" "$TMP/safe.out" || fail "the message after the refused one"
  if [ -e "$MARKER" ]; then fail "the payload ran"; else echo "  (nothing ran: $MARKER does not exist)"; fi
else
  fail "starting mpconn listen"
fi

label "done"
if [ ${#FAILED[@]} -gt 0 ]; then
  printf 'demo: %d step(s) failed:\n' "${#FAILED[@]}" >&2
  printf '  %s\n' "${FAILED[@]}" >&2
  exit 1
fi
echo "every step that could run worked"
