use std::sync::atomic::{AtomicU64, Ordering};

use rvs_dpdk::rdtsc;

/// Why a worker dropped a packet: every drop is counted under one of these (exported as the
/// `reason` label of `rvs_worker_dropped_packets_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Truncated, or a header field the protocol forbids.
    Malformed,
    /// Valid but not handled (IPv6, other EtherTypes, ICMP other than echo to a VIP).
    Unsupported,
    /// Unicast for another host of the segment (the port is promiscuous).
    NotOurMac,
    /// An ARP packet not asking for one of our addresses (learned from, then dropped).
    ArpNotOurs,
    /// For the director's own address, not echo: there is no exception path to a kernel yet.
    ToDirector,
    /// Not to a VIP, not a reply of a NAT connection: the director does not route other traffic.
    NoService,
    /// A later IP fragment whose first was not seen (or not routable, or the fragment table was
    /// full); IPv6 fragments.
    Fragment,
    NoRoute,
    /// The next hop did not answer ARP (or the neighbour table is full).
    NoNeighbour,
    /// TTL would reach zero (an ICMP time exceeded answers it).
    TtlExceeded,
    /// Too big for the egress MTU with DF set (an ICMP fragmentation needed answers it).
    FragNeeded,
    /// Too big for the egress MTU without DF (rvs does not fragment).
    TooBig,
    /// A rewrite could not be done (no headroom for an outer header).
    RewriteFailed,
    /// No mbuf for a packet the director originates (ARP, ICMP error).
    NoMbuf,
    /// The TX ring was full.
    TxRingFull,
    /// Another worker owns the flow and its inbox was full.
    HandoffFull,
    /// Over the worker's ICMP rate limit: an echo request left unanswered, or a packet whose ICMP
    /// error was not sent (counted here instead of ttl_exceeded / frag_needed).
    IcmpRateLimit,
    /// ARP from a sender outside the port's subnets: not learned, not answered.
    ArpRefused,
    /// For the director's kernel, over the worker's budget for it (`kernel_packets_per_second`).
    KernelBudget,
    /// For the director's kernel, but its twin's queue was full (or the port has none).
    KernelQueueFull,
    /// An 802.1Q tag for a VLAN the port does not carry, or untagged on a port that carries only
    /// VLANs.
    VlanUnknown,
    /// Stacked tags (802.1ad QinQ, or two 802.1Q tags): not demultiplexed.
    Qinq,
    /// IPVS refused it.
    Ipvs(rvs_ipvs::DropReason),
}

impl DropReason {
    pub const COUNT: usize = 22 + rvs_ipvs::DropReason::ALL.len();

    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Malformed,
        DropReason::Unsupported,
        DropReason::NotOurMac,
        DropReason::ArpNotOurs,
        DropReason::ToDirector,
        DropReason::NoService,
        DropReason::Fragment,
        DropReason::NoRoute,
        DropReason::NoNeighbour,
        DropReason::TtlExceeded,
        DropReason::FragNeeded,
        DropReason::TooBig,
        DropReason::RewriteFailed,
        DropReason::NoMbuf,
        DropReason::TxRingFull,
        DropReason::HandoffFull,
        DropReason::IcmpRateLimit,
        DropReason::ArpRefused,
        DropReason::KernelBudget,
        DropReason::KernelQueueFull,
        DropReason::VlanUnknown,
        DropReason::Qinq,
        DropReason::Ipvs(rvs_ipvs::DropReason::ALL[0]),
        DropReason::Ipvs(rvs_ipvs::DropReason::ALL[1]),
        DropReason::Ipvs(rvs_ipvs::DropReason::ALL[2]),
        DropReason::Ipvs(rvs_ipvs::DropReason::ALL[3]),
        DropReason::Ipvs(rvs_ipvs::DropReason::ALL[4]),
    ];

    #[inline]
    pub fn index(self) -> usize {
        match self {
            DropReason::Malformed => 0,
            DropReason::Unsupported => 1,
            DropReason::NotOurMac => 2,
            DropReason::ArpNotOurs => 3,
            DropReason::ToDirector => 4,
            DropReason::NoService => 5,
            DropReason::Fragment => 6,
            DropReason::NoRoute => 7,
            DropReason::NoNeighbour => 8,
            DropReason::TtlExceeded => 9,
            DropReason::FragNeeded => 10,
            DropReason::TooBig => 11,
            DropReason::RewriteFailed => 12,
            DropReason::NoMbuf => 13,
            DropReason::TxRingFull => 14,
            DropReason::HandoffFull => 15,
            DropReason::IcmpRateLimit => 16,
            DropReason::ArpRefused => 17,
            DropReason::KernelBudget => 18,
            DropReason::KernelQueueFull => 19,
            DropReason::VlanUnknown => 20,
            DropReason::Qinq => 21,
            DropReason::Ipvs(r) => 22 + rvs_ipvs::DropReason::ALL.iter().position(|x| *x == r).unwrap_or(0),
        }
    }

    /// The `reason` label.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Unsupported => "unsupported",
            DropReason::NotOurMac => "not_our_mac",
            DropReason::ArpNotOurs => "arp_not_ours",
            DropReason::ToDirector => "to_director",
            DropReason::NoService => "no_service",
            DropReason::Fragment => "fragment",
            DropReason::NoRoute => "no_route",
            DropReason::NoNeighbour => "no_neighbour",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::FragNeeded => "frag_needed",
            DropReason::TooBig => "too_big",
            DropReason::RewriteFailed => "rewrite_failed",
            DropReason::NoMbuf => "no_mbuf",
            DropReason::TxRingFull => "tx_ring_full",
            DropReason::HandoffFull => "handoff_full",
            DropReason::IcmpRateLimit => "icmp_ratelimit",
            DropReason::ArpRefused => "arp_refused",
            DropReason::KernelBudget => "kernel_budget",
            DropReason::KernelQueueFull => "kernel_queue_full",
            DropReason::VlanUnknown => "vlan_unknown",
            DropReason::Qinq => "qinq",
            DropReason::Ipvs(r) => r.name(),
        }
    }
}

/// One worker's counters. Exactly one thread (the worker) writes them, so an update is a relaxed load
/// and store, not a locked read-modify-write; the management core reads relaxed snapshots. Aligned to
/// its own cache lines so that two workers' counters never share one.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerCounters {
    rx_packets: AtomicU64,
    tx_packets: AtomicU64,
    /// Packets passed to the worker that owns their flow.
    handed_off: AtomicU64,
    /// NAT connections copied to the worker the NIC brings their replies to (RSS predicted).
    mirrored: AtomicU64,
    /// Neighbours asked for us but not learned (the table's passive share was full).
    neighbours_refused: AtomicU64,
    /// Frames passed up to the ports' kernel twins, and frames the kernel sent on them.
    to_kernel: AtomicU64,
    from_kernel: AtomicU64,
    /// Neighbours pushed out of a full table to make room for a next hop.
    neighbours_evicted: AtomicU64,
    /// Per [`DropReason`] reason, by [`DropReason::index`].
    drops: [AtomicU64; DropReason::COUNT],
    /// Poll-loop iterations.
    polls: AtomicU64,
    /// TSC cycles spent in iterations that moved at least one packet.
    busy_cycles: AtomicU64,
    /// TSC cycles of all iterations.
    loop_cycles: AtomicU64,
    /// The longest the worker spent away from its queues at once (its millisecond housekeeping:
    /// expiry, configuration changes, reports), in TSC cycles, since it started.
    longest_pause_cycles: AtomicU64,
    /// Housekeeping turns that kept the worker away from its queues for more than 50 µs.
    long_pauses: AtomicU64,
    /// 50 µs in TSC cycles (set once at start; 0 = not counted).
    long_pause_cycles: AtomicU64,
    /// TSC cycles spent in each stage of the packet path, by [`crate::pipeline::STAGES`] index,
    /// and the packets that went through the stages (handed-over ones excluded).
    stage_cycles: [AtomicU64; STAGE_COUNT],
    staged_packets: AtomicU64,
    /// Connection sync: sent to the sync daemon, lost (its queue or the shard's log full),
    /// installed from a master, refused (no such service or server here).
    sync: [AtomicU64; 4],
}

/// The connection-sync events [`WorkerCounters`] counts, in order.
pub const SYNC_EVENTS: [&str; 4] = ["sent", "lost", "installed", "refused"];

/// The number of stages [`WorkerCounters`] times.
pub const STAGE_COUNT: usize = crate::pipeline::STAGES.len();

/// A point-in-time copy of [`WorkerCounters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub handed_off: u64,
    pub mirrored: u64,
    pub neighbours_refused: u64,
    pub neighbours_evicted: u64,
    pub to_kernel: u64,
    pub from_kernel: u64,
    /// Per [`DropReason`] reason, by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
    pub polls: u64,
    pub busy_cycles: u64,
    pub loop_cycles: u64,
    pub longest_pause_cycles: u64,
    pub long_pauses: u64,
    /// Cycles per stage (by [`crate::pipeline::STAGES`] index), and the packets they are spent on.
    pub stage_cycles: [u64; STAGE_COUNT],
    pub staged_packets: u64,
    /// By [`SYNC_EVENTS`].
    pub sync: [u64; 4],
}

impl Default for CounterSnapshot {
    fn default() -> Self {
        Self {
            rx_packets: 0,
            tx_packets: 0,
            handed_off: 0,
            mirrored: 0,
            neighbours_refused: 0,
            neighbours_evicted: 0,
            to_kernel: 0,
            from_kernel: 0,
            drops: [0; DropReason::COUNT],
            polls: 0,
            busy_cycles: 0,
            loop_cycles: 0,
            longest_pause_cycles: 0,
            long_pauses: 0,
            stage_cycles: [0; STAGE_COUNT],
            staged_packets: 0,
            sync: [0; 4],
        }
    }
}

impl CounterSnapshot {
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops.get(r.index()).copied().unwrap_or(0)
    }

    /// All drops, every reason.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Share of the loop's time spent moving packets, 0.0..=1.0.
    pub fn busy_ratio(&self) -> f64 {
        if self.loop_cycles == 0 { 0.0 } else { self.busy_cycles as f64 / self.loop_cycles as f64 }
    }

    /// Sum of several workers' snapshots.
    pub fn sum<'a>(it: impl IntoIterator<Item = &'a CounterSnapshot>) -> CounterSnapshot {
        it.into_iter().fold(CounterSnapshot::default(), |a, b| CounterSnapshot {
            rx_packets: a.rx_packets + b.rx_packets,
            tx_packets: a.tx_packets + b.tx_packets,
            handed_off: a.handed_off + b.handed_off,
            mirrored: a.mirrored + b.mirrored,
            neighbours_refused: a.neighbours_refused + b.neighbours_refused,
            neighbours_evicted: a.neighbours_evicted + b.neighbours_evicted,
            to_kernel: a.to_kernel + b.to_kernel,
            from_kernel: a.from_kernel + b.from_kernel,
            drops: {
                let mut d = a.drops;
                d.iter_mut().zip(b.drops).for_each(|(x, y)| *x += y);
                d
            },
            polls: a.polls + b.polls,
            busy_cycles: a.busy_cycles + b.busy_cycles,
            loop_cycles: a.loop_cycles + b.loop_cycles,
            longest_pause_cycles: a.longest_pause_cycles.max(b.longest_pause_cycles),
            long_pauses: a.long_pauses + b.long_pauses,
            stage_cycles: {
                let mut c = a.stage_cycles;
                c.iter_mut().zip(b.stage_cycles).for_each(|(x, y)| *x += y);
                c
            },
            staged_packets: a.staged_packets + b.staged_packets,
            sync: {
                let mut c = a.sync;
                c.iter_mut().zip(b.sync).for_each(|(x, y)| *x += y);
                c
            },
        })
    }
}

#[inline]
fn bump(c: &AtomicU64, by: u64) {
    // Single writer: a plain add, published with a relaxed store.
    c.store(c.load(Ordering::Relaxed).wrapping_add(by), Ordering::Relaxed);
}

impl WorkerCounters {
    #[inline]
    pub(crate) fn add_burst(&self, rx: u64, tx: u64, dropped: u64) {
        bump(&self.rx_packets, rx);
        bump(&self.tx_packets, tx);
        if dropped != 0 {
            self.add_drops(DropReason::TxRingFull, dropped);
        }
    }

    /// One burst's time in each stage (cycles, by stage index) over `packets` packets.
    #[inline]
    pub fn add_stages(&self, cycles: &[u64; STAGE_COUNT], packets: u64) {
        for (c, &n) in self.stage_cycles.iter().zip(cycles) {
            bump(c, n);
        }
        bump(&self.staged_packets, packets);
    }

    /// A connection-sync event, by its index in [`SYNC_EVENTS`].
    #[inline]
    pub fn add_sync(&self, event: usize, n: u64) {
        if let Some(c) = self.sync.get(event) {
            bump(c, n);
        }
    }

    #[inline]
    pub fn count_handoff(&self) {
        bump(&self.handed_off, 1);
    }

    #[inline]
    pub fn count_mirror(&self) {
        bump(&self.mirrored, 1);
    }

    #[inline]
    pub fn add_to_kernel(&self, n: u64) {
        bump(&self.to_kernel, n);
    }

    #[inline]
    pub fn add_from_kernel(&self, n: u64) {
        bump(&self.from_kernel, n);
    }

    #[inline]
    pub fn count_neighbour_refused(&self) {
        bump(&self.neighbours_refused, 1);
    }

    /// Publishes the neighbour table's eviction count (the table keeps the running total).
    #[inline]
    pub fn set_neighbours_evicted(&self, total: u64) {
        self.neighbours_evicted.store(total, Ordering::Relaxed);
    }

    /// Records a pause of `cycles` (kept if the longest so far; single writer).
    #[inline]
    pub fn note_pause(&self, cycles: u64) {
        if cycles > self.longest_pause_cycles.load(Ordering::Relaxed) {
            self.longest_pause_cycles.store(cycles, Ordering::Relaxed);
        }
        let long = self.long_pause_cycles.load(Ordering::Relaxed);
        if long > 0 && cycles > long {
            bump(&self.long_pauses, 1);
        }
    }

    /// The TSC rate, so that pauses over 50 µs are counted.
    pub fn set_tsc_hz(&self, hz: u64) {
        self.long_pause_cycles.store(hz / 20_000, Ordering::Relaxed);
    }

    #[inline]
    pub fn count_drop(&self, r: DropReason) {
        self.add_drops(r, 1);
    }

    #[inline]
    pub fn add_drops(&self, r: DropReason, n: u64) {
        if let Some(c) = self.drops.get(r.index()) {
            bump(c, n);
        }
    }

    /// Counts packets received and sent outside [`WorkerCounters::add_burst`] (the director's
    /// pipeline counts them separately).
    #[inline]
    pub fn add_rx_tx(&self, rx: u64, tx: u64) {
        bump(&self.rx_packets, rx);
        bump(&self.tx_packets, tx);
    }

    #[inline]
    pub(crate) fn add_loop(&self, polls: u64, busy: u64, total: u64) {
        bump(&self.polls, polls);
        bump(&self.busy_cycles, busy);
        bump(&self.loop_cycles, total);
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            rx_packets: self.rx_packets.load(Ordering::Relaxed),
            tx_packets: self.tx_packets.load(Ordering::Relaxed),
            handed_off: self.handed_off.load(Ordering::Relaxed),
            mirrored: self.mirrored.load(Ordering::Relaxed),
            neighbours_refused: self.neighbours_refused.load(Ordering::Relaxed),
            neighbours_evicted: self.neighbours_evicted.load(Ordering::Relaxed),
            to_kernel: self.to_kernel.load(Ordering::Relaxed),
            from_kernel: self.from_kernel.load(Ordering::Relaxed),
            drops: std::array::from_fn(|i| self.drops.get(i).map_or(0, |c| c.load(Ordering::Relaxed))),
            polls: self.polls.load(Ordering::Relaxed),
            busy_cycles: self.busy_cycles.load(Ordering::Relaxed),
            loop_cycles: self.loop_cycles.load(Ordering::Relaxed),
            longest_pause_cycles: self.longest_pause_cycles.load(Ordering::Relaxed),
            long_pauses: self.long_pauses.load(Ordering::Relaxed),
            stage_cycles: std::array::from_fn(|i| {
                self.stage_cycles.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
            }),
            staged_packets: self.staged_packets.load(Ordering::Relaxed),
            sync: std::array::from_fn(|i| self.sync.get(i).map_or(0, |c| c.load(Ordering::Relaxed))),
        }
    }
}

/// Loop turns between publications of the loop-cycle counters: keeps the stores off the per-burst
/// path.
const PUBLISH_EVERY: u64 = 1024;

/// A poll loop's cycle accounting (turns, cycles of turns that moved packets, all cycles), published
/// to its [`WorkerCounters`] every [`PUBLISH_EVERY`] turns and when the loop ends.
#[derive(Debug)]
pub(crate) struct LoopTimer {
    polls: u64,
    busy: u64,
    start: u64,
}

impl LoopTimer {
    pub(crate) fn new() -> Self {
        Self { polls: 0, busy: 0, start: rdtsc() }
    }

    /// One turn that began at TSC `t0`; `moved`: it moved packets.
    #[inline]
    pub(crate) fn turn(&mut self, counters: &WorkerCounters, t0: u64, moved: bool) {
        self.polls += 1;
        if moved {
            self.busy += rdtsc().wrapping_sub(t0);
        }
        if self.polls == PUBLISH_EVERY {
            self.publish(counters);
        }
    }

    /// Publishes what is counted so far (also when the loop ends).
    pub(crate) fn publish(&mut self, counters: &WorkerCounters) {
        let now = rdtsc();
        counters.add_loop(self.polls, self.busy, now.wrapping_sub(self.start));
        (self.polls, self.busy, self.start) = (0, 0, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_add_up_and_busy_ratio_is_bounded() {
        let c = WorkerCounters::default();
        c.add_burst(32, 30, 2);
        c.add_burst(5, 5, 0);
        c.add_loop(10, 250, 1000);
        let s = c.snapshot();
        assert_eq!((s.rx_packets, s.tx_packets, s.dropped(DropReason::TxRingFull), s.polls), (37, 35, 2, 10));
        assert_eq!(s.busy_ratio(), 0.25);
        let total = CounterSnapshot::sum([&s, &s]);
        assert_eq!(total.rx_packets, 74);
        assert_eq!(CounterSnapshot::default().busy_ratio(), 0.0);
    }

    #[test]
    fn every_drop_reason_has_its_own_slot_and_name() {
        let mut seen = std::collections::HashSet::new();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(seen.insert(r.name()), "{} twice", r.name());
        }
    }

    #[test]
    fn counters_of_two_workers_never_share_a_cache_line() {
        assert!(std::mem::align_of::<WorkerCounters>() >= 128);
    }
}
