//! Fragments of datagrams through the director. IPVS reassembles (through the kernel's defrag);
//! DPVS and Katran drop fragments. rvs forwards them without reassembly: the first fragment (offset
//! 0) carries the ports and is decided as a whole datagram would be, and what was decided is kept
//! under the datagram's identity (source, destination, IP ID, protocol) for a few seconds, so that
//! the later fragments follow it to the same server, rewritten the same way. A later fragment that
//! arrives before its first, or whose first was not seen, is dropped and counted (`fragment`).

use std::net::{IpAddr, Ipv4Addr};

use hashbrown::HashMap;
use rvs_ipvs::{Fwd, Time};

/// A datagram's identity (RFC 791: what reassembly keys on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ident: u16,
    pub protocol: u8,
}

/// What was decided for a datagram's first fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragRoute {
    /// A client's datagram to a real server.
    In { fwd: Fwd, virt: (Ipv4Addr, u16), real: (IpAddr, u16) },
    /// A NAT server's datagram back to the client, from the virtual endpoint.
    Out { virt: (IpAddr, u16), rport: u16 },
}

/// Fragments in flight on one worker: bounded, and each entry lives `lifetime_ms`.
#[derive(Debug)]
pub struct Fragments {
    map: HashMap<FragKey, (FragRoute, Time)>,
    capacity: usize,
    lifetime_ms: Time,
}

impl Fragments {
    pub fn new(capacity: usize, lifetime_ms: Time) -> Self {
        Self { map: HashMap::with_capacity(capacity.min(1024)), capacity, lifetime_ms }
    }

    /// Remembers the route of a datagram whose first fragment was just decided; false when the table
    /// is full of live entries (the later fragments will be dropped).
    pub fn remember(&mut self, k: FragKey, r: FragRoute, now: Time) -> bool {
        if self.map.len() >= self.capacity && !self.map.contains_key(&k) {
            self.map.retain(|_, (_, until)| *until > now);
            if self.map.len() >= self.capacity {
                return false;
            }
        }
        self.map.insert(k, (r, now + self.lifetime_ms));
        true
    }

    /// The route of a later fragment's datagram, if its first was seen and has not expired.
    pub fn find(&mut self, k: &FragKey, now: Time) -> Option<FragRoute> {
        match self.map.get(k) {
            Some(&(r, until)) if until > now => Some(r),
            Some(_) => {
                self.map.remove(k);
                None
            }
            None => None,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u16) -> FragKey {
        FragKey { src: [198, 51, 100, 7].into(), dst: [192, 0, 2, 80].into(), ident: id, protocol: 17 }
    }

    #[test]
    fn routes_live_their_time_and_the_table_is_bounded() {
        let r = FragRoute::Out { virt: (IpAddr::V4([192, 0, 2, 80].into()), 53), rport: 5300 };
        let mut f = Fragments::new(2, 1000);
        assert!(f.remember(key(1), r, 0));
        assert!(f.remember(key(2), r, 0));
        assert!(!f.remember(key(3), r, 500), "full of live entries");
        assert_eq!(f.find(&key(1), 999), Some(r));
        assert_eq!(f.find(&key(1), 1000), None, "expired");
        assert!(f.remember(key(3), r, 1500), "room again");
        assert!(f.remember(key(4), r, 1500), "the expired key 2 is swept to make room");
        assert_eq!((f.len(), f.find(&key(2), 1500), f.find(&key(4), 1500)), (2, None, Some(r)));
    }
}
