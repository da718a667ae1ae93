# weir-generator on a running node (node3), through `systemctl daemon-reload` after each change
# of /etc/weir: an invalid YAML, no YAML, a YAML without this host, a node file naming an
# unknown node pull in no weir unit and say why in the kernel log; a host found by its address.
# The node gets the scenarios' default YAML back at the end.
gen = "/run/systemd/generator"
step = 0


def generator_step(change):
    global step
    step += 1
    # A marker in the kernel log, where the generator writes: what follows is this step's.
    node3.succeed(f"echo 'weir-test: step {step}' > /dev/kmsg")
    change()
    node3.succeed("systemctl daemon-reload")


def generator_said(text):
    node3.succeed(f"dmesg | sed -n '/weir-test: step {step}$/,$p' | grep -q '{text}'")


def pulled_in_nothing(reason):
    node3.succeed(f"test ! -e {gen}/weir.target.wants")
    node3.succeed(f"test ! -e {gen}/multi-user.target.wants/weir.target")
    generator_said(reason)


def write_yaml(text):
    return lambda: install_yaml(node3, text)


try:
    with subtest("generator: an invalid YAML pulls in nothing and says where it is wrong"):
        generator_step(write_yaml("kind: Cluster\nspec:\n  nodes: [ {name: x\n"))
        pulled_in_nothing("cluster.yaml:4:")

    with subtest("generator: no YAML, nothing"):
        generator_step(lambda: node3.succeed("busybox rm -f /etc/weir/cluster.yaml"))
        pulled_in_nothing("does not exist")

    with subtest("generator: a host the YAML names neither by name nor address, nothing"):
        other = cluster_yaml(nodes=[("node1", None), ("node2", None), ("other", None)],
                             addresses={"other": "192.0.2.99"})

        def elsewhere():
            install_yaml(node3, other)
            node3.succeed("busybox hostname elsewhere")

        generator_step(elsewhere)
        pulled_in_nothing("none of the nodes")

    with subtest("generator: /etc/weir/node naming an unknown node, nothing"):

        def bad_node_file():
            install_yaml(node3, cluster_yaml())
            node3.succeed("busybox hostname node3; echo node9 > /etc/weir/node")

        generator_step(bad_node_file)
        pulled_in_nothing("names a node")

    with subtest("generator: found by the address of one of its interfaces"):
        by_address = cluster_yaml(nodes=[("node1", None), ("node2", None), ("by-address", None)],
                                  addresses={"by-address": env["address"]["node3"]})

        def renamed():
            node3.succeed("busybox rm -f /etc/weir/node")
            install_yaml(node3, by_address)

        generator_step(renamed)
        node3.succeed(f"test -L {gen}/weir.target.wants/weir-worker.service")
        generator_said("node by-address (by interface address)")
finally:
    node3.succeed("busybox rm -f /etc/weir/node; busybox hostname node3")
    install_yaml(node3, cluster_yaml())
    node3.succeed("systemctl daemon-reload")
    for u in ["weir-master.service", "weir-worker.service", "weir-fuse@hbase.service"]:
        node3.succeed(f"test -L {gen}/weir.target.wants/{u}")
