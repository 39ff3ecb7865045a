use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rvs_dpdk::{Mbuf, PacketBurst, RxQueue, TxQueue, rdtsc};

use crate::counters::{LoopTimer, WorkerCounters};

/// What the L2 cross-connect does to each frame (the two testpmd modes it is benchmarked against).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardMode {
    /// Forward frames untouched (testpmd `io`): a transparent bridge.
    Io,
    /// Swap source and destination MAC (testpmd `macswap`): touches every packet's first cache line,
    /// as any real pipeline must.
    MacSwap,
}

/// One direction of a cross-connect: everything received on `rx` leaves on `tx`.
#[derive(Debug)]
pub struct Link {
    pub rx: RxQueue,
    pub tx: TxQueue,
}

/// A worker of the L2 stage: polls its links until told to stop.
#[derive(Debug)]
pub struct L2Worker {
    pub links: Vec<Link>,
    pub mode: ForwardMode,
    pub counters: Arc<WorkerCounters>,
    pub stop: Arc<AtomicBool>,
}

impl L2Worker {
    /// The poll loop. Returns 0 when stopped (the lcore function's return value).
    pub fn run(mut self) -> i32 {
        let mut burst = PacketBurst::new();
        let mut timer = LoopTimer::new();
        while !self.stop.load(Ordering::Relaxed) {
            let t0 = rdtsc();
            let mut moved = false;
            for link in &mut self.links {
                let n = link.rx.rx_burst(&mut burst);
                if n == 0 {
                    continue;
                }
                moved = true;
                if self.mode == ForwardMode::MacSwap {
                    burst.iter_mut().for_each(swap_macs);
                }
                let out = link.tx.tx_burst(&mut burst);
                self.counters.add_burst(n as u64, u64::from(out.sent), u64::from(out.dropped));
            }
            timer.turn(&self.counters, t0, moved);
        }
        timer.publish(&self.counters);
        0
    }
}

#[inline]
fn swap_macs(m: &mut Mbuf) {
    if let Some(hdr) = m.data_mut().get_mut(..12) {
        let (dst, src) = hdr.split_at_mut(6);
        dst.swap_with_slice(src);
    }
}
