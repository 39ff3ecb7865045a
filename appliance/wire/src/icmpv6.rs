//! ICMPv6 (RFC 4443) and the neighbour discovery messages a director answers (RFC 4861).

use std::net::Ipv6Addr;

use crate::be;
use crate::checksum;
use crate::ethernet::{self, MacAddr};
use crate::ip_proto;
use crate::ipv6::{self, Ipv6Packet};
use crate::{PacketError, Result};

pub const HEADER_LEN: usize = 8;
pub const CHECKSUM_OFFSET: usize = 2;
/// RFC 4443 §2.4(c): an error carries as much of the invoking packet as fits in the minimum MTU.
pub const MIN_MTU: usize = 1280;

pub mod kind {
    pub const DEST_UNREACH: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
}

mod nd_option {
    pub const SOURCE_LL_ADDR: u8 = 1;
    pub const TARGET_LL_ADDR: u8 = 2;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Checks the 8-byte header, and the 24 bytes of a neighbour solicitation or advertisement.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self { buffer };
        let len = p.b().len();
        if len < HEADER_LEN {
            return Err(PacketError::Truncated);
        }
        if matches!(p.msg_type(), kind::NEIGHBOR_SOLICIT | kind::NEIGHBOR_ADVERT) && len < 24 {
            return Err(PacketError::Truncated);
        }
        Ok(p)
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn msg_type(&self) -> u8 {
        be::u8_at(self.b(), 0)
    }
    pub fn code(&self) -> u8 {
        be::u8_at(self.b(), 1)
    }
    pub fn checksum(&self) -> u16 {
        be::u16_at(self.b(), CHECKSUM_OFFSET)
    }
    pub fn echo_ident(&self) -> u16 {
        be::u16_at(self.b(), 4)
    }
    pub fn echo_seq(&self) -> u16 {
        be::u16_at(self.b(), 6)
    }
    /// The MTU of "packet too big".
    pub fn mtu(&self) -> u32 {
        be::u32_at(self.b(), 4)
    }
    /// Errors have types below 128 (RFC 4443 §2.1).
    pub fn is_error(&self) -> bool {
        self.msg_type() < 128
    }
    pub fn data(&self) -> &[u8] {
        self.b().get(HEADER_LEN..).unwrap_or_default()
    }
    /// The target address of a neighbour solicitation or advertisement.
    pub fn nd_target(&self) -> Ipv6Addr {
        be::array::<16>(self.b(), 8).into()
    }
    /// The link-layer address option of an NS (source) or NA (target), if present.
    pub fn nd_link_layer_addr(&self) -> Option<MacAddr> {
        let want = if self.msg_type() == kind::NEIGHBOR_SOLICIT {
            nd_option::SOURCE_LL_ADDR
        } else {
            nd_option::TARGET_LL_ADDR
        };
        let opts = self.b().get(24..)?;
        let mut i = 0;
        while let (Some(&t), Some(&l)) = (opts.get(i), opts.get(i + 1)) {
            let len = usize::from(l) * 8;
            if len == 0 {
                return None; // RFC 4861 §4.6: length 0 is invalid; stop rather than loop
            }
            if t == want && len == 8 {
                return Some(be::array(opts, i + 2));
            }
            i += len;
        }
        None
    }
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let ph = checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, crate::len_u32(self.b().len()));
        checksum::fold(checksum::sum(ph, self.b())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    pub fn set_type_code(&mut self, t: u8, c: u8) {
        be::set_u8(self.buffer.as_mut(), 0, t);
        be::set_u8(self.buffer.as_mut(), 1, c);
    }
    pub fn set_checksum(&mut self, c: u16) {
        be::set_u16(self.buffer.as_mut(), CHECKSUM_OFFSET, c);
    }
    pub fn set_rest_of_header(&mut self, v: u32) {
        be::set_u32(self.buffer.as_mut(), 4, v);
    }
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let ph = checksum::pseudo_header_v6(
            src,
            dst,
            ip_proto::ICMPV6,
            crate::len_u32(self.buffer.as_ref().len()),
        );
        let c = checksum::finish(checksum::sum(ph, self.buffer.as_ref()));
        self.set_checksum(c);
    }
}

/// Writes a 40-byte IPv6 header.
fn write_ipv6(
    buf: &mut [u8],
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    payload_len: usize,
    hop_limit: u8,
) -> Result<()> {
    let len = u16::try_from(payload_len).map_err(|_| PacketError::NoRoom)?;
    let mut ip = Ipv6Packet::new_unchecked(buf.get_mut(..ipv6::HEADER_LEN).ok_or(PacketError::NoRoom)?);
    ip.set_version_tc_flow(0, 0);
    ip.set_payload_len(len);
    ip.set_next_header(ip_proto::ICMPV6);
    ip.set_hop_limit(hop_limit);
    ip.set_src(src);
    ip.set_dst(dst);
    Ok(())
}

/// Builds the solicited neighbour advertisement answering `ns` (the solicitation's IPv6 packet) with
/// `our_mac`; returns the frame length. The NA goes to the solicitation's source (or all-nodes when
/// that was unspecified, RFC 4861 §7.2.4).
pub fn build_neighbor_advert(
    out: &mut [u8],
    ns_ip: &[u8],
    ns_l2_src: MacAddr,
    our_mac: MacAddr,
) -> Result<usize> {
    let ip = Ipv6Packet::new_checked(ns_ip)?;
    let ns = Icmpv6Packet::new_checked(ip.payload())?;
    if ns.msg_type() != kind::NEIGHBOR_SOLICIT {
        return Err(PacketError::Unsupported("not a neighbour solicitation"));
    }
    let target = ns.nd_target();
    let (dst, solicited) = if ip.src().is_unspecified() {
        (Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), false)
    } else {
        (ip.src(), true)
    };
    let icmp_len = 24 + 8;
    let total = ethernet::HEADER_LEN + ipv6::HEADER_LEN + icmp_len;
    let out = out.get_mut(..total).ok_or(PacketError::NoRoom)?;
    let l2_dst = if solicited { ns_l2_src } else { [0x33, 0x33, 0, 0, 0, 1] };
    ethernet::write_header(out, l2_dst, our_mac, ethernet::ethertype::IPV6)?;
    let (_, rest) = out.split_at_mut(ethernet::HEADER_LEN);
    let (ip6, icmp) = rest.split_at_mut(ipv6::HEADER_LEN);
    // RFC 4861 §7.1.2: ND messages carry hop limit 255 so receivers know they were not routed.
    write_ipv6(ip6, &target, &dst, icmp_len, 255)?;
    icmp.fill(0);
    let mut m = Icmpv6Packet::new_unchecked(&mut *icmp);
    m.set_type_code(kind::NEIGHBOR_ADVERT, 0);
    // Flags: Solicited (0x40) when answering a unicast-sourced NS, Override (0x20) always.
    m.set_rest_of_header(if solicited { 0x6000_0000 } else { 0x2000_0000 });
    be::set_bytes(icmp, 8, &target.octets());
    be::set_bytes(icmp, 24, &[nd_option::TARGET_LL_ADDR, 1]);
    be::set_bytes(icmp, 26, &our_mac);
    Icmpv6Packet::new_unchecked(icmp).fill_checksum(&target, &dst);
    Ok(total)
}

/// The solicited-node multicast address of `target` (RFC 4291 §2.7.1), where its owner listens for
/// neighbour solicitations, and the Ethernet group it maps to (RFC 2464 §7).
pub fn solicited_node(target: &Ipv6Addr) -> (Ipv6Addr, MacAddr) {
    let t = target.octets();
    let ip =
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | u16::from(t[13]), u16::from_be_bytes([t[14], t[15]]));
    (ip, [0x33, 0x33, 0xff, t[13], t[14], t[15]])
}

/// Builds a neighbour solicitation for `target` from `our_ip` at `our_mac` (RFC 4861 §7.2.2: to the
/// target's solicited-node group, with our link-layer address); returns the frame length.
pub fn build_neighbor_solicit(
    out: &mut [u8],
    our_mac: MacAddr,
    our_ip: &Ipv6Addr,
    target: &Ipv6Addr,
) -> Result<usize> {
    let (dst, l2_dst) = solicited_node(target);
    build_nd(
        out,
        l2_dst,
        our_mac,
        our_ip,
        &dst,
        (kind::NEIGHBOR_SOLICIT, 0),
        target,
        nd_option::SOURCE_LL_ADDR,
    )
}

/// Builds an unsolicited neighbour advertisement of `target` at `our_mac` to all nodes (RFC 4861
/// §7.2.6: Override set, Solicited clear), as a new VIP is announced; returns the frame length.
pub fn build_unsolicited_advert(out: &mut [u8], our_mac: MacAddr, target: &Ipv6Addr) -> Result<usize> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let l2_dst = [0x33, 0x33, 0, 0, 0, 1];
    build_nd(
        out,
        l2_dst,
        our_mac,
        target,
        &all_nodes,
        (kind::NEIGHBOR_ADVERT, 0x2000_0000),
        target,
        nd_option::TARGET_LL_ADDR,
    )
}

/// A neighbour discovery message with one link-layer address option (`option`: ours).
#[allow(clippy::too_many_arguments)]
fn build_nd(
    out: &mut [u8],
    l2_dst: MacAddr,
    our_mac: MacAddr,
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    (msg_type, flags): (u8, u32),
    target: &Ipv6Addr,
    option: u8,
) -> Result<usize> {
    let icmp_len = 24 + 8;
    let total = ethernet::HEADER_LEN + ipv6::HEADER_LEN + icmp_len;
    let out = out.get_mut(..total).ok_or(PacketError::NoRoom)?;
    ethernet::write_header(out, l2_dst, our_mac, ethernet::ethertype::IPV6)?;
    let (_, rest) = out.split_at_mut(ethernet::HEADER_LEN);
    let (ip6, icmp) = rest.split_at_mut(ipv6::HEADER_LEN);
    write_ipv6(ip6, src, dst, icmp_len, 255)?;
    icmp.fill(0);
    let mut m = Icmpv6Packet::new_unchecked(&mut *icmp);
    m.set_type_code(msg_type, 0);
    m.set_rest_of_header(flags);
    be::set_bytes(icmp, 8, &target.octets());
    be::set_bytes(icmp, 24, &[option, 1]);
    be::set_bytes(icmp, 26, &our_mac);
    Icmpv6Packet::new_unchecked(icmp).fill_checksum(src, dst);
    Ok(total)
}

/// An ICMPv6 error the director sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    PacketTooBig { mtu: u32 },
    HopLimitExceeded,
    PortUnreachable,
    AddressUnreachable,
}

/// Builds an ICMPv6 error from `src` about `orig` (the offending IPv6 packet) back to its sender.
/// RFC 4443 §2.4(e): never about an ICMPv6 error or a packet sent to a multicast address (except
/// Packet Too Big, which multicast senders need for PMTU discovery).
pub fn build_error(
    out: &mut [u8],
    l2_dst: MacAddr,
    l2_src: MacAddr,
    src: &Ipv6Addr,
    kind: ErrorKind,
    orig: &[u8],
) -> Result<usize> {
    let o = Ipv6Packet::new_checked(orig)?;
    let too_big = matches!(kind, ErrorKind::PacketTooBig { .. });
    if (o.dst().is_multicast() && !too_big) || o.src().is_unspecified() || o.src().is_multicast() {
        return Err(PacketError::Unsupported("no ICMPv6 error may answer this packet"));
    }
    if let Ok(ul) = o.upper_layer() {
        if ul.protocol == ip_proto::ICMPV6 {
            let inner = orig.get(ul.offset..).unwrap_or_default();
            if Icmpv6Packet::new_checked(inner).is_ok_and(|m| m.is_error()) {
                return Err(PacketError::Unsupported("no ICMPv6 error about an ICMPv6 error"));
            }
        }
    }
    let (t, c, rest) = match kind {
        ErrorKind::PacketTooBig { mtu } => (kind::PACKET_TOO_BIG, 0, mtu),
        ErrorKind::HopLimitExceeded => (kind::TIME_EXCEEDED, 0, 0),
        ErrorKind::PortUnreachable => (kind::DEST_UNREACH, 4, 0),
        ErrorKind::AddressUnreachable => (kind::DEST_UNREACH, 3, 0),
    };
    let orig_len = ipv6::HEADER_LEN + usize::from(o.payload_len());
    let quoted_len = orig_len.min(MIN_MTU - ipv6::HEADER_LEN - HEADER_LEN);
    let quoted = orig.get(..quoted_len).ok_or(PacketError::Truncated)?;
    let icmp_len = HEADER_LEN + quoted_len;
    let total = ethernet::HEADER_LEN + ipv6::HEADER_LEN + icmp_len;
    let out = out.get_mut(..total).ok_or(PacketError::NoRoom)?;
    ethernet::write_header(out, l2_dst, l2_src, ethernet::ethertype::IPV6)?;
    let (_, rest_buf) = out.split_at_mut(ethernet::HEADER_LEN);
    let (ip6, icmp) = rest_buf.split_at_mut(ipv6::HEADER_LEN);
    let dst = o.src();
    write_ipv6(ip6, src, &dst, icmp_len, 64)?;
    let mut m = Icmpv6Packet::new_unchecked(&mut *icmp);
    m.set_type_code(t, c);
    m.set_rest_of_header(rest);
    be::set_bytes(icmp, HEADER_LEN, quoted);
    Icmpv6Packet::new_unchecked(icmp).fill_checksum(src, &dst);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns_packet(src: Ipv6Addr, target: Ipv6Addr, mac: MacAddr) -> Vec<u8> {
        let mut icmp = vec![kind::NEIGHBOR_SOLICIT, 0, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&target.octets());
        icmp.extend_from_slice(&[nd_option::SOURCE_LL_ADDR, 1]);
        icmp.extend_from_slice(&mac);
        let dst: Ipv6Addr = "ff02::1:ff00:50".parse().unwrap();
        let mut p = vec![0u8; 40];
        write_ipv6(&mut p, &src, &dst, icmp.len(), 255).unwrap();
        p.extend_from_slice(&icmp);
        Icmpv6Packet::new_unchecked(&mut p[40..]).fill_checksum(&src, &dst);
        p
    }

    #[test]
    fn answers_a_solicitation() {
        let client: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let vip: Ipv6Addr = "2001:db8::50".parse().unwrap();
        let ns = ns_packet(client, vip, [2, 0, 0, 0, 0, 7]);
        let ip = Ipv6Packet::new_checked(&ns[..]).unwrap();
        let m = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(m.verify_checksum(&ip.src(), &ip.dst()));
        assert_eq!((m.nd_target(), m.nd_link_layer_addr()), (vip, Some([2, 0, 0, 0, 0, 7])));

        let mut out = [0u8; 128];
        let n = build_neighbor_advert(&mut out, &ns, [2, 0, 0, 0, 0, 7], [2, 0, 0, 0, 0, 0x50]).unwrap();
        assert_eq!(n, 14 + 40 + 32);
        assert_eq!(&out[..6], &[2, 0, 0, 0, 0, 7]);
        let ip = Ipv6Packet::new_checked(&out[14..n]).unwrap();
        assert_eq!((ip.src(), ip.dst(), ip.hop_limit()), (vip, client, 255));
        let na = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!(na.msg_type(), kind::NEIGHBOR_ADVERT);
        assert_eq!(out[14 + 40 + 4], 0x60, "solicited + override");
        assert_eq!(na.nd_link_layer_addr(), Some([2, 0, 0, 0, 0, 0x50]));
        assert!(na.verify_checksum(&vip, &client));
    }

    #[test]
    fn too_big_quotes_up_to_the_minimum_mtu() {
        let src: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let mut orig = vec![0u8; 40];
        write_ipv6(&mut orig, &src, &"2001:db8::50".parse().unwrap(), 1460, 64).unwrap();
        orig[6] = ip_proto::UDP;
        orig.resize(1500, 0xab);
        let me: Ipv6Addr = "2001:db8::fe".parse().unwrap();
        let mut out = vec![0u8; 1400];
        let n =
            build_error(&mut out, [2; 6], [4; 6], &me, ErrorKind::PacketTooBig { mtu: 1480 }, &orig).unwrap();
        assert_eq!(n, 14 + 1280);
        let ip = Ipv6Packet::new_checked(&out[14..n]).unwrap();
        let m = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!((m.msg_type(), m.mtu()), (kind::PACKET_TOO_BIG, 1480));
        assert!(m.verify_checksum(&me, &src));
        let err = out[14..n].to_vec();
        assert!(matches!(
            build_error(&mut out, [2; 6], [4; 6], &me, ErrorKind::HopLimitExceeded, &err),
            Err(PacketError::Unsupported(_))
        ));
    }

    #[test]
    fn zero_length_options_stop_the_walk() {
        let mut ns = ns_packet("2001:db8::7".parse().unwrap(), "2001:db8::50".parse().unwrap(), [2; 6]);
        ns[40 + 25] = 0;
        let ip = Ipv6Packet::new_checked(&ns[..]).unwrap();
        assert_eq!(Icmpv6Packet::new_checked(ip.payload()).unwrap().nd_link_layer_addr(), None);
    }
}
