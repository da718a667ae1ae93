"""Operators editing the cluster YAML of a running cluster: `weirctl config apply`, SIGHUP, Raft
membership changes (1 -> 3 -> 1 masters) while a client reads and writes, a new dataset, a new
worker node, and edits that are refused with the YAML key and change nothing.

Masters on 127.0.1.x as in test_master.py. Run in a private network namespace:
    unshare -n sh -c 'ip link set lo up && WEIR_BUILD_DIR=$PWD/build \\
        /usr/bin/python3 -m pytest -q tests/integration/test_members.py'
"""

import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import weir_binary
from weirtest.cluster import MasterCluster, http_request

# Generous: the machine is shared. A membership change costs a commit or a catch-up round; the
# client may see 503 while leadership moves (3 -> 1 hands it over once).
OUTAGE_BOUND_S = 5.0
APPLY_WAIT_S = 60


class Members(MasterCluster):
    """A MasterCluster whose YAML can name extra non-master nodes and datasets."""

    def __init__(self, dir, build_dir, n, master_replicas, extra_nodes=(), workers=1):
        self.extra_nodes = list(extra_nodes)
        self.workers = workers
        self.shm = os.path.join(str(dir), "shm")
        os.makedirs(self.shm, exist_ok=True)
        super().__init__(dir, build_dir, n=n, master_replicas=master_replicas)

    def write_yaml(self, master_replicas, extra_cluster_spec="", mutate=None):
        self.master_replicas = master_replicas
        lines = ["apiVersion: weir.io/v1", "kind: Cluster", "metadata: {name: test}", "spec:"]
        token_file = os.path.join(self.dir, "token")
        with open(token_file, "w") as f:
            f.write(self.token + "\n")
        lines.append(f"  tokenFile: {token_file}")
        lines.append("  raft: {electionTimeout: 300ms, heartbeatTimeout: 50ms}")
        lines.append("  nodes:")
        for m in self.masters:
            lines.append(f"    - {{name: {m.name}, address: {m.address}, raftPort: {self.raft_port}, "
                         f"masterPort: {self.master_port}, dataDir: {m.data_dir}}}")
        for name, address, roles in self.extra_nodes:
            d = os.path.join(self.dir, name)
            lines.append(f"    - {{name: {name}, address: {address}, dataDir: {d}, "
                         f"runtimeDir: {d}/run, roles: [{', '.join(roles)}]}}")
        for ds in self.datasets:
            lines += ["---", "apiVersion: data.fluid.io/v1alpha1", "kind: Dataset",
                      f"metadata: {{name: {ds}}}", "spec:", "  mounts:",
                      f"    - {{mountPoint: 'file:///nonexistent/{ds}', name: {ds}}}"]
        ds = self.datasets[0]
        lines += ["---", "apiVersion: data.fluid.io/v1alpha1", "kind: AlluxioRuntime",
                  f"metadata: {{name: {ds}}}", "spec:", f"  replicas: {self.workers}",
                  f"  master: {{replicas: {master_replicas}}}",
                  "  tieredstore:", "    levels:",
                  f"      - {{mediumtype: MEM, path: {self.shm}, quota: 64Mi, high: '0.9', "
                  "low: '0.5'}"]
        text = "\n".join(lines) + "\n"
        if mutate:
            text = mutate(text)
        with open(self.yaml_path, "w") as f:
            f.write(text)

    def apply(self, *args, timeout=APPLY_WAIT_S + 30):
        return self.weirctl("config", "apply", "--no-systemd", *args, timeout=timeout)

    def config(self, m):
        code, body, _ = http_request("GET", m.url("/v1/config"), timeout=2.0, max_redirects=0,
                                     token=self.token)
        assert code == 200, (code, body)
        return body


class Client(threading.Thread):
    """Writes a label and reads the labels back in a loop, through any running master, one
    attempt per request (no retries): every failure is counted with its time."""

    def __init__(self, cluster, dataset):
        super().__init__(daemon=True)
        self.cluster, self.dataset = cluster, dataset
        self.stop_event = threading.Event()
        self.ok = 0
        self.failures = []  # monotonic times
        self.last_value = None

    def run(self):
        i = 0
        while not self.stop_event.is_set():
            i += 1
            masters = self.cluster.running()
            m = masters[i % len(masters)] if masters else None
            try:
                code, body, _ = http_request(
                    "PUT", m.url(f"/v1/datasets/{self.dataset}/labels/k"),
                    body={"value": str(i)}, token=self.cluster.token, timeout=2.0)
                ok = code == 200
                if ok:
                    code, body, _ = http_request(
                        "GET", m.url(f"/v1/datasets/{self.dataset}/labels"), timeout=2.0,
                        token=self.cluster.token)
                    # The write was acknowledged by the leader, so the leader reads it back.
                    ok = code == 200 and body["labels"].get("k") == str(i)
                    if ok:
                        self.last_value = str(i)
            except Exception:
                ok = False
            if ok:
                self.ok += 1
            else:
                self.failures.append(time.monotonic())
            time.sleep(0.02)

    def finish(self):
        self.stop_event.set()
        self.join(timeout=10)

    def longest_outage(self):
        """The longest run of consecutive failures, in seconds (0 when none failed)."""
        if not self.failures:
            return 0.0
        longest, start, prev = 0.0, self.failures[0], self.failures[0]
        for t in self.failures[1:]:
            if t - prev > 0.5:  # a success came between them
                longest = max(longest, prev - start)
                start = t
            prev = t
        return max(longest, prev - start)


def wait_for(cond, timeout, what, cluster=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}\n{cluster.logs() if cluster else ''}")


def agreement(cluster, masters):
    """Waits until MASTERS agree on leader, term and applied index; returns (leader, term, applied)."""
    def agreed():
        sts = [m.status() for m in masters]
        if not all(sts):
            return None
        key = {(s["leader"], s["term"], s["applied"]) for s in sts}
        if len(key) == 1 and sum(1 for s in sts if s["serving"]) == 1:
            return key.pop()
        return None
    return wait_for(agreed, 20, "agreement on leader, term and applied index", cluster)


@pytest.fixture
def make_members(tmp_path, build_dir):
    weir_binary("weir-master")
    weir_binary("weirctl")
    made = []

    def make(**kw):
        c = Members(tmp_path / f"c{len(made)}", build_dir, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def members_of(cfg):
    return sorted(m["node"] for m in (cfg.get("members") or []))


def test_one_to_three_masters_while_serving(make_members):
    c = make_members(n=3, master_replicas=1)
    node1, node2, node3 = c.masters
    node1.start()
    c.wait_leader()
    client = Client(c, "demo")
    client.start()
    try:
        time.sleep(1.0)
        c.write_yaml(3)
        # The new masters start first (as `systemctl start weir.target` does on their nodes):
        # they find a running cluster and wait to be added instead of bootstrapping.
        node2.start()
        node3.start()
        wait_for(lambda: all((m.status() or {}).get("bootstrap") == "joined"
                             for m in (node2, node3)), 20, "new masters waiting to join", c)
        r = c.apply("--wait", str(APPLY_WAIT_S))
        assert r.returncode == 0, r.stdout + r.stderr + c.logs()
        assert "add master node2 (raft id 2)" in r.stdout
        assert "add master node3 (raft id 3)" in r.stdout
        time.sleep(1.0)  # keep the client running after the change
    finally:
        client.finish()
    assert client.ok > 20, (client.ok, len(client.failures))
    assert client.longest_outage() <= OUTAGE_BOUND_S, (client.failures, c.logs())
    leader, term, applied = agreement(c, c.masters)
    assert leader == "node1"
    cfg = c.config(node1)
    assert members_of(cfg) == ["node1", "node2", "node3"]
    assert all(m["role"] == "voter" for m in cfg["members"])
    for m in (node2, node3):
        log = m.log()
        assert "Not bootstrapping" in log, log
    # Three voters: one of them may fail and the cluster still serves.
    node1.kill()
    new_leader = c.wait_leader(timeout=15)
    assert new_leader.name in ("node2", "node3")
    index, _ = c.put_label("after", "failover")
    assert c.labels()["k"] == client.last_value


def test_three_to_one_master_while_serving(make_members):
    c = make_members(n=3, master_replicas=3)
    c.start()
    leader = c.wait_leader()
    if leader.name == "node1":
        # Make a master that leaves the leader, so that it must hand leadership over.
        leader.stop()
        c.wait_leader(exclude=leader)
        leader.start()
    leader = c.wait_leader()
    assert leader.name != "node1"
    node1, node2, node3 = c.masters
    client = Client(c, "demo")
    client.start()
    try:
        time.sleep(1.0)
        c.write_yaml(1)
        r = c.apply("--wait", str(APPLY_WAIT_S))
        assert r.returncode == 0, r.stdout + r.stderr + c.logs()
        assert "remove master node2 (raft id 2)" in r.stdout
        assert "remove master node3 (raft id 3)" in r.stdout
        # The removed masters exit by themselves, cleanly, once the leader removed them.
        for m in (node2, node3):
            m.proc.wait(timeout=30)
            assert m.proc.returncode == 0, m.log()
        time.sleep(1.0)
    finally:
        client.finish()
    assert client.ok > 20, (client.ok, len(client.failures))
    assert client.longest_outage() <= OUTAGE_BOUND_S, (client.failures, c.logs())
    assert node1.running
    agreement(c, [node1])
    assert members_of(c.config(node1)) == ["node1"]
    assert "handing leadership to node1" in leader.log()
    for m in (node2, node3):
        assert "The leader removed this master" in m.log()
        assert os.path.isdir(os.path.join(m.data_dir, "master", "raft.removed"))
        assert not os.path.exists(os.path.join(m.data_dir, "master", "raft"))
    # A single voter commits alone.
    c.put_label("alone", "yes")
    # And it restarts as a single master with the state it had.
    node1.stop()
    node1.start()
    c.wait_leader()
    assert c.labels()["alone"] == "yes"


def test_add_dataset_keeps_daemons(make_members):
    c = make_members(n=3, master_replicas=3)
    c.start()
    c.wait_leader()
    pids = {m.name: m.proc.pid for m in c.masters}
    c.datasets.append("extra")
    c.write_yaml(3)
    r = c.apply("--wait", str(APPLY_WAIT_S))
    assert r.returncode == 0, r.stdout + r.stderr + c.logs()
    assert "add dataset extra (1 mount)" in r.stdout
    for m in c.masters:
        assert "  %s: reloaded" % m.name in r.stdout, r.stdout
    code, body, _ = c.request("GET", "/v1/datasets/extra")
    assert code == 200 and body["name"] == "extra", (code, body)
    # The leader syncs the new dataset (its store does not exist: the sync fails, visibly).
    wait_for(lambda: c.request("GET", "/v1/datasets/extra")[1].get("sync_error"), 20,
             "the new dataset's first sync", c)
    assert {m.name: m.proc.pid for m in c.masters} == pids
    assert all(m.running for m in c.masters)


def test_add_node_with_worker(make_members, tmp_path):
    weir_binary("weir-worker")
    gen = weir_binary("weir-generator")
    c = make_members(n=3, master_replicas=3, workers=1)
    c.start()
    c.wait_leader()
    pids = {m.name: m.proc.pid for m in c.masters}
    c.extra_nodes.append(("node4", "127.0.1.4", ["worker", "fuse"]))
    c.workers = 2
    c.write_yaml(3)
    r = c.apply("--wait", str(APPLY_WAIT_S))
    assert r.returncode == 0, r.stdout + r.stderr + c.logs()
    assert "add node node4 at 127.0.1.4, running: worker fuse" in r.stdout, r.stdout

    # What systemctl daemon-reload does on the new node: the generator pulls in the worker.
    out = tmp_path / "gen"
    out.mkdir()
    node_file = tmp_path / "node"
    node_file.write_text("node4\n")
    env = dict(os.environ, WEIR_CONFIG=c.yaml_path, WEIR_NODE_FILE=str(node_file),
               WEIR_GENERATOR_LOG="stderr")
    g = subprocess.run([gen, str(out)], env=env, capture_output=True, text=True, timeout=10)
    assert g.returncode == 0, g.stderr
    wants = sorted(os.listdir(out / "weir.target.wants"))
    assert "weir-worker.service" in wants and "weir-master.service" not in wants, wants

    # ... and weir.target starts it: it finds the masters in the YAML and registers.
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS="unix:path=/nonexistent/weir-test-bus")
    env.pop("NOTIFY_SOCKET", None)
    log_path = os.path.join(c.dir, "worker-node4.log")
    with open(log_path, "ab") as log:
        w = subprocess.Popen([weir_binary("weir-worker"), "--config", c.yaml_path, "--node",
                              "node4"], stdout=log, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
    try:
        def registered():
            code, body, _ = c.request("GET", "/v1/workers")
            return code == 200 and any(x["node"] == "node4" and x["alive"]
                                       for x in body["workers"])
        wait_for(registered, 30, "node4's worker registered with the leader", c)
    finally:
        try:
            os.killpg(w.pid, signal.SIGTERM)
            w.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(w.pid, signal.SIGKILL)
            w.wait(timeout=10)
    assert {m.name: m.proc.pid for m in c.masters} == pids


def snapshot_state(c):
    leader = c.wait_leader()
    sts = {m.name: m.status() for m in c.masters}
    cfg = c.config(leader)
    code, datasets, _ = c.request("GET", "/v1/datasets", via=leader)
    assert code == 200
    return {
        "leader": leader.name,
        "terms": {n: s["term"] for n, s in sts.items()},
        "applied": {n: s["applied"] for n, s in sts.items()},
        "running": cfg["running"],
        "members": cfg.get("members"),
        "datasets": sorted(d["name"] for d in datasets["datasets"]),
        "pids": {m.name: m.proc.pid for m in c.masters},
    }


@pytest.mark.parametrize("edit,key", [
    # A running master cannot move.
    (lambda t: t.replace("address: 127.0.1.2,", "address: 127.0.1.9,"),
     "Cluster: spec.nodes[1].address"),
    # Nor change its Raft port.
    (lambda t: t.replace("raftPort: 19200, masterPort: 19998, dataDir: ", "raftPort: 19201, "
                         "masterPort: 19998, dataDir: ", 1),
     "Cluster: spec.nodes[0].raftPort"),
    # A mount cannot change the kind of store it is.
    (lambda t: t.replace("mountPoint: 'file:///nonexistent/demo'",
                         "mountPoint: 'http://127.0.0.1:1/demo/'"),
     "Dataset demo: spec.mounts[0].mountPoint"),
    # The cluster's name is in every request id.
    (lambda t: t.replace("metadata: {name: test}", "metadata: {name: other}"),
     "Cluster: metadata.name"),
])
def test_unappliable_edit_refused(make_members, edit, key):
    c = make_members(n=3, master_replicas=3)
    c.start()
    c.wait_leader()
    c.put_label("before", "1")
    agreement(c, c.masters)
    before = snapshot_state(c)
    original = open(c.yaml_path).read()
    c.write_yaml(3, mutate=edit)
    assert open(c.yaml_path).read() != original
    r = c.apply()
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"refused: {key}:" in r.stderr, r.stderr
    assert "nothing was changed" in r.stderr
    # Nothing reloaded, nothing changed.
    assert all(c.config(m)["reloads"] == 0 for m in c.masters)
    assert snapshot_state(c) == before

    # A master sent SIGHUP anyway (systemctl reload by hand) logs the key and keeps serving.
    for m in c.masters:
        m.signal(signal.SIGHUP)
    wait_for(lambda: all(c.config(m)["reloads_refused"] == 1 for m in c.masters), 10,
             "SIGHUP reload refused on every master", c)
    for m in c.masters:
        cfg = c.config(m)
        assert cfg["reload_error"].startswith(key + ":"), cfg["reload_error"]
        assert f"refused: {key}:" in m.log()
        assert m.running
    assert snapshot_state(c) == before
    c.put_label("after", "2")


@pytest.mark.parametrize("edit,expect", [
    (lambda t: t.replace("master: {replicas: 3}", "master: {replicas: 2}"), "master.replicas"),
    (lambda t: t.replace("kind: Dataset", "kind: Dataset\nbogus: [", 1),
     "did not find expected"),
])
def test_invalid_file_refused(make_members, edit, expect):
    c = make_members(n=3, master_replicas=3)
    c.start()
    c.wait_leader()
    agreement(c, c.masters)
    before = snapshot_state(c)
    c.write_yaml(3, mutate=edit)
    r = c.apply()
    assert r.returncode == 1, r.stdout + r.stderr
    assert expect in r.stderr and "nothing was applied" in r.stderr, r.stderr
    for m in c.masters:
        m.signal(signal.SIGHUP)
    wait_for(lambda: all(c.config(m)["reloads_refused"] == 1 for m in c.masters), 10,
             "SIGHUP reload of an invalid file refused", c)
    assert expect in c.config(c.masters[0])["reload_error"]
    assert snapshot_state(c) == before


def test_new_masters_bootstrap_only_together(make_members):
    """A cluster's first start: each new master waits until a majority of new masters answer,
    then all bootstrap the same configuration."""
    c = make_members(n=3, master_replicas=3)
    node1, node2, node3 = c.masters
    node1.start()
    wait_for(lambda: (node1.status() or {}).get("bootstrap") == "waiting", 10,
             "node1 waiting for the others", c)
    time.sleep(1.0)
    assert (node1.status() or {}).get("bootstrap") == "waiting"
    node2.start()
    leader = c.wait_leader(timeout=20)
    assert leader.name in ("node1", "node2")
    node3.start()
    # node3 finds a running cluster whose bootstrap configuration already names it.
    agreement(c, c.masters)
    assert (node3.status() or {}).get("bootstrap") == "joined"
    c.put_label("x", "1")
