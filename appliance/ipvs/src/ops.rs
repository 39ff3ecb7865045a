//! Configuration changes as values, and what a shard tells the management core.
//!
//! The management core validates every change on its own copy of the configuration, then publishes
//! the same [`Op`]s to each worker's shard, which applies them between two bursts. An `Op` (or a batch
//! of them) is immutable once published, so no worker ever sees half a change, and because each shard
//! applies the ops to its own state, destinations keep their ids and live connections stay bound to
//! them across changes (swapping whole configuration objects would have to re-bind every connection).

use std::net::IpAddr;

use crate::conn::ConnInfo;
use crate::engine::{DefenseCounters, DropCounters, Ipvs};
use crate::service::{DestConfig, ServiceConfig, ServiceKey, Stats};
use crate::sysctl::Sysctl;
use crate::{ServiceError, Time};

/// One configuration change (the configuration commands of ipvsadm).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    AddService(ServiceConfig),
    EditService(ServiceConfig),
    DelService(ServiceKey),
    /// Every service goes (ipvsadm -C).
    Clear,
    AddDest(ServiceKey, DestConfig),
    EditDest(ServiceKey, DestConfig),
    DelDest(ServiceKey, IpAddr, u16),
    /// Zero the counters of one service, or of all.
    Zero(Option<ServiceKey>),
    /// `--set TCP TCPFIN UDP` in seconds; 0 keeps a value.
    SetTimeouts {
        tcp: u32,
        tcp_fin: u32,
        udp: u32,
    },
    /// The IPVS knobs, whole (`rvsadm --sysctl NAME=VALUE` and the `[ipvs]` configuration).
    SetSysctl(Sysctl),
    /// A scheduler's lookup table (mh's Maglev table), built once on the management core's copy
    /// and installed as is by the workers' shards (see [`Ipvs::defer_sched_tables`]).
    SchedTable(ServiceKey, std::sync::Arc<[u32]>),
}

impl Ipvs {
    /// Applies one change; on error nothing changed.
    pub fn apply(&mut self, op: &Op) -> Result<(), ServiceError> {
        match op {
            Op::AddService(cfg) => self.add_service(cfg.clone()).map(|_| ()),
            Op::EditService(cfg) => self.edit_service(cfg.clone()),
            Op::DelService(k) => self.del_service(k),
            Op::Clear => {
                self.clear();
                Ok(())
            }
            Op::AddDest(k, d) => self.add_dest(k, *d).map(|_| ()),
            Op::EditDest(k, d) => self.edit_dest(k, *d),
            Op::DelDest(k, a, p) => self.del_dest(k, *a, *p),
            Op::Zero(k) => self.zero(k.as_ref()),
            Op::SetTimeouts { tcp, tcp_fin, udp } => {
                self.timeouts.set(*tcp, *tcp_fin, *udp);
                Ok(())
            }
            Op::SetSysctl(s) => {
                self.sysctl = *s;
                Ok(())
            }
            Op::SchedTable(k, t) => self.install_sched_table(k, std::sync::Arc::clone(t)),
        }
    }

    /// The shard's counters (and, if asked, its connections) for the management core, which sums
    /// the reports of all workers, built in one go (tests, and shards without a worker).
    pub fn report(&self, with_conns: bool, now: Time) -> ShardReport {
        let mut r = self.report_start(now);
        let mut cursor = ReportCursor::default();
        while !self.report_step(&mut r, &mut cursor, with_conns, usize::MAX / 64) {}
        r
    }

    /// A report's header: the counters read at once. Services and connections follow, a share at a
    /// time, through [`Ipvs::report_step`], so a worker never pauses long for a listing or a scrape.
    pub fn report_start(&self, now: Time) -> ShardReport {
        let (entries, capacity) = self.occupancy();
        ShardReport {
            now,
            // Room for every service now: growing it a step at a time would copy it over and over.
            services: Vec::with_capacity(self.service_count()),
            conns: Vec::new(),
            drops: self.drops,
            defense: self.defense,
            entries,
            capacity,
        }
    }

    /// Adds about `budget` units to `r` (a service is one unit plus one per eight servers;
    /// four connection-table slots are one); true once the report is complete. Configuration may
    /// change between steps: the report then mixes instants, as counters read over time do.
    pub fn report_step(
        &self,
        r: &mut ShardReport,
        at: &mut ReportCursor,
        with_conns: bool,
        budget: usize,
    ) -> bool {
        let mut budget = budget.max(1);
        let slots = self.service_slots();
        while budget > 0 && at.service < slots {
            if let Some((cfg, stats, dests)) = self.service_at(at.service) {
                budget = budget.saturating_sub(1 + dests.len() / 8);
                r.services.push(ServiceReport {
                    key: cfg.key,
                    stats: *stats,
                    dests: dests
                        .into_iter()
                        .map(|(_, d)| DestReport {
                            addr: d.cfg.addr,
                            port: d.cfg.port,
                            active: d.active,
                            inactive: d.inactive,
                            persistent: d.persistent,
                            stats: d.stats,
                        })
                        .collect(),
                });
            }
            at.service += 1;
        }
        if at.service < slots {
            return false;
        }
        if !with_conns {
            return true;
        }
        let (v4, total) = self.conn_slots();
        if r.conns.capacity() == 0 {
            r.conns.reserve(self.occupancy().0);
        }
        let mut left = budget.saturating_mul(4);
        while left > 0 && at.conn < total {
            if let Some(c) = self.conn_at(at.conn, v4).filter(|c| !c.is_mirror()) {
                r.conns.push(c);
            }
            at.conn += 1;
            left -= 1;
        }
        at.conn >= total
    }
}

/// Where a report built a share at a time has got to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportCursor {
    service: usize,
    conn: usize,
}

/// A destination's counters in one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestReport {
    pub addr: IpAddr,
    pub port: u16,
    pub active: u32,
    pub inactive: u32,
    pub persistent: u32,
    pub stats: Stats,
}

/// A service's counters in one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceReport {
    pub key: ServiceKey,
    pub stats: Stats,
    pub dests: Vec<DestReport>,
}

/// What one shard reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShardReport {
    /// The shard's clock when the report was made (connection expiry times are on it).
    pub now: Time,
    pub services: Vec<ServiceReport>,
    /// Connections and templates, when asked for.
    pub conns: Vec<ConnInfo>,
    pub drops: DropCounters,
    /// What the flood defences did.
    pub defense: DefenseCounters,
    /// Live entries and capacity of the connection tables.
    pub entries: usize,
    pub capacity: usize,
}
