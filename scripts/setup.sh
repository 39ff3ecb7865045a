#!/usr/bin/env bash
# Installs everything rvs needs on a fresh Debian 12 machine, idempotently: the DPDK library and tools,
# libclang for bindgen, the independent decoders (scapy, tshark) and the network test-bed tools, then
# reserves hugepages. Safe to run again; it skips work that is already done.
set -euo pipefail

PACKAGES=(
  # build: DPDK headers + libs (pkg-config libdpdk), libclang for bindgen, a C compiler for the shim
  libdpdk-dev pkg-config libclang-dev clang gcc make
  # dpdk-testpmd (the baseline in perf/) and the vdev PMDs
  dpdk dpdk-dev
  # independent decoders and the namespace test bed
  python3-scapy tshark iproute2 ethtool procps iputils-ping curl
  # the director test bed: real servers (nginx), the XDP IPIP decapsulator for TUN (clang -target
  # bpf with libbpf's headers), a load generator
  nginx libbpf-dev linux-libc-dev wrk
  # a venv for the TRex client API (PyPI lbr-trex-client) that compiles perf/trex profiles
  python3-venv
  # keepalived: `keepalived -t` cross-checks the keepalived.conf files rvsd reads; openssl makes the
  # TLS server an SSL_GET check talks to
  keepalived openssl
  # promtool lints the metrics exposition; the server scrapes rvsd in the tests
  prometheus
  # images/build-deb.sh: dpkg-shlibdeps works out the package's dependencies; the package test
  # runs lintian on it, checks its unit with systemd-analyze and reads its pages with man
  dpkg-dev systemd man-db lintian
  # BIRD 2: the BGP router and the directors' routing daemons of the ECMP test bed
  bird2
)

need=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The packages start a system nginx on port 80, a keepalived and a bird; the test bed runs its own nginx in
# namespaces and its own BIRDs there, and rvs only reads keepalived's configuration.
for unit in nginx keepalived bird; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled "$unit" >/dev/null 2>&1; then
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
  fi
done

# cargo-fuzz for the fuzz targets (scripts/fuzz.sh), from crates.io.
if ! command -v cargo-fuzz >/dev/null 2>&1 && ! [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-fuzz" ]; then
  echo "setup: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

# DPDK wants hugepages; 2 MiB pages are what this kind of machine offers. 512 pages = 1 GiB, enough for
# the daemon, testpmd and the tests running one after another.
want_pages=${RVS_HUGEPAGES:-512}
have_pages=$(cat /proc/sys/vm/nr_hugepages)
if [ "$have_pages" -lt "$want_pages" ]; then
  echo "$want_pages" > /proc/sys/vm/nr_hugepages || echo "setup: warning: could not reserve hugepages" >&2
fi
if ! mountpoint -q /dev/hugepages 2>/dev/null; then
  mkdir -p /dev/hugepages
  mount -t hugetlbfs nodev /dev/hugepages || echo "setup: warning: could not mount hugetlbfs" >&2
fi
echo "setup: ok (hugepages: $(cat /proc/sys/vm/nr_hugepages))"
