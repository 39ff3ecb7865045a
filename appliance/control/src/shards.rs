//! The management core's line to the workers' IPVS shards: configuration changes go out as immutable
//! batches ([`WorkerMsg::Apply`]), and counters come back on request ([`WorkerMsg::Report`]). Workers
//! look at their channel between bursts (once a millisecond), so neither side ever waits on the
//! other on the packet path.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use rvs_adm::listing::Snapshot;
use rvs_dataplane::WorkerMsg;
use rvs_ipvs::{DefenseCounters, DropCounters, Ipvs, Op, ServiceKey, ShardReport, Time};
use tracing::warn;

/// How long a report may take before the worker is reported as not answering (workers build it a
/// share per millisecond: 64 services, or 256 connection slots).
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);
/// The same with every connection (-Lc walks the whole table, 256 slots a millisecond: 1 M slots take
/// 4 s, 10 M slots 40 s).
const CONNS_REPORT_TIMEOUT: Duration = Duration::from_secs(120);

/// Every worker's channel; empty when the workers run no IPVS (the L2 modes).
#[derive(Debug, Default)]
pub struct Shards {
    workers: Vec<Sender<WorkerMsg>>,
}

impl Shards {
    pub fn new(workers: Vec<Sender<WorkerMsg>>) -> Self {
        Self { workers }
    }

    /// Sends one validated batch, already applied to `model`, to every shard (the same `Arc`, so all
    /// apply the same change). The batch ends with the lookup tables of the mh services it touched,
    /// as `model` built them: the shards install them instead of building them (a Maglev table of
    /// 65,537 slots takes a worker a millisecond or more).
    pub fn publish(&self, model: &Ipvs, mut ops: Vec<Op>) {
        if ops.is_empty() {
            return;
        }
        let mut touched: Vec<ServiceKey> = Vec::new();
        for op in &ops {
            let key = match op {
                Op::AddService(c) | Op::EditService(c) => c.key,
                Op::AddDest(k, _) | Op::EditDest(k, _) | Op::DelDest(k, ..) => *k,
                _ => continue,
            };
            if !touched.contains(&key) {
                touched.push(key);
            }
        }
        for key in touched {
            if let Some(t) = model.sched_table(&key) {
                ops.push(Op::SchedTable(key, t));
            }
        }
        let batch: Arc<[Op]> = ops.into();
        for w in &self.workers {
            if w.send(WorkerMsg::Apply(Arc::clone(&batch))).is_err() {
                warn!("a worker is gone; its shard misses a configuration change");
            }
        }
    }

    /// The workers' channels (for the sync daemons, which talk to them from their own threads).
    pub fn senders(&self) -> Vec<Sender<WorkerMsg>> {
        self.workers.clone()
    }

    /// Tells every worker which VIPs the director holds now (`vip_ownership = "kernel_twin"`).
    pub fn hold_vips(&self, vips: &[std::net::Ipv4Addr]) {
        let vips: Arc<[std::net::Ipv4Addr]> = vips.into();
        for w in &self.workers {
            if w.send(WorkerMsg::HeldVips(Arc::clone(&vips))).is_err() {
                warn!("a worker is gone; it misses which VIPs are held");
            }
        }
    }

    /// Every shard's report; without workers, the model's own (all counters zero).
    pub fn reports(&self, model: &Ipvs, conns: bool, now: Time) -> Vec<ShardReport> {
        if self.workers.is_empty() {
            return vec![model.report(conns, now)];
        }
        let (tx, rx) = crossbeam_channel::bounded(self.workers.len());
        let asked = self
            .workers
            .iter()
            .filter(|w| w.send(WorkerMsg::Report { conns, reply: tx.clone() }).is_ok())
            .count();
        let mut out = Vec::with_capacity(asked);
        for _ in 0..asked {
            match rx.recv_timeout(if conns { CONNS_REPORT_TIMEOUT } else { REPORT_TIMEOUT }) {
                Ok(r) => out.push(r),
                Err(_) => {
                    warn!("a worker did not report in time");
                    break;
                }
            }
        }
        out
    }

    /// The director's state for listings and metrics.
    pub fn snapshot(&self, model: &Ipvs, conns: bool, now: Time) -> (Snapshot, Totals) {
        let reports = self.reports(model, conns, now);
        let mut t = Totals::default();
        for r in &reports {
            t.drops.add(&r.drops);
            t.defense.add(&r.defense);
            t.entries += r.entries;
        }
        (Snapshot::from_reports(model, &reports), t)
    }
}

/// Counters summed over the shards.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub drops: DropCounters,
    pub defense: DefenseCounters,
    /// Live connection-table entries.
    pub entries: usize,
}
