#!/usr/bin/env bash
# The rvs demo, from a fresh Debian 12 machine (as root): builds rvsd and runs it on two DPDK
# net_af_packet ports in a "director" network namespace, cross-connecting a client namespace and a
# server namespace. The client pings and downloads from the server through rvsd; rvsd's own counters
# show the packets it moved. Everything is torn down at the end.
#
# Addresses are from the documentation range 192.0.2.0/24 and exist only inside these namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
cargo build --release --locked --bin rvsd

P=rvsdemo
LOG=$(mktemp -d)/rvsd.log
cleanup() {
  [ -n "${RVSD_PID:-}" ] && kill "$RVSD_PID" 2>/dev/null || true
  [ -n "${HTTP_PID:-}" ] && kill "$HTTP_PID" 2>/dev/null || true
  for ns in c d s; do ip netns del "$P-$ns" 2>/dev/null || true; done
}
trap cleanup EXIT
cleanup

for ns in c d s; do
  ip netns add "$P-$ns"
  ip -n "$P-$ns" link set lo up
  ip netns exec "$P-$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
done
ip link add "$P-c0" netns "$P-c" type veth peer name "$P-d0" netns "$P-d"
ip link add "$P-s0" netns "$P-s" type veth peer name "$P-d1" netns "$P-d"
for l in c:c0 s:s0 d:d0 d:d1; do ip -n "$P-${l%%:*}" link set "$P-${l##*:}" up; done
ip -n "$P-c" addr add 192.0.2.1/24 dev "$P-c0"
ip -n "$P-s" addr add 192.0.2.2/24 dev "$P-s0"
# Kernels sending into a veth leave checksums to "hardware"; a DPDK port is not that hardware.
ip netns exec "$P-c" ethtool -K "$P-c0" tx off >/dev/null
ip netns exec "$P-s" ethtool -K "$P-s0" tx off >/dev/null

echo "== starting rvsd (conf/demo.toml) in namespace $P-d"
ip netns exec "$P-d" ./target/release/rvsd --config conf/demo.toml >"$LOG" 2>&1 &
RVSD_PID=$!
for _ in $(seq 100); do grep -q ' forwarding ' "$LOG" && break; kill -0 $RVSD_PID || { cat "$LOG"; exit 1; }; sleep 0.1; done
grep -E 'port started|forwarding' "$LOG" | sed 's/^[^ ]* *//'

echo "== client -> server through rvsd: ping"
ip netns exec "$P-c" ping -c 5 -i 0.2 192.0.2.2 | tail -2

echo "== client -> server through rvsd: 20 HTTP downloads of 1 MiB"
mkdir -p "$LOG.www" && head -c 1048576 /dev/urandom > "$LOG.www/blob"
ip netns exec "$P-s" /usr/bin/python3 -m http.server 8080 --bind 192.0.2.2 --directory "$LOG.www" >/dev/null 2>&1 &
HTTP_PID=$!
sleep 1
ok=0; bytes=0
for i in $(seq 20); do
  if out=$(ip netns exec "$P-c" curl -sS --max-time 10 -o /dev/null -w '%{size_download}' http://192.0.2.2:8080/blob); then
    ok=$((ok + 1)); bytes=$((bytes + out))
  fi
done
echo "$ok/20 downloads complete, $bytes bytes received by the client"
sleep 2.5

echo "== rvsd's counters (logged every 2 s)"
grep ' stats ' "$LOG" | tail -3 | sed 's/^[^ ]* *//'
kill -TERM $RVSD_PID; wait $RVSD_PID || true; RVSD_PID=
echo "== rvsd stopped"
grep -E 'port totals|worker totals|mempool after shutdown|stopped cleanly' "$LOG" | sed 's/^[^ ]* *//'
