#!/usr/bin/env python3
"""The master at dataset scale: sync, re-sync, store requests, memory and disk per file,
snapshot copies, API stalls, leader changes, failover and catch-up; this build against an older
one (--old-build-dir) in the same run where both can run.

Datasets:
  nginx-html N   an ImageNet-shaped tree of N sparse files (1,000 directories, names like
                 n00000042/n00000042_1234.JPEG, 110 KiB each by truncate: metadata is what is
                 measured) served by nginx autoindex (HTML, the default format)
  nginx-json N   the same tree served with autoindex_format json
  synthetic N    weirtest/synthetic.py inventing N files (1,000 per directory) on the fly

Per dataset and build, with --masters masters (3):
  first sync     master start to the dataset Bound (leader elected, tree committed)
  re-sync        POST /v1/datasets/NAME/sync of the unchanged store to the new "synced" mark
  requests       listings and HEADs the store served, per sync
  RSS            VmRSS of each master after the syncs, bytes per file (max over the masters)
  disk           bytes under each master's directory (raft log + snapshots + state.mdb), per file
  copy           POST /v1/internal/state (a snapshot install's download) on the leader
  stall          /v1/status of the leader probed every 10 ms during the syncs and copies:
                 longest answer and p99
  leader changes terms seen during --churn seconds of re-syncs and a label write every 100 ms
  failover       SIGKILL of the leader to the first accepted label write (median of --kills)
  catch-up       restart of the killed master to its applied index equal to the leader's

Run as root inside a private network namespace:

    unshare -n sh -c 'ip link set lo up && bench/scale/master.py --dataset nginx-html:100000 \\
        --old-build-dir /path/to/old/build'
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, HERE)

from weirtest.cluster import http_request  # noqa: E402
from weirtest.stores import Nginx, SyncCluster  # noqa: E402
from scalelib import make_tree, rss_bytes  # noqa: E402
from weirtest.synthetic import SyntheticStore  # noqa: E402

FILE_SIZE = 110 * 1024


def du_bytes(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


class Prober:
    """GET /v1/status of whichever master leads, every 10 ms; latencies kept. With BASELINE_URL
    (an idle nginx of its own, a path it answers 404), the same cadence of requests to it from a
    second thread: the floor this machine's scheduling sets for a small HTTP answer from a
    process of normal priority at that moment."""

    def __init__(self, sc, baseline_url=None):
        self.sc, self.lat, self.stop_ev = sc, [], threading.Event()
        self.baseline_url, self.base = baseline_url, []
        self.terms = set()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.base_thread = threading.Thread(target=self.run_baseline, daemon=True)

    def run_baseline(self):
        while self.baseline_url and not self.stop_ev.is_set():
            t = time.monotonic()
            try:
                http_request("GET", self.baseline_url, timeout=10)
                self.base.append(time.monotonic() - t)
            except OSError:
                pass
            time.sleep(0.01)

    def run(self):
        target = None
        while not self.stop_ev.is_set():
            if target is None:
                try:
                    target = self.sc.wait_leader(timeout=30)
                except Exception:
                    continue
            t = time.monotonic()
            try:
                code, body, _ = http_request("GET", target.url("/v1/status"), timeout=10)
                self.lat.append(time.monotonic() - t)
                if code == 200:
                    self.terms.add(body.get("term"))
                    if body.get("role") != "leader":
                        target = None
            except OSError:
                target = None
            time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        self.base_thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.thread.join()
        self.base_thread.join()

    def summary(self):
        if not self.lat:
            return {}
        s = sorted(self.lat)
        out = {"probes": len(s), "max_ms": s[-1] * 1000,
               "p99_ms": s[min(len(s) - 1, int(len(s) * 0.99))] * 1000}
        if self.base:
            b = sorted(self.base)
            out["baseline_max_ms"] = b[-1] * 1000
            out["baseline_p99_ms"] = b[min(len(b) - 1, int(len(b) * 0.99))] * 1000
        return out


class LoopWatch:
    """Every master's /v1/status every 0.5 s: its term (each change is recorded with what its
    log said around it), the loop thread's lateness and the longest apply in the last seconds
    (the "loop" object: late_recent_ms, apply_recent_ms, a 5-10 s window, so a phase's maximum
    is the maximum of the polls)."""

    def __init__(self, sc):
        self.sc, self.stop_ev = sc, threading.Event()
        self.late_ms = self.apply_ms = self.runq_ms = 0.0
        self.snapshot_ms = 0.0
        self.changes = []  # (seconds since start, master, old term, new term, log excerpt)
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        terms, offsets = {}, {}
        t0 = time.monotonic()
        pending = []  # (due, record, {master: offset before the change})
        while not self.stop_ev.is_set():
            now = time.monotonic()
            for m in self.sc.c.masters:
                st = m.status(timeout=2)
                try:
                    size = os.path.getsize(m.log_path)
                except OSError:
                    size = 0
                if not st:
                    continue
                loop = st.get("loop") or {}
                self.late_ms = max(self.late_ms, loop.get("late_recent_ms", 0))
                self.apply_ms = max(self.apply_ms, loop.get("apply_recent_ms", 0))
                term = st.get("term")
                # term 1 -> 2 is the cluster's first election, not a leader change
                if m.name in terms and term != terms[m.name] and (terms[m.name] or 0) >= 2:
                    rec = [round(now - t0, 1), m.name, terms[m.name], term, ""]
                    self.changes.append(rec)
                    pending.append((now + 2, rec, dict(offsets)))
                terms[m.name] = term
                offsets[m.name] = offsets.get(m.name + ".new", size)
                offsets[m.name + ".new"] = size
            for item in list(pending):
                due, rec, offs = item
                if time.monotonic() >= due or self.stop_ev.is_set():
                    rec[4] = self.excerpt(offs)
                    pending.remove(item)
            self.stop_ev.wait(0.5)
        for due, rec, offs in pending:
            rec[4] = self.excerpt(offs)

    def excerpt(self, offsets):
        """What each master logged from OFFSETS on (a second before the change) to now."""
        keep = re.compile(r"late|took|Status:|leader|snapshot|Stopping|election", re.I)
        out = []
        for m in self.sc.c.masters:
            try:
                with open(m.log_path, "rb") as f:
                    f.seek(offsets.get(m.name, 0))
                    lines = f.read(200_000).decode(errors="replace").splitlines()
            except OSError:
                continue
            out += [f"{m.name}: {x}" for x in lines if keep.search(x)][:15]
        return "\n".join(out)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.thread.join()

    def summary(self):
        return {"loop_late_max_ms": round(self.late_ms, 1),
                "apply_max_ms": round(self.apply_ms, 1),
                "term_changes": len({(c[2], c[3]) for c in self.changes})}

    def report(self, label):
        for c in self.changes:
            print(f"# {label}: term change at {c[0]} s on {c[1]}: {c[2]} -> {c[3]}\n"
                  + "\n".join("#   " + x for x in c[4].splitlines()), flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class Counter:
    """Requests the store served: nginx's access log, or the synthetic store's counters."""

    def __init__(self, store):
        self.store = store

    def counts(self):
        if isinstance(self.store, SyntheticStore):
            c = self.store.counts
            return {"list": c["list"], "head": c["head"]}
        path = os.path.join(self.store.workdir, "access.log")
        lists = heads = 0
        try:
            with open(path, "rb") as f:
                for line in f:
                    m = re.search(rb'"(GET|HEAD) (\S+)', line)
                    if not m:
                        continue
                    if m.group(1) == b"HEAD":
                        heads += 1
                    elif m.group(2).endswith(b"/"):
                        lists += 1
        except OSError:
            pass
        return {"list": lists, "head": heads}


def wait_synced(sc, name, after, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            d = sc.dataset(name)
            if (d.get("synced") or 0) > after and d["phase"] == "Bound":
                return d
            if d["phase"] == "Failed":
                return d
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} not synced within {timeout}s")


def dataset(sc, name, timeout=120):
    """The dataset, through elections (an old build may lose its leader during a sync)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return sc.dataset(name)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def leader_term(sc):
    try:
        return sc.wait_leader(timeout=30).status(timeout=2)["term"]
    except Exception:
        return None


def resync(sc, name, timeout):
    """One unchanged re-sync; asked again when a leader change cancelled it (a new leader does
    not resume a re-sync its predecessor was asked for)."""
    before = dataset(sc, name).get("synced") or 0
    t = time.monotonic()
    while True:
        term = leader_term(sc)
        try:
            code, body, _ = sc.c.request("POST", f"/v1/datasets/{name}/sync", timeout=10)
        except Exception as e:
            code, body = None, repr(e)
        if code in (202, 409):
            while time.monotonic() - t < timeout:
                try:
                    d = sc.dataset(name)
                    if (d.get("synced") or 0) > before and d["phase"] == "Bound":
                        return time.monotonic() - t
                except Exception:
                    pass
                if leader_term(sc) != term:
                    break
                time.sleep(0.2)
        if time.monotonic() - t > timeout:
            raise RuntimeError(f"sync not done: {code} {body}")
        time.sleep(0.5)


def failover(sc, kills):
    times, catchups = [], []
    for k in range(kills):
        leader = sc.wait_leader(timeout=60)
        leader.signal(signal.SIGKILL)
        leader.proc.wait()
        t = time.monotonic()
        sc.c.put_label("failover", str(k), dataset="ds", deadline_s=60)
        times.append(time.monotonic() - t)
        leader.start()
        t = time.monotonic()
        while True:
            try:
                new = sc.wait_leader(timeout=30)
                target = new.status()["applied"]
                st = leader.status()
                if st and st["applied"] >= target:
                    break
            except Exception:
                pass
            if time.monotonic() - t > 120:
                raise RuntimeError("restarted master did not catch up")
            time.sleep(0.02)
        catchups.append(time.monotonic() - t)
        time.sleep(2)
    return times, catchups


def run_one(args, build_dir, label, store, n_files, work, raft_options=None, baseline=None):
    sc = SyncCluster(os.path.join(work, f"masters-{label}"), build_dir,
                     {"ds": {"mounts": [("train", store.url, {})]}}, n=args.masters,
                     raft_options=raft_options)
    counter = Counter(store)
    out = {"build": label}
    c0 = counter.counts()
    with sc:
        with Prober(sc, baseline) as probe, LoopWatch(sc) as watch:
            t = time.monotonic()
            d = wait_synced(sc, "ds", 0, args.timeout)
            out["first_sync_s"] = time.monotonic() - t
            print(f"# {label}: first sync {out['first_sync_s']:.1f} s, {counter.counts()}",
                  flush=True)
            out["phase"] = d["phase"]
            out["total_files"] = d.get("total_files")
            if d["phase"] != "Bound":
                out["error"] = d.get("sync_error")
                print(json.dumps(out), flush=True)
                return out
            c1 = counter.counts()
            out["first_requests"] = {k: c1[k] - c0[k] for k in c1}
            resyncs = []
            for _ in range(args.resyncs):
                resyncs.append(resync(sc, "ds", args.resync_timeout))
                print(f"# {label}: re-sync {resyncs[-1]:.1f} s, {counter.counts()}, "
                      f"terms {sorted(t for t in probe.terms if t)}", flush=True)
            c2 = counter.counts()
            out["resync_s"] = statistics.median(resyncs)
            out["resync_requests"] = {k: (c2[k] - c1[k]) / args.resyncs for k in c2}
            leader = sc.wait_leader()
            if label.startswith("new"):
                copies = []
                for _ in range(3):
                    t = time.monotonic()
                    code, _, _ = sc.c.request("POST", "/v1/internal/state", timeout=600,
                                              via=leader)
                    copies.append(time.monotonic() - t)
                    assert code == 200, code
                out["copy_s"] = statistics.median(copies)
            out["stall"] = probe.summary()
            out["terms_seen_during_syncs"] = sorted(t for t in probe.terms if t is not None)
            out["load_syncs"] = loadavg()
        out["loop_syncs"] = watch.summary()
        watch.report(f"{label} syncs")
        rss = {m.name: rss_bytes(m.proc.pid) for m in sc.c.masters}
        disk = {m.name: du_bytes(m.data_dir) for m in sc.c.masters}
        out["rss_per_file"] = max(rss.values()) / n_files
        out["disk_per_file"] = max(disk.values()) / n_files
        dbs = [os.path.join(m.data_dir, "master", "state.mdb") for m in sc.c.masters]
        if all(os.path.exists(x) for x in dbs):  # this design's database alone, raft log apart
            out["db_per_file"] = max(os.lstat(x).st_blocks * 512 for x in dbs) / n_files
        out["rss_mib"] = {k: round(v / 2**20, 1) for k, v in rss.items()}
        if args.churn > 0:
            terms0 = {m.name: m.status()["term"] for m in sc.c.masters}
            end = time.monotonic() + args.churn
            writes = 0
            stop = threading.Event()

            resyncs_done = [0]

            def syncer():
                while not stop.is_set():
                    try:
                        resync(sc, "ds", args.resync_timeout)
                        resyncs_done[0] += 1
                    except Exception:
                        pass

            th = threading.Thread(target=syncer, daemon=True)
            with Prober(sc, baseline) as probe, LoopWatch(sc) as watch:
                th.start()
                while time.monotonic() < end:
                    sc.c.put_label("churn", str(writes), dataset="ds", deadline_s=30)
                    writes += 1
                    time.sleep(0.1)
                stop.set()
                th.join()
            terms1 = {m.name: m.status()["term"] for m in sc.c.masters}
            out["churn_s"] = args.churn
            out["churn_writes"] = writes
            out["churn_term_changes"] = max(terms1[k] - terms0[k] for k in terms0)
            out["churn_stall"] = probe.summary()
            out["churn_resyncs"] = resyncs_done[0]
            out["load_churn"] = loadavg()
            out["loop_churn"] = watch.summary()
            watch.report(f"{label} churn")
        if args.kills > 0 and args.masters > 1:
            times, catchups = failover(sc, args.kills)
            out["failover_median_s"] = statistics.median(times)
            out["catchup_median_s"] = statistics.median(catchups)
            out["failover_s"] = [round(x, 3) for x in times]
            out["catchup_s"] = [round(x, 3) for x in catchups]
    print(json.dumps(out), flush=True)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dataset", action="append", required=True,
                   help="nginx-html:N, nginx-json:N or synthetic:N")
    p.add_argument("--old-build-dir")
    p.add_argument("--old-max-files", type=int, default=200_000,
                   help="run the old build only up to this many files")
    p.add_argument("--masters", type=int, default=3)
    p.add_argument("--resyncs", type=int, default=3)
    p.add_argument("--churn", type=float, default=60.0)
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--resync-timeout", type=float, default=600)
    p.add_argument("--work", default="/var/tmp/weir-bench-scale")
    p.add_argument("--loop-scheduling", default="realtime",
                   choices=["realtime", "normal", "both"],
                   help="spec.raft.loopScheduling of this build's masters; both: a run of each "
                   "(normal first), to compare them in the same session")
    p.add_argument("--keep-logs", metavar="DIR",
                   help="copy the masters' logs into DIR before the work directory goes")
    args = p.parse_args()
    build = os.environ.get("WEIR_BUILD_DIR", os.path.join(ROOT, "build"))
    os.makedirs(args.work, exist_ok=True)
    results = []
    for spec in args.dataset:
        kind, n = spec.split(":")
        n = int(n)
        scheds = (["normal", "realtime"] if args.loop_scheduling == "both"
                  else [args.loop_scheduling])
        builds = [(f"new-{x}" if len(scheds) > 1 else "new", build, {"loopScheduling": x})
                  for x in scheds]
        if args.old_build_dir and n <= args.old_max_files:
            builds.append(("old", args.old_build_dir, None))
        for label, bdir, raft_options in builds:
            work = tempfile.mkdtemp(prefix=f"{kind}-{n}-{label}-", dir=args.work)
            # An idle nginx answering 404: the machine's floor for a small HTTP answer.
            idle_root = os.path.join(work, "idle-root")
            os.makedirs(idle_root)
            idle = Nginx(idle_root, "127.0.3.41", os.path.join(work, "idle-nginx"))
            idle.start()
            baseline = idle.url + "weir-probe-404"
            try:
                if kind == "synthetic":
                    with SyntheticStore("127.0.3.40", max(n // 1000, 1), min(n, 1000)) as store:
                        r = run_one(args, bdir, label, store, n, work, raft_options, baseline)
                else:
                    tree = os.path.join(args.work, f"tree-{n}")
                    make_tree(tree, n, FILE_SIZE)
                    fmt = kind.split("-")[1]
                    with Nginx(tree, "127.0.3.40", os.path.join(work, "nginx"),
                               format=fmt) as store:
                        r = run_one(args, bdir, label, store, n, work, raft_options, baseline)
                r["dataset"] = spec
                results.append(r)
            finally:
                idle.stop()
                if args.keep_logs:
                    dest = os.path.join(args.keep_logs, os.path.basename(work))
                    os.makedirs(dest, exist_ok=True)
                    for dirpath, _, files in os.walk(work):
                        for name in files:
                            if name.endswith(".log"):
                                shutil.copy(os.path.join(dirpath, name), dest)
                shutil.rmtree(work, ignore_errors=True)
    print("# dataset build first_sync_s resync_s list/head(first) list/head(resync) "
          "rss_B/file disk_B/file db_B/file copy_s stall_max_ms stall_p99_ms terms failover_s catchup_s "
          "loop_late_max_ms(syncs/churn) apply_max_ms(syncs/churn) churn_stall_max/p99_ms "
          "baseline_max/p99_ms(syncs/churn) load")
    for r in results:
        print(r["dataset"], r["build"], f'{r.get("first_sync_s", 0):.1f}',
              f'{r.get("resync_s", 0):.2f}', r.get("first_requests"), r.get("resync_requests"),
              f'{r.get("rss_per_file", 0):.0f}', f'{r.get("disk_per_file", 0):.0f}',
              f'{r.get("db_per_file", 0):.0f}',
              f'{r.get("copy_s", 0):.2f}', f'{r.get("stall", {}).get("max_ms", 0):.0f}',
              f'{r.get("stall", {}).get("p99_ms", 0):.0f}', r.get("churn_term_changes"),
              r.get("failover_median_s"), r.get("catchup_median_s"),
              f'{r.get("loop_syncs", {}).get("loop_late_max_ms")}/'
              f'{r.get("loop_churn", {}).get("loop_late_max_ms")}',
              f'{r.get("loop_syncs", {}).get("apply_max_ms")}/'
              f'{r.get("loop_churn", {}).get("apply_max_ms")}',
              f'{r.get("churn_stall", {}).get("max_ms", 0):.0f}/'
              f'{r.get("churn_stall", {}).get("p99_ms", 0):.1f}',
              f'{r.get("stall", {}).get("baseline_max_ms", 0):.0f}/'
              f'{r.get("stall", {}).get("baseline_p99_ms", 0):.1f} '
              f'{r.get("churn_stall", {}).get("baseline_max_ms", 0):.0f}/'
              f'{r.get("churn_stall", {}).get("baseline_p99_ms", 0):.1f}',
              f'{r.get("load_syncs")} / {r.get("load_churn")}')
    by = {}
    for r in results:
        by.setdefault(r["dataset"], {})[r["build"]] = r
    for ds, pair in by.items():
        if "old" in pair and "new" in pair:
            o, n_ = pair["old"], pair["new"]
            for key in ("first_sync_s", "resync_s", "rss_per_file", "disk_per_file"):
                if o.get(key) and n_.get(key):
                    print(f"# {ds} {key}: new/old = {n_[key] / o[key]:.3f}")


if __name__ == "__main__":
    main()
