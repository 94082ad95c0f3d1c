#!/bin/sh
# Builds the libFuzzer targets with clang (ASan + UBSan) into their own build
# directory and runs each for a bounded time.
#
#   tests/fuzz/run.sh [SECONDS]      default 60 seconds per target
#
# Environment: MPCONN_FUZZ_BUILD (build dir, default <repo>/build-fuzz),
# CC (default clang).
# Each target starts from the committed seed corpus (tests/fuzz/corpus/<t>);
# new inputs go to a scratch corpus in the build dir so the committed one
# stays as it is.  Exits non-zero on any finding (crash, leak, sanitizer
# report, timeout); the reproducer is left in the build dir (crash-*, leak-*,
# timeout-*) and printed.
set -eu

secs=${1:-60}
case $secs in
    ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${MPCONN_FUZZ_BUILD:-$root/build-fuzz}

cmake -S "$here" -B "$build" -DCMAKE_C_COMPILER="${CC:-clang}" >/dev/null
cmake --build "$build" -j 2 >/dev/null

status=0
for target in $(cat "$build/fuzz_targets.txt"); do
    work="$build/corpus-$target"
    artifacts="$build/artifacts-$target/"
    mkdir -p "$work" "$artifacts"
    echo "== $target for ${secs}s"
    if ! "$build/$target" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
            -max_len=4096 -print_final_stats=1 \
            -artifact_prefix="$artifacts" "$work" "$here/corpus/$target" \
            >"$build/$target.log" 2>&1; then
        status=1
        echo "!! $target found a problem; log: $build/$target.log" >&2
        tail -n 40 "$build/$target.log" >&2
        ls "$artifacts" >&2
    else
        grep -E '^stat::(number_of_executed_units|new_units_added)' "$build/$target.log" || true
        echo "   ok"
    fi
done
exit $status
