//! What a director worker does with one received frame, written against [`PacketBuffer`] so that it
//! runs on mbufs in the worker and on `Vec`s in tests:
//!
//! ```text
//! frame -> not for our MAC? drop
//!       -> ARP: learn the sender (RFC 826); answer for our port address and the VIPs
//!       -> IPv4: echo request to us or a VIP -> echo reply
//!                to a VIP / a NAT reply -> IPVS (lookup or schedule) -> NAT | DR | TUN rewrite
//!                -> route (connected subnets, static routes) -> neighbour -> transmit or hold
//!       -> IPv6: neighbour discovery (NS answered for our address and VIPs, NA learned), echo,
//!                then as IPv4 (the full path: no batched lookups yet)
//!       -> anything else: dropped, counted under a named reason
//! ```
//!
//! The pipeline decides; the worker moves mbufs ([`Action`]). Nothing here allocates per packet:
//! the neighbour table and the side queues (ARP requests to send, addresses to announce) have fixed
//! capacities.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hashbrown::HashMap;
use rvs_ipvs::{ConnInfo, Fwd, Ipvs, Op, PacketMeta, Time, TunCsum, TunnelType};
use rvs_wire::arp::{self, ArpPacket};
use rvs_wire::ethernet::{self, MacAddr, ethertype};
use rvs_wire::icmpv4::{self, ErrorKind};
use rvs_wire::icmpv6::{self, Icmpv6Packet};
use rvs_wire::rewrite::{self, Egress, Encap, NatMapping, Offload, TtlPolicy, TunOuter, Verdict};
use rvs_wire::tcp::TcpSegment;
use rvs_wire::udp::UdpDatagram;
use rvs_wire::{PacketBuffer, PacketError, ip_proto};

use crate::counters::{DropReason, WorkerCounters};
use crate::neigh::{HopAddr, Lookup, Neighbours};
use crate::net::{Interface, Network, NextHop, same_prefix};
use crate::ratelimit::TokenBucket;
use crate::rss::RssPredictor;

/// The worker (of `workers`) that owns `client`'s flows: a keyed mix of the address (splitmix64's
/// finaliser over key ⊕ address), cheap, and unpredictable without the key.
pub fn owner_of(key: u64, client: Ipv4Addr, workers: usize) -> usize {
    let mut z = (key ^ u64::from(u32::from(client))).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ((z >> 32) % workers.max(1) as u64) as usize
}

/// What the worker does with the frame after [`Pipeline::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send it on this port.
    Tx(usize),
    /// Rewritten for `port`, but the next hop's MAC is not known yet: hold it until `next_hop`
    /// resolves (the ARP request is queued already).
    Hold { port: usize, next_hop: IpAddr },
    /// Answer with this ICMP error, built by [`Pipeline::icmp_error`] into a new buffer and sent on
    /// the ingress port; the frame itself is dropped (already counted).
    IcmpError { port: usize, kind: ErrorKind },
    /// Dropped; the reason is counted.
    Drop,
    /// A reply that matched no connection while RSS prediction is on: its connection's mirror may
    /// still be in the worker's inbox. Try once more after it ([`crate::Handoff::Unmatched`]).
    Retry,
    /// For the director's own kernel: up to this port's kernel twin, unchanged.
    ToKernel(usize),
}

/// Side queues are bounded: what does not fit waits for the next tick (ARP retries) or is lost
/// (an announcement), never allocated.
const SIDE_QUEUE: usize = 64;
/// TTL of the outer IPv4 header of TUN packets (Linux's default route hop limit).
const TUN_TTL: u8 = 64;
/// Datagrams whose fragments a worker follows at once, and for how long after their first.
const FRAGMENTS: usize = 4096;
const FRAGMENT_LIFETIME_MS: Time = 5_000;

mod stages;
pub use stages::{Meta, STAGES};

/// One worker's packet processing state: its IPVS shard, its neighbour table, the network.
#[derive(Debug)]
pub struct Pipeline {
    pub net: Arc<Network>,
    pub ipvs: Ipvs,
    pub neigh: Neighbours,
    pub ttl: TtlPolicy,
    /// VIPs (IPv4) -> the port that answers ARP for them (`None`: every port).
    vips: HashMap<Ipv4Addr, Option<usize>>,
    /// IPv6 VIPs -> the port that answers neighbour solicitations for them, and their services.
    vips6: HashMap<Ipv6Addr, (Option<usize>, u32)>,
    /// Services (and FWM classifier hosts) that make each VIP one: it goes with the last.
    vip_refs: HashMap<Ipv4Addr, u32>,
    /// Firewall-mark services configured (IPv4, IPv6).
    fwm_services: u32,
    fwm_services6: u32,
    /// A service changed since the affinity prefixes were computed.
    affinity_dirty: bool,
    tun_ident: u16,
    /// Neighbour requests to send (ARP for IPv4, neighbour solicitations for IPv6): (target, port).
    pub neigh_requests: Vec<(IpAddr, usize)>,
    /// New VIPs to announce (gratuitous ARP, unsolicited neighbour advertisement): (VIP, port).
    pub announce: Vec<(IpAddr, usize)>,
    /// Neighbours learned from ARP or ND addressed to us, for the other workers (whose own
    /// requests' answers may arrive here): (address, MAC, port).
    pub learned: Vec<(IpAddr, MacAddr, usize)>,
    /// New NAT connections to copy to the worker the NIC will bring their replies to: (worker, copy).
    pub mirrors: Vec<(usize, ConnInfo)>,
    /// Answer an unmatched reply with [`Action::Retry`] rather than dropping it (prediction on, and
    /// not already a retry).
    pub retry_unmatched: bool,
    /// With RSS prediction: this worker's index (= its queue on every port) and each port's RSS.
    predict: Option<(usize, Vec<Option<RssPredictor>>)>,
    /// Destinations of persistent services, as prefixes: the VIP (/32) of an address service, the
    /// classifier rules of a firewall-mark service's mark. All of a client's packets to them must
    /// meet on one shard, whatever the NIC's hash.
    affinity: Vec<(Ipv4Addr, u8)>,
    /// Keys [`Pipeline::owner`]'s hash. Every worker of a director holds the same key (they must
    /// agree on owners); the daemon picks it at random per start, so nobody outside can choose
    /// client addresses that all land on one worker.
    pub owner_key: u64,
    /// ICMP errors this worker may send (Linux's icmp_msgs_per_sec / icmp_msgs_burst, per worker).
    pub icmp_errors: TokenBucket,
    /// Echo replies this worker may send.
    pub icmp_echo: TokenBucket,
    /// Which ports have a kernel twin (indexed by port).
    pub twins: Vec<bool>,
    /// With `vip_ownership = "kernel_twin"`: the VIPs this director holds now (those VRRP has put on
    /// its kernel twins); only they are answered in ARP and announced. `None`: every VIP is held.
    held: Option<hashbrown::HashSet<Ipv4Addr>>,
    /// Lower the MSS option of SYNs going to TUN servers so that their replies, and the client's
    /// segments inside the tunnel, fit the MTU without path MTU discovery.
    pub tun_clamp_mss: bool,
    /// Later fragments follow their datagram's first (see [`crate::frag`]).
    pub frags: crate::frag::Fragments,
    /// Frames this worker may pass up to the kernel twins (the data plane never waits for the
    /// kernel, nor lets a flood at the director's address reach it unbounded).
    pub kernel: TokenBucket,
    counters: Arc<WorkerCounters>,
}

impl Pipeline {
    pub fn new(net: Arc<Network>, ipvs: Ipvs, counters: Arc<WorkerCounters>) -> Self {
        Self {
            net,
            ipvs,
            neigh: Neighbours::new(4096),
            ttl: TtlPolicy::Decrement,
            vips: HashMap::new(),
            vips6: HashMap::new(),
            vip_refs: HashMap::new(),
            fwm_services: 0,
            fwm_services6: 0,
            affinity_dirty: false,
            tun_ident: 0,
            neigh_requests: Vec::with_capacity(SIDE_QUEUE),
            announce: Vec::with_capacity(SIDE_QUEUE),
            learned: Vec::with_capacity(SIDE_QUEUE),
            mirrors: Vec::with_capacity(SIDE_QUEUE),
            retry_unmatched: false,
            predict: None,
            affinity: Vec::new(),
            owner_key: 0,
            icmp_errors: TokenBucket::default(),
            icmp_echo: TokenBucket::default(),
            twins: Vec::new(),
            held: None,
            tun_clamp_mss: false,
            frags: crate::frag::Fragments::new(FRAGMENTS, FRAGMENT_LIFETIME_MS),
            kernel: TokenBucket::new(20_000, 512),
            counters,
        }
    }

    /// Turns RSS prediction on: this is worker `me` (it polls queue `me` of every port), and
    /// `ports[p]` is port p's RSS as the NIC computes it (`None`: no prediction for replies reaching
    /// that port, so none of their connections gets a copy; the daemon turns prediction on only when
    /// every port has RSS, since such replies would find nothing). A NAT connection's replies are then
    /// translated where the NIC delivers them, from a copy sent once; nothing else crosses workers but
    /// the packets of persistent services.
    pub fn predict_rss(&mut self, me: usize, ports: Vec<Option<RssPredictor>>) {
        self.retry_unmatched = true;
        self.predict = Some((me, ports));
        self.refresh_affinity();
    }

    /// Up to the port's kernel twin, within the budget; `otherwise` when the port has no twin.
    fn up_to_kernel(&mut self, port: usize, now: Time, otherwise: DropReason) -> Action {
        if !self.twins.get(port).copied().unwrap_or(false) {
            return self.drop(otherwise);
        }
        if !self.kernel.allow(now) {
            return self.drop(DropReason::KernelBudget);
        }
        Action::ToKernel(port)
    }

    #[inline]
    fn drop(&self, r: DropReason) -> Action {
        self.counters.count_drop(r);
        Action::Drop
    }

    /// Applies a published batch of configuration changes (between bursts), keeping the VIP set and
    /// queueing gratuitous ARP for VIPs that appeared. Returns how many ops failed (none, when the
    /// management core validated them on the same configuration).
    pub fn apply(&mut self, ops: &[Op]) -> usize {
        let failed = self.apply_ops(ops);
        self.finish_batch();
        failed
    }

    /// Applies ops, keeping the VIP set up to date as each one lands (a worker applying a large
    /// batch a share at a time calls [`Pipeline::finish_batch`] at its end). Returns how many failed.
    pub fn apply_ops(&mut self, ops: &[Op]) -> usize {
        let mut failed = 0;
        for op in ops {
            if self.ipvs.apply(op).is_ok() {
                self.note_applied(op);
            } else {
                failed += 1;
            }
        }
        failed
    }

    /// Makes room for what a batch adds, before its first op (see [`rvs_ipvs::Ipvs::reserve`]).
    pub fn reserve_for(&mut self, ops: &[Op]) {
        let services = ops.iter().filter(|o| matches!(o, Op::AddService(_))).count();
        let dests = ops.iter().filter(|o| matches!(o, Op::AddDest(..))).count();
        if services + dests > 64 {
            self.ipvs.reserve(services, dests);
            self.vips.reserve(services);
            self.vips6.reserve(services);
            self.vip_refs.reserve(services);
        }
    }

    /// After a whole batch: the client-affinity prefixes, if a service changed (used with RSS
    /// prediction only; a walk over the services, so once per batch rather than per op).
    pub fn finish_batch(&mut self) {
        if std::mem::take(&mut self.affinity_dirty) {
            self.refresh_affinity();
        }
    }

    /// What an applied op changes in the VIP set: per op, never a walk over every service, so a
    /// restore of thousands of services costs the worker no long pause.
    fn note_applied(&mut self, op: &Op) {
        match op {
            Op::AddService(cfg) => self.vip_key(cfg.key, true),
            Op::DelService(key) => self.vip_key(*key, false),
            // Every service went: recounting what is left is cheap.
            Op::Clear => self.refresh_vips(),
            _ => {}
        }
        if matches!(op, Op::AddService(_) | Op::EditService(_) | Op::DelService(_) | Op::Clear) {
            self.affinity_dirty = true;
        }
    }

    fn vip_key(&mut self, key: rvs_ipvs::ServiceKey, add: bool) {
        match key {
            rvs_ipvs::ServiceKey::Addr { addr: IpAddr::V4(a), .. } => self.vip_ref(a, add),
            rvs_ipvs::ServiceKey::Addr { addr: IpAddr::V6(a), .. } => self.vip6_ref(a, add),
            rvs_ipvs::ServiceKey::Fwmark { v6, .. } => {
                let count = if v6 { &mut self.fwm_services6 } else { &mut self.fwm_services };
                let before = *count;
                *count = if add { before + 1 } else { before.saturating_sub(1) };
                // FWM services have no address of their own: the classifier's hosts (of the
                // service's family) are their VIPs while any exists.
                if (before == 0) != (*count == 0) {
                    for h in self.net.classifier_hosts(v6) {
                        match h {
                            IpAddr::V4(a) => self.vip_ref(a, add),
                            IpAddr::V6(a) => self.vip6_ref(a, add),
                        }
                    }
                }
            }
        }
    }

    /// Counts a reference to `vip`; the first makes it a VIP (announced), the last removes it.
    fn vip_ref(&mut self, vip: Ipv4Addr, add: bool) {
        let n = self.vip_refs.entry(vip).or_insert(0);
        *n = if add { *n + 1 } else { n.saturating_sub(1) };
        if *n == 0 {
            self.vip_refs.remove(&vip);
            self.vips.remove(&vip);
        } else if !self.vips.contains_key(&vip) {
            let port = self.net.interfaces.iter().position(|i| i.contains(vip));
            self.vips.insert(vip, port);
            self.announce_vip(vip, port);
        }
    }

    /// As [`Pipeline::vip_ref`] for an IPv6 VIP (always held: VRRP follows IPv4 VIPs only).
    fn vip6_ref(&mut self, vip: Ipv6Addr, add: bool) {
        match self.vips6.get_mut(&vip) {
            Some((_, n)) if add => *n += 1,
            Some((_, n)) if *n > 1 => *n -= 1,
            Some(_) => {
                self.vips6.remove(&vip);
            }
            None if add => {
                let port = self.net.interfaces.iter().position(|i| i.contains6(&vip));
                self.vips6.insert(vip, (port, 1));
                let ports = port.map_or(0..self.net.interfaces.len(), |p| p..p + 1);
                for p in ports.filter(|&p| self.net.interfaces.get(p).is_some_and(|i| i.addr6.is_some())) {
                    if self.announce.len() < SIDE_QUEUE {
                        self.announce.push((vip.into(), p));
                    }
                }
            }
            None => {}
        }
    }

    /// Whether this director holds `vip` (see `held`).
    fn holds(&self, vip: Ipv4Addr) -> bool {
        self.held.as_ref().is_none_or(|h| h.contains(&vip))
    }

    /// Holds only the VIPs in `held` from now on (`None`: every VIP, the default). A VIP that
    /// becomes held is announced with gratuitous ARP; one that is released is no longer answered.
    pub fn set_held_vips(&mut self, held: Option<&[Ipv4Addr]>) {
        let next: Option<hashbrown::HashSet<Ipv4Addr>> = held.map(|h| h.iter().copied().collect());
        let newly: Vec<(Ipv4Addr, Option<usize>)> = self
            .vips
            .iter()
            .filter(|(v, _)| !self.holds(**v) && next.as_ref().is_none_or(|n| n.contains(*v)))
            .map(|(v, p)| (*v, *p))
            .collect();
        self.held = next;
        for (v, p) in newly {
            self.announce_vip(v, p);
        }
    }

    fn announce_vip(&mut self, vip: Ipv4Addr, port: Option<usize>) {
        if !self.holds(vip) {
            return;
        }
        let ports = match port {
            Some(p) => p..p + 1,
            None => 0..self.net.interfaces.len(),
        };
        for p in ports {
            if self.announce.len() < SIDE_QUEUE {
                self.announce.push((vip.into(), p));
            }
        }
    }

    /// Recomputes the VIP set from the services and the classifier (FWM services have no address of
    /// their own; the classifier's host destinations are their VIPs), at start and after -C.
    pub fn refresh_vips(&mut self) {
        let old = std::mem::take(&mut self.vips);
        let old6 = std::mem::take(&mut self.vips6);
        self.vip_refs.clear();
        self.fwm_services = 0;
        self.fwm_services6 = 0;
        let mark = self.announce.len();
        let keys: Vec<rvs_ipvs::ServiceKey> = self.ipvs.services().map(|(_, cfg, _, _)| cfg.key).collect();
        for k in keys {
            self.vip_key(k, true);
        }
        // Only VIPs that are new since before are announced.
        let mut i = mark;
        while i < self.announce.len() {
            let known = |v: &IpAddr| match v {
                IpAddr::V4(a) => old.contains_key(a),
                IpAddr::V6(a) => old6.contains_key(a),
            };
            if self.announce.get(i).is_some_and(|(v, _)| known(v)) {
                self.announce.remove(i);
            } else {
                i += 1;
            }
        }
        self.refresh_affinity();
    }

    /// Destinations of persistent services, as prefixes (see `affinity`).
    fn refresh_affinity(&mut self) {
        self.affinity.clear();
        if self.predict.is_none() {
            return;
        }
        for (_, cfg, _, _) in self.ipvs.services().filter(|(_, c, _, _)| c.persistence.is_some()) {
            match cfg.key {
                rvs_ipvs::ServiceKey::Addr { addr: IpAddr::V4(a), .. } => self.affinity.push((a, 32)),
                rvs_ipvs::ServiceKey::Fwmark { mark, .. } => self.affinity.extend(
                    self.net
                        .classifier
                        .iter()
                        .filter(|r| r.mark == mark)
                        .map(|r| (r.destination, r.prefix_len)),
                ),
                rvs_ipvs::ServiceKey::Addr { .. } => {}
            }
        }
    }

    pub fn is_vip(&self, ip: Ipv4Addr) -> bool {
        self.vips.contains_key(&ip)
    }

    pub fn is_vip6(&self, ip: &Ipv6Addr) -> bool {
        self.vips6.contains_key(ip)
    }

    /// Which of `workers` owns this frame's flow, when several share the ports and the NIC's hash
    /// cannot be relied on to bring a NAT connection's two directions to one worker (af_packet's
    /// fanout, or any RSS whose key we do not control). The owner is a hash of the client address:
    /// the source of packets to a VIP, the destination of everything else (replies of real servers).
    /// All of a client's connections meet on one shard, so persistence templates (-p, FWM) hold; `-M`
    /// masks wider than /32 may span workers. `None`: any worker may handle it (ARP, ICMP, non-IPv4).
    pub fn owner(&self, frame: &[u8], workers: usize) -> Option<usize> {
        if workers <= 1 {
            return None;
        }
        if frame.get(12..14)? == ethertype::IPV6.to_be_bytes() {
            return self.owner6(frame, workers);
        }
        if frame.get(12..14)? != [0x08, 0x00] {
            return None;
        }
        let ip = frame.get(14..34)?;
        let (first, proto) = (*ip.first()?, *ip.get(9)?);
        if first >> 4 == 4 && proto == ip_proto::ICMP && self.predict.is_none() {
            // An ICMP error about a connection goes where the connection lives: its client's owner
            // (the client is the quoted source, unless the quote is a reply from a VIP).
            let (_, q_src, q_dst) = rewrite::icmp_error_inner(frame).ok()?;
            let client = if self.vips.contains_key(&q_src.0) { q_dst.0 } else { q_src.0 };
            return Some(owner_of(self.owner_key, client, workers));
        }
        if first >> 4 != 4 || (proto != ip_proto::TCP && proto != ip_proto::UDP) {
            return None;
        }
        let addr = |at: usize| -> Option<Ipv4Addr> {
            let b: [u8; 4] = ip.get(at..at + 4)?.try_into().ok()?;
            Some(Ipv4Addr::from(b))
        };
        let (src, dst) = (addr(12)?, addr(16)?);
        let client = if self.predict.is_some() {
            // The NIC's hash is known: a packet stays where it arrived, but for the client packets of
            // persistent services, whose templates live on the client's owner.
            if !self.affinity.iter().any(|&(net, len)| same_prefix(dst, net, len)) {
                return None;
            }
            src
        } else if self.vips.contains_key(&dst) {
            src
        } else {
            dst
        };
        Some(owner_of(self.owner_key, client, workers))
    }

    /// [`Pipeline::owner`] for IPv6 TCP/UDP without extension headers (the rest: any worker). With
    /// RSS prediction, IPv6 stays where it arrives: prediction covers IPv4 NAT only, and IPv6
    /// connections are owned by the client's hash as without it.
    fn owner6(&self, frame: &[u8], workers: usize) -> Option<usize> {
        let ip = frame.get(14..54)?;
        let next = *ip.get(6)?;
        if next == ip_proto::ICMPV6 {
            // As for IPv4: an ICMPv6 error goes to its connection's owner.
            let (_, q_src, q_dst) = rewrite::icmp6_error_inner(frame).ok()?;
            let client = if self.vips6.contains_key(&q_src.0) { q_dst.0 } else { q_src.0 };
            return Some(owner_of(self.owner_key, fold6(&client), workers));
        }
        if next != ip_proto::TCP && next != ip_proto::UDP {
            return None;
        }
        let addr = |at: usize| -> Option<Ipv6Addr> {
            let b: [u8; 16] = ip.get(at..at + 16)?.try_into().ok()?;
            Some(Ipv6Addr::from(b))
        };
        let (src, dst) = (addr(8)?, addr(24)?);
        let client = if self.vips6.contains_key(&dst) { src } else { dst };
        Some(owner_of(self.owner_key, fold6(&client), workers))
    }

    /// Decides one frame of the full path (everything the fast path of the stages leaves: ARP,
    /// ICMP, the director's own traffic, fragments, malformed frames), rewriting it in place.
    pub(crate) fn handle_full<B: PacketBuffer + ?Sized>(
        &mut self,
        port: usize,
        buf: &mut B,
        now: Time,
    ) -> Action {
        let Some(iface) = self.net.interfaces.get(port) else { return self.drop(DropReason::Unsupported) };
        let l2 = match ethernet::parse_l2(buf.bytes()) {
            Ok(l2) => l2,
            Err(e) => return self.drop(wire_drop(e)),
        };
        let dst_mac: MacAddr = buf.bytes().get(..6).and_then(|d| d.try_into().ok()).unwrap_or_default();
        // Promiscuous ports see frames for other hosts of the segment (flooded unicast): not ours.
        if dst_mac != iface.mac && dst_mac[0] & 1 == 0 {
            return self.drop(DropReason::NotOurMac);
        }
        if l2.vlan.is_some() {
            // The worker takes the tags of the port's VLANs off before the pipeline; one still
            // here is for a VLAN the port does not carry.
            return match rewrite::vlan::tagging(buf.bytes()) {
                Ok(rewrite::vlan::Tagging::Stacked) => self.drop(DropReason::Qinq),
                _ => self.drop(DropReason::VlanUnknown),
            };
        }
        match l2.ethertype {
            ethertype::ARP => self.arp(port, buf, l2.len, now),
            ethertype::IPV4 if dst_mac == iface.mac => self.ipv4(port, buf, now),
            // Multicast and broadcast IPv4 (VRRP's 224.0.0.18, routing protocols): the kernel's.
            ethertype::IPV4 => self.up_to_kernel(port, now, DropReason::NotOurMac),
            // IPv6 to our MAC, or to a multicast group (neighbour solicitations go to the
            // target's solicited-node group).
            ethertype::IPV6 => self.ipv6(port, buf, now),
            _ => self.drop(DropReason::Unsupported),
        }
    }

    fn arp<B: PacketBuffer + ?Sized>(
        &mut self,
        port: usize,
        buf: &mut B,
        l2_len: usize,
        now: Time,
    ) -> Action {
        let mut req = [0u8; arp::PACKET_LEN];
        match buf.bytes().get(l2_len..l2_len + arp::PACKET_LEN) {
            Some(b) => req.copy_from_slice(b),
            None => return self.drop(DropReason::Malformed),
        }
        let a = match ArpPacket::new_checked(&req[..]) {
            Ok(a) => a,
            Err(e) => return self.drop(wire_drop(e)),
        };
        let target = a.target_ip();
        let Some(iface) = self.net.interfaces.get(port) else { return self.drop(DropReason::Unsupported) };
        let ours = target == iface.addr
            || (self.vips.get(&target).is_some_and(|p| p.is_none_or(|p| p == port)) && self.holds(target))
            // Any other address VRRP has given the director on this port's subnet (the real
            // servers' gateway of an LVS-NAT pair) is answered for too.
            || (iface.contains(target) && self.held.as_ref().is_some_and(|h| h.contains(&target)));
        // Only hosts of the port's own subnet are neighbours there: anything else claiming an
        // address (a real server's, from the client LAN) is refused, not learned.
        if !iface.contains(a.sender_ip()) {
            return self.drop(DropReason::ArpRefused);
        }
        let learned = self.neigh.learn(a.sender_ip(), a.sender_mac(), port, ours, now);
        if ours && !learned {
            self.counters.count_neighbour_refused();
        }
        if ours && learned && self.learned.len() < SIDE_QUEUE {
            self.learned.push((a.sender_ip().into(), a.sender_mac(), port));
        }
        if a.operation() == arp::OP_REPLY && ours {
            // An answer to the kernel's own request (it speaks through the twin with the port's
            // MAC); rvs learned it too. The kernel asks from whichever of our addresses the packet
            // that needs the neighbour carries, a VIP it holds (a Local server's) included.
            return self.up_to_kernel(port, now, DropReason::ArpNotOurs);
        }
        if a.operation() != arp::OP_REQUEST || !ours || a.sender_ip() == target {
            return self.drop(DropReason::ArpNotOurs);
        }
        let mac = iface.mac;
        let len = buf.bytes().len();
        match arp::build_reply(buf.bytes_mut(), &a, mac) {
            Ok(n) => {
                if len > n && buf.trim(len - n).is_err() {
                    return self.drop(DropReason::RewriteFailed);
                }
                Action::Tx(port)
            }
            Err(_) => self.drop(DropReason::RewriteFailed),
        }
    }

    fn ipv4<B: PacketBuffer + ?Sized>(&mut self, port: usize, buf: &mut B, now: Time) -> Action {
        let info = match rewrite::parse_ip(buf.bytes()) {
            Ok(i) => i,
            Err(e) => return self.drop(wire_drop(e)),
        };
        let (IpAddr::V4(_), IpAddr::V4(dst)) = (info.src, info.dst) else {
            return self.drop(DropReason::Unsupported);
        };
        let local = self.net.local_port(dst).is_some();
        let vip = self.vips.contains_key(&dst);
        if info.protocol == ip_proto::ICMP && !local {
            // An ICMP error about a connection's packet (fragmentation needed, unreachable, time
            // exceeded): translated and passed on as IPVS does (ip_vs_in_icmp / ip_vs_out_icmp).
            if let Some(a) = self.translate_icmp_error(port, buf, vip, now) {
                return a;
            }
        }
        if info.protocol == ip_proto::ICMP && (local || vip) {
            let echo_request = buf.bytes().get(info.l4_offset) == Some(&icmpv4::kind::ECHO_REQUEST);
            if !echo_request {
                // Other ICMP to us: the kernel's (echo replies to its pings, errors about its own
                // traffic). About NAT flows they are not translated yet.
                return if local {
                    self.up_to_kernel(port, now, DropReason::Unsupported)
                } else {
                    self.drop(DropReason::Unsupported)
                };
            }
            if !self.icmp_echo.allow(now) {
                return self.drop(DropReason::IcmpRateLimit);
            }
            return match rewrite::echo_reply_v4(buf) {
                Ok(()) => Action::Tx(port),
                Err(e) => self.drop(wire_drop(e)),
            };
        }
        if local && !vip {
            // The director's own traffic (ssh, BGP, health-check replies): its kernel's.
            return self.up_to_kernel(port, now, DropReason::ToDirector);
        }
        // An address of ours that is also a VIP (the LVS-NAT guides' director whose public address
        // is the VIP): IPVS takes what a service matches, the rest is the director's own traffic.
        if info.fragment {
            return self.fragment(port, buf, &info, vip, now);
        }
        // What the fast path does not take from here is malformed or not TCP/UDP.
        let l4 = buf.bytes().get(info.l4_offset..).unwrap_or_default();
        let checked = match info.protocol {
            ip_proto::TCP => TcpSegment::new_checked(l4).map(|_| ()),
            ip_proto::UDP => UdpDatagram::new_checked(l4).map(|_| ()),
            _ => return self.drop(if vip { DropReason::Unsupported } else { DropReason::NoService }),
        };
        if let Err(e) = checked {
            return self.drop(wire_drop(e));
        }
        // TCP or UDP for IPVS: the stages' fast path decides it (such a frame only comes this way
        // when parse_fast did not take it, which it always does; the path stays whole regardless).
        let mut meta = Meta::default();
        self.parse_stage(port, std::iter::once(buf.bytes()), std::slice::from_mut(&mut meta));
        if !meta.is_fast() {
            return self.drop(DropReason::Unsupported);
        }
        self.ipvs_stage(port, buf, &mut meta, now);
        self.rewrite_stage(port, buf, &meta, now)
    }

    /// IPv6 for us, a VIP or a connection: neighbour discovery and echo first, then IPVS for TCP
    /// and UDP as IPv4's full path does it (connections looked up one at a time).
    fn ipv6<B: PacketBuffer + ?Sized>(&mut self, port: usize, buf: &mut B, now: Time) -> Action {
        let info = match rewrite::parse_ip(buf.bytes()) {
            Ok(i) => i,
            Err(e) => return self.drop(wire_drop(e)),
        };
        let (IpAddr::V6(src), IpAddr::V6(dst)) = (info.src, info.dst) else {
            return self.drop(DropReason::Malformed);
        };
        let local = self.net.local_port6(&dst).is_some();
        let vip = self.vips6.contains_key(&dst);
        if info.protocol == ip_proto::ICMPV6 {
            if !local {
                // An ICMPv6 error about a connection's packet, translated as IPv4's are.
                if let Some(a) = self.translate_icmp_error(port, buf, vip, now) {
                    return a;
                }
            }
            return self.icmpv6(port, buf, &info, (src, dst), local || vip, now);
        }
        if dst.is_multicast() {
            // MLD, routing protocols: the kernel's, if it has a door here.
            return self.up_to_kernel(port, now, DropReason::NotOurMac);
        }
        if local && !vip {
            return self.up_to_kernel(port, now, DropReason::ToDirector);
        }
        if info.fragment {
            return self.drop(if vip { DropReason::Fragment } else { DropReason::NoService });
        }
        let l4 = buf.bytes().get(info.l4_offset..info.l2_len + info.ip_len).unwrap_or_default();
        let (sport, dport, tcp_flags) = match info.protocol {
            ip_proto::TCP => match TcpSegment::new_checked(l4) {
                Ok(t) => (t.src_port(), t.dst_port(), t.flags()),
                Err(e) => return self.drop(wire_drop(e)),
            },
            ip_proto::UDP => match UdpDatagram::new_checked(l4) {
                Ok(u) => (u.src_port(), u.dst_port(), 0),
                Err(e) => return self.drop(wire_drop(e)),
            },
            _ => return self.drop(if vip { DropReason::Unsupported } else { DropReason::NoService }),
        };
        let fwmark = self.net.classify6(&dst, info.protocol, dport);
        let (meta, verdict) = self.decide_in(&info, (sport, dport, tcp_flags), fwmark, vip, now);
        match verdict {
            rvs_ipvs::InVerdict::Forward { daddr, dport: rport, fwd, .. } => {
                self.forward(port, buf, fwd, (info.dst, dport), (daddr, rport), Some(&info), now)
            }
            rvs_ipvs::InVerdict::Drop(r) => self.drop(DropReason::Ipvs(r)),
            rvs_ipvs::InVerdict::NotOurs => match self.ipvs.out_packet(&meta, now) {
                rvs_ipvs::OutVerdict::Reply { vaddr, vport, .. } => {
                    let Some(nh) = self.net.route6(&dst) else { return self.drop(DropReason::NoRoute) };
                    let egress = self.egress(nh);
                    let m = NatMapping { virt: (vaddr, vport), real: (info.src, sport) };
                    let v = rewrite::nat_out_with(buf, &info, &egress, &m);
                    self.finish(port, buf, v, nh, now)
                }
                rvs_ipvs::OutVerdict::NotOurs if local => {
                    self.up_to_kernel(port, now, DropReason::ToDirector)
                }
                rvs_ipvs::OutVerdict::NotOurs => self.drop(DropReason::NoService),
            },
        }
    }

    /// ICMPv6: neighbour solicitations for the port's address or a VIP answered (RFC 4861 §7.2.4)
    /// and their senders learned; advertisements learned (and passed to the kernel twin, which may
    /// have asked); echo requests to us or a VIP answered; the rest to us goes to the kernel.
    fn icmpv6<B: PacketBuffer + ?Sized>(
        &mut self,
        port: usize,
        buf: &mut B,
        info: &rewrite::IpInfo,
        (src, dst): (Ipv6Addr, Ipv6Addr),
        ours: bool,
        now: Time,
    ) -> Action {
        let Some(iface) = self.net.interfaces.get(port) else { return self.drop(DropReason::Unsupported) };
        let (mac, addr6) = (iface.mac, iface.addr6);
        let end = info.l2_len + info.ip_len;
        let Ok(m) = Icmpv6Packet::new_checked(buf.bytes().get(info.l4_offset..end).unwrap_or_default())
        else {
            return self.drop(DropReason::Malformed);
        };
        let hop_limit = buf.bytes().get(info.l2_len + 7).copied().unwrap_or(0);
        let (msg_type, target, lladdr) = (m.msg_type(), m.nd_target(), m.nd_link_layer_addr());
        if !m.verify_checksum(&src, &dst) {
            return self.drop(DropReason::Malformed);
        }
        match msg_type {
            icmpv6::kind::NEIGHBOR_SOLICIT | icmpv6::kind::NEIGHBOR_ADVERT if hop_limit != 255 => {
                // RFC 4861 §7.1: a routed ND message is forged.
                self.drop(DropReason::Malformed)
            }
            icmpv6::kind::NEIGHBOR_SOLICIT => {
                let for_us = addr6.is_some_and(|(a, _)| a == target)
                    || self.vips6.get(&target).is_some_and(|(p, _)| p.is_none_or(|p| p == port));
                // Only hosts of the port's own subnet are neighbours there (as for ARP); a
                // solicitation from a link-local address is answered without being learned.
                if let Some(sender_mac) = lladdr.filter(|_| !src.is_unspecified()) {
                    if self.net.interfaces.get(port).is_some_and(|i| i.contains6(&src)) {
                        let learned = self.neigh.learn(src, sender_mac, port, for_us, now);
                        if for_us && learned && self.learned.len() < SIDE_QUEUE {
                            self.learned.push((src.into(), sender_mac, port));
                        }
                    } else if !is_link_local(&src) {
                        return self.drop(DropReason::ArpRefused);
                    }
                }
                if !for_us {
                    return self.drop(DropReason::ArpNotOurs);
                }
                self.answer_solicitation(port, buf, info, mac)
            }
            icmpv6::kind::NEIGHBOR_ADVERT => {
                let l2_src: Option<MacAddr> = buf.bytes().get(6..12).and_then(|b| b.try_into().ok());
                // A solicited answer comes to our address; the worker that asked may be another
                // one (the answer is shared with the others, as ARP replies are).
                let to_us = self.net.local_port6(&dst).is_some();
                if let Some(tmac) = lladdr.or(l2_src) {
                    if self.net.interfaces.get(port).is_some_and(|i| i.contains6(&target))
                        && self.neigh.learn(target, tmac, port, to_us, now)
                        && self.learned.len() < SIDE_QUEUE
                    {
                        self.learned.push((target.into(), tmac, port));
                    }
                }
                self.up_to_kernel(port, now, DropReason::ArpNotOurs)
            }
            icmpv6::kind::ECHO_REQUEST if ours => {
                if !self.icmp_echo.allow(now) {
                    return self.drop(DropReason::IcmpRateLimit);
                }
                match rewrite::echo_reply_v6(buf) {
                    Ok(()) => Action::Tx(port),
                    Err(e) => self.drop(wire_drop(e)),
                }
            }
            _ if self.net.local_port6(&dst).is_some() || dst.is_multicast() => {
                self.up_to_kernel(port, now, DropReason::Unsupported)
            }
            _ => self.drop(DropReason::Unsupported),
        }
    }

    /// The neighbour advertisement answering the solicitation in `buf`, written over it.
    fn answer_solicitation<B: PacketBuffer + ?Sized>(
        &mut self,
        port: usize,
        buf: &mut B,
        info: &rewrite::IpInfo,
        mac: MacAddr,
    ) -> Action {
        // The solicitation is read from a copy while the answer is written over the frame.
        let mut ns = [0u8; 256];
        let Some(ns) = buf.bytes().get(info.l2_len..info.l2_len + info.ip_len).and_then(|b| {
            let n = ns.get_mut(..b.len())?;
            n.copy_from_slice(b);
            Some(&*n)
        }) else {
            return self.drop(DropReason::Malformed);
        };
        let l2_src: MacAddr = buf.bytes().get(6..12).and_then(|b| b.try_into().ok()).unwrap_or_default();
        let na_len = ethernet::HEADER_LEN + rvs_wire::ipv6::HEADER_LEN + 32;
        let len = buf.bytes().len();
        if len < na_len && buf.append(na_len - len).is_err() {
            return self.drop(DropReason::RewriteFailed);
        }
        match icmpv6::build_neighbor_advert(buf.bytes_mut(), ns, l2_src, mac) {
            Ok(n) => {
                let len = buf.bytes().len();
                if len > n && buf.trim(len - n).is_err() {
                    return self.drop(DropReason::RewriteFailed);
                }
                Action::Tx(port)
            }
            Err(e) => self.drop(wire_drop(e)),
        }
    }

    /// The full path's IPVS decision for a TCP or UDP packet: a VIP's or a marked one is a
    /// client's (looked up, or scheduled); anything else is not (the caller tries it as a reply).
    fn decide_in(
        &mut self,
        info: &rewrite::IpInfo,
        (sport, dport, tcp_flags): (u16, u16, u8),
        fwmark: Option<u32>,
        vip: bool,
        now: Time,
    ) -> (PacketMeta, rvs_ipvs::InVerdict) {
        let meta = PacketMeta {
            protocol: info.protocol,
            src: info.src,
            sport,
            dst: info.dst,
            dport,
            tcp_flags,
            fwmark,
            len: u32::try_from(info.ip_len).unwrap_or(u32::MAX),
        };
        let verdict = if vip || fwmark.is_some() {
            self.ipvs.in_packet(&meta, now)
        } else {
            rvs_ipvs::InVerdict::NotOurs
        };
        (meta, verdict)
    }

    /// A fragment of a TCP or UDP datagram (see [`crate::frag`]): the first is decided with its ports
    /// as a whole datagram would be, the others follow it.
    fn fragment<B: PacketBuffer + ?Sized>(
        &mut self,
        port: usize,
        buf: &mut B,
        info: &rewrite::IpInfo,
        vip: bool,
        now: Time,
    ) -> Action {
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (info.src, info.dst) else {
            return self.drop(DropReason::Fragment);
        };
        if info.protocol != ip_proto::TCP && info.protocol != ip_proto::UDP {
            return self.drop(if vip { DropReason::Fragment } else { DropReason::NoService });
        }
        let ip = buf.bytes().get(info.l2_len..).unwrap_or_default();
        let Ok(p) = rvs_wire::ipv4::Ipv4Packet::new_checked_header(ip) else {
            return self.drop(DropReason::Malformed);
        };
        let key = crate::frag::FragKey { src, dst, ident: p.ident(), protocol: info.protocol };
        if p.frag_offset() != 0 {
            return match self.frags.find(&key, now) {
                Some(route) => self.fragment_route(port, buf, info, route, false, now),
                None => self.drop(DropReason::Fragment),
            };
        }
        let l4 = buf.bytes().get(info.l4_offset..).unwrap_or_default();
        let port_at =
            |at: usize| l4.get(at..at + 2).and_then(|b| <[u8; 2]>::try_from(b).ok()).map(u16::from_be_bytes);
        let (Some(sport), Some(dport)) = (port_at(0), port_at(2)) else {
            return self.drop(DropReason::Malformed);
        };
        let tcp_flags = if info.protocol == ip_proto::TCP { l4.get(13).copied().unwrap_or(0) } else { 0 };
        let fwmark = self.net.classify(dst, info.protocol, dport);
        let (meta, verdict) = self.decide_in(info, (sport, dport, tcp_flags), fwmark, vip, now);
        let route = match verdict {
            rvs_ipvs::InVerdict::Forward { daddr, dport: rport, fwd, .. } => {
                crate::frag::FragRoute::In { fwd, virt: (dst, dport), real: (daddr, rport) }
            }
            rvs_ipvs::InVerdict::Drop(r) => return self.drop(DropReason::Ipvs(r)),
            rvs_ipvs::InVerdict::NotOurs => match self.ipvs.out_packet(&meta, now) {
                rvs_ipvs::OutVerdict::Reply { vaddr, vport, .. } => {
                    crate::frag::FragRoute::Out { virt: (vaddr, vport), rport: sport }
                }
                rvs_ipvs::OutVerdict::NotOurs => return self.drop(DropReason::NoService),
            },
        };
        if !self.frags.remember(key, route, now) {
            // The rest of the datagram will not find its way: better to lose it whole, now.
            return self.drop(DropReason::Fragment);
        }
        self.fragment_route(port, buf, info, route, true, now)
    }

    fn fragment_route<B: PacketBuffer + ?Sized>(
        &mut self,
        port: usize,
        buf: &mut B,
        info: &rewrite::IpInfo,
        route: crate::frag::FragRoute,
        first: bool,
        now: Time,
    ) -> Action {
        match route {
            crate::frag::FragRoute::In { fwd: Fwd::Masq, virt, real } => {
                let IpAddr::V4(raddr) = real.0 else { return self.drop(DropReason::Unsupported) };
                let Some(nh) = self.net.route(raddr) else { return self.drop(DropReason::NoRoute) };
                let egress = self.egress(nh);
                let m = NatMapping { virt: (IpAddr::V4(virt.0), virt.1), real };
                let v = rewrite::nat_fragment(buf, info, &egress, &m, true, first);
                self.finish(port, buf, v, nh, now)
            }
            crate::frag::FragRoute::In { fwd, virt, real } => {
                self.forward(port, buf, fwd, (virt.0.into(), virt.1), real, Some(info), now)
            }
            crate::frag::FragRoute::Out { virt, rport } => {
                let IpAddr::V4(client) = info.dst else { return self.drop(DropReason::Unsupported) };
                let Some(nh) = self.net.route(client) else { return self.drop(DropReason::NoRoute) };
                let egress = self.egress(nh);
                let m = NatMapping { virt, real: (info.src, rport) };
                let v = rewrite::nat_fragment(buf, info, &egress, &m, false, first);
                self.finish(port, buf, v, nh, now)
            }
        }
    }

    /// An ICMP error about a connection: from the client side about a reply (to a VIP), passed to
    /// the real server (NAT: addresses translated, the quoted source back to the server; DR and TUN:
    /// forwarded as the connection's packets are); from the servers' side about a client's packet
    /// through NAT (to the client), translated to come from the VIP about the packet the client
    /// sent. ICMP and ICMPv6 alike. `None`: not an ICMP error about a connection of ours (the
    /// caller goes on).
    fn translate_icmp_error<B: PacketBuffer + ?Sized>(
        &mut self,
        port: usize,
        buf: &mut B,
        to_vip: bool,
        now: Time,
    ) -> Option<Action> {
        // The quoted flow, of the error's family (ICMP or ICMPv6).
        let (protocol, src, dst) = match rewrite::icmp_error_inner(buf.bytes()) {
            Ok((p, s, d)) => (p, (IpAddr::V4(s.0), s.1), (IpAddr::V4(d.0), d.1)),
            Err(_) => {
                let (p, s, d) = rewrite::icmp6_error_inner(buf.bytes()).ok()?;
                (p, (IpAddr::V6(s.0), s.1), (IpAddr::V6(d.0), d.1))
            }
        };
        let quoted = PacketMeta {
            protocol,
            src: src.0,
            sport: src.1,
            dst: dst.0,
            dport: dst.1,
            tcp_flags: 0,
            fwmark: None,
            len: 0,
        };
        if to_vip {
            let (raddr, rport, fwd) = self.ipvs.icmp_about_reply(&quoted)?;
            return Some(match fwd {
                Fwd::Masq => {
                    let Some(nh) = self.net.route_ip(raddr) else {
                        return Some(self.drop(DropReason::NoRoute));
                    };
                    let egress = self.egress(nh);
                    let v =
                        rewrite::icmp_nat_in(buf, &egress, &NatMapping { virt: src, real: (raddr, rport) });
                    self.finish(port, buf, v, nh, now)
                }
                other => self.forward(port, buf, other, src, (raddr, rport), None, now),
            });
        }
        let (vaddr, vport) = self.ipvs.icmp_about_client_packet(&quoted)?;
        let Some(nh) = self.net.route_ip(src.0) else { return Some(self.drop(DropReason::NoRoute)) };
        let egress = self.egress(nh);
        let v = rewrite::icmp_nat_out(buf, &egress, &NatMapping { virt: (vaddr, vport), real: dst });
        Some(self.finish(port, buf, v, nh, now))
    }

    /// With RSS prediction: where will the NIC deliver the replies of this new NAT connection? The
    /// reply comes from the real server to the client, on the port the server is reached by.
    fn mirror_if_elsewhere(
        &mut self,
        conn: Option<rvs_ipvs::ConnId>,
        p: &PacketMeta,
        daddr: IpAddr,
        rport: u16,
    ) {
        let Some((me, ports)) = &self.predict else { return };
        let (IpAddr::V4(server), IpAddr::V4(client)) = (daddr, p.src) else { return };
        let Some(rss) = self.net.route(server).and_then(|nh| ports.get(nh.port)?.as_ref()) else { return };
        let worker = usize::from(rss.queue_v4(p.protocol, server, client, rport, p.sport));
        if worker == *me || self.mirrors.len() >= SIDE_QUEUE {
            return;
        }
        if let Some(c) = conn.and_then(|c| self.ipvs.connection(c)) {
            self.mirrors.push((worker, c));
        }
    }

    fn egress(&self, nh: NextHop) -> Egress {
        self.egress_at(nh.port)
    }

    #[inline]
    fn egress_at(&self, port: usize) -> Egress {
        let (mac, mtu) = self.net.interfaces.get(port).map_or(([0; 6], 0), |i| (i.mac, i.mtu));
        Egress { src_mac: mac, dst_mac: [0; 6], mtu, ttl: self.ttl, offload: Offload::NONE }
    }

    /// [`Pipeline::forward`] for the IPv4 fast path's NAT and DR, with the addresses held as
    /// `Ipv4Addr` from the decision to the neighbour lookup.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn forward4<B: PacketBuffer + ?Sized>(
        &mut self,
        port: usize,
        buf: &mut B,
        masq: bool,
        virt: (Ipv4Addr, u16),
        real: (Ipv4Addr, u16),
        info: &rewrite::IpInfo,
        now: Time,
    ) -> Action {
        let Some((out, hop)) = self.net.route4(real.0) else { return self.drop(DropReason::NoRoute) };
        let egress = self.egress_at(out);
        let v = if masq {
            rewrite::nat4_in_with(buf, info, &egress, virt, real)
        } else if hop != real.0 {
            // DR hands the frame to the real server itself: it must be on a connected subnet.
            return self.drop(DropReason::NoRoute);
        } else {
            rewrite::dr_with(buf, info, &egress)
        };
        self.finish_hop(port, buf, v, out, hop, now)
    }

    /// A real server's IPv4 NAT reply on the fast path, back to its client as the VIP's.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn reply4<B: PacketBuffer + ?Sized>(
        &mut self,
        port: usize,
        buf: &mut B,
        virt: (Ipv4Addr, u16),
        real: (Ipv4Addr, u16),
        client: Ipv4Addr,
        info: &rewrite::IpInfo,
        now: Time,
    ) -> Action {
        let Some((out, hop)) = self.net.route4(client) else { return self.drop(DropReason::NoRoute) };
        let egress = self.egress_at(out);
        let v = rewrite::nat4_out_with(buf, info, &egress, real, virt);
        self.finish_hop(port, buf, v, out, hop, now)
    }

    /// A client's packet to its real server. `info`: the frame as the parse stage found it (the
    /// rewrite then does not parse it again); `None` parses it here.
    #[allow(clippy::too_many_arguments)]
    fn forward<B: PacketBuffer + ?Sized>(
        &mut self,
        port: usize,
        buf: &mut B,
        fwd: Fwd,
        virt: (IpAddr, u16),
        real: (IpAddr, u16),
        info: Option<&rewrite::IpInfo>,
        now: Time,
    ) -> Action {
        if matches!(fwd, Fwd::Local) {
            // The director itself is the real server: its kernel takes the packet unchanged (the
            // VIP is one of the twin's addresses while it has Local servers).
            return self.up_to_kernel(port, now, DropReason::ToDirector);
        }
        let raddr = real.0;
        // The IPv4 route as scalars (see Network::route4): a NextHop returned through memory stalled
        // every TUN packet on store forwarding.
        let (out, hop) = match raddr {
            IpAddr::V4(a) => match self.net.route4(a) {
                Some((out, hop)) => (out, IpAddr::V4(hop)),
                None => return self.drop(DropReason::NoRoute),
            },
            IpAddr::V6(a) => match self.net.route6(&a) {
                Some(nh) => (nh.port, nh.addr),
                None => return self.drop(DropReason::NoRoute),
            },
        };
        let egress = self.egress_at(out);
        let parsed;
        let info = match info {
            Some(i) => i,
            None => match rewrite::parse_ip(buf.bytes()) {
                Ok(i) => {
                    parsed = i;
                    &parsed
                }
                Err(e) => return self.drop(wire_drop(e)),
            },
        };
        let v = match fwd {
            // NAT keeps the family: an IPv4 service's servers are IPv4 (the model refuses others).
            Fwd::Masq if virt.0.is_ipv4() != raddr.is_ipv4() => return self.drop(DropReason::Unsupported),
            Fwd::Masq => rewrite::nat_in_with(buf, info, &egress, &NatMapping { virt, real }),
            // DR hands the frame to the real server itself: it must be on a connected subnet.
            Fwd::Route if hop != raddr => return self.drop(DropReason::NoRoute),
            Fwd::Route => rewrite::dr_with(buf, info, &egress),
            Fwd::Tunnel(t) => {
                let encap = match t {
                    TunnelType::Ipip => Encap::Ipip,
                    TunnelType::Gre { csum } => Encap::Gre { csum: csum == TunCsum::Csum },
                    // Remote checksum offload applies only to packets whose checksum is left to
                    // finish (the kernel's test too); rvs forwards finished ones: plain GUE.
                    TunnelType::Gue { port, csum } => Encap::Gue {
                        sport: gue_source_port(buf.bytes(), info),
                        dport: port,
                        csum: csum == TunCsum::Csum,
                    },
                };
                if self.tun_clamp_mss && info.protocol == ip_proto::TCP && !info.v6 {
                    // IPv4 inside: the MTU less the outer headers (IPv4 or, to an IPv6 server,
                    // IPv6), the inner IPv4 and TCP headers.
                    let outer_ip = if raddr.is_ipv6() { 40 } else { 20 };
                    let overhead = outer_ip + 40 + u16::try_from(encap.len()).unwrap_or(u16::MAX);
                    let max = egress.mtu.saturating_sub(overhead);
                    let end = info.l2_len + info.ip_len;
                    if let Some(seg) = buf.bytes_mut().get_mut(info.l4_offset..end) {
                        if let Ok(mut t) = TcpSegment::new_checked(seg) {
                            if t.flags() & rvs_wire::tcp::flags::SYN != 0 {
                                t.clamp_mss(max);
                            }
                        }
                    }
                }
                self.tun_ident = self.tun_ident.wrapping_add(1);
                // The outer source is the port's address of the server's family (6in4, 4in6 too).
                let src = match (raddr, self.net.interfaces.get(out)) {
                    (IpAddr::V4(_), Some(i)) => IpAddr::V4(i.addr),
                    (IpAddr::V6(_), Some(Interface { addr6: Some((a, _)), .. })) => IpAddr::V6(*a),
                    _ => return self.drop(DropReason::NoRoute),
                };
                let outer = TunOuter { src, dst: raddr, ttl: TUN_TTL, ident: self.tun_ident, encap };
                rewrite::tun_with(buf, info, &egress, &outer)
            }
            Fwd::Local => return self.up_to_kernel(port, now, DropReason::ToDirector),
        };
        match hop {
            IpAddr::V4(h) => self.finish_hop(port, buf, v, out, h, now),
            IpAddr::V6(_) => self.finish_hop(port, buf, v, out, hop, now),
        }
    }

    /// After a rewrite: hand to the neighbour, or turn the verdict into an ICMP error or a drop.
    fn finish<B: PacketBuffer + ?Sized>(
        &mut self,
        ingress: usize,
        buf: &mut B,
        v: Result<Verdict, PacketError>,
        nh: NextHop,
        now: Time,
    ) -> Action {
        self.finish_hop(ingress, buf, v, nh.port, nh.addr, now)
    }

    /// [`Pipeline::finish`] with the next hop as its port and address (of either representation).
    #[inline]
    fn finish_hop<B: PacketBuffer + ?Sized, H: HopAddr>(
        &mut self,
        ingress: usize,
        buf: &mut B,
        v: Result<Verdict, PacketError>,
        port: usize,
        hop: H,
        now: Time,
    ) -> Action {
        match v {
            Ok(Verdict::Forward) => {}
            Ok(Verdict::TtlExceeded) => {
                if !self.icmp_errors.allow(now) {
                    return self.drop(DropReason::IcmpRateLimit);
                }
                self.counters.count_drop(DropReason::TtlExceeded);
                return Action::IcmpError { port: ingress, kind: ErrorKind::TtlExceeded };
            }
            Ok(Verdict::FragNeeded { mtu }) => {
                if !self.icmp_errors.allow(now) {
                    return self.drop(DropReason::IcmpRateLimit);
                }
                self.counters.count_drop(DropReason::FragNeeded);
                return Action::IcmpError { port: ingress, kind: ErrorKind::FragNeeded { mtu } };
            }
            Ok(Verdict::TooBig) => return self.drop(DropReason::TooBig),
            Err(e) => return self.drop(wire_drop(e)),
        }
        match hop.lookup_in(&mut self.neigh, port, now) {
            Lookup::Known { mac, refresh } => {
                if refresh {
                    self.queue_request(hop.into(), port);
                }
                if let Some(d) = buf.bytes_mut().get_mut(..6) {
                    d.copy_from_slice(&mac);
                }
                Action::Tx(port)
            }
            Lookup::Pending { request } => {
                if request {
                    self.queue_request(hop.into(), port);
                }
                Action::Hold { port, next_hop: hop.into() }
            }
            Lookup::Full => self.drop(DropReason::NoNeighbour),
        }
    }

    fn queue_request(&mut self, target: IpAddr, port: usize) {
        if self.neigh_requests.len() < SIDE_QUEUE {
            self.neigh_requests.push((target, port));
        }
    }

    /// Periodic work: neighbour retries and ageing.
    pub fn tick(&mut self, now: Time) {
        let (neigh, reqs) = (&mut self.neigh, &mut self.neigh_requests);
        neigh.tick(now, |ip, port| {
            if reqs.len() < SIDE_QUEUE {
                reqs.push((ip, port));
            }
        });
        self.counters.set_neighbours_evicted(self.neigh.evicted);
    }

    /// Builds into `out` a request for `target`'s MAC from `port` (ARP, or a neighbour
    /// solicitation from the port's IPv6 address); returns its length.
    pub fn neighbour_request(&self, target: IpAddr, port: usize, out: &mut [u8]) -> Option<usize> {
        let i = self.net.interfaces.get(port)?;
        match target {
            IpAddr::V4(t) => arp::build_request(out, i.mac, i.addr, t).ok(),
            IpAddr::V6(t) => icmpv6::build_neighbor_solicit(out, i.mac, &i.addr6?.0, &t).ok(),
        }
    }

    /// Builds into `out` the announcement of `vip` from `port` (gratuitous ARP, or an unsolicited
    /// neighbour advertisement); returns its length.
    pub fn announcement(&self, vip: IpAddr, port: usize, out: &mut [u8]) -> Option<usize> {
        let i = self.net.interfaces.get(port)?;
        match vip {
            IpAddr::V4(v) => arp::build_gratuitous(out, i.mac, v).ok(),
            IpAddr::V6(v) => icmpv6::build_unsolicited_advert(out, i.mac, &v).ok(),
        }
    }

    /// Builds into `out` the ICMP error answering `frame` (as received on `port`, unchanged), sent back
    /// to the frame's L2 source from the port's address; returns its length.
    pub fn icmp_error(&self, port: usize, frame: &[u8], kind: ErrorKind, out: &mut [u8]) -> Option<usize> {
        let i = self.net.interfaces.get(port)?;
        let l2 = ethernet::parse_l2(frame).ok()?;
        let src_mac: MacAddr = frame.get(6..12)?.try_into().ok()?;
        if l2.ethertype == ethertype::IPV6 {
            // The same errors in ICMPv6 (RFC 4443): hop limit exceeded, packet too big.
            let kind6 = match kind {
                ErrorKind::TtlExceeded => icmpv6::ErrorKind::HopLimitExceeded,
                ErrorKind::FragNeeded { mtu } => icmpv6::ErrorKind::PacketTooBig { mtu: u32::from(mtu) },
                _ => return None,
            };
            return icmpv6::build_error(out, src_mac, i.mac, &i.addr6?.0, kind6, frame.get(l2.len..)?).ok();
        }
        icmpv4::build_error(out, src_mac, i.mac, i.addr, kind, frame.get(l2.len..)?).ok()
    }
}

/// An IPv6 address's four words folded into one, for the owner hash: any bit of it moves the owner.
fn fold6(a: &Ipv6Addr) -> Ipv4Addr {
    let b = u128::from(*a);
    Ipv4Addr::from(u32::try_from((b ^ (b >> 32) ^ (b >> 64) ^ (b >> 96)) & u128::from(u32::MAX)).unwrap_or(0))
}

/// fe80::/10.
fn is_link_local(a: &Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

fn wire_drop(e: PacketError) -> DropReason {
    match e {
        PacketError::Truncated | PacketError::Malformed(_) => DropReason::Malformed,
        PacketError::Unsupported(_) => DropReason::Unsupported,
        PacketError::NoRoom => DropReason::RewriteFailed,
    }
}

/// A GUE packet's UDP source port: from the inner flow (source address and the transport ports),
/// in the dynamic range, so that routers and NICs on the way spread flows and keep each one on one
/// path, as the kernel's udp_flow_src_port does.
fn gue_source_port(frame: &[u8], info: &rewrite::IpInfo) -> u16 {
    let ports = frame
        .get(info.l4_offset..info.l4_offset + 4)
        .and_then(|p| <[u8; 4]>::try_from(p).ok())
        .map_or(0, u32::from_be_bytes);
    let addr = match info.src {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => {
            let b = u128::from(a);
            u64::try_from(b >> 64).unwrap_or(0) ^ u64::try_from(b & u128::from(u64::MAX)).unwrap_or(0)
        }
    };
    let h = ((addr << 32) ^ u64::from(ports)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 50;
    // 14 bits above 49152: 49152..=65535.
    49152 | u16::try_from(h & 0x3fff).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{ClassifierRule, ClassifierRule6, Interface, Route, Route6};
    use rvs_ipvs::{DestConfig, SchedulerKind, ServiceConfig, ServiceKey, TunnelType};
    use rvs_wire::VecBuffer;
    use rvs_wire::arp::ArpRepr;
    use rvs_wire::icmpv4;
    use rvs_wire::ipv4::{self, Ipv4Packet};
    use rvs_wire::ipv6::Ipv6Packet;
    use rvs_wire::repr::{Frame6Repr, FrameRepr, Ipv4Repr, Ipv6Repr, L4Repr, TcpRepr};

    const FRONT_MAC: MacAddr = [2, 0, 0, 0, 0, 0xf0];
    const BACK_MAC: MacAddr = [2, 0, 0, 0, 0, 0xb0];
    const ROUTER_MAC: MacAddr = [2, 0, 0, 0, 0, 0x01];
    const RS_MAC: MacAddr = [2, 0, 0, 0, 0, 0x11];
    const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
    const RS: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 11);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

    fn pipeline() -> (Pipeline, Arc<WorkerCounters>) {
        let iface = |name: &str, mac, addr: [u8; 4]| Interface {
            name: name.into(),
            mac,
            addr: addr.into(),
            prefix_len: 24,
            mtu: 1500,
            addr6: None,
        };
        let net = Network::new(
            vec![iface("front", FRONT_MAC, [192, 0, 2, 2]), iface("back", BACK_MAC, [203, 0, 113, 1])],
            &[Route { prefix: Ipv4Addr::UNSPECIFIED, prefix_len: 0, gateway: ROUTER }],
            vec![ClassifierRule {
                destination: [192, 0, 2, 90].into(),
                prefix_len: 32,
                protocol: 6,
                ports: vec![80, 443],
                mark: 1,
            }],
        )
        .unwrap();
        let counters = Arc::new(WorkerCounters::default());
        let mut p = Pipeline::new(Arc::new(net), Ipvs::new(1024, 16, 1), Arc::clone(&counters));
        p.neigh.learn(ROUTER, ROUTER_MAC, 0, true, 0);
        p.neigh.learn(RS, RS_MAC, 1, true, 0);
        (p, counters)
    }

    fn service(p: &mut Pipeline, fwd: Fwd, rport: u16) {
        let key = ServiceKey::Addr { protocol: 6, addr: VIP.into(), port: 80 };
        let ops = [
            Op::AddService(ServiceConfig::new(key, SchedulerKind::Rr)),
            Op::AddDest(key, DestConfig::new(RS.into(), rport, fwd)),
        ];
        assert_eq!(p.apply(&ops), 0);
    }

    fn tcp(
        src_mac: MacAddr,
        dst_mac: MacAddr,
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        flags: u8,
    ) -> Vec<u8> {
        tcp_ttl(src_mac, dst_mac, src, dst, flags, 64)
    }

    /// [`tcp`] with the IPv4 TTL given.
    fn tcp_ttl(
        src_mac: MacAddr,
        dst_mac: MacAddr,
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        flags: u8,
        ttl: u8,
    ) -> Vec<u8> {
        let t = TcpRepr { seq: 0, window: 0, ..TcpRepr::new(src.1, dst.1, flags) };
        FrameRepr::tcp(src_mac, dst_mac, Ipv4Repr { ttl, ..Ipv4Repr::new(src.0, dst.0) }, t).emit()
    }

    /// An ICMP echo (request when `kind` is 8, reply when 0) from `src` to `dst`, as the router sends.
    fn icmp_echo(src: Ipv4Addr, dst: Ipv4Addr, kind: u8) -> Vec<u8> {
        FrameRepr::icmp(
            ROUTER_MAC,
            FRONT_MAC,
            Ipv4Repr { dont_frag: false, ..Ipv4Repr::new(src, dst) },
            (kind, 0, 0),
            &[],
        )
        .emit()
    }

    fn ip(f: &[u8]) -> Ipv4Packet<&[u8]> {
        Ipv4Packet::new_checked(&f[14..]).unwrap()
    }

    #[test]
    fn nat_both_ways_with_port_mapping() {
        let (mut p, _) = pipeline();
        service(&mut p, Fwd::Masq, 8080);
        let mut b = VecBuffer::new(&tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, 40000), (VIP, 80), 0x02));
        assert_eq!(p.handle(0, &mut b, 1), Action::Tx(1));
        let f = b.bytes();
        assert_eq!((&f[..6], &f[6..12]), (&RS_MAC[..], &BACK_MAC[..]));
        assert_eq!((ip(f).dst(), ip(f).ttl()), (RS, 63));
        let t = TcpSegment::new_checked(&f[34..]).unwrap();
        assert_eq!(t.dst_port(), 8080);
        assert!(t.verify_checksum_v4(CLIENT, RS));

        let mut r = VecBuffer::new(&tcp(RS_MAC, BACK_MAC, (RS, 8080), (CLIENT, 40000), 0x12));
        assert_eq!(p.handle(1, &mut r, 2), Action::Tx(0), "the reply goes out via the default gateway");
        let f = r.bytes();
        assert_eq!(&f[..6], &ROUTER_MAC[..]);
        assert_eq!(ip(f).src(), VIP);
        let t = TcpSegment::new_checked(&f[34..]).unwrap();
        assert_eq!(t.src_port(), 80);
        assert!(t.verify_checksum_v4(VIP, CLIENT));
    }

    /// stateless_syn through the pipeline, on frames: the SYN reaches the server rewritten with no
    /// entry made, the server's SYN-ACK is translated from the configuration, and the client's ACK
    /// makes the entry the rest of the connection uses.
    #[test]
    fn a_stateless_syn_handshake_through_nat() {
        let (mut p, _) = pipeline();
        service(&mut p, Fwd::Masq, 8080);
        p.ipvs.sysctl.stateless_syn = rvs_ipvs::Mode::ALWAYS;
        let mut b = VecBuffer::new(&tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, 40000), (VIP, 80), 0x02));
        assert_eq!(p.handle(0, &mut b, 1), Action::Tx(1));
        let t = TcpSegment::new_checked(&b.bytes()[34..]).unwrap();
        assert_eq!((ip(b.bytes()).dst(), t.dst_port()), (RS, 8080));
        assert!(t.verify_checksum_v4(CLIENT, RS));
        assert_eq!(p.ipvs.occupancy().0, 0, "no entry for the SYN");

        let mut r = VecBuffer::new(&tcp(RS_MAC, BACK_MAC, (RS, 8080), (CLIENT, 40000), 0x12));
        assert_eq!(p.handle(1, &mut r, 2), Action::Tx(0));
        let t = TcpSegment::new_checked(&r.bytes()[34..]).unwrap();
        assert_eq!((ip(r.bytes()).src(), t.src_port()), (VIP, 80));
        assert!(t.verify_checksum_v4(VIP, CLIENT));

        let mut a = VecBuffer::new(&tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, 40000), (VIP, 80), 0x10));
        assert_eq!(p.handle(0, &mut a, 3), Action::Tx(1));
        assert_eq!(p.ipvs.occupancy().0, 1, "the ACK made the entry");
        let mut d = VecBuffer::new(&tcp(RS_MAC, BACK_MAC, (RS, 8080), (CLIENT, 40000), 0x18));
        assert_eq!(p.handle(1, &mut d, 4), Action::Tx(0), "the server's data finds it");
        assert_eq!((p.ipvs.defense.stateless_syns, p.ipvs.defense.made_on_ack), (1, 1));
    }

    /// The LVS-NAT guides' director: the VIP is the front port's own address. Services on it are
    /// scheduled (before, every such packet was dropped as to_director and Conns stayed 0); other
    /// ports of that address stay the director's own.
    #[test]
    fn a_vip_that_is_the_ports_own_address() {
        let (mut p, c) = pipeline();
        let own: Ipv4Addr = [192, 0, 2, 2].into();
        let key = ServiceKey::Addr { protocol: 6, addr: own.into(), port: 80 };
        p.apply(&[
            Op::AddService(ServiceConfig::new(key, SchedulerKind::Rr)),
            Op::AddDest(key, DestConfig::new(RS.into(), 8080, Fwd::Masq)),
        ]);
        let mut b = VecBuffer::new(&tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, 40000), (own, 80), 0x02));
        assert_eq!(p.handle(0, &mut b, 1), Action::Tx(1));
        assert_eq!(ip(b.bytes()).dst(), RS);
        let mut r = VecBuffer::new(&tcp(RS_MAC, BACK_MAC, (RS, 8080), (CLIENT, 40000), 0x12));
        assert_eq!(p.handle(1, &mut r, 2), Action::Tx(0));
        assert_eq!(ip(r.bytes()).src(), own);
        let mut ssh = VecBuffer::new(&tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, 40001), (own, 22), 0x02));
        assert_eq!(p.handle(0, &mut ssh, 3), Action::Drop);
        assert_eq!(c.snapshot().dropped(DropReason::ToDirector), 1);
    }

    /// With a kernel twin on the front port, what is the director's own goes up to it: TCP no
    /// service claims, ICMP other than echo requests, ARP replies to the kernel's requests,
    /// multicast (VRRP); within the worker's budget. Without one, the old drops.
    #[test]
    fn the_directors_own_traffic_goes_to_its_kernel_twin() {
        let (mut p, c) = pipeline();
        let own: Ipv4Addr = [192, 0, 2, 2].into();
        let ssh = tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, 40000), (own, 22), 0x02);
        assert_eq!(p.handle(0, &mut VecBuffer::new(&ssh), 1), Action::Drop, "no twin: to_director");
        assert_eq!(c.snapshot().dropped(DropReason::ToDirector), 1);
        p.twins = vec![true, false];
        assert_eq!(p.handle(0, &mut VecBuffer::new(&ssh), 1), Action::ToKernel(0));
        // An echo reply (to the kernel's ping) goes up; an echo request is still answered here.
        assert_eq!(p.handle(0, &mut VecBuffer::new(&icmp_echo(ROUTER, own, 0)), 1), Action::ToKernel(0));
        assert_eq!(p.handle(0, &mut VecBuffer::new(&icmp_echo(ROUTER, own, 8)), 1), Action::Tx(0));
        // The router's answer to the kernel's ARP request: learned, and up.
        let mut req = [0u8; 42];
        arp::build_request(&mut req, FRONT_MAC, own, ROUTER).unwrap();
        let mut rep = [0u8; 42];
        arp::build_reply(&mut rep, &ArpPacket::new_checked(&req[14..]).unwrap(), ROUTER_MAC).unwrap();
        assert_eq!(p.handle(0, &mut VecBuffer::new(&rep), 1), Action::ToKernel(0));
        // Asked from a VIP (the kernel answers a Local server's clients from it): up as well.
        service(&mut p, Fwd::Masq, 80);
        arp::build_request(&mut req, FRONT_MAC, VIP, ROUTER).unwrap();
        arp::build_reply(&mut rep, &ArpPacket::new_checked(&req[14..]).unwrap(), ROUTER_MAC).unwrap();
        assert_eq!(p.handle(0, &mut VecBuffer::new(&rep), 1), Action::ToKernel(0));
        // VRRP to 224.0.0.18 in a multicast frame.
        let mut vrrp = vec![0u8; 14 + 20 + 20];
        ethernet::write_header(&mut vrrp, [1, 0, 0x5e, 0, 0, 0x12], ROUTER_MAC, ethertype::IPV4).unwrap();
        ipv4::write_header(&mut vrrp[14..], ROUTER, [224, 0, 0, 18].into(), 112, 20, 255, 0, 1, false)
            .unwrap();
        assert_eq!(p.handle(0, &mut VecBuffer::new(&vrrp), 1), Action::ToKernel(0));
        // The back port has no twin.
        let to_back = tcp(RS_MAC, BACK_MAC, (RS, 40000), ([203, 0, 113, 1].into(), 22), 0x02);
        assert_eq!(p.handle(1, &mut VecBuffer::new(&to_back), 1), Action::Drop);
        // The budget: a burst of 3, nothing refilled within the same millisecond.
        p.kernel = TokenBucket::new(1000, 3);
        let up = (0..10).filter(|_| p.handle(0, &mut VecBuffer::new(&ssh), 5) == Action::ToKernel(0)).count();
        assert_eq!(up, 3);
        assert_eq!(c.snapshot().dropped(DropReason::KernelBudget), 7);
    }

    /// ICMP errors about NAT connections cross the director translated, both ways: a client's
    /// "fragmentation needed" about a reply reaches the real server about the packet it sent, and the
    /// real server's "port unreachable" about a client's packet reaches the client from the VIP.
    const ROUTER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xf, 0, 0, 0, 0, 1);
    const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xf, 0, 0, 0, 0, 0x80);
    const RS6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 0x11);
    const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 0x10);
    const FWM6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xf, 0, 0, 0, 0, 0x90);

    /// The two-port director with IPv6 addresses too (front 2001:db8:f::2/64, back
    /// 2001:db8:b::1/64, default route via the router's 2001:db8:f::1), one service per mode on
    /// VIP6 ports 80 (NAT to RS6:8080), 81 (DR to RS6) and 82 (TUN to RS6: IPv6 in IPv6).
    fn pipeline6() -> (Pipeline, Arc<WorkerCounters>) {
        let iface = |name: &str, mac, addr: [u8; 4], addr6: &str| Interface {
            name: name.into(),
            mac,
            addr: addr.into(),
            prefix_len: 24,
            mtu: 1500,
            addr6: Some((addr6.parse().unwrap(), 64)),
        };
        let net = Network::new(
            vec![
                iface("front", FRONT_MAC, [192, 0, 2, 2], "2001:db8:f::2"),
                iface("back", BACK_MAC, [203, 0, 113, 1], "2001:db8:b::1"),
            ],
            &[Route { prefix: Ipv4Addr::UNSPECIFIED, prefix_len: 0, gateway: ROUTER }],
            vec![],
        )
        .unwrap()
        .with_routes6(&[Route6 { prefix: Ipv6Addr::UNSPECIFIED, prefix_len: 0, gateway: ROUTER6 }])
        .unwrap()
        .with_classifier6(vec![ClassifierRule6 {
            destination: FWM6,
            prefix_len: 128,
            protocol: 6,
            ports: vec![443],
            mark: 2,
        }]);
        let counters = Arc::new(WorkerCounters::default());
        let mut p = Pipeline::new(Arc::new(net), Ipvs::new(1024, 1024, 1), Arc::clone(&counters));
        p.neigh.learn(ROUTER6, ROUTER_MAC, 0, true, 0);
        p.neigh.learn(RS6, RS_MAC, 1, true, 0);
        for (port, real, rport, fwd) in [
            (80, IpAddr::V6(RS6), 8080, Fwd::Masq),
            (81, IpAddr::V6(RS6), 81, Fwd::Route),
            (82, IpAddr::V6(RS6), 82, Fwd::Tunnel(TunnelType::Ipip)),
        ] {
            let key = ServiceKey::Addr { protocol: 6, addr: VIP6.into(), port };
            let ops = [
                Op::AddService(ServiceConfig::new(key, SchedulerKind::Rr)),
                Op::AddDest(key, DestConfig::new(real, rport, fwd)),
            ];
            assert_eq!(p.apply(&ops), 0);
        }
        (p, counters)
    }

    fn tcp6(
        mac: (MacAddr, MacAddr),
        src: (Ipv6Addr, u16),
        dst: (Ipv6Addr, u16),
        flags: u8,
        hops: u8,
    ) -> Vec<u8> {
        let ip = Ipv6Repr { hop_limit: hops, ..Ipv6Repr::new(src.0, dst.0) };
        Frame6Repr::tcp(mac.0, mac.1, ip, TcpRepr::new(src.1, dst.1, flags)).emit()
    }

    fn ip6(f: &[u8]) -> Ipv6Packet<&[u8]> {
        Ipv6Packet::new_checked(&f[14..]).unwrap()
    }

    /// IPv6 services in the three modes: NAT both ways (addresses and port translated, checksums
    /// right), DR (only the MACs change, the hop limit drops by one), TUN (IPv6 in IPv6, next
    /// header 41, from the back port's IPv6 address); the hop limit running out answers with
    /// ICMPv6 time exceeded from the port's IPv6 address.
    #[test]
    fn ipv6_services_in_every_mode() {
        let (mut p, _) = pipeline6();
        let from_router = (ROUTER_MAC, FRONT_MAC);
        let mut b = VecBuffer::new(&tcp6(from_router, (CLIENT6, 40000), (VIP6, 80), 0x02, 64));
        assert_eq!(p.handle(0, &mut b, 1), Action::Tx(1));
        let f = b.bytes();
        assert_eq!((&f[..6], &f[6..12]), (&RS_MAC[..], &BACK_MAC[..]));
        let (pkt, t) = (ip6(f), TcpSegment::new_checked(&f[54..]).unwrap());
        assert_eq!((pkt.src(), pkt.dst(), pkt.hop_limit(), t.dst_port()), (CLIENT6, RS6, 63, 8080));
        assert!(t.verify_checksum_v6(&CLIENT6, &RS6));
        let mut b = VecBuffer::new(&tcp6((RS_MAC, BACK_MAC), (RS6, 8080), (CLIENT6, 40000), 0x12, 64));
        assert_eq!(p.handle(1, &mut b, 2), Action::Tx(0));
        let f = b.bytes();
        let (pkt, t) = (ip6(f), TcpSegment::new_checked(&f[54..]).unwrap());
        assert_eq!((&f[..6], pkt.src(), pkt.dst(), t.src_port()), (&ROUTER_MAC[..], VIP6, CLIENT6, 80));
        assert!(t.verify_checksum_v6(&VIP6, &CLIENT6));

        let sent = tcp6(from_router, (CLIENT6, 40001), (VIP6, 81), 0x02, 64);
        let mut b = VecBuffer::new(&sent);
        assert_eq!(p.handle(0, &mut b, 3), Action::Tx(1));
        assert_eq!(
            (&b.bytes()[..6], ip6(b.bytes()).dst(), ip6(b.bytes()).hop_limit()),
            (&RS_MAC[..], VIP6, 63)
        );
        assert_eq!(&b.bytes()[62..], &sent[62..], "DR leaves the TCP segment alone");

        let mut b = VecBuffer::with_room(&tcp6(from_router, (CLIENT6, 40002), (VIP6, 82), 0x02, 64), 64, 0);
        assert_eq!(p.handle(0, &mut b, 4), Action::Tx(1));
        let outer = ip6(b.bytes());
        assert_eq!(
            (outer.next_header(), outer.src(), outer.dst()),
            (ip_proto::IPV6, "2001:db8:b::1".parse().unwrap(), RS6)
        );
        assert_eq!(Ipv6Packet::new_checked(outer.payload()).unwrap().dst(), VIP6);

        let expiring = tcp6(from_router, (CLIENT6, 40003), (VIP6, 81), 0x02, 1);
        let mut b = VecBuffer::new(&expiring);
        let a = p.handle(0, &mut b, 5);
        let Action::IcmpError { port: 0, kind } = a else { panic!("{a:?}") };
        let mut out = [0u8; 1600];
        let n = p.icmp_error(0, &expiring, kind, &mut out).unwrap();
        let e = ip6(&out[..n]);
        let m = Icmpv6Packet::new_checked(e.payload()).unwrap();
        assert_eq!((e.src(), e.dst(), m.msg_type()), ("2001:db8:f::2".parse().unwrap(), CLIENT6, 3));
        assert!(m.verify_checksum(&e.src(), &e.dst()));
    }

    /// A `-6` firewall-mark service: the IPv6 classifier marks TCP to [FWM6]:443, which the service
    /// sends to its server; other ports of that address are nobody's; its host address is answered
    /// for in neighbour discovery while the service exists.
    #[test]
    fn ipv6_firewall_mark_services() {
        let (mut p, c) = pipeline6();
        assert!(!p.is_vip6(&FWM6));
        let key = ServiceKey::Fwmark { mark: 2, v6: true };
        let ops = [
            Op::AddService(ServiceConfig::new(key, SchedulerKind::Rr)),
            Op::AddDest(key, DestConfig::new(RS6.into(), 0, Fwd::Route)),
        ];
        assert_eq!(p.apply(&ops), 0);
        assert!(p.is_vip6(&FWM6) && p.announce.contains(&(FWM6.into(), 0)));
        let mut b = VecBuffer::new(&tcp6((ROUTER_MAC, FRONT_MAC), (CLIENT6, 40000), (FWM6, 443), 0x02, 64));
        assert_eq!(p.handle(0, &mut b, 1), Action::Tx(1));
        assert_eq!((&b.bytes()[..6], ip6(b.bytes()).dst()), (&RS_MAC[..], FWM6));
        let mut b = VecBuffer::new(&tcp6((ROUTER_MAC, FRONT_MAC), (CLIENT6, 40001), (FWM6, 22), 0x02, 64));
        assert_eq!(p.handle(0, &mut b, 1), Action::Drop);
        assert_eq!(c.snapshot().dropped(DropReason::NoService), 1);
        assert_eq!(p.apply(&[Op::DelService(key)]), 0);
        assert!(!p.is_vip6(&FWM6), "the host goes with the last -6 FWM service");
    }

    /// Neighbour discovery: solicitations for a VIP or the port's address are answered (on the
    /// VIP's port only, with hop limit 255 required), their senders learned; a next hop nobody has
    /// told us about is solicited while its packet waits, and the advertisement resolves it; echo
    /// to the VIP is answered.
    #[test]
    fn neighbour_discovery_answers_resolves_and_echo() {
        let (mut p, c) = pipeline6();
        let host = Ipv6Addr::new(0x2001, 0xdb8, 0xf, 0, 0, 0, 0, 0x77);
        let host_mac = [2, 0, 0, 0, 0, 0x77];
        let ns = |target: Ipv6Addr, hops: u8| {
            let (group, gmac) = icmpv6::solicited_node(&target);
            let mut body = target.octets().to_vec();
            body.extend_from_slice(&[1, 1]);
            body.extend_from_slice(&host_mac);
            let ip = Ipv6Repr { hop_limit: hops, ..Ipv6Repr::new(host, group) };
            Frame6Repr::icmp(host_mac, gmac, ip, (135, 0, 0), &body).emit()
        };
        for target in [VIP6, "2001:db8:f::2".parse().unwrap()] {
            let mut b = VecBuffer::new(&ns(target, 255));
            assert_eq!(p.handle(0, &mut b, 1), Action::Tx(0), "NS for {target}");
            let e = ip6(b.bytes());
            let m = Icmpv6Packet::new_checked(e.payload()).unwrap();
            assert_eq!((m.msg_type(), m.nd_target(), m.nd_link_layer_addr()), (136, target, Some(FRONT_MAC)));
            assert_eq!((e.dst(), &b.bytes()[..6]), (host, &host_mac[..]));
            assert!(m.verify_checksum(&e.src(), &e.dst()));
        }
        assert_eq!(p.neigh.get(0, host), Some(host_mac), "the solicitor is learned");
        assert_eq!(p.handle(0, &mut VecBuffer::new(&ns(VIP6, 64)), 1), Action::Drop, "routed ND is forged");
        assert_eq!(p.handle(1, &mut VecBuffer::new(&ns(VIP6, 255)), 1), Action::Drop, "not on the back port");
        assert_eq!(c.snapshot().dropped(DropReason::Malformed), 1);

        // A server nobody has advertised: the packet waits, a solicitation goes out.
        let rs12 = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 0x12);
        let key = ServiceKey::Addr { protocol: 6, addr: VIP6.into(), port: 90 };
        let ops = [
            Op::AddService(ServiceConfig::new(key, SchedulerKind::Rr)),
            Op::AddDest(key, DestConfig::new(rs12.into(), 90, Fwd::Route)),
        ];
        assert_eq!(p.apply(&ops), 0);
        let mut b = VecBuffer::new(&tcp6((ROUTER_MAC, FRONT_MAC), (CLIENT6, 40010), (VIP6, 90), 0x02, 64));
        assert_eq!(p.handle(0, &mut b, 2), Action::Hold { port: 1, next_hop: rs12.into() });
        assert_eq!(p.neigh_requests.pop(), Some((rs12.into(), 1)));
        let mut out = [0u8; 128];
        let n = p.neighbour_request(rs12.into(), 1, &mut out).unwrap();
        let q = ip6(&out[..n]);
        let m = Icmpv6Packet::new_checked(q.payload()).unwrap();
        assert_eq!(
            (q.src(), q.dst(), m.msg_type(), m.nd_target()),
            ("2001:db8:b::1".parse().unwrap(), icmpv6::solicited_node(&rs12).0, 135, rs12)
        );
        let rs12_mac = [2, 0, 0, 0, 0, 0x12];
        let mut body = rs12.octets().to_vec();
        body.extend_from_slice(&[2, 1]);
        body.extend_from_slice(&rs12_mac);
        let na = Frame6Repr::icmp(
            rs12_mac,
            BACK_MAC,
            Ipv6Repr { hop_limit: 255, ..Ipv6Repr::new(rs12, "2001:db8:b::1".parse().unwrap()) },
            (136, 0, 0x6000_0000),
            &body,
        )
        .emit();
        p.handle(1, &mut VecBuffer::new(&na), 3);
        assert_eq!(p.neigh.get(1, rs12), Some(rs12_mac));

        let echo = Frame6Repr::icmp(
            ROUTER_MAC,
            FRONT_MAC,
            Ipv6Repr::new(CLIENT6, VIP6),
            (128, 0, 0x0001_0001),
            b"ping",
        );
        let mut b = VecBuffer::new(&echo.emit());
        assert_eq!(p.handle(0, &mut b, 4), Action::Tx(0));
        let e = ip6(b.bytes());
        assert_eq!(
            (e.src(), e.dst(), Icmpv6Packet::new_checked(e.payload()).unwrap().msg_type()),
            (VIP6, CLIENT6, 129)
        );
    }

    #[test]
    fn icmp_errors_about_nat_connections_are_translated() {
        let (mut p, _) = pipeline();
        service(&mut p, Fwd::Masq, 8080);
        assert_eq!(
            p.handle(
                0,
                &mut VecBuffer::new(&tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, 40000), (VIP, 80), 0x02)),
                1
            ),
            Action::Tx(1)
        );
        // An ICMP error from `src` to `dst` quoting a TCP header from `q_src` to `q_dst`.
        let icmp_err = |mac: (MacAddr, MacAddr),
                        src: Ipv4Addr,
                        dst: Ipv4Addr,
                        q_src: (Ipv4Addr, u16),
                        q_dst: (Ipv4Addr, u16)| {
            // The quoted datagram: its IPv4 header and the first 8 bytes of its TCP header.
            let quoted = FrameRepr::tcp(
                mac.1,
                mac.0,
                Ipv4Repr::new(q_src.0, q_dst.0),
                TcpRepr::new(q_src.1, q_dst.1, rvs_wire::tcp::flags::ACK),
            )
            .emit();
            let unreachable = (icmpv4::kind::DEST_UNREACH, icmpv4::code::FRAG_NEEDED, 0);
            let ip = Ipv4Repr { dont_frag: false, ..Ipv4Repr::new(src, dst) };
            FrameRepr::icmp(mac.0, mac.1, ip, unreachable, &quoted[14..14 + 28]).emit()
        };
        let from_client = icmp_err((ROUTER_MAC, FRONT_MAC), CLIENT, VIP, (VIP, 80), (CLIENT, 40000));
        let mut b = VecBuffer::new(&from_client);
        assert_eq!(p.handle(0, &mut b, 2), Action::Tx(1));
        assert_eq!(ip(b.bytes()).dst(), RS);
        let (_, qs, qd) = rewrite::icmp_error_inner(b.bytes()).unwrap();
        assert_eq!((qs, qd), ((RS, 8080), (CLIENT, 40000)), "about the packet the server sent");

        let from_server = icmp_err((RS_MAC, BACK_MAC), RS, CLIENT, (CLIENT, 40000), (RS, 8080));
        let mut b = VecBuffer::new(&from_server);
        assert_eq!(p.handle(1, &mut b, 3), Action::Tx(0));
        assert_eq!((ip(b.bytes()).src(), ip(b.bytes()).dst()), (VIP, CLIENT));
        let (_, qs, qd) = rewrite::icmp_error_inner(b.bytes()).unwrap();
        assert_eq!((qs, qd), ((CLIENT, 40000), (VIP, 80)), "about the packet the client sent");
        let m = &b.bytes()[34..];
        assert_eq!(rvs_wire::checksum::fold(rvs_wire::checksum::sum(0, m)), 0xffff, "ICMP checksum");

        // About no connection of ours: dropped as before.
        let stray = icmp_err((RS_MAC, BACK_MAC), RS, CLIENT, (CLIENT, 1), (RS, 8080));
        assert_eq!(p.handle(1, &mut VecBuffer::new(&stray), 3), Action::Drop);
    }

    /// Several workers as the daemon wires them, without DPDK (after quinn-proto's `Pair`): a
    /// software NIC that spreads IPv4 TCP frames over the workers as an RSS NIC does (Toeplitz, the
    /// default key, RETA entries round robin), each worker loop's inboxes (a frame another worker
    /// owns is handed to it; mirrored connections are installed where they go) and a clock that
    /// moves a millisecond per frame.
    struct Workers {
        w: Vec<Pipeline>,
        rss: RssPredictor,
        now: Time,
        /// Frames handed to their owner, and connections mirrored, so far.
        handed: usize,
        mirrored: usize,
    }

    impl Workers {
        /// `n` workers, each configured by `setup`; `predict`: NAT reply steering by Toeplitz
        /// prediction (mirrors) instead of the hand-over.
        fn new(n: usize, predict: bool, setup: impl Fn(&mut Pipeline)) -> Self {
            let reta: Vec<u16> = (0..128).map(|i| u16::try_from(i % n).unwrap()).collect();
            let rss = RssPredictor::new(crate::rss::DEFAULT_KEY.to_vec(), true, true, reta).unwrap();
            let w = (0..n)
                .map(|i| {
                    let mut p = pipeline().0;
                    setup(&mut p);
                    if predict {
                        p.predict_rss(i, vec![Some(rss.clone()), Some(rss.clone())]);
                    }
                    p
                })
                .collect();
            Self { w, rss, now: 0, handed: 0, mirrored: 0 }
        }

        /// The queue (worker) the NIC delivers an IPv4 TCP frame to.
        fn queue(&self, frame: &[u8]) -> usize {
            let ip = ip(frame);
            let t = TcpSegment::new_checked(&frame[34..]).unwrap();
            usize::from(self.rss.queue_v4(6, ip.src(), ip.dst(), t.src_port(), t.dst_port()))
        }

        /// `frame` arrives on `port`: the worker that handled it (after any hand-over), what it
        /// did, and the frame as it leaves.
        fn arrive(&mut self, port: usize, frame: &[u8]) -> (usize, Action, Vec<u8>) {
            self.now += 1;
            let mut at = self.queue(frame);
            if let Some(owner) = self.w[at].owner(frame, self.w.len()).filter(|&o| o != at) {
                self.handed += 1;
                at = owner;
            }
            let mut b = VecBuffer::new(frame);
            let action = self.w[at].handle(port, &mut b, self.now);
            for (to, c) in std::mem::take(&mut self.w[at].mirrors) {
                assert_ne!(to, at, "a mirror for another worker");
                self.w[to].ipvs.insert_mirror(&c, self.now).unwrap();
                self.mirrored += 1;
            }
            (at, action, b.bytes().to_vec())
        }

        fn connections(&self) -> usize {
            self.w.iter().map(|w| w.ipvs.connections().count()).sum()
        }
    }

    #[test]
    fn with_rss_prediction_nat_replies_are_translated_where_the_nic_delivers_them() {
        let mut ws = Workers::new(2, true, |w| service(w, Fwd::Masq, 8080));
        let mut crossed = 0;
        for n in 0..200u16 {
            let cport = 20000 + n * 7;
            let syn = tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, cport), (VIP, 80), 0x02);
            let (q, action, _) = ws.arrive(0, &syn);
            assert_eq!(action, Action::Tx(1));
            let reply = tcp(RS_MAC, BACK_MAC, (RS, 8080), (CLIENT, cport), 0x12);
            let (r, action, out) = ws.arrive(1, &reply);
            crossed += usize::from(r != q);
            assert_eq!(action, Action::Tx(0), "reply {n} translated on worker {r}");
            assert_eq!(ip(&out).src(), VIP);
        }
        assert_eq!(ws.handed, 0, "with prediction nothing is handed over");
        assert!(crossed > 50, "the NIC sent {crossed} of 200 replies to the other worker");
        assert_eq!(ws.mirrored, crossed, "one mirror per connection whose replies land elsewhere");
        // Listings count each connection once.
        assert_eq!(ws.connections(), 200);

        // Without the mirror, the other worker has nothing to translate with, and says so.
        let reply_to = |c: u16| tcp(RS_MAC, BACK_MAC, (RS, 8080), (CLIENT, c), 0x12);
        let (syn, cport) = (30000u16..)
            .map(|c| (tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, c), (VIP, 80), 0x02), c))
            .find(|(f, c)| ws.queue(f) == 0 && ws.queue(&reply_to(*c)) == 1)
            .unwrap();
        assert_eq!(ws.w[0].handle(0, &mut VecBuffer::new(&syn), 3), Action::Tx(1));
        ws.w[0].mirrors.clear();
        // (A SYN-ACK would be translated from the configuration, as for stateless SYNs; the
        // server's later segments are not.)
        let reply = tcp(RS_MAC, BACK_MAC, (RS, 8080), (CLIENT, cport), 0x10);
        assert_eq!(ws.w[1].handle(1, &mut VecBuffer::new(&reply), 4), Action::Retry);
        ws.w[1].retry_unmatched = false;
        assert_eq!(ws.w[1].handle(1, &mut VecBuffer::new(&reply), 4), Action::Drop);
    }

    /// The default steering on four workers: each client has an owner, and whatever the NIC
    /// delivers elsewhere (a connection's first packet, the server's replies) is handed to it, so
    /// every connection lives on one worker only and every reply is translated there.
    #[test]
    fn with_the_hand_over_a_nat_connection_lives_on_its_clients_worker() {
        let mut ws = Workers::new(4, false, |w| service(w, Fwd::Masq, 8080));
        for n in 0..200u16 {
            let client = Ipv4Addr::new(198, 51, 100, u8::try_from(n % 50).unwrap() + 1);
            let syn = tcp(ROUTER_MAC, FRONT_MAC, (client, 20000 + n), (VIP, 80), 0x02);
            let (q, action, _) = ws.arrive(0, &syn);
            assert_eq!(action, Action::Tx(1));
            let reply = tcp(RS_MAC, BACK_MAC, (RS, 8080), (client, 20000 + n), 0x12);
            let (r, action, out) = ws.arrive(1, &reply);
            assert_eq!((r, action), (q, Action::Tx(0)), "the reply of connection {n} on its owner");
            assert_eq!((ip(&out).src(), ip(&out).dst()), (VIP, client));
        }
        assert_eq!(ws.mirrored, 0, "nothing mirrored without prediction");
        assert!(ws.handed > 100, "the NIC spreads by 5-tuple, ownership by client: {} handed", ws.handed);
        assert_eq!(ws.connections(), 200, "each connection on one worker");
        let per_worker: Vec<usize> = ws.w.iter().map(|w| w.ipvs.connections().count()).collect();
        assert!(per_worker.iter().all(|&c| c > 20), "clients spread over the workers: {per_worker:?}");
    }

    #[test]
    fn with_rss_prediction_persistent_services_keep_a_client_on_its_owner() {
        let (mut p, _) = pipeline();
        let key = ServiceKey::Addr { protocol: 6, addr: VIP.into(), port: 80 };
        let mut cfg = ServiceConfig::new(key, SchedulerKind::Rr);
        cfg.persistence = Some(rvs_ipvs::Persistence { timeout_seconds: 300, prefix_len: 32 });
        assert_eq!(
            p.apply(&[Op::AddService(cfg), Op::AddDest(key, DestConfig::new(RS.into(), 80, Fwd::Masq))]),
            0
        );
        p.predict_rss(0, vec![None, None]);
        let owners: std::collections::HashSet<_> = (0..20u16)
            .map(|c| p.owner(&tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, 1000 + c), (VIP, 80), 2), 4))
            .collect();
        assert_eq!(owners.len(), 1, "every connection of one client on one worker");
        assert!(
            owners
                .contains(&Some(p.owner(&tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, 1), (VIP, 80), 2), 4).unwrap()))
        );
        assert_eq!(p.owner(&tcp(RS_MAC, BACK_MAC, (RS, 80), (CLIENT, 1), 0x12), 4), None, "replies stay");
    }

    #[test]
    fn with_rss_prediction_a_persistent_fwm_service_covers_its_classifier_prefixes() {
        let (mut p, _) = pipeline();
        let mut net = (*p.net).clone();
        net.classifier.push(ClassifierRule {
            destination: [192, 0, 2, 128].into(),
            prefix_len: 25,
            protocol: 6,
            ports: vec![80],
            mark: 2,
        });
        p.net = Arc::new(net);
        let key = ServiceKey::Fwmark { mark: 2, v6: false };
        let mut cfg = ServiceConfig::new(key, SchedulerKind::Rr);
        cfg.persistence = Some(rvs_ipvs::Persistence { timeout_seconds: 300, prefix_len: 32 });
        assert_eq!(
            p.apply(&[Op::AddService(cfg), Op::AddDest(key, DestConfig::new(RS.into(), 80, Fwd::Masq))]),
            0
        );
        p.predict_rss(0, vec![None, None]);
        let to = |dst: [u8; 4]| p.owner(&tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, 1000), (dst.into(), 80), 2), 4);
        assert!(to([192, 0, 2, 200]).is_some(), "inside mark 2's /25: the client's owner");
        assert_eq!(to([192, 0, 2, 90]), None, "mark 1's rule has no persistent service");
    }

    #[test]
    fn both_directions_of_a_nat_connection_have_one_owner() {
        let (mut p, _) = pipeline();
        service(&mut p, Fwd::Masq, 8080);
        let mut owners = std::collections::HashSet::new();
        for c in 0..64u8 {
            let client = Ipv4Addr::new(198, 51, 100, c);
            let fwd = tcp(ROUTER_MAC, FRONT_MAC, (client, 40000 + u16::from(c)), (VIP, 80), 0x02);
            let rep = tcp(RS_MAC, BACK_MAC, (RS, 8080), (client, 40000 + u16::from(c)), 0x12);
            let o = p.owner(&fwd, 4).unwrap();
            assert_eq!(p.owner(&rep, 4), Some(o), "client {client}");
            owners.insert(o);
        }
        assert_eq!(owners.len(), 4, "clients spread over every worker");
        assert_eq!(p.owner(&tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, 1), (VIP, 80), 2), 1), None, "one worker");
        let mut req = [0u8; 42];
        arp::build_request(&mut req, ROUTER_MAC, ROUTER, VIP).unwrap();
        assert_eq!(p.owner(&req, 4), None, "ARP is anyone's");
    }

    /// Which worker owns a client was a fixed function of the address (Fibonacci hashing), so a
    /// sender could pick sources that all land on one worker. Keyed, the same clients spread
    /// differently under each key, and each key still spreads them evenly.
    #[test]
    fn flow_owners_depend_on_a_key() {
        let clients: Vec<Ipv4Addr> = (0..4096u32).map(|c| Ipv4Addr::from(0xc633_6400 + c)).collect();
        let owners = |key: u64| -> Vec<usize> { clients.iter().map(|&c| owner_of(key, c, 4)).collect() };
        let (a, b) = (owners(0x0123_4567_89ab_cdef), owners(0xfedc_ba98_7654_3210));
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
        assert!(same < 4096 / 4 + 200, "{same} of 4096 clients kept their worker under another key");
        for w in 0..4 {
            let n = a.iter().filter(|&&o| o == w).count();
            assert!((900..1150).contains(&n), "worker {w} owns {n} of 4096");
        }
        // An attacker's set: the clients that the old unkeyed hash gave to worker 0.
        let aimed: Vec<Ipv4Addr> = clients
            .iter()
            .copied()
            .filter(|&c| (u64::from(u32::from(c)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % 4 == 0)
            .collect();
        let on_zero = aimed.iter().filter(|&&c| owner_of(0x5151_7272_9393_b4b4, c, 4) == 0).count();
        assert!(on_zero * 2 < aimed.len(), "{on_zero} of {} aimed clients still on worker 0", aimed.len());
    }

    #[test]
    fn dr_and_tun_reach_the_real_server() {
        let (mut p, _) = pipeline();
        service(&mut p, Fwd::Route, 80);
        let mut b = VecBuffer::new(&tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, 40000), (VIP, 80), 0x02));
        assert_eq!(p.handle(0, &mut b, 1), Action::Tx(1));
        assert_eq!(&b.bytes()[..6], &RS_MAC[..]);
        assert_eq!(ip(b.bytes()).dst(), VIP, "DR leaves the IP destination alone");

        let (mut p, _) = pipeline();
        service(&mut p, Fwd::Tunnel(TunnelType::Ipip), 80);
        let mut b =
            VecBuffer::with_room(&tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, 40000), (VIP, 80), 0x02), 64, 0);
        assert_eq!(p.handle(0, &mut b, 1), Action::Tx(1));
        let outer = ip(b.bytes());
        assert_eq!((outer.src(), outer.dst(), outer.protocol()), ([203, 0, 113, 1].into(), RS, 4));
        assert_eq!(Ipv4Packet::new_checked(&b.bytes()[34..]).unwrap().dst(), VIP);
    }

    /// A TCP SYN (48 bytes of segment) cut into two fragments: the first 24 bytes (the TCP header
    /// and 4 more), then the rest at offset 24.
    fn fragments(ident: u16) -> (Vec<u8>, Vec<u8>) {
        let whole = tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, 40000), (VIP, 80), 0x02);
        let mut payload = whole[34..].to_vec();
        payload.resize(48, 0xab);
        let frag = |off: usize, data: &[u8], more: bool| {
            let ip = Ipv4Repr {
                ident,
                dont_frag: false,
                more_frags: more,
                frag_offset: off,
                ..Ipv4Repr::new(CLIENT, VIP)
            };
            let l4 = L4Repr::Raw { protocol: 6 };
            FrameRepr { src_mac: ROUTER_MAC, dst_mac: FRONT_MAC, ip, l4, payload: data.to_vec() }.emit()
        };
        (frag(0, &payload[..24], true), frag(24, &payload[24..], false))
    }

    #[test]
    fn a_udp_first_fragment_is_scheduled() {
        let (mut p, c) = pipeline();
        let key = ServiceKey::Addr { protocol: 17, addr: VIP.into(), port: 5300 };
        let ops = [
            Op::AddService(ServiceConfig::new(key, SchedulerKind::Rr)),
            Op::AddDest(key, DestConfig::new(RS.into(), 5300, Fwd::Masq)),
        ];
        assert_eq!(p.apply(&ops), 0);
        // The first 1480 bytes of a 3000-byte datagram: the UDP header (its length and checksum
        // cover the whole datagram) and the start of the data.
        let mut head = vec![0u8; 1480];
        head[0..2].copy_from_slice(&40000u16.to_be_bytes());
        head[2..4].copy_from_slice(&5300u16.to_be_bytes());
        head[4..6].copy_from_slice(&3008u16.to_be_bytes());
        head[6..8].copy_from_slice(&0x1234u16.to_be_bytes());
        let ip = Ipv4Repr { ident: 7, dont_frag: false, more_frags: true, ..Ipv4Repr::new(CLIENT, VIP) };
        let f = FrameRepr {
            src_mac: ROUTER_MAC,
            dst_mac: FRONT_MAC,
            ip,
            l4: L4Repr::Raw { protocol: 17 },
            payload: head,
        }
        .emit();
        let mut b = VecBuffer::new(&f);
        assert_eq!(p.handle(0, &mut b, 1), Action::Tx(1), "{:?}", c.snapshot().drops);
    }

    /// A SYN with an MSS option of 1460 from the client to the VIP.
    fn syn_with_mss() -> Vec<u8> {
        let t = TcpRepr { mss: Some(1460), ..TcpRepr::new(40000, 80, 0x02) };
        FrameRepr::tcp(ROUTER_MAC, FRONT_MAC, Ipv4Repr::new(CLIENT, VIP), t).emit()
    }

    #[test]
    fn syns_to_tun_servers_get_their_mss_clamped_when_asked() {
        for (clamp, want) in [(false, 1460), (true, 1440)] {
            let (mut p, _) = pipeline();
            service(&mut p, Fwd::Tunnel(TunnelType::Ipip), 80);
            p.tun_clamp_mss = clamp;
            let mut b = VecBuffer::with_room(&syn_with_mss(), 64, 0);
            assert_eq!(p.handle(0, &mut b, 1), Action::Tx(1));
            let inner = Ipv4Packet::new_checked(&b.bytes()[34..]).unwrap();
            let t = TcpSegment::new_checked(inner.payload()).unwrap();
            assert_eq!(t.mss().map(|(m, _)| m), Some(want), "clamp {clamp}");
            assert!(t.verify_checksum_v4(CLIENT, VIP));
        }
    }

    #[test]
    fn later_fragments_follow_the_first_through_nat() {
        let (mut p, c) = pipeline();
        service(&mut p, Fwd::Masq, 8080);
        let (first, rest) = fragments(4242);
        let mut b = VecBuffer::new(&first);
        assert_eq!(p.handle(0, &mut b, 1), Action::Tx(1), "{:?}", c.snapshot().drops);
        let ip1 = Ipv4Packet::new_checked_header(&b.bytes()[14..]).unwrap();
        assert_eq!((ip1.dst(), ip1.more_frags(), ip1.verify_checksum()), (RS, true, true));
        assert_eq!(u16::from_be_bytes([b.bytes()[36], b.bytes()[37]]), 8080, "the first carries the port");
        let mut b = VecBuffer::new(&rest);
        assert_eq!(p.handle(0, &mut b, 2), Action::Tx(1));
        let ip2 = Ipv4Packet::new_checked_header(&b.bytes()[14..]).unwrap();
        assert_eq!((ip2.dst(), ip2.frag_offset(), ip2.verify_checksum()), (RS, 24, true));
        // A later fragment of a datagram whose first never came.
        let (_, stray) = fragments(99);
        assert_eq!(p.handle(0, &mut VecBuffer::new(&stray), 3), Action::Drop);
        assert_eq!(c.snapshot().dropped(DropReason::Fragment), 1);
    }

    #[test]
    fn arp_for_vips_and_our_address_is_answered_on_the_right_port() {
        let (mut p, c) = pipeline();
        service(&mut p, Fwd::Masq, 80);
        assert!(p.announce.contains(&(VIP.into(), 0)), "a new VIP is announced on its subnet's port");
        let mut req = [0u8; 60];
        arp::build_request(&mut req, ROUTER_MAC, ROUTER, VIP).unwrap();
        let mut b = VecBuffer::new(&req);
        assert_eq!(p.handle(0, &mut b, 1), Action::Tx(0));
        let a = ArpPacket::new_checked(&b.bytes()[14..]).unwrap();
        assert_eq!((a.operation(), a.sender_mac(), a.sender_ip()), (arp::OP_REPLY, FRONT_MAC, VIP));
        assert_eq!(b.bytes().len(), arp::FRAME_LEN);
        // Not on the server side: real servers must never learn the VIP at the director.
        let mut req = [0u8; 60];
        arp::build_request(&mut req, RS_MAC, RS, VIP).unwrap();
        let mut b = VecBuffer::new(&req);
        assert_eq!(p.handle(1, &mut b, 1), Action::Drop);
        assert_eq!(c.snapshot().dropped(DropReason::ArpNotOurs), 1);
    }

    /// A host of the client LAN answering for a real server's address (or asking with it as the
    /// sender) redirected the director's packets for that server: the table was keyed by address
    /// alone and learned from any port.
    #[test]
    fn arp_from_outside_the_ports_subnet_is_refused() {
        let (mut p, c) = pipeline();
        service(&mut p, Fwd::Masq, 8080);
        let evil = [2, 0, 0, 0, 0, 0x66];
        for op in [arp::OP_REQUEST, arp::OP_REPLY] {
            let mut f = [0u8; 42];
            ArpRepr { operation: op, ..ArpRepr::request(evil, RS, VIP) }
                .emit(&mut f, ethernet::BROADCAST)
                .unwrap();
            assert_eq!(p.handle(0, &mut VecBuffer::new(&f), 1), Action::Drop);
        }
        assert_eq!(c.snapshot().dropped(DropReason::ArpRefused), 2);
        assert_eq!(p.neigh.get(1, RS), Some(RS_MAC));
        let mut b = VecBuffer::new(&tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, 40000), (VIP, 80), 0x02));
        assert_eq!(p.handle(0, &mut b, 2), Action::Tx(1));
        assert_eq!(&b.bytes()[..6], &RS_MAC[..], "still to the real server");
    }

    /// The VIP set follows each op (no walk over every service per batch): a VIP stays while any
    /// service uses it, an FWM service's classifier hosts while any FWM service exists.
    #[test]
    fn vips_follow_services_op_by_op() {
        let (mut p, _) = pipeline();
        let k80 = ServiceKey::Addr { protocol: 6, addr: VIP.into(), port: 80 };
        let k443 = ServiceKey::Addr { protocol: 6, addr: VIP.into(), port: 443 };
        let fwm = ServiceKey::Fwmark { mark: 1, v6: false };
        let mut cfg = ServiceConfig::new(fwm, SchedulerKind::Rr);
        cfg.persistence = Some(rvs_ipvs::Persistence { timeout_seconds: 300, prefix_len: 32 });
        p.apply(&[
            Op::AddService(ServiceConfig::new(k80, SchedulerKind::Rr)),
            Op::AddService(ServiceConfig::new(k443, SchedulerKind::Rr)),
            Op::AddService(cfg),
        ]);
        assert!(p.is_vip(VIP) && p.is_vip([192, 0, 2, 90].into()));
        assert_eq!(p.announce.iter().filter(|(v, _)| *v == VIP).count(), 1, "announced once");
        p.apply(&[Op::DelService(k80)]);
        assert!(p.is_vip(VIP), "443 still uses it");
        p.apply(&[Op::DelService(k443), Op::DelService(fwm)]);
        assert!(!p.is_vip(VIP) && !p.is_vip([192, 0, 2, 90].into()));
        p.apply(&[Op::AddService(ServiceConfig::new(k80, SchedulerKind::Rr)), Op::Clear]);
        assert!(!p.is_vip(VIP));
    }

    #[test]
    fn unknown_next_hop_is_held_and_requested() {
        let (mut p, _) = pipeline();
        let key = ServiceKey::Addr { protocol: 6, addr: VIP.into(), port: 80 };
        let other = Ipv4Addr::new(203, 0, 113, 12);
        p.apply(&[
            Op::AddService(ServiceConfig::new(key, SchedulerKind::Rr)),
            Op::AddDest(key, DestConfig::new(other.into(), 80, Fwd::Masq)),
        ]);
        let mut b = VecBuffer::new(&tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, 40000), (VIP, 80), 0x02));
        assert_eq!(p.handle(0, &mut b, 1), Action::Hold { port: 1, next_hop: other.into() });
        assert_eq!(p.neigh_requests, vec![(other.into(), 1)]);
        let mut rep = [0u8; 42];
        let mut req = [0u8; 42];
        arp::build_request(&mut req, BACK_MAC, [203, 0, 113, 1].into(), other).unwrap();
        arp::build_reply(&mut rep, &ArpPacket::new_checked(&req[14..]).unwrap(), [2, 0, 0, 0, 0, 0x12])
            .unwrap();
        let mut b = VecBuffer::new(&rep);
        p.handle(1, &mut b, 2);
        let mut r = vec![];
        p.neigh.take_resolved(&mut r);
        assert_eq!(r, vec![(1, other.into())]);
    }

    #[test]
    fn fwmark_groups_ports_and_other_traffic_is_counted() {
        let (mut p, c) = pipeline();
        let key = ServiceKey::Fwmark { mark: 1, v6: false };
        let mut cfg = ServiceConfig::new(key, SchedulerKind::Rr);
        cfg.persistence = Some(rvs_ipvs::Persistence { timeout_seconds: 300, prefix_len: 32 });
        p.apply(&[Op::AddService(cfg), Op::AddDest(key, DestConfig::new(RS.into(), 0, Fwd::Route))]);
        assert!(p.is_vip([192, 0, 2, 90].into()));
        for port in [80, 443] {
            let mut b = VecBuffer::new(&tcp(
                ROUTER_MAC,
                FRONT_MAC,
                (CLIENT, 40000 + port),
                ([192, 0, 2, 90].into(), port),
                2,
            ));
            assert_eq!(p.handle(0, &mut b, 1), Action::Tx(1));
        }
        let mut b =
            VecBuffer::new(&tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, 40000), ([192, 0, 2, 90].into(), 22), 2));
        assert_eq!(p.handle(0, &mut b, 1), Action::Drop);
        let truncated = &tcp(ROUTER_MAC, FRONT_MAC, (CLIENT, 1), (VIP, 80), 2)[..30];
        let mut b = VecBuffer::new(truncated);
        assert_eq!(p.handle(0, &mut b, 1), Action::Drop);
        let mut b = VecBuffer::new(&tcp(ROUTER_MAC, [2, 9, 9, 9, 9, 9], (CLIENT, 1), (VIP, 80), 2));
        assert_eq!(p.handle(0, &mut b, 1), Action::Drop);
        let s = c.snapshot();
        assert_eq!(
            (
                s.dropped(DropReason::NoService),
                s.dropped(DropReason::Malformed),
                s.dropped(DropReason::NotOurMac)
            ),
            (1, 1, 1)
        );
    }

    /// Echo replies and ICMP errors were sent for every packet, however many; now each worker sends
    /// at most Linux's default 1000 a second (bursts of 50) of each, and counts the rest.
    #[test]
    fn icmp_is_rate_limited_per_worker() {
        let (mut p, c) = pipeline();
        service(&mut p, Fwd::Masq, 80);
        let f = icmp_echo(CLIENT, VIP, 8);
        let ttl1 = tcp_ttl(ROUTER_MAC, FRONT_MAC, (CLIENT, 40000), (VIP, 80), 0x02, 1);
        let (mut echoed, mut errors) = (0, 0);
        for ms in 0..1000u64 {
            for _ in 0..20 {
                echoed += usize::from(p.handle(0, &mut VecBuffer::new(&f), ms) == Action::Tx(0));
                errors += usize::from(matches!(
                    p.handle(0, &mut VecBuffer::new(&ttl1), ms),
                    Action::IcmpError { .. }
                ));
            }
        }
        assert!((1000..=1050).contains(&echoed), "{echoed} echo replies in one second");
        assert!((1000..=1050).contains(&errors), "{errors} ICMP errors in one second");
        let s = c.snapshot();
        assert_eq!(s.dropped(DropReason::IcmpRateLimit) as usize, 2 * 20_000 - echoed - errors);
        assert_eq!(s.dropped(DropReason::TtlExceeded) as usize, errors);
    }

    #[test]
    fn echo_to_a_vip_is_answered_and_ttl_expiry_gives_an_icmp_error() {
        let (mut p, _) = pipeline();
        service(&mut p, Fwd::Masq, 80);
        let f = icmp_echo(CLIENT, VIP, 8);
        let mut b = VecBuffer::new(&f);
        assert_eq!(p.handle(0, &mut b, 1), Action::Tx(0));
        assert_eq!((ip(b.bytes()).src(), ip(b.bytes()).dst(), b.bytes()[34]), (VIP, CLIENT, 0));

        let t = tcp_ttl(ROUTER_MAC, FRONT_MAC, (CLIENT, 40000), (VIP, 80), 0x02, 1);
        let mut b = VecBuffer::new(&t);
        let a = p.handle(0, &mut b, 1);
        assert_eq!(a, Action::IcmpError { port: 0, kind: ErrorKind::TtlExceeded });
        let mut out = [0u8; 1514];
        let n = p.icmp_error(0, b.bytes(), ErrorKind::TtlExceeded, &mut out).unwrap();
        let e = ip(&out[..n]);
        assert_eq!((e.src(), e.dst(), out[34]), ([192, 0, 2, 2].into(), CLIENT, 11));
    }
}
