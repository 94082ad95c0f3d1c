#!/usr/bin/env bash
# Checks the Lua binding's decisions about the C API and its behaviour on load.
#
#   bash .ci/check_lua_api.sh [path/to/mpconn/core.so]
#
# 1. Every `mpc_` function declared MPC_API in c_core/include/mpconn.h is
#    either wrapped by SWIG (it is in the function table of the wrapper SWIG
#    generates from bindings/lua/mpconn_lua.i, made here in a temporary
#    folder) or ignored with a reason: `%ignore NAME;` or
#    `%rename("$ignore", regextarget=1, ...) "REGEX";` in mpconn_lua.i or in
#    the shared bindings/mpconn.i it includes, with a comment on the same line
#    or a comment block ending right above it (other %ignore/%rename lines in
#    between are fine).  Neither, or ignored without a reason, fails.
# 2. Given the built module: it changes no global state when loaded (SPEC
#    11): not marked NODELETE, and it imports neither lua_setallocf nor the
#    dl calls (dlopen, dladdr) that pinning itself would need.
# Exits 1 and says what is wrong; needs swig (and readelf, nm for 2).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HEADER="$ROOT/c_core/include/mpconn.h"
LUA_I="$ROOT/bindings/lua/mpconn_lua.i"
SHARED_I="$ROOT/bindings/mpconn.i"
SWIG="${SWIG_EXECUTABLE:-$(command -v swig || command -v swig4.0 || true)}"
[ -n "$SWIG" ] || { echo "check_lua_api: swig not found" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail=0

# The public functions: comments removed, then every MPC_API declaration.
sed -e ':a' -e 'N' -e '$!ba' -e 's|/\*[^*]*\*\+\([^/*][^*]*\*\+\)*/| |g' "$HEADER" |
  tr '\n' ' ' | grep -o 'MPC_API[^;{]*' | grep -o '\bmpc_[A-Za-z0-9_]*[[:space:]]*(' |
  tr -d ' (' | sort -u >"$tmp/public"

# What SWIG wraps.
"$SWIG" -lua -nomoduleglobal -I"$ROOT/c_core/include" -o "$tmp/wrap.c" "$LUA_I"
grep -o '{ "mpc_[A-Za-z0-9_]*", _wrap_' "$tmp/wrap.c" | cut -d'"' -f2 | sort -u >"$tmp/wrapped"

# What is ignored: "name|reason?" and "regex|reason?" lines.
for f in "$LUA_I" "$SHARED_I"; do
  awk -v file="${f#"$ROOT"/}" '
    { line[NR] = $0 }
    END {
      for (i = 1; i <= NR; i++) {
        kind = ""
        if (line[i] ~ /^[ \t]*%ignore[ \t]+[A-Za-z_][A-Za-z0-9_]*[ \t]*;/) {
          kind = "name"; what = line[i]; sub(/^[ \t]*%ignore[ \t]+/, "", what); sub(/[ \t]*;.*/, "", what)
        } else if (line[i] ~ /^[ \t]*%rename\("\$ignore",[^)]*regextarget=1[^)]*\)[ \t]*"/) {
          kind = "regex"; what = line[i]; sub(/^[^)]*\)[ \t]*"/, "", what); sub(/".*/, "", what)
        }
        if (kind == "") continue
        reason = (line[i] ~ /\/\*|\/\//)
        for (j = i - 1; !reason && j >= 1; j--) {
          if (line[j] ~ /^[ \t]*%(ignore|rename)/) continue
          reason = (line[j] ~ /\*\/[ \t]*$/)
          break
        }
        printf "%s|%s|%s|%s:%d\n", kind, what, reason ? "yes" : "no", file, i
      }
    }' "$f"
done >"$tmp/ignored"

while read -r fn; do
  how=""
  while IFS='|' read -r kind what reason where; do
    if { [ "$kind" = name ] && [ "$what" = "$fn" ]; } || { [ "$kind" = regex ] && [[ "$fn" =~ $what ]]; }; then
      how="$reason|$where"
      break
    fi
  done <"$tmp/ignored"
  if grep -qx "$fn" "$tmp/wrapped"; then
    if [ -n "$how" ]; then echo "check_lua_api: $fn is wrapped although ${how#*|} ignores it"; fail=1; fi
  elif [ -z "$how" ]; then
    echo "check_lua_api: $fn is neither wrapped nor ignored by the Lua binding"; fail=1
  elif [ "${how%%|*}" != yes ]; then
    echo "check_lua_api: $fn is ignored without a reason (${how#*|}): add a comment"; fail=1
  fi
done <"$tmp/public"

if [ $# -ge 1 ]; then
  so="$1"
  if readelf -d "$so" | grep -qi 'NODELETE'; then echo "check_lua_api: $so is marked NODELETE"; fail=1; fi
  bad="$(nm -D --undefined-only "$so" | awk '{print $NF}' | sed 's/@.*//' | grep -xE 'lua_setallocf|dlopen|dladdr|dlsym' || true)"
  if [ -n "$bad" ]; then echo "check_lua_api: $so imports $(echo $bad)"; fail=1; fi
fi

[ "$fail" = 0 ] || exit 1
echo "check_lua_api: $(wc -l <"$tmp/public") public functions: $(wc -l <"$tmp/wrapped") wrapped, the rest ignored with a reason${1:+; $1 has no global side effects on load}"
