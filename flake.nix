# weir: a caching appliance for remote datasets. The package, the NixOS module, the appliance and
# its images, the NixOS VM tests (nix flake check), a development shell and the demo.
{
  description = "weir: a caching appliance for remote datasets (Raft metadata, tiered block cache, FUSE)";

  # 26.05: raft-cowsql is the libraft nixpkgs ships (canonical raft is gone), fuse3 3.17 has FUSE
  # passthrough; see docs/nix.md. No flake.lock is committed: `nix flake lock` is the first step
  # (docs/nix.md says why).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # What building, the unit tests, the integration tests (pytest, nginx, Apache, a private
      # dbus-daemon), formatting and fuzzing need; the devShell and the demo share it.
      devTools =
        pkgs: with pkgs; [
          (python3.withPackages (ps: [ ps.pytest ]))
          nginx
          apacheHttpd
          dbus
          clang
          clang-tools
          cmocka
          curl
          jq
          nodejs # npm installs s3rver, the S3 server of the store tests (docs/nix.md)
          (lib.getBin gnutls) # certtool: test_api_tls makes its certificates
          fuse3
          iproute2
          nftables # bench/chaos partitions the leader
          procps
          psmisc
          systemd
          nix
          qemu
          busybox
        ];

      appliance = self.nixosConfigurations.appliance.config.system.build;
    in
    {
      packages =
        lib.recursiveUpdate
          (forAllSystems (
            pkgs:
            let
              weir = pkgs.callPackage ./nix/package.nix { };
            in
            {
              inherit weir;
              default = weir;
            }
          ))
          {
            # The appliance's disk images (docs/nix.md): a qcow2 for VMs (BIOS boot) and a raw
            # disk for bare metal (UEFI, systemd-boot) to dd onto the boot disk.
            x86_64-linux = {
              appliance-qemu = appliance.images.qemu;
              appliance-raw-efi = appliance.images.raw-efi;
            };
          };

      # A plain module file: it captures nothing of this flake (its default package is built
      # with the importing system's pkgs), and the module system records its location for
      # error messages.
      nixosModules.weir = ./nix/module.nix;
      nixosModules.default = self.nixosModules.weir;

      # The appliance every node boots (see docs/nix.md).
      nixosConfigurations.appliance = lib.nixosSystem {
        modules = [
          self.nixosModules.weir
          ./image/appliance.nix
        ];
      };

      checks.x86_64-linux =
        let
          pkgs = nixpkgs.legacyPackages.x86_64-linux;
          vmTest = file: import file { inherit self pkgs; };
        in
        {
          package = self.packages.x86_64-linux.weir;
          # vm-tests/scenarios/*.py, read verbatim by each test's testScript.
          ha = vmTest ./vm-tests/ha.nix;
          efi = vmTest ./vm-tests/efi.nix;
          # The appliance configuration evaluates and builds.
          appliance = appliance.toplevel;
        };

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.weir ];
          packages = devTools pkgs;
          # scripts/deps.sh never calls apt under IN_NIX_SHELL (set by nix develop).
        };
      });

      apps = forAllSystems (pkgs: {
        demo = {
          type = "app";
          program = lib.getExe (import ./nix/demo.nix { inherit pkgs; });
          meta.description = "The master-HA walk-through of README's make demo, from a weir checkout";
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt);
    };
}
