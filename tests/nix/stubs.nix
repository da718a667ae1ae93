# The NixOS options nix/module.nix sets, declared with the names and types nixpkgs gives them
# (nixos/modules/misc/assertions.nix, config/system-path.nix, system/etc/etc.nix,
# system/activation/top-level.nix, system/boot/systemd.nix and systemd/tmpfiles.nix,
# services/system/dbus.nix, system/boot/kernel.nix, services/networking/firewall*.nix), and a
# stand-in for the few pkgs attributes it uses. Only what the module touches: enough to evaluate
# it with nixpkgs' lib alone and read what it produces.
{ lib, pkgRoot }:
let
  inherit (lib) mkOption types;

  # A derivation-like value: what types.package and string interpolation accept.
  drv =
    name: extra:
    {
      type = "derivation";
      inherit name;
      outPath = "${builtins.storeDir}/${
        builtins.substring 0 32 (builtins.hashString "sha256" (name + builtins.toJSON (extra.text or extra.script or "")))
      }-${baseNameOf name}";
    }
    // extra;

  # pkgs.formats.yaml's value type (JSON-like values, recursively).
  # Its description is given, or describing the type would recurse forever.
  yamlValue =
    types.nullOr (
      types.oneOf [
        types.bool
        types.int
        types.float
        types.str
        types.path
        (types.attrsOf yamlValue)
        (types.listOf yamlValue)
      ]
    )
    // {
      description = "YAML value";
    };
in
{
  pkgs = {
    formats.yaml = { }: {
      type = yamlValue;
      generate = name: value: throw "the module must not build its YAML with formats.yaml.generate";
    };
    writeText = name: text: drv name { inherit text; };
    runCommand = name: env: script: drv name { inherit env script; };
    # The module's default package: what meson install put under pkgRoot.
    callPackage =
      path: args:
      assert baseNameOf (toString path) == "package.nix";
      drv "weir" { outPath = pkgRoot; };
    fuse3 = drv "fuse3" { };
  };

  module =
    { config, pkgs, ... }:
    {
      options = {
        assertions = mkOption {
          type = types.listOf types.unspecified;
          default = [ ];
        };
        warnings = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
        environment.systemPackages = mkOption {
          type = types.listOf types.package;
          default = [ ];
        };
        environment.etc = mkOption {
          default = { };
          type = types.attrsOf (
            types.submodule (
              { name, config, ... }:
              {
                options = {
                  enable = mkOption {
                    type = types.bool;
                    default = true;
                  };
                  target = mkOption { type = types.str; };
                  text = mkOption {
                    type = types.nullOr types.lines;
                    default = null;
                  };
                  source = mkOption { type = types.path; };
                  mode = mkOption {
                    type = types.str;
                    default = "symlink";
                  };
                };
                config = {
                  target = lib.mkDefault name;
                  source = lib.mkIf (config.text != null) (lib.mkDefault (pkgs.writeText name config.text));
                };
              }
            )
          );
        };
        system.checks = mkOption {
          type = types.listOf types.package;
          default = [ ];
        };
        systemd.packages = mkOption {
          type = types.listOf types.package;
          default = [ ];
        };
        systemd.generators = mkOption {
          type = types.attrsOf types.path;
          default = { };
        };
        systemd.tmpfiles.packages = mkOption {
          type = types.listOf types.package;
          default = [ ];
        };
        services.dbus.packages = mkOption {
          type = types.listOf types.path;
          default = [ ];
        };
        systemd.services = mkOption {
          default = { };
          type = types.attrsOf (
            types.submodule {
              options = {
                overrideStrategy = mkOption {
                  type = types.enum [
                    "asDropinIfExists"
                    "asDropin"
                  ];
                  default = "asDropinIfExists";
                };
                restartTriggers = mkOption {
                  type = types.listOf types.unspecified;
                  default = [ ];
                };
                reloadTriggers = mkOption {
                  type = types.listOf types.unspecified;
                  default = [ ];
                };
                path = mkOption {
                  type = types.listOf (
                    types.oneOf [
                      types.package
                      types.str
                    ]
                  );
                  default = [ ];
                };
                wantedBy = mkOption {
                  type = types.listOf types.str;
                  default = [ ];
                };
                serviceConfig = mkOption {
                  type = types.attrsOf types.anything;
                  default = { };
                };
              };
            }
          );
        };
        boot.kernelModules = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
        networking.firewall = {
          enable = mkOption {
            type = types.bool;
            default = true;
          };
          backend = mkOption {
            type = types.enum [
              "iptables"
              "nftables"
              "firewalld"
            ];
            default = "iptables";
          };
          allowedTCPPorts = mkOption {
            type = types.listOf types.port;
            default = [ ];
          };
          extraCommands = mkOption {
            type = types.lines;
            default = "";
          };
          extraInputRules = mkOption {
            type = types.lines;
            default = "";
          };
        };
      };
    };
}
