#!/usr/bin/env bash
# Compiles every TRex profile in perf/trex/ offline (no TRex server needed) with the TRex client API
# from PyPI (lbr-trex-client), in a venv of its own so the system Python stays untouched. The venv
# lives in the user's cache, not in this checkout: a fresh clone (CI builds one every run) reuses it
# instead of fetching the package again, and a registry that is briefly unreachable does not fail a
# run that has nothing to fetch.
set -euo pipefail
cd "$(dirname "$0")/.."
version=3.4.0
venv="${XDG_CACHE_HOME:-$HOME/.cache}/rvs/trex-venv-$version"
if ! [ -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import lbr_trex_client' 2>/dev/null; then
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "lbr-trex-client==$version"
fi
"$venv/bin/python" perf/trex/check_profiles.py | sed 's/^/trex: /'
