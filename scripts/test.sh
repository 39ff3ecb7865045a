#!/usr/bin/env bash
# The whole rvs test suite, from a fresh Debian 12 machine: installs what it needs (scripts/setup.sh),
# then formatting and lint checks, unit tests, DPDK-in-the-loop tests and the namespace test bed.
# Needs root (hugepages, network namespaces, raw sockets). .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all -- --check
else
  echo "test: warning: rustfmt is not installed; skipping the format check" >&2
fi
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --workspace --all-targets --locked -- -D warnings
else
  echo "test: warning: clippy is not installed; skipping lints" >&2
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# Every TRex profile compiles (STLProfile/ASTFProfile.load_py + to_json).
bash scripts/trex-check.sh | tee -a "$log"
# Fuzz every parser and rewrite for a bounded time (RVS_FUZZ_SECONDS per target, default 45).
bash scripts/fuzz.sh "${RVS_FUZZ_SECONDS:-45}" | tee -a "$log"

# One closing line for the whole run (cargo's own last line is a doc-test binary's, often "0 passed").
passed=$(grep -oE 'test result: ok\. [0-9]+ passed' "$log" | grep -oE '[0-9]+ passed' | awk '{s += $1} END {print s + 0}')
fuzzed=$(grep -c '^fuzz: .* ok:' "$log" || true)
profiles=$(grep -c '^trex: ok ' "$log" || true)
echo "tests: $((passed + fuzzed + profiles)) passed, 0 failed"
