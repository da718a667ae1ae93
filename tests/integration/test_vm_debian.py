"""The QEMU harness as a pytest: boots the Debian-built appliance as three VMs and runs the
scenarios of vm-tests/ha.nix (vm-tests/debian/run.py; see vm-tests/README.md).

Slow (three VMs under TCG, ~5 min with a cached image, more when the image is rebuilt), so it is
skipped unless WEIR_VM_TESTS=1. run.py's exit 77 (this machine cannot run it) becomes a skip with
run.py's reason.
"""

import os
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RUN = os.path.join(ROOT, "vm-tests", "debian", "run.py")

pytestmark = pytest.mark.skipif(
    os.environ.get("WEIR_VM_TESTS") != "1",
    reason="boots three QEMU VMs under TCG (~5 min); set WEIR_VM_TESTS=1",
)


def test_vm_debian():
    # run.py tears everything down itself on SIGTERM; the timeout covers a first image build
    # (mmdebstrap) plus a slow boot on a loaded machine.
    p = subprocess.Popen(["/usr/bin/python3", RUN], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(timeout=3600)
    except subprocess.TimeoutExpired:
        p.terminate()
        out, _ = p.communicate(timeout=120)
        pytest.fail(f"vm-tests/debian/run.py took more than an hour:\n{out[-4000:]}")
    print(out)
    if p.returncode == 77:
        reason = next((line[len("SKIP: "):] for line in out.splitlines()
                       if line.startswith("SKIP: ")), "run.py cannot run here")
        pytest.skip(reason)
    tail = "\n".join(out.splitlines()[-40:])
    assert p.returncode == 0, f"vm-tests/debian/run.py exited {p.returncode}:\n{tail}"
