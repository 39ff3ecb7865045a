//! NAT in and out on arbitrary frames, with a mapping that matches the packet so the rewrite runs:
//! no panic; a refusal leaves the bytes untouched; a forwarded packet re-parses with the new
//! endpoint, and checksums that verified before still verify.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rvs_wire::rewrite::{NatMapping, Verdict, nat_in, nat_out, parse_ip};
use rvs_wire::{PacketBuffer, VecBuffer};

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else { return };
    let Ok(info) = parse_ip(frame) else { return };
    let ports = frame
        .get(info.l4_offset..info.l4_offset + 4)
        .map(|p| (u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])));
    let Some((sport, dport)) = ports else { return };
    let new_addr: IpAddr =
        if info.v6 { "2001:db8::99".parse().unwrap() } else { "203.0.113.99".parse().unwrap() };
    let new_port = u16::from(sel).wrapping_mul(257) | 1;
    let before = l4_checksums_ok(frame);
    let mut b = VecBuffer::new(frame);
    let outward = sel & 4 != 0;
    let (m, r) = if outward {
        let m = NatMapping { real: (info.src, sport), virt: (new_addr, new_port) };
        (m, nat_out(&mut b, &egress(sel), &m))
    } else {
        let m = NatMapping { virt: (info.dst, dport), real: (new_addr, new_port) };
        (m, nat_in(&mut b, &egress(sel), &m))
    };
    match r {
        Ok(Verdict::Forward) => {
            let out = parse_ip(b.bytes()).expect("a forwarded packet re-parses");
            if outward {
                assert_eq!(out.src, m.virt.0);
            } else {
                assert_eq!(out.dst, m.real.0);
            }
            if before == Some(true) {
                assert_eq!(l4_checksums_ok(b.bytes()), Some(true), "valid checksums stay valid");
            }
        }
        _ => assert_eq!(b.bytes(), frame, "a refusal changes nothing"),
    }
});
