#!/bin/sh
# mmdebstrap's customize hook for the rvs appliance: $1 is the root filesystem's tree, $2 this
# directory. Runs on the build host; nothing here starts a service.
set -eu
root=$1
src=$2

install -D -m 644 "$src/grub.cfg" "$root/boot/grub/grub.cfg"
mkdir -p "$root/boot/efi"
cat > "$root/etc/fstab" <<FSTAB
LABEL=rvs-root  /          ext4  defaults,noatime,errors=remount-ro  0 1
LABEL=RVS-ESP   /boot/efi  vfat  defaults,nofail,umask=0077          0 2
FSTAB
echo rvs > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\trvs\n' > "$root/etc/hosts"
# Each appliance gets its own machine id and ssh host keys at first boot.
: > "$root/etc/machine-id"
rm -f "$root"/etc/ssh/ssh_host_*

# The management interface: whatever kernel NIC is left once rvs-prepare has given the data ports
# to DPDK (it runs before network-pre.target), by DHCP.
install -D -m 644 "$src/management.network" "$root/etc/systemd/network/50-management.network"

install -D -m 755 "$src/rvs-firstboot" "$root/usr/lib/rvs/rvs-firstboot"
install -D -m 755 "$src/rvs-prepare" "$root/usr/lib/rvs/rvs-prepare"
for u in rvs-firstboot.service rvs-prepare.service rvs-console-status.service rvs-console-failure.service; do
  install -D -m 644 "$src/$u" "$root/etc/systemd/system/$u"
done
install -D -m 644 "$src/rvsd-appliance.conf" "$root/etc/systemd/system/rvsd.service.d/appliance.conf"
# The package ships /etc/rvs/rvsd.toml as a template for other hardware: until the first boot has
# taken a seed or written a starting configuration (and the operator has reviewed it), rvsd waits.
touch "$root/etc/rvs/UNCONFIGURED"
chroot "$root" systemctl enable --quiet systemd-networkd.service rvs-firstboot.service \
  rvs-prepare.service rvsd.service rvs-console-status.service ssh.service
# Distribution daemons the operator starts when configured (keepalived for VRRP, bird for BGP).
chroot "$root" systemctl disable --quiet keepalived.service bird.service 2>/dev/null || true
