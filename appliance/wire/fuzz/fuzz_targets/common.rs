// Shared by the targets (included with `include!`, each target being its own crate).
use std::net::IpAddr;

use rvs_wire::ip_proto;
use rvs_wire::ipv4::Ipv4Packet;
use rvs_wire::rewrite::{Egress, IpInfo, TtlPolicy};
use rvs_wire::tcp::TcpSegment;
use rvs_wire::udp::UdpDatagram;

#[allow(dead_code)]
fn egress(sel: u8) -> Egress {
    Egress {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [2, 0, 0, 0, 0, 2],
        mtu: if sel & 1 == 0 { 1500 } else { 576 },
        ttl: if sel & 2 == 0 { TtlPolicy::Decrement } else { TtlPolicy::Preserve },
        offload: Default::default(),
    }
}

/// Whether every checksum of an unfragmented TCP/UDP frame verifies (None: not such a frame).
#[allow(dead_code)]
fn l4_checksums_ok(frame: &[u8]) -> Option<bool> {
    let info: IpInfo = rvs_wire::rewrite::parse_ip(frame).ok()?;
    if info.fragment {
        return None;
    }
    let seg = frame.get(info.l4_offset..info.l2_len + info.ip_len)?;
    let ip_ok = info.v6 || Ipv4Packet::new_checked(frame.get(info.l2_len..)?).ok()?.verify_checksum();
    let l4_ok = match (info.protocol, info.src, info.dst) {
        (ip_proto::TCP, IpAddr::V4(s), IpAddr::V4(d)) => TcpSegment::new_checked(seg).ok()?.verify_checksum_v4(s, d),
        (ip_proto::TCP, IpAddr::V6(s), IpAddr::V6(d)) => TcpSegment::new_checked(seg).ok()?.verify_checksum_v6(&s, &d),
        (ip_proto::UDP, IpAddr::V4(s), IpAddr::V4(d)) => UdpDatagram::new_checked(seg).ok()?.verify_checksum_v4(s, d),
        (ip_proto::UDP, IpAddr::V6(s), IpAddr::V6(d)) => UdpDatagram::new_checked(seg).ok()?.verify_checksum_v6(&s, &d),
        _ => return None,
    };
    Some(ip_ok && l4_ok)
}
