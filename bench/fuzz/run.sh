#!/bin/sh
# Runs every libFuzzer target (tests/fuzz/fuzz-*, built with ASan + UBSan) for at least RUNS
# executions each (default 1,000,000) and prints, per target, the executions, the corpus size
# and the crashes found (0 expected: libFuzzer stops at the first one and leaves crash-* in the
# build directory). Not part of `make check`: minutes, not seconds.
#   bench/fuzz/run.sh [BUILD_DIR] [RUNS]
set -eu
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$src/build-fuzz}
runs=${2:-1000000}

command -v clang >/dev/null 2>&1 || { echo "SKIP: clang not installed"; exit 77; }
if [ ! -f "$build/build.ninja" ]; then
        CC=clang meson setup "$build" "$src" -Dfuzz=true -Dtests=false >/dev/null
fi
ninja -C "$build" >/dev/null
build=$(cd "$build" && pwd)
targets=$(cd "$build/tests/fuzz" && ls fuzz-* | grep -v '\.' | sed 's/^fuzz-//')

printf '%-10s %12s %10s %8s %8s\n' target executions seconds corpus crashes
total_crashes=0
for name in $targets; do
        corpus=$build/bench-fuzz-$name-corpus
        rm -rf "$corpus"
        mkdir -p "$corpus"
        [ -d "$src/tests/fuzz/seeds/$name" ] && cp "$src/tests/fuzz/seeds/$name"/* "$corpus"/
        if [ -f "$src/tests/fuzz/seeds/$name.dirs" ]; then
                while read -r d; do
                        [ -n "$d" ] && find "$src/$d" -maxdepth 1 -type f -exec cp {} "$corpus"/ \;
                done <"$src/tests/fuzz/seeds/$name.dirs"
        fi
        dict=
        [ -f "$src/tests/fuzz/$name.dict" ] && dict=-dict=$src/tests/fuzz/$name.dict
        log=$build/bench-fuzz-$name.log
        t0=$(date +%s)
        crashes=0
        (cd "$src/config/examples" &&
                "$build/tests/fuzz/fuzz-$name" -runs="$runs" -max_len=65536 -timeout=10 \
                        -rss_limit_mb=2048 -detect_leaks=1 -print_final_stats=1 $dict \
                        -artifact_prefix="$build/bench-" "$corpus" >"$log" 2>&1) || crashes=1
        t1=$(date +%s)
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        if [ "$crashes" != 0 ]; then
                execs=$(grep -o '#[0-9]*' "$log" | tail -1 | tr -d '#')
                grep -E "ERROR|SUMMARY" "$log" | head -3
        fi
        total_crashes=$((total_crashes + crashes))
        printf '%-10s %12s %10s %8s %8s\n' "$name" "${execs:-?}" $((t1 - t0)) \
                "$(ls "$corpus" | wc -l)" "$crashes"
done
[ "$total_crashes" = 0 ]
