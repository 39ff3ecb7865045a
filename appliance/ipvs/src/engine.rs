//! One worker's IPVS: services and destinations with their counters, the connection tables, and the
//! per-packet decisions (ip_vs_in / ip_vs_out / ip_vs_schedule / ip_vs_sched_persist).

use std::net::IpAddr;

use hashbrown::HashMap;

use crate::conn::{Addr, ConnInfo, ConnKey, ConnTable, Expiry, NewEntry, flag};
use crate::sched::{SchedCtx, Scheduler};
use crate::service::{
    Dest, DestConfig, DestId, Fwd, Persistence, ServiceConfig, ServiceId, ServiceKey, Stats, fwmark_addr,
    mask_addr,
};
use crate::state::{self, Direction, TcpState, Timeouts, tcp_flags};
use crate::sysctl::Sysctl;
use crate::{Error, Time, proto};

const NONE: u32 = u32::MAX;

/// The parts of a packet IPVS decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    pub protocol: u8,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    /// TCP flags (0 for UDP).
    pub tcp_flags: u8,
    /// The firewall mark the classifier gave the packet, if any.
    pub fwmark: Option<u32>,
    /// Bytes, for the statistics.
    pub len: u32,
}

/// Why a packet addressed to a service is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The scheduler found no available server.
    NoDestination,
    /// No free connection slot.
    TableFull,
    /// Its connection's server was removed (expire_nodest_conn = 0).
    DestUnavailable,
    /// A TCP segment other than SYN with no connection.
    NotSyn,
    /// Refused by the drop_packet defence (the table is short of free entries).
    DropPacket,
}

impl DropReason {
    pub const ALL: [DropReason; 5] =
        [Self::NoDestination, Self::TableFull, Self::DestUnavailable, Self::NotSyn, Self::DropPacket];

    /// The `reason` label of the exported counter.
    pub fn name(self) -> &'static str {
        match self {
            Self::NoDestination => "no_destination",
            Self::TableFull => "table_full",
            Self::DestUnavailable => "destination_unavailable",
            Self::NotSyn => "not_syn",
            Self::DropPacket => "drop_packet",
        }
    }
}

/// Drops per reason, for the exported counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounters {
    pub no_destination: u64,
    pub table_full: u64,
    pub dest_unavailable: u64,
    pub not_syn: u64,
    pub drop_packet: u64,
}

impl DropCounters {
    pub fn get(&self, r: DropReason) -> u64 {
        match r {
            DropReason::NoDestination => self.no_destination,
            DropReason::TableFull => self.table_full,
            DropReason::DestUnavailable => self.dest_unavailable,
            DropReason::NotSyn => self.not_syn,
            DropReason::DropPacket => self.drop_packet,
        }
    }

    pub fn add(&mut self, o: &DropCounters) {
        self.no_destination += o.no_destination;
        self.table_full += o.table_full;
        self.dest_unavailable += o.dest_unavailable;
        self.not_syn += o.not_syn;
        self.drop_packet += o.drop_packet;
    }

    fn count(&mut self, r: DropReason) {
        let c = match r {
            DropReason::NoDestination => &mut self.no_destination,
            DropReason::TableFull => &mut self.table_full,
            DropReason::DestUnavailable => &mut self.dest_unavailable,
            DropReason::NotSyn => &mut self.not_syn,
            DropReason::DropPacket => &mut self.drop_packet,
        };
        *c += 1;
    }
}

/// What the flood defences did, for the exported counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefenseCounters {
    /// SYNs forwarded without an entry (stateless_syn).
    pub stateless_syns: u64,
    /// Connections whose entry the client's first ACK made.
    pub made_on_ack: u64,
    /// NAT SYN-ACKs translated from the configuration (no entry yet).
    pub stateless_replies: u64,
    /// Half-open entries dropped by drop_entry.
    pub dropped_entries: u64,
}

impl DefenseCounters {
    pub fn add(&mut self, o: &DefenseCounters) {
        self.stateless_syns += o.stateless_syns;
        self.made_on_ack += o.made_on_ack;
        self.stateless_replies += o.stateless_replies;
        self.dropped_entries += o.dropped_entries;
    }
}

/// A client's ACK may make its connection's entry this long after stateless_syn last acted (its
/// SYN went without one): long enough for SYN-ACK retransmissions (1, 2, 4 s).
const STATELESS_GRACE_MS: Time = 10_000;

/// Services whose scheduler housekeeping one expiry run does.
const SCHED_TICKS_PER_RUN: usize = 64;

/// A connection-table entry: the table of its address family, and its slot there. It names the
/// entry while the entry lives (slots are reused after).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub v6: bool,
    pub slot: u32,
}

/// Where a client packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InVerdict {
    Forward {
        /// The connection's entry; `None` for one-packet scheduling and stateless SYNs, which keep
        /// none.
        conn: Option<ConnId>,
        dest: DestId,
        daddr: IpAddr,
        dport: u16,
        fwd: Fwd,
        /// A connection was created for this packet.
        new: bool,
    },
    /// No service and no connection: not IPVS traffic.
    NotOurs,
    Drop(DropReason),
}

/// Where a reply from a real server goes (NAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutVerdict {
    /// Rewrite the source to the virtual address and port.
    Reply {
        /// `None`: a SYN-ACK translated from the configuration (stateless_syn made no entry).
        conn: Option<ConnId>,
        vaddr: IpAddr,
        vport: u16,
    },
    NotOurs,
}

#[derive(Debug, Clone)]
struct ServiceEntry {
    cfg: ServiceConfig,
    sched: Scheduler,
    /// Live destinations in insertion order (removed ones leave the list).
    dests: Vec<DestId>,
    stats: Stats,
    /// Deleted, but destinations still refer to it.
    removed: bool,
    /// Destinations in the arena (live or trashed) that belong to this service.
    arena_refs: u32,
}

fn fwd_code(f: Fwd) -> u8 {
    match f {
        Fwd::Masq => 0,
        Fwd::Route => 1,
        Fwd::Tunnel(_) => 2,
        Fwd::Local => 3,
    }
}

/// One worker's IPVS shard.
#[derive(Debug)]
pub struct Ipvs {
    services: Vec<Option<ServiceEntry>>,
    by_key: HashMap<ServiceKey, ServiceId>,
    dests: Vec<Option<Dest>>,
    /// Connections and templates bound to each destination (its reference count).
    dest_refs: Vec<u32>,
    /// Free slots of `services` and `dests`, so configuration changes stay O(1) at any scale.
    free_services: Vec<u32>,
    free_dests: Vec<u32>,
    /// Removed destinations kept for their connections, by (service key, address, port): re-adding
    /// one brings it back (IPVS's trash), also to a service deleted and created again with the same
    /// key (`-C; -R`), as ip_vs_trash_get_dest matches by the service's address/port/protocol/mark.
    trash: HashMap<(ServiceKey, IpAddr, u16), DestId>,
    v4: ConnTable<[u8; 4]>,
    v6: ConnTable<[u8; 16]>,
    pub timeouts: Timeouts,
    pub sysctl: Sysctl,
    pub drops: DropCounters,
    pub defense: DefenseCounters,
    /// NAT servers by (protocol, address, port) -> the virtual (address, port) of each service they
    /// serve (a port-0 server: port 0): how a SYN-ACK is translated before its connection has an
    /// entry. Only a server of exactly one virtual service can be translated so.
    nat_reverse: HashMap<(u8, IpAddr, u16), Vec<(IpAddr, u16)>>,
    /// When stateless_syn last acted (ACKs without entries are scheduled for a while after).
    stateless_at: Option<Time>,
    /// drop_packet's countdown, and drop_entry's place in the table.
    drop_counter: u32,
    drop_cursor: [u32; 2],
    /// The next service whose scheduler [`Ipvs::expire`] ticks.
    sched_cursor: usize,
    /// mh tables come built from the management core (Op::SchedTable) instead of being built here.
    defer_tables: bool,
    /// The director's own addresses (see [`Ipvs::set_local_addrs`]).
    locals: Vec<IpAddr>,
    /// Keys the schedulers' hashes (mh) and random choices (twos). Shards of one director share it,
    /// so every worker maps a client to the same server; the connection tables' keys differ.
    sched_seed: u64,
    /// Entries removed by one expiry run, kept between runs so expiry does not allocate.
    scratch: Vec<ConnInfo>,
}

/// Applies `f` to the table of the right family.
macro_rules! with_table {
    ($self:ident, $v6:expr, $t:ident => $body:expr) => {
        if $v6 {
            let $t = &mut $self.v6;
            $body
        } else {
            let $t = &mut $self.v4;
            $body
        }
    };
}

impl Ipvs {
    /// A shard with room for `capacity` IPv4 and `capacity_v6` IPv6 connections (templates included).
    /// `seed` keys the connection tables' hashes (random per start in the daemon, so clients cannot
    /// choose ports that collide) and, until [`Ipvs::set_sched_seed`], the schedulers'.
    pub fn new(capacity: usize, capacity_v6: usize, seed: u64) -> Self {
        Self {
            services: Vec::new(),
            by_key: HashMap::new(),
            dests: Vec::new(),
            dest_refs: Vec::new(),
            free_services: Vec::new(),
            free_dests: Vec::new(),
            trash: HashMap::new(),
            v4: ConnTable::new(capacity, seed),
            v6: ConnTable::new(capacity_v6, seed.rotate_left(17)),
            timeouts: Timeouts::default(),
            // The defences act when an eighth of the table is left (rvsd sets it from its config).
            sysctl: Sysctl {
                amemthresh: u32::try_from(capacity / 8).unwrap_or(u32::MAX).max(1),
                ..Sysctl::default()
            },
            drops: DropCounters::default(),
            defense: DefenseCounters::default(),
            nat_reverse: HashMap::new(),
            stateless_at: None,
            drop_counter: 0,
            drop_cursor: [0; 2],
            sched_cursor: 0,
            defer_tables: false,
            locals: Vec::new(),
            sched_seed: seed,
            scratch: Vec::new(),
        }
    }

    /// A worker's shard: Maglev tables (mh) are built once, on the management core's copy, and
    /// shipped as [`crate::Op::SchedTable`], instead of 65,537 slots rebuilt by every worker on every
    /// change of an mh service's servers.
    pub fn defer_sched_tables(&mut self) {
        self.defer_tables = true;
        for s in self.services.iter_mut().flatten() {
            s.sched.defer_tables();
        }
    }

    /// The lookup table of the service's scheduler, if it has one to ship (mh).
    pub fn sched_table(&self, key: &ServiceKey) -> Option<std::sync::Arc<[u32]>> {
        let id = self.by_key.get(key)?;
        self.svc(*id)?.sched.table()
    }

    /// Installs a table built on another copy of the same configuration.
    pub fn install_sched_table(
        &mut self,
        key: &ServiceKey,
        table: std::sync::Arc<[u32]>,
    ) -> Result<(), Error> {
        let id = *self.by_key.get(key).ok_or(Error::NoService)?;
        if let Some(s) = self.svc_mut(id) {
            s.sched.install_table(table);
        }
        Ok(())
    }

    /// Keys the schedulers (see `sched_seed`); takes effect for services added from now on, so set
    /// it before the first.
    pub fn set_sched_seed(&mut self, seed: u64) {
        self.sched_seed = seed;
    }

    // ---- configuration ----------------------------------------------------------------------------

    pub fn add_service(&mut self, cfg: ServiceConfig) -> Result<ServiceId, Error> {
        cfg.validate()?;
        if self.by_key.contains_key(&cfg.key) {
            return Err(Error::ServiceExists);
        }
        let mut sched = Scheduler::new(cfg.scheduler, cfg.mh_table_size, self.sched_seed);
        if self.defer_tables {
            sched.defer_tables();
        }
        let entry = ServiceEntry {
            cfg: cfg.clone(),
            sched,
            dests: Vec::new(),
            stats: Stats::default(),
            removed: false,
            arena_refs: 0,
        };
        let id = match self.free_services.pop() {
            Some(i) => {
                if let Some(slot) = self.services.get_mut(i as usize) {
                    *slot = Some(entry);
                }
                ServiceId(i)
            }
            None => {
                self.services.push(Some(entry));
                ServiceId(self.services.len() as u32 - 1)
            }
        };
        self.by_key.insert(cfg.key, id);
        Ok(id)
    }

    pub fn edit_service(&mut self, cfg: ServiceConfig) -> Result<(), Error> {
        cfg.validate()?;
        let id = *self.by_key.get(&cfg.key).ok_or(Error::NoService)?;
        let (seed, defer) = (self.sched_seed, self.defer_tables);
        let svc = self.svc_mut(id).ok_or(Error::NoService)?;
        if svc.cfg.scheduler != cfg.scheduler || svc.cfg.mh_table_size != cfg.mh_table_size {
            svc.sched = Scheduler::new(cfg.scheduler, cfg.mh_table_size, seed);
            if defer {
                svc.sched.defer_tables();
            }
        }
        svc.cfg = cfg;
        self.resched(id);
        Ok(())
    }

    pub fn del_service(&mut self, key: &ServiceKey) -> Result<(), Error> {
        let id = self.by_key.remove(key).ok_or(Error::NoService)?;
        let dests = self.svc(id).map(|s| s.dests.clone()).unwrap_or_default();
        for d in dests {
            self.unlink_dest(id, d);
        }
        if let Some(s) = self.svc_mut(id) {
            s.removed = true;
        }
        self.gc_service(id);
        Ok(())
    }

    /// ipvsadm -C.
    pub fn clear(&mut self) {
        let keys: Vec<ServiceKey> = self.by_key.keys().copied().collect();
        for k in keys {
            let _ = self.del_service(&k);
        }
    }

    pub fn add_dest(&mut self, key: &ServiceKey, mut cfg: DestConfig) -> Result<DestId, Error> {
        let id = *self.by_key.get(key).ok_or(Error::NoService)?;
        if cfg.addr.is_ipv6() != key.is_v6() {
            return Err(Error::FamilyMismatch);
        }
        if cfg.weight > 65535 {
            return Err(Error::BadWeight);
        }
        self.localize(&mut cfg);
        if !matches!(cfg.fwd, Fwd::Masq) {
            // DR and TUN cannot map ports: the packet reaches the server unchanged (ipvsadm).
            cfg.port = key.port();
        }
        let svc = self.svc(id).ok_or(Error::NoService)?;
        if svc
            .dests
            .iter()
            .any(|&d| self.dest(d).is_some_and(|x| x.cfg.addr == cfg.addr && x.cfg.port == cfg.port))
        {
            return Err(Error::DestExists);
        }
        // A removed destination with the same address comes back from the trash, connections and all
        // (bound to this service, which may be a new one with the old one's key).
        let did = match self.trash.remove(&(*key, cfg.addr, cfg.port)) {
            Some(did) => {
                let mut previous = None;
                if let Some(d) = self.dest_mut(did) {
                    d.removed = false;
                    d.cfg = cfg;
                    if cfg.weight > 0 {
                        d.last_weight = cfg.weight;
                    }
                    if d.service != id {
                        previous = Some(std::mem::replace(&mut d.service, id));
                    }
                }
                if let Some(old) = previous {
                    if let Some(s) = self.svc_mut(id) {
                        s.arena_refs += 1;
                    }
                    if let Some(s) = self.svc_mut(old) {
                        s.arena_refs = s.arena_refs.saturating_sub(1);
                    }
                    self.gc_service(old);
                }
                did
            }
            None => {
                let d = Dest::new(cfg, id);
                if let Some(s) = self.svc_mut(id) {
                    s.arena_refs += 1;
                }
                match self.free_dests.pop() {
                    Some(i) => {
                        if let (Some(slot), Some(r)) =
                            (self.dests.get_mut(i as usize), self.dest_refs.get_mut(i as usize))
                        {
                            *slot = Some(d);
                            *r = 0;
                        }
                        DestId(i)
                    }
                    None => {
                        self.dests.push(Some(d));
                        self.dest_refs.push(0);
                        DestId(self.dests.len() as u32 - 1)
                    }
                }
            }
        };
        if let Some(s) = self.svc_mut(id) {
            s.dests.push(did);
        }
        self.nat_reverse_update(id, &cfg, true);
        self.resched(id);
        Ok(did)
    }

    pub fn edit_dest(&mut self, key: &ServiceKey, mut cfg: DestConfig) -> Result<(), Error> {
        let id = *self.by_key.get(key).ok_or(Error::NoService)?;
        if cfg.weight > 65535 {
            return Err(Error::BadWeight);
        }
        self.localize(&mut cfg);
        if !matches!(cfg.fwd, Fwd::Masq) {
            cfg.port = key.port();
        }
        let did = self.find_dest(id, cfg.addr, cfg.port).ok_or(Error::NoDest)?;
        if let Some(old) = self.dest(did).map(|d| d.cfg) {
            self.nat_reverse_update(id, &old, false);
            self.nat_reverse_update(id, &cfg, true);
        }
        if let Some(d) = self.dest_mut(did) {
            d.cfg = cfg;
            if cfg.weight > 0 {
                d.last_weight = cfg.weight;
            }
            // New thresholds take effect now, as __ip_vs_update_dest re-evaluates the flag.
            d.overloaded = false;
            d.check_overload_after_bind();
        }
        self.resched(id);
        Ok(())
    }

    pub fn del_dest(&mut self, key: &ServiceKey, addr: IpAddr, port: u16) -> Result<(), Error> {
        let id = *self.by_key.get(key).ok_or(Error::NoService)?;
        let port = if self.svc(id).is_some_and(|s| {
            s.dests
                .iter()
                .any(|&d| self.dest(d).is_some_and(|x| x.cfg.addr == addr && !matches!(x.cfg.fwd, Fwd::Masq)))
        }) {
            key.port()
        } else {
            port
        };
        let did = self.find_dest(id, addr, port).ok_or(Error::NoDest)?;
        self.unlink_dest(id, did);
        Ok(())
    }

    /// ipvsadm -Z: zero the counters of one service (and its servers) or of all.
    pub fn zero(&mut self, key: Option<&ServiceKey>) -> Result<(), Error> {
        let ids: Vec<ServiceId> = match key {
            Some(k) => vec![*self.by_key.get(k).ok_or(Error::NoService)?],
            None => self.by_key.values().copied().collect(),
        };
        for id in ids {
            let dests = self.svc(id).map(|s| s.dests.clone()).unwrap_or_default();
            if let Some(s) = self.svc_mut(id) {
                s.stats = Stats::default();
            }
            for d in dests {
                if let Some(d) = self.dest_mut(d) {
                    d.stats = Stats::default();
                }
            }
        }
        Ok(())
    }

    fn find_dest(&self, id: ServiceId, addr: IpAddr, port: u16) -> Option<DestId> {
        self.svc(id)?
            .dests
            .iter()
            .copied()
            .find(|&d| self.dest(d).is_some_and(|x| x.cfg.addr == addr && x.cfg.port == port))
    }

    fn unlink_dest(&mut self, id: ServiceId, did: DestId) {
        if let Some(s) = self.svc_mut(id) {
            s.dests.retain(|&d| d != did);
        }
        if let Some(cfg) = self.dest(did).map(|d| d.cfg) {
            self.nat_reverse_update(id, &cfg, false);
        }
        let skey = self.svc(id).map(|s| s.cfg.key);
        if let (Some(d), Some(skey)) = (self.dest_mut(did), skey) {
            d.removed = true;
            let key = (skey, d.cfg.addr, d.cfg.port);
            self.trash.insert(key, did);
        }
        self.resched(id);
        self.gc_dest(did);
    }

    /// Frees a removed destination nothing refers to any more.
    fn gc_dest(&mut self, did: DestId) {
        let i = did.0 as usize;
        let free = self.dests.get(i).and_then(Option::as_ref).is_some_and(|d| d.removed)
            && self.dest_refs.get(i).copied().unwrap_or(0) == 0;
        if free {
            let Some(d) = self.dests.get_mut(i).and_then(Option::take) else { return };
            if let Some(skey) = self.svc(d.service).map(|s| s.cfg.key) {
                let key = (skey, d.cfg.addr, d.cfg.port);
                if self.trash.get(&key) == Some(&did) {
                    self.trash.remove(&key);
                }
            }
            self.free_dests.push(did.0);
            if let Some(s) = self.svc_mut(d.service) {
                s.arena_refs = s.arena_refs.saturating_sub(1);
            }
            self.gc_service(d.service);
        }
    }

    fn gc_service(&mut self, id: ServiceId) {
        let i = id.0 as usize;
        let done =
            self.services.get(i).and_then(Option::as_ref).is_some_and(|s| s.removed && s.arena_refs == 0);
        if done {
            if let Some(slot) = self.services.get_mut(i) {
                *slot = None;
            }
            self.free_services.push(id.0);
        }
    }

    fn resched(&mut self, id: ServiceId) {
        let Some(Some(svc)) = self.services.get_mut(id.0 as usize) else { return };
        let ctx = SchedCtx {
            arena: &self.dests,
            ids: &svc.dests,
            src: IpAddr::from([0u8; 4]),
            sport: 0,
            dst: IpAddr::from([0u8; 4]),
            now: 0,
            flags: svc.cfg.flags,
        };
        svc.sched.update(&ctx);
    }

    /// Records (or, with `add` false, forgets) that NAT server `d` serves service `sid`, for
    /// translating SYN-ACKs without an entry.
    fn nat_reverse_update(&mut self, sid: ServiceId, d: &DestConfig, add: bool) {
        let Some(ServiceKey::Addr { protocol, addr, port }) = self.svc(sid).map(|s| s.cfg.key) else {
            return;
        };
        if !matches!(d.fwd, Fwd::Masq) {
            return;
        }
        let key = (protocol, d.addr, d.port);
        let virt = (addr, port);
        if add {
            self.nat_reverse.entry(key).or_default().push(virt);
        } else if let Some(v) = self.nat_reverse.get_mut(&key) {
            if let Some(i) = v.iter().position(|x| *x == virt) {
                v.swap_remove(i);
            }
            if v.is_empty() {
                self.nat_reverse.remove(&key);
            }
        }
    }

    /// The virtual (address, port) a NAT server's packet from (`raddr`, `rport`) answers for, when
    /// the configuration alone says so (the server belongs to one virtual service).
    fn nat_reverse_lookup(&self, protocol: u8, raddr: IpAddr, rport: u16) -> Option<(IpAddr, u16)> {
        let one = |v: &Vec<(IpAddr, u16)>| match v.as_slice() {
            [first, rest @ ..] if rest.iter().all(|x| x == first) => Some(*first),
            _ => None,
        };
        if let Some(v) = self.nat_reverse.get(&(protocol, raddr, rport)) {
            return one(v);
        }
        // A port-0 server answers from the port the client asked for: the virtual port.
        let (vaddr, vport) = one(self.nat_reverse.get(&(protocol, raddr, 0))?)?;
        Some((vaddr, if vport == 0 { rport } else { vport }))
    }

    /// (capacity, live entries) of one family's connection table.
    #[inline]
    fn table_fill(&self, v6: bool) -> (usize, usize) {
        if v6 { (self.v6.capacity(), self.v6.len()) } else { (self.v4.capacity(), self.v4.len()) }
    }

    /// The family's table is short of free entries: automatic defences act.
    /// (`amemthresh` is in entries of the IPv4 table; the IPv6 table, smaller, uses the same share.)
    #[inline]
    fn pressure(&self, v6: bool) -> bool {
        let (cap, len) = self.table_fill(v6);
        let free = cap.saturating_sub(len) as u128;
        free * (self.v4.capacity() as u128) < u128::from(self.sysctl.amemthresh) * cap as u128
    }

    /// drop_packet: one new connection in `rate` is refused, the rate rising as the table fills
    /// (ip_vs_todrop; in mode 3, one in am_droprate).
    fn todrop(&mut self, v6: bool) -> bool {
        let rate = if self.sysctl.drop_packet == crate::sysctl::Mode::ALWAYS {
            self.sysctl.am_droprate
        } else {
            let (cap, len) = self.table_fill(v6);
            let free = u32::try_from(cap.saturating_sub(len)).unwrap_or(u32::MAX);
            // In the family's own table's scale (see pressure).
            let scale = |x: usize| x as u128 * cap as u128 / (self.v4.capacity().max(1) as u128);
            let thresh = u32::try_from(scale(self.sysctl.amemthresh as usize)).unwrap_or(u32::MAX).max(1);
            thresh / thresh.saturating_sub(free).max(1)
        };
        self.drop_counter += 1;
        if self.drop_counter >= rate.max(1) {
            self.drop_counter = 0;
            true
        } else {
            false
        }
    }

    /// The server a stateless SYN goes to, and the one its first ACK binds: sh and mh decide by
    /// hash already; other schedulers are replaced by a hash of the client's address and port over
    /// the available servers by weight, so the SYN and the ACK agree without an entry.
    fn pick_stateless(&mut self, sid: ServiceId, p: &PacketMeta, now: Time) -> Option<DestId> {
        let svc = self.svc(sid)?;
        if matches!(svc.cfg.scheduler, crate::SchedulerKind::Sh | crate::SchedulerKind::Mh) {
            return self.pick(sid, p, now);
        }
        let avail =
            |d: &DestId| self.dest(*d).filter(|x| x.weight() > 0 && !x.removed).map(|x| (*d, x.weight()));
        let total: u64 = svc.dests.iter().filter_map(avail).map(|(_, w)| u64::from(w)).sum();
        if total == 0 {
            return None;
        }
        let h = stateless_hash(self.sched_seed, p.src, p.sport, p.dst, p.dport) % total;
        let mut acc = 0u64;
        for (d, w) in svc.dests.iter().filter_map(avail) {
            acc += u64::from(w);
            if h < acc {
                return Some(d);
            }
        }
        None
    }

    fn svc(&self, id: ServiceId) -> Option<&ServiceEntry> {
        self.services.get(id.0 as usize).and_then(Option::as_ref)
    }
    fn svc_mut(&mut self, id: ServiceId) -> Option<&mut ServiceEntry> {
        self.services.get_mut(id.0 as usize).and_then(Option::as_mut)
    }
    pub fn dest(&self, id: DestId) -> Option<&Dest> {
        self.dests.get(id.0 as usize).and_then(Option::as_ref)
    }
    fn dest_mut(&mut self, id: DestId) -> Option<&mut Dest> {
        self.dests.get_mut(id.0 as usize).and_then(Option::as_mut)
    }

    // ---- inspection (listings) ----------------------------------------------------------------------

    /// Services in insertion order of their slots, with their destinations in list order.
    pub fn services(
        &self,
    ) -> impl Iterator<Item = (ServiceId, &ServiceConfig, &Stats, Vec<(DestId, &Dest)>)> + '_ {
        self.services.iter().enumerate().filter_map(move |(i, s)| {
            let s = s.as_ref().filter(|s| !s.removed)?;
            let dests = s.dests.iter().filter_map(|&d| self.dest(d).map(|x| (d, x))).collect();
            Some((ServiceId(i as u32), &s.cfg, &s.stats, dests))
        })
    }

    /// The director's own addresses: a real server at one of them (or on loopback) is the director
    /// itself, forwarded "Local" whatever -m/-g/-i said, as the kernel makes such a destination
    /// LOCALNODE (its packets are delivered to the director's own stack unchanged).
    pub fn set_local_addrs(&mut self, addrs: Vec<IpAddr>) {
        self.locals = addrs;
    }

    fn localize(&self, cfg: &mut DestConfig) {
        if cfg.addr.is_loopback() || self.locals.contains(&cfg.addr) {
            cfg.fwd = Fwd::Local;
        }
    }

    /// Makes room for `services` more services and `dests` more servers at once, so that a large
    /// batch grows the arenas and maps once (one allocation) instead of at every doubling on the way.
    pub fn reserve(&mut self, services: usize, dests: usize) {
        self.services.reserve(services);
        self.by_key.reserve(services);
        self.dests.reserve(dests);
        self.dest_refs.reserve(dests);
        self.nat_reverse.reserve(dests);
    }

    /// Services configured.
    pub fn service_count(&self) -> usize {
        self.by_key.len()
    }

    /// Slots of the service arena (live, deleted or free), for walking it a share at a time.
    pub(crate) fn service_slots(&self) -> usize {
        self.services.len()
    }

    /// The service in arena slot `i`, as [`Ipvs::services`] lists it, if live.
    #[allow(clippy::type_complexity)]
    pub(crate) fn service_at(&self, i: usize) -> Option<(&ServiceConfig, &Stats, Vec<(DestId, &Dest)>)> {
        let s = self.services.get(i)?.as_ref().filter(|s| !s.removed)?;
        let dests = s.dests.iter().filter_map(|&d| self.dest(d).map(|x| (d, x))).collect();
        Some((&s.cfg, &s.stats, dests))
    }

    /// (IPv4 table slots, IPv4 + IPv6 table slots): the connection slots a report walks.
    pub(crate) fn conn_slots(&self) -> (usize, usize) {
        (self.v4.capacity(), self.v4.capacity() + self.v6.capacity())
    }

    /// The live entry in connection slot `i` (IPv4 slots first, then IPv6).
    pub(crate) fn conn_at(&self, i: usize, v4_slots: usize) -> Option<ConnInfo> {
        match i.checked_sub(v4_slots) {
            None => self.v4.get(u32::try_from(i).ok()?),
            Some(j) => self.v6.get(u32::try_from(j).ok()?),
        }
    }

    pub fn service_id(&self, key: &ServiceKey) -> Option<ServiceId> {
        self.by_key.get(key).copied()
    }

    /// Live connections and templates (mirrors are listed by the shard that owns the original).
    pub fn connections(&self) -> impl Iterator<Item = ConnInfo> + '_ {
        self.v4.iter().map(|(_, c)| c).chain(self.v6.iter().map(|(_, c)| c)).filter(|c| !c.is_mirror())
    }

    /// Keeps a copy of another shard's NAT connection `c` here, so that this shard translates the
    /// connection's replies: used where the NIC's hash is known to bring replies to another worker
    /// than the client's packets. The copy follows the replies' state transitions and expires on its
    /// own; it holds its destination (like a connection in IPVS's trash would) but is not counted in
    /// ActiveConn/InActConn, which the owner's shard counts. A copy of a connection already here is
    /// refreshed instead.
    pub fn insert_mirror(&mut self, c: &ConnInfo, now: Time) -> Result<(), DropReason> {
        if c.is_template() || self.dest(DestId(c.dest)).is_none() {
            return Err(DropReason::NoDestination);
        }
        let v6 = c.caddr.is_ipv6();
        let meta = PacketMeta {
            protocol: c.proto,
            src: c.raddr,
            sport: c.rport,
            dst: c.caddr,
            dport: c.cport,
            tcp_flags: 0,
            fwmark: None,
            len: 0,
        };
        let expires = c.expires.max(now + 1000);
        let existing =
            if v6 { self.lookup_out::<[u8; 16]>(&meta) } else { self.lookup_out::<[u8; 4]>(&meta) };
        if let Some(i) = existing {
            with_table!(self, v6, t => t.set_expiry(i, expires));
            return Ok(());
        }
        let flags = (c.flags & flag::NOOUTPUT) | flag::MIRROR | flag::INACTIVE;
        let inserted = if v6 {
            insert_mirror_entry(&mut self.v6, c, flags, expires)
        } else {
            insert_mirror_entry(&mut self.v4, c, flags, expires)
        };
        inserted.ok_or(DropReason::TableFull)?;
        if let Some(r) = self.dest_refs.get_mut(c.dest as usize) {
            *r += 1;
        }
        Ok(())
    }

    pub fn connection(&self, id: ConnId) -> Option<ConnInfo> {
        if id.v6 { self.v6.get(id.slot) } else { self.v4.get(id.slot) }
    }

    /// (live entries, capacity) of both tables together.
    pub fn occupancy(&self) -> (usize, usize) {
        (self.v4.len() + self.v6.len(), self.v4.capacity() + self.v6.capacity())
    }

    // ---- the packet path --------------------------------------------------------------------------

    fn find_service(&self, p: &PacketMeta) -> Option<ServiceId> {
        if let Some(mark) = p.fwmark {
            if let Some(&id) = self.by_key.get(&ServiceKey::Fwmark { mark, v6: p.dst.is_ipv6() }) {
                return Some(id);
            }
        }
        let exact = ServiceKey::Addr { protocol: p.protocol, addr: p.dst, port: p.dport };
        if let Some(&id) = self.by_key.get(&exact) {
            return Some(id);
        }
        self.by_key.get(&ServiceKey::Addr { protocol: p.protocol, addr: p.dst, port: 0 }).copied()
    }

    /// A client -> virtual service packet (ip_vs_in): its connection, or a new one.
    pub fn in_packet(&mut self, p: &PacketMeta, now: Time) -> InVerdict {
        self.in_packet_hinted(p, None, now)
    }

    /// [`Ipvs::in_packet`] with the connection a burst lookup ([`Ipvs::lookup_burst_v4`]) found for
    /// this IPv4 packet: it is checked to be still that packet's (an earlier packet of the burst may
    /// have ended it), else the packet is looked up again (a cheap probe over cached lines).
    pub fn in_packet_hinted(&mut self, p: &PacketMeta, hint: Option<u32>, now: Time) -> InVerdict {
        let v6 = p.src.is_ipv6();
        if self.skip_lookup(p, v6) {
            return self.schedule(p, now);
        }
        let hinted = hint.filter(|&i| !v6 && warm_tuple(p, false).is_some_and(|t| self.v4.still(i, &t)));
        let existing = match hinted {
            Some(i) => Some(i),
            None if v6 => self.lookup_in::<[u8; 16]>(p),
            None => self.lookup_in::<[u8; 4]>(p),
        };
        if let Some(i) = existing {
            // None: the connection was ended to make way for a new one, scheduled below.
            if let Some(v) = self.existing(v6, i, p, now) {
                return v;
            }
        }
        self.schedule(p, now)
    }

    /// Under a SYN flood (stateless_syn acting), a SYN skips the connection lookup: at millions of
    /// entries that lookup is a miss to memory costing more than the rest of the SYN's path, and a
    /// flood is nearly all misses. A retransmitted SYN of a connection made before the flood began is
    /// then scheduled by the hash like any other (it may reach another server, which answers it; the
    /// client's ACK then finds the old entry and the old server resets it: the client retries).
    #[inline]
    fn skip_lookup(&self, p: &PacketMeta, v6: bool) -> bool {
        p.protocol == proto::TCP
            && p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST) == tcp_flags::SYN
            && self.sysctl.stateless_syn != crate::sysctl::Mode::OFF
            && self.sysctl.stateless_syn.active(self.pressure(v6))
    }

    /// The connections of a burst of IPv4 packets, looked up together ([`ConnTable::lookup_burst`]);
    /// hand each result to [`Ipvs::in_packet_hinted`] / [`Ipvs::out_packet_hinted`].
    pub fn lookup_burst_v4(&self, burst: &[crate::conn::WarmTuple<[u8; 4]>], out: &mut [Option<u32>]) {
        self.v4.lookup_burst(burst, out);
    }

    /// Whether an IPv4 client packet with these TCP flags would skip its connection lookup now
    /// (stateless_syn acting on a SYN): the burst lookup then leaves it out too.
    pub fn skips_lookup_v4(&self, protocol: u8, flags: u8) -> bool {
        protocol == proto::TCP
            && flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST) == tcp_flags::SYN
            && self.sysctl.stateless_syn != crate::sysctl::Mode::OFF
            && self.sysctl.stateless_syn.active(self.pressure(false))
    }

    fn lookup_in<A: Addr>(&self, p: &PacketMeta) -> Option<u32>
    where
        Self: TableOf<A>,
    {
        self.table().lookup(&conn_key::<A>(p)?, false)
    }

    /// A packet of a known connection. `None` when the connection was ended to schedule anew.
    fn existing(&mut self, v6: bool, i: u32, p: &PacketMeta, now: Time) -> Option<InVerdict> {
        let c = self.connection(ConnId { v6, slot: i })?;
        let did = DestId(c.dest);
        let dest_removed = self.dest(did).is_none_or(|d| d.removed);
        if dest_removed {
            if self.sysctl.expire_nodest_conn {
                self.end_connection(v6, i);
                return None;
            }
            return Some(self.drop(DropReason::DestUnavailable));
        }
        if p.protocol == proto::TCP
            && self.sysctl.conn_reuse_mode != 0
            && p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST) == tcp_flags::SYN
            && self.new_conn_expected(&c)
        {
            self.end_connection(v6, i);
            return None;
        }
        self.transition(v6, i, &c, p, Direction::Input, now);
        let d = self.dest_mut(did)?;
        d.stats.in_pkts += 1;
        d.stats.in_bytes += u64::from(p.len);
        let (daddr, fwd, service) = (d.cfg.addr, d.cfg.fwd, d.service);
        if let Some(s) = self.svc_mut(service) {
            s.stats.in_pkts += 1;
            s.stats.in_bytes += u64::from(p.len);
        }
        Some(InVerdict::Forward {
            conn: Some(ConnId { v6, slot: i }),
            dest: did,
            daddr,
            dport: c.rport,
            fwd,
            new: false,
        })
    }

    /// is_new_conn_expected (conn_reuse_mode): a SYN may replace a connection that is closing.
    fn new_conn_expected(&self, c: &ConnInfo) -> bool {
        if c.control != NONE {
            return false;
        }
        let s = TcpState::from_u8(c.state);
        s == TcpState::TimeWait
            || s == TcpState::Close
            || (self.sysctl.conn_reuse_mode & 2 != 0
                && s == TcpState::FinWait
                && c.flags & flag::NOOUTPUT != 0)
    }

    /// A reply from a real server (ip_vs_out), for NAT connections.
    pub fn out_packet(&mut self, p: &PacketMeta, now: Time) -> OutVerdict {
        self.out_packet_hinted(p, None, now)
    }

    /// [`Ipvs::out_packet`] with a burst lookup's result, checked as [`Ipvs::in_packet_hinted`] does.
    pub fn out_packet_hinted(&mut self, p: &PacketMeta, hint: Option<u32>, now: Time) -> OutVerdict {
        let v6 = p.src.is_ipv6();
        let hinted = hint.filter(|&i| !v6 && warm_tuple(p, true).is_some_and(|t| self.v4.still(i, &t)));
        let found = match hinted {
            Some(i) => Some(i),
            None if v6 => self.lookup_out::<[u8; 16]>(p),
            None => self.lookup_out::<[u8; 4]>(p),
        };
        let Some(i) = found else { return self.stateless_reply(p) };
        let Some(c) = self.connection(ConnId { v6, slot: i }) else { return OutVerdict::NotOurs };
        self.transition(v6, i, &c, p, Direction::Output, now);
        if let Some(d) = self.dest_mut(DestId(c.dest)) {
            d.stats.out_pkts += 1;
            d.stats.out_bytes += u64::from(p.len);
            let service = d.service;
            if let Some(s) = self.svc_mut(service) {
                s.stats.out_pkts += 1;
                s.stats.out_bytes += u64::from(p.len);
            }
        }
        OutVerdict::Reply { conn: Some(ConnId { v6, slot: i }), vaddr: c.vaddr, vport: c.vport }
    }

    /// A NAT server's SYN-ACK with no entry: its SYN went through statelessly (stateless_syn), so
    /// it is translated from the configuration. Nothing else is (a reply without an entry is not
    /// ours).
    fn stateless_reply(&mut self, p: &PacketMeta) -> OutVerdict {
        let synack = p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST)
            == tcp_flags::SYN | tcp_flags::ACK;
        if p.protocol != proto::TCP || !synack || self.sysctl.stateless_syn == crate::sysctl::Mode::OFF {
            return OutVerdict::NotOurs;
        }
        match self.nat_reverse_lookup(p.protocol, p.src, p.sport) {
            Some((vaddr, vport)) => {
                self.defense.stateless_replies += 1;
                OutVerdict::Reply { conn: None, vaddr, vport }
            }
            None => OutVerdict::NotOurs,
        }
    }

    /// An ICMP error about a packet a client sent through a NAT connection (ip_vs_out_icmp): `p` is
    /// the quoted packet as the real server received it (client -> real). The virtual endpoint the
    /// client knows, to translate the error back.
    pub fn icmp_about_client_packet(&self, p: &PacketMeta) -> Option<(IpAddr, u16)> {
        let reply = PacketMeta { src: p.dst, sport: p.dport, dst: p.src, dport: p.sport, ..*p };
        let v6 = p.src.is_ipv6();
        let i = if v6 { self.lookup_out::<[u8; 16]>(&reply) } else { self.lookup_out::<[u8; 4]>(&reply) }?;
        let c = self.connection(ConnId { v6, slot: i })?;
        Some((c.vaddr, c.vport))
    }

    /// An ICMP error about a packet the director sent a client for a connection (ip_vs_in_icmp):
    /// `p` is the quoted packet (virtual -> client). The connection's server and how it is reached.
    pub fn icmp_about_reply(&self, p: &PacketMeta) -> Option<(IpAddr, u16, Fwd)> {
        let forward = PacketMeta { src: p.dst, sport: p.dport, dst: p.src, dport: p.sport, ..*p };
        let v6 = p.src.is_ipv6();
        let i = if v6 { self.lookup_in::<[u8; 16]>(&forward) } else { self.lookup_in::<[u8; 4]>(&forward) }?;
        let c = self.connection(ConnId { v6, slot: i })?;
        let d = self.dest(DestId(c.dest))?;
        Some((c.raddr, c.rport, d.cfg.fwd))
    }

    fn lookup_out<A: Addr>(&self, p: &PacketMeta) -> Option<u32>
    where
        Self: TableOf<A>,
    {
        self.table().lookup_reply(p.protocol, &A::from_ip(p.src)?, p.sport, &A::from_ip(p.dst)?, p.dport)
    }

    /// The TCP state machine step and the timer refresh for one packet (set_tcp_state).
    fn transition(&mut self, v6: bool, i: u32, c: &ConnInfo, p: &PacketMeta, dir: Direction, now: Time) {
        let mut flags = c.flags;
        let timeout = if c.proto == proto::TCP {
            // A reply clears NOOUTPUT; until then client packets use the INPUT-ONLY table.
            let dir = match dir {
                Direction::Output => {
                    flags &= !flag::NOOUTPUT;
                    Direction::Output
                }
                _ if flags & flag::NOOUTPUT != 0 => Direction::InputOnly,
                d => d,
            };
            let old = TcpState::from_u8(c.state);
            let new = state::next_state(dir, old, p.tcp_flags).unwrap_or(old);
            if new != old && flags & flag::MIRROR == 0 {
                let was_inactive = flags & flag::INACTIVE != 0;
                if let Some(d) = self.dest_mut(DestId(c.dest)) {
                    if !was_inactive && !new.is_active() {
                        d.active = d.active.saturating_sub(1);
                        d.inactive += 1;
                        flags |= flag::INACTIVE;
                    } else if was_inactive && new.is_active() {
                        d.active += 1;
                        d.inactive = d.inactive.saturating_sub(1);
                        flags &= !flag::INACTIVE;
                    }
                }
            }
            with_table!(self, v6, t => t.set_state(i, new as u8, flags));
            if new == TcpState::SynRecv {
                self.syn_recv_timeout(self.pressure(v6))
            } else {
                self.timeouts.tcp(new)
            }
        } else {
            if flags != c.flags {
                with_table!(self, v6, t => t.set_state(i, c.state, flags));
            }
            self.timeouts.udp
        };
        let at = now + u64::from(timeout) * 1000;
        with_table!(self, v6, t => t.set_expiry(i, at));
    }

    fn schedule(&mut self, p: &PacketMeta, now: Time) -> InVerdict {
        let Some(sid) = self.find_service(p) else { return InVerdict::NotOurs };
        let Some(svc) = self.svc(sid) else { return InVerdict::NotOurs };
        let (cfg, v6) = (svc.cfg.clone(), p.src.is_ipv6());
        let tcp = p.protocol == proto::TCP;
        let syn = p.tcp_flags & tcp_flags::SYN != 0 && p.tcp_flags & tcp_flags::RST == 0;
        let pressure = self.pressure(v6);
        // A firewall-mark service's virtual address is not in its configuration, so its NAT
        // SYN-ACKs could not be translated without an entry: stateless_syn is for address services.
        let stateless_ok = tcp
            && matches!(cfg.key, ServiceKey::Addr { .. })
            && self.sysctl.stateless_syn != crate::sysctl::Mode::OFF;
        let mut on_ack = false;
        if tcp && !syn && !self.sysctl.sloppy_tcp {
            // The client's first ACK of a connection whose SYN went through without an entry.
            let ack = p.tcp_flags & (tcp_flags::ACK | tcp_flags::FIN | tcp_flags::RST) == tcp_flags::ACK;
            let recent = self.stateless_at.is_some_and(|t| now.saturating_sub(t) <= STATELESS_GRACE_MS);
            if !(stateless_ok && ack && recent) {
                return self.drop(DropReason::NotSyn);
            }
            on_ack = true;
        }
        if self.sysctl.drop_packet.active(pressure) && self.todrop(v6) {
            return self.drop(DropReason::DropPacket);
        }
        let stateless = stateless_ok && syn && self.sysctl.stateless_syn.active(pressure);
        if stateless {
            self.stateless_at = Some(now);
        }
        let hashed = stateless || on_ack;
        let how = if stateless {
            Persist::FindOnly
        } else if hashed {
            Persist::Hash
        } else {
            Persist::Schedule
        };
        let mut template = match self.persist(sid, &cfg, p, now, how) {
            Ok(t) => t,
            Err(r) => return self.drop(r),
        };
        let picked = match template {
            Some((_, d)) => Some(d),
            None if hashed => self.pick_stateless(sid, p, now),
            None => self.pick(sid, p, now),
        };
        let Some(did) = picked else { return self.drop(DropReason::NoDestination) };
        let Some(dest) = self.dest(did) else { return self.drop(DropReason::NoDestination) };
        let (daddr, fwd) = (dest.cfg.addr, dest.cfg.fwd);
        let dport = if dest.cfg.port != 0 { dest.cfg.port } else { p.dport };

        if stateless {
            // NAT: the SYN-ACK must be translatable from the configuration alone.
            let reversible = !matches!(fwd, Fwd::Masq)
                || self.nat_reverse_lookup(p.protocol, daddr, dport) == Some((p.dst, p.dport));
            if reversible {
                self.defense.stateless_syns += 1;
                self.count_packet(sid, did, p);
                return InVerdict::Forward { conn: None, dest: did, daddr, dport, fwd, new: true };
            }
            // A server of several services: this connection keeps an entry from its SYN.
            if template.is_none() {
                template = match self.persist(sid, &cfg, p, now, Persist::Hash) {
                    Ok(t) => t,
                    Err(r) => return self.drop(r),
                };
            }
        }
        if cfg.one_packet && p.protocol == proto::UDP {
            // -o: no entry is kept; each datagram is scheduled on its own (a template, if any, stays).
            self.count_new(sid, did, p);
            return InVerdict::Forward { conn: None, dest: did, daddr, dport, fwd, new: true };
        }

        let mut flags = flag::INACTIVE;
        if !matches!(fwd, Fwd::Masq) {
            flags |= flag::NOOUTPUT;
        }
        let inserted = if v6 {
            insert_conn(&mut self.v6, p, daddr, dport, fwd, did, template.map(|t| t.0), flags, now)
        } else {
            insert_conn(&mut self.v4, p, daddr, dport, fwd, did, template.map(|t| t.0), flags, now)
        };
        let Some(i) = inserted else { return self.drop(DropReason::TableFull) };
        if let Some((t, _)) = template {
            with_table!(self, v6, tb => tb.adjust_control(t, 1));
        }
        // ip_vs_bind_dest: a new connection starts inactive.
        if let Some(d) = self.dest_mut(did) {
            d.inactive += 1;
            d.check_overload_after_bind();
        }
        if let Some(r) = self.dest_refs.get_mut(did.0 as usize) {
            *r += 1;
        }
        self.count_new(sid, did, p);
        if let Some(c) = self.connection(ConnId { v6, slot: i }) {
            self.transition(v6, i, &c, p, Direction::Input, now);
        }
        if on_ack {
            // Made by an ACK nobody vouches for (a spoofed one makes it too): half-open lifetime
            // until the client's next packet refreshes it.
            self.defense.made_on_ack += 1;
            let t = self.syn_recv_timeout(pressure);
            with_table!(self, v6, tb => tb.set_expiry(i, now + u64::from(t) * 1000));
        }
        InVerdict::Forward { conn: Some(ConnId { v6, slot: i }), dest: did, daddr, dport, fwd, new: true }
    }

    /// SYN_RECV's timeout: shortened while secure_tcp acts.
    fn syn_recv_timeout(&self, pressure: bool) -> u32 {
        if self.sysctl.secure_tcp.active(pressure) {
            crate::sysctl::SECURE_SYN_RECV_SECONDS
        } else {
            self.timeouts.tcp(TcpState::SynRecv)
        }
    }

    /// A packet of a connection without an entry (stateless_syn): counted, not as a connection.
    fn count_packet(&mut self, sid: ServiceId, did: DestId, p: &PacketMeta) {
        if let Some(d) = self.dest_mut(did) {
            d.stats.in_pkts += 1;
            d.stats.in_bytes += u64::from(p.len);
        }
        if let Some(s) = self.svc_mut(sid) {
            s.stats.in_pkts += 1;
            s.stats.in_bytes += u64::from(p.len);
        }
    }

    fn count_new(&mut self, sid: ServiceId, did: DestId, p: &PacketMeta) {
        if let Some(d) = self.dest_mut(did) {
            d.stats.conns += 1;
            d.stats.in_pkts += 1;
            d.stats.in_bytes += u64::from(p.len);
        }
        if let Some(s) = self.svc_mut(sid) {
            s.stats.conns += 1;
            s.stats.in_pkts += 1;
            s.stats.in_bytes += u64::from(p.len);
        }
    }

    fn drop(&mut self, r: DropReason) -> InVerdict {
        self.drops.count(r);
        InVerdict::Drop(r)
    }

    fn pick(&mut self, sid: ServiceId, p: &PacketMeta, now: Time) -> Option<DestId> {
        let Some(Some(svc)) = self.services.get_mut(sid.0 as usize) else { return None };
        let ctx = SchedCtx {
            arena: &self.dests,
            ids: &svc.dests,
            src: p.src,
            sport: p.sport,
            dst: p.dst,
            now,
            flags: svc.cfg.flags,
        };
        svc.sched.schedule(&ctx)
    }

    /// ip_vs_sched_persist: find or make the client's template; returns (template, destination).
    fn persist(
        &mut self,
        sid: ServiceId,
        cfg: &ServiceConfig,
        p: &PacketMeta,
        now: Time,
        how: Persist,
    ) -> Result<Option<(u32, DestId)>, DropReason> {
        let Some(Persistence { prefix_len: prefix, timeout_seconds: timeout_s }) = cfg.persistence else {
            return Ok(None);
        };
        let v6 = p.src.is_ipv6();
        let snet = mask_addr(p.src, prefix);
        let (tproto, tvaddr, tvport) = match cfg.key {
            ServiceKey::Fwmark { mark, v6 } => (proto::IP, fwmark_addr(mark, v6), 0),
            ServiceKey::Addr { port: 0, .. } => (p.protocol, p.dst, 0),
            ServiceKey::Addr { port, .. } => (p.protocol, p.dst, port),
        };
        let found = if v6 {
            template_lookup::<[u8; 16]>(&self.v6, tproto, snet, tvaddr, tvport)
        } else {
            template_lookup::<[u8; 4]>(&self.v4, tproto, snet, tvaddr, tvport)
        };
        let expires = now + u64::from(timeout_s) * 1000;
        if let Some(t) = found {
            if let Some(c) = self.connection(ConnId { v6, slot: t }) {
                let d = DestId(c.dest);
                let valid = self.dest(d).is_some_and(|x| {
                    !x.removed
                        && x.service == sid
                        && !(self.sysctl.expire_quiescent_template && x.weight() == 0)
                });
                if valid {
                    with_table!(self, v6, tb => tb.set_expiry(t, expires));
                    return Ok(Some((t, d)));
                }
                // ip_vs_check_template: the template is invalidated; connections it controls go on.
                with_table!(self, v6, tb => tb.invalidate(t));
            }
        }
        let did = match how {
            Persist::FindOnly => return Ok(None),
            Persist::Schedule => self.pick(sid, p, now),
            Persist::Hash => self.pick_stateless(sid, p, now),
        }
        .ok_or(DropReason::NoDestination)?;
        let daddr = self.dest(did).map(|d| d.cfg.addr).ok_or(DropReason::NoDestination)?;
        let k = ConnKeyAny { proto: tproto, caddr: snet, vaddr: tvaddr, vport: tvport };
        let t = if v6 {
            insert_template(&mut self.v6, &k, daddr, did, expires)
        } else {
            insert_template(&mut self.v4, &k, daddr, did, expires)
        }
        .ok_or(DropReason::TableFull)?;
        if let Some(d) = self.dest_mut(did) {
            d.persistent += 1;
        }
        if let Some(r) = self.dest_refs.get_mut(did.0 as usize) {
            *r += 1;
        }
        Ok(Some((t, did)))
    }

    /// Ends a connection now (ip_vs_conn_expire_now + the unbind of ip_vs_conn_expire).
    fn end_connection(&mut self, v6: bool, i: u32) {
        let removed = with_table!(self, v6, t => t.remove(i));
        if let Some(c) = removed {
            self.unbind(v6, &c);
        }
    }

    /// The bookkeeping of a connection or template that goes (ip_vs_unbind_dest and friends).
    fn unbind(&mut self, v6: bool, c: &ConnInfo) {
        let did = DestId(c.dest);
        if c.is_mirror() {
            if let Some(r) = self.dest_refs.get_mut(did.0 as usize) {
                *r = r.saturating_sub(1);
            }
            self.gc_dest(did);
            return;
        }
        if let Some(d) = self.dest_mut(did) {
            if c.is_template() {
                d.persistent = d.persistent.saturating_sub(1);
            } else if c.flags & flag::INACTIVE != 0 {
                d.inactive = d.inactive.saturating_sub(1);
            } else {
                d.active = d.active.saturating_sub(1);
            }
            d.check_overload_after_unbind();
        }
        if !c.is_template() && c.control != NONE {
            with_table!(self, v6, t => t.adjust_control(c.control, -1));
        }
        if let Some(r) = self.dest_refs.get_mut(did.0 as usize) {
            *r = r.saturating_sub(1);
        }
        self.gc_dest(did);
    }

    /// Expires connections and templates whose time has come, examining at most `budget` entries
    /// per table. Returns how many went. Allocation-free once `scratch` has grown to the budget.
    pub fn expire(&mut self, now: Time, budget: usize) -> usize {
        let mut n = 0;
        for v6 in [false, true] {
            if self.sysctl.drop_entry.active(self.pressure(v6)) {
                n += self.drop_half_open(v6);
            }
        }
        for v6 in [false, true] {
            let mut gone = std::mem::take(&mut self.scratch);
            gone.clear();
            let (dests, services) = (&self.dests, &self.services);
            let decide = |_: u32, c: &ConnInfo| {
                if c.is_template() && c.control > 0 && c.control != NONE {
                    // A template lives while it controls connections (ip_vs_conn_expire).
                    let timeout = dests
                        .get(c.dest as usize)
                        .and_then(Option::as_ref)
                        .and_then(|d| services.get(d.service.0 as usize)?.as_ref()?.cfg.persistence)
                        .map_or(360, |p| p.timeout_seconds);
                    return Expiry::Rearm(now + u64::from(timeout) * 1000);
                }
                gone.push(*c);
                Expiry::Remove
            };
            n += if v6 { self.v6.expire(now, budget, decide) } else { self.v4.expire(now, budget, decide) };
            for c in &gone {
                self.unbind(v6, c);
            }
            self.scratch = gone;
        }
        // Scheduler housekeeping (lblc/lblcr cache expiry, on a scale of minutes): a share of the
        // services per run, so thousands of services cost each run the same as a few.
        let slots = self.services.len();
        for _ in 0..slots.min(SCHED_TICKS_PER_RUN) {
            self.sched_cursor = if self.sched_cursor + 1 >= slots { 0 } else { self.sched_cursor + 1 };
            if let Some(Some(s)) = self.services.get_mut(self.sched_cursor) {
                s.sched.tick(now);
            }
        }
        n
    }
}

/// How [`Ipvs::persist`] gets a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persist {
    /// A valid existing one, or none (a stateless SYN makes nothing).
    FindOnly,
    /// Existing, or made for the server the scheduler picks.
    Schedule,
    /// Existing, or made for the server [`Ipvs::pick_stateless`] picks.
    Hash,
}

/// The hash stateless_syn schedules by: the connection's tuple under the shard's scheduler key (all
/// shards of a director share it, so a SYN and its ACK agree on any worker).
fn stateless_hash(seed: u64, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> u64 {
    let fold = |a: IpAddr| match a {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => {
            let x = u128::from(a);
            (x as u64) ^ ((x >> 64) as u64).rotate_left(29)
        }
    };
    let mut z = seed ^ fold(src).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ fold(dst).rotate_left(31);
    z ^= (u64::from(sport) << 16 | u64::from(dport)).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Ipvs {
    /// drop_entry (ip_vs_random_dropentry): examines the next 1/32000 of the table (called every
    /// millisecond: a thirty-second of it a second, as IPVS does) and drops TCP entries still
    /// half-open (SYN_RECV, SYNACK), which is what a SYN flood leaves. Returns how many went.
    fn drop_half_open(&mut self, v6: bool) -> usize {
        let cap = if v6 { self.v6.capacity() } else { self.v4.capacity() };
        let span = (cap / 32_000).max(16).min(cap);
        let cursor = self.drop_cursor.get(usize::from(v6)).copied().unwrap_or(0) as usize;
        let mut dropped = 0;
        for k in 0..span {
            let i = ((cursor + k) % cap.max(1)) as u32;
            let c = if v6 { self.v6.get(i) } else { self.v4.get(i) };
            let Some(c) = c else { continue };
            let half_open = matches!(TcpState::from_u8(c.state), TcpState::SynRecv | TcpState::SynAck);
            if c.proto == proto::TCP && half_open && !c.is_template() && !c.is_mirror() {
                self.end_connection(v6, i);
                dropped += 1;
            }
        }
        if let Some(x) = self.drop_cursor.get_mut(usize::from(v6)) {
            *x = ((cursor + span) % cap.max(1)) as u32;
        }
        self.defense.dropped_entries += dropped as u64;
        dropped
    }
}

/// A packet's forward tuple in one family's form (`None` for the other family).
/// An IPv4 packet's tuple as the burst lookup takes it.
fn warm_tuple(p: &PacketMeta, reply: bool) -> Option<crate::conn::WarmTuple<[u8; 4]>> {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (p.src, p.dst) else { return None };
    Some(crate::conn::WarmTuple {
        proto: p.protocol,
        src: src.octets(),
        sport: p.sport,
        dst: dst.octets(),
        dport: p.dport,
        reply,
    })
}

fn conn_key<A: Addr>(p: &PacketMeta) -> Option<ConnKey<A>> {
    Some(ConnKey {
        proto: p.protocol,
        caddr: A::from_ip(p.src)?,
        cport: p.sport,
        vaddr: A::from_ip(p.dst)?,
        vport: p.dport,
    })
}

/// A template key before it is bound to an address family.
struct ConnKeyAny {
    proto: u8,
    caddr: IpAddr,
    vaddr: IpAddr,
    vport: u16,
}

fn template_lookup<A: Addr>(
    t: &ConnTable<A>,
    proto_: u8,
    snet: IpAddr,
    vaddr: IpAddr,
    vport: u16,
) -> Option<u32> {
    let key = ConnKey { proto: proto_, caddr: A::from_ip(snet)?, cport: 0, vaddr: A::from_ip(vaddr)?, vport };
    t.lookup(&key, true)
}

fn insert_template<A: Addr>(
    t: &mut ConnTable<A>,
    k: &ConnKeyAny,
    raddr: IpAddr,
    dest: DestId,
    expires: Time,
) -> Option<u32> {
    let key = ConnKey {
        proto: k.proto,
        caddr: A::from_ip(k.caddr)?,
        cport: 0,
        vaddr: A::from_ip(k.vaddr)?,
        vport: k.vport,
    };
    t.insert(&NewEntry {
        key,
        raddr: A::from_ip(raddr)?,
        rport: 0,
        flags: flag::TEMPLATE,
        state: TcpState::None as u8,
        fwd: 0,
        dest: dest.0,
        control: 0,
        expires,
        reply: false,
    })
    .ok()
}

#[allow(clippy::too_many_arguments)]
fn insert_conn<A: Addr>(
    t: &mut ConnTable<A>,
    p: &PacketMeta,
    daddr: IpAddr,
    dport: u16,
    fwd: Fwd,
    dest: DestId,
    template: Option<u32>,
    flags: u8,
    now: Time,
) -> Option<u32> {
    let key = conn_key::<A>(p)?;
    t.insert(&NewEntry {
        key,
        raddr: A::from_ip(daddr)?,
        rport: dport,
        flags,
        state: TcpState::None as u8,
        fwd: fwd_code(fwd),
        dest: dest.0,
        control: template.unwrap_or(NONE),
        // A new entry's first timeout is replaced by its state's at once (ip_vs_conn_new uses 3 s).
        expires: now + 3000,
        reply: matches!(fwd, Fwd::Masq),
    })
    .ok()
}

fn insert_mirror_entry<A: Addr>(t: &mut ConnTable<A>, c: &ConnInfo, flags: u8, expires: Time) -> Option<u32> {
    let key = ConnKey {
        proto: c.proto,
        caddr: A::from_ip(c.caddr)?,
        cport: c.cport,
        vaddr: A::from_ip(c.vaddr)?,
        vport: c.vport,
    };
    t.insert(&NewEntry {
        key,
        raddr: A::from_ip(c.raddr)?,
        rport: c.rport,
        flags,
        state: c.state,
        fwd: c.fwd,
        dest: c.dest,
        control: NONE,
        expires,
        reply: true,
    })
    .ok()
}

/// The table of one family, for generic lookups.
trait TableOf<A> {
    fn table(&self) -> &ConnTable<A>;
}
impl TableOf<[u8; 4]> for Ipvs {
    fn table(&self) -> &ConnTable<[u8; 4]> {
        &self.v4
    }
}
impl TableOf<[u8; 16]> for Ipvs {
    fn table(&self) -> &ConnTable<[u8; 16]> {
        &self.v6
    }
}
