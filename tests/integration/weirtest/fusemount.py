"""weir-fuse under test: its YAML, the daemon, its mount, and a teardown that always unmounts.

FUSE tests use 127.0.4.0/24 only. A FuseDaemon runs in its own process group; stop() sends
SIGTERM, and whatever happens the mountpoint is lazily unmounted (fusermount3 -uz) so that a
failed test never leaves a mount or a process behind.
"""

import hashlib
import os
import signal
import subprocess
import time


def yaml_config(path, nodes, dataset, mounts, block_size=None, master_replicas=1, workers=1,
                tiers=None, attr_timeout=None, extra_dataset=""):
    """Writes a cluster YAML. NODES: [{name, address, roles?, dir}] (dir holds data, runtime and
    mount root); MOUNTS: [(name, url)]. Returns PATH."""
    lines = ["apiVersion: weir.io/v1", "kind: Cluster", "metadata: {name: fusetest}", "spec:",
             "  raft: {electionTimeout: 300ms, heartbeatTimeout: 50ms}", "  nodes:"]
    for n in nodes:
        d = n["dir"]
        roles = f", roles: [{', '.join(n['roles'])}]" if n.get("roles") else ""
        lines.append(f"    - {{name: {n['name']}, address: {n['address']}{roles}, "
                     f"dataDir: {d}/data, runtimeDir: {d}/run, mountRoot: {d}/mnt}}")
    lines += ["---", "apiVersion: data.fluid.io/v1alpha1", "kind: Dataset",
              f"metadata: {{name: {dataset}}}", "spec:"]
    if block_size:
        lines.append(f"  blockSize: {block_size}")
    if extra_dataset:
        lines.append(extra_dataset)
    lines.append("  mounts:")
    for name, url in mounts:
        lines.append(f"    - {{mountPoint: '{url}', name: {name}}}")
    lines += ["---", "apiVersion: data.fluid.io/v1alpha1", "kind: AlluxioRuntime",
              f"metadata: {{name: {dataset}}}", "spec:", f"  replicas: {workers}",
              f"  master: {{replicas: {master_replicas}}}"]
    if attr_timeout:
        lines.append(f"  fuse: {{attrTimeout: {attr_timeout}, entryTimeout: {attr_timeout}}}")
    tiers = tiers or [("MEM", os.path.join(os.path.dirname(path), "tier"), "2Gi")]
    lines += ["  tieredstore:", "    levels:"]
    for medium, p, quota in tiers:
        lines.append(f"      - {{mediumtype: {medium}, path: {p}, quota: {quota}, "
                     "high: '0.95', low: '0.7'}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def is_mounted(mountpoint):
    mnt = os.path.realpath(mountpoint)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4].encode().decode("unicode_escape") == mnt:
                return True
    return False


def lazy_unmount(mountpoint):
    """Removes a mount, even a dead one, without waiting for its users."""
    for _ in range(3):
        if not is_mounted(mountpoint):
            return
        subprocess.run(["fusermount3", "-uz", mountpoint], capture_output=True)
        if is_mounted(mountpoint):
            subprocess.run(["umount", "-l", mountpoint], capture_output=True)


class FuseDaemon:
    def __init__(self, binary, config, node, dataset, mountpoint, workdir, env=None):
        self.binary, self.config, self.node, self.dataset = binary, config, node, dataset
        self.mountpoint = mountpoint
        self.workdir = workdir
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.log_path = os.path.join(workdir, f"weir-fuse-{node}-{dataset}.log")

    def start(self, wait=True, timeout=30):
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "--config", self.config, "--node", self.node, "--dataset",
                 self.dataset, "--mountpoint", self.mountpoint],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env=self.env)
        if wait:
            self.wait_mounted(timeout)
        return self

    def wait_mounted(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weir-fuse exited with {self.proc.returncode}:\n{self.log()}")
            if is_mounted(self.mountpoint):
                try:
                    # statvfs always reaches the daemon: a dead mount left by a killed one
                    # answers ENOTCONN there, while its listings may still come from the kernel's
                    # cache (weir-fuse lets the kernel cache directories)
                    os.statvfs(self.mountpoint)
                    os.listdir(self.mountpoint)
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"weir-fuse did not mount within {timeout}s:\n{self.log()}")

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15):
        """SIGTERM: a clean unmount. Returns the exit code (None if it had to be killed)."""
        code = None
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        elif self.proc:
            code = self.proc.returncode
        lazy_unmount(self.mountpoint)
        return code

    def kill(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)


def sha256(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def drop_caches():
    subprocess.run(["sync"], check=False)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def nginx_bytes_sent(access_log):
    """Sum of the body bytes of every response in an nginx 'combined' access log."""
    total = 0
    try:
        with open(access_log) as f:
            for line in f:
                parts = line.split('"')
                if len(parts) >= 3:
                    fields = parts[2].split()
                    if len(fields) >= 2 and fields[1].isdigit():
                        total += int(fields[1])
    except FileNotFoundError:
        pass
    return total
