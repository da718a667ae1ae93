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
    callPackage = f: args: fake "busybox-command";
    jq = fake "jq";
    curl = fake "curl";
    lib.concatMapStrings = f: l: builtins.concatStringsSep "" (map f l);
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
# Scenarios run by both the NixOS driver and vm-tests/qemu/harness.py may call only the
# driver's machine API on machines (the harness implements exactly that).
api = {"start", "shutdown", "crash", "succeed", "fail", "wait_until_succeeds", "wait_until_fails",
       "wait_for_unit", "wait_for_open_port", "wait_for_file", "block", "unblock", "name"}
bad = sorted({f"{n.value.id}.{n.attr}" for n in ast.walk(tree)
              if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
              and n.value.id in t["nodes"] and n.attr not in api})
if bad:
    print(f"{sys.argv[2]}: machine methods outside the driver API the QEMU harness offers: {', '.join(bad)}")
    sys.exit(1)
print(f"ok {sys.argv[2]}: testScript compiles, uses the driver API only; machines {', '.join(t['nodes'])}")
PY
                :
        else
                echo "FAIL $f: its test script does not compile or uses undefined names"
                failed=1
        fi
done

# The appliance's memory: every `-m` that docs/nix.md boots it with holds the MEM tier of
# image/cluster.yaml in /dev/shm (half the RAM) and leaves at least 1 GiB besides.
if /usr/bin/env python3 - "$src/docs/nix.md" "$src/image/cluster.yaml" <<'PY'; then
import re, sys
docs, yaml = open(sys.argv[1]).read(), open(sys.argv[2]).read()
units = {"Mi": 1, "Gi": 1024}
quotas = [int(n) * units[u] for n, u in re.findall(r"mediumtype: MEM[^}]*quota: (\d+)(Mi|Gi)", yaml)]
mems = [int(m) for m in re.findall(r"qemu-system-x86_64 -m (\d+)", docs)]
ok = quotas and mems and all(m // 2 >= q and m - q >= 1024 for m in mems for q in quotas)
print(("ok" if ok else "FAIL") + f" appliance memory: -m {mems} MiB for MEM quota {quotas} MiB")
sys.exit(0 if ok else 1)
PY
        :
else
        failed=1
fi

# lib.py's wait_agreement against canned /v1/status answers: it accepts one leader and followers
# in one term, and waits out (fails) a missing master, a term not above the bound, the excluded
# leader, two leaders.
if /usr/bin/env python3 - "$src/vm-tests/scenarios/lib.py" <<'PY'; then
import json, sys
g = {"env": {"address": {"node1": "a1", "node2": "a2", "node3": "a3"}}}
exec(open(sys.argv[1]).read(), g)
names = ["node1", "node2", "node3"]
class Asker:
    name = "node1"
    def __init__(self, st): self.st = st
    def succeed(self, cmd):
        for n, a in g["env"]["address"].items():
            if f"http://{a}:" in cmd:
                return json.dumps(self.st[n]) if self.st.get(n) else ""
def st(leader, term, roles):
    return {n: {"leader": leader, "term": term, "role": r} for n, r in zip(names, roles)}
good = st("node2", 3, ["follower", "leader", "follower"])
ok = g["wait_agreement"]([Asker(good)], names, timeout=1) == ("node2", 3)
for kw, state in [({"above_term": 3}, good), ({"not_leader": "node2"}, good),
                  ({}, dict(good, node3=None)), ({}, st("node2", 3, ["leader", "leader", "follower"]))]:
    try:
        g["wait_agreement"]([Asker(state)], names, timeout=1, **kw)
        ok = False
    except AssertionError:
        pass
print(("ok" if ok else "FAIL") + " scenarios' wait_agreement")
sys.exit(0 if ok else 1)
PY
        :
else
        failed=1
fi

# The YAMLs the scenarios write (vm-tests/scenarios/lib.py's cluster_yaml) are valid, with the
# plan each scenario expects.
weirctl=$build/services/ctl/weirctl
if [ -n "$build" ] && [ -x "$weirctl" ]; then
        if /usr/bin/env python3 - "$weirctl" "$src/vm-tests/scenarios/lib.py" <<'PY'; then
import subprocess, sys, tempfile
g = {"env": {"address": {f"node{i}": f"10.0.0.{i}" for i in range(1, 5)}, "store": "10.0.0.254",
             "quota": "256Mi"}}
exec(open(sys.argv[2]).read(), g)
four = [("node1", None), ("node2", None), ("node3", None), ("node4", ["worker"])]
cases = [(g["cluster_yaml"](), 0, "3 masters (raft), 3 workers, 1 dataset"),
         (g["cluster_yaml"](datasets=("hbase", "conf")), 0, "2 datasets"),
         (g["cluster_yaml"](nodes=four, master_replicas=1), 0, "1 master, 4 workers"),
         (g["cluster_yaml"](nodes=four, master_replicas=2), 1, "master.replicas")]
bad = 0
for text, want_rc, want in cases:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(text)
        f.flush()
        r = subprocess.run([sys.argv[1], "config", "check", f.name], text=True,
                           capture_output=True)
    out = r.stdout + r.stderr
    ok = r.returncode == want_rc and want in out
    bad += not ok
    print(("ok" if ok else "FAIL") + f" scenarios' YAML: exit {r.returncode}, '{want}'")
    if not ok:
        print(out)
sys.exit(1 if bad else 0)
PY
                :
        else
                failed=1
        fi
fi
exit $failed
