#!/usr/bin/env bash
# Installs what weir needs to build (and, with "check"/"demo", to test or run the demo; "vm", or
# "check" with WEIR_VM_TESTS=1, for the QEMU harness) on Debian 12.
# Says what it installs; installs nothing when everything is present; never calls apt under
# `nix develop` (IN_NIX_SHELL), where the flake's devShell provides the same tools.
set -euo pipefail

what=${1:-build}

build_pkgs=(meson ninja-build pkg-config gcc libraft-dev liblmdb-dev libuv1-dev libfuse3-dev fuse3
            libcurl4-openssl-dev libmicrohttpd-dev libjansson-dev libyaml-dev libsystemd-dev
            libxxhash-dev libcmocka-dev clang-format libsodium-dev libgnutls28-dev)
check_pkgs=(python3-pytest nginx apache2 dbus clang libclang-rt-14-dev curl nix-bin systemd
            iproute2 psmisc procps gnutls-bin nodejs npm
            nftables) # nftables: bench/chaos partitions the leader
demo_pkgs=(nginx curl psmisc procps)
# The QEMU harness (vm-tests/qemu; "check" adds them under WEIR_VM_TESTS=1): QEMU, OVMF (UEFI
# firmware), mmdebstrap for the Debian image, sfdisk, mkfs.vfat and mtools for its GPT EFI disk,
# busybox (the scenarios' operator commands), nginx (the remote store).
vm_pkgs=(qemu-system-x86 qemu-utils mmdebstrap ovmf busybox dosfstools mtools fdisk e2fsprogs
         nginx)

case "$what" in
build) pkgs=("${build_pkgs[@]}") ;;
check)
        pkgs=("${build_pkgs[@]}" "${check_pkgs[@]}")
        [ "${WEIR_VM_TESTS:-}" != 1 ] || pkgs+=("${vm_pkgs[@]}")
        ;;
vm) pkgs=("${vm_pkgs[@]}") ;;
demo) pkgs=("${build_pkgs[@]}" "${demo_pkgs[@]}") ;;
*)
        echo "usage: $0 build|check|demo|vm" >&2
        exit 2
        ;;
esac

if [ -n "${IN_NIX_SHELL:-}" ]; then
        exit 0
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
        for p in raft lmdb libuv fuse3 libcurl libmicrohttpd jansson yaml-0.1 libsystemd libsodium \
                 libxxhash gnutls cmocka; do
                pkg-config --exists "$p" || {
                        echo "deps: not a Debian system and pkg-config cannot find '$p'." >&2
                        echo "deps: install it, or use 'nix develop'." >&2
                        exit 1
                }
        done
        exit 0
fi

missing=()
for p in "${pkgs[@]}"; do
        # A Node.js from elsewhere (NodeSource's nodejs ships npm and conflicts with Debian's npm
        # package): the commands are what the tests need.
        case "$p" in
        nodejs) ! command -v node >/dev/null 2>&1 || continue ;;
        npm) ! command -v npm >/dev/null 2>&1 || continue ;;
        esac
        status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        [ "$status" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${#missing[@]} Debian package(s) for '$what': ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || {
                echo "deps: need root (or sudo) to run apt-get; install them by hand." >&2
                exit 1
        }
        sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
# Services that packages would start (nginx, apache2) are not wanted: tests run private ones.
"${sudo[@]}" env RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: done."
