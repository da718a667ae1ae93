"""weir-worker against a real nginx store on 127.0.2.x.

The master here is weirtest.workerenv.FakeMaster, a minimal stand-in in Python that serves the
file table the test writes (GET /v1/files/ID, ls/stat for loads) and records registrations and
heartbeats; it is not weir-master (whose metadata sync comes later). Test names say
"fake_master". nginx's access log (bytes sent per request) is the proof of what the store sent.
"""

import array
import hashlib
import http.client
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import weir_binary
from weirtest.workerenv import EPOCH, FakeMaster, StoreNginx, Throttle, Worker, free_port, write_config

MiB = 1 << 20
WORKER_ADDR = "127.0.2.3"


def make_file(path, size, seed):
    """Deterministic pseudo-random content (fast: a hash chain expanded by repetition)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    chunk = b"".join(hashlib.sha256(f"{seed}-{i}".encode()).digest() for i in range(32768))
    with open(path, "wb") as f:
        left = size
        i = 0
        while left > 0:
            piece = chunk[: min(left, len(chunk))]
            # Vary each MiB so that blocks differ from each other.
            f.write(bytes([i & 0xFF]) + piece[1:])
            left -= len(piece)
            i += 1
    os.chmod(path, 0o644)
    with open(path, "rb") as f:
        return f.read()


class Env:
    """nginx store + fake master(s) + one worker, all in TMP."""

    def __init__(self, tmp, *, block_size=4 * MiB, tiers=None, limit_rate=None, n_masters=1,
                 throttle=None):
        self.tmp = str(tmp)
        self.block_size = block_size
        self.data = os.path.join(self.tmp, "store")
        os.makedirs(self.data, exist_ok=True)
        os.chmod(self.tmp, 0o755)
        self.store = StoreNginx(self.data, os.path.join(self.tmp, "nginx"), limit_rate=limit_rate)
        # A strict per-connection limit (bytes/s) in front of nginx, see weirtest.throttle.
        self.throttle = Throttle(self.store, throttle) if throttle else None
        self.masters = [FakeMaster(address=f"127.0.2.{2 + 10 * i}") for i in range(n_masters)]
        self.tiers = tiers or [("MEM", os.path.join(self.tmp, "shm"), "256Mi", 0.95, 0.7)]
        self.port = free_port(WORKER_ADDR)
        self.config = os.path.join(self.tmp, "cluster.yaml")
        self.worker = None
        self.files = {}

    def __enter__(self):
        self.store.start()
        try:
            if self.throttle:
                self.throttle.start()
            for m in self.masters:
                m.start()
            write_config(self.config,
                         master_nodes=[(f"m{i}", m.address, m.port)
                                       for i, m in enumerate(self.masters)],
                         worker_nodes=[("w1", WORKER_ADDR, self.port,
                                        os.path.join(self.tmp, "wdata"),
                                        os.path.join(self.tmp, "wrun"))],
                         store_url=(self.throttle or self.store).url, tiers=self.tiers,
                         block_size=f"{self.block_size // 1024}Ki")
            self.worker = Worker(weir_binary("weir-worker"), self.config, "w1", WORKER_ADDR,
                                 self.port, self.tmp)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        if self.worker:
            self.worker.kill()
        for m in self.masters:
            m.stop()
        if self.throttle:
            self.throttle.stop()
        self.store.stop()

    def add(self, file_id, name, size, seed=None, version=1):
        content = make_file(os.path.join(self.data, name), size, seed if seed is not None else file_id)
        self.publish(file_id, name, version)
        self.files[file_id] = content
        return content

    def publish(self, file_id, name, version):
        size, mtime, etag = self.store.version_of(name)
        for m in self.masters:
            m.add_file(file_id, "ds", "/data/" + name, size, mtime, etag, self.block_size,
                       version=version)

    def n_blocks(self, file_id):
        return max(1, -(-len(self.files[file_id]) // self.block_size))

    def block(self, file_id, index):
        return self.files[file_id][index * self.block_size:(index + 1) * self.block_size]

    def tier_files(self, level=0):
        d = os.path.join(self.tiers[level][1], "weir", "w1")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []


def test_not_a_worker_exits_1(tmp_path):
    cfg = tmp_path / "c.yaml"
    write_config(str(cfg), master_nodes=[("m0", "127.0.2.2", 19998)],
                 worker_nodes=[("w1", WORKER_ADDR, 29999, str(tmp_path / "d"), str(tmp_path / "r"))],
                 store_url="http://127.0.2.10:1/data/",
                 tiers=[("MEM", str(tmp_path / "shm"), "64Mi", 0.9, 0.5)])
    p = subprocess.run([weir_binary("weir-worker"), "--config", str(cfg), "--node", "m0"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert "not a worker" in p.stderr
    p = subprocess.run([weir_binary("weir-worker"), "--config", str(cfg), "--node", "nope"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert "nope" in p.stderr


def test_block_read_twice_fetched_once_fake_master(tmp_path):
    with Env(tmp_path) as env:
        env.add(1, "f1.bin", 10 * MiB + 12345)
        env.worker.start()
        for _ in range(2):
            for i in range(env.n_blocks(1)):
                status, headers, body = env.worker.get(f"/v1/blocks/{EPOCH}-1-1-{i}")
                assert status == 200
                assert body == env.block(1, i)
        # Ranges are served from the cached block, too.
        status, headers, body = env.worker.get(f"/v1/blocks/{EPOCH}-1-1-1", {"Range": "bytes=100-199"})
        assert status == 206 and body == env.block(1, 1)[100:200]
        assert headers["Content-Range"] == f"bytes 100-199/{env.block_size}"
        blk = env.block(1, 2)  # the short last block
        for rng, want in ((f"bytes={len(blk) - 10}-", blk[-10:]), ("bytes=-7", blk[-7:]),
                          ("bytes=5-99999999", blk[5:])):
            status, headers, body = env.worker.get(f"/v1/blocks/{EPOCH}-1-1-2", {"Range": rng})
            assert status == 206 and body == want, rng
        status, headers, _ = env.worker.get(f"/v1/blocks/{EPOCH}-1-1-2", {"Range": f"bytes={len(blk)}-"})
        assert status == 416 and headers["Content-Range"] == f"bytes */{len(blk)}"
        status, _, body = env.worker.get(f"/v1/blocks/{EPOCH}-1-1-2", {"Range": "bytes=0-1,5-6"})
        assert status == 200 and body == blk  # several ranges: the whole block
        env.store.wait_quiet()
        assert env.store.bytes_sent("/f1.bin") == len(env.files[1])
        # Every store request carried the version precondition.
        assert all(r[5] for r in env.store.requests() if r[0] == "GET")
        m = env.worker.metrics()
        assert m["weir_worker_store_bytes_total"] == len(env.files[1])
        assert m["weir_worker_misses_total"] >= 1
        # Unknown blocks and garbage ids are answered, not filled.
        assert env.worker.get(f"/v1/blocks/{EPOCH}-1-1-99")[0] == 416
        assert env.worker.get(f"/v1/blocks/{EPOCH}-9-1-0")[0] == 404
        assert env.worker.get(f"/v1/blocks/{EPOCH}-x-1-0")[0] == 400
        assert env.worker.stop() == 0


def test_32_concurrent_readers_one_fetch_fake_master(tmp_path):
    with Env(tmp_path, block_size=8 * MiB, limit_rate="20m") as env:
        env.add(1, "cold.bin", 8 * MiB)
        env.worker.start()
        results = [None] * 32
        barrier = threading.Barrier(32)

        def reader(i):
            barrier.wait()
            results[i] = env.worker.get(f"/v1/blocks/{EPOCH}-1-1-0")

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert all(r is not None and r[0] == 200 and r[2] == env.files[1] for r in results)
        env.store.wait_quiet()
        assert env.store.bytes_sent("/cold.bin") == 8 * MiB
        assert env.worker.metrics()["weir_worker_fills_total"] == 1


def test_restart_keeps_cache_fake_master(tmp_path):
    with Env(tmp_path) as env:
        env.add(1, "a.bin", 9 * MiB)
        env.add(2, "b.bin", 1234)
        env.worker.start()
        for fid in (1, 2):
            for i in range(env.n_blocks(fid)):
                assert env.worker.get(f"/v1/blocks/{EPOCH}-{fid}-1-{i}")[2] == env.block(fid, i)
        env.store.wait_quiet()
        before = env.store.bytes_sent()
        assert env.worker.stop() == 0
        env.worker.start()
        assert env.worker.status()["blocks"] == 4
        for fid in (1, 2):
            for i in range(env.n_blocks(fid)):
                status, headers, body = env.worker.get(f"/v1/blocks/{EPOCH}-{fid}-1-{i}")
                assert body == env.block(fid, i)
                assert headers["X-Weir-Cache"] == "hit"
        env.store.wait_quiet()
        assert env.store.bytes_sent() == before  # zero store bytes for the re-read


def test_changed_upstream_never_mixes_fake_master(tmp_path):
    with Env(tmp_path, block_size=1 * MiB, limit_rate="8m") as env:
        old = env.add(1, "c.bin", 12 * MiB, seed=1)
        env.worker.start()
        assert env.worker.get(f"/v1/blocks/{EPOCH}-1-1-0")[2] == old[:MiB]
        # The file changes upstream (same size, new bytes, new mtime: a new ETag).
        path = os.path.join(env.data, "c.bin")
        new = make_file(path + ".new", 12 * MiB, 2)
        os.rename(path + ".new", path)
        st = os.stat(path)
        os.utime(path, (st.st_atime, st.st_mtime + 100))
        stale = 0
        for i in range(12):
            status, _, body = env.worker.get(f"/v1/blocks/{EPOCH}-1-1-{i}")
            if status == 200:
                assert body == old[i * MiB:(i + 1) * MiB], f"block {i}: not the old version"
            else:
                assert status == 409, body
                stale += 1
        assert stale > 0  # the blocks not cached before the change could not be filled
        # The master learns version 2: its blocks are the new bytes, whole.
        env.publish(1, "c.bin", version=2)
        env.files[1] = new
        for i in range(12):
            status, _, body = env.worker.get(f"/v1/blocks/{EPOCH}-1-2-{i}")
            assert status == 200 and body == new[i * MiB:(i + 1) * MiB]


def test_kill9_during_fill_fake_master(tmp_path):
    # 1 MiB/s per connection: a 4 MiB block takes about two seconds to fill.
    with Env(tmp_path, block_size=4 * MiB, limit_rate="1m") as env:
        env.add(1, "slow.bin", 4 * MiB)
        env.worker.start()
        def doomed_read():
            try:
                env.worker.get(f"/v1/blocks/{EPOCH}-1-1-0", timeout=30)
            except OSError:
                pass  # the worker dies under it

        t = threading.Thread(target=doomed_read)
        t.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
                f.startswith(".tmp-") and os.path.getsize(
                    os.path.join(env.tiers[0][1], "weir", "w1", f)) > 0
                for f in env.tier_files()):
            time.sleep(0.05)
        assert any(f.startswith(".tmp-") for f in env.tier_files()), "no fill in progress"
        env.worker.kill()
        t.join(timeout=30)
        # Nothing that looks like a whole block was left.
        assert not [f for f in env.tier_files() if not f.startswith(".")]
        env.worker.start()
        assert not any(f.startswith(".tmp-") for f in env.tier_files())
        assert env.worker.get(f"/v1/blocks/{EPOCH}-1-1-0", timeout=60)[2] == env.files[1]


def test_corrupt_block_is_refetched_not_served_fake_master(tmp_path):
    with Env(tmp_path) as env:
        env.add(1, "d.bin", 4 * MiB)
        env.worker.start()
        assert env.worker.get(f"/v1/blocks/{EPOCH}-1-1-0")[2] == env.files[1]
        env.worker.stop()
        (name,) = [f for f in env.tier_files() if f.startswith(f"{EPOCH}-1-1-0.")]
        path = os.path.join(env.tiers[0][1], "weir", "w1", name)
        with open(path, "r+b") as f:
            f.seek(12345)
            f.write(b"\xff" if env.files[1][12345] != 0xFF else b"\x00")
        env.store.wait_quiet()
        before = env.store.bytes_sent()
        env.worker.start()
        assert env.worker.get(f"/v1/blocks/{EPOCH}-1-1-0")[2] == env.files[1]
        env.store.wait_quiet()
        assert env.store.bytes_sent() - before == 4 * MiB  # refetched
        assert env.worker.metrics()["weir_worker_checksum_failures_total"] == 1


def test_eviction_demotes_then_drops_fake_master(tmp_path):
    tiers = [("MEM", str(tmp_path / "mem"), "8Mi", 0.9, 0.5),
             ("SSD", str(tmp_path / "ssd"), "12Mi", 0.9, 0.5)]
    with Env(tmp_path, block_size=1 * MiB, tiers=tiers) as env:
        env.add(1, "e.bin", 16 * MiB)
        env.worker.start()
        for i in range(16):
            assert env.worker.get(f"/v1/blocks/{EPOCH}-1-1-{i}")[2] == env.block(1, i)
        time.sleep(0.5)  # background eviction
        st = env.worker.status()
        mem, ssd = st["tiers"]
        assert mem["used"] <= 8 * MiB and ssd["used"] <= 12 * MiB
        assert ssd["blocks"] > 0  # demoted, not dropped
        m = env.worker.metrics()
        assert m["weir_worker_demotions_total"] > 0
        # Every block still cached, on either level, is served without the store. (A hit on
        # block i whose block i-1 is cached too starts the read-ahead of i+1 and i+2: a dropped
        # neighbour is fetched again, so the store may see ranges, but never a cached block's.)
        env.store.wait_quiet()
        seen = len(env.store.requests())
        cached = [f.split(".")[0] for lvl in (0, 1) for f in env.tier_files(lvl)
                  if not f.startswith(".")]
        assert len(cached) == mem["blocks"] + ssd["blocks"]
        for bid in cached:
            status, headers, body = env.worker.get(f"/v1/blocks/{bid}")
            assert body == env.block(1, int(bid.split("-")[3]))
            assert headers["X-Weir-Cache"] == "hit"
        env.store.wait_quiet()
        cached_idx = {int(b.split("-")[3]) for b in cached}
        refetched = []
        for r in env.store.requests()[seen:]:
            m = re.fullmatch(r"bytes=(\d+)-(\d+)", r[4])
            assert m, r  # every store request here is a ranged block fill
            first, last = int(m.group(1)) // MiB, int(m.group(2)) // MiB
            refetched += [i for i in range(first, last + 1) if i in cached_idx]
        assert refetched == []
        # Asking with only-if-cached never fills, read-ahead included.
        env.store.wait_quiet()
        seen = len(env.store.requests())
        for bid in cached:
            status, headers, body = env.worker.get(f"/v1/blocks/{bid}",
                                                   headers={"Cache-Control": "only-if-cached"})
            assert status == 200 and headers["X-Weir-Cache"] == "hit"
        env.store.wait_quiet()
        assert env.store.requests()[seen:] == []


def test_only_if_cached_hit_starts_no_read_ahead_fake_master(tmp_path):
    """A miss of block 0 fills blocks 0-2 (itself and two of read-ahead), nothing past them. An
    only-if-cached hit of block 2 (block 1 cached: what a sequential reader looks like) must not
    fetch blocks 3 and 4, as a plain hit does: such requests never fill."""
    with Env(tmp_path, block_size=1 * MiB,
             tiers=[("MEM", str(tmp_path / "shm"), "64Mi", 0.95, 0.7)]) as env:
        env.add(1, "f.bin", 6 * MiB)
        env.worker.start()
        assert env.worker.get(f"/v1/blocks/{EPOCH}-1-1-0")[2] == env.block(1, 0)
        deadline = time.monotonic() + 60
        while not all(f"{EPOCH}-1-1-{i}" in {f.split(".")[0] for f in env.tier_files()}
                      for i in (1, 2)):
            assert time.monotonic() < deadline, env.tier_files()
            time.sleep(0.05)
        env.store.wait_quiet()
        seen = len(env.store.requests())
        status, headers, body = env.worker.get(f"/v1/blocks/{EPOCH}-1-1-2",
                                               headers={"Cache-Control": "only-if-cached"})
        assert status == 200 and headers["X-Weir-Cache"] == "hit" and body == env.block(1, 2)
        time.sleep(1.0)  # a read-ahead, if one started, reaches the store well within this
        env.store.wait_quiet()
        assert env.store.requests()[seen:] == []
        # the same hit without the header does read ahead: the check above can fail
        env.worker.get(f"/v1/blocks/{EPOCH}-1-1-2")
        deadline = time.monotonic() + 60
        while len(env.store.requests()) == seen:
            assert time.monotonic() < deadline, "a plain hit started no read-ahead"
            time.sleep(0.05)


def recv_fd(sock):
    fds = array.array("i")
    msg, anc, flags, addr = sock.recvmsg(64, socket.CMSG_LEN(fds.itemsize))
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[:fds.itemsize])
    return msg, (fds[0] if fds else None)


def test_fd_socket_passes_read_only_block_fds_fake_master(tmp_path):
    with Env(tmp_path) as env:
        env.add(1, "g.bin", 5 * MiB)
        env.worker.start()
        assert env.worker.get(f"/v1/blocks/{EPOCH}-1-1-0")[0] == 200
        sock_path = os.path.join(env.tmp, "wrun", "worker.sock")
        assert os.stat(sock_path).st_mode & 0o777 == 0o600
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(sock_path)
            s.sendall(f"OPEN {EPOCH}-1-1-0\n".encode())
            msg, fd = recv_fd(s)
            assert msg == f"OK {4 * MiB}\n".encode() and fd is not None
            try:
                assert os.pread(fd, 4 * MiB, 0) == env.block(1, 0)
                with pytest.raises(OSError):
                    os.write(fd, b"x")
            finally:
                os.close(fd)
            s.sendall(f"OPEN {EPOCH}-1-1-7\n".encode())
            assert recv_fd(s) == (b"MISS\n", None)
            s.sendall(b"OPEN ../etc\n")
            assert recv_fd(s)[0].startswith(b"ERR ")


def test_cold_ranges_answered_before_the_whole_block_fake_master(tmp_path):
    """A ranged GET (and a socket WAIT) of a cold block is answered as soon as its bytes are
    fetched, not after the whole block: with the store at 512 KiB/s per connection a 16 MiB
    block takes at least 4 s (eight parallel ranges of 2 MiB), and each answer must come while
    the block is still not whole (an only-if-cached GET of it says 504). No clock is compared:
    the block's own state is the witness. (The speed is bench/fill's.)"""
    with Env(tmp_path, block_size=16 * MiB, throttle=512 * 1024,
             tiers=[("MEM", str(tmp_path / "shm"), "256Mi", 0.95, 0.7)]) as env:
        env.add(2, "b.bin", 16 * MiB)
        env.add(3, "c.bin", 16 * MiB)
        env.worker.start()

        def still_filling(bid):
            status, _, _ = env.worker.get(f"/v1/blocks/{bid}",
                                          headers={"Cache-Control": "only-if-cached"})
            return status == 504

        status, headers, body = env.worker.get(f"/v1/blocks/{EPOCH}-2-1-0",
                                               headers={"Range": "bytes=4096-8191"})
        assert status == 206 and body == env.block(2, 0)[4096:8192]
        assert headers["Content-Range"] == f"bytes 4096-8191/{16 * MiB}"
        assert still_filling(f"{EPOCH}-2-1-0"), "the range was answered after the whole block"

        sock_path = os.path.join(env.tmp, "wrun", "worker.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(sock_path)
            # 4 KiB into the second of eight 2 MiB ranges: near the start of a range, as any
            # read is once a sequential reader is going
            s.sendall(f"WAIT {EPOCH}-3-1-0 {2 * MiB + 4096} 4096\n".encode())
            msg, fd = recv_fd(s)
            filling = still_filling(f"{EPOCH}-3-1-0")
            s.settimeout(30)
            assert s.recv(16) == b""  # a WAIT answered later ends its connection
        assert msg == f"PART {16 * MiB}\n".encode() and fd is not None
        try:
            off = 2 * MiB + 4096
            assert os.pread(fd, 4096, off) == env.block(3, 0)[off:off + 4096]
            with pytest.raises(OSError):
                os.write(fd, b"x")  # read-only: a reader cannot write into the cache
        finally:
            os.close(fd)
        assert filling, "the WAIT was answered after the whole block"
        # and the fills go on to whole, right blocks
        for fid in (2, 3):
            status, _, body = env.worker.get(f"/v1/blocks/{EPOCH}-{fid}-1-0", timeout=120)
            assert status == 200 and body == env.block(fid, 0)


def test_huge_block_report_is_sent_in_chunks_fake_master(tmp_path):
    """A cache of 250,000 blocks (4 MiB of ids, more than one request may carry): the worker
    registers with the first 100,000 and adds the rest with heartbeats; the master knows all."""
    with Env(tmp_path) as env:
        tier = os.path.join(env.tiers[0][1], "weir", "w1")
        os.makedirs(tier)
        want = set()
        for i in range(250000):
            # empty blocks named as the store names them: EPOCH-FILE-VERSION-INDEX.x3CHECKSUM
            open(os.path.join(tier, f"{EPOCH}-9-1-{i}.x3{i:016x}"), "wb").close()
            want.add(f"{EPOCH}-9-1-{i}")
        env.worker.start()
        deadline = time.monotonic() + 60
        while env.masters[0].blocks_known() != want:
            assert time.monotonic() < deadline, len(env.masters[0].blocks_known())
            time.sleep(0.2)
        assert len(env.masters[0].registrations[-1]["blocks"]) == 100000


def _cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_fd_socket_out_of_descriptors_does_not_spin_fake_master(tmp_path):
    """With its descriptors used up, the worker refuses local connections instead of spinning
    on a listening socket that stays readable, and serves again once they close."""
    with Env(tmp_path) as env:
        env.add(1, "o.bin", 2 * MiB)
        env.worker.start()
        assert env.worker.get(f"/v1/blocks/{EPOCH}-1-1-0")[0] == 200
        pid = env.worker.proc.pid
        sock_path = os.path.join(env.tmp, "wrun", "worker.sock")
        in_use = len(os.listdir(f"/proc/{pid}/fd"))
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 8, hard))
        clients = []
        try:
            for _ in range(40):
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.connect(sock_path)
                clients.append(c)
            time.sleep(0.5)
            before = _cpu_seconds(pid)
            time.sleep(2)
            spent = _cpu_seconds(pid) - before
            assert spent < 0.5, f"worker used {spent:.2f}s of CPU in 2s while out of descriptors"
            assert "Out of file descriptors" in env.worker.log()
        finally:
            for c in clients:
                c.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        time.sleep(0.5)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(sock_path)
            s.sendall(f"OPEN {EPOCH}-1-1-0\n".encode())
            msg, fd = recv_fd(s)
            assert msg.startswith(b"OK ") and fd is not None
            os.close(fd)


def test_fd_socket_deadline_and_per_process_limit_fake_master(tmp_path):
    """The local socket is bounded like the HTTP listeners: a line that trickles in a byte at a
    time is cut at its 5 s deadline, one process holds at most 64 connections, and a whole
    request from another process is still answered meanwhile."""
    with Env(tmp_path) as env:
        env.add(1, "d.bin", 2 * MiB)
        env.worker.start()
        assert env.worker.get(f"/v1/blocks/{EPOCH}-1-1-0")[0] == 200
        sock_path = os.path.join(env.tmp, "wrun", "worker.sock")
        slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        slow.connect(sock_path)
        t0 = time.monotonic()
        closed_at = None
        try:
            for ch in f"OPEN {EPOCH}-1-1-0".encode() * 4:
                try:
                    slow.sendall(bytes([ch]))
                    slow.settimeout(0.5)
                    data = slow.recv(100)
                except socket.timeout:
                    continue
                except OSError:
                    data = b""
                if data == b"" or data.startswith(b"ERR"):
                    closed_at = time.monotonic()
                    break
        finally:
            slow.close()
        assert closed_at is not None, "a trickled line was never cut"
        assert 4.0 <= closed_at - t0 < 10.0, closed_at - t0

        held = []
        try:
            for _ in range(64):
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.connect(sock_path)
                held.append(c)
            extra = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            held.append(extra)
            extra.connect(sock_path)
            extra.settimeout(5)
            assert extra.recv(100).startswith(b"ERR too many connections")
            # another process is not limited by this one's share
            out = subprocess.run(
                [sys.executable, "-c",
                 "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);"
                 f"s.sendall(b'OPEN {EPOCH}-1-1-0\\n'); print(s.recv(100).decode().strip())",
                 sock_path],
                capture_output=True, text=True, timeout=20)
            assert out.stdout.startswith("OK "), out
        finally:
            for c in held:
                c.close()


def test_registration_failover_and_404_fake_master(tmp_path):
    with Env(tmp_path, n_masters=3) as env:
        env.add(1, "h.bin", 2 * MiB)
        env.worker.start()
        assert env.worker.get(f"/v1/blocks/{EPOCH}-1-1-0")[0] == 200

        def wait(cond, timeout=15):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if cond():
                    return True
                time.sleep(0.1)
            return False

        m0 = env.masters[0]
        # Registered with a full report, then deltas in heartbeats.
        assert wait(lambda: m0.blocks_known() == {f"{EPOCH}-1-1-0"})
        reg = m0.registrations[0]
        assert reg["node"] == "w1" and reg["api"] == f"{WORKER_ADDR}:{env.port}"
        assert reg["tiers"][0]["medium"] == "MEM"
        # A new leader that lost soft state answers 404: full report again.
        n = len(m0.registrations)
        m0.forget_workers()
        assert wait(lambda: len(m0.registrations) > n)
        assert set(m0.registrations[-1]["blocks"]) == {f"{EPOCH}-1-1-0"}
        # The leader dies: the worker registers with another master, blocks and all.
        m0.stop()
        assert wait(lambda: any(m.registrations for m in env.masters[1:]))
        other = next(m for m in env.masters[1:] if m.registrations)
        assert set(other.registrations[-1]["blocks"]) == {f"{EPOCH}-1-1-0"}
        # (the master records a registration before the worker has its answer)
        assert wait(lambda: env.worker.status()["registered"])


def test_load_caches_paths_fake_master(tmp_path):
    with Env(tmp_path) as env:
        env.add(1, "dir/one.bin", 9 * MiB)
        env.add(2, "dir/sub/two.bin", 3 * MiB)
        env.add(3, "other.bin", 1 * MiB)
        env.worker.start()
        status, body = env.worker.post("/v1/load", {"dataset": "ds", "paths": ["/data/dir"]})
        assert status == 200, body
        assert body["blocks"] == 3 + 1 and body["files"] == 2 and body["failed"] == 0
        env.store.wait_quiet()
        assert env.store.bytes_sent() == 12 * MiB
        st = env.worker.status()
        assert st["load"]["blocks_done"] == 4 and st["load"]["bytes_done"] == 12 * MiB
        for fid in (1, 2):
            for i in range(env.n_blocks(fid)):
                assert env.worker.get(f"/v1/blocks/{EPOCH}-{fid}-1-{i}")[1]["X-Weir-Cache"] == "hit"
        assert env.worker.post("/v1/load", {"dataset": "nope"})[0] == 404


def test_limited_store_cold_fill_uses_parallel_ranges_fake_master(tmp_path):
    """A store limited to 20 MiB/s per connection: a cold 64 MiB file read block after block
    through the worker is fetched over several connections at once (parallel ranges and
    read-ahead), each byte once. The limit is weirtest.throttle, strict per connection (nginx's
    limit_rate would let every range below 20 MiB through at full speed). That this beats one
    curl of the file, and by how much, is bench/fill's measurement, not a test's."""
    with Env(tmp_path, block_size=16 * MiB, throttle=20 * MiB,
             tiers=[("MEM", str(tmp_path / "shm"), "256Mi", 0.95, 0.7)]) as env:
        env.add(1, "big.bin", 64 * MiB)
        env.worker.start()
        digest = hashlib.sha256()
        for i in range(4):
            status, _, body = env.worker.get(f"/v1/blocks/{EPOCH}-1-1-{i}", timeout=120)
            assert status == 200
            digest.update(body)
        assert digest.digest() == hashlib.sha256(env.files[1]).digest()
        env.store.wait_quiet()
        ranges = [r for r in env.store.requests() if r[1].endswith("/big.bin") and r[4] != "-"]
        assert sum(r[3] for r in ranges) == 64 * MiB  # each byte once
        assert len(ranges) >= 8, ranges  # blocks split into ranges
        assert env.throttle.peak_connections() >= 4  # fetched in parallel


# ---- with the real weir-master (three masters, Raft, metadata sync) on 127.0.2.21-23 ----


class RealEnv:
    """nginx store + three real weir-masters + one worker, all in TMP (127.0.2.x)."""

    def __init__(self, tmp, *, block_size=4 * MiB, n_workers=1, n_masters=3):
        from weirtest.workerenv import WORKER_ADDR_REAL, RealMasters, extra_workers
        import conftest

        self.tmp = str(tmp)
        os.chmod(self.tmp, 0o755)
        self.block_size = block_size
        self.data = os.path.join(self.tmp, "store")
        os.makedirs(self.data, exist_ok=True)
        self.addr = WORKER_ADDR_REAL
        self.port = free_port(self.addr)
        self.store = StoreNginx(self.data, os.path.join(self.tmp, "nginx"),
                                address="127.0.2.11")
        weir_binary("weir-master")
        tiers = [("MEM", os.path.join(self.tmp, "shm"), "256Mi", 0.95, 0.7)]
        extra = extra_workers(self.tmp, n_workers)
        self.cluster = RealMasters(os.path.join(self.tmp, "masters"), conftest.BUILD_DIR,
                                   self.store.url, worker_port=self.port,
                                   worker_dirs=(os.path.join(self.tmp, "wdata"),
                                                os.path.join(self.tmp, "wrun")),
                                   tiers=tiers, block_size=f"{block_size // 1024}Ki",
                                   extra_workers=extra, n=n_masters)
        self.worker = Worker(weir_binary("weir-worker"), self.cluster.yaml_path, "w1", self.addr,
                             self.port, self.tmp)
        # Workers of one host share the tier paths: each has its own <path>/weir/<node>.
        self.others = [Worker(weir_binary("weir-worker"), self.cluster.yaml_path, name, addr,
                              port, self.tmp) for name, addr, port, _, _ in extra]

    def __enter__(self):
        try:
            self.store.start()
            self.cluster.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        self.worker.kill()
        for w in self.others:
            w.kill()
        self.cluster.stop()
        self.store.stop()


def test_real_master_load_to_100_percent_and_failover(tmp_path):
    """weirctl load brings a dataset to 100% through the worker; weirctl datasets says so; the
    worker's blocks stay known to the masters across a leader kill (re-registration)."""
    with RealEnv(tmp_path) as env:
        files = {"a.bin": make_file(os.path.join(env.data, "a.bin"), 9 * MiB + 5, 1),
                 "sub/b.bin": make_file(os.path.join(env.data, "sub", "b.bin"), 3 * MiB, 2),
                 "c.txt": make_file(os.path.join(env.data, "c.txt"), 1000, 3)}
        total = sum(len(v) for v in files.values())
        env.cluster.sync()
        env.worker.start()
        env.cluster.wait(lambda: any(w["node"] == "w1" and w["alive"] for w in
                                     env.cluster.request("GET", "/v1/workers")[1]["workers"]),
                         what="the worker registered")
        p = env.cluster.weirctl("load", "ds")
        assert p.returncode == 0, p.stdout + p.stderr
        assert "Loaded ds: 3 files" in p.stdout and "0 failed" in p.stdout
        env.store.wait_quiet()
        assert env.store.range_bytes() == total
        # The master learns the blocks from heartbeats: 100% cached.
        env.cluster.wait(lambda: env.cluster.request("GET", "/v1/datasets/ds")[1]["cached"]
                         == total, what="100% cached")
        p = env.cluster.weirctl("datasets")
        assert p.returncode == 0 and "100.0%" in p.stdout, p.stdout
        p = env.cluster.weirctl("load", "--status", "ds")
        assert p.returncode == 0 and "(100.0%)" in p.stdout, p.stdout
        p = env.cluster.weirctl("runtime")
        assert p.returncode == 0 and "Ready" in p.stdout, p.stdout
        # Reading through the worker: every block a hit, the bytes right.
        entry = env.cluster.stat("/data/a.bin")
        for i in range(3):
            status, headers, body = env.worker.get(
                f"/v1/blocks/{entry['epoch']}-{entry['file_id']}-{entry['version']}-{i}")
            assert body == files["a.bin"][i * 4 * MiB:(i + 1) * 4 * MiB]
            assert headers["X-Weir-Cache"] == "hit"
        # A second load finds everything cached (resuming loads nothing twice).
        p = env.cluster.weirctl("load", "ds")
        assert p.returncode == 0 and "5 blocks were cached already" in p.stdout, p.stdout
        env.store.wait_quiet()
        assert env.store.range_bytes() == total
        # Kill the leader: the new one learns the worker's blocks from its full report.
        old = env.cluster.leader()
        old.kill()
        env.cluster.wait(lambda: env.cluster.leader() not in (None, old), what="a new leader")
        env.cluster.wait(lambda: env.cluster.request("GET", "/v1/datasets/ds")[1]["cached"]
                         == total, timeout=30, what="blocks known to the new leader")
        code, locs = env.cluster.request(
            "GET", f"/v1/blocks?file={entry['file_id']}&version={entry['version']}")
        assert code == 200 and locs["locations"]["0"] == ["w1"], locs


def test_dbus_object_and_free_fake_master(tmp_path, private_bus):
    address = private_bus
    with Env(tmp_path) as env:
        env.add(1, "k.bin", 6 * MiB)
        env.worker.env = {"DBUS_SYSTEM_BUS_ADDRESS": address}
        env.worker.start()
        for i in range(2):
            assert env.worker.get(f"/v1/blocks/{EPOCH}-1-1-{i}")[0] == 200

        def busctl(*args):
            p = subprocess.run(["busctl", f"--address={address}", *args],
                               capture_output=True, text=True, timeout=10)
            assert p.returncode == 0, p.stderr
            return p.stdout.strip()

        obj = ("io.weir.Worker1", "/io/weir/Worker1", "io.weir.Worker1")
        assert busctl("get-property", *obj, "Node") == 's "w1"'
        assert busctl("get-property", *obj, "Capacity") == f"t {256 * MiB}"
        assert busctl("get-property", *obj, "Used") == f"t {6 * MiB}"
        assert busctl("get-property", *obj, "Blocks") == "t 2"
        assert busctl("get-property", *obj, "Tiers").startswith('a(sstt) 1 "MEM"')
        assert busctl("call", *obj, "Free", "t", "0") == f"t {6 * MiB}"
        assert busctl("get-property", *obj, "Blocks") == "t 0"
        assert not [f for f in env.tier_files() if not f.startswith(".")]
        # Registered follows the master: false once it stops answering.
        deadline = time.monotonic() + 15
        while busctl("get-property", *obj, "Registered") != "b true":
            assert time.monotonic() < deadline, "never registered"
            time.sleep(0.2)
        env.masters[0].stop()
        while busctl("get-property", *obj, "Registered") != "b false":
            assert time.monotonic() < deadline + 15, "still registered without a master"
            time.sleep(0.2)


def test_sd_notify_ready_status_watchdog_stopping_fake_master(tmp_path):
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.2)
    messages = []

    def drain(until=None, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                messages.extend(sock.recv(4096).decode().split("\n"))
            except socket.timeout:
                if until is None:
                    return
            if until and until():
                return

    try:
        with Env(tmp_path) as env:
            env.add(1, "n.bin", 1000)
            env.worker.env = {"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000"}
            env.worker.start()
            drain(lambda: "READY=1" in messages and messages.count("WATCHDOG=1") >= 2)
            assert "READY=1" in messages, messages
            assert messages.count("WATCHDOG=1") >= 2, messages
            assert env.worker.get(f"/v1/blocks/{EPOCH}-1-1-0")[0] == 200
            def status_seen():
                return any(m.startswith("STATUS=1 tier, 0.0/") and m.endswith(" 1 blocks")
                           for m in messages)

            drain(status_seen, timeout=5)
            assert status_seen(), messages
            assert env.worker.stop() == 0
            drain()
            assert "STOPPING=1" in messages, messages
    finally:
        sock.close()


def test_real_master_load_spreads_over_two_workers(tmp_path):
    """weirctl load spreads a dataset's blocks over two workers: each holds about half, the
    store sends every byte once, the masters count 100%."""
    with RealEnv(tmp_path, n_workers=2) as env:
        data = {name: make_file(os.path.join(env.data, name), size, i) for i, (name, size) in
                enumerate([("x.bin", 17 * MiB + 3), ("y.bin", 6 * MiB), ("z.bin", 100)])}
        total = sum(len(v) for v in data.values())
        env.cluster.sync()
        env.worker.start()
        env.others[0].start()
        env.cluster.wait(lambda: sum(w["alive"] for w in env.cluster.request(
            "GET", "/v1/workers")[1]["workers"]) == 2, what="two workers registered")
        p = env.cluster.weirctl("load", "ds")
        assert p.returncode == 0 and "on 2 workers" in p.stdout, p.stdout + p.stderr
        env.store.wait_quiet()
        assert env.store.range_bytes() == total
        b1, b2 = env.worker.status()["blocks"], env.others[0].status()["blocks"]
        assert b1 + b2 == 5 + 2 + 1 and abs(b1 - b2) <= 1, (b1, b2)
        code, ds = env.cluster.request("GET", "/v1/datasets/ds")
        assert ds["cached"] == total, ds


def test_store_outage_is_retried_with_backoff_fake_master(tmp_path):
    with Env(tmp_path) as env:
        env.add(1, "r.bin", 3 * MiB)
        env.worker.start()
        env.store.stop()  # the store goes away; a read comes in
        result = []
        t = threading.Thread(target=lambda: result.append(env.worker.get(f"/v1/blocks/{EPOCH}-1-1-0")))
        t.start()
        time.sleep(0.4)
        env.store.start()  # back on the same port within the retries' backoff
        t.join(timeout=30)
        assert result and result[0][0] == 200 and result[0][2] == env.files[1]
        assert env.worker.metrics()["weir_worker_fill_retries_total"] >= 1


def test_stop_during_a_huge_load_fake_master(tmp_path):
    """SIGTERM in the middle of a long load (64 MiB from a store that sends 256 KiB/s per
    connection: ~16 s) ends it (its reply: the load was canceled) and the worker exits promptly
    instead of walking through every remaining block. (A load of a file described larger than
    it is no longer is long: test_attack_third.py.)"""
    with Env(tmp_path, throttle=256 * 1024) as env:
        env.add(1, "big.bin", 64 * MiB)
        env.worker.start()
        done = []

        def load():
            try:
                done.append(env.worker.post(
                    "/v1/load", {"dataset": "ds", "files": [{"epoch": EPOCH, "file_id": 1, "version": 1,
                                                             "size": 64 * MiB}]}, timeout=30))
            except (OSError, http.client.HTTPException) as e:  # closed before the reply
                done.append(("closed", str(e)))

        t = threading.Thread(target=load, daemon=True)
        t.start()
        time.sleep(2)
        assert env.worker.status()["load"]["active"] == 1
        t0 = time.monotonic()
        assert env.worker.stop(timeout=20) == 0
        assert time.monotonic() - t0 < 10
        t.join(timeout=10)
        # The load ended: with its reply when the reply beat the server's shutdown, or with the
        # connection closed; never still running (the thread would not have finished).
        assert done, "the load request never ended"
        assert done[0][0] == "closed" or (done[0][0] == 502 and "canceled" in done[0][1]["error"]), done
