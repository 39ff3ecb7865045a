//! DR and TUN on arbitrary frames: a forwarded DR frame keeps its IP packet (but for the TTL); a
//! tunnelled one (IPIP, GRE with and without its checksum, GUE) carries the original IP packet intact
//! behind valid outer headers.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rvs_wire::rewrite::{Encap, TunOuter, Verdict, dr, parse_ip, tun};
use rvs_wire::{PacketBuffer, VecBuffer};

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else { return };
    let Ok(info) = parse_ip(frame) else { return };
    let eg = egress(sel);
    let mut b = VecBuffer::new(frame);
    if sel & 4 == 0 {
        match dr(&mut b, &eg) {
            Ok(Verdict::Forward) => {
                let out = parse_ip(b.bytes()).expect("re-parses");
                assert_eq!((out.src, out.dst, out.ip_len), (info.src, info.dst, info.ip_len));
                if eg.ttl == TtlPolicy::Preserve {
                    assert_eq!(&b.bytes()[14..], &frame[info.l2_len..], "IP untouched");
                }
            }
            _ => assert_eq!(b.bytes(), frame),
        }
    } else {
        let v6 = sel & 8 != 0;
        let outer = TunOuter {
            src: if v6 { "2001:db8::1".parse().unwrap() } else { "203.0.113.1".parse().unwrap() },
            dst: if v6 { "2001:db8::2".parse().unwrap() } else { "203.0.113.2".parse().unwrap() },
            ttl: 64,
            ident: u16::from(sel),
            encap: match (sel >> 4) & 3 {
                0 => Encap::Ipip,
                1 => Encap::Gre { csum: sel & 0x40 == 0 },
                2 => Encap::Gre { csum: true },
                _ => Encap::Gue { sport: 49152 | u16::from(sel), dport: 6080, csum: sel & 0x40 != 0 },
            },
        };
        match tun(&mut b, &eg, &outer) {
            Ok(Verdict::Forward) => {
                let o = parse_ip(b.bytes()).expect("outer parses");
                assert_eq!((o.src, o.dst), (outer.src, outer.dst));
                let seg = b.bytes().get(o.l4_offset..).expect("encapsulation");
                let inner = seg.get(outer.encap.len()..).expect("inner");
                assert_eq!(inner.len(), info.ip_len, "exactly the inner packet, no padding");
                if !v6 {
                    assert!(Ipv4Packet::new_checked(&b.bytes()[14..]).unwrap().verify_checksum());
                }
                match outer.encap {
                    Encap::Gre { csum: true } => assert!(rvs_wire::checksum::verify(seg), "GRE checksum"),
                    Encap::Gue { csum: true, .. } => {
                        let u = rvs_wire::udp::UdpDatagram::new_checked(seg).expect("udp");
                        assert!(u.verify_checksum_v4([203, 0, 113, 1].into(), [203, 0, 113, 2].into()));
                    }
                    _ => {}
                }
                if eg.ttl == TtlPolicy::Preserve {
                    assert_eq!(inner, &frame[info.l2_len..info.l2_len + info.ip_len]);
                }
            }
            _ => assert_eq!(b.bytes(), frame),
        }
    }
});
