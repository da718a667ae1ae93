# NixOS VM test "ha": three weir nodes booted from one YAML, a fourth that the YAML does not name
# (until an operator adds it) and one serving the remote store. The scenarios are
# vm-tests/scenarios/{ha,generator,operator}.py, read verbatim (vm-tests/qemu/harness.py runs the
# same files against Debian-built VMs).
# Run: nix build .#checks.x86_64-linux.ha -L (or nix flake check).
{ self, pkgs }:
let
  common = import ./common.nix { inherit pkgs; };
in
pkgs.testers.runNixOSTest {
  name = "weir-ha";

  nodes = {
    node1 = common.weirNode self;
    node2 = common.weirNode self;
    node3 = common.weirNode self;
    node4 = common.weirNode self;
    store = common.storeNode;
  };

  testScript = common.testScript [
    "ha.py"
    "generator.py"
    "operator.py"
  ];
}
