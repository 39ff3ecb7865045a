"""Compiles every rvs TRex profile offline (no TRex server): STLProfile.load_py / ASTFProfile.load_py,
then to_json(), with default and with large tunables. Run by scripts/test.sh in a venv holding the
PyPI package lbr-trex-client. Exit status 1 on the first profile that does not compile."""
import json
import os
import sys

import lbr_trex_client  # noqa: F401  (puts TRex's client packages on sys.path)
from trex.astf.api import ASTFProfile
from trex.stl.api import STLProfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

STL = {
    "udp_flows_64b.py": [{}, {"flows": 1000000}],
    "imix.py": [{}, {"flows": 100000}],
    "syn_flood.py": [{}, {"dport": 443}],
    "tcp_established.py": [{}, {"flows": 10000000, "size": 64}],
}
ASTF = {"http_cps.py": [{}, {"cps": 1000}]}

failed = 0
for name, variants in STL.items():
    for tunables in variants:
        try:
            prof = STLProfile.load_py(os.path.join(HERE, name), direction=0, port_id=0, **tunables)
            streams = prof.to_json()
            assert streams, "no streams"
            json.dumps(streams)
            print(f"ok   {name} {tunables}: {len(streams)} stream(s)")
        except Exception as e:  # report and go on to the others
            failed += 1
            print(f"FAIL {name} {tunables}: {type(e).__name__}: {e}")
for name, variants in ASTF.items():
    for tunables in variants:
        try:
            prof = ASTFProfile.load_py(os.path.join(HERE, name), **tunables)
            text = json.dumps(prof.to_json())
            assert '"templates"' in text, "no templates"
            print(f"ok   {name} {tunables}: {len(text)} bytes of JSON")
        except Exception as e:
            failed += 1
            print(f"FAIL {name} {tunables}: {type(e).__name__}: {e}")
sys.exit(1 if failed else 0)
