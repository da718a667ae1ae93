#!/bin/sh
# Runs every libFuzzer target built in BUILD_DIR (tests/fuzz/fuzz-*) for SECONDS each:
# run-fuzz.sh BUILD_DIR SECONDS [TARGET...]. BUILD_DIR is configured with CC=clang -Dfuzz=true
# when it does not exist yet. A target NAME (fuzz-NAME) starts from the seeds in
# tests/fuzz/seeds/NAME/ and in the directories listed in tests/fuzz/seeds/NAME.dirs (one per
# line, relative to the source root), with tests/fuzz/NAME.dict when there is one.
# Exit 0: no crash and no leak in any; 77: no clang/libFuzzer here; anything else: a finding
# (the crashing input is left in BUILD_DIR as crash-*, the log in BUILD_DIR/fuzz-NAME.log).
set -eu
build=${1:?usage: run-fuzz.sh BUILD_DIR SECONDS [TARGET...]}
seconds=${2:-30}
shift 2 2>/dev/null || shift $#
src=$(cd "$(dirname "$0")/../.." && pwd)

if ! command -v clang >/dev/null 2>&1; then
        echo "SKIP: clang not installed (Debian: apt-get install clang)"
        exit 77
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' >"$probe/p.c"
if ! clang -fsanitize=fuzzer "$probe/p.c" -o "$probe/p" >/dev/null 2>&1; then
        echo "SKIP: clang cannot link libFuzzer (-fsanitize=fuzzer)"
        exit 77
fi

if [ ! -f "$build/build.ninja" ]; then
        CC=clang meson setup "$build" "$src" -Dfuzz=true -Dtests=false >/dev/null
fi
ninja -C "$build" >/dev/null
build=$(cd "$build" && pwd) # the fuzzers run from config/examples below

if [ $# -eq 0 ]; then
        set -- $(cd "$build/tests/fuzz" && ls fuzz-* 2>/dev/null | grep -v '\.' | sed 's/^fuzz-//')
fi
[ $# -gt 0 ] || { echo "no fuzz target built in $build"; exit 1; }

failed=0
for name in "$@"; do
        bin=$build/tests/fuzz/fuzz-$name
        [ -x "$bin" ] || { echo "fuzz-$name not built in $build"; failed=1; continue; }
        # libFuzzer adds new inputs to the first corpus directory: work on a copy of the seeds.
        corpus=$build/fuzz-$name-corpus
        mkdir -p "$corpus"
        if [ -d "$src/tests/fuzz/seeds/$name" ]; then
                cp "$src/tests/fuzz/seeds/$name"/* "$corpus"/ 2>/dev/null || true
        fi
        if [ -f "$src/tests/fuzz/seeds/$name.dirs" ]; then
                while read -r d; do
                        [ -n "$d" ] && find "$src/$d" -maxdepth 1 -type f -exec cp {} "$corpus"/ \;
                done <"$src/tests/fuzz/seeds/$name.dirs"
        fi
        dict=
        [ -f "$src/tests/fuzz/$name.dict" ] && dict=-dict=$src/tests/fuzz/$name.dict
        # Relative secret files of the YAML resolve against the current directory.
        if (cd "$src/config/examples" &&
                "$bin" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
                        -detect_leaks=1 -print_final_stats=1 $dict -artifact_prefix="$build/" \
                        "$corpus" 2>"$build/fuzz-$name.log"); then
                runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$build/fuzz-$name.log")
                echo "fuzz-$name: ${seconds}s, ${runs:-?} executions, no crash, no leak"
        else
                tail -50 "$build/fuzz-$name.log"
                echo "fuzz-$name: FAILED (see $build/fuzz-$name.log)"
                failed=1
        fi
done
exit $failed
