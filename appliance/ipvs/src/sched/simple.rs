//! The list-walking schedulers: rr, wrr, lc, wlc, sed, nq, fo, ovf, twos.

use super::SchedCtx;
use crate::service::{Dest, DestId};

/// ip_vs_rr_schedule: the next candidate after the last one picked.
#[derive(Debug, Clone, Default)]
pub struct RoundRobin {
    /// Position in the list of the last pick; `None` = before the first.
    last: Option<usize>,
}

impl RoundRobin {
    pub(super) fn update(&mut self, ctx: &SchedCtx<'_>) {
        if let Some(l) = self.last {
            if l >= ctx.ids.len() {
                self.last = ctx.ids.len().checked_sub(1);
            }
        }
    }

    pub(super) fn schedule(&mut self, ctx: &SchedCtx<'_>) -> Option<DestId> {
        let n = ctx.ids.len();
        let start = self.last.map_or(0, |l| l + 1);
        for k in 0..n {
            let pos = (start + k) % n;
            let id = *ctx.ids.get(pos)?;
            if ctx.dest(id).is_some_and(Dest::available) {
                self.last = Some(pos);
                return Some(id);
            }
        }
        None
    }
}

/// ip_vs_wrr_schedule: interleaved weighted round robin. The current weight `cw` starts at the
/// maximum and drops by the weights' gcd after each pass over the list; a destination is picked when
/// its weight reaches `cw`. Weights 1:3:6 give C C C B C B C A B C — exact shares, interleaved.
#[derive(Debug, Clone, Default)]
pub struct WeightedRoundRobin {
    cl: Option<usize>,
    cw: i64,
    /// max weight - (gcd - 1), as ip_vs_wrr_dest_changed sets it.
    mw: i64,
    di: i64,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl WeightedRoundRobin {
    pub(super) fn update(&mut self, ctx: &SchedCtx<'_>) {
        let weights = || ctx.iter().map(|(_, d)| d.weight()).filter(|&w| w > 0);
        let g = weights().fold(0, gcd).max(1);
        let max = weights().max().unwrap_or(0);
        self.di = i64::from(g);
        self.mw = i64::from(max) - (self.di - 1);
        self.cl = None;
        if self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
        }
    }

    pub(super) fn schedule(&mut self, ctx: &SchedCtx<'_>) -> Option<DestId> {
        let n = ctx.ids.len();
        if self.mw <= 0 || n == 0 {
            return None;
        }
        // Enough steps for cw to run from mw down to di over the whole list, plus one full pass.
        let bound =
            n * (usize::try_from(self.mw / self.di.max(1)).unwrap_or(usize::MAX / 2).saturating_add(2));
        for _ in 0..bound {
            let next = self.cl.map_or(0, |c| c + 1);
            let pos = if next >= n {
                self.cw -= self.di;
                if self.cw <= 0 {
                    self.cw = self.mw;
                }
                0
            } else {
                next
            };
            self.cl = Some(pos);
            let id = *ctx.ids.get(pos)?;
            if let Some(d) = ctx.dest(id) {
                if !d.overloaded && !d.removed && i64::from(d.weight()) >= self.cw && d.weight() > 0 {
                    return Some(id);
                }
            }
        }
        None
    }
}

/// ip_vs_lc_schedule: the least active×256+inactive.
pub(super) fn least_connection(ctx: &SchedCtx<'_>) -> Option<DestId> {
    let mut best: Option<(DestId, u64)> = None;
    for (id, d) in ctx.candidates() {
        let oh = d.overhead();
        if best.is_none_or(|(_, b)| oh < b) {
            best = Some((id, oh));
        }
    }
    best.map(|(id, _)| id)
}

/// Least overhead per weight, compared by cross-multiplication as the kernel does (no division).
fn least_by(ctx: &SchedCtx<'_>, overhead: impl Fn(&Dest) -> u64) -> Option<DestId> {
    let mut best: Option<(DestId, u64, u64)> = None;
    for (id, d) in ctx.candidates() {
        let (oh, w) = (overhead(d), u64::from(d.weight()));
        match best {
            None => best = Some((id, oh, w)),
            Some((_, loh, lw)) if u128::from(loh) * u128::from(w) > u128::from(oh) * u128::from(lw) => {
                best = Some((id, oh, w));
            }
            _ => {}
        }
    }
    best.map(|(id, _, _)| id)
}

/// ip_vs_wlc_schedule: least (active×256+inactive)/weight.
pub(super) fn weighted_least_connection(ctx: &SchedCtx<'_>) -> Option<DestId> {
    least_by(ctx, Dest::overhead)
}

/// ip_vs_sed_schedule: least (active+1)/weight.
pub(super) fn shortest_expected_delay(ctx: &SchedCtx<'_>) -> Option<DestId> {
    least_by(ctx, |d| u64::from(d.active) + 1)
}

/// ip_vs_nq_schedule: the first idle server (no active connections), else as sed.
pub(super) fn never_queue(ctx: &SchedCtx<'_>) -> Option<DestId> {
    if let Some((id, _)) = ctx.candidates().find(|(_, d)| d.active == 0) {
        return Some(id);
    }
    shortest_expected_delay(ctx)
}

/// ip_vs_fo_schedule: the available server of highest weight (the first among equals).
pub(super) fn failover(ctx: &SchedCtx<'_>) -> Option<DestId> {
    let mut best: Option<(DestId, u32)> = None;
    for (id, d) in ctx.candidates() {
        if best.is_none_or(|(_, w)| d.weight() > w) {
            best = Some((id, d.weight()));
        }
    }
    best.map(|(id, _)| id)
}

/// ip_vs_ovf_schedule: the highest-weight server whose active connections do not exceed its weight;
/// when it fills up, connections overflow to the next.
pub(super) fn overflow(ctx: &SchedCtx<'_>) -> Option<DestId> {
    let mut best: Option<(DestId, u32)> = None;
    for (id, d) in ctx.candidates() {
        if d.active > d.weight() {
            continue;
        }
        if best.is_none_or(|(_, w)| d.weight() > w) {
            best = Some((id, d.weight()));
        }
    }
    best.map(|(id, _)| id)
}

/// A small seeded PRNG (xorshift64*): twos needs random choices, and a sans-I/O core takes its
/// randomness from its seed.
#[derive(Debug, Clone)]
pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }
}

/// ip_vs_twos_schedule: two servers drawn at random in proportion to their weights; the one with less
/// overhead per weight wins.
pub(super) fn twos(ctx: &SchedCtx<'_>, rng: &mut Xorshift) -> Option<DestId> {
    let total: u64 = ctx.candidates().map(|(_, d)| u64::from(d.weight())).sum();
    if total == 0 {
        return None;
    }
    let total = total + 1;
    let mut r1 = i64::try_from(u64::from(rng.next_u32()) % total).unwrap_or(0);
    let mut r2 = i64::try_from(u64::from(rng.next_u32()) % total).unwrap_or(0);
    let mut c1: Option<(DestId, &Dest)> = None;
    let mut c2: Option<(DestId, &Dest)> = None;
    let mut last = None;
    for (id, d) in ctx.candidates() {
        let w = i64::from(d.weight());
        r1 -= w;
        r2 -= w;
        last = Some((id, d));
        if r1 <= 0 && c1.is_none() {
            c1 = Some((id, d));
        }
        if r2 <= 0 && c2.is_none() {
            c2 = Some((id, d));
        }
        if c1.is_some() && c2.is_some() {
            break;
        }
    }
    // The kernel's choice1 defaults to the last candidate when the draw lands past the end.
    let (id1, d1) = c1.or(last)?;
    match c2 {
        Some((id2, d2))
            if u128::from(d2.weight()) * u128::from(d1.overhead())
                > u128::from(d1.weight()) * u128::from(d2.overhead()) =>
        {
            Some(id2)
        }
        _ => Some(id1),
    }
}
