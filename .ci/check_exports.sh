#!/usr/bin/env bash
# Checks that libmpconn.so exports the public API and nothing else:
#
#   .ci/check_exports.sh path/to/libmpconn.so
#
# The functions exported (`nm -D --defined-only`) must be exactly the ones
# c_core/include/mpconn.h declares MPC_API: an exported name the header does
# not declare (an internal mpc__* helper, a leaked libc/OpenSSL symbol) fails,
# and so does a declared function the library does not export.  The version
# node's own symbol (type A, MPCONN_0) is not a function and is ignored.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LIB="${1:?usage: $0 path/to/libmpconn.so}"
HEADER="$ROOT/c_core/include/mpconn.h"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

nm -D --defined-only "$LIB" | awk '$2 != "A" { print $3 }' | sed 's/@.*//' | sort -u >"$WORK/exported"
# Declarations: "MPC_API <type> mpc_name(" (the name is the identifier
# right before the first parenthesis).
sed -n 's/^MPC_API[^(]*[^A-Za-z0-9_]\(mpc_[A-Za-z0-9_]*\) *(.*/\1/p' "$HEADER" | sort -u >"$WORK/declared"

n_exp=$(wc -l <"$WORK/exported")
n_decl=$(wc -l <"$WORK/declared")
[ "$n_decl" -gt 0 ] || { echo "check_exports.sh: FAIL: found no MPC_API declarations in $HEADER"; exit 1; }
extra=$(comm -23 "$WORK/exported" "$WORK/declared")
missing=$(comm -13 "$WORK/exported" "$WORK/declared")
if [ -n "$extra" ] || [ -n "$missing" ]; then
  [ -z "$extra" ] || printf 'exported but not declared MPC_API in mpconn.h:\n%s\n' "$(sed 's/^/  /' <<<"$extra")"
  [ -z "$missing" ] || printf 'declared MPC_API in mpconn.h but not exported:\n%s\n' "$(sed 's/^/  /' <<<"$missing")"
  echo "check_exports.sh: FAIL: $LIB exports $n_exp functions; mpconn.h declares $n_decl"
  exit 1
fi
echo "check_exports.sh: PASS: $LIB exports exactly the $n_decl mpc_ functions mpconn.h declares, nothing else"
