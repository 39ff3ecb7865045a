//! The hashing schedulers: dh and sh (256-bucket tables, ip_vs_dh.c / ip_vs_sh.c) and mh (Maglev
//! consistent hashing, ip_vs_mh.c).

use std::net::IpAddr;
use std::sync::Arc;

use super::SchedCtx;
use crate::service::{Dest, DestId};

const TAB_BITS: u32 = 8;
const TAB_SIZE: usize = 1 << TAB_BITS;

/// An address folded to 32 bits as IPVS does: IPv4 as is, IPv6 as the XOR of its four words.
fn fold(a: &IpAddr) -> u32 {
    match a {
        IpAddr::V4(v) => u32::from(*v),
        IpAddr::V6(v) => {
            let o = v.octets();
            (0..4).fold(0u32, |acc, i| {
                let w = o.get(i * 4..i * 4 + 4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                acc ^ w
            })
        }
    }
}

/// The kernel's hash_32(): multiply by the 32-bit golden ratio and keep the top bits.
fn hash_32(v: u32, bits: u32) -> u32 {
    v.wrapping_mul(0x61c8_8647) >> (32 - bits)
}

fn unavailable(d: Option<&Dest>) -> bool {
    d.is_none_or(|d| !d.available())
}

/// dh and sh: a 256-bucket table of destinations.
#[derive(Debug, Clone)]
pub struct SourceHash {
    buckets: [Option<DestId>; TAB_SIZE],
    /// sh repeats a destination `weight` times; dh gives each one bucket in turn.
    weighted: bool,
}

impl SourceHash {
    pub(super) fn new_dh() -> Self {
        Self { buckets: [None; TAB_SIZE], weighted: false }
    }

    pub(super) fn new_sh() -> Self {
        Self { buckets: [None; TAB_SIZE], weighted: true }
    }

    /// ip_vs_sh_reassign / ip_vs_dh_reassign: fill the buckets walking the list; sh moves on after
    /// `weight` buckets (a weight-0 server still gets one), dh after each bucket.
    pub(super) fn update(&mut self, ctx: &SchedCtx<'_>) {
        let list: Vec<(DestId, u32)> = ctx.iter().map(|(id, d)| (id, d.weight())).collect();
        if list.is_empty() {
            self.buckets = [None; TAB_SIZE];
            return;
        }
        let (mut p, mut count) = (0usize, 0u32);
        for b in self.buckets.iter_mut() {
            let (id, w) = list[p % list.len()];
            *b = Some(id);
            count += 1;
            if !self.weighted || count >= w {
                p += 1;
                count = 0;
            }
        }
    }

    /// ip_vs_dh_schedule: hash the destination address; no fallback.
    pub(super) fn schedule_dh(&self, ctx: &SchedCtx<'_>) -> Option<DestId> {
        let h = crate::num::masked(u64::from(fold(&ctx.dst)).wrapping_mul(2_654_435_761), TAB_SIZE - 1);
        let id = (*self.buckets.get(h)?)?;
        if unavailable(ctx.dest(id)) { None } else { Some(id) }
    }

    fn sh_key(addr: &IpAddr, port: u16, offset: u32) -> usize {
        (offset.wrapping_add(hash_32(u32::from(port).wrapping_add(fold(addr)), TAB_BITS)) as usize)
            & (TAB_SIZE - 1)
    }

    /// ip_vs_sh_schedule: hash the source address (and port with sh-port); with sh-fallback, walk
    /// the table from there to the first available server (ip_vs_sh_get_fallback).
    pub(super) fn schedule_sh(&self, ctx: &SchedCtx<'_>) -> Option<DestId> {
        let port = if ctx.flags.port { ctx.sport } else { 0 };
        let ihash = Self::sh_key(&ctx.src, port, 0);
        let id = (*self.buckets.get(ihash)?)?;
        if !unavailable(ctx.dest(id)) {
            return Some(id);
        }
        if !ctx.flags.fallback {
            return None;
        }
        for offset in 0..TAB_SIZE {
            let roffset = (offset + ihash) % TAB_SIZE;
            let h = Self::sh_key(&ctx.src, port, crate::num::idx32(roffset));
            if let Some(Some(id)) = self.buckets.get(h) {
                if !unavailable(ctx.dest(*id)) {
                    return Some(*id);
                }
            }
        }
        None
    }
}

/// A keyed 64-bit mixer (the splitmix64 finaliser over seed ⊕ inputs). Linux uses siphash with random
/// keys; any well-mixed keyed hash gives Maglev its properties, and a seed keeps shards identical.
fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z = seed ^ a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn addr_key(a: &IpAddr) -> u64 {
    match a {
        IpAddr::V4(v) => u64::from(u32::from(*v)),
        IpAddr::V6(v) => {
            let x = u128::from(*v);
            crate::num::fold128(x, 0)
        }
    }
}

/// Maglev hashing (Eisenbud et al., NSDI 2016; ip_vs_mh.c): a prime-sized lookup table filled by each
/// server's permutation in turn, `weight / gcd` slots per turn. Removing one of N servers moves
/// about 1/N of the keys; quiescing one (weight 0) keeps the table and lets mh-fallback walk on.
///
/// The table holds positions in the service's server list, not server ids, so one built from the
/// same list (the management core's copy of the configuration) serves every worker's shard: a
/// worker can take a table shipped to it ([`Maglev::install`]) instead of spending a millisecond or
/// more building 65,537 slots itself ([`Maglev::defer`]).
#[derive(Debug, Clone)]
pub struct Maglev {
    table: Arc<[u32]>,
    size: u32,
    seed: u64,
    /// Tables come from elsewhere: an update only marks the table stale.
    deferred: bool,
    /// The server list changed and no table for it has been installed yet.
    stale: bool,
}

/// A table slot with no server.
const NO_SERVER: u32 = u32::MAX;

impl Maglev {
    pub(super) fn new(size: u32, seed: u64) -> Self {
        Self { table: Arc::from(Vec::new()), size, seed, deferred: false, stale: false }
    }

    /// From now on, updates wait for [`Maglev::install`] instead of building.
    pub(super) fn defer(&mut self) {
        self.deferred = true;
    }

    /// The current table (to ship to the shards).
    pub(super) fn table(&self) -> Arc<[u32]> {
        Arc::clone(&self.table)
    }

    /// Takes a table built elsewhere from the same server list.
    pub(super) fn install(&mut self, table: Arc<[u32]>) {
        if table.len() == self.size as usize || table.is_empty() {
            self.table = table;
            self.stale = false;
        }
    }

    /// ip_vs_mh_populate (or, deferred, a note that the table no longer fits the list).
    pub(super) fn update(&mut self, ctx: &SchedCtx<'_>) {
        if self.deferred {
            self.stale = true;
            return;
        }
        self.table = Self::build(ctx, self.size, self.seed).into();
    }

    fn build(ctx: &SchedCtx<'_>, size: u32, seed: u64) -> Vec<u32> {
        let m = size as usize;
        let list: Vec<(u32, &Dest)> = ctx
            .ids
            .iter()
            .enumerate()
            .filter_map(|(i, &id)| Some((u32::try_from(i).ok()?, ctx.dest(id)?)))
            .filter(|(_, d)| d.last_weight > 0)
            .collect();
        if list.is_empty() {
            return Vec::new();
        }
        let mut table = vec![NO_SERVER; m];
        let g = list.iter().map(|(_, d)| d.last_weight).fold(0, |a, b| if a == 0 { b } else { gcd(a, b) });
        // Per server: (permutation position, skip, turns).
        let mut perm: Vec<(u64, u64, u32)> = list
            .iter()
            .map(|(_, d)| {
                let k = addr_key(&d.cfg.addr);
                let p = u64::from(d.cfg.port);
                let offset = mix(seed, k, p) % u64::from(size);
                let skip = mix(seed ^ 0x5bd1_e995, k, p) % u64::from(size - 1) + 1;
                (offset, skip, (d.last_weight / g.max(1)).max(1))
            })
            .collect();
        let mut filled = 0usize;
        'fill: loop {
            for (i, (pos, _)) in list.iter().enumerate() {
                let Some(ds) = perm.get_mut(i) else { continue };
                for _ in 0..ds.2 {
                    let mut c = usize::try_from(ds.0).unwrap_or(usize::MAX);
                    while table.get(c).is_some_and(|s| *s != NO_SERVER) {
                        ds.0 = (ds.0 + ds.1) % u64::from(size);
                        c = usize::try_from(ds.0).unwrap_or(usize::MAX);
                    }
                    if let Some(slot) = table.get_mut(c) {
                        *slot = *pos;
                    }
                    filled += 1;
                    if filled == m {
                        break 'fill;
                    }
                }
            }
        }
        table
    }

    fn key(&self, ctx: &SchedCtx<'_>, offset: u64) -> usize {
        let port = if ctx.flags.port { u64::from(ctx.sport) } else { 0 };
        let h =
            mix(self.seed ^ 0x7f4a_7c15, addr_key(&ctx.src), (port << 32) | offset) % u64::from(self.size);
        usize::try_from(h).unwrap_or(0)
    }

    #[inline]
    fn at(&self, ctx: &SchedCtx<'_>, slot: usize) -> Option<DestId> {
        let pos = *self.table.get(slot)?;
        ctx.ids.get(pos as usize).copied()
    }

    /// ip_vs_mh_schedule (+ ip_vs_mh_get_fallback with mh-fallback). Between a change of the server
    /// list and the arrival of its table, a deferred shard answers from the old one as long as it
    /// picks an available server of the list, and builds the table itself otherwise (rare: only
    /// when the shipped table is late).
    pub(super) fn schedule(&mut self, ctx: &SchedCtx<'_>) -> Option<DestId> {
        if self.stale && self.table.len() != self.size as usize {
            self.table = Self::build(ctx, self.size, self.seed).into();
            self.stale = false;
        }
        let ihash = self.key(ctx, 0);
        let id = self.at(ctx, ihash)?;
        if !unavailable(ctx.dest(id)) {
            return Some(id);
        }
        if !ctx.flags.fallback {
            return None;
        }
        for offset in 0..u64::from(self.size) {
            let roffset = (offset + ihash as u64) % u64::from(self.size);
            let id = self.at(ctx, self.key(ctx, roffset))?;
            if !unavailable(ctx.dest(id)) {
                return Some(id);
            }
        }
        None
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}
