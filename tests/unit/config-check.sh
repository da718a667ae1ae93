#!/bin/sh
# weirctl config check on every example (exit 0), on an invalid file (exit 1, diagnostics with
# FILE:LINE:COL), and its usage errors (exit 2). Usage: config-check.sh WEIRCTL SOURCE_ROOT
set -u
weirctl=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
n=0

check() { # NAME EXPECTED_STATUS COMMAND...
        name=$1 want=$2
        shift 2
        n=$((n + 1))
        "$@" >"$tmp/out" 2>"$tmp/err"
        got=$?
        if [ "$got" -eq "$want" ]; then
                echo "ok $n - $name"
        else
                echo "not ok $n - $name: exit $got, expected $want"
                sed 's/^/# /' "$tmp/out" "$tmp/err"
                failed=1
        fi
}

expect() { # NAME FILE PATTERN: the last command's FILE (out|err) contains PATTERN
        n=$((n + 1))
        if grep -qF -- "$3" "$tmp/$2"; then
                echo "ok $n - $1"
        else
                echo "not ok $n - $1: '$3' not in std$2"
                sed 's/^/# /' "$tmp/$2"
                failed=1
        fi
}

for f in "$src"/config/cluster.yaml "$src"/config/examples/*.yaml; do
        check "valid: ${f#$src/}" 0 "$weirctl" config check "$f"
        expect "plan printed: ${f#$src/}" out "weir-fuse@"
        check "valid, json: ${f#$src/}" 0 "$weirctl" --json config check "$f"
        if command -v python3 >/dev/null; then
                cp "$tmp/out" "$tmp/json"
                check "json parses: ${f#$src/}" 0 python3 -m json.tool "$tmp/json"
        fi
done

bad=$src/tests/unit/fixtures/config/invalid-master-replicas.yaml
check "invalid file" 1 "$weirctl" config check "$bad"
expect "error with location" err "$bad:22:15: error: master.replicas must be 1 or an odd number >= 3 (got 2)"
expect "warning with location" err "$bad:26:3: warning: runtime spec: unknown key 'bogus', ignoring"
expect "summary" err "invalid (1 error)"
check "invalid file, json" 1 "$weirctl" config check --json "$bad"
expect "json says invalid" out '"valid": false'

ex=$src/config/examples/three-master.yaml
check "--node" 0 "$weirctl" config check "$ex" --node node2
expect "--node shows the node" out "node node2 (192.168.1.146)"
n=$((n + 1))
if grep -q "node node1" "$tmp/out"; then
        echo "not ok $n - --node shows only that node"; failed=1
else
        echo "ok $n - --node shows only that node"
fi
expect "raft id and API" out "raft id 2, raft 192.168.1.146:19200, API http://192.168.1.146:19998"
if command -v python3 >/dev/null; then
        "$weirctl" --json config check "$src/config/examples/tiered.yaml" >"$tmp/plan.json" 2>/dev/null
        check "json plan content" 0 python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))
assert p["valid"] is True and p["cluster"] == "lab" and p["master_replicas"] == 3, p
n = {x["name"]: x for x in p["nodes"]}
assert [n[k]["master"]["raft_id"] for k in ("cache1", "cache2", "cache3")] == [1, 2, 3]
assert n["cache2"]["master"]["api"] == "10.1.0.12:19998"
assert n["gpu1"]["master"] is None and n["gpu1"]["worker"] is None
assert [t["dir"] for t in n["cache3"]["worker"]["tiers"]] == \
        ["/dev/shm/weir/cache3", "/mnt/nvme0/weir/cache3", "/mnt/disk1/weir/cache3"]
assert n["gpu1"]["fuse"] == [{"dataset": "imagenet", "mount_point": "/mnt/weir/imagenet"}]
d = p["datasets"][0]
assert d["block_size"] == 64 << 20 and d["sync_interval_ms"] == 3600000
assert d["runtime"]["kind"] == "GooseFSRuntime" and d["mounts"][0]["scheme"] == "file"
' "$tmp/plan.json"
        "$weirctl" --json config check "$src/config/examples/s3-oss.yaml" >"$tmp/plan.json" 2>/dev/null
        check "json hides secrets" 0 python3 -c '
import json, sys
p = json.load(open(sys.argv[1]))
o = p["datasets"][0]["mounts"][0]["options"]
assert o["fs.s3a.secret.key"] == "(secret)" and o["fs.s3a.region"] == "eu-central-1", o
' "$tmp/plan.json"
        "$weirctl" config check "$src/config/examples/s3-oss.yaml" >>"$tmp/plan.json" 2>&1
        n=$((n + 1))
        if grep -q "example-not-a-real-secret" "$tmp/plan.json"; then
                echo "not ok $n - secret value printed"; failed=1
        else
                echo "ok $n - secret value not printed"
        fi
fi
check "unknown --node" 1 "$weirctl" config check "$ex" --node nope
expect "unknown node lists nodes" err "nodes: node1 node2 node3"
check "--config" 0 "$weirctl" --config "$ex" config check
check "\$WEIR_CONFIG" 0 env WEIR_CONFIG="$ex" "$weirctl" config check
check "FILE overrides --config" 1 "$weirctl" --config "$ex" config check "$bad"
check "missing file" 1 "$weirctl" config check "$tmp/nonexistent.yaml"
expect "missing file message" err "cannot read"
check "extra argument" 2 "$weirctl" config check "$ex" "$ex"
check "unknown option" 2 "$weirctl" config check --frobnicate
check "no subcommand" 2 "$weirctl" config
check "unknown subcommand" 2 "$weirctl" config fix
check "--help" 0 "$weirctl" config check --help
expect "--help text" out "Usage: weirctl"

# Fluid's own manifests from the seed documents (../shared/seeds beside the checkout), taken out
# of their Markdown code blocks unchanged, with a Cluster document added in front.
seeds=$src/../shared/seeds
if [ -d "$seeds" ] && command -v python3 >/dev/null; then
        for f in "$seeds"/*.txt; do
                out=$tmp/seed-$(basename "$f" .txt).yaml
                python3 - "$f" "$out" <<'PY'
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
docs = []
for block in re.findall(r"```[^\n]*\n(.*?)```", text, re.S):
    lines = [l for l in block.splitlines() if not l.startswith("$ cat") and l != "EOF"]
    body = "\n".join(lines).strip("\n")
    m = re.match(r"apiVersion: data\.fluid\.io/v1alpha1\nkind: (\w+)", body)
    if m and (m.group(1) == "Dataset" or m.group(1).endswith("Runtime")):
        docs.append(body + "\n")
if not docs:
    sys.exit(3)  # no fenced manifests (e.g. text flattened from a web page)
cluster = """apiVersion: weir.io/v1
kind: Cluster
metadata: {name: seed}
spec:
  nodes:
    - {name: node1, address: 192.168.1.145}
    - {name: node2, address: 192.168.1.146}
    - {name: node3, address: 192.168.1.147}
"""
open(sys.argv[2], "w", encoding="utf-8").write("---\n".join([cluster] + docs))
PY
                status=$?
                if [ $status -eq 3 ]; then
                        echo "# seed $(basename "$f"): no fenced manifests, skipped"
                        continue
                elif [ $status -ne 0 ]; then
                        n=$((n + 1))
                        echo "not ok $n - seed $(basename "$f"): extraction failed"
                        failed=1
                        continue
                fi
                if grep -q "kind: JindoRuntime" "$out" && grep -q "name: hadoop" "$out"; then
                        # Fluid's Jindo walkthrough names the Dataset hbase and the runtime hadoop:
                        # they bind in neither system, and weir says so.
                        check "seed $(basename "$f") refused" 1 "$weirctl" config check "$out"
                        expect "seed $(basename "$f"): runtime without dataset" err \
                                "error: JindoRuntime 'hadoop' has no Dataset named 'hadoop'"
                else
                        check "seed $(basename "$f") parses" 0 "$weirctl" config check "$out"
                        expect "seed $(basename "$f"): three masters" out "raft id 3"
                fi
        done
else
        echo "# no seeds at $seeds: seed manifests not checked"
fi

echo "1..$n"
exit $failed
