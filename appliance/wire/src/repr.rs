//! Frames described by their fields and emitted with every length and checksum right, as smoltcp's
//! `Repr` types do: what tests, benchmarks and generators build, instead of each writing bytes at
//! offsets of its own. Building is not on the packet path (it allocates).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::ethernet::{self, MacAddr, ethertype};
use crate::icmpv4::Icmpv4Packet;
use crate::icmpv6::Icmpv6Packet;
use crate::ip_proto;
use crate::ipv4::{self, Ipv4Packet};
use crate::ipv6::{self, Ipv6Packet};
use crate::tcp::TcpSegment;
use crate::udp::UdpDatagram;

/// An IPv4 header's fields that a frame's builder chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub tos: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// In bytes (a multiple of 8).
    pub frag_offset: usize,
}

impl Ipv4Repr {
    /// A plain, unfragmented packet with DF set and TTL 64.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Self { src, dst, ttl: 64, tos: 0, ident: 1, dont_frag: true, more_frags: false, frag_offset: 0 }
    }
}

/// A TCP header's fields: ports, sequence numbers, flags and an optional MSS option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub mss: Option<u16>,
}

impl TcpRepr {
    pub fn new(src_port: u16, dst_port: u16, flags: u8) -> Self {
        Self { src_port, dst_port, seq: 1000, ack: 0, flags, window: 64240, mss: None }
    }
}

/// What follows the IPv4 header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L4Repr {
    Tcp(TcpRepr),
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    /// An ICMP message: its header, then `payload` (an echo's data, or the datagram an error quotes).
    Icmp {
        msg_type: u8,
        code: u8,
        /// The header's last four bytes (echo identifier and sequence, next-hop MTU, unused).
        rest: u32,
    },
    /// Bytes of another protocol (or a later fragment's share), as they are.
    Raw {
        protocol: u8,
    },
}

/// An Ethernet frame with an IPv4 header (`FrameRepr`, the default) or an IPv6 one
/// ([`Frame6Repr`]; no extension headers, and `L4Repr::Icmp` is ICMPv6 there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRepr<I = Ipv4Repr> {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub ip: I,
    pub l4: L4Repr,
    pub payload: Vec<u8>,
}

/// An Ethernet + IPv6 frame.
pub type Frame6Repr = FrameRepr<Ipv6Repr>;

impl<I> FrameRepr<I> {
    pub fn tcp(src_mac: MacAddr, dst_mac: MacAddr, ip: I, tcp: TcpRepr) -> Self {
        Self { src_mac, dst_mac, ip, l4: L4Repr::Tcp(tcp), payload: Vec::new() }
    }

    pub fn udp(src_mac: MacAddr, dst_mac: MacAddr, ip: I, ports: (u16, u16), payload: &[u8]) -> Self {
        Self {
            src_mac,
            dst_mac,
            ip,
            l4: L4Repr::Udp { src_port: ports.0, dst_port: ports.1 },
            payload: payload.to_vec(),
        }
    }

    /// An ICMP (ICMPv6) message: `rest` is the header's last four bytes (echo identifier and
    /// sequence, next-hop MTU, ND flags), `payload` what follows (an echo's data, the datagram an
    /// error quotes, a neighbour solicitation's target and options).
    pub fn icmp(
        src_mac: MacAddr,
        dst_mac: MacAddr,
        ip: I,
        (msg_type, code, rest): (u8, u8, u32),
        payload: &[u8],
    ) -> Self {
        Self { src_mac, dst_mac, ip, l4: L4Repr::Icmp { msg_type, code, rest }, payload: payload.to_vec() }
    }
}

impl FrameRepr<Ipv4Repr> {
    /// The frame's bytes: Ethernet, IPv4 (checksummed), the L4 header (its checksum over the
    /// pseudo-header and `payload`), then `payload`.
    pub fn emit(&self) -> Vec<u8> {
        let ip_payload = l4_header_len(&self.l4) + self.payload.len();
        let mut f = vec![0u8; ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN + ip_payload];
        let _ = ethernet::write_header(&mut f, self.dst_mac, self.src_mac, ethertype::IPV4);
        let protocol = match &self.l4 {
            L4Repr::Tcp(_) => ip_proto::TCP,
            L4Repr::Udp { .. } => ip_proto::UDP,
            L4Repr::Icmp { .. } => ip_proto::ICMP,
            L4Repr::Raw { protocol } => *protocol,
        };
        let ip = &self.ip;
        let (l3, l4) = f.split_at_mut(ethernet::HEADER_LEN + ipv4::MIN_HEADER_LEN);
        if let Some(h) = l3.get_mut(ethernet::HEADER_LEN..) {
            let _ = ipv4::write_header(
                h,
                ip.src,
                ip.dst,
                protocol,
                ip_payload,
                ip.ttl,
                ip.tos,
                ip.ident,
                ip.dont_frag,
            );
            // Flags and fragment offset (write_header leaves an unfragmented packet).
            let field = (u16::from(ip.dont_frag) << 14)
                | (u16::from(ip.more_frags) << 13)
                | u16::try_from(ip.frag_offset / 8).unwrap_or(0);
            if let Some(b) = h.get_mut(6..8) {
                b.copy_from_slice(&field.to_be_bytes());
            }
            Ipv4Packet::new_unchecked(h).fill_checksum();
        }
        write_l4(l4, &self.l4, &self.payload, Pseudo::V4(ip.src, ip.dst));
        f
    }
}

/// An IPv6 header's fields that a frame's builder chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
    pub traffic_class: u8,
}

impl Ipv6Repr {
    /// Hop limit 64, traffic class 0.
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        Self { src, dst, hop_limit: 64, traffic_class: 0 }
    }
}

impl FrameRepr<Ipv6Repr> {
    /// The frame's bytes: Ethernet, IPv6, the L4 header (its checksum over the pseudo-header and
    /// `payload`), then `payload`.
    pub fn emit(&self) -> Vec<u8> {
        let ip_payload = l4_header_len(&self.l4) + self.payload.len();
        let mut f = vec![0u8; ethernet::HEADER_LEN + ipv6::HEADER_LEN + ip_payload];
        let _ = ethernet::write_header(&mut f, self.dst_mac, self.src_mac, ethertype::IPV6);
        let next_header = match &self.l4 {
            L4Repr::Tcp(_) => ip_proto::TCP,
            L4Repr::Udp { .. } => ip_proto::UDP,
            L4Repr::Icmp { .. } => ip_proto::ICMPV6,
            L4Repr::Raw { protocol } => *protocol,
        };
        let (l3, l4) = f.split_at_mut(ethernet::HEADER_LEN + ipv6::HEADER_LEN);
        if let Some(h) = l3.get_mut(ethernet::HEADER_LEN..) {
            let mut ip = Ipv6Packet::new_unchecked(h);
            ip.set_version_tc_flow(self.ip.traffic_class, 0);
            ip.set_payload_len(u16::try_from(ip_payload).unwrap_or(u16::MAX));
            ip.set_next_header(next_header);
            ip.set_hop_limit(self.ip.hop_limit);
            ip.set_src(&self.ip.src);
            ip.set_dst(&self.ip.dst);
        }
        write_l4(l4, &self.l4, &self.payload, Pseudo::V6(self.ip.src, self.ip.dst));
        f
    }
}

/// Whose pseudo-header the L4 checksum covers.
#[derive(Debug, Clone, Copy)]
enum Pseudo {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

fn l4_header_len(l4: &L4Repr) -> usize {
    match l4 {
        L4Repr::Tcp(t) => 20 + if t.mss.is_some() { 4 } else { 0 },
        L4Repr::Udp { .. } | L4Repr::Icmp { .. } => 8,
        L4Repr::Raw { .. } => 0,
    }
}

/// The L4 header and `payload` into `l4` (sized for both), checksummed.
fn write_l4(l4: &mut [u8], repr: &L4Repr, payload: &[u8], pseudo: Pseudo) {
    let header = l4_header_len(repr);
    let total = header + payload.len();
    if let Some(p) = l4.get_mut(header..) {
        p.copy_from_slice(payload);
    }
    match repr {
        L4Repr::Tcp(t) => {
            put(l4, 0, &t.src_port.to_be_bytes());
            put(l4, 2, &t.dst_port.to_be_bytes());
            put(l4, 4, &t.seq.to_be_bytes());
            put(l4, 8, &t.ack.to_be_bytes());
            put(l4, 12, &[u8::try_from(header / 4).unwrap_or(5) << 4, t.flags]);
            put(l4, 14, &t.window.to_be_bytes());
            if let Some(mss) = t.mss {
                put(l4, 20, &[2, 4]);
                put(l4, 22, &mss.to_be_bytes());
            }
            let mut seg = TcpSegment::new_unchecked(&mut l4[..]);
            match pseudo {
                Pseudo::V4(s, d) => seg.fill_checksum_v4(s, d),
                Pseudo::V6(s, d) => seg.fill_checksum_v6(&s, &d),
            }
        }
        L4Repr::Udp { src_port, dst_port } => {
            put(l4, 0, &src_port.to_be_bytes());
            put(l4, 2, &dst_port.to_be_bytes());
            put(l4, 4, &u16::try_from(total).unwrap_or(u16::MAX).to_be_bytes());
            let mut d = UdpDatagram::new_unchecked(&mut l4[..]);
            match pseudo {
                Pseudo::V4(s, dst) => d.fill_checksum_v4(s, dst),
                Pseudo::V6(s, dst) => d.fill_checksum_v6(&s, &dst),
            }
        }
        L4Repr::Icmp { msg_type, code, rest } => match pseudo {
            Pseudo::V4(..) => {
                let mut m = Icmpv4Packet::new_unchecked(&mut l4[..]);
                m.set_type_code(*msg_type, *code);
                m.set_rest_of_header(*rest);
                m.fill_checksum();
            }
            Pseudo::V6(s, d) => {
                let mut m = Icmpv6Packet::new_unchecked(&mut l4[..]);
                m.set_type_code(*msg_type, *code);
                m.set_rest_of_header(*rest);
                m.fill_checksum(&s, &d);
            }
        },
        L4Repr::Raw { .. } => {}
    }
}

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    if let Some(d) = b.get_mut(at..at + v.len()) {
        d.copy_from_slice(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::flags;

    /// What a Repr emits parses back with the checked views, checksums included.
    #[test]
    fn emitted_frames_read_back_with_their_checksums() {
        let (a, b) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let ip = Ipv4Repr::new([198, 51, 100, 7].into(), [192, 0, 2, 80].into());
        let f = FrameRepr::tcp(a, b, ip, TcpRepr { mss: Some(1460), ..TcpRepr::new(40000, 80, flags::SYN) })
            .emit();
        let p = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(p.verify_checksum() && p.dont_frag() && !p.is_fragment());
        let t = TcpSegment::new_checked(p.payload()).unwrap();
        assert_eq!(
            (t.src_port(), t.dst_port(), t.flags(), t.mss().map(|m| m.0)),
            (40000, 80, flags::SYN, Some(1460))
        );
        assert!(t.verify_checksum_v4(ip.src, ip.dst));
        let u = FrameRepr::udp(a, b, ip, (5353, 53), b"query").emit();
        let p = Ipv4Packet::new_checked(&u[14..]).unwrap();
        let d = UdpDatagram::new_checked(p.payload()).unwrap();
        assert!(d.verify_checksum_v4(ip.src, ip.dst));
        let frag = FrameRepr {
            ip: Ipv4Repr { more_frags: true, frag_offset: 24, dont_frag: false, ..ip },
            l4: L4Repr::Raw { protocol: ip_proto::UDP },
            payload: vec![7; 16],
            src_mac: a,
            dst_mac: b,
        }
        .emit();
        let p = Ipv4Packet::new_checked(&frag[14..]).unwrap();
        assert!(p.verify_checksum() && p.more_frags() && p.frag_offset() == 24 && p.payload() == [7; 16]);
    }
}
