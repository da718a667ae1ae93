# The weir appliance: one NixOS system that every node of a cluster boots. Which daemons a node
# runs is decided at boot by weir-generator from /etc/weir/cluster.yaml and the node's address or
# host name, so the image is the same for all of them.
# Used by flake.nix as nixosConfigurations.appliance (with nixosModules.weir); its disk images
# are system.build.images.qemu (qcow2, BIOS, for VMs) and .raw-efi (GPT, UEFI with systemd-boot,
# to dd onto a machine's disk); see docs/nix.md.
{
  config,
  lib,
  pkgs,
  modulesPath,
  ...
}:
{
  imports = [ (modulesPath + "/profiles/qemu-guest.nix") ];

  nixpkgs.hostPlatform = "x86_64-linux";

  services.weir = {
    enable = true;
    openFirewall = true;
    # The YAML below is not given as configFile: operators edit /etc/weir/cluster.yaml on the
    # running appliance (weirctl config apply), so it is a plain file, seeded once from
    # ./cluster.yaml; the module cannot read its masters, hence raftPeers: its three nodes.
    raftPeers = [
      "192.168.1.145"
      "192.168.1.146"
      "192.168.1.147"
    ];
  };

  # Before systemd starts (activation runs first), so the generator finds it at the first boot;
  # never over an operator's edits. The build checks the seed as the module checks a configFile.
  system.activationScripts.weir-cluster-yaml = ''
    if [ ! -e /etc/weir/cluster.yaml ]; then
      install -D -m 0644 ${./cluster.yaml} /etc/weir/cluster.yaml
    fi
  '';
  system.checks = [
    (pkgs.runCommand "weir-appliance-yaml-check" { nativeBuildInputs = [ config.services.weir.package ]; } ''
      weirctl config check ${./cluster.yaml}
      touch $out
    '')
  ];

  # The operator's toolbox on the node (busybox time cp -r, sha256sum, du, ls) and jq.
  environment.systemPackages = [
    (pkgs.callPackage ../nix/busybox.nix { })
    pkgs.jq
  ];

  # The MEM tier of ./cluster.yaml is 1Gi on /dev/shm, which is half of RAM by default: the
  # appliance needs 3 GiB (docs/nix.md boots it with -m 3072), 1.5 GiB of it /dev/shm.
  boot.devShmSize = "50%";

  # The system itself boots with systemd-boot (UEFI) from the layout of the raw-efi image; the
  # images' own modules (disk-image.nix) set the boot loader and file systems of each image
  # with mkDefault/mkImageMediaOverride, which win over these weaker definitions.
  boot.loader.systemd-boot.enable = lib.mkOverride 1100 true;
  boot.loader.efi.canTouchEfiVariables = false;
  fileSystems."/" = lib.mkOverride 1100 {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
    autoResize = true;
  };
  fileSystems."/boot" = lib.mkIf (config.image.efiSupport or true) (
    lib.mkOverride 1100 {
      device = "/dev/disk/by-label/ESP";
      fsType = "vfat";
    }
  );
  boot.growPartition = true;

  # Addresses come from DHCP (reserve the YAML's addresses for the nodes) unless a node is
  # configured otherwise; network-online.target orders the weir units after them.
  networking.useNetworkd = true;
  networking.useDHCP = lib.mkDefault true;
  networking.hostName = lib.mkDefault "";

  services.openssh = {
    enable = true;
    settings.PermitRootLogin = "prohibit-password";
  };

  system.stateVersion = "26.05";
}
