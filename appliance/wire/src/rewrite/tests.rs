//! Rewrite semantics on hand-built packets. The independent check of the same rewrites (scapy
//! decoding our output) is tests/scapy_oracle.rs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;
use crate::buffer::VecBuffer;
use crate::checksum;
use crate::icmpv4::{self, Icmpv4Packet};
use crate::ip_proto;
use crate::ipv4::{self, Ipv4Packet};
use crate::tcp::TcpSegment;
use crate::udp::UdpDatagram;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
const RIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const ME: [u8; 6] = [0x02, 0, 0, 0, 0, 0xd1];
const RS_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];

fn egress(ttl: TtlPolicy) -> Egress {
    Egress { src_mac: ME, dst_mac: RS_MAC, mtu: 1500, ttl, offload: Offload::NONE }
}

fn mapping() -> NatMapping {
    NatMapping { virt: (VIP.into(), 80), real: (RIP.into(), 8080) }
}

/// Ethernet + IPv4 + TCP or UDP with a payload, all checksums valid.
fn v4_frame(
    proto: u8,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: &[u8],
    ttl: u8,
    vlan: bool,
) -> Vec<u8> {
    let l4_len = if proto == ip_proto::TCP { 20 } else { 8 } + payload.len();
    let mut f = vec![0u8; 14 + 20 + l4_len];
    crate::ethernet::write_header(&mut f, ME, [0x02, 0, 0, 0, 0, 0xc1], crate::ethernet::ethertype::IPV4)
        .unwrap();
    ipv4::write_header(&mut f[14..], src.0, dst.0, proto, l4_len, ttl, 0x10, 7, true).unwrap();
    let l4 = &mut f[34..];
    l4[0..2].copy_from_slice(&src.1.to_be_bytes());
    l4[2..4].copy_from_slice(&dst.1.to_be_bytes());
    if proto == ip_proto::TCP {
        l4[12] = 0x50;
        l4[13] = 0x18;
        l4[20..].copy_from_slice(payload);
        TcpSegment::new_unchecked(&mut l4[..]).fill_checksum_v4(src.0, dst.0);
    } else {
        l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        l4[8..].copy_from_slice(payload);
        UdpDatagram::new_unchecked(&mut l4[..]).fill_checksum_v4(src.0, dst.0);
    }
    if vlan {
        f.splice(12..12, [0x81, 0x00, 0x00, 0x2a]);
    }
    f
}

/// Every checksum in an IPv4 TCP/UDP frame, recomputed from scratch, matches what is there.
fn assert_v4_checksums(frame: &[u8]) {
    let info = parse_ip(frame).unwrap();
    let ip = Ipv4Packet::new_checked(&frame[info.l2_len..]).unwrap();
    assert!(ip.verify_checksum(), "IPv4 header checksum");
    let seg = ip.payload();
    match info.protocol {
        ip_proto::TCP => {
            assert!(TcpSegment::new_checked(seg).unwrap().verify_checksum_v4(ip.src(), ip.dst()))
        }
        ip_proto::UDP => {
            assert!(UdpDatagram::new_checked(seg).unwrap().verify_checksum_v4(ip.src(), ip.dst()))
        }
        ip_proto::ICMP => assert!(Icmpv4Packet::new_checked(seg).unwrap().verify_checksum()),
        _ => {}
    }
}

#[test]
fn nat_in_rewrites_destination_and_keeps_checksums_right() {
    for proto in [ip_proto::TCP, ip_proto::UDP] {
        let f = v4_frame(proto, (CLIENT, 40000), (VIP, 80), b"GET / HTTP/1.0\r\n\r\n", 64, true);
        let mut b = VecBuffer::new(&f);
        assert_eq!(nat_in(&mut b, &egress(TtlPolicy::Decrement), &mapping()), Ok(Verdict::Forward));
        let out = b.bytes();
        assert_eq!(out.len(), f.len() - 4, "VLAN tag removed");
        assert_eq!(&out[..12], &[RS_MAC, ME].concat()[..]);
        let info = parse_ip(out).unwrap();
        assert_eq!((info.src, info.dst, info.ttl), (IpAddr::from(CLIENT), IpAddr::from(RIP), 63));
        assert_eq!(&out[34..38], &[0x9c, 0x40, 0x1f, 0x90], "ports 40000 -> 8080");
        assert_v4_checksums(out);
    }
}

#[test]
fn nat_out_rewrites_source_and_round_trips() {
    let f = v4_frame(ip_proto::TCP, (RIP, 8080), (CLIENT, 40000), &[0xaa; 333], 64, false);
    let mut b = VecBuffer::new(&f);
    assert_eq!(nat_out(&mut b, &egress(TtlPolicy::Preserve), &mapping()), Ok(Verdict::Forward));
    let info = parse_ip(b.bytes()).unwrap();
    assert_eq!((info.src, info.dst), (IpAddr::from(VIP), IpAddr::from(CLIENT)));
    assert_v4_checksums(b.bytes());
    // Translating back with the mapping reversed restores the original bytes (but for L2).
    let back = NatMapping { virt: mapping().real, real: mapping().virt };
    let eg = Egress { src_mac: [0x02, 0, 0, 0, 0, 0xc1], dst_mac: ME, ..egress(TtlPolicy::Preserve) };
    assert_eq!(nat_out(&mut b, &eg, &back), Ok(Verdict::Forward));
    assert_eq!(b.bytes(), &f[..]);
}

#[test]
fn udp_without_checksum_stays_without() {
    let mut f = v4_frame(ip_proto::UDP, (CLIENT, 5353), (VIP, 80), b"x", 64, false);
    f[40] = 0;
    f[41] = 0;
    let mut b = VecBuffer::new(&f);
    assert_eq!(nat_in(&mut b, &egress(TtlPolicy::Decrement), &mapping()), Ok(Verdict::Forward));
    assert_eq!(&b.bytes()[40..42], &[0, 0]);
}

#[test]
fn with_offload_the_nic_completes_the_checksums() {
    for proto in [ip_proto::TCP, ip_proto::UDP] {
        let f = v4_frame(proto, (CLIENT, 40000), (VIP, 80), b"offloaded payload", 64, false);
        let mut b = VecBuffer::new(&f);
        let eg = Egress { offload: Offload { ipv4: true, l4: true }, ..egress(TtlPolicy::Decrement) };
        assert_eq!(nat_in(&mut b, &eg, &mapping()), Ok(Verdict::Forward));
        let mut out = b.into_vec();
        assert_eq!(&out[24..26], &[0, 0], "IPv4 checksum left to the NIC");
        let seg_len = out.len() - 34;
        let phdr = checksum::pseudo_header_v4(CLIENT, RIP, proto, seg_len as u16);
        let at = 34 + if proto == ip_proto::TCP { 16 } else { 6 };
        assert_eq!(u16::from_be_bytes([out[at], out[at + 1]]), checksum::fold(phdr), "pseudo-header sum");
        // What the NIC does: the IP checksum over the header; the L4 checksum over the segment,
        // starting from the pseudo-header sum already in the field.
        let ip = checksum::checksum(&out[14..34]);
        out[24..26].copy_from_slice(&ip.to_be_bytes());
        let l4 = checksum::checksum(&out[34..]);
        out[at..at + 2].copy_from_slice(&l4.to_be_bytes());
        assert_v4_checksums(&out);
        let mut soft = VecBuffer::new(&f);
        assert_eq!(nat_in(&mut soft, &egress(TtlPolicy::Decrement), &mapping()), Ok(Verdict::Forward));
        assert_eq!(out, soft.into_vec(), "the NIC's result equals the software one");
    }
}

#[test]
fn refusals_leave_the_packet_untouched() {
    let f = v4_frame(ip_proto::TCP, (CLIENT, 40000), (VIP, 80), &[0; 1000], 1, false);
    let mut b = VecBuffer::new(&f);
    assert_eq!(nat_in(&mut b, &egress(TtlPolicy::Decrement), &mapping()), Ok(Verdict::TtlExceeded));
    assert_eq!(dr(&mut b, &egress(TtlPolicy::Decrement)), Ok(Verdict::TtlExceeded));
    assert_eq!(b.bytes(), &f[..]);
    let small = Egress { mtu: 1000, ..egress(TtlPolicy::Preserve) };
    assert_eq!(nat_in(&mut b, &small, &mapping()), Ok(Verdict::FragNeeded { mtu: 1000 }));
    assert_eq!(b.bytes(), &f[..]);
    let wrong = NatMapping { virt: (VIP.into(), 443), real: (RIP.into(), 443) };
    assert!(nat_in(&mut b, &egress(TtlPolicy::Preserve), &wrong).is_err());
    assert_eq!(b.bytes(), &f[..]);
    // DF clear and too big: IPVS would fragment; rvs refuses without change.
    let mut no_df = f.clone();
    no_df[20] = 0;
    Ipv4Packet::new_checked(&mut no_df[14..]).unwrap().fill_checksum();
    let mut b = VecBuffer::new(&no_df);
    assert_eq!(dr(&mut b, &small), Ok(Verdict::TooBig));
    assert_eq!(b.bytes(), &no_df[..]);
}

#[test]
fn fragments_and_other_protocols_are_not_natted() {
    let mut f = v4_frame(ip_proto::UDP, (CLIENT, 1), (VIP, 80), b"abc", 64, false);
    f[20] |= 0x20; // MF
    Ipv4Packet::new_checked(&mut f[14..]).unwrap().fill_checksum();
    assert_eq!(
        nat_in(&mut VecBuffer::new(&f), &egress(TtlPolicy::Preserve), &mapping()),
        Err(PacketError::Unsupported("IP fragment"))
    );
}

#[test]
fn dr_changes_only_the_macs_when_ttl_is_preserved() {
    let f = v4_frame(ip_proto::TCP, (CLIENT, 40000), (VIP, 80), b"hello", 64, false);
    let mut b = VecBuffer::new(&f);
    assert_eq!(dr(&mut b, &egress(TtlPolicy::Preserve)), Ok(Verdict::Forward));
    assert_eq!(&b.bytes()[..12], &[RS_MAC, ME].concat()[..]);
    assert_eq!(&b.bytes()[12..], &f[12..], "IP packet byte for byte untouched");

    let mut b = VecBuffer::new(&f);
    assert_eq!(dr(&mut b, &egress(TtlPolicy::Decrement)), Ok(Verdict::Forward));
    let diff: Vec<usize> = (12..f.len()).filter(|&i| b.bytes()[i] != f[i]).collect();
    assert!(
        diff.iter().all(|&i| i == 14 + 8 || i == 14 + 10 || i == 14 + 11),
        "only TTL and checksum: {diff:?}"
    );
    assert_v4_checksums(b.bytes());
}

#[test]
fn tun_encapsulates_with_inner_tos_and_df() {
    let mut f = v4_frame(ip_proto::UDP, (CLIENT, 5000), (VIP, 53), b"q", 64, true);
    f.extend_from_slice(&[0u8; 10]); // Ethernet padding must not be tunnelled
    let mut b = VecBuffer::new(&f);
    let outer = TunOuter {
        src: Ipv4Addr::new(203, 0, 113, 1).into(),
        dst: RIP.into(),
        ttl: 64,
        ident: 0x4242,
        encap: Default::default(),
    };
    assert_eq!(tun(&mut b, &egress(TtlPolicy::Decrement), &outer), Ok(Verdict::Forward));
    let out = b.bytes();
    let o = Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert_eq!(
        (o.protocol(), o.src(), o.dst(), o.tos(), o.dont_frag(), o.ttl()),
        (4, Ipv4Addr::new(203, 0, 113, 1), RIP, 0x10, true, 64)
    );
    assert!(o.verify_checksum());
    assert_eq!(usize::from(o.total_len()), out.len() - 14, "no padding inside the tunnel");
    let inner = Ipv4Packet::new_checked(o.payload()).unwrap();
    assert_eq!((inner.src(), inner.dst(), inner.ttl()), (CLIENT, VIP, 63));
    assert!(inner.verify_checksum());
    assert_eq!(inner.payload(), &f[38..38 + 9], "inner transport untouched");

    let big = v4_frame(ip_proto::TCP, (CLIENT, 1), (VIP, 80), &[0; 1460], 64, false);
    let mut b = VecBuffer::new(&big);
    assert_eq!(tun(&mut b, &egress(TtlPolicy::Decrement), &outer), Ok(Verdict::FragNeeded { mtu: 1480 }));
    assert_eq!(b.bytes(), &big[..]);
}

#[test]
fn tun_over_ipv6_and_mixed_families() {
    let f = v4_frame(ip_proto::TCP, (CLIENT, 1), (VIP, 80), b"x", 64, false);
    let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let dst: Ipv6Addr = "2001:db8::10".parse().unwrap();
    let mut b = VecBuffer::new(&f);
    let outer = TunOuter { src: src.into(), dst: dst.into(), ttl: 64, ident: 0, encap: Default::default() };
    assert_eq!(tun(&mut b, &egress(TtlPolicy::Preserve), &outer), Ok(Verdict::Forward));
    let o = crate::ipv6::Ipv6Packet::new_checked(&b.bytes()[14..]).unwrap();
    assert_eq!((o.next_header(), o.src(), o.dst(), o.traffic_class()), (ip_proto::IPIP, src, dst, 0x10));
    assert_eq!(o.payload(), &f[14..]);
    let mixed = TunOuter { src: src.into(), dst: RIP.into(), ttl: 64, ident: 0, encap: Default::default() };
    assert!(tun(&mut VecBuffer::new(&f), &egress(TtlPolicy::Preserve), &mixed).is_err());
}

/// An ICMP error from `from` about `quoted` (an IPv4 packet).
fn icmp_error(from: Ipv4Addr, to: Ipv4Addr, kind: icmpv4::ErrorKind, quoted_frame: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 700];
    let n =
        icmpv4::build_error(&mut out, ME, [0x02, 0, 0, 0, 0, 0xee], from, kind, &quoted_frame[14..]).unwrap();
    out.truncate(n);
    let mut ip = Ipv4Packet::new_checked(&mut out[14..]).unwrap();
    ip.set_dst(to);
    ip.fill_checksum();
    out
}

#[test]
fn icmp_frag_needed_from_the_client_side_reaches_the_real_server() {
    // The director's reply VIP:80 -> client hit a smaller MTU near the client; a router there says so.
    let reply = v4_frame(ip_proto::TCP, (VIP, 80), (CLIENT, 40000), &[0; 1400], 63, false);
    let router = Ipv4Addr::new(198, 51, 100, 1);
    let err = icmp_error(router, VIP, icmpv4::ErrorKind::FragNeeded { mtu: 1400 }, &reply);
    assert_eq!(icmp_error_inner(&err).unwrap(), (ip_proto::TCP, (VIP, 80), (CLIENT, 40000)));
    let mut b = VecBuffer::new(&err);
    assert_eq!(icmp_nat_in(&mut b, &egress(TtlPolicy::Decrement), &mapping()), Ok(Verdict::Forward));
    assert_v4_checksums(b.bytes());
    let info = parse_ip(b.bytes()).unwrap();
    assert_eq!((info.src, info.dst), (IpAddr::from(router), IpAddr::from(RIP)));
    assert_eq!(icmp_error_inner(b.bytes()).unwrap(), (ip_proto::TCP, (RIP, 8080), (CLIENT, 40000)));
    let icmp = Icmpv4Packet::new_checked(&b.bytes()[34..]).unwrap();
    assert_eq!(icmp.next_hop_mtu(), 1400);
    assert!(Ipv4Packet::new_checked_header(icmp.data()).unwrap().verify_checksum(), "quoted header checksum");
}

#[test]
fn icmp_port_unreachable_from_the_real_server_side_reaches_the_client() {
    let to_rs = v4_frame(ip_proto::UDP, (CLIENT, 5353), (RIP, 8080), b"question", 63, false);
    let err = icmp_error(RIP, CLIENT, icmpv4::ErrorKind::PortUnreachable, &to_rs);
    let mut b = VecBuffer::new(&err);
    let eg = Egress { dst_mac: [0x02, 0, 0, 0, 0, 0xc1], ..egress(TtlPolicy::Decrement) };
    assert_eq!(icmp_nat_out(&mut b, &eg, &mapping()), Ok(Verdict::Forward));
    assert_v4_checksums(b.bytes());
    let info = parse_ip(b.bytes()).unwrap();
    assert_eq!((info.src, info.dst), (IpAddr::from(VIP), IpAddr::from(CLIENT)));
    assert_eq!(icmp_error_inner(b.bytes()).unwrap(), (ip_proto::UDP, (CLIENT, 5353), (VIP, 80)));
    // The quoted UDP datagram is whole here, so its checksum can be checked too.
    let icmp = Icmpv4Packet::new_checked(&b.bytes()[34..]).unwrap();
    let q = Ipv4Packet::new_checked(icmp.data()).unwrap();
    assert!(UdpDatagram::new_checked(q.payload()).unwrap().verify_checksum_v4(q.src(), q.dst()));
}

#[test]
fn echo_replies_in_place() {
    let mut f = v4_frame(ip_proto::UDP, (CLIENT, 0), (VIP, 0), &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 3, true);
    // Turn the UDP frame into an ICMP echo request: protocol 1, type 8.
    let l4 = 18 + 20;
    f[18 + 9] = ip_proto::ICMP;
    f[l4] = icmpv4::kind::ECHO_REQUEST;
    f[l4 + 1] = 0;
    Ipv4Packet::new_checked(&mut f[18..]).unwrap().fill_checksum();
    Icmpv4Packet::new_checked(&mut f[l4..]).unwrap().fill_checksum();
    let mut b = VecBuffer::new(&f);
    echo_reply_v4(&mut b).unwrap();
    let out = b.bytes();
    assert_eq!(&out[..12], &[&f[6..12], &f[..6]].concat()[..]);
    assert_eq!(&out[12..16], &f[12..16], "VLAN tag kept: the reply leaves where the request came in");
    let info = parse_ip(out).unwrap();
    assert_eq!((info.src, info.dst, info.ttl), (IpAddr::from(VIP), IpAddr::from(CLIENT), 64));
    assert_v4_checksums(out);
    assert_eq!(out[l4], icmpv4::kind::ECHO_REPLY);
    assert!(echo_reply_v4(&mut b).is_err(), "a reply is not answered");
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    let frames = [
        v4_frame(ip_proto::TCP, (CLIENT, 40000), (VIP, 80), b"abc", 64, true),
        v4_frame(ip_proto::UDP, (CLIENT, 40000), (VIP, 80), b"abc", 64, false),
    ];
    let outer = TunOuter {
        src: Ipv4Addr::new(203, 0, 113, 1).into(),
        dst: RIP.into(),
        ttl: 64,
        ident: 0,
        encap: Default::default(),
    };
    for f in &frames {
        for n in 0..f.len() {
            let cut = &f[..n];
            let eg = egress(TtlPolicy::Decrement);
            assert!(nat_in(&mut VecBuffer::new(cut), &eg, &mapping()).is_err(), "{n}");
            assert!(dr(&mut VecBuffer::new(cut), &eg).is_err(), "{n}");
            assert!(tun(&mut VecBuffer::new(cut), &eg, &outer).is_err(), "{n}");
            assert!(icmp_nat_in(&mut VecBuffer::new(cut), &eg, &mapping()).is_err(), "{n}");
        }
    }
}

proptest! {
    /// NAT in both directions on random packets and mappings: incremental checksums equal a full
    /// recomputation, and the reverse translation restores the original packet.
    #[test]
    fn nat_checksums_equal_full_recompute(
        tcp in any::<bool>(),
        client in any::<[u8; 4]>(), cport in 1u16.., vport in 1u16.., rport in 1u16..,
        vip in any::<[u8; 4]>(), rip in any::<[u8; 4]>(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        ttl in 2u8..,
    ) {
        let proto = if tcp { ip_proto::TCP } else { ip_proto::UDP };
        let (client, vip, rip) = (Ipv4Addr::from(client), Ipv4Addr::from(vip), Ipv4Addr::from(rip));
        let f = v4_frame(proto, (client, cport), (vip, vport), &payload, ttl, false);
        let m = NatMapping { virt: (vip.into(), vport), real: (rip.into(), rport) };
        let mut b = VecBuffer::new(&f);
        prop_assert_eq!(nat_in(&mut b, &egress(TtlPolicy::Decrement), &m), Ok(Verdict::Forward));
        let incremental = b.bytes().to_vec();
        // Recompute every checksum from scratch and compare.
        let mut full = incremental.clone();
        Ipv4Packet::new_checked(&mut full[14..]).unwrap().fill_checksum();
        let seg = &mut full[34..];
        if tcp {
            TcpSegment::new_checked(seg).unwrap().fill_checksum_v4(client, rip);
        } else {
            UdpDatagram::new_checked(seg).unwrap().fill_checksum_v4(client, rip);
        }
        prop_assert_eq!(&incremental, &full);

        let back = NatMapping { virt: m.real, real: m.virt };
        let eg = Egress { src_mac: [0x02, 0, 0, 0, 0, 0xc1], dst_mac: ME, ..egress(TtlPolicy::Preserve) };
        prop_assert_eq!(nat_in(&mut b, &eg, &back), Ok(Verdict::Forward));
        let mut expect = f.clone();
        Ipv4Packet::new_checked(&mut expect[14..]).unwrap().decrement_ttl();
        prop_assert_eq!(b.bytes(), &expect[..]);
        prop_assert!(checksum::verify(&b.bytes()[14..34]));
    }
}
