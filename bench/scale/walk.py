#!/usr/bin/env python3
"""Metadata walks through weir-fuse against the same tree on local disk, in one run.

Makes an ImageNet-shaped tree (FILES sparse 4 KiB files in 1,000 directories, names like
n00000042/n00000042_1234.JPEG) on local disk, serves it with nginx autoindex (127.0.3.x), syncs
it into one weir-master and mounts it with weir-fuse, then times, for each command:

  local cold    the command on the local tree after echo 3 > /proc/sys/vm/drop_caches
  local warm    again, caches kept
  weir cold     through a freshly started weir-fuse, after drop_caches
  weir warm     again, caches kept

for `find DIR`, `ls -lR DIR` and `du -s DIR` (output to /dev/null), and weir-fuse's RSS after the
`ls -lR` pair, per file. With --old-build-dir, the weir rows are measured a second time with that
build's weir-fuse (the previous design: whole listings, stat cache of every child) against the
same master and tree, so both ratios come from the same run.

Rounds (--runs, default 3) interleave local and each build so that the shared machine's load
weighs on all alike; medians are printed. Ratios: weir cold / local cold, weir warm / local warm,
and the CPU seconds a cold walk costs (the command with the kernel's side of it, weir-fuse and
the master, against the command alone on local disk), which the load does not inflate.
--xattrs adds `ls -lR` with WEIR_FUSE_XATTRS=1. Run as root, inside a private network
namespace (the integration tests' rule):

    unshare -n sh -c 'ip link set lo up && bench/scale/walk.py --files 100000 \\
        --old-build-dir /path/to/old/build --xattrs'

The master's per-dataset entry limit (spec.maxEntries) defaults to 100M, so 1.28M files sync as
they are. weir-fuse runs with its defaults (compact listing pages, WEIR_FUSE_LIST_AHEAD 8); an
--old-build-dir from before them reads JSON pages from the same master.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, HERE)

from weirtest.fusemount import FuseDaemon, drop_caches, lazy_unmount  # noqa: E402
from weirtest.stores import Nginx, SyncCluster  # noqa: E402
from scalelib import DIRS, make_tree, rss_bytes  # noqa: E402

COMMANDS = {
    "find": lambda d: ["find", d],
    "ls -lR": lambda d: ["ls", "-lR", d],
    "du -s": lambda d: ["du", "-s", d],
}


def timed(cmd, cpu=None):
    """Wall seconds of CMD; CPU seconds (user + system) of CMD itself appended to CPU."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return wall


def foreign_drops():
    """How many drop_caches the kernel logged from other processes (other sessions' tests on
    this shared machine drop every cache, ours too, at any moment)."""
    out = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines()
               if "drop_caches" in line and f"({os.getpid()})" not in line)


def cpu_seconds(pid):
    """utime + stime of PID and its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Mount:
    """weir-fuse of one build on WORK/mnt-LABEL; restart() gives a cold daemon."""

    def __init__(self, build_dir, config, node, work, label, env=None):
        self.mnt = os.path.join(work, f"mnt-{label}")
        os.makedirs(self.mnt, exist_ok=True)
        self.fuse = FuseDaemon(os.path.join(build_dir, "services", "fuse", "weir-fuse"), config,
                               node, "imagenet", self.mnt, work,
                               env=dict({"WEIR_FUSE_RETRY": "60s", "WEIR_LOG_LEVEL": "notice"},
                                        **(env or {})))
        self.fuse.log_path = os.path.join(work, f"weir-fuse-{label}.log")

    def restart(self):
        self.stop()
        self.fuse.start()

    def stop(self):
        try:
            self.fuse.stop()
        finally:
            self.fuse.kill()
            lazy_unmount(self.mnt)

    @property
    def root(self):
        return os.path.join(self.mnt, "train")


def measure_local(tree, commands):
    out = {}
    for name, cmd in commands.items():
        drop_caches()
        cpu = []
        cold = timed(cmd(tree), cpu)
        d0 = foreign_drops()
        warm = timed(cmd(tree))
        out[name] = (cold, warm, cpu[0], foreign_drops() - d0)
    return out


def measure_weir(m, master_pid, commands):
    out = {}
    rss = None
    for name, cmd in commands.items():
        m.restart()
        rss0 = rss_bytes(m.fuse.proc.pid)
        drop_caches()
        c0 = (cpu_seconds(m.fuse.proc.pid), cpu_seconds(master_pid))
        cpu = []
        cold = timed(cmd(m.root), cpu)
        c1 = (cpu_seconds(m.fuse.proc.pid), cpu_seconds(master_pid))
        d0 = foreign_drops()
        warm = timed(cmd(m.root))
        dropped = foreign_drops() - d0
        # CPU of the cold walk: the command itself (with the kernel's FUSE side), weir-fuse and
        # the master: what the walk costs whatever the machine's load
        out[name] = (cold, warm, cpu[0] + (c1[0] - c0[0]) + (c1[1] - c0[1]), dropped)
        print(f"# {m.fuse.binary}: {name} cold {cold:.2f} s, CPU weir-fuse {c1[0] - c0[0]:.2f} s, "
              f"master {c1[1] - c0[1]:.2f} s; warm {warm:.2f} s"
              f"{' (caches dropped by another process meanwhile)' if dropped else ''}",
              flush=True)
        if name == "ls -lR":
            rss = (rss0, rss_bytes(m.fuse.proc.pid))
    return out, rss


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--old-build-dir", help="a previous build's directory: its weir-fuse too")
    ap.add_argument("--files", type=int, default=100000)
    ap.add_argument("--work", default=None, help="where the tree and logs go (kept for reuse)")
    ap.add_argument("--runs", type=int, default=3, help="rounds; medians are reported")
    ap.add_argument("--xattrs", action="store_true",
                    help="also ls -lR with WEIR_FUSE_XATTRS=1 (what answering xattrs costs)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (FUSE mounts, drop_caches)")
    work = args.work or os.path.join(tempfile.gettempdir(), "weir-walk-bench")
    tree_root = os.path.join(work, "tree")
    make_tree(tree_root, args.files, 4096, marker=".walk-tree")
    run = tempfile.mkdtemp(prefix="run-", dir=work)
    mounts = []
    with Nginx(tree_root, "127.0.3.4", os.path.join(run, "nginx")) as nginx:
        sc = SyncCluster(os.path.join(run, "masters"), args.build_dir,
                         {"imagenet": {"mounts": [("train", nginx.url, {})]}}, n=1)
        with sc:
            sc.wait_leader(timeout=30)
            t = time.monotonic()
            ds = sc.wait_dataset("imagenet", lambda d: d.get("synced") or d.get("sync_error"),
                                 timeout=3600)
            if ds.get("sync_error"):
                sys.exit(f"sync failed: {ds['sync_error']}")
            print(f"# master synced {ds.get('total_files')} files in "
                  f"{time.monotonic() - t:.1f} s (from its start)", flush=True)
            try:
                builds = [("new", args.build_dir, {}, COMMANDS)]
                if args.old_build_dir:
                    builds.append(("old", args.old_build_dir, {}, COMMANDS))
                if args.xattrs:
                    builds.append(("new+xattrs", args.build_dir, {"WEIR_FUSE_XATTRS": "1"},
                                   {"ls -lR": COMMANDS["ls -lR"]}))
                # rounds interleave local and each build, so that the machine's load (shared,
                # 2 cores) weighs on all of them alike; medians are reported
                rounds = {"local": []}
                for _ in range(args.runs):
                    rounds["local"].append(measure_local(tree_root, COMMANDS))
                    for label, b, env, cmds in builds:
                        m = Mount(b, sc.c.yaml_path, sc.c.masters[0].name, run, label, env)
                        mounts.append(m)
                        rounds.setdefault(label, []).append(
                            measure_weir(m, sc.c.masters[0].proc.pid, cmds))
                        m.stop()
            finally:
                for m in mounts:
                    m.stop()
    local = {name: tuple(statistics.median(r[name][k] for r in rounds["local"])
                         for k in (0, 1, 2)) + (sum(r[name][3] for r in rounds["local"]),)
             for name in COMMANDS}
    results = {}
    for label, runs in rounds.items():
        if label == "local":
            continue
        times = {name: tuple(statistics.median(r[0][name][k] for r in runs) for k in (0, 1, 2)) +
                 (sum(r[0][name][3] for r in runs),)
                 for name in runs[0][0]}
        rss = tuple(statistics.median(r[1][k] for r in runs if r[1]) for k in (0, 1))
        results[label] = (times, rss)
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    n = args.files
    print(f"\n{n} files in {DIRS} directories (sparse 4 KiB), nginx autoindex, 1 master; "
          f"median of {args.runs} rounds; load average at the end {' '.join(load)}\n")
    print(f"| command | local cold | local warm | " +
          " | ".join(f"weir {lb} cold (÷ local) | weir {lb} warm (÷ local)" for lb in results) +
          " |")
    print("|---|---|---|" + "---|---|" * len(results))
    for name in COMMANDS:
        lc, lw, _, ld = local[name]
        row = f"| `{name}` | {lc:.2f} s | {lw:.2f} s{'*' if ld else ''} |"
        for lb in results:
            if name not in results[lb][0]:
                row += " – | – |"
                continue
            wc, ww, _, wd = results[lb][0][name]
            row += (f" {wc:.2f} s ({wc / lc:.1f}×) | {ww:.2f} s ({ww / lw:.1f}×)"
                    f"{'*' if wd else ''} |")
        print(row)
    print("\n*: in some round another process dropped the kernel's caches during this warm walk")
    print(f"\nCPU seconds of the cold walk (the command, weir-fuse and the master; local: the "
          f"command):\n")
    print("| command | local | " + " | ".join(f"weir {lb}" for lb in results) + " |")
    print("|---|---|" + "---|" * len(results))
    for name in COMMANDS:
        lc = local[name][2]
        row = f"| `{name}` | {lc:.2f} s |"
        for lb in results:
            if name in results[lb][0]:
                wc = results[lb][0][name][2]
                row += f" {wc:.2f} s ({wc / lc:.1f}×) |"
            else:
                row += " – |"
        print(row)
    for lb in results:
        before, after = results[lb][1]
        print(f"\nweir-fuse ({lb}) RSS after ls -lR: {after / 2**20:.1f} MiB, "
              f"{after / n:.0f} bytes per file ({before / 2**20:.1f} MiB before the walk: "
              f"{(after - before) / n:.0f} bytes per file more)")
    print(json.dumps({"files": n, "load": load, "local": local,
                      "weir": {lb: {"times": r[0], "rss": r[1]} for lb, r in results.items()}}))


if __name__ == "__main__":
    main()
