//! Packet bytes for the rvs director: typed zero-copy views, checksums, and the rewrites of IPVS's
//! three forwarding modes. No DPDK and no I/O: everything here runs on plain byte slices, so it is
//! tested on `Vec`s and runs unchanged on mbufs.
//!
//! # The no-panic contract
//!
//! Every view (`EthernetFrame`, `Ipv4Packet`, `TcpSegment`, ...) wraps a buffer `T: AsRef<[u8]>`.
//! `new_checked` validates everything its accessors rely on (lengths, header-length fields, versions),
//! and after it succeeds **no getter or setter panics**. `new_unchecked` skips the check; its
//! accessors may panic on short buffers, so it is only for buffers this crate just built or checked.
//! Bytes from the wire always go through `new_checked`. Fuzz targets (fuzz/) hold this contract to
//! account, and tests cut valid packets at every offset.
//!
//! Layers, each using only the ones above it:
//! 1. [`checksum`]: RFC 1071 sums and RFC 1624 incremental updates.
//! 2. Views: [`ethernet`], [`arp`], [`ipv4`], [`ipv6`], [`tcp`], [`udp`], [`icmpv4`], [`icmpv6`].
//! 3. [`buffer`]: the [`PacketBuffer`] trait (bytes, prepend, strip, trim) a packet lives in.
//! 4. [`rewrite`]: NAT (both directions, with ICMP errors), DR and TUN, plus the ICMP replies the
//!    director itself emits.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
// Numbers on the packet path are narrowed and sign-changed only where the value is known to fit
// (as Firecracker sets these for its device code); an `as` that could lose bits says why it cannot.
#![cfg_attr(
    not(test),
    warn(
        clippy::cast_possible_truncation,
        clippy::cast_possible_wrap,
        clippy::cast_sign_loss,
        clippy::error_impl_error
    )
)]

pub mod arp;
pub mod buffer;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod repr;
pub mod rewrite;
pub mod tcp;
pub mod udp;

pub use buffer::{PacketBuffer, VecBuffer};

/// Why a packet was refused. Small and `Copy`: it is returned on the packet path and turned into a
/// drop-reason counter there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PacketError {
    /// The buffer ends before the header (or the length a header claims) does.
    #[error("truncated packet")]
    Truncated,
    /// A field holds a value the protocol forbids (e.g. IPv4 IHL < 5, a length below the header).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// Valid, but not something this code handles (e.g. ARP for a non-IPv4 protocol).
    #[error("unsupported packet: {0}")]
    Unsupported(&'static str),
    /// The buffer cannot grow (no headroom/tailroom) or the output does not fit.
    #[error("no room in the buffer")]
    NoRoom,
}

pub type Result<T> = core::result::Result<T, PacketError>;

/// A buffer length as the u32 of a checksum's pseudo-header (IPv6 upper-layer length). A slice
/// longer than 4 GiB cannot be a packet; it saturates.
#[inline]
pub(crate) fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// IP protocol numbers used here (IANA "Assigned Internet Protocol Numbers").
pub mod ip_proto {
    pub const HOPOPT: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6: u8 = 41;
    pub const IPV6_ROUTE: u8 = 43;
    pub const IPV6_FRAG: u8 = 44;
    pub const GRE: u8 = 47;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const IPV6_NONXT: u8 = 59;
    pub const IPV6_OPTS: u8 = 60;
}

/// Big-endian reads and writes at fixed offsets. The callers' `new_checked` guarantees the offsets are
/// in bounds; these still never panic (a short slice reads as zero and ignores writes), so a broken
/// invariant shows up as a wrong value in tests, not a crash on the packet path.
pub(crate) mod be {
    #[inline]
    pub fn u16_at(b: &[u8], at: usize) -> u16 {
        match b.get(at..at + 2) {
            Some(&[x, y]) => u16::from_be_bytes([x, y]),
            _ => 0,
        }
    }
    #[inline]
    pub fn u32_at(b: &[u8], at: usize) -> u32 {
        match b.get(at..at + 4) {
            Some(&[a, x, y, z]) => u32::from_be_bytes([a, x, y, z]),
            _ => 0,
        }
    }
    #[inline]
    pub fn u8_at(b: &[u8], at: usize) -> u8 {
        b.get(at).copied().unwrap_or(0)
    }
    #[inline]
    pub fn set_u16(b: &mut [u8], at: usize, v: u16) {
        if let Some(s) = b.get_mut(at..at + 2) {
            s.copy_from_slice(&v.to_be_bytes());
        }
    }
    #[inline]
    pub fn set_u32(b: &mut [u8], at: usize, v: u32) {
        if let Some(s) = b.get_mut(at..at + 4) {
            s.copy_from_slice(&v.to_be_bytes());
        }
    }
    #[inline]
    pub fn set_u8(b: &mut [u8], at: usize, v: u8) {
        if let Some(s) = b.get_mut(at) {
            *s = v;
        }
    }
    #[inline]
    pub fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(s) = b.get(at..at + N) {
            out.copy_from_slice(s);
        }
        out
    }
    #[inline]
    pub fn set_bytes(b: &mut [u8], at: usize, v: &[u8]) {
        if let Some(s) = b.get_mut(at..at + v.len()) {
            s.copy_from_slice(v);
        }
    }
}
