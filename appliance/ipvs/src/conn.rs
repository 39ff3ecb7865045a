//! One worker's connection table: fixed capacity, no allocation after construction, lookup by the
//! forward tuple (client -> virtual) and, for NAT, by the reply tuple (real -> client), persistence
//! templates alongside, and expiry by a timer wheel.
//!
//! # Memory per connection
//!
//! An IPv4 entry is exactly 64 bytes, one cache line (`#[repr(C, align(64))]`; 52 bytes of fields):
//! the three addresses (12), three ports (6), protocol/state/flags/forwarding (4), and seven u32s —
//! destination, template link (or, in a template, its count of controlled connections), expiry second,
//! two timer-wheel links, two hash-chain links (28). The alignment costs 12 bytes but makes every
//! lookup touch exactly one line of the entry. Each index (forward and reply) has one u32 bucket head
//! per power-of-two bucket, at least one bucket per entry: 8 to 16 bytes per connection. So 10 M IPv4
//! connections take 640 MB of entries plus 128 MB of index (16 M buckets × 2 × 4 bytes) = 768 MB.
//! IPv6 entries are 128 bytes (three 16-byte addresses do not fit a line).
//!
//! # Expiry
//!
//! A wheel of 1024 one-second slots, each an intrusive doubly-linked list. Refreshing an entry to a
//! later time only rewrites its expiry (it is moved when its old slot comes round); shortening one
//! (a state change to a shorter timeout) moves it at once. [`ConnTable::expire`] takes a budget, so
//! the worker spreads expiry over its loop and never scans the table on the packet path.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::Time;

const NONE: u32 = u32::MAX;
const WHEEL: u32 = 1024;
/// Lookups resolved together by [`ConnTable::lookup_batch`]: a burst.
pub const BATCH: usize = 32;

/// Entry flags.
pub(crate) mod flag {
    pub const LIVE: u8 = 1;
    pub const TEMPLATE: u8 = 2;
    /// Counted in InActConn rather than ActiveConn (IP_VS_CONN_F_INACTIVE).
    pub const INACTIVE: u8 = 4;
    /// Replies not seen yet / never (IP_VS_CONN_F_NOOUTPUT): the INPUT-ONLY state table applies.
    pub const NOOUTPUT: u8 = 8;
    /// In the reply index (NAT).
    pub const REPLY_HASHED: u8 = 16;
    /// A template that may no longer be found (its destination went away); kept until its
    /// controlled connections are gone.
    pub const INVALID: u8 = 32;
}

/// An address of one family, as stored in entries.
pub trait Addr: Copy + Eq + Default + std::fmt::Debug {
    fn from_ip(ip: IpAddr) -> Option<Self>;
    fn to_ip(self) -> IpAddr;
    fn fold(&self) -> u64;
}

impl Addr for [u8; 4] {
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(a) => Some(a.octets()),
            IpAddr::V6(_) => None,
        }
    }
    fn to_ip(self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(self))
    }
    #[inline]
    fn fold(&self) -> u64 {
        u64::from(u32::from_be_bytes(*self))
    }
}

impl Addr for [u8; 16] {
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V6(a) => Some(a.octets()),
            IpAddr::V4(_) => None,
        }
    }
    fn to_ip(self) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(self))
    }
    #[inline]
    fn fold(&self) -> u64 {
        let x = u128::from_be_bytes(*self);
        (x as u64) ^ ((x >> 64) as u64).rotate_left(17)
    }
}

/// The forward tuple of a connection (or, with `cport` 0 and a masked client, of a template).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnKey<A> {
    pub proto: u8,
    pub caddr: A,
    pub cport: u16,
    pub vaddr: A,
    pub vport: u16,
}

/// The slot layout. Key fields first, so a lookup's comparison reads the start of the line.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
pub(crate) struct Entry<A> {
    pub caddr: A,
    pub vaddr: A,
    pub raddr: A,
    pub cport: u16,
    pub vport: u16,
    pub rport: u16,
    pub proto: u8,
    pub flags: u8,
    pub state: u8,
    /// A `Fwd` code the engine assigns.
    pub fwd: u8,
    pub dest: u32,
    /// Normal connection: its template's index or NONE. Template: its controlled connections.
    pub control: u32,
    /// Expiry, in whole seconds of table time.
    pub expires: u32,
    wheel_next: u32,
    wheel_prev: u32,
    fwd_next: u32,
    rev_next: u32,
    /// The wheel slot the entry is linked in (its expiry may have moved on since).
    wheel_slot: u16,
}

const _: () = assert!(size_of::<Entry<[u8; 4]>>() == 64, "an IPv4 entry is one cache line");

/// What the table keeps of a connection, as a copy (for listings and for the engine's bookkeeping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    pub proto: u8,
    pub caddr: IpAddr,
    pub cport: u16,
    pub vaddr: IpAddr,
    pub vport: u16,
    pub raddr: IpAddr,
    pub rport: u16,
    pub state: u8,
    pub flags: u8,
    pub fwd: u8,
    pub dest: u32,
    pub control: u32,
    /// Expiry in milliseconds of caller time (second resolution).
    pub expires: Time,
}

impl ConnInfo {
    pub fn is_template(&self) -> bool {
        self.flags & flag::TEMPLATE != 0
    }
}

/// What to do with an entry whose time has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Remove,
    /// Keep it until this time (a template that still controls connections).
    Rearm(Time),
}

/// A new entry's contents.
#[derive(Debug, Clone, Copy)]
pub struct NewEntry<A> {
    pub key: ConnKey<A>,
    pub raddr: A,
    pub rport: u16,
    pub flags: u8,
    pub state: u8,
    pub fwd: u8,
    pub dest: u32,
    pub control: u32,
    pub expires: Time,
    /// Also index the reply tuple (NAT).
    pub reply: bool,
}

/// The table is full: the new connection is refused, existing ones are untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A connection table for one address family.
#[derive(Debug)]
pub struct ConnTable<A> {
    entries: Vec<Entry<A>>,
    fwd_heads: Vec<u32>,
    rev_heads: Vec<u32>,
    mask: u64,
    free: u32,
    len: usize,
    wheel: Vec<u32>,
    /// The next wheel second to process.
    wheel_tick: u32,
    seed: u64,
}

#[inline]
fn secs(t: Time) -> u32 {
    u32::try_from(t / 1000).unwrap_or(u32::MAX)
}

impl<A: Addr> ConnTable<A> {
    /// A table for `capacity` connections and templates; `seed` keys its hash (pick it at random, so
    /// clients cannot aim for one bucket).
    pub fn new(capacity: usize, seed: u64) -> Self {
        let capacity = capacity.clamp(1, NONE as usize - 1);
        let buckets = capacity.next_power_of_two().max(16);
        let mut entries = vec![Entry::<A>::default(); capacity];
        let last = entries.len().saturating_sub(1);
        for (i, e) in entries.iter_mut().enumerate() {
            e.fwd_next = if i == last { NONE } else { i as u32 + 1 };
        }
        Self {
            entries,
            fwd_heads: vec![NONE; buckets],
            rev_heads: vec![NONE; buckets],
            mask: buckets as u64 - 1,
            free: 0,
            len: 0,
            wheel: vec![NONE; WHEEL as usize],
            wheel_tick: 0,
            seed,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of memory per connection slot: the entry plus its share of both indexes.
    pub fn bytes_per_slot(&self) -> usize {
        size_of::<Entry<A>>() + (self.fwd_heads.len() + self.rev_heads.len()) * 4 / self.entries.len().max(1)
    }

    #[inline]
    fn hash(&self, proto: u8, a: &A, ap: u16, b: &A, bp: u16) -> usize {
        let x = a.fold() ^ b.fold().rotate_left(32) ^ self.seed;
        let y = (u64::from(proto) << 32) | (u64::from(ap) << 16) | u64::from(bp);
        let mut h = x.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ y.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        h ^= h >> 31;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 29;
        (h & self.mask) as usize
    }

    #[inline]
    fn fwd_bucket(&self, k: &ConnKey<A>) -> usize {
        self.hash(k.proto, &k.caddr, k.cport, &k.vaddr, k.vport)
    }

    #[inline]
    fn rev_bucket(&self, proto: u8, raddr: &A, rport: u16, caddr: &A, cport: u16) -> usize {
        self.hash(proto, raddr, rport, caddr, cport)
    }

    #[inline]
    fn entry(&self, i: u32) -> Option<&Entry<A>> {
        self.entries.get(i as usize)
    }

    #[inline]
    fn matches(e: &Entry<A>, k: &ConnKey<A>, template: bool) -> bool {
        e.cport == k.cport
            && e.vport == k.vport
            && e.caddr == k.caddr
            && e.vaddr == k.vaddr
            && e.proto == k.proto
            && (e.flags & flag::TEMPLATE != 0) == template
            && e.flags & flag::INVALID == 0
    }

    fn walk_fwd(&self, mut i: u32, k: &ConnKey<A>, template: bool) -> Option<u32> {
        while let Some(e) = self.entry(i) {
            if Self::matches(e, k, template) {
                return Some(i);
            }
            i = e.fwd_next;
        }
        None
    }

    /// The connection (or, with `template`, the persistence template) with this forward tuple.
    #[inline]
    pub fn lookup(&self, k: &ConnKey<A>, template: bool) -> Option<u32> {
        let head = *self.fwd_heads.get(self.fwd_bucket(k))?;
        self.walk_fwd(head, k, template)
    }

    /// Looks up a burst of connection tuples. The bucket heads of the whole burst are loaded first,
    /// then the first entry of every chain is touched, then the chains are compared: the cache misses
    /// of a burst overlap instead of following one another (the role of rte_prefetch0 in DPDK code,
    /// done with independent loads because this crate has no unsafe).
    pub fn lookup_batch(&self, keys: &[ConnKey<A>], out: &mut [Option<u32>]) {
        for (keys, out) in keys.chunks(BATCH).zip(out.chunks_mut(BATCH)) {
            let mut heads = [NONE; BATCH];
            for (h, k) in heads.iter_mut().zip(keys) {
                *h = self.fwd_heads.get(self.fwd_bucket(k)).copied().unwrap_or(NONE);
            }
            let mut touch = 0u16;
            for &h in &heads {
                if let Some(e) = self.entry(h) {
                    touch ^= e.cport;
                }
            }
            std::hint::black_box(touch);
            for ((o, k), &h) in out.iter_mut().zip(keys).zip(&heads) {
                *o = self.walk_fwd(h, k, false);
            }
        }
    }

    /// The NAT connection a reply (real server -> client) belongs to.
    pub fn lookup_reply(&self, proto: u8, raddr: &A, rport: u16, caddr: &A, cport: u16) -> Option<u32> {
        let mut i = *self.rev_heads.get(self.rev_bucket(proto, raddr, rport, caddr, cport))?;
        while let Some(e) = self.entry(i) {
            if e.rport == rport
                && e.cport == cport
                && e.raddr == *raddr
                && e.caddr == *caddr
                && e.proto == proto
            {
                return Some(i);
            }
            i = e.rev_next;
        }
        None
    }

    /// Adds an entry; [`Full`] when no slot is free.
    pub fn insert(&mut self, n: &NewEntry<A>) -> Result<u32, Full> {
        let i = self.free;
        let fwd_b = self.fwd_bucket(&n.key);
        let rev_b = self.rev_bucket(n.key.proto, &n.raddr, n.rport, &n.key.caddr, n.key.cport);
        let fwd_head = *self.fwd_heads.get(fwd_b).ok_or(Full)?;
        let rev_head = *self.rev_heads.get(rev_b).ok_or(Full)?;
        let e = self.entries.get_mut(i as usize).ok_or(Full)?;
        self.free = e.fwd_next;
        *e = Entry {
            caddr: n.key.caddr,
            vaddr: n.key.vaddr,
            raddr: n.raddr,
            cport: n.key.cport,
            vport: n.key.vport,
            rport: n.rport,
            proto: n.key.proto,
            flags: n.flags | flag::LIVE | if n.reply { flag::REPLY_HASHED } else { 0 },
            state: n.state,
            fwd: n.fwd,
            dest: n.dest,
            control: n.control,
            expires: secs(n.expires),
            wheel_next: NONE,
            wheel_prev: NONE,
            fwd_next: fwd_head,
            rev_next: if n.reply { rev_head } else { NONE },
            wheel_slot: 0,
        };
        if let Some(h) = self.fwd_heads.get_mut(fwd_b) {
            *h = i;
        }
        if n.reply {
            if let Some(h) = self.rev_heads.get_mut(rev_b) {
                *h = i;
            }
        }
        self.wheel_link(i);
        self.len += 1;
        Ok(i)
    }

    /// A copy of entry `i`, if live.
    pub fn get(&self, i: u32) -> Option<ConnInfo> {
        let e = self.entry(i).filter(|e| e.flags & flag::LIVE != 0)?;
        Some(ConnInfo {
            proto: e.proto,
            caddr: e.caddr.to_ip(),
            cport: e.cport,
            vaddr: e.vaddr.to_ip(),
            vport: e.vport,
            raddr: e.raddr.to_ip(),
            rport: e.rport,
            state: e.state,
            flags: e.flags,
            fwd: e.fwd,
            dest: e.dest,
            control: e.control,
            expires: Time::from(e.expires) * 1000,
        })
    }

    pub(crate) fn set_state(&mut self, i: u32, state: u8, flags: u8) {
        if let Some(e) = self.entries.get_mut(i as usize) {
            e.state = state;
            e.flags = flags | flag::LIVE | (e.flags & flag::REPLY_HASHED);
        }
    }

    /// Sets the expiry. Later: only the field changes (the entry moves when its old slot comes
    /// round). Earlier: it moves now, so it is not kept past its time.
    pub fn set_expiry(&mut self, i: u32, at: Time) {
        let at = secs(at);
        let Some(e) = self.entries.get_mut(i as usize) else { return };
        let old = e.expires;
        e.expires = at;
        if at < old {
            self.wheel_unlink(i);
            self.wheel_link(i);
        }
    }

    fn wheel_link(&mut self, i: u32) {
        let tick = self.wheel_tick;
        let Some(e) = self.entries.get_mut(i as usize) else { return };
        let slot = (e.expires.max(tick) % WHEEL) as usize;
        let head = self.wheel.get(slot).copied().unwrap_or(NONE);
        e.wheel_next = head;
        e.wheel_prev = NONE;
        e.wheel_slot = slot as u16;
        if let Some(h) = self.entries.get_mut(head as usize) {
            h.wheel_prev = i;
        }
        if let Some(s) = self.wheel.get_mut(slot) {
            *s = i;
        }
    }

    fn wheel_unlink(&mut self, i: u32) {
        let Some(e) = self.entry(i) else { return };
        let (next, prev, slot) = (e.wheel_next, e.wheel_prev, usize::from(e.wheel_slot));
        if let Some(p) = self.entries.get_mut(prev as usize) {
            p.wheel_next = next;
        } else if let Some(s) = self.wheel.get_mut(slot).filter(|s| **s == i) {
            *s = next;
        }
        if let Some(n) = self.entries.get_mut(next as usize) {
            n.wheel_prev = prev;
        }
        if let Some(e) = self.entries.get_mut(i as usize) {
            e.wheel_next = NONE;
            e.wheel_prev = NONE;
        }
    }

    fn unlink_chain(&mut self, i: u32, reply: bool) {
        let Some(e) = self.entry(i).copied() else { return };
        let (bucket, next_of) = if reply {
            (self.rev_bucket(e.proto, &e.raddr, e.rport, &e.caddr, e.cport), e.rev_next)
        } else {
            (
                self.fwd_bucket(&ConnKey {
                    proto: e.proto,
                    caddr: e.caddr,
                    cport: e.cport,
                    vaddr: e.vaddr,
                    vport: e.vport,
                }),
                e.fwd_next,
            )
        };
        let heads = if reply { &mut self.rev_heads } else { &mut self.fwd_heads };
        let Some(&head) = heads.get(bucket) else { return };
        if head == i {
            if let Some(h) = heads.get_mut(bucket) {
                *h = next_of;
            }
            return;
        }
        let mut cur = head;
        while let Some(c) = self.entries.get(cur as usize).copied() {
            let next = if reply { c.rev_next } else { c.fwd_next };
            if next == i {
                if let Some(p) = self.entries.get_mut(cur as usize) {
                    if reply {
                        p.rev_next = next_of;
                    } else {
                        p.fwd_next = next_of;
                    }
                }
                return;
            }
            cur = next;
        }
    }

    /// Removes entry `i` and returns what it held.
    pub fn remove(&mut self, i: u32) -> Option<ConnInfo> {
        let info = self.get(i)?;
        self.unlink_chain(i, false);
        if info.flags & flag::REPLY_HASHED != 0 {
            self.unlink_chain(i, true);
        }
        self.wheel_unlink(i);
        let free = self.free;
        if let Some(e) = self.entries.get_mut(i as usize) {
            e.flags = 0;
            e.fwd_next = free;
            e.rev_next = NONE;
        }
        self.free = i;
        self.len -= 1;
        Some(info)
    }

    /// Marks a template as no longer findable (ip_vs_check_template's invalidation).
    pub(crate) fn invalidate(&mut self, i: u32) {
        if let Some(e) = self.entries.get_mut(i as usize) {
            e.flags |= flag::INVALID;
        }
    }

    pub(crate) fn adjust_control(&mut self, i: u32, delta: i32) {
        if let Some(e) = self.entries.get_mut(i as usize) {
            e.control = e.control.saturating_add_signed(delta);
        }
    }

    /// Processes the wheel up to `now`, examining at most `budget` entries. `decide` is asked about
    /// each entry whose time has come; removed entries are passed to it before they go. Returns the
    /// number of entries removed.
    pub fn expire(
        &mut self,
        now: Time,
        budget: usize,
        mut decide: impl FnMut(u32, &ConnInfo) -> Expiry,
    ) -> usize {
        let now_s = secs(now);
        let (mut examined, mut removed, mut slots) = (0usize, 0usize, 0u32);
        while self.wheel_tick <= now_s {
            let slot = (self.wheel_tick % WHEEL) as usize;
            let mut cur = self.wheel.get(slot).copied().unwrap_or(NONE);
            while let Some(e) = self.entry(cur).copied() {
                if examined >= budget {
                    return removed;
                }
                examined += 1;
                let next = e.wheel_next;
                if e.expires <= now_s {
                    let Some(info) = self.get(cur) else {
                        cur = next;
                        continue;
                    };
                    match decide(cur, &info) {
                        Expiry::Remove => {
                            self.remove(cur);
                            removed += 1;
                        }
                        Expiry::Rearm(at) => {
                            if let Some(x) = self.entries.get_mut(cur as usize) {
                                x.expires = secs(at).max(now_s + 1);
                            }
                            self.wheel_unlink(cur);
                            self.wheel_link(cur);
                        }
                    }
                } else if e.expires % WHEEL != u32::from(e.wheel_slot) {
                    // Refreshed since it was linked: move it to its slot now.
                    self.wheel_unlink(cur);
                    self.wheel_link(cur);
                }
                cur = next;
            }
            self.wheel_tick += 1;
            slots += 1;
            if slots >= WHEEL {
                // A whole lap examined: everything due has been seen.
                self.wheel_tick = now_s + 1;
                break;
            }
        }
        removed
    }

    /// Every live entry, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, ConnInfo)> + '_ {
        (0..self.entries.len() as u32).filter_map(|i| self.get(i).map(|c| (i, c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: u32, cport: u16) -> ConnKey<[u8; 4]> {
        ConnKey { proto: 6, caddr: c.to_be_bytes(), cport, vaddr: [192, 0, 2, 80], vport: 80 }
    }

    fn new(k: ConnKey<[u8; 4]>, expires: Time, reply: bool) -> NewEntry<[u8; 4]> {
        NewEntry {
            key: k,
            raddr: [203, 0, 113, 10],
            rport: 8080,
            flags: 0,
            state: 0,
            fwd: 0,
            dest: 7,
            control: NONE,
            expires,
            reply,
        }
    }

    #[test]
    fn insert_lookup_remove() {
        let mut t = ConnTable::<[u8; 4]>::new(100, 42);
        let a = t.insert(&new(key(1, 1000), 5_000, true)).unwrap();
        let b = t.insert(&new(key(2, 1000), 5_000, false)).unwrap();
        assert_eq!(t.lookup(&key(1, 1000), false), Some(a));
        assert_eq!(t.lookup(&key(1, 1000), true), None, "not a template");
        assert_eq!(t.lookup(&key(1, 1001), false), None);
        assert_eq!(t.lookup_reply(6, &[203, 0, 113, 10], 8080, &1u32.to_be_bytes(), 1000), Some(a));
        assert_eq!(
            t.lookup_reply(6, &[203, 0, 113, 10], 8080, &2u32.to_be_bytes(), 1000),
            None,
            "DR: no reply index"
        );
        assert_eq!(t.len(), 2);
        assert_eq!(t.remove(a).unwrap().cport, 1000);
        assert_eq!(t.lookup(&key(1, 1000), false), None);
        assert_eq!(t.lookup_reply(6, &[203, 0, 113, 10], 8080, &1u32.to_be_bytes(), 1000), None);
        assert_eq!(t.lookup(&key(2, 1000), false), Some(b));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn full_table_refuses_new_and_keeps_old() {
        let mut t = ConnTable::<[u8; 4]>::new(3, 1);
        for c in 0..3 {
            t.insert(&new(key(c, 1), 1000, false)).unwrap();
        }
        assert_eq!(t.insert(&new(key(9, 1), 1000, false)), Err(Full));
        for c in 0..3 {
            assert!(t.lookup(&key(c, 1), false).is_some());
        }
        let i = t.lookup(&key(1, 1), false).unwrap();
        t.remove(i);
        assert!(t.insert(&new(key(9, 1), 1000, false)).is_ok(), "a freed slot is reused");
    }

    #[test]
    fn chains_survive_removal_in_any_order() {
        // 16 buckets, 200 entries: long chains; remove every third and check the rest.
        let mut t = ConnTable::<[u8; 4]>::new(200, 7);
        t.mask = 15;
        t.fwd_heads.truncate(16);
        t.rev_heads.truncate(16);
        let ids: Vec<u32> = (0..200).map(|c| t.insert(&new(key(c, 5), 10_000, true)).unwrap()).collect();
        for (c, &i) in ids.iter().enumerate().filter(|(c, _)| c % 3 == 0) {
            assert_eq!(t.remove(i).unwrap().caddr, IpAddr::from((c as u32).to_be_bytes()));
        }
        for c in 0..200u32 {
            let want = if c % 3 == 0 { None } else { Some(ids[c as usize]) };
            assert_eq!(t.lookup(&key(c, 5), false), want, "{c}");
            assert_eq!(t.lookup_reply(6, &[203, 0, 113, 10], 8080, &c.to_be_bytes(), 5), want);
        }
    }

    #[test]
    fn batch_lookup_equals_single_lookups() {
        let mut t = ConnTable::<[u8; 4]>::new(1000, 3);
        for c in 0..500 {
            t.insert(&new(key(c, 9), 1000, false)).unwrap();
        }
        // 70 keys (more than one batch): 50 present (450..500), 20 absent (500..520).
        let keys: Vec<_> = (450..520).map(|c| key(c, 9)).collect();
        let mut out = vec![None; keys.len()];
        t.lookup_batch(&keys, &mut out);
        for (k, o) in keys.iter().zip(&out) {
            assert_eq!(*o, t.lookup(k, false));
        }
        assert_eq!(out.iter().filter(|o| o.is_some()).count(), 50);
        assert!(out[50..].iter().all(Option::is_none));
    }

    #[test]
    fn the_wheel_expires_on_time_with_refresh_and_shortening() {
        let mut t = ConnTable::<[u8; 4]>::new(10, 0);
        let a = t.insert(&new(key(1, 1), 3_000, false)).unwrap();
        let b = t.insert(&new(key(2, 1), 5_000, false)).unwrap();
        let c = t.insert(&new(key(3, 1), 2_000_000, false)).unwrap(); // beyond one lap
        t.set_expiry(a, 10_000); // refreshed later: stays until 10 s
        t.set_expiry(c, 4_000); // shortened: moves now
        let mut gone = Vec::new();
        for s in 0..=12 {
            t.expire(s * 1000, 100, |i, _| {
                gone.push((s, i));
                Expiry::Remove
            });
        }
        assert_eq!(gone, vec![(4, c), (5, b), (10, a)]);
        assert!(t.is_empty());
    }

    #[test]
    fn long_timeouts_survive_laps_and_budgets_resume() {
        let mut t = ConnTable::<[u8; 4]>::new(3000, 0);
        let far = t.insert(&new(key(1, 1), 2_500_000, false)).unwrap(); // 2500 s: two laps
        for c in 0..2000 {
            t.insert(&new(key(100 + c, 1), 7_000, false)).unwrap();
        }
        let mut removed = 0;
        for s in 0..3000u64 {
            while {
                let n = t.expire(s * 1000, 64, |_, _| Expiry::Remove);
                removed += n;
                n == 64
            } {}
            if s == 2499 {
                assert!(t.get(far).is_some(), "not before its time");
            }
        }
        assert_eq!(removed, 2001);
        assert!(t.get(far).is_none());
    }

    #[test]
    fn rearm_keeps_an_entry() {
        let mut t = ConnTable::<[u8; 4]>::new(4, 0);
        let a = t.insert(&new(key(1, 0), 1_000, false)).unwrap();
        let mut n = 0;
        for s in 0..10 {
            t.expire(s * 1000, 10, |_, _| {
                n += 1;
                if n < 3 { Expiry::Rearm(s * 1000 + 2000) } else { Expiry::Remove }
            });
        }
        assert_eq!(n, 3);
        assert!(t.get(a).is_none());
    }

    #[test]
    fn entry_sizes() {
        assert_eq!(size_of::<Entry<[u8; 4]>>(), 64);
        assert_eq!(size_of::<Entry<[u8; 16]>>(), 128);
        let t = ConnTable::<[u8; 4]>::new(1 << 20, 0);
        assert_eq!(t.bytes_per_slot(), 64 + 8);
    }
}
