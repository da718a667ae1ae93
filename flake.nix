# weir: a caching appliance for remote datasets. The package, the NixOS module, the appliance,
# the NixOS VM tests (nix flake check), a development shell and the demo.
{
  description = "weir: a caching appliance for remote datasets (Raft metadata, tiered block cache, FUSE)";

  # 25.11: raft-cowsql is the libraft nixpkgs ships (canonical raft is gone), see DESIGN.md.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

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
          nodejs # npm installs s3rver, the S3 server of the store tests
          fuse3
          iproute2
          procps
          psmisc
          systemd
          nix
          qemu
        ];
    in
    {
      packages =
        lib.recursiveUpdate
          (forAllSystems (pkgs: {
            default = self.packages.${pkgs.stdenv.hostPlatform.system}.weir;
            weir = pkgs.callPackage ./nix/package.nix { src = self; };
          }))
          {
            # The appliance's disk image (qcow2, BIOS boot): nix build .#appliance-image
            x86_64-linux.appliance-image = self.nixosConfigurations.appliance.config.system.build.qcow2;
          };

      nixosModules.weir = import ./nix/module.nix { inherit self; };
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
        in
        {
          package = self.packages.x86_64-linux.weir;
          # Three nodes and a store: election, SIGKILL of the leader, cached reads through FUSE.
          ha = import ./vm-tests/ha.nix { inherit self pkgs; };
          # One node: what the generator starts for each YAML, and that a bad one starts nothing.
          generator = import ./vm-tests/generator.nix { inherit self pkgs; };
          # The appliance configuration evaluates and builds.
          appliance = self.nixosConfigurations.appliance.config.system.build.toplevel;
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
          program = lib.getExe (
            import ./nix/demo.nix { inherit pkgs; }
          );
          meta.description = "The master-HA walk-through of README's make demo, from a weir checkout";
        };
      });

      formatter = forAllSystems (pkgs: pkgs.nixfmt-rfc-style);
    };
}
