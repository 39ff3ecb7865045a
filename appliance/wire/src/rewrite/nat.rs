//! NAT ("masquerading"): the director rewrites the virtual endpoint to the real one on the way in and
//! back on the way out, as IPVS's `ip_vs_nat_xmit` and SNAT handler do; the client's endpoint is never
//! touched. Checksums are updated incrementally (RFC 1624): the IPv4 header checksum for the address
//! and TTL, the TCP/UDP checksum for the address (through the pseudo-header) and the port.
//!
//! ICMP errors about a NATed flow are translated too, outer and quoted headers alike, so that path MTU
//! discovery and port-unreachable work through the director (IPVS `ip_vs_nat_icmp`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Egress, IpInfo, Verdict, apply_ttl, parse_ip, preflight, set_l2};
use crate::buffer::PacketBuffer;
use crate::checksum;
use crate::ethernet::ethertype;
use crate::icmpv4::{self, Icmpv4Packet};
use crate::icmpv6::{self, Icmpv6Packet};
use crate::ip_proto;
use crate::ipv4::{self, Ipv4Packet};
use crate::ipv6;
use crate::tcp::{self, TcpSegment};
use crate::udp::{self, UdpDatagram};
use crate::{PacketError, Result, be};

/// One NATed connection's two endpoints that differ: what the client addressed, and where it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatMapping {
    /// VIP and virtual port.
    pub virt: (IpAddr, u16),
    /// Real server address and port.
    pub real: (IpAddr, u16),
}

#[derive(Clone, Copy)]
enum Side {
    Src,
    Dst,
}

/// Client -> real server: destination virt -> real.
pub fn nat_in<B: PacketBuffer + ?Sized>(buf: &mut B, egress: &Egress, m: &NatMapping) -> Result<Verdict> {
    let info = parse_ip(buf.bytes())?;
    translate(buf, &info, egress, Side::Dst, m.virt, m.real)
}

/// Real server -> client: source real -> virt.
pub fn nat_out<B: PacketBuffer + ?Sized>(buf: &mut B, egress: &Egress, m: &NatMapping) -> Result<Verdict> {
    let info = parse_ip(buf.bytes())?;
    translate(buf, &info, egress, Side::Src, m.real, m.virt)
}

/// [`nat_in`] with the frame already parsed (`info` is [`parse_ip`]'s result for this buffer as it
/// is).
pub fn nat_in_with<B: PacketBuffer + ?Sized>(
    buf: &mut B,
    info: &IpInfo,
    egress: &Egress,
    m: &NatMapping,
) -> Result<Verdict> {
    translate(buf, info, egress, Side::Dst, m.virt, m.real)
}

/// [`nat_out`] with the frame already parsed.
pub fn nat_out_with<B: PacketBuffer + ?Sized>(
    buf: &mut B,
    info: &IpInfo,
    egress: &Egress,
    m: &NatMapping,
) -> Result<Verdict> {
    translate(buf, info, egress, Side::Src, m.real, m.virt)
}

/// [`nat_in_with`] with both sides IPv4, the director's common case: the addresses stay in
/// registers (an `IpAddr` passed through memory costs a store-forwarding stall per packet).
#[inline]
pub fn nat4_in_with<B: PacketBuffer + ?Sized>(
    buf: &mut B,
    info: &IpInfo,
    egress: &Egress,
    virt: (Ipv4Addr, u16),
    real: (Ipv4Addr, u16),
) -> Result<Verdict> {
    nat4(buf, info, egress, Side::Dst, virt, real)
}

/// [`nat_out_with`] with both sides IPv4 (see [`nat4_in_with`]).
#[inline]
pub fn nat4_out_with<B: PacketBuffer + ?Sized>(
    buf: &mut B,
    info: &IpInfo,
    egress: &Egress,
    real: (Ipv4Addr, u16),
    virt: (Ipv4Addr, u16),
) -> Result<Verdict> {
    nat4(buf, info, egress, Side::Src, real, virt)
}

#[inline]
fn nat4<B: PacketBuffer + ?Sized>(
    buf: &mut B,
    info: &IpInfo,
    egress: &Egress,
    side: Side,
    from: (Ipv4Addr, u16),
    to: (Ipv4Addr, u16),
) -> Result<Verdict> {
    if info.v6 {
        return Err(PacketError::Unsupported("an IPv6 packet for an IPv4 mapping"));
    }
    natable(info)?;
    translate_v4(buf, info, egress, side, from, to)
}

/// Whether NAT can rewrite the packet at all: a whole TCP or UDP datagram.
#[inline]
fn natable(info: &IpInfo) -> Result<()> {
    if info.fragment {
        return Err(PacketError::Unsupported("IP fragment"));
    }
    if info.protocol != ip_proto::TCP && info.protocol != ip_proto::UDP {
        return Err(PacketError::Unsupported("NAT of other than TCP/UDP"));
    }
    Ok(())
}

/// A fragment of a NATed IPv4 datagram, client -> server (`inbound`: destination virt -> real) or
/// back (source real -> virt). The first fragment (offset 0) carries the TCP/UDP header: its
/// address, port and checksum change as a whole datagram's would (the checksum covers the whole
/// datagram, so updating it in the first fragment is right for all of them); later fragments carry
/// no header: only their address (and the IPv4 header checksum) change. Checksum offload is never
/// asked for: a NIC would compute it over one fragment.
pub fn nat_fragment<B: PacketBuffer + ?Sized>(
    buf: &mut B,
    info: &IpInfo,
    egress: &Egress,
    m: &NatMapping,
    inbound: bool,
    first: bool,
) -> Result<Verdict> {
    let info = *info;
    if info.v6 || !info.fragment {
        return Err(PacketError::Unsupported("not an IPv4 fragment"));
    }
    if info.protocol != ip_proto::TCP && info.protocol != ip_proto::UDP {
        return Err(PacketError::Unsupported("NAT of other than TCP/UDP"));
    }
    let (side, from, to) = if inbound { (Side::Dst, m.virt, m.real) } else { (Side::Src, m.real, m.virt) };
    let addr = match side {
        Side::Src => info.src,
        Side::Dst => info.dst,
    };
    if addr != from.0 || from.0.is_ipv6() || to.0.is_ipv6() {
        return Err(PacketError::Unsupported("fragment does not match the NAT mapping"));
    }
    if first {
        // The header's ports and checksum must be inside this fragment.
        let need = if info.protocol == ip_proto::TCP { tcp::CHECKSUM_OFFSET + 2 } else { udp::HEADER_LEN };
        if buf.bytes().len() < info.l4_offset + need {
            return Err(PacketError::Truncated);
        }
        let port_at = info.l4_offset + if matches!(side, Side::Src) { 0 } else { 2 };
        if be::u16_at(buf.bytes(), port_at) != from.1 {
            return Err(PacketError::Unsupported("fragment does not match the NAT mapping"));
        }
    }
    if let Some(v) = preflight(&info, egress, 0) {
        return Ok(v);
    }
    if first {
        rewrite_l3_l4(buf.bytes_mut(), &info, side, to)?;
    } else {
        let l3 = info.l2_len;
        let ip = buf.bytes_mut().get_mut(l3..).ok_or(PacketError::Truncated)?;
        let mut p = Ipv4Packet::new_unchecked(ip);
        let IpAddr::V4(to4) = to.0 else {
            return Err(PacketError::Unsupported("NAT between address families"));
        };
        match side {
            Side::Src => p.rewrite_src(to4),
            Side::Dst => p.rewrite_dst(to4),
        }
    }
    apply_ttl(buf.bytes_mut(), info.l2_len, false, egress.ttl);
    prepare_offload(buf.bytes_mut(), &info, super::Offload { ipv4: egress.offload.ipv4, l4: false });
    set_l2(buf, info.l2_len, egress, ethertype::IPV4)?;
    Ok(Verdict::Forward)
}

fn translate<B: PacketBuffer + ?Sized>(
    buf: &mut B,
    info: &IpInfo,
    egress: &Egress,
    side: Side,
    from: (IpAddr, u16),
    to: (IpAddr, u16),
) -> Result<Verdict> {
    let info = *info;
    natable(&info)?;
    if let (false, IpAddr::V4(f), IpAddr::V4(t)) = (info.v6, from.0, to.0) {
        return translate_v4(buf, &info, egress, side, (f, from.1), (t, to.1));
    }
    let (addr, port) = match side {
        Side::Src => (info.src, l4_ports(buf.bytes(), &info)?.0),
        Side::Dst => (info.dst, l4_ports(buf.bytes(), &info)?.1),
    };
    if (addr, port) != from {
        return Err(PacketError::Unsupported("packet does not match the NAT mapping"));
    }
    if info.v6 != from.0.is_ipv6() || info.v6 != to.0.is_ipv6() {
        return Err(PacketError::Unsupported("NAT between address families"));
    }
    if let Some(v) = preflight(&info, egress, 0) {
        return Ok(v);
    }
    rewrite_l3_l4(buf.bytes_mut(), &info, side, to)?;
    apply_ttl(buf.bytes_mut(), info.l2_len, info.v6, egress.ttl);
    prepare_offload(buf.bytes_mut(), &info, egress.offload);
    let et = if info.v6 { ethertype::IPV6 } else { ethertype::IPV4 };
    set_l2(buf, info.l2_len, egress, et)?;
    Ok(Verdict::Forward)
}

/// [`translate`] for IPv4, the director's common case: ports read at their fixed offsets, the
/// checksums updated with word arithmetic (the generic path converts addresses to byte slices and
/// checks the transport header again: measurably slower per packet).
fn translate_v4<B: PacketBuffer + ?Sized>(
    buf: &mut B,
    info: &IpInfo,
    egress: &Egress,
    side: Side,
    from: (Ipv4Addr, u16),
    to: (Ipv4Addr, u16),
) -> Result<Verdict> {
    let (l3, l4) = (info.l2_len, info.l4_offset);
    let udp = info.protocol == ip_proto::UDP;
    let csum_at = l4 + if udp { udp::CHECKSUM_OFFSET } else { tcp::CHECKSUM_OFFSET };
    // The ports and the checksum must be inside the IP packet and the buffer.
    let end = (l3 + info.ip_len).min(buf.bytes().len());
    if csum_at + 2 > end {
        return Err(PacketError::Truncated);
    }
    let (addr_at, port_at) = match side {
        Side::Src => (l3 + ipv4::SRC_OFFSET, l4),
        Side::Dst => (l3 + ipv4::DST_OFFSET, l4 + 2),
    };
    let f = buf.bytes();
    if (Ipv4Addr::from(be::u32_at(f, addr_at)), be::u16_at(f, port_at)) != from {
        return Err(PacketError::Unsupported("packet does not match the NAT mapping"));
    }
    if let Some(v) = preflight(info, egress, 0) {
        return Ok(v);
    }
    let f = buf.bytes_mut();
    let (old_a, new_a) = (u32::from(from.0), u32::from(to.0));
    let ip_csum = l3 + ipv4::CHECKSUM_OFFSET;
    be::set_u16(f, ip_csum, checksum::update_addr(be::u16_at(f, ip_csum), old_a, new_a));
    be::set_u32(f, addr_at, new_a);
    let old_c = be::u16_at(f, csum_at);
    let c = checksum::update_addr_port(old_c, (old_a, from.1), (new_a, to.1));
    let c = match (udp, old_c, c) {
        // Over IPv4 a zero UDP checksum means "none" and stays that way; a computed 0 is sent as
        // 0xffff (RFC 768).
        (true, 0, _) => 0,
        (true, _, 0) => 0xffff,
        (_, _, c) => c,
    };
    be::set_u16(f, csum_at, c);
    be::set_u16(f, port_at, to.1);
    apply_ttl(f, l3, false, egress.ttl);
    prepare_offload(f, info, egress.offload);
    set_l2(buf, l3, egress, ethertype::IPV4)?;
    Ok(Verdict::Forward)
}

/// Hands checksums to the NIC per `offload` (see [`super::Offload`]); a no-op without offload.
fn prepare_offload(frame: &mut [u8], info: &IpInfo, offload: super::Offload) {
    let l3 = info.l2_len;
    if offload.ipv4 && !info.v6 {
        be::set_u16(frame, l3 + ipv4::CHECKSUM_OFFSET, 0);
    }
    if offload.l4 {
        let udp = info.protocol == ip_proto::UDP;
        let csum_at = info.l4_offset + if udp { udp::CHECKSUM_OFFSET } else { tcp::CHECKSUM_OFFSET };
        if udp && !info.v6 && be::u16_at(frame, csum_at) == 0 {
            return; // no UDP checksum stays no checksum
        }
        let l4_len = info.ip_len - (info.l4_offset - l3);
        let phdr = match (info.v6, frame.get(l3..)) {
            (false, Some(ip)) => {
                let p = Ipv4Packet::new_unchecked(ip);
                checksum::pseudo_header_v4(
                    p.src(),
                    p.dst(),
                    info.protocol,
                    u16::try_from(l4_len).unwrap_or(u16::MAX),
                )
            }
            (true, Some(ip)) => {
                let p = crate::ipv6::Ipv6Packet::new_unchecked(ip);
                checksum::pseudo_header_v6(&p.src(), &p.dst(), info.protocol, crate::len_u32(l4_len))
            }
            _ => return,
        };
        be::set_u16(frame, csum_at, checksum::fold(phdr));
    }
}

/// Source and destination port of the checked TCP or UDP header.
fn l4_ports(frame: &[u8], info: &IpInfo) -> Result<(u16, u16)> {
    let seg = frame.get(info.l4_offset..info.l2_len + info.ip_len).ok_or(PacketError::Truncated)?;
    match info.protocol {
        ip_proto::TCP => {
            let t = TcpSegment::new_checked(seg)?;
            Ok((t.src_port(), t.dst_port()))
        }
        _ => {
            let u = UdpDatagram::new_checked(seg)?;
            Ok((u.src_port(), u.dst_port()))
        }
    }
}

fn ip_bytes(a: &IpAddr) -> ([u8; 16], usize) {
    let mut out = [0u8; 16];
    match a {
        IpAddr::V4(v) => {
            out[..4].copy_from_slice(&v.octets());
            (out, 4)
        }
        IpAddr::V6(v) => (v.octets(), 16),
    }
}

/// Writes the new address and port on `side`, with incremental checksum updates.
fn rewrite_l3_l4(frame: &mut [u8], info: &IpInfo, side: Side, to: (IpAddr, u16)) -> Result<()> {
    let old_addr = match side {
        Side::Src => info.src,
        Side::Dst => info.dst,
    };
    let (old_a, n) = ip_bytes(&old_addr);
    let (new_a, _) = ip_bytes(&to.0);
    let (old_a, new_a) = (old_a.get(..n).unwrap_or_default(), new_a.get(..n).unwrap_or_default());

    // L3: the address (and, for IPv4, the header checksum).
    let l3 = info.l2_len;
    let addr_at = match (info.v6, side) {
        (false, Side::Src) => l3 + ipv4::SRC_OFFSET,
        (false, Side::Dst) => l3 + ipv4::DST_OFFSET,
        (true, Side::Src) => l3 + ipv6::SRC_OFFSET,
        (true, Side::Dst) => l3 + ipv6::DST_OFFSET,
    };
    if !info.v6 {
        let at = l3 + ipv4::CHECKSUM_OFFSET;
        let c = checksum::update(be::u16_at(frame, at), old_a, new_a);
        be::set_u16(frame, at, c);
    }
    be::set_bytes(frame, addr_at, new_a);

    // L4: the port, and the checksum over pseudo-header address + port.
    let port_at = info.l4_offset + if matches!(side, Side::Src) { 0 } else { 2 };
    let old_port = be::u16_at(frame, port_at);
    let (csum_at, udp) = match info.protocol {
        ip_proto::TCP => (info.l4_offset + tcp::CHECKSUM_OFFSET, false),
        _ => (info.l4_offset + udp::CHECKSUM_OFFSET, true),
    };
    let old_c = be::u16_at(frame, csum_at);
    let c = if udp && !info.v6 {
        // Over IPv4 a zero UDP checksum means "none" and stays that way.
        let c = checksum::update_udp(old_c, old_a, new_a);
        checksum::update_udp(c, &old_port.to_be_bytes(), &to.1.to_be_bytes())
    } else {
        let c = checksum::update(old_c, old_a, new_a);
        let c = checksum::update(c, &old_port.to_be_bytes(), &to.1.to_be_bytes());
        // IPv6 UDP: a computed 0 must be sent as 0xffff (RFC 8200 §8.1).
        if udp && c == 0 { 0xffff } else { c }
    };
    be::set_u16(frame, csum_at, c);
    be::set_u16(frame, port_at, to.1);
    Ok(())
}

/// An IPv4 address and port.
pub type Endpoint4 = (Ipv4Addr, u16);

/// The flow an ICMPv4 error is about: protocol, source and destination of the quoted datagram's
/// header, as the sender of that datagram saw them. For looking up the connection.
pub fn icmp_error_inner(frame: &[u8]) -> Result<(u8, Endpoint4, Endpoint4)> {
    let q = quoted(frame)?;
    Ok((q.protocol, (q.src, q.sport), (q.dst, q.dport)))
}

/// Writes `new` at `at` and folds the change into the running ICMP checksum `icmp_c` (every byte of
/// the quoted datagram is covered by it). `new` is at most 4 bytes at an even offset of the message.
fn put(f: &mut [u8], at: usize, new: &[u8], icmp_c: &mut u16) {
    let mut old = [0u8; 4];
    if let (Some(o), Some(src)) = (old.get_mut(..new.len()), f.get(at..at + new.len())) {
        o.copy_from_slice(src);
    }
    *icmp_c = checksum::update(*icmp_c, old.get(..new.len()).unwrap_or_default(), new);
    be::set_bytes(f, at, new);
}

/// Which quoted endpoint an ICMP error's translation changes, from what to what, and which outer
/// address becomes what: (quoted from, quoted to, outer side, outer address). The quote must carry
/// the mapping's endpoint.
#[allow(clippy::type_complexity)]
fn icmp_sides<A: Copy + PartialEq>(
    (virt, real): ((A, u16), (A, u16)),
    quoted_side: Side,
    (q_src, q_dst): ((A, u16), (A, u16)),
) -> Result<((A, u16), (A, u16), Side, A)> {
    let (q_from, q_to, outer_side, outer_to, q_have) = match quoted_side {
        Side::Src => (virt, real, Side::Dst, real.0, q_src),
        Side::Dst => (real, virt, Side::Src, virt.0, q_dst),
    };
    if q_have != q_from {
        return Err(PacketError::Unsupported("ICMP error does not match the NAT mapping"));
    }
    Ok((q_from, q_to, outer_side, outer_to))
}

/// The transport header an ICMP error quotes: where it is, how much of it, and where the
/// translated port sits.
struct QuotedL4 {
    at: usize,
    len: usize,
    protocol: u8,
    port_at: usize,
}

impl QuotedL4 {
    /// The quoted port, and the quoted checksum when the quote carries it (always for UDP, for TCP
    /// only if more than 8 bytes were quoted), each change folded into the ICMP checksum. IPVS
    /// leaves these alone; updating them keeps the quote consistent for receivers that check.
    fn translate(
        &self,
        f: &mut [u8],
        (old_a, new_a): (&[u8], &[u8]),
        (old_p, new_p): (u16, u16),
        v6: bool,
        icmp_c: &mut u16,
    ) {
        let (old_p, new_p) = (old_p.to_be_bytes(), new_p.to_be_bytes());
        let csum = match self.protocol {
            ip_proto::UDP => Some(udp::CHECKSUM_OFFSET),
            _ if self.len >= tcp::CHECKSUM_OFFSET + 2 => Some(tcp::CHECKSUM_OFFSET),
            _ => None,
        };
        if let Some(off) = csum {
            let at = self.at + off;
            let old_c = be::u16_at(f, at);
            let c = match (self.protocol == ip_proto::UDP, v6) {
                // A zero UDP checksum over IPv4 means "none" and stays so.
                (true, false) => {
                    checksum::update_udp(checksum::update_udp(old_c, old_a, new_a), &old_p, &new_p)
                }
                // Over IPv6 a UDP checksum is never 0 (RFC 8200 §8.1).
                (true, true) => match checksum::update(checksum::update(old_c, old_a, new_a), &old_p, &new_p)
                {
                    0 => 0xffff,
                    c => c,
                },
                _ => checksum::update(checksum::update(old_c, old_a, new_a), &old_p, &new_p),
            };
            put(f, at, &c.to_be_bytes(), icmp_c);
        }
        put(f, self.port_at, &new_p, icmp_c);
    }
}

/// An ICMPv4 error's quoted datagram, located.
struct Quoted {
    /// Offset of the ICMP header in the frame.
    icmp: usize,
    /// Offset of the quoted IP header in the frame.
    ip: usize,
    /// Offset of the quoted transport header in the frame.
    l4: usize,
    /// Bytes of quoted transport header present.
    l4_len: usize,
    protocol: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    outer: IpInfo,
}

fn quoted(frame: &[u8]) -> Result<Quoted> {
    let outer = parse_ip(frame)?;
    if outer.v6 || outer.protocol != ip_proto::ICMP || outer.fragment {
        return Err(PacketError::Unsupported("not an unfragmented ICMPv4 message"));
    }
    let msg = frame.get(outer.l4_offset..outer.l2_len + outer.ip_len).ok_or(PacketError::Truncated)?;
    let icmp = Icmpv4Packet::new_checked(msg)?;
    if !matches!(
        icmp.msg_type(),
        icmpv4::kind::DEST_UNREACH
            | icmpv4::kind::SOURCE_QUENCH
            | icmpv4::kind::TIME_EXCEEDED
            | icmpv4::kind::PARAM_PROBLEM
    ) {
        return Err(PacketError::Unsupported("not an ICMP error about a datagram"));
    }
    let inner = Ipv4Packet::new_checked_header(icmp.data())?;
    let protocol = inner.protocol();
    if protocol != ip_proto::TCP && protocol != ip_proto::UDP {
        return Err(PacketError::Unsupported("ICMP error about other than TCP/UDP"));
    }
    let l4_data = icmp.data().get(inner.header_len()..).unwrap_or_default();
    // RFC 792: at least 8 bytes of the original transport header are quoted; the ports are the
    // first 4.
    if l4_data.len() < 8 {
        return Err(PacketError::Truncated);
    }
    let ip = outer.l4_offset + icmpv4::HEADER_LEN;
    Ok(Quoted {
        icmp: outer.l4_offset,
        ip,
        l4: ip + inner.header_len(),
        l4_len: l4_data.len(),
        protocol,
        src: inner.src(),
        dst: inner.dst(),
        sport: be::u16_at(l4_data, 0),
        dport: be::u16_at(l4_data, 2),
        outer,
    })
}

/// An ICMP error arriving from the client side about a reply the director sent (virt -> client):
/// the outer destination becomes the real server, and the quoted source virt -> real, so the real
/// server learns about its own packet (e.g. a smaller path MTU).
pub fn icmp_nat_in<B: PacketBuffer + ?Sized>(
    buf: &mut B,
    egress: &Egress,
    m: &NatMapping,
) -> Result<Verdict> {
    if m.virt.0.is_ipv6() {
        translate_icmp6(buf, egress, m, Side::Src)
    } else {
        translate_icmp(buf, egress, m, Side::Src)
    }
}

/// An ICMP error arriving from the real-server side about a client packet (client -> real): the
/// outer source becomes the VIP, and the quoted destination real -> virt, so the client sees an error
/// about the packet it sent.
pub fn icmp_nat_out<B: PacketBuffer + ?Sized>(
    buf: &mut B,
    egress: &Egress,
    m: &NatMapping,
) -> Result<Verdict> {
    if m.virt.0.is_ipv6() {
        translate_icmp6(buf, egress, m, Side::Dst)
    } else {
        translate_icmp(buf, egress, m, Side::Dst)
    }
}

fn translate_icmp<B: PacketBuffer + ?Sized>(
    buf: &mut B,
    egress: &Egress,
    m: &NatMapping,
    quoted_side: Side,
) -> Result<Verdict> {
    let q = quoted(buf.bytes())?;
    let (IpAddr::V4(virt), IpAddr::V4(real)) = (m.virt.0, m.real.0) else {
        return Err(PacketError::Unsupported("ICMP NAT for IPv6 mappings"));
    };
    let (q_from, q_to, outer_side, outer_to) =
        icmp_sides(((virt, m.virt.1), (real, m.real.1)), quoted_side, ((q.src, q.sport), (q.dst, q.dport)))?;
    if let Some(v) = preflight(&q.outer, egress, 0) {
        return Ok(v);
    }
    let f = buf.bytes_mut();
    let icmp_csum_at = q.icmp + icmpv4::CHECKSUM_OFFSET;
    // Each change inside the ICMP message is folded into the ICMP checksum as it is made (put()).
    let mut icmp_c = be::u16_at(f, icmp_csum_at);
    // Quoted IP header: address and its header checksum.
    let (q_addr_at, q_port_at) = match quoted_side {
        Side::Src => (q.ip + ipv4::SRC_OFFSET, q.l4),
        Side::Dst => (q.ip + ipv4::DST_OFFSET, q.l4 + 2),
    };
    let (old_a, new_a) = (q_from.0.octets(), q_to.0.octets());
    let q_ip_c = checksum::update(be::u16_at(f, q.ip + ipv4::CHECKSUM_OFFSET), &old_a, &new_a);
    put(f, q_addr_at, &new_a, &mut icmp_c);
    put(f, q.ip + ipv4::CHECKSUM_OFFSET, &q_ip_c.to_be_bytes(), &mut icmp_c);

    let quoted_l4 = QuotedL4 { at: q.l4, len: q.l4_len, protocol: q.protocol, port_at: q_port_at };
    quoted_l4.translate(f, (&old_a, &new_a), (q_from.1, q_to.1), false, &mut icmp_c);
    be::set_u16(f, icmp_csum_at, icmp_c);

    // Outer header: one address (ICMPv4 has no pseudo-header, so the ICMP checksum is unaffected).
    let l3 = q.outer.l2_len;
    let (outer_at, outer_old) = match outer_side {
        Side::Src => (l3 + ipv4::SRC_OFFSET, q.outer.src),
        Side::Dst => (l3 + ipv4::DST_OFFSET, q.outer.dst),
    };
    let IpAddr::V4(outer_old) = outer_old else { return Err(PacketError::Unsupported("IPv6")) };
    let c =
        checksum::update(be::u16_at(f, l3 + ipv4::CHECKSUM_OFFSET), &outer_old.octets(), &outer_to.octets());
    be::set_u16(f, l3 + ipv4::CHECKSUM_OFFSET, c);
    be::set_bytes(f, outer_at, &outer_to.octets());

    apply_ttl(buf.bytes_mut(), q.outer.l2_len, false, egress.ttl);
    set_l2(buf, q.outer.l2_len, egress, ethertype::IPV4)?;
    Ok(Verdict::Forward)
}

/// An IPv6 address and port.
pub type Endpoint6 = (Ipv6Addr, u16);

/// An ICMPv6 error's quoted datagram, located: TCP or UDP right after the quoted IPv6 header (a
/// quote with extension headers is not translated).
struct Quoted6 {
    icmp: usize,
    ip: usize,
    l4: usize,
    l4_len: usize,
    protocol: u8,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    sport: u16,
    dport: u16,
    outer: IpInfo,
}

fn quoted6(frame: &[u8]) -> Result<Quoted6> {
    let outer = parse_ip(frame)?;
    if !outer.v6 || outer.protocol != ip_proto::ICMPV6 || outer.fragment {
        return Err(PacketError::Unsupported("not an unfragmented ICMPv6 message"));
    }
    let msg = frame.get(outer.l4_offset..outer.l2_len + outer.ip_len).ok_or(PacketError::Truncated)?;
    let icmp = Icmpv6Packet::new_checked(msg)?;
    if !icmp.is_error() {
        return Err(PacketError::Unsupported("not an ICMPv6 error"));
    }
    let data = icmp.data();
    if data.len() < ipv6::HEADER_LEN + 8 {
        return Err(PacketError::Truncated);
    }
    // The quote is cut short (RFC 4443 §2.4(c)): a header view, not a whole packet.
    let inner = ipv6::Ipv6Packet::new_unchecked(data);
    if inner.version() != 6 {
        return Err(PacketError::Malformed("quoted IPv6 version"));
    }
    let protocol = inner.next_header();
    if protocol != ip_proto::TCP && protocol != ip_proto::UDP {
        return Err(PacketError::Unsupported("ICMPv6 error about other than TCP/UDP"));
    }
    let l4_data = data.get(ipv6::HEADER_LEN..).unwrap_or_default();
    let ip = outer.l4_offset + icmpv6::HEADER_LEN;
    Ok(Quoted6 {
        icmp: outer.l4_offset,
        ip,
        l4: ip + ipv6::HEADER_LEN,
        l4_len: l4_data.len(),
        protocol,
        src: inner.src(),
        dst: inner.dst(),
        sport: be::u16_at(l4_data, 0),
        dport: be::u16_at(l4_data, 2),
        outer,
    })
}

/// The flow an ICMPv6 error is about: protocol, source and destination of the quoted datagram.
pub fn icmp6_error_inner(frame: &[u8]) -> Result<(u8, Endpoint6, Endpoint6)> {
    let q = quoted6(frame)?;
    Ok((q.protocol, (q.src, q.sport), (q.dst, q.dport)))
}

fn translate_icmp6<B: PacketBuffer + ?Sized>(
    buf: &mut B,
    egress: &Egress,
    m: &NatMapping,
    quoted_side: Side,
) -> Result<Verdict> {
    let q = quoted6(buf.bytes())?;
    let (IpAddr::V6(virt), IpAddr::V6(real)) = (m.virt.0, m.real.0) else {
        return Err(PacketError::Unsupported("ICMPv6 NAT for IPv4 mappings"));
    };
    let (q_from, q_to, outer_side, outer_to) =
        icmp_sides(((virt, m.virt.1), (real, m.real.1)), quoted_side, ((q.src, q.sport), (q.dst, q.dport)))?;
    if let Some(v) = preflight(&q.outer, egress, 0) {
        return Ok(v);
    }
    let f = buf.bytes_mut();
    let icmp_csum_at = q.icmp + icmpv6::CHECKSUM_OFFSET;
    let mut icmp_c = be::u16_at(f, icmp_csum_at);
    let (q_addr_at, q_port_at) = match quoted_side {
        Side::Src => (q.ip + ipv6::SRC_OFFSET, q.l4),
        Side::Dst => (q.ip + ipv6::DST_OFFSET, q.l4 + 2),
    };
    let (old_a, new_a) = (q_from.0.octets(), q_to.0.octets());
    // IPv6 has no header checksum; the address goes in 4 bytes at a time (put's unit).
    for (i, (o, n)) in old_a.chunks(4).zip(new_a.chunks(4)).enumerate() {
        if o != n {
            put(f, q_addr_at + 4 * i, n, &mut icmp_c);
        }
    }
    let quoted_l4 = QuotedL4 { at: q.l4, len: q.l4_len, protocol: q.protocol, port_at: q_port_at };
    quoted_l4.translate(f, (&old_a, &new_a), (q_from.1, q_to.1), true, &mut icmp_c);

    // Outer header: one address, which ICMPv6's pseudo-header covers too.
    let l3 = q.outer.l2_len;
    let (outer_at, outer_old) = match outer_side {
        Side::Src => (l3 + ipv6::SRC_OFFSET, q.outer.src),
        Side::Dst => (l3 + ipv6::DST_OFFSET, q.outer.dst),
    };
    let IpAddr::V6(outer_old) = outer_old else { return Err(PacketError::Unsupported("IPv4")) };
    icmp_c = checksum::update(icmp_c, &outer_old.octets(), &outer_to.octets());
    be::set_u16(f, icmp_csum_at, icmp_c);
    be::set_bytes(f, outer_at, &outer_to.octets());

    apply_ttl(buf.bytes_mut(), q.outer.l2_len, true, egress.ttl);
    set_l2(buf, q.outer.l2_len, egress, ethertype::IPV6)?;
    Ok(Verdict::Forward)
}
