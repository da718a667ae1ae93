#!/usr/bin/python3
"""Failover benchmark: time from SIGKILL of the leader master to the first write the API accepts.

Starts N masters (default 3) on 127.0.1.1.. with the YAML's default raft timing (election 300 ms,
heartbeat 50 ms, pre-vote), then for each round: wait for one leader that everyone follows,
SIGKILL it, PUT a label through the survivors (redirects followed, 5 ms between attempts) until
one is accepted, restart the killed master and wait until it has caught up. Prints every round
and min / median / p95 / max.

    bench/failover/failover.py [--rounds 20] [--masters 3] [--build-dir build]
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from weirtest.cluster import HttpError, MasterCluster, http_request  # noqa: E402


def first_accepted_write(cluster, survivors, key, t0, limit_s=30.0):
    while time.monotonic() - t0 < limit_s:
        for m in survivors:
            try:
                code, _, _ = http_request("PUT", m.url(f"/v1/datasets/demo/labels/{key}"),
                                          body={"value": key}, token=cluster.token, timeout=1.0)
            except (OSError, HttpError):
                continue
            if code == 200:
                return time.monotonic() - t0
        time.sleep(0.005)
    raise RuntimeError(f"no write accepted within {limit_s}s\n{cluster.logs()}")


def wait_caught_up(cluster, node, leader, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s, ls = node.status(), leader.status()
        if s and ls and s.get("leader") == leader.name and s["applied"] >= ls["applied"]:
            return
        time.sleep(0.02)
    raise RuntimeError(f"{node.name} did not catch up\n{cluster.logs()}")


def percentile(values, p):
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--masters", type=int, default=3)
    ap.add_argument("--build-dir", default=os.environ.get("WEIR_BUILD_DIR",
                                                          os.path.join(ROOT, "build")))
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    binary = os.path.join(args.build_dir, "services/master/weir-master")
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary} is not built")
    tmp = tempfile.mkdtemp(prefix="weir-failover-")
    cluster = MasterCluster(tmp, os.path.abspath(args.build_dir), n=args.masters, first_address=1)
    times = []
    try:
        cluster.start()
        leader = cluster.wait_leader()
        for m in cluster.masters:
            if m is not leader:
                wait_caught_up(cluster, m, leader)
        for rnd in range(args.rounds):
            leader = cluster.wait_leader()
            cluster.put_label(f"warm{rnd}", "1")
            survivors = [m for m in cluster.masters if m is not leader]
            t0 = time.monotonic()
            leader.kill()
            dt = first_accepted_write(cluster, survivors, f"after{rnd}", t0)
            times.append(dt)
            new = cluster.wait_leader()
            print(f"round {rnd + 1:2d}: killed {leader.name}, {new.name} accepted a write after "
                  f"{dt * 1000:6.0f} ms", flush=True)
            leader.start()
            wait_caught_up(cluster, leader, new)
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    ms = [t * 1000 for t in times]
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          f"on {os.cpu_count()} CPUs (timings degrade when the machine is oversubscribed)")
    print(f"{len(ms)} rounds, {args.masters} masters: min {min(ms):.0f} ms, "
          f"median {statistics.median(ms):.0f} ms, p95 {percentile(ms, 95):.0f} ms, "
          f"max {max(ms):.0f} ms")
    print("target: median <= 600 ms, p95 <= 1000 ms:",
          "met" if statistics.median(ms) <= 600 and percentile(ms, 95) <= 1000 else "NOT met")


if __name__ == "__main__":
    main()
