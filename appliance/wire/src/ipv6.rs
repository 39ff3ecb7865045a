//! IPv6 fixed headers (RFC 8200) and a bounded walk over extension headers.

use std::net::Ipv6Addr;

use crate::be;
use crate::ip_proto;
use crate::{PacketError, Result};

pub const HEADER_LEN: usize = 40;
pub const SRC_OFFSET: usize = 8;
pub const DST_OFFSET: usize = 24;

/// Extension headers walked before giving up: a cap, so that a chain of tiny headers cannot make the
/// director loop.
const MAX_EXTENSION_HEADERS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Packet<T> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Checks version 6 and that the payload length fits the buffer. Jumbograms (payload length 0
    /// with a hop-by-hop jumbo option) are refused: no Ethernet link carries them.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self { buffer };
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(PacketError::Truncated);
        }
        if p.version() != 6 {
            return Err(PacketError::Malformed("IPv6 version"));
        }
        if len < HEADER_LEN + usize::from(p.payload_len()) {
            return Err(PacketError::Truncated);
        }
        Ok(p)
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    pub fn version(&self) -> u8 {
        be::u8_at(self.b(), 0) >> 4
    }
    pub fn traffic_class(&self) -> u8 {
        ((be::u16_at(self.b(), 0) >> 4) & 0xff) as u8
    }
    pub fn flow_label(&self) -> u32 {
        be::u32_at(self.b(), 0) & 0x000f_ffff
    }
    pub fn payload_len(&self) -> u16 {
        be::u16_at(self.b(), 4)
    }
    pub fn next_header(&self) -> u8 {
        be::u8_at(self.b(), 6)
    }
    pub fn hop_limit(&self) -> u8 {
        be::u8_at(self.b(), 7)
    }
    pub fn src(&self) -> Ipv6Addr {
        be::array::<16>(self.b(), SRC_OFFSET).into()
    }
    pub fn dst(&self) -> Ipv6Addr {
        be::array::<16>(self.b(), DST_OFFSET).into()
    }
    /// Everything after the fixed header, per the payload-length field.
    pub fn payload(&self) -> &[u8] {
        self.b().get(HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())).unwrap_or_default()
    }

    /// Walks the extension headers to the upper-layer header.
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        let payload = self.payload();
        let mut next = self.next_header();
        let mut off = 0usize;
        let mut fragment = None;
        for _ in 0..MAX_EXTENSION_HEADERS {
            let len = match next {
                ip_proto::HOPOPT | ip_proto::IPV6_ROUTE | ip_proto::IPV6_OPTS => {
                    let h = payload.get(off..off + 2).ok_or(PacketError::Truncated)?;
                    (usize::from(be::u8_at(h, 1)) + 1) * 8
                }
                ip_proto::IPV6_FRAG => {
                    let h = payload.get(off..off + 8).ok_or(PacketError::Truncated)?;
                    let word = be::u16_at(h, 2);
                    fragment = Some(Fragment {
                        offset: word & 0xfff8,
                        more: word & 1 != 0,
                        ident: be::u32_at(h, 4),
                    });
                    8
                }
                ip_proto::AH => {
                    let h = payload.get(off..off + 2).ok_or(PacketError::Truncated)?;
                    (usize::from(be::u8_at(h, 1)) + 2) * 4
                }
                proto => {
                    return Ok(UpperLayer { protocol: proto, offset: HEADER_LEN + off, fragment });
                }
            };
            if payload.len() < off + len {
                return Err(PacketError::Truncated);
            }
            next = be::u8_at(payload, off);
            off += len;
        }
        Err(PacketError::Unsupported("too many IPv6 extension headers"))
    }
}

/// Where the upper layer starts, and the fragment header if one was crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// Its protocol (`IPV6_NONXT` when there is none, `ESP` when it is encrypted).
    pub protocol: u8,
    /// Offset from the start of the IPv6 header.
    pub offset: usize,
    pub fragment: Option<Fragment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// In bytes.
    pub offset: u16,
    pub more: bool,
    pub ident: u32,
}

impl UpperLayer {
    pub fn is_fragment(&self) -> bool {
        self.fragment.is_some_and(|f| f.offset != 0 || f.more)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    pub fn set_version_tc_flow(&mut self, traffic_class: u8, flow: u32) {
        be::set_u32(self.buffer.as_mut(), 0, (6 << 28) | (u32::from(traffic_class) << 20) | (flow & 0xfffff));
    }
    pub fn set_payload_len(&mut self, len: u16) {
        be::set_u16(self.buffer.as_mut(), 4, len);
    }
    pub fn set_next_header(&mut self, nh: u8) {
        be::set_u8(self.buffer.as_mut(), 6, nh);
    }
    pub fn set_hop_limit(&mut self, h: u8) {
        be::set_u8(self.buffer.as_mut(), 7, h);
    }
    pub fn set_src(&mut self, a: &Ipv6Addr) {
        be::set_bytes(self.buffer.as_mut(), SRC_OFFSET, &a.octets());
    }
    pub fn set_dst(&mut self, a: &Ipv6Addr) {
        be::set_bytes(self.buffer.as_mut(), DST_OFFSET, &a.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(next: u8, ext: &[u8], upper: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0x00, 0x00, 0x00, 0, 0, next, 64];
        p.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(ext);
        p.extend_from_slice(upper);
        let pl = (ext.len() + upper.len()) as u16;
        p[4..6].copy_from_slice(&pl.to_be_bytes());
        p
    }

    #[test]
    fn golden_fixed_header() {
        let mut b = packet(ip_proto::UDP, &[], &[1, 2, 3, 4, 5, 6, 7, 8]);
        b[0] = 0x6b;
        b[1] = 0x81;
        b[2] = 0x23;
        b[3] = 0x45;
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.version(), p.traffic_class(), p.flow_label()), (6, 0xb8, 0x12345));
        assert_eq!((p.payload_len(), p.next_header(), p.hop_limit()), (8, 17, 64));
        assert_eq!(p.src(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.upper_layer().unwrap(), UpperLayer { protocol: 17, offset: 40, fragment: None });
    }

    #[test]
    fn walks_hop_by_hop_destination_and_fragment_headers() {
        // HBH (8 bytes, next = DSTOPTS), DSTOPTS (16 bytes, next = FRAG), FRAG (next = TCP, offset 0, M=1).
        let mut ext = vec![ip_proto::IPV6_OPTS, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&[ip_proto::IPV6_FRAG, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        ext.extend_from_slice(&[ip_proto::TCP, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef]);
        let b = packet(ip_proto::HOPOPT, &ext, &[0; 20]);
        let ul = Ipv6Packet::new_checked(&b[..]).unwrap().upper_layer().unwrap();
        assert_eq!(ul.protocol, ip_proto::TCP);
        assert_eq!(ul.offset, 40 + 32);
        assert_eq!(ul.fragment, Some(Fragment { offset: 0, more: true, ident: 0xdeadbeef }));
        assert!(ul.is_fragment());
        for n in 0..b.len() - 20 {
            let mut cut = b[..n].to_vec();
            if n >= 6 {
                let pl = (n.saturating_sub(40)) as u16;
                cut[4..6].copy_from_slice(&pl.to_be_bytes());
            }
            let r = Ipv6Packet::new_checked(&cut[..]).and_then(|p| p.upper_layer());
            assert!(r.is_err(), "cut at {n}: {r:?}");
        }
    }

    #[test]
    fn endless_chains_are_refused() {
        let mut ext = Vec::new();
        for _ in 0..MAX_EXTENSION_HEADERS {
            ext.extend_from_slice(&[ip_proto::IPV6_OPTS, 0, 0, 0, 0, 0, 0, 0]);
        }
        let b = packet(ip_proto::IPV6_OPTS, &ext, &[]);
        assert!(matches!(
            Ipv6Packet::new_checked(&b[..]).unwrap().upper_layer(),
            Err(PacketError::Unsupported(_))
        ));
    }

    #[test]
    fn wrong_version_and_short_payload() {
        let mut b = packet(ip_proto::UDP, &[], &[0; 8]);
        b[0] = 0x40;
        assert_eq!(Ipv6Packet::new_checked(&b[..]).unwrap_err(), PacketError::Malformed("IPv6 version"));
        let b = packet(ip_proto::UDP, &[], &[0; 8]);
        assert_eq!(Ipv6Packet::new_checked(&b[..b.len() - 1]).unwrap_err(), PacketError::Truncated);
    }
}
