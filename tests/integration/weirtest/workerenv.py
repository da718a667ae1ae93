"""Worker test environment: an nginx store that counts the bytes it sends, a stand-in master,
and weir-worker processes. Everything binds 127.0.2.x (the workers' range) and lives in a
private directory; every class is a context manager so that a failing test still stops it.

FakeMaster is a minimal stand-in written in Python (http.server), not weir-master: it answers
the calls a worker makes (GET /v1/files/ID, POST /v1/workers, heartbeats, and the ls/stat calls
of a load) from a table the test fills, so that the worker can be tested before the master's
metadata sync exists. Tests that use it say so in their names and docstrings.
"""

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from weirtest.net import free_port, wait_listening  # noqa: F401 (re-exported)

WORKER_NET = "127.0.2."






class StoreNginx:
    """nginx serving ROOT under /data/ with byte-counting access log; optional per-connection
    rate limit (bytes/s), as a remote store that throttles each connection."""

    def __init__(self, root, workdir, address=WORKER_NET + "10", limit_rate=None):
        self.root = os.path.abspath(root)
        self.workdir = workdir
        self.address = address
        self.limit_rate = limit_rate
        self.port = free_port(address)
        self.proc = None
        os.makedirs(workdir, exist_ok=True)

    @property
    def url(self):
        return f"http://{self.address}:{self.port}/data/"

    def start(self):
        conf = os.path.join(self.workdir, "nginx.conf")
        limit = f"limit_rate {self.limit_rate};" if self.limit_rate else ""
        with open(conf, "w") as f:
            f.write(f"""
daemon off;
master_process on;
worker_processes 2;
user root;
pid {self.workdir}/nginx.pid;
error_log {self.workdir}/error.log warn;
events {{ worker_connections 512; }}
http {{
    log_format bytes '$request_method "$uri" $status $body_bytes_sent "$http_range" "$http_if_match"';
    access_log {self.workdir}/access.log bytes;
    client_body_temp_path {self.workdir}/body;
    proxy_temp_path {self.workdir}/proxy;
    fastcgi_temp_path {self.workdir}/fastcgi;
    uwsgi_temp_path {self.workdir}/uwsgi;
    scgi_temp_path {self.workdir}/scgi;
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 100000;
    server {{
        listen {self.address}:{self.port};
        location /data/ {{ alias {self.root}/; autoindex on; {limit} }}
    }}
}}
""")
        self.log_path = os.path.join(self.workdir, "access.log")
        with open(os.path.join(self.workdir, "stdout.log"), "ab") as out:
            self.proc = subprocess.Popen(["nginx", "-p", self.workdir, "-c", conf], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        try:
            wait_listening(self.address, self.port, self.proc, what="nginx")
        except Exception:
            self.stop()
            raise
        return self

    def stop(self):
        if not self.proc:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def requests(self):
        """[(method, uri, status, bytes, range, if_match)] from the access log so far. nginx
        writes a line when a response ends, so wait_quiet() first when fills may be running."""
        out = []
        if not os.path.exists(self.log_path):
            return out
        pat = re.compile(r'^(\S+) "([^"]*)" (\d+) (\d+) "([^"]*)" "([^"]*)"$')
        with open(self.log_path) as f:
            for line in f:
                m = pat.match(line.strip())
                if m:
                    out.append((m.group(1), m.group(2), int(m.group(3)), int(m.group(4)),
                                m.group(5), m.group(6)))
        return out

    def bytes_sent(self, uri_suffix=None):
        return sum(r[3] for r in self.requests() if uri_suffix is None or r[1].endswith(uri_suffix))

    def range_bytes(self):
        """Bytes sent for ranged GETs: block fills (listings and HEADs of a sync excluded)."""
        return sum(r[3] for r in self.requests() if r[0] == "GET" and r[4] not in ("", "-"))

    def wait_quiet(self, settle=0.3, timeout=30):
        """Waits until the access log stops growing for SETTLE seconds."""
        deadline = time.monotonic() + timeout
        last = -1
        stable_since = time.monotonic()
        while time.monotonic() < deadline:
            size = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
            if size != last:
                last = size
                stable_since = time.monotonic()
            elif time.monotonic() - stable_since >= settle:
                return
            time.sleep(0.05)

    def version_of(self, rel):
        """(size, mtime, etag) of /data/REL as the store reports them (HEAD)."""
        req = urllib.request.Request(self.url + urllib.parse.quote(rel), method="HEAD")
        with urllib.request.urlopen(req, timeout=5) as r:
            size = int(r.headers["Content-Length"])
            etag = r.headers.get("ETag")
            lm = r.headers.get("Last-Modified")
        import email.utils
        mtime = int(email.utils.parsedate_to_datetime(lm).timestamp()) if lm else 0
        return size, mtime, etag


class Throttle:
    """weirtest.throttle in front of a StoreNginx: a strict per-connection rate limit. Its url
    serves the same tree; version_of/requests still come from the nginx behind it."""

    def __init__(self, store, rate, address=WORKER_NET + "111"):
        self.store = store
        self.rate = rate
        self.address = address
        self.port = free_port(address)
        self.proc = None

    @property
    def url(self):
        return f"http://{self.address}:{self.port}/data/"

    def start(self):
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "weirtest.throttle", "--listen",
             f"{self.address}:{self.port}", "--upstream",
             f"{self.store.address}:{self.store.port}", "--rate", str(self.rate)],
            cwd=here, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_listening(self.address, self.port, self.proc, what="throttle proxy")
        except Exception:
            self.stop()
            raise
        return self

    def stop(self):
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
            self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class FakeMaster:
    """A stand-in for weir-master (see the module docstring). FILES maps file id to
    {"dataset","path","size","mtime","etag","version","block_size"}."""

    def __init__(self, address=WORKER_NET + "2", port=None):
        self.address = address
        self.port = port or free_port(address)
        self.files = {}
        self.lock = threading.Lock()
        self.registrations = []  # bodies of POST /v1/workers
        self.reg_marks = []      # len(heartbeats) when each registration arrived
        self.heartbeats = []     # bodies of heartbeats
        self.known = set()       # registered worker nodes
        self.file_requests = 0
        self.server = None
        self.thread = None
        self.stopped = False

    def add_file(self, file_id, dataset, path, size, mtime, etag, block_size, version=1):
        with self.lock:
            self.files[file_id] = {"file_id": file_id, "dataset": dataset, "path": path,
                                   "size": size, "mtime": mtime, "etag": etag,
                                   "version": version, "block_size": block_size,
                                   "name": path.rsplit("/", 1)[-1], "type": "file"}

    def forget_workers(self):
        """Acts like a new leader that lost the soft state: heartbeats get 404."""
        with self.lock:
            self.known.clear()

    def _handler(self):
        master = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"{}")

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

    def start(self):
        # A stopped master drops connections on purpose: no tracebacks for that.
        cls = type("Server", (http.server.ThreadingHTTPServer,),
                   {"request_queue_size": 128, "handle_error": lambda self, req, addr: None})
        self.server = cls((self.address, self.port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stopped = True
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

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
    lines = ["apiVersion: weir.io/v1", "kind: Cluster", "metadata: {name: wtest}", "spec:"]
    if token_file:
        lines.append(f"  tokenFile: {token_file}")
    lines.append("  nodes:")
    for name, addr, port in master_nodes:
        lines += [f"    - name: {name}", f"      address: {addr}", "      roles: [master]",
                  f"      masterPort: {port}"]
    for name, addr, port, data, run in worker_nodes:
        lines += [f"    - name: {name}", f"      address: {addr}", "      roles: [worker]",
                  f"      workerPort: {port}", f"      dataDir: {data}", f"      runtimeDir: {run}"]
    lines += ["---", "apiVersion: data.fluid.io/v1alpha1", "kind: Dataset",
              f"metadata: {{name: {dataset}}}", "spec:", f"  blockSize: {block_size}",
              "  mounts:", f"    - mountPoint: {store_url}", f"      name: {mount}",
              "---", "apiVersion: data.fluid.io/v1alpha1", "kind: AlluxioRuntime",
              f"metadata: {{name: {dataset}}}", "spec:", f"  replicas: {len(worker_nodes)}",
              f"  master: {{replicas: {len(master_nodes)}}}", "  tieredstore:", "    levels:"]
    for medium, tpath, quota, high, low in tiers:
        lines.append(f"      - {{mediumtype: {medium}, path: {tpath}, quota: {quota}, "
                     f"high: \"{high}\", low: \"{low}\"}}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


class Worker:
    """A weir-worker process. Stops with SIGTERM (stop) or SIGKILL (kill)."""

    def __init__(self, binary, config, node, address, port, workdir, env=None):
        self.binary = binary
        self.config = config
        self.node = node
        self.address = address
        self.port = port
        self.workdir = workdir
        self.env = env
        self.proc = None
        self.log_path = os.path.join(workdir, f"worker-{node}.log")
        os.makedirs(workdir, exist_ok=True)

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

    def start(self, wait=True):
        env = dict(os.environ)
        env.setdefault("WEIR_LOG_LEVEL", "info")
        # No system bus in tests unless one is given: keep the bus lookup from hanging.
        env.setdefault("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/weir-test-bus")
        env.pop("NOTIFY_SOCKET", None)
        env.update(self.env or {})
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([self.binary, "--config", self.config, "--node",
                                          self.node], stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True)
        if wait:
            try:
                wait_listening(self.address, self.port, self.proc, what="weir-worker")
            except Exception:
                self.kill()
                raise
        return self

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self, timeout=15):
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill(self):
        if self.proc:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

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


class RealMasters:
    """Real weir-master processes (weirtest.cluster.Master) on 127.0.2.x with a worker node and
    a dataset on STORE_URL, all in one YAML. For the tests that need the real metadata sync."""

    TOKEN = "weir-worker-test-token"

    def __init__(self, dir, build_dir, store_url, *, n=3, worker_port, worker_dirs, tiers,
                 block_size="4Mi", first=21, dataset="ds", mount="data", extra_workers=()):
        """EXTRA_WORKERS: [(name, address, port, data_dir, runtime_dir)] besides w1."""
        from weirtest.cluster import Master

        self.dir = str(dir)
        os.makedirs(self.dir, exist_ok=True)
        self.binary = os.path.join(build_dir, "services/master/weir-master")
        self.weirctl_path = os.path.join(build_dir, "services/ctl/weirctl")
        self.master_port = free_port(WORKER_NET + str(first))
        self.raft_port = free_port(WORKER_NET + str(first))
        self.snapshot_threshold = None
        self.env = {}
        self.dataset = dataset
        self.masters = [Master(self, i, f"m{i + 1}", f"{WORKER_NET}{first + i}") for i in range(n)]
        self.yaml_path = os.path.join(self.dir, "cluster.yaml")
        token_file = os.path.join(self.dir, "token")
        with open(token_file, "w") as f:
            f.write(self.TOKEN + "\n")
        lines = ["apiVersion: weir.io/v1", "kind: Cluster", "metadata: {name: wreal}", "spec:",
                 f"  tokenFile: {token_file}",
                 "  raft: {electionTimeout: 300ms, heartbeatTimeout: 50ms}", "  nodes:"]
        for m in self.masters:
            lines.append(f"    - {{name: {m.name}, address: {m.address}, roles: [master], "
                         f"raftPort: {self.raft_port}, masterPort: {self.master_port}, "
                         f"dataDir: {m.data_dir}}}")
        data, run = worker_dirs
        lines.append(f"    - {{name: w1, address: {WORKER_ADDR_REAL}, roles: [worker], "
                     f"workerPort: {worker_port}, dataDir: {data}, runtimeDir: {run}}}")
        for name, addr, port, data, run in extra_workers:
            lines.append(f"    - {{name: {name}, address: {addr}, roles: [worker], "
                         f"workerPort: {port}, dataDir: {data}, runtimeDir: {run}}}")
        lines += ["---", "apiVersion: data.fluid.io/v1alpha1", "kind: Dataset",
                  f"metadata: {{name: {dataset}}}", "spec:", f"  blockSize: {block_size}",
                  "  mounts:", f"    - {{mountPoint: '{store_url}', name: {mount}}}",
                  "---", "apiVersion: data.fluid.io/v1alpha1", "kind: AlluxioRuntime",
                  f"metadata: {{name: {dataset}}}", "spec:",
                  f"  replicas: {1 + len(extra_workers)}",
                  f"  master: {{replicas: {n}}}", "  tieredstore:", "    levels:"]
        for medium, tpath, quota, high, low in tiers:
            lines.append(f"      - {{mediumtype: {medium}, path: {tpath}, quota: {quota}, "
                         f"high: \"{high}\", low: \"{low}\"}}")
        with open(self.yaml_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        for m in self.masters:
            m.start()
        return self

    def stop(self):
        for m in self.masters:
            m.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def request(self, method, path, body=None, timeout=5.0):
        """(status, json) from the first master that answers; redirects followed."""
        from weirtest.cluster import http_request

        last = None
        for m in self.masters:
            if not m.running:
                continue
            try:
                code, payload, _ = http_request(method, m.url(path), body=body, token=self.TOKEN,
                                                timeout=timeout)
                if code == 503:
                    last = (code, payload)
                    continue
                return code, payload
            except OSError as e:
                last = (None, str(e))
        return last

    def wait(self, cond, timeout=30, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if cond():
                    return
            except (OSError, KeyError, TypeError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"{what} not reached within {timeout}s:\n" + "\n".join(
            f"== {m.name}\n{m.log()[-3000:]}" for m in self.masters))

    def leader(self):
        for m in self.masters:
            st = m.status() if m.running else None
            if st and st.get("serving"):
                return m
        return None

    def sync(self):
        self.wait(lambda: self.leader() is not None, what="a leader")
        code, _ = self.request("POST", f"/v1/datasets/{self.dataset}/sync", body={})
        assert code in (200, 202, 409), code
        self.wait(lambda: (self.request("GET", f"/v1/datasets/{self.dataset}")[1] or {}).get(
            "synced"), what="a synced dataset")

    def stat(self, path):
        code, body = self.request("GET", f"/v1/datasets/{self.dataset}/stat?path="
                                  + urllib.parse.quote(path))
        assert code == 200, body
        return body

    def weirctl(self, *args, timeout=120):
        return subprocess.run([self.weirctl_path, "--config", self.yaml_path, *args],
                              capture_output=True, text=True, timeout=timeout)


WORKER_ADDR_REAL = WORKER_NET + "4"
