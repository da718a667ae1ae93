# NixOS module services.weir: installs weir's units, D-Bus policy, tmpfiles.d and systemd
# generator (all from the package, through systemd.packages), and /etc/weir/cluster.yaml, from
# which the generator decides at boot which daemons this host runs.
#
# flake.nix exports this file as nixosModules.weir. It captures nothing of the flake: the default
# package is built from ./package.nix with the importing system's own pkgs, so the module behaves
# the same when another flake imports it.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib) types;
  cfg = config.services.weir;

  # RFC 42: the YAML's documents as Nix values. Only the type is taken from pkgs.formats.yaml; the
  # text is rendered below without a build step, so that evaluation alone says what it contains.
  settingsFormat = pkgs.formats.yaml { };

  # Each document as JSON, which is YAML: one multi-document stream, no YAML generator and no
  # import-from-derivation.
  # tokenFile goes into the Cluster document: only its path enters the store.
  withToken =
    doc:
    if cfg.tokenFile != null && builtins.isAttrs doc && (doc.kind or null) == "Cluster" then
      lib.recursiveUpdate doc { spec.tokenFile = cfg.tokenFile; }
    else
      doc;
  renderDocs = lib.concatMapStrings (doc: "---\n" + builtins.toJSON (withToken doc) + "\n");
  settingsText = renderDocs cfg.settings;
  yamlText = types.addCheck types.lines (s: !(lib.hasPrefix "/" s));

  # A file given as configFile: a Nix path (copied to the store), a derivation (pkgs.writeText ...),
  # or an absolute path string. A string outside the store stays where it is: it may hold or name
  # secrets, and is only checked by the daemons on the host.
  configPath = if cfg.configFile == null then null else toString cfg.configFile;
  configOutsideStore =
    cfg.configFile != null
    && builtins.isString cfg.configFile
    && !(lib.hasPrefix builtins.storeDir cfg.configFile);

  # /etc/weir/cluster.yaml as environment.etc takes it.
  etcEntry =
    if cfg.settings != null then
      { text = settingsText; }
    else if cfg.configFile != null then
      { source = cfg.configFile; }
    else
      null;

  # "weirctl config check" when the system is built (system.checks): a YAML with errors fails
  # the build with file:line:column instead of leaving a host without weir at boot. It only
  # validates; /etc/weir/cluster.yaml is the file itself, so evaluation shows its text.
  settingsFile = pkgs.writeText "weir-cluster.yaml" settingsText;
  # weirctl reads the files that encryptOptions name (valueFile, valueFrom.secretKeyRef) to
  # validate them, but at build time they are outside the store and the sandbox. So settings are
  # checked as a copy in which every such entry reads one placeholder file next to the copy:
  # everything else as written, the secrets themselves only by the daemons on the host. An entry
  # with both forms or neither is left as it is, for weirctl to report.
  checkSecret = "weir-check-secret";
  mapList = f: l: if builtins.isList l then map f l else l;
  placeholder =
    e:
    if builtins.isAttrs e && (e ? valueFile) != (e ? valueFrom) then
      removeAttrs e [
        "valueFile"
        "valueFrom"
      ]
      // {
        valueFile = checkSecret;
      }
    else
      e;
  mountForCheck =
    m:
    if builtins.isAttrs m && m ? encryptOptions then
      m // { encryptOptions = mapList placeholder m.encryptOptions; }
    else
      m;
  docForCheck =
    doc:
    if builtins.isAttrs doc && (doc.kind or null) == "Dataset" && builtins.isAttrs (doc.spec or null) then
      doc
      // {
        spec =
          doc.spec
          // lib.optionalAttrs (doc.spec ? sharedEncryptOptions) {
            sharedEncryptOptions = mapList placeholder doc.spec.sharedEncryptOptions;
          }
          // lib.optionalAttrs (doc.spec ? mounts) { mounts = mapList mountForCheck doc.spec.mounts; };
      }
    else
      doc;
  checkInput =
    if cfg.settings != null then
      pkgs.writeText "weir-cluster.yaml" (renderDocs (map docForCheck cfg.settings))
    else
      cfg.configFile;
  configCheck =
    pkgs.runCommand "weir-cluster-yaml-check"
      {
        nativeBuildInputs = [ cfg.package ];
        preferLocalBuild = true;
        passthru.yaml = checkInput;
      }
      (
        if cfg.settings != null then
          ''
            cp ${checkInput} cluster.yaml
            echo placeholder >${checkSecret}
            weirctl config check cluster.yaml
            touch $out
          ''
        else
          ''
            weirctl config check ${checkInput}
            touch $out
          ''
      );
  # The file the triggers name: a store path, or the path outside it.
  yamlFile = if cfg.settings != null then settingsFile else configPath;
  doCheck = cfg.checkConfig && etcEntry != null && !configOutsideStore;

  # What evaluation can know of the cluster: only from settings (a file's YAML is not parsed in
  # Nix). null when there are no settings.
  docs = if cfg.settings == null then [ ] else cfg.settings;
  runtimeKinds = [
    "Runtime"
    "AlluxioRuntime"
    "GooseFSRuntime"
    "JindoRuntime"
  ];
  clusterDocs = builtins.filter (d: builtins.isAttrs d && (d.kind or null) == "Cluster") docs;
  clusterSpec = if clusterDocs == [ ] then { } else (builtins.head clusterDocs).spec or { };
  nodes = clusterSpec.nodes or [ ];
  nodeNames = map (n: n.name or null) nodes;
  runtimes = builtins.filter (d: builtins.isAttrs d && builtins.elem (d.kind or null) runtimeKinds) docs;
  masterReplicas = lib.foldl' lib.max 1 (map (r: r.spec.master.replicas or 1) runtimes);

  # docs/config.md, Placement: nodes whose roles include master, then the first nodes without
  # roles until there are master.replicas masters.
  hasRoles = n: n ? roles;
  roleMasters = builtins.filter (n: hasRoles n && builtins.elem "master" n.roles) nodes;
  freeNodes = builtins.filter (n: !(hasRoles n)) nodes;
  masters =
    let
      wanted = lib.take (lib.max 0 (masterReplicas - builtins.length roleMasters)) freeNodes;
    in
    builtins.filter (n: builtins.elem n roleMasters || builtins.elem n wanted) nodes;
  portOf = key: default: n: n.${key} or (clusterSpec.${key} or default);
  raftPort = portOf "raftPort" 19200;
  masterPort = portOf "masterPort" 19998;
  workerPort = portOf "workerPort" 29999;

  thisNode = lib.findFirst (n: (n.name or null) == cfg.node) null nodes;

  # The Raft port, only from the other masters' addresses: without tokenFile or
  # spec.raft.secretFile the transport's handshake authenticates nobody, and even with one there
  # is no reason for other hosts to reach it.
  raftPeers = builtins.filter (n: thisNode == null || n.name != thisNode.name) masters;
  raftPorts =
    if cfg.settings == null then
      [ 19200 ] # docs/design.md's default: a configFile's own ports are unknown here
    else if thisNode != null then
      lib.optional (builtins.elem thisNode masters) (raftPort thisNode)
    else
      lib.unique (map raftPort masters);
  isIPv4 = a: builtins.match "[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+(/[0-9]+)?" a != null;
  isIPv6 = a: lib.hasInfix ":" a;
  peerAddresses = lib.unique (map (n: n.address or "") raftPeers ++ cfg.raftPeers);
  notLiteral = builtins.filter (a: !(isIPv4 a || isIPv6 a)) peerAddresses;
  iptablesRules = lib.concatMapStrings (
    port:
    lib.concatMapStrings (
      a:
      "${if isIPv6 a then "ip6tables" else "iptables"} -A nixos-fw -p tcp -s ${a} --dport ${toString port} -j nixos-fw-accept\n"
    ) peerAddresses
  ) raftPorts;
  nftSet = addrs: "{ ${lib.concatStringsSep ", " addrs} }";
  nftRules = lib.concatMapStrings (
    port:
    let
      v4 = builtins.filter isIPv4 peerAddresses;
      v6 = builtins.filter isIPv6 peerAddresses;
    in
    lib.optionalString (v4 != [ ]) "ip saddr ${nftSet v4} tcp dport ${toString port} accept\n"
    + lib.optionalString (v6 != [ ]) "ip6 saddr ${nftSet v6} tcp dport ${toString port} accept\n"
  ) raftPorts;
  firewallBackend = config.networking.firewall.backend or "iptables";

  # The API ports, open to all (bearer token for mutating calls, see docs/api.md): this node's if
  # known, else every node's; docs/design.md's defaults without settings.
  apiPorts =
    if cfg.settings == null then
      [
        19998
        29999
      ]
    else
      lib.unique (
        map masterPort (if thisNode != null then [ thisNode ] else nodes)
        ++ map workerPort (if thisNode != null then [ thisNode ] else nodes)
      );

  # Values that would put a secret into the store (settings are rendered into it).
  secretName = name: builtins.match ".*(secret|password|passwd|token|credential|privatekey|access[._]?key).*" (lib.toLower name) != null;
  datasetDocs = builtins.filter (d: builtins.isAttrs d && (d.kind or null) == "Dataset") docs;
  # A Dataset's options and encryptOptions: each mount's, and sharedOptions/sharedEncryptOptions
  # (docs/config.md), as { where; options; encryptOptions; }.
  optionSets = lib.concatMap (
    d:
    let
      name = "Dataset ${d.metadata.name or "?"}";
    in
    [
      {
        where = "${name}, sharedOptions";
        options = d.spec.sharedOptions or { };
        encryptOptions = d.spec.sharedEncryptOptions or [ ];
      }
    ]
    ++ map (m: {
      where = "${name}, mount ${m.name or "?"}";
      options = m.options or { };
      encryptOptions = m.encryptOptions or [ ];
    }) (d.spec.mounts or [ ])
  ) datasetDocs;
  inlineSecrets = lib.concatMap (
    s:
    map (o: "${s.where}: ${o}") (
      builtins.filter secretName (builtins.attrNames (if builtins.isAttrs s.options then s.options else { }))
    )
  ) optionSets;
  storeValueFiles = lib.concatMap (
    s:
    map (e: "${s.where}: ${e.name or "?"}") (
      builtins.filter (e: lib.hasPrefix builtins.storeDir (toString (e.valueFile or ""))) (
        if builtins.isList s.encryptOptions then s.encryptOptions else [ ]
      )
    )
  ) optionSets;
  settingsToken = clusterSpec.tokenFile or null;
  # Files of secrets that the Cluster document names (docs/config.md): their paths may be in the
  # store, their contents never.
  secretPaths = {
    "spec.tokenFile" = clusterSpec.tokenFile or null;
    "spec.raft.secretFile" = clusterSpec.raft.secretFile or null;
    "spec.api.readTokenFile" = clusterSpec.api.readTokenFile or null;
    "spec.api.tls.keyFile" = clusterSpec.api.tls.keyFile or null;
  };
  secretsInStore = builtins.attrNames (
    lib.filterAttrs (
      k: v: v != null && lib.hasPrefix builtins.storeDir (toString v)
    ) secretPaths
  );
  raftAuthenticated = cfg.tokenFile != null || settingsToken != null || secretPaths."spec.raft.secretFile" != null;

  units = [
    "weir-master"
    "weir-worker"
    "weir-fuse@"
  ];
in
{
  imports = [
    # Up to 0.1 the one option for the YAML; a path keeps working as configFile. A list of
    # documents now goes to settings, YAML text to pkgs.writeText.
    (lib.mkRenamedOptionModule
      [
        "services"
        "weir"
        "clusterConfig"
      ]
      [
        "services"
        "weir"
        "configFile"
      ]
    )
  ];

  options.services.weir = {
    enable = lib.mkEnableOption "weir, the caching appliance for remote datasets";

    package = lib.mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage <weir>/nix/package.nix { }";
      description = "The weir package: daemons, weirctl, generator, units, D-Bus policy, tmpfiles.d.";
    };

    settings = lib.mkOption {
      type = types.nullOr (types.listOf settingsFormat.type);
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
          {
            apiVersion = "data.fluid.io/v1alpha1";
            kind = "AlluxioRuntime";
            metadata.name = "hbase";
            spec = {
              replicas = 3;
              master.replicas = 3;
              tieredstore.levels = [ { mediumtype = "MEM"; path = "/dev/shm"; quota = "1Gi"; } ];
            };
          }
        ]
      '';
      description = ''
        The cluster YAML as Nix values, one attribute set per YAML document (docs/config.md),
        written to /etc/weir/cluster.yaml as one multi-document stream. Every node of a cluster
        gets the same one. It ends up in the Nix store: name secrets by file (tokenFile,
        encryptOptions with valueFile), never inline. Exclusive with configFile.
      '';
    };

    configFile = lib.mkOption {
      # What clusterConfig took keeps working through the rename: YAML text (a string that does
      # not start with "/") and a list of documents become a file in the store.
      type = types.nullOr (
        types.coercedTo (types.either (types.listOf settingsFormat.type) yamlText) (
          v: pkgs.writeText "weir-cluster.yaml" (if builtins.isList v then renderDocs v else v)
        ) types.path
      );
      default = null;
      example = "/var/lib/weir/cluster.yaml";
      description = ''
        A hand-written cluster YAML, installed as /etc/weir/cluster.yaml: a Nix path (copied to
        the store), a derivation, or an absolute path string outside the store (linked, not
        copied: for YAMLs that hold secrets; not checked at build time). YAML text or a list
        of documents (the forms the former clusterConfig took) are written to the store as a
        file. Exclusive with settings. With neither, /etc/weir/cluster.yaml is left to be provided otherwise.
      '';
    };

    tokenFile = lib.mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/var/lib/weir/secrets/token";
      description = ''
        The cluster's bearer token file (docs/api.md), an absolute path outside the Nix store,
        written into the settings' Cluster document as spec.tokenFile. Only the path is in the
        store; the daemons read the file when they start and when they reload.
      '';
    };

    node = lib.mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "node1";
      description = ''
        Which node of the YAML this host is, written to /etc/weir/node. null lets the generator
        find it: a node named like the host name, else a node whose address is one of this
        host's.
      '';
    };

    checkConfig = lib.mkOption {
      type = types.bool;
      default = true;
      description = ''
        Check the YAML with "weirctl config check" when the system is built (a file outside the
        store is never checked at build time). Settings are checked with a placeholder for every
        secret file that encryptOptions name (the build cannot read them); a configFile in the
        store that names secret files fails the check: turn it off for such a file.
      '';
    };

    rescanAfterNetwork = lib.mkOption {
      type = types.bool;
      default = true;
      description = ''
        Enable weir-rescan.service: when the generator found no node at boot (the host's address
        in the YAML arrives later, by DHCP), look again once network-online.target is reached
        and start weir.target if the host is found then.
      '';
    };

    openFirewall = lib.mkOption {
      type = types.bool;
      default = false;
      description = ''
        Open the master and worker API ports (this node's from settings, else 19998 and 29999)
        to all, and the Raft port only to the other masters' addresses in settings plus
        raftPeers: the Raft port is never opened to the world (without tokenFile or
        spec.raft.secretFile its transport authenticates nobody).
      '';
    };

    raftPeers = lib.mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "192.168.1.146" ];
      description = ''
        Further addresses (IPv4 or IPv6 literals, optionally with a /prefix) allowed to reach
        the Raft port when openFirewall is set: the masters of a configFile YAML, which the
        module cannot read.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = !(cfg.settings != null && cfg.configFile != null);
        message = "services.weir: set either settings or configFile (clusterConfig), not both.";
      }
      {
        assertion = cfg.settings == null || builtins.length clusterDocs == 1;
        message = "services.weir.settings: needs exactly one document of kind Cluster (found ${toString (builtins.length clusterDocs)}).";
      }
      {
        assertion = cfg.settings == null || builtins.all (n: n ? name && n ? address) nodes;
        message = "services.weir.settings: every node of the Cluster document needs a name and an address.";
      }
      {
        assertion = lib.unique nodeNames == nodeNames;
        message = "services.weir.settings: node names must be unique (${toString nodeNames}).";
      }
      {
        assertion = cfg.node == null || cfg.settings == null || builtins.elem cfg.node nodeNames;
        message = "services.weir.node: '${toString cfg.node}' is not one of the nodes in services.weir.settings (${toString nodeNames}).";
      }
      {
        assertion = cfg.tokenFile == null || (lib.hasPrefix "/" cfg.tokenFile && !(lib.hasPrefix builtins.storeDir cfg.tokenFile));
        message = "services.weir.tokenFile: must be an absolute path outside the Nix store (got ${toString cfg.tokenFile}): the store is world-readable.";
      }
      {
        assertion = cfg.tokenFile == null || cfg.settings != null;
        message = "services.weir.tokenFile: needs settings; with configFile, write tokenFile into that YAML.";
      }
      {
        assertion = cfg.tokenFile == null || settingsToken == null || settingsToken == cfg.tokenFile;
        message = "services.weir: tokenFile and settings' Cluster spec.tokenFile differ; set one.";
      }
      {
        assertion = secretsInStore == [ ];
        message = "services.weir.settings: ${lib.concatStringsSep ", " secretsInStore} of the Cluster document name a file in the Nix store, which is world-readable; name a file outside it (services.weir.tokenFile for the token).";
      }
      {
        assertion = inlineSecrets == [ ];
        message = "services.weir.settings: secret options written inline would be copied into the world-readable Nix store (${lib.concatStringsSep "; " inlineSecrets}); use encryptOptions with valueFile outside the store.";
      }
      {
        assertion = storeValueFiles == [ ];
        message = "services.weir.settings: encryptOptions valueFile in the Nix store (${lib.concatStringsSep "; " storeValueFiles}); the store is world-readable.";
      }
      {
        assertion = !cfg.openFirewall || notLiteral == [ ];
        message = "services.weir.openFirewall: the Raft port is opened only to masters given by IP address; these are not: ${toString notLiteral}.";
      }
    ];

    warnings =
      lib.optional (cfg.settings != null && builtins.length masters > 1 && !raftAuthenticated)
        "services.weir.settings: neither tokenFile nor spec.raft.secretFile is set, so the masters' Raft transport is not authenticated: anyone who reaches the Raft port can join (openFirewall limits it to the other masters' addresses)."
      ++ lib.optional (
      cfg.openFirewall && peerAddresses == [ ] && cfg.settings == null && cfg.configFile != null
    ) "services.weir.openFirewall: the masters of configFile are unknown to the module; the Raft port stays closed unless services.weir.raftPeers lists them.";

    environment.systemPackages = [
      cfg.package
      pkgs.fuse3
    ];

    environment.etc."weir/cluster.yaml" = lib.mkIf (etcEntry != null) etcEntry;
    environment.etc."weir/node" = lib.mkIf (cfg.node != null) { text = cfg.node + "\n"; };

    system.checks = lib.optional doCheck configCheck;

    # Everything of the package's systemd side comes from the package: weir.target, the units
    # (NixOS ignores their [Install]), and lib/systemd/system-generators/weir-generator, which
    # NixOS links into /etc/systemd/system-generators. No systemd.generators entry as well: the
    # two would be linked to the same name and the system build fails ("File exists").
    systemd.packages = [ cfg.package ];
    systemd.tmpfiles.packages = [ cfg.package ];
    services.dbus.packages = [ cfg.package ];

    # Additions to the packaged units, as drop-ins (never replacing them): a changed YAML
    # restarts what runs when the system is switched, libfuse finds fusermount3.
    # weir-rescan is the one weir unit enabled statically; it does nothing when the generator
    # already pulled weir.target in (see units/weir-rescan.service.in).
    # A changed YAML reloads the masters (SIGHUP: the leader applies datasets and master.replicas,
    # as `weirctl config apply` does) and restarts workers and FUSE mounts, which read it at start.
    systemd.services =
      lib.genAttrs units (name: {
        overrideStrategy = "asDropin";
        restartTriggers = lib.optional (etcEntry != null && name != "weir-master") yamlFile;
        reloadTriggers = lib.optional (etcEntry != null && name == "weir-master") yamlFile;
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

    networking.firewall = lib.mkIf cfg.openFirewall {
      allowedTCPPorts = apiPorts;
      extraCommands = lib.mkIf (firewallBackend == "iptables") iptablesRules;
      extraInputRules = lib.mkIf (firewallBackend == "nftables") nftRules;
    };
  };
}
