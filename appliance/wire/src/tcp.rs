//! TCP segments (RFC 9293): ports, sequence numbers, flags, options (MSS).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::be;
use crate::checksum;
use crate::ip_proto;
use crate::{PacketError, Result};

pub const MIN_HEADER_LEN: usize = 20;
pub const CHECKSUM_OFFSET: usize = 16;

pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

mod option {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpSegment<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Checks a data offset of at least 5 words that fits the buffer. The buffer is the whole segment
    /// (the IP payload).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let s = Self { buffer };
        let len = s.buffer.as_ref().len();
        if len < MIN_HEADER_LEN {
            return Err(PacketError::Truncated);
        }
        let hl = s.header_len();
        if hl < MIN_HEADER_LEN {
            return Err(PacketError::Malformed("TCP data offset below 5"));
        }
        if hl > len {
            return Err(PacketError::Truncated);
        }
        Ok(s)
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn src_port(&self) -> u16 {
        be::u16_at(self.b(), 0)
    }
    pub fn dst_port(&self) -> u16 {
        be::u16_at(self.b(), 2)
    }
    pub fn seq(&self) -> u32 {
        be::u32_at(self.b(), 4)
    }
    pub fn ack(&self) -> u32 {
        be::u32_at(self.b(), 8)
    }
    pub fn header_len(&self) -> usize {
        usize::from(be::u8_at(self.b(), 12) >> 4) * 4
    }
    /// The eight flag bits (CWR..FIN).
    pub fn flags(&self) -> u8 {
        be::u8_at(self.b(), 13)
    }
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }
    pub fn ack_flag(&self) -> bool {
        self.flags() & flags::ACK != 0
    }
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }
    pub fn window(&self) -> u16 {
        be::u16_at(self.b(), 14)
    }
    pub fn checksum(&self) -> u16 {
        be::u16_at(self.b(), CHECKSUM_OFFSET)
    }
    pub fn urgent(&self) -> u16 {
        be::u16_at(self.b(), 18)
    }
    pub fn options(&self) -> &[u8] {
        self.b().get(MIN_HEADER_LEN..self.header_len()).unwrap_or_default()
    }
    pub fn payload(&self) -> &[u8] {
        self.b().get(self.header_len()..).unwrap_or_default()
    }

    /// The MSS option's value and its offset in the segment, if present and well-formed.
    pub fn mss(&self) -> Option<(u16, usize)> {
        let opts = self.options();
        let mut i = 0;
        while let Some(&kind) = opts.get(i) {
            match kind {
                option::END => return None,
                option::NOP => i += 1,
                _ => {
                    let len = usize::from(*opts.get(i + 1)?);
                    if len < 2 {
                        return None; // malformed: would loop forever
                    }
                    if kind == option::MSS && len == 4 {
                        return Some((be::u16_at(opts, i + 2), MIN_HEADER_LEN + i + 2));
                    }
                    i += len;
                }
            }
        }
        None
    }

    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let len = u16::try_from(self.b().len()).unwrap_or(0);
        let ph = checksum::pseudo_header_v4(src, dst, ip_proto::TCP, len);
        checksum::fold(checksum::sum(ph, self.b())) == 0xffff
    }

    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let ph = checksum::pseudo_header_v6(src, dst, ip_proto::TCP, crate::len_u32(self.b().len()));
        checksum::fold(checksum::sum(ph, self.b())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpSegment<T> {
    pub fn set_src_port(&mut self, p: u16) {
        be::set_u16(self.buffer.as_mut(), 0, p);
    }
    pub fn set_dst_port(&mut self, p: u16) {
        be::set_u16(self.buffer.as_mut(), 2, p);
    }
    pub fn set_checksum(&mut self, c: u16) {
        be::set_u16(self.buffer.as_mut(), CHECKSUM_OFFSET, c);
    }

    /// Lowers the MSS option to at most `max` (MSS clamping, e.g. for the 20 bytes a TUN header adds),
    /// updating the checksum incrementally. Returns true if it changed.
    pub fn clamp_mss(&mut self, max: u16) -> bool {
        let Some((mss, at)) = self.mss() else { return false };
        if mss <= max {
            return false;
        }
        // The option value may sit at an odd offset; RFC 1624 needs word-aligned data, so update the
        // aligned words (at most two) that contain it. Fixed-size copies: no allocation per packet.
        let start = at & !1;
        let n = ((at + 3) & !1) - start;
        let words = |b: &[u8]| -> Option<[u8; 4]> {
            let mut w = [0u8; 4];
            w.get_mut(..n)?.copy_from_slice(b.get(start..start + n)?);
            Some(w)
        };
        let Some(old) = words(self.buffer.as_ref()) else { return false };
        be::set_u16(self.buffer.as_mut(), at, max);
        let new = words(self.buffer.as_ref()).unwrap_or(old);
        let c = checksum::update(
            self.checksum(),
            old.get(..n).unwrap_or_default(),
            new.get(..n).unwrap_or_default(),
        );
        self.set_checksum(c);
        true
    }

    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let len = u16::try_from(self.buffer.as_ref().len()).unwrap_or(0);
        let ph = checksum::pseudo_header_v4(src, dst, ip_proto::TCP, len);
        let c = checksum::finish(checksum::sum(ph, self.buffer.as_ref()));
        self.set_checksum(c);
    }

    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let ph =
            checksum::pseudo_header_v6(src, dst, ip_proto::TCP, crate::len_u32(self.buffer.as_ref().len()));
        let c = checksum::finish(checksum::sum(ph, self.buffer.as_ref()));
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN 192.0.2.1:40000 -> 192.0.2.2:80 with options NOP NOP MSS 1460 ... (24-byte header).
    #[rustfmt::skip]
    fn syn() -> Vec<u8> {
        let mut s = vec![
            0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x03, 0xe8, 0, 0, 0, 0,
            0x70, 0x02, 0xfa, 0xf0, 0, 0, 0, 0,
            0x01, 0x01, 0x02, 0x04, 0x05, 0xb4, 0x00, 0x00,
        ];
        TcpSegment::new_checked(&mut s[..]).unwrap().fill_checksum_v4(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
        s
    }

    #[test]
    fn golden_syn() {
        let s = syn();
        let t = TcpSegment::new_checked(&s[..]).unwrap();
        assert_eq!((t.src_port(), t.dst_port(), t.seq(), t.ack()), (40000, 80, 1000, 0));
        assert_eq!((t.header_len(), t.flags(), t.window()), (28, flags::SYN, 64240));
        assert!(t.syn() && !t.ack_flag() && !t.fin() && !t.rst());
        assert_eq!(t.mss(), Some((1460, 24)));
        assert!(t.payload().is_empty());
        assert!(t.verify_checksum_v4(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)));
    }

    #[test]
    fn mss_clamp_at_an_odd_offset_keeps_the_checksum_right() {
        let (src, dst) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
        let mut s = syn();
        s[20] = 0x01; // one NOP only: MSS value moves to odd offset 23
        s[21..25].copy_from_slice(&[0x02, 0x04, 0x05, 0xb4]);
        s[25] = 0x01;
        TcpSegment::new_checked(&mut s[..]).unwrap().fill_checksum_v4(src, dst);
        let mut t = TcpSegment::new_checked(&mut s[..]).unwrap();
        assert_eq!(t.mss(), Some((1460, 23)));
        assert!(t.clamp_mss(1440));
        assert!(!t.clamp_mss(1460), "never raises");
        assert_eq!(t.mss(), Some((1440, 23)));
        assert!(t.verify_checksum_v4(src, dst));
    }

    #[test]
    fn mss_clamp_at_the_very_end_of_the_segment() {
        let (src, dst) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
        let mut s = syn();
        s[20..28].copy_from_slice(&[0x01, 0x01, 0x01, 0x01, 0x02, 0x04, 0x05, 0xb4]); // MSS value at 26..28
        TcpSegment::new_checked(&mut s[..]).unwrap().fill_checksum_v4(src, dst);
        let mut t = TcpSegment::new_checked(&mut s[..]).unwrap();
        assert_eq!(t.mss(), Some((1460, 26)));
        assert!(t.clamp_mss(1400));
        assert!(t.verify_checksum_v4(src, dst));
    }

    #[test]
    fn malformed_options_end_the_walk() {
        let mut s = syn();
        s[22] = 0x08; // an unknown kind...
        s[23] = 0x00; // ...with length 0
        assert_eq!(TcpSegment::new_checked(&s[..]).unwrap().mss(), None);
    }

    #[test]
    fn bad_data_offsets() {
        let mut s = syn();
        s[12] = 0x40;
        assert_eq!(
            TcpSegment::new_checked(&s[..]).unwrap_err(),
            PacketError::Malformed("TCP data offset below 5")
        );
        s[12] = 0xf0; // 60 bytes > 28
        assert_eq!(TcpSegment::new_checked(&s[..]).unwrap_err(), PacketError::Truncated);
        let s = syn();
        for n in 0..28 {
            assert!(TcpSegment::new_checked(&s[..n]).is_err(), "{n}");
        }
    }
}
