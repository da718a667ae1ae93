# The appliance's life with three nodes: boot, election, status, binding, cold and warm reads,
# a leader killed during a copy, a leader's whole node crashed, a partitioned follower, FUSE
# stop/crash/restart. Reads lib.py's helpers and `env`; machines node1-node4 and store.
weir_nodes = [node1, node2, node3]
names = [m.name for m in weir_nodes]
by_name = {m.name: m for m in weir_nodes}
units = ["weir-master.service", "weir-worker.service", "weir-fuse@hbase.service"]
gen = "/run/systemd/generator"

start_all()
store.wait_for_open_port(80, env["store"])
expected = expected_sums(store)

with subtest("the generator pulls in each node's units, found by host name"):
    for m in weir_nodes:
        m.wait_for_unit("multi-user.target")
        for unit in units:
            m.succeed(f"test -L {gen}/weir.target.wants/{unit}")
        m.succeed(f"grep -qx 'Environment=\"WEIR_NODE={m.name}\"' "
                  f"{gen}/weir-master.service.d/50-weir-node.conf")
        m.succeed("journalctl -b -t weir-generator --no-pager "
                  f"| grep -q 'This host is node {m.name} (by host name)'")
    for m in weir_nodes:
        for unit in units + ["weir.target"]:
            m.wait_for_unit(unit, timeout=300)

with subtest("a host that the YAML does not name runs none of weir"):
    node4.wait_for_unit("multi-user.target")
    node4.succeed(f"test ! -e {gen}/weir.target.wants")
    node4.succeed(f"test ! -e {gen}/multi-user.target.wants/weir.target")
    node4.succeed("journalctl -b -t weir-generator --no-pager | grep -q 'none of the nodes'")
    # weir-rescan looked again once the network was up, and still found nothing.
    node4.wait_until_succeeds(
        "journalctl -b -u weir-rescan.service --no-pager | grep -q 'still none'", timeout=180)
    node4.fail("systemctl is-active weir.target")
    node4.fail("systemctl is-active weir-master.service")

with subtest("three masters elect one leader and agree on it"):
    leader, term = wait_agreement(weir_nodes, names, timeout=300)
    masters = get(node1, "/v1/masters")
    assert masters["leader"] == leader, masters
    assert sorted(x["node"] for x in masters["masters"] if x["reachable"]) == names, masters
    print(f"leader: {leader}, term {term}")

with subtest("status on the system bus and through weirctl"):
    for m in weir_nodes:
        for bus_name in ["io.weir.Master1", "io.weir.Worker1", "io.weir.Fuse1"]:
            m.wait_until_succeeds(f"busctl --system status {bus_name} >/dev/null", timeout=60)
    # Slow VMs may have elected again since: ask who leads now, then its bus object.
    leader, term = wait_agreement(weir_nodes, names, timeout=300)
    by_name[leader].wait_until_succeeds(
        "busctl --system get-property io.weir.Master1 /io/weir/Master1 io.weir.Master1 Role "
        "| grep -q leader", timeout=60)
    # The policy lets any user read: ask as nobody.
    node1.succeed("setpriv --reuid=65534 --regid=65534 --clear-groups "
                  "busctl --system get-property io.weir.Master1 /io/weir/Master1 "
                  "io.weir.Master1 Role")
    node1.succeed(f"weirctl masters | grep -q {leader}")

with subtest("the dataset binds: the leader lists the store"):
    node1.succeed(f"curl -sfL -X POST {master_url('node1', '/v1/datasets/hbase/sync')}")
    node1.wait_until_succeeds(
        f"curl -sfL {master_url('node1', '/v1/datasets/hbase')} | jq -e '.phase == \"Bound\"'",
        timeout=180)
    ds = get(node1, "/v1/datasets/hbase")
    assert ds["total_files"] == len(env["files"]), ds
    for m in weir_nodes:
        m.wait_until_succeeds("test -f /mnt/weir/hbase/hbase/hbase-3.bin", timeout=60)
        listing = m.succeed("busybox ls -l /mnt/weir/hbase/hbase/hbase-3.bin")
        assert " 13800000 " in listing, listing
        # du of the whole tree: 4.6 + 9.2 + 13.8 MB and the conf files, in KiB.
        kib = int(m.succeed("busybox du -s /mnt/weir/hbase/hbase").split()[0])
        assert 26900 <= kib <= 27100, kib

with subtest("a cold read reaches the store once; warm reads, on any node, do not"):
    before = store_gets(store, "hbase-1.bin")
    one = "cd /mnt/weir/hbase/hbase && busybox sha256sum hbase-1.bin"
    want = store.succeed(f"cd {env['sample_dir']}/hbase && sha256sum hbase-1.bin").split()[0]
    assert node2.succeed(one).split()[0] == want
    cold = store_gets(store, "hbase-1.bin")
    assert cold > before, "the cold read did not reach the store"
    # The same node, page cache dropped: its worker has the blocks.
    node2.succeed("sync; echo 3 > /proc/sys/vm/drop_caches")
    assert node2.succeed(one).split()[0] == want
    assert store_gets(store, "hbase-1.bin") == cold, "a warm read on the same node reached the store"
    # Another node, once the leader's block map has node2's report (heartbeat); before that it
    # may fetch from the store itself. The block map is the leader's soft state: after an
    # election (they happen on a loaded TCG host: term 2 -> 6 in the middle of this check on
    # 6 Dec 2026) the new leader knows node2's blocks only once node2's worker has registered
    # with it again, and a read until then legitimately goes to the store. So a warm read counts
    # only when the same leader in the same term served before and after it; otherwise the next
    # node, still cold for this file, tries.
    entry = get(node1, "/v1/datasets/hbase/stat?path=/hbase/hbase-1.bin")
    blocks = master_url("node1", f"/v1/blocks?file={entry['file_id']}&version={entry['version']}")
    proved = []
    for reader in (node3, node1):
        served = wait_agreement(weir_nodes, names, timeout=300)
        node1.wait_until_succeeds(f"curl -sfL '{blocks}' | jq -e '.locations | length == 5'",
                                  timeout=120)
        gets = store_gets(store, "hbase-1.bin")
        assert reader.succeed(one).split()[0] == want
        after = store_gets(store, "hbase-1.bin")
        leader, term = wait_agreement(weir_nodes, names, timeout=300)
        if (leader, term) != served:
            print(f"the leader changed during {reader.name}'s warm read ({served[0]} in term "
                  f"{served[1]}, then {leader} in term {term}; {after - gets} store GETs): "
                  "not counted")
            continue
        if after != gets:
            # What the reader's weir-fuse and worker said (at debug level with the harness's
            # WEIR_VM_FUSE_DEBUG=1): which source each block was asked of and why it failed.
            why = reader.succeed("journalctl --no-pager -n 80 -u weir-fuse@hbase.service "
                                 "-u weir-worker.service | busybox tail -n 80")
            raise AssertionError(f"a warm read on another node ({reader.name}) reached the "
                                 f"store ({after - gets} GETs); its journal:\n{why}")
        proved.append(reader.name)
        break
    assert proved, "the leader changed during every warm read on another node"
    assert get(node1, "/v1/datasets/hbase")["cached"] > 0
    print(f"store GETs for hbase-1.bin: {cold - before} cold, 0 warm on node2 and {proved[0]}")

with subtest("SIGKILL of the leader while a copy runs: a new leader in a higher term"):
    # Who leads now (an election since the last agreement would make `leader` a follower).
    leader, term = wait_agreement(weir_nodes, names, timeout=300)
    old = by_name[leader]
    reader = next(m for m in weir_nodes if m.name != leader)
    # The copy must still run when the leader dies. A throttled store no longer makes sure of
    # that: weir-fuse prefetches the next files when one is opened, so the earlier reads have
    # warmed hbase-2 and hbase-3 (run 4 of 6 Dec 2026: the copy ended before the kill). So the
    # copy is paced: one 1 MiB block a second, each read through FUSE with busybox dd; 31
    # blocks, at least 22 s after hbase-2.bin has begun.
    paced = ("cd /mnt/weir/hbase/hbase && for f in " + " ".join(env["files"]) + "; do "
             "busybox mkdir -p /tmp/copy/$(busybox dirname $f); : > /tmp/copy/$f; "
             "n=$(( ($(busybox stat -c %s $f) + 1048575) / 1048576 )); i=0; "
             "while [ $i -lt $n ]; do busybox dd if=$f of=/tmp/copy/$f bs=1048576 skip=$i "
             "seek=$i count=1 conv=notrunc 2>/dev/null; i=$((i + 1)); busybox sleep 1; done; "
             "done")
    reader.succeed("rm -rf /tmp/copy /tmp/copy.rc; "
                   f"(busybox time sh -c '{paced}' 2>/tmp/copy.time; "
                   "echo $? > /tmp/copy.rc) >/dev/null 2>&1 &")
    reader.wait_until_succeeds("test -e /tmp/copy/hbase-2.bin || test -e /tmp/copy/hbase-3.bin",
                               timeout=60)
    old.succeed("systemctl kill --signal=SIGKILL weir-master.service")
    t0 = time.monotonic()
    reader.succeed("test ! -e /tmp/copy.rc")  # the copy was still running when the leader died
    others = [m for m in weir_nodes if m is not old]
    new_leader, new_term = wait_agreement(others, [m.name for m in others], not_leader=leader,
                                          above_term=term, timeout=300)
    print(f"new leader {new_leader} in term {new_term} (was {leader} in term {term}), "
          f"agreement after {time.monotonic() - t0:.1f}s (emulated VMs)")
    reader.wait_for_file("/tmp/copy.rc", timeout=600)
    assert reader.succeed("cat /tmp/copy.rc").strip() == "0", reader.succeed("cat /tmp/copy.time")
    print("paced copy (busybox dd, a block a second): "
          + " ".join(reader.succeed("cat /tmp/copy.time").split()))
    assert sums(reader, "/tmp/copy") == expected, "the copy differs from the store"
    # Restart=on-failure brought the killed master back exactly once; it follows.
    old.wait_for_unit("weir-master.service")
    restarts = old.succeed("systemctl show -p NRestarts --value weir-master.service").strip()
    assert restarts == "1", f"weir-master restarted {restarts} times"
    leader, term = wait_agreement(weir_nodes, names, above_term=new_term - 1, timeout=300)
    assert "weir_master_leader_changes_total" in reader.succeed(
        f"curl -sf {master_url(reader.name, '/metrics')}")

with subtest("the leader's whole node crashes: a new leader in a higher term, the node rejoins"):
    leader, term = wait_agreement(weir_nodes, names, timeout=300)  # who leads now
    old = by_name[leader]
    others = [m for m in weir_nodes if m is not old]
    old.crash()
    # The restarted old leader may win a later election again: terms decide, not names.
    new_leader, new_term = wait_agreement(others, [m.name for m in others], above_term=term,
                                          timeout=300)
    print(f"after the crash of {old.name}: leader {new_leader} in term {new_term}")
    old.start()
    old.wait_for_unit("weir-master.service", timeout=600)
    restarts = old.succeed("systemctl show -p NRestarts --value weir-master.service").strip()
    assert restarts == "0", f"weir-master restarted {restarts} times after the reboot"
    for unit in units:
        old.wait_for_unit(unit, timeout=300)
    leader, term = wait_agreement(weir_nodes, names, above_term=new_term - 1, timeout=300)

with subtest("a partitioned follower: the others keep serving; it catches up when unblocked"):
    follower = next(m for m in weir_nodes if m.name != leader)
    rest = [m for m in weir_nodes if m is not follower]
    follower.block()
    rest[0].succeed(f"curl -sfL -X POST {master_url(rest[0].name, '/v1/datasets/hbase/sync')}")
    for m in rest:
        assert m.succeed(one).split()[0] == want
    follower.unblock()
    leader, term = wait_agreement(weir_nodes, names, above_term=term - 1, timeout=300)

with subtest("the mount is read-only; FUSE stops cleanly and comes back after a crash"):
    # The unit keeps CAP_SYS_RESOURCE: libfuse's splice pipes hold 1 MiB replies.
    opts = node3.succeed("awk '$2 == \"/mnt/weir/hbase\" {print $4}' /proc/mounts")
    assert "max_read=1048576" in opts, opts
    node3.fail("touch /mnt/weir/hbase/hbase/new-file")
    node3.succeed("systemctl stop weir-fuse@hbase.service")
    node3.fail("mountpoint -q /mnt/weir/hbase")
    node3.succeed("systemctl start weir-fuse@hbase.service")
    node3.succeed("mountpoint -q /mnt/weir/hbase")
    node3.succeed("systemctl kill --signal=SIGKILL weir-fuse@hbase.service")
    node3.wait_until_succeeds("systemctl is-active -q weir-fuse@hbase.service", timeout=60)
    node3.wait_until_succeeds("mountpoint -q /mnt/weir/hbase && ls /mnt/weir/hbase/hbase",
                              timeout=60)
    assert sums(node3, "/mnt/weir/hbase/hbase") == expected

# Last, so that a failure here leaves the subtests above run: docs/design.md's promise that losing a
# node shows as latency, not as an error, for reads through FUSE on the other nodes.
with subtest("reads through FUSE go on while the leader's node is down"):
    leader, term = wait_agreement(weir_nodes, names, timeout=300)  # who leads now
    old = by_name[leader]
    others = [m for m in weir_nodes if m is not old]
    fuse_before = {m.name: daemon_pids(m, ["weir-fuse@hbase.service"]) for m in others}
    old.crash()
    for m in others:
        assert m.succeed(one).split()[0] == want, f"{m.name}: a read failed while {old.name} was down"
        # The mount did not die and come back in between (a systemd watchdog kill, a crash).
        assert daemon_pids(m, ["weir-fuse@hbase.service"]) == fuse_before[m.name], m.name
    wait_agreement(others, [m.name for m in others], above_term=term, timeout=300)
    old.start()
    for unit in units:
        old.wait_for_unit(unit, timeout=600)
    leader, term = wait_agreement(weir_nodes, names, timeout=300)
