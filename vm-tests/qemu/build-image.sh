#!/usr/bin/env bash
# Builds the Debian 12 images that vm-tests/qemu/harness.py boots: a minimal bookworm with systemd,
# busybox (the operator's toolbox), the libraries weir links, and weir itself as `meson install`
# puts it under /usr. The base root file system (the slow part, ~1-2 min) is cached under CACHE
# keyed on its inputs; weir is added on every run from a build of this checkout configured with
# --prefix=/usr. Two disks of the same system:
#   weir.qcow2     one ext4 file system, booted with QEMU's -kernel (the cluster nodes);
#   weir-efi.raw   GPT: an EFI system partition with systemd-boot, the kernel and initrd, and the
#                  root file system, booted by UEFI firmware (OVMF) as a single node `efi` with
#                  a local:// dataset: the bare-metal path, the same layout that `dd` writes to
#                  a disk.
# Usage: build-image.sh SOURCE_ROOT CACHE [CLUSTER_YAML]
#        -> CACHE/run/{weir.qcow2,weir-efi.raw,vmlinuz,initrd.img}; the YAML becomes
#        /etc/weir/cluster.yaml of weir.qcow2.
set -euo pipefail

src=$1 cache=$2 yaml=${3:-}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

# Only what the daemons link, what the tests run inside the VMs, and a kernel.
pkgs=systemd-sysv,udev,dbus,kmod,iproute2,procps,psmisc,curl,jq,fuse3,coreutils,busybox
pkgs+=,systemd-boot-efi
pkgs+=,linux-image-amd64,initramfs-tools,klibc-utils
pkgs+=,libraft2,libuv1,libfuse3-3,libcurl4,libmicrohttpd12,libjansson4,libyaml-0-2,libsodium23,libgnutls30,liblmdb0,libxxhash0

# Run in the new root before it is packed: an initramfs that mounts /dev/vda and brings eth0 up
# from ip=, an fstab, no machine-id (systemd makes one per boot), and less to copy.
hook='
        set -e
        root=$1
        sed -i "s/^MODULES=.*/MODULES=list/" "$root/etc/initramfs-tools/initramfs.conf"
        printf "virtio_pci\nvirtio_blk\nvirtio_net\next4\n" >>"$root/etc/initramfs-tools/modules"
        chroot "$root" update-initramfs -u -k all
        echo "/dev/vda / ext4 rw,relatime 0 1" >"$root/etc/fstab"
        : >"$root/etc/machine-id"
        rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        mods=$(echo "$root"/usr/lib/modules/*)
        for d in gpu media net/wireless infiniband staging usb bluetooth iio hid; do
                rm -rf "$mods/kernel/drivers/$d"
        done
        rm -rf "$mods/kernel/sound"
        chroot "$root" depmod -a "$(basename "$mods")"
'

# The cache key covers what goes into the base, nothing else.
key=$(printf '%s\n%s\n' "$pkgs" "$hook" | sha256sum | cut -c1-16)
base=$cache/base-$key.tar
if [ ! -f "$base" ]; then
        echo "build-image: base root file system (~1 min, cached as $(basename "$base"))"
        rm -f "$cache"/base-*.tar "$cache"/tmp-*.tar
        # A tarball (the name says so), never a directory: nothing stays mounted in the cache.
        mmdebstrap --variant=minbase --mode=root --include="$pkgs" --customize-hook="$hook" \
                bookworm "$cache/tmp-$key.tar" >"$cache/mmdebstrap.log" 2>&1 ||
                { tail -20 "$cache/mmdebstrap.log"; exit 1; }
        mv "$cache/tmp-$key.tar" "$base"
fi

# weir, built for /usr (the way a Debian package would install it).
build=$cache/build
if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" "$src" --prefix=/usr -Dtests=false >"$cache/meson.log" 2>&1 ||
                { tail -20 "$cache/meson.log"; exit 1; }
fi
ninja -C "$build" >"$cache/ninja.log" 2>&1 || { tail -30 "$cache/ninja.log"; exit 1; }

run=$cache/run
rm -rf "$run"
mkdir -p "$run/root"
tar -C "$run/root" -xf "$base"
DESTDIR=$run/root meson install -C "$build" --no-rebuild >"$cache/install.log" 2>&1 ||
        { tail -20 "$cache/install.log"; exit 1; }

root=$run/root
if [ -n "$yaml" ]; then
        install -D -m 0644 "$yaml" "$root/etc/weir/cluster.yaml"
fi
# The test agent on the second serial port (ttyS1): one command a line, base64 in and out, so
# that the host never parses a shell prompt. It starts early; the host waits for boot itself.
install -D -m 0755 "$src/vm-tests/qemu/agent.sh" "$root/usr/local/sbin/weir-test-agent"
cat >"$root/etc/systemd/system/weir-test-agent.service" <<UNIT
[Unit]
Description=weir QEMU harness agent on ttyS1
DefaultDependencies=no
After=systemd-udevd.service
Wants=systemd-udevd.service

[Service]
ExecStart=/usr/local/sbin/weir-test-agent /dev/ttyS1
Restart=always

[Install]
WantedBy=sysinit.target
UNIT
mkdir -p "$root/etc/systemd/system/sysinit.target.wants"
ln -sf ../weir-test-agent.service "$root/etc/systemd/system/sysinit.target.wants/"
# The kernel's ip= becomes a .network file (systemd-network-generator) that systemd-networkd
# applies; wait-online makes network-online.target mean "eth0 has its address".
chroot "$root" systemctl -q enable systemd-networkd.service systemd-network-generator.service \
        systemd-networkd-wait-online.service
# TCG on a loaded two-core host starves the VMs for seconds at a time: with the units' 10 s
# watchdog, systemd killed weir-master during boot and weir-fuse when a peer went away (runs of
# 6 Dec 2026). A minute here still catches a daemon that hangs; the NixOS tests (KVM) keep 10 s.
# WEIR_VM_WATCHDOG=unit keeps the units' own value (to see whether the daemons now cope).
watchdog=${WEIR_VM_WATCHDOG:-60s}
[[ $watchdog == unit || $watchdog =~ ^[1-9][0-9]*(ms|s|min)?$ ]] ||
        { echo "build-image: WEIR_VM_WATCHDOG=$watchdog: expected a duration (60s, 2min) or 'unit'" >&2; exit 1; }
if [ "$watchdog" != unit ]; then
        for u in weir-master.service weir-worker.service weir-fuse@.service; do
                mkdir -p "$root/etc/systemd/system/$u.d"
                printf '[Service]\nWatchdogSec=%s\n' "$watchdog" \
                        >"$root/etc/systemd/system/$u.d/50-tcg-watchdog.conf"
        done
fi
# WEIR_VM_FUSE_DEBUG=1: weir-fuse logs at debug level (each source a read tried and why it
# failed: a timed-out peer worker or master shows in journal.txt), for a failure to explain.
if [ "${WEIR_VM_FUSE_DEBUG:-0}" = 1 ]; then
        mkdir -p "$root/etc/systemd/system/weir-fuse@.service.d"
        printf '[Service]\nEnvironment=WEIR_LOG_LEVEL=debug\n' \
                >"$root/etc/systemd/system/weir-fuse@.service.d/60-debug.conf"
fi
# Faster, quieter boots; no console getty needed.
ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$root/etc/systemd/system/getty@tty1.service"
ln -sf /dev/null "$root/etc/systemd/system/systemd-timesyncd.service"
# The one thing Debian's packaging would add: the weir units enabled for rescan (DHCP) hosts.
ln -sf /usr/lib/systemd/system/weir-rescan.service \
        "$root/etc/systemd/system/multi-user.target.wants/weir-rescan.service"

cp "$root"/boot/vmlinuz-* "$run/vmlinuz"
cp "$root"/boot/initrd.img-* "$run/initrd.img"
truncate -s 1200M "$run/weir.raw"
mkfs.ext4 -q -L weir -d "$root" "$run/weir.raw"
qemu-img convert -O qcow2 "$run/weir.raw" "$run/weir.qcow2"
rm -f "$run/weir.raw"
echo "build-image: $run/weir.qcow2"

# The EFI disk: the same root, as the single node `efi` (found by host name) with a local
# dataset, its root file system on the second partition.
echo "/dev/vda2 / ext4 rw,relatime 0 1" >"$root/etc/fstab"
mkdir -p "$root/srv/data"
echo "hello from the local store" >"$root/srv/data/hello.txt"
mkdir -p "$root/etc/weir"
cat >"$root/etc/weir/cluster.yaml" <<YAML
apiVersion: weir.io/v1
kind: Cluster
metadata: {name: efi}
spec:
  nodes:
    - {name: efi, address: 127.0.0.1}
---
apiVersion: data.fluid.io/v1alpha1
kind: Dataset
metadata: {name: local}
spec:
  mounts:
    - {mountPoint: "local:///srv/data", name: data}
---
apiVersion: data.fluid.io/v1alpha1
kind: Runtime
metadata: {name: local}
spec:
  tieredstore:
    levels:
      - {mediumtype: MEM, path: /dev/shm, quota: 64Mi, high: "0.95", low: "0.7"}
YAML
esp_mib=64 root_mib=1200
truncate -s 1200M "$run/efi-root.img"
mkfs.ext4 -q -L weir -d "$root" "$run/efi-root.img"
# systemd-boot as the removable-media loader (no NVRAM entry needed), one entry, no menu.
efi=$root/usr/lib/systemd/boot/efi/systemd-bootx64.efi
[ -f "$efi" ] || { echo "build-image: no $efi (package systemd-boot-efi)"; exit 1; }
rm -f "$run/esp.img"
mkfs.vfat -n ESP -C "$run/esp.img" $((esp_mib * 1024)) >/dev/null
mmd -i "$run/esp.img" ::/EFI ::/EFI/BOOT ::/loader ::/loader/entries
mcopy -i "$run/esp.img" "$efi" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$run/esp.img" "$run/vmlinuz" ::/vmlinuz
mcopy -i "$run/esp.img" "$run/initrd.img" ::/initrd.img
printf 'timeout 0\ndefault weir.conf\n' | mcopy -i "$run/esp.img" - ::/loader/loader.conf
printf '%s\n' "title weir appliance" "linux /vmlinuz" "initrd /initrd.img" \
        "options root=/dev/vda2 rw console=ttyS0 net.ifnames=0 panic=-1 ip=10.0.0.9::10.0.0.254:255.255.255.0:efi:eth0:off systemd.hostname=efi" |
        mcopy -i "$run/esp.img" - ::/loader/entries/weir.conf
disk=$run/weir-efi.raw
rm -f "$disk"
truncate -s $((1 + esp_mib + root_mib + 1))M "$disk"
sfdisk -q "$disk" <<PARTS
label: gpt
start=1MiB, size=${esp_mib}MiB, type=uefi, name=ESP
start=$((1 + esp_mib))MiB, size=${root_mib}MiB, type=linux, name=root
PARTS
dd if="$run/esp.img" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$run/efi-root.img" of="$disk" bs=1M seek=$((1 + esp_mib)) conv=notrunc,sparse status=none
rm -rf "$run/esp.img" "$run/efi-root.img" "$run/root"
echo "build-image: $disk"
for f in weir.qcow2 weir-efi.raw; do
        echo "build-image: $f $(du -k --apparent-size "$run/$f" | cut -f1) KiB apparent," \
                "$(du -k "$run/$f" | cut -f1) KiB allocated"
done
