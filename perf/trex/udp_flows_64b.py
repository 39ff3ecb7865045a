"""Stateless: 64-byte UDP frames to the VIP from `flows` distinct client tuples (source address and
port walk together), the classic small-packet throughput test. Against an rvs UDP service
(`rvsadm -A -u VIP:5300`), each tuple becomes one IPVS connection, so `flows` sets the size of the
connection table being exercised.

    start -f perf/trex/udp_flows_64b.py -m 14.88mpps -t flows=1000000,vip=192.0.2.80
"""
from trex.stl.api import (STLProfile, STLStream, STLPktBuilder, STLTXCont, STLVM, Ether, IP, UDP)

from common import CLIENT_FIRST, VIP, client_last, pad


class UdpFlows64:
    def get_streams(self, direction=0, flows=1000, vip=VIP, dport=5300, size=64, **kwargs):
        flows = int(flows)
        pkt = pad(Ether() / IP(src=CLIENT_FIRST, dst=vip) / UDP(sport=1025, dport=int(dport)), int(size))
        vm = STLVM()
        # One tuple per flow: the address walks the range, the port steps with it.
        vm.var(name="src", min_value=CLIENT_FIRST, max_value=client_last(CLIENT_FIRST, flows),
               size=4, op="inc")
        vm.write(fv_name="src", pkt_offset="IP.src")
        vm.var(name="sport", min_value=1025, max_value=65000, size=2, op="inc")
        vm.write(fv_name="sport", pkt_offset="UDP.sport")
        vm.fix_chksum()
        return [STLStream(packet=STLPktBuilder(pkt=pkt, vm=vm), mode=STLTXCont())]


def register():
    return UdpFlows64()
