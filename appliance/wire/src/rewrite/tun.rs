//! TUN ("ipip"): the packet is encapsulated, untouched but for its TTL, in an outer IP header from the
//! director to the real server, which decapsulates it and answers the client directly (RFC 2003 for
//! IPv4-in-IPv4; RFC 4213 §3.5 for IPv6-in-IPv4; RFC 2473 for the IPv6 outer forms).

use std::net::IpAddr;

use super::{Egress, IpInfo, Verdict, apply_ttl, parse_ip, preflight};
use crate::buffer::PacketBuffer;
use crate::ethernet::{self, ethertype};
use crate::ip_proto;
use crate::ipv4;
use crate::ipv6::{self, Ipv6Packet};
use crate::{PacketError, Result};

/// The outer header's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunOuter {
    /// The director's address on the egress link.
    pub src: IpAddr,
    /// The real server.
    pub dst: IpAddr,
    /// Outer TTL / hop limit (Linux uses the route's hop limit, 64 by default).
    pub ttl: u8,
    /// Outer IPv4 identification (a per-worker counter; unused for IPv6).
    pub ident: u16,
}

/// Encapsulates the frame's IP packet for the real server. The outer header copies the inner TOS /
/// traffic class and, for IPv4 inner packets, DF (as IPVS does with PMTU discovery on); packets that
/// would exceed the egress MTU with the outer header get [`Verdict::FragNeeded`] with the MTU that
/// leaves room for it.
pub fn tun<B: PacketBuffer + ?Sized>(buf: &mut B, egress: &Egress, outer: &TunOuter) -> Result<Verdict> {
    let info = parse_ip(buf.bytes())?;
    tun_with(buf, &info, egress, outer)
}

/// [`tun`] with the frame already parsed (`info` is [`parse_ip`]'s result for this buffer as it is).
pub fn tun_with<B: PacketBuffer + ?Sized>(
    buf: &mut B,
    info: &IpInfo,
    egress: &Egress,
    outer: &TunOuter,
) -> Result<Verdict> {
    let info = *info;
    let outer_len = match (outer.src, outer.dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => ipv4::MIN_HEADER_LEN,
        (IpAddr::V6(_), IpAddr::V6(_)) => ipv6::HEADER_LEN,
        _ => return Err(PacketError::Unsupported("tunnel endpoints of different address families")),
    };
    if let Some(v) = preflight(&info, egress, outer_len) {
        return Ok(v);
    }
    apply_ttl(buf.bytes_mut(), info.l2_len, info.v6, egress.ttl);

    // Drop Ethernet padding: the outer length must cover exactly the inner packet.
    let padding = buf.len().saturating_sub(info.l2_len + info.ip_len);
    if padding > 0 {
        buf.trim(padding)?;
    }
    // Make room: the new front is a 14-byte Ethernet header plus the outer IP header where the old L2
    // header was.
    let new_front = ethernet::HEADER_LEN + outer_len;
    if new_front >= info.l2_len {
        buf.prepend(new_front - info.l2_len)?;
    } else {
        buf.strip_front(info.l2_len - new_front)?;
    }
    let inner_proto = if info.v6 { ip_proto::IPV6 } else { ip_proto::IPIP };
    let f = buf.bytes_mut();
    let (eth, rest) = f.split_at_mut(ethernet::HEADER_LEN.min(f.len()));
    match (outer.src, outer.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            ethernet::write_header(eth, egress.dst_mac, egress.src_mac, ethertype::IPV4)?;
            // IPv6 inner packets are never fragmented by routers, so their outer header gets DF too.
            let df = info.dont_frag;
            ipv4::write_header(
                rest,
                src,
                dst,
                inner_proto,
                info.ip_len,
                outer.ttl,
                info.tos,
                outer.ident,
                df,
            )?;
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            ethernet::write_header(eth, egress.dst_mac, egress.src_mac, ethertype::IPV6)?;
            let len = u16::try_from(info.ip_len).map_err(|_| PacketError::NoRoom)?;
            let mut h =
                Ipv6Packet::new_unchecked(rest.get_mut(..ipv6::HEADER_LEN).ok_or(PacketError::NoRoom)?);
            h.set_version_tc_flow(info.tos, 0);
            h.set_payload_len(len);
            h.set_next_header(inner_proto);
            h.set_hop_limit(outer.ttl);
            h.set_src(&src);
            h.set_dst(&dst);
        }
        _ => return Err(PacketError::Unsupported("tunnel endpoints of different address families")),
    }
    Ok(Verdict::Forward)
}
