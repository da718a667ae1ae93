# The weir appliance: one NixOS system that every node of a cluster boots. Which daemons a node
# runs is decided at boot by weir-generator from /etc/weir/cluster.yaml (./cluster.yaml here) and
# the node's address or host name, so the image is the same for all of them.
# Used by flake.nix as nixosConfigurations.appliance (with nixosModules.weir).
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
    clusterConfig = ./cluster.yaml;
    openFirewall = true;
  };

  # The disk image below: MBR, one ext4 partition labelled "nixos", grown to the disk at boot.
  boot.loader.grub.device = "/dev/vda";
  boot.growPartition = true;
  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
    autoResize = true;
  };

  # Addresses come from DHCP (reserve the YAML's addresses for the nodes) unless a node is
  # configured otherwise; network-online.target orders the weir units after them.
  networking.useNetworkd = true;
  networking.useDHCP = lib.mkDefault true;
  networking.hostName = lib.mkDefault "";

  services.openssh = {
    enable = true;
    settings.PermitRootLogin = "prohibit-password";
  };

  environment.systemPackages = [ pkgs.jq ];

  # nix build .#appliance-image: a qcow2 disk to boot under QEMU or write to a disk.
  system.build.qcow2 = import (modulesPath + "/../lib/make-disk-image.nix") {
    inherit lib config pkgs;
    format = "qcow2";
    partitionTableType = "legacy";
    copyChannel = false;
  };

  system.stateVersion = "25.11";
}
