"""Real weir-master clusters on loopback for the integration tests and bench/failover.

    cluster = MasterCluster(tmp_path, build_dir, n=3, first_address=1)
    cluster.start()
    leader = cluster.wait_leader()
    cluster.put_label("k", "v")          # follows redirects, retries while no leader
    leader.kill()                        # SIGKILL of its process group
    cluster.stop()                       # always; also safe after failures

Every process runs in its own session (process group) so that kill() and stop() reach all of it;
MasterCluster.stop() is idempotent and meant for fixture finalizers. Masters use 127.0.1.x
(first_address .. first_address + n - 1), the range reserved for master tests.
"""

import http.client
import json
import os
import subprocess
import time
import urllib.parse

from weirtest.config import FAST_RAFT, Dataset, write_cluster_yaml, write_token
from weirtest.daemon import Daemon, weir_env
from weirtest.net import wait_until

TOKEN = "weir-test-token"
MASTER_PORT = 19998
RAFT_PORT = 19200


class HttpError(Exception):
    pass


def http_request(method, url, body=None, token=None, timeout=2.0, max_redirects=5, headers=None):
    """One HTTP request with JSON body; follows 307/308 itself (method and body kept).

    Returns (status, parsed JSON or raw text, response headers dict). Raises OSError on
    connection failures."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    for _ in range(max_redirects + 1):
        u = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        try:
            h = dict(headers or {})
            if token:
                h["Authorization"] = f"Bearer {token}"
            if data is not None:
                h["Content-Type"] = "application/json"
            target = u.path + (f"?{u.query}" if u.query else "")
            conn.request(method, target, body=data, headers=h)
            resp = conn.getresponse()
            raw = resp.read()
            rh = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        if resp.status in (307, 308) and "location" in rh and max_redirects > 0:
            url = rh["location"]
            continue
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        return resp.status, payload, rh
    raise HttpError(f"too many redirects for {method} {url}")


class Master(Daemon):
    """One weir-master of CLUSTER (anything with binary, yaml_path, dir, master_port,
    snapshot_threshold and env). start() does not wait: a cluster waits for its leader."""

    what = "weir-master"

    def __init__(self, cluster, index, name, address):
        super().__init__(os.path.join(cluster.dir, f"{name}.log"), address, cluster.master_port)
        self.cluster = cluster
        self.index = index
        self.name = name
        self.api = f"{address}:{cluster.master_port}"
        self.data_dir = os.path.join(cluster.dir, name)
        self.extra_args = ()

    def command(self):
        args = [self.cluster.binary, "--config", self.cluster.yaml_path, "--node", self.name]
        if self.cluster.snapshot_threshold:
            args += ["--snapshot-threshold", str(self.cluster.snapshot_threshold)]
        return args + list(self.extra_args)

    def environment(self):
        return weir_env(self.cluster.env)

    def start(self, extra_args=(), wait=False):
        self.extra_args = tuple(extra_args)
        return super().start(wait=wait)

    def url(self, path):
        return f"http://{self.api}{path}"

    def status(self, timeout=0.5):
        """This master's /v1/status, or None when it does not answer."""
        try:
            code, body, _ = http_request("GET", self.url("/v1/status"), timeout=timeout,
                                         max_redirects=0)
        except OSError:
            return None
        return body if code == 200 else None


class MasterCluster:
    """N masters (n may be 1) described by one YAML in DIR: the one cluster harness.

    The defaults are the master tests' cluster (node1.. on 127.0.1.FIRST_ADDRESS.., one master
    port and one Raft port for all, a placeholder dataset per name in DATASETS). The other
    environments set options: ADDRESSES and NODE_NAMES place the masters elsewhere; NODE_KEYS
    (a function of the Master) adds YAML keys to a master's node (its own ports, workerPort,
    runtimeDir, roles); EXTRA_NODES are further YAML nodes (workers); DATASETS may hold
    weirtest.config.Dataset values instead of names; TOKEN may be a string; NAME is the
    Cluster's metadata.name."""

    def __init__(self, dir, build_dir, n=3, first_address=1, token=True, snapshot_threshold=None,
                 datasets=("demo",), master_replicas=None, master_port=MASTER_PORT,
                 raft_port=RAFT_PORT, env=None, extra_cluster_spec="", raft_secret_file=None,
                 *, name="test", addresses=None, node_names=None, node_keys=None,
                 extra_nodes=(), log_prefix="", raft_options=None):
        self.dir = str(dir)
        self.raft_options = dict(raft_options or {})  # more keys of spec.raft
        os.makedirs(self.dir, exist_ok=True)
        self.binary = os.path.join(build_dir, "services/master/weir-master")
        self.weirctl_path = os.path.join(build_dir, "services/ctl/weirctl")
        self.master_port = master_port
        self.raft_port = raft_port
        self.token = (token if isinstance(token, str) else TOKEN) if token else None
        self.snapshot_threshold = snapshot_threshold
        self.env = dict(env or {})
        self.name = name
        addresses = addresses or [f"127.0.1.{first_address + i}" for i in range(n)]
        node_names = node_names or [f"node{i + 1}" for i in range(n)]
        self.masters = [Master(self, i, nm, a) for i, (nm, a) in enumerate(zip(node_names,
                                                                               addresses))]
        self.node_keys = node_keys
        for m in self.masters:
            keys = self.node(m)
            m.data_dir = keys["dataDir"]
            m.port = keys["masterPort"]
            m.api = f"{m.address}:{m.port}"
            m.log_path = os.path.join(self.dir, f"{log_prefix}{m.name}.log")
        self.worker_nodes = list(extra_nodes)
        self.yaml_path = os.path.join(self.dir, "cluster.yaml")
        # a runtime needs a dataset
        self.dataset_specs = [d for d in datasets if isinstance(d, Dataset)]
        self.datasets = [d.name if isinstance(d, Dataset) else d for d in datasets] or ["demo"]
        self.raft_secret_file = raft_secret_file
        self.write_yaml(master_replicas if master_replicas is not None else len(self.masters),
                        extra_cluster_spec)

    def node(self, m):
        """The YAML node of master M."""
        keys = {"name": m.name, "address": m.address, "raftPort": self.raft_port,
                "masterPort": self.master_port, "dataDir": os.path.join(self.dir, m.name)}
        keys.update(self.node_keys(m) if self.node_keys else {})
        return keys

    def dataset_spec(self, name, master_replicas):
        for d in self.dataset_specs:
            if d.name == name:
                return d
        return Dataset(name, mounts=[(name, f"file:///nonexistent/{name}")],
                       master_replicas=master_replicas)

    def write_yaml(self, master_replicas, extra_cluster_spec=""):
        token_file = None
        if self.token:
            token_file = write_token(os.path.join(self.dir, "token"), self.token)
        raft = dict(FAST_RAFT, secretFile=self.raft_secret_file, **self.raft_options)
        write_cluster_yaml(self.yaml_path, name=self.name, token_file=token_file, raft=raft,
                           cluster_extra=extra_cluster_spec,
                           nodes=[self.node(m) for m in self.masters] + self.worker_nodes,
                           datasets=[self.dataset_spec(ds, master_replicas)
                                     for ds in self.datasets])

    # -- processes --

    def start(self):
        for m in self.masters:
            m.start()
        return self

    def stop(self):
        """Stops every master (SIGTERM, then SIGKILL); safe to call twice."""
        codes = [m.stop() for m in self.masters]
        return codes

    def kill_all(self):
        for m in self.masters:
            m.kill()

    def running(self):
        return [m for m in self.masters if m.running]

    def logs(self):
        return "\n".join(f"===== {m.name}\n{m.log()[-4000:]}" for m in self.masters)

    # -- state --

    def statuses(self):
        return {m.name: m.status() for m in self.running()}

    def leaders(self):
        return [m for m in self.running() if (m.status() or {}).get("serving")]

    def wait_leader(self, timeout=15.0, exclude=None):
        """The single serving leader, once every running master agrees on it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sts = {m.name: m.status() for m in self.running() if m is not exclude}
            serving = [n for n, s in sts.items() if s and s.get("serving")]
            if len(serving) == 1 and all(s and s.get("leader") == serving[0]
                                         for s in sts.values()):
                return self.by_name(serving[0])
            time.sleep(0.05)
        raise AssertionError(f"no single leader within {timeout}s: {self.statuses()}\n"
                             f"{self.logs()}")

    def by_name(self, name):
        return next(m for m in self.masters if m.name == name)

    def request(self, method, path, body=None, token=True, timeout=2.0, via=None):
        """One request to VIA (default: the first running master), redirects followed."""
        m = via or self.running()[0]
        return http_request(method, m.url(path), body=body,
                            token=self.token if token else None, timeout=timeout)

    def put_label(self, key, value, dataset=None, deadline_s=20.0):
        """Writes a label through any running master, retrying (503, lost leadership,
        refused connections) until DEADLINE_S. Returns (index, seconds taken)."""
        dataset = dataset or self.datasets[0]
        start = time.monotonic()
        last = None
        while time.monotonic() - start < deadline_s:
            for m in self.running():
                try:
                    code, body, _ = http_request("PUT", m.url(f"/v1/datasets/{dataset}/labels/{key}"),
                                                 body={"value": value}, token=self.token,
                                                 timeout=1.0)
                except (OSError, HttpError) as e:
                    last = repr(e)
                    continue
                if code == 200:
                    return body["index"], time.monotonic() - start
                last = (code, body)
            time.sleep(0.02)
        raise AssertionError(f"write {key}={value} not accepted within {deadline_s}s: {last}\n"
                             f"{self.logs()}")

    def labels(self, dataset=None):
        dataset = dataset or self.datasets[0]
        leader = self.wait_leader()
        code, body, _ = self.request("GET", f"/v1/datasets/{dataset}/labels", timeout=3.0,
                                     via=leader)
        assert code == 200, (code, body)
        return body["labels"]

    # -- the helpers of the environments that run workers and datasets --

    def request_any(self, method, path, body=None, timeout=5.0):
        """(status, JSON) from the first running master that answers other than 503;
        redirects followed. (None, error) when none does."""
        last = (None, None)
        for m in self.running():
            try:
                code, payload, _ = http_request(method, m.url(path), body=body, token=self.token,
                                                timeout=timeout)
            except (OSError, HttpError) as e:
                last = (None, str(e))
                continue
            if code == 503:
                last = (code, payload)
                continue
            return code, payload
        return last

    def wait(self, cond, timeout=30, what="condition"):
        """Polls COND until it is true; raises with the masters' logs after TIMEOUT seconds."""
        wait_until(cond, timeout, what, lambda: "\n".join(
            f"== {m.name}\n{m.log()[-3000:]}" for m in self.masters))

    def serving_leader(self):
        """The first running master that says it serves as leader, or None."""
        for m in self.running():
            st = m.status()
            if st and st.get("serving"):
                return m
        return None

    def sync(self, dataset=None, files=None, timeout=60):
        """Syncs DATASET with a sync that starts after this call and waits until it committed
        (with FILES files, when given), so that it sees every change made before the call. A
        sync already running (409) may have listed the store before those changes: wait for it
        to end and ask again. A new leader answers 503 until it serves: ask until it takes the
        sync. "synced" is the leader's wall clock at the commit, this host's clock."""
        dataset = dataset or self.datasets[0]

        def synced_after(t):
            body = self.request_any("GET", f"/v1/datasets/{dataset}")[1] or {}
            return (body.get("synced") or 0) > t and (files is None or
                                                      body.get("total_files") == files)

        def started():
            t = time.time()
            code = self.request_any("POST", f"/v1/datasets/{dataset}/sync", body={})[0]
            if code in (200, 202):
                started.at = t  # no sync ran at T: any commit after T is this one's or later
                return True
            if code == 409:
                wait_until(lambda: synced_after(t) or (self.request_any(
                    "GET", f"/v1/datasets/{dataset}")[1] or {}).get("sync_error"), timeout,
                    "the running sync to end")
            return False
        self.wait(started, timeout, "a sync started after the call")
        self.wait(lambda: synced_after(started.at), timeout, "a synced dataset")

    def stat(self, path, dataset=None):
        dataset = dataset or self.datasets[0]
        code, body = self.request_any("GET", f"/v1/datasets/{dataset}/stat?path="
                                      + urllib.parse.quote(path))
        assert code == 200, body
        return body

    def weirctl(self, *args, timeout=15):
        return subprocess.run([self.weirctl_path, "--config", self.yaml_path, *args],
                              capture_output=True, text=True, timeout=timeout)
