//! ARP for IPv4 over Ethernet (RFC 826), the only kind a director answers.

use std::net::Ipv4Addr;

use crate::be;
use crate::ethernet::{self, MacAddr};
use crate::{PacketError, Result};

pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;
/// An ARP packet for Ethernet/IPv4.
pub const PACKET_LEN: usize = 28;
/// An Ethernet frame carrying it (before padding to 60 bytes).
pub const FRAME_LEN: usize = ethernet::HEADER_LEN + PACKET_LEN;

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpPacket<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Checks length and that this is Ethernet (1) / IPv4 (0x0800) with 6- and 4-byte addresses.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(PacketError::Truncated);
        }
        if be::u16_at(b, field::HTYPE) != 1
            || be::u16_at(b, field::PTYPE) != ethernet::ethertype::IPV4
            || be::u8_at(b, field::HLEN) != 6
            || be::u8_at(b, field::PLEN) != 4
        {
            return Err(PacketError::Unsupported("ARP for other than Ethernet/IPv4"));
        }
        Ok(Self { buffer })
    }

    pub fn operation(&self) -> u16 {
        be::u16_at(self.buffer.as_ref(), field::OPER)
    }
    pub fn sender_mac(&self) -> MacAddr {
        be::array(self.buffer.as_ref(), field::SHA)
    }
    pub fn sender_ip(&self) -> Ipv4Addr {
        be::array::<4>(self.buffer.as_ref(), field::SPA).into()
    }
    pub fn target_mac(&self) -> MacAddr {
        be::array(self.buffer.as_ref(), field::THA)
    }
    pub fn target_ip(&self) -> Ipv4Addr {
        be::array::<4>(self.buffer.as_ref(), field::TPA).into()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    fn fill(&mut self, op: u16, sha: MacAddr, spa: Ipv4Addr, tha: MacAddr, tpa: Ipv4Addr) {
        let b = self.buffer.as_mut();
        be::set_u16(b, field::HTYPE, 1);
        be::set_u16(b, field::PTYPE, ethernet::ethertype::IPV4);
        be::set_u8(b, field::HLEN, 6);
        be::set_u8(b, field::PLEN, 4);
        be::set_u16(b, field::OPER, op);
        be::set_bytes(b, field::SHA, &sha);
        be::set_bytes(b, field::SPA, &spa.octets());
        be::set_bytes(b, field::THA, &tha);
        be::set_bytes(b, field::TPA, &tpa.octets());
    }
}

/// An ARP packet's fields, emitted as a whole Ethernet frame (smoltcp's `ArpRepr`): the requests,
/// replies and gratuitous announcements the director sends, and what tests send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    pub operation: u16,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Who has `target`? Tell `sender_ip`.
    pub fn request(sender_mac: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Self {
        Self { operation: OP_REQUEST, sender_mac, sender_ip, target_mac: [0; 6], target_ip }
    }

    /// Writes the frame, from the sender's MAC to `eth_dst`, into `out`; returns its length.
    pub fn emit(&self, out: &mut [u8], eth_dst: MacAddr) -> Result<usize> {
        let out = out.get_mut(..FRAME_LEN).ok_or(PacketError::NoRoom)?;
        ethernet::write_header(out, eth_dst, self.sender_mac, ethernet::ethertype::ARP)?;
        let mut arp = ArpPacket::new_unchecked(out.get_mut(ethernet::HEADER_LEN..).unwrap_or_default());
        arp.fill(self.operation, self.sender_mac, self.sender_ip, self.target_mac, self.target_ip);
        Ok(FRAME_LEN)
    }
}

/// Builds a broadcast who-has `target` frame into `out`; returns its length.
pub fn build_request(out: &mut [u8], our_mac: MacAddr, our_ip: Ipv4Addr, target: Ipv4Addr) -> Result<usize> {
    ArpRepr::request(our_mac, our_ip, target).emit(out, ethernet::BROADCAST)
}

/// Builds a gratuitous ARP (a request for our own address, RFC 5227 §3) announcing `ip`.
pub fn build_gratuitous(out: &mut [u8], our_mac: MacAddr, ip: Ipv4Addr) -> Result<usize> {
    build_request(out, our_mac, ip, ip)
}

/// Builds the reply to `request` (an ARP packet, without Ethernet header) saying `our_mac` has the
/// requested address; returns the frame length.
pub fn build_reply(out: &mut [u8], request: &ArpPacket<&[u8]>, our_mac: MacAddr) -> Result<usize> {
    let reply = ArpRepr {
        operation: OP_REPLY,
        sender_mac: our_mac,
        sender_ip: request.target_ip(),
        target_mac: request.sender_mac(),
        target_ip: request.sender_ip(),
    };
    reply.emit(out, request.sender_mac())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_request_and_reply() {
        let mut out = [0u8; 64];
        let mac = [0x02, 0, 0, 0, 0, 0x0a];
        let n =
            build_request(&mut out, mac, Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 9)).unwrap();
        assert_eq!(n, 42);
        #[rustfmt::skip]
        let want = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x0a, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01,
            0x02, 0, 0, 0, 0, 0x0a, 192, 0, 2, 1,
            0, 0, 0, 0, 0, 0, 192, 0, 2, 9,
        ];
        assert_eq!(&out[..n], &want);

        let req = ArpPacket::new_checked(&want[14..]).unwrap();
        assert_eq!(req.operation(), OP_REQUEST);
        let ours = [0x02, 0, 0, 0, 0, 0x0b];
        let mut reply = [0u8; 42];
        build_reply(&mut reply, &req, ours).unwrap();
        let r = ArpPacket::new_checked(&reply[14..]).unwrap();
        assert_eq!(&reply[..6], &mac);
        assert_eq!(r.operation(), OP_REPLY);
        assert_eq!((r.sender_mac(), r.sender_ip()), (ours, Ipv4Addr::new(192, 0, 2, 9)));
        assert_eq!((r.target_mac(), r.target_ip()), (mac, Ipv4Addr::new(192, 0, 2, 1)));
    }

    #[test]
    fn refuses_short_and_foreign() {
        let mut out = [0u8; 42];
        build_request(&mut out, [2; 6], Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST).unwrap();
        for n in 0..PACKET_LEN {
            assert_eq!(ArpPacket::new_checked(&out[14..14 + n]).unwrap_err(), PacketError::Truncated);
        }
        out[14 + 5] = 16; // IPv6-sized protocol address
        assert!(matches!(ArpPacket::new_checked(&out[14..]), Err(PacketError::Unsupported(_))));
        assert_eq!(
            build_request(&mut [0u8; 41], [2; 6], Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST),
            Err(PacketError::NoRoom)
        );
    }
}
