# Shared by the NixOS VM tests: the sample dataset (the seeds' hbase shape, small enough for
# emulated VMs), the store node that serves it like a remote HTTP directory listing, the weir
# nodes, and `env` and the test script read from vm-tests/scenarios (the same files that
# vm-tests/qemu/harness.py runs against the Debian-built VMs). Node numbering of the NixOS test
# driver: machines sorted by name get 192.168.1.1, .2, ... on eth1: node1-node4 are .1-.4, store
# is .5.
{ pkgs }:
rec {
  # Files whose every line is distinct ("hbase-2 line 000123456"), so a block served at the wrong
  # offset or from the wrong file changes the checksum. 4.6, 9.2 and 13.8 MB: several blocks each.
  sample = pkgs.runCommand "weir-sample-hbase" { } ''
    mkdir -p $out/hbase/conf
    for n in 1 2 3; do
      awk -v f="hbase-$n" -v n="$n" \
        'BEGIN { for (i = 0; i < 200000 * n; i++) printf "%s line %09d\n", f, i }' \
        > $out/hbase/hbase-$n.bin
    done
    for c in hbase-site.xml log4j.properties regionservers; do
      echo "# $c of the weir VM test sample" > $out/hbase/conf/$c
    done
  '';

  address = {
    node1 = "192.168.1.1";
    node2 = "192.168.1.2";
    node3 = "192.168.1.3";
    node4 = "192.168.1.4";
  };
  storeAddress = "192.168.1.5";

  # What the scenarios know of this setup (vm-tests/scenarios/lib.py).
  env = {
    inherit address;
    store = storeAddress;
    sample_dir = "${sample}";
    access_log = "/var/log/nginx/access.log";
    files = [
      "hbase-1.bin"
      "hbase-2.bin"
      "hbase-3.bin"
      "conf/hbase-site.xml"
      "conf/log4j.properties"
      "conf/regionservers"
    ];
    quota = "256Mi";
  };

  # The testScript: env (a JSON string literal, which Python reads as a string), then the
  # scenario files verbatim, in order.
  testScript =
    files:
    ''
      import json
      env = json.loads(${builtins.toJSON (builtins.toJSON env)})
    ''
    + pkgs.lib.concatMapStrings (f: builtins.readFile (./scenarios + "/${f}") + "\n") (
      [ "lib.py" ] ++ files
    );

  # The YAML of lib.py's cluster_yaml() as services.weir.settings: three nodes, one dataset.
  # Emulated VMs are slow: Raft timeouts above the bare-metal defaults avoid needless elections.
  cluster = [
    {
      apiVersion = "weir.io/v1";
      kind = "Cluster";
      metadata.name = "vmtest";
      spec = {
        nodes = map (name: {
          inherit name;
          address = address.${name};
        }) [ "node1" "node2" "node3" ];
        raft = {
          electionTimeout = "1s";
          heartbeatTimeout = "150ms";
        };
      };
    }
    {
      apiVersion = "data.fluid.io/v1alpha1";
      kind = "Dataset";
      metadata.name = "hbase";
      spec = {
        mounts = [
          {
            mountPoint = "http://${storeAddress}/hbase/";
            name = "hbase";
          }
        ];
        blockSize = "1Mi";
      };
    }
    {
      apiVersion = "data.fluid.io/v1alpha1";
      kind = "AlluxioRuntime";
      metadata.name = "hbase";
      spec = {
        replicas = 3;
        master.replicas = 3;
        tieredstore.levels = [
          {
            mediumtype = "MEM";
            path = "/dev/shm";
            quota = env.quota;
            high = "0.95";
            low = "0.7";
          }
        ];
      };
    }
  ];

  # The remote store: nginx with autoindex (the HTML listing weir's HTTP store reads), its access
  # log (which shows whether a read reached the store) and 512 KiB/s per connection, so that a
  # cold copy takes long enough for a leader to die during it.
  storeNode = {
    services.nginx = {
      enable = true;
      virtualHosts.store = {
        default = true;
        root = sample;
        locations."/".extraConfig = ''
          autoindex on;
          limit_rate 512k;
        '';
      };
    };
    networking.firewall.allowedTCPPorts = [ 80 ];
    environment.systemPackages = [ pkgs.jq ];
  };

  # A weir node of the cluster above; which daemons it runs comes from the generator at boot
  # (node4, which the YAML does not name, runs none until an operator adds it).
  weirNode = self: {
    imports = [ self.nixosModules.weir ];
    services.weir = {
      enable = true;
      settings = cluster;
      openFirewall = true;
    };
    environment.systemPackages = [
      pkgs.jq
      pkgs.curl
      (pkgs.callPackage ../nix/busybox.nix { })
    ];
    virtualisation.memorySize = 1024;
  };
}
