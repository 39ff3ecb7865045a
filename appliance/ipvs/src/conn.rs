//! One worker's connection table: fixed capacity, no allocation after construction, lookup of a
//! client's packet (client -> virtual) and, for NAT, of a real server's reply (real -> client) in
//! one index keyed by the client's endpoint, persistence templates alongside, and expiry by a timer
//! wheel.
//!
//! # Memory per connection
//!
//! An IPv4 entry is exactly 64 bytes, one cache line (`#[repr(C, align(64))]`; 50 bytes of fields):
//! the three addresses (12), three ports (6), protocol/state/flags/forwarding (4), destination,
//! template link (or, in a template, its count of controlled connections), expiry second, two
//! timer-wheel links and a free-list link (24), and the wheel slot (2). The alignment makes every
//! lookup touch exactly one line of the entry.
//!
//! The index is an open-addressing table of 8-byte slots — a 32-bit hash signature and the entry's
//! index — with at least 1.25 slots per entry (a power of two, so load <= 0.8). It hashes what both
//! directions of a connection carry: protocol, client address and client port, as the kernel's
//! connection table does (`ip_vs_conn_hashkey`). A client's packet is looked up by its source, a
//! reply by its destination, and the entry found is checked against the whole tuple (a client
//! endpoint with connections to several services has them all at one home). A lookup reads one index
//! line, compares signatures there, and touches only the entries whose signature matches: two cache
//! misses per hit, one per miss, and in a burst all of them overlap. A new NAT connection writes one
//! slot, in the line its SYN's lookup already brought in (a second index, by the reply tuple, cost
//! every new NAT connection a cache miss of its own). 10 M IPv4 connections: 640 MB of entries +
//! 16 M slots × 8 B (134 MB) = 774 MB.
//! IPv6 entries are 128 bytes (three 16-byte addresses do not fit a line).
//!
//! # Expiry
//!
//! A wheel of 1024 one-second slots, each an intrusive doubly-linked list. Refreshing an entry to a
//! later time only rewrites its expiry (it is moved when its old slot comes round); shortening one
//! (a state change to a shorter timeout) moves it at once. An entry more than a lap ahead waits in
//! the last slot of the current lap and moves on each time that slot comes round, so a slot never
//! holds entries that are not due (which could stall a budgeted run at the slot's head). [`ConnTable::expire`] takes a budget, so
//! the worker spreads expiry over its loop and never scans the table on the packet path.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::Time;

const NONE: u32 = u32::MAX;
const WHEEL: u32 = 1024;
/// Wheel seconds one expiry run walks at most (each is a load of an empty list head when idle).
const MAX_SLOTS_PER_RUN: u32 = 4 * WHEEL;
/// Lookups resolved together by [`ConnTable::lookup_burst`]: a burst.
pub const BATCH: usize = 32;

/// How [`ConnTable::lookup_burst`] asks the CPU for a cache line ahead of use. A prefetch
/// instruction needs `unsafe`, which this crate does not have: the data plane passes the CPU's
/// (`rvs_dpdk::prefetch`). A prefetch retires at once, where a plain load of a missing line holds
/// its place in the reorder buffer: with loads, a burst's 32 misses did not all get under way
/// together (at 1M flows the lookup stage took ~35 cycles a packet more, measured with
/// `pipeline_rate`).
pub trait Prefetch {
    /// Starts bringing in the cache line `r` begins in; returns at once, changes nothing.
    fn line<T>(&self, r: &T);
}

/// No prefetch: each line is loaded when it is read (tests, benches and tools without DPDK).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPrefetch;

impl Prefetch for NoPrefetch {
    #[inline]
    fn line<T>(&self, _: &T) {}
}

/// Entry flags.
pub(crate) mod flag {
    pub const LIVE: u8 = 1;
    pub const TEMPLATE: u8 = 2;
    /// Counted in InActConn rather than ActiveConn (IP_VS_CONN_F_INACTIVE).
    pub const INACTIVE: u8 = 4;
    /// Replies not seen yet / never (IP_VS_CONN_F_NOOUTPUT): the INPUT-ONLY state table applies.
    pub const NOOUTPUT: u8 = 8;
    /// Replies find it (NAT).
    pub const REPLY_HASHED: u8 = 16;
    /// A template that may no longer be found (its destination went away); kept until its
    /// controlled connections are gone.
    pub const INVALID: u8 = 32;
    /// A copy of another shard's NAT connection, kept where the NIC delivers its replies
    /// ([`crate::Ipvs::insert_mirror`]); not counted in the destination's connections.
    pub const MIRROR: u8 = 64;
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
        crate::num::fold128(x, 17)
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
    /// The next free slot, while the entry is free.
    free_next: u32,
    /// The wheel slot the entry is linked in (its expiry may have moved on since).
    wheel_slot: u16,
}

const _: () = assert!(size_of::<Entry<[u8; 4]>>() == 64, "an IPv4 entry is one cache line");

/// The fields of an entry the packet path decides with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hot {
    pub proto: u8,
    pub state: u8,
    pub flags: u8,
    pub rport: u16,
    pub dest: u32,
    pub control: u32,
}

/// What the TCP state step reads of an entry: eight bytes, so it travels in one register (read
/// through a reference to a just-written `Hot`, the same fields stalled every packet on store
/// forwarding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    pub dest: u32,
    pub proto: u8,
    pub state: u8,
    pub flags: u8,
}

impl Hot {
    #[inline]
    pub(crate) fn step(&self) -> Step {
        Step { dest: self.dest, proto: self.proto, state: self.state, flags: self.flags }
    }
}

impl ConnInfo {
    #[inline]
    pub(crate) fn step(&self) -> Step {
        Step { dest: self.dest, proto: self.proto, state: self.state, flags: self.flags }
    }
}

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

    pub fn is_mirror(&self) -> bool {
        self.flags & flag::MIRROR != 0
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
    /// Replies find the entry (NAT).
    pub reply: bool,
}

/// A packet's tuple as it arrives, for [`ConnTable::lookup_burst`]: `reply` when it may be a real
/// server's answer (looked up by its destination, the client), else a client's packet (by its
/// source).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmTuple<A> {
    pub proto: u8,
    pub src: A,
    pub sport: u16,
    pub dst: A,
    pub dport: u16,
    pub reply: bool,
}

impl<A: Copy> WarmTuple<A> {
    /// A client's packet of the connection `k` names.
    pub fn client(k: &ConnKey<A>) -> Self {
        Self { proto: k.proto, src: k.caddr, sport: k.cport, dst: k.vaddr, dport: k.vport, reply: false }
    }
}

/// The table is full: the new connection is refused, existing ones are untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// The table's keyed hash of a client endpoint (protocol, address, port).
#[inline]
fn hash_client<A: Addr>(seed: u64, proto: u8, caddr: &A, cport: u16) -> u64 {
    let x = caddr.fold() ^ seed;
    let y = (u64::from(proto) << 16) | u64::from(cport);
    let mut h = x.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ y.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    h ^= h >> 31;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 29)
}

/// The hash an entry is indexed by.
fn entry_hash<A: Addr>(seed: u64, e: &Entry<A>) -> u64 {
    hash_client(seed, e.proto, &e.caddr, e.cport)
}

/// An open-addressing index (linear probing) from a 64-bit hash to entry indexes. A slot holds the
/// hash's upper 32 bits as a signature and the entry index; its home position is the hash's lower
/// bits. Deletion shifts the following cluster back (no tombstones), asking the table for the home
/// of the entries it moves.
#[derive(Debug)]
struct Index {
    slots: Vec<u64>,
    mask: usize,
}

const EMPTY: u64 = u64::MAX;

/// The entry index a slot holds (its low 32 bits).
#[inline]
fn slot_idx(s: u64) -> u32 {
    u32::try_from(s & u64::from(u32::MAX)).unwrap_or(NONE)
}

#[inline]
fn slot(sig: u32, idx: u32) -> u64 {
    (u64::from(sig) << 32) | u64::from(idx)
}

impl Index {
    fn new(entries: usize) -> Self {
        let n = (entries + entries / 4).next_power_of_two().max(16);
        Self { slots: vec![EMPTY; n], mask: n - 1 }
    }

    #[inline]
    fn home(&self, h: u64) -> usize {
        crate::num::masked(h, self.mask)
    }

    /// The first entry index at or after probe position `from` whose signature matches, and the
    /// position after it (to continue on a false match).
    #[inline]
    fn candidate(&self, h: u64, mut pos: usize) -> Option<(u32, usize)> {
        let sig = (h >> 32) as u32;
        for _ in 0..self.slots.len() {
            let s = *self.slots.get(pos)?;
            if s == EMPTY {
                return None;
            }
            pos = (pos + 1) & self.mask;
            if (s >> 32) as u32 == sig {
                return Some((slot_idx(s), pos));
            }
        }
        None
    }

    #[inline]
    fn find(&self, h: u64, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut pos = self.home(h);
        while let Some((idx, next)) = self.candidate(h, pos) {
            if is(idx) {
                return Some(idx);
            }
            pos = next;
        }
        None
    }

    fn insert(&mut self, h: u64, idx: u32) {
        let mut pos = self.home(h);
        for _ in 0..self.slots.len() {
            if let Some(s) = self.slots.get_mut(pos) {
                if *s == EMPTY {
                    *s = slot((h >> 32) as u32, idx);
                    return;
                }
            }
            pos = (pos + 1) & self.mask;
        }
    }

    /// Removes `idx` (hashed `h`), then shifts back the entries after it that may move closer to
    /// their homes.
    fn remove(&mut self, h: u64, idx: u32, home_of: impl Fn(u32) -> Option<usize>) {
        let mut pos = self.home(h);
        let mut hole = None;
        for _ in 0..self.slots.len() {
            match self.slots.get(pos).copied() {
                None | Some(EMPTY) => break,
                Some(s) if slot_idx(s) == idx => {
                    hole = Some(pos);
                    break;
                }
                Some(_) => pos = (pos + 1) & self.mask,
            }
        }
        let Some(mut i) = hole else { return };
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let s = self.slots.get(j).copied().unwrap_or(EMPTY);
            if s == EMPTY || j == i {
                break;
            }
            let Some(home) = home_of(slot_idx(s)) else { break };
            // Move slot j into the hole unless its home lies cyclically in (i, j].
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(i) & self.mask) {
                if let Some(x) = self.slots.get_mut(i) {
                    *x = s;
                }
                i = j;
            }
        }
        if let Some(x) = self.slots.get_mut(i) {
            *x = EMPTY;
        }
    }
}

/// A connection table for one address family.
#[derive(Debug)]
pub struct ConnTable<A> {
    entries: Vec<Entry<A>>,
    index: Index,
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
    /// clients cannot aim at one region of the index).
    pub fn new(capacity: usize, seed: u64) -> Self {
        let capacity = capacity.clamp(1, NONE as usize - 1);
        let mut entries = vec![Entry::<A>::default(); capacity];
        let last = entries.len().saturating_sub(1);
        for (i, e) in entries.iter_mut().enumerate() {
            e.free_next = if i == last { NONE } else { crate::num::idx32(i + 1) };
        }
        Self {
            entries,
            index: Index::new(capacity),
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

    /// Bytes of memory per connection slot: the entry plus its share of the index (rounded down).
    pub fn bytes_per_slot(&self) -> usize {
        self.memory_bytes() / self.entries.len().max(1)
    }

    /// Bytes the table holds: entries, the index and the wheel.
    pub fn memory_bytes(&self) -> usize {
        self.entries.len() * size_of::<Entry<A>>() + self.index.slots.len() * 8 + self.wheel.len() * 4
    }

    #[inline]
    fn hash(&self, proto: u8, caddr: &A, cport: u16) -> u64 {
        hash_client(self.seed, proto, caddr, cport)
    }

    /// A tuple's hash: the client is a client packet's source and a reply's destination.
    #[inline]
    fn tuple_hash(&self, t: &WarmTuple<A>) -> u64 {
        if t.reply { self.hash(t.proto, &t.dst, t.dport) } else { self.hash(t.proto, &t.src, t.sport) }
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

    /// The connection (or, with `template`, the persistence template) with this forward tuple.
    #[inline]
    pub fn lookup(&self, k: &ConnKey<A>, template: bool) -> Option<u32> {
        let h = self.hash(k.proto, &k.caddr, k.cport);
        self.index.find(h, |i| self.entry(i).is_some_and(|e| Self::matches(e, k, template)))
    }

    /// Whether entry `i` is the one `t` looks up: a client packet's live, non-template connection, or
    /// a reply's NAT connection.
    #[inline]
    fn is_tuple(&self, i: u32, t: &WarmTuple<A>) -> bool {
        let Some(e) = self.entry(i) else { return false };
        if t.reply {
            e.rport == t.sport
                && e.cport == t.dport
                && e.raddr == t.src
                && e.caddr == t.dst
                && e.proto == t.proto
                && e.flags & flag::REPLY_HASHED != 0
        } else {
            let k = ConnKey { proto: t.proto, caddr: t.src, cport: t.sport, vaddr: t.dst, vport: t.dport };
            Self::matches(e, &k, false)
        }
    }

    /// Whether `hint` (a lookup's result earlier in the burst) still names `t`'s connection: the
    /// packets decided since may have ended it or reused its slot.
    #[inline]
    pub fn still(&self, hint: u32, t: &WarmTuple<A>) -> bool {
        self.is_tuple(hint, t)
    }

    /// Looks up a burst of tuples, client packets and replies mixed, with their trips to memory
    /// overlapped: hash all and prefetch every home index line; prefetch the entry each home slot
    /// names; then resolve (on a false first candidate the probe continues over lines now cached).
    /// `out[i]` is the entry of `burst[i]`.
    pub fn lookup_burst(&self, burst: &[WarmTuple<A>], out: &mut [Option<u32>], pf: &impl Prefetch) {
        for (chunk, out) in burst.chunks(BATCH).zip(out.chunks_mut(BATCH)) {
            let mut hashes = [0u64; BATCH];
            for (h, t) in hashes.iter_mut().zip(chunk) {
                *h = self.tuple_hash(t);
                if let Some(s) = self.index.slots.get(self.index.home(*h)) {
                    pf.line(s);
                }
            }
            let mut cand = [NONE; BATCH];
            for (c, h) in cand.iter_mut().zip(&hashes).take(chunk.len()) {
                if let Some((i, _)) = self.index.candidate(*h, self.index.home(*h)) {
                    *c = i;
                    if let Some(e) = self.entry(i) {
                        pf.line(e);
                    }
                }
            }
            for (((o, t), &h), &c) in out.iter_mut().zip(chunk).zip(&hashes).zip(&cand) {
                *o = if c == NONE {
                    None
                } else if self.is_tuple(c, t) {
                    Some(c)
                } else {
                    self.index.find(h, |i| self.is_tuple(i, t))
                };
            }
        }
    }

    /// The NAT connection a reply (real server -> client) belongs to.
    pub fn lookup_reply(&self, proto: u8, raddr: &A, rport: u16, caddr: &A, cport: u16) -> Option<u32> {
        let t = WarmTuple { proto, src: *raddr, sport: rport, dst: *caddr, dport: cport, reply: true };
        self.index.find(self.tuple_hash(&t), |i| self.is_tuple(i, &t))
    }

    /// Adds an entry; [`Full`] when no slot is free.
    pub fn insert(&mut self, n: &NewEntry<A>) -> Result<u32, Full> {
        let i = self.free;
        let h = self.hash(n.key.proto, &n.key.caddr, n.key.cport);
        let e = self.entries.get_mut(i as usize).ok_or(Full)?;
        self.free = e.free_next;
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
            free_next: NONE,
            wheel_slot: 0,
        };
        self.index.insert(h, i);
        self.wheel_link(i);
        self.len += 1;
        Ok(i)
    }

    /// What the packet path reads of a live entry (no addresses: converting them costs more than
    /// the rest of a hit).
    #[inline]
    pub(crate) fn hot(&self, i: u32) -> Option<Hot> {
        let e = self.entry(i).filter(|e| e.flags & flag::LIVE != 0)?;
        Some(Hot {
            proto: e.proto,
            state: e.state,
            flags: e.flags,
            rport: e.rport,
            dest: e.dest,
            control: e.control,
        })
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

    /// Links entry `i` into the slot of its expiry, or, when that is a lap or more ahead, into the
    /// last slot of the current lap (it moves on from there when that slot comes round). So every
    /// entry the current slot holds is due or has moved on, and each one examined leaves the slot:
    /// the expiry run always progresses. (Linking by `expires % WHEEL` alone let entries of later
    /// laps pile up at the head of a slot and stall the wheel for good once a budget's worth did.)
    fn wheel_link(&mut self, i: u32) {
        let tick = self.wheel_tick;
        let Some(e) = self.entries.get_mut(i as usize) else { return };
        let slot = (e.expires.clamp(tick, tick.saturating_add(WHEEL - 1)) % WHEEL) as usize;
        let head = self.wheel.get(slot).copied().unwrap_or(NONE);
        e.wheel_next = head;
        e.wheel_prev = NONE;
        // slot < WHEEL.
        e.wheel_slot = u16::try_from(slot).unwrap_or(0);
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

    /// Removes entry `i` and returns what it held.
    pub fn remove(&mut self, i: u32) -> Option<ConnInfo> {
        let info = self.get(i)?;
        let h = entry_hash(self.seed, self.entry(i)?);
        // Moving index slots needs their entries' home positions: rehash those entries.
        let (entries, seed, mask) = (&self.entries, self.seed, self.index.mask);
        self.index
            .remove(h, i, |j| Some(crate::num::masked(entry_hash(seed, entries.get(j as usize)?), mask)));
        self.wheel_unlink(i);
        let free = self.free;
        if let Some(e) = self.entries.get_mut(i as usize) {
            e.flags = 0;
            e.free_next = free;
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
                } else {
                    // Refreshed since it was linked, or parked here from an earlier lap: it moves
                    // to a later slot (never this one, see wheel_link).
                    self.wheel_unlink(cur);
                    self.wheel_link(cur);
                }
                cur = next;
            }
            self.wheel_tick += 1;
            slots += 1;
            if slots >= MAX_SLOTS_PER_RUN {
                // Far behind (time jumped): catch up over the next runs. No jump to `now`: entries
                // parked in the lap's last slot are placed relative to the slots actually walked.
                break;
            }
        }
        removed
    }

    /// Every live entry, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, ConnInfo)> + '_ {
        (0..crate::num::idx32(self.entries.len())).filter_map(|i| self.get(i).map(|c| (i, c)))
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
            "DR: replies do not find it"
        );
        assert_eq!(t.len(), 2);
        assert_eq!(t.remove(a).unwrap().cport, 1000);
        assert_eq!(t.lookup(&key(1, 1000), false), None);
        assert_eq!(t.lookup_reply(6, &[203, 0, 113, 10], 8080, &1u32.to_be_bytes(), 1000), None);
        assert_eq!(t.lookup(&key(2, 1000), false), Some(b));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn one_client_endpoint_in_several_services_is_told_apart_both_ways() {
        let mut t = ConnTable::<[u8; 4]>::new(100, 5);
        // The same client address and port to two virtual services (so one home in the index),
        // NAT to two different real servers.
        let k1 = key(1, 4000);
        let k2 = ConnKey { vaddr: [192, 0, 2, 81], ..k1 };
        let a = t.insert(&new(k1, 5_000, true)).unwrap();
        let b = t.insert(&NewEntry { raddr: [203, 0, 113, 11], ..new(k2, 5_000, true) }).unwrap();
        assert_eq!(t.lookup(&k1, false), Some(a));
        assert_eq!(t.lookup(&k2, false), Some(b));
        let c = 1u32.to_be_bytes();
        assert_eq!(t.lookup_reply(6, &[203, 0, 113, 10], 8080, &c, 4000), Some(a));
        assert_eq!(t.lookup_reply(6, &[203, 0, 113, 11], 8080, &c, 4000), Some(b));
        assert_eq!(t.lookup_reply(6, &[203, 0, 113, 12], 8080, &c, 4000), None);
        let reply = |raddr| WarmTuple { proto: 6, src: raddr, sport: 8080, dst: c, dport: 4000, reply: true };
        let burst = [
            WarmTuple::client(&k2),
            WarmTuple::client(&k1),
            reply([203, 0, 113, 11]),
            reply([203, 0, 113, 10]),
        ];
        let mut out = [None; 4];
        t.lookup_burst(&burst, &mut out, &NoPrefetch);
        assert_eq!(out, [Some(b), Some(a), Some(b), Some(a)]);
        assert!(t.remove(a).is_some());
        assert_eq!(t.lookup(&k2, false), Some(b));
        assert_eq!(t.lookup_reply(6, &[203, 0, 113, 11], 8080, &c, 4000), Some(b));
        assert_eq!(t.lookup(&k1, false), None);
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
    fn clusters_survive_removal_in_any_order() {
        // Remove every third entry and check that every other one is still found, both ways.
        // A tiny index (256 slots for 200 entries: load 0.8) makes long probe clusters.
        let mut t = ConnTable::<[u8; 4]>::new(200, 7);
        assert_eq!(t.index.slots.len(), 256);
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
    fn burst_lookup_equals_single_lookups_both_ways() {
        let mut t = ConnTable::<[u8; 4]>::new(1000, 3);
        for c in 0..500 {
            t.insert(&new(key(c, 9), 1000, c % 2 == 0)).unwrap();
        }
        // 70 client tuples (more than one batch): 50 present (450..500), 20 absent (500..520); and
        // the replies of the same, present only for the reply-hashed (even) ones.
        let keys: Vec<_> = (450..520).map(|c| key(c, 9)).collect();
        let mut burst: Vec<WarmTuple<[u8; 4]>> = keys.iter().map(WarmTuple::client).collect();
        burst.extend(keys.iter().map(|k| WarmTuple {
            proto: k.proto,
            src: [203, 0, 113, 10],
            sport: 8080,
            dst: k.caddr,
            dport: k.cport,
            reply: true,
        }));
        let mut out = vec![None; burst.len()];
        t.lookup_burst(&burst, &mut out, &NoPrefetch);
        for (k, o) in keys.iter().zip(&out) {
            assert_eq!(*o, t.lookup(k, false));
        }
        for (k, o) in keys.iter().zip(&out[70..]) {
            assert_eq!(*o, t.lookup_reply(k.proto, &[203, 0, 113, 10], 8080, &k.caddr, k.cport));
        }
        assert_eq!(out[..70].iter().filter(|o| o.is_some()).count(), 50);
        assert_eq!(out[70..].iter().filter(|o| o.is_some()).count(), 25);
        assert!(out[50..70].iter().all(Option::is_none));
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

    /// The stall a long-uptime director with `-p 3600` met: entries a lap or more ahead sat at the
    /// head of the current slot, each expiry run re-examined them from the head and stopped at its
    /// budget, so the wheel never advanced and nothing expired again. Simulated time, 100 new
    /// long-lived entries and 50 short ones a second, the worker's budget per millisecond.
    #[test]
    fn long_timeouts_never_stall_the_wheel() {
        let mut t = ConnTable::<[u8; 4]>::new(400_000, 0);
        let mut c = 0u32;
        let mut shorts = std::collections::VecDeque::new();
        let mut late = 0;
        for s in 0..4000u64 {
            for _ in 0..100 {
                c += 1;
                t.insert(&new(key(c, 1), (s + 3600) * 1000, false)).expect("full: the wheel stalled");
            }
            for _ in 0..50 {
                c += 1;
                t.insert(&new(key(c, 2), (s + 10) * 1000, false)).expect("full: the wheel stalled");
                shorts.push_back((s + 10, c));
            }
            for ms in 0..1000 {
                t.expire(s * 1000 + ms, 256, |_, _| Expiry::Remove);
            }
            while let Some(&(due, c)) = shorts.front() {
                if due + 1 > s {
                    break;
                }
                late += usize::from(t.lookup(&key(c, 2), false).is_some());
                shorts.pop_front();
            }
        }
        assert_eq!(late, 0, "short entries kept past their time");
        // Every long entry inserted before second 400 is gone by second 4000.
        assert!(t.len() < 100 * 3600 + 50 * 12, "{} entries left", t.len());
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

    proptest::proptest! {
        /// Any sequence of inserts and removals, on a small, crowded table: every live key is found
        /// (forward and reply), every removed one is not — checked against a HashMap model.
        #[test]
        fn index_matches_a_model(ops in proptest::collection::vec((proptest::prelude::any::<bool>(), 0u32..300), 1..600)) {
            let mut t = ConnTable::<[u8; 4]>::new(240, 11);
            let mut model = std::collections::HashMap::new();
            for (insert, c) in ops {
                if insert && !model.contains_key(&c) {
                    if let Ok(i) = t.insert(&new(key(c, 7), 100_000, c % 2 == 0)) {
                        model.insert(c, i);
                    }
                } else if let Some(i) = model.remove(&c) {
                    proptest::prop_assert!(t.remove(i).is_some());
                }
                proptest::prop_assert_eq!(t.len(), model.len());
            }
            for c in 0..300u32 {
                let want = model.get(&c).copied();
                proptest::prop_assert_eq!(t.lookup(&key(c, 7), false), want);
                let rev = t.lookup_reply(6, &[203, 0, 113, 10], 8080, &c.to_be_bytes(), 7);
                proptest::prop_assert_eq!(rev, want.filter(|_| c % 2 == 0));
            }
        }
    }

    #[test]
    fn entry_sizes() {
        assert_eq!(size_of::<Entry<[u8; 4]>>(), 64);
        assert_eq!(size_of::<Entry<[u8; 16]>>(), 128);
        let t = ConnTable::<[u8; 4]>::new(1 << 20, 0);
        assert_eq!(t.bytes_per_slot(), 64 + 16, "2^20 entries: 2^21 index slots of 8 bytes");
        let t = ConnTable::<[u8; 4]>::new(10_000_000, 0);
        assert_eq!(t.memory_bytes(), 640_000_000 + (1 << 24) * 8 + 4096);
        assert!(t.memory_bytes() < 1 << 30, "10 M connections in less than 1 GiB");
    }
}
