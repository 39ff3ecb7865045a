"""Stateless: `flows` established TCP flows through the director. IPVS schedules a TCP connection only
on a SYN, so the profile first sends one SYN per flow tuple (a single burst), then, chained after it,
ACK segments of `size` bytes over the same tuples for as long as the test runs: the lookup path of
the connection table at `flows` entries.

    start -f perf/trex/tcp_established.py -m 14.88mpps -t flows=1000000,size=64
"""
from trex.stl.api import (STLProfile, STLStream, STLPktBuilder, STLTXCont, STLTXSingleBurst, STLVM,
                          Ether, IP, TCP)

from common import CLIENT_FIRST, VIP, client_last, pad


def _vm(flows):
    vm = STLVM()
    # The same walk in both streams, so the ACKs hit the connections the SYNs created.
    vm.var(name="src", min_value=CLIENT_FIRST, max_value=client_last(CLIENT_FIRST, flows), size=4,
           op="inc")
    vm.write(fv_name="src", pkt_offset="IP.src")
    vm.fix_chksum()
    return vm


class TcpEstablished:
    def get_streams(self, direction=0, flows=1000, vip=VIP, dport=80, size=64, syn_pps=1_000_000,
                    **kwargs):
        flows = int(flows)
        syn = pad(Ether() / IP(src=CLIENT_FIRST, dst=vip) / TCP(sport=40000, dport=int(dport),
                                                                flags="S", seq=1), 64)
        ack = pad(Ether() / IP(src=CLIENT_FIRST, dst=vip) / TCP(sport=40000, dport=int(dport),
                                                                flags="A", seq=2, ack=1), int(size))
        return [
            STLStream(name="syn", packet=STLPktBuilder(pkt=syn, vm=_vm(flows)),
                      mode=STLTXSingleBurst(total_pkts=flows, pps=int(syn_pps)), next="ack"),
            STLStream(name="ack", self_start=False, packet=STLPktBuilder(pkt=ack, vm=_vm(flows)),
                      mode=STLTXCont()),
        ]


def register():
    return TcpEstablished()
