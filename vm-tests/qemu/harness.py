#!/usr/bin/env python3
"""The QEMU harness: boots the Debian 12 image from build-image.sh as three weir nodes on a
private network and runs the scenarios of vm-tests/ha.nix against real systemd, generator,
units and daemons. The remote store is nginx (autoindex) inside the same network namespace.

Usage: WEIR_VM_TESTS=1 harness.py [--cache DIR] [--keep]. Exit 0 when every scenario passed, 1 when one failed,
77 when it is not asked for (WEIR_VM_TESTS unset) or this machine cannot run it (not root, no
QEMU, no mmdebstrap, no network namespaces, weir not built). See vm-tests/qemu/README.md for what it needs and how long it takes.
"""

import argparse
import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
NODES = ["node1", "node2", "node3"]
ADDR = {n: f"10.0.0.{i + 1}" for i, n in enumerate(NODES)}
STORE = "10.0.0.254"
SAMPLE_FILES = ["hbase-1.bin", "hbase-2.bin", "hbase-3.bin", "conf/hbase-site.xml",
                "conf/log4j.properties", "conf/regionservers"]


def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(77)


def sh(*cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, text=True, capture_output=True, **kw)


def cluster_yaml():
    return f"""apiVersion: weir.io/v1
kind: Cluster
metadata: {{name: qemu}}
spec:
  nodes:
    - {{name: node1, address: {ADDR['node1']}}}
    - {{name: node2, address: {ADDR['node2']}}}
    - {{name: node3, address: {ADDR['node3']}}}
  raft: {{electionTimeout: 1s, heartbeatTimeout: 150ms}}
---
apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata: {{name: hbase}}
spec:
  blockSize: 1Mi
  mounts:
    - {{mountPoint: "http://{STORE}/hbase/", name: hbase}}
---
apiVersion: data.fluid.io/v1alpha1
kind: AlluxioRuntime
metadata: {{name: hbase}}
spec:
  replicas: 3
  master: {{replicas: 3}}
  tieredstore:
    levels:
      - {{mediumtype: MEM, path: /dev/shm, quota: 256Mi, high: "0.95", low: "0.7"}}
"""


def make_sample(root):
    """The same files as vm-tests/common.nix: every line distinct."""
    hb = os.path.join(root, "hbase")
    os.makedirs(os.path.join(hb, "conf"), exist_ok=True)
    for n in (1, 2, 3):
        with open(os.path.join(hb, f"hbase-{n}.bin"), "w") as f:
            f.writelines(f"hbase-{n} line {i:09d}\n" for i in range(200000 * n))
    for c in ("hbase-site.xml", "log4j.properties", "regionservers"):
        with open(os.path.join(hb, "conf", c), "w") as f:
            f.write(f"# {c} of the weir VM test sample\n")
    sums = {}
    for rel in SAMPLE_FILES:
        with open(os.path.join(hb, rel), "rb") as f:
            sums[rel] = hashlib.sha256(f.read()).hexdigest()
    return sums


class Netns:
    """A network namespace with only lo, a bridge (the store's address) and one tap per VM."""

    def __init__(self, name, taps):
        self.name = name
        sh("ip", "netns", "add", name)
        self.ip("link", "set", "lo", "up")
        self.ip("link", "add", "br0", "type", "bridge")
        self.ip("addr", "add", f"{STORE}/24", "dev", "br0")
        self.ip("link", "set", "br0", "up")
        for t in taps:
            self.ip("tuntap", "add", t, "mode", "tap")
            self.ip("link", "set", t, "master", "br0", "up")

    def ip(self, *args):
        sh("ip", "-n", self.name, *args)

    def popen(self, *cmd, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kw)

    def close(self):
        sh("ip", "netns", "del", self.name, check=False)


class VM:
    def __init__(self, name, workdir, image, kernel, initrd, netns, index, hostname=None):
        """Boots NAME from a new overlay of IMAGE; with HOSTNAME, boots NAME's existing disk again
        under that host name instead."""
        self.name = name
        self.dir = os.path.join(workdir, name)
        self.disk = os.path.join(self.dir, "disk.qcow2")
        if hostname is None:
            os.makedirs(self.dir)
            sh("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image, self.disk)
        self.args = (name, workdir, image, kernel, initrd, netns, index)
        self.sock_path = os.path.join(self.dir, "agent.sock")
        if os.path.exists(self.sock_path):
            os.unlink(self.sock_path)
        self.console = os.path.join(self.dir, f"console-{hostname or name}.log")
        append = (f"console=ttyS0 root=/dev/vda rw net.ifnames=0 panic=-1 "
                  f"ip={ADDR[name]}::{STORE}:255.255.255.0:{hostname or name}:eth0:off "
                  f"systemd.hostname={hostname or name}")
        self.proc = netns.popen(
            "qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "qemu64", "-m", "768",
            "-display", "none", "-nodefaults", "-no-reboot",
            "-kernel", kernel, "-initrd", initrd, "-append", append,
            "-drive", f"file={self.disk},if=virtio,format=qcow2",
            "-netdev", f"tap,id=n0,ifname=tap{index},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac=52:54:00:12:34:{index:02x}",
            "-serial", f"file:{self.console}",
            "-serial", f"unix:{self.sock_path},server=on,wait=off",
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "qemu.log"), "w"))
        self.sock = None
        self.buf = b""
        self.seq = 0

    def _line(self, deadline):
        while b"\n" not in self.buf:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                data = None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no answer from the agent")
            if data == b"":
                raise ConnectionError(f"{self.name}: agent connection closed")
            if data:
                self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace").strip()

    def connect(self, timeout=400):
        deadline = time.monotonic() + timeout
        while self.sock is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: QEMU exited ({self.proc.returncode})")
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.sock_path)
                self.sock = s
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        # The agent may have said "ready" before we connected: ask until it answers.
        while True:
            try:
                rc, _ = self.execute("true", timeout=5)
                if rc == 0:
                    return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def execute(self, cmd, timeout=120):
        self.seq += 1
        sid = f"{self.seq}"
        self.sock.sendall(f"{sid} {base64.b64encode(cmd.encode()).decode()}\n".encode())
        deadline = time.monotonic() + timeout
        out = ""
        while True:
            line = self._line(deadline)
            parts = line.split(" ")
            if len(parts) >= 2 and parts[0] == "@@OUT" and parts[1] == sid:
                out = base64.b64decode(parts[2] if len(parts) > 2 else "").decode(errors="replace")
            elif len(parts) == 3 and parts[0] == "@@RC" and parts[1] == sid:
                return int(parts[2]), out

    def succeed(self, cmd, timeout=120):
        rc, out = self.execute(cmd, timeout)
        if rc != 0:
            raise AssertionError(f"{self.name}: `{cmd}` failed ({rc}):\n{out}")
        return out

    def fail(self, cmd, timeout=120):
        rc, out = self.execute(cmd, timeout)
        if rc == 0:
            raise AssertionError(f"{self.name}: `{cmd}` succeeded but should fail:\n{out}")
        return out

    def wait_until_succeeds(self, cmd, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            rc, out = self.execute(cmd, timeout=max(10, timeout))
            if rc == 0:
                return out
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: `{cmd}` did not succeed in {timeout}s:\n{out}")
            time.sleep(1)

    def wait_for_unit(self, unit, timeout=180):
        # Active, or give up early when systemd keeps restarting it.
        deadline = time.monotonic() + timeout
        while True:
            rc, out = self.execute(f"systemctl is-active -q '{unit}' && echo active || "
                                   f"systemctl show -p NRestarts --value '{unit}'", 30)
            if out.strip() == "active":
                return
            if out.strip().isdigit() and int(out.strip()) >= 3:
                raise AssertionError(f"{self.name}: {unit} restarted {out.strip()} times")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: {unit} not active after {timeout}s")
            time.sleep(2)

    def stop(self):
        if self.sock:
            try:
                self.sock.sendall(b"0 " + base64.b64encode(b"systemctl poweroff") + b"\n")
            except OSError:
                pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def save_diagnostics(vm):
    """The units' state and the weir journal of VM, into its log directory."""
    try:
        out = vm.succeed("systemctl --no-pager --all list-units 'weir*'; "
                         "systemctl --no-pager status 'weir*' 2>&1; "
                         "journalctl -b --no-pager -o short-monotonic -t weir-generator; "
                         "for u in weir-master weir-worker 'weir-fuse@*' weir-rescan; do "
                         "journalctl -b --no-pager -o short-monotonic -u \"$u\" | tail -n 150; "
                         "done", timeout=60)
        with open(os.path.join(vm.dir, "journal.txt"), "w") as f:
            f.write(out)
    except Exception as e:  # a VM that no longer answers has its console.log
        print(f"{vm.name}: no diagnostics ({e})")


def master(vm, path):
    return f"http://{ADDR[vm.name]}:19998{path}"


def run_scenarios(vms, store_log, sums, results):
    by = {vm.name: vm for vm in vms}
    have_fuse = all("weir-fuse" in vm.succeed("ls /usr/bin") for vm in vms)

    def scenario(name, fn, needs_fuse=False):
        if needs_fuse and not have_fuse:
            print(f"--- {name}: SKIP (weir-fuse not built)")
            results.append((name, "skip"))
            return
        t0 = time.monotonic()
        try:
            fn()
            results.append((name, "pass"))
            print(f"--- {name}: ok ({time.monotonic() - t0:.0f}s)")
        except Exception:
            results.append((name, "fail"))
            print(f"--- {name}: FAILED")
            traceback.print_exc()

    def store_gets(f):
        with open(store_log) as log:
            return sum(1 for line in log if f'"GET /hbase/{f} ' in line)

    state = {}

    def generator():
        for vm in vms:
            vm.succeed("systemctl is-system-running --wait || true", timeout=400)
            units = ["weir-master.service", "weir-worker.service"] + (
                ["weir-fuse@hbase.service"] if have_fuse else [])
            for u in units:
                vm.succeed(f"test -L /run/systemd/generator/weir.target.wants/{u}")
            vm.succeed(f"grep -qx 'Environment=\"WEIR_NODE={vm.name}\"' "
                       "/run/systemd/generator/weir-master.service.d/50-weir-node.conf")
            vm.succeed(f"journalctl -b -t weir-generator --no-pager "
                       f"| grep -q 'This host is node {vm.name} (by host name)'")
            vm.succeed("systemctl show -p ActiveState --value weir-rescan.service | grep -qx inactive")
            for u in units:
                vm.wait_for_unit(u, 240)

    def election():
        node1 = vms[0]
        node1.wait_until_succeeds(
            f"curl -sf {master(node1, '/v1/masters')} "
            "| jq -e '.leader != null and ([.masters[] | select(.reachable)] | length) == 3'", 300)
        leader = json.loads(node1.succeed(f"curl -sf {master(node1, '/v1/masters')}"))["leader"]
        for vm in vms:
            vm.wait_until_succeeds(
                f"curl -sf {master(vm, '/v1/status')} | jq -e '.leader == \"{leader}\"'", 60)
        roles = sorted(json.loads(vm.succeed(f"curl -sf {master(vm, '/v1/status')}"))["role"]
                       for vm in vms)
        assert roles == ["follower", "follower", "leader"], roles
        state["leader"] = leader
        print(f"    leader: {leader}")

    def bus():
        for vm in vms:
            for name in ["io.weir.Master1", "io.weir.Worker1"] + (
                    ["io.weir.Fuse1"] if have_fuse else []):
                vm.wait_until_succeeds(f"busctl --system status {name} >/dev/null", 60)
        role = by[state["leader"]].succeed(
            "busctl --system get-property io.weir.Master1 /io/weir/Master1 io.weir.Master1 Role")
        assert "leader" in role, role
        # The policy lets any user read: try as nobody.
        vms[0].succeed("setpriv --reuid=65534 --regid=65534 --clear-groups "
                       "busctl --system get-property io.weir.Master1 /io/weir/Master1 "
                       "io.weir.Master1 Role")
        vms[0].succeed(f"weirctl masters | grep -q {state['leader']}")

    def bind():
        node1 = vms[0]
        node1.succeed(f"curl -sfL -X POST {master(node1, '/v1/datasets/hbase/sync')}")
        node1.wait_until_succeeds(
            f"curl -sfL {master(node1, '/v1/datasets/hbase')} | jq -e '.phase == \"Bound\"'", 180)
        ds = json.loads(node1.succeed(f"curl -sfL {master(node1, '/v1/datasets/hbase')}"))
        assert ds["total_files"] == 6, ds

    def reads():
        before = store_gets("hbase-1.bin")
        one = "cd /mnt/weir/hbase/hbase && sha256sum hbase-1.bin"
        vms[1].wait_until_succeeds("test -f /mnt/weir/hbase/hbase/hbase-1.bin", 60)
        assert vms[1].succeed(one).split()[0] == sums["hbase-1.bin"]
        cold = store_gets("hbase-1.bin")
        assert cold > before, "the cold read did not reach the store"
        # The same node, page cache dropped: its worker has the blocks.
        vms[1].succeed("sync; echo 3 > /proc/sys/vm/drop_caches")
        assert vms[1].succeed(one).split()[0] == sums["hbase-1.bin"]
        assert store_gets("hbase-1.bin") == cold, "a warm read on the same node reached the store"
        # Another node: once the leader's block map has the worker's report (heartbeat), its
        # reads come from that worker. Before that it may fetch from the store itself.
        node1 = vms[0]
        entry = json.loads(node1.succeed(
            f"curl -sfL '{master(node1, '/v1/datasets/hbase/stat?path=/hbase/hbase-1.bin')}'"))
        blocks = master(node1, f"/v1/blocks?file={entry['file_id']}&version={entry['version']}")
        node1.wait_until_succeeds(f"curl -sfL '{blocks}' | jq -e '.locations | length == 5'", 60)
        assert vms[2].succeed(one).split()[0] == sums["hbase-1.bin"]
        assert store_gets("hbase-1.bin") == cold, "a warm read on another node reached the store"
        print(f"    store GETs for the file: {cold - before} cold, 0 warm")

    def failover():
        leader = state["leader"]
        old = by[leader]
        reader = next(vm for vm in vms if vm.name != leader)
        other = next(vm for vm in vms if vm.name not in (leader, reader.name))
        if have_fuse:
            reader.succeed("(cp -r /mnt/weir/hbase/hbase /tmp/copy; echo $? > /tmp/copy.rc) "
                           ">/dev/null 2>&1 &")
        old.succeed("systemctl kill --signal=SIGKILL weir-master.service")
        t0 = time.monotonic()
        other.wait_until_succeeds(
            f"curl -sf {master(other, '/v1/status')} "
            f"| jq -e '.leader != null and .leader != \"{leader}\"'", 120)
        new = json.loads(other.succeed(f"curl -sf {master(other, '/v1/status')}"))["leader"]
        print(f"    new leader {new} within {time.monotonic() - t0:.1f}s (emulated, incl. polling)")
        if have_fuse:
            reader.wait_until_succeeds("test -f /tmp/copy.rc", 600)
            assert reader.succeed("cat /tmp/copy.rc").strip() == "0", "cp failed"
            for rel in SAMPLE_FILES:
                got = reader.succeed(f"sha256sum /tmp/copy/{rel}").split()[0]
                assert got == sums[rel], f"{rel} differs after the failover copy"
        old.wait_for_unit("weir-master.service", 120)
        old.wait_until_succeeds(
            f"curl -sf {master(old, '/v1/status')} "
            f"| jq -e '.role == \"follower\" and .leader == \"{new}\"'", 180)
        assert "weir_master_leader_changes_total" in other.succeed(
            f"curl -sf {master(other, '/metrics')}")

    def fuse_lifecycle():
        vm = vms[2]
        # the unit keeps CAP_SYS_RESOURCE: libfuse's splice pipes hold 1 MiB replies
        opts = vm.succeed("awk '$2 == \"/mnt/weir/hbase\" {print $4}' /proc/mounts")
        assert "max_read=1048576" in opts, opts
        vm.fail("touch /mnt/weir/hbase/hbase/new-file")
        vm.succeed("systemctl stop weir-fuse@hbase.service")
        vm.fail("mountpoint -q /mnt/weir/hbase")
        vm.succeed("systemctl start weir-fuse@hbase.service")
        vm.succeed("mountpoint -q /mnt/weir/hbase")
        vm.succeed("systemctl kill --signal=SIGKILL weir-fuse@hbase.service")
        vm.wait_until_succeeds("systemctl is-active -q weir-fuse@hbase.service", 60)
        vm.wait_until_succeeds("mountpoint -q /mnt/weir/hbase && ls /mnt/weir/hbase/hbase", 60)

    def generator_cases():
        vm = vms[2]
        gen = "/run/systemd/generator"
        vm.succeed("cp /etc/weir/cluster.yaml /root/cluster.yaml")
        try:
            cases = [
                ("printf 'kind: Cluster\\nspec:\\n  nodes: [ {name: x\\n' > /etc/weir/cluster.yaml",
                 "cluster.yaml:4:"),
                ("rm /etc/weir/cluster.yaml", "does not exist"),
                # Neither its name nor its address: node3 renamed and moved, host renamed.
                ("sed 's/name: node3, address: [0-9.]*/name: other, address: 10.0.0.99/' "
                 "/root/cluster.yaml > /etc/weir/cluster.yaml && hostname elsewhere",
                 "none of the nodes"),
                ("cp /root/cluster.yaml /etc/weir/cluster.yaml && echo node9 > /etc/weir/node",
                 "names a node"),
            ]
            for i, (change, reason) in enumerate(cases):
                vm.succeed(f"echo 'weir-test: case {i}' > /dev/kmsg; {change}; systemctl daemon-reload")
                vm.succeed(f"test ! -e {gen}/weir.target.wants && "
                           f"test ! -e {gen}/multi-user.target.wants/weir.target")
                vm.succeed(f"dmesg | sed -n '/weir-test: case {i}$/,$p' | grep -q '{reason}'")
            # By address: the YAML's node3 renamed, host name no longer matching.
            vm.succeed("rm -f /etc/weir/node; sed 's/name: node3,/name: by-address,/' "
                       "/root/cluster.yaml > /etc/weir/cluster.yaml; systemctl daemon-reload")
            vm.succeed(f"test -L {gen}/weir.target.wants/weir-worker.service")
            vm.succeed("dmesg | tail -n 3 | grep -q 'node by-address (by interface address)'")
        finally:
            vm.succeed("rm -f /etc/weir/node; hostname node3; "
                       "cp /root/cluster.yaml /etc/weir/cluster.yaml; systemctl daemon-reload")

    scenario("generator pulls in each node's units (by host name)", generator)
    scenario("three masters elect one leader", election)
    scenario("status on the system bus, weirctl masters", bus)
    scenario("the dataset binds", bind)
    scenario("cold read reaches the store, warm reads do not", reads, needs_fuse=True)
    scenario("SIGKILL of the leader (during a copy): new leader, intact copy", failover)
    scenario("FUSE: read-only, clean stop, restart after a crash", fuse_lifecycle, needs_fuse=True)
    def rescan():
        # node3 boots again as host "appliance": the generator at boot finds neither the name nor
        # the address (networkd assigns it later) and pulls nothing in; weir-rescan, after
        # network-online.target, reloads and finds node3 by address, and its daemons start.
        old = vms[2]
        old.stop()
        vm = VM(*old.args, hostname="appliance")
        vms[2] = vm
        vm.connect()
        vm.succeed("systemctl is-system-running --wait || true", timeout=400)
        vm.succeed("dmesg | grep weir-generator | head -n 1 | grep -q 'none of the nodes'")
        vm.wait_until_succeeds(
            "journalctl -b -u weir-rescan.service --no-pager | grep -q 'now found'", 120)
        vm.succeed("dmesg | grep -q 'node node3 (by interface address)'")
        for u in ["weir-master.service", "weir-worker.service", "weir-fuse@hbase.service"]:
            vm.wait_for_unit(u, 240)
        vm.wait_until_succeeds("test -f /mnt/weir/hbase/hbase/hbase-2.bin", 120)
        got = vm.succeed("sha256sum /mnt/weir/hbase/hbase/hbase-2.bin").split()[0]
        assert got == sums["hbase-2.bin"]

    scenario("generator: invalid/missing YAML, unknown host, bad node file, by address",
             generator_cases)
    scenario("weir-rescan: an address that arrives after the generator ran", rescan,
             needs_fuse=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=os.path.join(SRC, "vm-tests", ".cache"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = ap.parse_args()

    # Same convention as vm-tests/debian (tests/integration/test_vm_debian.py): the few minutes
    # of three TCG VMs only when asked for.
    if os.environ.get("WEIR_VM_TESTS") != "1":
        skip("boots three QEMU VMs under TCG (~7 min); set WEIR_VM_TESTS=1")
    if os.geteuid() != 0:
        skip("needs root (network namespace, taps)")
    for tool in ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "nginx", "mkfs.ext4"):
        if not shutil.which(tool):
            skip(f"{tool} is not installed (Debian: qemu-system-x86 qemu-utils mmdebstrap nginx)")
    if not os.path.exists("/dev/net/tun"):
        skip("no /dev/net/tun")

    t0 = time.monotonic()
    os.makedirs(args.cache, exist_ok=True)
    yaml_path = os.path.join(os.path.abspath(args.cache), "cluster.yaml")
    with open(yaml_path, "w") as f:
        f.write(cluster_yaml())
    # The YAML is part of the image, the same file for all nodes, as on an appliance: the
    # generator finds it at boot.
    build = subprocess.run([os.path.join(HERE, "build-image.sh"), SRC, args.cache, yaml_path],
                           text=True, capture_output=True)
    print(build.stdout, end="")
    if build.returncode != 0:
        print(build.stderr, end="")
        skip("the image could not be built (see above)")
    run_dir = os.path.join(os.path.abspath(args.cache), "run")
    print(f"image ready after {time.monotonic() - t0:.0f}s")

    work = tempfile.mkdtemp(prefix="weir-qemu-")
    os.chmod(work, 0o755)  # nginx's workers (nobody) serve files from it
    ns_name = f"weirvm{os.getpid()}"
    netns = None
    vms = []
    nginx = None
    results = []
    try:
        netns = Netns(ns_name, [f"tap{i + 1}" for i in range(len(NODES))])
        sample = os.path.join(work, "www")
        sums = make_sample(sample)
        store_log = os.path.join(work, "access.log")
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""daemon off; pid {work}/nginx.pid; error_log {work}/error.log;
events {{}}
http {{
  access_log {store_log};
  client_body_temp_path {work}/tmp; proxy_temp_path {work}/tmp;
  fastcgi_temp_path {work}/tmp; uwsgi_temp_path {work}/tmp; scgi_temp_path {work}/tmp;
  server {{ listen {STORE}:80; root {sample}; autoindex on; }}
}}
""")
        os.makedirs(os.path.join(work, "tmp"))
        nginx = netns.popen("nginx", "-c", conf, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

        for i, name in enumerate(NODES):
            vms.append(VM(name, work, os.path.join(run_dir, "weir.qcow2"),
                          os.path.join(run_dir, "vmlinuz"), os.path.join(run_dir, "initrd.img"),
                          netns, i + 1))
        for vm in vms:
            vm.connect()
        print(f"VMs answer after {time.monotonic() - t0:.0f}s")
        run_scenarios(vms, store_log, sums, results)
    except (Exception, KeyboardInterrupt):
        traceback.print_exc()
        results.append(("harness", "fail"))
    finally:
        if any(r == "fail" for _, r in results):
            for vm in vms:
                save_diagnostics(vm)
        for vm in vms:
            vm.stop()
        if nginx:
            nginx.terminate()
            nginx.wait()
        if netns:
            netns.close()
        if args.keep or any(r == "fail" for _, r in results):
            print(f"logs kept in {work} (console.log per VM, nginx access.log)")
        else:
            shutil.rmtree(work, ignore_errors=True)

    passed = sum(r == "pass" for _, r in results)
    failed = sum(r == "fail" for _, r in results)
    skipped = sum(r == "skip" for _, r in results)
    print(f"qemu harness: {passed} passed, {failed} failed, {skipped} skipped "
          f"in {time.monotonic() - t0:.0f}s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
