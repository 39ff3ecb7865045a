#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time each (default 45 s), starting from the committed
# seed corpora (real packets built by scapy; real ipvsadm command lines and control frames). New
# inputs go to a scratch directory, so the committed corpora stay as they are. Exits non-zero on the
# first crash, with libFuzzer's report.
#   scripts/fuzz.sh [seconds-per-target] [crate:target ...]      e.g. scripts/fuzz.sh 10 wire:nat
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-45}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(wire:parse wire:nat wire:icmp_nat wire:dr_tun wire:replies adm:grammar adm:protocol)
# cargo-fuzz drives nightly-only rustc flags (-Zsanitizer); the machine has one stable toolchain, and
# RUSTC_BOOTSTRAP lets it accept them. Used for fuzzing only, never for the product build.
export RUSTC_BOOTSTRAP=1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for ct in "${targets[@]}"; do
  crate=${ct%%:*}
  t=${ct##*:}
  cd "$root/appliance/$crate/fuzz"
  mkdir -p "$scratch/$crate-$t"
  log="$scratch/$crate-$t.log"
  if ! cargo fuzz run "$t" "$scratch/$crate-$t" "corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    tail -60 "$log"
    echo "fuzz: target $t FAILED" >&2
    exit 1
  fi
  runs=$(grep -m1 -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo '?')
  echo "fuzz: $crate:$t ok: $runs executions in ${secs} s"
done
