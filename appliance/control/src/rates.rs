//! Rates for `ipvsadm --rate`, estimated as IPVS does (net/netfilter/ipvs/ip_vs_est.c): every 2 s
//! the counter deltas are turned into per-second rates in fixed point and smoothed with an
//! exponentially weighted average of weight 1/4. Connections and packets carry 10 fractional bits,
//! bytes 5, as in the kernel; the listing shows the rounded values.

use std::net::IpAddr;

use hashbrown::HashMap;
use rvs_adm::listing::{Rates, Snapshot};
use rvs_ipvs::{ServiceKey, Stats, Time};

/// The estimator's period.
pub const INTERVAL_MS: Time = 2000;

#[derive(Debug, Clone, Copy, Default)]
struct Est {
    last: Stats,
    cps: i64,
    inpps: i64,
    outpps: i64,
    inbps: i64,
    outbps: i64,
}

impl Est {
    fn update(&mut self, now: &Stats) {
        // ip_vs_estimation_timer: (delta over 2 s) << 9 is per second << 10; bytes << 4 is << 5.
        let d = |n: u64, l: u64, shift: u32| (n.saturating_sub(l) as i64) << shift;
        let step = |avg: &mut i64, rate: i64| *avg += (rate - *avg) >> 2;
        step(&mut self.cps, d(now.conns, self.last.conns, 9));
        step(&mut self.inpps, d(now.in_pkts, self.last.in_pkts, 9));
        step(&mut self.outpps, d(now.out_pkts, self.last.out_pkts, 9));
        step(&mut self.inbps, d(now.in_bytes, self.last.in_bytes, 4));
        step(&mut self.outbps, d(now.out_bytes, self.last.out_bytes, 4));
        self.last = *now;
    }

    fn rates(&self) -> Rates {
        // ip_vs_read_estimator: round to the nearest unit.
        let r = |v: i64, frac: u32| (v.max(0) as u64 + ((1 << frac) >> 1)) >> frac;
        Rates {
            cps: r(self.cps, 10),
            inpps: r(self.inpps, 10),
            outpps: r(self.outpps, 10),
            inbps: r(self.inbps, 5),
            outbps: r(self.outbps, 5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Service(ServiceKey),
    Dest(ServiceKey, IpAddr, u16),
}

/// Per-service and per-server estimators.
#[derive(Debug, Default)]
pub struct Estimator {
    ests: HashMap<Key, Est>,
    next: Time,
}

impl Estimator {
    /// Whether the 2-second step is due.
    pub fn due(&self, now: Time) -> bool {
        now >= self.next
    }

    /// Runs the 2-second step when it is due, on the director's summed counters.
    pub fn tick(&mut self, snap: &Snapshot, now: Time) {
        if now < self.next {
            return;
        }
        self.next = now + INTERVAL_MS;
        let mut seen = Vec::new();
        for sv in &snap.services {
            let k = Key::Service(sv.cfg.key);
            self.ests.entry(k).or_insert_with(|| Est { last: sv.stats, ..Est::default() }).update(&sv.stats);
            seen.push(k);
            for d in &sv.dests {
                let k = Key::Dest(sv.cfg.key, d.cfg.addr, d.cfg.port);
                self.ests
                    .entry(k)
                    .or_insert_with(|| Est { last: d.stats, ..Est::default() })
                    .update(&d.stats);
                seen.push(k);
            }
        }
        self.ests.retain(|k, _| seen.contains(k));
    }

    /// Fills a snapshot's rates.
    pub fn fill(&self, snap: &mut Snapshot) {
        for sv in &mut snap.services {
            if let Some(e) = self.ests.get(&Key::Service(sv.cfg.key)) {
                sv.rates = e.rates();
            }
            for d in &mut sv.dests {
                if let Some(e) = self.ests.get(&Key::Dest(sv.cfg.key, d.cfg.addr, d.cfg.port)) {
                    d.rates = e.rates();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_to_a_steady_rate_and_decays_to_zero() {
        let mut e = Est::default();
        let mut s = Stats::default();
        // The average closes (3/4)^n of the gap after n periods; after 100 the rest is below the
        // fixed-point resolution and the listed values are exact.
        for _ in 0..100 {
            // 2 s at 1000 conn/s, 50 000 packets/s, 30 MB/s.
            s.conns += 2000;
            s.in_pkts += 100_000;
            s.in_bytes += 60_000_000;
            e.update(&s);
        }
        let r = e.rates();
        assert_eq!((r.cps, r.inpps, r.inbps, r.outpps), (1000, 50_000, 30_000_000, 0));
        for _ in 0..60 {
            e.update(&s);
        }
        assert_eq!(e.rates().cps, 0, "no new connections: the average decays to zero");
    }

    #[test]
    fn the_weight_is_one_quarter() {
        let mut e = Est::default();
        let mut s = Stats::default();
        s.conns += 2000; // 1000/s for one period
        e.update(&s);
        assert_eq!(e.rates().cps, 250, "a quarter of the step after one period, as IPVS");
    }
}
