//! The IPVS schedulers. Each picks a destination for a new connection exactly as the Linux module of
//! the same name does (net/netfilter/ipvs/ip_vs_<name>.c); the kernel function each follows is named
//! in its docs. Destinations are considered in their service's list order, which is insertion order
//! as in IPVS, and ties go to the earlier one.
//!
//! A destination is a candidate when it is not overloaded and its weight is above zero; removed
//! destinations are not in the list at all.

mod hashing;
mod locality;
mod simple;

use std::net::IpAddr;

use crate::Time;
use crate::service::{Dest, DestId, SchedFlags};

pub use hashing::{Maglev, SourceHash};
pub use locality::{Lblc, Lblcr};

/// The scheduler names ipvsadm knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Lblc,
    Lblcr,
    Dh,
    Sh,
    Sed,
    Nq,
    Fo,
    Ovf,
    Mh,
    Twos,
}

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 14] = [
        Self::Rr,
        Self::Wrr,
        Self::Lc,
        Self::Wlc,
        Self::Lblc,
        Self::Lblcr,
        Self::Dh,
        Self::Sh,
        Self::Sed,
        Self::Nq,
        Self::Fo,
        Self::Ovf,
        Self::Mh,
        Self::Twos,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Rr => "rr",
            Self::Wrr => "wrr",
            Self::Lc => "lc",
            Self::Wlc => "wlc",
            Self::Lblc => "lblc",
            Self::Lblcr => "lblcr",
            Self::Dh => "dh",
            Self::Sh => "sh",
            Self::Sed => "sed",
            Self::Nq => "nq",
            Self::Fo => "fo",
            Self::Ovf => "ovf",
            Self::Mh => "mh",
            Self::Twos => "twos",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.name() == s)
    }
}

/// What a scheduler sees: the shard's destination arena, the service's live list, and the packet.
#[derive(Debug, Clone, Copy)]
pub struct SchedCtx<'a> {
    pub arena: &'a [Option<Dest>],
    pub ids: &'a [DestId],
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub now: Time,
    pub flags: SchedFlags,
}

impl<'a> SchedCtx<'a> {
    pub(crate) fn dest(&self, id: DestId) -> Option<&'a Dest> {
        self.arena.get(id.0 as usize).and_then(Option::as_ref)
    }

    /// The service's destinations in list order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (DestId, &'a Dest)> + '_ {
        self.ids.iter().filter_map(|&id| self.dest(id).map(|d| (id, d)))
    }

    /// Candidates for new connections (not overloaded, weight > 0).
    pub(crate) fn candidates(&self) -> impl Iterator<Item = (DestId, &'a Dest)> + '_ {
        self.iter().filter(|(_, d)| d.available())
    }
}

/// A service's scheduler with its state.
#[derive(Debug, Clone)]
pub enum Scheduler {
    Rr(simple::RoundRobin),
    Wrr(simple::WeightedRoundRobin),
    Lc,
    Wlc,
    Sed,
    Nq,
    Fo,
    Ovf,
    Dh(SourceHash),
    Sh(SourceHash),
    Lblc(Lblc),
    Lblcr(Lblcr),
    Mh(Maglev),
    Twos(simple::Xorshift),
}

impl Scheduler {
    /// A scheduler of `kind`; `seed` keys the hashes of mh and the random choices of twos.
    pub fn new(kind: SchedulerKind, mh_table_size: u32, seed: u64) -> Self {
        match kind {
            SchedulerKind::Rr => Self::Rr(simple::RoundRobin::default()),
            SchedulerKind::Wrr => Self::Wrr(simple::WeightedRoundRobin::default()),
            SchedulerKind::Lc => Self::Lc,
            SchedulerKind::Wlc => Self::Wlc,
            SchedulerKind::Sed => Self::Sed,
            SchedulerKind::Nq => Self::Nq,
            SchedulerKind::Fo => Self::Fo,
            SchedulerKind::Ovf => Self::Ovf,
            SchedulerKind::Dh => Self::Dh(SourceHash::new_dh()),
            SchedulerKind::Sh => Self::Sh(SourceHash::new_sh()),
            SchedulerKind::Lblc => Self::Lblc(Lblc::default()),
            SchedulerKind::Lblcr => Self::Lblcr(Lblcr::default()),
            SchedulerKind::Mh => Self::Mh(Maglev::new(mh_table_size, seed)),
            SchedulerKind::Twos => Self::Twos(simple::Xorshift::new(seed)),
        }
    }

    /// The destination list or a weight changed (ip_vs_<name>_{add,del,upd}_dest).
    pub fn update(&mut self, ctx: &SchedCtx<'_>) {
        match self {
            Self::Rr(s) => s.update(ctx),
            Self::Wrr(s) => s.update(ctx),
            Self::Dh(s) | Self::Sh(s) => s.update(ctx),
            Self::Lblc(s) => s.update(ctx),
            Self::Lblcr(s) => s.update(ctx),
            Self::Mh(s) => s.update(ctx),
            _ => {}
        }
    }

    /// mh only: from now on, wait for tables built elsewhere ([`Scheduler::install_table`]).
    pub fn defer_tables(&mut self) {
        if let Self::Mh(m) = self {
            m.defer();
        }
    }

    /// mh only: the lookup table, to ship to shards that defer theirs.
    pub fn table(&self) -> Option<std::sync::Arc<[u32]>> {
        match self {
            Self::Mh(m) => Some(m.table()),
            _ => None,
        }
    }

    /// mh only: takes a table built from the same server list.
    pub fn install_table(&mut self, table: std::sync::Arc<[u32]>) {
        if let Self::Mh(m) = self {
            m.install(table);
        }
    }

    /// Picks a destination for a new connection, or none.
    pub fn schedule(&mut self, ctx: &SchedCtx<'_>) -> Option<DestId> {
        match self {
            Self::Rr(s) => s.schedule(ctx),
            Self::Wrr(s) => s.schedule(ctx),
            Self::Lc => simple::least_connection(ctx),
            Self::Wlc => simple::weighted_least_connection(ctx),
            Self::Sed => simple::shortest_expected_delay(ctx),
            Self::Nq => simple::never_queue(ctx),
            Self::Fo => simple::failover(ctx),
            Self::Ovf => simple::overflow(ctx),
            Self::Dh(s) => s.schedule_dh(ctx),
            Self::Sh(s) => s.schedule_sh(ctx),
            Self::Lblc(s) => s.schedule(ctx),
            Self::Lblcr(s) => s.schedule(ctx),
            Self::Mh(s) => s.schedule(ctx),
            Self::Twos(r) => simple::twos(ctx, r),
        }
    }

    /// Periodic housekeeping (lblc/lblcr cache expiry).
    pub fn tick(&mut self, now: Time) {
        match self {
            Self::Lblc(s) => s.expire(now),
            Self::Lblcr(s) => s.expire(now),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
