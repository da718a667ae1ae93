#!/usr/bin/env python3
"""weir over an emulated WAN against curl, in one run: cold and warm copies, CPU per byte.

Two network namespaces joined by two TUN devices and `wanfwd` (built here from wanfwd.c with cc),
which holds every packet DELAY ms in each direction (20 ms: a 40 ms round trip; this kernel has
no netem), and `tbf` at RATE (400 Mbit/s) on both TUNs. The store side (10.99.0.1) runs nginx
with autoindex (or s3rver from npm, for the S3 dataset); the weir side (10.99.0.2, plus
127.0.4.1-3 inside its namespace) runs the seeds' demo: three weir-masters (Raft), three
weir-workers with a MEM level on /dev/shm, weir-fuse on node1 (weirtest.fusecluster).

Datasets (each served under hbase/ of its own store):
  large   the seeds' six hbase-shaped files (553 MiB)
  small   N files of 16-128 KiB in D directories (default 2,000 in 20)
  s3      the small set in an s3rver bucket (skipped without npm / s3rver)

Rows, each with its own timing:
  curl           one curl process, the files one after another (one kept-alive connection)
  curl -P 8      xargs -P 8 over curl processes of 25 files each
  cluster start  masters up to the first completed sync of the dataset
  weir cold      cp -r from the mount, nothing cached (fresh cluster)
  weir cold x8   8 readers (xargs -P 8 cp --parents, 25 files each), fresh cluster
  weir warm      cp -r again with the page cache dropped (blocks come from the workers)
For every weir row: CPU seconds of each daemon group (/proc/PID/stat utime+stime of every
process in its session) per GiB copied, store requests per file and store bytes / dataset bytes
(nginx's access log). Run as root:

    bench/wan/wan.py --build-dir build [--small-files 2000 --dirs 20] [--only small,large,s3]
"""

import argparse
import contextlib
import ctypes
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from weirtest.fusecluster import DemoCluster, make_dataset  # noqa: E402
from weirtest.fusemount import drop_caches, nginx_bytes_sent  # noqa: E402
from weirtest.stores import Nginx, S3rverS3, s3rver_modules  # noqa: E402

CLONE_NEWNET = 0x40000000
STORE_ADDR, WEIR_ADDR = "10.99.0.1", "10.99.0.2"
GiB = 1 << 30
KiB = 1 << 10
_libc = ctypes.CDLL(None, use_errno=True)


def setns(path):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns {path}: {os.strerror(e)}")
    finally:
        os.close(fd)


class Wan:
    """The two namespaces, the forwarder and the rate limits; stop() undoes all of it."""

    def __init__(self, work, delay_ms, rate):
        tag = f"{os.getpid()}"
        self.store_ns, self.weir_ns = f"weirwan-s-{tag}", f"weirwan-w-{tag}"
        self.work, self.delay_ms, self.rate = work, delay_ms, rate
        self.fwd = None
        self.created = []
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    def ip(self, *args):
        subprocess.run(["ip", *args], check=True)

    def start(self):
        fwd_bin = os.path.join(self.work, "wanfwd")
        subprocess.run(["cc", "-O2", "-Wall", "-o", fwd_bin, os.path.join(HERE, "wanfwd.c")],
                       check=True)
        for ns in (self.store_ns, self.weir_ns):
            self.ip("netns", "add", ns)
            self.created.append(ns)
        self.fwd_log = open(os.path.join(self.work, "wanfwd.log"), "wb")
        self.fwd = subprocess.Popen([fwd_bin, f"/run/netns/{self.store_ns}",
                                     f"/run/netns/{self.weir_ns}", "wan0", str(self.delay_ms)],
                                    stdout=subprocess.PIPE, stderr=self.fwd_log,
                                    start_new_session=True)
        if self.fwd.stdout.readline().strip() != b"ready":
            raise RuntimeError("wanfwd did not start (see wanfwd.log)")
        for ns, me, peer in ((self.store_ns, STORE_ADDR, WEIR_ADDR),
                             (self.weir_ns, WEIR_ADDR, STORE_ADDR)):
            self.ip("-n", ns, "link", "set", "lo", "up")
            self.ip("-n", ns, "addr", "add", me, "peer", peer, "dev", "wan0")
            self.ip("-n", ns, "link", "set", "wan0", "up")
            subprocess.run(["tc", "-n", ns, "qdisc", "add", "dev", "wan0", "root", "tbf", "rate",
                            self.rate, "burst", "256kb", "latency", "50ms"], check=True)
        return self

    @contextlib.contextmanager
    def store_side(self):
        """Runs the block in the store's namespace (servers started here stay there)."""
        setns(f"/run/netns/{self.store_ns}")
        try:
            yield
        finally:
            setns(f"/run/netns/{self.weir_ns}")

    def enter_weir_side(self):
        setns(f"/run/netns/{self.weir_ns}")

    def stop(self):
        if _libc.setns(self.home, CLONE_NEWNET) != 0:
            print("cannot return to the initial network namespace", file=sys.stderr)
        if self.fwd and self.fwd.poll() is None:
            self.fwd.terminate()
            try:
                self.fwd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.fwd.kill()
                self.fwd.wait()
        for ns in self.created:
            subprocess.run(["ip", "netns", "del", ns], check=False)
        self.created = []


# ---- datasets ----

def small_dataset(n_files, n_dirs, seed=11):
    def make(root):
        rnd = random.Random(seed)
        files = {}
        for i in range(n_files):
            rel = f"d{i % n_dirs:02d}/f{i:05d}.bin"
            path = os.path.join(root, "hbase", rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            size = rnd.randrange(16 * KiB, 128 * KiB + 1)
            with open(path, "wb") as f:
                f.write(rnd.randbytes(size))
            files[rel] = size
        for dirpath, _, filenames in os.walk(root):
            os.chmod(dirpath, 0o755)
            for fn in filenames:
                os.chmod(os.path.join(dirpath, fn), 0o644)
        return files
    return make


# ---- stores in the store namespace ----

def nginx_store(wan):
    def make(root, workdir):
        with wan.store_side():
            s = Nginx(root, STORE_ADDR, workdir)
        start = s.start
        s.start = lambda: _in_store(wan, start)
        s.access_log = os.path.join(workdir, "access.log")
        return s
    return make


def _in_store(wan, fn):
    with wan.store_side():
        return fn()


def s3_curl(store):
    """curl's options to sign as the S3 store's key (curl 7.88 signs with SigV4 but leaves out
    x-amz-content-sha256, which s3rver requires)."""
    return ["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{store.key_id}:{store.secret}",
            "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]


def s3_requests(store):
    """Requests in s3rver's log (one "info: PATH STATUS TIMEms SIZE" line each)."""
    try:
        with open(os.path.join(store.workdir, "server.log"), errors="replace") as f:
            return sum(1 for line in f if re.search(r" \d{3} \d+ms ", line))
    except FileNotFoundError:
        return 0


def s3_store(wan, modules):
    """s3rver with SigV4 checked (weirtest.stores.S3rverS3), bucket "bench" holding the
    dataset's files under hbase/."""
    def make(root, workdir):
        with wan.store_side():
            s = S3rverS3(STORE_ADDR, workdir, modules)
        start = s.start

        def start_and_fill():
            with wan.store_side():
                start()
                s.populate("bench", {f"hbase/{k}": v for k, v in files_of(root).items()})
            return s
        s.start = start_and_fill
        return s
    return make


def files_of(root):
    out = {}
    base = os.path.join(root, "hbase")
    for dirpath, _, filenames in os.walk(base):
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            out[os.path.relpath(p, base)] = os.path.getsize(p)
    return out


def s3_mount(store):
    return ("hbase", "s3://bench/hbase/",
            {"fs.s3a.endpoint": store.url.rstrip("/"), "fs.s3a.endpoint.region": "us-east-1",
             "fs.s3a.access.key": store.key_id, "fs.s3a.secret.key": store.secret})


# ---- measuring ----

TICK = os.sysconf("SC_CLK_TCK")


def session_cpu():
    """{session id: CPU seconds} of every process."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        sid = int(fields[3])
        out[sid] = out.get(sid, 0) + (int(fields[11]) + int(fields[12])) / TICK
    return out


def groups(c):
    g = {"worker node1": [c.workers[0].proc.pid],
         "workers 2-3": [w.proc.pid for w in c.workers[1:]],
         "weir-fuse": [c.fuse.proc.pid],
         "masters": [m.proc.pid for m in c.masters],
         "store": [c.nginx.proc.pid]}
    return g


def cpu_of(c):
    s = session_cpu()
    return {k: sum(s.get(p, 0) for p in pids) for k, pids in groups(c).items()}


def children_cpu():
    t = os.times()
    return t.children_user + t.children_system


def store_requests(c):
    if isinstance(c.nginx, S3rverS3):
        return s3_requests(c.nginx)
    with open(c.nginx.access_log) as f:
        return sum(1 for _ in f)


def store_bytes(c):
    if isinstance(c.nginx, S3rverS3):
        return None
    return nginx_bytes_sent(c.nginx.access_log)


def tree_bytes(d):
    total, n = 0, 0
    for dirpath, _, filenames in os.walk(d):
        for fn in filenames:
            total += os.path.getsize(os.path.join(dirpath, fn))
            n += 1
    return n, total


def run(cmd, **kw):
    t = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.monotonic() - t


def curl_rows(c, files, dst, s3):
    auth = s3_curl(c.nginx) if s3 else []
    base = f"{c.nginx.url}bench/hbase/" if s3 else f"{c.nginx.url}hbase/"
    names = sorted(files)
    rows = {}

    def cfg(path, chunk):
        with open(path, "w") as f:
            for rel in chunk:
                f.write(f'url = "{base}{rel}"\noutput = "{os.path.join(dst, rel)}"\n')

    work = os.path.dirname(dst)
    shutil.rmtree(dst, ignore_errors=True)
    one = os.path.join(work, "curl-all.cfg")
    cfg(one, names)
    cpu = children_cpu()
    t = run(["curl", "-sSf", "--create-dirs", *auth, "-K", one])
    rows["curl"] = (t, children_cpu() - cpu)
    check_copy(dst, files)
    shutil.rmtree(dst)
    per = 25 if len(names) > 50 else 1
    lists = []
    for i in range(0, len(names), per):
        p = os.path.join(work, f"curl-{i // per}.cfg")
        cfg(p, names[i:i + per])
        lists.append(p)
    cpu = children_cpu()
    t = run(["xargs", "-P", "8", "-n", "1", "curl", "-sSf", "--create-dirs", *auth, "-K"],
            input="\n".join(lists).encode())
    rows["curl -P 8"] = (t, children_cpu() - cpu)
    check_copy(dst, files)
    shutil.rmtree(dst)
    return rows


def check_copy(dst, files):
    n, total = tree_bytes(dst)
    want = sum(files.values())
    if n != len(files) or total != want:
        raise RuntimeError(f"copy in {dst}: {n} files, {total} bytes; expected {len(files)}, "
                           f"{want}")


def weir_row(c, what, dst, files, readers=1):
    src = os.path.join(c.mnt, "hbase")
    shutil.rmtree(dst, ignore_errors=True)
    subprocess.run(["sync"])
    req0, bytes0, cpu0, ch0 = store_requests(c), store_bytes(c), cpu_of(c), children_cpu()
    if readers == 1:
        t = run(["cp", "-r", src, dst])
    else:
        for d in sorted({os.path.dirname(rel) for rel in files}):
            os.makedirs(os.path.join(dst, d), exist_ok=True)
        t = run(["xargs", "-P", str(readers), "-n", "25", "cp", "--parents", "-t", dst],
                input="\n".join(sorted(files)).encode(), cwd=src)
    cpu1, ch1 = cpu_of(c), children_cpu()
    reqs = store_requests(c) - req0
    b = store_bytes(c)
    check_copy(dst, files)
    shutil.rmtree(dst)
    return {"what": what, "seconds": t, "cpu": {k: cpu1[k] - cpu0[k] for k in cpu1},
            "reader cpu": ch1 - ch0, "store requests": reqs,
            "store bytes": None if b is None else b - bytes0}


def cluster(work, build, wan, kind, files_fn, shm, block_size, cli):
    kw = {"dataset": files_fn, "mem_dir": shm, "block_size": block_size}
    if kind == "s3":
        kw.update(store=s3_store(wan, cli), mount=s3_mount)
    else:
        kw.update(store=nginx_store(wan))
    return DemoCluster(work, build, **kw)


def measure_dataset(a, wan, kind, files_fn, cli):
    """All rows of one dataset; returns (dataset files, rows)."""
    rows = []
    results = {}
    for phase in ("cold", "x8"):
        work = tempfile.mkdtemp(prefix=f"weir-wanbench-{kind}-")
        shm = tempfile.mkdtemp(prefix="weir-wanbench-", dir="/dev/shm")
        c = cluster(work, a.build_dir, wan, kind, files_fn, shm, a.block_size, cli)
        try:
            t0 = time.monotonic()
            c.start()
            results.setdefault("cluster start", []).append(time.monotonic() - t0)
            files = c.files
            dst = os.path.join(work, "copy")
            if phase == "cold":
                for k, v in curl_rows(c, files, dst, kind == "s3").items():
                    results[k] = v
                rows.append(weir_row(c, "weir cold cp -r", dst, files))
                drop_caches()
                rows.append(weir_row(c, "weir warm cp -r (page cache dropped)", dst, files))
                rows.append(weir_row(c, "weir warm cp -r (page cache kept)", dst, files))
            else:
                rows.append(weir_row(c, "weir cold, 8 readers", dst, files, readers=8))
            for r in rows[-3 if phase == "cold" else -1:]:
                print(f"  {kind}: {r['what']}: {r['seconds']:.2f} s, store requests "
                      f"{r['store requests']}", flush=True)
        finally:
            c.stop()
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(shm, ignore_errors=True)
    return files, results, rows


def report(kind, files, results, rows):
    n, total = len(files), sum(files.values())
    gib = total / GiB
    curl8 = results["curl -P 8"][0]
    curl1 = results["curl"][0]
    print(f"\n### {kind}: {n} files, {total / (1 << 20):.1f} MiB\n")
    print("| row | seconds | × curl | × curl -P 8 | CPU-s/GiB | store requests/file | "
          "store bytes/dataset |")
    print("|---|---|---|---|---|---|---|")
    for k in ("curl", "curl -P 8"):
        t, cpu = results[k]
        print(f"| {k} | {t:.2f} | {t / curl1:.2f} | {t / curl8:.2f} | curl {cpu / gib:.2f} | | |")
    starts = ", ".join(f"{s:.1f}" for s in results["cluster start"])
    print(f"| cluster start to first sync | {starts} | | | | | |")
    for r in rows:
        cpu = ", ".join(f"{k} {v / gib:.2f}" for k, v in r["cpu"].items() if v > 0.005)
        cpu += f", reader {r['reader cpu'] / gib:.2f}"
        sb = "" if r["store bytes"] is None else f"{r['store bytes'] / total:.2f}"
        print(f"| {r['what']} | {r['seconds']:.2f} | {r['seconds'] / curl1:.2f} | "
              f"{r['seconds'] / curl8:.2f} | {cpu} | {r['store requests'] / n:.2f} | {sb} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--delay-ms", type=int, default=20, help="one-way delay (default 20)")
    ap.add_argument("--rate", default="400mbit", help="tbf rate on each side")
    ap.add_argument("--small-files", type=int, default=2000)
    ap.add_argument("--dirs", type=int, default=20)
    ap.add_argument("--scale", type=float, default=1.0, help="size factor of the large set")
    ap.add_argument("--block-size", default=None)
    ap.add_argument("--only", default="small,large,s3")
    a = ap.parse_args()
    a.build_dir = os.path.abspath(a.build_dir)
    if os.geteuid() != 0:
        sys.exit("run as root (network namespaces, FUSE mounts, drop_caches)")
    def interrupted(sig, frame):
        raise KeyboardInterrupt(f"signal {sig}")

    # SIGTERM (and SIGINT, which a shell's background job ignores) unwind through the finally
    # blocks, so that namespaces, mounts and daemons go too
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    work = tempfile.mkdtemp(prefix="weir-wan-")
    wan = Wan(work, a.delay_ms, a.rate)
    out = []
    # before entering the namespaces, which have no route to the npm registry
    modules, why = s3rver_modules() if "s3" in a.only.split(",") else (None, "not asked for")
    try:
        wan.start()
        wan.enter_weir_side()
        sets = {"small": small_dataset(a.small_files, a.dirs),
                "large": lambda root: make_dataset(root, a.scale),
                "s3": small_dataset(a.small_files, a.dirs)}
        for kind in a.only.split(","):
            cli = None
            if kind == "s3":
                cli = modules
                if not cli:
                    print(f"s3: skipped: {why}")
                    continue
            print(f"{kind}: measuring", flush=True)
            out.append((kind, *measure_dataset(a, wan, kind, sets[kind], cli)))
    finally:
        wan.stop()
        with open(os.path.join(work, "wanfwd.log"), errors="replace") as f:
            fwd = f.read().strip()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nWAN: {a.delay_ms} ms each way, {a.rate}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; forwarder: {fwd}")
    for kind, files, results, rows in out:
        report(kind, files, results, rows)


if __name__ == "__main__":
    main()
