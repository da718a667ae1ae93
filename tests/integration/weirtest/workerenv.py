"""Worker test environment: an nginx store that counts the bytes it sends, a stand-in master,
and weir-worker processes. Everything binds 127.0.2.x (the workers' range) and lives in a
private directory; every class is a context manager so that a failing test still stops it.

FakeMaster is a minimal stand-in written in Python (http.server), not weir-master: it answers
the calls a worker makes (GET /v1/files/ID, POST /v1/workers, heartbeats, and the ls/stat calls
of a load) from a table the test fills, so that the worker can be tested before the master's
metadata sync exists. Tests that use it say so in their names and docstrings.
"""

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from weirtest.cluster import MasterCluster
from weirtest.config import Dataset, write_cluster_yaml
from weirtest.daemon import Daemon, weir_env
from weirtest.fakeserver import FakeServer, JsonHandler
from weirtest.net import free_port, wait_listening  # noqa: F401 (re-exported)
from weirtest.stores import Nginx

WORKER_NET = "127.0.2."






class StoreNginx(Nginx):
    """nginx serving ROOT under /data/ with a byte-counting access log (requests(),
    bytes_sent(), range_bytes(), wait_quiet(), version_of()); optional per-connection rate limit
    (bytes/s), as a remote store that throttles each connection."""

    def __init__(self, root, workdir, address=WORKER_NET + "10", limit_rate=None):
        super().__init__(root, address, workdir, prefix="/data/", limit_rate=limit_rate,
                         log_format="bytes", workers=2, error_level="warn")


class Throttle(Daemon):
    """weirtest.throttle in front of a StoreNginx: a strict per-connection rate limit. Its url
    serves the same tree; version_of/requests still come from the nginx behind it."""

    what = "throttle proxy"

    def __init__(self, store, rate, address=WORKER_NET + "111"):
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        super().__init__(os.path.join(store.workdir, "throttle.log"), address, free_port(address),
                         cwd=here)
        self.store = store
        self.rate = rate

    @property
    def url(self):
        return f"http://{self.address}:{self.port}/data/"

    def peak_connections(self):
        """The most connections that were open through the proxy at once."""
        peaks = re.findall(r"^peak connections (\d+)$", self.log(), re.M)
        return int(peaks[-1]) if peaks else 0

    def command(self):
        return [sys.executable, "-m", "weirtest.throttle", "--listen",
                f"{self.address}:{self.port}", "--upstream",
                f"{self.store.address}:{self.store.port}", "--rate", str(self.rate)]


# The cluster epoch FakeMaster gives every file (block ids start with it, docs/api.md).
EPOCH = "00000000000000e1"


class FakeMaster(FakeServer):
    """A stand-in for weir-master (see the module docstring). FILES maps file id to
    {"dataset","path","size","mtime","etag","version","block_size"}."""

    def __init__(self, address=WORKER_NET + "2", port=None):
        super().__init__(address, port or free_port(address))
        self.files = {}
        self.lock = threading.Lock()
        self.registrations = []  # bodies of POST /v1/workers
        self.reg_marks = []      # len(heartbeats) when each registration arrived
        self.heartbeats = []     # bodies of heartbeats
        self.known = set()       # registered worker nodes
        self.file_requests = 0
        self.stopped = False

    def add_file(self, file_id, dataset, path, size, mtime, etag, block_size, version=1):
        with self.lock:
            self.files[file_id] = {"epoch": EPOCH, "file_id": file_id, "dataset": dataset,
                                   "path": path,
                                   "size": size, "mtime": mtime, "etag": etag,
                                   "version": version, "block_size": block_size,
                                   "name": path.rsplit("/", 1)[-1], "type": "file"}

    def forget_workers(self):
        """Acts like a new leader that lost the soft state: heartbeats get 404."""
        with self.lock:
            self.known.clear()

    def handler(self):
        master = self

        class H(JsonHandler):
            def gone(self):
                # A stopped master drops kept-alive connections too, as a dead process would.
                if master.stopped:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return True
                return False

            def do_GET(self):
                if self.gone():
                    return
                u = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(u.query)
                m = re.fullmatch(r"/v1/files/(\d+)", u.path)
                if m:
                    with master.lock:
                        master.file_requests += 1
                        f = master.files.get(int(m.group(1)))
                    return self.reply(200, f) if f else self.reply(404, {"error": "no file"})
                m = re.fullmatch(r"/v1/datasets/([^/]+)/(ls|stat)", u.path)
                if m:
                    path = q.get("path", ["/"])[0].rstrip("/") or "/"
                    with master.lock:
                        files = [f for f in master.files.values() if f["dataset"] == m.group(1)]
                    if m.group(2) == "stat":
                        for f in files:
                            if f["path"] == path:
                                return self.reply(200, f)
                        if any(f["path"].startswith(path + "/") for f in files):
                            return self.reply(200, {"name": path.rsplit("/", 1)[-1],
                                                    "type": "dir"})
                        return self.reply(404, {"error": "no such path"})
                    entries = {}
                    prefix = "" if path == "/" else path
                    for f in files:
                        if not f["path"].startswith(prefix + "/"):
                            continue
                        rest = f["path"][len(prefix) + 1:]
                        if "/" in rest:
                            name = rest.split("/", 1)[0]
                            entries[name] = {"name": name, "type": "dir"}
                        else:
                            entries[rest] = f
                    return self.reply(200, {"path": path, "entries": list(entries.values())})
                if u.path == "/healthz":
                    return self.reply(200, {"status": "ok"})
                self.reply(404, {"error": "not found"})

            def do_POST(self):
                if self.gone():
                    return
                body = self.body()
                if self.path == "/v1/workers":
                    with master.lock:
                        master.registrations.append(body)
                        master.reg_marks.append(len(master.heartbeats))
                        master.known.add(body.get("node"))
                    return self.reply(200, {"registered": True})
                m = re.fullmatch(r"/v1/workers/([^/]+)/heartbeat", self.path)
                if m:
                    with master.lock:
                        if m.group(1) not in master.known:
                            return self.reply(404, {"error": "unknown worker"})
                        master.heartbeats.append(body)
                    return self.reply(200, {})
                self.reply(404, {"error": "not found"})

        return H

    def stop(self):
        self.stopped = True
        super().stop()

    def blocks_known(self):
        """The block ids the master knows for the (one) worker: its last full report plus the
        deltas of the heartbeats since."""
        with self.lock:
            if not self.registrations:
                return set()
            blocks = set(self.registrations[-1]["blocks"])
            for hb in self.heartbeats[self.reg_marks[-1]:]:
                blocks |= set(hb.get("added", []))
                blocks -= set(hb.get("removed", []))
            return blocks


def write_config(path, *, master_nodes, worker_nodes, store_url, tiers, block_size="4Mi",
                 dataset="ds", mount="data", token_file=None):
    """A cluster YAML. MASTER_NODES: [(name, address, port)]; WORKER_NODES: [(name, address,
    port, data_dir, runtime_dir)]; TIERS: [(medium, path, quota, high, low)]."""
    nodes = [{"name": name, "address": addr, "roles": ["master"], "masterPort": port}
             for name, addr, port in master_nodes]
    nodes += [worker_node(*w) for w in worker_nodes]
    write_cluster_yaml(path, name="wtest", token_file=token_file, nodes=nodes, datasets=[
        Dataset(dataset, mounts=[(mount, store_url)], block_size=block_size, tiers=tiers,
                replicas=len(worker_nodes), master_replicas=len(master_nodes))])


def worker_node(name, address, port, data_dir, runtime_dir):
    """The YAML node of a worker-only node."""
    return {"name": name, "address": address, "roles": ["worker"], "workerPort": port,
            "dataDir": data_dir, "runtimeDir": runtime_dir}


class Worker(Daemon):
    """A weir-worker process. Stops with SIGTERM (stop) or SIGKILL (kill)."""

    what = "weir-worker"
    stop_timeout = 15.0
    log_level = "info"

    def __init__(self, binary, config, node, address, port, workdir, env=None):
        os.makedirs(workdir, exist_ok=True)
        super().__init__(os.path.join(workdir, f"worker-{node}.log"), address, port)
        self.binary = binary
        self.config = config
        self.node = node
        self.workdir = workdir
        self.env = env
        self.wrap = []  # a command the worker runs under (e.g. unshare for a private tmpfs)

    def command(self):
        return self.wrap + [self.binary, "--config", self.config, "--node", self.node]

    def environment(self):
        return weir_env(self.env, log_level=self.log_level)

    @property
    def url(self):
        return f"http://{self.address}:{self.port}"

    def auth_headers(self):
        """The bearer token of the YAML's tokenFile, when it names one (every call but /healthz
        needs it then)."""
        with open(self.config) as f:
            for line in f:
                key, _, value = line.strip().partition(":")
                if key == "tokenFile" and value.strip():
                    with open(value.strip()) as t:
                        return {"Authorization": f"Bearer {t.read().strip()}"}
        return {}

    def get(self, path, headers=None, timeout=60):
        """(status, headers, body) of GET PATH."""
        req = urllib.request.Request(self.url + path, headers={**self.auth_headers(),
                                                               **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def post(self, path, obj, timeout=300):
        data = json.dumps(obj).encode()
        req = urllib.request.Request(self.url + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json",
                                              **self.auth_headers()})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def status(self):
        return json.loads(self.get("/v1/status")[2])

    def metrics(self):
        out = {}
        for line in self.get("/metrics")[2].decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out


WORKER_ADDR_REAL = WORKER_NET + "4"


class RealMasters(MasterCluster):
    """Real weir-masters m1.. on 127.0.2.FIRST.. with the worker node w1 (and EXTRA_WORKERS) and
    a dataset on STORE_URL, all in one YAML: the cluster harness with the workers' options. For
    the tests that need the real metadata sync. request() here is request_any(): the first
    master that answers, as a (status, JSON) pair."""

    TOKEN = "weir-worker-test-token"

    def __init__(self, dir, build_dir, store_url, *, n=3, worker_port, worker_dirs, tiers,
                 block_size="4Mi", first=21, dataset="ds", mount="data", extra_workers=()):
        """EXTRA_WORKERS: [(name, address, port, data_dir, runtime_dir)] besides w1."""
        master_port = free_port(WORKER_NET + str(first))
        workers = [("w1", WORKER_ADDR_REAL, worker_port, *worker_dirs), *extra_workers]
        super().__init__(
            dir, build_dir, token=self.TOKEN, name="wreal", master_port=master_port,
            raft_port=free_port(WORKER_NET + str(first)),
            addresses=[f"{WORKER_NET}{first + i}" for i in range(n)],
            node_names=[f"m{i + 1}" for i in range(n)], node_keys=lambda m: {"roles": ["master"]},
            extra_nodes=[worker_node(*w) for w in workers],
            datasets=[Dataset(dataset, mounts=[(mount, store_url)], block_size=block_size,
                              tiers=tiers, replicas=len(workers), master_replicas=n)])
        self.dataset = dataset

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def request(self, method, path, body=None, timeout=5.0):
        return self.request_any(method, path, body=body, timeout=timeout)

    def leader(self):
        return self.serving_leader()

    def weirctl(self, *args, timeout=120):
        return super().weirctl(*args, timeout=timeout)

