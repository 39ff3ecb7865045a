"""Stateless: TRex's IMIX (64, 594 and 1518-byte frames in a 28:16:4 packet ratio, the simple IMIX
of RFC 6985's tradition) of UDP to the VIP from `flows` client tuples per size class.

    start -f perf/trex/imix.py -m 10gbps -t flows=100000
"""
from trex.stl.api import (STLProfile, STLStream, STLPktBuilder, STLTXCont, STLVM, Ether, IP, UDP)

from common import CLIENT_FIRST, VIP, client_last, pad

# (frame size, packets per second at multiplier 1): TRex's stl/imix.py proportions.
IMIX = [(64, 28), (594, 16), (1518, 4)]


class Imix:
    def get_streams(self, direction=0, flows=1000, vip=VIP, dport=5300, **kwargs):
        flows = int(flows)
        streams = []
        for size, pps in IMIX:
            pkt = pad(Ether() / IP(src=CLIENT_FIRST, dst=vip) / UDP(sport=1025, dport=int(dport)), size)
            vm = STLVM()
            vm.var(name="src", min_value=CLIENT_FIRST, max_value=client_last(CLIENT_FIRST, flows),
                   size=4, op="random")
            vm.write(fv_name="src", pkt_offset="IP.src")
            vm.fix_chksum()
            streams.append(STLStream(packet=STLPktBuilder(pkt=pkt, vm=vm), mode=STLTXCont(pps=pps)))
        return streams


def register():
    return Imix()
