#!/usr/bin/env bash
# Builds the Debian 12 image that vm-tests/qemu/harness.py boots: a minimal bookworm with systemd,
# the libraries weir links, and weir itself as `meson install` puts it under /usr. The base root
# file system (the slow part, ~1 min) is cached under CACHE keyed on this script's hash; weir is
# added on every run from a build of this checkout configured with --prefix=/usr.
# Usage: build-image.sh SOURCE_ROOT CACHE [CLUSTER_YAML]
#        -> CACHE/run/{weir.qcow2,vmlinuz,initrd.img}; the YAML becomes /etc/weir/cluster.yaml.
set -euo pipefail

src=$1 cache=$2 yaml=${3:-}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

# Only what the daemons link, what the tests run inside the VMs, and a kernel.
pkgs=systemd-sysv,udev,dbus,kmod,iproute2,procps,psmisc,curl,jq,fuse3,coreutils
pkgs+=,linux-image-amd64,initramfs-tools,klibc-utils
pkgs+=,libraft2,libuv1,libfuse3-3,libcurl4,libmicrohttpd12,libjansson4,libyaml-0-2

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
rm -rf "$run/weir.raw" "$run/root"
echo "build-image: $run/weir.qcow2"
