"""Stateless: TCP SYNs to the VIP from random source addresses and ports — a SYN flood. Run it beside
tcp_established.py (on another port of TRex, or as a second profile) to see what share of the
established flows still forwards while the director schedules, inserts and expires the flood's
connections (rvs_worker_dropped_packets_total{reason="table_full"} tells when the table fills).

    start -f perf/trex/syn_flood.py -m 2mpps -t vip=192.0.2.80,dport=80
"""
from trex.stl.api import (STLProfile, STLStream, STLPktBuilder, STLTXCont, STLVM, Ether, IP, TCP)

from common import VIP, pad


class SynFlood:
    def get_streams(self, direction=0, vip=VIP, dport=80, size=64, **kwargs):
        pkt = pad(Ether() / IP(src="10.0.0.1", dst=vip) / TCP(sport=1025, dport=int(dport), flags="S",
                                                             seq=1), int(size))
        vm = STLVM()
        vm.var(name="src", min_value="16.0.0.0", max_value="223.255.255.255", size=4, op="random")
        vm.write(fv_name="src", pkt_offset="IP.src")
        vm.var(name="sport", min_value=1025, max_value=65535, size=2, op="random")
        vm.write(fv_name="sport", pkt_offset="TCP.sport")
        vm.fix_chksum()
        return [STLStream(packet=STLPktBuilder(pkt=pkt, vm=vm), mode=STLTXCont())]


def register():
    return SynFlood()
