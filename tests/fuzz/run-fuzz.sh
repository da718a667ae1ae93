#!/bin/sh
# Runs every fuzz target briefly: run-fuzz.sh BUILD_DIR SECONDS (SECONDS per target). BUILD_DIR
# is configured with CC=clang -Dfuzz=true when it does not exist yet. A target fuzz-NAME starts
# from the seeds in tests/fuzz/corpus/NAME/ and uses tests/fuzz/NAME.dict when they exist
# (fuzz-config: the YAML files of the tree and config.dict). Exit 0: no crash and no leak in any;
# 77: no clang/libFuzzer here; anything else: a finding (the crashing input is left in BUILD_DIR).
set -eu
build=${1:?usage: run-fuzz.sh BUILD_DIR SECONDS}
seconds=${2:-30}
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
targets=$(ninja -C "$build" -t targets all | sed -n 's|^\(tests/fuzz/fuzz-[a-z0-9-]*\): .*|\1|p' | sort -u)
[ -n "$targets" ] || { echo "no fuzz target in $build"; exit 1; }
# shellcheck disable=SC2086 # one word per target
ninja -C "$build" $targets >/dev/null
build=$(cd "$build" && pwd) # the fuzzers run from config/examples below
cd "$src/config/examples"   # relative secret files in fuzzed YAML resolve here

status=0
ran=0
for bin in "$build"/tests/fuzz/fuzz-*; do
        [ -x "$bin" ] && [ -f "$bin" ] || continue
        name=${bin##*/fuzz-}
        # libFuzzer adds new inputs to the first corpus directory: work on a copy of the seeds.
        corpus=$build/fuzz-$name-corpus
        mkdir -p "$corpus"
        dict=
        if [ "$name" = config ]; then
                cp "$src"/config/cluster.yaml "$src"/config/examples/*.yaml \
                        "$src"/tests/unit/fixtures/config/*.yaml "$corpus"/
                dict=-dict=$src/tests/fuzz/config.dict
        else
                [ -d "$src/tests/fuzz/corpus/$name" ] && cp "$src/tests/fuzz/corpus/$name"/* "$corpus"/
                [ -f "$src/tests/fuzz/$name.dict" ] && dict=-dict=$src/tests/fuzz/$name.dict
        fi
        ran=$((ran + 1))
        if "$bin" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
                -detect_leaks=1 -print_final_stats=1 $dict -artifact_prefix="$build/fuzz-$name-" \
                "$corpus" 2>"$build/fuzz-$name.log"; then
                grep -E "stat::number_of_executed_units" "$build/fuzz-$name.log" | tail -1
                echo "fuzz-$name: ${seconds}s, no crash, no leak"
        else
                tail -50 "$build/fuzz-$name.log"
                echo "fuzz-$name: FINDING (input left as $build/fuzz-$name-*)"
                status=1
        fi
done
[ "$ran" -gt 0 ] || { echo "no fuzz target built in $build"; exit 1; }
exit $status
