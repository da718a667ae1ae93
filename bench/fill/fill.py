#!/usr/bin/env python3
"""Cache fill benchmark: an hbase-shaped dataset (six files, ~550 MiB) served by a local nginx,
filled into weir-worker and read through it, next to curl downloading the same files directly;
with and without a strict per-connection rate limit on the store (weirtest.throttle).

Columns: curl (one curl of all six files), load (cold fill: POST /v1/load of the dataset into an
empty cache, until the last block is cached), cold (an empty cache read through the worker block
after block), warm (the same read once cached), their ratios to curl, and the bytes the store
sent for one fill over the dataset's bytes.

The master is the stand-in of tests/integration/weirtest/workerenv.py (it answers the worker's
GET /v1/files/ID and the load's ls/stat): this measures the worker's fill path, not metadata.

    bench/fill/fill.py [--build-dir build] [--block-sizes 4Mi,16Mi,64Mi] [--limit 20m] [--runs 1]

Readers: each file is read block after block by one curl process reusing one connection (a
sequential reader, like the FUSE daemon). Store bytes come from nginx's access log.
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

from weirtest.workerenv import (EPOCH, FakeMaster, StoreNginx, Throttle, Worker, free_port,  # noqa: E402
                                write_config)

MiB = 1 << 20
KiB = 1 << 10
# The seeds' hbase set: two release tarballs, a client tarball, and small files.
FILES = [
    ("hbase-2.5.10-bin.tar.gz", 263 * MiB + 123457),
    ("hbase-2.5.10-hadoop3-bin.tar.gz", 252 * MiB + 54321),
    ("hbase-2.5.10-client-bin.tar.gz", 36 * MiB + 9999),
    ("hbase-2.5.10-src.tar.gz.asc", 1126 * KiB + 17),
    ("RELEASENOTES.md", 650 * KiB + 3),
    ("CHANGES.md", 29 * KiB + 11),
]
WORKER_ADDR = "127.0.2.103"


def parse_size(s):
    units = {"Ki": KiB, "Mi": MiB, "Gi": 1 << 30}
    for u, m in units.items():
        if s.endswith(u):
            return int(s[: -len(u)]) * m
    return int(s)


def make_dataset(root):
    os.makedirs(root, exist_ok=True)
    for name, size in FILES:
        path = os.path.join(root, name)
        if os.path.exists(path) and os.path.getsize(path) == size:
            continue
        with open(path, "wb") as f, open("/dev/urandom", "rb") as rnd:
            left = size
            while left:
                n = min(left, 8 * MiB)
                f.write(rnd.read(n))
                left -= n
        os.chmod(path, 0o644)


def curl(urls):
    cmd = ["curl", "-s", "-w", "%{http_code} %{url_effective}\\n"]
    for u in urls:
        cmd += ["-o", "/dev/null", u]
    t0 = time.monotonic()
    p = subprocess.run(cmd, check=True, timeout=600, capture_output=True, text=True)
    took = time.monotonic() - t0
    bad = [line for line in p.stdout.splitlines() if not line.startswith("2")]
    if bad:
        raise RuntimeError(f"failed downloads: {bad[:5]}")
    return took


def read_through_worker(worker, file_blocks):
    t0 = time.monotonic()
    for fid, n in file_blocks:
        curl([f"{worker.url}/v1/blocks/{EPOCH}-{fid}-1-{i}" for i in range(n)])
    return time.monotonic() - t0


def start_worker(args, work, store, master, block_size, tag, url):
    shm = tempfile.mkdtemp(prefix="weir-bench-", dir="/dev/shm")
    port = free_port(WORKER_ADDR)
    cfg = os.path.join(work, f"cluster-{tag}.yaml")
    write_config(cfg, master_nodes=[("m1", master.address, master.port)],
                 worker_nodes=[("w1", WORKER_ADDR, port, os.path.join(work, f"wdata-{tag}"),
                                os.path.join(work, f"wrun-{tag}"))],
                 store_url=url, tiers=[("MEM", shm, "2Gi", 0.95, 0.7)],
                 block_size=f"{block_size // KiB}Ki")
    binary = os.path.join(args.build_dir, "services", "worker", "weir-worker")
    w = Worker(binary, cfg, "w1", WORKER_ADDR, port, work, env={"WEIR_LOG_LEVEL": "warning"})
    w.shm = shm
    return w.start()


def run_one(args, tmp, data, block_size, limit):
    """curl; a cold load (POST /v1/load) then a warm read on one worker; a cold read-through on
    a second worker with an empty cache."""
    work = tempfile.mkdtemp(prefix="run-", dir=tmp)
    workers = []
    throttle = None
    try:
        with StoreNginx(data, os.path.join(work, "nginx"), address="127.0.2.110") as store, \
                FakeMaster(address="127.0.2.102") as master:
            # The limit is a strict per-connection throttle in front of nginx (weirtest.throttle):
            # nginx's limit_rate grants each request one second's worth at once, so it would not
            # limit ranges smaller than the rate at all.
            throttle = Throttle(store, limit * MiB).start() if limit else None
            url = (throttle or store).url
            file_blocks = []
            total = 0
            for i, (name, _) in enumerate(FILES, start=1):
                size, mtime, etag = store.version_of(name)
                master.add_file(i, "ds", "/data/" + name, size, mtime, etag, block_size)
                file_blocks.append((i, max(1, -(-size // block_size))))
                total += size
            curl_s = curl([url + name for name, _ in FILES])

            w = start_worker(args, work, store, master, block_size, "load", url)
            workers.append(w)
            store.wait_quiet()
            before = store.range_bytes()
            t0 = time.monotonic()
            try:
                status, body = w.post("/v1/load", {"dataset": "ds", "paths": ["/data"]})
            except OSError as e:
                raise RuntimeError(f"load failed: {e}; worker exit status {w.proc.poll()}\n"
                                   f"{w.log()[-3000:]}") from e
            load_s = time.monotonic() - t0
            if status != 200 or body["failed"]:
                raise RuntimeError(f"load failed: {body}\n{w.log()[-3000:]}")
            warm_s = read_through_worker(w, file_blocks)
            store.wait_quiet()
            load_bytes = store.range_bytes() - before
            w.stop()

            w = start_worker(args, work, store, master, block_size, "read", url)
            workers.append(w)
            before = store.range_bytes()
            try:
                cold_s = read_through_worker(w, file_blocks)
            except Exception:
                print(w.log()[-3000:], file=sys.stderr)
                raise
            store.wait_quiet()
            read_bytes = store.range_bytes() - before
            w.stop()
        return {"curl": curl_s, "load": load_s, "cold": cold_s, "warm": warm_s,
                "ratio": max(load_bytes, read_bytes) / total, "total": total}
    finally:
        if throttle:
            throttle.stop()
        for w in workers:
            w.kill()
            shutil.rmtree(w.shm, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--block-sizes", default="16Mi")
    ap.add_argument("--limit", type=float, default=20,
                    help="MiB/s per connection for the limited store (default 20)")
    ap.add_argument("--runs", type=int, default=1, help="N runs, each column's best")
    ap.add_argument("--data", default=None, help="where to keep the generated dataset")
    ap.add_argument("--only", choices=("loopback", "limit"), default=None,
                    help="run one of the two store setups only")
    args = ap.parse_args()
    if not shutil.which("nginx") or not shutil.which("curl"):
        print("bench/fill/fill.py: needs nginx and curl", file=sys.stderr)
        return 77
    tmp = tempfile.mkdtemp(prefix="weir-bench-fill-")
    os.chmod(tmp, 0o755)
    data = args.data or os.path.join(tmp, "data")
    make_dataset(data)
    total = sum(s for _, s in FILES)
    print(f"dataset: {len(FILES)} files, {total / MiB:.1f} MiB")
    print(f"{'store':>12} {'block':>6} {'curl s':>7} {'load s':>7} {'cold s':>7} {'warm s':>7} "
          f"{'load/curl':>9} {'cold/curl':>9} {'warm/curl':>9} {'store/dataset':>13}")
    try:
        limits = {"loopback": (None,), "limit": (args.limit,)}.get(args.only, (None, args.limit))
        for limit in limits:
            for bs in args.block_sizes.split(","):
                # Each column's minimum over the runs: on a shared machine the noise only ever
                # adds time, to curl and to the worker alike.
                runs = [run_one(args, tmp, data, parse_size(bs), limit) for _ in range(args.runs)]
                r = {k: min(x[k] for x in runs) for k in ("curl", "load", "cold", "warm")}
                r["ratio"] = max(x["ratio"] for x in runs)
                print(f"{(f'{limit:g} MiB/s') if limit else 'loopback':>12} {bs:>6} "
                      f"{r['curl']:7.2f} {r['load']:7.2f} {r['cold']:7.2f} {r['warm']:7.2f} "
                      f"{r['load'] / r['curl']:9.2f} {r['cold'] / r['curl']:9.2f} "
                      f"{r['warm'] / r['curl']:9.2f} {r['ratio']:13.2f}", flush=True)
    finally:
        if not args.data:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
