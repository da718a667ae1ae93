#!/usr/bin/python3
"""Randomised fault run (minutes, not in CI): three nodes (weir-master + weir-worker each, on
127.0.4.1-3) and an nginx store, while client threads read blocks through random workers (every
byte compared with the store's file) and write labels through the masters; meanwhile, at random:

- kill -9 a master, restart it 1-3 s later;
- kill -9 a worker, restart it 1-3 s later;
- partition the leader from its followers (nftables rules dropping every packet between their
  addresses, both ways) for 3-8 s;
- SIGSTOP a master or a worker for 2-5 s, then SIGCONT;
- fill the workers' tier filesystem (a tmpfs smaller than the tiers' quotas): another writer
  takes up to 64 MiB of it for 3-8 s, writing again whenever the workers evict, then frees it.

At the end it heals everything and checks that every acknowledged label is there with its value
(zero acknowledged writes lost) and that no read returned wrong bytes; it prints operations,
errors by kind, the unavailability windows (stretches in which every attempt of a kind failed)
and the faults, and exits 1 when a check failed.

Everything runs in private network and mount namespaces that the script makes for itself
(`unshare -n -m`, as root): the nftables rules, the loopback addresses and the tmpfs cannot
touch the machine, and vanish with the run.

    bench/chaos/chaos.py [--duration 180] [--seed 1] [--build-dir build] [--scale 0.1]
"""

import argparse
import collections
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from weirtest.fusecluster import TOKEN  # noqa: E402

MiB = 1 << 20
TIER_FS = "160m"    # the tmpfs under the workers' MEM level...
TIER_QUOTA = "1Gi"  # ...whose quota is larger: ENOSPC is the filesystem's, not the quota's
BLOCK = "4Mi"


def reexec_in_namespaces():
    if os.environ.get("WEIR_CHAOS_INNER") == "1":
        return
    if os.geteuid() != 0:
        sys.exit("chaos.py needs root (private network and mount namespaces, nftables, tmpfs)")
    for tool in ("unshare", "nft", "nginx", "ip"):
        if shutil.which(tool) is None:
            sys.exit(f"chaos.py needs {tool} (scripts/deps.sh check installs it)")
    env = dict(os.environ, WEIR_CHAOS_INNER="1")
    os.execvpe("unshare", ["unshare", "-n", "-m", "--propagation", "private", sys.executable,
                           os.path.abspath(__file__)] + sys.argv[1:], env)


class Timeline:
    """Outcomes per kind with their times: counts, errors, unavailability windows."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ops = collections.Counter()
        self.errors = collections.Counter()
        self.events = collections.defaultdict(list)  # kind -> [(t, ok)]
        self.latency = collections.defaultdict(list)  # kind -> [seconds] of successful ops

    def record(self, kind, ok, error=None, started=None):
        t = time.monotonic()
        with self.lock:
            self.ops[kind] += 1
            if not ok:
                self.errors[f"{kind}: {error}"] += 1
            elif started is not None:
                self.latency[kind].append(t - started)
            self.events[kind].append((t, ok))

    def windows(self, kind, min_s=0.0):
        """[(start, length)] of stretches from a failure to the next success of KIND."""
        out, start = [], None
        for t, ok in sorted(self.events[kind]):
            if not ok and start is None:
                start = t
            elif ok and start is not None:
                if t - start >= min_s:
                    out.append((start, t - start))
                start = None
        if start is not None:
            out.append((start, float("inf")))
        return out


class Chaos:
    def __init__(self, args, work):
        from weirtest.fusecluster import DemoCluster

        self.args = args
        self.rnd = random.Random(args.seed)
        self.work = work
        self.tier = os.path.join(work, "tier")
        os.makedirs(self.tier)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TIER_FS}", "weir-chaos", self.tier],
                       check=True)
        self.cluster = DemoCluster(os.path.join(work, "demo"), args.build_dir, scale=args.scale,
                                   block_size=BLOCK, tier_quota=TIER_QUOTA, mem_dir=self.tier)
        self.tl = Timeline()
        self.stop = threading.Event()
        self.meta = {}  # name -> stat entry
        self.meta_lock = threading.Lock()
        self.acked = {}  # label key -> value, acknowledged by the API
        self.wrong = []  # (what, detail)
        self.faults = []  # (t, description)
        self.stopped = set()  # processes under SIGSTOP (to SIGCONT at the end)
        self.t0 = None

    # -- helpers --

    def store_bytes(self, name, off, length):
        with open(os.path.join(self.cluster.store_root, "hbase", name), "rb") as f:
            f.seek(off)
            return f.read(length)

    def entry(self, name, fresh=False):
        with self.meta_lock:
            e = self.meta.get(name)
        if e and not fresh:
            return e
        code, body = self.cluster.request("GET", "/v1/datasets/hbase/stat?path=/hbase/" + name,
                                          timeout=2.0)
        if code != 200:
            return None
        with self.meta_lock:
            self.meta[name] = body
        return body

    def fault(self, what):
        self.faults.append((time.monotonic() - self.t0, what))
        print(f"  {time.monotonic() - self.t0:7.1f}s  {what}", flush=True)

    def leader_index(self):
        m = self.cluster.leader()
        return None if m is None else self.cluster.masters.index(m)

    # -- clients --

    def reader(self, idx):
        rnd = random.Random(self.args.seed * 1000 + idx)
        names = sorted(self.cluster.files)
        bs = 4 * MiB
        while not self.stop.is_set():
            name = rnd.choice(names)
            e = self.entry(name)
            if e is None:
                self.tl.record("read", False, "no metadata")
                time.sleep(0.1)
                continue
            nblocks = max(1, -(-e["size"] // bs))
            i = rnd.randrange(nblocks)
            blen = min(bs, e["size"] - i * bs)
            off, length = 0, blen
            if rnd.random() < 0.5 and blen > 1:
                off = rnd.randrange(blen)
                length = rnd.randint(1, blen - off)
            started = time.monotonic()
            # As weir-fuse does: another worker when one does not answer (dead or stopped).
            first = rnd.randrange(3)
            status, body, node, err = None, b"", first, None
            for k in range(3):
                node = (first + k) % 3
                addr = self.cluster.addresses[node]
                port = self.cluster.ports[addr][2]
                bid = f"{e['epoch']}-{e['file_id']}-{e['version']}-{i}"
                try:
                    c = http.client.HTTPConnection(addr, port, timeout=5)
                    c.request("GET", f"/v1/blocks/{bid}",
                              headers={"Range": f"bytes={off}-{off + length - 1}",
                                       "Authorization": f"Bearer {TOKEN}"})
                    r = c.getresponse()
                    status, body = r.status, r.read()
                    c.close()
                except OSError as ex:
                    err = type(ex).__name__
                    self.tl.ops["read attempts failed over"] += 1
                    continue
                if status in (200, 206):
                    break
                self.tl.ops["read attempts failed over"] += 1
            if status in (200, 206):
                want = self.store_bytes(name, i * bs + off, length)
                got = body if status == 206 else body[off:off + length]
                if got != want:
                    self.wrong.append(("read", f"{bid} bytes {off}+{length} from node{node + 1}: "
                                                f"{len(got)} bytes, differ"))
                    self.tl.record("read", False, "WRONG BYTES")
                else:
                    self.tl.record("read", True, started=started)
                    self.tl.ops["read bytes"] += length
            else:
                if status in (404, 409):
                    self.entry(name, fresh=True)
                self.tl.record("read", False, f"HTTP {status}" if status else err)
                time.sleep(0.05)

    def writer(self):
        n = 0
        while not self.stop.is_set():
            n += 1
            key, value = f"chaos-{n}", f"v{n}-{random.random()}"
            started = time.monotonic()
            code, _ = self.cluster.request("PUT", f"/v1/datasets/hbase/labels/{key}",
                                           body={"value": value}, timeout=2.0)
            if code == 200:
                self.acked[key] = value
                self.tl.record("write", True, started=started)
            else:
                self.tl.record("write", False, f"HTTP {code}" if code else "unreachable")
                time.sleep(0.05)
            time.sleep(0.02)

    # -- faults --

    def kill_restart(self, procs, kind):
        i = self.rnd.randrange(len(procs))
        p = procs[i]
        if kind == "master" and not p.running:
            return
        self.fault(f"kill -9 {kind} node{i + 1}")
        try:
            p.kill()
        finally:
            time.sleep(self.rnd.uniform(1, 3))
            p.start()
            self.fault(f"restarted {kind} node{i + 1}")

    def partition_leader(self):
        li = self.leader_index()
        if li is None:
            return
        lead = self.cluster.addresses[li]
        others = [a for j, a in enumerate(self.cluster.addresses) if j != li]
        rules = ["add table inet chaos",
                 "add chain inet chaos out { type filter hook output priority 0 ; }"]
        for a in others:
            rules.append(f"add rule inet chaos out ip saddr {lead} ip daddr {a} drop")
            rules.append(f"add rule inet chaos out ip saddr {a} ip daddr {lead} drop")
        subprocess.run(["nft", "-f", "-"], input="\n".join(rules) + "\n", text=True, check=True)
        self.fault(f"partitioned leader node{li + 1} from its followers")
        time.sleep(self.rnd.uniform(3, 8))
        subprocess.run(["nft", "delete", "table", "inet", "chaos"], check=True)
        self.fault("partition healed")

    def sigstop(self):
        procs = [(f"master node{i + 1}", m.proc) for i, m in enumerate(self.cluster.masters)
                 if m.running]
        procs += [(f"worker node{i + 1}", w.proc) for i, w in enumerate(self.cluster.workers)
                  if w.running]
        name, proc = self.rnd.choice(procs)
        os.kill(proc.pid, signal.SIGSTOP)
        self.stopped.add(proc.pid)
        self.fault(f"SIGSTOP {name}")
        time.sleep(self.rnd.uniform(2, 5))
        os.kill(proc.pid, signal.SIGCONT)
        self.stopped.discard(proc.pid)
        self.fault(f"SIGCONT {name}")

    def fill_disk(self):
        """Another program grabs up to 64 MiB of the tier's filesystem (whatever it can get,
        writing again as the workers evict) for 3-8 s, then frees it."""
        path = os.path.join(self.tier, "filler")
        hold = self.rnd.uniform(3, 8)
        end = time.monotonic() + hold
        got = 0
        self.fault("filling the tier filesystem (up to 64 MiB)")
        with open(path, "wb", buffering=0) as f:
            chunk = b"\0" * MiB
            while time.monotonic() < end:
                if got < 64 * MiB:
                    try:
                        got += f.write(chunk)
                        continue
                    except OSError:
                        pass
                time.sleep(0.05)
        os.unlink(path)
        self.fault(f"tier filesystem freed (the filler got {got >> 20} MiB)")

    def fault_loop(self):
        c = self.cluster
        kinds = [lambda: self.kill_restart(c.masters, "master"),
                 lambda: self.kill_restart(c.workers, "worker"),
                 self.partition_leader, self.sigstop, self.fill_disk]
        while not self.stop.is_set():
            self.stop.wait(self.rnd.uniform(2, 5))
            if self.stop.is_set():
                break
            try:
                self.rnd.choice(kinds)()
            except Exception as ex:  # a fault that could not be applied is reported, not fatal
                import traceback
                self.fault(f"fault failed: {ex!r} at "
                           f"{traceback.extract_tb(ex.__traceback__)[-1][:3]}")

    # -- the run --

    def run(self):
        c = self.cluster
        c.start(fuse=False)
        for name in c.files:
            assert self.entry(name), name
        self.t0 = time.monotonic()
        threads = [threading.Thread(target=self.reader, args=(i,), daemon=True)
                   for i in range(self.args.readers)]
        threads.append(threading.Thread(target=self.writer, daemon=True))
        threads.append(threading.Thread(target=self.fault_loop, daemon=True))
        print(f"chaos: {self.args.duration}s, seed {self.args.seed}, dataset "
              f"{sum(c.files.values()) / MiB:.1f} MiB in {len(c.files)} files, "
              f"{self.args.readers} readers, 1 writer", flush=True)
        for t in threads:
            t.start()
        time.sleep(self.args.duration)
        self.stop.set()
        for t in threads:
            t.join(timeout=60)
        self.heal()
        return self.check()

    def heal(self):
        subprocess.run(["nft", "delete", "table", "inet", "chaos"], capture_output=True)
        for pid in list(self.stopped):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        for m in self.cluster.masters:
            if not m.running:
                m.start()
        for w in self.cluster.workers:
            if not w.running:
                w.start()
        filler = os.path.join(self.tier, "filler")
        if os.path.exists(filler):
            os.unlink(filler)
        self.cluster.wait(lambda: self.cluster.leader() is not None, 60, "a leader after healing")

    def check(self):
        deadline = time.monotonic() + 60
        labels = None
        while time.monotonic() < deadline:
            code, body = self.cluster.request("GET", "/v1/datasets/hbase/labels")
            if code == 200:
                labels = body["labels"]
                break
            time.sleep(0.2)
        lost = ["no answer to GET labels"] if labels is None else [
            k for k, v in self.acked.items() if labels.get(k) != v]
        tl = self.tl
        dur = self.args.duration
        report = {"duration_s": dur, "seed": self.args.seed,
                  "dataset_mib": round(sum(self.cluster.files.values()) / MiB, 1),
                  "reads": tl.ops["read"], "read_mib": round(tl.ops["read bytes"] / MiB, 1),
                  "writes": tl.ops["write"], "writes_acknowledged": len(self.acked),
                  "acknowledged_writes_lost": len(lost), "wrong_bytes": len(self.wrong),
                  "errors": dict(tl.errors), "faults": len(self.faults)}
        print("\nfaults:")
        for t, what in self.faults:
            print(f"  {t:7.1f}s  {what}")
        print("\nunavailability (stretches where every attempt failed, >= 0.1 s):")
        for kind in ("read", "write"):
            w = [(s - self.t0, n) for s, n in tl.windows(kind, 0.1)]
            total = sum(n for _, n in w if n != float("inf"))
            longest = max((n for _, n in w), default=0.0)
            report[f"{kind}_unavailable_windows"] = len(w)
            report[f"{kind}_unavailable_total_s"] = round(total, 2)
            report[f"{kind}_unavailable_longest_s"] = (round(longest, 2)
                                                        if longest != float("inf") else "to the end")
            lat = sorted(tl.latency[kind]) or [0.0]
            p99, worst = lat[min(len(lat) - 1, int(len(lat) * 0.99))], lat[-1]
            slow = sum(1 for x in lat if x > 1.0)
            report[f"{kind}_latency_p50_ms"] = round(lat[len(lat) // 2] * 1000, 1)
            report[f"{kind}_latency_p99_ms"] = round(p99 * 1000, 1)
            report[f"{kind}_latency_max_s"] = round(worst, 2)
            report[f"{kind}_slower_than_1s"] = slow
            print(f"  {kind}: {len(w)} windows, {total:.1f} s in all, longest {longest:.2f} s; "
                  f"successful ones: p50 {lat[len(lat) // 2] * 1000:.0f} ms, p99 "
                  f"{p99 * 1000:.0f} ms, max {worst:.2f} s, {slow} over 1 s")
            for s, n in w:
                print(f"    at {s:7.1f}s for {n:.2f}s")
        print("\nerrors by kind:")
        for k, n in sorted(tl.errors.items(), key=lambda x: -x[1]):
            print(f"  {n:6d}  {k}")
        for what, detail in self.wrong[:20]:
            print(f"WRONG BYTES: {detail}")
        for k in lost[:20]:
            print(f"LOST WRITE: {k}")
        print("\n" + json.dumps(report, indent=1))
        # A run in which nothing succeeded proves nothing (a refused token, a dead cluster).
        idle = [k for k in ("read", "write") if not tl.latency[k]]
        for k in idle:
            print(f"NO SUCCESSFUL {k.upper()}S: the run checked nothing")
        ok = not lost and not self.wrong and not idle
        print("\nchaos:", "OK: zero acknowledged writes lost, zero wrong bytes" if ok
              else "FAILED")
        return 0 if ok else 1

    def close(self):
        try:
            self.cluster.stop()
        finally:
            subprocess.run(["umount", "-l", self.tier], capture_output=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=180, help="seconds of faults (180)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--scale", type=float, default=0.1,
                    help="dataset size as a share of the hbase-shaped 553 MiB (0.1)")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    args = ap.parse_args()
    args.build_dir = os.path.abspath(args.build_dir)
    reexec_in_namespaces()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    work = tempfile.mkdtemp(prefix="weir-chaos-")
    os.chmod(work, 0o755)
    chaos = Chaos(args, work)
    try:
        rc = chaos.run()
    finally:
        chaos.close()
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
