//! The hashing schedulers: dh and sh (256-bucket tables, ip_vs_dh.c / ip_vs_sh.c) and mh (Maglev
//! consistent hashing, ip_vs_mh.c).

use std::net::IpAddr;

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
        let h = (u64::from(fold(&ctx.dst)).wrapping_mul(2_654_435_761) as usize) & (TAB_SIZE - 1);
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
            let h = Self::sh_key(&ctx.src, port, roffset as u32);
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
            (x as u64) ^ ((x >> 64) as u64)
        }
    }
}

/// Maglev hashing (Eisenbud et al., NSDI 2016; ip_vs_mh.c): a prime-sized lookup table filled by each
/// server's permutation in turn, `weight / gcd` slots per turn. Removing one of N servers moves
/// about 1/N of the keys; quiescing one (weight 0) keeps the table and lets mh-fallback walk on.
#[derive(Debug, Clone)]
pub struct Maglev {
    table: Vec<Option<DestId>>,
    size: u32,
    seed: u64,
}

impl Maglev {
    pub(super) fn new(size: u32, seed: u64) -> Self {
        Self { table: Vec::new(), size, seed }
    }

    /// ip_vs_mh_populate.
    pub(super) fn update(&mut self, ctx: &SchedCtx<'_>) {
        let m = self.size as usize;
        self.table = vec![None; m];
        let list: Vec<(DestId, &Dest)> = ctx.iter().filter(|(_, d)| d.last_weight > 0).collect();
        if list.is_empty() {
            return;
        }
        let g = list.iter().map(|(_, d)| d.last_weight).fold(0, |a, b| if a == 0 { b } else { gcd(a, b) });
        // Per server: (permutation position, skip, turns).
        let mut perm: Vec<(u64, u64, u32)> = list
            .iter()
            .map(|(_, d)| {
                let k = addr_key(&d.cfg.addr);
                let p = u64::from(d.cfg.port);
                let offset = mix(self.seed, k, p) % u64::from(self.size);
                let skip = mix(self.seed ^ 0x5bd1_e995, k, p) % u64::from(self.size - 1) + 1;
                (offset, skip, (d.last_weight / g.max(1)).max(1))
            })
            .collect();
        let mut filled = 0usize;
        'fill: loop {
            for (i, (id, _)) in list.iter().enumerate() {
                let Some(ds) = perm.get_mut(i) else { continue };
                for _ in 0..ds.2 {
                    let mut c = ds.0 as usize;
                    while self.table.get(c).is_some_and(Option::is_some) {
                        ds.0 = (ds.0 + ds.1) % u64::from(self.size);
                        c = ds.0 as usize;
                    }
                    if let Some(slot) = self.table.get_mut(c) {
                        *slot = Some(*id);
                    }
                    filled += 1;
                    if filled == m {
                        break 'fill;
                    }
                }
            }
        }
    }

    fn key(&self, ctx: &SchedCtx<'_>, offset: u64) -> usize {
        let port = if ctx.flags.port { u64::from(ctx.sport) } else { 0 };
        (mix(self.seed ^ 0x7f4a_7c15, addr_key(&ctx.src), (port << 32) | offset) % u64::from(self.size))
            as usize
    }

    /// ip_vs_mh_schedule (+ ip_vs_mh_get_fallback with mh-fallback).
    pub(super) fn schedule(&self, ctx: &SchedCtx<'_>) -> Option<DestId> {
        let ihash = self.key(ctx, 0);
        let id = (*self.table.get(ihash)?)?;
        if !unavailable(ctx.dest(id)) {
            return Some(id);
        }
        if !ctx.flags.fallback {
            return None;
        }
        for offset in 0..u64::from(self.size) {
            let roffset = (offset + ihash as u64) % u64::from(self.size);
            let id = (*self.table.get(self.key(ctx, roffset))?)?;
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
