#!/usr/bin/env bash
# The baseline benchmark: rvsd's forwarding loop and dpdk-testpmd through the same net_null ports in
# the same run; prints Mpps, cycles/packet and the ratio. Arguments go to `rvs-perf baseline`
# (e.g. --seconds 10 --rounds 5 --csv out.csv). Then the director pipeline's cost per packet and per
# new connection on one core without I/O (NAT, DR, TUN at 1k, 100k and 1M flows).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked --bin rvsd --bin rvs-perf
./target/release/rvs-perf baseline "$@"
cargo run --release --locked -q -p rvs-dataplane --example pipeline_rate
