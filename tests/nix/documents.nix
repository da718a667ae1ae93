# Cluster YAMLs as lists of documents for eval.nix.
let
  cluster = nodes: {
    apiVersion = "weir.io/v1";
    kind = "Cluster";
    metadata.name = "test";
    spec.nodes = nodes;
  };
  dataset = {
    apiVersion = "data.fluid.io/v1alpha1";
    kind = "Dataset";
    metadata.name = "hbase";
    spec.mounts = [
      {
        mountPoint = "https://downloads.apache.org/hbase/stable/";
        name = "hbase";
      }
    ];
  };
  runtime = masters: {
    apiVersion = "data.fluid.io/v1alpha1";
    kind = "AlluxioRuntime";
    metadata.name = "hbase";
    spec = {
      replicas = 3;
      master.replicas = masters;
      tieredstore.levels = [
        {
          mediumtype = "MEM";
          path = "/dev/shm";
          quota = "1Gi";
        }
      ];
    };
  };
  node = name: address: { inherit name address; };
  withSpec = a: b: a // { spec = a.spec // b.spec; };
in
{
  inherit dataset;
  three = [
    (cluster [
      (node "node1" "10.0.0.1")
      (node "node2" "10.0.0.2")
      (node "node3" "fd00::3")
    ])
    dataset
    (runtime 3)
  ];
  # node1 a worker only by its roles; node4 has its own Raft port; the masters are node2
  # (placement), node3 (placement) and node5 (role); node4 is a worker left over.
  threeMixed = [
    (
      (cluster [
        ((node "node1" "10.0.1.1") // { roles = [ "worker" ]; })
        ((node "node2" "10.0.1.2") // { raftPort = 19300; })
        (node "node3" "10.0.1.3")
        (node "node4" "10.0.1.4")
        ((node "node5" "10.0.1.5") // { roles = [ "master" "worker" ]; })
      ])
      // {
        spec = (cluster [ ]).spec // {
          raftPort = 19250;
          masterPort = 19999;
          nodes = [
            ((node "node1" "10.0.1.1") // { roles = [ "worker" ]; })
            ((node "node2" "10.0.1.2") // { raftPort = 19300; })
            (node "node3" "10.0.1.3")
            (node "node4" "10.0.1.4")
            ((node "node5" "10.0.1.5") // { roles = [ "master" "worker" ]; })
          ];
        };
      }
    )
    dataset
    (runtime 3)
  ];
  duplicateNames = [
    (cluster [
      (node "node1" "10.0.0.1")
      (node "node1" "10.0.0.2")
    ])
  ];
  inlineSecret = [
    (cluster [ (node "node1" "10.0.0.1") ])
    (
      dataset
      // {
        spec.mounts = [
          {
            mountPoint = "s3://bucket/";
            name = "b";
            options."fs.s3a.secret.key" = "hunter2";
          }
        ];
      }
    )
  ];
  # Secrets by file, as docs/config.md allows them: an absolute valueFile, a secretKeyRef (under
  # secrets/ next to the YAML) and sharedEncryptOptions. weirctl reads those files.
  # The Cluster document's secret and TLS files (docs/config.md), which only the daemons read.
  withSecrets = [
    (
      (cluster [ (node "node1" "10.0.0.1") ])
      // {
        spec = {
          nodes = [ (node "node1" "10.0.0.1") ];
          tokenFile = "/var/lib/weir/token";
          raft.secretFile = "/var/lib/weir/raft-secret";
          api = {
            readTokenFile = "/var/lib/weir/read-token";
            tls = {
              certFile = "/var/lib/weir/tls/api.pem";
              keyFile = "/var/lib/weir/tls/api.key";
              caFile = "/var/lib/weir/tls/ca.pem";
            };
          };
        };
      }
    )
    (
      dataset
      // {
        spec = {
          sharedEncryptOptions = [
            {
              name = "fs.s3a.access.key";
              valueFile = "/var/lib/weir/s3/access-key";
            }
          ];
          mounts = [
            {
              mountPoint = "s3://bucket/data/";
              name = "b";
              options."fs.s3a.endpoint" = "http://10.0.0.9:9000";
              encryptOptions = [
                {
                  name = "fs.s3a.secret.key";
                  valueFrom.secretKeyRef = {
                    name = "s3";
                    key = "secret-key";
                  };
                }
              ];
            }
          ];
        };
      }
    )
  ];
  # A YAML that weirctl rejects (blockSize not a multiple of 4Ki): the build-time check fails.
  badBlockSize = [
    (cluster [ (node "node1" "10.0.0.1") ])
    (withSpec dataset { spec.blockSize = "1000"; })
  ];
  hostNames = [
    (cluster [
      (node "node1" "a.example")
      (node "node2" "b.example")
      (node "node3" "c.example")
    ])
    (runtime 3)
  ];
}
