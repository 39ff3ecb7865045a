//! The NIC's receive-side scaling, computed in software: which queue a packet will arrive on.
//!
//! Intel (ixgbe, i40e, ice) and Mellanox (mlx5) NICs hash received packets with the Toeplitz function
//! over the addresses (and, for TCP/UDP, the ports) under a 40-byte key, and pick the queue from a
//! redirection table (RETA) indexed by the hash's low bits. rvs sets the key and the table itself, so
//! it can tell at scheduling time which worker a NAT connection's replies will reach, and place the
//! reply entry there once ([`rvs_ipvs::Ipvs::insert_mirror`]) instead of handing every reply across.
//!
//! The algorithm and its verification vectors are Microsoft's "RSS hashing functions" and
//! "Verifying the RSS hash calculation" pages (the reference every NIC vendor follows).

use std::net::Ipv4Addr;

/// The key most drivers and DPDK's examples use by default (Microsoft's verification key).
pub const DEFAULT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0,
    0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42,
    0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// The Toeplitz hash of `input` under `key`: for every set bit of the input, counting from the most
/// significant bit of its first byte, the 32 key bits starting at that bit position are XORed in.
/// The key must be at least 4 bytes longer than the input (40 bytes cover IPv6 with ports).
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let mut window = key.iter().take(4).fold(0u32, |w, &b| (w << 8) | u32::from(b));
    let mut hash = 0;
    for (i, &byte) in input.iter().enumerate() {
        let next = key.get(i + 4).copied().unwrap_or(0);
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            window = (window << 1) | u32::from((next >> (7 - bit)) & 1);
        }
    }
    hash
}

/// One port's RSS as configured: key, which packet kinds hash their ports, and the RETA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssPredictor {
    key: Vec<u8>,
    /// TCP (resp. UDP) packets hash addresses and ports; otherwise addresses only.
    tcp_ports: bool,
    udp_ports: bool,
    /// Queue per RETA entry; the length is a power of two.
    reta: Vec<u16>,
}

impl RssPredictor {
    /// `reta` must be non-empty with a power-of-two length (NICs have 64-512 entries).
    pub fn new(key: Vec<u8>, tcp_ports: bool, udp_ports: bool, reta: Vec<u16>) -> Option<Self> {
        if key.len() < 16 || reta.is_empty() || !reta.len().is_power_of_two() {
            return None;
        }
        Some(Self { key, tcp_ports, udp_ports, reta })
    }

    /// The queue an IPv4 packet with these fields arrives on.
    pub fn queue_v4(&self, proto: u8, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> u16 {
        let (s, d, sp, dp) = (src.octets(), dst.octets(), sport.to_be_bytes(), dport.to_be_bytes());
        let input = [s[0], s[1], s[2], s[3], d[0], d[1], d[2], d[3], sp[0], sp[1], dp[0], dp[1]];
        let with_ports = match proto {
            6 => self.tcp_ports,
            17 => self.udp_ports,
            _ => false,
        };
        let hash = toeplitz(&self.key, input.get(..if with_ports { 12 } else { 8 }).unwrap_or(&input));
        self.reta.get(hash as usize & (self.reta.len() - 1)).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microsoft's IPv4 verification table: (destination, source, hash with ports, hash without).
    /// The hash input is source address, destination address, source port, destination port.
    type Endpoint = (Ipv4Addr, u16);
    const VECTORS: [(Endpoint, Endpoint, u32, u32); 5] = [
        (
            (Ipv4Addr::new(161, 142, 100, 80), 1766),
            (Ipv4Addr::new(66, 9, 149, 187), 2794),
            0x51cc_c178,
            0x323e_8fc2,
        ),
        (
            (Ipv4Addr::new(65, 69, 140, 83), 4739),
            (Ipv4Addr::new(199, 92, 111, 2), 14230),
            0xc626_b0ea,
            0xd718_262a,
        ),
        (
            (Ipv4Addr::new(12, 22, 207, 184), 38024),
            (Ipv4Addr::new(24, 19, 198, 95), 12898),
            0x5c2b_394a,
            0xd2d0_a5de,
        ),
        (
            (Ipv4Addr::new(209, 142, 163, 6), 2217),
            (Ipv4Addr::new(38, 27, 205, 30), 48228),
            0xafc7_327f,
            0x8298_9176,
        ),
        (
            (Ipv4Addr::new(202, 188, 127, 2), 1303),
            (Ipv4Addr::new(153, 39, 163, 191), 44251),
            0x10e8_28a2,
            0x5d18_09c5,
        ),
    ];

    #[test]
    fn microsoft_verification_vectors() {
        for ((dst, dport), (src, sport), with_ports, without) in VECTORS {
            let mut input = Vec::new();
            input.extend(src.octets());
            input.extend(dst.octets());
            assert_eq!(toeplitz(&DEFAULT_KEY, &input), without, "{src} -> {dst}");
            input.extend(sport.to_be_bytes());
            input.extend(dport.to_be_bytes());
            assert_eq!(toeplitz(&DEFAULT_KEY, &input), with_ports, "{src}:{sport} -> {dst}:{dport}");
        }
    }

    #[test]
    fn the_reta_picks_the_queue_from_the_low_bits() {
        let reta: Vec<u16> = (0..128).map(|i| (i % 4) as u16).collect();
        let p = RssPredictor::new(DEFAULT_KEY.to_vec(), true, false, reta).unwrap();
        let ((dst, dport), (src, sport), with_ports, without) = VECTORS[0];
        assert_eq!(p.queue_v4(6, src, dst, sport, dport), (with_ports % 128 % 4) as u16);
        assert_eq!(p.queue_v4(17, src, dst, sport, dport), (without % 128 % 4) as u16, "UDP: addresses only");
        assert!(RssPredictor::new(DEFAULT_KEY.to_vec(), true, true, vec![0; 100]).is_none());
    }
}
