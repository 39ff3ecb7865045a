#!/usr/bin/python3
"""Builds the oracle's input packets with scapy: one line per case, "name<TAB>hex".

The names tell the Rust side which rewrite to apply (see tests/scapy_oracle.rs); check.py then decodes
what came out. Addresses are documentation ranges only.
"""
from scapy.all import (ARP, ICMP, IP, TCP, UDP, Dot1Q, Ether, ICMPv6DestUnreach, ICMPv6EchoRequest,
                       ICMPv6ND_NS, ICMPv6PacketTooBig, IPerror6,
                       ICMPv6NDOptSrcLLAddr, IPerror, IPOption_RR, IPv6, IPv6ExtHdrDestOpt,
                       IPv6ExtHdrHopByHop, Raw, TCPerror, UDPerror, raw)

CLIENT, VIP, RIP, ROUTER = "198.51.100.7", "192.0.2.80", "203.0.113.10", "198.51.100.1"
CLIENT6, VIP6, RIP6, ROUTER6 = "2001:db8:1::7", "2001:db8::80", "2001:db8:2::10", "2001:db8:1::1"
ME, PEER = "02:00:00:00:00:d1", "02:00:00:00:00:c1"
OPTS = [("MSS", 1460), ("NOP", None), ("WScale", 7), ("SAckOK", b""), ("Timestamp", (1, 2))]

cases = {
    "nat_in_tcp": Ether(src=PEER, dst=ME) / IP(src=CLIENT, dst=VIP, ttl=64, tos=0x10, flags="DF")
        / TCP(sport=40000, dport=80, flags="S", seq=1000, options=OPTS),
    "nat_in_udp": Ether(src=PEER, dst=ME) / IP(src=CLIENT, dst=VIP, ttl=9) / UDP(sport=5353, dport=80) / Raw(b"q" * 77),
    "nat_in_udp_nocsum": Ether(src=PEER, dst=ME) / IP(src=CLIENT, dst=VIP) / UDP(sport=5353, dport=80, chksum=0) / Raw(b"z" * 5),
    "nat_in_vlan": Ether(src=PEER, dst=ME) / Dot1Q(vlan=42) / IP(src=CLIENT, dst=VIP) / TCP(sport=40001, dport=80, flags="PA") / Raw(b"GET / HTTP/1.1\r\n\r\n"),
    "nat_in_ipopts": Ether(src=PEER, dst=ME) / IP(src=CLIENT, dst=VIP, options=[IPOption_RR(routers=["192.0.2.1"])]) / TCP(sport=40002, dport=80, flags="A") / Raw(b"x" * 31),
    "nat_in_short": Ether(src=PEER, dst=ME) / IP(src=CLIENT, dst=VIP) / TCP(sport=40003, dport=80, flags="A"),
    "nat_out_tcp": Ether(src=PEER, dst=ME) / IP(src=RIP, dst=CLIENT, ttl=64) / TCP(sport=8080, dport=40000, flags="SA", options=OPTS),
    "nat_out_udp": Ether(src=PEER, dst=ME) / IP(src=RIP, dst=CLIENT) / UDP(sport=8080, dport=5353) / Raw(b"answer" * 100),
    "nat_in_tcp6": Ether(src=PEER, dst=ME) / IPv6(src=CLIENT6, dst=VIP6, hlim=64, tc=0x20) / TCP(sport=40000, dport=80, flags="S", options=OPTS),
    "nat_in_tcp6_ext": Ether(src=PEER, dst=ME) / IPv6(src=CLIENT6, dst=VIP6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / TCP(sport=40004, dport=80, flags="A") / Raw(b"y" * 40),
    "nat_out_udp6": Ether(src=PEER, dst=ME) / IPv6(src=RIP6, dst=CLIENT6) / UDP(sport=8080, dport=5353) / Raw(b"r" * 99),
    "dr_keep_v4": Ether(src=PEER, dst=ME) / IP(src=CLIENT, dst=VIP, ttl=40) / TCP(sport=40005, dport=80, flags="S"),
    "dr_decr_v4": Ether(src=PEER, dst=ME) / Dot1Q(vlan=7) / IP(src=CLIENT, dst=VIP, ttl=40) / UDP(sport=1, dport=80) / Raw(b"d"),
    "dr_decr_v6": Ether(src=PEER, dst=ME) / IPv6(src=CLIENT6, dst=VIP6, hlim=40) / UDP(sport=1, dport=80) / Raw(b"d6"),
    "tun_4in4": Ether(src=PEER, dst=ME) / IP(src=CLIENT, dst=VIP, tos=0xb8, flags="DF", ttl=30) / TCP(sport=40006, dport=80, flags="PA") / Raw(b"t" * 100),
    "tun_4in4_nodf": Ether(src=PEER, dst=ME) / IP(src=CLIENT, dst=VIP, tos=0x04, flags=0) / UDP(sport=40007, dport=80) / Raw(b"u" * 3),
    "tun_6in4": Ether(src=PEER, dst=ME) / IPv6(src=CLIENT6, dst=VIP6, tc=0x28) / TCP(sport=40008, dport=80, flags="S"),
    "tun_4in6": Ether(src=PEER, dst=ME) / IP(src=CLIENT, dst=VIP) / UDP(sport=40009, dport=80) / Raw(b"46"),
    "tun_6in6": Ether(src=PEER, dst=ME) / IPv6(src=CLIENT6, dst=VIP6) / UDP(sport=40010, dport=80) / Raw(b"66"),
    "tun_toobig": Ether(src=PEER, dst=ME) / IP(src=CLIENT, dst=VIP, flags="DF") / TCP(sport=40011, dport=80, flags="A") / Raw(b"b" * 1460),
    # A SYN to a TUN server with MSS clamping on: its MSS (1460) lowered to 1440 before encapsulation.
    "gre_4in4": Ether(src=PEER, dst=ME) / IP(src=CLIENT, dst=VIP, tos=0x10, flags="DF", ttl=30) / TCP(sport=40020, dport=80, flags="PA") / Raw(b"g" * 100),
    "grecsum_6in4": Ether(src=PEER, dst=ME) / IPv6(src=CLIENT6, dst=VIP6) / UDP(sport=40021, dport=80) / Raw(b"G" * 33),
    "grecsum_4in4": Ether(src=PEER, dst=ME) / IP(src=CLIENT, dst=VIP, flags=0) / UDP(sport=40022, dport=80) / Raw(b"h" * 7),
    "gue_4in4": Ether(src=PEER, dst=ME) / IP(src=CLIENT, dst=VIP, flags="DF", ttl=30) / TCP(sport=40023, dport=80, flags="S", options=OPTS),
    "guecsum_4in4": Ether(src=PEER, dst=ME) / IP(src=CLIENT, dst=VIP) / UDP(sport=40024, dport=80) / Raw(b"Q" * 41),
    "guecsum_6in4": Ether(src=PEER, dst=ME) / IPv6(src=CLIENT6, dst=VIP6, tc=0x28) / TCP(sport=40025, dport=80, flags="A") / Raw(b"w" * 12),
    "gue_toobig": Ether(src=PEER, dst=ME) / IP(src=CLIENT, dst=VIP, flags="DF") / TCP(sport=40026, dport=80, flags="A") / Raw(b"b" * 1440),
    "mss_tun_4in4": Ether(src=PEER, dst=ME) / IP(src=CLIENT, dst=VIP, flags="DF", ttl=30) / TCP(sport=40013, dport=80, flags="S", options=OPTS),
    "ttl_expired": Ether(src=PEER, dst=ME) / IP(src=CLIENT, dst=VIP, ttl=1) / UDP(sport=40012, dport=80) / Raw(b"e" * 20),
    # ICMP errors about NATed flows. From the client side, about the director's reply VIP:80 -> client:
    "icmp_in_fragneeded": Ether(src=PEER, dst=ME) / IP(src=ROUTER, dst=VIP) / ICMP(type=3, code=4, nexthopmtu=1400)
        / IPerror(src=VIP, dst=CLIENT, flags="DF") / TCPerror(sport=80, dport=40000, flags="A", seq=7) / Raw(b"p" * 40),
    "icmp_in_ttl": Ether(src=PEER, dst=ME) / IP(src=ROUTER, dst=VIP) / ICMP(type=11, code=0)
        / IPerror(src=VIP, dst=CLIENT) / UDPerror(sport=80, dport=5353) / Raw(b"w" * 12),
    # From the real-server side, about the client's packet client -> RIP:8080:
    "icmp_out_portunreach": Ether(src=PEER, dst=ME) / IP(src=RIP, dst=CLIENT) / ICMP(type=3, code=3)
        / IPerror(src=CLIENT, dst=RIP) / UDPerror(sport=5353, dport=8080) / Raw(b"question"),
    # ICMPv6 errors about NATed flows: from the client side about the reply VIP6:80 -> client, and
    # from the real server about the client's packet client -> RIP6:8080.
    "icmp6_in_toobig": Ether(src=PEER, dst=ME) / IPv6(src=ROUTER6, dst=VIP6) / ICMPv6PacketTooBig(mtu=1400)
        / IPerror6(src=VIP6, dst=CLIENT6) / TCPerror(sport=80, dport=40000, flags="A", seq=7) / Raw(b"p" * 40),
    "icmp6_out_portunreach": Ether(src=PEER, dst=ME) / IPv6(src=RIP6, dst=CLIENT6) / ICMPv6DestUnreach(code=4)
        / IPerror6(src=CLIENT6, dst=RIP6) / UDPerror(sport=5353, dport=8080) / Raw(b"question"),
    "echo_v4": Ether(src=PEER, dst=ME) / IP(src=CLIENT, dst=VIP, ttl=5) / ICMP(type=8, id=77, seq=3) / Raw(b"ping" * 8),
    "echo_v6": Ether(src=PEER, dst=ME) / IPv6(src=CLIENT6, dst=VIP6) / ICMPv6EchoRequest(id=5, seq=9, data=b"ping6"),
    "arp_who_has": Ether(src=PEER, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=PEER, psrc=CLIENT, pdst=VIP),
    # 802.1Q sub-ports: the tag comes off on arrival (the frame then is the VLAN interface's) and
    # goes on as a frame leaves by one.
    "vlan_pop": Ether(src=PEER, dst=ME) / Dot1Q(vlan=100, prio=3) / IP(src=CLIENT, dst=VIP) / TCP(sport=40030, dport=80, flags="S"),
    "vlan_push": Ether(src=ME, dst=PEER) / IP(src=VIP, dst=CLIENT) / UDP(sport=80, dport=5353) / Raw(b"v" * 3),
    "nd_ns": Ether(src=PEER, dst="33:33:ff:00:00:80") / IPv6(src=CLIENT6, dst="ff02::1:ff00:80", hlim=255)
        / ICMPv6ND_NS(tgt=VIP6) / ICMPv6NDOptSrcLLAddr(lladdr=PEER),
}

# A 3000-byte UDP datagram each way, cut into fragments by scapy: each fragment is a case of its own
# ("natfrag_in_udp_0", "_1", ...); check.py reassembles what came out.
from scapy.all import fragment  # noqa: E402

for side, ip in (("in", IP(src=CLIENT, dst=VIP, id=4242) / UDP(sport=5353, dport=80) / Raw(b"f" * 3000)),
                 ("out", IP(src=RIP, dst=CLIENT, id=4343) / UDP(sport=8080, dport=5353) / Raw(b"g" * 3000))):
    for n, frag in enumerate(fragment(IP(raw(ip)), fragsize=1480)):
        cases[f"natfrag_{side}_udp_{n}"] = Ether(src=PEER, dst=ME) / frag

for name, pkt in cases.items():
    print(f"{name}\t{raw(pkt).hex()}")
