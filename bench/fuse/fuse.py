#!/usr/bin/env python3
"""weir-fuse against curl, local disk, httpdirfs and rclone, in one run, on one dataset.

Starts the seeds' demo (three nodes on 127.0.4.1-3: masters + workers, nginx on 127.0.4.4 with a
generated hbase-like dataset of six files, weir-fuse on node1) and times `cp -r` of the dataset:

  curl            each file downloaded from nginx (the cold baseline)
                  (before it and before every cold copy, the store's files are read once so that
                  nginx serves them from memory: cold means cold for weir, not for the store)
  local kept      cp -r of the store directory, its pages cached
  local dropped   the same after echo 3 > /proc/sys/vm/drop_caches
  weir cold       cp -r through the mount, nothing cached anywhere
  weir warm kept  again, the kernel's page cache kept
  weir warm drop  again after drop_caches (blocks come from the worker's tier by fd)
                  (the workers' MEM level is a directory on /dev/shm, a tmpfs, as in the seeds)
  httpdirfs / rclone mount --vfs-cache-mode full: cold, warm kept, warm dropped, same nginx

Ratios: cold / curl; warm dropped / local dropped; warm kept / local kept. Run as root:

    bench/fuse/fuse.py --build-dir build [--scale 1.0] [--runs 3]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from weirtest.fusecluster import DemoCluster  # noqa: E402
from weirtest.fusemount import drop_caches, is_mounted, lazy_unmount  # noqa: E402


def timed(cmd, **kw):
    t = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.monotonic() - t


def cache_store_files(c):
    """Reads the store's files so that nginx serves them from the page cache."""
    for name in c.files:
        with open(os.path.join(c.store_root, "hbase", name), "rb") as f:
            while f.read(1 << 20):
                pass


def cp_time(src, dst):
    shutil.rmtree(dst, ignore_errors=True)
    subprocess.run(["sync"])
    t = timed(["cp", "-r", src, dst])
    shutil.rmtree(dst, ignore_errors=True)
    return t


def curl_time(c, dst):
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    args = ["curl", "-sSf"]
    for name in c.files:
        args += ["-o", os.path.join(dst, name), f"{c.nginx.url}hbase/{name}"]
    subprocess.run(["sync"])
    t = timed(args)
    shutil.rmtree(dst, ignore_errors=True)
    return t


def wait_mount(mnt, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_mounted(mnt):
            try:
                os.listdir(mnt)
                return True
            except OSError:
                pass
        if proc is not None and proc.poll() not in (None, 0):
            return False
        time.sleep(0.1)
    return False


def other_fs(kind, c, work):
    """(cold, warm kept, warm dropped) seconds through httpdirfs or rclone, or a skip reason."""
    mnt = os.path.join(work, f"mnt-{kind}")
    cache = os.path.join(work, f"cache-{kind}")
    os.makedirs(mnt, exist_ok=True)
    os.makedirs(cache, exist_ok=True)
    url = f"{c.nginx.url}hbase/"
    if kind == "httpdirfs":
        if not shutil.which("httpdirfs"):
            return "httpdirfs not installed (apt install httpdirfs)"
        # --no-range-check: httpdirfs 1.2.5 misreads nginx's range support (its issue #188)
        cmd = ["httpdirfs", "-f", "--no-range-check", "--cache", "--cache-location", cache, url,
               mnt]
    else:
        if not shutil.which("rclone"):
            return "rclone not installed (apt install rclone)"
        cmd = ["rclone", "mount", ":http:", mnt, "--http-url", url, "--read-only",
               "--vfs-cache-mode", "full", "--cache-dir", cache, "--dir-cache-time", "1h"]
    log = open(os.path.join(work, f"{kind}.log"), "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not wait_mount(mnt, proc):
            return f"{kind} did not mount (see {log.name})"
        dst = os.path.join(work, f"copy-{kind}")
        drop_caches()
        cache_store_files(c)
        try:
            cold = cp_time(mnt, dst)
            kept = cp_time(mnt, dst)
            drop_caches()
            dropped = cp_time(mnt, dst)
        except subprocess.CalledProcessError as e:
            return f"{kind} failed: {e} (see {log.name})"
        return cold, kept, dropped
    finally:
        lazy_unmount(mnt)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--scale", type=float, default=1.0, help="dataset size factor (1.0 = ~553 MiB)")
    ap.add_argument("--runs", type=int, default=3, help="rounds; medians are reported")
    ap.add_argument("--no-others", action="store_true", help="skip httpdirfs and rclone")
    ap.add_argument("--block-size", default=None,
                    help="the dataset's blockSize (default 16Mi); larger than every file lets a "
                         "weir-fuse built with libfuse >= 3.17 pass every file through")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (FUSE mounts, drop_caches)")

    rows = {k: [] for k in ("curl", "local kept", "local dropped", "weir cold", "weir warm kept",
                            "weir warm dropped")}
    others = {}
    total = 0
    for r in range(a.runs):
        work = tempfile.mkdtemp(prefix="weir-fusebench-")
        shm = tempfile.mkdtemp(prefix="weir-fusebench-", dir="/dev/shm")
        c = DemoCluster(work, os.path.abspath(a.build_dir), scale=a.scale, mem_dir=shm,
                        block_size=a.block_size)
        try:
            c.start()
            total = sum(c.files.values())
            src = os.path.join(c.store_root, "hbase")
            mnt = os.path.join(c.mnt, "hbase")
            dst = os.path.join(work, "copy")
            cache_store_files(c)
            rows["curl"].append(curl_time(c, dst))
            rows["local kept"].append(cp_time(src, dst))
            drop_caches()
            rows["local dropped"].append(cp_time(src, dst))
            drop_caches()
            cache_store_files(c)
            store_before = c.store_bytes()
            rows["weir cold"].append(cp_time(mnt, dst))
            cold_store = c.store_bytes() - store_before
            rows["weir warm kept"].append(cp_time(mnt, dst))
            drop_caches()
            store_before = c.store_bytes()
            rows["weir warm dropped"].append(cp_time(mnt, dst))
            warm_store = c.store_bytes() - store_before
            print(f"run {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in rows.items())
                  + f"; store bytes cold {cold_store}, warm {warm_store}", flush=True)
            if not a.no_others and r == 0:
                for kind in ("httpdirfs", "rclone"):
                    others[kind] = other_fs(kind, c, work)
                    print(f"{kind}: {others[kind]}", flush=True)
        finally:
            c.stop()
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(shm, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in rows.items()}
    mib = total / (1 << 20)
    print(f"\ndataset: 6 files, {mib:.1f} MiB; {a.runs} runs, medians; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print("| case | seconds | MiB/s | ratio | target |")
    print("|---|---|---|---|---|")
    for k in ("curl", "local kept", "local dropped"):
        print(f"| {k} | {med[k]:.2f} | {mib / med[k]:.0f} | | |")
    print(f"| weir cold | {med['weir cold']:.2f} | {mib / med['weir cold']:.0f} | "
          f"{med['weir cold'] / med['curl']:.2f}x curl | <= 1.2x |")
    print(f"| weir warm, page cache dropped | {med['weir warm dropped']:.2f} | "
          f"{mib / med['weir warm dropped']:.0f} | "
          f"{med['weir warm dropped'] / med['local dropped']:.2f}x local dropped | <= 1.1x |")
    print(f"| weir warm, page cache kept | {med['weir warm kept']:.2f} | "
          f"{mib / med['weir warm kept']:.0f} | "
          f"{med['weir warm kept'] / med['local kept']:.2f}x local kept | <= 1.5x |")
    for kind, res in others.items():
        if isinstance(res, str):
            print(f"| {kind} | skipped: {res} | | | |")
            continue
        cold, kept, dropped = res
        print(f"| {kind} cold | {cold:.2f} | {mib / cold:.0f} | {cold / med['curl']:.2f}x curl | |")
        print(f"| {kind} warm, dropped | {dropped:.2f} | {mib / dropped:.0f} | "
              f"{dropped / med['local dropped']:.2f}x local dropped | |")
        print(f"| {kind} warm, kept | {kept:.2f} | {mib / kept:.0f} | "
              f"{kept / med['local kept']:.2f}x local kept | |")


if __name__ == "__main__":
    main()
