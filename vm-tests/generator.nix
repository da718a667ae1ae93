# NixOS VM test "generator": one host, weir-generator on a real systemd. Boots with a YAML that
# names the host (single master, worker, FUSE over a local directory store) and reads through the
# mount; then, with systemctl daemon-reload after each change of /etc/weir, checks that it finds
# the host by interface address and by /etc/weir/node, and that a missing YAML, an invalid one
# or an unknown host pull in no weir unit at all, with the reason in the journal.
# Run: nix build .#checks.x86_64-linux.generator
{ self, pkgs }:
let
  # The same shape of YAML in every step; NODE and ADDRESS vary.
  yaml =
    { node, address }:
    pkgs.writeText "cluster-${node}.yaml" ''
      apiVersion: weir.io/v1
      kind: Cluster
      metadata: {name: solo}
      spec:
        nodes:
          - {name: ${node}, address: ${address}}
      ---
      apiVersion: data.fluid.io/v1alpha1
      kind: Dataset
      metadata: {name: local-data}
      spec:
        mounts:
          - {mountPoint: "local:///srv/data", name: data}
      ---
      apiVersion: data.fluid.io/v1alpha1
      kind: AlluxioRuntime
      metadata: {name: local-data}
      spec:
        replicas: 1
        master: {replicas: 1}
        tieredstore:
          levels:
            - {mediumtype: MEM, path: /dev/shm, quota: 64Mi, high: "0.95", low: "0.7"}
    '';
  # Loopback: the master binds its node's address, and the host name finds this one first.
  byName = yaml {
    node = "solo";
    address = "127.0.0.1";
  };
  # 192.168.1.1 is this machine's eth1 address (the only node of the test).
  byAddress = yaml {
    node = "appliance-a";
    address = "192.168.1.1";
  };
  elsewhere = yaml {
    node = "appliance-b";
    address = "192.0.2.11";
  };
  invalid = pkgs.writeText "cluster-invalid.yaml" ''
    apiVersion: weir.io/v1
    kind: Cluster
    spec:
      nodes: [ {name: solo, address: 127.0.0.1
  '';
in
pkgs.testers.runNixOSTest {
  name = "weir-generator";

  nodes.solo = {
    imports = [ self.nixosModules.weir ];
    environment.systemPackages = [
      pkgs.jq
      pkgs.curl
    ];
    services.weir = {
      enable = true;
      clusterConfig = byName;
    };
    systemd.tmpfiles.rules = [
      "d /srv/data 0755 root root -"
      "f+ /srv/data/hello.txt 0644 root root - hello from the local store"
    ];
  };

  testScript = ''
    gen = "/run/systemd/generator"
    # The instance name is escaped as systemd-escape does: local-data becomes local\x2ddata.
    fuse_unit = "weir-fuse@local\\x2ddata.service"
    step = 0


    def use(yaml_file, node_file=None):
        # A marker in the kernel log, where the generator writes: what follows is this step's.
        global step
        step += 1
        solo.succeed(f"echo 'weir-test: step {step}' > /dev/kmsg")
        solo.succeed("rm -f /etc/weir/cluster.yaml /etc/weir/node")
        if yaml_file:
            solo.succeed(f"cp {yaml_file} /etc/weir/cluster.yaml")
        if node_file:
            solo.succeed(f"echo {node_file} > /etc/weir/node")
        solo.succeed("systemctl daemon-reload")


    def said(text):
        solo.succeed(f"dmesg | sed -n '/weir-test: step {step}$/,$p' | grep -q '{text}'")


    def pulled_in():
        return sorted(solo.succeed(f"ls {gen}/weir.target.wants 2>/dev/null || true").split())


    def assert_nothing(reason):
        assert pulled_in() == [], pulled_in()
        solo.succeed(f"test ! -e {gen}/multi-user.target.wants/weir.target")
        solo.succeed(f"test ! -e {gen}/weir-master.service.d")
        said(reason)


    solo.wait_for_unit("multi-user.target")

    with subtest("booted with a YAML naming this host: all three daemons, a readable mount"):
        assert pulled_in() == sorted(
            ["weir-master.service", "weir-worker.service", fuse_unit]
        ), pulled_in()
        # The kernel log reaches the journal with the generator's identifier.
        solo.wait_until_succeeds(
            "journalctl -b -t weir-generator --no-pager | grep -q 'node solo (by host name)'",
            timeout=60,
        )
        for unit in ["weir-master.service", "weir-worker.service", fuse_unit, "weir.target"]:
            solo.wait_for_unit(unit)
        solo.succeed("curl -sfL -X POST http://127.0.0.1:19998/v1/datasets/local-data/sync")
        solo.wait_until_succeeds(
            "curl -sfL http://127.0.0.1:19998/v1/datasets/local-data | jq -e '.phase == \"Bound\"'",
            timeout=120,
        )
        solo.wait_until_succeeds("test -f /mnt/weir/local-data/data/hello.txt", timeout=60)
        solo.succeed("grep -q 'hello from the local store' /mnt/weir/local-data/data/hello.txt")
        solo.succeed(
            f"grep -qx 'Environment=\"WEIR_NODE=solo\"' {gen}/weir-master.service.d/50-weir-node.conf"
        )

    with subtest("an invalid YAML pulls in nothing and says where it is wrong"):
        use("${invalid}")
        assert_nothing("cluster.yaml:5:")

    with subtest("no YAML: nothing"):
        use(None)
        assert_nothing("does not exist")

    with subtest("a host the YAML does not name: nothing"):
        use("${elsewhere}")
        assert_nothing("none of the nodes")

    with subtest("found by the address of one of its interfaces"):
        use("${byAddress}")
        assert pulled_in() == sorted(
            ["weir-master.service", "weir-worker.service", fuse_unit]
        ), pulled_in()
        said("node appliance-a (by interface address)")

    with subtest("named by /etc/weir/node, which wins over address and host name"):
        use("${byName}", node_file="solo")
        said("node solo (by node file)")
        use("${elsewhere}", node_file="solo")
        assert_nothing("names a node")
  '';
}
