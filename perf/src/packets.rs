//! The generator's packets: one template per frame size, patched per flow with the client address and
//! port and the two checksums adjusted by RFC 1624 arithmetic, so building a packet is a copy and six
//! stores whatever its size.

use std::net::Ipv4Addr;

use rvs_wire::checksum;

/// Frames without the 4-byte FCS, as DPDK sees them: TRex's 64/594/1518-byte IMIX sizes.
pub const SMALL: usize = 60;
pub const IMIX: [usize; 12] = [60, 60, 60, 60, 60, 60, 60, 590, 590, 590, 590, 1514];

/// The flood's sources: 100.64.0.0/10, apart from every established client (10.0.0.0/8).
pub const FLOOD_FIRST_OCTET: u8 = 100;
/// Legitimate new clients during a flood: 11.0.0.0/8.
pub const NEW_FIRST_OCTET: u8 = 11;

const ETH: usize = 14;
const IP: usize = 20;
const TCP_FLAGS_SYN: u8 = 0x02;
const TCP_FLAGS_ACK: u8 = 0x10;

/// Where the client of flow `i` is: 2^14 source ports per address, addresses from 10.0.0.1 up, so
/// 10 M flows use 611 addresses.
#[inline]
pub fn client(flow: u32) -> (u32, u16) {
    let ip = u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (flow >> 14) + 1;
    (ip, 1024 + (flow & 0x3fff) as u16)
}

/// The client address and port of a received frame's flow, for classifying what came through:
/// the IP source (NAT and DR keep it) or the inner source of an IPIP packet (TUN).
#[inline]
pub fn source_of(frame: &[u8]) -> Option<[u8; 4]> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let at = if *frame.get(ETH + 9)? == 4 { ETH + IP + 12 } else { ETH + 12 };
    frame.get(at..at + 4)?.try_into().ok()
}

/// The TCP flags of a received frame (the inner segment of an IPIP packet).
#[inline]
pub fn tcp_flags_of(frame: &[u8]) -> Option<u8> {
    let at = if *frame.get(ETH + 9)? == 4 { ETH + IP + IP } else { ETH + IP };
    frame.get(at + 13).copied()
}

/// The IPv4 destination of a received frame (the outer one of an IPIP packet).
#[inline]
pub fn destination_of(frame: &[u8]) -> Option<[u8; 4]> {
    frame.get(ETH + 16..ETH + 20)?.try_into().ok()
}

/// Turns a NAT-rewritten SYN (client -> real server) into the server's SYN-ACK in place: addresses,
/// ports and MACs swapped, SYN|ACK set, both checksums recomputed. `mac` is the generator's own (the
/// server side's) MAC. `false` if the frame is not a plain TCP/IPv4 SYN.
pub fn syn_to_synack(frame: &mut [u8], mac: [u8; 6]) -> bool {
    if frame.len() < ETH + IP + 20 || frame.get(12..14) != Some(&[0x08, 0x00][..]) || frame[ETH + 9] != 6 {
        return false;
    }
    let ihl = usize::from(frame[ETH] & 0x0f) * 4;
    let tcp = ETH + ihl;
    let ip_len = usize::from(u16::from_be_bytes([frame[ETH + 2], frame[ETH + 3]]));
    if ihl != IP || frame.len() < ETH + ip_len || ip_len < IP + 20 {
        return false;
    }
    let dut_mac: [u8; 6] = frame[6..12].try_into().unwrap_or_default();
    frame[0..6].copy_from_slice(&dut_mac);
    frame[6..12].copy_from_slice(&mac);
    for i in 0..4 {
        frame.swap(ETH + 12 + i, ETH + 16 + i);
    }
    frame.swap(tcp, tcp + 2);
    frame.swap(tcp + 1, tcp + 3);
    let seq = u32::from_be_bytes(frame[tcp + 4..tcp + 8].try_into().unwrap_or_default());
    frame[tcp + 8..tcp + 12].copy_from_slice(&seq.wrapping_add(1).to_be_bytes());
    frame[tcp + 4..tcp + 8].copy_from_slice(&0x3000_0000u32.to_be_bytes());
    frame[tcp + 13] = TCP_FLAGS_SYN | TCP_FLAGS_ACK;
    frame[ETH + 10..ETH + 12].copy_from_slice(&[0, 0]);
    let ip_sum = checksum::finish(checksum::sum(0, &frame[ETH..ETH + IP]));
    frame[ETH + 10..ETH + 12].copy_from_slice(&ip_sum.to_be_bytes());
    let src: [u8; 4] = frame[ETH + 12..ETH + 16].try_into().unwrap_or_default();
    let dst: [u8; 4] = frame[ETH + 16..ETH + 20].try_into().unwrap_or_default();
    frame[tcp + 16..tcp + 18].copy_from_slice(&[0, 0]);
    let seg_len = (ip_len - IP) as u16;
    let pseudo = checksum::pseudo_header_v4(src.into(), dst.into(), 6, seg_len);
    let sum = checksum::finish(checksum::sum(pseudo, &frame[tcp..ETH + ip_len]));
    frame[tcp + 16..tcp + 18].copy_from_slice(&sum.to_be_bytes());
    true
}

/// A TCP/IPv4 frame of one size with the client address and port zero; `ip_sum` and `tcp_sum` are
/// the one's-complement sums of everything else the two checksums cover.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
    ip_sum: u32,
    tcp_sum: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct Addressing {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub vip: Ipv4Addr,
    pub vport: u16,
}

impl Template {
    pub fn new(a: &Addressing, frame_len: usize, syn: bool) -> Self {
        let frame_len = frame_len.max(ETH + IP + 20);
        let mut b = vec![0u8; frame_len];
        b[0..6].copy_from_slice(&a.dst_mac);
        b[6..12].copy_from_slice(&a.src_mac);
        b[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip_len = (frame_len - ETH) as u16;
        let ip = &mut b[ETH..ETH + IP];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip[6] = 0x40; // DF, as TCP stacks send
        ip[8] = 64;
        ip[9] = 6;
        ip[16..20].copy_from_slice(&a.vip.octets());
        let ip_sum = checksum::sum(0, &b[ETH..ETH + IP]);
        let tcp = &mut b[ETH + IP..];
        tcp[2..4].copy_from_slice(&a.vport.to_be_bytes());
        tcp[4..8].copy_from_slice(&0x1000_0000u32.to_be_bytes());
        if !syn {
            tcp[8..12].copy_from_slice(&0x2000_0000u32.to_be_bytes());
        }
        tcp[12] = 5 << 4;
        tcp[13] = if syn { TCP_FLAGS_SYN } else { TCP_FLAGS_ACK };
        tcp[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
        let tcp_len = ip_len - IP as u16;
        let pseudo = checksum::pseudo_header_v4(Ipv4Addr::UNSPECIFIED, a.vip, 6, tcp_len);
        let tcp_sum = checksum::sum(pseudo, &b[ETH + IP..]);
        Self { bytes: b, ip_sum, tcp_sum }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Writes the frame for client `ip:port` into `out` (exactly `len()` bytes).
    #[inline]
    pub fn write(&self, out: &mut [u8], ip: u32, port: u16) {
        out.copy_from_slice(&self.bytes);
        let addr = (ip >> 16) + (ip & 0xffff);
        out[ETH + 12..ETH + 16].copy_from_slice(&ip.to_be_bytes());
        out[ETH + 10..ETH + 12].copy_from_slice(&checksum::finish(self.ip_sum + addr).to_be_bytes());
        let tcp = ETH + IP;
        out[tcp..tcp + 2].copy_from_slice(&port.to_be_bytes());
        let sum = self.tcp_sum + addr + u32::from(port);
        out[tcp + 16..tcp + 18].copy_from_slice(&checksum::finish(sum).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addressing() -> Addressing {
        Addressing {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            vip: Ipv4Addr::new(198, 18, 1, 100),
            vport: 80,
        }
    }

    #[test]
    fn patched_checksums_equal_full_recomputation() {
        for (len, syn) in [(60, true), (60, false), (590, false), (1514, false)] {
            let t = Template::new(&addressing(), len, syn);
            for flow in [0u32, 1, 16383, 16384, 9_999_999] {
                let (ip, port) = client(flow);
                let mut out = vec![0u8; t.len()];
                t.write(&mut out, ip, port);
                assert!(checksum::verify(&out[ETH..ETH + IP]), "ip checksum, len {len} flow {flow}");
                let pseudo = checksum::pseudo_header_v4(
                    Ipv4Addr::from(ip),
                    addressing().vip,
                    6,
                    (len - ETH - IP) as u16,
                );
                assert_eq!(checksum::fold(checksum::sum(pseudo, &out[ETH + IP..])), 0xffff, "tcp, len {len}");
                assert_eq!(source_of(&out), Some(Ipv4Addr::from(ip).octets()));
            }
        }
    }

    #[test]
    fn a_syn_becomes_the_servers_synack() {
        let t = Template::new(&addressing(), 60, true);
        let mut f = vec![0u8; t.len()];
        t.write(&mut f, u32::from(Ipv4Addr::new(11, 0, 0, 5)), 4000);
        // As the director's NAT would: to the server 198.19.0.10:8080 (checksums redone by the test).
        f[ETH + 16..ETH + 20].copy_from_slice(&[198, 19, 0, 10]);
        f[ETH + IP + 2..ETH + IP + 4].copy_from_slice(&8080u16.to_be_bytes());
        assert!(syn_to_synack(&mut f, [2, 0, 0, 0, 0x0a, 1]));
        assert!(checksum::verify(&f[ETH..ETH + IP]));
        let pseudo = checksum::pseudo_header_v4([198, 19, 0, 10].into(), [11, 0, 0, 5].into(), 6, 26);
        assert_eq!(checksum::fold(checksum::sum(pseudo, &f[ETH + IP..])), 0xffff);
        assert_eq!(tcp_flags_of(&f), Some(0x12));
        assert_eq!(source_of(&f), Some([198, 19, 0, 10]));
        assert_eq!(destination_of(&f), Some([11, 0, 0, 5]));
        assert_eq!(&f[ETH + IP..ETH + IP + 4], &[0x1f, 0x90, 0x0f, 0xa0]);
    }

    #[test]
    fn ten_million_flows_are_distinct_clients() {
        let (ip0, p0) = client(0);
        let (ip1, p1) = client(9_999_999);
        assert_eq!(Ipv4Addr::from(ip0), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p0, 1024);
        assert!(Ipv4Addr::from(ip1) < Ipv4Addr::new(10, 0, 3, 0));
        assert!((1024..1024 + 16384).contains(&p1));
    }
}
