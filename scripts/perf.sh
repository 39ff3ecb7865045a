#!/usr/bin/env bash
# The benchmarks, from one command (root: hugepages). Writes into target/perf/:
#   director.md / director.csv / director.png / summary.txt — rvsd's director (NAT, DR, TUN) at 1k..10M
#     flows, 64-byte and IMIX, new-connection rate, SYN flood, against dpdk-testpmd through the same
#     net_memif ports, driven by the workspace's DPDK traffic generator (rvs-perf director);
#   baseline.csv — rvsd's L2 loop against testpmd on net_null ports (rvs-perf baseline);
# and prints the director pipeline's per-packet cost without I/O (pipeline_rate). The last line is the
# one-line summary. Arguments go to `rvs-perf director` (e.g. --modes nat --flows 1000,1000000
# --rounds 1 --seconds 2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-matplotlib >/dev/null
fi
cargo build --release --locked -p rvs --bin rvsd
cargo build --release --locked -p rvs-perf
out=target/perf
mkdir -p "$out"
./target/release/rvs-perf baseline --csv "$out/baseline.csv"
cargo run --release --locked -q -p rvs-dataplane --example pipeline_rate
./target/release/rvs-perf director --out-dir "$out" "$@"
/usr/bin/python3 perf/plot.py "$out/director.csv" "$out/director.png"
echo "table: $out/director.md, plot: $out/director.png"
cat "$out/summary.txt"
