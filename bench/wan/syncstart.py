#!/usr/bin/env python3
"""Cluster start over the emulated WAN of wan.py, phase by phase, against curl of the listings.

A fresh demo cluster (three masters, three workers, weir-fuse on node1) starts against N files
(default 5,000 of 16-128 KiB in 50 directories) behind nginx's HTML index and then behind its
JSON index (autoindex_format json), each ROUNDS times. Phases, from the masters' start:
  leader        a master serves as leader
  first sync    the dataset's first sync committed (every file in the tree)
  workers       three workers registered
  mount         weir-fuse mounted and answering
  walk          `find` of the whole mount (every directory listed and every file stat'ed)
  re-sync       an unchanged re-sync asked for afterwards (POST .../sync until committed)
plus the leader's own sync time ("Synced dataset ... in X s" of its log), the store requests of
the sync (listing GETs and HEADs, from nginx's access log) per file, and the load average.
Baseline in the same run: curl fetching every listing page of the store one after another over
one kept-alive connection, and 8 at a time (xargs -P 8 over curl processes). Run as root:

    bench/wan/syncstart.py --build-dir build [--files 5000 --dirs 50 --rounds 2]
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from wan import STORE_ADDR, Wan, _in_store, small_dataset  # noqa: E402
from weirtest.fusecluster import DemoCluster, WorkerProc  # noqa: E402
from weirtest.stores import Nginx  # noqa: E402


def nginx_store(wan, fmt):
    def make(root, workdir):
        with wan.store_side():
            s = Nginx(root, STORE_ADDR, workdir, format=fmt)
        start = s.start
        s.start = lambda: _in_store(wan, start)
        return s
    return make


def access(log):
    """(listing GETs, HEADs, other requests) in nginx's combined access log."""
    gets = heads = other = 0
    with open(log) as f:
        for line in f:
            m = re.search(r'"(\w+) (\S+) HTTP', line)
            if not m:
                other += 1
            elif m.group(1) == "HEAD":
                heads += 1
            elif m.group(1) == "GET" and m.group(2).endswith("/"):
                gets += 1
            else:
                other += 1
    return gets, heads, other


def curl_listings(url, dirs, work):
    """Seconds to fetch every listing page (root and DIRS) one at a time and 8 at a time."""
    urls = [url] + [f"{url}{d}/" for d in dirs]
    one = os.path.join(work, "listings.cfg")
    with open(one, "w") as f:
        for u in urls:
            f.write(f'url = "{u}"\noutput = "/dev/null"\n')
    t = time.monotonic()
    subprocess.run(["curl", "-sSf", "-K", one], check=True)
    serial = time.monotonic() - t
    t = time.monotonic()
    subprocess.run(["xargs", "-P", "8", "-n", "1", "curl", "-sSf", "-o", "/dev/null"],
                   input="\n".join(urls).encode(), check=True)
    return serial, time.monotonic() - t


def start_phases(c, n_files, requests):
    """DemoCluster.start() with the time of each phase (seconds since the masters' start)."""
    out = {}
    c.nginx.start()
    c.write_yaml()
    t0 = time.monotonic()

    def until(name, cond, timeout=120):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not within {timeout} s:\n{c.c.logs()}")
            time.sleep(0.01)
        out[name] = time.monotonic() - t0

    c.c.start()
    until("leader", lambda: c.leader() is not None)

    def synced():
        body = c.request("GET", "/v1/datasets/hbase")[1] or {}
        return body.get("synced") and body.get("total_files") == n_files
    until("first sync", synced)
    out["first sync requests"] = requests()
    wbin = os.path.join(c.build_dir, "services/worker/weir-worker")
    for name in c.names:
        c.workers.append(WorkerProc(wbin, c.yaml_path, name, c.dir).start())

    def workers():
        return sum(1 for w in c.request("GET", "/v1/workers")[1]["workers"] if w["alive"]) == 3
    until("workers", workers)
    c.start_fuse()
    out["mount"] = time.monotonic() - t0
    t = time.monotonic()
    n = sum(len(fs) for _, _, fs in os.walk(c.mnt))
    out["walk"] = time.monotonic() - t
    if n != n_files:
        raise RuntimeError(f"the mount shows {n} files, not {n_files}")
    before = c.request("GET", "/v1/datasets/hbase")[1]["synced"]
    t = time.monotonic()
    code, body = c.request("POST", "/v1/datasets/hbase/sync", body={})
    if code not in (200, 202):
        raise RuntimeError(f"re-sync refused: {code} {body}")
    deadline = time.monotonic() + 120
    while (c.request("GET", "/v1/datasets/hbase")[1] or {}).get("synced") == before:
        if time.monotonic() > deadline:
            raise RuntimeError("the re-sync did not commit")
        time.sleep(0.01)
    out["re-sync"] = time.monotonic() - t
    after = requests()
    out["re-sync requests"] = tuple(b - a for a, b in zip(out["first sync requests"], after))
    return out


def synced_in(c):
    for m in c.masters:
        hit = re.search(r"Synced dataset hbase in ([0-9.]+)s: .*?(\d+) HEADs", m.log())
        if hit:
            return float(hit.group(1)), int(hit.group(2))
    return None, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-dir", default=os.path.join(os.path.dirname(os.path.dirname(HERE)),
                                                        "build"))
    ap.add_argument("--delay-ms", type=int, default=20)
    ap.add_argument("--rate", default="400mbit")
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--dirs", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--formats", default="html,json")
    ap.add_argument("--fresh", action="store_true",
                    help="start at once on files written in the last minute (HTML: all HEADed)")
    a = ap.parse_args()
    a.build_dir = os.path.abspath(a.build_dir)
    if os.geteuid() != 0:
        sys.exit("run as root (network namespaces, FUSE mounts)")

    def interrupted(sig, frame):
        raise KeyboardInterrupt(f"signal {sig}")
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    work = tempfile.mkdtemp(prefix="weir-syncstart-")
    wan = Wan(work, a.delay_ms, a.rate)
    rows = []
    try:
        wan.start()
        wan.enter_weir_side()
        for rnd in range(a.rounds):
            for fmt in a.formats.split(","):
                d = tempfile.mkdtemp(prefix=f"weir-syncstart-{fmt}-")
                shm = tempfile.mkdtemp(prefix="weir-syncstart-", dir="/dev/shm")
                c = DemoCluster(d, a.build_dir, dataset=small_dataset(a.files, a.dirs),
                                store=nginx_store(wan, fmt), mem_dir=shm)
                try:
                    # the store's files are older than a minute on a real store; here they
                    # were just written: wait until their minute has ended (docs/stores.md)
                    newest = max(os.stat(os.path.join(dp, f)).st_mtime
                                 for dp, _, fs in os.walk(c.store_root) for f in fs)
                    while not a.fresh and time.time() < (int(newest) // 60 + 1) * 60 + 1:
                        time.sleep(0.2)
                    log = os.path.join(c.nginx.workdir, "access.log")
                    ph = start_phases(c, len(c.files), lambda: access(log))
                    sync_s, heads = synced_in(c)
                    gets, heads_log, other = ph.pop("first sync requests")
                    re_gets, re_heads, _ = ph.pop("re-sync requests")
                    dirs = sorted({os.path.dirname(r) for r in c.files})
                    serial, par = curl_listings(f"{c.nginx.url}hbase/", dirs, d)
                    rows.append((fmt, rnd, ph, sync_s, heads_log, gets, other, serial, par,
                                 os.getloadavg()[0], re_gets, re_heads))
                    print(f"{fmt} round {rnd + 1}: " + ", ".join(f"{k} {v:.2f} s"
                                                                 for k, v in ph.items())
                          + f"; leader's sync {sync_s} s, {gets} listings, {heads_log} HEADs; "
                          f"re-sync {re_gets} listings, {re_heads} HEADs; "
                          f"curl listings {serial:.2f} s serial, {par:.2f} s x8; load "
                          f"{os.getloadavg()[0]:.1f}", flush=True)
                finally:
                    c.stop()
                    shutil.rmtree(d, ignore_errors=True)
                    shutil.rmtree(shm, ignore_errors=True)
    finally:
        wan.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nWAN: {a.delay_ms} ms each way, {a.rate}; {a.files} files in {a.dirs} directories\n")
    print("| index | round | leader | first sync (since start) | leader's sync | ÷ curl listings "
          "serial / x8 | workers | mount | find of the mount | listings | HEADs/file | "
          "unchanged re-sync (listings, HEADs) | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for fmt, rnd, ph, sync_s, heads, gets, other, serial, par, load, re_gets, re_heads in rows:
        sync_txt = f"{sync_s:.2f} s" if sync_s is not None else "?"
        ratio = (f"{sync_s / serial:.2f} / {sync_s / par:.2f} (curl {serial:.2f} / {par:.2f} s)"
                 if sync_s else "")
        print(f"| {fmt} | {rnd + 1} | {ph['leader']:.2f} s | {ph['first sync']:.2f} s | "
              f"{sync_txt} | {ratio} | {ph['workers']:.2f} s | {ph['mount']:.2f} s | "
              f"{ph['walk']:.2f} s | {gets} | {heads / a.files:.4f} | "
              f"{ph['re-sync']:.2f} s ({re_gets}, {re_heads}) | {load:.1f} |")


if __name__ == "__main__":
    main()
