#!/usr/bin/env bash
# Checks weir's systemd files for real: systemd-analyze verify of every unit as built, with its
# ExecStart pointing at the binaries of this build and the generator's drop-ins applied; the
# tmpfiles.d entry applied to a scratch root; the D-Bus policy parsed as XML.
# Also: after a `meson install` into a scratch DESTDIR, every Exec path of the installed units
# exists there (the daemons' install_dir and the units agree).
# Usage: verify-units.sh BUILD_ROOT SOURCE_ROOT. Exit 77 (skip) when this host cannot.
set -uo pipefail

build=$1 src=$2
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

command -v systemd-analyze >/dev/null || skip "systemd-analyze is not installed"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/weir-verify-units.XXXXXX") || fail "mktemp"
trap 'rm -rf "$tmp"' EXIT

# Can systemd-analyze verify anything in this container at all?
mkdir -p "$tmp/probe"
printf '[Service]\nType=oneshot\nExecStart=/bin/true\n' >"$tmp/probe/weir-probe.service"
if ! out=$(systemd-analyze verify --man=no "$tmp/probe/weir-probe.service" 2>&1); then
        skip "systemd-analyze verify does not work here: $out"
fi

# The units as meson configured them, with the installed daemon paths replaced by the built ones:
# verify checks that every Exec*= binary exists and is executable.
mkdir -p "$tmp/units" "$tmp/gen"
cp "$build/units/weir-master.service" "$build/units/weir-worker.service" \
        "$build/units/weir-fuse@.service" "$build/units/weir-rescan.service" \
        "$src/units/weir.target" "$tmp/units/" ||
        fail "configured units missing in $build/units"
missing=()
for d in master worker fuse; do
        exe=$build/services/$d/weir-$d
        if [ ! -x "$exe" ]; then
                missing+=("weir-$d")
                continue
        fi
        sed -i "s#^ExecStart=[^ ]*/weir-$d #ExecStart=$exe #" "$tmp/units/"*.service
done
if [ ${#missing[@]} -gt 0 ]; then
        if [ -n "${WEIR_VERIFY_STANDIN:-}" ]; then
                # Only for checking the unit syntax by hand before the daemons exist.
                for m in "${missing[@]}"; do
                        printf '#!/bin/sh\nexit 0\n' >"$tmp/$m" && chmod +x "$tmp/$m"
                        sed -i "s#^ExecStart=[^ ]*/$m #ExecStart=$tmp/$m #" "$tmp/units/"*.service
                done
                echo "note: stand-ins for ${missing[*]} (WEIR_VERIFY_STANDIN)"
        else
                skip "not built in $build: ${missing[*]}"
        fi
fi
sed -i "s#^ExecStart=[^ ]*/weir-generator #ExecStart=$build/services/generator/weir-generator #" \
        "$tmp/units/weir-rescan.service"

# The generator's output for a node with every role, so that the drop-ins are verified too.
gen=$build/services/generator/weir-generator
[ -x "$gen" ] || skip "weir-generator not built in $build"
cat >"$tmp/cluster.yaml" <<'EOF'
apiVersion: weir.io/v1
kind: Cluster
metadata: {name: verify}
spec:
  nodes:
    - {name: node1, address: 192.0.2.201, dataDir: /srv/weir data}
---
apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata: {name: hbase-data}
spec:
  mounts:
    - {mountPoint: 'http://192.0.2.1/hbase/', name: hbase}
---
apiVersion: data.fluid.io/v1alpha1
kind: AlluxioRuntime
metadata: {name: hbase-data}
spec:
  replicas: 1
  master: {replicas: 1}
  tieredstore:
    levels:
      - {mediumtype: MEM, path: /dev/shm, quota: 1Gi, high: '0.95', low: '0.7'}
EOF
echo node1 >"$tmp/node"
WEIR_CONFIG=$tmp/cluster.yaml WEIR_NODE_FILE=$tmp/node WEIR_GENERATOR_LOG=stderr \
        "$gen" "$tmp/gen" "$tmp/gen-early" "$tmp/gen-late" || fail "weir-generator failed"
for f in weir.target.wants/weir-master.service weir.target.wants/weir-worker.service \
        'weir.target.wants/weir-fuse@hbase\x2ddata.service' weir-fuse@.service.d/50-weir-node.conf; do
        [ -e "$tmp/gen/$f" ] || [ -L "$tmp/gen/$f" ] || fail "generator did not write $f"
done

# verify loads the named units and their dependencies from SYSTEMD_UNIT_PATH (the trailing ":"
# appends the system's own path for network-online.target and the like). Any output is a
# finding: systemd-analyze exits 0 on unknown keys and bad values, which it only prints.
units=("$tmp/units/weir.target" "$tmp/units/weir-master.service" "$tmp/units/weir-worker.service"
        "$tmp/units/weir-fuse@hbase\\x2ddata.service" "$tmp/units/weir-rescan.service")
out=$(SYSTEMD_UNIT_PATH="$tmp/gen:$tmp/units:" systemd-analyze verify --man=no "${units[@]}" 2>&1)
rc=$?
echo "systemd-analyze verify ${units[*]##*/}: exit $rc"
# Lines that are about the host's units, not ours, do not count.
findings=$(printf '%s\n' "$out" | grep -v '^$' | grep -F -e "$tmp" -e weir || true)
if [ "$rc" -ne 0 ] || [ -n "$findings" ]; then
        printf '%s\n' "$out"
        fail "systemd-analyze verify found problems"
fi
# Installed as meson installs them: the Exec paths must be where the binaries went.
{
        meson install -C "$build" --no-rebuild --destdir "$tmp/dest" >"$tmp/install.log" 2>&1 ||
                { cat "$tmp/install.log"; fail "meson install into a scratch DESTDIR failed"; }
        n=0
        for u in $(find "$tmp/dest" -name 'weir*.service'); do
                for p in $(sed -n 's/^Exec[A-Za-z]*=[-+!@:]*\([^ ]*\).*/\1/p' "$u"); do
                        n=$((n + 1))
                        if [ -x "$tmp/dest$p" ]; then
                                continue
                        fi
                        case " ${missing[*]} " in
                        *" ${p##*/} "*) echo "note: ${p##*/} not built, not checked"; continue ;;
                        esac
                        case $p in
                        */weir-*) fail "${u##*/} runs $p, which meson does not install there" ;;
                        *) [ -x "$p" ] || fail "${u##*/} runs $p, which does not exist here" ;;
                        esac
                done
        done
        [ "$n" -ge 5 ] || fail "found only $n Exec lines in the installed units"
        echo "installed units: all $n Exec paths exist"
}

# tmpfiles.d: create its directories under a scratch root.
if command -v systemd-tmpfiles >/dev/null; then
        systemd-tmpfiles --create --root="$tmp/root" "$src/units/weir.tmpfiles" ||
                fail "systemd-tmpfiles rejected units/weir.tmpfiles"
        for d in run/weir var/lib/weir mnt/weir; do
                [ -d "$tmp/root/$d" ] || fail "tmpfiles did not create /$d"
        done
        echo "systemd-tmpfiles --create: ok"
else
        echo "note: systemd-tmpfiles missing, tmpfiles.d not checked"
fi

# D-Bus policy: well-formed XML whose root is <busconfig>.
/usr/bin/python3 - "$src/units/io.weir.conf" <<'EOF' || fail "D-Bus policy is not valid"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "busconfig", root.tag
owns = [a.get("own_prefix") for a in root.iter("allow") if a.get("own_prefix")]
assert owns == ["io.weir"], owns
EOF
echo "D-Bus policy: ok"
echo "all weir units verified"
