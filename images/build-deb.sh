#!/usr/bin/env bash
# Builds rvs_<version>_amd64.deb with dpkg-deb: rvsd and rvsadm with their manual pages and rvsadm's
# bash, zsh and fish completions, the systemd unit, the starting
# configuration as conffiles under /etc/rvs/, the Grafana dashboard with provisioning files, the
# Prometheus alert rules, example keepalived pairs and BIRD files under /usr/share/rvs/, the docs.
#
#   images/build-deb.sh [--binaries DIR] [--out DIR] [--fast]
#
# --binaries takes rvsd and rvsadm from DIR instead of building them (cargo build --release); the
# test suite packages the (debug) binaries it has just built, with --fast (gzip -1 instead of xz,
# seconds instead of a minute for ~100 MB of debug binary). Runtime dependencies are worked out by
# dpkg-shlibdeps from the binaries' shared libraries (libdpdk's, libc's).
set -euo pipefail
cd "$(dirname "$0")/.."

bin_dir=""
out_dir="target/deb"
compress=(-Zxz)
while [ $# -gt 0 ]; do
  case "$1" in
    --binaries) bin_dir="$2"; shift 2 ;;
    --out) out_dir="$2"; shift 2 ;;
    --fast) compress=(-Zgzip -z1); shift ;;
    *) echo "build-deb: unknown argument $1 (usage: build-deb.sh [--binaries DIR] [--out DIR] [--fast])" >&2; exit 2 ;;
  esac
done
if [ -z "$bin_dir" ]; then
  cargo build --release --locked --bin rvsd --bin rvsadm
  bin_dir="target/release"
fi
for b in rvsd rvsadm; do
  [ -x "$bin_dir/$b" ] || { echo "build-deb: $bin_dir/$b is missing" >&2; exit 1; }
done

# RVS_MAINTAINER names who builds the package (a real address for a repository of your own).
maintainer=${RVS_MAINTAINER:-rvs developers <rvs@example.org>}
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || { echo "build-deb: no version in Cargo.toml's [workspace.package]" >&2; exit 1; }
arch=$(dpkg --print-architecture)
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/root"

install -D -m 755 "$bin_dir/rvsd" "$root/usr/sbin/rvsd"
install -D -m 755 "$bin_dir/rvsadm" "$root/usr/sbin/rvsadm"
# The release profile keeps debug info for perf; the package does not need it (Debian policy).
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
  "$root/usr/sbin/rvsd" "$root/usr/sbin/rvsadm"
install -D -m 644 images/deb/rvsd.service "$root/lib/systemd/system/rvsd.service"
# Manual pages and completions come from the binaries themselves (clap's definition for rvsd, the
# ipvsadm grammar's tables for rvsadm), so they describe exactly what was packaged.
mkdir -p "$root/usr/share/man/man8"
"$bin_dir/rvsd" --manual | gzip -9n > "$root/usr/share/man/man8/rvsd.8.gz"
"$bin_dir/rvsadm" --manual | gzip -9n > "$root/usr/share/man/man8/rvsadm.8.gz"
chmod 644 "$root"/usr/share/man/man8/*.gz
mkdir -p "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
  "$root/usr/share/fish/vendor_completions.d"
"$bin_dir/rvsadm" --completions bash > "$root/usr/share/bash-completion/completions/rvsadm"
"$bin_dir/rvsadm" --completions zsh > "$root/usr/share/zsh/vendor-completions/_rvsadm"
"$bin_dir/rvsadm" --completions fish > "$root/usr/share/fish/vendor_completions.d/rvsadm.fish"
# The starting configuration: the bare-metal template (two PCI ports, rules from /etc/rvs/rules).
install -D -m 644 conf/bare-metal.toml "$root/etc/rvs/rvsd.toml"
printf '' > "$stage/rules"
install -D -m 644 "$stage/rules" "$root/etc/rvs/rules"
install -D -m 644 conf/grafana/rvs-dashboard.json "$root/usr/share/rvs/grafana/dashboards/rvs-dashboard.json"
install -D -m 644 images/deb/grafana-datasource.yaml "$root/usr/share/rvs/grafana/provisioning/datasources/rvs.yaml"
install -D -m 644 images/deb/grafana-dashboards.yaml "$root/usr/share/rvs/grafana/provisioning/dashboards/rvs.yaml"
install -D -m 644 conf/prometheus/rvs-alerts.yml "$root/usr/share/rvs/prometheus/rvs-alerts.yml"
for f in conf/keepalived/*.conf; do
  install -D -m 644 "$f" "$root/usr/share/rvs/keepalived/$(basename "$f")"
done
for f in conf/bird/*.conf; do
  install -D -m 644 "$f" "$root/usr/share/rvs/bird/$(basename "$f")"
done
install -D -m 644 conf/demo.toml "$root/usr/share/doc/rvs/examples/demo.toml"
install -D -m 644 README.md "$root/usr/share/doc/rvs/README.md"
for f in docs/*.md; do
  install -D -m 644 "$f" "$root/usr/share/doc/rvs/$(basename "$f")"
done
# DEP-5 copyright; the licence is the workspace's (Cargo.toml), Apache-2.0, which Debian keeps in
# common-licenses.
cat > "$root/usr/share/doc/rvs/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: rvs

Files: *
Copyright: 2026 the rvs developers
License: Apache-2.0
 On Debian systems, the complete text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
COPYRIGHT
# A native package (no Debian revision): its changelog is changelog.gz.
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
printf 'rvs (%s) unstable; urgency=medium\n\n  * Built from commit %s.\n\n -- %s  %s\n' \
  "$version" "$revision" "$maintainer" "$(date -R)" | gzip -9n > "$root/usr/share/doc/rvs/changelog.gz"
chmod 644 "$root/usr/share/doc/rvs/changelog.gz"
# What lintian reports and is right for rvs (lintian -I --pedantic shows nothing else).
install -d "$root/usr/share/lintian/overrides"
cat > "$root/usr/share/lintian/overrides/rvs" <<'OVERRIDES'
# Rust does not call glibc's fortifiable functions (memcpy, sprintf, ...) through their _chk forms:
# there is nothing for _FORTIFY_SOURCE to harden.
rvs: hardening-no-fortify-functions [usr/sbin/rvsadm]
rvs: hardening-no-fortify-functions [usr/sbin/rvsd]
# rvsd needs what only its systemd unit arranges (runtime directory, memlock limit, readiness,
# restart); a director has no sysvinit use.
rvs: package-supports-alternative-init-but-no-init.d-script [lib/systemd/system/rvsd.service]
OVERRIDES
chmod 644 "$root/usr/share/lintian/overrides/rvs"

mkdir -p "$root/DEBIAN"
install -m 755 images/deb/postinst images/deb/postrm "$root/DEBIAN/"
printf '/etc/rvs/rvsd.toml\n/etc/rvs/rules\n' > "$root/DEBIAN/conffiles"
# dpkg-shlibdeps wants a debian/control to sit beside; give it a minimal one in the stage.
mkdir -p "$stage/debian"
printf 'Source: rvs\n\nPackage: rvs\nArchitecture: any\n' > "$stage/debian/control"
depends=$(cd "$stage" && dpkg-shlibdeps -O "root/usr/sbin/rvsd" "root/usr/sbin/rvsadm" 2>/dev/null \
  | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "build-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
# rvsd links DPDK's libraries, but the buses, the mempool driver and the NIC drivers are plugins
# the EAL loads at run time (Debian's DPDK is built shared): without librte-bus-pci the EAL cannot
# even parse a PCI address. The ones every director needs are dependencies; the NIC drivers users
# deploy on are recommended. Named with the ABI of the librte-eal rvsd was linked against.
abi=$(echo "$depends" | grep -o 'librte-eal[0-9]*' | head -n1 | sed 's/librte-eal//')
plugins="" nic_plugins=""
if [ -n "$abi" ]; then
  plugins=", librte-bus-pci$abi, librte-bus-vdev$abi, librte-mempool-ring$abi, librte-net-tap$abi"
  nic_plugins=", librte-net-ixgbe$abi, librte-net-i40e$abi, librte-net-ice$abi, librte-net-mlx5-$abi, librte-net-virtio$abi, librte-net-af-packet$abi, librte-net-memif$abi"
fi
installed_kib=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: rvs
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_kib
Depends: $depends, adduser$plugins
Recommends: dpdk, keepalived$nic_plugins
Suggests: prometheus, grafana, bird2
Section: net
Priority: optional
Description: LVS-style layer-4 load balancer on a DPDK data plane
 rvs is a Linux Virtual Server director in user space: poll-mode workers
 forward NAT, DR and TUN services at line rate, rvsadm takes ipvsadm's
 command lines and prints its output, keepalived.conf drives the services
 and their health checks, and rvsd exports Prometheus metrics.
CONTROL
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
deb="$out_dir/rvs_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >/dev/null
echo "$deb"
