//! UDP datagrams (RFC 768).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::be;
use crate::checksum;
use crate::ip_proto;
use crate::{PacketError, Result};

pub const HEADER_LEN: usize = 8;
pub const CHECKSUM_OFFSET: usize = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpDatagram<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpDatagram<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Checks 8 <= length field <= buffer.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let d = Self { buffer };
        let len = d.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(PacketError::Truncated);
        }
        let l = usize::from(d.len());
        if l < HEADER_LEN {
            return Err(PacketError::Malformed("UDP length below 8"));
        }
        if l > len {
            return Err(PacketError::Truncated);
        }
        Ok(d)
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
    pub fn len(&self) -> u16 {
        be::u16_at(self.b(), 4)
    }
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }
    pub fn checksum(&self) -> u16 {
        be::u16_at(self.b(), CHECKSUM_OFFSET)
    }
    pub fn payload(&self) -> &[u8] {
        self.b().get(HEADER_LEN..usize::from(self.len())).unwrap_or_default()
    }
    fn datagram(&self) -> &[u8] {
        self.b().get(..usize::from(self.len())).unwrap_or_default()
    }
    /// Over IPv4 a zero checksum means "none" and verifies.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0
            || checksum::fold(checksum::sum(
                checksum::pseudo_header_v4(src, dst, ip_proto::UDP, self.len()),
                self.datagram(),
            )) == 0xffff
    }
    /// Over IPv6 the checksum is mandatory (RFC 8200 §8.1).
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let ph = checksum::pseudo_header_v6(src, dst, ip_proto::UDP, u32::from(self.len()));
        self.checksum() != 0 && checksum::fold(checksum::sum(ph, self.datagram())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpDatagram<T> {
    pub fn set_src_port(&mut self, p: u16) {
        be::set_u16(self.buffer.as_mut(), 0, p);
    }
    pub fn set_dst_port(&mut self, p: u16) {
        be::set_u16(self.buffer.as_mut(), 2, p);
    }
    pub fn set_len(&mut self, l: u16) {
        be::set_u16(self.buffer.as_mut(), 4, l);
    }
    pub fn set_checksum(&mut self, c: u16) {
        be::set_u16(self.buffer.as_mut(), CHECKSUM_OFFSET, c);
    }
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let c = checksum::finish(checksum::sum(
            checksum::pseudo_header_v4(src, dst, ip_proto::UDP, self.len()),
            self.datagram(),
        ));
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let ph = checksum::pseudo_header_v6(src, dst, ip_proto::UDP, u32::from(self.len()));
        let c = checksum::finish(checksum::sum(ph, self.datagram()));
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_datagram_and_checksum() {
        // 192.0.2.1:5353 -> 192.0.2.2:53, payload "abc"; checksum worked out by hand below.
        let mut b = vec![0x14, 0xe9, 0x00, 0x35, 0x00, 0x0b, 0, 0, b'a', b'b', b'c'];
        let (s, d) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2));
        let mut u = UdpDatagram::new_checked(&mut b[..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port(), u.len()), (5353, 53, 11));
        assert_eq!(u.payload(), b"abc");
        assert!(u.verify_checksum_v4(s, d), "zero = no checksum");
        u.fill_checksum_v4(s, d);
        // pseudo: c000+0201+c000+0202+0011+000b; udp: 14e9+0035+000b+6162+6300
        let by_hand: u32 =
            0xc000 + 0x0201 + 0xc000 + 0x0202 + 0x0011 + 0x000b + 0x14e9 + 0x0035 + 0x000b + 0x6162 + 0x6300;
        assert_eq!(u.checksum(), !checksum::fold(by_hand));
        assert!(u.verify_checksum_v4(s, d));
    }

    #[test]
    fn bad_lengths() {
        let b = [0u8, 1, 0, 2, 0, 7, 0, 0];
        assert_eq!(
            UdpDatagram::new_checked(&b[..]).unwrap_err(),
            PacketError::Malformed("UDP length below 8")
        );
        let b = [0u8, 1, 0, 2, 0, 9, 0, 0];
        assert_eq!(UdpDatagram::new_checked(&b[..]).unwrap_err(), PacketError::Truncated);
        for n in 0..8 {
            assert_eq!(UdpDatagram::new_checked(&b[..n]).unwrap_err(), PacketError::Truncated);
        }
    }
}
