"""Issue 14's HTTP rows replayed as an attacker on the same network would, with plain sockets:
GETs with no token on the master and the worker, and 1,100 connections that each send one
header line every 4 s. One node (master + worker) on 127.0.6.1, an nginx store on 127.0.6.4;
the attack comes from 127.0.6.10-29 (20 addresses, so that the per-client limit alone cannot
stop it and the total limit with its reserve is exercised), the health probes from 127.0.6.1.
"""

import os
import random
import socket
import subprocess
import threading
import time

import pytest

from weirtest.cluster import Master, http_request
from weirtest.config import Dataset, write_cluster_yaml
from weirtest.fusecluster import WorkerProc
from weirtest.fusemount import nginx_bytes_sent
from weirtest.net import free_port, wait_listening, wait_until
from weirtest.stores import Nginx, make_world_readable

TOKEN = "attack-test-token"
READ_TOKEN = "attack-test-read-token"
NODE = "127.0.6.1"
STORE = "127.0.6.4"
BLOCK = 1 << 20


class OneNode:
    """weir-master and weir-worker on one node, nginx as the store; stop() is always safe."""

    def __init__(self, dir, build_dir, extra_spec=()):
        self.dir = str(dir)
        self.binary = os.path.join(build_dir, "services/master/weir-master")
        self.wbinary = os.path.join(build_dir, "services/worker/weir-worker")
        self.snapshot_threshold = None
        self.env = {}
        self.store_root = os.path.join(self.dir, "store")
        os.makedirs(os.path.join(self.store_root, "data"))
        rnd = random.Random(14)
        self.files = {}
        for i in range(4):
            name = f"f{i}.bin"
            data = rnd.randbytes(3 * BLOCK + 1000 * i)
            with open(os.path.join(self.store_root, "data", name), "wb") as f:
                f.write(data)
            self.files[name] = data
        make_world_readable(self.store_root)
        self.nginx = Nginx(self.store_root, STORE, os.path.join(self.dir, "nginx"))
        # An API bound to every address needs its port free on every address, not only NODE's.
        any_address = any("bindAddress: 0.0.0.0" in line for line in extra_spec)
        self.raft_port, self.master_port, self.worker_port = (
            free_port("0.0.0.0" if any_address else NODE) for _ in range(3))
        self.yaml_path = os.path.join(self.dir, "cluster.yaml")
        self.extra_spec = list(extra_spec)
        self.master = None
        self.worker = None

    def write_yaml(self):
        for name, tok in (("token", TOKEN), ("read-token", READ_TOKEN)):
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(tok + "\n")
        write_cluster_yaml(
            self.yaml_path, name="attack", token_file="token",
            cluster_extra="\n".join(self.extra_spec),
            nodes=[{"name": "node1", "address": NODE, "raftPort": self.raft_port,
                    "masterPort": self.master_port, "workerPort": self.worker_port,
                    "dataDir": f"{self.dir}/data", "runtimeDir": f"{self.dir}/run",
                    "mountRoot": f"{self.dir}/mnt", "roles": ["master", "worker"]}],
            datasets=[Dataset("ds", mounts=[("data", f"{self.nginx.url}data/")], block_size=BLOCK,
                              tiers=[("MEM", f"{self.dir}/shm", "256Mi", "0.95", "0.7")])])

    def master_url(self, path):
        return f"http://{NODE}:{self.master_port}{path}"

    def worker_url(self, path):
        return f"http://{NODE}:{self.worker_port}{path}"

    def start(self):
        try:
            self.nginx.start()
            self.write_yaml()
            self.master = Master(self, 0, "node1", NODE)
            self.master.api = f"{NODE}:{self.master_port}"
            self.master.log_path = os.path.join(self.dir, "master.log")
            self.master.start()
            self.wait(lambda: (self.master.status() or {}).get("serving"), 30, "a serving master")
            self.wait(lambda: http_request("POST", self.master_url("/v1/datasets/ds/sync"),
                                           body={}, token=TOKEN)[0] in (202, 409), 30, "a sync")
            self.wait(lambda: http_request("GET", self.master_url("/v1/datasets/ds"),
                                           token=TOKEN)[1].get("total_files") == 4, 30,
                      "a synced dataset")
            self.worker = WorkerProc(self.wbinary, self.yaml_path, "node1", self.dir).start()
            wait_listening(NODE, self.worker_port, self.worker.proc, what="weir-worker")
            self.wait(lambda: any(w["alive"] for w in http_request(
                "GET", self.master_url("/v1/workers"), token=TOKEN)[1]["workers"]), 30,
                "a registered worker")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        if self.worker:
            self.worker.kill()
        if self.master:
            self.master.kill()
        self.nginx.stop()

    def wait(self, cond, timeout, what):
        wait_until(cond, timeout, what,
                   lambda: self.master.log()[-3000:] if self.master else "")

    def file_id(self, name):
        code, body, _ = http_request("GET", self.master_url(f"/v1/datasets/ds/stat?path=/data/{name}"),
                                     token=TOKEN)
        assert code == 200, body
        return body["file_id"], body["version"]

    def block_prefix(self, name):
        """"EPOCH-FILE-VERSION" of NAME: block ids append "-INDEX" (docs/api.md)."""
        code, body, _ = http_request("GET", self.master_url(f"/v1/datasets/ds/stat?path=/data/{name}"),
                                     token=TOKEN)
        assert code == 200, body
        return f"{body['epoch']}-{body['file_id']}-{body['version']}"

    def store_requests(self):
        with open(os.path.join(self.nginx.workdir, "access.log")) as f:
            return sum(1 for line in f if "/data/f" in line)


@pytest.fixture
def node(tmp_path, build_dir):
    n = OneNode(tmp_path, build_dir, extra_spec=["  api: {readTokenFile: read-token}"])
    try:
        yield n.start()
    finally:
        n.stop()


def raw_get(url_host, port, target, headers=()):
    """A GET over a plain socket; returns the status code (0 when the connection closed)."""
    with socket.create_connection((url_host, port), timeout=10) as s:
        req = f"GET {target} HTTP/1.1\r\nHost: {url_host}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers) + "Connection: close\r\n\r\n"
        s.sendall(req.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data.startswith(b"HTTP/1."):
        return 0
    return int(data.split(b" ", 2)[1])


MASTER_READS = ["/v1/datasets", "/v1/datasets/ds", "/v1/datasets/ds/ls?path=/data",
                "/v1/datasets/ds/stat?path=/data/f0.bin", "/v1/datasets/ds/labels",
                "/v1/workers", "/v1/fuses", "/v1/masters", "/metrics"]


def test_reads_without_token_are_refused(node):
    fid, ver = node.file_id("f0.bin")
    reads = MASTER_READS + [f"/v1/files/{fid}", f"/v1/blocks?file={fid}&version={ver}"]
    for path in reads:
        assert raw_get(NODE, node.master_port, path) == 401, path
        assert raw_get(NODE, node.master_port, path,
                       [("Authorization", "Bearer wrong")]) == 401, path
        assert raw_get(NODE, node.master_port, path,
                       [("Authorization", f"Bearer {READ_TOKEN}")]) == 200, path
        assert raw_get(NODE, node.master_port, path,
                       [("Authorization", f"Bearer {TOKEN}")]) == 200, path
    # what stays public: liveness, and this master's role for weirctl status and probes
    assert raw_get(NODE, node.master_port, "/healthz") == 200
    assert raw_get(NODE, node.master_port, "/v1/status") == 200
    assert raw_get(NODE, node.worker_port, "/healthz") == 200
    # the read token does not write
    code, _, _ = http_request("PUT", node.master_url("/v1/datasets/ds/labels/k"),
                              body={"value": "v"}, token=READ_TOKEN)
    assert code == 401
    for path in ("/v1/status", "/metrics"):
        assert raw_get(NODE, node.worker_port, path) == 401, path
        assert raw_get(NODE, node.worker_port, path,
                       [("Authorization", f"Bearer {READ_TOKEN}")]) == 200, path


def test_cold_block_without_token_never_reaches_the_store(node):
    prefix = node.block_prefix("f1.bin")
    before = node.store_requests()
    for idx in range(3):
        bid = f"{prefix}-{idx}"
        assert raw_get(NODE, node.worker_port, f"/v1/blocks/{bid}") == 401
        assert raw_get(NODE, node.worker_port, f"/v1/blocks/{bid}",
                       [("Authorization", "Bearer nope")]) == 401
        assert raw_get(NODE, node.worker_port, f"/v1/blocks/{bid}",
                       [("Range", "bytes=0-9")]) == 401
    time.sleep(1)
    assert node.store_requests() == before, "an unauthenticated GET made the worker fetch"
    # with the read token the same block is served, from the store once
    code, body, hdrs = http_request("GET", node.worker_url(f"/v1/blocks/{prefix}-0"),
                                    token=READ_TOKEN, timeout=10)
    assert code == 200 and hdrs.get("x-weir-cache") == "miss"
    assert node.store_requests() > before


class SlowHeaders:
    """N connections from 20 source addresses, each sending one header line every PERIOD s and
    reconnecting when the server closes it (as a determined attacker would)."""

    def __init__(self, port, n=1100, period=4.0):
        self.port, self.n, self.period = port, n, period
        self.stop_ev = threading.Event()
        self.threads = []
        self.opened = 0
        self.closed_by_server = 0
        self.lock = threading.Lock()

    def _conn(self, i):
        src = f"127.0.6.{10 + i % 20}"
        s = socket.socket()
        s.settimeout(5)
        s.bind((src, 0))
        s.connect((NODE, self.port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        with self.lock:
            self.opened += 1
        return s

    def _run(self, ids):
        socks = {}
        line = 0
        while not self.stop_ev.is_set():
            for i in ids:
                try:
                    if i not in socks:
                        socks[i] = self._conn(i)
                    else:
                        socks[i].sendall(f"X-Slow-{line}: {'a' * 20}\r\n".encode())
                except OSError:
                    if i in socks:
                        socks.pop(i).close()
                        with self.lock:
                            self.closed_by_server += 1
            line += 1
            self.stop_ev.wait(self.period)
        for s in socks.values():
            s.close()

    def __enter__(self):
        ids = list(range(self.n))
        for k in range(20):
            t = threading.Thread(target=self._run, args=(ids[k::20],), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=30)


def healthz_seconds(port, timeout=10.0):
    t0 = time.monotonic()
    try:
        code = raw_get_timeout(NODE, port, "/healthz", timeout)
    except OSError:
        return None
    return (time.monotonic() - t0) if code == 200 else None


def raw_get_timeout(host, port, target, timeout):
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.") else 0


def test_slow_headers_do_not_stall_healthz(node):
    bound = 5.0
    samples = {"master": [], "worker": []}
    with SlowHeaders(node.master_port), SlowHeaders(node.worker_port) as atk:
        # two request deadlines (10 s): connections cut by the deadline come back and are cut
        # again while /healthz is probed every half second
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline:
            for name, port in (("master", node.master_port), ("worker", node.worker_port)):
                samples[name].append(healthz_seconds(port))
            time.sleep(0.5)
        opened = atk.opened
    for name, s in samples.items():
        bad = [x for x in s if x is None or x > bound]
        assert not bad, f"{name}: /healthz failed or took > {bound}s in {len(bad)} of {len(s)}" \
                        f" probes during the attack: {s}"
    assert opened >= 1100, f"the attack opened only {opened} connections"
    for name, s in samples.items():
        s = sorted(s)
        print(f"{name}: /healthz during the attack: {len(s)} probes, median {s[len(s) // 2]:.3f}s,"
              f" max {s[-1]:.3f}s; attack connections opened {opened}")
    # the daemons still serve real requests afterwards, and it was their limits that held
    assert http_request("GET", node.master_url("/v1/datasets"), token=TOKEN)[0] == 200
    assert node.master.running and node.worker.running
    for url in (node.master_url("/metrics"), node.worker_url("/metrics")):
        code, text, _ = http_request("GET", url, token=TOKEN)
        assert code == 200
        closed = sum(float(line.split()[-1]) for line in text.splitlines()
                     if line.startswith("weir_http_connections_closed_total{"))
        print(f"{url}: connections closed by the limits: {closed:.0f}")
        assert closed > 0, text


def _connects(address, port):
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False


def test_bind_address(tmp_path, build_dir):
    """api.bindAddress: by default each API listens on its node's address only; `0.0.0.0` makes
    it answer on every address of the host, while clients still use the node's address."""
    other = "127.0.6.50"
    n = OneNode(tmp_path / "node", build_dir)
    try:
        n.start()
        assert raw_get(NODE, n.master_port, "/healthz") == 200
        assert not _connects(other, n.master_port) and not _connects(other, n.worker_port)
    finally:
        n.stop()
    n = OneNode(tmp_path / "any", build_dir, extra_spec=["  api: {bindAddress: 0.0.0.0}"])
    try:
        n.start()  # the worker registers with the master through the node's address
        for port in (n.master_port, n.worker_port):
            assert raw_get(other, port, "/healthz") == 200
            assert raw_get(other, port, "/metrics") == 401  # the token still applies
    finally:
        n.stop()
