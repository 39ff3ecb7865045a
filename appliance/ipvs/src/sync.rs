//! IPVS's connection synchronisation messages, protocol version 1 (Linux `ip_vs_sync.c`, as
//! `ipvsadm --start-daemon` runs it): the master director multicasts new and changed connections to
//! 224.0.0.81 port 8848; a backup installs them, so that after a failover established connections
//! continue. The same wire format lets rvs interwork with what LVS users run and lets tshark (its
//! `ipvs` dissector) read the stream.
//!
//! A message: `reserved (0) | syncid | size (be16, whole message) | count | version (1) | spare (2)`,
//! then `count` connections, each `type (0: IPv4, 1: IPv6) | protocol | version<<12 | size (be16) |
//! flags (be32) | state (be16) | cport | vport | dport | fwmark (be32) | timeout (be32, seconds) |
//! caddr | vaddr | daddr`, followed by options this side skips (sequence adjustments, PE data).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::conn::ConnInfo;

/// Where the messages go by default (ipvsadm's and the kernel's).
pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
pub const PORT: u16 = 8848;
/// The message version this implements.
pub const VERSION: u8 = 1;
/// The largest message: an Ethernet MTU less the IPv4 and UDP headers.
pub const MAX_MESSAGE: usize = 1500 - 20 - 8;

const HEADER: usize = 8;
const CONN_V4: usize = 36;
const CONN_V6: usize = 72;
/// IP_VS_CONN_F_* bits carried in `flags`.
pub mod conn_flags {
    pub const FWD_MASK: u32 = 0x0007;
    pub const MASQ: u32 = 0x0000;
    pub const LOCALNODE: u32 = 0x0001;
    pub const TUNNEL: u32 = 0x0002;
    pub const DROUTE: u32 = 0x0003;
    pub const NOOUTPUT: u32 = 0x0080;
    pub const INACTIVE: u32 = 0x0100;
    pub const TEMPLATE: u32 = 0x1000;
}

/// One connection as the sync protocol carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncConn {
    pub protocol: u8,
    /// IP_VS_CONN_F_* bits (forwarding method in the low three).
    pub flags: u32,
    /// IPVS's TCP state number (the same numbering as [`crate::TcpState`]).
    pub state: u16,
    pub caddr: IpAddr,
    pub cport: u16,
    pub vaddr: IpAddr,
    pub vport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub fwmark: u32,
    /// Seconds the connection has left.
    pub timeout_seconds: u32,
}

impl SyncConn {
    /// A shard's connection as the master sends it; `now` is the shard's clock (expiry is on it).
    pub fn from_conn(c: &ConnInfo, now: crate::Time) -> Self {
        let fwd = match c.fwd {
            1 => conn_flags::DROUTE,
            2 => conn_flags::TUNNEL,
            3 => conn_flags::LOCALNODE,
            _ => conn_flags::MASQ,
        };
        let mut flags = fwd;
        if c.is_template() {
            flags |= conn_flags::TEMPLATE;
        }
        if c.flags & crate::conn::flag::INACTIVE != 0 {
            flags |= conn_flags::INACTIVE;
        }
        if c.flags & crate::conn::flag::NOOUTPUT != 0 {
            flags |= conn_flags::NOOUTPUT;
        }
        let left_ms = c.expires.saturating_sub(now);
        SyncConn {
            protocol: c.proto,
            flags,
            state: u16::from(c.state),
            caddr: c.caddr,
            cport: c.cport,
            vaddr: c.vaddr,
            vport: c.vport,
            daddr: c.raddr,
            dport: c.rport,
            fwmark: 0,
            timeout_seconds: u32::try_from(left_ms.div_ceil(1000)).unwrap_or(u32::MAX),
        }
    }

    pub fn is_template(&self) -> bool {
        self.flags & conn_flags::TEMPLATE != 0
    }

    fn wire_len(&self) -> usize {
        if self.caddr.is_ipv6() { CONN_V6 } else { CONN_V4 }
    }
}

/// Why a received message was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("shorter than a sync message header")]
    Short,
    #[error("sync protocol version {0} (rvs reads version 1)")]
    Version(i8),
    #[error("the header claims {claimed} bytes, the datagram has {actual}")]
    Size { claimed: usize, actual: usize },
    #[error("connection {index}: {reason}")]
    Conn { index: usize, reason: &'static str },
}

/// Messages carrying `conns`, each at most `max_len` bytes and 255 connections.
pub fn encode(syncid: u8, conns: &[SyncConn], max_len: usize) -> Vec<Vec<u8>> {
    let max_len = max_len.clamp(HEADER + CONN_V6, MAX_MESSAGE.max(HEADER + CONN_V6));
    let mut out = Vec::new();
    let mut msg: Vec<u8> = Vec::new();
    let mut count = 0u8;
    let finish = |msg: &mut Vec<u8>, count: u8, out: &mut Vec<Vec<u8>>| {
        if count == 0 {
            return;
        }
        let size = u16::try_from(msg.len()).unwrap_or(u16::MAX).to_be_bytes();
        msg[2..4].copy_from_slice(&size);
        msg[4] = count;
        out.push(std::mem::take(msg));
    };
    for c in conns {
        if msg.is_empty() {
            msg.extend_from_slice(&[0, syncid, 0, 0, 0, VERSION, 0, 0]);
        }
        msg.extend_from_slice(&conn_bytes(c));
        count += 1;
        if count == u8::MAX || msg.len() + CONN_V6 > max_len {
            finish(&mut msg, count, &mut out);
            count = 0;
        }
    }
    finish(&mut msg, count, &mut out);
    out
}

fn conn_bytes(c: &SyncConn) -> Vec<u8> {
    let len = c.wire_len();
    let mut b = Vec::with_capacity(len);
    b.push(u8::from(c.caddr.is_ipv6()));
    b.push(c.protocol);
    // Version 0 of the connection entry in the top four bits, the entry's size below.
    b.extend_from_slice(&(u16::try_from(len).unwrap_or(0) & 0x0fff).to_be_bytes());
    b.extend_from_slice(&c.flags.to_be_bytes());
    b.extend_from_slice(&c.state.to_be_bytes());
    b.extend_from_slice(&c.cport.to_be_bytes());
    b.extend_from_slice(&c.vport.to_be_bytes());
    b.extend_from_slice(&c.dport.to_be_bytes());
    b.extend_from_slice(&c.fwmark.to_be_bytes());
    b.extend_from_slice(&c.timeout_seconds.to_be_bytes());
    for a in [c.caddr, c.vaddr, c.daddr] {
        match a {
            IpAddr::V4(a) => b.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => b.extend_from_slice(&a.octets()),
        }
    }
    b
}

/// A received message: its sync id and its connections.
pub fn decode(msg: &[u8]) -> Result<(u8, Vec<SyncConn>), SyncError> {
    let h = msg.get(..HEADER).ok_or(SyncError::Short)?;
    let syncid = h[1];
    let size = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let count = usize::from(h[4]);
    let version = i8::from_ne_bytes([h[5]]);
    if h[0] != 0 || version != 1 {
        // Version 0 messages start with the count in the first byte; neither is read here.
        return Err(SyncError::Version(if h[0] != 0 { 0 } else { version }));
    }
    if size != msg.len() {
        return Err(SyncError::Size { claimed: size, actual: msg.len() });
    }
    let mut out = Vec::with_capacity(count);
    let mut rest = &msg[HEADER..];
    for index in 0..count {
        let bad = |reason| SyncError::Conn { index, reason };
        let b = rest.get(..CONN_V4).ok_or(bad("truncated"))?;
        let v6 = b[0] & 1 != 0;
        let ver_size = u16::from_be_bytes([b[2], b[3]]);
        let (version, len) = (ver_size >> 12, usize::from(ver_size & 0x0fff));
        if version != 0 {
            return Err(bad("unknown connection entry version"));
        }
        let base = if v6 { CONN_V6 } else { CONN_V4 };
        if len < base {
            return Err(bad("entry shorter than its addresses"));
        }
        let e = rest.get(..len).ok_or(bad("truncated"))?;
        let be16 = |at: usize| u16::from_be_bytes([e[at], e[at + 1]]);
        let be32 = |at: usize| u32::from_be_bytes([e[at], e[at + 1], e[at + 2], e[at + 3]]);
        let addr = |i: usize| -> IpAddr {
            if v6 {
                let mut o = [0u8; 16];
                o.copy_from_slice(&e[24 + 16 * i..40 + 16 * i]);
                IpAddr::V6(Ipv6Addr::from(o))
            } else {
                IpAddr::V4(Ipv4Addr::new(e[24 + 4 * i], e[25 + 4 * i], e[26 + 4 * i], e[27 + 4 * i]))
            }
        };
        out.push(SyncConn {
            protocol: e[1],
            flags: be32(4),
            state: be16(8),
            cport: be16(10),
            vport: be16(12),
            dport: be16(14),
            fwmark: be32(16),
            timeout_seconds: be32(20),
            caddr: addr(0),
            vaddr: addr(1),
            daddr: addr(2),
        });
        // Options (sequence adjustments, persistence-engine data) follow inside `len`: skipped.
        rest = rest.get(len.next_multiple_of(4).min(rest.len())..).unwrap_or_default();
    }
    Ok((syncid, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(i: u16, v6: bool) -> SyncConn {
        let a = |x: u8| -> IpAddr {
            if v6 {
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(x)))
            } else {
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, x))
            }
        };
        SyncConn {
            protocol: 6,
            flags: conn_flags::MASQ,
            state: 1,
            caddr: a(10),
            cport: 40000 + i,
            vaddr: a(80),
            vport: 80,
            daddr: a(11),
            dport: 8080,
            fwmark: 0,
            timeout_seconds: 900,
        }
    }

    #[test]
    fn messages_round_trip_and_split_at_the_mtu() {
        let conns: Vec<SyncConn> = (0..100).map(|i| conn(i, i % 3 == 0)).collect();
        let msgs = encode(7, &conns, MAX_MESSAGE);
        assert!(msgs.len() > 1 && msgs.iter().all(|m| m.len() <= MAX_MESSAGE));
        let mut back = Vec::new();
        for m in &msgs {
            let (id, c) = decode(m).expect("decodes");
            assert_eq!(id, 7);
            back.extend(c);
        }
        assert_eq!(back, conns);
    }

    #[test]
    fn bad_messages_are_errors() {
        let m = encode(1, &[conn(1, false)], MAX_MESSAGE).remove(0);
        assert_eq!(decode(&m[..4]), Err(SyncError::Short));
        assert!(matches!(decode(&m[..m.len() - 1]), Err(SyncError::Size { .. })));
        let mut v0 = m.clone();
        v0[5] = 0;
        assert_eq!(decode(&v0), Err(SyncError::Version(0)));
        let mut short = m.clone();
        short[4] = 2;
        assert!(matches!(decode(&short), Err(SyncError::Conn { index: 1, .. })));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_without_panicking(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = decode(&b);
        }
    }
}
