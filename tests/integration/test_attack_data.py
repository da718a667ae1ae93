"""Issue 14, the data rows: each test replays what an attacker (or an unlucky operator) did and
asserts the opposite of what weir used to do.

| row | used to | now |
|---|---|---|
| ~20 GET /v1/blocks/0-1-0 | never answered, then every cold block on that worker hung | 400 at once, cold reads go on |
| master data dir lost, store changed, master restarted, worker kept its cache | a new file served with another file's bytes | the new epoch names other blocks: the right bytes, the old blocks dropped |
| a tier on a 3 MiB tmpfs with a 64 MiB quota | every fill after the third failed with ENOSPC | fills evict and go on |
| a file overwritten with the same size, its mtime restored | old and new blocks mixed, no error | `weirctl load --verify` finds and drops the stale blocks; reads give the new bytes whole |
| all masters down, reading a cached file | EAGAIN after 30 s | the cached bytes; an unknown path is EIO within seconds |

Every test runs with the test's own processes on 127.0.2.x/127.0.4.x (run inside a private
network namespace, see COMMON.md) and stops them on failure.
"""

import concurrent.futures
import errno
import os
import shutil
import subprocess
import time

import pytest

from conftest import weir_binary
from test_worker import MiB, Env, RealEnv, make_file
from weirtest.md5store import Md5Store
from weirtest.workerenv import EPOCH, Worker, free_port


def have_tmpfs_namespace():
    """Whether this process may make a private mount namespace with a tmpfs in it."""
    if shutil.which("unshare") is None:
        return False
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        "mount -t tmpfs -o size=1m tmpfs /mnt && umount /mnt"],
                       capture_output=True, timeout=30)
    return p.returncode == 0


def one_worker_config(tmp, master, store):
    """(cluster.yaml path, worker port) of one worker w1 with 64 MiB of MEM, 1 MiB blocks, in
    front of STORE, asking MASTER."""
    from test_worker import WORKER_ADDR
    from weirtest.workerenv import write_config

    port = free_port(WORKER_ADDR)
    cfg = os.path.join(tmp, "cluster.yaml")
    write_config(cfg, master_nodes=[("m0", master.address, master.port)],
                 worker_nodes=[("w1", WORKER_ADDR, port, os.path.join(tmp, "wdata"),
                                os.path.join(tmp, "wrun"))],
                 store_url=store.url,
                 tiers=[("MEM", os.path.join(tmp, "shm"), "64Mi", 0.95, 0.7)], block_size="1Mi")
    return cfg, port


# ---- GET /v1/blocks/0-1-0 ----


def test_file_id_zero_is_refused_and_cold_reads_go_on_fake_master(tmp_path):
    """~20 requests for file id 0 (in the old format and with an epoch) are 400 at once; a cold
    block read right after is answered promptly with the right bytes."""
    with Env(tmp_path, block_size=1 * MiB) as env:
        env.add(1, "a.bin", 3 * MiB)
        env.worker.start()
        bad = ["/v1/blocks/0-1-0", f"/v1/blocks/{EPOCH}-0-1-0",
               "/v1/blocks/0000000000000000-1-1-0"] * 7
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(len(bad)) as ex:
            codes = list(ex.map(lambda p: env.worker.get(p, timeout=10)[0], bad))
        assert codes == [400] * len(bad), codes
        assert time.monotonic() - t0 < 10
        t0 = time.monotonic()
        for i in range(3):
            status, headers, body = env.worker.get(f"/v1/blocks/{EPOCH}-1-1-{i}", timeout=20)
            assert status == 200 and body == env.block(1, i)
        assert time.monotonic() - t0 < 15, "cold reads after the file-id-0 requests were slow"
        assert env.worker.proc.poll() is None


# ---- the master's state lost, the worker's cache kept ----


class OneMasterEnv(RealEnv):
    """nginx + one real weir-master + one worker (the worker keeps its cache across the master's
    loss). 127.0.2.x."""

    def __init__(self, tmp, block_size=1 * MiB):
        super().__init__(tmp, block_size=block_size, n_masters=1)

    def read(self, path):
        """The whole file PATH read block by block through the worker."""
        e = self.cluster.stat(path)
        out = b""
        for i in range(max(1, -(-e["size"] // self.block_size))):
            status, _, body = self.worker.get(
                f"/v1/blocks/{e['epoch']}-{e['file_id']}-{e['version']}-{i}", timeout=30)
            assert status == 200, (status, body)
            out += body
        return e, out

    def tier_blocks(self):
        d = os.path.join(self.tmp, "shm", "weir", "w1")
        return sorted(f for f in os.listdir(d) if not f.startswith(".")) if os.path.isdir(d) \
            else []


def test_restored_master_never_serves_another_files_bytes(tmp_path):
    """The master's data directory is lost and the store changes; the master restarts empty and
    gives the new file the old one's id again (ids are allocated in the same order from an empty
    state), while the worker kept that id's blocks of before. The new file
    is read with its own bytes, and the worker drops the old blocks when it reports them."""
    with OneMasterEnv(tmp_path) as env:
        old = make_file(os.path.join(env.data, "a.bin"), 3 * MiB, 1)
        env.cluster.sync()
        env.worker.start()
        e1, got = env.read("/data/a.bin")
        # The state's ids count directories too (the LMDB store): the id is whatever the first
        # sync gave it; the empty master's sync below must give it again.
        assert got == old and e1["file_id"] >= 1
        old_blocks = env.tier_blocks()
        assert len(old_blocks) == 3 and all(b.startswith(e1["epoch"]) for b in old_blocks)

        m = env.cluster.masters[0]
        m.kill()
        shutil.rmtree(m.data_dir)
        os.unlink(os.path.join(env.data, "a.bin"))
        new = make_file(os.path.join(env.data, "b.bin"), 3 * MiB, 2)
        m.start()
        env.cluster.sync()
        e2, got = env.read("/data/b.bin")
        assert e2["file_id"] == e1["file_id"], "the scenario needs the file id reused"
        assert e2["epoch"] != e1["epoch"]
        assert got == new
        # The worker reported the old blocks on registration; the master told it to drop them.
        env.cluster.wait(lambda: not [b for b in env.tier_blocks()
                                      if b.startswith(e1["epoch"])],
                         timeout=30, what="the old epoch's blocks dropped")
        assert "name no current file" in env.worker.log()


# ---- a tier on a filesystem smaller than its quota ----


@pytest.mark.skipif(not have_tmpfs_namespace(),
                    reason="needs unshare -m and mount -t tmpfs (root in a mount namespace)")
def test_small_tmpfs_tier_evicts_instead_of_failing_fake_master(tmp_path):
    """The MEM level is a 3 MiB tmpfs with a 64 MiB quota: twelve 1 MiB blocks are read (every
    fill after the third needs eviction), every read succeeds with the right bytes, twice."""
    shm = os.path.join(str(tmp_path), "shm")
    with Env(tmp_path, block_size=1 * MiB,
             tiers=[("MEM", shm, "64Mi", 0.95, 0.7)]) as env:
        for fid in range(1, 5):
            env.add(fid, f"f{fid}.bin", 3 * MiB)
        os.makedirs(shm, exist_ok=True)
        # The worker runs in a mount namespace of its own where SHM is a 3 MiB tmpfs: gone with it.
        env.worker.wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                           f"mount -t tmpfs -o size=3m weir-test {shm} && exec \"$@\"", "sh"]
        env.worker.start()
        for rnd in range(2):
            for fid in range(1, 5):
                for i in range(3):
                    status, _, body = env.worker.get(f"/v1/blocks/{EPOCH}-{fid}-1-{i}",
                                                     timeout=30)
                    assert status == 200, (rnd, fid, i, status, body[:200])
                    assert body == env.block(fid, i), (rnd, fid, i)
        st = env.worker.status()
        assert st["evictions"] > 0
        assert env.worker.proc.poll() is None


# ---- every master down ----


def test_all_masters_down_cached_reads_go_on_uncached_fail_fast(tmp_path):
    """Three masters SIGKILLed while weir-fuse and the workers run, with 1 s attribute and entry
    timeouts (so that weir-fuse must ask again): a file read before comes back with the right
    bytes (from the local worker's cache, with the metadata weir-fuse had), and a path never
    looked up fails with EIO within seconds, not EAGAIN after the 30 s retry."""
    from weirtest.fusecluster import DemoCluster
    from weirtest.fusemount import drop_caches, sha256
    import conftest

    class ShortTimeouts(DemoCluster):
        def write_yaml(self):
            super().write_yaml()
            with open(self.yaml_path, "a") as f:
                f.write("  fuse: {attrTimeout: 1s, entryTimeout: 1s}\n")

    for name in ("weir-master", "weir-worker", "weir-fuse"):
        weir_binary(name)
    c = ShortTimeouts(str(tmp_path / "demo"), conftest.BUILD_DIR, scale=0.02,
                      fuse_env={"WEIR_LOG_LEVEL": "debug"})
    try:
        c.start()
        d = os.path.join(c.mnt, "hbase")
        cached = sorted(c.files)[0]
        src = os.path.join(c.store_root, "hbase", cached)
        assert sha256(os.path.join(d, cached)) == sha256(src)
        for m in c.masters:
            m.kill()
        time.sleep(2.5)  # past the attribute and entry timeouts
        drop_caches()
        t0 = time.monotonic()
        assert sha256(os.path.join(d, cached)) == sha256(src)
        took = time.monotonic() - t0
        assert took < 10, f"the cached read took {took:.1f}s"
        # Never looked up: no master can say what it is.
        t0 = time.monotonic()
        with pytest.raises(OSError) as e:
            os.stat(os.path.join(d, "never-listed"))
        took = time.monotonic() - t0
        assert e.value.errno == errno.EIO and took < 8, (e.value, took)
        # Read again, now that weir-fuse knows no master answers: at once.
        drop_caches()
        t0 = time.monotonic()
        assert sha256(os.path.join(d, cached)) == sha256(src)
        assert time.monotonic() - t0 < 5
        with open(c.fuse.log_path, errors="replace") as f:
            assert "No master answers" in f.read()
    finally:
        c.stop()


# ---- a file changed in the store without changing size, mtime or ETag ----


def test_same_size_overwrite_with_restored_mtime_is_found_by_load_verify(tmp_path):
    """nginx's ETag is the file's mtime and size in hex, so an overwrite with the same size and
    the old mtime is invisible to every validator the store offers: blocks cached before and
    fetched after mix (what this test shows first, as the issue saw it). `weirctl load
    --verify` re-reads the store, reports the differing blocks and drops them; the next read
    is the new content whole."""
    with OneMasterEnv(tmp_path) as env:
        path = os.path.join(env.data, "c.bin")
        old = make_file(path, 8 * MiB, 1)
        st = os.stat(path)
        env.cluster.sync()
        env.worker.start()
        e = env.cluster.stat("/data/c.bin")
        for i in range(3):
            status, _, _ = env.worker.get(
                f"/v1/blocks/{e['epoch']}-{e['file_id']}-{e['version']}-{i}", timeout=30)
            assert status == 200
        # Read-ahead caches the next two blocks too: wait until the worker holds what it will.
        counts = []
        env.cluster.wait(lambda: counts.append(env.worker.status()["blocks"]) or (
            len(counts) > 5 and len(set(counts[-5:])) == 1), timeout=30, what="fills settled")
        n_old = counts[-1]
        assert 3 <= n_old < 8, n_old
        new = make_file(path, 8 * MiB, 2)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        # the version weir holds still matches: nginx's ETag, or (when the sync took the file
        # from the index page after its minute ended) its size and listed minute
        size, mtime, etag = env.store.version_of("c.bin")
        assert etag == e["etag"] or (e["etag"] == "weir:minute" and size == e["size"]
                                     and mtime // 60 * 60 == e["mtime"]), (etag, mtime, e)
        _, mixed = env.read("/data/c.bin")
        assert mixed[:n_old * MiB] == old[:n_old * MiB] and mixed[n_old * MiB:] == new[n_old * MiB:]

        env.cluster.wait(lambda: (env.cluster.request("GET", "/v1/datasets/ds")[1] or {}).get(
            "cached") == 8 * MiB, timeout=30, what="the master knows the 8 cached blocks")
        p = env.cluster.weirctl("load", "--verify", "ds")
        assert p.returncode == 1, p.stdout + p.stderr
        assert f"{n_old} differed ({n_old} dropped)" in p.stdout, p.stdout
        assert p.stdout.count("differs from the store") == n_old, p.stdout
        _, got = env.read("/data/c.bin")
        assert got == new
        # Everything cached now matches: --verify says so and exits 0.
        env.cluster.wait(lambda: (env.cluster.request("GET", "/v1/datasets/ds")[1] or {}).get(
            "cached") == 8 * MiB, timeout=30, what="the master knows the refetched blocks")
        p = env.cluster.weirctl("load", "--verify", "ds")
        assert p.returncode == 0 and "8 cached blocks" in p.stdout, p.stdout + p.stderr


# ---- a store whose ETag is the content's MD5 (weirtest/md5store.py) ----


def test_blocks_are_checked_against_an_md5_etag_fake_master(tmp_path):
    """When every block of a file whose ETag is an MD5 is cached, their bytes are hashed: a file
    whose bytes match keeps its blocks; a store that sends other bytes than its ETag describes
    gets its blocks dropped (and counted), so they are not served again."""
    import hashlib
    from test_worker import WORKER_ADDR
    from weirtest.workerenv import FakeMaster, write_config

    tmp = str(tmp_path)
    os.chmod(tmp, 0o755)
    root = os.path.join(tmp, "store")
    good = make_file(os.path.join(root, "good.bin"), 3 * MiB, 1)
    make_file(os.path.join(root, "bad.bin"), 3 * MiB, 2)
    with Md5Store(root) as store, FakeMaster() as master:
        store.etags["bad.bin"] = '"' + hashlib.md5(b"other bytes").hexdigest() + '"'
        for fid, name in ((1, "good.bin"), (2, "bad.bin")):
            with open(os.path.join(root, name), "rb") as f:
                etag = store.etag(name, f.read())
            master.add_file(fid, "ds", "/data/" + name, 3 * MiB, 0, etag, MiB)
        cfg, port = one_worker_config(tmp, master, store)
        with Worker(weir_binary("weir-worker"), cfg, "w1", WORKER_ADDR, port, tmp) as w:
            for fid in (1, 2):
                for i in range(3):
                    status, _, body = w.get(f"/v1/blocks/{EPOCH}-{fid}-1-{i}", timeout=30)
                    # bad.bin: read-ahead may make it whole before its last blocks are asked
                    # for; once its check failed, the worker refuses the version (410)
                    assert status == 200 or (fid == 2 and status == 410), (fid, i, status)
                    if fid == 1:
                        assert body == good[i * MiB:(i + 1) * MiB]
            # Both files are checked once whole (good.bin may be checked twice when two of its
            # fills finish together): wait for bad.bin's failure, not for a count of checks.
            deadline = time.monotonic() + 15
            while True:
                m = w.metrics()
                if (m.get("weir_worker_content_checks_total", 0) >= 2 and
                        m.get("weir_worker_content_check_failures_total", 0) >= 1):
                    break
                assert time.monotonic() < deadline, m
                time.sleep(0.2)
            # good.bin stays whole; bad.bin is never whole in the cache (each time it became
            # whole it was dropped; a read racing the drop may have cached a block again)
            tier = os.path.join(tmp, "shm", "weir", "w1")
            ids = {f.split(".")[0] for f in os.listdir(tier) if not f.startswith(".")}
            assert {f"{EPOCH}-1-1-{i}" for i in range(3)} <= ids, ids
            assert not {f"{EPOCH}-2-1-{i}" for i in range(3)} <= ids, ids
            assert "do not hash to the MD5 the store gave" in w.log()


def test_an_sse_kms_etag_is_not_taken_for_the_content_md5(tmp_path):
    """S3 objects encrypted with SSE-KMS have an ETag of 32 hex digits that is not the MD5 of
    their bytes. Before, a worker hashed such a file once it was whole, found "a mismatch",
    dropped its good blocks and refused the version (410) from then on: every SSE-KMS file was
    readable once. The store's x-amz-server-side-encryption: aws:kms now skips the check, and a
    mismatch message from another worker for such a version drops nothing (409)."""
    import hashlib
    import json
    import urllib.error
    import urllib.request
    from test_worker import WORKER_ADDR
    from weirtest.workerenv import FakeMaster, write_config

    tmp = str(tmp_path)
    os.chmod(tmp, 0o755)
    root = os.path.join(tmp, "store")
    data = make_file(os.path.join(root, "kms.bin"), 3 * MiB, 3)
    with Md5Store(root) as store, FakeMaster() as master:
        # what S3 sends for an SSE-KMS object: an MD5-looking ETag of other bytes
        store.etags["kms.bin"] = '"' + hashlib.md5(b"kms ciphertext").hexdigest() + '"'
        store.sse["kms.bin"] = "aws:kms"
        master.add_file(1, "ds", "/data/kms.bin", 3 * MiB, 0, store.etags["kms.bin"], MiB)
        cfg, port = one_worker_config(tmp, master, store)
        with Worker(weir_binary("weir-worker"), cfg, "w1", WORKER_ADDR, port, tmp,
                    env={"WEIR_LOG_LEVEL": "debug"}) as w:
            for i in range(3):
                status, _, body = w.get(f"/v1/blocks/{EPOCH}-1-1-{i}", timeout=30)
                assert status == 200 and body == data[i * MiB:(i + 1) * MiB], (i, status)
            # the block that made the file whole logs the skipped check (after its answer)
            deadline = time.monotonic() + 30
            while "kms.bin skipped: the store says its ETag is not an MD5" not in w.log():
                assert time.monotonic() < deadline, w.log()[-3000:]
                time.sleep(0.2)
            assert "do not hash to the MD5" not in w.log()
            assert w.metrics().get("weir_worker_content_check_failures_total", 0) == 0
            for i in range(3):  # still cached, still served
                status, _, body = w.get(f"/v1/blocks/{EPOCH}-1-1-{i}?cache=only", timeout=30)
                assert status == 200 and body == data[i * MiB:(i + 1) * MiB], (i, status)
            req = urllib.request.Request(
                f"http://{WORKER_ADDR}:{port}/v1/content/mismatch", method="POST",
                data=json.dumps({"file": f"{EPOCH}-1-1-0", "blocks": 3,
                                 "path": "/data/kms.bin"}).encode(),
                headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(req, timeout=30)
            assert e.value.code == 409, e.value.read()
            for i in range(3):
                status, _, _ = w.get(f"/v1/blocks/{EPOCH}-1-1-{i}?cache=only", timeout=30)
                assert status == 200, (i, status)
