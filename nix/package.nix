# The weir package: the daemons, weirctl, weir-generator, the systemd units, the D-Bus policy and
# tmpfiles.d, built with meson; the cmocka unit tests run in the build when the build platform
# can run what it builds. Used by flake.nix (packages.weir) and as nix/module.nix's default
# package, with the pkgs of whoever imports the module.
{
  lib,
  stdenv,
  meson,
  ninja,
  pkg-config,
  raft-cowsql,
  lmdb,
  libuv,
  fuse3,
  curl,
  libmicrohttpd,
  jansson,
  libyaml,
  systemd,
  xxHash,
  libsodium,
  gnutls,
  cmocka,
  coreutils,
}:

let
  fs = lib.fileset;
  # Only what meson reads to build and unit-test weir: docs, Nix files, the integration and VM
  # tests are not part of it, so editing them does not rebuild the package. The unit suite runs
  # scripts/include-cycles.py (with meson's own Python). tests/nix/fileset-test.sh configures a
  # copy of exactly these paths.
  src = fs.toSource {
    root = ../.;
    fileset = fs.difference (fs.unions [
      ../meson.build
      ../meson_options.txt
      ../services
      ../units
      ../tests/unit
      ../config
      ../scripts/include-cycles.py
    ]) ../tests/unit/check-nix.sh;
  };
in

stdenv.mkDerivation (finalAttrs: {
  pname = "weir";
  version = "0.1.0";
  inherit src;
  # buildInputs stay off PATH: meson must not find the build machine's fusermount3.
  strictDeps = true;

  # Only tools run at build time. fusermount3 and kill are not: the units name the host's
  # (postInstall below), which a cross build could not find on PATH.
  nativeBuildInputs = [
    meson
    ninja
    pkg-config
  ];

  # raft-cowsql installs raft.pc, which meson's dependency('raft') finds; systemd brings both
  # libsystemd.pc and systemd.pc, whose directories units/meson.build moves under $out.
  buildInputs = [
    raft-cowsql
    lmdb
    libuv
    fuse3
    curl
    libmicrohttpd
    jansson
    libyaml
    systemd
    xxHash
    libsodium
    gnutls
  ];

  checkInputs = [ cmocka ];

  # cmocka is only there when the tests run; without them meson must not look for it.
  mesonFlags = [ (lib.mesonBool "tests" finalAttrs.doCheck) ];

  doCheck = stdenv.buildPlatform.canExecute stdenv.hostPlatform;
  # The unit suite only: the other suites (systemd-analyze verify, Nix syntax) and the pytest
  # integration tests need a systemd, a Nix or FUSE that the build sandbox does not have.
  mesonCheckFlags = [
    "--suite"
    "unit"
    "--print-errorlogs"
  ];

  # The installed units must start this package's binaries (wherever meson put each) and name a
  # fusermount3 that exists.
  postInstall = ''
    substituteInPlace "$out/lib/systemd/system/weir-fuse@.service" \
      --replace-fail /usr/bin/fusermount3 ${lib.getExe' fuse3 "fusermount3"}
    # ExecReload's kill(1) is the one meson found on the build machine's PATH: name the host's.
    sed -i 's|^ExecReload=[^ ]*/kill |ExecReload=${lib.getExe' coreutils "kill"} |' \
      "$out/lib/systemd/system/weir-master.service"
    grep -q '^ExecReload=${lib.getExe' coreutils "kill"} -HUP ' "$out/lib/systemd/system/weir-master.service"
    for u in $out/lib/systemd/system/weir*.service; do
      for p in $(sed -n 's/^Exec[A-Za-z]*=[-+!@:]*\([^ ]*\).*/\1/p' "$u"); do
        test -x "$p" || { echo "$u runs $p, which does not exist"; exit 1; }
      done
    done
    grep -q "^ExecStart=$out/" "$out/lib/systemd/system/weir-master.service"
    grep -q "^ExecStart=$out/" "$out/lib/systemd/system/weir-worker.service"
    grep -q "^ExecStart=$out/" "$out/lib/systemd/system/weir-fuse@.service"
    test -x "$out/lib/systemd/system-generators/weir-generator"
    test -f "$out/share/dbus-1/system.d/io.weir.conf"
    test -f "$out/lib/tmpfiles.d/weir.conf"
  '';

  meta = {
    description = "Caching appliance for remote datasets: Raft-replicated metadata, tiered block cache, FUSE";
    license = lib.licenses.asl20;
    platforms = lib.platforms.linux;
    mainProgram = "weirctl";
  };
})
