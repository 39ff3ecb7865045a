//! The traffic generator's poll loop: it sends client packets into the device under test on port 0,
//! counts what comes out of port 1 (the real servers' side), and answers every ARP request on either
//! port as if it were each host the director asks for.
//!
//! The main thread steers it with [`Plan`]s over a channel and reads its counters from atomics; the
//! loop publishes them every few iterations, so a reading is at most microseconds old.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_channel::Receiver;
use rvs_dpdk::{Mbuf, Mempool, PacketBurst, RxQueue, TxQueue, rdtsc};
use rvs_wire::arp;

use crate::packets::{self, Addressing, FLOOD_FIRST_OCTET, NEW_FIRST_OCTET, Template};

/// What the generator does until told otherwise.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Send nothing; keep answering ARP and counting.
    Idle,
    /// One SYN for each of the flows `first..first + count`, in a scattered order, then idle.
    /// Lossless: a packet the port refuses is offered again.
    Syn {
        first: u32,
        count: u32,
    },
    /// Established packets (ACKs) over flows `0..flows`, each visited once per round in a scattered
    /// order, frame sizes cycling through `sizes`. Lossless and as fast as the device takes them.
    Flows {
        flows: u32,
        sizes: Vec<usize>,
    },
    /// Established 64-byte packets over `0..flows` at `pps`, mixed with SYNs from random sources at
    /// `flood_pps`. Nothing is offered twice: what the port refuses is lost, as on a wire into a full
    /// NIC ring.
    /// And `new_pps` legitimate new connections from 11.0.0.0/8: a SYN, then the client's ACK
    /// [`NEW_ACK_DELAY_US`] later (the generator answers such SYNs reaching the servers' side after
    /// NAT with the server's SYN-ACK).
    Flood {
        flows: u32,
        pps: f64,
        flood_pps: f64,
        new_pps: f64,
    },
    Stop,
}

/// The generator's counters, written by its loop only.
#[derive(Debug, Default)]
pub struct Counters {
    /// Established packets built during a flood (accepted or not).
    pub offered_est: AtomicU64,
    /// Frames out of the device on port 1 (servers' side) carrying a client's packet.
    pub rx: AtomicU64,
    /// Of `rx`, those from flood sources.
    pub rx_flood: AtomicU64,
    pub rx_bytes: AtomicU64,
    /// Anything else received (ARP, frames on port 0).
    pub rx_other: AtomicU64,
    /// Legitimate new connections offered during a flood; their SYNs and ACKs out of port 1; their
    /// servers' SYN-ACKs (NAT) back out of port 0.
    pub offered_new: AtomicU64,
    pub rx_new_syn: AtomicU64,
    pub rx_new_ack: AtomicU64,
    pub rx_new_synack: AtomicU64,
    pub arp_replies: AtomicU64,
    /// Set when the loop has taken the latest plan (the main thread clears it before sending).
    pub plan_taken: AtomicBool,
}

pub struct Generator {
    pub rx: [RxQueue; 2],
    pub tx: [TxQueue; 2],
    pub macs: [[u8; 6]; 2],
    pub pool: Mempool,
    pub addressing: Addressing,
    pub plans: Receiver<Plan>,
    pub counters: Arc<Counters>,
    pub tsc_hz: u64,
}

/// An odd stride that is coprime with every flow count of the form 2^a * 5^b (1k, 100k, 1M, 10M), so
/// `(f + STRIDE) mod n` visits every flow once per round while consecutive packets hit memory far apart.
const STRIDE: u64 = 0x9E37_79B1;

struct Walk {
    n: u64,
    step: u64,
    at: u64,
}

impl Walk {
    fn new(n: u32) -> Self {
        let n = u64::from(n.max(1));
        let mut step = STRIDE % n;
        while gcd(step, n) != 1 {
            step += 1;
        }
        Self { n, step, at: 0 }
    }

    #[inline]
    fn next(&mut self) -> u32 {
        let f = self.at;
        self.at += self.step;
        if self.at >= self.n {
            self.at -= self.n;
        }
        f as u32
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Local tallies, published to the atomics every `PUBLISH_EVERY` turns of the loop.
#[derive(Default)]
struct Tally {
    offered_est: u64,
    rx: u64,
    rx_flood: u64,
    rx_bytes: u64,
    rx_other: u64,
    arp: u64,
    offered_new: u64,
    rx_new_syn: u64,
    rx_new_ack: u64,
    rx_new_synack: u64,
}

/// How long after its SYN a legitimate new client sends its ACK (a LAN round trip).
pub const NEW_ACK_DELAY_US: u64 = 200;

const PUBLISH_EVERY: u32 = 64;

impl Generator {
    /// Runs until [`Plan::Stop`] or the channel closes.
    pub fn run(mut self) -> i32 {
        let a = self.addressing;
        let syn = Template::new(&a, packets::SMALL, true);
        let mut by_size: Vec<(usize, Template)> = Vec::new();
        let mut plan = Plan::Idle;
        let mut walk = Walk::new(1);
        let mut syn_left = 0u32;
        let mut syn_first = 0u32;
        let mut size_at = 0usize;
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut pending = PacketBurst::new();
        let mut t = Tally::default();
        let mut turn = 0u32;
        let mut flood_start = 0u64;
        // The flood's pacing: established packets offered before it began, SYNs built since.
        let (mut flood_est_base, mut flood_syn) = (0u64, 0u64);
        // Legitimate new connections: their ACKs wait here until due (TSC).
        let mut acks: std::collections::VecDeque<(u32, u16, u64)> =
            std::collections::VecDeque::with_capacity(1 << 16);
        let ack_delay = self.tsc_hz / 1_000_000 * NEW_ACK_DELAY_US;
        let mut new_seq = 0u32;
        loop {
            turn = turn.wrapping_add(1);
            if turn % PUBLISH_EVERY == 0 {
                self.publish(&t);
                if let Ok(p) = self.plans.try_recv() {
                    // A new plan starts clean: what the old one left unsent is dropped, not counted.
                    pending.clear();
                    match &p {
                        Plan::Stop => {
                            self.publish(&t);
                            return 0;
                        }
                        Plan::Syn { first, count } => {
                            walk = Walk::new(*count);
                            syn_left = *count;
                            syn_first = *first;
                        }
                        Plan::Flows { flows, sizes } => {
                            walk = Walk::new(*flows);
                            by_size =
                                sizes.iter().map(|&s| (s, Template::new(&a, s, false))).collect::<Vec<_>>();
                            size_at = 0;
                        }
                        Plan::Flood { flows, .. } => {
                            walk = Walk::new(*flows);
                            by_size = vec![(packets::SMALL, Template::new(&a, packets::SMALL, false))];
                            flood_start = rdtsc();
                            (flood_est_base, flood_syn) = (t.offered_est, 0);
                            t.offered_new = 0;
                            acks.clear();
                        }
                        Plan::Idle => {}
                    }
                    plan = p;
                    self.publish(&t);
                    self.counters.plan_taken.store(true, Ordering::Release);
                }
            }
            self.receive(&mut t);
            match &plan {
                Plan::Idle | Plan::Stop => {}
                Plan::Syn { .. } => {
                    if syn_left == 0 && pending.is_empty() {
                        plan = Plan::Idle;
                        continue;
                    }
                    while !pending.is_full() && syn_left > 0 {
                        let Some(m) = self.build(&syn, syn_first + walk.next()) else { break };
                        syn_left -= 1;
                        let _ = pending.push(m);
                    }
                    self.tx[0].tx_burst_retaining(&mut pending);
                }
                Plan::Flows { .. } => {
                    while !pending.is_full() {
                        let (_, tpl) = &by_size[size_at];
                        size_at = if size_at + 1 == by_size.len() { 0 } else { size_at + 1 };
                        let Some(m) = self.build(tpl, walk.next()) else { break };
                        let _ = pending.push(m);
                    }
                    self.tx[0].tx_burst_retaining(&mut pending);
                }
                Plan::Flood { pps, flood_pps, new_pps, .. } => {
                    let now = rdtsc();
                    let elapsed = now.wrapping_sub(flood_start) as f64 / self.tsc_hz as f64;
                    let due = |rate: f64, done: u64| ((elapsed * rate) as u64).saturating_sub(done);
                    // Legitimate clients first: their SYNs, and the ACKs now due (lossy like the rest).
                    let mut legit = PacketBurst::new();
                    let n_new = due(*new_pps, t.offered_new).min(8);
                    for _ in 0..n_new {
                        new_seq = new_seq.wrapping_add(1);
                        let ip = u32::from(Ipv4Addr::new(NEW_FIRST_OCTET, 0, 0, 0))
                            | (new_seq >> 14) & 0x00ff_ffff;
                        let port = 1024 + (new_seq & 0x3fff) as u16;
                        let Some(m) = self.build_at(&syn, ip, port) else { break };
                        t.offered_new += 1;
                        let _ = legit.push(m);
                        if acks.len() < acks.capacity() {
                            acks.push_back((ip, port, now + ack_delay));
                        }
                    }
                    while let Some(&(ip, port, at)) = acks.front() {
                        if at > now || legit.is_full() {
                            break;
                        }
                        acks.pop_front();
                        if let Some(m) = self.build_at(&by_size[0].1, ip, port) {
                            let _ = legit.push(m);
                        }
                    }
                    if !legit.is_empty() {
                        self.tx[0].tx_burst(&mut legit);
                    }
                    let mut n_est = due(*pps, t.offered_est - flood_est_base) as usize;
                    let mut n_syn = due(*flood_pps, flood_syn) as usize;
                    let total = n_est + n_syn;
                    if total == 0 {
                        continue;
                    }
                    if total > rvs_dpdk::BURST_SIZE {
                        // Keep the two kinds in proportion within a burst.
                        n_est = n_est * rvs_dpdk::BURST_SIZE / total;
                        n_syn = rvs_dpdk::BURST_SIZE - n_est;
                    }
                    let n = n_est + n_syn;
                    // Established packets spread evenly through the burst, SYNs in between.
                    let mut burst = PacketBurst::new();
                    for j in 0..n {
                        let est = (j + 1) * n_est / n > j * n_est / n;
                        let m = if est {
                            self.build(&by_size[0].1, walk.next())
                        } else {
                            rng ^= rng << 13;
                            rng ^= rng >> 7;
                            rng ^= rng << 17;
                            let ip = u32::from(Ipv4Addr::new(FLOOD_FIRST_OCTET, 64, 0, 0))
                                | (rng as u32 & 0x003f_ffff);
                            self.build_at(&syn, ip, 1024 | (rng >> 48) as u16)
                        };
                        let Some(m) = m else { break };
                        if est {
                            t.offered_est += 1;
                        } else {
                            flood_syn += 1;
                        }
                        let _ = burst.push(m);
                    }
                    self.tx[0].tx_burst(&mut burst);
                }
            }
        }
    }

    #[inline]
    fn build(&self, tpl: &Template, flow: u32) -> Option<Mbuf> {
        let (ip, port) = packets::client(flow);
        self.build_at(tpl, ip, port)
    }

    #[inline]
    fn build_at(&self, tpl: &Template, ip: u32, port: u16) -> Option<Mbuf> {
        let mut m = self.pool.alloc()?;
        let out = m.append(tpl.len() as u16)?;
        tpl.write(out, ip, port);
        Some(m)
    }

    /// Drains both ports (a few bursts each: the device must never find port 1's ring full because the
    /// generator was busy building packets).
    fn receive(&mut self, t: &mut Tally) {
        for port in [1, 0, 1, 1] {
            let mut burst = PacketBurst::new();
            if self.rx[port].rx_burst(&mut burst) == 0 {
                continue;
            }
            let mut replies = PacketBurst::new();
            burst.take_each(|mut m| {
                let data = m.data();
                if port == 1 {
                    if let Some(src) = packets::source_of(data) {
                        if src[0] == NEW_FIRST_OCTET {
                            let flags = packets::tcp_flags_of(data).unwrap_or(0);
                            if flags & 0x02 != 0 {
                                t.rx_new_syn += 1;
                                // NAT took it to a server: answer as the server would. (DR and TUN
                                // servers answer the client directly, not through the director.)
                                let nat = data.get(23) == Some(&6)
                                    && packets::destination_of(data) != Some(self.addressing.vip.octets());
                                if nat && packets::syn_to_synack(m.data_mut(), self.macs[1]) {
                                    let _ = replies.push(m);
                                }
                            } else {
                                t.rx_new_ack += 1;
                            }
                            return;
                        }
                        t.rx += 1;
                        t.rx_bytes += data.len() as u64;
                        if src[0] == FLOOD_FIRST_OCTET {
                            t.rx_flood += 1;
                        }
                        return;
                    }
                }
                if port == 0
                    && packets::destination_of(data).is_some_and(|d| d[0] == NEW_FIRST_OCTET)
                    && packets::tcp_flags_of(data) == Some(0x12)
                {
                    t.rx_new_synack += 1;
                    return;
                }
                t.rx_other += 1;
                if data.get(12..14) == Some(&[0x08, 0x06]) {
                    let mut req = [0u8; 28];
                    let Some(body) = data.get(14..42) else { return };
                    req.copy_from_slice(body);
                    let Ok(request) = arp::ArpPacket::new_checked(&req[..]) else { return };
                    // Gratuitous ARP (sender = target) announces; it asks nothing.
                    if request.operation() != 1 || request.sender_ip() == request.target_ip() {
                        return;
                    }
                    let out = m.data_mut();
                    if let Ok(len) = arp::build_reply(out, &request, self.macs[port]) {
                        if m.trim((m.len() - len) as u16) || m.len() == len {
                            t.arp += 1;
                            let _ = replies.push(m);
                        }
                    }
                }
            });
            self.tx[port].tx_burst(&mut replies);
        }
    }

    fn publish(&self, t: &Tally) {
        let c = &self.counters;
        c.offered_est.store(t.offered_est, Ordering::Relaxed);
        c.rx.store(t.rx, Ordering::Relaxed);
        c.rx_flood.store(t.rx_flood, Ordering::Relaxed);
        c.rx_bytes.store(t.rx_bytes, Ordering::Relaxed);
        c.rx_other.store(t.rx_other, Ordering::Relaxed);
        c.arp_replies.store(t.arp, Ordering::Relaxed);
        c.offered_new.store(t.offered_new, Ordering::Relaxed);
        c.rx_new_syn.store(t.rx_new_syn, Ordering::Relaxed);
        c.rx_new_ack.store(t.rx_new_ack, Ordering::Relaxed);
        c.rx_new_synack.store(t.rx_new_synack, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_visits_every_flow_once_per_round() {
        for n in [1u32, 7, 1000, 100_000, 1 << 20] {
            let mut w = Walk::new(n);
            let mut seen = vec![false; n as usize];
            for _ in 0..n {
                let f = w.next() as usize;
                assert!(!seen[f], "flow {f} twice in a round of {n}");
                seen[f] = true;
            }
        }
    }
}
