"""The seeds' demo for the FUSE tests and bench/fuse.py: three real nodes on 127.0.4.1-3 (each a
weir-master and a weir-worker), an nginx store on 127.0.4.4 serving a generated hbase-like
dataset, and weir-fuse on node1. Everything lives in one private directory; stop() stops all of
it and is safe to call after any failure.
"""

import os
import random
import time
import urllib.parse

from weirtest.cluster import MasterCluster
from weirtest.config import Dataset
from weirtest.fusemount import FuseDaemon, lazy_unmount, nginx_bytes_sent
from weirtest.net import free_port
from weirtest.stores import Nginx, make_world_readable
from weirtest.workerenv import Worker

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
    make_world_readable(root)
    return out


class WorkerProc(Worker):
    """A weir-worker of a cluster YAML that names its address and port; start() does not wait
    (the tests wait for the master to see it registered)."""

    log_level = None

    def __init__(self, binary, yaml_path, name, workdir):
        super().__init__(binary, yaml_path, name, None, None, workdir)
        self.yaml_path, self.name = yaml_path, name

    def start(self, wait=False):
        return super().start(wait=wait)


class DemoCluster:
    """Three nodes (master + worker each) on 127.0.4.1-3, nginx on 127.0.4.4, FUSE on node1."""

    def __init__(self, dir, build_dir, *, scale=1.0, block_size=None, tier_quota="2Gi",
                 fuse_env=None, mem_dir=None, dataset=None, store=None, mount=None):
        """DATASET(root) writes the files under ROOT/hbase/ and returns {relative path: size}
        (default: the six hbase files); STORE(root, workdir) returns the store server, not started
        (default: nginx on 127.0.4.4); MOUNT(store) returns the dataset's mount as (name, url) or
        (name, url, {option: value}) (default: ("hbase", the store's URL + hbase/))."""
        self.dir = str(dir)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.build_dir = build_dir
        self.store_root = os.path.join(self.dir, "store")
        self.files = (dataset or (lambda root: make_dataset(root, scale)))(self.store_root)
        self.nginx = (store or (lambda root, wd: Nginx(root, "127.0.4.4", wd)))(
            self.store_root, os.path.join(self.dir, "nginx"))
        self.addresses = ["127.0.4.1", "127.0.4.2", "127.0.4.3"]
        self.names = ["node1", "node2", "node3"]
        self.ports = {a: (free_port(a), free_port(a), free_port(a)) for a in self.addresses}
        self.master_port = None  # per node, see node_api()
        self.yaml_path = os.path.join(self.dir, "cluster.yaml")
        self.block_size = block_size
        self.tier_quota = tier_quota
        # the MEM level's path: a directory of the test's own by default, a tmpfs for benchmarks
        self.mem_dir = mem_dir or os.path.join(self.dir, "shm")
        # the masters: the cluster harness with a node per address, the dataset on nginx
        self.c = MasterCluster(
            self.dir, build_dir, token=TOKEN, name="hbase", addresses=self.addresses,
            node_names=self.names, node_keys=self.node_keys, log_prefix="master-",
            datasets=[Dataset("hbase", mounts=[mount(self.nginx) if mount else
                                               ("hbase", f"{self.nginx.url}hbase/")],
                              block_size=block_size, replicas=3, master_replicas=3,
                              tiers=[("MEM", self.mem_dir, tier_quota, "0.95", "0.7")])])
        self.masters = self.c.masters
        self.workers = []
        self.fuse = None
        self.fuse_env = dict(fuse_env or {})
        self.mnt = os.path.join(self.dir, "mnt")

    def node_keys(self, m):
        """Each node runs a master and a worker, with ports of its own."""
        raft, mport, wport = self.ports[m.address]
        nd = os.path.join(self.dir, m.name)
        return {"raftPort": raft, "masterPort": mport, "workerPort": wport,
                "dataDir": f"{nd}/data", "runtimeDir": f"{nd}/run", "mountRoot": f"{nd}/mnt"}

    def write_yaml(self):
        """(Re)writes the cluster YAML; start() calls it, so a subclass may add to the file."""
        self.c.write_yaml(3)

    # -- lifecycle --

    def start(self, fuse=True):
        try:
            self.nginx.start()
            self.write_yaml()
            self.c.start()
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
        return self.c.request_any(method, path, body=body, timeout=timeout)

    def wait(self, cond, timeout, what):
        self.c.wait(cond, timeout, what)

    def leader(self):
        return self.c.serving_leader()

    def sync(self):
        self.c.sync("hbase", files=len(self.files))

    def worker_of(self, node):
        return self.workers[self.names.index(node)]

    def store_bytes(self):
        return nginx_bytes_sent(os.path.join(self.nginx.workdir, "access.log"))

    def stat(self, path):
        return self.c.stat(path, "hbase")
