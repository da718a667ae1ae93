"""weir-fuse, mounted for real, on 127.0.4.x.

Two groups:
- against a stand-in master and worker (weirtest/fusefake.py): exact checks of what the FUSE
  daemon itself does (block math at the edges, descriptors passed by the local worker, 307s to
  the leader, a dead worker, a changed file, restarts); these need only weir-fuse;
- the seeds' demo on three real nodes (weir-master, weir-worker, nginx): see the second half.

Every fixture unmounts (fusermount3 -uz) and kills its process groups in its finalizer.
"""

import errno
import fcntl
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import BUILD_DIR, weir_binary
from weirtest import fusefake
from weirtest.daemon import DbusDaemon
from weirtest.fusemount import FuseDaemon, drop_caches, lazy_unmount, sha256, yaml_config
from weirtest.net import free_port

BS = 1 << 20  # block size of the stand-in dataset: small, so that boundaries are many
SIZES = {"empty": 0, "one": 1, "bs-1": BS - 1, "bs": BS, "bs+1": BS + 1,
         "multi": 7 * BS + 4321, "big": 24 * BS + 17}


class FakeSetup:
    """Source tree, two stand-in masters (127.0.4.10/.11), one local worker (127.0.4.10),
    and weir-fuse mounted on it."""

    def __init__(self, tmp, n_small=0, attr_timeout=None, fuse_env=None):
        self.tmp = tmp
        self.src = os.path.join(tmp, "src", "data")
        os.makedirs(self.src)
        rnd = random.Random(42)
        for name, size in SIZES.items():
            with open(os.path.join(self.src, name), "wb") as f:
                f.write(rnd.randbytes(size))
        if n_small:
            d = os.path.join(self.src, "small")
            os.makedirs(d)
            for i in range(n_small):
                with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
                    f.write(b"%d\n" % i * (i % 7 + 1))
        self.tree = fusefake.Tree("ds", {"data": (self.src, "file://" + self.src)}, BS)
        self.addr = ["127.0.4.10", "127.0.4.11"]
        self.mport = [free_port(a) for a in self.addr]
        self.wport = free_port(self.addr[0])
        nodes = [
            {"name": "n1", "address": self.addr[0], "roles": ["master", "worker", "fuse"],
             "dir": os.path.join(tmp, "n1")},
            {"name": "n2", "address": self.addr[1], "roles": ["master"],
             "dir": os.path.join(tmp, "n2")},
            {"name": "n3", "address": "127.0.4.12", "roles": ["master"],
             "dir": os.path.join(tmp, "n3")},
        ]
        self.config = os.path.join(tmp, "cluster.yaml")
        yaml_config(self.config, nodes, "ds", [("data", "file://" + self.src)],
                    block_size="1Mi", master_replicas=3, workers=1, attr_timeout=attr_timeout)
        # ports per node: the YAML's defaults are shared by every test range, so rewrite them
        with open(self.config) as f:
            text = f.read()
        text = text.replace(f"address: {self.addr[0]},",
                            f"address: {self.addr[0]}, masterPort: {self.mport[0]}, "
                            f"workerPort: {self.wport},")
        text = text.replace(f"address: {self.addr[1]},",
                            f"address: {self.addr[1]}, masterPort: {self.mport[1]},")
        with open(self.config, "w") as f:
            f.write(text)
        self.state = {"leader": f"{self.addr[0]}:{self.mport[0]}"}
        self.mnt = os.path.join(tmp, "mnt")
        self.masters, self.worker = [], None
        self.fuse = FuseDaemon(weir_binary("weir-fuse"), self.config, "n1", "ds", self.mnt, tmp,
                               env=dict({"WEIR_FUSE_RETRY": "8s",
                                         # these tests count the stand-in worker's fills and
                                         # requests exactly: no prefetch of neighbouring files
                                         # (test_prefetch.py tests that), no listing ahead of
                                         # walks (test_fuse_tree.py)
                                         "WEIR_FUSE_PREFETCH_FILES": "0", "WEIR_FUSE_XATTRS": "1",
                                         "WEIR_FUSE_LIST_AHEAD": "0"},
                                        **(fuse_env or {})))
        try:  # no fixture owns this object yet: a failure here stops what was started
            for a, p in zip(self.addr, self.mport):
                self.masters.append(fusefake.Master(self.tree, a, p, self.state).start())
            self.worker = fusefake.Worker(self.tree, "n1", self.addr[0], self.wport,
                                          os.path.join(tmp, "cache"),
                                          os.path.join(tmp, "n1", "run")).start()
            self.fuse.start()
        except BaseException:
            self.close()
            raise

    def path(self, name):
        return os.path.join(self.mnt, "data", name)

    def source(self, name):
        return os.path.join(self.src, name)

    def close(self):
        # the fakes stop last and whatever the daemon's stop raised: they run in this process
        try:
            try:
                self.fuse.stop()
            finally:
                self.fuse.kill()
                lazy_unmount(self.mnt)
        finally:
            for m in self.masters:
                m.stop()
            if self.worker:
                self.worker.stop()


@pytest.fixture
def tmp(tmp_path):
    """A private directory outside pytest's tmp_path: conftest's end-of-session sweep of
    another, concurrent pytest session lazily unmounts FUSE mounts under /pytest-* paths."""
    d = tempfile.mkdtemp(prefix="weir-fusetest-")
    try:
        yield d
    finally:
        lazy_unmount(os.path.join(d, "mnt"))
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def fake(tmp):
    s = FakeSetup(tmp)
    try:
        yield s
    finally:
        s.close()


def read(path, offset=0, length=None):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read() if length is None else f.read(length)


def test_listing_sizes_and_attributes(fake):
    assert os.listdir(fake.mnt) == ["data"]
    names = sorted(os.listdir(os.path.join(fake.mnt, "data")))
    assert names == sorted(SIZES)
    for name, size in SIZES.items():
        st = os.stat(fake.path(name))
        assert st.st_size == size
        assert st.st_mode & 0o777 == 0o444
        assert st.st_blocks * 512 >= size  # du counts them
    du = subprocess.run(["du", "-sb", fake.mnt], capture_output=True, text=True, check=True)
    assert int(du.stdout.split()[0]) >= sum(SIZES.values())


def wire_page(entries, more=False, epoch=0xABC):
    """A compact listing page (docs/api.md): ENTRIES [(name, size or None for a directory)]."""
    body = struct.pack("<4sIQII", b"WLST", 1, epoch, len(entries), 1 if more else 0)
    for i, (name, size) in enumerate(entries):
        n = name.encode()
        body += struct.pack("<BBHq", 2 if size is None else 1, 0, len(n), 1700000000)
        if size is not None:
            body += struct.pack("<QQQ", size, 1000 + i, 1)
        body += n
    return body


def test_malformed_compact_listing_is_refused(fake):
    """A master answering format=binary with a malformed page: that readdir fails with EIO (no
    crash, no stall, nothing of the page shown) and the log says what was wrong; a good page
    afterwards lists."""
    good = wire_page([("abc", 7), ("sub", None)])
    cases = [
        (wire_page([("b", 1), ("a", 2)]), "entry 1 ('a') does not sort after 'b'"),
        (good[:-1], "the name of entry 1 is cut short"),
        (good + b"x", "1 bytes after the last entry"),
        (wire_page([("a/b", 1)]), "entry 0 has an invalid name"),
        (b"WLST" + good[4:8].replace(b"\1", b"\2") + good[8:], "version 2, this build reads 1"),
        (wire_page([("abc", 7)], epoch=0), "without an epoch"),
    ]
    d = os.path.join(fake.mnt, "data")
    for body, why in cases:
        fake.state["wire_pages"] = {"/data": body}
        with pytest.raises(OSError) as e:
            os.listdir(d)
        assert e.value.errno == errno.EIO, why
        assert f"Bad listing page from the master for /data: {why}" in fake.fuse.log() or \
            (why == "without an epoch" and "for /data without an epoch" in fake.fuse.log()), why
    fake.state["wire_pages"] = {"/data": good}
    assert os.listdir(d) == ["abc", "sub"]
    assert os.stat(os.path.join(d, "abc")).st_size == 7
    assert os.path.isdir(os.path.join(d, "sub"))


def test_sizes_at_block_edges_are_byte_identical(fake):
    for name in SIZES:
        assert read(fake.path(name)) == read(fake.source(name)), name


def test_reads_across_block_boundaries(fake):
    src = read(fake.source("big"))
    with open(fake.path("big"), "rb", buffering=0) as f:
        for k in range(1, 24):
            for delta, length in ((-1, 2), (-4096, 8192), (-17, BS + 34), (0, 1), (-1, 1)):
                off = k * BS + delta
                assert os.pread(f.fileno(), length, off) == src[off:off + length], (k, delta)
        # one read spanning three blocks, and reads past the end
        assert os.pread(f.fileno(), 2 * BS + 2, BS - 1) == src[BS - 1:3 * BS + 1]
        assert os.pread(f.fileno(), 100, len(src) - 10) == src[-10:]
        assert os.pread(f.fileno(), 100, len(src) + 10) == b""


def test_random_preads_match_the_source(fake):
    src = read(fake.source("big"))
    rnd = random.Random(7)
    with open(fake.path("big"), "rb", buffering=0) as f:
        for _ in range(3000):
            off = rnd.randrange(0, len(src))
            length = rnd.choice([1, 512, 4096, 65536, 131072, rnd.randrange(1, 3 * BS)])
            assert os.pread(f.fileno(), length, off) == src[off:off + length]


def test_cached_blocks_come_through_passed_descriptors(fake):
    assert sha256(fake.path("multi")) == sha256(fake.source("multi"))
    served = fake.worker.served
    assert fake.worker.fills == 8  # every block filled once, through the local worker
    drop_caches()
    assert sha256(fake.path("multi")) == sha256(fake.source("multi"))
    # the second read never went over HTTP: the worker handed out descriptors instead
    assert fake.worker.served == served
    assert fake.worker.fd_opens >= 8
    xattrs = {k: os.getxattr(fake.path("multi"), k) for k in os.listxattr(fake.path("multi"))}
    assert xattrs["user.weir.ufs"] == ("file://" + fake.source("multi")).encode()
    assert xattrs["user.weir.version"] == b"1"
    assert float(xattrs["user.weir.cached"]) == 1.0


def test_reads_are_sized_so_that_libfuse_can_splice_them(fake):
    """libfuse splices a read's reply from the tier file only when its pipe holds the reply plus
    (buffers + 2) pages; pipes grow past fs.pipe-max-size only with CAP_SYS_RESOURCE. The mount's
    max_read must fit, else every cached read is copied twice in weir-fuse."""
    with open("/proc/sys/fs/pipe-max-size") as f:
        pipe_max = int(f.read())
    r, w = os.pipe()
    try:
        fcntl.fcntl(r, fcntl.F_SETPIPE_SZ, 2 << 20)
        grows = True
    except OSError:
        grows = False
    finally:
        os.close(r)
        os.close(w)
    with open("/proc/self/mounts") as f:
        opts = [line.split()[3] for line in f if line.split()[1] == fake.mnt]
    assert len(opts) == 1
    max_read = int(next(o for o in opts[0].split(",") if o.startswith("max_read="))[9:])
    # libfuse 3.14 wants (buffers + 2) pages besides the data; a read touches at most
    # 1 MiB / BS + 2 blocks, one buffer each; one page more for the header
    page = os.sysconf("SC_PAGE_SIZE")
    reserve = (min(16, (1 << 20) // BS + 2) + 3) * page
    if grows:
        assert max_read == 1 << 20
    else:
        assert max_read == min(1 << 20, (pipe_max - reserve) // page * page)
        assert max_read + reserve - page + 16 <= pipe_max  # the reply fits: it is spliced
    # reads of that size at any offset still return the right bytes
    src = read(fake.source("big"))
    with open(fake.path("big"), "rb", buffering=0) as f:
        for off in (0, max_read, BS - 7, 5 * BS + 12345):
            assert os.pread(f.fileno(), 1 << 20, off) == src[off:off + (1 << 20)]


def _built_with_passthrough():
    try:
        with open(os.path.join(BUILD_DIR, "weir-build.h")) as f:
            return "#define HAVE_FUSE_PASSTHROUGH 1" in f.read()
    except OSError:
        return False


def _read_while_stopped(fuse, fd, length, timeout=10):
    """pread(fd) with weir-fuse stopped (SIGSTOP): only the kernel can answer it."""
    result = {}

    def reader():
        try:
            result["data"] = os.pread(fd, length, 0)
        except OSError as e:
            result["error"] = e

    os.kill(fuse.proc.pid, signal.SIGSTOP)
    try:
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(timeout)
        done = not t.is_alive()
    finally:
        os.kill(fuse.proc.pid, signal.SIGCONT)
    t.join(30)
    return done, result


def test_passthrough_of_a_cached_one_block_file(fake):
    """libfuse >= 3.17 and Linux >= 6.9: a file of one block cached on this node is read by the
    kernel from the worker's tier file. Proof: it reads with weir-fuse stopped, while a file that
    is not passed through cannot."""
    if not _built_with_passthrough():
        pytest.skip(f"weir-fuse in {BUILD_DIR} is built without FUSE passthrough (libfuse < 3.17; "
                    "Debian 12 has 3.14)")
    if "the kernel does not offer it" in fake.fuse.log():
        pytest.skip("the kernel does not offer FUSE passthrough (Linux >= 6.9)")
    want = read(fake.source("bs-1"))
    assert read(fake.path("bs-1")) == want  # first open: cached, fills the block
    assert fake.worker.fills == 1
    drop_caches()
    fd = os.open(fake.path("bs-1"), os.O_RDONLY)  # now wholly on this node: passed through
    try:
        done, result = _read_while_stopped(fake.fuse, fd, BS)
        assert done, "a passthrough read needed the daemon"
        assert result.get("data") == want
        # a second open shares the backing file; the bytes are the same
        fd2 = os.open(fake.path("bs-1"), os.O_RDONLY)
        try:
            assert os.pread(fd2, 4096, BS - 4096) == want[BS - 4096:]
        finally:
            os.close(fd2)
    finally:
        os.close(fd)
    # a multi-block file is never passed through: with the daemon stopped its read waits
    assert read(fake.path("multi")) == read(fake.source("multi"))
    drop_caches()
    fd = os.open(fake.path("multi"), os.O_RDONLY)
    try:
        done, result = _read_while_stopped(fake.fuse, fd, BS, timeout=1)
        assert not done or "error" in result
    finally:
        os.close(fd)
    # after the last close the backing file is released: opening again works, as often as asked
    for _ in range(3):
        assert read(fake.path("bs-1")) == want
    assert "refused by the kernel" not in fake.fuse.log()


def test_passthrough_open_across_a_new_version(tmp):
    """The kernel allows one backing file per inode and wants every open of it to use that file.
    A file whose new version is reported while a passthrough open of the old one lives: new opens
    read the old version, whole, until the last open closes; then the new version."""
    if not _built_with_passthrough():
        pytest.skip(f"weir-fuse in {BUILD_DIR} is built without FUSE passthrough (libfuse < 3.17; "
                    "Debian 12 has 3.14)")
    s = FakeSetup(tmp, attr_timeout="1s")
    try:
        if "the kernel does not offer it" in s.fuse.log():
            pytest.skip("the kernel does not offer FUSE passthrough (Linux >= 6.9)")
        old = read(s.path("bs"))
        assert old == read(s.source("bs"))
        with open(s.path("bs"), "rb") as f:  # passed through: the block is cached now
            new = bytes(b ^ 0xFF for b in old)
            with open(s.source("bs"), "wb") as w:
                w.write(new)
            fid = s.tree.entry("/data/bs")["file_id"]
            s.tree.versions[fid] = 2
            time.sleep(1.5)  # the attr timeout
            assert read(s.path("bs")) == old
            assert f.read() == old
        assert read(s.path("bs")) == new
        deadline = time.monotonic() + 10
        while True:  # the worker caches version 2; then it is passed through again
            with open(s.path("bs"), "rb") as f:
                done, result = _read_while_stopped(s.fuse, f.fileno(), BS, timeout=2)
            assert result.get("data", new) == new
            if done:
                break
            assert time.monotonic() < deadline, "version 2 was never passed through"
    finally:
        s.close()


def test_dead_worker_falls_back_to_the_store(fake):
    fake.worker.stop()
    fake.worker = None
    drop_caches()
    assert sha256(fake.path("big")) == sha256(fake.source("big"))


def test_blocks_held_by_another_worker_are_read_from_it(fake, tmp):
    # a second worker (n1's peer at 127.0.4.11) holds every block of "multi"
    other = _add_second_worker(fake, tmp)
    try:
        fid = fake.tree.entry("/data/multi")["file_id"]
        for i in range(8):
            other.block(fid, 1, i)
        fake.fuse.start()
        assert sha256(fake.path("multi")) == sha256(fake.source("multi"))
        assert other.served >= SIZES["multi"]
        assert fake.worker.fills == 0  # the local worker was not asked to fill
        # that worker dies mid-way: the rest comes through the local worker
        other.stop()
        drop_caches()
        assert sha256(fake.path("multi")) == sha256(fake.source("multi"))
    finally:
        other.stop()


def _add_second_worker(fake, tmp):
    """n2 (127.0.4.11) becomes a worker too: a stand-in on its own port, and weir-fuse
    restarted with the YAML that says so. Returns the stand-in, started."""
    other = fusefake.Worker(fake.tree, "n2", fake.addr[1], free_port(fake.addr[1]),
                            os.path.join(tmp, "cache2"))
    fake.fuse.stop()
    with open(fake.config) as f:
        text = f.read()
    text = text.replace(f"masterPort: {fake.mport[1]},",
                        f"masterPort: {fake.mport[1]}, workerPort: {other.port},")
    n2 = os.path.join(fake.tmp, "n2")
    text = text.replace(f"roles: [master], dataDir: {n2}", f"roles: [master, worker], dataDir: {n2}")
    text = text.replace("replicas: 1\n", "replicas: 2\n")
    with open(fake.config, "w") as f:
        f.write(text)
    return other.start()


def _round_trips(fake, worker, name):
    """Reads NAME cold (sequentially, 128 KiB at a time) and returns the master's location
    requests, the local socket's requests and misses, and the blocks read."""
    blocks = (SIZES[name] + BS - 1) // BS
    m0 = sum(m.blocks_requests for m in fake.masters)
    s0, x0 = worker.socket_requests, worker.socket_misses
    with open(fake.path(name), "rb") as f:
        data = b""
        while chunk := f.read(128 << 10):
            data += chunk
    assert data == read(fake.source(name))
    return (sum(m.blocks_requests for m in fake.masters) - m0, worker.socket_requests - s0,
            worker.socket_misses - x0, blocks)


def test_cold_read_round_trips_per_block(fake, tmp):
    """What a cold block costs in round trips (bench/README.md "Cold read round trips"): a block
    the local worker fills is one WAIT on its socket and no miss; a block another worker holds
    asks nothing of the local socket. Location lookups stay within the one-second cache."""
    other = _add_second_worker(fake, tmp)
    try:
        fake.fuse.start()
        master, sock, miss, blocks = _round_trips(fake, fake.worker, "multi")
        print(f"local fill: {blocks} blocks, master {master}, socket {sock}, misses {miss}")
        assert miss == 0
        assert sock <= 2 * blocks  # WAITs of concurrent reads and prefetch may meet
        assert master <= blocks + 1
        fid = fake.tree.entry("/data/big")["file_id"]
        for i in range(25):
            other.block(fid, 1, i)
        master, sock, miss, blocks = _round_trips(fake, fake.worker, "big")
        print(f"remote holder: {blocks} blocks, master {master}, socket {sock}, misses {miss}")
        # none, but for a span whose fetch from n2 failed on this loaded machine: then the local
        # worker is the next source (and fills that block)
        assert sock <= 2 and miss == 0
        assert fake.worker.fills <= 8 + sock  # "multi"; "big" came from n2
        assert master <= blocks + 1
    finally:
        other.stop()


def test_masters_redirect_and_fail_over(fake):
    # the leader moves to the second master: the first one answers 307 to it
    fake.state["leader"] = f"{fake.addr[1]}:{fake.mport[1]}"
    before = fake.masters[1].requests
    assert sha256(fake.path("bs+1")) == sha256(fake.source("bs+1"))
    assert fake.masters[1].requests > before
    # then that leader dies and, after an election gap (503), the first one leads again
    fake.masters[1].stop()
    fake.state["leader"] = None
    threading.Timer(1.0, lambda: fake.state.update(
        leader=f"{fake.addr[0]}:{fake.mport[0]}")).start()
    drop_caches()
    assert sha256(fake.path("big")) == sha256(fake.source("big"))
    fake.masters[1] = fusefake.Master(fake.tree, "127.0.4.13", free_port("127.0.4.13"),
                                      fake.state)  # placeholder so close() can stop it
    fake.masters[1].start()


def test_sixteen_concurrent_readers(fake):
    want = sha256(fake.source("big"))
    results = []

    def reader(i):
        if i % 2:
            drop = None
        results.append(sha256(fake.path("big"), chunk=(64 << 10) * (i % 4 + 1)))

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [want] * 16


def test_read_only(fake):
    for call in (lambda: open(fake.path("new"), "w"),
                 lambda: open(fake.path("one"), "r+b"),
                 lambda: os.mkdir(fake.path("d")),
                 lambda: os.unlink(fake.path("one")),
                 lambda: os.rename(fake.path("one"), fake.path("two")),
                 lambda: os.setxattr(fake.path("one"), "user.x", b"1")):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == errno.EROFS


def test_sigterm_unmounts_cleanly(fake):
    assert fake.fuse.stop() == 0
    with open("/proc/self/mounts") as f:
        assert fake.mnt not in f.read()


def test_sigkill_then_restart_mounts_again(fake):
    os.stat(fake.path("one"))
    fake.fuse.kill()
    with pytest.raises(OSError) as e:
        os.statvfs(fake.mnt)
    assert e.value.errno == errno.ENOTCONN
    fake.fuse.start()  # detects the stale mount, detaches it, mounts again
    assert read(fake.path("bs-1")) == read(fake.source("bs-1"))
    with open("/proc/self/mounts") as f:
        assert sum(1 for line in f if line.split()[1] == fake.mnt) == 1


def test_new_version_drops_the_page_cache(tmp):
    # two blocks: never passed through, so this is about the kernel's page cache of the file
    # (test_passthrough_open_across_a_new_version has the one-block case)
    s = FakeSetup(tmp, attr_timeout="1s")
    try:
        old = read(s.path("bs+1"))
        assert old == read(s.source("bs+1"))
        # the store gets a new file of the same size; the master reports version 2
        new = bytes(b ^ 0xFF for b in old)
        with open(s.source("bs+1"), "wb") as f:
            f.write(new)
        fid = s.tree.entry("/data/bs+1")["file_id"]
        s.tree.versions[fid] = 2
        with open(s.path("bs+1"), "rb") as f:  # kept open across the change
            time.sleep(1.5)  # the attr timeout
            assert read(s.path("bs+1")) == new
            f.seek(0)
            assert f.read() == new
    finally:
        s.close()


def test_new_version_seen_by_the_periodic_check(tmp):
    """With Fluid's two-hour attr timeout, the periodic check of the files the kernel knows
    still drops the pages of a file whose version changed."""
    s = FakeSetup(tmp, fuse_env={"WEIR_FUSE_REFRESH": "1s"})
    try:
        old = read(s.path("bs-1"))
        new = bytes(b ^ 0x5A for b in old)
        with open(s.source("bs-1"), "wb") as f:
            f.write(new)
        fid = s.tree.entry("/data/bs-1")["file_id"]
        s.tree.versions[fid] = 2
        deadline = time.monotonic() + 10
        while read(s.path("bs-1")) != new:
            assert time.monotonic() < deadline, "the new version never showed"
            time.sleep(0.2)
        assert os.getxattr(s.path("bs-1"), "user.weir.version") == b"2"
    finally:
        s.close()


def test_ten_thousand_small_files(tmp):
    s = FakeSetup(tmp, n_small=10000)
    try:
        d = os.path.join(s.mnt, "data", "small")
        names = os.listdir(d)
        assert len(names) == 10000
        for i in range(0, 10000):
            assert os.stat(os.path.join(d, f"f{i:05d}")).st_size == len(b"%d\n" % i) * (i % 7 + 1)
        # contents: every 37th file, which meets every size (i % 7) and the listing's pages from
        # first to last (each read is a few round trips to the Python stand-ins)
        for i in list(range(0, 10000, 37)) + [9999]:
            with open(os.path.join(d, f"f{i:05d}"), "rb") as f:
                assert f.read() == b"%d\n" % i * (i % 7 + 1)
    finally:
        s.close()


# ---- the seeds' demo on three real nodes (weir-master, weir-worker, weir-fuse, nginx) ----
#
# 127.0.4.1-3: node1..node3, each a master (Raft) and a worker; 127.0.4.4: nginx with the
# generated hbase-like dataset (six files, half the seeds' ~553 MiB by default, so that the client
# tarball still spans two 16 MiB blocks; WEIR_FUSE_DEMO_SCALE=1 for the seeds' sizes); weir-fuse
# on node1. The nginx access log counts the bytes the store sent.

DEMO_SCALE = float(os.environ.get("WEIR_FUSE_DEMO_SCALE", "0.5"))


@pytest.fixture(scope="module")
def demo():
    from weirtest.fusecluster import DemoCluster
    import conftest

    for name in ("weir-master", "weir-worker", "weir-fuse"):
        weir_binary(name)
    d = tempfile.mkdtemp(prefix="weir-fusedemo-")
    c = DemoCluster(d, conftest.BUILD_DIR, scale=DEMO_SCALE,
                    fuse_env={"WEIR_FUSE_RETRY": "60s", "WEIR_FUSE_XATTRS": "1"})
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(d, ignore_errors=True)


def copy_tree(demo, name):
    dst = os.path.join(demo.dir, name)
    shutil.rmtree(dst, ignore_errors=True)
    subprocess.run(["cp", "-r", os.path.join(demo.mnt, "hbase"), dst], check=True, timeout=600)
    return dst


def assert_identical(demo, copy):
    for name in demo.files:
        assert sha256(os.path.join(copy, name)) == sha256(
            os.path.join(demo.store_root, "hbase", name)), name


def test_demo_ls_du_and_cold_copy(demo):
    ls = subprocess.run(["ls", "-l", os.path.join(demo.mnt, "hbase")], capture_output=True,
                        text=True, check=True).stdout
    for name, size in demo.files.items():
        assert f" {size} " in ls and name in ls, ls
    du = subprocess.run(["du", "-sb", demo.mnt], capture_output=True, text=True,
                        check=True).stdout
    assert int(du.split()[0]) >= sum(demo.files.values())
    subprocess.run(["du", "-h", demo.mnt], check=True, capture_output=True)
    before = demo.store_bytes()
    copy = copy_tree(demo, "copy-cold")
    assert_identical(demo, copy)
    # the cold copy pulled each byte from the store about once (plus the index pages)
    sent = demo.store_bytes() - before
    assert sent <= sum(demo.files.values()) * 1.05 + 65536, sent
    shutil.rmtree(copy)


def test_demo_warm_copies_send_nothing_from_the_store(demo):
    copy_tree(demo, "prime")  # whatever the first test left cold
    before = demo.store_bytes()
    drop_caches()
    copy = copy_tree(demo, "copy-dropped")
    assert_identical(demo, copy)
    assert demo.store_bytes() == before
    # remount: a new daemon, an empty page cache
    demo.fuse.stop()
    drop_caches()
    demo.start_fuse()
    copy = copy_tree(demo, "copy-remounted")
    assert_identical(demo, copy)
    assert demo.store_bytes() == before
    xattr = os.getxattr(os.path.join(demo.mnt, "hbase", "CHANGES.md"), "user.weir.cached")
    assert float(xattr) == 1.0
    # the master's per-node figures: every block is on some worker, each counted where it is
    ds = demo.request("GET", "/v1/datasets/hbase")[1]
    assert ds["cached"] == sum(demo.files.values())
    assert set(ds["cached_by_node"]) <= set(demo.names)
    assert sum(ds["cached_by_node"].values()) >= ds["cached"]
    shutil.rmtree(copy)
    shutil.rmtree(os.path.join(demo.dir, "copy-dropped"))
    shutil.rmtree(os.path.join(demo.dir, "prime"))


def test_demo_leader_killed_during_copy(demo):
    drop_caches()
    demo.fuse.stop()
    demo.start_fuse()  # a fresh daemon: its metadata comes from the masters again
    leader = demo.leader()
    assert leader is not None
    dst = os.path.join(demo.dir, "copy-failover")
    # the fresh daemon knows no metadata yet: cp's first lookups meet the election
    cp = subprocess.Popen(["cp", "-r", os.path.join(demo.mnt, "hbase"), dst])
    time.sleep(0.05)
    leader.kill()
    assert cp.wait(timeout=600) == 0
    assert_identical(demo, dst)
    shutil.rmtree(dst)
    leader.start()  # back as a follower for the following tests
    demo.wait(lambda: demo.leader() is not None, 30, "a leader")


def test_demo_worker_holding_the_blocks_killed_during_a_read(demo):
    # node2's worker holds every block of the client tarball; node1's has none of it
    name = "hbase-2.5.10-client-bin.tar.gz"
    entry = demo.stat("/hbase/" + name)
    code, dataset = demo.request("GET", "/v1/datasets/hbase")
    worker2 = demo.worker_of("node2")
    api2 = f"{demo.addresses[1]}:{demo.ports[demo.addresses[1]][2]}"
    code, body = demo.request("GET", f"/v1/files/{entry['file_id']}")
    bs = body["block_size"]
    n = (entry["size"] + bs - 1) // bs
    import urllib.request
    from weirtest.fusecluster import TOKEN
    for i in range(n):
        urllib.request.urlopen(urllib.request.Request(
            f"http://{api2}/v1/blocks/{entry['epoch']}-{entry['file_id']}-{entry['version']}-{i}",
            headers={"Authorization": f"Bearer {TOKEN}"})).read()
    demo.wait(lambda: all(
        "node2" in demo.request("GET", f"/v1/blocks?file={entry['file_id']}&version="
                                f"{entry['version']}")[1]["locations"].get(str(i), [])
        for i in range(n)), 30, "node2 reports the blocks")
    demo.fuse.stop()
    drop_caches()
    demo.start_fuse()
    src = os.path.join(demo.store_root, "hbase", name)
    got = []

    def read_all():
        with open(os.path.join(demo.mnt, "hbase", name), "rb") as f:
            while True:
                b = f.read(256 << 10)
                if not b:
                    break
                got.append(b)
                if len(got) == 4:
                    worker2.kill()  # mid-read

    read_all()
    with open(src, "rb") as f:
        assert b"".join(got) == f.read()
    worker2.start()


def test_demo_local_worker_killed_during_a_cold_read(demo):
    """The local worker dies while weir-fuse waits on its socket for the span of a block it is
    filling (WAIT): the read goes on through the other workers, with the right bytes."""
    name = "late-arrival.bin"
    path = os.path.join(demo.store_root, "hbase", name)
    with open(path, "wb") as f:
        f.write(random.Random(5).randbytes(96 << 20))
    os.chmod(path, 0o644)
    demo.files[name] = 96 << 20
    worker1 = demo.worker_of("node1")
    try:
        demo.sync()
        before = demo.store_bytes()
        got = []
        with open(os.path.join(demo.mnt, "hbase", name), "rb") as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                got.append(b)
                if len(got) == 3:
                    worker1.kill()  # mid-read: the next blocks were being filled by node1
        with open(path, "rb") as f:
            assert b"".join(got) == f.read()
        # what node1 had fetched died with it: other workers fetched those blocks again
        time.sleep(1)  # nginx writes its access log line when a response ends
        assert demo.store_bytes() - before > 96 << 20
    finally:
        if not worker1.running:
            worker1.start()
            demo.wait(lambda: sum(1 for w in demo.request("GET", "/v1/workers")[1]["workers"]
                                  if w["alive"]) == 3, 30, "three workers registered")
        os.unlink(path)
        del demo.files[name]
        demo.sync()


def test_demo_sigkill_fuse_then_restart(demo):
    demo.fuse.kill()
    with pytest.raises(OSError) as e:
        os.statvfs(demo.mnt)
    assert e.value.errno == errno.ENOTCONN
    demo.start_fuse()
    name = "CHANGES.md"
    assert read(os.path.join(demo.mnt, "hbase", name)) == read(
        os.path.join(demo.store_root, "hbase", name))


def test_demo_runtime_counts_the_fuse_daemon(demo):
    """weir-fuse heartbeats to the leader: weirctl runtime counts it, and stops counting it once
    it is SIGKILLed (the leader forgets a daemon silent for 15 s)."""
    import json
    from weirtest.fusecluster import TOKEN
    from weirtest.cluster import http_request

    weirctl = weir_binary("weirctl")

    def runtime():
        p = subprocess.run([weirctl, "--config", demo.yaml_path, "--json", "runtime"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stdout + p.stderr
        (rt,) = [r for r in json.loads(p.stdout) if r["name"] == "hbase"]
        return rt

    if not demo.fuse.alive():
        demo.start_fuse()
    desired = len(demo.names)  # the YAML gives every node every role
    demo.wait(lambda: runtime()["ready_fuses"] == 1, 20, "the FUSE daemon counted")
    rt = runtime()
    assert (rt["ready_fuses"], rt["desired_fuses"], rt["fuse_phase"]) == (
        1, desired, "PartialReady"), rt
    code, body = demo.request("GET", "/v1/fuses")
    assert code == 200, body
    (f,) = body["fuses"]
    assert (f["node"], f["dataset"], f["mountpoint"], f["alive"]) == (
        "node1", "hbase", demo.mnt, True), f
    assert f["files"] == len(demo.files) and f["last_heartbeat_age"] < 10, f
    text = subprocess.run([weirctl, "--config", demo.yaml_path, "runtime"], capture_output=True,
                          text=True, timeout=30).stdout
    row = text.splitlines()[1].split()
    assert row[0] == "hbase" and row[7:10] == ["1", str(desired), "PartialReady"], text

    # names the YAML does not know are refused; a heartbeat is a write (token)
    leader = demo.leader()
    url = f"http://{leader.api}/v1/fuses/nosuchnode/hbase/heartbeat"
    assert http_request("POST", url, body={"mountpoint": "/x"}, token=TOKEN)[0] == 404
    url = f"http://{leader.api}/v1/fuses/node1/nosuchdataset/heartbeat"
    assert http_request("POST", url, body={"mountpoint": "/x"}, token=TOKEN)[0] == 404
    url = f"http://{leader.api}/v1/fuses/node1/hbase/heartbeat"
    assert http_request("POST", url, body={"mountpoint": "/x"})[0] == 401
    assert http_request("POST", url, body={"files": 1}, token=TOKEN)[0] == 400

    demo.fuse.kill()
    demo.wait(lambda: runtime()["ready_fuses"] == 0, 25, "the killed FUSE daemon dropped")
    rt = runtime()
    assert (rt["ready_fuses"], rt["desired_fuses"], rt["fuse_phase"]) == (
        0, desired, "NotReady"), rt
    assert [f["alive"] for f in demo.request("GET", "/v1/fuses")[1]["fuses"]] == [False]
    demo.start_fuse()  # remounts over the stale mountpoint for whatever runs next

def test_watchdog_pings_while_no_master_answers(tmp):
    """WATCHDOG=1 keeps coming while every master accepts connections but never answers (as a
    SIGSTOPped master does): heartbeats, refreshes and FUSE lookups wait on the masters, the
    watchdog pings never do (systemd killed weir-fuse 10-16 s after a leader's node crashed)."""
    watchdog_usec = 4_000_000  # pings every 2 s; systemd would kill after 4 s without one
    notify_path = os.path.join(tmp, "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(0.2)
    hung, lookups = [], []
    try:
        s = FakeSetup(tmp, fuse_env={"NOTIFY_SOCKET": notify_path,
                                     "WATCHDOG_USEC": str(watchdog_usec)})
        try:
            def pings_for(seconds):
                times, deadline = [time.monotonic()], time.monotonic() + seconds
                while time.monotonic() < deadline:
                    try:
                        if notify.recv(4096).decode() == "WATCHDOG=1":
                            times.append(time.monotonic())
                    except socket.timeout:
                        pass
                times.append(time.monotonic())
                return max(b - a for a, b in zip(times, times[1:]))

            assert pings_for(6) < watchdog_usec / 1e6, "no pings with the masters answering"
            # the masters hang: connections are accepted by the kernel and never answered
            for m in s.masters:
                m.stop()
            for a, p in zip(s.addr, s.mport):
                ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                ls.bind((a, p))
                ls.listen(64)
                hung.append(ls)

            def lookup(name):
                try:
                    os.stat(s.path(name))
                except OSError:
                    pass

            for i in range(2):  # FUSE threads waiting on the masters too
                t = threading.Thread(target=lookup, args=(f"nosuch{i}",), daemon=True)
                t.start()
                lookups.append(t)
            gap = pings_for(25)
            assert gap < watchdog_usec / 1e6, f"{gap:.1f} s without WATCHDOG=1"
            print(f"longest gap between WATCHDOG=1 with the masters hung: {gap:.2f} s")
            assert "No master answered" in s.fuse.log()  # they were asked, and waited on
        finally:
            s.close()
            for t in lookups:
                t.join(30)
    finally:
        for ls in hung:
            ls.close()
        notify.close()


def test_notify_ready_status_stopping_and_dbus(tmp):
    """READY=1 only once the mount answers, STATUS= with the mount, STOPPING=1 at SIGTERM; the
    io.weir.Fuse1 properties on a private system bus."""
    if not shutil.which("dbus-daemon") or not shutil.which("busctl"):
        pytest.skip("dbus-daemon or busctl missing (apt install dbus)")
    bus = DbusDaemon(os.path.join(tmp, "bus"), "system").start()
    notify_path = os.path.join(tmp, "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(30)
    address = bus.address
    try:
        # FakeSetup starts weir-fuse with our environment: lend it the notify socket and bus
        env_backup = dict(os.environ)
        os.environ["NOTIFY_SOCKET"] = notify_path
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = address
        try:
            s = FakeSetup(tmp)
        finally:
            os.environ.clear()
            os.environ.update(env_backup)
        try:
            messages = []
            while not any("READY=1" in m for m in messages):
                messages.append(notify.recv(4096).decode())
            ready_at = len(messages)
            assert os.listdir(s.mnt) == ["data"]  # the mount was live when READY came
            while not any(m.startswith("STATUS=mounted ") for m in messages):
                messages.append(notify.recv(4096).decode())
            status = [m for m in messages if m.startswith("STATUS=")][-1]
            assert s.mnt in status and "files" in status, status
            assert ready_at >= 1

            def prop(name):
                out = subprocess.run(["busctl", f"--address={address}", "get-property",
                                      "io.weir.Fuse1", "/io/weir/Fuse1", "io.weir.Fuse1", name],
                                     capture_output=True, text=True, timeout=10)
                return out.stdout.strip()

            deadline = time.monotonic() + 15
            while prop("Mounted") != "b true" and time.monotonic() < deadline:
                time.sleep(0.2)
            assert prop("Mounted") == "b true"
            assert prop("Dataset") == 's "ds"'
            assert prop("Mountpoint") == f's "{s.mnt}"'
            # what this node's worker holds, from the master's cached_by_node, next to what all
            # workers hold (a block of "big" on node n2 counts there only)
            total = sum(SIZES.values())
            big = s.tree.entry("/data/big")
            with s.tree.lock:
                s.tree.locations.setdefault((big["file_id"], big["version"]), {})[0] = ["n2"]
            assert read(s.path("multi")) == read(s.source("multi"))
            want = (f"{SIZES['multi'] * 100 // total}% cached on this node "
                    f"({(SIZES['multi'] + BS) * 100 // total}%,")
            deadline = time.monotonic() + 20
            while not any(want in m for m in messages[ready_at:]):
                assert time.monotonic() < deadline, messages[-3:]
                messages.append(notify.recv(4096).decode())
            assert prop("CachedHere") == f"t {SIZES['multi']}"
            assert s.fuse.stop() == 0
            while not any("STOPPING=1" in m for m in messages):
                messages.append(notify.recv(4096).decode())
        finally:
            s.close()
    finally:
        notify.close()
        bus.stop()
