# nix run .#demo: the README's "make demo" (three nodes on 127.0.0.1-3, the master-HA walk-through)
# inside this flake's development shell, run from a weir checkout, which it builds in and tears
# down again (make demo-stop). The demo needs root for FUSE, as on Debian.
{ pkgs }:
pkgs.writeShellApplication {
  name = "weir-demo";
  runtimeInputs = [ pkgs.gnumake ];
  text = ''
    if [ ! -f flake.nix ] || [ ! -f scripts/deps.sh ] || ! grep -q 'weir' flake.nix; then
      echo "weir-demo: run this from the top of a weir checkout: nix run .#demo" >&2
      exit 1
    fi
    if ! command -v nix >/dev/null; then
      echo "weir-demo: needs nix on PATH (it enters the flake's devShell)" >&2
      exit 1
    fi
    # nix develop sets IN_NIX_SHELL, so scripts/deps.sh installs nothing with apt.
    exec nix develop --command make demo "$@"
  '';
}
