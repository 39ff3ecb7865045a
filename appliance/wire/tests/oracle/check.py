#!/usr/bin/python3
"""Judges the rewrites with scapy, which shares no code with rvs.

Reads lines "name<TAB>input-hex<TAB>output-hex" (the output of the Rust side), decodes both with scapy,
has scapy recompute every checksum it can (it fills any field set to None), and checks that the
bytes are identical to ours, plus the addresses, ports, MACs, lengths, TTLs and inner packets each
mode requires. Prints one line per case and "N passed, M failed"; exits 1 on any failure.
"""
import sys

from scapy.all import (ARP, GRE, ICMP, IP, TCP, UDP, Dot1Q, Ether, ICMPv6DestUnreach, ICMPv6EchoReply,
                       ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, ICMPv6PacketTooBig, IPerror, IPerror6, IPv6,
                       TCPerror, UDPerror, raw)

CLIENT, VIP, RIP, ROUTER, ME_IP = "198.51.100.7", "192.0.2.80", "203.0.113.10", "198.51.100.1", "203.0.113.1"
CLIENT6, VIP6, RIP6, ME_IP6, ROUTER6 = "2001:db8:1::7", "2001:db8::80", "2001:db8:2::10", "2001:db8:2::1", "2001:db8:1::1"
ME, PEER, RS_MAC = "02:00:00:00:00:d1", "02:00:00:00:00:c1", "02:00:00:00:00:10"

failures = []
frags = {}


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def checksums_match(pkt, keep_inner_l4=False, keep_udp=False):
    """Deletes every checksum scapy knows how to compute, rebuilds, and compares bytes. keep_udp: a
    UDP checksum of 0 means "none" over IPv4 and must stay 0, so it is not recomputed."""
    p = pkt.copy()
    for layer in (IP, TCP, ICMP, IPerror, GRE) + (() if keep_udp else (UDP,)):
        if layer in p:
            del p[layer].chksum
    if not keep_inner_l4:
        for layer in (TCPerror, UDPerror):
            if layer in p:
                del p[layer].chksum
    for layer in p.layers():
        if layer.__name__.startswith("ICMPv6") and hasattr(p[layer], "cksum"):
            del p[layer].cksum
    rebuilt = raw(Ether(raw(p)))
    expect(rebuilt == raw(pkt), f"checksums differ from scapy's:\n ours   {raw(pkt).hex()}\n scapy  {rebuilt.hex()}")


def inner_intact(inner, src_i, inner6):
    """A tunnelled packet is the client's, but for its TTL / hop limit (one less)."""
    expect(inner.src == src_i.src and inner.dst == src_i.dst, "inner addresses intact")
    if inner6:
        expect(inner.hlim == src_i.hlim - 1, "inner hop limit decremented")
    else:
        expect(inner.ttl == src_i.ttl - 1, "inner TTL decremented")
        checksums_match(Ether() / inner)
    expect(raw(inner.payload) == raw(src_i.payload), "inner transport intact")


def l2_to_rs(o):
    expect(o.src == ME and o.dst == RS_MAC, f"L2 {o.src} -> {o.dst}")
    expect(Dot1Q not in o, "VLAN tag removed")


def check(name, i, o):
    if name.startswith("nat_in_"):
        l2_to_rs(o)
        checksums_match(o, keep_udp=(name == "nat_in_udp_nocsum"))
        ip_i, ip_o = (i[IPv6], o[IPv6]) if IPv6 in i else (i[IP], o[IP])
        vip, rip = (VIP6, RIP6) if IPv6 in i else (VIP, RIP)
        expect(ip_i.dst == vip and ip_o.dst == rip and ip_o.src == ip_i.src, "addresses")
        l4 = TCP if TCP in i else UDP
        expect(o[l4].dport == 8080 and o[l4].sport == i[l4].sport, "ports")
        expect(bytes(o[l4].payload) == bytes(i[l4].payload), "payload")
        ttl = ip_o.hlim if IPv6 in i else ip_o.ttl
        ttl_i = ip_i.hlim if IPv6 in i else ip_i.ttl
        expect(ttl == ttl_i - 1, "TTL decremented")
        if IP in i:
            expect(ip_o.options == ip_i.options and ip_o.tos == ip_i.tos and ip_o.len == ip_i.len, "IPv4 header kept")
        if name == "nat_in_udp_nocsum":
            expect(o[UDP].chksum == 0, "a disabled UDP checksum stays disabled")
        if name == "nat_in_tcp":
            expect(o[TCP].options == i[TCP].options, "TCP options kept")
    elif name.startswith("nat_out_"):
        expect(o.src == ME and o.dst == PEER, "L2 back to the client side")
        checksums_match(o)
        ip_o = o[IPv6] if IPv6 in o else o[IP]
        vip, client = (VIP6, CLIENT6) if IPv6 in o else (VIP, CLIENT)
        expect(ip_o.src == vip and ip_o.dst == client, "source is the VIP")
        l4 = TCP if TCP in o else UDP
        expect(o[l4].sport == 80, "source port is the virtual port")
    elif name.startswith("dr_"):
        l2_to_rs(o)
        if name == "dr_keep_v4":
            expect(raw(o)[12:] == raw(i)[12:], "IP packet untouched")
        else:
            checksums_match(o)
            ip_i, ip_o = (i[IPv6], o[IPv6]) if IPv6 in i else (i[IP], o[IP])
            if IPv6 in i:
                expect(ip_o.hlim == ip_i.hlim - 1, "hop limit")
            else:
                expect(ip_o.ttl == ip_i.ttl - 1, "TTL")
            expect(raw(ip_o.payload) == raw(ip_i.payload), "transport untouched")
    elif name == "mss_tun_4in4":
        l2_to_rs(o)
        checksums_match(o)
        inner = o[IP].payload
        expect(isinstance(inner, IP) and inner.dst == VIP, "IPIP to the real server")
        checksums_match(Ether() / inner)
        opts = dict((k, v) for k, v in inner[TCP].options)
        expect(opts.get("MSS") == 1440, f"MSS clamped to 1440: {inner[TCP].options}")
        expect(opts.get("WScale") == 7 and "SAckOK" in opts, "the other options intact")
    elif name.startswith(("gre", "gue")) and name != "gue_toobig":
        # GRE (RFC 2784) or GUE variant 0 in UDP to port 6080, as the kernel's IPVS encapsulates.
        l2_to_rs(o)
        inner6 = name.endswith("6in4")
        outer = o[IP]
        src_i = i[IPv6] if inner6 else i[IP]
        expect(outer.src == ME_IP and outer.dst == RIP, "outer IPv4 addresses")
        expect(outer.tos == (src_i.tc if inner6 else src_i.tos), "outer TOS follows inner")
        expect(bool(outer.flags.DF) == (True if inner6 else bool(src_i.flags.DF)), "outer DF follows inner")
        expect(outer.len == len(raw(outer)), "outer total length")
        if name.startswith("gre"):
            csum = name.startswith("grecsum")
            expect(outer.proto == 47 and GRE in o, "GRE")
            g = o[GRE]
            expect(g.proto == (0x86DD if inner6 else 0x0800), f"GRE protocol {g.proto:#x}")
            expect(bool(g.chksum_present) == csum and not g.key_present and not g.seqnum_present, "GRE flags")
            expect(len(raw(g)) - len(raw(g.payload)) == (8 if csum else 4), "GRE header length")
            checksums_match(o)
            inner = g.payload
        else:
            csum = name.startswith("guecsum")
            expect(outer.proto == 17 and UDP in o, "UDP")
            u = o[UDP]
            expect(u.dport == 6080 and u.sport >= 49152, f"GUE ports {u.sport} -> {u.dport}")
            expect(u.len == len(raw(u)), "UDP length")
            expect((u.chksum != 0) == csum, f"UDP checksum {u.chksum:#x}")
            checksums_match(o, keep_udp=not csum)
            body = raw(u.payload)
            expect(body[:4] == bytes([0, 41 if inner6 else 4, 0, 0]), f"GUE header {body[:4].hex()}")
            inner = IPv6(body[4:]) if inner6 else IP(body[4:])
        inner_intact(inner, src_i, inner6)
    elif name.startswith("tun_") and name != "tun_toobig":
        l2_to_rs(o)
        outer6 = name in ("tun_4in6", "tun_6in6")
        inner6 = name in ("tun_6in4", "tun_6in6")
        outer = o[IPv6] if outer6 else o[IP]
        checksums_match(o)
        if outer6:
            expect(outer.src == ME_IP6 and outer.dst == RIP6 and outer.nh == (41 if inner6 else 4), "outer IPv6")
            inner = IPv6(raw(outer.payload)) if inner6 else IP(raw(outer.payload))
            expect(outer.plen == len(raw(inner)), "outer payload length")
        else:
            expect(outer.src == ME_IP and outer.dst == RIP and outer.proto == (41 if inner6 else 4), "outer IPv4")
            inner = outer.payload
            expect(outer.len == 20 + len(raw(inner)), "outer total length")
            ti = i[IPv6].tc if inner6 else i[IP].tos
            expect(outer.tos == ti, f"outer TOS {outer.tos} = inner {ti}")
            want_df = True if inner6 else bool(i[IP].flags.DF)
            expect(bool(outer.flags.DF) == want_df, "outer DF follows inner")
        src_i = i[IPv6] if inner6 else i[IP]
        inner_intact(inner, src_i, inner6)
    elif name in ("tun_toobig", "gue_toobig", "ttl_expired"):
        # The Rust side answered with the ICMP error the verdict asked for.
        expect(o.dst == PEER and o.src == ME, "error goes back to the sender's MAC")
        checksums_match(o, keep_inner_l4=True)
        expect(o[IP].src == ME_IP and o[IP].dst == CLIENT, "error addressed to the client")
        if name == "tun_toobig":
            expect(o[ICMP].type == 3 and o[ICMP].code == 4 and o[ICMP].nexthopmtu == 1480, "frag needed, MTU 1480")
        elif name == "gue_toobig":
            # 20 bytes of outer IPv4, 8 of UDP, 4 of GUE.
            expect(o[ICMP].type == 3 and o[ICMP].code == 4 and o[ICMP].nexthopmtu == 1468, "frag needed, MTU 1468")
        else:
            expect(o[ICMP].type == 11 and o[ICMP].code == 0, "time exceeded")
        quoted = raw(o[ICMP].payload)
        expect(quoted == raw(i[IP])[: len(quoted)] and len(quoted) == min(len(raw(i[IP])), 548), "quotes the original")
    elif name.startswith("icmp_in_"):
        l2_to_rs(o)
        checksums_match(o, keep_inner_l4=True)
        expect(o[IP].src == ROUTER and o[IP].dst == RIP, "outer: router -> real server")
        expect(o[IPerror].src == RIP and o[IPerror].dst == CLIENT, "quoted: real server -> client")
        l4 = TCPerror if TCPerror in o else UDPerror
        expect(o[l4].sport == 8080 and o[l4].dport == i[l4].dport, "quoted ports")
        expect(o[ICMP].type == i[ICMP].type and o[ICMP].code == i[ICMP].code, "type/code kept")
        if i[ICMP].type == 3:
            expect(o[ICMP].nexthopmtu == 1400, "MTU kept")
    elif name.startswith("icmp_out_"):
        expect(o.src == ME and o.dst == PEER, "towards the client")
        checksums_match(o, keep_inner_l4=True)
        expect(o[IP].src == VIP and o[IP].dst == CLIENT, "outer: VIP -> client")
        expect(o[IPerror].src == CLIENT and o[IPerror].dst == VIP and o[UDPerror].dport == 80, "quoted: client -> VIP:80")
        # This quote is a whole datagram: its UDP checksum must verify too.
        q = IP(raw(o[IPerror]))
        again = q.copy()
        del again[UDP].chksum
        expect(IP(raw(again))[UDP].chksum == q[UDP].chksum, "quoted UDP checksum")
    elif name.startswith("icmp6_in_"):
        l2_to_rs(o)
        checksums_match(o, keep_inner_l4=True)
        expect(o[IPv6].src == ROUTER6 and o[IPv6].dst == RIP6 and o[IPv6].hlim == i[IPv6].hlim - 1, "outer: router -> real server, hop limit less one")
        expect(o[IPerror6].src == RIP6 and o[IPerror6].dst == CLIENT6, "quoted: real server -> client")
        expect(o[TCPerror].sport == 8080 and o[TCPerror].dport == 40000, "quoted ports")
        expect(o[ICMPv6PacketTooBig].mtu == 1400, "MTU kept")
    elif name.startswith("icmp6_out_"):
        expect(o.src == ME and o.dst == PEER, "towards the client")
        checksums_match(o, keep_inner_l4=True)
        expect(o[IPv6].src == VIP6 and o[IPv6].dst == CLIENT6, "outer: VIP -> client")
        expect(o[ICMPv6DestUnreach].code == 4, "port unreachable kept")
        expect(o[IPerror6].src == CLIENT6 and o[IPerror6].dst == VIP6 and o[UDPerror].dport == 80, "quoted: client -> VIP:80")
        q = IPv6(raw(o[IPerror6]))
        again = q.copy()
        del again[UDP].chksum
        expect(IPv6(raw(again))[UDP].chksum == q[UDP].chksum, "quoted UDP checksum")
    elif name == "echo_v4":
        checksums_match(o)
        expect(o.dst == PEER and o.src == ME, "MACs swapped")
        expect(o[IP].src == VIP and o[IP].dst == CLIENT and o[IP].ttl == 64, "addresses swapped, TTL 64")
        expect(o[ICMP].type == 0 and o[ICMP].id == 77 and o[ICMP].seq == 3, "echo reply")
        expect(bytes(o[ICMP].payload) == bytes(i[ICMP].payload), "data echoed")
    elif name.startswith("natfrag_"):
        # Each fragment: addressed and checksummed as IPv4 requires; the datagram is judged whole below.
        inbound = name.startswith("natfrag_in_")
        expect(o.src == ME, "L2 source")
        p = o[IP].copy()
        del p.chksum
        expect(raw(IP(raw(p)))[:20] == raw(o[IP])[:20], "IPv4 header checksum")
        expect(o[IP].id == i[IP].id and o[IP].frag == i[IP].frag and o[IP].flags == i[IP].flags, "fragment fields kept")
        expect((o[IP].dst == RIP) if inbound else (o[IP].src == VIP), "address translated")
        frags.setdefault("in" if inbound else "out", []).append(o[IP])
    elif name == "echo_v6":
        checksums_match(o)
        expect(o[IPv6].src == VIP6 and o[IPv6].dst == CLIENT6, "addresses swapped")
        expect(ICMPv6EchoReply in o and o[ICMPv6EchoReply].id == 5 and o[ICMPv6EchoReply].data == b"ping6", "echo reply")
    elif name == "arp_who_has":
        expect(o.dst == PEER and o.src == ME and o.type == 0x0806, "ARP reply frame")
        a = o[ARP]
        expect(a.op == 2 and a.hwsrc == ME and a.psrc == VIP and a.hwdst == PEER and a.pdst == CLIENT, "ARP reply fields")
    elif name == "vlan_pop":
        expect(Dot1Q not in o and o.type == 0x0800, "untagged IPv4")
        expect(o.src == PEER and o.dst == ME, "MAC addresses kept")
        expect(raw(o[IP]) == raw(i[IP]), "the IPv4 packet unchanged")
    elif name == "vlan_push":
        expect(Dot1Q in o and o[Dot1Q].vlan == 100 and o[Dot1Q].prio == 0 and o[Dot1Q].type == 0x0800, "tag 100 on IPv4")
        expect(o.src == ME and o.dst == PEER and o.type == 0x8100, "MAC addresses kept")
        expect(raw(o[IP]) == raw(i[IP]), "the IPv4 packet unchanged")
    elif name == "nd_ns":
        checksums_match(o)
        expect(o.dst == PEER and o[IPv6].src == VIP6 and o[IPv6].dst == CLIENT6 and o[IPv6].hlim == 255, "NA addressing")
        na = o[ICMPv6ND_NA]
        expect(na.tgt == VIP6 and na.S == 1 and na.O == 1 and na.R == 0, "NA flags and target")
        expect(o[ICMPv6NDOptDstLLAddr].lladdr == ME, "target link-layer address")
    else:
        raise AssertionError(f"no check for case {name}")


passed = 0
for line in open(sys.argv[1]):
    name, i_hex, o_hex = line.rstrip("\n").split("\t")
    try:
        check(name, Ether(bytes.fromhex(i_hex)), Ether(bytes.fromhex(o_hex)))
        passed += 1
        print(f"ok   {name}")
    except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the others
        failures.append(name)
        print(f"FAIL {name}: {e}")
# The fragments rewritten one by one must reassemble into the datagram NAT would have made of the
# whole: addresses and port translated, and a UDP checksum valid over all of it.
from scapy.all import defragment  # noqa: E402

for side, parts in frags.items():
    name = f"natfrag_{side}_reassembled"
    try:
        whole = [p for p in defragment(parts) if UDP in p]
        expect(len(whole) == 1, f"{len(parts)} fragments reassemble into one datagram")
        d = IP(raw(whole[0]))
        u = d[UDP]
        if side == "in":
            expect(d.dst == RIP and u.dport == 8080 and u.sport == 5353, "client -> real server")
        else:
            expect(d.src == VIP and u.sport == 80 and u.dport == 5353, "virtual server -> client")
        c = d.copy()
        del c[UDP].chksum
        expect(IP(raw(c))[UDP].chksum == u.chksum, f"UDP checksum over the whole datagram: {u.chksum:#x}")
        expect(len(bytes(u.payload)) == 3000, "payload whole")
        passed += 1
        print(f"ok   {name}")
    except Exception as e:  # noqa: BLE001
        failures.append(name)
        print(f"FAIL {name}: {e}")
print(f"{passed} passed, {len(failures)} failed")
sys.exit(1 if failures or passed == 0 else 0)
