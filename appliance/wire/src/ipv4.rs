//! IPv4 headers (RFC 791), options and fragment fields included.

use std::net::Ipv4Addr;

use crate::be;
use crate::checksum;
use crate::{PacketError, Result};

mod field {
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

pub const MIN_HEADER_LEN: usize = 20;
/// Offset of the header checksum, for incremental updates by callers.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;
pub const SRC_OFFSET: usize = field::SRC;
pub const DST_OFFSET: usize = field::DST;
pub const TTL_OFFSET: usize = field::TTL;

const DF: u16 = 0x4000;
const MF: u16 = 0x2000;

/// A view of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Checks version 4, 5 <= IHL, header within the total length, and total length within the
    /// buffer (which may be longer: Ethernet pads short frames).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self { buffer };
        let (len, hl) = p.check_start()?;
        let total = usize::from(p.total_len());
        if total < hl {
            return Err(PacketError::Malformed("IPv4 total length below header length"));
        }
        if len < hl || len < total {
            return Err(PacketError::Truncated);
        }
        Ok(p)
    }

    /// Checks only the header (version, IHL, header within the buffer): for the datagram an ICMP error
    /// quotes, whose total length covers bytes the error does not carry.
    pub fn new_checked_header(buffer: T) -> Result<Self> {
        let p = Self { buffer };
        let (len, hl) = p.check_start()?;
        if hl > len {
            return Err(PacketError::Truncated);
        }
        Ok(p)
    }

    /// The checks both constructors begin with: 20 bytes present, version 4, IHL >= 5. Returns the
    /// buffer and header lengths; what each constructor checks next differs (and so does its order).
    fn check_start(&self) -> Result<(usize, usize)> {
        let len = self.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(PacketError::Truncated);
        }
        if self.version() != 4 {
            return Err(PacketError::Malformed("IPv4 version"));
        }
        let hl = self.header_len();
        if hl < MIN_HEADER_LEN {
            return Err(PacketError::Malformed("IPv4 header length below 20"));
        }
        Ok((len, hl))
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn version(&self) -> u8 {
        be::u8_at(self.b(), field::VER_IHL) >> 4
    }
    /// Header length in bytes (IHL × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(be::u8_at(self.b(), field::VER_IHL) & 0x0f) * 4
    }
    /// The whole DSCP/ECN byte (the old TOS).
    pub fn tos(&self) -> u8 {
        be::u8_at(self.b(), field::DSCP_ECN)
    }
    pub fn total_len(&self) -> u16 {
        be::u16_at(self.b(), field::LENGTH)
    }
    pub fn ident(&self) -> u16 {
        be::u16_at(self.b(), field::IDENT)
    }
    pub fn dont_frag(&self) -> bool {
        be::u16_at(self.b(), field::FLG_OFF) & DF != 0
    }
    pub fn more_frags(&self) -> bool {
        be::u16_at(self.b(), field::FLG_OFF) & MF != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be::u16_at(self.b(), field::FLG_OFF) & 0x1fff) << 3
    }
    /// Part of a fragmented datagram (first fragment included).
    pub fn is_fragment(&self) -> bool {
        self.more_frags() || self.frag_offset() != 0
    }
    pub fn ttl(&self) -> u8 {
        be::u8_at(self.b(), field::TTL)
    }
    pub fn protocol(&self) -> u8 {
        be::u8_at(self.b(), field::PROTOCOL)
    }
    pub fn checksum(&self) -> u16 {
        be::u16_at(self.b(), field::CHECKSUM)
    }
    pub fn src(&self) -> Ipv4Addr {
        be::array::<4>(self.b(), field::SRC).into()
    }
    pub fn dst(&self) -> Ipv4Addr {
        be::array::<4>(self.b(), field::DST).into()
    }
    pub fn header(&self) -> &[u8] {
        self.b().get(..self.header_len()).unwrap_or_default()
    }
    pub fn options(&self) -> &[u8] {
        self.b().get(MIN_HEADER_LEN..self.header_len()).unwrap_or_default()
    }
    /// The payload per the total-length field (Ethernet padding excluded).
    pub fn payload(&self) -> &[u8] {
        self.b().get(self.header_len()..usize::from(self.total_len())).unwrap_or_default()
    }
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(self.header())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn bm(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    pub fn set_version_ihl(&mut self, header_len: usize) {
        // IHL is 4 bits: 20..=60 bytes of header.
        let ihl = u8::try_from((header_len / 4) & 0x0f).unwrap_or(5);
        be::set_u8(self.bm(), field::VER_IHL, 0x40 | ihl);
    }
    pub fn set_tos(&mut self, tos: u8) {
        be::set_u8(self.bm(), field::DSCP_ECN, tos);
    }
    pub fn set_total_len(&mut self, len: u16) {
        be::set_u16(self.bm(), field::LENGTH, len);
    }
    pub fn set_ident(&mut self, id: u16) {
        be::set_u16(self.bm(), field::IDENT, id);
    }
    /// Sets DF and clears MF and the fragment offset (for headers we originate).
    pub fn set_flags_unfragmented(&mut self, dont_frag: bool) {
        be::set_u16(self.bm(), field::FLG_OFF, if dont_frag { DF } else { 0 });
    }
    pub fn set_ttl(&mut self, ttl: u8) {
        be::set_u8(self.bm(), field::TTL, ttl);
    }
    pub fn set_protocol(&mut self, p: u8) {
        be::set_u8(self.bm(), field::PROTOCOL, p);
    }
    pub fn set_checksum(&mut self, c: u16) {
        be::set_u16(self.bm(), field::CHECKSUM, c);
    }
    pub fn set_src(&mut self, a: Ipv4Addr) {
        be::set_bytes(self.bm(), field::SRC, &a.octets());
    }
    pub fn set_dst(&mut self, a: Ipv4Addr) {
        be::set_bytes(self.bm(), field::DST, &a.octets());
    }
    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c);
    }
    /// Lowers the TTL by one, updating the checksum incrementally (RFC 1624; the TTL shares its word
    /// with the protocol byte).
    pub fn decrement_ttl(&mut self) {
        let (ttl, proto) = (self.ttl(), self.protocol());
        let old = u16::from_be_bytes([ttl, proto]);
        let new = u16::from_be_bytes([ttl.wrapping_sub(1), proto]);
        let c = checksum::update16(self.checksum(), old, new);
        self.set_ttl(ttl.wrapping_sub(1));
        self.set_checksum(c);
    }
    /// Replaces the source address, updating the header checksum incrementally.
    pub fn rewrite_src(&mut self, a: Ipv4Addr) {
        let c = checksum::update(self.checksum(), &self.src().octets(), &a.octets());
        self.set_src(a);
        self.set_checksum(c);
    }
    /// Replaces the destination address, updating the header checksum incrementally.
    pub fn rewrite_dst(&mut self, a: Ipv4Addr) {
        let c = checksum::update(self.checksum(), &self.dst().octets(), &a.octets());
        self.set_dst(a);
        self.set_checksum(c);
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, total) = (self.header_len(), usize::from(self.total_len()));
        self.bm().get_mut(hl..total).unwrap_or_default()
    }
}

/// Writes a 20-byte header (no options) with a fresh checksum.
#[allow(clippy::too_many_arguments)]
pub fn write_header(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    payload_len: usize,
    ttl: u8,
    tos: u8,
    ident: u16,
    dont_frag: bool,
) -> Result<()> {
    let total = u16::try_from(MIN_HEADER_LEN + payload_len).map_err(|_| PacketError::NoRoom)?;
    let h = buf.get_mut(..MIN_HEADER_LEN).ok_or(PacketError::NoRoom)?;
    let mut p = Ipv4Packet::new_unchecked(h);
    p.set_version_ihl(MIN_HEADER_LEN);
    p.set_tos(tos);
    p.set_total_len(total);
    p.set_ident(ident);
    p.set_flags_unfragmented(dont_frag);
    p.set_ttl(ttl);
    p.set_protocol(protocol);
    p.set_src(src);
    p.set_dst(dst);
    p.fill_checksum();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // 20-byte header + options (NOP NOP NOP EOL) + 4 bytes UDP-ish payload, checksum valid.
    #[rustfmt::skip]
    fn with_options() -> Vec<u8> {
        let mut p = vec![
            0x46, 0x10, 0x00, 0x1c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0, 0,
            192, 0, 2, 1, 198, 51, 100, 7,
            0x01, 0x01, 0x01, 0x00,
            0xde, 0xad, 0xbe, 0xef,
        ];
        let c = checksum::checksum(&p[..24]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn golden_fields() {
        let b = with_options();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.version(), p.header_len(), p.tos(), p.total_len()), (4, 24, 0x10, 28));
        assert_eq!((p.ident(), p.dont_frag(), p.more_frags(), p.frag_offset()), (0x1234, true, false, 0));
        assert_eq!((p.ttl(), p.protocol()), (64, 17));
        assert_eq!((p.src(), p.dst()), (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 7)));
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(p.verify_checksum());
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        let mut b = with_options();
        b.extend_from_slice(&[0; 18]);
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap().payload().len(), 4);
    }

    #[test]
    fn malformed_headers_are_refused() {
        let good = with_options();
        for n in 0..good.len() {
            assert!(Ipv4Packet::new_checked(&good[..n]).is_err(), "cut at {n}");
        }
        let mut b = good.clone();
        b[0] = 0x44; // IHL 4
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            PacketError::Malformed("IPv4 header length below 20")
        );
        let mut b = good.clone();
        b[0] = 0x4f; // IHL 15 = 60 bytes > buffer
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            PacketError::Malformed("IPv4 total length below header length")
        );
        let mut b = good.clone();
        b[0] = 0x65;
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), PacketError::Malformed("IPv4 version"));
        let mut b = good.clone();
        b[3] = 0x40; // total length 64 > buffer
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), PacketError::Truncated);
        let mut b = good;
        b[3] = 10;
        assert!(Ipv4Packet::new_checked(&b[..]).is_err());
    }

    #[test]
    fn fragments_are_recognised() {
        let mut b = with_options();
        b[6] = 0x20; // MF
        b[7] = 0;
        assert!(Ipv4Packet::new_checked(&b[..]).unwrap().is_fragment());
        b[6] = 0x00;
        b[7] = 0x03; // offset 24 bytes
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.is_fragment() && p.frag_offset() == 24);
    }

    #[test]
    fn incremental_edits_keep_the_checksum_valid() {
        let mut b = with_options();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.decrement_ttl();
        p.rewrite_dst(Ipv4Addr::new(203, 0, 113, 200));
        p.rewrite_src(Ipv4Addr::new(10, 255, 0, 1));
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
        let incremental = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), incremental);
    }

    #[test]
    fn write_header_golden() {
        let mut b = [0u8; 20];
        write_header(
            &mut b,
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(192, 0, 2, 2),
            4,
            40,
            64,
            0xb8,
            7,
            true,
        )
        .unwrap();
        // The checksum (0xb5fb) worked out by hand: the header's 16-bit words sum to 0x24a02, folded
        // 0x4a04, complemented.
        #[rustfmt::skip]
        let want = [0x45, 0xb8, 0, 60, 0, 7, 0x40, 0, 64, 4, 0xb5, 0xfb, 192, 0, 2, 1, 192, 0, 2, 2];
        assert_eq!(b, want);
        assert!(checksum::verify(&b));
    }
}
