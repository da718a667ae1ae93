#!/usr/bin/env bash
# Every shared library the built daemons need directly comes from a package that the QEMU
# image's list (build-image.sh) names, or from one that systemd brings (libc6, libsystemd0).
# A library added to meson.build without its runtime package here fails this, not a VM boot.
# Usage: check-image-libs.sh BUILD_DIR   (exit 77 without dpkg: not a Debian system)
set -eu # no pipefail: awk and head stop reading early on purpose
build=$1
here=$(cd "$(dirname "$0")" && pwd)
command -v dpkg >/dev/null 2>&1 && command -v readelf >/dev/null 2>&1 || {
        echo "no dpkg or readelf: cannot map libraries to Debian packages"
        exit 77
}
list=$(sed -n 's/^pkgs+\{0,1\}=,\{0,1\}//p' "$here/build-image.sh" | tr ',' '\n')
missing=0
for bin in master/weir-master worker/weir-worker fuse/weir-fuse ctl/weirctl \
           generator/weir-generator; do
        for lib in $(readelf -d "$build/services/$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
                path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64|x86_64|64bit/ {print $NF; exit}')
                [ -n "$path" ] || path=$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')
                pkg=
                # dpkg knows a file by the path its package ships (/lib or /usr/lib: usrmerge)
                for p in "$path" "$(readlink -f "$path")" "${path#/usr}" "/usr$path"; do
                        pkg=$(dpkg -S "$p" 2>/dev/null | head -n1 | cut -d: -f1 || true)
                        [ -z "$pkg" ] || break
                        real=$(readlink -f "$p" 2>/dev/null || true)
                        [ -z "$real" ] || pkg=$(dpkg -S "${real#/usr}" 2>/dev/null | head -n1 | cut -d: -f1 || true)
                        [ -z "$pkg" ] || break
                done
                [ -n "$pkg" ] || { echo "$bin: no package owns $lib ($path)"; missing=1; continue; }
                case "$pkg" in
                libc6 | libsystemd0) continue ;;
                esac
                if ! grep -qx "$pkg" <<<"$list"; then
                        echo "$bin needs $lib from $pkg, which vm-tests/qemu/build-image.sh does not install"
                        missing=1
                fi
        done
done
[ "$missing" -eq 0 ] && echo "every library the daemons load is in the image's package list"
exit "$missing"
