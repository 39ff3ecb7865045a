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
cargo test --workspace --locked
