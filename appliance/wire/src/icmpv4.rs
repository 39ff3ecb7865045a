//! ICMP for IPv4 (RFC 792): echo, and the errors that quote the packet that caused them.

use std::net::Ipv4Addr;

use crate::be;
use crate::checksum;
use crate::ethernet::{self, MacAddr};
use crate::ip_proto;
use crate::ipv4::{self, Ipv4Packet};
use crate::{PacketError, Result};

pub const HEADER_LEN: usize = 8;
pub const CHECKSUM_OFFSET: usize = 2;

pub mod kind {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACH: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;
}

pub mod code {
    pub const HOST_UNREACH: u8 = 1;
    pub const PORT_UNREACH: u8 = 3;
    pub const FRAG_NEEDED: u8 = 4;
    pub const TTL_EXCEEDED: u8 = 0;
}

/// RFC 1812 §4.3.2.3: an error quotes as much of the offending datagram as fits in 576 bytes.
pub const MAX_ERROR_IP_LEN: usize = 576;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv4Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Checks the 8-byte header. The buffer is the whole message (the IP payload).
    pub fn new_checked(buffer: T) -> Result<Self> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(PacketError::Truncated);
        }
        Ok(Self { buffer })
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
    /// The next-hop MTU of "fragmentation needed" (RFC 1191 §4).
    pub fn next_hop_mtu(&self) -> u16 {
        be::u16_at(self.b(), 6)
    }
    /// Everything after the 8-byte header: echo data, or the quoted datagram of an error.
    pub fn data(&self) -> &[u8] {
        self.b().get(HEADER_LEN..).unwrap_or_default()
    }
    /// An error message, which quotes another datagram (and must never be answered by an error).
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            kind::DEST_UNREACH
                | kind::SOURCE_QUENCH
                | kind::REDIRECT
                | kind::TIME_EXCEEDED
                | kind::PARAM_PROBLEM
        )
    }
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.b())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    pub fn set_type_code(&mut self, t: u8, c: u8) {
        be::set_u8(self.buffer.as_mut(), 0, t);
        be::set_u8(self.buffer.as_mut(), 1, c);
    }
    pub fn set_checksum(&mut self, c: u16) {
        be::set_u16(self.buffer.as_mut(), CHECKSUM_OFFSET, c);
    }
    /// Bytes 4..8: echo id/seq, or unused + next-hop MTU.
    pub fn set_rest_of_header(&mut self, v: u32) {
        be::set_u32(self.buffer.as_mut(), 4, v);
    }
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut().get_mut(HEADER_LEN..).unwrap_or_default()
    }
}

/// An error the director sends about a packet it could not forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Destination unreachable / fragmentation needed and DF set, with the MTU that fits.
    FragNeeded { mtu: u16 },
    /// Time exceeded in transit (TTL reached zero).
    TtlExceeded,
    /// Destination unreachable / port unreachable.
    PortUnreachable,
    /// Destination unreachable / host unreachable (no route, no neighbour).
    HostUnreachable,
}

impl ErrorKind {
    fn type_code_rest(self) -> (u8, u8, u32) {
        match self {
            Self::FragNeeded { mtu } => (kind::DEST_UNREACH, code::FRAG_NEEDED, u32::from(mtu)),
            Self::TtlExceeded => (kind::TIME_EXCEEDED, code::TTL_EXCEEDED, 0),
            Self::PortUnreachable => (kind::DEST_UNREACH, code::PORT_UNREACH, 0),
            Self::HostUnreachable => (kind::DEST_UNREACH, code::HOST_UNREACH, 0),
        }
    }
}

/// RFC 1122 §3.2.2 / RFC 1812 §4.3.2.7: no error about an ICMP error, a non-first fragment, or a
/// datagram sent to or from a broadcast or multicast address.
pub fn may_answer_with_error(orig: &Ipv4Packet<&[u8]>) -> bool {
    if orig.frag_offset() != 0 {
        return false;
    }
    let (s, d) = (orig.src(), orig.dst());
    if d.is_broadcast() || d.is_multicast() || s.is_broadcast() || s.is_multicast() || s.is_unspecified() {
        return false;
    }
    if orig.protocol() == ip_proto::ICMP {
        if let Ok(icmp) = Icmpv4Packet::new_checked(orig.payload()) {
            return !icmp.is_error();
        }
    }
    true
}

/// Builds, into `out`, an Ethernet frame carrying ICMP error `kind` from `src` about `orig` (the
/// offending IPv4 datagram, from its IP header), addressed back to its sender. Returns the frame
/// length. Refuses (Unsupported) where RFC 1122 forbids an error.
pub fn build_error(
    out: &mut [u8],
    l2_dst: MacAddr,
    l2_src: MacAddr,
    src: Ipv4Addr,
    kind: ErrorKind,
    orig: &[u8],
) -> Result<usize> {
    let orig = Ipv4Packet::new_checked(orig)?;
    if !may_answer_with_error(&orig) {
        return Err(PacketError::Unsupported("no ICMP error may answer this datagram"));
    }
    let quoted_len = usize::from(orig.total_len()).min(MAX_ERROR_IP_LEN - ipv4::MIN_HEADER_LEN - HEADER_LEN);
    let quoted = orig.into_inner().get(..quoted_len).ok_or(PacketError::Truncated)?;
    let icmp_len = HEADER_LEN + quoted_len;
    let total = ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN + icmp_len;
    let out = out.get_mut(..total).ok_or(PacketError::NoRoom)?;
    ethernet::write_header(out, l2_dst, l2_src, ethernet::ethertype::IPV4)?;
    let (_, rest) = out.split_at_mut(ethernet::HEADER_LEN);
    let (ip, icmp) = rest.split_at_mut(ipv4::MIN_HEADER_LEN);
    let dst = Ipv4Packet::new_unchecked(quoted).src();
    // TOS 0xc0 (internetwork control) as Linux uses for ICMP errors; DF clear so PMTU errors can
    // themselves be fragmented on the way back.
    ipv4::write_header(ip, src, dst, ip_proto::ICMP, icmp_len, 64, 0xc0, 0, false)?;
    let (t, c, rest_of_header) = kind.type_code_rest();
    let mut m = Icmpv4Packet::new_unchecked(icmp);
    m.set_type_code(t, c);
    m.set_rest_of_header(rest_of_header);
    m.data_mut().copy_from_slice(quoted);
    m.fill_checksum();
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_datagram(len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        ipv4::write_header(
            &mut p,
            Ipv4Addr::new(198, 51, 100, 9),
            Ipv4Addr::new(192, 0, 2, 80),
            ip_proto::UDP,
            len - 20,
            17,
            0,
            99,
            true,
        )
        .unwrap();
        p[20..22].copy_from_slice(&5353u16.to_be_bytes());
        p[22..24].copy_from_slice(&53u16.to_be_bytes());
        p[24..26].copy_from_slice(&((len - 20) as u16).to_be_bytes());
        p
    }

    #[test]
    fn frag_needed_golden_layout() {
        let orig = udp_datagram(1500);
        let mut out = [0u8; 700];
        let me = Ipv4Addr::new(192, 0, 2, 254);
        let n =
            build_error(&mut out, [2; 6], [4; 6], me, ErrorKind::FragNeeded { mtu: 1480 }, &orig).unwrap();
        assert_eq!(n, 14 + 576, "quotes up to 576 bytes of IP (RFC 1812)");
        let ip = Ipv4Packet::new_checked(&out[14..n]).unwrap();
        assert_eq!(
            (ip.src(), ip.dst(), ip.protocol(), ip.total_len()),
            (me, Ipv4Addr::new(198, 51, 100, 9), 1, 576)
        );
        assert!(ip.verify_checksum());
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!((icmp.msg_type(), icmp.code(), icmp.next_hop_mtu()), (3, 4, 1480));
        assert!(icmp.verify_checksum() && icmp.is_error());
        assert_eq!(icmp.data(), &orig[..548]);
    }

    #[test]
    fn short_datagrams_are_quoted_whole() {
        let orig = udp_datagram(40);
        let mut out = [0u8; 200];
        let n = build_error(
            &mut out,
            [2; 6],
            [4; 6],
            Ipv4Addr::new(192, 0, 2, 254),
            ErrorKind::TtlExceeded,
            &orig,
        )
        .unwrap();
        assert_eq!(n, 14 + 20 + 8 + 40);
        let icmp = Icmpv4Packet::new_checked(&out[34..n]).unwrap();
        assert_eq!((icmp.msg_type(), icmp.code()), (11, 0));
        assert_eq!(
            build_error(&mut out[..80], [2; 6], [4; 6], Ipv4Addr::LOCALHOST, ErrorKind::TtlExceeded, &orig),
            Err(PacketError::NoRoom)
        );
    }

    #[test]
    fn never_an_error_about_an_error_or_a_broadcast() {
        let orig = udp_datagram(40);
        let mut out = [0u8; 200];
        let me = Ipv4Addr::new(192, 0, 2, 254);
        let n = build_error(&mut out, [2; 6], [4; 6], me, ErrorKind::PortUnreachable, &orig).unwrap();
        let err = out[14..n].to_vec();
        assert!(matches!(
            build_error(&mut [0u8; 300], [2; 6], [4; 6], me, ErrorKind::TtlExceeded, &err),
            Err(PacketError::Unsupported(_))
        ));
        let mut bcast = udp_datagram(40);
        bcast[16..20].copy_from_slice(&[255, 255, 255, 255]);
        Ipv4Packet::new_checked(&mut bcast[..]).unwrap().fill_checksum();
        assert!(matches!(
            build_error(&mut out, [2; 6], [4; 6], me, ErrorKind::TtlExceeded, &bcast),
            Err(PacketError::Unsupported(_))
        ));
    }
}
