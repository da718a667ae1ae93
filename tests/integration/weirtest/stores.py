"""Remote stores for the integration tests: a generated tree and the servers that serve it.

Every server binds an address of 127.0.3.0/24 (the stores' range), keeps its config, logs and
pid file in a private directory, and is stopped by stop() — callers use it as a context manager
so that a failing test still stops it.
"""

import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.parse

from weirtest.daemon import Daemon  # noqa: E402
from weirtest.net import free_port, wait_listening  # noqa: E402,F401 (re-exported)

# Odd names every served tree contains: spaces, unicode (NFC and combining), characters that
# need percent-encoding or HTML entities, a colon (Apache writes "./a:b"), long names (nginx and
# Apache truncate the visible text, never the link).
ODD_NAMES = [
    "with space.txt",
    "ünïcödé-文件.bin",
    "a&b<c>'d\".txt",
    "50% off #1?.txt",
    "plus+semi;colon:eq=.dat",
    "x" * 80 + ".long",
    "émoji 🚀.txt",
    "tab-free,comma,name.csv",
    "-leading-dash",
    "UPPER.lower",
]


def make_tree(root, n_files=2100, seed=7):
    """Writes a tree of N_FILES+ files under ROOT; returns {relative path: size} of every file,
    and the set of directories (relative paths)."""
    import random

    rnd = random.Random(seed)
    files = {}
    dirs = set()

    def write(rel, size):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(rnd.randbytes(size) if size else b"")
        files[rel] = size

    top_dirs = ["alpha", "beta dir", "ĝamma", "deep"]
    for d in top_dirs:
        dirs.add(d)
    # Many small files spread over nested directories.
    for i in range(n_files):
        d = top_dirs[i % 3]
        sub = f"{d}/sub{i % 7:02d}"
        dirs.add(sub)
        size = rnd.choice([0, 1, 17, 1023, 1024, 1025, 4096, 65537, rnd.randrange(1, 300000)])
        write(f"{sub}/file {i:05d}.dat", size)
    # A deep chain.
    chain = "deep"
    for i in range(12):
        chain += f"/level{i}"
        dirs.add(chain)
    write(f"{chain}/bottom.txt", 12345)
    # Odd names at the top and one level down.
    for j, name in enumerate(ODD_NAMES):
        write(name, 100 + j)
        write(f"alpha/{name}", 2000 + j)
    # Files big enough that rounded listing sizes ("1.2M") differ from the exact ones.
    write("big/one.bin", 1234567)
    write("big/two.bin", 3 * 1024 * 1024 + 1)
    dirs.add("big")
    # An empty directory.
    os.makedirs(os.path.join(root, "empty"), exist_ok=True)
    dirs.add("empty")
    make_world_readable(root)
    return files, dirs


def make_world_readable(root):
    """Servers drop root (Apache always does): let them read the tree and reach it."""
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)
    p = os.path.dirname(os.path.abspath(root))
    while p not in ("/", ""):
        st = os.stat(p)
        if not st.st_mode & stat.S_IXOTH:
            os.chmod(p, st.st_mode | stat.S_IXOTH)
        p = os.path.dirname(p)






class Server(Daemon):
    """Base of the stores: serves ROOT on ADDRESS (a free port), config and logs in WORKDIR."""

    kind = "?"

    def __init__(self, root, address, workdir):
        os.makedirs(workdir, exist_ok=True)
        super().__init__(os.path.join(workdir, "server.log"), address, free_port(address),
                         cwd=workdir)
        self.what = self.kind
        self.root = os.path.abspath(root)
        self.workdir = workdir

    @property
    def url(self):
        return f"http://{self.address}:{self.port}/"


class Nginx(Server):
    """nginx autoindex; FORMAT "html" (the default) or "json" (autoindex_format json).

    Options for the worker tests' store: PREFIX serves ROOT under that location ("/data/"),
    LIMIT_RATE caps each connection (bytes/s), LOG_FORMAT "bytes" writes an access log that
    requests() parses (method, uri, status, body bytes, Range, If-Match). LOCALTIME, a TZ value
    ("EST5"), shows the HTML index's times in that zone (autoindex_localtime on)."""

    kind = "nginx"
    BYTES_LOG = ('$request_method "$uri" $status $body_bytes_sent "$http_range" '
                 '"$http_if_match"')

    def __init__(self, root, address, workdir, format="html", *, prefix="/", limit_rate=None,
                 log_format=None, workers=1, error_level="info", localtime=None):
        super().__init__(root, address, workdir)
        self.localtime = localtime
        self.format = format
        self.prefix = prefix
        self.limit_rate = limit_rate
        self.log_format = log_format
        self.workers = workers
        self.error_level = error_level
        self.access_log = os.path.join(workdir, "access.log")

    @property
    def url(self):
        return f"http://{self.address}:{self.port}{self.prefix}"

    def environment(self):
        # nginx keeps TZ (and only TZ) of its parent's environment
        return dict(os.environ, TZ=self.localtime) if self.localtime else None

    def command(self):
        conf = os.path.join(self.workdir, "nginx.conf")
        if self.prefix == "/":
            location = f"root {self.root};\n        location / {{ "
        else:
            location = f"location {self.prefix} {{ alias {self.root}/; "
        location += f"autoindex on; autoindex_format {self.format}; charset utf-8; "
        if self.localtime:
            location += "autoindex_localtime on; "
        if self.limit_rate:
            location += f"limit_rate {self.limit_rate}; "
        log = f"log_format bytes '{self.BYTES_LOG}';\n    " if self.log_format == "bytes" else ""
        with open(conf, "w") as f:
            f.write(f"""
daemon off;
master_process on;
worker_processes {self.workers};
user root;
pid {self.workdir}/nginx.pid;
error_log {self.workdir}/error.log {self.error_level};
events {{ worker_connections 512; }}
http {{
    {log}access_log {self.access_log}{" bytes" if log else ""};
    client_body_temp_path {self.workdir}/body;
    proxy_temp_path {self.workdir}/proxy;
    fastcgi_temp_path {self.workdir}/fastcgi;
    uwsgi_temp_path {self.workdir}/uwsgi;
    scgi_temp_path {self.workdir}/scgi;
    types {{ text/plain txt; application/octet-stream bin dat; }}
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 100000;
    server {{
        listen {self.address}:{self.port};
        {location}}}
    }}
}}
""")
        return ["nginx", "-p", self.workdir, "-c", conf]

    def error_log(self):
        return os.path.join(self.workdir, "error.log")

    # -- the access log (LOG_FORMAT "bytes") --

    def requests(self):
        """[(method, uri, status, bytes, range, if_match)] from the access log so far. nginx
        writes a line when a response ends, so wait_quiet() first when fills may be running."""
        out = []
        if not os.path.exists(self.access_log):
            return out
        pat = re.compile(r'^(\S+) "([^"]*)" (\d+) (\d+) "([^"]*)" "([^"]*)"$')
        with open(self.access_log) as f:
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
            size = os.path.getsize(self.access_log) if os.path.exists(self.access_log) else 0
            if size != last:
                last = size
                stable_since = time.monotonic()
            elif time.monotonic() - stable_since >= settle:
                return
            time.sleep(0.05)

    def version_of(self, rel):
        """(size, mtime, etag) of REL below the prefix as the store reports them (HEAD)."""
        import email.utils
        import urllib.request

        req = urllib.request.Request(self.url + urllib.parse.quote(rel), method="HEAD")
        with urllib.request.urlopen(req, timeout=5) as r:
            size = int(r.headers["Content-Length"])
            etag = r.headers.get("ETag")
            lm = r.headers.get("Last-Modified")
        mtime = int(email.utils.parsedate_to_datetime(lm).timestamp()) if lm else 0
        return size, mtime, etag


class Apache(Server):
    """Apache httpd with mod_autoindex. STYLE: "table" (FancyIndexing HTMLTable, Debian's default
    and the Apache download mirrors'), "fancy" (FancyIndexing in <pre>), "plain" (a <ul>)."""

    kind = "apache"

    def __init__(self, root, address, workdir, style="table"):
        super().__init__(root, address, workdir)
        self.style = style

    def command(self):
        conf = os.path.join(self.workdir, "httpd.conf")
        mods = "/usr/lib/apache2/modules"
        options = {
            "table": "FancyIndexing HTMLTable VersionSort NameWidth=* Charset=UTF-8",
            "fancy": "FancyIndexing Charset=UTF-8",
            "plain": "Charset=UTF-8",
        }[self.style]
        with open(conf, "w") as f:
            f.write(f"""
ServerRoot {self.workdir}
ServerName {self.address}
Listen {self.address}:{self.port}
LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule autoindex_module {mods}/mod_autoindex.so
LoadModule dir_module {mods}/mod_dir.so
LoadModule mime_module {mods}/mod_mime.so
LoadModule alias_module {mods}/mod_alias.so
User nobody
Group nogroup
PidFile {self.workdir}/httpd.pid
DefaultRuntimeDir {self.workdir}
ErrorLog {self.workdir}/error.log
LogFormat "%h %t \\"%r\\" %>s %b" common
CustomLog {self.workdir}/access.log common
TypesConfig /dev/null
AddType text/plain .txt
DocumentRoot "{self.root}"
StartServers 1
ServerLimit 2
ThreadsPerChild 8
MaxRequestWorkers 16
<Directory />
    Require all granted
    Options +Indexes
    AllowOverride None
</Directory>
IndexOptions {options}
Alias /icons/ "/usr/share/apache2/icons/"
AddIcon /icons/folder.gif ^^DIRECTORY^^
AddIcon /icons/back.gif ..
DefaultIcon /icons/unknown.gif
""")
        return ["apache2", "-f", conf, "-DFOREGROUND"]

    def error_log(self):
        return os.path.join(self.workdir, "error.log")


class PythonHttp(Server):
    kind = "python"

    def command(self):
        return [sys.executable if os.path.exists(sys.executable) else "python3", "-m",
                "http.server", "--bind", self.address, "--directory", self.root, str(self.port)]


class SlowPythonHttp(PythonHttp):
    """Python's http.server that answers every HEAD after DELAY seconds: a sync of its tree
    takes long enough to kill a leader in the middle of it."""

    kind = "python"

    def __init__(self, root, address, workdir, delay=0.02):
        super().__init__(root, address, workdir)
        self.delay = delay

    def command(self):
        code = (
            "import functools, http.server, sys, time\n"
            "class H(http.server.SimpleHTTPRequestHandler):\n"
            "    def do_HEAD(self):\n"
            f"        time.sleep({self.delay})\n"
            "        return super().do_HEAD()\n"
            "    def log_message(self, *a):\n"
            "        pass\n"
            "h = functools.partial(H, directory=sys.argv[1])\n"
            "http.server.ThreadingHTTPServer((sys.argv[2], int(sys.argv[3])), h).serve_forever()\n"
        )
        return [sys.executable, "-c", code, self.root, self.address, str(self.port)]


class Silent:
    """A listening socket that accepts connections and never answers: a hung store."""

    def __init__(self, address):
        self.address = address
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{address}:{self.port}/"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sock.close()


def served_tree_from_listing(lines):
    """Parses 'weirctl ufs ls -R -l' output into ({path: size}, {dirs})."""
    files, dirs = {}, set()
    for line in lines:
        if line.startswith("d "):
            dirs.add(line[2:].rstrip("/"))
        elif line.startswith("f "):
            _, size, mtime, etag, path = line.split(" ", 4)
            files[path] = int(size)
    return files, dirs


# ---- S3: s3rver from the npm registry, with SigV4 checked (s3rver_sigv4.js) ----

S3RVER_VERSION = "3.7.1"


def s3rver_modules():
    """(node_modules directory holding s3rver, None) or (None, why not). s3rver is installed
    with npm into $WEIR_S3RVER_DIR (default ~/.cache/weir/s3rver) on first use."""
    cache = os.environ.get("WEIR_S3RVER_DIR") or os.path.expanduser("~/.cache/weir/s3rver")
    modules = os.path.join(cache, "node_modules")
    if not shutil.which("node"):
        return None, "node is not installed (apt install nodejs npm)"
    if os.path.exists(os.path.join(modules, "s3rver", "package.json")):
        return modules, None
    if not shutil.which("npm"):
        return None, "npm is not installed (apt install npm): it installs s3rver"
    # npm retries for minutes without a network (a test run in a namespace of its own): ask
    # whether the registry answers at all first
    registry = subprocess.run(["npm", "config", "get", "registry"], capture_output=True,
                              text=True, timeout=60).stdout.strip() or "https://registry.npmjs.org/"
    u = urllib.parse.urlsplit(registry)
    try:
        socket.create_connection((u.hostname, u.port or (443 if u.scheme == "https" else 80)),
                                 timeout=5).close()
    except OSError as e:
        return None, (f"s3rver is not installed in {cache} and the npm registry {registry} "
                      f"cannot be reached ({e}); run the tests once with a network")
    os.makedirs(cache, exist_ok=True)
    try:
        r = subprocess.run(["npm", "install", "--prefix", cache, "--no-audit", "--no-fund",
                            f"s3rver@{S3RVER_VERSION}"], capture_output=True, text=True,
                           timeout=300)
    except subprocess.TimeoutExpired:
        return None, f"npm install s3rver@{S3RVER_VERSION} took more than 300 s"
    if r.returncode != 0 or not os.path.exists(os.path.join(modules, "s3rver")):
        return None, f"npm install s3rver@{S3RVER_VERSION} failed: {r.stderr[-500:]}"
    return modules, None


class S3rverS3(Server):
    """s3rver behind a SigV4 check with a fresh random key pair: unsigned requests and wrong
    secrets get 403, as from AWS. populate() and put() sign with curl --aws-sigv4."""

    kind = "s3"

    def __init__(self, address, workdir, modules):
        super().__init__(workdir, address, workdir)
        self.modules = modules
        self.key_id = "WEIRTEST" + os.urandom(6).hex().upper()
        self.secret = os.urandom(20).hex()

    def command(self):
        # s3rver's continuation tokens are DES-encrypted, which OpenSSL 3 keeps in its legacy
        # provider: without it every listing of more than one page fails with 500
        return ["node", "--openssl-legacy-provider",
                os.path.join(os.path.dirname(os.path.abspath(__file__)), "s3rver_sigv4.js"),
                self.modules, os.path.join(self.workdir, "data"), self.address, str(self.port),
                self.key_id, self.secret]

    ready_timeout = 30.0  # node loads s3rver and its dependencies

    def _curl(self, key_id, secret, args):
        return subprocess.run(["curl", "-sS", "--fail-with-body", "--aws-sigv4",
                               "aws:amz:us-east-1:s3", "--user", f"{key_id}:{secret}",
                               "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", *args],
                              capture_output=True, text=True, timeout=300)

    def object_url(self, bucket, key):
        return f"{self.url}{bucket}/{urllib.parse.quote(key, safe='/~')}"

    def populate(self, bucket, objects):
        """Creates BUCKET with OBJECTS {key: bytes-size} of random bytes; returns (key id,
        secret)."""
        import random

        r = self._curl(self.key_id, self.secret, ["-X", "PUT", f"{self.url}{bucket}"])
        if r.returncode != 0:
            raise RuntimeError(f"S3 bucket creation failed: {r.stderr}{r.stdout}")
        rnd = random.Random(3)
        body_dir = os.path.join(self.workdir, "bodies")
        os.makedirs(body_dir, exist_ok=True)
        cfg = os.path.join(self.workdir, "put.curl")
        markers = []
        with open(cfg, "w") as f:
            for i, (key, size) in enumerate(objects.items()):
                body = os.path.join(body_dir, str(i))
                with open(body, "wb") as b:
                    b.write(rnd.randbytes(size))
                if key.endswith("/"):
                    markers.append((key, body))  # -T would append the file's name to the URL
                    continue
                f.write(f'upload-file = "{body}"\nurl = "{self.object_url(bucket, key)}"\n'
                        'output = "/dev/null"\n')
        runs = [["-K", cfg]] + [["-X", "PUT", "--data-binary", f"@{body}", "-o", "/dev/null",
                                 self.object_url(bucket, key)] for key, body in markers]
        for args in runs:
            r = self._curl(self.key_id, self.secret, args)
            if r.returncode != 0:
                raise RuntimeError(f"S3 setup failed: {r.stderr[-3000:]}")
        shutil.rmtree(body_dir, ignore_errors=True)
        return self.key_id, self.secret

    def put(self, bucket, key, body, key_id, secret):
        """Overwrites KEY with BODY (a str), signed with KEY_ID/SECRET."""
        path = os.path.join(self.workdir, "put.body")
        with open(path, "w") as f:
            f.write(body)
        r = self._curl(key_id, secret, ["-o", "/dev/null", "-T", path,
                                        self.object_url(bucket, key)])
        if r.returncode != 0:
            raise RuntimeError(f"S3 put failed: {r.stderr}{r.stdout}")


# ---- masters that sync datasets from these stores ----

class SyncCluster:
    """weir-master(s) on 127.0.3.50+ with datasets whose mounts are the given store URLs.

    DATASETS: {name: {"mounts": [(mount name, url, {option: value})], "sync_interval": "2s",
    "max_entries": N}}.
    Reuses weirtest.cluster's process handling; addresses stay in the stores' range."""

    def __init__(self, dir, build_dir, datasets, n=1, first=50, port_base=None,
                 snapshot_threshold=None, raft_options=None):
        from weirtest import cluster as wc
        from weirtest.config import Dataset

        self.wc = wc
        self.dir = str(dir)
        port_base = port_base or free_port(f"127.0.3.{first}")
        raft_port = free_port(f"127.0.3.{first}")
        while raft_port == port_base:
            raft_port = free_port(f"127.0.3.{first}")
        self.datasets = datasets
        specs = [Dataset(name, mounts=spec["mounts"], sync_interval=spec.get("sync_interval"),
                         master_replicas=n,
                         extra=(f"  maxEntries: {spec['max_entries']}"
                                if spec.get("max_entries") else ""))
                 for name, spec in datasets.items()]
        self.c = wc.MasterCluster(self.dir, build_dir, n=n, master_port=port_base,
                                  raft_port=raft_port, name="stores", datasets=specs,
                                  addresses=[f"127.0.3.{first + i}" for i in range(n)],
                                  snapshot_threshold=snapshot_threshold,
                                  raft_options=raft_options)

    def __enter__(self):
        self.c.start()
        return self

    def __exit__(self, *exc):
        self.c.stop()

    def wait_leader(self, timeout=20.0):
        return self.c.wait_leader(timeout=timeout)

    def get(self, path, timeout=5.0):
        code, body, _ = self.c.request("GET", path, timeout=timeout)
        return code, body

    def dataset(self, name):
        code, body = self.get(f"/v1/datasets/{name}")
        assert code == 200, (code, body)
        return body

    def wait_dataset(self, name, predicate, timeout=120.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.dataset(name)
                if predicate(last):
                    return last
            except (OSError, AssertionError, self.wc.HttpError) as e:
                last = repr(e)
            time.sleep(0.2)
        raise AssertionError(f"dataset {name} not as expected within {timeout}s: {last}\n"
                             f"{self.c.logs()}")

    def tree(self, dataset, path="/"):
        """{relative path: size} of files and the set of directories below PATH, via the API."""
        files, dirs = {}, set()
        todo = [path.rstrip("/") or "/"]
        while todo:
            p = todo.pop()
            q = urllib.parse.quote(p)
            code, body = self.get(f"/v1/datasets/{dataset}/ls?path={q}", timeout=30)
            assert code == 200, (p, code, body)
            for e in body["entries"]:
                child = (p.rstrip("/") + "/" + e["name"])
                if e["type"] == "dir":
                    dirs.add(child)
                    todo.append(child)
                else:
                    files[child] = e
        return files, dirs
