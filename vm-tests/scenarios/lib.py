# Helpers of the VM scenarios. Like every file here it is Python for the NixOS test driver's
# testScript (read verbatim, after the harness defines `env`) and for vm-tests/qemu/harness.py,
# which runs the same files with its own machines. Only the driver's machine API is used:
# start_all, start, shutdown, crash, succeed, fail, wait_until_succeeds, wait_for_unit,
# wait_for_open_port, block/unblock, subtest.
#
# env (a dict the harness defines): address {node: IP} of node1-node4, store (the HTTP store's
# address, nginx with autoindex, throttled), sample_dir and access_log (on the `store` machine),
# files (the sample's files under hbase/), quota (the MEM tier's).
import json
import time

MASTER_PORT = 19998


def master_url(name, path):
    return f"http://{env['address'][name]}:{MASTER_PORT}{path}"


def get(m, path, name=None):
    # -L: a follower answers leader-only calls with a 307 to the leader.
    return json.loads(m.succeed(f"curl -sfL --max-time 20 '{master_url(name or m.name, path)}'"))


def status_or_none(m, name=None):
    """/v1/status of the master on NAME (default: M's own), asked from M; None when it does not
    answer (stopped, restarting, or not a master)."""
    out = m.succeed(f"curl -sf --max-time 5 '{master_url(name or m.name, '/v1/status')}' || true")
    try:
        return json.loads(out) if out.strip() else None
    except ValueError:
        return None


def wait_agreement(machines, masters, not_leader=None, above_term=-1, timeout=300):
    """One retry loop until every master in MASTERS (names, asked from the first machine of
    MACHINES) answers, all name the same leader in the same term, that leader says it leads
    and the others follow, the term is above ABOVE_TERM and the leader is not NOT_LEADER.
    Returns (leader, term)."""
    asker = machines[0]
    deadline = time.monotonic() + timeout
    seen = None
    while True:
        seen = {n: status_or_none(asker, n) for n in masters}
        ok = all(s is not None for s in seen.values())
        if ok:
            leaders = {s["leader"] for s in seen.values()}
            terms = {s["term"] for s in seen.values()}
            roles = sorted(s["role"] for s in seen.values())
            leader = next(iter(leaders))
            ok = (len(leaders) == 1 and leader is not None and len(terms) == 1
                  and roles == sorted(["leader"] + ["follower"] * (len(masters) - 1))
                  and seen[leader]["role"] == "leader"
                  and next(iter(terms)) > above_term and leader != not_leader)
            if ok:
                return leader, next(iter(terms))
        if time.monotonic() > deadline:
            raise AssertionError(f"masters {masters} did not agree within {timeout}s: {seen}")
        time.sleep(1)


def store_gets(store, name):
    # nginx logs each request at once; every block fetch is one ranged GET.
    out = store.succeed(f"grep -c '\"GET /hbase/{name} ' {env['access_log']} || true")
    return int(out.strip() or "0")


def sums(m, directory):
    # The operator's toolbox on the node is busybox: its applets, not coreutils.
    files = " ".join(env["files"])
    return m.succeed(f"cd {directory} && busybox sha256sum {files}")


def expected_sums(store):
    return store.succeed(f"cd {env['sample_dir']}/hbase && sha256sum {' '.join(env['files'])}")


def daemon_pids(m, units):
    """MainPID and NRestarts of each unit: a reload keeps both, a restart changes them."""
    out = {}
    for u in units:
        out[u] = m.succeed(f"systemctl show -p MainPID -p NRestarts --value '{u}'").split()
    return out


def cluster_yaml(nodes=(("node1", None), ("node2", None), ("node3", None)), datasets=("hbase",),
                 master_replicas=3, extra_cluster="", addresses=None):
    """The cluster YAML an operator writes: NODES is a list of (name, roles or None), every
    dataset a directory of the store with a runtime of the same name. ADDRESSES overrides
    env['address'] for some names. The default is the one every scenario starts from."""
    address = dict(env["address"], **(addresses or {}))
    lines = ["apiVersion: weir.io/v1", "kind: Cluster", "metadata: {name: vmtest}", "spec:"]
    lines += ["  raft: {electionTimeout: 1s, heartbeatTimeout: 150ms}"]
    if extra_cluster:
        lines += [f"  {extra_cluster}"]
    lines += ["  nodes:"]
    for name, roles in nodes:
        r = f", roles: [{', '.join(roles)}]" if roles else ""
        lines += [f"    - {{name: {name}, address: {address[name]}{r}}}"]
    workers = sum(1 for _, roles in nodes if roles is None or "worker" in roles)
    for ds in datasets:
        path = "hbase/" if ds == "hbase" else f"hbase/{ds}/"
        lines += ["---", "apiVersion: data.fluid.io/v1alpha1", "kind: Dataset",
                  f"metadata: {{name: {ds}}}", "spec:", "  blockSize: 1Mi",
                  f"  mounts: [{{mountPoint: \"http://{env['store']}/{path}\", name: {ds}}}]",
                  "---", "apiVersion: data.fluid.io/v1alpha1", "kind: AlluxioRuntime",
                  f"metadata: {{name: {ds}}}", "spec:", f"  replicas: {workers}",
                  f"  master: {{replicas: {master_replicas}}}",
                  "  tieredstore:", "    levels:",
                  f"      - {{mediumtype: MEM, path: /dev/shm, quota: {env['quota']}, "
                  "high: \"0.95\", low: \"0.7\"}"]
    return "\n".join(lines) + "\n"


def install_yaml(m, text):
    """What the operator does on each node: replace /etc/weir/cluster.yaml (on NixOS a link
    into the store, hence rm first) with the edited file."""
    import base64

    b64 = base64.b64encode(text.encode()).decode()
    m.succeed("busybox rm -f /etc/weir/cluster.yaml && "
              f"echo {b64} | busybox base64 -d > /etc/weir/cluster.yaml")
