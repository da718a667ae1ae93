#!/usr/bin/env bash
# meson test nix-module (suite nix): evaluates nix/module.nix with nixpkgs' lib (26.05 branch
# point, ../shared/nixpkgs-lib next to the checkout, or $WEIR_NIXPKGS_LIB) and the stand-ins of
# tests/nix/stubs.nix, with this build's `meson install` as the package, and checks what it
# produces (tests/nix/check.py). Exit 77 (skip) when nix-instantiate or that lib is missing.
# Usage: module-test.sh SOURCE_ROOT BUILD_ROOT
set -uo pipefail
src=$1 build=$2

command -v nix-instantiate >/dev/null ||
        { echo "SKIP: nix-instantiate missing (Debian: nix-bin)"; exit 77; }
lib=${WEIR_NIXPKGS_LIB:-$src/../shared/nixpkgs-lib/lib}
[ -f "$lib/default.nix" ] ||
        { echo "SKIP: no nixpkgs lib at $lib (set WEIR_NIXPKGS_LIB to a nixpkgs checkout's lib/)"; exit 77; }
lib=$(cd "$lib" && pwd)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/weir-nix-module.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

# The package as meson installs it: its lib/systemd/system-generators is what NixOS links.
if ! meson install -C "$build" --no-rebuild --destdir "$tmp/dest" >"$tmp/install.log" 2>&1; then
        echo "FAIL: meson install --destdir"; cat "$tmp/install.log"; exit 1
fi
gen=$(find "$tmp/dest" -path '*/lib/systemd/system-generators/weir-generator' | head -n 1)
[ -n "$gen" ] || { echo "FAIL: meson install put no lib/systemd/system-generators/weir-generator"; exit 1; }
root=${gen%/lib/systemd/system-generators/weir-generator}
echo "package root (meson install): ${root#"$tmp/dest"}"

# The settings option's example as a file eval.nix can import.
if ! NIX_STATE_DIR=$tmp/state nix-instantiate --eval --json "$src/tests/nix/example-text.nix" \
        --arg libPath "$lib" --argstr pkgRoot "$root" >"$tmp/example.json" 2>"$tmp/err" ||
        ! python3 -c 'import json, sys; print(json.load(open(sys.argv[1])))' "$tmp/example.json" \
        >"$tmp/example.nix"; then
        echo "FAIL: reading services.weir.settings' example"; grep -v "build-users-group" "$tmp/err"; exit 1
fi
if ! NIX_STATE_DIR=$tmp/state nix-instantiate --eval --strict --json "$src/tests/nix/eval.nix" \
        --arg libPath "$lib" --argstr pkgRoot "$root" --arg exampleFile "$tmp/example.nix" \
        >"$tmp/eval.json" 2>"$tmp/err"; then
        echo "FAIL: evaluating tests/nix/eval.nix (nix/module.nix, flake.nix)"; grep -v "build-users-group" "$tmp/err"; exit 1
fi
/usr/bin/env python3 "$src/tests/nix/check.py" "$tmp/eval.json" "$root" "$src" || exit 1

# The module's rendering of the VM tests' settings is a YAML this build's weirctl accepts, with
# the plan the tests expect.
/usr/bin/env python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["vmCluster"]["etcText"], end="")' \
        "$tmp/eval.json" >"$tmp/vm-cluster.yaml" || exit 1
if "$build/services/ctl/weirctl" config check "$tmp/vm-cluster.yaml" >"$tmp/plan" 2>&1 &&
        grep -q "3 masters (raft), 3 workers, 1 dataset" "$tmp/plan"; then
        echo "ok   vm-tests/common.nix's settings render to a YAML weirctl accepts (3 masters)"
else
        echo "FAIL vm-tests/common.nix's settings, rendered, and weirctl config check:"
        cat "$tmp/plan" "$tmp/vm-cluster.yaml"
        exit 1
fi
