#!/usr/bin/env bash
# vm-tests/debian/build-image.sh: builds the Debian 12 (bookworm) appliance image that
# vm-tests/debian/run.py boots as three weir nodes under QEMU.
#
#   1. weir from this checkout: meson setup build-vm --prefix=/usr, ninja, meson install --destdir.
#   2. A bookworm root file system with mmdebstrap (minbase, systemd, the libraries weir links, a
#      kernel). Slow (1-3 min here), so it is cached as a tarball keyed by a hash of its inputs.
#   3. The image: that root + the installed weir tree + the VM glue below (networkd from ip=,
#      autologin root on ttyS0, a readiness marker unit, /etc/weir/cluster.yaml), packed with
#      mkfs.ext4 -d and converted to qcow2. Also cached, keyed by the root's key, a hash of the
#      weir tree, the YAML and this script: an unchanged checkout reuses the image as it is.
#
# Usage: build-image.sh [--cache DIR] [--yaml FILE]
#   --cache DIR   where images live (default: vm-tests/.cache/debian, gitignored)
#   --yaml FILE   becomes /etc/weir/cluster.yaml in the image (default: vm-tests/debian/cluster.yaml)
# Prints, as its last line, the directory holding base.qcow2, vmlinuz and initrd.img.
# Exit 77 when this machine cannot build it (not root, no apt to install the tools).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
cache=$src/vm-tests/.cache/debian
yaml=$here/cluster.yaml
while [ $# -gt 0 ]; do
        case $1 in
        --cache) cache=$2; shift 2 ;;
        --yaml) yaml=$2; shift 2 ;;
        -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "build-image: unknown argument $1" >&2; exit 2 ;;
        esac
done
if [ "$(id -u)" != 0 ]; then
        echo "build-image: SKIP: needs root (mmdebstrap --mode=root, chroot, file ownership)" >&2
        exit 77
fi
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
t_start=$SECONDS
step() { printf 'build-image: [%3ds] %s\n' $((SECONDS - t_start)) "$*"; }


# --- tools -----------------------------------------------------------------------------------
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v meson >/dev/null || need+=(meson)
command -v ninja >/dev/null || need+=(ninja-build)
if [ ${#need[@]} -gt 0 ]; then
        if ! command -v apt-get >/dev/null; then
                echo "build-image: SKIP: missing ${need[*]} and no apt-get to install them" >&2
                exit 77
        fi
        step "installing missing packages with apt-get: ${need[*]}"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" \
                >"$cache/apt.log" 2>&1; then
                tail -20 "$cache/apt.log" >&2
                echo "build-image: SKIP: could not install ${need[*]} (see $cache/apt.log)" >&2
                exit 77
        fi
fi

# --- 1. weir ---------------------------------------------------------------------------------
# Our own build directory; --prefix=/usr so that units land in /lib/systemd/system and the
# generator in /lib/systemd/system-generators, where the image's systemd looks.
bdir=$src/build-vm
step "building weir in $bdir"
if [ ! -f "$bdir/build.ninja" ]; then
        meson setup "$bdir" "$src" --prefix=/usr --buildtype=debugoptimized -Dtests=false \
                >"$cache/meson-setup.log" 2>&1 || { tail -30 "$cache/meson-setup.log" >&2; exit 1; }
fi
ninja -C "$bdir" >"$cache/ninja.log" 2>&1 || { tail -40 "$cache/ninja.log" >&2; exit 1; }
destdir=$cache/destdir
rm -rf "$destdir"
meson install -C "$bdir" --destdir "$destdir" >"$cache/install.log" 2>&1 ||
        { tail -30 "$cache/install.log" >&2; exit 1; }
# The YAML must be valid before anything boots with it.
"$destdir/usr/bin/weirctl" config check "$yaml" >"$cache/config-check.log" 2>&1 ||
        { cat "$cache/config-check.log" >&2; echo "build-image: $yaml is invalid" >&2; exit 1; }

# --- 2. the base root file system (cached) ---------------------------------------------------
pkgs=systemd-sysv,udev,dbus,kmod,iproute2,procps,util-linux,fuse3,curl,ca-certificates
pkgs+=,linux-image-amd64,initramfs-tools
pkgs+=,libraft2,libuv1,libfuse3-3,libcurl4,libmicrohttpd12,libjansson4,libyaml-0-2,libsystemd0
# Removed before packing: documentation, translations, and kernel modules no VM here can use.
# (dpkg's path-exclude would save unpacking them, but it broke the install of Multi-Arch: same
# packages here: "unable to create /usr/share/doc/libcom-err2/...dpkg-new".)
trim_dirs="drivers/gpu drivers/media drivers/net/wireless drivers/net/ethernet drivers/infiniband
        drivers/staging drivers/usb drivers/bluetooth drivers/iio drivers/hid drivers/scsi
        drivers/isdn drivers/input drivers/mmc drivers/mtd drivers/nfc drivers/platform
        drivers/hwmon drivers/power drivers/thunderbolt drivers/atm drivers/pcmcia drivers/ata sound
        net/wireless net/mac80211 net/bluetooth fs/ocfs2 fs/btrfs fs/xfs fs/nfs fs/nfsd fs/smb
        fs/cifs fs/gfs2 fs/f2fs fs/ceph"
trim_dirs=$(echo $trim_dirs)  # one line: the hook puts it into a for list
customize_hook='set -e
rm -rf "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/info/* "$1"/usr/share/locale/*
rm -rf "$1"/usr/share/lintian "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*
for m in "$1"/usr/lib/modules/*; do
        for d in '"$trim_dirs"'; do rm -rf "$m/kernel/$d"; done
        chroot "$1" depmod -a "${m##*/}"
done'
# Before the packages of --include are unpacked: initramfs-tools builds its image exactly once,
# with only the modules that mount the root disk (the rest load from /lib/modules later).
essential_hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"
echo MODULES=list >"$1/etc/initramfs-tools/conf.d/weir-vm.conf"
echo COMPRESS=gzip >>"$1/etc/initramfs-tools/conf.d/weir-vm.conf"
printf "virtio_pci\nvirtio_blk\next4\n" >"$1/usr/share/initramfs-tools/modules.d/weir-vm"'
root_key=$(printf '%s\n' bookworm "$pkgs" "$essential_hook" "$customize_hook" | sha256sum | cut -c1-16)
root_tar=$cache/rootfs-$root_key.tar
if [ -f "$root_tar" ]; then
        step "base root file system: cached ($(basename "$root_tar"))"
else
        step "base root file system with mmdebstrap (not cached; 1-3 min)"
        rm -f "$cache"/rootfs-*.tar "$cache"/rootfs-*.tar.part
        if ! mmdebstrap --variant=minbase --mode=root --format=tar \
                --aptopt='APT::Install-Recommends "false"' \
                --include="$pkgs" --essential-hook="$essential_hook" \
                --customize-hook="$customize_hook" \
                bookworm "$root_tar.part" >"$cache/mmdebstrap.log" 2>&1; then
                tail -30 "$cache/mmdebstrap.log" >&2
                rm -f "$root_tar.part"
                if grep -qiE 'could not resolve|failed to fetch|temporary failure' "$cache/mmdebstrap.log"; then
                        echo "build-image: SKIP: mmdebstrap cannot reach a Debian mirror" >&2
                        exit 77
                fi
                exit 1
        fi
        mv "$root_tar.part" "$root_tar"
fi

# --- 3. the image (cached) -------------------------------------------------------------------
weir_hash=$(cd "$destdir" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
img_key=$( (echo "$root_key $weir_hash"; cat "$yaml" "$0") | sha256sum | cut -c1-16)
out=$cache/image-$img_key
if [ -f "$out/base.qcow2" ]; then
        step "image: cached ($out)"
        echo "$out"
        exit 0
fi
step "image: assembling (root $root_key, weir $weir_hash)"
work=$(mktemp -d "$cache/work.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir "$root"
tar -C "$root" -xpf "$root_tar"
# The weir tree as meson installed it. --keep-directory-symlink: /lib, /bin and /sbin are links
# into /usr on bookworm and must stay links.
tar -C "$destdir" -cf - . | tar -C "$root" --keep-directory-symlink -xpf -

# Everything the daemons link must be in the image.
missing=$(for b in "$root"/usr/bin/weir* "$root"/usr/sbin/weir* "$root"/lib/systemd/system-generators/weir*; do
        [ -f "$b" ] && chroot "$root" ldd "${b#"$root"}" | grep 'not found' || true
done)
if [ -n "$missing" ]; then
        echo "build-image: libraries missing in the image:" >&2
        echo "$missing" >&2
        exit 1
fi

install -D -m 0644 "$yaml" "$root/etc/weir/cluster.yaml"

# The node's identity comes from the kernel command line: systemd.hostname=nodeN (which the
# generator matches against the YAML's node names) and ip=ADDR:::MASK:nodeN:eth0:off, which
# systemd-network-generator turns into a .network file for systemd-networkd.
echo localhost >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$root/etc/hosts"
: >"$root/etc/machine-id"
echo "/dev/vda / ext4 rw,relatime 0 1" >"$root/etc/fstab"
mkdir -p "$root/etc/systemd/system/multi-user.target.wants" \
        "$root/etc/systemd/system/network-online.target.wants" \
        "$root/etc/systemd/system/sysinit.target.wants" "$root/etc/systemd/system/sockets.target.wants"
ln -sf /lib/systemd/system/systemd-networkd.service \
        "$root/etc/systemd/system/multi-user.target.wants/"
ln -sf /lib/systemd/system/systemd-networkd-wait-online.service \
        "$root/etc/systemd/system/network-online.target.wants/"
ln -sf /lib/systemd/system/systemd-network-generator.service \
        "$root/etc/systemd/system/sysinit.target.wants/"
ln -sf /lib/systemd/system/systemd-networkd.socket "$root/etc/systemd/system/sockets.target.wants/"
# Nothing here needs these; under TCG every second of boot counts.
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
        fstrim.timer systemd-timesyncd.service; do
        ln -sf /dev/null "$root/etc/systemd/system/$u"
done

# Autologin root on ttyS0, the console run.py drives. The kernel and systemd log to ttyS1 (a
# plain log file), so nothing but the shell writes to ttyS0. The shell: no echo, no prompt, no
# line editing, so that run.py reads only what commands print.
mkdir -p "$root/etc/systemd/system/serial-getty@ttyS0.service.d" "$root/etc/systemd/system/getty.target.wants"
cat >"$root/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200 %I dumb
EOF
ln -sf /lib/systemd/system/serial-getty@.service \
        "$root/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"
cat >"$root/root/.bash_profile" <<'EOF'
if [ "$(tty)" = /dev/ttyS0 ]; then
        stty -echo 2>/dev/null
        set +o emacs +o vi
        PS1= PS2=
        export TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 PAGER=cat
        dmesg -n 1 2>/dev/null
fi
EOF

# The readiness marker: once multi-user.target is reached (which waits for weir.target, whose
# daemons are Type=notify), say so on ttyS0 with the state of the weir units.
cat >"$root/etc/systemd/system/weir-vm-ready.service" <<'EOF'
[Unit]
Description=Tell the QEMU harness that this VM is up
After=multi-user.target serial-getty@ttyS0.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "WEIR-VM-READY $(hostname) weir.target=$(systemctl is-active weir.target) failed-units=$(systemctl list-units --state=failed --no-legend | wc -l)" >/dev/ttyS0'

[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/weir-vm-ready.service \
        "$root/etc/systemd/system/multi-user.target.wants/weir-vm-ready.service"
# A persistent journal is not needed; a volatile one is faster.
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' >"$root/etc/systemd/journald.conf.d/weir-vm.conf"

# Kernel and initrd, booted directly by QEMU.
mkdir -p "$work/out"
cp "$(ls "$root"/boot/vmlinuz-* | head -1)" "$work/out/vmlinuz"
cp "$(ls "$root"/boot/initrd.img-* | head -1)" "$work/out/initrd.img"
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/boot/*

step "image: mkfs.ext4 -d and qcow2"
truncate -s 3G "$work/root.raw"
mkfs.ext4 -q -F -L weir-root -E root_owner=0:0 -d "$root" "$work/root.raw"
qemu-img convert -O qcow2 "$work/root.raw" "$work/out/base.qcow2"
rm -f "$work/root.raw"
rm -rf "$cache"/image-*
mv "$work/out" "$out"
step "image: done, $(du -sh "$out/base.qcow2" | cut -f1) ($out)"
echo "$out"
