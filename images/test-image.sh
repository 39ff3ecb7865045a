#!/usr/bin/env bash
# Builds the appliance image and boots it under QEMU as a director (issue 17's image test):
#
#   images/test-image.sh [--image FILE.qcow2]
#
# The guest gets two virtio-net NICs on TAP devices in a "router" namespace and a seed drive
# (RVS-SEED: rvsd.toml naming the NICs' PCI addresses, the rules). At boot rvs-firstboot takes the
# seed, rvs-prepare reserves hugepages and binds both NICs for DPDK (uio_pci_generic: the VM has no
# virtual IOMMU and Debian's kernel no vfio no-IOMMU mode), rvsd drives them with DPDK's virtio PMD, and a client namespace's curl requests
# to the VIP are balanced (NAT) between two nginx real servers in their own namespaces. The test
# reads the guest's serial console (firstboot, prepare, rvsd's services) and the client's answers.
# Then the same image boots from UEFI (OVMF) to its login prompt.
#
# KVM is used when it boots a guest here; where it cannot (nested virtualisation that faults), TCG
# emulation runs and the test says so. Takes 5-10 minutes with TCG, most of it the build.
set -euo pipefail
cd "$(dirname "$0")/.."
image=""
while [ $# -gt 0 ]; do
  case "$1" in
    --image) image="$2"; shift 2 ;;
    *) echo "test-image: unknown argument $1 (usage: test-image.sh [--image FILE.qcow2])" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "test-image: needs root (namespaces, TAP devices, mmdebstrap)" >&2; exit 1; }
start=$(date +%s)
if [ -z "$image" ]; then
  bash scripts/setup.sh
  bash images/setup-image-tools.sh
  bash images/build-image.sh --out target/image
  image=target/image/rvs-appliance.qcow2
else
  bash images/setup-image-tools.sh
fi
built=$(date +%s)

P=rvsimg
W=$(mktemp -d /tmp/rvs-image-test.XXXXXX)
qemu_pid=""
cleanup() {
  [ -z "$qemu_pid" ] || kill "$qemu_pid" 2>/dev/null || true
  for n in r c s1 s2; do
    ip netns pids "$P$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$P$n" 2>/dev/null || true
  done
  [ -n "${RVS_KEEP_TEST_DIR:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
ns() { local n=$1; shift; ip netns exec "$P$n" "$@"; }
fail() {
  echo "test-image: FAIL: $*" >&2
  echo "--- the guest's console (last 60 lines) ---" >&2
  tail -n 60 "$W/console.log" 2>/dev/null | tr -d '\r' >&2 || true
  exit 1
}

# Namespaces: client c (198.51.100.10) -- router r (198.51.100.1; 192.0.2.1 on the guest's
# front TAP; a bridge with the guest's back TAP and the servers) -- servers s1, s2
# (203.0.113.11/.12, gateway the director's back address 203.0.113.1: LVS-NAT).
cleanup
for n in r c s1 s2; do
  ip netns add "$P$n"
  ns "$n" ip link set lo up
  ns "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ns r sysctl -qw net.ipv4.ip_forward=1
ip link add "${P}c0" netns "${P}c" type veth peer name "${P}rc" netns "${P}r"
ns c ip link set "${P}c0" up
ns c ip addr add 198.51.100.10/24 dev "${P}c0"
ns c ip route add default via 198.51.100.1
ns c ethtool -K "${P}c0" tx off >/dev/null
ns r ip link set "${P}rc" up
ns r ip addr add 198.51.100.1/24 dev "${P}rc"
ns r ethtool -K "${P}rc" tx off >/dev/null
ns r ip link add "${P}br" type bridge
ns r ip link set "${P}br" up
for i in 1 2; do
  ip link add "${P}b$i" netns "${P}r" type veth peer name eth0 netns "${P}s$i"
  ns r ip link set "${P}b$i" master "${P}br" up
  ns r ethtool -K "${P}b$i" tx off >/dev/null
  ns "s$i" ip link set eth0 up
  ns "s$i" ip addr add "203.0.113.1$i/24" dev eth0
  ns "s$i" ip route add default via 203.0.113.1
  ns "s$i" ethtool -K eth0 tx off >/dev/null
  mkdir -p "$W/s$i/www"
  echo "s$i" > "$W/s$i/www/index.html"
  cat > "$W/s$i/nginx.conf" <<NGINX
worker_processes 1;
pid $W/s$i/nginx.pid;
error_log $W/s$i/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $W/s$i/body;
    proxy_temp_path $W/s$i/proxy;
    fastcgi_temp_path $W/s$i/fastcgi;
    uwsgi_temp_path $W/s$i/uwsgi;
    scgi_temp_path $W/s$i/scgi;
    server { listen 80; root $W/s$i/www; location / { default_type text/plain; } }
}
NGINX
  ns "s$i" nginx -c "$W/s$i/nginx.conf" -g 'user root;'
done

# The seed: the director's configuration for the guest's two virtio NICs (PCI 00:04.0, 00:05.0).
cat > "$W/rvsd.toml" <<TOML
[eal]
main_lcore = 0
worker_lcores = [1]
memory_mib = 256
hugepages = true

[mempool]
mbufs = 8191
cache_size = 128

[[port]]
name = "front"
device = "0000:00:04.0"
address = "192.0.2.2/24"

[[port]]
name = "back"
device = "0000:00:05.0"
address = "203.0.113.1/24"

[forwarding]
mode = "director"

[[route]]
destination = "0.0.0.0/0"
gateway = "192.0.2.1"

[control]
rules_file = "/etc/rvs/rules"
TOML
cat > "$W/rules" <<'RULES'
-A -t 192.0.2.80:80 -s rr
-a -t 192.0.2.80:80 -r 203.0.113.11:80 -m -w 1
-a -t 192.0.2.80:80 -r 203.0.113.12:80 -m -w 1
RULES
mkfs.vfat -n RVS-SEED -C "$W/seed.img" 1024 >/dev/null
mcopy -i "$W/seed.img" "$W/rvsd.toml" "$W/rules" ::/

# KVM if it boots a guest here: a short probe of the image itself (a guest that faults resets to
# the BIOS again; one that works prints the kernel's banner).
accel=tcg
if [ -w /dev/kvm ]; then
  # (In a shell of its own: a QEMU that aborts on the host's KVM is reported there, not here.)
  bash -c 'timeout 25 qemu-system-x86_64 -accel kvm -cpu host -m 1024 -smp 1 -snapshot -display none \
    -monitor none -nic none -serial "file:$1" -drive "file=$2,if=virtio,format=qcow2" >/dev/null 2>&1; exit $?' \
    probe "$W/probe.log" "$image" 2>/dev/null || true
  if grep -aq "Linux version" "$W/probe.log" 2>/dev/null; then accel=kvm; fi
fi
if [ "$accel" = kvm ]; then cpu=host; else cpu=max; fi
echo "test-image: booting with $accel"

nic_opts="csum=off,guest_csum=off,gso=off,guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off,host_tso4=off,host_tso6=off,host_ecn=off,host_ufo=off,mrg_rxbuf=off"
ns r qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -m 2048 -smp 2 -snapshot -display none -monitor none \
  -serial "file:$W/console.log" \
  -drive "file=$image,if=virtio,format=qcow2" \
  -drive "file=$W/seed.img,if=virtio,format=raw" \
  -netdev "tap,id=front,ifname=${P}tf,script=no,downscript=no,vhost=off" \
  -device "virtio-net-pci,netdev=front,addr=0x4,mac=52:54:00:12:34:01,$nic_opts" \
  -netdev "tap,id=back,ifname=${P}tb,script=no,downscript=no,vhost=off" \
  -device "virtio-net-pci,netdev=back,addr=0x5,mac=52:54:00:12:34:02,$nic_opts" &
qemu_pid=$!
for _ in $(seq 50); do ns r ip link show "${P}tb" >/dev/null 2>&1 && break; sleep 0.1; done
ns r ip link set "${P}tf" up
ns r ip addr add 192.0.2.1/24 dev "${P}tf"
ns r ip link set "${P}tb" master "${P}br" up

# The guest is ready once rvs-console-status has printed rvsd's services.
deadline=$(( $(date +%s) + 600 ))
until grep -aq "rvs: rvsd is running" "$W/console.log" 2>/dev/null; do
  kill -0 "$qemu_pid" 2>/dev/null || fail "QEMU exited"
  [ "$(date +%s)" -lt "$deadline" ] || fail "no director within 10 minutes of boot"
  if grep -aq "Failed to start.*rvsd\|rvsd.service: Failed" "$W/console.log"; then fail "rvsd did not start"; fi
  sleep 2
done
booted=$(date +%s)
for want in "rvs-firstboot: seed: /etc/rvs/rvsd.toml" "passes rvsd --check; rvsd will start" \
            "rvs-prepare: 0000:00:04.0: virtio-pci -> " "rvs-prepare: 0000:00:05.0: virtio-pci -> " \
            "hugepages of" "TCP  192.0.2.80:80 rr"; do
  grep -aq "$want" "$W/console.log" || fail "the console lacks \"$want\""
done

# The client's requests, balanced between the two servers through the guest's DPDK ports.
answers=""
for i in $(seq 20); do
  a=$(ns c curl -s -m 5 http://192.0.2.80/ || true)
  answers="$answers ${a:-x}"
done
s1=$(echo "$answers" | tr ' ' '\n' | grep -c '^s1$' || true)
s2=$(echo "$answers" | tr ' ' '\n' | grep -c '^s2$' || true)
echo "test-image: 20 requests to 192.0.2.80: s1 answered $s1, s2 answered $s2 ($answers )"
[ "$s1" -ge 8 ] && [ "$s2" -ge 8 ] && [ $(( s1 + s2 )) -ge 19 ] || fail "not balanced: s1 $s1, s2 $s2"
kill "$qemu_pid"; wait "$qemu_pid" 2>/dev/null || true; qemu_pid=""

# UEFI: the same image from OVMF to the login prompt (OVMF's flash does not run under nested KVM
# here, so this boot is TCG whatever the first one used).
timeout 600 qemu-system-x86_64 -accel tcg -cpu max -m 1024 -smp 2 -snapshot -display none -monitor none \
  -bios /usr/share/ovmf/OVMF.fd -nic none -serial "file:$W/uefi.log" \
  -drive "file=$image,if=virtio,format=qcow2" >/dev/null 2>&1 &
qemu_pid=$!
deadline=$(( $(date +%s) + 600 ))
until grep -aq "rvs login:" "$W/uefi.log" 2>/dev/null; do
  kill -0 "$qemu_pid" 2>/dev/null || { cp "$W/uefi.log" "$W/console.log"; fail "UEFI boot: QEMU exited before the login prompt"; }
  [ "$(date +%s)" -lt "$deadline" ] || { cp "$W/uefi.log" "$W/console.log"; fail "UEFI boot: no login prompt"; }
  sleep 2
done
grep -aq "Welcome to GRUB" "$W/uefi.log" || fail "UEFI boot did not go through GRUB"
end=$(date +%s)
echo "test-image: ok ($accel; build $((built - start)) s, BIOS boot to a balancing director $((booted - built)) s, UEFI boot to login $((end - booted)) s)"
