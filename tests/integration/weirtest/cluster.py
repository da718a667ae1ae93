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
import signal
import subprocess
import time
import urllib.parse

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


class Master:
    def __init__(self, cluster, index, name, address):
        self.cluster = cluster
        self.index = index
        self.name = name
        self.address = address
        self.api = f"{address}:{cluster.master_port}"
        self.proc = None
        self.log_path = os.path.join(cluster.dir, f"{name}.log")
        self.data_dir = os.path.join(cluster.dir, name)

    def start(self, extra_args=()):
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} already running"
        args = [self.cluster.binary, "--config", self.cluster.yaml_path, "--node", self.name]
        if self.cluster.snapshot_threshold:
            args += ["--snapshot-threshold", str(self.cluster.snapshot_threshold)]
        args += list(extra_args)
        log = open(self.log_path, "ab")
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.setdefault("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/weir-test-bus")
        env.update(self.cluster.env)
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        log.close()
        return self

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.running:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self):
        """SIGKILL, as a crash would."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def stop(self, timeout=10):
        """SIGTERM and wait; SIGKILL if it does not exit. Returns the exit status."""
        if self.proc is None:
            return None
        if self.running:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.proc.returncode

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

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


class MasterCluster:
    """N masters (n may be 1) described by one YAML in DIR."""

    def __init__(self, dir, build_dir, n=3, first_address=1, token=True, snapshot_threshold=None,
                 datasets=("demo",), master_replicas=None, master_port=MASTER_PORT,
                 raft_port=RAFT_PORT, env=None, extra_cluster_spec="", raft_secret_file=None):
        self.dir = str(dir)
        os.makedirs(self.dir, exist_ok=True)
        self.binary = os.path.join(build_dir, "services/master/weir-master")
        self.weirctl_path = os.path.join(build_dir, "services/ctl/weirctl")
        self.master_port = master_port
        self.raft_port = raft_port
        self.token = TOKEN if token else None
        self.snapshot_threshold = snapshot_threshold
        self.env = dict(env or {})
        self.masters = [Master(self, i, f"node{i + 1}", f"127.0.1.{first_address + i}")
                        for i in range(n)]
        self.yaml_path = os.path.join(self.dir, "cluster.yaml")
        self.datasets = list(datasets) or ["demo"]  # a runtime needs a dataset
        self.raft_secret_file = raft_secret_file
        self.write_yaml(master_replicas if master_replicas is not None else n,
                        extra_cluster_spec)

    def write_yaml(self, master_replicas, extra_cluster_spec=""):
        lines = ["apiVersion: weir.io/v1", "kind: Cluster", "metadata: {name: test}", "spec:"]
        if self.token:
            token_file = os.path.join(self.dir, "token")
            with open(token_file, "w") as f:
                f.write(self.token + "\n")
            lines.append(f"  tokenFile: {token_file}")
        secret = f", secretFile: {self.raft_secret_file}" if self.raft_secret_file else ""
        lines.append(f"  raft: {{electionTimeout: 300ms, heartbeatTimeout: 50ms{secret}}}")
        if extra_cluster_spec:
            lines.append(extra_cluster_spec)
        lines.append("  nodes:")
        for m in self.masters:
            lines.append(f"    - {{name: {m.name}, address: {m.address}, raftPort: {self.raft_port}, "
                         f"masterPort: {self.master_port}, dataDir: {m.data_dir}}}")
        for ds in self.datasets:
            lines += ["---", "apiVersion: data.fluid.io/v1alpha1", "kind: Dataset",
                      f"metadata: {{name: {ds}}}", "spec:", "  mounts:",
                      f"    - {{mountPoint: 'file:///nonexistent/{ds}', name: {ds}}}",
                      "---", "apiVersion: data.fluid.io/v1alpha1", "kind: AlluxioRuntime",
                      f"metadata: {{name: {ds}}}", "spec:", "  replicas: 1",
                      f"  master: {{replicas: {master_replicas}}}",
                      "  tieredstore:", "    levels:",
                      "      - {mediumtype: MEM, path: /dev/shm, quota: 64Mi, high: '0.9', low: '0.5'}"]
        with open(self.yaml_path, "w") as f:
            f.write("\n".join(lines) + "\n")

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

    def weirctl(self, *args, timeout=15):
        return subprocess.run([self.weirctl_path, "--config", self.yaml_path, *args],
                              capture_output=True, text=True, timeout=timeout)
