"""Issue 14, "content you can trust" for files spread over several workers: a store that sends
other bytes than its ETag (an S3-like MD5) describes is found once the file is cached whole
across the workers, and its blocks are dropped on every worker and refused from then on.

Three workers, one real weir-master syncing a small HTTP store whose ETags are the content's MD5
(as S3's for single-part uploads) except for bad.bin, whose ETag is another content's MD5. The
blocks are placed with POST /v1/load and explicit block lists (no read-ahead: each worker holds
exactly what the test gave it), so no worker holds a whole file and only the check across
workers can see it. Run in a private network namespace (COMMON.md).
"""

import hashlib
import os
import threading
import time
from email.utils import formatdate

from conftest import weir_binary
from test_worker import MiB, make_file
from weirtest.fakeserver import FakeServer, JsonHandler
from weirtest.workerenv import WORKER_ADDR_REAL, RealMasters, Worker, free_port

BLOCK = MiB
WAIT_S = 60  # generous: a loaded machine; every wait polls its own condition


class Md5ListingStore(FakeServer):
    """GET/HEAD of /data/NAME with one bytes= range, ETag = the content's MD5 (or ETAGS[NAME]),
    If-Match honoured (412), Last-Modified; GET /data/ lists the files as an HTML index. Counts
    the GETs of each file's bytes."""

    def __init__(self, root, address="127.0.2.12"):
        super().__init__(address, free_port(address))
        self.root, self.etags = root, {}
        self.gets, self.lock = {}, threading.Lock()

    def etag(self, name, data):
        return self.etags.get(name) or '"' + hashlib.md5(data).hexdigest() + '"'

    def handler(self):
        store = self

        class H(JsonHandler):
            def do_HEAD(self):
                self.do_GET(body=False)

            def do_GET(self, body=True):
                if self.path in ("/data", "/data/"):
                    names = sorted(os.listdir(store.root))
                    page = "<html><body><ul>" + "".join(
                        f'<li><a href="{n}">{n}</a></li>' for n in names) + "</ul></body></html>"
                    data = page.encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if body:
                        self.wfile.write(data)
                    return
                name = self.path[len("/data/"):] if self.path.startswith("/data/") else None
                p = os.path.join(store.root, name) if name and "/" not in name else None
                if not p or not os.path.isfile(p):
                    return self.empty(404)
                with open(p, "rb") as f:
                    data = f.read()
                etag = store.etag(name, data)
                if self.headers.get("If-Match") not in (None, etag):
                    return self.empty(412)
                if body:
                    with store.lock:
                        store.gets[name] = store.gets.get(name, 0) + 1
                mtime = formatdate(os.stat(p).st_mtime, usegmt=True)
                self.send_range(data, headers=[("ETag", etag), ("Last-Modified", mtime)],
                                body=body)

        return H

    @property
    def url(self):
        return f"http://{self.address}:{self.port}/data/"

    def get_count(self, name):
        with self.lock:
            return self.gets.get(name, 0)


class Env:
    """The store, one master and workers w1..wN on 127.0.2.4 and 127.0.2.(4+i)."""

    def __init__(self, tmp, n_workers=3):
        self.tmp = str(tmp)
        os.chmod(self.tmp, 0o755)
        self.data = os.path.join(self.tmp, "store")
        os.makedirs(self.data)
        self.store = Md5ListingStore(self.data)
        self.shm = os.path.join(self.tmp, "shm")
        weir_binary("weir-master")
        weir_binary("weirctl")
        port = free_port(WORKER_ADDR_REAL)
        extra = []
        for i in range(2, n_workers + 1):
            addr = f"127.0.2.{3 + i}"
            extra.append((f"w{i}", addr, free_port(addr), os.path.join(self.tmp, f"wdata{i}"),
                          os.path.join(self.tmp, f"wrun{i}")))
        import conftest
        self.cluster = RealMasters(os.path.join(self.tmp, "masters"), conftest.BUILD_DIR,
                                   self.store.url, n=1, worker_port=port,
                                   worker_dirs=(os.path.join(self.tmp, "wdata"),
                                                os.path.join(self.tmp, "wrun")),
                                   tiers=[("MEM", self.shm, "64Mi", 0.95, 0.7)],
                                   block_size="1Mi", extra_workers=extra)
        binary = weir_binary("weir-worker")
        self.workers = [Worker(binary, self.cluster.yaml_path, "w1", WORKER_ADDR_REAL, port,
                               self.tmp)]
        self.workers += [Worker(binary, self.cluster.yaml_path, name, addr, p, self.tmp)
                         for name, addr, p, _, _ in extra]

    def __enter__(self):
        try:
            self.store.start()
            self.cluster.start()
            for w in self.workers:
                w.start()
            names = {w.node for w in self.workers}
            self.cluster.wait(lambda: names <= {
                w["node"] for w in self.cluster.request("GET", "/v1/workers")[1]["workers"]
                if w["alive"]}, timeout=WAIT_S, what="every worker registered")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for w in self.workers:
            w.kill()
        self.cluster.stop()
        self.store.stop()

    def cached(self, w):
        """Block ids in W's tier directory."""
        d = os.path.join(self.shm, "weir", w.node)
        try:
            return {f.split(".")[0] for f in os.listdir(d) if not f.startswith(".")}
        except FileNotFoundError:
            return set()

    def load(self, w, entry, blocks):
        status, body = w.post("/v1/load", {"dataset": "ds", "files": [{
            "epoch": entry["epoch"], "file_id": entry["file_id"], "version": entry["version"],
            "size": entry["size"], "blocks": blocks}]})
        assert status == 200 and body["failed"] == 0, (status, body)

    def metric(self, name):
        return sum(w.metrics().get(name, 0) for w in self.workers)


def block_id(entry, i):
    return f"{entry['epoch']}-{entry['file_id']}-{entry['version']}-{i}"


def wait(cond, what, env):
    deadline = time.monotonic() + WAIT_S
    while not cond():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.node}\n{w.log()[-3000:]}" for w in env.workers)
            raise AssertionError(f"not within {WAIT_S}s: {what}\n{logs}")
        time.sleep(0.2)


# Blocks of a 5-block file per worker: no worker holds it whole.
PLACEMENT = [[0, 3], [1, 4], [2]]


def test_a_file_spread_over_workers_is_checked_and_a_mismatch_dropped_everywhere(tmp_path):
    with Env(tmp_path) as env:
        good = make_file(os.path.join(env.data, "good.bin"), 4 * BLOCK + 12345, 1)
        make_file(os.path.join(env.data, "bad.bin"), 4 * BLOCK + 12345, 2)
        env.store.etags["bad.bin"] = '"' + hashlib.md5(b"other bytes").hexdigest() + '"'
        env.cluster.sync(files=2)
        g = env.cluster.stat("/data/good.bin")
        b = env.cluster.stat("/data/bad.bin")
        assert b["etag"] == env.store.etags["bad.bin"], b

        # A file whose bytes match its ETag: checked once whole across the workers, kept.
        for w, blocks in zip(env.workers, PLACEMENT):
            env.load(w, g, blocks)
        wait(lambda: env.metric("weir_worker_content_checks_total") >= 1,
             "good.bin checked across the workers", env)
        assert env.metric("weir_worker_content_check_failures_total") == 0
        for w, blocks in zip(env.workers, PLACEMENT):
            assert {block_id(g, i) for i in blocks} <= env.cached(w), (w.node, env.cached(w))
        checker = [w for w in env.workers if "cached blocks of" in w.log()]
        assert checker == [], "a matching file was reported"
        for w, blocks in zip(env.workers, PLACEMENT):
            for i in blocks:
                status, _, body = w.get(f"/v1/blocks/{block_id(g, i)}")
                assert status == 200 and body == good[i * BLOCK:(i + 1) * BLOCK]

        # A file whose bytes do not: found by the worker whose blocks completed it, dropped on
        # every worker, and refused from then on (410), without asking the store again.
        for w, blocks in zip(env.workers, PLACEMENT):
            env.load(w, b, blocks)
        wait(lambda: env.metric("weir_worker_content_check_failures_total") >= 1,
             "bad.bin's failed check", env)
        bad_ids = {block_id(b, i) for i in range(5)}
        wait(lambda: all(not (env.cached(w) & bad_ids) for w in env.workers),
             "bad.bin's blocks dropped on every worker", env)
        logs = {w.node: w.log() for w in env.workers}
        finders = [n for n, text in logs.items() if "spread over the workers, do not hash" in text]
        assert len(finders) == 1, finders
        assert "/data/bad.bin" in logs[finders[0]]
        for n, text in logs.items():
            if n != finders[0]:
                assert "Another worker found that /data/bad.bin" in text, (n, text[-3000:])
        assert env.metric("weir_worker_content_check_failures_total") == 1
        before = env.store.get_count("bad.bin")
        for w in env.workers:
            for i in range(5):
                status, _, body = w.get(f"/v1/blocks/{block_id(b, i)}")
                assert status == 410, (w.node, i, status, body[:200])
                assert b"content mismatch" in body
        assert env.store.get_count("bad.bin") == before
        assert all(not (env.cached(w) & bad_ids) for w in env.workers)
        # good.bin was not touched by bad.bin's drop
        for w, blocks in zip(env.workers, PLACEMENT):
            assert {block_id(g, i) for i in blocks} <= env.cached(w)
