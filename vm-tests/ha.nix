# NixOS VM test "ha": three weir nodes booted from one YAML and a fourth serving the remote store.
# The scenarios of the Debian-path integration tests, on real systemd: the generator starts each
# node's daemons, three masters elect one leader, the dataset binds, a cold read through FUSE
# reaches the store and warm reads do not, SIGKILL of the leader during a copy gives a new leader
# and an intact copy, the killed master rejoins, FUSE stops and restarts cleanly.
# Run: nix build .#checks.x86_64-linux.ha (or nix flake check).
{ self, pkgs }:
let
  common = import ./common.nix { inherit pkgs; };
  inherit (common) address sample sampleFiles;
in
pkgs.testers.runNixOSTest {
  name = "weir-ha";

  nodes = {
    node1 = common.weirNode self;
    node2 = common.weirNode self;
    node3 = common.weirNode self;
    # Not in the YAML but with the same module and YAML: the generator must start nothing here.
    store = {
      imports = [
        common.storeNode
        (common.weirNode self)
      ];
    };
  };

  testScript = ''
    import json
    import time

    weir_nodes = [node1, node2, node3]
    by_name = {m.name: m for m in weir_nodes}
    address = {"node1": "${address.node1}", "node2": "${address.node2}", "node3": "${address.node3}"}


    def master_url(m, path):
        return f"http://{address[m.name]}:19998{path}"


    def get(m, path):
        # -L: a follower answers leader-only calls with a 307 to the leader.
        return json.loads(m.succeed(f"curl -sfL '{master_url(m, path)}'"))


    def store_gets(name):
        # nginx logs each request at once; every block fetch is one ranged GET.
        out = store.succeed(f"grep -c '\"GET /hbase/{name} ' /var/log/nginx/access.log || true")
        return int(out.strip() or "0")


    def sums(m, directory):
        return m.succeed(f"cd {directory} && sha256sum ${sampleFiles}")


    start_all()
    store.wait_for_unit("nginx.service")
    store.wait_for_open_port(80)
    expected = sums(store, "${sample}/hbase")

    with subtest("the generator pulls in each node's units, found by host name"):
        for m in weir_nodes:
            m.wait_for_unit("multi-user.target")
            for unit in ["weir-master.service", "weir-worker.service", "weir-fuse@hbase.service"]:
                m.succeed(f"test -L /run/systemd/generator/weir.target.wants/{unit}")
            m.succeed(
                f"grep -qx 'Environment=\"WEIR_NODE={m.name}\"' "
                "/run/systemd/generator/weir-master.service.d/50-weir-node.conf"
            )
            m.succeed(
                "journalctl -b -t weir-generator --no-pager "
                f"| grep -q 'This host is node {m.name} (by host name)'"
            )
        for m in weir_nodes:
            for unit in ["weir-master.service", "weir-worker.service", "weir-fuse@hbase.service"]:
                m.wait_for_unit(unit)
            m.wait_for_unit("weir.target")

    with subtest("a host that the YAML does not name runs none of weir"):
        store.wait_for_unit("multi-user.target")
        store.succeed("test ! -e /run/systemd/generator/weir.target.wants")
        store.succeed("test ! -e /run/systemd/generator/multi-user.target.wants/weir.target")
        store.succeed("journalctl -b -t weir-generator --no-pager | grep -q 'none of the nodes'")
        # weir-rescan looked again once the network was up, and still found nothing.
        store.wait_until_succeeds(
            "journalctl -b -u weir-rescan.service --no-pager | grep -q 'still none'", timeout=120
        )
        store.fail("systemctl is-active weir.target")
        store.fail("systemctl is-active weir-master.service")

    with subtest("three masters elect one leader and agree on it"):
        node1.wait_until_succeeds(
            f"curl -sf {master_url(node1, '/v1/masters')} "
            "| jq -e '.leader != null and ([.masters[] | select(.reachable)] | length) == 3'",
            timeout=300,
        )
        leader = get(node1, "/v1/masters")["leader"]
        for m in weir_nodes:
            m.wait_until_succeeds(
                f"curl -sf {master_url(m, '/v1/status')} | jq -e '.leader == \"{leader}\"'",
                timeout=60,
            )
        roles = sorted(get(m, "/v1/status")["role"] for m in weir_nodes)
        assert roles == ["follower", "follower", "leader"], roles
        print(f"leader: {leader}")

    with subtest("status on the system bus and through weirctl"):
        for m in weir_nodes:
            for name in ["io.weir.Master1", "io.weir.Worker1", "io.weir.Fuse1"]:
                m.wait_until_succeeds(f"busctl --system status {name} >/dev/null", timeout=60)
        role = by_name[leader].succeed(
            "busctl --system get-property io.weir.Master1 /io/weir/Master1 io.weir.Master1 Role"
        )
        assert "leader" in role, role
        node1.succeed(f"weirctl masters | grep -q {leader}")

    with subtest("the dataset binds: the leader lists the store"):
        node1.succeed(f"curl -sfL -X POST {master_url(node1, '/v1/datasets/hbase/sync')}")
        node1.wait_until_succeeds(
            f"curl -sfL {master_url(node1, '/v1/datasets/hbase')} | jq -e '.phase == \"Bound\"'",
            timeout=120,
        )
        ds = get(node1, "/v1/datasets/hbase")
        assert ds["total_files"] == 6, ds
        for m in weir_nodes:
            m.succeed("test -f /mnt/weir/hbase/hbase/hbase-3.bin")
            m.succeed("test $(stat -c %s /mnt/weir/hbase/hbase/hbase-3.bin) -eq 13800000")

    with subtest("a cold read reaches the store once; warm reads, on any node, do not"):
        before = store_gets("hbase-1.bin")  # metadata sync uses HEAD, but do not assume it
        one = "cd /mnt/weir/hbase/hbase && sha256sum hbase-1.bin"
        want = store.succeed("cd ${sample}/hbase && sha256sum hbase-1.bin")
        assert node2.succeed(one) == want
        cold = store_gets("hbase-1.bin")
        assert cold > before, "the cold read did not reach the store"
        # The same node, page cache dropped: its worker has the blocks.
        node2.succeed("sync; echo 3 > /proc/sys/vm/drop_caches")
        assert node2.succeed(one) == want
        assert store_gets("hbase-1.bin") == cold, "a warm read on the same node reached the store"
        # Another node, once the leader's block map has node2's report (heartbeat); before
        # that it may fetch from the store itself.
        entry = get(node1, "/v1/datasets/hbase/stat?path=/hbase/hbase-1.bin")
        blocks = master_url(node1, f"/v1/blocks?file={entry['file_id']}&version={entry['version']}")
        node1.wait_until_succeeds(f"curl -sfL '{blocks}' | jq -e '.locations | length == 5'", timeout=60)
        assert node3.succeed(one) == want
        assert store_gets("hbase-1.bin") == cold, "a warm read on another node reached the store"
        assert get(node1, "/v1/datasets/hbase")["cached"] > 0

    with subtest("SIGKILL of the leader during a copy: a new leader, the copy completes intact"):
        old = by_name[leader]
        reader = next(m for m in weir_nodes if m.name != leader)
        other = next(m for m in weir_nodes if m.name not in (leader, reader.name))
        reader.succeed(
            "(cp -r /mnt/weir/hbase/hbase /tmp/copy; echo $? > /tmp/copy.rc) >/dev/null 2>&1 &"
        )
        old.succeed("systemctl kill --signal=SIGKILL weir-master.service")
        t0 = time.monotonic()
        other.wait_until_succeeds(
            f"curl -sf {master_url(other, '/v1/status')} "
            f"| jq -e '.leader != null and .leader != \"{leader}\"'",
            timeout=120,
        )
        new_leader = get(other, "/v1/status")["leader"]
        print(f"new leader {new_leader} after {time.monotonic() - t0:.1f}s (emulated VMs)")
        reader.wait_for_file("/tmp/copy.rc")
        assert reader.succeed("cat /tmp/copy.rc").strip() == "0", "cp failed"
        assert sums(reader, "/tmp/copy") == expected, "the copy differs from the store"
        # Restart=on-failure brings the killed master back; it follows the new leader.
        old.wait_for_unit("weir-master.service")
        old.wait_until_succeeds(
            f"curl -sf {master_url(old, '/v1/status')} "
            f"| jq -e '.role == \"follower\" and .leader == \"{new_leader}\"'",
            timeout=180,
        )
        metrics = other.succeed(f"curl -sf {master_url(other, '/metrics')}")
        assert "weir_master_leader_changes_total" in metrics

    with subtest("the mount is read-only; FUSE stops cleanly and comes back after a crash"):
        node3.fail("touch /mnt/weir/hbase/hbase/new-file")
        node3.succeed("systemctl stop weir-fuse@hbase.service")
        node3.fail("mountpoint -q /mnt/weir/hbase")
        node3.succeed("systemctl start weir-fuse@hbase.service")
        node3.succeed("mountpoint -q /mnt/weir/hbase")
        node3.succeed("systemctl kill --signal=SIGKILL weir-fuse@hbase.service")
        node3.wait_until_succeeds("systemctl is-active weir-fuse@hbase.service", timeout=60)
        node3.wait_until_succeeds("mountpoint -q /mnt/weir/hbase", timeout=60)
        assert sums(node3, "/mnt/weir/hbase/hbase") == expected
  '';
}
