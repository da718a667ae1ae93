#!/usr/bin/env bash
# make check: every test weir has, in one run, ending with one line of counts.
#   1. clang-format of every C file, .editorconfig rules on every tracked file
#   2. unit tests built with ASan + UBSan (leaks fail them)
#   3. the normal build (warnings are errors under CI=true) and its non-unit meson tests
#   4. a short libFuzzer run of every fuzz target (when clang's fuzzer runtime is there)
#   5. the pytest integration tests against real daemons, FUSE mounts and HTTP servers
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD

BUILD=${BUILD:-build}
ASAN_BUILD=${ASAN_BUILD:-build-asan}
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-5} # a smoke run; bench/fuzz runs 1M executions a target
werror=false
[ "${CI:-}" = true ] && werror=true

passed=0 failed=0 skipped=0
failures=()

stage() { printf '\n==> %s\n' "$*"; }
count() { # count RESULT NAME
        case "$1" in
        pass) passed=$((passed + 1)) ;;
        skip) skipped=$((skipped + 1)) ;;
        *) failed=$((failed + 1)); failures+=("$2") ;;
        esac
}

# Adds the results of one meson test run from its JSON log.
meson_counts() { # meson_counts BUILD_DIR LABEL
        local log=$1/meson-logs/testlog.json
        [ -f "$log" ] || { count fail "$2: no test log"; return; }
        while read -r res name; do
                case "$res" in
                OK | EXPECTEDFAIL) count pass "$name" ;;
                SKIP) count skip "$name" ;;
                *) count fail "$2: $name ($res)" ;;
                esac
        done < <(/usr/bin/python3 -c '
import json, sys
for line in open(sys.argv[1]):
    t = json.loads(line)
    print(t["result"], t["name"])' "$log")
}

setup() { # setup DIR ARGS...: configure once, reconfigure when already there
        local dir=$1
        shift
        if [ -f "$dir/build.ninja" ]; then
                meson configure "$dir" "$@" >/dev/null
        else
                meson setup "$dir" "$@" >/dev/null
        fi
}

stage "format: clang-format --dry-run --Werror"
if command -v clang-format >/dev/null; then
        if clang-format --dry-run --Werror $(git ls-files '*.c' '*.h'); then
                count pass format
        else
                count fail "clang-format (run 'make format')"
        fi
else
        echo "clang-format missing: skipped"
        count skip format
fi

stage "editorconfig: line endings, final newlines, trailing whitespace, indentation"
if /usr/bin/python3 scripts/check-editorconfig.py; then
        count pass editorconfig
else
        count fail "editorconfig"
fi

stage "unit tests under ASan + UBSan ($ASAN_BUILD)"
if setup "$ASAN_BUILD" -Db_sanitize=address,undefined -Db_lundef=false -Dwerror=$werror &&
        ninja -C "$ASAN_BUILD"; then
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
                meson test -C "$ASAN_BUILD" --suite unit --print-errorlogs
        meson_counts "$ASAN_BUILD" asan
else
        count fail "ASan build"
fi

stage "normal build ($BUILD) and its checks"
if setup "$BUILD" -Dwerror=$werror && ninja -C "$BUILD"; then
        # units (systemd-analyze verify), nix (syntax), vm (QEMU harness, WEIR_VM_TESTS=1)
        meson test -C "$BUILD" --no-suite unit --print-errorlogs
        meson_counts "$BUILD" build
else
        count fail "build"
fi

stage "fuzz every parser target for ${FUZZ_SECONDS}s each"
if [ -x tests/fuzz/run-fuzz.sh ] && command -v clang >/dev/null; then
        if CC=clang setup "$FUZZ_BUILD" -Dfuzz=true -Dtests=false -Db_lundef=false &&
                ninja -C "$FUZZ_BUILD"; then
                tests/fuzz/run-fuzz.sh "$FUZZ_BUILD" "$FUZZ_SECONDS"
                case $? in
                0) count pass fuzz ;;
                77) count skip fuzz ;;
                *) count fail "fuzz" ;;
                esac
        else
                count fail "fuzz build"
        fi
else
        echo "no fuzzer toolchain or target: skipped"
        count skip fuzz
fi

stage "integration tests (pytest)"
junit=$top/$BUILD/pytest-junit.xml
rm -f "$junit"
if [ -d tests/integration ] && ls tests/integration/test_*.py >/dev/null 2>&1; then
        WEIR_BUILD_DIR=$top/$BUILD /usr/bin/python3 -m pytest -q -rs --junitxml="$junit" \
                tests/integration
        if [ -f "$junit" ]; then
                read -r p f s < <(/usr/bin/python3 -c '
import sys, xml.etree.ElementTree as ET
p = f = s = 0
for tc in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    kinds = {c.tag for c in tc}
    if kinds & {"failure", "error"}: f += 1
    elif "skipped" in kinds: s += 1
    else: p += 1
print(p, f, s)' "$junit")
                passed=$((passed + p)) skipped=$((skipped + s))
                for _ in $(seq 1 "$f"); do count fail "pytest"; done
        else
                count fail "pytest produced no report"
        fi
fi

echo
if [ ${#failures[@]} -gt 0 ]; then
        printf 'failed: %s\n' "${failures[@]}"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
