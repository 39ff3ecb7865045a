//! The Internet checksum: RFC 1071 for full computation, RFC 1624 for incremental updates.
//!
//! Sums are kept as `u32` accumulators of 16-bit big-endian words and folded at the end (RFC 1071
//! §4.1's "add with end-around carry" done lazily). Bytes are combined pairwise, never by casting
//! `&[u8]` to `&[u16]`, which would be unaligned and endian-dependent.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Adds `data` to a running one's-complement sum. An odd trailing byte is padded with zero
/// (RFC 1071 §4.1). Pieces of a message may be summed separately only at even offsets.
#[inline]
pub fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        if let [a, b] = c {
            acc = acc.wrapping_add(u32::from(u16::from_be_bytes([*a, *b])));
        }
        // Fold early enough that the accumulator can never overflow, whatever the length.
        if acc >= 0xffff_0000 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([*last, 0])));
    }
    acc
}

/// Folds a sum to 16 bits with end-around carry.
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // The loop leaves at most 16 bits.
    u16::try_from(acc).unwrap_or(u16::MAX)
}

/// The checksum field value for a message whose sum (with the checksum field zeroed) is `acc`.
#[inline]
pub fn finish(acc: u32) -> u16 {
    !fold(acc)
}

/// RFC 1071 checksum of `data`.
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(0, data))
}

/// True when `data`, checksum field included, sums to all ones (RFC 1071 §1, "verify").
pub fn verify(data: &[u8]) -> bool {
    fold(sum(0, data)) == 0xffff
}

/// The IPv4 pseudo-header of TCP and UDP (RFC 793 §3.1, RFC 768).
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    let mut acc = sum(0, &src.octets());
    acc = sum(acc, &dst.octets());
    acc + u32::from(proto) + u32::from(len)
}

/// The IPv6 pseudo-header of upper-layer checksums (RFC 8200 §8.1).
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, len: u32) -> u32 {
    let mut acc = sum(0, &src.octets());
    acc = sum(acc, &dst.octets());
    acc = acc.wrapping_add(len >> 16).wrapping_add(len & 0xffff);
    acc + u32::from(next_header)
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word of the covered data changed from `old` to
/// `new`: HC' = ~(~HC + ~m + m').
#[inline]
pub fn update16(hc: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!hc) + u32::from(!old) + u32::from(new);
    !fold(acc)
}

/// RFC 1624 for a run of words (an address, a port pair) that changed from `old` to `new`. Both must
/// have the same even length and sit at an even offset of the covered data.
#[inline]
pub fn update(hc: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut acc = u32::from(!hc);
    for (o, n) in old.chunks_exact(2).zip(new.chunks_exact(2)) {
        if let ([o0, o1], [n0, n1]) = (o, n) {
            acc += u32::from(!u16::from_be_bytes([*o0, *o1])) + u32::from(u16::from_be_bytes([*n0, *n1]));
        }
    }
    !fold(acc)
}

/// [`update`] for a changed IPv4 address and port at once (RFC 1624 eqn. 3 over their 16-bit
/// words), without going through byte slices: the NAT fast path's checksum.
#[inline]
pub fn update_addr_port(hc: u16, (old_a, old_p): (u32, u16), (new_a, new_p): (u32, u16)) -> u16 {
    let word = |v: u32| v & 0xffff;
    let acc = u32::from(!hc)
        + word(!(old_a >> 16))
        + word(!old_a)
        + (new_a >> 16)
        + word(new_a)
        + u32::from(!old_p)
        + u32::from(new_p);
    !fold(acc)
}

/// [`update`] for a changed IPv4 address alone.
#[inline]
pub fn update_addr(hc: u16, old_a: u32, new_a: u32) -> u16 {
    let word = |v: u32| v & 0xffff;
    !fold(u32::from(!hc) + word(!(old_a >> 16)) + word(!old_a) + (new_a >> 16) + word(new_a))
}

/// A UDP checksum field after an incremental update: 0 means "no checksum" over IPv4 (RFC 768), so
/// a disabled checksum stays disabled, and a computed 0 is sent as 0xffff.
#[inline]
pub fn update_udp(hc: u16, old: &[u8], new: &[u8]) -> u16 {
    if hc == 0 {
        return 0;
    }
    match update(hc, old, new) {
        0 => 0xffff,
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (with end-around carry).
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn a_known_ipv4_header() {
        // The header of Wikipedia's worked IPv4 checksum example; its checksum field holds 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01,
            0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert!(verify(&h));
        h[10] = 0;
        h[11] = 0;
        assert_eq!(checksum(&h), 0xb861);
    }

    #[test]
    fn odd_lengths_pad_with_zero() {
        assert_eq!(sum(0, &[0xab]), 0xab00);
        assert_eq!(fold(sum(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    #[test]
    fn long_inputs_do_not_overflow() {
        let data = vec![0xff; 1 << 20];
        assert_eq!(fold(sum(0, &data)), 0xffff);
    }

    #[test]
    fn udp_zero_checksum_stays_disabled() {
        assert_eq!(update_udp(0, &[1, 2], &[3, 4]), 0);
    }

    proptest! {
        /// RFC 1624: updating incrementally equals recomputing from scratch, for any data and any
        /// change of any aligned words.
        #[test]
        fn incremental_equals_full(mut data in proptest::collection::vec(any::<u8>(), 2..200),
                                   at in any::<prop::sample::Index>(),
                                   new in proptest::collection::vec(any::<u8>(), 2..18)) {
            let len = data.len() & !1;
            data.truncate(len.max(2));
            let words = new.len() / 2 * 2;
            let start = (at.index(data.len() / 2) * 2).min(data.len() - 2);
            let end = (start + words).min(data.len());
            let new = &new[..end - start];
            let before = checksum(&data);
            let old = data[start..end].to_vec();
            data[start..end].copy_from_slice(new);
            prop_assert_eq!(update(before, &old, new), checksum(&data));
        }

        #[test]
        fn verify_accepts_a_filled_checksum(mut data in proptest::collection::vec(any::<u8>(), 4..100)) {
            data[0] = 0; data[1] = 0;
            let c = checksum(&data);
            data[0..2].copy_from_slice(&c.to_be_bytes());
            prop_assert!(verify(&data));
        }
    }
}
