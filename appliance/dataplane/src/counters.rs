use std::sync::atomic::{AtomicU64, Ordering};

/// One worker's counters. Exactly one thread (the worker) writes them, so an update is a relaxed load
/// and store, not a locked read-modify-write; the management core reads relaxed snapshots. Aligned to
/// its own cache lines so that two workers' counters never share one.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerCounters {
    rx_packets: AtomicU64,
    tx_packets: AtomicU64,
    /// Packets the TX queue refused (ring full), freed by the worker.
    drop_tx_full: AtomicU64,
    /// Poll-loop iterations.
    polls: AtomicU64,
    /// TSC cycles spent in iterations that moved at least one packet.
    busy_cycles: AtomicU64,
    /// TSC cycles of all iterations.
    loop_cycles: AtomicU64,
}

/// A point-in-time copy of [`WorkerCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub drop_tx_full: u64,
    pub polls: u64,
    pub busy_cycles: u64,
    pub loop_cycles: u64,
}

impl CounterSnapshot {
    /// Share of the loop's time spent moving packets, 0.0..=1.0.
    pub fn busy_ratio(&self) -> f64 {
        if self.loop_cycles == 0 { 0.0 } else { self.busy_cycles as f64 / self.loop_cycles as f64 }
    }

    /// Sum of several workers' snapshots.
    pub fn sum<'a>(it: impl IntoIterator<Item = &'a CounterSnapshot>) -> CounterSnapshot {
        it.into_iter().fold(CounterSnapshot::default(), |a, b| CounterSnapshot {
            rx_packets: a.rx_packets + b.rx_packets,
            tx_packets: a.tx_packets + b.tx_packets,
            drop_tx_full: a.drop_tx_full + b.drop_tx_full,
            polls: a.polls + b.polls,
            busy_cycles: a.busy_cycles + b.busy_cycles,
            loop_cycles: a.loop_cycles + b.loop_cycles,
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
            bump(&self.drop_tx_full, dropped);
        }
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
            drop_tx_full: self.drop_tx_full.load(Ordering::Relaxed),
            polls: self.polls.load(Ordering::Relaxed),
            busy_cycles: self.busy_cycles.load(Ordering::Relaxed),
            loop_cycles: self.loop_cycles.load(Ordering::Relaxed),
        }
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
        assert_eq!((s.rx_packets, s.tx_packets, s.drop_tx_full, s.polls), (37, 35, 2, 10));
        assert_eq!(s.busy_ratio(), 0.25);
        let total = CounterSnapshot::sum([&s, &s]);
        assert_eq!(total.rx_packets, 74);
        assert_eq!(CounterSnapshot::default().busy_ratio(), 0.0);
    }

    #[test]
    fn counters_of_two_workers_never_share_a_cache_line() {
        assert!(std::mem::align_of::<WorkerCounters>() >= 128);
    }
}
