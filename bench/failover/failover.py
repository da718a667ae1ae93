#!/usr/bin/python3
"""Failover benchmark: time from SIGKILL of the leader master to the first write the API accepts.

Starts N masters (default 3) on 127.0.1.1.. with the YAML's default raft timing (election 300 ms,
heartbeat 50 ms, pre-vote), then for each round: wait for one leader that everyone follows,
SIGKILL it, PUT a label through the survivors (redirects followed, 5 ms between attempts) until
one is accepted, restart the killed master and wait until it has caught up. Prints every round
and min / median / p95 / max.

    bench/failover/failover.py [--rounds 20] [--masters 3] [--build-dir build]
                               [--baseline-build-dir OTHER_BUILD]
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


def run_rounds(build_dir, rounds, masters, keep=False, label=""):
    """ROUNDS kills of the leader on a fresh cluster of BUILD_DIR's weir-master; seconds each."""
    tmp = tempfile.mkdtemp(prefix="weir-failover-")
    cluster = MasterCluster(tmp, os.path.abspath(build_dir), n=masters, first_address=1)
    times = []
    try:
        cluster.start()
        leader = cluster.wait_leader()
        for m in cluster.masters:
            if m is not leader:
                wait_caught_up(cluster, m, leader)
        for rnd in range(rounds):
            leader = cluster.wait_leader()
            cluster.put_label(f"warm{rnd}", "1")
            survivors = [m for m in cluster.masters if m is not leader]
            t0 = time.monotonic()
            leader.kill()
            dt = first_accepted_write(cluster, survivors, f"after{rnd}", t0)
            times.append(dt)
            new = cluster.wait_leader()
            print(f"{label}round {rnd + 1:2d}: killed {leader.name}, {new.name} accepted a write "
                  f"after {dt * 1000:6.0f} ms", flush=True)
            leader.start()
            wait_caught_up(cluster, leader, new)
    finally:
        cluster.stop()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return times


def summary(times):
    ms = [t * 1000 for t in times]
    return (f"{len(ms)} rounds: min {min(ms):.0f} ms, median {statistics.median(ms):.0f} ms, "
            f"p95 {percentile(ms, 95):.0f} ms, max {max(ms):.0f} ms")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--masters", type=int, default=3)
    ap.add_argument("--build-dir", default=os.environ.get("WEIR_BUILD_DIR",
                                                          os.path.join(ROOT, "build")))
    ap.add_argument("--baseline-build-dir",
                    help="also measure this build (e.g. one before a change), in alternating "
                         "batches of 5 rounds so that load changes hit both, and print the ratio")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    for d in [args.build_dir] + ([args.baseline_build_dir] if args.baseline_build_dir else []):
        binary = os.path.join(d, "services/master/weir-master")
        if not os.access(binary, os.X_OK):
            sys.exit(f"{binary} is not built")

    if args.baseline_build_dir:
        times, base = [], []
        while len(times) < args.rounds:
            n = min(5, args.rounds - len(times))
            base += run_rounds(args.baseline_build_dir, n, args.masters, args.keep, "baseline ")
            times += run_rounds(args.build_dir, n, args.masters, args.keep, "build    ")
    else:
        times = run_rounds(args.build_dir, args.rounds, args.masters, args.keep)

    ms = [t * 1000 for t in times]
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
          f"on {os.cpu_count()} CPUs (timings degrade when the machine is oversubscribed)")
    print(f"{args.masters} masters, {args.build_dir}: {summary(times)}")
    if args.baseline_build_dir:
        bms = [t * 1000 for t in base]
        print(f"{args.masters} masters, baseline {args.baseline_build_dir}: {summary(base)}")
        print(f"ratio build/baseline: median {statistics.median(ms) / statistics.median(bms):.2f}, "
              f"p95 {percentile(ms, 95) / percentile(bms, 95):.2f}")
    print("target: median <= 600 ms, p95 <= 1000 ms:",
          "met" if statistics.median(ms) <= 600 and percentile(ms, 95) <= 1000 else "NOT met")


if __name__ == "__main__":
    main()
