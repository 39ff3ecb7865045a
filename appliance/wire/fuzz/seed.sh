#!/usr/bin/env bash
# Regenerates the seed corpora from real packets built by scapy (../tests/oracle/gen.py): each target
# gets every oracle packet, prefixed with a selector byte for each variant the target knows.
set -euo pipefail
cd "$(dirname "$0")"
for t in parse nat icmp_nat dr_tun replies; do rm -rf "corpus/$t"; mkdir -p "corpus/$t"; done
/usr/bin/python3 ../tests/oracle/gen.py | while IFS=$'\t' read -r name hex; do
  printf '%s' "$hex" | xxd -r -p > "corpus/parse/$name"
  for sel in 00 02 04 06 0c 0d; do
    for t in nat icmp_nat dr_tun replies; do
      { printf "\\x$sel"; printf '%s' "$hex" | xxd -r -p; } > "corpus/$t/$name-$sel"
    done
  done
done
echo "seeded $(ls corpus/parse | wc -l) packets"
