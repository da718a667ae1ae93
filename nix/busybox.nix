# The operator's toolbox on a node: busybox as one `busybox` command (`busybox time cp -r`,
# `busybox sha256sum`, `busybox du`), without its applet links, which would shadow coreutils,
# util-linux and systemd's own reboot/poweroff in the system PATH.
{ runCommand, busybox }:
runCommand "busybox-command-${busybox.version}" { meta.mainProgram = "busybox"; } ''
  mkdir -p $out/bin
  ln -s ${busybox}/bin/busybox $out/bin/busybox
''
