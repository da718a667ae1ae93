"""Many small files through weir-fuse on a real cluster (three weir-masters and weir-workers on
127.0.4.1-3, nginx on 127.0.4.4, weir-fuse on node1): `tar` of thousands of one-block files gives
the store's bytes, a file changed upstream is read as its new bytes after a sync (never a mix of
the two), although weir-fuse still holds a descriptor of the old version's block, and the
descriptors weir-fuse holds stay bounded however many files are read. Each test runs with files
opened through the daemon (the default) and with WEIR_FUSE_NO_OPEN=1 (the kernel opens them
without asking); each builds its own cluster and stops it in a finally block.
"""

import errno
import io
import os
import random
import shutil
import subprocess
import tarfile
import tempfile
import time

import pytest

import conftest
from conftest import weir_binary
from weirtest.fusecluster import DemoCluster
from weirtest.stores import make_world_readable

FD_CACHE = 64  # reader_options.fd_cache in services/fuse/fs.c
DIRS, PER_DIR = 3, 1000


def small_files(root):
    """3,000 files of 0-8 KiB (a 16 MiB block holds each whole), in three directories."""
    rnd = random.Random(16)
    files = {}
    for d in range(DIRS):
        for i in range(PER_DIR):
            rel = f"d{d}/f{i:04d}"
            path = os.path.join(root, "hbase", rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            size = rnd.choice([0, 1, 4095, 4096, 4097, rnd.randrange(1, 8192)])
            with open(path, "wb") as f:
                f.write(rnd.randbytes(size))
            files[rel] = size
    make_world_readable(root)
    return files


def tar_members(cwd):
    """{relative path: bytes} of the regular files in `tar -cf - .` run in CWD."""
    out = subprocess.run(["tar", "-cf", "-", "."], cwd=cwd, check=True, capture_output=True,
                         timeout=600).stdout
    got = {}
    with tarfile.open(fileobj=io.BytesIO(out)) as t:
        for m in t:
            if m.isfile():
                got[os.path.normpath(m.name)] = t.extractfile(m).read()
    return got


def store_members(c):
    root = os.path.join(c.store_root, "hbase")
    got = {}
    for rel in c.files:
        with open(os.path.join(root, rel), "rb") as f:
            got[rel] = f.read()
    return got


def tier_fds(pid, mem_dir):
    """The names of the tier files weir-fuse holds descriptors of."""
    names = []
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue  # closed meanwhile
        if target.startswith(mem_dir + "/"):
            names.append(os.path.basename(target))
    return names


def all_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def read_whole(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(params=["open", "no_open"])
def cluster(request):
    for name in ("weir-master", "weir-worker", "weir-fuse"):
        weir_binary(name)
    d = tempfile.mkdtemp(prefix="weir-smallfiles-")
    env = {"WEIR_FUSE_RETRY": "20s", "WEIR_FUSE_REFRESH": "1s"}
    if request.param == "no_open":
        env["WEIR_FUSE_NO_OPEN"] = "1"
    c = DemoCluster(d, conftest.BUILD_DIR, dataset=small_files, fuse_env=env)
    try:
        c.start()
        yield c
    finally:
        try:
            c.stop()
        finally:
            shutil.rmtree(d, ignore_errors=True)


def test_tar_of_small_files_is_the_store_and_descriptors_stay_bounded(cluster):
    """A cold tar and a warm one of 3,000 files give the store's bytes; afterwards weir-fuse holds
    at most FD_CACHE tier-file descriptors, and its descriptors grew by a bound that does not
    depend on the number of files (the kept ones, the idle worker connections, its threads'
    HTTP connections), not by one per file."""
    c = cluster
    mnt = os.path.join(c.mnt, "hbase")
    pid = c.fuse.proc.pid
    before = all_fds(pid)
    want = store_members(c)
    assert tar_members(mnt) == want  # cold: prefetch across files fills them
    assert tar_members(mnt) == want  # warm
    kept = tier_fds(pid, os.path.realpath(c.mem_dir))
    print(f"after two tars of {len(want)} files: {len(kept)} tier descriptors, "
          f"{all_fds(pid)} descriptors in all ({before} before)")
    assert 0 < len(kept) <= FD_CACHE, kept
    # 64 kept blocks, 8 idle worker connections, and per request or prefetch thread (32 + 16 +
    # 4) its own connections to a master, to workers over HTTP and to the store at most: a
    # bound set by the threads, far below one descriptor per file
    assert all_fds(pid) - before <= FD_CACHE + 8 + 3 * 52, (before, all_fds(pid))


def test_file_changed_upstream_is_read_new_never_mixed_despite_a_kept_descriptor(cluster):
    """A small file read through the mount (its block's descriptor kept by weir-fuse) is replaced
    upstream by other bytes of the same size. Until weir-fuse learns of the sync's new version it
    reads the old bytes, after it the new ones: never a mix, although the old block's descriptor
    is still kept; a tar afterwards gives the store's bytes, the new file included."""
    c = cluster
    mnt = os.path.join(c.mnt, "hbase")
    pid = c.fuse.proc.pid
    mem_dir = os.path.realpath(c.mem_dir)
    rel = "d1/f0500"
    src = os.path.join(c.store_root, "hbase", rel)
    old = read_whole(src)
    new = bytes(b ^ 0x5A for b in old) if old else b""
    if not new:  # the scenario needs bytes: pick the next non-empty file
        rel = next(r for r in sorted(c.files) if r > rel and c.files[r] > 0)
        src = os.path.join(c.store_root, "hbase", rel)
        old = read_whole(src)
        new = bytes(b ^ 0x5A for b in old)
    path = os.path.join(mnt, rel)
    e1 = c.stat("/hbase/" + rel)
    old_block = f"{e1['epoch']}-{e1['file_id']}-{e1['version']}-0"

    def read_uncached():
        """The file read through weir-fuse, not from the kernel's pages of it."""
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            return os.read(fd, len(old) + 1)
        finally:
            os.close(fd)

    def kept():
        assert read_uncached() == old
        return any(n.startswith(old_block + ".") for n in tier_fds(pid, mem_dir))

    # weir-fuse keeps the block's descriptor once the block is whole on the worker (a read
    # during its fill gets a descriptor that is not kept)
    c.wait(kept, 30, "weir-fuse keeping the block's descriptor")

    tmp = src + ".new"
    with open(tmp, "wb") as f:
        f.write(new)
    os.chmod(tmp, 0o644)
    os.utime(tmp, (time.time() + 5, time.time() + 5))  # a new ETag even within a second
    os.replace(tmp, src)
    code, body = c.request("POST", "/v1/datasets/hbase/sync", body={})
    assert code in (200, 202, 409), body
    c.wait(lambda: c.stat("/hbase/" + rel)["version"] != e1["version"], 60,
           "the sync giving the file a new version")

    deadline = time.monotonic() + 60
    while True:
        try:
            got = read_whole(path)
        except OSError as e:  # a read of the old version's uncached bytes may fail; never mix
            assert e.errno == errno.EIO, e
            got = None
        if got == new:
            break
        assert got in (old, None), "the file was read mixed"
        assert time.monotonic() < deadline, "the new version was never read"
        time.sleep(0.5)
    # the old version's descriptor may still be kept: it was not what served the new bytes
    print(f"old block's descriptor still kept: "
          f"{any(n.startswith(old_block + '.') for n in tier_fds(pid, mem_dir))}")
    assert read_whole(path) == new
    want = store_members(c)
    assert want[rel] == new
    assert tar_members(mnt) == want
