#!/usr/bin/python3
"""Sends numbered UDP frames with scapy (the independent packet builder of the rvs tests).

usage: send_udp.py IFACE DST_MAC SRC_IP DST_IP DPORT COUNT [VLAN]

Frame i carries source port 20000+i and the payload b"rvs-%05d" padded to a size that varies with i, so
the receiver can check each frame arrived once and intact. With VLAN, frames are 802.1Q-tagged.
"""
import sys

from scapy.all import IP, UDP, Dot1Q, Ether, Raw, conf, get_if_hwaddr, sendp

conf.verb = 0


def main():
    iface, dst_mac, src_ip, dst_ip, dport, count = sys.argv[1:7]
    vlan = int(sys.argv[7]) if len(sys.argv) > 7 else None
    src_mac = get_if_hwaddr(iface)
    frames = []
    for i in range(int(count)):
        payload = (b"rvs-%05d" % i).ljust(18 + (i * 37) % 1400, b"\xa5")
        l2 = Ether(src=src_mac, dst=dst_mac)
        if vlan is not None:
            l2 = l2 / Dot1Q(vlan=vlan)
        frames.append(l2 / IP(src=src_ip, dst=dst_ip, ttl=64) / UDP(sport=20000 + i, dport=int(dport)) / Raw(payload))
    sendp(frames, iface=iface, inter=0.001)
    print(f"sent {len(frames)}")


if __name__ == "__main__":
    main()
