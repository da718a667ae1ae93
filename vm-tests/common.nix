# Shared by the NixOS VM tests: the sample dataset (the seeds' hbase shape, small enough for
# emulated VMs), the store node that serves it like a remote HTTP directory listing, and the
# cluster YAML of three weir nodes. Node numbering of the NixOS test driver: nodes sorted by
# name get 192.168.1.1, .2, ... on eth1, so node1-3 are .1-.3 and store is .4.
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

  # Every regular file of the sample, relative to its hbase/ directory, for checksums.
  sampleFiles = "hbase-1.bin hbase-2.bin hbase-3.bin conf/hbase-site.xml conf/log4j.properties conf/regionservers";

  address = {
    node1 = "192.168.1.1";
    node2 = "192.168.1.2";
    node3 = "192.168.1.3";
    store = "192.168.1.4";
  };

  # The YAML as a list of documents (the module writes them as one multi-document stream).
  # Emulated VMs are slow: Raft timeouts above the bare-metal defaults avoid needless elections.
  cluster = [
    {
      apiVersion = "weir.io/v1";
      kind = "Cluster";
      metadata.name = "vmtest";
      spec = {
        nodes = [
          {
            name = "node1";
            address = address.node1;
          }
          {
            name = "node2";
            address = address.node2;
          }
          {
            name = "node3";
            address = address.node3;
          }
        ];
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
            mountPoint = "http://${address.store}/hbase/";
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
            quota = "256Mi";
            high = "0.95";
            low = "0.7";
          }
        ];
      };
    }
  ];

  # The remote store: nginx with autoindex (the HTML listing weir's HTTP store reads) and its
  # access log, which shows whether a read reached the store.
  storeNode = {
    services.nginx = {
      enable = true;
      virtualHosts.store = {
        default = true;
        root = sample;
        locations."/".extraConfig = "autoindex on;";
      };
    };
    networking.firewall.allowedTCPPorts = [ 80 ];
  };

  # A weir node of the cluster above; which daemons it runs comes from the generator at boot.
  weirNode = self: {
    imports = [ self.nixosModules.weir ];
    services.weir = {
      enable = true;
      clusterConfig = cluster;
      openFirewall = true;
    };
    environment.systemPackages = [
      pkgs.jq
      pkgs.curl
    ];
    virtualisation.memorySize = 1024;
  };
}
