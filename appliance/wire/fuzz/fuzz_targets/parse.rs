//! Every view and walk on arbitrary bytes: no panic, and what new_checked accepts is self-consistent.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rvs_wire::arp::ArpPacket;
use rvs_wire::ethernet::{EthernetFrame, parse_l2};
use rvs_wire::icmpv4::Icmpv4Packet;
use rvs_wire::icmpv6::Icmpv6Packet;
use rvs_wire::ipv4::Ipv4Packet;
use rvs_wire::ipv6::Ipv6Packet;
use rvs_wire::{PacketBuffer, VecBuffer};
use rvs_wire::rewrite::vlan::{self, Tagging};
use rvs_wire::rewrite::{icmp_error_inner, parse_ip};
use rvs_wire::tcp::TcpSegment;
use rvs_wire::udp::UdpDatagram;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = EthernetFrame::new_checked(data) {
        let _ = (f.dst(), f.src(), f.ethertype(), f.payload());
    }
    let _ = parse_l2(data);
    if let Ok(info) = parse_ip(data) {
        assert!(info.l4_offset <= info.l2_len + info.ip_len && info.l2_len + info.ip_len <= data.len());
    }
    let _ = icmp_error_inner(data);
    // A single 802.1Q tag comes off and goes back on to give the same bytes; anything else is
    // refused unchanged.
    let mut b = VecBuffer::with_room(data, 4, 0);
    match (vlan::tagging(data), vlan::pop_vlan(&mut b)) {
        (Ok(Tagging::Vlan(id)), Ok(popped)) if id == popped => {
            if data.get(14..16) == Some(&id.to_be_bytes()[..]) && (1..4095).contains(&id) {
                vlan::push_vlan(&mut b, id).expect("push after pop");
                assert_eq!(b.bytes(), data);
            }
        }
        (_, Err(_)) => assert_eq!(b.bytes(), data),
        (t, p) => panic!("tagging {t:?} but pop {p:?}"),
    }
    // Each view directly on the bytes, as if they were that header.
    if let Ok(p) = Ipv4Packet::new_checked(data) {
        assert!(p.header_len() >= 20 && p.payload().len() + p.header_len() == usize::from(p.total_len()));
        let _ = (p.options(), p.verify_checksum(), p.is_fragment(), p.src(), p.dst());
    }
    if let Ok(p) = Ipv6Packet::new_checked(data) {
        if let Ok(ul) = p.upper_layer() {
            assert!(ul.offset <= 40 + usize::from(p.payload_len()));
        }
    }
    if let Ok(t) = TcpSegment::new_checked(data) {
        let _ = (t.mss(), t.options(), t.payload(), t.flags());
    }
    if let Ok(u) = UdpDatagram::new_checked(data) {
        assert!(u.payload().len() + 8 == usize::from(u.len()));
    }
    if let Ok(i) = Icmpv4Packet::new_checked(data) {
        let _ = (i.data(), i.is_error(), i.verify_checksum());
    }
    if let Ok(i) = Icmpv6Packet::new_checked(data) {
        let _ = (i.nd_target(), i.nd_link_layer_addr(), i.data());
    }
    if let Ok(a) = ArpPacket::new_checked(data) {
        let _ = (a.operation(), a.sender_ip(), a.target_mac());
    }
});
