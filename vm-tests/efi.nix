# NixOS VM test "efi": the appliance's bare-metal boot path (UEFI firmware, systemd-boot) as a
# single node; the scenario is vm-tests/scenarios/efi.py (the QEMU harness boots the Debian
# image the same way with Debian's OVMF).
# Run: nix build .#checks.x86_64-linux.efi -L
{ self, pkgs }:
let
  common = import ./common.nix { inherit pkgs; };
in
pkgs.testers.runNixOSTest {
  name = "weir-efi";

  nodes.efi = {
    imports = [ self.nixosModules.weir ];
    virtualisation = {
      useBootLoader = true;
      useEFIBoot = true;
      memorySize = 1024;
    };
    boot.loader.systemd-boot.enable = true;
    boot.loader.efi.canTouchEfiVariables = true;
    services.weir = {
      enable = true;
      settings = [
        {
          apiVersion = "weir.io/v1";
          kind = "Cluster";
          metadata.name = "efi";
          spec.nodes = [
            {
              name = "efi";
              address = "127.0.0.1";
            }
          ];
        }
        {
          apiVersion = "data.fluid.io/v1alpha1";
          kind = "Dataset";
          metadata.name = "local";
          spec.mounts = [
            {
              mountPoint = "local:///srv/data";
              name = "data";
            }
          ];
        }
        {
          apiVersion = "data.fluid.io/v1alpha1";
          kind = "Runtime";
          metadata.name = "local";
          spec.tieredstore.levels = [
            {
              mediumtype = "MEM";
              path = "/dev/shm";
              quota = "64Mi";
              high = "0.95";
              low = "0.7";
            }
          ];
        }
      ];
    };
    systemd.tmpfiles.rules = [
      "d /srv/data 0755 root root -"
      "f+ /srv/data/hello.txt 0644 root root - hello from the local store"
    ];
    environment.systemPackages = [
      pkgs.jq
      pkgs.curl
      (pkgs.callPackage ../nix/busybox.nix { })
    ];
  };

  testScript = common.testScript [ "efi.py" ];
}
