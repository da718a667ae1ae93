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

from weirtest.config import FAST_RAFT, Dataset, write_cluster_yaml
from weirtest.daemon import Daemon


def yaml_config(path, nodes, dataset, mounts, block_size=None, master_replicas=1, workers=1,
                tiers=None, attr_timeout=None, extra_dataset=""):
    """Writes a cluster YAML. NODES: [{name, address, roles?, dir}] (dir holds data, runtime and
    mount root); MOUNTS: [(name, url)]; TIERS: [(medium, path, quota)]. Returns PATH."""
    tiers = tiers or [("MEM", os.path.join(os.path.dirname(path), "tier"), "2Gi")]
    fuse = {"attrTimeout": attr_timeout, "entryTimeout": attr_timeout} if attr_timeout else None
    ds = Dataset(dataset, mounts=list(mounts), block_size=block_size, extra=extra_dataset,
                 replicas=workers, master_replicas=master_replicas, fuse=fuse,
                 tiers=[(medium, p, quota, "0.95", "0.7") for medium, p, quota in tiers])
    return write_cluster_yaml(
        path, name="fusetest", raft=FAST_RAFT, datasets=[ds],
        nodes=[{"name": n["name"], "address": n["address"], "roles": n.get("roles") or None,
                "dataDir": f"{n['dir']}/data", "runtimeDir": f"{n['dir']}/run",
                "mountRoot": f"{n['dir']}/mnt"} for n in nodes])


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


class FuseDaemon(Daemon):
    """weir-fuse mounting DATASET of NODE on MOUNTPOINT; ready once the mount answers. stop()
    always lazily unmounts, so no mount outlives the test; kill() leaves the dead mount behind,
    as a crash would (stop() afterwards removes it)."""

    what = "weir-fuse"
    ready_timeout = 30.0
    stop_timeout = 15.0

    def __init__(self, binary, config, node, dataset, mountpoint, workdir, env=None):
        super().__init__(os.path.join(workdir, f"weir-fuse-{node}-{dataset}.log"))
        self.binary, self.config, self.node, self.dataset = binary, config, node, dataset
        self.mountpoint = mountpoint
        self.workdir = workdir
        self.env = dict(os.environ, **(env or {}))

    def command(self):
        return [self.binary, "--config", self.config, "--node", self.node, "--dataset",
                self.dataset, "--mountpoint", self.mountpoint]

    def environment(self):
        return self.env

    def start(self, wait=True, timeout=None):
        if timeout is not None:
            self.ready_timeout = timeout
        try:
            return super().start(wait=wait)
        except BaseException:
            lazy_unmount(self.mountpoint)  # a half-made mount of the killed daemon
            raise

    def ready(self):
        self.wait_mounted(self.ready_timeout)

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

    def log(self, tail=6000):
        return super().log(tail)

    def kill(self):
        """SIGKILL; if the process does not die (blocked in the kernel on a request to its own
        mount), the mount's FUSE connection is aborted (umount -f) so that it does."""
        if self.proc is None:
            return
        self.signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            if is_mounted(self.mountpoint):
                subprocess.run(["umount", "-f", self.mountpoint], capture_output=True)
            self.proc.wait(timeout=10)
        self._reap_group()

    def stop(self, timeout=None):
        """SIGTERM: a clean unmount. Returns the exit code (None if it had to be killed)."""
        code = None
        if self.running:
            self.signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        elif self.proc:
            code = self.proc.returncode
        lazy_unmount(self.mountpoint)
        return code


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
