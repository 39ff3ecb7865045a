//! The neighbour (ARP) table of one worker: who has which MAC on which port, with RFC 826's learning
//! rule and a small part of Linux's neighbour state machine (probe, reachable, stale, gone).
//!
//! Entries are keyed by (port, address): what a host on one segment says about an address never
//! changes where the director sends that address's packets on another (a client-LAN host answering
//! for a real server's address poisons nothing). The pipeline learns only senders inside the port's
//! subnets.
//!
//! Timing (milliseconds of worker time): an unresolved address is asked for every [`RETRY_MS`], at
//! most [`TRIES`] times, then forgotten (packets held for it are dropped as `no_neighbour`). A resolved
//! entry is used as is for [`REACHABLE_MS`]; after that it is still used while a refresh request goes
//! out at most every [`RETRY_MS`], and it is forgotten [`STALE_MS`] after its last confirmation.
//!
//! Capacity: entries learned passively (a host asked for us) never push others out; when the table is
//! full, a packet that needs a new next hop evicts a passive entry nothing has sent to, else the
//! least recently confirmed entry that is not being resolved. So a flood of ARP requests from many
//! senders fills at most the passive share and never costs the director its gateway or real servers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hashbrown::HashMap;
use rvs_ipvs::Time;
use rvs_wire::ethernet::MacAddr;

pub const RETRY_MS: Time = 1000;
pub const TRIES: u8 = 3;
pub const REACHABLE_MS: Time = 60_000;
pub const STALE_MS: Time = 180_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    mac: Option<MacAddr>,
    /// Last confirmation (resolved) or first request (unresolved).
    confirmed: Time,
    last_request: Time,
    tries: u8,
    /// Packets were sent to it (or are waiting for it): it is a next hop, not only an asker.
    used: bool,
}

/// What the caller does with a packet for a neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Send to this MAC; if `refresh`, also send an ARP request for the address.
    Known { mac: MacAddr, refresh: bool },
    /// Unknown yet: hold the packet; if `request`, send an ARP request now.
    Pending { request: bool },
    /// The table is full of next hops being resolved: drop.
    Full,
}

/// One address family's table, keyed by (port, address): IPv4's stays a compact key (the
/// per-packet lookup of the hot path), IPv6's is its own.
#[derive(Debug)]
struct Table<A> {
    map: HashMap<(usize, A), Entry>,
    capacity: usize,
    /// Entries pushed out to make room for a next hop.
    evicted: u64,
}

impl<A: Copy + Eq + std::hash::Hash + Into<IpAddr>> Table<A> {
    fn new(capacity: usize) -> Self {
        Self { map: HashMap::with_capacity(capacity), capacity, evicted: 0 }
    }

    #[inline]
    fn lookup(&mut self, ip: A, port: usize, now: Time) -> Lookup {
        if let Some(e) = self.map.get_mut(&(port, ip)) {
            e.used = true;
            return match e.mac {
                Some(mac) => {
                    let refresh = now.saturating_sub(e.confirmed) >= REACHABLE_MS
                        && now.saturating_sub(e.last_request) >= RETRY_MS;
                    if refresh {
                        e.last_request = now;
                    }
                    Lookup::Known { mac, refresh }
                }
                None => Lookup::Pending { request: false },
            };
        }
        if self.map.len() >= self.capacity && !self.evict_one() {
            return Lookup::Full;
        }
        let e = Entry { mac: None, confirmed: now, last_request: now, tries: 1, used: true };
        self.map.insert((port, ip), e);
        Lookup::Pending { request: true }
    }

    /// Makes room: a passive entry first, else the least recently confirmed resolved one. A scan of
    /// the table, done only when it is full and a packet needs a new next hop.
    fn evict_one(&mut self) -> bool {
        let victim = self
            .map
            .iter()
            .filter(|(_, e)| e.mac.is_some())
            .min_by_key(|(_, e)| (e.used, e.confirmed))
            .map(|(k, _)| *k);
        match victim {
            Some(k) => {
                self.map.remove(&k);
                self.evicted += 1;
                true
            }
            None => false,
        }
    }

    fn learn(
        &mut self,
        ip: A,
        mac: MacAddr,
        port: usize,
        for_us: bool,
        now: Time,
        resolved: &mut Vec<(usize, IpAddr)>,
    ) -> bool {
        let len = self.map.len();
        match self.map.get_mut(&(port, ip)) {
            Some(e) => {
                if e.mac.is_none() && resolved.len() < self.capacity {
                    resolved.push((port, ip.into()));
                }
                *e = Entry { mac: Some(mac), confirmed: now, last_request: now, tries: 0, used: e.used };
                true
            }
            None if for_us && len < self.capacity => {
                let e = Entry { mac: Some(mac), confirmed: now, last_request: now, tries: 0, used: false };
                self.map.insert((port, ip), e);
                true
            }
            None => false,
        }
    }

    fn tick(&mut self, now: Time, request: &mut impl FnMut(IpAddr, usize)) {
        self.map.retain(|&(port, ip), e| match e.mac {
            None if now.saturating_sub(e.last_request) >= RETRY_MS => {
                if e.tries >= TRIES {
                    return false;
                }
                e.tries += 1;
                e.last_request = now;
                request(ip.into(), port);
                true
            }
            None => true,
            Some(_) => now.saturating_sub(e.confirmed) < STALE_MS,
        });
    }
}

/// Slots of the IPv4 next-hop memo (a power of two).
const HOT: usize = 64;
const _: () = assert!(REACHABLE_MS < STALE_MS, "a memo entry expires before ageing can remove its entry");

/// A resolved IPv4 next hop as [`Neighbours::lookup4`] remembers it.
#[derive(Debug, Clone, Copy)]
struct Hot4 {
    addr: Ipv4Addr,
    port: usize,
    mac: MacAddr,
    /// Good while `now` is before this (0: empty): the entry's confirmation plus REACHABLE_MS,
    /// after which the table's own lookup decides about a refresh.
    until: Time,
}

#[inline]
fn hot4_slot(ip: Ipv4Addr, port: usize) -> usize {
    (u32::from(ip) as usize ^ port.rotate_left(5)) & (HOT - 1)
}

const EMPTY_HOT4: Hot4 = Hot4 { addr: Ipv4Addr::UNSPECIFIED, port: 0, mac: [0; 6], until: 0 };

#[derive(Debug)]
pub struct Neighbours {
    v4: Table<Ipv4Addr>,
    v6: Table<Ipv6Addr>,
    /// The IPv4 next hops packets went to lately, direct-mapped by address and port: the packet
    /// path's lookup without hashing the key (a director sends to a few real servers and gateways).
    /// A slot is emptied when its address is learned anew; all are when the table makes or evicts
    /// an entry.
    hot4: Vec<Hot4>,
    /// Neighbours that became resolved since the last [`Neighbours::take_resolved`].
    resolved: Vec<(usize, IpAddr)>,
    /// Entries pushed out to make room for a next hop.
    pub evicted: u64,
}

impl Neighbours {
    /// A table of at most `capacity` IPv4 neighbours and as many IPv6 ones, allocated now
    /// (learning never allocates).
    pub fn new(capacity: usize) -> Self {
        Self {
            v4: Table::new(capacity),
            v6: Table::new(capacity),
            hot4: vec![EMPTY_HOT4; HOT],
            resolved: Vec::with_capacity(capacity),
            evicted: 0,
        }
    }

    #[inline]
    pub fn lookup(&mut self, ip: impl Into<IpAddr>, port: usize, now: Time) -> Lookup {
        match ip.into() {
            IpAddr::V4(a) => self.lookup4(a, port, now),
            IpAddr::V6(a) => {
                let l = self.v6.lookup(a, port, now);
                self.evicted = self.v4.evicted + self.v6.evicted;
                l
            }
        }
    }

    /// [`Neighbours::lookup`] for an IPv4 next hop held as such (the packet path's common case).
    #[inline]
    pub fn lookup4(&mut self, ip: Ipv4Addr, port: usize, now: Time) -> Lookup {
        let slot = hot4_slot(ip, port);
        if let Some(h) = self.hot4.get(slot) {
            if h.addr == ip && h.port == port && now < h.until {
                return Lookup::Known { mac: h.mac, refresh: false };
            }
        }
        self.lookup4_table(ip, port, slot, now)
    }

    /// The IPv4 table's own lookup, remembering a resolved next hop in `slot` of the memo.
    #[cold]
    fn lookup4_table(&mut self, ip: Ipv4Addr, port: usize, slot: usize, now: Time) -> Lookup {
        let l = self.v4.lookup(ip, port, now);
        match l {
            Lookup::Known { mac, refresh: false } => {
                let until =
                    self.v4.map.get(&(port, ip)).map_or(0, |e| e.confirmed.saturating_add(REACHABLE_MS));
                if let Some(h) = self.hot4.get_mut(slot) {
                    *h = Hot4 { addr: ip, port, mac, until };
                }
            }
            Lookup::Known { .. } => {}
            // A new entry, or one evicted to make room for it.
            Lookup::Pending { .. } | Lookup::Full => self.forget_hot4(),
        }
        self.evicted = self.v4.evicted + self.v6.evicted;
        l
    }

    fn forget_hot4(&mut self) {
        self.hot4.fill(EMPTY_HOT4);
    }

    /// An ARP packet (or a neighbour solicitation or advertisement) from `ip` at `mac` arrived on
    /// `port` (the caller checked that `ip` is on the port's subnet). RFC 826: an existing entry is
    /// updated; a new one is created only when the packet was addressed to us (`for_us`) and there
    /// is room. Returns whether it was learned.
    pub fn learn(
        &mut self,
        ip: impl Into<IpAddr>,
        mac: MacAddr,
        port: usize,
        for_us: bool,
        now: Time,
    ) -> bool {
        let ip = ip.into();
        if ip.is_unspecified() || mac == [0; 6] || mac[0] & 1 != 0 {
            return false;
        }
        match ip {
            IpAddr::V4(a) => {
                // The address may have moved to another MAC: its slot (the only one it can be in)
                // is emptied.
                if let Some(h) = self.hot4.get_mut(hot4_slot(a, port)) {
                    *h = EMPTY_HOT4;
                }
                self.v4.learn(a, mac, port, for_us, now, &mut self.resolved)
            }
            IpAddr::V6(a) => self.v6.learn(a, mac, port, for_us, now, &mut self.resolved),
        }
    }

    /// Neighbours resolved since the last call, as (port, address): their held packets can go.
    pub fn take_resolved(&mut self, out: &mut Vec<(usize, IpAddr)>) {
        out.append(&mut self.resolved);
    }

    /// Whether packets for `ip` on `port` may still wait (it is being asked for).
    pub fn is_pending(&self, port: usize, ip: impl Into<IpAddr>) -> bool {
        self.entry(port, ip.into()).is_some_and(|e| e.mac.is_none())
    }

    /// Retries and ageing. `request` is called for every request to send (address, port).
    pub fn tick(&mut self, now: Time, mut request: impl FnMut(IpAddr, usize)) {
        // The memo needs nothing here: ageing removes only unresolved entries (never in the memo)
        // and resolved ones past STALE_MS, which the memo gave up at REACHABLE_MS.
        self.v4.tick(now, &mut request);
        self.v6.tick(now, &mut request);
    }

    pub fn len(&self) -> usize {
        self.v4.map.len() + self.v6.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, port: usize, ip: impl Into<IpAddr>) -> Option<MacAddr> {
        self.entry(port, ip.into()).and_then(|e| e.mac)
    }

    fn entry(&self, port: usize, ip: IpAddr) -> Option<&Entry> {
        match ip {
            IpAddr::V4(a) => self.v4.map.get(&(port, a)),
            IpAddr::V6(a) => self.v6.map.get(&(port, a)),
        }
    }
}

/// A next hop's address as the packet path holds it: an `Ipv4Addr` on the IPv4 fast path (kept in
/// registers), an `IpAddr` elsewhere.
pub trait HopAddr: Copy + Into<IpAddr> {
    fn lookup_in(self, n: &mut Neighbours, port: usize, now: Time) -> Lookup;
}

impl HopAddr for Ipv4Addr {
    #[inline]
    fn lookup_in(self, n: &mut Neighbours, port: usize, now: Time) -> Lookup {
        n.lookup4(self, port, now)
    }
}

impl HopAddr for IpAddr {
    #[inline]
    fn lookup_in(self, n: &mut Neighbours, port: usize, now: Time) -> Lookup {
        n.lookup(self, port, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
    const MAC: MacAddr = [2, 0, 0, 0, 0, 0x11];

    /// The memo of hot IPv4 next hops answers as the table would: a new MAC, the refresh after
    /// REACHABLE_MS and an eviction are seen at once.
    #[test]
    fn the_next_hop_memo_never_outlives_the_table() {
        let mut n = Neighbours::new(1);
        n.learn(IP, MAC, 1, true, 0);
        assert_eq!(n.lookup4(IP, 1, 5), Lookup::Known { mac: MAC, refresh: false });
        assert_eq!(n.lookup4(IP, 1, 6), Lookup::Known { mac: MAC, refresh: false }, "from the memo");
        let moved = [2, 0, 0, 0, 0, 0x99];
        n.learn(IP, moved, 1, false, 10);
        assert_eq!(n.lookup4(IP, 1, 11), Lookup::Known { mac: moved, refresh: false }, "the new MAC");
        assert_eq!(n.lookup4(IP, 2, 11), Lookup::Pending { request: true }, "not the same on port 2");
        let mut n = Neighbours::new(1);
        n.learn(IP, MAC, 1, true, 0);
        assert_eq!(n.lookup4(IP, 1, 1), Lookup::Known { mac: MAC, refresh: false });
        assert_eq!(
            n.lookup4(IP, 1, REACHABLE_MS + 1),
            Lookup::Known { mac: MAC, refresh: true },
            "the refresh comes on time"
        );
        // A full table evicts the only entry for another next hop: the memo forgets it too.
        let other = Ipv4Addr::new(203, 0, 113, 12);
        assert_eq!(n.lookup4(other, 1, REACHABLE_MS + 2), Lookup::Pending { request: true });
        assert_eq!(n.get(1, IP), None);
        assert_ne!(n.lookup4(IP, 1, REACHABLE_MS + 3), Lookup::Known { mac: MAC, refresh: false });
        // Ageing removes the entry long after the memo let go of it.
        let mut n = Neighbours::new(4);
        n.learn(IP, MAC, 1, true, 0);
        assert_eq!(n.lookup4(IP, 1, 1), Lookup::Known { mac: MAC, refresh: false });
        n.tick(STALE_MS, |_, _| {});
        assert!(n.is_empty());
        assert_eq!(n.lookup4(IP, 1, STALE_MS + 1), Lookup::Pending { request: true });
    }

    #[test]
    fn resolve_hold_learn_then_flush() {
        let mut n = Neighbours::new(4);
        assert_eq!(n.lookup(IP, 1, 0), Lookup::Pending { request: true });
        assert_eq!(n.lookup(IP, 1, 10), Lookup::Pending { request: false }, "one request per address");
        n.learn(IP, MAC, 1, false, 20);
        let mut r = vec![];
        n.take_resolved(&mut r);
        assert_eq!(r, vec![(1, IP.into())]);
        assert_eq!(n.lookup(IP, 1, 30), Lookup::Known { mac: MAC, refresh: false });
    }

    #[test]
    fn unanswered_requests_are_retried_then_given_up() {
        let mut n = Neighbours::new(4);
        assert_eq!(n.lookup(IP, 1, 0), Lookup::Pending { request: true });
        let mut sent = 0;
        for t in (0..10_000).step_by(100) {
            n.tick(t, |ip, port| {
                assert_eq!((ip, port), (IP.into(), 1));
                sent += 1;
            });
        }
        assert_eq!(sent, usize::from(TRIES) - 1, "the first request went with the lookup");
        assert!(n.is_empty(), "given up after {TRIES} tries");
    }

    #[test]
    fn entries_go_stale_refresh_and_expire() {
        let mut n = Neighbours::new(4);
        n.learn(IP, MAC, 1, true, 0);
        assert_eq!(n.lookup(IP, 1, REACHABLE_MS), Lookup::Known { mac: MAC, refresh: true });
        assert_eq!(n.lookup(IP, 1, REACHABLE_MS + 1), Lookup::Known { mac: MAC, refresh: false });
        n.tick(STALE_MS - 1, |_, _| {});
        assert_eq!(n.len(), 1);
        n.tick(STALE_MS, |_, _| {});
        assert!(n.is_empty());
    }

    #[test]
    fn rfc826_only_creates_entries_for_packets_to_us_and_ignores_bogus_senders() {
        let mut n = Neighbours::new(4);
        n.learn(IP, MAC, 1, false, 0);
        assert!(n.is_empty());
        n.learn(IP, [0xff; 6], 1, true, 0);
        n.learn(Ipv4Addr::UNSPECIFIED, MAC, 1, true, 0);
        assert!(n.is_empty());
        n.learn(IP, MAC, 1, true, 0);
        assert_eq!(n.get(1, IP), Some(MAC));
    }

    #[test]
    fn a_full_table_refuses_only_when_every_entry_is_being_resolved() {
        let mut n = Neighbours::new(1);
        assert_eq!(n.lookup(IP, 1, 0), Lookup::Pending { request: true });
        assert_eq!(n.lookup(Ipv4Addr::new(203, 0, 113, 12), 1, 0), Lookup::Full);
    }

    /// Keyed by address alone, any ARP on any port overwrote the entry a real server's packets use;
    /// and 4096 senders asking for us filled the table for good.
    #[test]
    fn ports_are_separate_and_passive_entries_never_push_next_hops_out() {
        let mut n = Neighbours::new(8);
        n.learn(IP, MAC, 1, true, 0);
        assert_eq!(n.lookup(IP, 1, 1), Lookup::Known { mac: MAC, refresh: false });
        // A host on port 0 claims the real server's address.
        n.learn(IP, [2, 0, 0, 0, 0, 0x66], 0, true, 2);
        assert_eq!(n.get(1, IP), Some(MAC), "port 1's entry is untouched");
        // A flood of askers fills what is left, then is refused.
        let learned = (0..100u8)
            .filter(|&i| n.learn(Ipv4Addr::new(192, 0, 2, 100 + i), [2, 0, 0, 0, 1, i], 0, true, 3))
            .count();
        assert_eq!(learned, 6);
        assert_eq!(n.get(1, IP), Some(MAC), "the next hop in use stays");
        // A new next hop evicts a passive entry, not the one in use.
        let other = Ipv4Addr::new(203, 0, 113, 12);
        assert_eq!(n.lookup(other, 1, 4), Lookup::Pending { request: true });
        assert_eq!((n.len(), n.evicted), (8, 1));
        assert_eq!(n.get(1, IP), Some(MAC));
    }
}
