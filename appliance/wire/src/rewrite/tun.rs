//! TUN ("ipip"): the packet is encapsulated, untouched but for its TTL, in an outer IP header from the
//! director to the real server, which decapsulates it and answers the client directly (RFC 2003 for
//! IPv4-in-IPv4; RFC 4213 §3.5 for IPv6-in-IPv4; RFC 2473 for the IPv6 outer forms). ipvsadm 1.31's
//! other tunnel types put a header between the two: GRE (RFC 2784) or UDP with a GUE header
//! (draft-ietf-intarea-gue, variant 0), as the kernel's ipvs_gre_encap / ipvs_gue_encap do.

use std::net::IpAddr;

use super::{Egress, IpInfo, Verdict, apply_ttl, parse_ip, preflight};
use crate::buffer::PacketBuffer;
use crate::checksum;
use crate::ethernet::{self, ethertype};
use crate::ip_proto;
use crate::ipv4;
use crate::ipv6::{self, Ipv6Packet};
use crate::{PacketError, Result};

/// What goes between the outer IP header and the inner packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encap {
    /// Nothing: IP in IP.
    #[default]
    Ipip,
    /// A GRE header naming the inner packet's EtherType; with `csum`, the checksum over the GRE
    /// header and the inner packet (8 bytes instead of 4).
    Gre { csum: bool },
    /// UDP from `sport` (chosen per flow, so that the network spreads flows as the kernel's
    /// udp_flow_src_port does) to `dport`, then a 4-byte GUE header naming the inner protocol.
    /// Without `csum` the UDP checksum is 0, which IPv4 allows.
    Gue { sport: u16, dport: u16, csum: bool },
}

/// GRE's checksum-present bit (RFC 2784 §2.1).
const GRE_CSUM: u16 = 0x8000;

impl Encap {
    /// Its length on the wire.
    pub fn len(self) -> usize {
        match self {
            Self::Ipip => 0,
            Self::Gre { csum: false } => 4,
            Self::Gre { csum: true } => 8,
            Self::Gue { .. } => crate::udp::HEADER_LEN + 4,
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// The outer header's protocol for an inner packet of this family.
    fn protocol(self, inner_v6: bool) -> u8 {
        match self {
            Self::Ipip if inner_v6 => ip_proto::IPV6,
            Self::Ipip => ip_proto::IPIP,
            Self::Gre { .. } => ip_proto::GRE,
            Self::Gue { .. } => ip_proto::UDP,
        }
    }

    /// Writes the header at the front of `seg`, which holds it and the inner packet; checksums
    /// (GRE's, UDP's with the pseudo-header `pseudo`) are computed over what follows.
    fn write(self, seg: &mut [u8], inner_v6: bool, pseudo: u32) -> Result<()> {
        // The indexing below stays within this length.
        if seg.len() < self.len() {
            return Err(PacketError::NoRoom);
        }
        match self {
            Self::Ipip => {}
            Self::Gre { csum } => {
                let ethertype = if inner_v6 { ethertype::IPV6 } else { ethertype::IPV4 };
                seg[0..2].copy_from_slice(&(if csum { GRE_CSUM } else { 0 }).to_be_bytes());
                seg[2..4].copy_from_slice(&ethertype.to_be_bytes());
                if csum {
                    seg[4..8].fill(0);
                    let c = checksum::checksum(seg);
                    seg[4..6].copy_from_slice(&c.to_be_bytes());
                }
            }
            Self::Gue { sport, dport, csum } => {
                let udp_len = u16::try_from(seg.len()).map_err(|_| PacketError::NoRoom)?;
                seg[0..2].copy_from_slice(&sport.to_be_bytes());
                seg[2..4].copy_from_slice(&dport.to_be_bytes());
                seg[4..6].copy_from_slice(&udp_len.to_be_bytes());
                seg[6..8].fill(0);
                // GUE variant 0: version 0, C 0, no extra fields (hlen 0); the inner protocol; no flags.
                seg[8] = 0;
                seg[9] = if inner_v6 { ip_proto::IPV6 } else { ip_proto::IPIP };
                seg[10..12].fill(0);
                if csum {
                    let c = checksum::finish(checksum::sum(pseudo, seg));
                    // 0 means "no checksum" in UDP: a computed 0 is sent as its other form.
                    let c = if c == 0 { 0xffff } else { c };
                    seg[6..8].copy_from_slice(&c.to_be_bytes());
                }
            }
        }
        Ok(())
    }
}

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
    /// The header between the outer IP header and the inner packet.
    pub encap: Encap,
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
    let ip_len = match (outer.src, outer.dst) {
        (IpAddr::V4(_), IpAddr::V4(_)) => ipv4::MIN_HEADER_LEN,
        // UDP over IPv6 needs its checksum, GRE over IPv6 is not what IPVS sends: IPIP only there.
        (IpAddr::V6(_), IpAddr::V6(_)) if outer.encap.is_empty() => ipv6::HEADER_LEN,
        (IpAddr::V6(_), IpAddr::V6(_)) => return Err(PacketError::Unsupported("GRE or GUE over IPv6")),
        _ => return Err(PacketError::Unsupported("tunnel endpoints of different address families")),
    };
    let outer_len = ip_len + outer.encap.len();
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
    let inner_proto = outer.encap.protocol(info.v6);
    let payload_len = outer.encap.len() + info.ip_len;
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
                payload_len,
                outer.ttl,
                info.tos,
                outer.ident,
                df,
            )?;
            let pseudo = checksum::pseudo_header_v4(
                src,
                dst,
                ip_proto::UDP,
                u16::try_from(payload_len).map_err(|_| PacketError::NoRoom)?,
            );
            let seg = rest.get_mut(ip_len..).ok_or(PacketError::NoRoom)?;
            outer.encap.write(seg, info.v6, pseudo)?;
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
