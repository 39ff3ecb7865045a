//! What the director builds itself from arbitrary requests: ARP replies, neighbour advertisements,
//! echo replies, ICMP errors. No panic; what is built parses.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rvs_wire::arp::{ArpPacket, build_reply};
use rvs_wire::icmpv4::{self, build_error};
use rvs_wire::icmpv6::{self, build_neighbor_advert};
use rvs_wire::rewrite::{echo_reply_v4, echo_reply_v6, parse_ip};
use rvs_wire::{PacketBuffer, VecBuffer};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else { return };
    let mut out = [0u8; 1600];
    let me = [2, 0, 0, 0, 0, 1];
    let ip = frame.get(14..).unwrap_or_default();
    match sel % 5 {
        0 => {
            if let Ok(req) = ArpPacket::new_checked(ip) {
                let n = build_reply(&mut out, &req, me).expect("room");
                ArpPacket::new_checked(&out[14..n]).expect("reply parses");
            }
        }
        1 => {
            if let Ok(n) = build_neighbor_advert(&mut out, ip, me, me) {
                parse_ip(&out[..n]).expect("NA parses");
            }
        }
        2 => {
            let mut b = VecBuffer::new(frame);
            let r = if sel & 8 == 0 { echo_reply_v4(&mut b) } else { echo_reply_v6(&mut b) };
            match r {
                Ok(()) => {
                    parse_ip(b.bytes()).expect("reply parses");
                }
                Err(_) => assert_eq!(b.bytes(), frame),
            }
        }
        3 => {
            let kind = icmpv4::ErrorKind::FragNeeded { mtu: 1480 };
            if let Ok(n) = build_error(&mut out, me, me, "203.0.113.1".parse().unwrap(), kind, ip) {
                assert!(n <= 14 + 576);
                parse_ip(&out[..n]).expect("error parses");
            }
        }
        _ => {
            let kind = icmpv6::ErrorKind::PacketTooBig { mtu: 1280 };
            if let Ok(n) = icmpv6::build_error(&mut out, me, me, &"2001:db8::1".parse().unwrap(), kind, ip) {
                assert!(n <= 14 + 1280);
                parse_ip(&out[..n]).expect("error parses");
            }
        }
    }
});
