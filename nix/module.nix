# NixOS module services.weir: installs weir's units, D-Bus policy and tmpfiles.d, and its systemd
# generator, which starts at boot the daemons that /etc/weir/cluster.yaml gives this host.
# Imported by flake.nix as nixosModules.weir with the flake itself as SELF (for the default
# package).
{ self }:
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.weir;

  # A list of documents becomes one multi-document YAML stream. Each document is written as JSON,
  # which is YAML too: no YAML generator (and no import-from-derivation) is needed.
  clusterText =
    if builtins.isList cfg.clusterConfig then
      lib.concatMapStrings (doc: "---\n" + builtins.toJSON doc + "\n") cfg.clusterConfig
    else
      cfg.clusterConfig;

  # A path: a Nix path (copied to the store) or an absolute path string (one line, left where it
  # is: it may hold secrets that must not enter the store).
  isPathLike =
    v:
    builtins.isPath v
    || (builtins.isString v && lib.hasPrefix "/" v && !(lib.hasInfix "\n" v));
  outsideStore =
    isPathLike cfg.clusterConfig
    && !(builtins.isPath cfg.clusterConfig)
    && !(lib.isStorePath cfg.clusterConfig);

  clusterSource =
    if isPathLike cfg.clusterConfig then
      cfg.clusterConfig
    else
      pkgs.writeText "weir-cluster.yaml" clusterText;

  # "weirctl config check" at build time: errors with file:line:column fail the system build
  # instead of leaving a host without weir at boot.
  clusterFile =
    if cfg.checkConfig && !outsideStore then
      pkgs.runCommand "weir-cluster.yaml"
        {
          nativeBuildInputs = [ cfg.package ];
          preferLocalBuild = true;
        }
        ''
          weirctl config check ${clusterSource}
          cp ${clusterSource} $out
        ''
    else
      clusterSource;

  # Ports of DESIGN.md's defaults; a YAML that changes them needs its own firewall rules.
  ports = [
    19200 # Raft between masters
    19998 # master API
    29999 # worker API
  ];
in
{
  options.services.weir = {
    enable = lib.mkEnableOption "weir, the caching appliance for remote datasets";

    package = lib.mkOption {
      type = lib.types.package;
      default = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      defaultText = lib.literalExpression "weir.packages.\${system}.default";
      description = "The weir package: daemons, weirctl, generator and units.";
    };

    clusterConfig = lib.mkOption {
      type = lib.types.nullOr (
        lib.types.oneOf [
          lib.types.path
          (lib.types.listOf (lib.types.attrsOf lib.types.anything))
          lib.types.lines
        ]
      );
      default = null;
      example = lib.literalExpression ''
        [
          {
            apiVersion = "weir.io/v1";
            kind = "Cluster";
            metadata.name = "hbase";
            spec.nodes = [
              { name = "node1"; address = "192.168.1.145"; }
              { name = "node2"; address = "192.168.1.146"; }
              { name = "node3"; address = "192.168.1.147"; }
            ];
          }
          {
            apiVersion = "data.fluid.io/v1alpha1";
            kind = "Dataset";
            metadata.name = "hbase";
            spec.mounts = [ { mountPoint = "https://downloads.apache.org/hbase/stable/"; name = "hbase"; } ];
          }
        ]
      '';
      description = ''
        The cluster YAML, installed as /etc/weir/cluster.yaml: a file, the YAML text, or a list
        of documents (attribute sets, one per YAML document). Every node of a cluster gets the
        same one. null leaves /etc/weir/cluster.yaml to be provided otherwise; without it the
        generator starts nothing.
      '';
    };

    node = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      example = "node1";
      description = ''
        Which node of the YAML this host is, written to /etc/weir/node. null lets the generator
        find it: a node named like the host name, else a node whose address is one of this
        host's.
      '';
    };

    checkConfig = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Check clusterConfig with "weirctl config check" when the system is built. Turn off when
        the YAML reads secrets from files that only exist on the running host.
      '';
    };

    rescanAfterNetwork = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Enable weir-rescan.service: when the generator found no node at boot (the host's address
        in the YAML arrives later, by DHCP), look again once network-online.target is reached
        and start weir.target if the host is found then.
      '';
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open the default Raft (19200), master (19998) and worker (29999) TCP ports.";
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [
      cfg.package
      pkgs.fuse3
    ];

    environment.etc."weir/cluster.yaml" = lib.mkIf (cfg.clusterConfig != null) {
      source = clusterFile;
    };
    environment.etc."weir/node" = lib.mkIf (cfg.node != null) { text = cfg.node + "\n"; };

    # The package's units (weir.target, weir-master, weir-worker, weir-fuse@) as shipped; the
    # generator decides at boot which of them this host runs (NixOS ignores their [Install]).
    systemd.packages = [ cfg.package ];
    systemd.generators.weir-generator = "${cfg.package}/lib/systemd/system-generators/weir-generator";
    systemd.tmpfiles.packages = [ cfg.package ];
    services.dbus.packages = [ cfg.package ];

    # Additions to the packaged units, as drop-ins (never replacing them): a new YAML restarts
    # what runs when the system is switched (the generator runs again on daemon-reload), and
    # libfuse finds fusermount3 should it need it.
    # weir-rescan is the one weir unit enabled statically; it does nothing when the generator
    # already pulled weir.target in (see units/weir-rescan.service.in).
    systemd.services =
      lib.genAttrs [ "weir-master" "weir-worker" "weir-fuse@" ] (name: {
        overrideStrategy = "asDropin";
        restartTriggers = lib.optional (cfg.clusterConfig != null) clusterFile;
        path = lib.optional (name == "weir-fuse@") pkgs.fuse3;
      })
      // {
        weir-rescan = lib.mkIf cfg.rescanAfterNetwork {
          overrideStrategy = "asDropin";
          wantedBy = [ "multi-user.target" ];
        };
      };

    # weir-fuse opens /dev/fuse as root; the module loads at boot rather than on first open.
    boot.kernelModules = [ "fuse" ];

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall ports;
  };
}
