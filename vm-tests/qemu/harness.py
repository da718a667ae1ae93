#!/usr/bin/env python3
"""The QEMU harness: runs vm-tests/scenarios/*.py, the files the NixOS VM tests read as their
testScript, against VMs booted from the Debian 12 image of build-image.sh, through a Machine
class with the NixOS test driver's method names and semantics (commands under `set -euo
pipefail` with a timeout, standard output returned, RequestedAssertionFailed on failure,
wait_* retrying once a second). node1-node4 share a private network with the remote store
(nginx with autoindex, throttled, on the host side of that network); `efi` boots the same system
from a GPT disk through OVMF and systemd-boot.

Usage: WEIR_VM_TESTS=1 harness.py [--cache DIR] [--keep] [--only FILE.py ...]. Exit 0 when every
scenario passed, 1 when one failed, 77 when it is not asked for (WEIR_VM_TESTS unset) or this
machine cannot run it (not root, no QEMU, mmdebstrap, OVMF, ...). vm-tests/qemu/README.md says
what it needs and how long it takes.
"""

import argparse
import base64
import contextlib
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
SCENARIOS = os.path.join(SRC, "vm-tests", "scenarios")
NODES = ["node1", "node2", "node3", "node4"]
ADDR = {n: f"10.0.0.{i + 1}" for i, n in enumerate(NODES)}
ADDR["efi"] = "10.0.0.9"
STORE = "10.0.0.254"
FILES = ["hbase-1.bin", "hbase-2.bin", "hbase-3.bin", "conf/hbase-site.xml",
         "conf/log4j.properties", "conf/regionservers"]
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
# What the scenarios know of this setup (the NixOS tests define the same in vm-tests/common.nix).
ENV = {"address": {n: ADDR[n] for n in NODES}, "store": STORE, "files": FILES, "quota": "256Mi"}


def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(77)


def sh(*cmd, check=True, **kw):
    return subprocess.run(cmd, check=check, text=True, capture_output=True, **kw)


class RequestedAssertionFailed(Exception):
    """What the NixOS driver raises when succeed/fail/wait_* do not get what they wait for."""


def retry(fn, timeout):
    """The driver's retry(): FN(last_try) once a second until it returns True; one last call
    after the timeout, then RequestedAssertionFailed."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if fn(False):
            return
        time.sleep(1)
    if not fn(True):
        raise RequestedAssertionFailed(
            f"action timed out after {time.monotonic() - start:.2f} seconds (timeout={timeout})")


class CommandsMixin:
    """succeed, fail and the wait_* methods over execute(), as in the driver's BaseMachine."""

    def succeed(self, *commands, timeout=None):
        output = ""
        for command in commands:
            status, out = self.execute(command, timeout=timeout)
            if status != 0:
                print(f"{self.name}: output: {out}")
                raise RequestedAssertionFailed(
                    f"{self.name}: command `{command}` failed (exit code {status})")
            output += out
        return output

    def fail(self, *commands, timeout=None):
        output = ""
        for command in commands:
            status, out = self.execute(command, timeout=timeout)
            if status == 0:
                raise RequestedAssertionFailed(
                    f"{self.name}: command `{command}` unexpectedly succeeded")
            output += out
        return output

    def wait_until_succeeds(self, command, timeout=900):
        output = ""

        def check(_last_try):
            nonlocal output
            status, output = self.execute(command, timeout=timeout)
            return status == 0

        retry(check, timeout)
        return output

    def wait_until_fails(self, command, timeout=900):
        output = ""

        def check(_last_try):
            nonlocal output
            status, output = self.execute(command, timeout=timeout)
            return status != 0

        retry(check, timeout)
        return output

    def wait_for_file(self, filename, timeout=900):
        retry(lambda _: self.execute(f"test -e {filename}")[0] == 0, timeout)

    def wait_for_open_port(self, port, addr="localhost", timeout=900):
        # The driver runs `nc -z`; bash's /dev/tcp needs no netcat in the image.
        retry(lambda _: self.execute(
            f"timeout 5 bash -c '</dev/tcp/{addr}/{port}'")[0] == 0, timeout)

    def get_unit_property(self, unit, prop):
        status, out = self.execute(f"systemctl --no-pager show '{unit}' --property='{prop}'")
        if status != 0:
            raise RequestedAssertionFailed(f"{self.name}: systemctl show {unit} failed ({status})")
        key, _, value = out.strip().partition("=")
        assert key == prop, out
        return value

    def wait_for_unit(self, unit, user=None, timeout=900):
        """Active, as in the driver: a failed unit, or an inactive one with no job pending,
        fails at once instead of waiting out the timeout."""
        assert user is None, "no user units here"

        def check(_last_try):
            state = self.get_unit_property(unit, "ActiveState")
            if state == "failed":
                raise RequestedAssertionFailed(f'{self.name}: unit "{unit}" reached state "failed"')
            if state == "inactive":
                _, jobs = self.execute("systemctl list-jobs --full 2>&1")
                if "No jobs" in jobs and self.get_unit_property(unit, "ActiveState") == state:
                    raise RequestedAssertionFailed(
                        f'{self.name}: unit "{unit}" is inactive and there are no pending jobs')
            return state == "active"

        retry(check, timeout)


class Machine(CommandsMixin):
    """A Debian-built VM with the driver's lifecycle: start() boots it (asynchronously; the first
    command waits for the agent), shutdown() powers it off and waits, crash() quits QEMU at once
    (a power failure), block()/unblock() unplug and replug its network link. Its disk (a qcow2
    overlay) survives all of them, as the driver's state directory does."""

    def __init__(self, name, index, workdir, run_dir, netns, efi=False):
        self.name = name
        self.index = index
        self.netns = netns
        self.efi = efi
        self.run_dir = run_dir
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        self.disk = os.path.join(self.dir, "disk.qcow2")
        base = os.path.join(run_dir, "weir-efi.raw" if efi else "weir.qcow2")
        sh("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw" if efi else "qcow2",
           "-b", base, self.disk)
        if efi:
            self.vars = os.path.join(self.dir, "OVMF_VARS.fd")
            shutil.copy(OVMF_VARS, self.vars)
        self.agent_path = os.path.join(self.dir, "agent.sock")
        self.monitor_path = os.path.join(self.dir, "monitor.sock")
        self.proc = None
        self.sock = None
        self.boots = 0
        self.hostname = name

    def is_up(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, allow_reboot=False, hostname=None):
        """Boot; HOSTNAME (harness only, for rescan.py) boots under another host name."""
        if self.is_up():
            return
        self.hostname = hostname or self.name
        self.boots += 1
        for p in (self.agent_path, self.monitor_path):
            if os.path.exists(p):
                os.unlink(p)
        console = os.path.join(self.dir, f"console-{self.boots}-{self.hostname}.log")
        args = ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "qemu64",
                "-m", "768", "-display", "none", "-nodefaults",
                "-drive", f"file={self.disk},if=virtio,format=qcow2",
                "-netdev", f"tap,id=n0,ifname=tap{self.index},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=n0,mac=52:54:00:12:34:{self.index:02x}",
                "-serial", f"file:{console}",
                "-serial", f"unix:{self.agent_path},server=on,wait=off",
                "-monitor", f"unix:{self.monitor_path},server=on,wait=off"]
        if not allow_reboot:
            args.append("-no-reboot")
        if self.efi:
            # The firmware finds systemd-boot on the disk's EFI system partition; the kernel
            # command line is in the loader entry (build-image.sh).
            args += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                     "-drive", f"if=pflash,format=raw,unit=1,file={self.vars}"]
        else:
            addr = ADDR[self.name]
            args += ["-kernel", os.path.join(self.run_dir, "vmlinuz"),
                     "-initrd", os.path.join(self.run_dir, "initrd.img"),
                     "-append", f"console=ttyS0 root=/dev/vda rw net.ifnames=0 panic=-1 "
                                f"ip={addr}::{STORE}:255.255.255.0:{self.hostname}:eth0:off "
                                f"systemd.hostname={self.hostname}"]
        self.proc = self.netns.popen(*args, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "qemu.log"), "a"))
        self.sock = None
        self.buf = b""
        self.seq = 0

    def _connect(self, timeout=900):
        deadline = time.monotonic() + timeout
        while self.sock is None:
            if not self.is_up():
                raise RequestedAssertionFailed(f"{self.name}: QEMU is not running")
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.agent_path)
                self.sock = s
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        # The agent may have said "ready" before we connected: ask until it answers.
        while True:
            try:
                if self._run("true", 5)[0] == 0:
                    return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise RequestedAssertionFailed(f"{self.name}: no agent after {timeout}s")

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
                raise RequestedAssertionFailed(f"{self.name}: agent connection closed")
            if data:
                self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace").strip()

    def _run(self, cmd, timeout):
        self.seq += 1
        seq = str(self.seq)
        limit = 0 if timeout is None else int(timeout)
        self.sock.sendall(f"{seq} {limit} ".encode() + base64.b64encode(cmd.encode()) + b"\n")
        # The agent's own timeout ends the command; this one only catches a dead VM.
        deadline = time.monotonic() + (limit or 86400) + 60
        out = None
        while True:
            parts = self._line(deadline).split(" ", 2)
            if len(parts) >= 2 and parts[1] == seq:
                if parts[0] == "@@OUT":
                    out = base64.b64decode(parts[2] if len(parts) > 2 else "").decode(
                        errors="replace")
                elif parts[0] == "@@RC":
                    return int(parts[2]), out or ""

    def execute(self, command, check_return=True, check_output=True, timeout=900):
        if self.sock is None:
            self.start()
            self._connect()
        return self._run(command, timeout)

    def _monitor(self, command):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.monitor_path)
        s.settimeout(30)
        answer = b""
        try:
            while not answer.endswith(b"(qemu) "):
                answer += s.recv(4096)
            s.sendall(command.encode() + b"\n")
            answer = b""
            while not answer.endswith(b"(qemu) "):
                chunk = s.recv(4096)
                if not chunk:
                    break
                answer += chunk
        finally:
            s.close()
        return answer.decode(errors="replace")

    def _wait_exit(self):
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.sock:
            self.sock.close()
        self.sock = None

    def shutdown(self):
        if not self.is_up():
            return
        if self.sock is None:
            with contextlib.suppress(Exception):
                self._connect(300)
        if self.sock:
            with contextlib.suppress(OSError):
                self.sock.sendall(b"0 0 " + base64.b64encode(b"systemctl poweroff") + b"\n")
        self._wait_exit()

    def crash(self):
        if not self.is_up():
            return
        print(f"{self.name}: forced crash")
        with contextlib.suppress(OSError):
            self._monitor("quit")
        self._wait_exit()

    def block(self):
        self._monitor("set_link n0 off")

    def unblock(self):
        self._monitor("set_link n0 on")

    def release(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class HostMachine(CommandsMixin):
    """The store: commands run by bash inside the network namespace, on the host (where nginx
    serves the sample), with the same command semantics as a VM's."""

    def __init__(self, name, netns):
        self.name = name
        self.netns = netns

    def start(self):
        pass

    def execute(self, command, check_return=True, check_output=True, timeout=900):
        cmd = ["ip", "netns", "exec", self.netns.name, "bash", "-c",
               f"set -euo pipefail; {command}"]
        if timeout is not None:
            cmd = ["timeout", str(int(timeout))] + cmd
        r = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL)
        return r.returncode, r.stdout


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


def save_diagnostics(vm):
    """The units' state and the weir journal of VM, into its log directory."""
    if not vm.is_up():
        return
    try:
        # Everything, whatever fails: set +e undoes the driver's set -e.
        out = vm.succeed("set +e +o pipefail; systemctl --no-pager --all list-units 'weir*'; "
                         "systemctl --no-pager status 'weir*' 2>&1 || true; "
                         "journalctl -b --no-pager -o short-monotonic -t weir-generator; "
                         "for u in weir-master weir-worker 'weir-fuse@*' weir-rescan; do "
                         "journalctl -b --no-pager -o short-monotonic -u \"$u\" | tail -n 150; "
                         "done; tail -n 50 /var/log/weir-test-agent.log; true", timeout=60)
        with open(os.path.join(vm.dir, "journal.txt"), "w") as f:
            f.write(out)
    except Exception as e:  # a VM that no longer answers has its console log
        print(f"{vm.name}: no diagnostics ({e})")


class Results:
    def __init__(self):
        self.items = []

    @contextlib.contextmanager
    def subtest(self, name):
        """The driver's subtest(): logs, and re-raises a failure (the rest of that file does
        not run)."""
        t0 = time.monotonic()
        print(f"--- subtest: {name}", flush=True)
        try:
            yield
        except Exception:
            self.items.append((name, "fail"))
            print(f"--- {name}: FAILED after {time.monotonic() - t0:.0f}s", flush=True)
            raise
        self.items.append((name, "pass"))
        print(f"--- {name}: ok ({time.monotonic() - t0:.0f}s)", flush=True)


def operator_skip_reason(node):
    """The operator scenarios need `weirctl config apply` (the runtime membership/reload
    feature); without it they are skipped, with this reason."""
    helptext = node.succeed("weirctl --help 2>&1 || true")
    if "config apply" not in helptext:
        return ("weirctl has no `config apply` in this build (the runtime membership and reload "
                "feature is not merged yet)")
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default=os.path.join(SRC, "vm-tests", ".cache"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    ap.add_argument("--only", nargs="*", help="scenario files to run (default: all)")
    args = ap.parse_args()

    # Same convention as the other slow checks: the few minutes of TCG VMs only when asked for.
    if os.environ.get("WEIR_VM_TESTS") != "1":
        skip("boots five QEMU VMs under TCG (~10 min); set WEIR_VM_TESTS=1")
    if os.geteuid() != 0:
        skip("needs root (network namespace, taps)")
    for tool, pkg in (("qemu-system-x86_64", "qemu-system-x86"), ("qemu-img", "qemu-utils"),
                      ("mmdebstrap", "mmdebstrap"), ("nginx", "nginx"),
                      ("mkfs.ext4", "e2fsprogs"), ("mkfs.vfat", "dosfstools"),
                      ("mcopy", "mtools"), ("sfdisk", "fdisk")):
        if not shutil.which(tool):
            skip(f"{tool} is not installed (Debian package {pkg}; scripts/deps.sh vm installs it)")
    if not (os.path.exists(OVMF_CODE) and os.path.exists(OVMF_VARS)):
        skip(f"no {OVMF_CODE} (Debian package ovmf)")
    if not os.path.exists("/dev/net/tun"):
        skip("no /dev/net/tun")

    t0 = time.monotonic()
    cache = os.path.abspath(args.cache)
    os.makedirs(cache, exist_ok=True)
    # The images' YAMLs come from the scenarios' own lib.py, with this harness's env.
    lib = {"env": ENV}
    exec(compile(open(os.path.join(SCENARIOS, "lib.py")).read(), os.path.join(SCENARIOS, "lib.py"),
                 "exec"), lib)
    yaml_path = os.path.join(cache, "cluster.yaml")
    with open(yaml_path, "w") as f:
        f.write(lib["cluster_yaml"]())
    build = subprocess.run([os.path.join(HERE, "build-image.sh"), SRC, cache, yaml_path],
                           text=True, capture_output=True)
    print(build.stdout, end="")
    if build.returncode != 0:
        print(build.stderr, end="")
        print("FAIL: the image could not be built (see above)")
        sys.exit(1)
    run_dir = os.path.join(cache, "run")
    print(f"images ready after {time.monotonic() - t0:.0f}s")

    work = tempfile.mkdtemp(prefix="weir-qemu-")
    os.chmod(work, 0o755)  # nginx's workers (nobody) serve files from it
    netns = None
    machines = {}
    nginx = None
    results = Results()
    try:
        netns = Netns(f"weirvm{os.getpid()}", [f"tap{i}" for i in (1, 2, 3, 4, 9)])
        sample = os.path.join(work, "www")
        make_sample(sample)
        store_log = os.path.join(work, "access.log")
        conf = os.path.join(work, "nginx.conf")
        # limit_rate: a cold copy takes long enough for a leader to die during it (ha.py).
        with open(conf, "w") as f:
            f.write(f"""daemon off; pid {work}/nginx.pid; error_log {work}/error.log;
events {{}}
http {{
  access_log {store_log};
  client_body_temp_path {work}/tmp; proxy_temp_path {work}/tmp;
  fastcgi_temp_path {work}/tmp; uwsgi_temp_path {work}/tmp; scgi_temp_path {work}/tmp;
  server {{ listen {STORE}:80; root {sample}; autoindex on; limit_rate 512k; }}
}}
""")
        os.makedirs(os.path.join(work, "tmp"))
        nginx = netns.popen("nginx", "-c", conf, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
        env = dict(ENV, sample_dir=sample, access_log=store_log)

        for i, name in enumerate(NODES):
            machines[name] = Machine(name, i + 1, work, run_dir, netns)
        machines["efi"] = Machine("efi", 9, work, run_dir, netns, efi=True)
        cluster = [machines[n] for n in NODES]

        def start_all():
            for m in cluster:
                m.start()

        g = {"env": env, "start_all": start_all, "subtest": results.subtest,
             "store": HostMachine("store", netns), "__name__": "scenarios"}
        g.update(machines)
        files = ["lib.py", "ha.py", "generator.py", "operator.py", "rescan.py", "efi.py"]
        for name in files:
            if args.only and name != "lib.py" and name not in args.only:
                continue
            if name == "efi.py":
                # Four VMs are enough on two cores: the single EFI node boots on its own.
                for m in cluster:
                    m.shutdown()
            if name == "operator.py":
                reason = operator_skip_reason(machines["node1"])
                if reason:
                    print(f"--- operator.py: SKIP ({reason})")
                    results.items.append(("operator.py", "skip"))
                    continue
            t1 = time.monotonic()
            print(f"=== {name}", flush=True)
            fails = sum(r == "fail" for _, r in results.items)
            try:
                # The file's full path: a traceback shows its lines (a bare "operator.py" made
                # linecache show the standard library's operator module).
                path = os.path.join(SCENARIOS, name)
                exec(compile(open(path).read(), path, "exec"), g)
            except Exception:
                traceback.print_exc()
                # A failure outside any subtest still fails the file.
                if sum(r == "fail" for _, r in results.items) == fails:
                    results.items.append((name, "fail"))
                for m in machines.values():
                    save_diagnostics(m)
            print(f"=== {name}: {time.monotonic() - t1:.0f}s", flush=True)
    except (Exception, KeyboardInterrupt):
        traceback.print_exc()
        results.items.append(("harness", "fail"))
    finally:
        for m in machines.values():
            with contextlib.suppress(Exception):
                m.shutdown() if m.is_up() else None
            m.release()
        if nginx:
            nginx.terminate()
            nginx.wait()
        if netns:
            netns.close()
        failed = any(r == "fail" for _, r in results.items)
        if args.keep or failed:
            print(f"logs kept in {work} (console logs and journal.txt per VM, nginx access.log)")
        else:
            shutil.rmtree(work, ignore_errors=True)

    passed = sum(r == "pass" for _, r in results.items)
    failed = sum(r == "fail" for _, r in results.items)
    skipped = sum(r == "skip" for _, r in results.items)
    print(f"qemu harness: {passed} passed, {failed} failed, {skipped} skipped "
          f"in {time.monotonic() - t0:.0f}s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
