//! rvsd's configuration: TOML in, a validated [`Config`] out. The file format ([`RawConfig`]) rejects
//! unknown keys and carries units in its names; validation then checks what the types cannot (lcores,
//! names, references between sections) and names the offending key in every error.

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use rvs_dataplane::ForwardMode;
use rvs_dataplane::net::{ClassifierRule, ClassifierRule6, Route, Route6};
use rvs_dpdk::{EalConfig, MempoolConfig, PortConfig};
use serde::Deserialize;

/// A configuration problem, always naming the key and the reason.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{0}")]
    Syntax(#[source] toml::de::Error),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), reason: reason.into() }
}

// ---- the file format -------------------------------------------------------------------------------

/// The configuration file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// DPDK environment: cores and memory.
    pub eal: RawEal,
    /// The packet-buffer pool.
    #[serde(default)]
    pub mempool: RawMempool,
    /// The ports the data plane owns.
    #[serde(rename = "port", default)]
    pub ports: Vec<RawPort>,
    /// What the workers do with packets.
    pub forwarding: RawForwarding,
    /// Static routes of the director (connected subnets come from the ports' addresses).
    #[serde(rename = "route", default)]
    pub routes: Vec<RawRoute>,
    /// Firewall-mark classifier rules: what iptables' mangle table does for classic LVS FWM services.
    #[serde(rename = "classifier", default)]
    pub classifier: Vec<RawClassifier>,
    /// The management core.
    #[serde(default)]
    pub management: RawManagement,
    /// The control socket rvsadm talks to, and the rules loaded at start.
    #[serde(default)]
    pub control: RawControl,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: RawMetrics,
    /// IPVS's run-time knobs by their /proc/sys/net/ipv4/vs names (`expire_nodest_conn = 1`,
    /// `drop_entry = 1`, ...), with the kernel's defaults; rvs_ipvs::Sysctl says what each does.
    /// Unknown names are errors. Changeable at run time with `rvsadm --sysctl NAME=VALUE`.
    #[serde(default)]
    pub ipvs: std::collections::BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Address:port of the HTTP endpoint serving /metrics; loopback by default. "" disables it.
    #[serde(default = "default_metrics")]
    pub listen_address: String,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self { listen_address: default_metrics() }
    }
}

fn default_metrics() -> String {
    "127.0.0.1:9510".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    /// Unix socket for rvsadm (mode 0660).
    #[serde(default = "default_socket")]
    pub socket_path: String,
    /// Group that may use the socket besides root; omitted = root only.
    pub socket_group: Option<String>,
    /// Rules in ipvsadm -S format applied at start (like /etc/sysconfig/ipvsadm); all or nothing.
    pub rules_file: Option<String>,
    /// keepalived's configuration as the rules source instead: its virtual_server blocks become the
    /// services, their checkers run as health checks (sections rvs does not act on are skipped).
    pub keepalived_conf: Option<String>,
    /// Connection-table size reported in listings, per worker (the data plane's table capacity).
    #[serde(default = "default_connections")]
    pub connections_per_worker: u32,
}

impl Default for RawControl {
    fn default() -> Self {
        Self {
            socket_path: default_socket(),
            socket_group: None,
            rules_file: None,
            keepalived_conf: None,
            connections_per_worker: default_connections(),
        }
    }
}

fn default_socket() -> String {
    "/run/rvs/rvsd.sock".into()
}
fn default_connections() -> u32 {
    1 << 20
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEal {
    /// The lcore of the management thread.
    #[serde(default)]
    pub main_lcore: u32,
    /// Lcores that run poll-mode workers (one RX and one TX queue on every port each).
    pub worker_lcores: Vec<u32>,
    /// Memory reserved at start, in MiB; omitted = grow on demand.
    pub memory_mib: Option<u32>,
    /// Use hugepages (production); false runs on ordinary memory at about half the packet rate.
    #[serde(default = "yes")]
    pub hugepages: bool,
    /// Prefix for DPDK's runtime files; must be unique per DPDK process on the machine.
    #[serde(default = "default_prefix")]
    pub file_prefix: String,
    /// Extra EAL arguments, passed verbatim (e.g. ["--log-level", "pmd.net.af_packet:debug"]).
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// The CPU of each lcore, main first then workers; omitted = lcore n on CPU n. For machines with
    /// fewer CPUs than lcores (tests): lcores sharing a CPU take turns.
    pub lcore_cpus: Option<Vec<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMempool {
    /// Number of packet buffers (2^n - 1 is the most compact).
    #[serde(default = "default_mbufs")]
    pub mbufs: u32,
    /// Per-lcore cache of buffers.
    #[serde(default = "default_cache")]
    pub cache_size: u32,
    /// Buffer data room including headroom, in bytes.
    #[serde(default = "default_data_room")]
    pub data_room_bytes: u16,
}

impl Default for RawMempool {
    fn default() -> Self {
        Self { mbufs: default_mbufs(), cache_size: default_cache(), data_room_bytes: default_data_room() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPort {
    /// Our name for the port, used by other sections and in statistics.
    pub name: String,
    /// A PCI address (`0000:03:00.0`) or a DPDK virtual device with its arguments
    /// (`net_af_packet0,iface=veth0,qpairs=1`).
    pub device: String,
    /// RX descriptors per queue.
    #[serde(default = "default_descriptors")]
    pub rx_descriptors: u16,
    /// TX descriptors per queue.
    #[serde(default = "default_descriptors")]
    pub tx_descriptors: u16,
    /// Receive frames for every destination MAC.
    #[serde(default = "yes")]
    pub promiscuous: bool,
    /// Port MTU in bytes; omitted = the device's default.
    pub mtu_bytes: Option<u16>,
    /// RSS Toeplitz key as hex (80 digits for the usual 40 bytes), used when the port has several
    /// queues; omitted = the device's default key.
    pub rss_key_hex: Option<String>,
    /// The director's IPv4 address and prefix on this port (`192.0.2.2/24`); needed in director mode.
    pub address: Option<String>,
    /// Director mode: its IPv6 address and prefix (`2001:db8:f::2/64`), for IPv6 services, neighbour
    /// discovery and IPv6 routes.
    pub address6: Option<String>,
    /// Director mode: the port's kernel twin, a kernel interface of this name (DPDK's TAP PMD, which
    /// works wherever /dev/net/tun does; virtio-user would be faster but needs vhost-net) with the
    /// port's MAC, MTU and address. What the director does not handle itself and is addressed to it
    /// (TCP and UDP no service claims: ssh, BGP, health-check replies; ICMP other than echo
    /// requests; multicast such as VRRP; ARP replies) goes up to it, and what the kernel sends on it
    /// leaves by this port.
    pub kernel_twin: Option<String>,
    /// Director mode: 802.1Q sub-ports (`[[port.vlan]]`), each an interface of its own with its
    /// address and, if given, kernel twin. Frames arrive tagged and leave tagged; a port with VLANs
    /// needs no untagged `address` (untagged frames are then dropped as `vlan_unknown`).
    #[serde(default)]
    pub vlan: Vec<RawVlan>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVlan {
    /// The VLAN id, 1 to 4094.
    pub id: u16,
    /// The director's IPv4 address and prefix on this VLAN (`198.51.100.2/24`).
    pub address: String,
    /// Its IPv6 address and prefix, as a port's `address6`.
    pub address6: Option<String>,
    /// The VLAN's kernel twin: a kernel interface of this name, as a port's `kernel_twin`.
    pub kernel_twin: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwarding {
    /// `director` (the load balancer: IPVS with NAT, DR and TUN), or one of the L2 baselines it is
    /// measured against: `io` (frames untouched) or `macswap` (source and destination MAC swapped).
    pub mode: RawMode,
    /// L2 modes only: the two ports cross-connected (what arrives on one leaves on the other).
    #[serde(default)]
    pub ports: Vec<String>,
    /// Director mode: lower the TTL of forwarded packets as a router (and Linux IPVS) does; false
    /// leaves it, making DR a pure MAC rewrite.
    #[serde(default = "yes")]
    pub decrement_ttl: bool,
    /// Director mode with several workers: how a NAT connection's replies, which the NIC may deliver
    /// to another worker than its client's packets, reach the connection. `handoff` (default, any
    /// NIC): each worker owns a share of the clients and passes it the packets other workers receive.
    /// `toeplitz`: for NICs that hash with Toeplitz (ixgbe, i40e, ice, mlx5): rvs sets the
    /// redirection table, computes where each connection's replies will arrive and places a copy of
    /// the connection there once; packets stay where they arrive (but for persistent services').
    #[serde(default)]
    pub nat_reply_steering: ReplySteering,
    /// Director mode: ICMP errors (time exceeded, fragmentation needed) each worker may send per
    /// second, and the burst it may save up (Linux's icmp_msgs_per_sec / icmp_msgs_burst). 0 = no limit.
    #[serde(default = "default_icmp_per_sec")]
    pub icmp_msgs_per_sec: u32,
    #[serde(default = "default_icmp_burst")]
    pub icmp_msgs_burst: u32,
    /// Director mode: echo replies each worker may send per second (bursts of icmp_msgs_burst);
    /// 0 = no limit (Linux does not limit echo replies by default; a director under a ping flood
    /// had better).
    #[serde(default = "default_icmp_per_sec")]
    pub icmp_echo_replies_per_sec: u32,
    /// Director mode: frames each worker may pass up to the ports' kernel twins per second, and the
    /// burst it may save up; the rest are dropped (`kernel_budget`). 0 = no limit.
    #[serde(default = "default_kernel_per_sec")]
    pub kernel_packets_per_second: u32,
    #[serde(default = "default_kernel_burst")]
    pub kernel_packets_burst: u32,
    /// Director mode: lower the MSS of TCP SYNs sent to TUN real servers to what fits the port's MTU
    /// with the IPIP header (1440 at 1500), so that clients never depend on path MTU discovery.
    #[serde(default)]
    pub tun_clamp_mss: bool,
    /// Director mode: which VIPs the director answers for (ARP, gratuitous ARP). `always` (default):
    /// every service's VIP. `kernel_twin`: only those on one of its kernel twins right now, as VRRP
    /// (keepalived's virtual_ipaddress on the twin) places them: a BACKUP director stays silent.
    /// `routed`: a router sends the VIPs to the director (ECMP behind BGP); none is answered in ARP,
    /// and each VIP with a server able to take connections is kept on the kernel twins as a /32 for
    /// a routing daemon there (BIRD's `protocol direct`) to announce, and removed when none is.
    #[serde(default)]
    pub vip_ownership: VipOwnership,
    /// Director mode, `vip_ownership = "routed"`: on SIGTERM, how long rvs goes on forwarding after
    /// taking its VIPs off the twins, so that the routing daemon's withdrawals reach the router and
    /// the flows move to the other directors before this one stops.
    #[serde(default = "default_withdraw_drain_ms")]
    pub withdraw_drain_milliseconds: u32,
    /// Director mode: the key of the sh and mh schedulers' hashes (and of the stateless SYN
    /// defence's). Directors that share traffic (behind one ECMP router, or a pair) must share it, so
    /// that a flow the router moves keeps its real server; the default is the same everywhere, as
    /// the kernel's fixed mh keys. Set a site-wide secret to keep outsiders from predicting which
    /// client goes where.
    #[serde(default = "default_scheduler_hash_key")]
    pub scheduler_hash_key: u64,
}

fn default_withdraw_drain_ms() -> u32 {
    2000
}

/// Any fixed value would do, as long as every director has it (a TOML integer: at most 2^63 - 1).
fn default_scheduler_hash_key() -> u64 {
    0x2545_f491_4f6c_dd1d
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum VipOwnership {
    #[default]
    Always,
    KernelTwin,
    Routed,
}

fn default_kernel_per_sec() -> u32 {
    20_000
}

fn default_kernel_burst() -> u32 {
    512
}

fn default_icmp_per_sec() -> u32 {
    1000
}

fn default_icmp_burst() -> u32 {
    50
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReplySteering {
    #[default]
    Handoff,
    Toeplitz,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RawMode {
    Director,
    Io,
    Macswap,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Destination prefix, `198.51.100.0/24`; `0.0.0.0/0` is the default route (IPv6: `::/0`,
    /// `2001:db8:100::/48`).
    pub destination: String,
    /// Next hop, on one of the ports' subnets (of the destination's family).
    pub gateway: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClassifier {
    /// Destination address or prefix (`192.0.2.90` or `192.0.2.0/24`; IPv6 too: `2001:db8:f::90`
    /// marks packets for `-6` firewall-mark services).
    pub destination: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Destination ports; empty = all.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// The firewall mark given (the service is `-f MARK`), 1 or more.
    pub mark: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManagement {
    /// How often to log port and worker statistics, in seconds; 0 = only at exit.
    #[serde(default = "default_stats_interval")]
    pub stats_interval_seconds: u32,
}

impl Default for RawManagement {
    fn default() -> Self {
        Self { stats_interval_seconds: default_stats_interval() }
    }
}

fn yes() -> bool {
    true
}
fn default_prefix() -> String {
    "rvs".into()
}
fn default_mbufs() -> u32 {
    16383
}
fn default_cache() -> u32 {
    256
}
fn default_data_room() -> u16 {
    2176
}
fn default_descriptors() -> u16 {
    1024
}
fn default_stats_interval() -> u32 {
    10
}

// ---- the validated form ----------------------------------------------------------------------------

/// A port, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub name: String,
    /// Director mode: address and prefix length.
    pub address: Option<(Ipv4Addr, u8)>,
    pub address6: Option<(Ipv6Addr, u8)>,
    /// What DPDK calls the device once probed (vdev name or full PCI address).
    pub dpdk_name: String,
    pub device: Device,
    pub config: PortConfig,
    /// Its kernel twin, if any.
    pub twin: Option<TwinSpec>,
    /// Its 802.1Q sub-ports.
    pub vlans: Vec<VlanSpec>,
}

impl PortSpec {
    /// The port's kernel twins: its own, then its VLANs'.
    pub fn twins(&self) -> impl Iterator<Item = &TwinSpec> {
        self.twin.iter().chain(self.vlans.iter().filter_map(|v| v.twin.as_ref()))
    }
}

/// An 802.1Q sub-port, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanSpec {
    pub id: u16,
    pub address: (Ipv4Addr, u8),
    pub address6: Option<(Ipv6Addr, u8)>,
    pub twin: Option<TwinSpec>,
}

/// One of the director's interfaces: a port's untagged side (index = the port's), or a VLAN of a
/// port (after all the ports, in configuration order). The data plane's interface indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfaceSpec<'a> {
    /// The port's name, or `port.vlan` (`front.100`).
    pub name: String,
    /// Index into `Config::ports`.
    pub port: usize,
    pub vlan: Option<u16>,
    pub address: Option<(Ipv4Addr, u8)>,
    pub address6: Option<(Ipv6Addr, u8)>,
    pub twin: Option<&'a TwinSpec>,
    pub mtu_bytes: Option<u16>,
}

/// A port's kernel twin: a TAP interface, one queue pair per worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinSpec {
    /// The kernel interface's name.
    pub iface: String,
    /// The TAP vdev's name (`net_tap_twin<port>`).
    pub dpdk_name: String,
    pub config: PortConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    Pci(String),
    Vdev(String),
}

/// What the workers run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forwarding {
    /// An L2 cross-connect between two ports (indexes into `ports`): the baselines.
    L2 { mode: ForwardMode, ports: (usize, usize) },
    /// The director.
    Director(DirectorSpec),
}

/// The director's network, validated (MACs and MTUs are read from the ports at start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectorSpec {
    pub routes: Vec<Route>,
    pub routes6: Vec<Route6>,
    pub classifier: Vec<ClassifierRule>,
    pub classifier6: Vec<ClassifierRule6>,
    pub decrement_ttl: bool,
    pub reply_steering: ReplySteering,
    /// (per second, burst) of ICMP errors, and per second of echo replies, per worker.
    pub icmp_errors: (u32, u32),
    pub icmp_echo_per_sec: u32,
    /// (per second, burst) of frames to the kernel twins, per worker.
    pub kernel_packets: (u32, u32),
    pub vip_ownership: VipOwnership,
    /// How long forwarding goes on after the VIPs are withdrawn at stop (`routed`).
    pub withdraw_drain: std::time::Duration,
    /// The sh/mh schedulers' hash key, shared by the directors of one site.
    pub scheduler_hash_key: u64,
    pub tun_clamp_mss: bool,
}

fn parse_hex(h: &str) -> Option<Vec<u8>> {
    let h = h.trim();
    if h.is_empty() || h.len() % 2 != 0 {
        return None;
    }
    (0..h.len()).step_by(2).map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok()).collect()
}

/// `a.b.c.d/len` (or a bare address as /32 when `host_ok`).
fn parse_prefix(s: &str, host_ok: bool) -> Result<(Ipv4Addr, u8), String> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, l.parse::<u8>().map_err(|_| format!("{s:?}: bad prefix length"))?),
        None if host_ok => (s, 32),
        None => return Err(format!("{s:?} needs a prefix length (192.0.2.2/24)")),
    };
    let a: Ipv4Addr = a.parse().map_err(|_| format!("{s:?} is not an IPv4 address"))?;
    if len > 32 {
        return Err(format!("{s:?}: prefix length over 32"));
    }
    Ok((a, len))
}

/// `2001:db8::2/64`.
fn parse_prefix6(s: &str) -> Result<(Ipv6Addr, u8), String> {
    let (a, len) =
        s.split_once('/').ok_or_else(|| format!("{s:?} needs a prefix length (2001:db8::2/64)"))?;
    let len = len.parse::<u8>().map_err(|_| format!("{s:?}: bad prefix length"))?;
    let a: Ipv6Addr = a.parse().map_err(|_| format!("{s:?} is not an IPv6 address"))?;
    if len > 128 {
        return Err(format!("{s:?}: prefix length over 128"));
    }
    Ok((a, len))
}

/// An interface's `address6`: a global or unique-local address with a prefix of 1..=127.
fn check_address6(key: &str, a: &Option<String>) -> Result<Option<(Ipv6Addr, u8)>, ConfigError> {
    let Some(a) = a else { return Ok(None) };
    let (addr, len) = parse_prefix6(a).map_err(|r| invalid(key, r))?;
    if len == 0 || len == 128 || addr.is_multicast() || addr.is_unspecified() || addr.is_loopback() {
        return Err(invalid(key, format!("{a:?}: a unicast address with a prefix length of 1..=127")));
    }
    Ok(Some((addr, len)))
}

/// The validated configuration the daemon runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub eal: EalConfig,
    pub mempool: MempoolConfig,
    pub ports: Vec<PortSpec>,
    pub forwarding: Forwarding,
    pub stats_interval_seconds: u32,
    pub socket_path: std::path::PathBuf,
    pub socket_group: Option<String>,
    pub rules_file: Option<std::path::PathBuf>,
    /// keepalived.conf whose virtual servers are the services, kept by health checks.
    pub keepalived_conf: Option<std::path::PathBuf>,
    /// The connection-table size listings report (all workers).
    pub table_size: usize,
    /// Connection-table capacity of each worker's shard.
    pub connections_per_worker: usize,
    /// Where /metrics is served; `None` = disabled.
    pub metrics_address: Option<String>,
    /// The IPVS knobs at start.
    pub sysctl: rvs_ipvs::Sysctl,
}

/// 64 M connections per worker: 6 GiB of IPv4 table per worker, far beyond any NIC queue's share.
pub const MAX_CONNECTIONS_PER_WORKER: u32 = 1 << 26;

/// Bytes one worker's connection tables take for `conns` connections: 64-byte IPv4 entries with two
/// indexes of 8-byte slots (a power of two >= 1.25 per entry), and the IPv6 table of 1/16 the size
/// (128-byte entries), as rvs_ipvs::ConnTable allocates them.
fn table_bytes(conns: usize) -> u64 {
    let one = |n: usize, entry: u64| {
        let slots = (n + n / 4).next_power_of_two().max(16) as u64;
        n as u64 * entry + 2 * slots * 8
    };
    one(conns, 64) + one((conns / 16).max(1024), 128)
}

/// MemTotal from /proc/meminfo, if readable.
fn memory_total_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 =
        info.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl Config {
    /// The director's interfaces, in the data plane's order: each port's untagged side (index = the
    /// port's), then every port's VLANs.
    pub fn interfaces(&self) -> Vec<IfaceSpec<'_>> {
        let untagged = self.ports.iter().enumerate().map(|(i, p)| IfaceSpec {
            name: p.name.clone(),
            port: i,
            vlan: None,
            address: p.address,
            address6: p.address6,
            twin: p.twin.as_ref(),
            mtu_bytes: p.config.mtu_bytes,
        });
        let vlans = self.ports.iter().enumerate().flat_map(|(i, p)| {
            p.vlans.iter().map(move |v| IfaceSpec {
                name: format!("{}.{}", p.name, v.id),
                port: i,
                vlan: Some(v.id),
                address: Some(v.address),
                address6: v.address6,
                twin: v.twin.as_ref(),
                mtu_bytes: p.config.mtu_bytes,
            })
        });
        untagged.chain(vlans).collect()
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { path: path.display().to_string(), reason: e.to_string() })?;
        Self::from_toml(&text)
    }

    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(ConfigError::Syntax)?;
        Self::validate(raw)
    }

    pub fn validate(raw: RawConfig) -> Result<Self, ConfigError> {
        let workers = &raw.eal.worker_lcores;
        let nworkers = check_eal(&raw.eal)?;
        let mut ports: Vec<PortSpec> = Vec::new();
        let mut names = HashSet::new();
        for (i, p) in raw.ports.iter().enumerate() {
            let spec = check_port(i, p, nworkers, &ports, &mut names)?;
            ports.push(spec);
        }
        let f = &raw.forwarding;
        let forwarding = if f.mode == RawMode::Director {
            validate_director(&raw, &ports)?
        } else {
            check_l2(&raw, &ports)?
        };
        check_control(&raw)?;
        check_mempool(&raw.mempool, &ports, nworkers, &forwarding)?;
        let sysctl = check_table(&raw)?;
        let (vdevs, pci_allow) = check_devices(&ports, &forwarding)?;
        let m = &raw.mempool;
        Ok(Self {
            eal: EalConfig {
                main_lcore: raw.eal.main_lcore,
                worker_lcores: workers.clone(),
                memory_mib: raw.eal.memory_mib,
                no_huge: !raw.eal.hugepages,
                in_memory: false,
                file_prefix: Some(raw.eal.file_prefix.clone()),
                vdevs,
                pci_allow,
                extra_args: raw.eal.extra_args.clone(),
                lcore_cpus: raw.eal.lcore_cpus.clone(),
            },
            mempool: MempoolConfig {
                name: "rvs_pkt".into(),
                mbufs: m.mbufs,
                cache_size: m.cache_size,
                data_room_bytes: m.data_room_bytes,
                socket: None,
            },
            ports,
            forwarding,
            stats_interval_seconds: raw.management.stats_interval_seconds,
            socket_path: raw.control.socket_path.clone().into(),
            socket_group: raw.control.socket_group.clone(),
            rules_file: raw.control.rules_file.clone().map(Into::into),
            keepalived_conf: raw.control.keepalived_conf.clone().map(Into::into),
            table_size: raw.control.connections_per_worker as usize * workers.len(),
            connections_per_worker: raw.control.connections_per_worker as usize,
            metrics_address: Some(raw.metrics.listen_address.clone()).filter(|a| !a.is_empty()),
            sysctl,
        })
    }
}

/// `[eal]`: worker lcores of their own, a usable file prefix, one CPU per lcore if CPUs are named.
/// The number of workers (each gets a queue pair on every port).
fn check_eal(eal: &RawEal) -> Result<u16, ConfigError> {
    let workers = &eal.worker_lcores;
    if workers.is_empty() {
        return Err(invalid("eal.worker_lcores", "at least one worker lcore is needed"));
    }
    let mut seen = HashSet::new();
    for &w in workers {
        if w == eal.main_lcore {
            return Err(invalid(
                "eal.worker_lcores",
                format!("lcore {w} is the main lcore; workers need lcores of their own"),
            ));
        }
        if !seen.insert(w) {
            return Err(invalid("eal.worker_lcores", format!("lcore {w} is listed twice")));
        }
    }
    if eal.file_prefix.is_empty() || eal.file_prefix.contains('/') {
        return Err(invalid("eal.file_prefix", "must be a non-empty name without '/'"));
    }
    let nworkers =
        u16::try_from(workers.len()).map_err(|_| invalid("eal.worker_lcores", "too many workers"))?;
    if let Some(cpus) = &eal.lcore_cpus {
        if cpus.len() != workers.len() + 1 {
            return Err(invalid(
                "eal.lcore_cpus",
                format!(
                    "names {} CPUs for {} lcores (the main lcore, then each worker)",
                    cpus.len(),
                    workers.len() + 1
                ),
            ));
        }
    }
    Ok(nworkers)
}

/// `[[port]]` number `i`: its name, device, rings, MTU, RSS key, address and kernel twin.
fn check_port(
    i: usize,
    p: &RawPort,
    nworkers: u16,
    ports: &[PortSpec],
    names: &mut HashSet<String>,
) -> Result<PortSpec, ConfigError> {
    let key = |k: &str| format!("port[{i}].{k}");
    if p.name.is_empty() || !p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(invalid(key("name"), format!("{:?} must be letters, digits, '_' or '-'", p.name)));
    }
    if !names.insert(p.name.clone()) {
        return Err(invalid(key("name"), format!("{:?} is used by another port", p.name)));
    }
    let (device, dpdk_name) = parse_device(&p.device).map_err(|r| invalid(key("device"), r))?;
    if ports.iter().any(|q: &PortSpec| q.dpdk_name == dpdk_name) {
        return Err(invalid(key("device"), format!("device {dpdk_name:?} is used by another port")));
    }
    for (k, v) in [("rx_descriptors", p.rx_descriptors), ("tx_descriptors", p.tx_descriptors)] {
        if !(64..=16384).contains(&v) {
            return Err(invalid(key(k), format!("{v} is outside 64..=16384")));
        }
    }
    if let Some(mtu) = p.mtu_bytes {
        if !(68..=9600).contains(&mtu) {
            return Err(invalid(key("mtu_bytes"), format!("{mtu} is outside 68..=9600")));
        }
    }
    let rss_key = match &p.rss_key_hex {
        Some(h) => Some(parse_hex(h).ok_or_else(|| {
            invalid(key("rss_key_hex"), format!("{h:?} is not an even number of hex digits"))
        })?),
        None => None,
    };
    let address = match &p.address {
        Some(a) => {
            let (addr, len) = parse_prefix(a, false).map_err(|r| invalid(key("address"), r))?;
            if len == 0 || len > 30 {
                return Err(invalid(key("address"), format!("{a:?}: prefix length must be 1..=30")));
            }
            Some((addr, len))
        }
        None => None,
    };
    let address6 = check_address6(&key("address6"), &p.address6)?;
    let twin = match &p.kernel_twin {
        None => None,
        Some(iface) => {
            if address.is_none() {
                return Err(invalid(key("kernel_twin"), "the twin carries the port's address: set address"));
            }
            Some(twin_spec(&key("kernel_twin"), iface, format!("net_tap_twin{i}"), nworkers, p.mtu_bytes)?)
        }
    };
    let mut vlans: Vec<VlanSpec> = Vec::new();
    for (j, v) in p.vlan.iter().enumerate() {
        let key = |k: &str| format!("port[{i}].vlan[{j}].{k}");
        if !(1..=4094).contains(&v.id) {
            return Err(invalid(key("id"), format!("{} is outside 1..=4094", v.id)));
        }
        if vlans.iter().any(|w| w.id == v.id) {
            return Err(invalid(key("id"), format!("VLAN {} is listed twice on this port", v.id)));
        }
        let (addr, len) = parse_prefix(&v.address, false).map_err(|r| invalid(key("address"), r))?;
        if len == 0 || len > 30 {
            return Err(invalid(key("address"), format!("{:?}: prefix length must be 1..=30", v.address)));
        }
        let twin = match &v.kernel_twin {
            None => None,
            Some(iface) => Some(twin_spec(
                &key("kernel_twin"),
                iface,
                format!("net_tap_twin{i}_{}", v.id),
                nworkers,
                p.mtu_bytes,
            )?),
        };
        let address6 = check_address6(&key("address6"), &v.address6)?;
        vlans.push(VlanSpec { id: v.id, address: (addr, len), address6, twin });
    }
    Ok(PortSpec {
        name: p.name.clone(),
        address,
        address6,
        dpdk_name,
        device,
        twin,
        vlans,
        config: PortConfig {
            rx_queues: nworkers,
            tx_queues: nworkers,
            rx_descriptors: p.rx_descriptors,
            tx_descriptors: p.tx_descriptors,
            promiscuous: p.promiscuous,
            mtu_bytes: p.mtu_bytes,
            rss_key,
        },
    })
}

/// A kernel twin named `iface` (checked as a Linux interface name), the TAP vdev `dpdk_name`.
fn twin_spec(
    key: &str,
    iface: &str,
    dpdk_name: String,
    nworkers: u16,
    mtu_bytes: Option<u16>,
) -> Result<TwinSpec, ConfigError> {
    let ok = (1..=15).contains(&iface.len())
        && iface.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(invalid(
            key,
            format!("{iface:?}: an interface name is 1 to 15 letters, digits, '_', '.' or '-'"),
        ));
    }
    Ok(TwinSpec {
        iface: iface.to_owned(),
        dpdk_name,
        config: PortConfig {
            rx_queues: nworkers,
            tx_queues: nworkers,
            rx_descriptors: 512,
            tx_descriptors: 512,
            promiscuous: false,
            mtu_bytes,
            rss_key: None,
        },
    })
}

/// The L2 modes (`io`, `macswap`): exactly two ports, cross-connected; no routes or classifier.
fn check_l2(raw: &RawConfig, ports: &[PortSpec]) -> Result<Forwarding, ConfigError> {
    let f = &raw.forwarding;
    if !raw.routes.is_empty() || !raw.classifier.is_empty() {
        return Err(invalid("forwarding.mode", "[[route]] and [[classifier]] need mode = \"director\""));
    }
    let [a, b] = f.ports.as_slice() else {
        return Err(invalid(
            "forwarding.ports",
            format!("names {} ports; the L2 stage cross-connects exactly 2", f.ports.len()),
        ));
    };
    let find = |n: &String| {
        ports
            .iter()
            .position(|p| &p.name == n)
            .ok_or_else(|| invalid("forwarding.ports", format!("no [[port]] is named {n:?}")))
    };
    let (ia, ib) = (find(a)?, find(b)?);
    if ia == ib {
        return Err(invalid("forwarding.ports", "the two ports must differ"));
    }
    let mode = if f.mode == RawMode::Io { ForwardMode::Io } else { ForwardMode::MacSwap };
    Ok(Forwarding::L2 { mode, ports: (ia, ib) })
}

/// `[metrics]` and `[control]`: an address that parses, a socket path, one source of rules.
fn check_control(raw: &RawConfig) -> Result<(), ConfigError> {
    if !raw.metrics.listen_address.is_empty()
        && raw.metrics.listen_address.parse::<std::net::SocketAddr>().is_err()
    {
        return Err(invalid(
            "metrics.listen_address",
            format!("{:?} is not an address:port", raw.metrics.listen_address),
        ));
    }
    if raw.control.socket_path.is_empty() {
        return Err(invalid("control.socket_path", "must not be empty"));
    }
    if raw.control.rules_file.is_some() && raw.control.keepalived_conf.is_some() {
        // Both would own the services: a reload of one would undo the other's.
        return Err(invalid("control.keepalived_conf", "rules_file is set too; choose one source of rules"));
    }
    Ok(())
}

/// `[mempool]`: enough buffers for every ring, cache, hold queue and inbox the ports and workers
/// can fill at once, a cache DPDK accepts, and room for a frame.
fn check_mempool(
    m: &RawMempool,
    ports: &[PortSpec],
    nworkers: u16,
    forwarding: &Forwarding,
) -> Result<(), ConfigError> {
    if m.cache_size > 512 {
        return Err(invalid("mempool.cache_size", format!("{} exceeds DPDK's maximum of 512", m.cache_size)));
    }
    // Every RX descriptor may hold a buffer, every TX descriptor one in flight, each lcore's cache
    // some more, and each worker a burst in hand; below that the ports starve at start.
    let per_port: u32 = ports
        .iter()
        .map(|p| {
            u32::from(nworkers) * (u32::from(p.config.rx_descriptors) + u32::from(p.config.tx_descriptors))
        })
        .sum();
    let mut need = per_port + (u32::from(nworkers) + 1) * (m.cache_size + 32);
    let mut what = "these ports, queues and caches";
    if matches!(forwarding, Forwarding::Director(_)) {
        // A director worker also holds packets waiting for ARP, a TX burst staged per port, and,
        // with several workers, an inbox of packets handed over by the others.
        let staged = ports.len() as u32 * 32;
        let inbox = if nworkers > 1 { crate::daemon::INBOX_CAPACITY as u32 } else { 0 };
        need += u32::from(nworkers) * (rvs_dataplane::HOLD_CAPACITY as u32 + staged + inbox);
        // Kernel twins: their rings, and a staged burst each.
        for t in ports.iter().flat_map(PortSpec::twins) {
            need += u32::from(nworkers)
                * (u32::from(t.config.rx_descriptors) + u32::from(t.config.tx_descriptors) + 32);
        }
        what = "these ports, queues, caches, hold queues and hand-over inboxes";
    }
    if m.mbufs < need {
        return Err(invalid(
            "mempool.mbufs",
            format!("{} is too few for {what}: at least {need} are needed", m.mbufs),
        ));
    }
    if m.cache_size > 0 && f64::from(m.cache_size) * 1.5 > f64::from(m.mbufs) {
        return Err(invalid("mempool.cache_size", "must be at most mbufs / 1.5"));
    }
    if usize::from(m.data_room_bytes) < 128 + 64 {
        return Err(invalid("mempool.data_room_bytes", "must hold the 128-byte headroom and a frame"));
    }
    Ok(())
}

/// The connection tables (`control.connections_per_worker`: in range and within half the memory)
/// and `[ipvs]`'s knobs by their kernel names.
fn check_table(raw: &RawConfig) -> Result<rvs_ipvs::Sysctl, ConfigError> {
    let workers = &raw.eal.worker_lcores;
    let conns = raw.control.connections_per_worker;
    if conns == 0 || conns > MAX_CONNECTIONS_PER_WORKER {
        return Err(invalid(
            "control.connections_per_worker",
            format!("{conns} is out of range: 1 to {MAX_CONNECTIONS_PER_WORKER}"),
        ));
    }
    let mut sysctl = rvs_ipvs::Sysctl {
        // "Memory" for IPVS's defences is the connection table: act when an eighth is left.
        amemthresh: (conns / 8).max(1),
        ..rvs_ipvs::Sysctl::default()
    };
    for (name, value) in &raw.ipvs {
        let text = match value {
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Boolean(b) => u8::from(*b).to_string(),
            other => other.to_string(),
        };
        sysctl.set(name, &text).map_err(|e| {
            let reason = match e {
                rvs_ipvs::SysctlError::BadValue { value, range, .. } => {
                    format!("{value:?} is not a valid value ({range})")
                }
                other => other.to_string(),
            };
            invalid(format!("ipvs.{name}"), reason)
        })?;
    }
    let table = table_bytes(conns as usize) * workers.len() as u64;
    if let Some(total) = memory_total_bytes() {
        if table > total / 2 {
            return Err(invalid(
                "control.connections_per_worker",
                format!(
                    "{conns} per worker needs {} MiB of connection tables, more than half of this \
                     machine's {} MiB",
                    table >> 20,
                    total >> 20
                ),
            ));
        }
    }
    Ok(sysctl)
}

/// The EAL's devices: the ports' vdevs and PCI addresses, then the kernel twins' TAP vdevs (director
/// mode only, names of their own).
fn check_devices(
    ports: &[PortSpec],
    forwarding: &Forwarding,
) -> Result<(Vec<String>, Vec<String>), ConfigError> {
    let (mut vdevs, pci_allow) = ports.iter().fold((vec![], vec![]), |(mut v, mut p), s| {
        match &s.device {
            Device::Vdev(d) => v.push(d.clone()),
            Device::Pci(a) => p.push(a.clone()),
        }
        (v, p)
    });
    for (i, p) in ports.iter().enumerate() {
        if !p.vlans.is_empty() && !matches!(forwarding, Forwarding::Director(_)) {
            return Err(invalid(format!("port[{i}].vlan"), "VLAN sub-ports are for director mode"));
        }
        for t in p.twins() {
            if !matches!(forwarding, Forwarding::Director(_)) {
                return Err(invalid(format!("port[{i}].kernel_twin"), "kernel twins are for director mode"));
            }
            if ports.iter().any(|q| q.dpdk_name == t.dpdk_name) {
                return Err(invalid(
                    format!("port[{i}].device"),
                    format!("{:?} is rvs's name for a twin", t.dpdk_name),
                ));
            }
            if ports.iter().flat_map(PortSpec::twins).filter(|q| q.iface == t.iface).count() > 1 {
                return Err(invalid(
                    format!("port[{i}].kernel_twin"),
                    format!("{:?} is another interface's twin too", t.iface),
                ));
            }
            vdevs.push(format!("{},iface={}", t.dpdk_name, t.iface));
        }
    }
    Ok((vdevs, pci_allow))
}

fn validate_director(raw: &RawConfig, ports: &[PortSpec]) -> Result<Forwarding, ConfigError> {
    if !raw.forwarding.ports.is_empty() {
        return Err(invalid("forwarding.ports", "is for the L2 modes; the director uses every [[port]]"));
    }
    if ports.is_empty() {
        return Err(invalid("port", "the director needs at least one [[port]]"));
    }
    if raw.forwarding.vip_ownership == VipOwnership::KernelTwin
        && ports.iter().all(|p| p.twins().next().is_none())
    {
        return Err(invalid(
            "forwarding.vip_ownership",
            "\"kernel_twin\" follows the VIPs on the ports' kernel twins; give a port a kernel_twin",
        ));
    }
    if raw.forwarding.vip_ownership == VipOwnership::Routed
        && ports.iter().all(|p| p.twins().next().is_none())
    {
        return Err(invalid(
            "forwarding.vip_ownership",
            "\"routed\" puts the VIPs on the ports' kernel twins for a routing daemon; give a port a kernel_twin",
        ));
    }
    for (i, p) in ports.iter().enumerate() {
        if p.address.is_none() && p.vlans.is_empty() {
            return Err(invalid(
                format!("port[{i}].address"),
                "director mode needs an address/prefix on every port (or on each of its VLANs)",
            ));
        }
    }
    let subnets: Vec<(Ipv4Addr, u8)> =
        ports.iter().flat_map(|p| p.address.into_iter().chain(p.vlans.iter().map(|v| v.address))).collect();
    for (n, &(a, l)) in subnets.iter().enumerate() {
        if let Some(&(b, m)) = subnets.iter().skip(n + 1).find(|&&(b, m)| {
            let len = l.min(m);
            rvs_dataplane::net::same_prefix(a, b, len)
        }) {
            return Err(invalid(
                "port",
                format!("{a}/{l} and {b}/{m} overlap: each interface needs a subnet of its own"),
            ));
        }
    }
    let connected = |ip: Ipv4Addr| subnets.iter().any(|&(a, l)| rvs_dataplane::net::same_prefix(a, ip, l));
    let subnets6: Vec<(Ipv6Addr, u8)> = ports
        .iter()
        .flat_map(|p| p.address6.into_iter().chain(p.vlans.iter().filter_map(|v| v.address6)))
        .collect();
    for (n, (a, l)) in subnets6.iter().enumerate() {
        if let Some((b, m)) =
            subnets6.iter().skip(n + 1).find(|(b, m)| rvs_dataplane::net::same_prefix6(a, b, (*l).min(*m)))
        {
            return Err(invalid(
                "port",
                format!("{a}/{l} and {b}/{m} overlap: each interface needs an IPv6 subnet of its own"),
            ));
        }
    }
    let (mut routes, mut routes6) = (Vec::new(), Vec::new());
    for (i, r) in raw.routes.iter().enumerate() {
        let key = |k: &str| format!("route[{i}].{k}");
        if r.destination.contains(':') {
            let (prefix, prefix_len) =
                parse_prefix6(&r.destination).map_err(|e| invalid(key("destination"), e))?;
            let gateway: Ipv6Addr = r.gateway.parse().map_err(|_| {
                invalid(
                    key("gateway"),
                    format!("{:?} is not an IPv6 address (the destination is IPv6)", r.gateway),
                )
            })?;
            if !subnets6.iter().any(|(a, l)| rvs_dataplane::net::same_prefix6(a, &gateway, *l)) {
                return Err(invalid(key("gateway"), format!("{gateway} is on no interface's IPv6 subnet")));
            }
            routes6.push(Route6 { prefix, prefix_len, gateway });
            continue;
        }
        let (prefix, prefix_len) =
            parse_prefix(&r.destination, false).map_err(|e| invalid(key("destination"), e))?;
        let gateway: Ipv4Addr = r
            .gateway
            .parse()
            .map_err(|_| invalid(key("gateway"), format!("{:?} is not an IPv4 address", r.gateway)))?;
        if !connected(gateway) {
            return Err(invalid(key("gateway"), format!("{gateway} is on no port's subnet")));
        }
        routes.push(Route { prefix, prefix_len, gateway });
    }
    let (mut classifier, mut classifier6) = (Vec::new(), Vec::new());
    for (i, c) in raw.classifier.iter().enumerate() {
        let key = |k: &str| format!("classifier[{i}].{k}");
        let protocol = match c.protocol.as_str() {
            "tcp" => 6,
            "udp" => 17,
            other => return Err(invalid(key("protocol"), format!("{other:?} is not tcp or udp"))),
        };
        if c.mark == 0 {
            return Err(invalid(key("mark"), "0 means no mark; use 1 or more"));
        }
        if c.destination.contains(':') {
            // An IPv6 destination (a host alone is /128), for `-6` firewall-mark services.
            let d = if c.destination.contains('/') {
                c.destination.clone()
            } else {
                format!("{}/128", c.destination)
            };
            let (destination, prefix_len) = parse_prefix6(&d).map_err(|e| invalid(key("destination"), e))?;
            classifier6.push(ClassifierRule6 {
                destination,
                prefix_len,
                protocol,
                ports: c.ports.clone(),
                mark: c.mark,
            });
            continue;
        }
        let (destination, prefix_len) =
            parse_prefix(&c.destination, true).map_err(|e| invalid(key("destination"), e))?;
        classifier.push(ClassifierRule {
            destination,
            prefix_len,
            protocol,
            ports: c.ports.clone(),
            mark: c.mark,
        });
    }
    Ok(Forwarding::Director(DirectorSpec {
        routes,
        routes6,
        classifier,
        classifier6,
        decrement_ttl: raw.forwarding.decrement_ttl,
        reply_steering: raw.forwarding.nat_reply_steering,
        icmp_errors: (raw.forwarding.icmp_msgs_per_sec, raw.forwarding.icmp_msgs_burst),
        icmp_echo_per_sec: raw.forwarding.icmp_echo_replies_per_sec,
        kernel_packets: (raw.forwarding.kernel_packets_per_second, raw.forwarding.kernel_packets_burst),
        vip_ownership: raw.forwarding.vip_ownership,
        withdraw_drain: std::time::Duration::from_millis(u64::from(
            raw.forwarding.withdraw_drain_milliseconds,
        )),
        scheduler_hash_key: raw.forwarding.scheduler_hash_key,
        tun_clamp_mss: raw.forwarding.tun_clamp_mss,
    }))
}

/// Splits a device string into its kind and the name DPDK gives the probed port.
fn parse_device(dev: &str) -> Result<(Device, String), String> {
    let dev = dev.trim();
    if let Some(pci) = normalise_pci(dev) {
        return Ok((Device::Pci(pci.clone()), pci));
    }
    let name = dev.split(',').next().unwrap_or_default();
    if !name.starts_with("net_") || name.len() <= 4 {
        return Err(format!(
            "{dev:?} is neither a PCI address (0000:03:00.0) nor a network vdev (net_af_packet0,iface=eth0)"
        ));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("vdev name {name:?} may only hold letters, digits and '_'"));
    }
    Ok((Device::Vdev(dev.to_owned()), name.to_owned()))
}

/// `0000:03:00.0` or `03:00.0` -> `0000:03:00.0`.
fn normalise_pci(s: &str) -> Option<String> {
    let hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    let (dom, rest) = match s.matches(':').count() {
        2 => s.split_once(':')?,
        1 => ("0000", s),
        _ => return None,
    };
    let (bus, rest) = rest.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    (hex(dom, 4)
        && hex(bus, 2)
        && hex(dev, 2)
        && func.len() == 1
        && func.chars().all(|c| ('0'..='7').contains(&c)))
    .then(|| format!("{}:{}:{}.{}", dom.to_lowercase(), bus.to_lowercase(), dev.to_lowercase(), func))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[eal]
worker_lcores = [1]
hugepages = false

[[port]]
name = "client"
device = "net_af_packet0,iface=veth0"

[[port]]
name = "server"
device = "03:00.1"
rx_descriptors = 512

[forwarding]
mode = "macswap"
ports = ["client", "server"]
"#;

    fn err(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn a_good_config_validates_into_eal_arguments() {
        let c = Config::from_toml(GOOD).unwrap();
        assert_eq!(c.ports[0].dpdk_name, "net_af_packet0");
        assert_eq!(c.ports[1].dpdk_name, "0000:03:00.1");
        assert_eq!(c.ports[1].config.rx_descriptors, 512);
        assert_eq!(c.forwarding, Forwarding::L2 { mode: ForwardMode::MacSwap, ports: (0, 1) });
        let args = c.eal.to_args().join(" ");
        assert!(args.contains("-l 0,1 --main-lcore 0"), "{args}");
        assert!(args.contains("--no-huge"), "{args}");
        assert!(args.contains("--vdev net_af_packet0,iface=veth0"), "{args}");
        assert!(args.contains("-a 0000:03:00.1"), "{args}");
        assert!(!args.contains("--no-pci"), "{args}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = err(&GOOD.replace("hugepages = false", "hugepages = false\nworkers = 2"));
        assert!(e.contains("unknown field `workers`"), "{e}");
        let e = err(&GOOD.replace("rx_descriptors = 512", "rx_descriptors = 512\nrx_ring = 4"));
        assert!(e.contains("unknown field `rx_ring`"), "{e}");
    }

    #[test]
    fn wrong_types_and_missing_sections_are_named() {
        let e = err(&GOOD.replace("worker_lcores = [1]", "worker_lcores = \"1\""));
        assert!(e.contains("worker_lcores"), "{e}");
        let e = err(&GOOD.replace("mode = \"macswap\"", "mode = \"bridge\""));
        assert!(e.contains("unknown variant `bridge`"), "{e}");
        assert!(err("[eal]\nworker_lcores = [1]\n").contains("missing field `forwarding`"));
    }

    #[test]
    fn semantic_errors_name_key_and_reason() {
        let cases = [
            ("worker_lcores = [1]", "worker_lcores = [0]", "eal.worker_lcores: lcore 0 is the main lcore"),
            ("worker_lcores = [1]", "worker_lcores = []", "eal.worker_lcores: at least one"),
            ("worker_lcores = [1]", "worker_lcores = [1, 1]", "eal.worker_lcores: lcore 1 is listed twice"),
            ("name = \"server\"", "name = \"client\"", "port[1].name: \"client\" is used by another port"),
            ("device = \"03:00.1\"", "device = \"eth0\"", "port[1].device: \"eth0\" is neither"),
            (
                "device = \"03:00.1\"",
                "device = \"net_af_packet0,iface=x\"",
                "port[1].device: device \"net_af_packet0\"",
            ),
            ("rx_descriptors = 512", "rx_descriptors = 8", "port[1].rx_descriptors: 8 is outside"),
            ("ports = [\"client\", \"server\"]", "ports = [\"client\"]", "forwarding.ports: names 1 ports"),
            (
                "ports = [\"client\", \"server\"]",
                "ports = [\"client\", \"nope\"]",
                "no [[port]] is named \"nope\"",
            ),
            (
                "ports = [\"client\", \"server\"]",
                "ports = [\"client\", \"client\"]",
                "forwarding.ports: the two ports must differ",
            ),
        ];
        for (from, to, want) in cases {
            let e = err(&GOOD.replace(from, to));
            assert!(e.contains(want), "{to:?}: got {e:?}, want {want:?}");
        }
        let e = err(&format!("{GOOD}\n[mempool]\nmbufs = 1000\n"));
        assert!(e.starts_with("mempool.mbufs: 1000 is too few"), "{e}");
        let e = err(&format!("{GOOD}\n[mempool]\ncache_size = 600\n"));
        assert!(e.starts_with("mempool.cache_size"), "{e}");
    }

    const DIRECTOR: &str = r#"
[eal]
worker_lcores = [1]

[[port]]
name = "front"
device = "net_af_packet0,iface=a"
address = "192.0.2.2/24"

[[port]]
name = "back"
device = "net_af_packet1,iface=b"
address = "203.0.113.1/24"

[forwarding]
mode = "director"

[[route]]
destination = "0.0.0.0/0"
gateway = "192.0.2.1"

[[classifier]]
destination = "192.0.2.90"
protocol = "tcp"
ports = [80, 443]
mark = 1
"#;

    #[test]
    fn routed_directors_share_the_scheduler_key_unless_told_otherwise() {
        let Forwarding::Director(d) = Config::from_toml(DIRECTOR).unwrap().forwarding else { panic!() };
        // Two directors started from the same file (or from none) hash sh/mh alike.
        let Forwarding::Director(again) = Config::from_toml(DIRECTOR).unwrap().forwarding else { panic!() };
        assert_eq!(d.scheduler_hash_key, again.scheduler_hash_key);
        assert_eq!(
            (d.vip_ownership, d.withdraw_drain),
            (VipOwnership::Always, std::time::Duration::from_secs(2))
        );
        let text = DIRECTOR
            .replace("address = \"192.0.2.2/24\"", "address = \"192.0.2.2/24\"\nkernel_twin = \"rvs-front\"")
            .replace(
                "mode = \"director\"",
                "mode = \"director\"\nvip_ownership = \"routed\"\nwithdraw_drain_milliseconds = 500\nscheduler_hash_key = 42",
            );
        let Forwarding::Director(r) = Config::from_toml(&text).unwrap().forwarding else { panic!() };
        assert_eq!(
            (r.vip_ownership, r.withdraw_drain, r.scheduler_hash_key),
            (VipOwnership::Routed, std::time::Duration::from_millis(500), 42)
        );
    }

    #[test]
    fn director_mode_validates_addresses_routes_and_classifier() {
        let c = Config::from_toml(DIRECTOR).unwrap();
        assert_eq!(c.ports[0].address, Some((Ipv4Addr::new(192, 0, 2, 2), 24)));
        let Forwarding::Director(d) = &c.forwarding else { panic!("{:?}", c.forwarding) };
        assert_eq!(
            d.routes,
            vec![Route { prefix: Ipv4Addr::UNSPECIFIED, prefix_len: 0, gateway: [192, 0, 2, 1].into() }]
        );
        assert_eq!((d.classifier[0].prefix_len, d.classifier[0].protocol, d.classifier[0].mark), (32, 6, 1));
        let cases = [
            (
                "gateway = \"192.0.2.1\"",
                "gateway = \"10.0.0.1\"",
                "route[0].gateway: 10.0.0.1 is on no port's subnet",
            ),
            (
                "address = \"192.0.2.2/24\"",
                "address = \"192.0.2.2\"",
                "port[0].address: \"192.0.2.2\" needs a prefix length",
            ),
            ("address = \"192.0.2.2/24\"\n", "", "port[0].address: director mode needs"),
            ("protocol = \"tcp\"", "protocol = \"icmp\"", "classifier[0].protocol"),
            ("mark = 1", "mark = 0", "classifier[0].mark"),
            (
                "mode = \"director\"",
                "mode = \"director\"\nports = [\"front\", \"back\"]",
                "forwarding.ports: is for the L2 modes",
            ),
            (
                "mode = \"director\"",
                "mode = \"director\"\nvip_ownership = \"kernel_twin\"",
                "forwarding.vip_ownership: \"kernel_twin\" follows the VIPs on the ports' kernel twins",
            ),
            (
                "mode = \"director\"",
                "mode = \"director\"\nvip_ownership = \"routed\"",
                "forwarding.vip_ownership: \"routed\" puts the VIPs on the ports' kernel twins",
            ),
            ("mode = \"director\"", "mode = \"director\"\nscheduler_hash_key = -1", "scheduler_hash_key"),
        ];
        for (from, to, want) in cases {
            let e = err(&DIRECTOR.replace(from, to));
            assert!(e.contains(want), "{to:?}: got {e:?}, want {want:?}");
        }
        let e = err(&GOOD.replace(
            "[forwarding]",
            "[[route]]\ndestination = \"0.0.0.0/0\"\ngateway = \"192.0.2.1\"\n\n[forwarding]",
        ));
        assert!(e.contains("need mode = \"director\""), "{e}");
    }

    /// Found at run time before: a pool sized for the rings alone ran dry once the hand-over inboxes
    /// and hold queues filled, and a huge connections_per_worker aborted rvsd after the ports were up.
    #[test]
    fn mbufs_cover_inboxes_and_holds_and_the_table_is_bounded() {
        let two = DIRECTOR.replace("worker_lcores = [1]", "worker_lcores = [1, 2]");
        // Rings: 2 workers × 2 ports × (1024 + 1024) descriptors = 8192, caches 3 × (256 + 32) = 864;
        // then 2 × (256 held + 64 staged + 4096 inbox) = 8832 more.
        let e = err(&format!(
            "{two}
[mempool]
mbufs = 12000
"
        ));
        assert!(e.contains("hold queues and hand-over inboxes: at least 17888 are needed"), "{e}");
        assert!(
            Config::from_toml(&format!(
                "{two}
[mempool]
mbufs = 17888
"
            ))
            .is_ok()
        );
        for bad in ["0", "100000000"] {
            let e = err(&format!(
                "{DIRECTOR}
[control]
connections_per_worker = {bad}
"
            ));
            assert!(e.starts_with("control.connections_per_worker: "), "{e}");
        }
        let total = memory_total_bytes().expect("/proc/meminfo");
        let too_many = (total / 2 / 96).min(u64::from(MAX_CONNECTIONS_PER_WORKER)) as u32;
        let e = Config::from_toml(&format!(
            "{}
[mempool]
mbufs = 100000
[control]
connections_per_worker = {too_many}
",
            DIRECTOR.replace("worker_lcores = [1]", "worker_lcores = [1, 2, 3, 4]")
        ))
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(e.contains("of connection tables, more than half of this machine's"), "{e}");
        assert_eq!(
            table_bytes(10_000_000),
            640_000_000 + 2 * (1 << 24) * 8 + 625_000 * 128 + 2 * (1 << 20) * 8
        );
    }

    #[test]
    fn kernel_twins_are_tap_vdevs_with_checked_names() {
        let c =
            Config::from_toml(&DIRECTOR.replace(
                "address = \"192.0.2.2/24\"",
                "address = \"192.0.2.2/24\"\nkernel_twin = \"rvsfront\"",
            ))
            .unwrap();
        assert_eq!(c.ports[0].twin.as_ref().map(|t| t.iface.as_str()), Some("rvsfront"));
        assert!(c.eal.vdevs.contains(&"net_tap_twin0,iface=rvsfront".to_string()), "{:?}", c.eal.vdevs);
        let e = err(&DIRECTOR.replace(
            "address = \"192.0.2.2/24\"",
            "address = \"192.0.2.2/24\"\nkernel_twin = \"a-name-far-too-long\"",
        ));
        assert!(e.starts_with("port[0].kernel_twin: \"a-name-far-too-long\": an interface name"), "{e}");
        let e = err(&DIRECTOR
            .replace(
                "address = \"203.0.113.1/24\"",
                "address = \"203.0.113.1/24\"\nkernel_twin = \"rvsfront\"",
            )
            .replace("address = \"192.0.2.2/24\"", "address = \"192.0.2.2/24\"\nkernel_twin = \"rvsfront\""));
        assert!(e.contains("is another interface's twin too"), "{e}");
    }

    /// `address6` on ports and VLANs and IPv6 `[[route]]`s (told apart by the destination), each
    /// gateway on an interface's IPv6 subnet.
    #[test]
    fn ipv6_addresses_and_routes() {
        let v6 = DIRECTOR
            .replace(
                "address = \"192.0.2.2/24\"\n",
                "address = \"192.0.2.2/24\"\naddress6 = \"2001:db8:f::2/64\"\n",
            )
            .replace(
                "[[classifier]]",
                "[[route]]\ndestination = \"::/0\"\ngateway = \"2001:db8:f::1\"\n\n[[classifier]]",
            );
        let c = Config::from_toml(&v6).unwrap();
        assert_eq!(c.interfaces()[0].address6, Some(("2001:db8:f::2".parse().unwrap(), 64)));
        let Forwarding::Director(d) = &c.forwarding else { panic!() };
        assert_eq!(
            (d.routes.len(), d.routes6.as_slice()),
            (
                1,
                &[Route6 {
                    prefix: Ipv6Addr::UNSPECIFIED,
                    prefix_len: 0,
                    gateway: "2001:db8:f::1".parse().unwrap()
                }][..]
            )
        );
        for (from, to, want) in [
            (
                "gateway = \"2001:db8:f::1\"",
                "gateway = \"2001:db8:9::1\"",
                "route[1].gateway: 2001:db8:9::1 is on no interface's IPv6 subnet",
            ),
            (
                "gateway = \"2001:db8:f::1\"",
                "gateway = \"192.0.2.1\"",
                "route[1].gateway: \"192.0.2.1\" is not an IPv6 address",
            ),
            (
                "address6 = \"2001:db8:f::2/64\"",
                "address6 = \"2001:db8:f::2\"",
                "port[0].address6: \"2001:db8:f::2\" needs a prefix length",
            ),
            (
                "address6 = \"2001:db8:f::2/64\"",
                "address6 = \"ff02::2/64\"",
                "port[0].address6: \"ff02::2/64\": a unicast address",
            ),
            (
                "destination = \"::/0\"",
                "destination = \"::/129\"",
                "route[1].destination: \"::/129\": prefix length over 128",
            ),
            (
                "address = \"203.0.113.1/24\"",
                "address = \"203.0.113.1/24\"\naddress6 = \"2001:db8:f::1:2/112\"",
                "port: 2001:db8:f::2/64 and 2001:db8:f::1:2/112 overlap",
            ),
        ] {
            let e = err(&v6.replace(from, to));
            assert!(e.starts_with(want), "{to}: {e}");
        }
    }

    /// `[[port.vlan]]`: interfaces after the ports, each with its subnet and twin; a trunk-only
    /// port needs no address of its own; ids, subnets and twin names are checked.
    #[test]
    fn vlans_are_interfaces_of_their_own() {
        let vlan = |extra: &str| {
            DIRECTOR
                .replace("address = \"192.0.2.2/24\"\n", &format!("address = \"192.0.2.2/24\"\n{extra}\n"))
        };
        let c = Config::from_toml(&vlan(
            "[[port.vlan]]\nid = 100\naddress = \"198.18.100.2/24\"\nkernel_twin = \"front.100\"\n\
             [[port.vlan]]\nid = 200\naddress = \"198.18.200.2/24\"",
        ))
        .unwrap();
        let names: Vec<(String, usize, Option<u16>, bool)> =
            c.interfaces().iter().map(|i| (i.name.clone(), i.port, i.vlan, i.twin.is_some())).collect();
        assert_eq!(
            names,
            [
                ("front".into(), 0, None, false),
                ("back".into(), 1, None, false),
                ("front.100".into(), 0, Some(100), true),
                ("front.200".into(), 0, Some(200), false),
            ]
        );
        assert!(c.eal.vdevs.contains(&"net_tap_twin0_100,iface=front.100".to_string()), "{:?}", c.eal.vdevs);
        // A gateway on a VLAN's subnet is connected.
        let routed = vlan("[[port.vlan]]\nid = 100\naddress = \"198.18.100.2/24\"")
            .replace("gateway = \"192.0.2.1\"", "gateway = \"198.18.100.1\"");
        assert!(Config::from_toml(&routed).is_ok());
        // Trunk only: no untagged address.
        let trunk = DIRECTOR
            .replace("address = \"192.0.2.2/24\"\n", "[[port.vlan]]\nid = 7\naddress = \"192.0.2.2/24\"\n");
        let c = Config::from_toml(&trunk).unwrap();
        assert_eq!(
            (c.ports[0].address, c.interfaces()[2].address),
            (None, Some(([192, 0, 2, 2].into(), 24)))
        );
        for (extra, want) in [
            (
                "[[port.vlan]]\nid = 4095\naddress = \"198.18.100.2/24\"",
                "port[0].vlan[0].id: 4095 is outside 1..=4094",
            ),
            (
                "[[port.vlan]]\nid = 5\naddress = \"198.18.100.2/24\"\n[[port.vlan]]\nid = 5\naddress = \"198.18.101.2/24\"",
                "port[0].vlan[1].id: VLAN 5 is listed twice",
            ),
            (
                "[[port.vlan]]\nid = 5\naddress = \"192.0.2.9/25\"",
                "port: 192.0.2.2/24 and 192.0.2.9/25 overlap",
            ),
            (
                "[[port.vlan]]\nid = 5\naddress = \"198.18.100.2\"",
                "port[0].vlan[0].address: \"198.18.100.2\" needs a prefix",
            ),
            ("[[port.vlan]]\nid = 5\naddress = \"198.18.100.2/24\"\nmtu = 9000", "unknown field `mtu`"),
            (
                "kernel_twin = \"tw\"\n[[port.vlan]]\nid = 5\naddress = \"198.18.100.2/24\"\nkernel_twin = \"tw\"",
                "is another interface's twin too",
            ),
        ] {
            let e = err(&vlan(extra));
            assert!(e.contains(want), "{extra}: {e}");
        }
        let l2 = GOOD.replace(
            "rx_descriptors = 512",
            "rx_descriptors = 512\n[[port.vlan]]\nid = 5\naddress = \"198.18.100.2/24\"",
        );
        assert!(err(&l2).contains("VLAN sub-ports are for director mode"), "{}", err(&l2));
    }

    #[test]
    fn the_ipvs_section_takes_kernel_names() {
        let c = Config::from_toml(&format!(
            "{DIRECTOR}\n[control]\nconnections_per_worker = 80000\n[ipvs]\nexpire_nodest_conn = 1\nsecure_tcp = 1\nsloppy_tcp = true\n"
        ))
        .unwrap();
        assert!(c.sysctl.expire_nodest_conn && c.sysctl.sloppy_tcp);
        assert_eq!(c.sysctl.secure_tcp, rvs_ipvs::Mode::AUTO);
        assert_eq!(c.sysctl.amemthresh, 10_000, "an eighth of the table unless set");
        let e = err(&format!("{DIRECTOR}\n[ipvs]\nbogus = 1\n"));
        assert!(e.starts_with("ipvs.bogus: unknown IPVS setting \"bogus\""), "{e}");
        let e = err(&format!("{DIRECTOR}\n[ipvs]\ndrop_entry = 5\n"));
        assert!(e.starts_with("ipvs.drop_entry: \"5\" is not a valid value (0 to 3)"), "{e}");
    }

    #[test]
    fn lcores_can_share_cpus_and_ports_take_an_rss_key() {
        let text = GOOD
            .replace("hugepages = false", "hugepages = false\nlcore_cpus = [0, 1]")
            .replace("rx_descriptors = 512", "rx_descriptors = 512\nrss_key_hex = \"6d5a6d5a\"");
        let c = Config::from_toml(&text).unwrap();
        assert!(c.eal.to_args().join(" ").starts_with("--lcores 0@0,1@1 --main-lcore 0"));
        assert_eq!(c.ports[1].config.rss_key, Some(vec![0x6d, 0x5a, 0x6d, 0x5a]));
        let e = err(&GOOD.replace("hugepages = false", "hugepages = false\nlcore_cpus = [0]"));
        assert!(e.starts_with("eal.lcore_cpus: names 1 CPUs for 2 lcores"), "{e}");
        let e = err(&GOOD.replace("rx_descriptors = 512", "rx_descriptors = 512\nrss_key_hex = \"6d5\""));
        assert!(e.starts_with("port[1].rss_key_hex"), "{e}");
    }

    #[test]
    fn pci_addresses_are_normalised() {
        assert_eq!(normalise_pci("0000:3B:00.0").as_deref(), Some("0000:3b:00.0"));
        assert_eq!(normalise_pci("af:00.7").as_deref(), Some("0000:af:00.7"));
        for bad in ["af:00.8", "af:0.1", "net_null0", "1:2:3:4", "zz:00.0"] {
            assert_eq!(normalise_pci(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_shipped_example_configs_validate() {
        for f in ["demo.toml", "bare-metal.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conf").join(f);
            Config::from_file(&path).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }
}
