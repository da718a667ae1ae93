# Evaluates nix/module.nix with nixpkgs' lib and ./stubs.nix, once per case below, and returns
# what each case produced as JSON for check.py: /etc/weir/cluster.yaml (text or source), the
# build-time check, the drop-ins, the firewall, the generators, and the failed assertions.
# nix-instantiate --eval --strict --json eval.nix --arg libPath ... --argstr pkgRoot ...
{
  libPath,
  pkgRoot,
  moduleFile ? ../../nix/module.nix,
  exampleFile,
}:
let
  lib = import libPath;
  stubs = import ./stubs.nix { inherit lib pkgRoot; };
  inherit (stubs) pkgs;

  docs = import ./documents.nix;

  eval =
    weir:
    let
      evaluated = lib.evalModules {
        modules = [
          stubs.module
          moduleFile
          {
            _module.args.pkgs = pkgs;
            services.weir = {
              enable = true;
            }
            // weir;
          }
        ];
      };
      c = evaluated.config;
      etc = c.environment.etc."weir/cluster.yaml" or null;
      source = if etc == null then null else etc.source;
      describe =
        v:
        if v == null then
          null
        else if builtins.isAttrs v then
          {
            kind = "derivation";
            name = v.name;
            path = v.outPath;
            text = v.text or null;
          }
        else
          {
            kind = if builtins.isPath v then "nix-path" else "string";
            path = toString v;
            text = null;
          };
    in
    {
      etc = describe source;
      etcText = if etc == null then null else etc.text;
      node = if c.environment.etc ? "weir/node" then c.environment.etc."weir/node".text else null;
      checks = map (d: {
        inherit (d) name;
        script = d.script or "";
        # The YAML the check reads (a store path as the script names it; text if known).
        yaml =
          let
            y = d.env.passthru.yaml;
          in
          {
            path = "${y}";
            text = if builtins.isAttrs y then y.text or null else null;
          };
      }) c.system.checks;
      generators = c.systemd.generators;
      packages = map toString c.systemd.packages;
      dropins = lib.mapAttrs (n: s: {
        inherit (s) overrideStrategy wantedBy;
        restartTriggers = map toString s.restartTriggers;
        reloadTriggers = map toString s.reloadTriggers;
        path = map toString s.path;
      }) c.systemd.services;
      firewall = {
        inherit (c.networking.firewall) allowedTCPPorts extraCommands extraInputRules;
      };
      failed = map (a: a.message) (builtins.filter (a: !a.assertion) c.assertions);
      inherit (c) warnings;
    };

  # Evaluation errors (a value of the wrong type) as data, so that check.py can say which case.
  try =
    weir:
    let
      r = builtins.tryEval (builtins.deepSeq (eval weir) (eval weir));
    in
    if r.success then r.value else { error = true; };
in
{
  path = eval { configFile = ./fixtures/cluster.yaml; };
  outside = eval { configFile = "/var/lib/weir/cluster.yaml"; };
  derivation = eval { configFile = pkgs.writeText "given.yaml" "kind: Cluster\n"; };
  renamedDerivation = eval { clusterConfig = pkgs.writeText "given.yaml" "kind: Cluster\n"; };
  renamedText = eval { clusterConfig = "apiVersion: weir.io/v1\nkind: Cluster\n"; };
  renamedList = eval { clusterConfig = docs.three; };
  settings = eval {
    settings = docs.three;
    node = "node2";
    openFirewall = true;
    tokenFile = "/var/lib/weir/token";
  };
  settingsNoNode = eval {
    settings = docs.threeMixed;
    openFirewall = true;
  };
  settingsWorkerNode = eval {
    settings = docs.threeMixed;
    node = "node4";
    openFirewall = true;
  };
  filePeers = eval {
    configFile = ./fixtures/cluster.yaml;
    openFirewall = true;
    raftPeers = [
      "10.0.0.2"
      "10.0.0.3"
    ];
  };
  fileFirewall = eval {
    configFile = ./fixtures/cluster.yaml;
    openFirewall = true;
  };
  nftables =
    let
      r = lib.evalModules {
        modules = [
          stubs.module
          moduleFile
          {
            _module.args.pkgs = pkgs;
            networking.firewall.backend = "nftables";
            services.weir = {
              enable = true;
              settings = docs.three;
              node = "node3";
              openFirewall = true;
            };
          }
        ];
      };
    in
    {
      inherit (r.config.networking.firewall) allowedTCPPorts extraCommands extraInputRules;
    };
  # The VM tests' cluster, rendered by the module (module-test.sh runs weirctl config check on it).
  vmCluster = eval {
    settings =
      (import ../../vm-tests/common.nix {
        pkgs = pkgs // {
          inherit lib;
        };
      }).cluster;
  };
  # The settings option's documented example, as a user would paste it (module-test.sh writes
  # its text to exampleFile: see example-text.nix).
  example = eval { settings = import exampleFile; };
  secrets = eval { settings = docs.withSecrets; };
  badCheck = eval { settings = docs.badBlockSize; };
  noCheck = eval {
    settings = docs.three;
    checkConfig = false;
  };
  disabled = (lib.evalModules {
    modules = [
      stubs.module
      moduleFile
      { _module.args.pkgs = pkgs; }
    ];
  }).config.environment.etc;

  # flake.nix's outputs with a stand-in nixpkgs: the pinned branch, the formatter (a nixpkgs
  # without the deprecated nixfmt-rfc-style alias), the module exported as a plain file.
  flake =
    let
      flake = import ../../flake.nix;
      stubPkgs = pkgs // {
        nixfmt = {
          type = "derivation";
          name = "nixfmt";
          outPath = "/nix/store/x-nixfmt";
        };
        nixfmt-rfc-style = throw "nixfmt-rfc-style is a deprecated alias of nixfmt";
        stdenv.hostPlatform.system = "x86_64-linux";
      };
      nixpkgs = {
        inherit lib;
        legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (s: stubPkgs);
      };
      outputs = flake.outputs {
        self = outputs // {
          outPath = toString ../..;
        };
        inherit nixpkgs;
      };
    in
    {
      url = flake.inputs.nixpkgs.url;
      formatter = outputs.formatter.x86_64-linux.name;
      moduleIsPath = builtins.isPath outputs.nixosModules.weir;
      module = toString outputs.nixosModules.weir;
      defaultIsWeir = outputs.packages.x86_64-linux.default == outputs.packages.x86_64-linux.weir;
      checks = builtins.attrNames outputs.checks.x86_64-linux;
      images = builtins.attrNames outputs.packages.x86_64-linux;
    };

  bad = {
    both = eval {
      settings = docs.three;
      configFile = ./fixtures/cluster.yaml;
    };
    unknownNode = eval {
      settings = docs.three;
      node = "node9";
    };
    noCluster = eval { settings = [ docs.dataset ]; };
    duplicateNames = eval { settings = docs.duplicateNames; };
    tokenInStore = eval {
      settings = docs.three;
      tokenFile = "${builtins.storeDir}/abc-token";
    };
    tokenRelative = eval {
      settings = docs.three;
      tokenFile = "token";
    };
    inlineSecret = eval { settings = docs.inlineSecret; };
    raftSecretInStore = eval {
      settings = map (
        d:
        if d.kind == "Cluster" then
          lib.recursiveUpdate d {
            spec.raft.secretFile = "${builtins.storeDir}/abc-raft";
            spec.tokenFile = "/var/lib/weir/token";
          }
        else
          d
      ) docs.three;
    };
    sharedInlineSecret = eval {
      settings = [
        (builtins.head docs.three)
        (docs.dataset // { spec = docs.dataset.spec // { sharedOptions."fs.s3a.secret.key" = "x"; }; })
      ];
    };
    sharedValueFileInStore = eval {
      settings = [
        (builtins.head docs.three)
        (
          docs.dataset
          // {
            spec = docs.dataset.spec // {
              sharedEncryptOptions = [
                {
                  name = "fs.s3a.access.key";
                  valueFile = "${builtins.storeDir}/abc-key";
                }
              ];
            };
          }
        )
      ];
    };
    hostNameMaster = eval {
      settings = docs.hostNames;
      openFirewall = true;
    };
    textNotPath = try { configFile = 42; };
  };
}
