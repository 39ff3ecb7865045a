//! One worker's IPVS: services and destinations with their counters, the connection tables, and the
//! per-packet decisions (ip_vs_in / ip_vs_out / ip_vs_schedule / ip_vs_sched_persist).
//!
//! Here: the types, the [`Ipvs`] state and its read-only views (listings, reports). The rest, each
//! an `impl Ipvs` of its own: [`config`] (services and servers changed), [`packet`] (the packet
//! path), [`defense`] (the flood defences), [`expiry`] (connections ending).

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
use crate::{ServiceError, Time, proto};

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

mod config;
mod defense;
mod expiry;
mod packet;

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
    /// Master sync daemon on: new and changed connections are noted for the sync stream.
    sync_master: bool,
    /// Connections to send to the backups, taken by [`Ipvs::drain_sync`] after each burst.
    sync_log: Vec<ConnId>,
    /// Notes lost because the log was full (the burst made more changes than it holds).
    pub sync_lost: u64,
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
            sync_master: false,
            sync_log: Vec::new(),
            sync_lost: 0,
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
    ) -> Result<(), ServiceError> {
        let id = *self.by_key.get(key).ok_or(ServiceError::NoService)?;
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
            Some((ServiceId(u32::try_from(i).ok()?), &s.cfg, &s.stats, dests))
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
        let c = match i.checked_sub(v4_slots) {
            None => self.v4.get(u32::try_from(i).ok()?),
            Some(j) => self.v6.get(u32::try_from(j).ok()?),
        };
        c.map(|c| self.with_server(c))
    }

    /// A connection's server address from its destination when the entry cannot hold it (a
    /// tunnel's server of the other family).
    fn with_server(&self, mut c: ConnInfo) -> ConnInfo {
        if let Some(d) = self.dest(DestId(c.dest)).filter(|d| d.cfg.addr.is_ipv6() != c.caddr.is_ipv6()) {
            c.raddr = d.cfg.addr;
        }
        c
    }

    pub fn service_id(&self, key: &ServiceKey) -> Option<ServiceId> {
        self.by_key.get(key).copied()
    }

    /// Live connections and templates (mirrors are listed by the shard that owns the original).
    pub fn connections(&self) -> impl Iterator<Item = ConnInfo> + '_ {
        self.v4
            .iter()
            .map(|(_, c)| c)
            .chain(self.v6.iter().map(|(_, c)| c))
            .filter(|c| !c.is_mirror())
            .map(|c| self.with_server(c))
    }

    /// An entry as the table keeps it (the packet path's view: a tunnel's server of the other
    /// family is its destination's).
    #[inline]
    pub(crate) fn entry(&self, id: ConnId) -> Option<ConnInfo> {
        if id.v6 { self.v6.get(id.slot) } else { self.v4.get(id.slot) }
    }

    /// The decision fields of an entry (see [`crate::conn::ConnTable::hot`]).
    #[inline]
    pub(crate) fn entry_hot(&self, id: ConnId) -> Option<crate::conn::Hot> {
        if id.v6 { self.v6.hot(id.slot) } else { self.v4.hot(id.slot) }
    }

    pub fn connection(&self, id: ConnId) -> Option<ConnInfo> {
        let c = if id.v6 { self.v6.get(id.slot) } else { self.v4.get(id.slot) };
        c.map(|c| self.with_server(c))
    }

    /// (live entries, capacity) of both tables together.
    pub fn occupancy(&self) -> (usize, usize) {
        (self.v4.len() + self.v6.len(), self.v4.capacity() + self.v6.capacity())
    }

    // ---- the packet path --------------------------------------------------------------------------
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
