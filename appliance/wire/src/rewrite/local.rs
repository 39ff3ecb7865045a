//! Replies the director sends itself: ICMP echo replies for its addresses and VIPs, built in place in
//! the request's buffer (no allocation, no copy).

use crate::buffer::PacketBuffer;
use crate::checksum;
use crate::ethernet::EthernetFrame;
use crate::icmpv4::{self, Icmpv4Packet};
use crate::icmpv6::{self, Icmpv6Packet};
use crate::ip_proto;
use crate::ipv4::Ipv4Packet;
use crate::ipv6::Ipv6Packet;
use crate::{PacketError, Result, be};

/// TTL of replies the director originates (Linux's default `ip_default_ttl`).
const REPLY_TTL: u8 = 64;

fn swap_macs(frame: &mut [u8]) -> Result<()> {
    let mut eth = EthernetFrame::new_checked(frame)?;
    let (d, s) = (eth.dst(), eth.src());
    eth.set_dst(s);
    eth.set_src(d);
    Ok(())
}

/// Turns an ICMPv4 echo request frame into its reply in place: MACs and IP addresses swapped, TTL
/// reset, type 8 -> 0; the IP checksum recomputed, the ICMP one updated incrementally. VLAN tags stay
/// (the reply leaves where the request came in).
pub fn echo_reply_v4<B: PacketBuffer + ?Sized>(buf: &mut B) -> Result<()> {
    let info = super::parse_ip(buf.bytes())?;
    if info.v6 || info.protocol != ip_proto::ICMP || info.fragment {
        return Err(PacketError::Unsupported("not an unfragmented ICMPv4 message"));
    }
    let f = buf.bytes_mut();
    let end = info.l2_len + info.ip_len;
    let icmp = Icmpv4Packet::new_checked(f.get(info.l4_offset..end).ok_or(PacketError::Truncated)?)?;
    if icmp.msg_type() != icmpv4::kind::ECHO_REQUEST {
        return Err(PacketError::Unsupported("not an echo request"));
    }
    let c = checksum::update16(
        icmp.checksum(),
        u16::from_be_bytes([icmpv4::kind::ECHO_REQUEST, icmp.code()]),
        u16::from_be_bytes([icmpv4::kind::ECHO_REPLY, icmp.code()]),
    );
    be::set_u8(f, info.l4_offset, icmpv4::kind::ECHO_REPLY);
    be::set_u16(f, info.l4_offset + icmpv4::CHECKSUM_OFFSET, c);
    let mut ip = Ipv4Packet::new_unchecked(f.get_mut(info.l2_len..end).unwrap_or_default());
    let (s, d) = (ip.src(), ip.dst());
    ip.set_src(d);
    ip.set_dst(s);
    ip.set_ttl(REPLY_TTL);
    ip.fill_checksum();
    swap_macs(f)
}

/// Turns an ICMPv6 echo request frame into its reply in place. Swapping the addresses leaves the
/// pseudo-header sum unchanged, so only the type change enters the checksum.
pub fn echo_reply_v6<B: PacketBuffer + ?Sized>(buf: &mut B) -> Result<()> {
    let info = super::parse_ip(buf.bytes())?;
    if !info.v6 || info.protocol != ip_proto::ICMPV6 || info.fragment {
        return Err(PacketError::Unsupported("not an unfragmented ICMPv6 message"));
    }
    let f = buf.bytes_mut();
    let end = info.l2_len + info.ip_len;
    let icmp = Icmpv6Packet::new_checked(f.get(info.l4_offset..end).ok_or(PacketError::Truncated)?)?;
    if icmp.msg_type() != icmpv6::kind::ECHO_REQUEST {
        return Err(PacketError::Unsupported("not an echo request"));
    }
    let c = checksum::update16(
        icmp.checksum(),
        u16::from_be_bytes([icmpv6::kind::ECHO_REQUEST, icmp.code()]),
        u16::from_be_bytes([icmpv6::kind::ECHO_REPLY, icmp.code()]),
    );
    be::set_u8(f, info.l4_offset, icmpv6::kind::ECHO_REPLY);
    be::set_u16(f, info.l4_offset + icmpv6::CHECKSUM_OFFSET, c);
    let mut ip = Ipv6Packet::new_unchecked(f.get_mut(info.l2_len..end).unwrap_or_default());
    let (s, d) = (ip.src(), ip.dst());
    ip.set_src(&d);
    ip.set_dst(&s);
    ip.set_hop_limit(REPLY_TTL);
    swap_macs(f)
}
