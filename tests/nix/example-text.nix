# The text of services.weir.settings' example (a literalExpression), which module-test.sh writes
# to a file for eval.nix to import: the documented example must pass the build-time check.
# nix-instantiate --eval --json example-text.nix --arg libPath ... --argstr pkgRoot ...
{
  libPath,
  pkgRoot,
  moduleFile ? ../../nix/module.nix,
}:
let
  lib = import libPath;
  stubs = import ./stubs.nix { inherit lib pkgRoot; };
  r = lib.evalModules {
    modules = [
      stubs.module
      moduleFile
      { _module.args.pkgs = stubs.pkgs; }
    ];
  };
in
r.options.services.weir.settings.example.text
