"""Prefetch across files (services/fuse/dirahead.c) on a real cluster: three weir-masters and
weir-workers on 127.0.4.1-3, nginx on 127.0.4.4 (its access log counts what the store sent),
weir-fuse on node1. Each test builds its own cluster and stops it in a finally block.
"""

import errno
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

import conftest
from conftest import weir_binary
from weirtest.fusecluster import DemoCluster
from weirtest.net import free_port, wait_listening
from weirtest.stores import make_world_readable

KiB = 1 << 10
MiB = 1 << 20
GET_RE = re.compile(r'"GET (/hbase/[^ ]*[^/ ]) HTTP/1\.[01]" (\d{3}) (\d+)')


def small_set(dirs, per_dir, lo=16 * KiB, hi=64 * KiB, seed=3):
    def make(root):
        rnd = random.Random(seed)
        files = {}
        for d in range(dirs):
            for i in range(per_dir):
                rel = f"d{d:02d}/f{i:05d}.bin"
                path = os.path.join(root, "hbase", rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                size = rnd.randrange(lo, hi + 1)
                with open(path, "wb") as f:
                    f.write(rnd.randbytes(size))
                files[rel] = size
        make_world_readable(root)
        return files
    return make


def store_gets(c):
    """{path: [(status, bytes)]} of the file GETs in nginx's access log."""
    out = {}
    with open(os.path.join(c.nginx.workdir, "access.log"), errors="replace") as f:
        for line in f:
            m = GET_RE.search(line)
            if m:
                out.setdefault(m.group(1), []).append((int(m.group(2)), int(m.group(3))))
    return out


def cluster(dataset, fuse_env=None, **kw):
    for name in ("weir-master", "weir-worker", "weir-fuse"):
        weir_binary(name)
    d = tempfile.mkdtemp(prefix="weir-prefetch-")
    env = {"WEIR_FUSE_RETRY": "20s"}
    env.update(fuse_env or {})
    return DemoCluster(d, conftest.BUILD_DIR, dataset=dataset, fuse_env=env, **kw)


def stop(c):
    try:
        c.stop()
    finally:
        shutil.rmtree(c.dir, ignore_errors=True)


def read_whole(path):
    with open(path, "rb") as f:
        return f.read()


def test_cp_r_fetches_every_byte_once():
    """A cold cp -r of 300 small files: the copy is byte-identical, every file is fetched from
    the store exactly once (prefetched or read), and the store sends the dataset's bytes."""
    c = cluster(small_set(3, 100))
    try:
        c.start()
        base = c.store_bytes()
        dst = os.path.join(c.dir, "copy")
        subprocess.run(["cp", "-r", os.path.join(c.mnt, "hbase"), dst], check=True, timeout=300)
        for rel, size in c.files.items():
            assert read_whole(os.path.join(dst, rel)) == read_whole(
                os.path.join(c.store_root, "hbase", rel)), rel
        gets = store_gets(c)
        for rel in c.files:
            assert len(gets.get("/hbase/" + rel, [])) == 1, (rel, gets.get("/hbase/" + rel))
        assert c.store_bytes() - base == sum(c.files.values())
    finally:
        stop(c)


def test_prefetch_runs_ahead_is_bounded_and_stops_with_the_reader():
    """A reader opening the first files of a directory of 100 in order: the files right after
    them are fetched before anyone opens them (prefetch), never more than the configured window
    (WEIR_FUSE_PREFETCH_FILES=4) past the last one opened, and nothing more once it stops."""
    c = cluster(small_set(1, 100), fuse_env={"WEIR_FUSE_PREFETCH_FILES": "4"})
    try:
        c.start()
        d = os.path.join(c.mnt, "hbase", "d00")
        names = sorted(os.listdir(d))
        for name in names[:6]:
            read_whole(os.path.join(d, name))
        time.sleep(2)
        fetched = {p for p in store_gets(c) if p.startswith("/hbase/d00/")}
        ahead = sorted(p for p in fetched if p.rsplit("/", 1)[1] not in names[:6])
        assert ahead, "nothing was prefetched after six files read in order"
        # the next files in listing order, within the window
        allowed = {f"/hbase/d00/{n}" for n in names[6:6 + 4]}
        assert set(ahead) <= allowed, ahead
        time.sleep(2)
        assert {p for p in store_gets(c) if p.startswith("/hbase/d00/")} == fetched
    finally:
        stop(c)


def test_huge_directory_starts_at_most_the_window():
    """10,000 files in one directory (listed whole by the reader's first open): reading the
    first three in order starts at most 3 + window fetches."""
    def make(root):
        d = os.path.join(root, "hbase", "big")
        os.makedirs(d)
        files = {}
        for i in range(10000):
            rel = f"big/f{i:06d}"
            with open(os.path.join(root, "hbase", rel), "wb") as f:
                f.write(b"x" * (100 + i % 7))
            files[rel] = 100 + i % 7
        os.chmod(root, 0o755)
        os.chmod(os.path.join(root, "hbase"), 0o755)
        os.chmod(d, 0o755)
        return files

    c = cluster(make, fuse_env={"WEIR_FUSE_PREFETCH_FILES": "8"})
    try:
        c.start()
        d = os.path.join(c.mnt, "hbase", "big")
        for i in range(3):
            read_whole(os.path.join(d, f"f{i:06d}"))
        time.sleep(2)
        fetched = [p for p in store_gets(c) if p.startswith("/hbase/big/")]
        assert 3 < len(fetched) <= 3 + 8, fetched
    finally:
        stop(c)


class Throttle:
    """weirtest.throttle in front of the cluster's nginx: every connection limited to RATE."""

    def __init__(self, upstream, rate, address="127.0.4.5"):
        self.upstream, self.rate, self.address = upstream, rate, address
        self.port = free_port(address)
        self.proc = None

    def start(self):
        here = os.path.dirname(os.path.abspath(__file__))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "weirtest.throttle", "--listen", f"{self.address}:{self.port}",
             "--upstream", f"{self.upstream.address}:{self.upstream.port}",
             "--rate", str(self.rate)], cwd=here, stdin=subprocess.DEVNULL,
            start_new_session=True)
        wait_listening(self.address, self.port, self.proc, what="throttle proxy")
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def test_file_changed_upstream_during_prefetch_is_never_served_mixed():
    """b.bin (24 blocks of 1 MiB) is being prefetched through a store that sends 256 KiB/s per
    connection when it is replaced upstream by other bytes of the same size. Reading it through
    the mount gives the old bytes whole or an I/O error, never a mix; after a sync, the new ones."""
    old = random.Random(1).randbytes(24 * MiB)
    new = random.Random(2).randbytes(24 * MiB)

    def make(root):
        d = os.path.join(root, "hbase", "dir")
        os.makedirs(d)
        with open(os.path.join(d, "a.bin"), "wb") as f:
            f.write(b"a" * 4096)
        with open(os.path.join(d, "b.bin"), "wb") as f:
            f.write(old)
        for p in (root, os.path.join(root, "hbase"), d):
            os.chmod(p, 0o755)
        return {"dir/a.bin": 4096, "dir/b.bin": len(old)}

    throttle = None

    def via_throttle(store):
        nonlocal throttle
        # slow enough that the first ranges take 4 s: the change lands before the last are asked
        throttle = Throttle(store, 256 * 1024).start()
        return ("hbase", f"http://{throttle.address}:{throttle.port}/hbase/")

    c = cluster(make, block_size="1Mi", mount=via_throttle, fuse_env={"WEIR_FUSE_REFRESH": "1s"})
    try:
        c.start()
        d = os.path.join(c.mnt, "hbase", "dir")
        src = os.path.join(c.store_root, "hbase", "dir", "b.bin")
        tmp = src + ".new"
        with open(tmp, "wb") as f:  # written now: the change itself is one rename
            f.write(new)
        os.chmod(tmp, 0o644)
        # opening a.bin (the directory's first file) starts b.bin's prefetch
        assert read_whole(os.path.join(d, "a.bin")) == b"a" * 4096
        # replace it once the prefetch has fetched a first block (on a loaded machine it may
        # start later than any fixed delay), while most of its 24 blocks are still to come
        deadline = time.monotonic() + 60
        while not any(s == 206 for s, _ in store_gets(c).get("/hbase/dir/b.bin", [])):
            assert time.monotonic() < deadline, "b.bin's prefetch never started"
            time.sleep(0.05)
        os.utime(tmp, (time.time() + 5, time.time() + 5))  # a new ETag even within a second
        os.replace(tmp, src)
        try:
            got = read_whole(os.path.join(d, "b.bin"))
        except OSError as e:
            assert e.errno == errno.EIO, e
            outcome = "EIO"
        else:
            assert got == old, "b.bin was served mixed or as the new version before a sync"
            outcome = "old"
        # the change landed while the prefetch ran: the store refused some of its ranges
        statuses = [s for s, _ in store_gets(c).get("/hbase/dir/b.bin", [])]
        print(f"b.bin read before the sync: {outcome}; store answers: {statuses}")
        assert 412 in statuses, statuses
        assert 206 in statuses, statuses
        code, body = c.request("POST", "/v1/datasets/hbase/sync", body={})
        assert code in (200, 202, 409), body
        deadline = time.monotonic() + 60
        while True:
            try:
                got = read_whole(os.path.join(d, "b.bin"))
                if got == new:
                    break
                assert got == old, "b.bin was served mixed after the sync"
            except OSError as e:
                assert e.errno == errno.EIO, e
            assert time.monotonic() < deadline, "the new version was never served"
            time.sleep(1)
    finally:
        stop(c)
        if throttle:
            throttle.stop()
