# What operators do on the running appliance: edit /etc/weir/cluster.yaml on every node and run
# `weirctl config apply` there (validate; daemon-reload; start the new units of weir.target;
# `systemctl reload weir-master`, on which the leader adds datasets and changes the Raft
# membership to master.replicas). Unrelated daemons keep running (same MainPID, no restart),
# the cache stays, and the cluster serves throughout. An edit that cannot be applied is refused
# with a message naming the key (exit status 1) and changes nothing.
# Starts from the default YAML (lib.py's cluster_yaml()) on node1-node3, node4 running nothing.
weir_nodes = [node1, node2, node3]
names = [m.name for m in weir_nodes]
three = [("node1", None), ("node2", None), ("node3", None)]
steady = ["weir-worker.service", "weir-fuse@hbase.service"]


def apply_everywhere(text, machines):
    for m in machines:
        install_yaml(m, text)
    for m in machines:
        # While the previous node's apply moves the Raft membership, the masters may answer
        # with none leading: weirctl then changes nothing and says to retry (exit 1; seen on
        # node2 right after node1's 3 -> 1 on 6 Dec 2026). An operator retries, so does this,
        # for up to 5 minutes; any other refusal fails at once, with weirctl's message.
        m.succeed("for i in $(busybox seq 60); do "
                  "if out=$(weirctl config apply 2>&1); then echo \"$out\"; exit 0; fi; "
                  "echo \"$out\"; echo \"$out\" | busybox grep -q 'none leads the cluster' "
                  "|| exit 1; busybox sleep 5; done; exit 1")


def serve_in_background(m):
    # One metadata request through the masters (any of them; followers redirect) and one read
    # through FUSE each second, until /tmp/serve.stop appears; one line per attempt.
    url = master_url("node1", "/v1/datasets/hbase/stat?path=/hbase/hbase-1.bin")
    m.succeed("busybox rm -f /tmp/serve.log /tmp/serve.stop; "
              "(while [ ! -e /tmp/serve.stop ]; do "
              f"if curl -sfL --max-time 10 --retry 5 --retry-delay 1 --retry-all-errors '{url}' "
              ">/dev/null && busybox sha256sum /mnt/weir/hbase/hbase/hbase-1.bin "
              "| busybox grep -q " + want + "; then echo ok; else echo FAIL; fi >> /tmp/serve.log; "
              "busybox sleep 1; done) >/dev/null 2>&1 &")


def served_throughout(m, at_least):
    m.succeed("touch /tmp/serve.stop; busybox sleep 2")
    log = m.succeed("cat /tmp/serve.log").split()
    assert "FAIL" not in log, f"the cluster stopped serving: {log.count('FAIL')} of {len(log)}"
    assert len(log) >= at_least, f"only {len(log)} requests while the change ran"


masters_before = None

with subtest("operator: add a dataset; no restart of the other daemons, no lost cache"):
    pids = {m.name: daemon_pids(m, steady + ["weir-master.service"]) for m in weir_nodes}
    cached = get(node1, "/v1/datasets/hbase")["cached"]
    gets = store_gets(store, "hbase-1.bin")
    apply_everywhere(cluster_yaml(datasets=("hbase", "conf")), weir_nodes)
    for m in weir_nodes:
        m.wait_for_unit("weir-fuse@conf.service", timeout=300)
    node1.succeed(f"curl -sfL -X POST {master_url('node1', '/v1/datasets/conf/sync')}")
    node1.wait_until_succeeds(
        f"curl -sfL {master_url('node1', '/v1/datasets/conf')} | jq -e '.phase == \"Bound\"'",
        timeout=180)
    for m in weir_nodes:
        m.wait_until_succeeds("busybox grep -q 'weir VM test sample' "
                              "/mnt/weir/conf/conf/hbase-site.xml", timeout=120)
        # The master was reloaded, not restarted; the rest was not touched.
        now = daemon_pids(m, steady + ["weir-master.service"])
        assert now == pids[m.name], f"{m.name}: MainPID, NRestarts before {pids[m.name]}, after {now}"
    assert get(node1, "/v1/datasets/hbase")["cached"] >= cached
    assert node2.succeed(one).split()[0] == want
    assert store_gets(store, "hbase-1.bin") == gets, "a cached block was fetched again"

with subtest("operator: add a node with a worker"):
    pids = {m.name: daemon_pids(m, steady) for m in weir_nodes}
    four = three + [("node4", ["worker"])]
    apply_everywhere(cluster_yaml(nodes=four, datasets=("hbase", "conf")), weir_nodes + [node4])
    node4.wait_for_unit("weir-worker.service", timeout=300)
    node4.fail("systemctl is-active weir-master.service")
    node1.wait_until_succeeds(
        f"curl -sfL {master_url('node1', '/v1/workers')} "
        "| jq -e '[.workers[] | select(.node == \"node4\" and .alive)] | length == 1'",
        timeout=180)
    for m in weir_nodes:
        now = daemon_pids(m, steady)
        assert now == pids[m.name], f"{m.name}: MainPID, NRestarts before {pids[m.name]}, after {now}"

with subtest("operator: master.replicas 3 to 1 through Raft membership, serving throughout"):
    serve_in_background(node2)
    apply_everywhere(cluster_yaml(nodes=four, datasets=("hbase", "conf"), master_replicas=1),
                     weir_nodes + [node4])
    node1.wait_until_succeeds(
        f"curl -sf {master_url('node1', '/v1/masters')} "
        "| jq -e '(.masters | length) == 1 and .leader == \"node1\"'", timeout=300)
    served_throughout(node2, 5)

with subtest("operator: master.replicas 1 to 3 through Raft membership, serving throughout"):
    serve_in_background(node2)
    apply_everywhere(cluster_yaml(nodes=four, datasets=("hbase", "conf"), master_replicas=3),
                     weir_nodes + [node4])
    leader, term = wait_agreement(weir_nodes, names, timeout=600)
    masters_before = get(node1, "/v1/masters")
    assert len(masters_before["masters"]) == 3, masters_before
    served_throughout(node2, 5)

with subtest("operator: an edit that cannot be applied is refused, naming the key; nothing changes"):
    good = cluster_yaml(nodes=four, datasets=("hbase", "conf"), master_replicas=3)
    pids = daemon_pids(node1, steady + ["weir-master.service"])
    for bad, key in [(cluster_yaml(nodes=four, datasets=("hbase", "conf"), master_replicas=2),
                      "master.replicas"),
                     (cluster_yaml(nodes=four, datasets=("hbase", "conf"),
                                   extra_cluster="raftPort: 19300"), "raftPort")]:
        install_yaml(node1, bad)
        out = node1.succeed("weirctl config apply >/tmp/apply.out 2>&1 || echo status=$?")
        assert out.strip() == "status=1", out
        said = node1.succeed("cat /tmp/apply.out")
        assert key in said, said
        now = daemon_pids(node1, steady + ["weir-master.service"])
        assert now == pids, f"node1: MainPID, NRestarts before {pids}, after {now}"
        after = get(node1, "/v1/masters")
        assert sorted(x["node"] for x in after["masters"]) == names, after
        install_yaml(node1, good)
    wait_agreement(weir_nodes, names, timeout=120)
