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
import time

import pytest

from conftest import weir_binary
from test_worker import MiB, make_file
from weirtest.md5store import Md5Store
from weirtest.workerenv import WORKER_ADDR_REAL, RealMasters, Worker, free_port

BLOCK = MiB
WAIT_S = 60  # generous: a loaded machine; every wait polls its own condition


class Env:
    """The store, one master and workers w1..wN on 127.0.2.4 and 127.0.2.(4+i)."""

    def __init__(self, tmp, n_workers=3):
        self.tmp = str(tmp)
        os.chmod(self.tmp, 0o755)
        self.data = os.path.join(self.tmp, "store")
        os.makedirs(self.data)
        self.store = Md5Store(self.data, address="127.0.2.12", last_modified=True)
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
FOUND = "spread over the workers, do not hash"
TOLD = "Another worker found that /data/bad.bin"


def mismatch_known(logs):
    """Whether one worker's log says it found bad.bin's mismatch and every other's that it was
    told (each logs after it marked the version and dropped its blocks)."""
    finders = [t for t in logs if FOUND in t]
    return len(finders) == 1 and all(TOLD in t for t in logs if FOUND not in t)


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
        wait(lambda: mismatch_known([w.log() for w in env.workers]),
             "bad.bin's mismatch found by one worker and told to the others", env)
        bad_ids = {block_id(b, i) for i in range(5)}
        assert all(not (env.cached(w) & bad_ids) for w in env.workers)
        finder = [w for w in env.workers if FOUND in w.log()][0]
        assert "/data/bad.bin" in finder.log()
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


def test_a_mismatch_found_on_one_worker_is_dropped_on_the_others_too(tmp_path):
    """A file cached whole on one worker is checked there; when its bytes do not match, the other
    workers that hold copies of some of its blocks drop them too and refuse the version. (When
    w1's heartbeat reports blocks 1-4 before block 0 is in, the file is whole across w1 and w2
    and the master asks w1 for a check across workers first: either check may find it, the
    second one sees the version marked and does not run.)"""
    with Env(tmp_path) as env:
        make_file(os.path.join(env.data, "bad.bin"), 4 * BLOCK + 12345, 2)
        env.store.etags["bad.bin"] = '"' + hashlib.md5(b"other bytes").hexdigest() + '"'
        env.cluster.sync(files=1)
        b = env.cluster.stat("/data/bad.bin")
        w1, w2, w3 = env.workers
        env.load(w2, b, [0])  # a copy of block 0 elsewhere
        env.load(w1, b, [0, 1, 2, 3, 4])
        wait(lambda: ("do not hash to the MD5 the store gave" in w1.log() or FOUND in w1.log())
             and all(TOLD in w.log() for w in (w2, w3)),
             "w1's check failed and the others were told", env)
        bad_ids = {block_id(b, i) for i in range(5)}
        for w in env.workers:
            assert not (env.cached(w) & bad_ids), (w.node, env.cached(w) & bad_ids)
            status, _, body = w.get(f"/v1/blocks/{block_id(b, 0)}")
            assert status == 410 and b"content mismatch" in body, (w.node, status, body[:200])
        assert env.metric("weir_worker_content_check_failures_total") >= 1


def test_fuse_reader_gets_eio_for_a_mismatched_file_and_the_store_is_not_asked():
    """Through weir-fuse on node1 of three nodes: once the check across the workers has found
    that bad.bin's bytes do not match its ETag, reading it fails with EIO at once (the workers
    refuse it and weir-fuse does not fall back to the store, which would send the same bytes);
    good.bin, checked the same way, reads right."""
    import errno
    import shutil
    import tempfile

    import conftest
    from weirtest.cluster import http_request
    from weirtest.fusecluster import TOKEN, DemoCluster

    for name in ("weir-master", "weir-worker", "weir-fuse"):
        weir_binary(name)
    files = {}

    def dataset(root):
        os.makedirs(root, exist_ok=True)
        files["good.bin"] = make_file(os.path.join(root, "good.bin"), 4 * BLOCK + 12345, 1)
        files["bad.bin"] = make_file(os.path.join(root, "bad.bin"), 4 * BLOCK + 12345, 2)
        for dirpath, _, names in os.walk(root):
            os.chmod(dirpath, 0o755)
            for n in names:
                os.chmod(os.path.join(dirpath, n), 0o644)
        return {n: len(v) for n, v in files.items()}

    stores = []

    def store(root, workdir):
        s = Md5Store(root, address="127.0.4.4", last_modified=True)
        s.etags["bad.bin"] = '"' + hashlib.md5(b"other bytes").hexdigest() + '"'
        stores.append(s)
        return s

    d = tempfile.mkdtemp(prefix="weir-content-")
    c = DemoCluster(d, conftest.BUILD_DIR, block_size="1Mi", tier_quota="64Mi", dataset=dataset,
                    store=store, mount=lambda s: ("data", s.url),
                    fuse_env={"WEIR_FUSE_RETRY": "20s"})
    try:
        c.start()
        s = stores[0]
        entries = {n: c.stat(f"/data/{n}") for n in files}

        def load(i, entry, blocks):
            addr = c.addresses[i]
            code, body, _ = http_request(
                "POST", f"http://{addr}:{c.ports[addr][2]}/v1/load", token=TOKEN, timeout=60,
                body={"dataset": "hbase", "files": [{
                    "epoch": entry["epoch"], "file_id": entry["file_id"],
                    "version": entry["version"], "size": entry["size"], "blocks": blocks}]})
            assert code == 200 and body["failed"] == 0, (code, body)

        def failures():
            total = 0
            for i, addr in enumerate(c.addresses):
                code, text, _ = http_request("GET", f"http://{addr}:{c.ports[addr][2]}/metrics",
                                             token=TOKEN)
                for line in (text if isinstance(text, str) else "").splitlines():
                    if line.startswith("weir_worker_content_check_failures_total "):
                        total += float(line.split()[1])
            return total

        for name in ("good.bin", "bad.bin"):
            for i, blocks in enumerate(PLACEMENT):
                load(i, entries[name], blocks)
        c.wait(lambda: mismatch_known([w.log() for w in c.workers]), WAIT_S,
               "bad.bin's mismatch found by one worker and told to the others")
        assert failures() == 1
        # good.bin reads right through FUSE
        with open(os.path.join(c.mnt, "data", "good.bin"), "rb") as f:
            assert f.read() == files["good.bin"]
        before = s.get_count("bad.bin")
        t0 = time.monotonic()
        with pytest.raises(OSError) as e:
            with open(os.path.join(c.mnt, "data", "bad.bin"), "rb") as f:
                f.read()
        took = time.monotonic() - t0
        assert e.value.errno == errno.EIO, e.value
        assert took < 15, took  # at once, not after WEIR_FUSE_RETRY (20 s) of retries
        assert s.get_count("bad.bin") == before
        assert "content mismatch" in c.fuse.log()
    finally:
        c.stop()
        shutil.rmtree(d, ignore_errors=True)
