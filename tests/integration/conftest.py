"""Shared pytest setup for weir's integration tests: where the build is, and a last sweep.

Each test module starts its own daemons, HTTP servers and mounts on its own loopback range
(127.0.1.x masters, 127.0.2.x workers, 127.0.3.x stores, 127.0.4.x FUSE) and stops them in
fixture finalizers. The session-end sweep below is the safety net: whatever a crashed test left
(a weir process, a FUSE mount under the temp dir) is removed, and reported.
"""

import os
import shutil
import signal
import subprocess
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.path.abspath(os.environ.get("WEIR_BUILD_DIR", os.path.join(ROOT, "build")))

sys.path.insert(0, HERE)

# Marks every process this session starts (daemons inherit the environment): the sweep at the
# end kills only those, never the daemons of another session running from the same build.
SESSION_MARK = f"WEIR_TEST_SESSION={uuid.uuid4().hex}"
os.environ["WEIR_TEST_SESSION"] = SESSION_MARK.split("=", 1)[1]


def weir_binary(name):
    """Path of a built weir program; skips the test if it was not built."""
    for sub in ("services/master", "services/worker", "services/fuse", "services/ctl",
                "services/generator"):
        path = os.path.join(BUILD_DIR, sub, name)
        if os.access(path, os.X_OK):
            return path
    pytest.skip(f"{name} is not built in {BUILD_DIR} (run 'make' first)")


@pytest.fixture(scope="session")
def build_dir():
    if not os.path.isdir(BUILD_DIR):
        pytest.skip(f"no build directory {BUILD_DIR} (run 'make' first)")
    return BUILD_DIR


@pytest.fixture
def private_bus(tmp_path):
    """A private dbus-daemon standing in for the system bus; yields its address (give it to the
    daemons as DBUS_SYSTEM_BUS_ADDRESS and to busctl as --address)."""
    from weirtest.daemon import DbusDaemon

    if not shutil.which("dbus-daemon") or not shutil.which("busctl"):
        pytest.skip("dbus-daemon or busctl is not installed (apt install dbus systemd)")
    bus = DbusDaemon(str(tmp_path / "bus"))
    try:
        bus.start()
    except RuntimeError as e:
        pytest.skip(str(e))
    try:
        yield bus.address
    finally:
        bus.stop()


def cluster_factory(cls, tmp_path, build_dir):
    """The body of a factory fixture of CLS clusters (MasterCluster or a subclass): yields
    make(**kw); every cluster made is stopped (process groups killed) at teardown."""
    made = []

    def make(**kw):
        c = cls(tmp_path / f"c{len(made)}", build_dir, **kw)
        made.append(c)
        return c

    try:
        yield make
    finally:
        for c in made:
            c.stop()


@pytest.fixture
def make_cluster(tmp_path, build_dir):
    """Factory of MasterClusters (weirtest/cluster.py)."""
    from weirtest.cluster import MasterCluster

    weir_binary("weir-master")
    yield from cluster_factory(MasterCluster, tmp_path, build_dir)


@pytest.fixture
def cluster3(make_cluster):
    """Three masters on 127.0.1.1-3 with a leader elected."""
    c = make_cluster(n=3, first_address=1)
    c.start()
    c.wait_leader()
    return c


def _ours(pid):
    """Whether process PID was started by this session: it carries the session's mark, or
    descends from this process (a daemon started with an environment of its own)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            if SESSION_MARK.encode() in f.read().split(b"\0"):
                return True
    except OSError:
        pass
    me, seen = os.getpid(), 0
    while pid > 1 and seen < 64:
        try:
            with open(f"/proc/{pid}/status") as f:
                pid = int(next(line.split()[1] for line in f if line.startswith("PPid:")))
        except (OSError, StopIteration, ValueError):
            return False
        if pid == me:
            return True
        seen += 1
    return False


def _stray_processes():
    """weir processes of this session, started from this build directory, still alive (another
    session's daemons from the same build are left alone: killing them broke its tests)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if exe.startswith(BUILD_DIR + "/") and _ours(int(pid)):
            found.append((int(pid), exe))
    return found


def _stray_mounts(basetemp):
    """FUSE mounts left under this session's own temporary directory (never another run's)."""
    mounts = []
    prefix = str(basetemp).rstrip("/") + "/"
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                _, mnt, fstype = line.split()[:3]
                mnt = mnt.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
                if fstype.startswith("fuse") and mnt.startswith(prefix):
                    mounts.append(mnt)
    except OSError:
        pass
    return mounts


def pytest_sessionfinish(session, exitstatus):
    strays = _stray_processes()
    for pid, _ in strays:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        basetemp = session.config._tmp_path_factory.getbasetemp()
    except (AttributeError, OSError):
        basetemp = None
    mounts = _stray_mounts(basetemp) if basetemp else []
    for mnt in mounts:
        subprocess.run(["umount", "-l", mnt], check=False, capture_output=True)
    if strays or mounts:
        sys.stderr.write(f"\nconftest: removed leftovers: processes {strays}, mounts {mounts}\n")
        session.exitstatus = 1
