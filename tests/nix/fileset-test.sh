#!/usr/bin/env bash
# meson test nix-fileset (suite nix): the Nix package's source (nix/package.nix, lib.fileset) is
# enough to configure weir with its unit tests, as its build does when doCheck is on. Nix 2.8
# here cannot evaluate lib.fileset (no builtins.readFileType), so this copies the paths that
# package.nix lists into an empty directory and runs `meson setup -Dtests=true` there: a file
# that meson.build reads (find_program, files()) but the fileset leaves out fails here, not in
# the first `nix build` elsewhere. The unit suite itself is not rebuilt here (make check runs it
# in the checkout).
# Usage: fileset-test.sh SOURCE_ROOT [BUILD_ROOT]. Exit 77 (skip) without meson.
set -uo pipefail
src=$1

command -v meson >/dev/null || { echo "SKIP: meson missing"; exit 77; }
pkg=$src/nix/package.nix
[ -f "$pkg" ] || { echo "FAIL: no $pkg"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/weir-nix-fileset.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

# package.nix's fileset: `fs.difference (fs.unions [ ../A ../B ... ]) ../C;` with one path a
# line. Anything else in that expression is not understood here, which fails the test rather than
# silently checking less.
if ! python3 - "$pkg" >"$tmp/paths" <<'PY'; then
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"fileset\s*=\s*fs\.difference\s*\(fs\.unions\s*\[(.*?)\]\)\s*(.*?);", text, re.S)
if not m:
    sys.exit("nix/package.nix: no `fileset = fs.difference (fs.unions [ ... ]) ...;` found")
keep = m.group(1).split()
drop = m.group(2).split()
for p in keep + drop:
    if not re.fullmatch(r"\.\./[A-Za-z0-9_./-]+", p) or ".." in p[3:]:
        sys.exit(f"nix/package.nix: fileset entry {p!r} is not a plain ../PATH")
for p in keep:
    print("+", p[3:])
for p in drop:
    print("-", p[3:])
PY
        echo "FAIL: cannot read the fileset of nix/package.nix"; exit 1
fi
mkdir -p "$tmp/src"
while read -r op p; do
        if [ "$op" = + ]; then
                [ -e "$src/$p" ] || { echo "FAIL: the fileset names $p, which does not exist"; exit 1; }
                mkdir -p "$tmp/src/$(dirname "$p")"
                cp -r "$src/$p" "$tmp/src/$p"
        else
                rm -rf "${tmp:?}/src/$p"
        fi
done <"$tmp/paths"
echo "fileset: $(grep -c '^+' "$tmp/paths") paths, $(grep -c '^-' "$tmp/paths") left out"

if (cd "$tmp" && meson setup build src -Dtests=true) >"$tmp/setup.log" 2>&1; then
        echo "ok   meson setup -Dtests=true of nix/package.nix's source set"
else
        echo "FAIL meson setup -Dtests=true of nix/package.nix's source set (a file meson needs" \
                "is missing from the fileset in nix/package.nix):"
        grep -E "ERROR|not found" "$tmp/setup.log" | sed "s|$tmp/||g"
        exit 1
fi
