"""Operators editing the cluster YAML of a running cluster: `weirctl config apply`, SIGHUP, Raft
membership changes (1 -> 3 -> 1 masters) while a client reads and writes, a new dataset, a new
worker node, and edits that are refused with the YAML key and change nothing.

Masters on 127.0.1.x as in test_master.py. Run in a private network namespace:
    unshare -n sh -c 'ip link set lo up && WEIR_BUILD_DIR=$PWD/build \\
        /usr/bin/python3 -m pytest -q tests/integration/test_members.py'
"""

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import cluster_factory, weir_binary
from weirtest.cluster import MasterCluster, http_request
from weirtest.config import FAST_RAFT, Dataset, cluster_yaml, write_token
from weirtest.fusecluster import WorkerProc

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
        nodes = [self.node(m) for m in self.masters]
        for name, address, roles in self.extra_nodes:
            d = os.path.join(self.dir, name)
            nodes.append({"name": name, "address": address, "dataDir": d,
                          "runtimeDir": f"{d}/run", "roles": list(roles)})
        # one runtime, for the first dataset
        datasets = [Dataset(ds, mounts=[(ds, f"file:///nonexistent/{ds}")], runtime=i == 0,
                            replicas=self.workers, master_replicas=master_replicas,
                            tiers=[("MEM", self.shm, "64Mi", "0.9", "0.5")])
                    for i, ds in enumerate(self.datasets)]
        text = cluster_yaml(name="test", token_file=write_token(os.path.join(self.dir, "token"),
                                                                self.token),
                            raft=FAST_RAFT, nodes=nodes, datasets=datasets)
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
    yield from cluster_factory(Members, tmp_path, build_dir)


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
        t0 = time.monotonic()
        r = c.apply("--wait", str(APPLY_WAIT_S))
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stdout + r.stderr + c.logs()
        assert "add master node2 (raft id 2)" in r.stdout
        assert "add master node3 (raft id 3)" in r.stdout
        time.sleep(1.0)  # keep the client running after the change
    finally:
        client.finish()
    print(f"1->3: {client.ok} ok, {len(client.failures)} failed, longest outage "
          f"{client.longest_outage():.3f}s, apply took {took:.2f}s")
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
        t0 = time.monotonic()
        r = c.apply("--wait", str(APPLY_WAIT_S))
        took = time.monotonic() - t0
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
    print(f"3->1: {client.ok} ok, {len(client.failures)} failed, longest outage "
          f"{client.longest_outage():.3f}s, apply took {took:.2f}s")
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


def test_three_to_one_with_a_leaving_master_already_down(make_members):
    """3 -> 1 while node3, which leaves, is already down: the leader removes the master that
    cannot answer first ({1,2}: both up), then node2 ({1}). Removing node2 first would propose
    {1,3}, whose majority needs the dead node3: the leader lost leadership and no master could be
    elected again (seen in the QEMU operator scenario)."""
    c = make_members(n=3, master_replicas=3)
    c.start()
    node1, node2, node3 = c.masters
    leader = c.wait_leader()
    if leader is node3:
        node3.stop()
        c.wait_leader(exclude=node3)
        node3.start()
        c.wait_leader()
    wait_for(lambda: members_of(c.config(c.wait_leader())) == ["node1", "node2", "node3"], 30,
             "three voters", c)
    node3.kill()
    c.write_yaml(1)
    r = c.apply("--wait", str(APPLY_WAIT_S))
    assert r.returncode == 0, r.stdout + r.stderr + c.logs()
    node2.proc.wait(timeout=30)
    assert node2.proc.returncode == 0, node2.log()
    assert node1.running
    assert members_of(c.config(node1)) == ["node1"]
    assert node1.log().index("Removing raft id 3") < node1.log().index("Removing raft id 2")
    c.put_label("alone", "yes")


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
    w = WorkerProc(weir_binary("weir-worker"), c.yaml_path, "node4", c.dir).start()
    try:
        def registered():
            code, body, _ = c.request("GET", "/v1/workers")
            return code == 200 and any(x["node"] == "node4" and x["alive"]
                                       for x in body["workers"])
        wait_for(registered, 30, "node4's worker registered with the leader", c)
    finally:
        w.stop()
    assert {m.name: m.proc.pid for m in c.masters} == pids


def snapshot_state(c):
    leader = c.wait_leader()
    # The leader records the membership once after its election: wait for that.
    wait_for(lambda: c.config(leader)["converged"] and c.config(leader).get("members"), 10,
             "the leader's membership record", c)
    sts = {m.name: m.status() for m in c.masters}
    cfg = c.config(leader)
    code, datasets, _ = c.request("GET", "/v1/datasets", via=leader)
    assert code == 200
    code, labels, _ = c.request("GET", f"/v1/datasets/{c.datasets[0]}/labels", via=leader)
    assert code == 200
    # Not the applied index: the leader retries the failing sync of file:///nonexistent/demo
    # in the background, which commits entries.
    return {
        "leader": leader.name,
        "terms": {n: s["term"] for n, s in sts.items()},
        "running": cfg["running"],
        "members": cfg.get("members"),
        "datasets": sorted((d["name"], d["block_size"], json.dumps(d["mounts"]))
                           for d in datasets["datasets"]),
        "labels": labels["labels"],
        "pids": {m.name: m.proc.pid for m in c.masters},
        "bootstrap": {n: s["bootstrap"] for n, s in sts.items()},
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
    # node3 finds a running cluster that bootstrapped the very masters node3 would, and whose
    # membership never changed: it writes the identical first entry and can vote at once.
    agreement(c, c.masters)
    assert (node3.status() or {}).get("bootstrap") == "bootstrapped"
    assert "bootstrapped the same masters" in node3.log()
    c.put_label("x", "1")
    # A master added later (1 -> 3) never does: see test_one_to_three_masters_while_serving.


def test_dry_run_and_no_cluster(make_members):
    c = make_members(n=3, master_replicas=1)
    node1 = c.masters[0]
    # Nothing runs: nothing to compare with; the masters are asked and none answers.
    r = c.apply()
    assert r.returncode == 1, r.stdout + r.stderr
    assert "no master of the file answers (node1 at 127.0.1.1:19998)" in r.stderr, r
    assert "nothing was applied" in r.stderr
    node1.start()
    c.wait_leader()
    c.write_yaml(3)
    r = c.apply("--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "add master node2 (raft id 2)" in r.stdout
    assert "Reloading" not in r.stdout
    time.sleep(0.5)
    cfg = c.config(node1)
    assert cfg["reloads"] == 0 and members_of(cfg) == ["node1"]
    # The reload call needs the cluster token, as every mutating call does.
    code, _, _ = http_request("POST", node1.url("/v1/config/reload"), timeout=2.0)
    assert code == 401
    assert c.config(node1)["reloads"] == 0
    r = c.weirctl("config", "apply", "--wait", "0")
    assert r.returncode == 2 and "--wait expects" in r.stderr, r


def test_restart_with_a_file_that_dropped_the_master(make_members):
    """Restarting (instead of reloading) a master whose new file drops it, before the leader
    removed it: it refuses to start and says how to get out of that."""
    c = make_members(n=3, master_replicas=3)
    c.start()
    c.wait_leader()
    node3 = c.masters[2]
    assert node3.stop() == 0
    c.write_yaml(1)
    node3.start()
    assert node3.proc.wait(timeout=15) == 1
    log = node3.log()
    assert "Node 'node3' runs no master" in log
    assert "was a master (its raft log is still there)" in log
    # Its raft data is untouched: with the previous file it rejoins.
    c.write_yaml(3)
    node3.start()
    agreement(c, c.masters)


def test_new_master_down_is_retried(make_members):
    """1 -> 3 with node3 not started yet: node2 becomes a voter, node3's promotion fails and is
    retried (libraft catches it up only once it answers); the cluster serves meanwhile, and
    starting node3 completes the change."""
    c = make_members(n=3, master_replicas=1)
    node1, node2, node3 = c.masters
    node1.start()
    c.wait_leader()
    c.write_yaml(3)
    node2.start()
    r = c.apply("--wait", "8")
    assert r.returncode == 1 and "did not reach" in r.stderr, r.stdout + r.stderr
    cfg = c.config(node1)
    assert not cfg["converged"]
    roles = {m["node"]: m["role"] for m in cfg["members"] or []}
    assert roles.get("node2") == "voter", (roles, c.logs())
    assert roles.get("node3") in ("spare", "standby"), (roles, c.logs())
    c.put_label("meanwhile", "1")  # node1 and node2 are a quorum of two voters
    node3.start()
    wait_for(lambda: c.config(node1)["converged"], 30, "node3 promoted once it answers", c)
    assert members_of(c.config(node1)) == ["node1", "node2", "node3"]
    assert "failed: " in node1.log() and "retrying" in node1.log()
    agreement(c, c.masters)


def test_apply_with_systemctl(make_members, tmp_path):
    """The systemd path, with a systemctl stand-in first in $PATH that logs its arguments:
    daemon-reload, start --no-block weir.target, and reload of weir-master only where it is
    active; a refused file runs none of them."""
    c = make_members(n=3, master_replicas=1)
    c.masters[0].start()
    c.wait_leader()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls"
    fake = bindir / "systemctl"
    fake.write_text("#!/bin/sh\n"
                    f"echo \"$*\" >> {calls}\n"
                    # is-active answers what $FAKE_MASTER_ACTIVE says
                    "if [ \"$1\" = is-active ]; then exit ${FAKE_MASTER_ACTIVE:-3}; fi\n"
                    "exit 0\n")
    fake.chmod(0o755)

    def apply(active, *args):
        env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", WEIR_NO_SYSTEMD="0",
                   FAKE_MASTER_ACTIVE=str(active))
        if calls.exists():
            calls.unlink()
        r = subprocess.run([c.weirctl_path, "--config", c.yaml_path, "config", "apply", *args],
                           capture_output=True, text=True, timeout=60, env=env)
        return r, (calls.read_text().splitlines() if calls.exists() else [])

    c.write_yaml(3)
    r, seen = apply(0)
    assert r.returncode == 0, r.stdout + r.stderr
    assert seen == ["daemon-reload", "start --no-block weir.target",
                    "is-active --quiet weir-master.service", "reload weir-master.service"], seen
    r, seen = apply(3)
    assert r.returncode == 0 and seen == ["daemon-reload", "start --no-block weir.target",
                                          "is-active --quiet weir-master.service"], seen
    # Refused: nothing is run.
    c.write_yaml(3, mutate=lambda t: t.replace("metadata: {name: test}", "metadata: {name: x}"))
    r, seen = apply(0)
    assert r.returncode == 1 and "Cluster: metadata.name" in r.stderr and seen == [], (r, seen)
    # The only running master moved: the file cannot find the cluster; nothing is run either.
    c.write_yaml(3, mutate=lambda t: t.replace("address: 127.0.1.1,", "address: 127.0.1.9,"))
    r, seen = apply(0)
    assert r.returncode == 1 and "no master of the file answers" in r.stderr, r
    assert "spec.nodes[N].address" in r.stderr and seen == [], (r, seen)
