#!/usr/bin/env bash
# The rvs demo, from a fresh Debian 12 machine (as root): an LVS director on DPDK between network
# namespaces. tests/testbed/testbed.sh builds a client, a router and three real servers running nginx;
# rvsd runs on two net_af_packet ports with a NAT service (192.0.2.80:80 -> real servers :8080, rr)
# and a DR service (192.0.2.81:80, wrr 1:2:3) from conf/demo.rules. The client's requests are
# balanced; rvsadm shows the tables, the counters and the connections. Everything is torn down at
# the end.
#
# Addresses are from the documentation ranges and exist only inside these namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo build --release --locked --bins

P=rvsdm
W=$(mktemp -d /tmp/rvs-demo.XXXXXX)
LOG=$W/rvsd.log
ADM="./target/release/rvsadm --socket /run/rvs/demo.sock"
cleanup() {
  [ -n "${RVSD_PID:-}" ] && kill "$RVSD_PID" 2>/dev/null || true
  tests/testbed/testbed.sh down "$P" "$W" || true
}
trap cleanup EXIT

echo "== test bed: client, router, director ports, real servers s1 s2 s3 (nginx)"
tests/testbed/testbed.sh up "$P" "$W"

echo "== starting rvsd (conf/demo.toml, rules from conf/demo.rules) in namespace ${P}d"
ip netns exec "${P}d" ./target/release/rvsd --config conf/demo.toml >"$LOG" 2>&1 &
RVSD_PID=$!
for _ in $(seq 100); do grep -q ' forwarding ' "$LOG" && break; kill -0 $RVSD_PID || { cat "$LOG"; exit 1; }; sleep 0.1; done
grep -E 'rules loaded|port started|forwarding' "$LOG" | sed 's/^[^ ]* *//'
$ADM -Ln

client() { ip netns exec "${P}c" "$@"; }
balance() { # url count: one connection per request, then how many each server answered
  local urls=()
  for _ in $(seq "$2"); do urls+=("$1"); done
  client curl -sS -m 30 -H 'Connection: close' "${urls[@]}" | sort | uniq -c | sed 's/^/   /'
}

echo "== NAT: 12 requests to http://192.0.2.80/ (rr over s1 s2 s3, port 80 -> 8080)"
client curl -sS -m 30 -H 'Connection: close' $(printf 'http://192.0.2.80/ %.0s' $(seq 6)) | tr '\n' ' '; echo
balance http://192.0.2.80/ 12
echo "== DR: 60 requests to http://192.0.2.81/ (wrr 1:2:3; replies go from the servers to the router)"
balance http://192.0.2.81/ 60
echo "== a 1 MiB download through each"
for vip in 192.0.2.80 192.0.2.81; do
  client curl -sS -m 30 -o /dev/null -w "   http://$vip/big.bin: %{http_code}, %{size_download} bytes, %{speed_download} B/s\n" "http://$vip/big.bin"
done
echo "== ping the VIP"
client ping -c 3 -i 0.2 192.0.2.80 | tail -2

echo "== rvsadm -Ln --stats (DR's OutPkts stay 0: replies bypass the director)"
$ADM -Ln --stats
echo "== rvsadm -Lnc (first lines)"
$ADM -Lnc | head -6
echo "== Prometheus metrics (excerpt)"
ip netns exec "${P}d" curl -s http://127.0.0.1:9510/metrics \
  | grep -E '^rvs_ipvs_backend_connections_total|^rvs_worker_(received|transmitted)_packets_total' | sed 's/^/   /'

kill -TERM $RVSD_PID; wait $RVSD_PID || true; RVSD_PID=
echo "== rvsd stopped"
grep -E 'worker totals|mempool after shutdown' "$LOG" | sed 's/^[^ ]* *//'
