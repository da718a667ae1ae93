"""A warm read on another node: weir-fuse on node1 reads blocks that only node2's worker holds
from that worker, and the store sends nothing (real weir-master, weir-worker and weir-fuse on
127.0.4.x, nginx as the store; the seeds' demo cluster of weirtest/fusecluster.py).

This is the check of vm-tests/scenarios/ha.py ("warm reads, on any node, do not [reach the
store]") without VMs: the QEMU harness saw node3 fetch blocks of hbase-1.bin from the store
that node2's worker held and the leader's block map named (6 Dec 2026, runs on 7b11fec and
9f4ac93).
"""

import os
import shutil
import tempfile
import urllib.request

import pytest

import conftest
from conftest import weir_binary
from weirtest.fusemount import drop_caches, sha256


@pytest.fixture(scope="module")
def demo():
    from weirtest.fusecluster import DemoCluster

    for name in ("weir-master", "weir-worker", "weir-fuse"):
        weir_binary(name)
    d = tempfile.mkdtemp(prefix="weir-peerread-")
    c = DemoCluster(d, conftest.BUILD_DIR, scale=0.25,
                    fuse_env={"WEIR_FUSE_RETRY": "60s", "WEIR_FUSE_XATTRS": "1"})
    try:
        c.start(fuse=False)
        yield c
    finally:
        c.stop()
        shutil.rmtree(d, ignore_errors=True)


def store_gets(demo, name):
    """The store's access-log lines for GETs of hbase/NAME (each block fetch is one ranged GET).
    Other files' requests are not counted: opening a file may prefetch the next ones."""
    with open(os.path.join(demo.nginx.workdir, "access.log")) as f:
        return [line for line in f if f'"GET /hbase/{name} ' in line]


def test_blocks_only_another_worker_holds_are_read_from_it(demo):
    from weirtest.fusecluster import TOKEN

    # The largest file: several blocks.
    name = max(demo.files, key=lambda n: demo.files[n])
    entry = demo.stat("/hbase/" + name)
    bs = demo.request("GET", f"/v1/files/{entry['file_id']}")[1]["block_size"]
    n = (entry["size"] + bs - 1) // bs
    assert n >= 2, (name, entry["size"], bs)
    api2 = f"{demo.addresses[1]}:{demo.ports[demo.addresses[1]][2]}"
    # node2's worker fills every block from the store (its API, as a peer would ask it).
    for i in range(n):
        bid = f"{entry['epoch']}-{entry['file_id']}-{entry['version']}-{i}"
        urllib.request.urlopen(urllib.request.Request(
            f"http://{api2}/v1/blocks/{bid}", headers={"Authorization": f"Bearer {TOKEN}"}),
            timeout=60).read()
    where = f"/v1/blocks?file={entry['file_id']}&version={entry['version']}"
    demo.wait(lambda: all(demo.request("GET", where)[1]["locations"].get(str(i)) == ["node2"]
                          for i in range(n)), 60, "the leader's map: node2 holds every block")
    before = len(store_gets(demo, name))
    demo.start_fuse()
    drop_caches()
    path = os.path.join(demo.mnt, "hbase", name)
    assert sha256(path) == sha256(os.path.join(demo.store_root, "hbase", name))
    locations = demo.request("GET", where)[1]["locations"]
    gets = store_gets(demo, name)[before:]
    assert not gets, (
        f"node1's read of {name} ({n} blocks that only node2's worker held) reached the store: "
        f"{''.join(gets)}locations now {locations}; weir-fuse's log:\n{demo.fuse.log(3000)}")
    # node1's worker was not asked to cache them too: the blocks are still node2's alone.
    assert all(locations.get(str(i)) == ["node2"] for i in range(n)), locations
