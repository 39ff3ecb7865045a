//! ipvsadm's listings and rule files, byte for byte (ipvsadm 1.31's print_title, print_service_entry,
//! print_largenum, list_conn, list_timeout; the layouts in shared/reference/ipvsadm.md).
//!
//! Without `-n`, ipvsadm resolves ports through /etc/services and addresses through reverse DNS.
//! rvsadm names ports from the table below (the services operators meet on a load balancer) and
//! always prints addresses numerically: a control tool must not hang on DNS.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use rvs_ipvs::{
    DestConfig, Fwd, Ipvs, ServiceConfig, ServiceKey, ShardReport, Stats, TcpState, Time, TunCsum,
    TunnelType, proto,
};

use crate::grammar::{ListFormat, ListOptions};

/// Port names for non-numeric output (a subset of /etc/services, same names for TCP and UDP).
pub const SERVICES: &[(u16, &str)] = &[
    (20, "ftp-data"),
    (21, "ftp"),
    (22, "ssh"),
    (23, "telnet"),
    (25, "smtp"),
    (53, "domain"),
    (80, "http"),
    (110, "pop3"),
    (123, "ntp"),
    (143, "imap2"),
    (389, "ldap"),
    (443, "https"),
    (465, "submissions"),
    (587, "submission"),
    (636, "ldaps"),
    (993, "imaps"),
    (995, "pop3s"),
    (1812, "radius"),
    (3306, "mysql"),
    (5060, "sip"),
    (5432, "postgresql"),
    (6379, "redis"),
    (8080, "http-alt"),
    (11211, "memcache"),
];

/// ipvsadm's header shows IPVS's version; rvs speaks the same protocol version.
pub const IPVS_VERSION: &str = "1.2.1";

/// Rates from the estimator, per second (bytes per second for the BPS columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rates {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestView {
    pub cfg: DestConfig,
    pub active: u32,
    pub inactive: u32,
    pub persistent: u32,
    pub stats: Stats,
    pub rates: Rates,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    pub cfg: ServiceConfig,
    pub stats: Stats,
    pub rates: Rates,
    /// In insertion order.
    pub dests: Vec<DestView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnView {
    pub proto: u8,
    pub caddr: IpAddr,
    pub cport: u16,
    pub vaddr: IpAddr,
    pub vport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub state: &'static str,
    pub expires_seconds: u64,
}

/// Everything a listing shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// What the header calls the table size (ipvsadm: IPVS's connection hash table).
    pub table_size: usize,
    /// In insertion order.
    pub services: Vec<ServiceView>,
    pub timeouts: (u32, u32, u32),
    pub conns: Vec<ConnView>,
}

impl Snapshot {
    /// The state of one shard (rvsd sums its workers' shards into one snapshot).
    pub fn from_ipvs(v: &Ipvs, now: Time) -> Self {
        let services = v
            .services()
            .map(|(_, cfg, stats, dests)| ServiceView {
                cfg: cfg.clone(),
                stats: *stats,
                rates: Rates::default(),
                dests: dests
                    .into_iter()
                    .map(|(_, d)| DestView {
                        cfg: d.cfg,
                        active: d.active,
                        inactive: d.inactive,
                        persistent: d.persistent,
                        stats: d.stats,
                        rates: Rates::default(),
                    })
                    .collect(),
            })
            .collect();
        let conns = v.connections().map(|c| conn_view(&c, now)).collect();
        Self { table_size: v.occupancy().1, services, timeouts: v.timeouts.listed(), conns }
    }
}

impl Snapshot {
    /// The director's state: the configuration of `model` (the management core's copy) with the
    /// counters and connections of every worker's shard summed in. Services or servers a shard does
    /// not know yet (a change still on its way) count zero there.
    pub fn from_reports(model: &Ipvs, reports: &[ShardReport]) -> Self {
        let mut snap = Self::from_ipvs(model, 0);
        snap.conns.clear();
        snap.table_size = 0;
        // Indexes, so that summing stays linear with 10,000s of services and servers.
        let svc_at: HashMap<ServiceKey, usize> =
            snap.services.iter().enumerate().map(|(i, s)| (s.cfg.key, i)).collect();
        let dest_at: HashMap<(ServiceKey, IpAddr, u16), (usize, usize)> = snap
            .services
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                s.dests.iter().enumerate().map(move |(j, d)| ((s.cfg.key, d.cfg.addr, d.cfg.port), (i, j)))
            })
            .collect();
        for r in reports {
            snap.table_size += r.capacity;
            for sr in &r.services {
                let Some(sv) = svc_at.get(&sr.key).and_then(|&i| snap.services.get_mut(i)) else { continue };
                sv.stats.add(&sr.stats);
                for dr in &sr.dests {
                    let Some(&(i, j)) = dest_at.get(&(sr.key, dr.addr, dr.port)) else { continue };
                    if let Some(d) = snap.services.get_mut(i).and_then(|s| s.dests.get_mut(j)) {
                        d.active += dr.active;
                        d.inactive += dr.inactive;
                        d.persistent += dr.persistent;
                        d.stats.add(&dr.stats);
                    }
                }
            }
            snap.conns.extend(r.conns.iter().map(|c| conn_view(c, r.now)));
        }
        snap
    }
}

fn conn_view(c: &rvs_ipvs::ConnInfo, now: Time) -> ConnView {
    ConnView {
        proto: c.proto,
        caddr: c.caddr,
        cport: c.cport,
        vaddr: c.vaddr,
        vport: c.vport,
        daddr: c.raddr,
        dport: c.rport,
        state: if c.proto == proto::TCP || c.is_template() {
            TcpState::from_u8(c.state).name()
        } else {
            "UDP"
        },
        expires_seconds: c.expires.saturating_sub(now) / 1000,
    }
}

fn proto_name(p: u8) -> &'static str {
    match p {
        proto::TCP => "TCP",
        proto::UDP => "UDP",
        proto::SCTP => "SCTP",
        _ => "IP",
    }
}

fn port_name(port: u16, numeric: bool) -> String {
    if !numeric {
        if let Some((_, n)) = SERVICES.iter().find(|(p, _)| *p == port) {
            return (*n).to_owned();
        }
    }
    port.to_string()
}

/// `addr:port`, IPv6 as `[addr]:port` (addrport_to_anyname).
fn addrport(a: &IpAddr, port: u16, numeric: bool) -> String {
    match a {
        IpAddr::V4(v) => format!("{v}:{}", port_name(port, numeric)),
        IpAddr::V6(v) => format!("[{v}]:{}", port_name(port, numeric)),
    }
}

fn truncate(mut s: String, n: usize) -> String {
    s.truncate(n);
    s
}

fn fwd_name(f: Fwd) -> &'static str {
    match f {
        Fwd::Masq => "Masq",
        Fwd::Route => "Route",
        Fwd::Tunnel(_) => "Tunnel",
        Fwd::Local => "Local",
    }
}

/// ipvsadm's tunflags: the checksum flag as `-L --tun-info` shows it, and as `-S` writes it.
fn tun_csum_names(c: TunCsum) -> (&'static str, &'static str) {
    match c {
        TunCsum::NoCsum => ("-c", "--tun-nocsum"),
        TunCsum::Csum => ("+c", "--tun-csum"),
        TunCsum::RemCsum => ("r+c", "--tun-remcsum"),
    }
}

/// `-L --tun-info`'s TunnelInfo column: "ipip", "gue:PORT:FLAG", "gre:FLAG", or "n/a".
fn tun_info(f: Fwd) -> String {
    match f {
        Fwd::Tunnel(t @ TunnelType::Ipip) => t.name().to_owned(),
        Fwd::Tunnel(t @ TunnelType::Gue { port, csum }) => {
            format!("{}:{port}:{}", t.name(), tun_csum_names(csum).0)
        }
        Fwd::Tunnel(t @ TunnelType::Gre { csum }) => format!("{}:{}", t.name(), tun_csum_names(csum).0),
        _ => "n/a".to_owned(),
    }
}

/// What `-S` adds after `-w` for a tunnel server (ipvsadm 1.31 on a kernel that reports it).
fn tun_rule(f: Fwd) -> String {
    match f {
        Fwd::Tunnel(t @ TunnelType::Ipip) => format!(" --tun-type {}", t.name()),
        Fwd::Tunnel(t @ TunnelType::Gue { port, csum }) => {
            format!(" --tun-type {} --tun-port {port} {}", t.name(), tun_csum_names(csum).1)
        }
        Fwd::Tunnel(t @ TunnelType::Gre { csum }) => {
            format!(" --tun-type {} {}", t.name(), tun_csum_names(csum).1)
        }
        _ => String::new(),
    }
}

fn fwd_switch(f: Fwd) -> &'static str {
    match f {
        Fwd::Masq => "-m",
        Fwd::Tunnel(_) => "-i",
        Fwd::Route | Fwd::Local => "-g",
    }
}

/// print_largenum: 9 columns; from 1e8 up, scaled with K/M/G/T; --exact prints the whole number.
fn largenum(out: &mut String, i: u64, exact: bool) {
    let _ = if exact {
        let len = i.to_string().len();
        write!(out, "{:>w$}", i, w = if len <= 8 { 9 } else { len + 1 })
    } else if i < 100_000_000 {
        write!(out, "{i:>9}")
    } else if i < 1_000_000_000 {
        write!(out, "{:>8}K", i / 1000)
    } else if i < 100_000_000_000 {
        write!(out, "{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        write!(out, "{:>8}G", i / 1_000_000_000)
    } else {
        write!(out, "{:>8}T", i / 1_000_000_000_000)
    };
}

fn title(out: &mut String, format: ListFormat) {
    let _ = match format {
        ListFormat::Stats => writeln!(
            out,
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        ),
        ListFormat::Rate => writeln!(
            out,
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        ),
        ListFormat::Thresholds => writeln!(
            out,
            "{:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        ),
        ListFormat::PersistentConn => writeln!(
            out,
            "{:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port",
            "Prot LocalAddress:Port", "Weight", "PersistConn", "ActiveConn", "InActConn"
        ),
        ListFormat::TunInfo => writeln!(
            out,
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn"
        ),
        _ => writeln!(
            out,
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"
        ),
    };
}

/// The service's name in listings ("TCP  192.0.2.1:80", "FWM  1") or rules ("-t 192.0.2.1:80").
fn service_name(key: &ServiceKey, numeric: bool, rule: bool) -> String {
    match *key {
        ServiceKey::Fwmark { mark, v6 } => match (rule, v6) {
            (true, false) => format!("-f {mark}"),
            (true, true) => format!("-f {mark} -6"),
            (false, false) => format!("FWM  {mark}"),
            (false, true) => format!("FWM  {mark} IPv6"),
        },
        ServiceKey::Addr { protocol, addr, port } => {
            let name = addrport(&addr, port, numeric);
            if rule {
                let opt = match protocol {
                    proto::UDP => "-u",
                    proto::SCTP => "--sctp-service",
                    _ => "-t",
                };
                format!("{opt} {name}")
            } else {
                let s = format!("{:<4} {name}", proto_name(protocol));
                if addr.is_ipv6() { s } else { truncate(s, 33) }
            }
        }
    }
}

fn sched_flag_names(cfg: &ServiceConfig) -> Vec<&'static str> {
    let (fb, port) = match cfg.scheduler {
        rvs_ipvs::SchedulerKind::Sh => ("sh-fallback", "sh-port"),
        rvs_ipvs::SchedulerKind::Mh => ("mh-fallback", "mh-port"),
        _ => ("flag-1", "flag-2"),
    };
    let mut v = Vec::new();
    if cfg.flags.fallback {
        v.push(fb);
    }
    if cfg.flags.port {
        v.push(port);
    }
    if cfg.flags.flag3 {
        v.push("flag-3");
    }
    v
}

/// The netmask as ipvsadm shows it: IPv4 dotted (omitted at /32), IPv6 a length (omitted at 128).
fn mask_text(cfg: &ServiceConfig, prefix: u8) -> Option<String> {
    if cfg.key.is_v6() {
        (prefix != 128).then(|| prefix.to_string())
    } else if prefix >= 32 {
        None
    } else {
        let m = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
        Some(std::net::Ipv4Addr::from(m).to_string())
    }
}

fn sorted_services(s: &Snapshot, nosort: bool) -> Vec<&ServiceView> {
    let mut v: Vec<&ServiceView> = s.services.iter().collect();
    if !nosort {
        v.sort_by_key(|sv| match sv.cfg.key {
            ServiceKey::Addr { protocol, addr, port } => (0u8, addr.is_ipv6(), protocol, addr, port, 0u32),
            ServiceKey::Fwmark { mark, v6 } => (1u8, v6, 0, IpAddr::from([0u8; 4]), 0, mark),
        });
    }
    v
}

fn sorted_dests(s: &ServiceView, nosort: bool) -> Vec<&DestView> {
    let mut v: Vec<&DestView> = s.dests.iter().collect();
    if !nosort {
        v.sort_by_key(|d| (d.cfg.addr, d.cfg.port));
    }
    v
}

fn service_entry(out: &mut String, sv: &ServiceView, o: &ListOptions) {
    let name = service_name(&sv.cfg.key, o.numeric, false);
    match o.format {
        ListFormat::Stats => {
            let _ = write!(out, "{name:<33}");
            for n in
                [sv.stats.conns, sv.stats.in_pkts, sv.stats.out_pkts, sv.stats.in_bytes, sv.stats.out_bytes]
            {
                largenum(out, n, o.exact);
            }
        }
        ListFormat::Rate => {
            let _ = write!(out, "{name:<33}");
            for n in [sv.rates.cps, sv.rates.inpps, sv.rates.outpps, sv.rates.inbps, sv.rates.outbps] {
                largenum(out, n, o.exact);
            }
        }
        _ => {
            let _ = write!(out, "{name} {}", sv.cfg.scheduler.name());
            let flags = sched_flag_names(&sv.cfg);
            if !flags.is_empty() {
                let _ = write!(out, " ({})", flags.join(","));
            }
            if let Some(p) = sv.cfg.persistence {
                let _ = write!(out, " persistent {}", p.timeout_seconds);
                if let Some(m) = mask_text(&sv.cfg, p.prefix_len) {
                    let _ = write!(out, " mask {m}");
                }
            }
            if sv.cfg.one_packet {
                out.push_str(" ops");
            }
        }
    }
    out.push('\n');
    for d in sorted_dests(sv, o.nosort) {
        let mut dname = addrport(&d.cfg.addr, d.cfg.port, o.numeric);
        if !d.cfg.addr.is_ipv6() {
            dname = truncate(dname, 28);
        }
        let _ = match o.format {
            ListFormat::Stats => {
                let _ = write!(out, "  -> {dname:<28}");
                for n in
                    [d.stats.conns, d.stats.in_pkts, d.stats.out_pkts, d.stats.in_bytes, d.stats.out_bytes]
                {
                    largenum(out, n, o.exact);
                }
                writeln!(out)
            }
            ListFormat::Rate => {
                let _ = write!(
                    out,
                    "  -> {dname:<28} {:>8} {:>8} {:>8}",
                    d.rates.cps, d.rates.inpps, d.rates.outpps
                );
                largenum(out, d.rates.inbps, o.exact);
                largenum(out, d.rates.outbps, o.exact);
                writeln!(out)
            }
            ListFormat::Thresholds => writeln!(
                out,
                "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                d.cfg.u_threshold, d.cfg.l_threshold, d.active, d.inactive
            ),
            ListFormat::PersistentConn => writeln!(
                out,
                "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}",
                d.cfg.weight, d.persistent, d.active, d.inactive
            ),
            ListFormat::TunInfo => writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                fwd_name(d.cfg.fwd),
                tun_info(d.cfg.fwd),
                d.cfg.weight,
                d.active,
                d.inactive
            ),
            _ => writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                fwd_name(d.cfg.fwd),
                d.cfg.weight,
                d.active,
                d.inactive
            ),
        };
    }
}

/// `-L` in all its forms. `None` when the requested service does not exist.
pub fn list(s: &Snapshot, o: &ListOptions) -> Option<String> {
    let mut out = String::new();
    match o.format {
        ListFormat::Timeout => {
            let (t, f, u) = s.timeouts;
            let _ = writeln!(out, "Timeout (tcp tcpfin udp): {t} {f} {u}");
        }
        ListFormat::Connections => {
            out.push_str("IPVS connection entries\n");
            // list_conn's "pro expire %-11s %-18s %-18s %s" over the column names.
            out.push_str("pro expire state       source             virtual            destination\n");
            for c in &s.conns {
                let exp = format!("{:02}:{:02}", c.expires_seconds / 60, c.expires_seconds % 60);
                let _ = writeln!(
                    out,
                    "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
                    proto_name(c.proto),
                    exp,
                    c.state,
                    addrport(&c.caddr, c.cport, o.numeric),
                    addrport(&c.vaddr, c.vport, o.numeric),
                    addrport(&c.daddr, c.dport, o.numeric)
                );
            }
        }
        _ => match &o.service {
            Some(key) => {
                let sv = s.services.iter().find(|sv| sv.cfg.key == *key)?;
                title(&mut out, o.format);
                service_entry(&mut out, sv, o);
            }
            None => {
                let _ = writeln!(out, "IP Virtual Server version {IPVS_VERSION} (size={})", s.table_size);
                title(&mut out, o.format);
                for sv in sorted_services(s, o.nosort) {
                    service_entry(&mut out, sv, o);
                }
            }
        },
    }
    Some(out)
}

/// `-S` / `-Sn`: the rule file `-R` reads (thresholds are not saved, as in ipvsadm).
pub fn save(s: &Snapshot, numeric: bool) -> String {
    let mut out = String::new();
    for sv in sorted_services(s, false) {
        let name = service_name(&sv.cfg.key, numeric, true);
        let _ = write!(out, "-A {name} -s {}", sv.cfg.scheduler.name());
        let flags = sched_flag_names(&sv.cfg);
        if !flags.is_empty() {
            let _ = write!(out, " -b {}", flags.join(","));
        }
        if let Some(p) = sv.cfg.persistence {
            let _ = write!(out, " -p {}", p.timeout_seconds);
            if let Some(m) = mask_text(&sv.cfg, p.prefix_len) {
                let _ = write!(out, " -M {m}");
            }
        }
        if sv.cfg.one_packet {
            out.push_str(" -o");
        }
        out.push('\n');
        for d in sorted_dests(sv, false) {
            let _ = writeln!(
                out,
                "-a {name} -r {} {} -w {}{}",
                addrport(&d.cfg.addr, d.cfg.port, numeric),
                fwd_switch(d.cfg.fwd),
                d.cfg.weight,
                tun_rule(d.cfg.fwd)
            );
        }
    }
    out
}
