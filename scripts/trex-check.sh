#!/usr/bin/env bash
# Compiles every TRex profile in perf/trex/ offline (no TRex server needed) with the TRex client API
# from PyPI (lbr-trex-client), in a venv under target/ so the system Python stays untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/trex-venv
if ! [ -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import lbr_trex_client' 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check lbr-trex-client==3.4.0
fi
"$venv/bin/python" perf/trex/check_profiles.py | sed 's/^/trex: /'
