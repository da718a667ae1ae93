#!/usr/bin/python3
"""vm-tests/debian/run.py: boots the Debian-built weir appliance as three QEMU VMs here and runs
the scenarios of the NixOS VM test vm-tests/ha.nix against real systemd, generator, units and
daemons.

    sudo /usr/bin/python3 vm-tests/debian/run.py [--image DIR] [--keep-logs DIR] [--boot-timeout S]

What it does, in order (every step is printed with the time since the start):
  1. vm-tests/debian/build-image.sh (cached: an unchanged checkout reuses the image).
  2. A network namespace of its own holding a bridge (10.77.0.1/24) and three taps; nothing in it
     routes anywhere else. nginx runs in it on 10.77.0.1 as the remote store, serving a generated
     directory with autoindex and an access log.
  3. Three VMs (TCG, 768 MiB) on qcow2 overlays of the one image, node1-3 at 10.77.0.11-13; each
     learns its name and address from the kernel command line (systemd.hostname=, ip=). Serial
     ttyS0 is a UNIX socket (with a log file) carrying an autologin root shell, ttyS1 a log file of
     the kernel and systemd, the monitor another UNIX socket.
  4. Scenarios: the generator pulled in each node's units and they are active; `weirctl masters`
     shows one leader and two followers; the daemons are on the system bus; the dataset binds; a
     cold read through FUSE equals the source (sha256) and reaches the store, warm reads (another
     node, then after dropping caches) do not; SIGKILL of the leader's weir-master during a read
     gives a new leader within a bound, the read completes intact, systemd restarts the killed
     master and it rejoins as a follower; the FUSE mount is read-only, stops cleanly and comes
     back after SIGKILL of its daemon.
  5. Teardown, always (also on failure, Ctrl-C or SIGTERM): VMs and nginx killed, namespace
     deleted, overlays removed. Logs of the run are kept in vm-tests/.cache/debian/last-run/.

Exit status: 0 all passed, 1 a step failed, 77 this machine cannot run it (reason printed).
Python 3 standard library only.
"""

import argparse
import base64
import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
CACHE = os.path.join(SRC, "vm-tests", ".cache", "debian")

NODES = ["node1", "node2", "node3"]
ADDR = {"node1": "10.77.0.11", "node2": "10.77.0.12", "node3": "10.77.0.13"}
STORE = "10.77.0.1"
NETMASK = "255.255.255.0"
DATASET = "hbase"
MOUNT = f"/mnt/weir/{DATASET}/hbase"  # mount root / dataset / mount name
# The sample of vm-tests/common.nix: every line distinct, so a block at a wrong offset or from a
# wrong file changes the checksum. 4.6, 9.2 and 13.8 MB: several 1 MiB blocks each.
SAMPLE_BIN = {f"hbase-{n}.bin": 200000 * n for n in (1, 2, 3)}
SAMPLE_CONF = ["hbase-site.xml", "log4j.properties", "regionservers"]

T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", flush=True)


class Skip(Exception):
    pass


class Fail(Exception):
    pass


class Interrupted(BaseException):
    pass


def die_with_parent():
    """preexec_fn: the child gets SIGKILL when run.py dies, even by SIGKILL (no teardown then);
    what remains, the namespace and the run directory, the next run removes."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def remove_stale_run_dirs():
    """Run directories (overlays, logs) of runs of this harness that died before teardown."""
    if not os.path.isdir(CACHE):
        return
    for d in os.listdir(CACHE):
        m = re.fullmatch(r"run-(\d+)-\w+", d)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            log(f"removing {d}, left by a run of this harness that died")
            shutil.rmtree(os.path.join(CACHE, d), ignore_errors=True)


def run(cmd, check=True, **kw):
    r = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if check and r.returncode != 0:
        raise Fail(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip() or r.stdout.strip()}")
    return r


# ---------------------------------------------------------------------------------------------
# The private network and the store


class Network:
    """A network namespace with a bridge and one tap per VM. Created here, deleted in close()."""

    # Each namespace this harness creates has a marker file naming it, removed with it; only
    # those are ever cleaned up as stale (other harnesses on this machine have namespaces too).
    MARKERS = os.path.join(CACHE, "netns")

    def __init__(self):
        self.ns = f"weirdeb{os.getpid()}"
        self.marker = os.path.join(self.MARKERS, self.ns)
        self.created = False

    def __enter__(self):
        self.cleanup_stale()
        r = run(["ip", "netns", "add", self.ns], check=False)
        if r.returncode != 0:
            raise Skip(f"cannot create a network namespace: {r.stderr.strip()}")
        self.created = True
        os.makedirs(self.MARKERS, exist_ok=True)
        with open(self.marker, "w") as f:
            f.write(f"{os.getpid()}\n")
        ip = ["ip", "-n", self.ns]
        run(ip + ["link", "set", "lo", "up"])
        run(ip + ["link", "add", "br0", "type", "bridge"])
        run(ip + ["addr", "add", f"{STORE}/24", "dev", "br0"])
        run(ip + ["link", "set", "br0", "up"])
        for i, _ in enumerate(NODES, 1):
            run(ip + ["tuntap", "add", "dev", f"tap{i}", "mode", "tap"])
            run(ip + ["link", "set", f"tap{i}", "master", "br0", "up"])
        return self

    @classmethod
    def cleanup_stale(cls):
        """Deletes namespaces of earlier runs of this harness that died before their teardown
        (SIGKILL): a marker names them and the process that made them is gone."""
        if not os.path.isdir(cls.MARKERS):
            return
        existing = run(["ip", "netns", "list"], check=False).stdout.split()
        for ns in os.listdir(cls.MARKERS):
            m = re.fullmatch(r"weirdeb(\d+)", ns)
            if not m or os.path.exists(f"/proc/{m.group(1)}"):
                continue
            if ns in existing:
                log(f"removing namespace {ns} left by a run of this harness that died")
                for p in run(["ip", "netns", "pids", ns], check=False).stdout.split():
                    try:
                        os.kill(int(p), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                run(["ip", "netns", "del", ns], check=False)
            os.unlink(os.path.join(cls.MARKERS, ns))

    def exec_prefix(self):
        return ["ip", "netns", "exec", self.ns]

    def close(self):
        if not self.created:
            return
        # Links inside go with the namespace once no process holds it (the VMs are gone by now).
        pids = run(["ip", "netns", "pids", self.ns], check=False).stdout.split()
        for p in pids:
            try:
                os.kill(int(p), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        r = run(["ip", "netns", "del", self.ns], check=False)
        if r.returncode == 0:
            try:
                os.unlink(self.marker)
            except FileNotFoundError:
                pass
        else:
            log(f"could not delete namespace {self.ns}: {r.stderr.strip()}")
        self.created = False

    def __exit__(self, *exc):
        self.close()


def make_sample(root):
    d = os.path.join(root, "hbase")
    os.makedirs(os.path.join(d, "conf"))
    for name, lines in SAMPLE_BIN.items():
        tag = name[: -len(".bin")]
        with open(os.path.join(d, name), "w") as f:
            f.write("".join(f"{tag} line {i:09d}\n" for i in range(lines)))
    for c in SAMPLE_CONF:
        with open(os.path.join(d, "conf", c), "w") as f:
            f.write(f"# {c} of the weir VM test sample\n")
    sums = {}
    for rel in list(SAMPLE_BIN) + [f"conf/{c}" for c in SAMPLE_CONF]:
        with open(os.path.join(d, rel), "rb") as f:
            sums[rel] = hashlib.sha256(f.read()).hexdigest()
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for fn in filenames:
            os.chmod(os.path.join(dirpath, fn), 0o644)
    os.chmod(root, 0o755)
    return sums


class Store:
    """nginx with autoindex inside the namespace: the dataset's remote HTTP store."""

    def __init__(self, net, workdir):
        self.net = net
        self.dir = os.path.join(workdir, "store")
        self.proc = None
        self.access_log = os.path.join(self.dir, "access.log")

    def start(self):
        os.makedirs(self.dir)
        self.sums = make_sample(os.path.join(self.dir, "www"))
        for t in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(self.dir, "tmp", t))
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""daemon off;
user root;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    log_format weir '$request_method $uri $status $body_bytes_sent "$http_range"';
    access_log {self.access_log} weir;
    client_body_temp_path {self.dir}/tmp/body;
    proxy_temp_path {self.dir}/tmp/proxy;
    fastcgi_temp_path {self.dir}/tmp/fastcgi;
    uwsgi_temp_path {self.dir}/tmp/uwsgi;
    scgi_temp_path {self.dir}/tmp/scgi;
    sendfile on;
    server {{
        listen {STORE}:80;
        root {self.dir}/www;
        location / {{ autoindex on; }}
    }}
}}
""")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(nginx):
            raise Skip("no nginx on this machine (apt-get install nginx-light)")
        self.proc = subprocess.Popen(
            self.net.exec_prefix() + [nginx, "-e", f"{self.dir}/error.log", "-p", self.dir,
                                      "-c", conf],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "stderr.log"), "w"),
            start_new_session=True, preexec_fn=die_with_parent)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Fail(f"nginx exited: {open(os.path.join(self.dir, 'stderr.log')).read()}")
            r = run(self.net.exec_prefix() + ["curl", "-sf", "-o", "/dev/null",
                                              f"http://{STORE}/hbase/"], check=False)
            if r.returncode == 0:
                return
            time.sleep(0.3)
        raise Fail("nginx did not answer within 30 s")

    def gets(self, name):
        """(requests, bytes) of GETs of /hbase/NAME so far."""
        n = b = 0
        try:
            with open(self.access_log) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 4 and parts[0] == "GET" and parts[1] == f"/hbase/{name}":
                        n += 1
                        b += int(parts[3])
        except FileNotFoundError:
            pass
        return n, b

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------------------------------------
# The VMs and their consoles


class Console:
    """The autologin root shell on a VM's ttyS0, over QEMU's UNIX socket. A reader thread keeps
    everything the VM wrote; commands go in as base64 and their output comes back as base64
    between markers that only the shell's arithmetic can produce."""

    def __init__(self, name, path, alive):
        self.name = name
        self.path = path
        self.alive = alive
        self.buf = bytearray()
        self.cond = threading.Condition()
        self.seq = 1000
        self.sock = None
        self.closed = False

    def connect(self, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.path)
                break
            except OSError:
                s.close()
                if time.monotonic() > deadline or not self.alive():
                    raise Fail(f"{self.name}: cannot connect to the serial socket {self.path}")
                time.sleep(0.2)
        self.sock = s
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            with self.cond:
                if not data:
                    self.closed = True
                    self.cond.notify_all()
                    return
                self.buf += data
                self.cond.notify_all()

    def close(self):
        if self.sock:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()

    def write(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def wait_for(self, pattern, timeout, start=0, resend=None, every=3.0):
        """Waits until PATTERN (bytes regex) appears in the output after offset START; returns the
        match. RESEND, if given, is written now and every EVERY seconds until then."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        next_send = 0.0
        with self.cond:
            while True:
                m = rx.search(self.buf, start)
                if m:
                    return m
                now = time.monotonic()
                if now > deadline:
                    raise Fail(f"{self.name}: timed out after {timeout:.0f}s waiting for "
                               f"{pattern!r}")
                if self.closed or not self.alive():
                    raise Fail(f"{self.name}: the VM stopped (see its boot.log)")
                if resend is not None and now >= next_send:
                    self.write(resend)
                    next_send = now + every
                self.cond.wait(min(1.0, deadline - now))

    def hello(self, timeout):
        """Waits until the shell runs commands."""
        self.seq += 1
        n = self.seq
        self.wait_for(rb"@@HELLO%d@@" % n, timeout,
                      resend=f"\necho @@HELLO$(({n - 1}+1))@@\n", every=5.0)

    def sh(self, script, timeout=120, check=True, retry=True):
        """Runs SCRIPT with /bin/sh in the VM; returns (status, output). RETRY: run it once more if
        its output arrives garbled (only for scripts that may run twice)."""
        self.seq += 1
        n = self.seq
        with self.cond:
            start = len(self.buf)
        b64 = base64.b64encode(script.encode()).decode()
        # A terminal line holds at most 4095 characters: send long scripts in pieces.
        lines = ["rm -f /tmp/.h.b64"]
        for i in range(0, len(b64), 3000):
            lines.append(f"echo {b64[i:i + 3000]} >>/tmp/.h.b64")
        lines.append(
            f"base64 -d /tmp/.h.b64 >/tmp/.h.sh; T=$(({n - 1}+1)); "
            f"sh /tmp/.h.sh </dev/null >/tmp/.h.out 2>&1; r=$?; "
            f"printf '\\n@@%s:%s:%s:' \"$T\" \"$r\" $(wc -c </tmp/.h.out); base64 -w0 /tmp/.h.out; "
            f"printf ':%s@@\\n' \"$T\"")
        self.write("\n".join(lines) + "\n")
        try:
            m = self.wait_for(rb"@@%d:(\d+):(\d+):([^:@]*):%d@@" % (n, n), timeout, start)
        except Fail:
            self.write("\x03\n")  # interrupt what hangs, so that the next command runs
            raise
        status = int(m.group(1))
        try:
            raw = base64.b64decode(re.sub(rb"\s", b"", m.group(3)), validate=True)
        except ValueError:
            raw = None
        if raw is None or len(raw) != int(m.group(2)):
            # A byte lost or doubled on the emulated serial line.
            if retry:
                log(f"{self.name}: garbled output on the serial console; running it again")
                return self.sh(script, timeout, check, retry=False)
            raise Fail(f"{self.name}: garbled output on the serial console for "
                       f"`{script.strip()[:100]}`")
        out = raw.decode(errors="replace")
        if check and status != 0:
            raise Fail(f"{self.name}: `{script.strip()[:200]}` exited {status}: {out.strip()[-1500:]}")
        return status, out

    def out(self, script, timeout=120):
        return self.sh(script, timeout)[1]

    def ok(self, script, timeout=120):
        return self.sh(script, timeout, check=False)[0] == 0

    def until(self, script, timeout, interval=2.0, what=None):
        """Runs SCRIPT until it succeeds; returns its output."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            status, last = self.sh(script, timeout=max(30.0, interval * 5), check=False)
            if status == 0:
                return last
            if time.monotonic() > deadline:
                raise Fail(f"{self.name}: {what or script.strip()[:200]} not true within "
                           f"{timeout:.0f}s; last output: {last.strip()[-1500:]}")
            time.sleep(interval)


class VM:
    def __init__(self, idx, name, net, image, workdir, memory):
        self.idx = idx
        self.name = name
        self.addr = ADDR[name]
        self.net = net
        self.image = image
        self.dir = os.path.join(workdir, name)
        self.memory = memory
        self.proc = None
        self.console = None
        self.ready_at = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        os.makedirs(self.dir)
        disk = os.path.join(self.dir, "disk.qcow2")
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
             os.path.join(self.image, "base.qcow2"), disk])
        append = " ".join([
            "root=/dev/vda", "rw", "console=ttyS1", "net.ifnames=0", "panic=-1",
            f"ip={self.addr}:::{NETMASK}:{self.name}:eth0:off",
            f"systemd.hostname={self.name}",
            "systemd.journald.forward_to_console=0",
        ])
        cmd = self.net.exec_prefix() + [
            "qemu-system-x86_64", "-name", self.name,
            "-accel", "tcg,thread=multi", "-cpu", "qemu64", "-smp", "1", "-m", str(self.memory),
            "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", os.path.join(self.image, "vmlinuz"),
            "-initrd", os.path.join(self.image, "initrd.img"),
            "-append", append,
            "-drive", f"file={disk},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
            "-netdev", f"tap,id=net0,ifname=tap{self.idx},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=net0,mac=52:54:00:77:00:{10 + self.idx:02x}",
            "-chardev", f"socket,id=con0,path={self.dir}/console.sock,server=on,wait=off,"
                        f"logfile={self.dir}/console.log",
            "-serial", "chardev:con0",
            "-serial", f"file:{self.dir}/boot.log",
            "-monitor", f"unix:{self.dir}/monitor.sock,server=on,wait=off",
            "-device", "virtio-rng-pci",
        ]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=open(os.path.join(self.dir, "qemu.log"), "w"),
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=die_with_parent)
        self.console = Console(self.name, os.path.join(self.dir, "console.sock"), self.alive)
        self.console.connect()

    def boot_tail(self, n=25):
        try:
            with open(os.path.join(self.dir, "boot.log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no boot.log)"

    def terminate(self):
        """SIGTERM: QEMU ends at once (the overlay is thrown away, nothing to flush)."""
        if self.console:
            self.console.close()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()

    def wait_stopped(self):
        if not self.proc:
            return
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------------------------
# Scenarios


class Run:
    def __init__(self, args):
        self.args = args
        self.results = []  # (name, ok, seconds, detail)
        self.timings = {}
        self.vms = {}
        self.store = None

    def step(self, name, fn):
        log(f"--- {name}")
        t = time.monotonic()
        try:
            detail = fn() or ""
        except Fail as e:
            self.results.append((name, False, time.monotonic() - t, str(e)))
            log(f"FAIL {name}: {e}")
            raise
        self.results.append((name, True, time.monotonic() - t, detail))
        log(f"ok   {name} ({time.monotonic() - t:.1f}s){': ' + detail if detail else ''}")

    # -- boot --

    def boot(self):
        t = time.monotonic()
        for vm in self.vms.values():
            vm.start()
            log(f"{vm.name}: QEMU started (pid {vm.proc.pid}), {vm.addr}, logs in {vm.dir}")
        pending = dict(self.vms)
        deadline = t + self.args.boot_timeout
        while pending:
            for name, vm in list(pending.items()):
                try:
                    m = vm.console.wait_for(rb"WEIR-VM-READY (\S+) ([^\r\n]*)\r?\n", 1.0)
                except Fail as e:
                    if not vm.alive():
                        raise Fail(f"{name} stopped while booting:\n{vm.boot_tail()}") from e
                    if time.monotonic() > deadline:
                        raise Fail(f"{name} not up within {self.args.boot_timeout}s; "
                                   f"boot.log ends:\n{vm.boot_tail()}") from e
                    continue
                vm.ready_at = time.monotonic() - t
                log(f"{name}: up after {vm.ready_at:.0f}s ({m.group(2).decode()})")
                del pending[name]
        for vm in self.vms.values():
            vm.console.hello(120)
        self.timings["boot (QEMU start to all three up)"] = time.monotonic() - t
        return f"{max(v.ready_at for v in self.vms.values()):.0f}s for all three"

    # -- the generator and the units --

    def units(self):
        expect = ["weir-fuse@hbase.service", "weir-master.service", "weir-worker.service"]
        for name, vm in self.vms.items():
            c = vm.console
            wants = sorted(c.out("ls /run/systemd/generator/weir.target.wants").split())
            if wants != expect:
                raise Fail(f"{name}: weir.target pulls in {wants}, expected {expect}")
            c.sh("grep -qx 'Environment=\"WEIR_NODE=%s\"' "
                 "/run/systemd/generator/weir-master.service.d/50-weir-node.conf" % name)
            c.until(f"journalctl -b -t weir-generator --no-pager | "
                    f"grep -q 'This host is node {name} (by host name)'", 60,
                    what="the generator's message in the journal")
            units = expect + ["weir.target"]
            c.until("systemctl is-active " + " ".join(units), 240, interval=3,
                    what=f"{', '.join(units)} active")
        return "each node: master, worker, fuse@hbase active, found by host name"

    # -- masters --

    def masters_json(self, vm):
        return json.loads(vm.console.out("weirctl masters --json", timeout=60))

    def masters(self):
        c = self.vms["node1"].console
        deadline = time.monotonic() + 300
        while True:
            try:
                mj = self.masters_json(self.vms["node1"])
            except (Fail, ValueError) as e:
                mj = {"error": str(e)}
            roles = sorted(m.get("role", "?") for m in mj.get("masters", []))
            if mj.get("leader") and roles == ["follower", "follower", "leader"]:
                break
            if time.monotonic() > deadline:
                raise Fail(f"weirctl masters did not show one leader and two followers: {mj}")
            time.sleep(3)
        self.leader = mj["leader"]
        text = c.out("weirctl masters")
        log("weirctl masters on node1:\n" + text.rstrip())
        # Every master agrees on the leader.
        for name, vm in self.vms.items():
            vm.console.until(
                f"curl -sf http://{vm.addr}:19998/v1/status | grep -Eq '\"leader\": ?\"{self.leader}\"'",
                60, what=f"{name} follows {self.leader}")
        return f"leader {self.leader}, followers {sorted(set(NODES) - {self.leader})}"

    # -- status on the system bus --

    def dbus(self):
        for name, vm in self.vms.items():
            for bus_name in ("io.weir.Master1", "io.weir.Worker1", "io.weir.Fuse1"):
                vm.console.until(f"busctl --system status {bus_name} >/dev/null", 60,
                                 what=f"{bus_name} on the system bus of {name}")
        role = self.vms[self.leader].console.out(
            "busctl --system get-property io.weir.Master1 /io/weir/Master1 io.weir.Master1 Role")
        if "leader" not in role:
            raise Fail(f"io.weir.Master1 Role on {self.leader} is {role.strip()}")
        text = self.vms[self.leader].console.out("weirctl status")
        log(f"weirctl status on {self.leader}:\n" + text.rstrip())
        return f"io.weir.Master1/Worker1/Fuse1 on every node; Role on {self.leader}: {role.strip()}"

    # -- dataset and reads --

    def bind(self):
        c = self.vms["node1"].console
        api = f"http://{ADDR['node1']}:19998"
        c.until(f"curl -sfL -X POST {api}/v1/datasets/{DATASET}/sync", 60,
                what="POST /v1/datasets/hbase/sync")
        c.until(f"curl -sfL {api}/v1/datasets/{DATASET} | grep -Eq '\"phase\": ?\"Bound\"'", 180,
                interval=3, what="dataset phase Bound")
        ds = json.loads(c.out(f"curl -sfL {api}/v1/datasets/{DATASET}"))
        if ds.get("total_files") != 6:
            raise Fail(f"dataset has {ds.get('total_files')} files, expected 6: {ds}")
        size = 23 * SAMPLE_BIN["hbase-3.bin"]
        for name, vm in self.vms.items():
            vm.console.until(f"test \"$(stat -c %s {MOUNT}/hbase-3.bin)\" = {size}", 60,
                             what=f"{MOUNT}/hbase-3.bin of {size} bytes on {name}")
        return f"Bound, {ds.get('total_files')} files, visible through FUSE on all nodes"

    def sha(self, vm, rel, timeout=300):
        out = vm.console.out(f"sha256sum {MOUNT}/{rel}", timeout=timeout)
        return out.split()[0]

    def reads(self):
        f = "hbase-1.bin"
        want = self.store.sums[f]
        reader, other = self.vms["node2"], self.vms["node3"]
        before = self.store.gets(f)
        t = time.monotonic()
        got = self.sha(reader, f)
        cold_s = time.monotonic() - t
        if got != want:
            raise Fail(f"cold read on node2: sha256 {got}, the store has {want}")
        cold = self.store.gets(f)
        if cold[0] <= before[0]:
            raise Fail("the cold read did not reach the store (no GET in nginx's access log)")
        log(f"cold read of {f} on node2: {cold_s:.1f}s, {cold[0] - before[0]} GETs, "
            f"{cold[1] - before[1]} bytes from the store")
        got = self.sha(other, f)
        if got != want:
            raise Fail(f"read on node3: sha256 {got}, the store has {want}")
        after_other = self.store.gets(f)
        reader.console.sh("sync; echo 3 >/proc/sys/vm/drop_caches")
        t = time.monotonic()
        got = self.sha(reader, f)
        warm_s = time.monotonic() - t
        if got != want:
            raise Fail(f"warm read on node2: sha256 {got}, the store has {want}")
        warm = self.store.gets(f)
        if warm != after_other:
            raise Fail(f"the warm read after drop_caches reached the store: "
                       f"{warm[0] - after_other[0]} GETs, {warm[1] - after_other[1]} bytes")
        self.timings["cold read 4.6 MB via FUSE (node2)"] = cold_s
        self.timings["warm read after drop_caches (node2)"] = warm_s
        return (f"sha256 equal; cold {cold_s:.1f}s ({cold[1] - before[1]} bytes from the store), "
                f"node3 {'0' if after_other == cold else after_other[1] - cold[1]} more bytes, "
                f"warm {warm_s:.1f}s with 0 bytes from the store")

    # -- failover --

    def failover(self):
        leader = self.leader
        old = self.vms[leader]
        reader = next(v for n, v in self.vms.items() if n != leader)
        others = [v for n, v in self.vms.items() if n != leader]
        f = "hbase-2.bin"
        # A cold read through FUSE runs while the leader dies.
        reader.console.sh(f"rm -f /tmp/copy /tmp/copy.rc; (cp {MOUNT}/{f} /tmp/copy; "
                          f"echo $? >/tmp/copy.rc) >/dev/null 2>&1 &", retry=False)
        nrestarts0 = int(old.console.out("systemctl show -p NRestarts --value weir-master").strip()
                         or 0)
        # Kill and time the election on the old leader's own clock: it asks the survivors until
        # one of them names a leader other than itself.
        polls = " ".join(f"http://{v.addr}:19998/v1/status" for v in others)
        script = f"""
systemctl kill -s KILL weir-master.service
t0=$(date +%s%N)
while :; do
  for u in {polls}; do
    l=$(curl -s --max-time 1 "$u" | sed -n 's/.*"leader": *"\\([^"]*\\)".*/\\1/p')
    if [ -n "$l" ] && [ "$l" != {leader} ]; then
      echo "$l $(( ($(date +%s%N) - t0) / 1000000 ))"; exit 0
    fi
  done
  [ $(( ($(date +%s%N) - t0) / 1000000000 )) -ge {self.args.election_bound} ] && exit 1
done
"""
        t = time.monotonic()
        status, out = old.console.sh(script, timeout=self.args.election_bound + 60, check=False,
                                     retry=False)
        host_s = time.monotonic() - t
        if status != 0:
            raise Fail(f"no new leader within {self.args.election_bound}s of SIGKILL of {leader}'s "
                       f"weir-master: {out.strip()}")
        new_leader, ms = out.split()
        ms = int(ms)
        log(f"SIGKILL of {leader}'s weir-master: new leader {new_leader} after {ms} ms "
            f"(the old leader's clock; {host_s:.1f}s round trip through the console)")
        self.timings["new leader after SIGKILL (guest clock)"] = ms / 1000
        # The read that ran meanwhile completes intact.
        reader.console.until("test -s /tmp/copy.rc", 300, interval=3,
                             what="the read during failover finished")
        rc = reader.console.out("cat /tmp/copy.rc").strip()
        if rc != "0":
            raise Fail(f"cp from FUSE during failover exited {rc}")
        got = reader.console.out("sha256sum /tmp/copy").split()[0]
        if got != self.store.sums[f]:
            raise Fail(f"the copy made during failover differs from the store ({got})")
        # systemd restarts the killed master (Restart=on-failure); it follows the new leader.
        t = time.monotonic()
        old.console.until("systemctl is-active weir-master.service", 180, interval=3,
                          what="weir-master active again")
        nrestarts = int(old.console.out("systemctl show -p NRestarts --value weir-master").strip())
        if nrestarts <= nrestarts0:
            raise Fail(f"NRestarts of weir-master on {leader} is {nrestarts}: systemd did not "
                       f"restart it")
        old.console.until(
            f"curl -sf http://{old.addr}:19998/v1/status | grep -Eq '\"role\": ?\"follower\"' && "
            f"curl -sf http://{old.addr}:19998/v1/status | grep -Eq '\"leader\": ?\"{new_leader}\"'",
            180, interval=3, what=f"{leader} rejoined as a follower of {new_leader}")
        rejoin_s = time.monotonic() - t
        self.timings["killed master back as follower"] = rejoin_s
        mj = self.masters_json(old)
        roles = sorted(m.get("role", "?") for m in mj.get("masters", []))
        if mj.get("leader") != new_leader or roles != ["follower", "follower", "leader"]:
            raise Fail(f"after the rejoin weirctl masters shows {mj}")
        self.leader = new_leader
        return (f"{leader} killed, {new_leader} leads after {ms} ms; read during failover intact; "
                f"{leader} restarted by systemd (NRestarts {nrestarts}) and follows after "
                f"{rejoin_s:.0f}s")

    # -- the FUSE unit --

    def fuse_unit(self):
        vm = self.vms["node3"]
        c = vm.console
        unit = "weir-fuse@hbase.service"
        mnt = f"/mnt/weir/{DATASET}"
        if c.ok(f"touch {MOUNT}/new-file"):
            raise Fail("touch in the FUSE mount succeeded: it must be read-only")
        c.sh(f"systemctl stop {unit}")
        if c.ok(f"mountpoint -q {mnt}"):
            raise Fail(f"{mnt} still mounted after systemctl stop {unit}")
        c.sh(f"systemctl start {unit}", timeout=150)
        c.sh(f"mountpoint -q {mnt}")
        n0 = int(c.out(f"systemctl show -p NRestarts --value {unit}").strip() or 0)
        c.sh(f"systemctl kill -s KILL {unit}", retry=False)
        t = time.monotonic()
        c.until(f"systemctl is-active {unit} && mountpoint -q {mnt} && "
                f"test -f {MOUNT}/hbase-1.bin", 120, interval=2,
                what="the FUSE mount back after SIGKILL")
        back = time.monotonic() - t
        n1 = int(c.out(f"systemctl show -p NRestarts --value {unit}").strip() or 0)
        if n1 <= n0:
            raise Fail(f"NRestarts of {unit} stayed {n1}: systemd did not restart it")
        self.timings["FUSE mount back after SIGKILL (node3)"] = back
        files = list(self.store.sums)
        out = c.out(f"cd {MOUNT} && sha256sum " + " ".join(files), timeout=600)
        got = {line.split()[1]: line.split()[0] for line in out.splitlines() if line.strip()}
        bad = [f for f in files if got.get(f) != self.store.sums[f]]
        if bad:
            raise Fail(f"after the restart these differ from the store: {bad}")
        return (f"read-only; stop unmounts, start mounts; after SIGKILL systemd restarts it and the "
                f"mount is back in {back:.0f}s (ExecStopPost detached the dead mount); all "
                f"{len(files)} files equal the store")

    # -- the generator's other cases (vm-tests/generator.nix) --

    def generator_cases(self):
        """On node3, with systemctl daemon-reload after each change of /etc/weir and of the host
        name: found by interface address and by /etc/weir/node; an invalid YAML, none, an unknown
        host or a node file naming an unknown node pull in nothing, with the reason in the kernel
        log. Running units keep running throughout; at the end node3 is as it booted."""
        vm = self.vms["node3"]
        c = vm.console
        gen = "/run/systemd/generator"
        expect = ["weir-fuse@hbase.service", "weir-master.service", "weir-worker.service"]
        state = {"step": 0}
        c.sh("cp /etc/weir/cluster.yaml /root/cluster.yaml.orig")

        def use(setup):
            state["step"] += 1
            c.sh(f"echo 'weir-vmtest: step {state['step']}' >/dev/kmsg; "
                 f"rm -f /etc/weir/node; cp /root/cluster.yaml.orig /etc/weir/cluster.yaml; "
                 f"{setup}; systemctl daemon-reload", timeout=180, retry=False)

        def said(text):
            c.until(f"dmesg | sed -n '/weir-vmtest: step {state['step']}$/,$p' "
                    f"| grep -Eq '{text}'", 30, what=f"the generator said /{text}/")

        def pulled():
            return sorted(c.out(f"ls {gen}/weir.target.wants 2>/dev/null || true").split())

        def nothing(reason):
            if pulled():
                raise Fail(f"step {state['step']}: weir.target pulls in {pulled()}, expected nothing")
            c.sh(f"test ! -e {gen}/multi-user.target.wants/weir.target && "
                 f"test ! -e {gen}/weir-master.service.d")
            said(reason)

        try:
            use("printf 'apiVersion: weir.io/v1\\nkind: Cluster\\nspec:\\n  nodes: "
                "[ {name: node3, address: 10.77.0.13\\n' >/etc/weir/cluster.yaml")
            nothing(r"cluster\.yaml:[0-9]+:[0-9]+: error")
            use("rm -f /etc/weir/cluster.yaml")
            nothing("does not exist")
            use("hostname stranger; sed -i 's/10\\.77\\.0\\.13/10.77.0.99/' /etc/weir/cluster.yaml")
            nothing("none of the nodes")
            use("hostname stranger")
            if pulled() != expect:
                raise Fail(f"by address: weir.target pulls in {pulled()}")
            said(r"node node3 \(by interface address\)")
            use("hostname stranger; echo node3 >/etc/weir/node")
            if pulled() != expect:
                raise Fail(f"by node file: weir.target pulls in {pulled()}")
            said(r"node node3 \(by node file\)")
            use("echo nobody >/etc/weir/node")
            nothing("names a node")
        finally:
            use(f"hostname {vm.name}")
        if pulled() != expect:
            raise Fail(f"restored: weir.target pulls in {pulled()}")
        said(r"node node3 \(by host name\)")
        c.sh("systemctl is-active weir-master.service weir-worker.service "
             "weir-fuse@hbase.service weir.target")
        return ("invalid YAML, no YAML, unknown host, unknown node in /etc/weir/node: nothing "
                "pulled in, reason logged; found by interface address and by node file; "
                "running units untouched")

    # -- diagnostics --

    def collect(self, keep):
        os.makedirs(keep, exist_ok=True)
        for name, vm in self.vms.items():
            if vm.alive() and vm.console and vm.console.sock:
                try:
                    _, out = vm.console.sh(
                        "systemctl --no-pager status 'weir*' 2>&1 | head -80; echo; "
                        "echo '# the generator:'; journalctl -b --no-pager -t weir-generator; "
                        "echo; echo '# the weir units:'; "
                        "journalctl -b --no-pager -o short-monotonic -u 'weir*' | tail -400; "
                        "echo; echo '# warnings, all units:'; "
                        "journalctl -b --no-pager -p warning | tail -150", timeout=90, check=False)
                    with open(os.path.join(keep, f"{name}-journal.txt"), "w") as f:
                        f.write(out)
                except Fail:
                    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", help="use this image directory (base.qcow2, vmlinuz, initrd.img) "
                                    "instead of running build-image.sh")
    ap.add_argument("--memory", type=int, default=768, help="MiB per VM (768)")
    ap.add_argument("--boot-timeout", type=int, default=900,
                    help="seconds for all three VMs to come up (900; ~60-120 s is usual)")
    ap.add_argument("--election-bound", type=int, default=30,
                    help="seconds a new leader may take after SIGKILL (30; emulated VMs)")
    ap.add_argument("--keep-logs", default=os.path.join(CACHE, "last-run"),
                    help="where the run's logs are kept (vm-tests/.cache/debian/last-run)")
    args = ap.parse_args()

    def on_signal(signum, frame):
        raise Interrupted(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    r = Run(args)
    status = 1
    workdir = None
    net = None
    try:
        if os.geteuid() != 0:
            raise Skip("needs root (network namespace, taps, mmdebstrap)")
        if not os.path.exists("/dev/net/tun"):
            raise Skip("no /dev/net/tun: QEMU cannot attach VMs to a private bridge")
        if not shutil.which("ip"):
            raise Skip("no ip(8) (iproute2)")
        if args.image:
            image = os.path.abspath(args.image)
        else:
            log("--- image: vm-tests/debian/build-image.sh")
            t = time.monotonic()
            p = subprocess.run(["bash", os.path.join(HERE, "build-image.sh")],
                               stdout=subprocess.PIPE, text=True)
            for line in p.stdout.splitlines():
                if line.startswith("build-image:"):
                    log(line)
            if p.returncode == 77:
                raise Skip("build-image.sh cannot build the image here (see its message above)")
            if p.returncode != 0:
                raise Fail(f"build-image.sh exited {p.returncode}")
            image = p.stdout.strip().splitlines()[-1]
            r.timings["image (build-image.sh)"] = time.monotonic() - t
        for f in ("base.qcow2", "vmlinuz", "initrd.img"):
            if not os.path.exists(os.path.join(image, f)):
                raise Fail(f"{image} has no {f}")
        if not shutil.which("qemu-system-x86_64"):
            raise Skip("no qemu-system-x86_64")
        os.makedirs(CACHE, exist_ok=True)
        if os.path.abspath(args.keep_logs) == os.path.join(CACHE, "last-run"):
            shutil.rmtree(args.keep_logs, ignore_errors=True)
        remove_stale_run_dirs()
        workdir = tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=CACHE)
        net = Network()
        net.__enter__()
        log(f"network namespace {net.ns}: bridge 10.77.0.1/24, tap1-3")
        r.store = Store(net, workdir)
        r.store.start()
        log(f"store: nginx on http://{STORE}/hbase/ (access log {r.store.access_log})")
        for i, name in enumerate(NODES, 1):
            r.vms[name] = VM(i, name, net, image, workdir, args.memory)
        try:
            r.step("boot three VMs", r.boot)
            r.step("generator pulled in the units; all active", r.units)
            r.step("weirctl masters: one leader, two followers", r.masters)
            r.step("status on the system bus (busctl, weirctl status)", r.dbus)
            r.step("the dataset binds", r.bind)
            r.step("FUSE read equals the store; warm reads do not reach it", r.reads)
            r.step("SIGKILL of the leader: new leader, restart, rejoin", r.failover)
            r.step("FUSE mount read-only, stops cleanly, comes back after SIGKILL",
                   r.fuse_unit)
            r.step("generator: by address, by node file, and every case that starts nothing",
                   r.generator_cases)
            status = 0
        except Fail:
            status = 1
        log("collecting journals of the weir units")
        r.collect(args.keep_logs)
    except Skip as e:
        print(f"SKIP: {e}", flush=True)
        status = 77
    except Fail as e:
        log(f"FAIL: {e}")
        status = 1
    except Interrupted as e:
        log(f"interrupted ({e}); tearing down")
        r.results.append(("interrupted", False, 0.0, str(e)))
        status = 1
    finally:
        # Teardown that no signal may interrupt.
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        t = time.monotonic()
        for vm in r.vms.values():
            vm.terminate()
        for vm in r.vms.values():
            vm.wait_stopped()
        if r.store:
            r.store.stop()
        if net:
            net.close()
        if workdir:
            keep = args.keep_logs
            os.makedirs(keep, exist_ok=True)
            for name in NODES:
                for fn in ("boot.log", "console.log", "qemu.log"):
                    p = os.path.join(workdir, name, fn)
                    if os.path.exists(p):
                        shutil.copy(p, os.path.join(keep, f"{name}-{fn}"))
            for fn in ("access.log", "error.log"):
                p = os.path.join(workdir, "store", fn)
                if os.path.exists(p):
                    shutil.copy(p, os.path.join(keep, f"store-{fn}"))
            shutil.rmtree(workdir, ignore_errors=True)
        if r.vms or net:
            log(f"teardown: VMs stopped, namespace deleted, overlays removed "
                f"({time.monotonic() - t:.1f}s); logs in {args.keep_logs}")

    print("\n=== summary", flush=True)
    for name, ok, secs, detail in r.results:
        print(f"{'PASS' if ok else 'FAIL'}  {name} ({secs:.1f}s)" + (f"\n      {detail}" if detail else ""))
    for k, v in r.timings.items():
        print(f"time  {k}: {v:.1f}s")
    print(f"time  total: {time.monotonic() - T0:.1f}s")
    print({0: "RESULT: PASS", 1: "RESULT: FAIL", 77: "RESULT: SKIP"}[status], flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
