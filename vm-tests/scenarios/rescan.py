# weir-rescan: a host whose address arrives after the generator ran. node3 boots again under a
# host name the YAML does not know ("appliance"): at boot the generator finds neither its name
# nor its address (networkd assigns it later) and pulls nothing in; weir-rescan, once
# network-online.target is reached, reloads and finds node3 by address, and its daemons start.
# Only vm-tests/qemu/harness.py runs this file: booting under another host name is its
# start(hostname=...), which the NixOS driver's start() does not have (there the unnamed host is
# node4, checked in ha.py).
with subtest("weir-rescan: an address that arrives after the generator ran"):
    node3.shutdown()
    node3.start(hostname="appliance")
    node3.wait_for_unit("multi-user.target", timeout=900)
    node3.succeed("dmesg | grep weir-generator | head -n 1 | grep -q 'none of the nodes'")
    node3.wait_until_succeeds(
        "journalctl -b -u weir-rescan.service --no-pager | grep -q 'now found'", timeout=180)
    node3.succeed("dmesg | grep -q 'node node3 (by interface address)'")
    for u in ["weir-master.service", "weir-worker.service", "weir-fuse@hbase.service"]:
        node3.wait_for_unit(u, timeout=300)
    node3.wait_until_succeeds("test -f /mnt/weir/hbase/hbase/hbase-2.bin", timeout=120)
    got = node3.succeed("busybox sha256sum /mnt/weir/hbase/hbase/hbase-2.bin").split()[0]
    want2 = store.succeed(f"cd {env['sample_dir']}/hbase && sha256sum hbase-2.bin").split()[0]
    assert got == want2, (got, want2)
