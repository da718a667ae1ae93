#!/usr/bin/env bash
# Parses every Nix file of the repository with nix-instantiate --parse: the syntax check that this
# machine can do (Debian's Nix cannot fetch nixpkgs, so nothing here is evaluated or built).
# Usage: check-nix.sh SOURCE_ROOT [BUILD_ROOT]. Exit 77 (skip) without nix-instantiate.
set -uo pipefail

src=$1 build=${2:-}
command -v nix-instantiate >/dev/null || { echo "SKIP: nix-instantiate missing (Debian: nix-bin)"; exit 77; }

cd "$src" || exit 1
mapfile -t files < <(find . -name '*.nix' -not -path './.git/*' -not -path './build*' \
        -not -path './vm-tests/.cache/*' | sort)
[ ${#files[@]} -gt 0 ] || { echo "FAIL: no .nix files under $src"; exit 1; }
[ -f flake.nix ] || { echo "FAIL: no flake.nix"; exit 1; }

failed=0
for f in "${files[@]}"; do
        # --parse needs a writable state dir on some installs; keep it private and temporary.
        if out=$(NIX_STATE_DIR=${TMPDIR:-/tmp}/weir-nix-state nix-instantiate --parse "$f" 2>&1 >/dev/null); then
                echo "ok $f"
        else
                echo "FAIL $f"
                printf '%s\n' "$out"
                failed=1
        fi
done

# The VM tests' Python (what `nix flake check` would run inside the driver): evaluate each test
# with stand-ins for nixpkgs (only testers.runNixOSTest, runCommand, writeText and two packages),
# then compile the script and look for names that are neither defined in it, nor machines, nor
# the driver's globals: a misspelt machine or helper fails here, not after a VM build.
command -v python3 >/dev/null || { echo "note: python3 missing, VM test scripts not checked"; exit $failed; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/weir-check-nix.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
for f in vm-tests/*.nix; do
        [ "$f" = vm-tests/common.nix ] && continue
        grep -q runNixOSTest "$f" || continue
        cat >"$tmp/eval.nix" <<NIX
let
  fake = name: "/nix/store/00000000000000000000000000000000-\${name}";
  pkgs = {
    testers.runNixOSTest = t: t;
    runCommand = name: attrs: script: fake name;
    writeText = name: text: fake name;
    jq = fake "jq";
    curl = fake "curl";
  };
  self = { nixosModules.weir = { }; };
  t = import $PWD/$f { inherit self pkgs; };
in { script = t.testScript; nodes = builtins.attrNames t.nodes; }
NIX
        if ! NIX_STATE_DIR=$tmp/state nix-instantiate --eval --strict --json "$tmp/eval.nix" \
                >"$tmp/test.json" 2>"$tmp/err"; then
                echo "FAIL $f: cannot evaluate its test script"
                cat "$tmp/err"
                failed=1
                continue
        fi
        if /usr/bin/env python3 - "$tmp/test.json" "$f" <<'PY'; then
import ast, builtins, json, sys

t = json.load(open(sys.argv[1]))
tree = ast.parse(t["script"], sys.argv[2])
driver = {"start_all", "subtest", "retry", "join_all", "machines", "driver", "vlans", "log",
          "serial_stdout_on", "serial_stdout_off", "polling_condition", "create_machine",
          "run_tests", "Machine", "t"}
defined = set(t["nodes"]) | driver | set(dir(builtins))
for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        defined.add(node.name)
    elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
        defined.add(node.id)
    elif isinstance(node, ast.alias):
        defined.add((node.asname or node.name).split(".")[0])
    elif isinstance(node, ast.arg):
        defined.add(node.arg)
unknown = sorted({n.id for n in ast.walk(tree)
                  if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in defined})
if unknown:
    print(f"{sys.argv[2]}: undefined names in testScript: {', '.join(unknown)}")
    sys.exit(1)
print(f"ok {sys.argv[2]}: testScript compiles; machines {', '.join(t['nodes'])}")
PY
                :
        else
                echo "FAIL $f: its test script does not compile or uses undefined names"
                failed=1
        fi
done

exit $failed
