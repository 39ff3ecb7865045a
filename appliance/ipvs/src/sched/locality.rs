//! Locality-based schedulers: lblc and lblcr keep, per destination address (a cache-cluster target),
//! the server(s) that handled it, and expire those entries as IPVS does.

use std::net::IpAddr;

use hashbrown::HashMap;

use super::SchedCtx;
use crate::Time;
use crate::service::{Dest, DestId};

/// IP_VS_LBLC_TAB_SIZE × 16: above this many entries, idle ones are expired early.
const MAX_ENTRIES: usize = 1024 * 16;
/// ENTRY_TIMEOUT: how long an entry must be idle to go early when the table is over its size.
const ENTRY_TIMEOUT_MS: Time = 60_000;
/// sysctl lblc_expiration / lblcr_expiration default: entries unused for a day go at the full check.
const EXPIRATION_MS: Time = 24 * 60 * 60 * 1000;
/// CHECK_EXPIRE_INTERVAL: the periodic check runs every minute.
const CHECK_INTERVAL_MS: Time = 60_000;
/// COUNT_FOR_FULL_EXPIRATION: every 30th check is a full one.
const FULL_EVERY: u32 = 30;

/// The kernel's is_overloaded() of lblc/lblcr: more active connections than weight while some other
/// server is under half its weight.
fn is_overloaded(d: &Dest, ctx: &SchedCtx<'_>) -> bool {
    d.active > d.weight() && ctx.iter().any(|(_, o)| u64::from(o.active) * 2 < u64::from(o.weight()))
}

/// __ip_vs_lblc_schedule / __ip_vs_lblcr_schedule: weighted least-connection over the service.
fn wlc(ctx: &SchedCtx<'_>) -> Option<DestId> {
    super::simple::weighted_least_connection(ctx)
}

/// What the expiry of both caches needs of an entry.
trait LastUse {
    fn lastuse(&self) -> Time;
}

/// The periodic check of both caches (ip_vs_lblc_check_expire, ip_vs_lblc_full_check and their lblcr
/// twins): every minute; every 30th time, entries unused for the expiration time go; and whenever
/// the table is over its size, idle entries go early, up to 4/3 of the excess.
fn expire_cache<V: LastUse>(
    table: &mut HashMap<IpAddr, V>,
    now: Time,
    next_check: &mut Time,
    checks: &mut u32,
) {
    if now < *next_check {
        return;
    }
    *next_check = now + CHECK_INTERVAL_MS;
    *checks += 1;
    if *checks % FULL_EVERY == 0 {
        table.retain(|_, e| now.saturating_sub(e.lastuse()) < EXPIRATION_MS);
    }
    if table.len() > MAX_ENTRIES {
        let mut goal = (table.len() - MAX_ENTRIES) * 4 / 3;
        table.retain(|_, e| {
            if goal > 0 && now.saturating_sub(e.lastuse()) >= ENTRY_TIMEOUT_MS {
                goal -= 1;
                false
            } else {
                true
            }
        });
    }
}

#[derive(Debug, Clone)]
struct LblcEntry {
    dest: DestId,
    lastuse: Time,
}

/// ip_vs_lblc.c.
#[derive(Debug, Clone, Default)]
pub struct Lblc {
    table: HashMap<IpAddr, LblcEntry>,
    next_check: Time,
    checks: u32,
}

impl Lblc {
    pub(super) fn update(&mut self, ctx: &SchedCtx<'_>) {
        // Entries may not outlive the destinations they name (a freed DestId can be reused).
        self.table.retain(|_, e| ctx.ids.contains(&e.dest));
    }

    pub(super) fn schedule(&mut self, ctx: &SchedCtx<'_>) -> Option<DestId> {
        if let Some(e) = self.table.get_mut(&ctx.dst) {
            e.lastuse = ctx.now;
            if let Some(d) = ctx.dest(e.dest) {
                if d.available() && !is_overloaded(d, ctx) {
                    return Some(e.dest);
                }
            }
        }
        let dest = wlc(ctx)?;
        // As the kernel: when no entry can be made, the valid destination is used anyway.
        if self.table.len() < MAX_ENTRIES * 2 || self.table.contains_key(&ctx.dst) {
            self.table.insert(ctx.dst, LblcEntry { dest, lastuse: ctx.now });
        }
        Some(dest)
    }

    pub(super) fn expire(&mut self, now: Time) {
        expire_cache(&mut self.table, now, &mut self.next_check, &mut self.checks);
    }

    pub fn entries(&self) -> usize {
        self.table.len()
    }
}

impl LastUse for LblcEntry {
    fn lastuse(&self) -> Time {
        self.lastuse
    }
}

#[derive(Debug, Clone)]
struct LblcrEntry {
    set: Vec<DestId>,
    lastmod: Time,
    lastuse: Time,
}

/// ip_vs_lblcr.c: like lblc, but each address maps to a set of servers, grown when its least-loaded
/// member is overloaded and shrunk (its most loaded member dropped) when unchanged for the
/// expiration time.
#[derive(Debug, Clone, Default)]
pub struct Lblcr {
    table: HashMap<IpAddr, LblcrEntry>,
    next_check: Time,
    checks: u32,
}

impl LastUse for LblcrEntry {
    fn lastuse(&self) -> Time {
        self.lastuse
    }
}

/// ip_vs_dest_set_min: least overhead per weight among available members.
fn set_min(set: &[DestId], ctx: &SchedCtx<'_>) -> Option<DestId> {
    let mut best: Option<(DestId, u64, u64)> = None;
    for &id in set {
        let Some(d) = ctx.dest(id) else { continue };
        if !d.available() {
            continue;
        }
        let (oh, w) = (d.overhead(), u64::from(d.weight()));
        if best.is_none_or(|(_, loh, lw)| u128::from(loh) * u128::from(w) > u128::from(oh) * u128::from(lw)) {
            best = Some((id, oh, w));
        }
    }
    best.map(|(id, _, _)| id)
}

/// ip_vs_dest_set_max: most overhead per weight (a weight-0 member counts as most loaded).
fn set_max(set: &[DestId], ctx: &SchedCtx<'_>) -> Option<DestId> {
    let mut worst: Option<(DestId, u64, u64)> = None;
    for &id in set {
        let Some(d) = ctx.dest(id) else { return Some(id) };
        let (oh, w) = (d.overhead(), u64::from(d.weight()));
        if w == 0 {
            return Some(id);
        }
        if worst.is_none_or(|(_, moh, mw)| u128::from(moh) * u128::from(w) < u128::from(oh) * u128::from(mw))
        {
            worst = Some((id, oh, w));
        }
    }
    worst.map(|(id, _, _)| id)
}

impl Lblcr {
    pub(super) fn update(&mut self, ctx: &SchedCtx<'_>) {
        for e in self.table.values_mut() {
            e.set.retain(|id| ctx.ids.contains(id));
        }
        self.table.retain(|_, e| !e.set.is_empty());
    }

    pub(super) fn schedule(&mut self, ctx: &SchedCtx<'_>) -> Option<DestId> {
        if let Some(e) = self.table.get_mut(&ctx.dst) {
            e.lastuse = ctx.now;
            let min = set_min(&e.set, ctx);
            if e.set.len() > 1 && ctx.now > e.lastmod + EXPIRATION_MS {
                if let Some(m) = set_max(&e.set, ctx) {
                    e.set.retain(|&id| id != m);
                    e.lastmod = ctx.now;
                }
            }
            if let Some(id) = min {
                if ctx.dest(id).is_some_and(|d| !is_overloaded(d, ctx)) {
                    return Some(id);
                }
            }
            let dest = wlc(ctx)?;
            if !e.set.contains(&dest) {
                e.set.push(dest);
                e.lastmod = ctx.now;
            }
            return Some(dest);
        }
        let dest = wlc(ctx)?;
        if self.table.len() < MAX_ENTRIES * 2 {
            self.table.insert(ctx.dst, LblcrEntry { set: vec![dest], lastmod: ctx.now, lastuse: ctx.now });
        }
        Some(dest)
    }

    pub(super) fn expire(&mut self, now: Time) {
        expire_cache(&mut self.table, now, &mut self.next_check, &mut self.checks);
    }

    /// The server set kept for `addr`, for inspection.
    pub fn set_for(&self, addr: &IpAddr) -> Option<&[DestId]> {
        self.table.get(addr).map(|e| e.set.as_slice())
    }
}
