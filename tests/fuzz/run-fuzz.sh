#!/bin/sh
# Runs the config fuzzer briefly: run-fuzz.sh BUILD_DIR SECONDS. BUILD_DIR is configured with
# CC=clang -Dfuzz=true when it does not exist yet. Exit 0: no crash and no leak; 77: no
# clang/libFuzzer here; anything else: a finding (the crashing input is left in BUILD_DIR).
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
ninja -C "$build" tests/fuzz/fuzz-config >/dev/null
build=$(cd "$build" && pwd) # the fuzzer runs from config/examples below
bin=$build/tests/fuzz/fuzz-config
[ -x "$bin" ] || { echo "fuzz-config not built in $build"; exit 1; }

# libFuzzer adds new inputs to the first corpus directory: work on a copy of the seeds.
corpus=$build/fuzz-config-corpus
mkdir -p "$corpus"
cp "$src"/config/cluster.yaml "$src"/config/examples/*.yaml "$src"/tests/unit/fixtures/config/*.yaml "$corpus"/
# Relative secret files resolve against the current directory ("fuzz.yaml" has no directory).
cd "$src/config/examples"
"$bin" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -detect_leaks=1 -print_final_stats=1 -dict="$src/tests/fuzz/config.dict" \
        -artifact_prefix="$build/" "$corpus" 2>"$build/fuzz-config.log" || {
        tail -50 "$build/fuzz-config.log"
        exit 1
}
grep -E "stat::number_of_executed_units|Done" "$build/fuzz-config.log" | tail -2
echo "fuzz-config: ${seconds}s, no crash, no leak"
