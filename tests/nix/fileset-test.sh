#!/usr/bin/env bash
# meson test nix-fileset (suite nix): the Nix package's source (nix/package.nix, lib.fileset) is
# enough to configure weir with its unit tests, as its build does when doCheck is on. Nix 2.8
# here cannot evaluate lib.fileset (no builtins.readFileType), so this copies the paths that
# package.nix lists into an empty directory and runs `meson setup -Dtests=true` there: a file
# that meson.build reads (find_program, files()) but the fileset leaves out fails here, not in
# the first `nix build` elsewhere. The unit suite itself is not rebuilt here (make check runs it
# in the checkout).
# It also holds package.nix's inputs against meson.build: every dependency('NAME') that meson
# looks up must map to a nixpkgs attribute in buildInputs (checkInputs for cmocka); a new
# library fails here until it is added to nix/package.nix and to the table below.
# Usage: fileset-test.sh SOURCE_ROOT [BUILD_ROOT]. Exit 77 (skip) without meson.
set -uo pipefail
src=$1

command -v meson >/dev/null || { echo "SKIP: meson missing"; exit 77; }
pkg=$src/nix/package.nix
[ -f "$pkg" ] || { echo "FAIL: no $pkg"; exit 1; }

# pkg-config name (meson's dependency()) -> the nixpkgs attribute that provides it, read from
# nixpkgs' sources (lmdb writes lmdb.pc in its postInstall; xxHash's pkgConfigModules is
# libxxhash; raft-cowsql installs raft.pc; systemd brings libsystemd.pc and systemd.pc).
if ! python3 - "$src" <<'PY'; then
import re, sys
src = sys.argv[1]
nixpkgs = {"raft": "raft-cowsql", "lmdb": "lmdb", "libuv": "libuv", "fuse3": "fuse3",
           "libcurl": "curl", "libmicrohttpd": "libmicrohttpd", "jansson": "jansson",
           "yaml-0.1": "libyaml", "libsystemd": "systemd", "systemd": "systemd",
           "libxxhash": "xxHash", "cmocka": "cmocka", "libsodium": "libsodium", "gnutls": "gnutls",
           "threads": None}  # threads: meson's own, no package
deps = set()
for f in ("meson.build", "units/meson.build", "services/lib/meson.build",
          "services/master/meson.build", "services/worker/meson.build",
          "services/fuse/meson.build", "services/ctl/meson.build",
          "services/generator/meson.build", "tests/unit/meson.build"):
    try:
        deps |= set(re.findall(r"(?<![_a-z])dependency\(\s*'([^']+)'", open(f"{src}/{f}").read()))
    except FileNotFoundError:
        pass
pkg = open(f"{src}/nix/package.nix").read()
def listed(attr):
    m = re.search(attr + r"\s*=\s*\[(.*?)\];", pkg, re.S)
    return m.group(1).split() if m else []
build, check = listed("buildInputs"), listed("checkInputs")
bad = []
for d in sorted(deps):
    if d not in nixpkgs:
        bad.append(f"meson.build looks up '{d}', which this test does not map to a nixpkgs "
                   "attribute: add it to nix/package.nix and to tests/nix/fileset-test.sh")
    elif nixpkgs[d] and nixpkgs[d] not in (check if d == "cmocka" else build):
        bad.append(f"meson.build looks up '{d}', but nix/package.nix's "
                   f"{'checkInputs' if d == 'cmocka' else 'buildInputs'} lack {nixpkgs[d]}")
for line in bad:
    print("FAIL " + line)
if bad:
    sys.exit(1)
print(f"ok   nix/package.nix provides all {len(deps)} libraries meson.build looks up")
PY
        exit 1
fi

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
