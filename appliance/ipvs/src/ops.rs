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
use crate::{Error, Time};

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
}

impl Ipvs {
    /// Applies one change; on error nothing changed.
    pub fn apply(&mut self, op: &Op) -> Result<(), Error> {
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
        }
    }

    /// The shard's counters (and, if asked, its connections) for the management core, which sums
    /// the reports of all workers. Built between bursts; it allocates, so it is asked for on demand
    /// (a listing, a scrape, the 2-second estimator), never per packet.
    pub fn report(&self, with_conns: bool, now: Time) -> ShardReport {
        let services = self
            .services()
            .map(|(_, cfg, stats, dests)| ServiceReport {
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
            })
            .collect();
        let conns = if with_conns { self.connections().collect() } else { Vec::new() };
        let (entries, capacity) = self.occupancy();
        ShardReport { now, services, conns, drops: self.drops, defense: self.defense, entries, capacity }
    }
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
