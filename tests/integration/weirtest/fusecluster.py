"""The seeds' demo for the FUSE tests and bench/fuse.py: three real nodes on 127.0.4.1-3 (each a
weir-master and a weir-worker), an nginx store on 127.0.4.4 serving a generated hbase-like
dataset, and weir-fuse on node1. Everything lives in one private directory; stop() stops all of
it and is safe to call after any failure.
"""

import json
import os
import random
import signal
import subprocess
import time
import urllib.parse

from weirtest.cluster import Master, http_request
from weirtest.fusemount import FuseDaemon, lazy_unmount, nginx_bytes_sent
from weirtest.net import free_port
from weirtest.stores import Nginx

MiB = 1 << 20
# The seeds' hbase directory: six files of these sizes (names shaped like Apache's).
HBASE_FILES = [
    ("hbase-2.5.10-bin.tar.gz", 263 * MiB + 123457),
    ("hbase-2.5.10-hadoop3-bin.tar.gz", 252 * MiB + 98765),
    ("hbase-2.5.10-client-bin.tar.gz", 36 * MiB + 4321),
    ("hbase-2.5.10-src.tar.gz", 1126 * 1024 + 17),
    ("RELEASENOTES.md", 650 * 1024 + 3),
    ("CHANGES.md", 29 * 1024 + 1),
]
TOKEN = "weir-fuse-test-token"




def make_dataset(root, scale=1.0, seed=5):
    """Writes the six files under ROOT/hbase/; returns {name: size}."""
    d = os.path.join(root, "hbase")
    os.makedirs(d, exist_ok=True)
    rnd = random.Random(seed)
    out = {}
    for name, size in HBASE_FILES:
        size = max(1, int(size * scale))
        path = os.path.join(d, name)
        with open(path, "wb") as f:
            left = size
            while left:
                n = min(left, 8 * MiB)
                f.write(rnd.randbytes(n))
                left -= n
        out[name] = size
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for fn in filenames:
            os.chmod(os.path.join(dirpath, fn), 0o644)
    return out


class WorkerProc:
    def __init__(self, binary, yaml_path, name, workdir):
        self.binary, self.yaml_path, self.name = binary, yaml_path, name
        self.log_path = os.path.join(workdir, f"worker-{name}.log")
        self.proc = None

    def start(self):
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.setdefault("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/weir-test-bus")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "--config", self.yaml_path, "--node",
                                          self.name], stdout=log, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)
        return self

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.running:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def stop(self):
        self.kill(signal.SIGTERM)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


class DemoCluster:
    """Three nodes (master + worker each) on 127.0.4.1-3, nginx on 127.0.4.4, FUSE on node1."""

    def __init__(self, dir, build_dir, *, scale=1.0, block_size=None, tier_quota="2Gi",
                 fuse_env=None, mem_dir=None, dataset=None, store=None, mount=None):
        """DATASET(root) writes the files under ROOT/hbase/ and returns {relative path: size}
        (default: the six hbase files); STORE(root, workdir) returns the store server, not started
        (default: nginx on 127.0.4.4); MOUNT(store) returns the dataset's mount entry as YAML flow
        lines (default: the store's URL + hbase/)."""
        self.dir = str(dir)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.build_dir = build_dir
        # weirtest.cluster.Master reads these attributes
        self.binary = os.path.join(build_dir, "services/master/weir-master")
        self.snapshot_threshold = None
        self.env = {}
        self.store_root = os.path.join(self.dir, "store")
        self.files = (dataset or (lambda root: make_dataset(root, scale)))(self.store_root)
        self.nginx = (store or (lambda root, wd: Nginx(root, "127.0.4.4", wd)))(
            self.store_root, os.path.join(self.dir, "nginx"))
        self.mount = mount
        self.addresses = ["127.0.4.1", "127.0.4.2", "127.0.4.3"]
        self.names = ["node1", "node2", "node3"]
        self.ports = {a: (free_port(a), free_port(a), free_port(a)) for a in self.addresses}
        self.master_port = None  # per node, see node_api()
        self.yaml_path = os.path.join(self.dir, "cluster.yaml")
        self.block_size = block_size
        self.tier_quota = tier_quota
        # the MEM level's path: a directory of the test's own by default, a tmpfs for benchmarks
        self.mem_dir = mem_dir or os.path.join(self.dir, "shm")
        self.masters = []
        self.workers = []
        self.fuse = None
        self.fuse_env = dict(fuse_env or {})
        self.mnt = os.path.join(self.dir, "mnt")

    def write_yaml(self):
        token_file = os.path.join(self.dir, "token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        lines = ["apiVersion: weir.io/v1", "kind: Cluster", "metadata: {name: hbase}", "spec:",
                 f"  tokenFile: {token_file}",
                 "  raft: {electionTimeout: 300ms, heartbeatTimeout: 50ms}", "  nodes:"]
        for name, a in zip(self.names, self.addresses):
            raft, mport, wport = self.ports[a]
            nd = os.path.join(self.dir, name)
            lines.append(f"    - {{name: {name}, address: {a}, raftPort: {raft}, "
                         f"masterPort: {mport}, workerPort: {wport}, dataDir: {nd}/data, "
                         f"runtimeDir: {nd}/run, mountRoot: {nd}/mnt}}")
        lines += ["---", "apiVersion: data.fluid.io/v1alpha1", "kind: Dataset",
                  "metadata: {name: hbase}", "spec:"]
        if self.block_size:
            lines.append(f"  blockSize: {self.block_size}")
        lines += ["  mounts:"]
        lines += (self.mount(self.nginx) if self.mount else
                  [f"    - {{mountPoint: '{self.nginx.url}hbase/', name: hbase}}"])
        lines += ["---", "apiVersion: data.fluid.io/v1alpha1", "kind: AlluxioRuntime",
                  "metadata: {name: hbase}", "spec:", "  replicas: 3",
                  "  master: {replicas: 3}", "  tieredstore:", "    levels:",
                  f"      - {{mediumtype: MEM, path: {self.mem_dir}, quota: {self.tier_quota}, "
                  "high: '0.95', low: '0.7'}"]
        with open(self.yaml_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    # -- lifecycle --

    def start(self, fuse=True):
        try:
            self.nginx.start()
            self.write_yaml()
            for i, name in enumerate(self.names):
                m = Master(self, i, name, self.addresses[i])
                m.api = self.node_api(i)
                m.data_dir = os.path.join(self.dir, name, "data")
                m.log_path = os.path.join(self.dir, f"master-{name}.log")
                self.masters.append(m.start())
            self.wait(lambda: self.leader() is not None, 30, "a leader")
            self.sync()
            wbin = os.path.join(self.build_dir, "services/worker/weir-worker")
            for name in self.names:
                self.workers.append(WorkerProc(wbin, self.yaml_path, name, self.dir).start())
            self.wait(lambda: sum(1 for w in self.request("GET", "/v1/workers")[1]["workers"]
                                  if w["alive"]) == 3, 30, "three workers registered")
            if fuse:
                self.start_fuse()
        except BaseException:
            self.stop()
            raise
        return self

    def start_fuse(self):
        fbin = os.path.join(self.build_dir, "services/fuse/weir-fuse")
        env = {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/weir-test-bus"}
        env.update(self.fuse_env)
        self.fuse = FuseDaemon(fbin, self.yaml_path, "node1", "hbase", self.mnt, self.dir,
                               env=env)
        self.fuse.start()
        return self.fuse

    def stop(self):
        if self.fuse:
            try:
                self.fuse.stop()
            finally:
                self.fuse.kill()
        lazy_unmount(self.mnt)
        for w in self.workers:
            w.kill()
        for m in self.masters:
            m.kill()
        self.nginx.stop()

    # -- the API --

    def node_api(self, i):
        return f"{self.addresses[i]}:{self.ports[self.addresses[i]][1]}"

    def request(self, method, path, body=None, timeout=5.0):
        last = (None, None)
        for m in self.masters:
            if not m.running:
                continue
            try:
                code, payload, _ = http_request(method, f"http://{m.api}{path}", body=body,
                                                token=TOKEN, timeout=timeout)
            except OSError as e:
                last = (None, str(e))
                continue
            if code == 503:
                last = (code, payload)
                continue
            return code, payload
        return last

    def wait(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if cond():
                    return
            except (OSError, KeyError, TypeError, IndexError):
                pass
            time.sleep(0.1)
        logs = "\n".join(f"== {m.name}\n{m.log()[-2000:]}" for m in self.masters)
        raise AssertionError(f"{what} not reached within {timeout}s\n{logs}")

    def leader(self):
        for m in self.masters:
            st = m.status() if m.running else None
            if st and st.get("role") == "leader":
                return m
        return None

    def sync(self):
        # a new leader answers 503 until it serves (raft_barrier): ask until it takes it
        self.wait(lambda: self.request("POST", "/v1/datasets/hbase/sync", body={})[0]
                  in (200, 202, 409), 30, "a sync accepted")
        self.wait(lambda: (self.request("GET", "/v1/datasets/hbase")[1] or {}).get("synced")
                  and self.request("GET", "/v1/datasets/hbase")[1].get("total_files")
                  == len(self.files), 60, "a synced dataset")

    def worker_of(self, node):
        return self.workers[self.names.index(node)]

    def store_bytes(self):
        return nginx_bytes_sent(os.path.join(self.nginx.workdir, "access.log"))

    def stat(self, path):
        code, body = self.request("GET", "/v1/datasets/hbase/stat?path=" + urllib.parse.quote(path))
        assert code == 200, body
        return body
