//! Services (virtual servers) and destinations (real servers), with the counters schedulers read.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ServiceError;
use crate::sched::SchedulerKind;

/// What identifies a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ServiceKey {
    /// TCP, UDP or SCTP on an address and port (port 0: all ports, persistent services only).
    Addr { protocol: u8, addr: IpAddr, port: u16 },
    /// A firewall mark set by rvs's classifier; `v6` chooses the address family (ipvsadm `-6`).
    Fwmark { mark: u32, v6: bool },
}

/// A new connection finds its service by key: an IPv4 key goes into the hasher as one word (the
/// derived hash wrote five pieces, the address's length among them: ~50 of a new connection's
/// cycles went into that lookup). Equal keys write equal words, as `Eq` needs.
impl Hash for ServiceKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        match *self {
            Self::Addr { protocol, addr: IpAddr::V4(a), port } => {
                h.write_u64((u64::from(a.to_bits()) << 32) | (u64::from(protocol) << 16) | u64::from(port));
            }
            Self::Addr { protocol, addr: IpAddr::V6(a), port } => {
                h.write_u128(a.to_bits());
                h.write_u32((u32::from(protocol) << 16) | u32::from(port));
            }
            Self::Fwmark { mark, v6 } => h.write_u64((1 << 63) | (u64::from(v6) << 62) | u64::from(mark)),
        }
    }
}

impl ServiceKey {
    pub fn is_v6(&self) -> bool {
        match self {
            Self::Addr { addr, .. } => addr.is_ipv6(),
            Self::Fwmark { v6, .. } => *v6,
        }
    }
    pub fn port(&self) -> u16 {
        match self {
            Self::Addr { port, .. } => *port,
            Self::Fwmark { .. } => 0,
        }
    }
}

/// How packets reach a real server (ipvsadm -m / -g / -i).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fwd {
    /// NAT: both directions through the director, port mapping allowed.
    Masq,
    /// Direct routing: MAC rewrite; replies bypass the director.
    Route,
    /// IP tunnelling; replies bypass the director.
    Tunnel(TunnelType),
    /// The director itself (ipvsadm shows "Local").
    Local,
}

/// The encapsulation of a TUN destination (ipvsadm 1.31's `--tun-type`, kernel 5.2/5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TunnelType {
    /// IP in IP (RFC 2003), the default.
    #[default]
    Ipip,
    /// Generic UDP Encapsulation (draft-ietf-intarea-gue, variant 0): UDP to `port`, then a 4-byte GUE
    /// header naming the inner protocol.
    Gue { port: u16, csum: TunCsum },
    /// GRE (RFC 2784) with the inner packet's EtherType.
    Gre { csum: TunCsum },
}

/// `--tun-nocsum` (default), `--tun-csum`, `--tun-remcsum`: the UDP (GUE) or GRE checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TunCsum {
    #[default]
    NoCsum,
    Csum,
    /// Remote checksum offload (GUE only): the kernel uses it only for packets whose inner checksum
    /// is left to be finished; rvs forwards finished packets, so these go as `NoCsum` would.
    RemCsum,
}

impl TunnelType {
    /// ipvsadm's name (`--tun-type`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Ipip => "ipip",
            Self::Gue { .. } => "gue",
            Self::Gre { .. } => "gre",
        }
    }

    pub fn csum(self) -> TunCsum {
        match self {
            Self::Ipip => TunCsum::NoCsum,
            Self::Gue { csum, .. } | Self::Gre { csum } => csum,
        }
    }
}

/// Scheduler flags (ipvsadm -b).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedFlags {
    /// sh-fallback / mh-fallback (flag-1): walk to another server when the hashed one is unavailable.
    pub fallback: bool,
    /// sh-port / mh-port (flag-2): hash the source port too.
    pub port: bool,
    /// flag-3, unused by the built-in schedulers but kept and listed.
    pub flag3: bool,
}

/// Persistence (ipvsadm -p / -M).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persistence {
    /// Template lifetime in seconds (ipvsadm -p with no value: 360).
    pub timeout_seconds: u32,
    /// Client granularity: a prefix length (IPv4 -M 255.255.255.0 is 24; IPv6 takes a length).
    pub prefix_len: u8,
}

/// A service as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    pub key: ServiceKey,
    pub scheduler: SchedulerKind,
    pub flags: SchedFlags,
    pub persistence: Option<Persistence>,
    /// One-packet scheduling (-o): every UDP datagram is scheduled on its own.
    pub one_packet: bool,
    /// Maglev lookup table size (a prime); 65537 by default.
    pub mh_table_size: u32,
}

impl ServiceConfig {
    pub fn new(key: ServiceKey, scheduler: SchedulerKind) -> Self {
        Self {
            key,
            scheduler,
            flags: SchedFlags::default(),
            persistence: None,
            one_packet: false,
            mh_table_size: 65537,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ServiceError> {
        if let ServiceKey::Addr { port: 0, .. } = self.key {
            if self.persistence.is_none() {
                return Err(ServiceError::ZeroPortNonPersistent);
            }
        }
        if let Some(p) = self.persistence {
            let max = if self.key.is_v6() { 128 } else { 32 };
            if p.prefix_len > max {
                return Err(ServiceError::BadNetmask);
            }
        }
        let hashing = matches!(self.scheduler, SchedulerKind::Sh | SchedulerKind::Mh);
        if (self.flags.fallback || self.flags.port) && !hashing {
            return Err(ServiceError::BadSchedFlags("fallback and port flags are for sh and mh"));
        }
        if self.scheduler == SchedulerKind::Mh && (self.mh_table_size < 11 || !is_prime(self.mh_table_size)) {
            return Err(ServiceError::BadTableSize);
        }
        Ok(())
    }
}

pub(crate) fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u32;
    while d.saturating_mul(d) <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

/// A real server as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DestConfig {
    pub addr: IpAddr,
    /// Ignored (forced to the virtual port) for DR and TUN, as ipvsadm does.
    pub port: u16,
    pub fwd: Fwd,
    /// 0..=65535; 0 quiesces (no new connections).
    pub weight: u32,
    /// Upper connection threshold (-x); 0 = none.
    pub u_threshold: u32,
    /// Lower connection threshold (-y); 0 = none.
    pub l_threshold: u32,
}

impl DestConfig {
    pub fn new(addr: IpAddr, port: u16, fwd: Fwd) -> Self {
        Self { addr, port, fwd, weight: 1, u_threshold: 0, l_threshold: 0 }
    }
}

/// Traffic counters (ipvsadm --stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub conns: u64,
    pub in_pkts: u64,
    pub out_pkts: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.conns += o.conns;
        self.in_pkts += o.in_pkts;
        self.out_pkts += o.out_pkts;
        self.in_bytes += o.in_bytes;
        self.out_bytes += o.out_bytes;
    }
}

/// Index of a destination in its shard's arena. Stable while any connection refers to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestId(pub u32);

/// Index of a service in its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(pub u32);

/// A real server with its live counters.
#[derive(Debug, Clone)]
pub struct Dest {
    pub cfg: DestConfig,
    pub service: ServiceId,
    /// Connections counted as active (TCP ESTABLISHED, SYN_SENT, SYN_RECV, SYNACK; see state.rs).
    pub active: u32,
    /// All other connections, UDP included.
    pub inactive: u32,
    /// Persistence templates pointing here.
    pub persistent: u32,
    /// Over its upper threshold (IP_VS_DEST_F_OVERLOAD).
    pub overloaded: bool,
    /// Removed from its service; kept while connections still refer to it (IPVS's "trash").
    pub removed: bool,
    /// The last non-zero weight (dest->last_weight): Maglev keeps a quiesced server's table slots.
    pub last_weight: u32,
    pub stats: Stats,
}

impl Dest {
    pub(crate) fn new(cfg: DestConfig, service: ServiceId) -> Self {
        Self {
            cfg,
            service,
            active: 0,
            inactive: 0,
            persistent: 0,
            overloaded: false,
            removed: false,
            last_weight: cfg.weight,
            stats: Stats::default(),
        }
    }

    pub fn weight(&self) -> u32 {
        self.cfg.weight
    }

    /// May take new connections: present, weight > 0, not overloaded.
    pub fn available(&self) -> bool {
        !self.removed && self.cfg.weight > 0 && !self.overloaded
    }

    /// The load lc/wlc compare: active × 256 + inactive (ip_vs_dest_conn_overhead).
    pub fn overhead(&self) -> u64 {
        (u64::from(self.active) << 8) + u64::from(self.inactive)
    }

    pub fn total_conns(&self) -> u32 {
        self.active + self.inactive
    }

    /// After a connection was bound (ip_vs_bind_dest): overloaded at or above the upper threshold.
    pub(crate) fn check_overload_after_bind(&mut self) {
        if self.cfg.u_threshold != 0 && self.total_conns() >= self.cfg.u_threshold {
            self.overloaded = true;
        }
    }

    /// After a connection was unbound (ip_vs_unbind_dest): the hysteresis of IPVS — below the lower
    /// threshold if one is set, else below 3/4 of the upper one.
    pub(crate) fn check_overload_after_unbind(&mut self) {
        let total = self.total_conns();
        if self.cfg.l_threshold != 0 {
            if total < self.cfg.l_threshold {
                self.overloaded = false;
            }
        } else if self.cfg.u_threshold != 0 {
            if u64::from(total) * 4 < u64::from(self.cfg.u_threshold) * 3 {
                self.overloaded = false;
            }
        } else {
            self.overloaded = false;
        }
    }
}

/// A client address masked to the persistence granularity.
pub fn mask_addr(addr: IpAddr, prefix_len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if prefix_len >= 32 { u32::MAX } else { !(u32::MAX >> prefix_len) };
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if prefix_len >= 128 { u128::MAX } else { !(u128::MAX >> prefix_len) };
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

/// The address form IPVS gives a firewall mark in templates (htonl(mark) as the virtual address).
pub(crate) fn fwmark_addr(mark: u32, v6: bool) -> IpAddr {
    if v6 { IpAddr::V6(Ipv6Addr::from(u128::from(mark))) } else { IpAddr::V4(Ipv4Addr::from(mark)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        let a: IpAddr = "198.51.100.77".parse().unwrap();
        assert_eq!(mask_addr(a, 24), "198.51.100.0".parse::<IpAddr>().unwrap());
        assert_eq!(mask_addr(a, 32), a);
        assert_eq!(mask_addr(a, 0), "0.0.0.0".parse::<IpAddr>().unwrap());
        let b: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(mask_addr(b, 48), "2001:db8:1::".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn overload_hysteresis_as_ipvs() {
        let mut d = Dest::new(
            DestConfig { u_threshold: 4, ..DestConfig::new("192.0.2.1".parse().unwrap(), 80, Fwd::Masq) },
            ServiceId(0),
        );
        d.inactive = 4;
        d.check_overload_after_bind();
        assert!(d.overloaded && !d.available());
        d.inactive = 3; // 3*4 = 12 is not < 4*3 = 12
        d.check_overload_after_unbind();
        assert!(d.overloaded);
        d.inactive = 2;
        d.check_overload_after_unbind();
        assert!(!d.overloaded);
        d.cfg.l_threshold = 2;
        d.inactive = 4;
        d.check_overload_after_bind();
        d.inactive = 2;
        d.check_overload_after_unbind();
        assert!(d.overloaded, "2 is not below the lower threshold 2");
        d.inactive = 1;
        d.check_overload_after_unbind();
        assert!(!d.overloaded);
    }

    #[test]
    fn primes() {
        assert!(is_prime(65537) && is_prime(251) && is_prime(11));
        assert!(!is_prime(65536) && !is_prime(1) && !is_prime(9));
    }
}
