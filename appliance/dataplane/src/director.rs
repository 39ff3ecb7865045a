//! The director worker: the poll loop around [`Pipeline`], on DPDK queues. It owns one RX and one TX
//! queue on every port, its IPVS shard and neighbour table, and takes configuration changes from the
//! management core between bursts.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use rvs_dpdk::{BURST_SIZE, Mbuf, Mempool, PacketBurst, RxQueue, TxQueue, rdtsc};
use rvs_ipvs::sync::SyncConn;
use rvs_ipvs::{ConnInfo, Op, ReportCursor, ShardReport, Time};

use crate::counters::{DropReason, LoopTimer, STAGE_COUNT, WorkerCounters};
use crate::pipeline::{Action, Meta, Pipeline};
use crate::pkt::MbufPacket;
use rvs_wire::rewrite::vlan::{self, Tagging};

/// What the management core sends a worker.
#[derive(Debug)]
pub enum WorkerMsg {
    /// A validated batch of configuration changes, applied whole between two bursts.
    Apply(Arc<[Op]>),
    /// Report the shard's counters (and connections, if asked) on `reply`.
    Report { conns: bool, reply: Sender<ShardReport> },
    /// The VIPs the director holds now (`vip_ownership = "kernel_twin"`; see
    /// [`Pipeline::set_held_vips`]).
    HeldVips(Arc<[Ipv4Addr]>),
    /// The master sync daemon started (true) or stopped: note new and changed connections.
    SyncMaster(bool),
    /// Connections a master director sent (the backup sync daemon): install them.
    Synced(Arc<[SyncConn]>),
}

/// What workers pass each other when several share the ports.
#[derive(Debug)]
pub enum Handoff {
    /// A packet of a flow the receiving worker owns, as received on `port`.
    Packet { port: usize, mbuf: Mbuf },
    /// A neighbour learned from ARP or ND (its answer may reach any worker's queue).
    Neighbour { ip: IpAddr, mac: [u8; 6], port: usize },
    /// A new NAT connection whose replies the NIC will bring to the receiving worker (RSS predicted
    /// in software): keep a copy to translate them. One per connection.
    Mirror(ConnInfo),
    /// A reply that matched no connection, sent by a worker to itself to be tried once more after
    /// the mirrors already in its inbox: a mirror is sent before the packet that causes the reply
    /// is transmitted, so it is ahead of the reply in this first-in first-out channel.
    Unmatched { port: usize, mbuf: Mbuf },
}

/// A worker's place among several: its index, every worker's inbox (indexed by worker; its own is
/// used for [`Handoff::Unmatched`]) and its own inbox's receiving end. Without RSS prediction, flows
/// are owned by [`Pipeline::owner`] and a packet that arrives at another worker's queue crosses over
/// once, through a bounded lock-free channel; with it, only a [`Handoff::Mirror`] per NAT connection
/// crosses (and the packets of persistent services, which need all of a client on one shard).
#[derive(Debug)]
pub struct Steering {
    pub index: usize,
    pub peers: Vec<Sender<Handoff>>,
    pub inbox: Receiver<Handoff>,
}

/// Inbox items taken per loop turn, so a busy peer cannot starve this worker's own queues.
const INBOX_BUDGET: usize = 64;

/// Packets waiting for a neighbour, at most this many per worker (Linux keeps 101 per neighbour by
/// default; a director resolves a handful of next hops, so a small shared queue suffices).
pub const HOLD_CAPACITY: usize = 256;
/// Connection-table entries examined per expiry run (one run per millisecond).
const EXPIRE_BUDGET: usize = 256;
/// Configuration ops applied per millisecond, at most: a restore of thousands of services is spread
/// over milliseconds instead of stopping the worker for all of it (ipvsadm -R is applied line by
/// line by the kernel too; rvs validated the whole batch on the management core first).
const OPS_PER_TURN: usize = 64;
/// And for no longer than this, in microseconds.
const CONTROL_BUDGET_US: u64 = 20;
/// How often the kernel twins' RX queues are polled, in microseconds.
const TWIN_POLL_US: u64 = 100;
/// Report units (a service, or 4 connection slots) built per millisecond for listings and scrapes.
const REPORT_UNITS_PER_TURN: usize = 64;

/// Control work waiting for the worker's next turns.
#[derive(Default)]
struct Backlog {
    /// Batches being applied, and how far.
    ops: VecDeque<(Arc<[Op]>, usize)>,
    /// Reports asked for; each starts once the changes asked before it are applied.
    reports: VecDeque<PendingReport>,
}

struct PendingReport {
    conns: bool,
    reply: Sender<ShardReport>,
    building: Option<(ShardReport, ReportCursor)>,
}

/// One port's queues, as a worker holds them.
#[derive(Debug)]
pub struct PortQueues {
    pub rx: RxQueue,
    pub tx: TxQueue,
}

/// One of the director's interfaces, which the pipeline calls its ports: a port's untagged side
/// (interface `i` for port `i`) or an 802.1Q VLAN of a port (after all the ports). Frames of a VLAN
/// are untagged on arrival and tagged again as they leave, so the pipeline never sees a tag.
#[derive(Debug)]
pub struct IfaceQueues {
    /// The port it is on (index into `DirectorWorker::ports`).
    pub port: usize,
    pub vlan: Option<u16>,
    /// Its kernel twin, if it has one.
    pub twin: Option<TwinQueues>,
}

/// A worker's queue pair on a port's kernel twin (a TAP device), and the burst staged for it.
#[derive(Debug)]
pub struct TwinQueues {
    pub rx: RxQueue,
    pub tx: TxQueue,
    pub staged: PacketBurst,
}

impl TwinQueues {
    pub fn new(rx: RxQueue, tx: TxQueue) -> Self {
        Self { rx, tx, staged: PacketBurst::new() }
    }
}

#[derive(Debug)]
pub struct DirectorWorker {
    pub ports: Vec<PortQueues>,
    /// Indexed as the pipeline's ports: `ports.len()` untagged sides, then the VLANs.
    pub ifaces: Vec<IfaceQueues>,
    pub pipeline: Pipeline,
    /// For packets the director originates (ARP, ICMP errors).
    pub pool: Mempool,
    pub control: Receiver<WorkerMsg>,
    pub counters: Arc<WorkerCounters>,
    pub stop: Arc<AtomicBool>,
    pub tsc_hz: u64,
    /// With several workers: who owns which flow, and the channels between them.
    pub steering: Option<Steering>,
    /// Fault injection for the daemon's tests: panic once the loop's clock passes this many
    /// milliseconds (rvsd sets it from `RVS_FAULT_WORKER_PANIC_AFTER_MS`; never set otherwise).
    pub panic_after_ms: Option<Time>,
    /// Where the connections the master sync daemon sends go (bounded; never waited on).
    pub sync: Option<Sender<SyncConn>>,
}

struct Held {
    /// The interface it leaves by.
    port: usize,
    next_hop: IpAddr,
    mbuf: Mbuf,
}

/// Where a port's frames go, by their tag.
#[derive(Debug, Default)]
struct Demux {
    /// The port's untagged interface, unless the port carries only VLANs.
    untagged: Option<usize>,
    /// (VLAN id, interface).
    vlans: Vec<(u16, usize)>,
}

impl DirectorWorker {
    /// The poll loop; returns 0 when stopped.
    pub fn run(mut self) -> i32 {
        let nports = self.ports.len();
        let mut tx = Tx {
            staged: (0..nports).map(|_| PacketBurst::new()).collect(),
            ports: std::mem::take(&mut self.ports),
            ifaces: std::mem::take(&mut self.ifaces),
            held: Vec::with_capacity(HOLD_CAPACITY),
        };
        let demux: Vec<Demux> = (0..nports)
            .map(|p| Demux {
                untagged: self
                    .pipeline
                    .net
                    .interfaces
                    .get(p)
                    .is_some_and(|i| !i.addr.is_unspecified())
                    .then_some(p),
                vlans: tx
                    .ifaces
                    .iter()
                    .enumerate()
                    .filter(|(_, i)| i.port == p)
                    .filter_map(|(n, i)| Some((i.vlan?, n)))
                    .collect(),
            })
            .collect();
        let mut by_vlan: Vec<PacketBurst> = tx.ifaces.iter().map(|_| PacketBurst::new()).collect();
        let mut rx = PacketBurst::new();
        let mut scratch = Scratch {
            metas: [Meta::default(); BURST_SIZE],
            actions: [Action::Drop; BURST_SIZE],
            sync_buf: Vec::with_capacity(256),
        };
        let mut resolved: Vec<(usize, IpAddr)> = Vec::with_capacity(64);
        let ticks_per_ms = (self.tsc_hz / 1000).max(1);
        let origin = rdtsc();
        let mut last_ms: Time = 0;
        let mut timer = LoopTimer::new();
        let mut backlog = Backlog::default();
        let has_twins = tx.ifaces.iter().any(|q| q.twin.is_some());
        let twin_poll_ticks = self.tsc_hz / 1_000_000 * TWIN_POLL_US;
        let mut last_twin_poll = 0u64;
        self.counters.set_tsc_hz(self.tsc_hz);
        self.pipeline.refresh_vips();
        while !self.stop.load(Ordering::Relaxed) {
            let t0 = rdtsc();
            let now: Time = t0.wrapping_sub(origin) / ticks_per_ms;
            let mut moved = false;
            for (p, d) in demux.iter().enumerate() {
                let Some(q) = tx.ports.get_mut(p) else { continue };
                let n = q.rx.rx_burst(&mut rx);
                if n == 0 {
                    continue;
                }
                moved = true;
                self.counters.add_rx_tx(n as u64, 0);
                if d.vlans.is_empty() {
                    // Tagged frames meet the pipeline's full path, which counts them.
                    self.burst(p, &mut rx, &mut tx, &mut scratch, now);
                    continue;
                }
                let counters = &self.counters;
                rx.take_each(|m| demux_vlan(d, m, &mut by_vlan, counters));
                for (iface, b) in by_vlan.iter_mut().enumerate() {
                    if !b.is_empty() {
                        self.burst(iface, b, &mut tx, &mut scratch, now);
                    }
                }
            }
            // What the kernel sent on the ports' twins leaves by the ports (ARP and all). A TAP
            // port's RX is a read() system call even when empty, so the twins are polled every
            // TWIN_POLL_US rather than every turn: the kernel's traffic waits 100 µs at most.
            let twins_due = has_twins && t0.wrapping_sub(last_twin_poll) >= twin_poll_ticks;
            if twins_due {
                last_twin_poll = t0;
            }
            for iface in (0..tx.ifaces.len()).filter(|_| twins_due) {
                let Some(t) = tx.ifaces.get_mut(iface).and_then(|q| q.twin.as_mut()) else { continue };
                let n = t.rx.rx_burst(&mut rx);
                if n == 0 {
                    continue;
                }
                moved = true;
                self.counters.add_from_kernel(n as u64);
                let counters = &self.counters;
                rx.take_each(|m| tx.stage(counters, iface, m));
            }
            if let Some(st) = &self.steering {
                let out = &mut tx;
                let pl = &mut self.pipeline;
                for _ in 0..INBOX_BUDGET {
                    match st.inbox.try_recv() {
                        Ok(Handoff::Packet { port, mbuf }) => {
                            moved = true;
                            process(pl, out, &self.counters, &self.pool, Some(st), port, mbuf, now);
                        }
                        Ok(Handoff::Unmatched { port, mbuf }) => {
                            moved = true;
                            let retry = std::mem::replace(&mut pl.retry_unmatched, false);
                            process(pl, out, &self.counters, &self.pool, Some(st), port, mbuf, now);
                            pl.retry_unmatched = retry;
                        }
                        Ok(Handoff::Mirror(c)) => {
                            if let Err(r) = pl.ipvs.insert_mirror(&c, now) {
                                self.counters.count_drop(DropReason::Ipvs(r));
                            }
                        }
                        Ok(Handoff::Neighbour { ip, mac, port }) => {
                            let _ = pl.neigh.learn(ip, mac, port, true, now);
                        }
                        Err(_) => break,
                    }
                }
                // Tell the others what this worker learned from ARP.
                for (ip, mac, port) in self.pipeline.learned.drain(..) {
                    for (i, peer) in st.peers.iter().enumerate() {
                        if i != st.index {
                            let _ = peer.try_send(Handoff::Neighbour { ip, mac, port });
                        }
                    }
                }
            } else {
                self.pipeline.learned.clear();
            }
            if moved {
                tx.flush_all(&self.counters);
            }
            self.side_work(&mut tx, &mut resolved);
            if now != last_ms {
                last_ms = now;
                if self.panic_after_ms.is_some_and(|t| now >= t) {
                    injected_panic();
                }
                // The millisecond's housekeeping: the packets behind it wait for all of it.
                let pause_from = rdtsc();
                self.pipeline.ipvs.expire(now, EXPIRE_BUDGET);
                self.pipeline.tick(now);
                // Held packets whose neighbour was given up on.
                let before = tx.held.len();
                let neigh = &self.pipeline.neigh;
                tx.held.retain(|h| {
                    neigh.is_pending(h.port, h.next_hop) || neigh.get(h.port, h.next_hop).is_some()
                });
                self.counters.add_drops(DropReason::NoNeighbour, (before - tx.held.len()) as u64);
                self.serve_control(now, &mut backlog);
                self.counters.note_pause(rdtsc().wrapping_sub(pause_from));
            }
            timer.turn(&self.counters, t0, moved);
        }
        timer.publish(&self.counters);
        self.counters.add_drops(DropReason::NoNeighbour, tx.held.len() as u64);
        0
    }

    /// A burst received on (or untagged for) interface `iface`, through the hand-over and the
    /// stages (pipeline::stages), each over the whole burst, timed.
    fn burst(&mut self, iface: usize, rx: &mut PacketBurst, tx: &mut Tx, sc: &mut Scratch, now: Time) {
        let steering = self.steering.as_ref();
        // Hand-over: the frames of flows another worker owns go to it, first.
        if let Some(st) = steering {
            let (pipeline, counters) = (&self.pipeline, &self.counters);
            rx.keep_or_take(|m| {
                let Some(owner) = pipeline.owner(m.data(), st.peers.len()).filter(|&o| o != st.index) else {
                    return Some(m);
                };
                match st.peers.get(owner).map(|peer| peer.try_send(Handoff::Packet { port: iface, mbuf: m }))
                {
                    Some(Ok(())) => counters.count_handoff(),
                    // Full or gone: the mbuf comes back in the error and is freed here.
                    _ => counters.count_drop(DropReason::HandoffFull),
                }
                None
            });
        }
        let (metas, actions) = (&mut sc.metas, &mut sc.actions);
        let mut clock = StageClock::start();
        let k = self.pipeline.parse_stage(iface, rx.iter().map(|m| m.data()), metas);
        clock.lap(0);
        self.pipeline.lookup_stage(metas.get_mut(..k).unwrap_or_default());
        clock.lap(1);
        for (m, meta) in rx.iter_mut().zip(metas.iter_mut()) {
            self.pipeline.ipvs_stage(iface, &mut MbufPacket(m), meta, now);
        }
        clock.lap(2);
        for ((m, meta), a) in rx.iter_mut().zip(metas.iter()).zip(actions.iter_mut()) {
            *a = self.pipeline.rewrite_stage(iface, &mut MbufPacket(m), meta, now);
        }
        clock.lap(3);
        send_mirrors(&mut self.pipeline, &self.counters, steering);
        let (pipeline, counters, pool) = (&mut self.pipeline, &self.counters, &self.pool);
        let mut next = actions.iter();
        rx.take_each(|m| {
            let a = next.next().copied().unwrap_or(Action::Drop);
            dispatch(pipeline, tx, counters, pool, steering, iface, m, a);
        });
        clock.lap(4);
        self.counters.add_stages(&clock.cycles, k as u64);
        if self.pipeline.ipvs.sync_pending() {
            self.send_sync(now, &mut sc.sync_buf);
        }
    }

    /// ARP requests and announcements the pipeline queued, and held packets whose neighbour answered.
    fn side_work(&mut self, tx: &mut Tx, resolved: &mut Vec<(usize, IpAddr)>) {
        let mut any = false;
        while let Some((target, port)) = self.pipeline.neigh_requests.pop() {
            let pl = &self.pipeline;
            if let Some(m) =
                originate(&self.pool, &self.counters, |out| pl.neighbour_request(target, port, out))
            {
                tx.stage(&self.counters, port, m);
                any = true;
            }
        }
        while let Some((vip, port)) = self.pipeline.announce.pop() {
            let pl = &self.pipeline;
            if let Some(m) = originate(&self.pool, &self.counters, |out| pl.announcement(vip, port, out)) {
                tx.stage(&self.counters, port, m);
                any = true;
            }
        }
        self.pipeline.neigh.take_resolved(resolved);
        for (port, ip) in resolved.drain(..) {
            let Some(mac) = self.pipeline.neigh.get(port, ip) else { continue };
            let mut i = 0;
            while i < tx.held.len() {
                if tx.held.get(i).is_some_and(|h| h.next_hop == ip && h.port == port) {
                    let mut h = tx.held.remove(i);
                    if let Some(d) = h.mbuf.data_mut().get_mut(..6) {
                        d.copy_from_slice(&mac);
                    }
                    tx.stage(&self.counters, h.port, h.mbuf);
                    any = true;
                } else {
                    i += 1;
                }
            }
        }
        if any {
            tx.flush_all(&self.counters);
        }
    }

    /// Hands the connections the burst made or changed to the master sync daemon (a bounded
    /// queue; what does not fit is counted lost, never waited for).
    fn send_sync(&mut self, now: Time, buf: &mut Vec<SyncConn>) {
        buf.clear();
        self.pipeline.ipvs.drain_sync(now, buf);
        let Some(tx) = &self.sync else { return };
        let (mut sent, mut lost) = (0, 0);
        for c in buf.drain(..) {
            if tx.try_send(c).is_ok() {
                sent += 1;
            } else {
                lost += 1;
            }
        }
        let shard_lost = std::mem::take(&mut self.pipeline.ipvs.sync_lost);
        self.counters.add_sync(0, sent);
        self.counters.add_sync(1, lost + shard_lost);
    }

    /// Configuration changes and report requests, between bursts, a bounded share per turn.
    fn serve_control(&mut self, now: Time, backlog: &mut Backlog) {
        loop {
            match self.control.try_recv() {
                Ok(WorkerMsg::Apply(ops)) => {
                    self.pipeline.reserve_for(&ops);
                    backlog.ops.push_back((ops, 0));
                }
                Ok(WorkerMsg::Report { conns, reply }) => {
                    backlog.reports.push_back(PendingReport { conns, reply, building: None });
                }
                Ok(WorkerMsg::HeldVips(vips)) => self.pipeline.set_held_vips(Some(&vips)),
                Ok(WorkerMsg::SyncMaster(on)) => self.pipeline.ipvs.set_sync_master(on),
                Ok(WorkerMsg::Synced(conns)) => {
                    let (mut installed, mut refused) = (0, 0);
                    for c in conns.iter() {
                        match self.pipeline.ipvs.install_synced(c, now) {
                            Ok(_) => installed += 1,
                            Err(_) => refused += 1,
                        }
                    }
                    self.counters.add_sync(2, installed);
                    self.counters.add_sync(3, refused);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        // Up to OPS_PER_TURN ops, and no more once CONTROL_BUDGET_US has gone (an op that rebuilds a
        // scheduler's table costs far more than one that adds a server).
        let deadline = rdtsc().wrapping_add(self.tsc_hz / 1_000_000 * CONTROL_BUDGET_US);
        let (mut budget, mut finished, mut failed) = (OPS_PER_TURN, false, 0);
        while budget > 0 && rdtsc() < deadline {
            let Some((batch, at)) = backlog.ops.front_mut() else { break };
            failed += self.pipeline.apply_ops(batch.get(*at..*at + 1).unwrap_or_default());
            budget -= 1;
            *at += 1;
            if *at >= batch.len() {
                backlog.ops.pop_front();
                finished = true;
            }
        }
        if finished {
            self.pipeline.finish_batch();
        }
        if failed > 0 {
            tracing::error!(failed, "configuration ops the management core accepted failed here");
        }
        // A report reflects every change asked for before it.
        if !backlog.ops.is_empty() {
            return;
        }
        let Some(p) = backlog.reports.front_mut() else { return };
        let ipvs = &self.pipeline.ipvs;
        let (report, at) =
            p.building.get_or_insert_with(|| (ipvs.report_start(now), ReportCursor::default()));
        if ipvs.report_step(report, at, p.conns, REPORT_UNITS_PER_TURN) {
            if let Some(done) = backlog.reports.pop_front() {
                if let Some((report, _)) = done.building {
                    // The management core may have given up waiting; nothing to do then.
                    let _ = done.reply.send(report);
                }
            }
        }
    }
}

#[allow(clippy::panic, reason = "fault injection: the daemon's test of a dying worker")]
#[cold]
fn injected_panic() -> ! {
    panic!("injected fault: worker panics (RVS_FAULT_WORKER_PANIC_AFTER_MS)");
}

/// Where processed packets go: the ports' TX staging bursts (tagged for a VLAN on the way), the
/// interfaces' kernel twins, or the hold queue.
struct Tx {
    ports: Vec<PortQueues>,
    ifaces: Vec<IfaceQueues>,
    /// One per port.
    staged: Vec<PacketBurst>,
    held: Vec<Held>,
}

/// A burst's working space, kept across bursts.
struct Scratch {
    metas: [Meta; BURST_SIZE],
    actions: [Action; BURST_SIZE],
    sync_buf: Vec<SyncConn>,
}

/// A frame of a port with VLANs, to its interface's burst (untagged first), or counted and dropped.
fn demux_vlan(d: &Demux, mut m: Mbuf, by_iface: &mut [PacketBurst], counters: &WorkerCounters) {
    let iface = match vlan::tagging(m.data()) {
        Ok(Tagging::Untagged) => d.untagged,
        Ok(Tagging::Vlan(id)) => match d.vlans.iter().find(|(v, _)| *v == id) {
            Some(&(_, iface)) if vlan::pop_vlan(&mut MbufPacket(&mut m)).is_ok() => Some(iface),
            Some(_) => return counters.count_drop(DropReason::Malformed),
            None => None,
        },
        Ok(Tagging::Stacked) => return counters.count_drop(DropReason::Qinq),
        Err(_) => return counters.count_drop(DropReason::Malformed),
    };
    let Some(b) = iface.and_then(|i| by_iface.get_mut(i)) else {
        return counters.count_drop(DropReason::VlanUnknown);
    };
    // A burst of one port's frames always fits any one interface's burst.
    if b.push(m).is_err() {
        counters.count_drop(DropReason::Malformed);
    }
}

/// One packet through the pipeline, received on (or handed over as received on) `port`: the
/// stages on one frame (handed-over packets come one at a time).
#[allow(clippy::too_many_arguments)]
fn process(
    pipeline: &mut Pipeline,
    out: &mut Tx,
    counters: &WorkerCounters,
    pool: &Mempool,
    steering: Option<&Steering>,
    port: usize,
    mut m: Mbuf,
    now: Time,
) {
    let action = pipeline.handle(port, &mut MbufPacket(&mut m), now);
    send_mirrors(pipeline, counters, steering);
    dispatch(pipeline, out, counters, pool, steering, port, m, action);
}

/// Mirrors leave before the packets that created them can be transmitted (see
/// Handoff::Unmatched).
fn send_mirrors(pipeline: &mut Pipeline, counters: &WorkerCounters, steering: Option<&Steering>) {
    for (worker, c) in pipeline.mirrors.drain(..) {
        match steering.and_then(|st| st.peers.get(worker)).map(|peer| peer.try_send(Handoff::Mirror(c))) {
            Some(Ok(())) => counters.count_mirror(),
            _ => counters.count_drop(DropReason::HandoffFull),
        }
    }
}

/// The TX stage for one frame: what its action says.
#[allow(clippy::too_many_arguments)]
fn dispatch(
    pipeline: &mut Pipeline,
    out: &mut Tx,
    counters: &WorkerCounters,
    pool: &Mempool,
    steering: Option<&Steering>,
    port: usize,
    m: Mbuf,
    action: Action,
) {
    match action {
        Action::Retry => {
            let me = steering.and_then(|st| st.peers.get(st.index));
            match me.map(|inbox| inbox.try_send(Handoff::Unmatched { port, mbuf: m })) {
                Some(Ok(())) => {}
                _ => counters.count_drop(DropReason::NoService),
            }
        }
        Action::Tx(to) => out.stage(counters, to, m),
        Action::Hold { port, next_hop } => {
            if out.held.len() < HOLD_CAPACITY {
                out.held.push(Held { port, next_hop, mbuf: m });
            } else {
                counters.count_drop(DropReason::NoNeighbour);
            }
        }
        Action::IcmpError { port, kind } => {
            if let Some(e) = originate(pool, counters, |buf| pipeline.icmp_error(port, m.data(), kind, buf)) {
                out.stage(counters, port, e);
            }
        }
        Action::ToKernel(p) => out.stage_twin(counters, p, m),
        Action::Drop => {}
    }
}

/// Cycles per stage of one burst.
struct StageClock {
    last: u64,
    cycles: [u64; STAGE_COUNT],
}

impl StageClock {
    #[inline]
    fn start() -> Self {
        Self { last: rdtsc(), cycles: [0; STAGE_COUNT] }
    }

    /// Ends stage `i`.
    #[inline]
    fn lap(&mut self, i: usize) {
        let now = rdtsc();
        if let Some(c) = self.cycles.get_mut(i) {
            *c += now.wrapping_sub(self.last);
        }
        self.last = now;
    }
}

fn flush_twin(t: &mut TwinQueues, counters: &WorkerCounters) {
    if t.staged.is_empty() {
        return;
    }
    // The kernel never makes the worker wait: what its queue refuses is dropped and counted.
    let out = t.tx.tx_burst(&mut t.staged);
    counters.add_drops(DropReason::KernelQueueFull, u64::from(out.dropped));
}

/// A new mbuf filled by `build` (which returns the frame length); counted as a drop if none.
fn originate(
    pool: &Mempool,
    counters: &WorkerCounters,
    build: impl FnOnce(&mut [u8]) -> Option<usize>,
) -> Option<Mbuf> {
    let Some(mut m) = pool.alloc() else {
        counters.count_drop(DropReason::NoMbuf);
        return None;
    };
    // Room for the largest frame the director builds (an ICMP error quoting 576 bytes).
    let room = u16::try_from(m.tailroom().min(1514)).unwrap_or(0);
    m.append(room)?;
    let n = u16::try_from(build(m.data_mut())?).ok()?;
    if m.trim(room.saturating_sub(n)) { Some(m) } else { None }
}

impl Tx {
    /// A frame to leave by interface `iface`: tagged if it is a VLAN, staged on its port.
    fn stage(&mut self, counters: &WorkerCounters, iface: usize, mut m: Mbuf) {
        let Some(i) = self.ifaces.get(iface) else {
            counters.count_drop(DropReason::NoRoute);
            return;
        };
        let port = i.port;
        if let Some(id) = i.vlan {
            if vlan::push_vlan(&mut MbufPacket(&mut m), id).is_err() {
                counters.count_drop(DropReason::RewriteFailed);
                return;
            }
        }
        let (Some(q), Some(b)) = (self.ports.get_mut(port), self.staged.get_mut(port)) else {
            counters.count_drop(DropReason::NoRoute);
            return;
        };
        if let Err(m) = b.push(m) {
            flush(q, b, counters);
            if b.push(m).is_err() {
                counters.count_drop(DropReason::TxRingFull);
            }
        }
    }

    /// A frame for the kernel, staged on the interface's twin; counted as a drop if the twin's
    /// ring is full (or the interface has none).
    fn stage_twin(&mut self, counters: &WorkerCounters, iface: usize, m: Mbuf) {
        let Some(t) = self.ifaces.get_mut(iface).and_then(|q| q.twin.as_mut()) else {
            counters.count_drop(DropReason::KernelQueueFull);
            return;
        };
        counters.add_to_kernel(1);
        if let Err(m) = t.staged.push(m) {
            flush_twin(t, counters);
            if t.staged.push(m).is_err() {
                counters.count_drop(DropReason::KernelQueueFull);
            }
        }
    }

    fn flush_all(&mut self, counters: &WorkerCounters) {
        for (q, b) in self.ports.iter_mut().zip(self.staged.iter_mut()) {
            flush(q, b, counters);
        }
        for t in self.ifaces.iter_mut().filter_map(|i| i.twin.as_mut()) {
            flush_twin(t, counters);
        }
    }
}

fn flush(q: &mut PortQueues, b: &mut PacketBurst, counters: &WorkerCounters) {
    if b.is_empty() {
        return;
    }
    let out = q.tx.tx_burst(b);
    counters.add_rx_tx(0, u64::from(out.sent));
    counters.add_drops(DropReason::TxRingFull, u64::from(out.dropped));
}
