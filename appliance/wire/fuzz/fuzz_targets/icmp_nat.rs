//! ICMP and ICMPv6 error translation on arbitrary frames, with a mapping built from the quoted flow.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rvs_wire::icmpv4::Icmpv4Packet;
use rvs_wire::icmpv6::Icmpv6Packet;
use rvs_wire::rewrite::{
    NatMapping, Verdict, icmp_error_inner, icmp_nat_in, icmp_nat_out, icmp6_error_inner, parse_ip,
};
use rvs_wire::{PacketBuffer, VecBuffer};

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else { return };
    icmp6(sel, frame);
    let Ok((_, src, dst)) = icmp_error_inner(frame) else { return };
    let other: IpAddr = "203.0.113.77".parse().unwrap();
    let icmp_ok = |f: &[u8]| {
        parse_ip(f).ok().and_then(|i| {
            Icmpv4Packet::new_checked(f.get(i.l4_offset..i.l2_len + i.ip_len)?)
                .ok()
                .map(|m| m.verify_checksum())
        })
    };
    let before = icmp_ok(frame);
    let mut b = VecBuffer::new(frame);
    let r = if sel & 4 == 0 {
        // Client side, about the director's reply: the quoted source is the virtual endpoint.
        let m = NatMapping { virt: (src.0.into(), src.1), real: (other, u16::from(sel) | 1) };
        icmp_nat_in(&mut b, &egress(sel), &m)
    } else {
        let m = NatMapping { real: (dst.0.into(), dst.1), virt: (other, u16::from(sel) | 1) };
        icmp_nat_out(&mut b, &egress(sel), &m)
    };
    match r {
        Ok(Verdict::Forward) => {
            icmp_error_inner(b.bytes()).expect("still an ICMP error about a flow");
            if before == Some(true) {
                assert_eq!(icmp_ok(b.bytes()), Some(true), "the ICMP checksum stays valid");
            }
        }
        _ => assert_eq!(b.bytes(), frame, "a refusal changes nothing"),
    }
});

/// The same for ICMPv6, whose checksum covers the outer addresses too.
fn icmp6(sel: u8, frame: &[u8]) {
    let Ok((_, src, dst)) = icmp6_error_inner(frame) else { return };
    let other: IpAddr = "2001:db8:2::77".parse().unwrap();
    let icmp_ok = |f: &[u8]| {
        parse_ip(f).ok().and_then(|i| {
            let (IpAddr::V6(s), IpAddr::V6(d)) = (i.src, i.dst) else { return None };
            Icmpv6Packet::new_checked(f.get(i.l4_offset..i.l2_len + i.ip_len)?)
                .ok()
                .map(|m| m.verify_checksum(&s, &d))
        })
    };
    let before = icmp_ok(frame);
    let mut b = VecBuffer::new(frame);
    let r = if sel & 4 == 0 {
        let m = NatMapping { virt: (src.0.into(), src.1), real: (other, u16::from(sel) | 1) };
        icmp_nat_in(&mut b, &egress(sel), &m)
    } else {
        let m = NatMapping { real: (dst.0.into(), dst.1), virt: (other, u16::from(sel) | 1) };
        icmp_nat_out(&mut b, &egress(sel), &m)
    };
    match r {
        Ok(Verdict::Forward) => {
            icmp6_error_inner(b.bytes()).expect("still an ICMPv6 error about a flow");
            if before == Some(true) {
                assert_eq!(icmp_ok(b.bytes()), Some(true), "the ICMPv6 checksum stays valid");
            }
        }
        _ => assert_eq!(b.bytes(), frame, "a refusal changes nothing"),
    }
}
