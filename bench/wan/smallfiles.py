#!/usr/bin/env python3
"""Many small files on loopback: `tar` through weir-fuse against 8 parallel wget and local tar.

The seeds' demo (three weir-masters and weir-workers on 127.0.4.1-3, nginx on 127.0.4.4,
weir-fuse on node1; the MEM level on /dev/shm) with N files of SIZE bytes in D directories.
Rows, in one run:
  wget -P 8   xargs -P 8 over wget processes of 100 files each (the cold baseline)
  local tar   tar -cf - of the store's directory into a pipe, page cache kept (the warm baseline)
  weir cold   tar through the mount, nothing cached (prefetch across files on, the default)
  weir warm   tar again after drop_caches (blocks cached on the worker)
  weir warm, kept   tar again with the kernel's page cache kept
  weir warm, no-open   the two warm rows again with weir-fuse restarted with WEIR_FUSE_NO_OPEN=1
                    (the kernel opens files without asking the daemon; --no-open-rows)
Run as root:

    bench/wan/smallfiles.py --build-dir build [--files 100000 --size 4096 --dirs 100]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from weirtest.fusecluster import DemoCluster  # noqa: E402
from weirtest.fusemount import drop_caches  # noqa: E402


def dataset(n, size, dirs):
    def make(root):
        files = {}
        body = os.urandom(size)
        for i in range(n):
            rel = f"d{i % dirs:03d}/f{i:06d}"
            path = os.path.join(root, "hbase", rel)
            if i < dirs:
                os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(body[i % 251:] + body[:i % 251])
            files[rel] = size
        for dirpath, _, _ in os.walk(root):
            os.chmod(dirpath, 0o755)
        return files
    return make


# GNU tar reads no file when its archive is /dev/null: make it write to a pipe
TAR = ["sh", "-c", "tar -cf - . | cat > /dev/null"]


def foreign_drops():
    """How many drop_caches the kernel has logged: other sessions on a shared machine write it
    every few seconds, and one landing in a "page cache kept" row makes it a dropped one (and
    a drop in the middle of a tar forgets the inodes it has yet to open)."""
    out = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    return out.count("drop_caches")


marked = set()


def timed(cmd, label=None, **kw):
    before = foreign_drops()
    t = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    dt = time.monotonic() - t
    if label and foreign_drops() != before:
        marked.add(label)
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--files", type=int, default=100000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--dirs", type=int, default=100)
    ap.add_argument("--prefetch-files", default=None,
                    help="WEIR_FUSE_PREFETCH_FILES for weir-fuse (default: its own, 16)")
    ap.add_argument("--no-open-rows", action="store_true",
                    help="also time the warm rows with WEIR_FUSE_NO_OPEN=1")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (FUSE mounts, drop_caches)")
    work = tempfile.mkdtemp(prefix="weir-smallfiles-")
    shm = tempfile.mkdtemp(prefix="weir-smallfiles-", dir="/dev/shm")
    env = {} if a.prefetch_files is None else {"WEIR_FUSE_PREFETCH_FILES": a.prefetch_files}
    c = DemoCluster(work, os.path.abspath(a.build_dir), mem_dir=shm, fuse_env=env,
                    dataset=dataset(a.files, a.size, a.dirs))
    rows = {}
    try:
        t = time.monotonic()
        c.start()
        rows["cluster start to first sync"] = time.monotonic() - t
        src = os.path.join(c.store_root, "hbase")
        mnt = os.path.join(c.mnt, "hbase")
        lst = os.path.join(work, "urls")
        with open(lst, "w") as f:
            for rel in sorted(c.files):
                f.write(f"{c.nginx.url}hbase/{rel}\n")
        dst = os.path.join(work, "wget")
        os.makedirs(dst)
        rows["wget -P 8"] = timed(["xargs", "-P", "8", "-n", "100", "wget", "-q", "-x", "-nH",
                                   "-P", dst], stdin=open(lst))
        shutil.rmtree(dst)
        timed(TAR, cwd=src)  # pages in
        rows["local tar, page cache kept"] = timed(TAR, "local tar, page cache kept", cwd=src)
        rows["weir cold tar"] = timed(TAR, cwd=mnt)
        drop_caches()
        rows["weir warm tar, page cache dropped"] = timed(TAR,
                                                          cwd=mnt)
        rows["weir warm tar, page cache kept"] = timed(TAR, "weir warm tar, page cache kept",
                                                       cwd=mnt)
        if a.no_open_rows:
            c.fuse.stop()
            c.fuse_env["WEIR_FUSE_NO_OPEN"] = "1"
            c.start_fuse()
            timed(TAR, cwd=mnt)  # the kernel's inodes and pages of this mount are new
            drop_caches()
            rows["weir warm tar, no-open, page cache dropped"] = timed(TAR, cwd=mnt)
            rows["weir warm tar, no-open, page cache kept"] = timed(
                TAR, "weir warm tar, no-open, page cache kept", cwd=mnt)
    finally:
        c.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)
    print(f"\n{a.files} files of {a.size} bytes in {a.dirs} directories; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print("| row | seconds | us per file | ratio |")
    print("|---|---|---|---|")
    for k, v in rows.items():
        ratio = ""
        if k == "weir cold tar":
            ratio = f"{v / rows['wget -P 8']:.2f}x wget -P 8 (target <= 1.0)"
        elif k.startswith("weir warm"):
            ratio = f"{v / rows['local tar, page cache kept']:.2f}x local tar (target <= 1.5)"
        per = f"{v / a.files * 1e6:.0f}" if k != "cluster start to first sync" else ""
        mark = " *" if k in marked else ""
        print(f"| {k}{mark} | {v:.2f} | {per} | {ratio} |")
    if marked:
        print("\n* another process wrote drop_caches during this row: its page cache was not "
              "kept throughout")


if __name__ == "__main__":
    main()
