#!/usr/bin/env bash
# Builds the rvs appliance: a bootable Debian 12 disk image (raw and qcow2, BIOS and UEFI on one
# disk) holding the rvs package, the DPDK runtime, keepalived and BIRD 2, ssh and a serial console.
#
#   images/build-image.sh [--deb FILE] [--out DIR] [--root-password PW] [--size-mib N]
#
# Without --deb the package is built first (images/build-deb.sh). The image boots with GRUB from
# either firmware: a BIOS boot partition holds GRUB's core image (the MBR's boot code points at
# it) and the EFI system partition \EFI\BOOT\BOOTX64.EFI; both search the root filesystem by its
# label and read /boot/grub/grub.cfg there, which boots /vmlinuz and /initrd.img (the symlinks a
# kernel upgrade moves). No loop device, mount or chroot of the disk is needed: the filesystems are
# made from directories (mkfs.ext4 -d, mtools) and placed in the disk file at their offsets.
#
# The appliance's own files are in images/appliance/ (systemd units, first boot, the GRUB
# configuration); what they do is in docs/appliance.md. Needs root (mmdebstrap --mode=root) and
# the tools images/setup-image-tools.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)

deb=""
out_dir="target/image"
root_password="rvs"
size_mib=0
while [ $# -gt 0 ]; do
  case "$1" in
    --deb) deb="$2"; shift 2 ;;
    --out) out_dir="$2"; shift 2 ;;
    --root-password) root_password="$2"; shift 2 ;;
    --size-mib) size_mib="$2"; shift 2 ;;
    *) echo "build-image: unknown argument $1 (usage: build-image.sh [--deb FILE] [--out DIR] [--root-password PW] [--size-mib N])" >&2; exit 2 ;;
  esac
done
for t in mmdebstrap mkfs.ext4 mkfs.vfat mcopy mmd sfdisk grub-mkimage qemu-img; do
  command -v "$t" >/dev/null || { echo "build-image: $t is missing: run images/setup-image-tools.sh" >&2; exit 1; }
done
for d in /usr/lib/grub/i386-pc /usr/lib/grub/x86_64-efi; do
  [ -d "$d" ] || { echo "build-image: $d is missing: run images/setup-image-tools.sh" >&2; exit 1; }
done
if [ -z "$deb" ]; then
  bash images/build-deb.sh --out "$out_dir"
  deb=$(ls -t "$out_dir"/rvs_*_amd64.deb | head -n1)
fi
[ -f "$deb" ] || { echo "build-image: no package $deb" >&2; exit 1; }
deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

# The root filesystem: Debian 12 with the kernel, systemd, ssh, the DPDK runtime (and its
# dpdk-devbind.py), keepalived, BIRD 2 and the rvs package (apt resolves its dependencies).
packages=(
  linux-image-amd64 initramfs-tools systemd-sysv udev kmod dbus
  openssh-server keepalived bird2 dpdk
  iproute2 ethtool pciutils procps curl less iputils-ping ca-certificates python3
)
# The DPDK drivers the package recommends (the NICs' PMDs, plugins the EAL loads at run time):
# mmdebstrap's apt installs no recommendations, so they are named here.
for p in $(dpkg-deb -f "$deb" Recommends | tr ',' ' '); do
  case "$p" in librte-*) packages+=("$p") ;; esac
done
echo "build-image: debootstrapping (mmdebstrap) with $(basename "$deb")"
mmdebstrap --variant=apt --mode=root --quiet \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --customize-hook="copy-in $deb /tmp" \
  --customize-hook="chroot \"\$1\" apt-get install -y --no-install-recommends /tmp/$(basename "$deb")" \
  --customize-hook="rm -f \"\$1\"/tmp/$(basename "$deb")" \
  --customize-hook="$here/images/appliance/customize.sh \"\$1\" \"$here/images/appliance\"" \
  bookworm "$rootfs" http://deb.debian.org/debian
echo "root:$root_password" | chroot "$rootfs" chpasswd
# The password must be changed at the first login (console or ssh).
chroot "$rootfs" chage -d 0 root

# Sizes in MiB: BIOS boot 1, ESP 32, root what the tree needs plus a quarter and 256 MiB free.
used=$(du -sm --apparent-size "$rootfs" | cut -f1)
root_mib=$(( used + used / 4 + 256 ))
total_mib=$(( 1 + 1 + 32 + root_mib + 1 ))
if [ "$size_mib" -gt "$total_mib" ]; then
  root_mib=$(( size_mib - 36 ))
  total_mib=$size_mib
fi
disk="$out_dir/rvs-appliance.raw"
rm -f "$disk"
truncate -s "${total_mib}M" "$disk"
# GPT: the BIOS boot partition (GRUB's core image), the ESP, the root filesystem.
sfdisk --quiet "$disk" <<PARTS
label: gpt
start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, name="bios-boot"
start=4096, size=$(( 32 * 2048 )), type=C12A7328-F81F-11D2-BA4B-00A0C93EC3B8, name="esp"
start=$(( 4096 + 32 * 2048 )), size=$(( root_mib * 2048 )), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="rvs-root"
PARTS

# GRUB, both firmwares: the same early configuration finds the root filesystem by label.
cat > "$work/early.cfg" <<'CFG'
search --no-floppy --label rvs-root --set=root
set prefix=($root)/boot/grub
configfile $prefix/grub.cfg
CFG
mods="part_gpt part_msdos ext2 fat search search_label configfile normal linux echo test serial terminal gzio xzio zstd sleep cat ls"
grub-mkimage -O i386-pc -o "$work/core.img" -c "$work/early.cfg" -p /boot/grub biosdisk $mods
grub-mkimage -O x86_64-efi -o "$work/BOOTX64.EFI" -c "$work/early.cfg" -p /boot/grub $mods efi_gop efi_uga
core_sectors=$(( ($(stat -c %s "$work/core.img") + 511) / 512 ))
[ "$core_sectors" -le 2048 ] || { echo "build-image: GRUB's core image does not fit the BIOS boot partition" >&2; exit 1; }
python3 "$here/images/appliance/bios-boot.py" "$disk" /usr/lib/grub/i386-pc/boot.img "$work/core.img" 2048

# The ESP (FAT, made in a file with mtools) and the root filesystem (ext4 from the tree).
mkfs.vfat -n RVS-ESP -C "$work/esp.img" $(( 32 * 1024 )) >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.img" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
mkfs.ext4 -q -L rvs-root -d "$rootfs" "$work/root.img" "${root_mib}M"
dd if="$work/esp.img" of="$disk" bs=1M seek=2 conv=notrunc status=none
dd if="$work/root.img" of="$disk" bs=1M seek=34 conv=notrunc status=none
qemu-img convert -c -O qcow2 "$disk" "$out_dir/rvs-appliance.qcow2"
echo "build-image: $disk ($(du -h --apparent-size "$disk" | cut -f1)) and $out_dir/rvs-appliance.qcow2 ($(du -h "$out_dir/rvs-appliance.qcow2" | cut -f1))"
