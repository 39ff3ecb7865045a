//! ipvsadm command lines -> [`Command`]. The rules follow ipvsadm's process_options: one command per
//! line, each option once, the legality table of commands against options (`commands_v_options`),
//! the defaults users rely on (wlc, -g, weight 1, -p 360, the real port inherited from the virtual
//! one), and its error texts, which exit with status 2.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rvs_ipvs::{
    DestConfig, Fwd, Op, Persistence, SchedFlags, SchedulerKind, ServiceConfig, ServiceKey, TunCsum,
    TunnelType, proto,
};

/// One ipvsadm invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A configuration change (-A -E -D -C -a -e -d -Z --set): IPVS's own vocabulary, which rvsd
    /// applies to its configuration and publishes to the workers as it is.
    Change(Op),
    List(ListOptions),
    Save {
        numeric: bool,
    },
    /// Rules follow on standard input.
    Restore,
    Help,
    Version,
    /// rvs's own `--sysctl [NAME[=VALUE]]`: show IPVS's knobs, one, or set one.
    Sysctl {
        name: Option<String>,
        value: Option<String>,
    },
    /// `--start-daemon master|backup [--mcast-interface IF] [--syncid N]`: the connection
    /// synchronisation daemon.
    StartDaemon {
        master: bool,
        mcast_interface: String,
        syncid: u8,
    },
    /// `--stop-daemon master|backup`.
    StopDaemon {
        master: bool,
    },
}

/// ipvsadm's multicast interface when none is given (DEF_MCAST_IFN).
pub const DEFAULT_MCAST_INTERFACE: &str = "eth0";

/// What `-L` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListFormat {
    #[default]
    Table,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    Connections,
    Timeout,
    /// `-L --daemon`: the sync daemons' state.
    Daemon,
    /// `-L --tun-info`: each server's tunnel type, port and checksum flag.
    TunInfo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListOptions {
    pub service: Option<ServiceKey>,
    pub numeric: bool,
    pub format: ListFormat,
    pub exact: bool,
    pub nosort: bool,
}

/// A refused command line: ipvsadm's message; rvsadm prints it to stderr and exits with `status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
    /// ipvsadm exits 2 for every usage error.
    pub status: i32,
    /// Followed by "Try `prog -h' or 'prog --help' for more information." (popt-level errors).
    pub try_help: bool,
}

fn fail(message: impl Into<String>) -> ParseError {
    ParseError { message: message.into(), status: 2, try_help: false }
}

fn fail_help(message: impl Into<String>) -> ParseError {
    ParseError { message: message.into(), status: 2, try_help: true }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Add,
    Edit,
    Del,
    Flush,
    List,
    AddDest,
    DelDest,
    EditDest,
    Timeout,
    StartDaemon,
    StopDaemon,
    Restore,
    Save,
    Zero,
}

const CMD_NAMES: [&str; 14] = [
    "add-service",
    "edit-service",
    "delete-service",
    "flush",
    "list",
    "add-server",
    "delete-server",
    "edit-server",
    "set",
    "start-daemon",
    "stop-daemon",
    "restore",
    "save",
    "zero",
];

/// Options in ipvsadm's optnames order (the legality table's columns). The sync-daemon and
/// persistence-engine columns are never set: rvs refuses those options before the table is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
#[allow(dead_code)]
enum Opt {
    Numeric,
    Connection,
    Service,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Forward,
    Weight,
    UThreshold,
    LThreshold,
    McastInterface,
    Timeout,
    Daemon,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    SyncId,
    Exact,
    OnePacket,
    Pe,
    SchedFlags,
    TunInfo,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
}

const OPT_NAMES: [&str; 30] = [
    "numeric",
    "connection",
    "service-address",
    "scheduler",
    "persistent",
    "netmask",
    "real-server",
    "forwarding-method",
    "weight",
    "u-threshold",
    "l-threshold",
    "mcast-interface",
    "timeout",
    "daemon",
    "stats",
    "rate",
    "thresholds",
    "persistent-conn",
    "nosort",
    "syncid",
    "exact",
    "ops",
    "pe",
    "sched-flags",
    "tun-info",
    "tun-type",
    "tun-port",
    "tun-nocsum",
    "tun-csum",
    "tun-remcsum",
];

/// commands_v_options: '+' compulsory, 'x' illegal, '1' exclusive, ' ' optional. Columns in OPT_NAMES
/// order: -n -c svc -s -p -M -r fwd -w -x -y mcast --timeout daemon --stats --rate --thresholds
/// --persistent-conn --nosort syncid --exact -o pe -b, then ipvsadm 1.31's --tun-info --tun-type
/// --tun-port --tun-nocsum --tun-csum --tun-remcsum.
const LEGAL: [&[u8; 30]; 14] = [
    b"xx+   xxxxxxxxxxxxxxx x xxxxxx", // add-service
    b"xx+   xxxxxxxxxxxxxxx x xxxxxx", // edit-service
    b"xx+xxxxxxxxxxxxxxxxxxxxxxxxxxx", // delete-service
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // flush
    b" 11xxxxxxxxx11       xxx xxxxx", // list
    b"xx+xxx+    xxxxxxxxxxxxxx     ", // add-server
    b"xx+xxx+xxxxxxxxxxxxxxxxxxxxxxx", // delete-server
    b"xx+xxx+    xxxxxxxxxxxxxx     ", // edit-server
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // set
    b"xxxxxxxxxxx xxxxxxx xxxxxxxxxx", // start-daemon
    b"xxxxxxxxxxxxxxxxxxx xxxxxxxxxx", // stop-daemon
    b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // restore
    b" xxxxxxxxxxxxxxxxxxxxxxxxxxxxx", // save
    b"xx xxxxxxxxxxxxxxxxxxxxxxxxxxx", // zero
];

/// ipvsadm 1.31's tunnel_types_v_options, for --tun-port --tun-nocsum --tun-csum --tun-remcsum.
const TUN_LEGAL: [(&str, &[u8; 4]); 3] = [("ipip", b"xxxx"), ("gue", b"+111"), ("gre", b"x11x")];
const TUN_OPTS: [Opt; 4] = [Opt::TunPort, Opt::TunNocsum, Opt::TunCsum, Opt::TunRemcsum];

/// Parses one command line (without the program name).
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Command, ParseError> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    if args.is_empty() {
        return Ok(Command::List(ListOptions::default()));
    }
    if let Some(first) = args.first().and_then(|a| a.strip_prefix("--sysctl")) {
        return parse_sysctl(first, args.get(1..).unwrap_or_default());
    }
    if args.iter().any(|a| a.starts_with("--sysctl")) {
        return Err(fail_help("--sysctl must come first and alone: rvsadm --sysctl [NAME[=VALUE]]"));
    }
    let mut p = Parser::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        i += 1;
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let spec = LONG
                .iter()
                .find(|(n, _, _)| *n == name)
                .ok_or_else(|| fail_help(format!("--{name}: unknown option")))?;
            let value = match spec.2 {
                Arg::None => None,
                Arg::Required => Some(match inline {
                    Some(v) => v.to_owned(),
                    None => {
                        let v =
                            args.get(i).ok_or_else(|| fail_help(format!("--{name}: missing argument")))?;
                        i += 1;
                        (*v).to_owned()
                    }
                }),
                Arg::Optional => match inline {
                    Some(v) => Some(v.to_owned()),
                    None => match args.get(i) {
                        Some(v) if !v.starts_with('-') => {
                            i += 1;
                            Some((*v).to_owned())
                        }
                        _ => None,
                    },
                },
            };
            p.apply(spec.1, value.as_deref())?;
        } else if let Some(shorts) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
            // Clustered short options (-Ln, -Lnc); one taking an argument ends the cluster.
            let chars: Vec<char> = shorts.chars().collect();
            let mut k = 0;
            while k < chars.len() {
                let c = chars[k];
                k += 1;
                let spec = SHORT
                    .iter()
                    .find(|(s, _, _)| *s == c)
                    .ok_or_else(|| fail_help(format!("-{c}: unknown option")))?;
                let rest: String = chars[k..].iter().collect();
                let value = match spec.2 {
                    Arg::None => None,
                    Arg::Required => {
                        k = chars.len();
                        if !rest.is_empty() {
                            Some(rest)
                        } else {
                            let v =
                                args.get(i).ok_or_else(|| fail_help(format!("-{c}: missing argument")))?;
                            i += 1;
                            Some((*v).to_owned())
                        }
                    }
                    Arg::Optional => {
                        k = chars.len();
                        if !rest.is_empty() {
                            Some(rest)
                        } else {
                            match args.get(i) {
                                Some(v) if !v.starts_with('-') => {
                                    i += 1;
                                    Some((*v).to_owned())
                                }
                                _ => None,
                            }
                        }
                    }
                };
                p.apply(spec.1, value.as_deref())?;
            }
        } else if p.cmd == Some(Cmd::Timeout) && p.set_args.len() < 3 {
            p.set_args.push(a.to_owned());
        } else {
            return Err(fail_help(format!("unexpected argument {a}")));
        }
    }
    p.finish()
}

/// Parses a rule file (the `-S` format `-R` reads): one invocation per line, a leading `ipvsadm` (or
/// `rvsadm`) word dropped, blank lines and `#` comments skipped. All or nothing: the first bad line
/// is reported with its number, and no command is returned. Commands come with their line numbers.
/// `--sysctl`, `--sysctl NAME`, `--sysctl NAME=VALUE`, `--sysctl=NAME[=VALUE]` (rvs only: ipvsadm
/// leaves these to sysctl(8), which has no reach into rvsd).
fn parse_sysctl(after: &str, rest: &[&str]) -> Result<Command, ParseError> {
    let arg = match (after.strip_prefix('='), after.is_empty(), rest) {
        (Some(inline), _, []) => Some(inline),
        (None, true, []) => None,
        (None, true, [one]) => Some(*one),
        _ => return Err(fail_help("--sysctl takes one NAME[=VALUE]")),
    };
    let (name, value) = match arg.map(|a| a.split_once('=').map_or((a, None), |(n, v)| (n, Some(v)))) {
        None => (None, None),
        Some((n, v)) => {
            // sysctl(8)'s full names work too.
            let n = n.strip_prefix("net.ipv4.vs.").unwrap_or(n);
            (Some(n.to_owned()), v.map(str::to_owned))
        }
    };
    Ok(Command::Sysctl { name, value })
}

pub fn parse_rules(text: &str) -> Result<Vec<(usize, Command)>, (usize, ParseError)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words: Vec<&str> = line.split_whitespace().collect();
        if matches!(words.first(), Some(&"ipvsadm") | Some(&"rvsadm")) {
            words.remove(0);
        }
        let cmd = parse(&words).map_err(|e| (n + 1, e))?;
        match cmd {
            Command::Restore
            | Command::Save { .. }
            | Command::List(_)
            | Command::Help
            | Command::Version
            | Command::Sysctl { .. } => {
                return Err((n + 1, fail("only configuration commands may appear in a rule file")));
            }
            c => out.push((n + 1, c)),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg {
    None,
    Required,
    Optional,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Cmd(Cmd),
    Help,
    Version,
    Tcp,
    Udp,
    Sctp,
    Fwmark,
    Scheduler,
    Persistent,
    Netmask,
    Server,
    Masq,
    Ipip,
    Gate,
    Weight,
    UThreshold,
    LThreshold,
    Numeric,
    Connection,
    TimeoutOpt,
    Stats,
    Rate,
    Thresholds,
    PersistentConn,
    NoSort,
    Sort,
    Exact,
    Ipv6,
    Ops,
    SchedFlags,
    TunType,
    TunPort,
    TunNocsum,
    TunCsum,
    TunRemcsum,
    TunInfo,
    McastInterface,
    SyncId,
    Daemon,
    Unsupported(&'static str),
}

const SHORT: &[(char, Tag, Arg)] = &[
    ('A', Tag::Cmd(Cmd::Add), Arg::None),
    ('E', Tag::Cmd(Cmd::Edit), Arg::None),
    ('D', Tag::Cmd(Cmd::Del), Arg::None),
    ('C', Tag::Cmd(Cmd::Flush), Arg::None),
    ('L', Tag::Cmd(Cmd::List), Arg::None),
    ('l', Tag::Cmd(Cmd::List), Arg::None),
    ('Z', Tag::Cmd(Cmd::Zero), Arg::None),
    ('a', Tag::Cmd(Cmd::AddDest), Arg::None),
    ('e', Tag::Cmd(Cmd::EditDest), Arg::None),
    ('d', Tag::Cmd(Cmd::DelDest), Arg::None),
    ('R', Tag::Cmd(Cmd::Restore), Arg::None),
    ('S', Tag::Cmd(Cmd::Save), Arg::None),
    ('h', Tag::Help, Arg::None),
    ('v', Tag::Version, Arg::None),
    ('t', Tag::Tcp, Arg::Required),
    ('u', Tag::Udp, Arg::Required),
    ('f', Tag::Fwmark, Arg::Required),
    ('s', Tag::Scheduler, Arg::Required),
    ('p', Tag::Persistent, Arg::Optional),
    ('M', Tag::Netmask, Arg::Required),
    ('r', Tag::Server, Arg::Required),
    ('m', Tag::Masq, Arg::None),
    ('i', Tag::Ipip, Arg::None),
    ('g', Tag::Gate, Arg::None),
    ('w', Tag::Weight, Arg::Required),
    ('x', Tag::UThreshold, Arg::Required),
    ('y', Tag::LThreshold, Arg::Required),
    ('n', Tag::Numeric, Arg::None),
    ('c', Tag::Connection, Arg::None),
    ('X', Tag::Exact, Arg::None),
    ('6', Tag::Ipv6, Arg::None),
    ('o', Tag::Ops, Arg::None),
    ('b', Tag::SchedFlags, Arg::Required),
];

const LONG: &[(&str, Tag, Arg)] = &[
    ("add-service", Tag::Cmd(Cmd::Add), Arg::None),
    ("edit-service", Tag::Cmd(Cmd::Edit), Arg::None),
    ("delete-service", Tag::Cmd(Cmd::Del), Arg::None),
    ("clear", Tag::Cmd(Cmd::Flush), Arg::None),
    ("list", Tag::Cmd(Cmd::List), Arg::None),
    ("zero", Tag::Cmd(Cmd::Zero), Arg::None),
    ("add-server", Tag::Cmd(Cmd::AddDest), Arg::None),
    ("edit-server", Tag::Cmd(Cmd::EditDest), Arg::None),
    ("delete-server", Tag::Cmd(Cmd::DelDest), Arg::None),
    ("set", Tag::Cmd(Cmd::Timeout), Arg::None),
    ("restore", Tag::Cmd(Cmd::Restore), Arg::None),
    ("save", Tag::Cmd(Cmd::Save), Arg::None),
    ("start-daemon", Tag::Cmd(Cmd::StartDaemon), Arg::Required),
    ("stop-daemon", Tag::Cmd(Cmd::StopDaemon), Arg::Required),
    ("help", Tag::Help, Arg::None),
    ("version", Tag::Version, Arg::None),
    ("tcp-service", Tag::Tcp, Arg::Required),
    ("udp-service", Tag::Udp, Arg::Required),
    ("sctp-service", Tag::Sctp, Arg::Required),
    ("fwmark-service", Tag::Fwmark, Arg::Required),
    ("scheduler", Tag::Scheduler, Arg::Required),
    ("persistent", Tag::Persistent, Arg::Optional),
    ("netmask", Tag::Netmask, Arg::Required),
    ("real-server", Tag::Server, Arg::Required),
    ("masquerading", Tag::Masq, Arg::None),
    ("ipip", Tag::Ipip, Arg::None),
    ("gatewaying", Tag::Gate, Arg::None),
    ("weight", Tag::Weight, Arg::Required),
    ("u-threshold", Tag::UThreshold, Arg::Required),
    ("l-threshold", Tag::LThreshold, Arg::Required),
    ("numeric", Tag::Numeric, Arg::None),
    ("connection", Tag::Connection, Arg::None),
    ("timeout", Tag::TimeoutOpt, Arg::None),
    ("stats", Tag::Stats, Arg::None),
    ("rate", Tag::Rate, Arg::None),
    ("thresholds", Tag::Thresholds, Arg::None),
    ("persistent-conn", Tag::PersistentConn, Arg::None),
    ("nosort", Tag::NoSort, Arg::None),
    ("sort", Tag::Sort, Arg::None),
    ("exact", Tag::Exact, Arg::None),
    ("ipv6", Tag::Ipv6, Arg::None),
    ("ops", Tag::Ops, Arg::None),
    ("sched-flags", Tag::SchedFlags, Arg::Required),
    ("tun-type", Tag::TunType, Arg::Required),
    ("tun-port", Tag::TunPort, Arg::Required),
    ("tun-nocsum", Tag::TunNocsum, Arg::None),
    ("tun-csum", Tag::TunCsum, Arg::None),
    ("tun-remcsum", Tag::TunRemcsum, Arg::None),
    ("tun-info", Tag::TunInfo, Arg::None),
    ("mcast-interface", Tag::McastInterface, Arg::Required),
    ("syncid", Tag::SyncId, Arg::Required),
    ("daemon", Tag::Daemon, Arg::None),
    ("pe", Tag::Unsupported("pe"), Arg::Required),
];

#[derive(Debug, Default)]
struct Parser {
    cmd: Option<Cmd>,
    options: u32,
    help: bool,
    version: bool,
    key: Option<ServiceKey>,
    /// The service was given as an address without a port.
    svc_port_given: bool,
    sched: Option<SchedulerKind>,
    persistent: Option<u32>,
    netmask: Option<String>,
    server: Option<(IpAddr, Option<u16>)>,
    fwd: Option<Fwd>,
    /// --tun-type's index in TUN_LEGAL, --tun-port, and the checksum flag.
    tun_type: usize,
    tun_port: u16,
    tun_csum: TunCsum,
    weight: Option<u32>,
    u_threshold: u32,
    l_threshold: u32,
    format: ListFormat,
    numeric: bool,
    exact: bool,
    nosort: bool,
    one_packet: bool,
    flags: Option<String>,
    set_args: Vec<String>,
    /// --start-daemon / --stop-daemon's argument, and the daemon's options.
    daemon_state: Option<String>,
    mcast_interface: Option<String>,
    syncid: Option<u8>,
}

/// `addr[:port]`, `[v6addr]:port` or a bare IPv6 address; (address, port if given).
fn parse_addr_port(s: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (a, after) = rest.split_once(']')?;
        let addr: Ipv6Addr = a.parse().ok()?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(parse_port(p)?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((IpAddr::V6(addr), port));
    }
    if let Ok(a) = s.parse::<Ipv6Addr>() {
        return Some((IpAddr::V6(a), None));
    }
    match s.rsplit_once(':') {
        Some((a, p)) => Some((IpAddr::V4(a.parse::<Ipv4Addr>().ok()?), Some(parse_port(p)?))),
        None => Some((IpAddr::V4(s.parse::<Ipv4Addr>().ok()?), None)),
    }
}

/// A port number, or a service name this build knows (the /etc/services names operators type).
fn parse_port(p: &str) -> Option<u16> {
    if let Ok(n) = p.parse::<u16>() {
        return Some(n);
    }
    crate::listing::SERVICES.iter().find(|(_, name)| *name == p).map(|(n, _)| *n)
}

/// `master` or `backup`, as --start-daemon / --stop-daemon take it.
fn daemon_master(v: Option<&str>, what: &str) -> Result<bool, ParseError> {
    match v {
        Some("master") => Ok(true),
        Some("backup") => Ok(false),
        _ => Err(fail(format!("illegal {what} parameter specified"))),
    }
}

fn number(s: &str, min: u64, max: u64) -> Option<u32> {
    let n: u64 = s.parse().ok()?;
    (min..=max).contains(&n).then_some(n as u32)
}

impl Parser {
    fn set_command(&mut self, c: Cmd) -> Result<(), ParseError> {
        if self.cmd.is_some() {
            return Err(fail("multiple commands specified"));
        }
        self.cmd = Some(c);
        Ok(())
    }

    /// ipvsadm's tunnel checks: tunnel options only with -i, and each tunnel type's own (its
    /// compulsory, illegal and mutually exclusive options); then the tunnel `fwd` names.
    fn check_tunnel(&self, fwd: &mut Fwd) -> Result<(), ParseError> {
        let given = |o: Opt| self.options & (1 << (o as usize)) != 0;
        let any = [Opt::TunType, Opt::TunPort, Opt::TunNocsum, Opt::TunCsum, Opt::TunRemcsum]
            .into_iter()
            .any(given);
        let Fwd::Tunnel(t) = fwd else {
            return if any { Err(fail("Tunnel options conflict with forward method")) } else { Ok(()) };
        };
        let (name, rules) = TUN_LEGAL.get(self.tun_type).copied().unwrap_or(TUN_LEGAL[0]);
        let mut last = None;
        for (o, rule) in TUN_OPTS.into_iter().zip(rules.iter()) {
            let opt = OPT_NAMES[o as usize];
            match (given(o), rule) {
                (false, b'+') => {
                    return Err(fail(format!(
                        "You need to supply the '{opt}' option for the '{name}' tunnel type"
                    )));
                }
                (true, b'x') => {
                    return Err(fail(format!("Illegal '{opt}' option with the '{name}' tunnel type")));
                }
                (true, b'1') => match last {
                    None => last = Some(opt),
                    Some(first) => {
                        return Err(fail(format!(
                            "The option '{opt}' conflicts with the '{first}' option in the '{name}' tunnel type"
                        )));
                    }
                },
                _ => {}
            }
        }
        *t = match name {
            "gue" => TunnelType::Gue { port: self.tun_port, csum: self.tun_csum },
            "gre" => TunnelType::Gre { csum: self.tun_csum },
            _ => TunnelType::Ipip,
        };
        Ok(())
    }

    fn set_option(&mut self, o: Opt) -> Result<(), ParseError> {
        let bit = 1u32 << (o as usize);
        if self.options & bit != 0 {
            return Err(fail(format!("multiple '{}' options specified", OPT_NAMES[o as usize])));
        }
        self.options |= bit;
        Ok(())
    }

    fn service(&mut self, protocol: u8, v: &str) -> Result<(), ParseError> {
        self.set_option(Opt::Service)?;
        let (addr, port) =
            parse_addr_port(v).ok_or_else(|| fail("illegal virtual server address[:port] specified"))?;
        self.svc_port_given = port.is_some();
        self.key = Some(ServiceKey::Addr { protocol, addr, port: port.unwrap_or(0) });
        Ok(())
    }

    fn apply(&mut self, tag: Tag, v: Option<&str>) -> Result<(), ParseError> {
        let val = || v.unwrap_or_default();
        match tag {
            Tag::Cmd(c) => {
                self.set_command(c)?;
                if matches!(c, Cmd::StartDaemon | Cmd::StopDaemon) {
                    self.daemon_state = Some(val().to_owned());
                }
            }
            Tag::McastInterface => {
                self.set_option(Opt::McastInterface)?;
                // IP_VS_IFNAME_MAXLEN: 16 with the terminating NUL.
                if val().is_empty() || val().len() >= 16 {
                    return Err(fail("illegal multicast interface name specified"));
                }
                self.mcast_interface = Some(val().to_owned());
            }
            Tag::SyncId => {
                self.set_option(Opt::SyncId)?;
                let id = number(val(), 0, 255).ok_or_else(|| fail("illegal syncid specified"))?;
                self.syncid = Some(u8::try_from(id).unwrap_or(0));
            }
            Tag::Daemon => {
                self.set_option(Opt::Daemon)?;
                self.format = ListFormat::Daemon;
            }
            Tag::Help => self.help = true,
            Tag::Version => self.version = true,
            Tag::Tcp => self.service(proto::TCP, val())?,
            Tag::Udp => self.service(proto::UDP, val())?,
            Tag::Sctp => self.service(proto::SCTP, val())?,
            Tag::Fwmark => {
                self.set_option(Opt::Service)?;
                let mark = number(val(), 1, u64::from(u32::MAX))
                    .ok_or_else(|| fail(format!("invalid fwmark value `{}' specified", val())))?;
                self.key = Some(ServiceKey::Fwmark { mark, v6: false });
            }
            Tag::Ipv6 => match &mut self.key {
                Some(ServiceKey::Fwmark { v6, .. }) => *v6 = true,
                _ => return Err(fail("-6 used before -f")),
            },
            Tag::Scheduler => {
                self.set_option(Opt::Scheduler)?;
                self.sched = Some(
                    SchedulerKind::from_name(val())
                        .ok_or_else(|| fail("Scheduler not found: ip_vs_".to_owned() + val() + ".ko"))?,
                );
            }
            Tag::Persistent => {
                self.set_option(Opt::Persistent)?;
                self.persistent = Some(match v {
                    None => 360,
                    Some(t) => number(t, 1, 86400 * 31)
                        .ok_or_else(|| fail("illegal timeout for persistent service"))?,
                });
            }
            Tag::Netmask => {
                self.set_option(Opt::Netmask)?;
                self.netmask = Some(val().to_owned());
            }
            Tag::Server => {
                self.set_option(Opt::Server)?;
                self.server = Some(
                    parse_addr_port(val())
                        .ok_or_else(|| fail("illegal real server address[:port] specified"))?,
                );
            }
            Tag::Masq | Tag::Ipip | Tag::Gate => {
                self.set_option(Opt::Forward)?;
                self.fwd = Some(match tag {
                    Tag::Masq => Fwd::Masq,
                    Tag::Ipip => Fwd::Tunnel(TunnelType::Ipip),
                    _ => Fwd::Route,
                });
            }
            Tag::TunType => {
                self.set_option(Opt::TunType)?;
                let v = val();
                self.tun_type = TUN_LEGAL
                    .iter()
                    .position(|(name, _)| *name == v)
                    .ok_or_else(|| fail("illegal tunnel type specified"))?;
            }
            Tag::TunPort => {
                self.set_option(Opt::TunPort)?;
                self.tun_port = number(val(), 1, 65535)
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| fail("illegal tunnel port specified"))?;
            }
            Tag::TunNocsum | Tag::TunCsum | Tag::TunRemcsum => {
                let (opt, csum) = match tag {
                    Tag::TunNocsum => (Opt::TunNocsum, TunCsum::NoCsum),
                    Tag::TunCsum => (Opt::TunCsum, TunCsum::Csum),
                    _ => (Opt::TunRemcsum, TunCsum::RemCsum),
                };
                self.set_option(opt)?;
                self.tun_csum = csum;
            }
            Tag::TunInfo => {
                self.set_option(Opt::TunInfo)?;
                self.format = ListFormat::TunInfo;
            }
            Tag::Weight => {
                self.set_option(Opt::Weight)?;
                self.weight = Some(number(val(), 0, 65535).ok_or_else(|| fail("illegal weight specified"))?);
            }
            Tag::UThreshold => {
                self.set_option(Opt::UThreshold)?;
                self.u_threshold =
                    number(val(), 0, i32::MAX as u64).ok_or_else(|| fail("illegal u_threshold specified"))?;
            }
            Tag::LThreshold => {
                self.set_option(Opt::LThreshold)?;
                self.l_threshold =
                    number(val(), 0, i32::MAX as u64).ok_or_else(|| fail("illegal l_threshold specified"))?;
            }
            Tag::Numeric => {
                self.set_option(Opt::Numeric)?;
                self.numeric = true;
            }
            Tag::Connection => {
                self.set_option(Opt::Connection)?;
                self.format = ListFormat::Connections;
            }
            Tag::TimeoutOpt => {
                self.set_option(Opt::Timeout)?;
                self.format = ListFormat::Timeout;
            }
            Tag::Stats => {
                self.set_option(Opt::Stats)?;
                self.format = ListFormat::Stats;
            }
            Tag::Rate => {
                self.set_option(Opt::Rate)?;
                self.format = ListFormat::Rate;
            }
            Tag::Thresholds => {
                self.set_option(Opt::Thresholds)?;
                self.format = ListFormat::Thresholds;
            }
            Tag::PersistentConn => {
                self.set_option(Opt::PersistentConn)?;
                self.format = ListFormat::PersistentConn;
            }
            Tag::NoSort => {
                self.set_option(Opt::NoSort)?;
                self.nosort = true;
            }
            Tag::Sort => {}
            Tag::Exact => {
                self.set_option(Opt::Exact)?;
                self.exact = true;
            }
            Tag::Ops => {
                self.set_option(Opt::OnePacket)?;
                self.one_packet = true;
            }
            Tag::SchedFlags => {
                self.set_option(Opt::SchedFlags)?;
                self.flags = Some(val().to_owned());
            }
            Tag::Unsupported(name) => return Err(fail(format!("option '--{name}' is not supported by rvs"))),
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Command, ParseError> {
        if self.help {
            return Ok(Command::Help);
        }
        if self.version {
            return Ok(Command::Version);
        }
        let Some(cmd) = self.cmd else {
            // Options without a command list, as ipvsadm does (`ipvsadm -n`).
            self.cmd = Some(Cmd::List);
            return self.finish();
        };
        let ci = cmd as usize;
        let (mut exclusive, mut last) = (0, 0usize);
        for j in 0..OPT_NAMES.len() {
            let rule = LEGAL[ci][j];
            let given = self.options & (1 << j) != 0;
            if !given && rule == b'+' {
                return Err(fail(format!(
                    "You need to supply the '{}' option for the '{}' command",
                    OPT_NAMES[j], CMD_NAMES[ci]
                )));
            }
            if given && rule == b'x' {
                return Err(fail(format!(
                    "Illegal '{}' option with the '{}' command",
                    OPT_NAMES[j], CMD_NAMES[ci]
                )));
            }
            if given && rule == b'1' {
                exclusive += 1;
                if exclusive > 1 {
                    return Err(fail(format!(
                        "The option '{}' conflicts with '{}' option in the '{}' command",
                        OPT_NAMES[j], OPT_NAMES[last], CMD_NAMES[ci]
                    )));
                }
                last = j;
            }
        }
        Ok(match cmd {
            Cmd::Add | Cmd::Edit => {
                let cfg = self.service_config()?;
                if cmd == Cmd::Add {
                    Command::Change(Op::AddService(cfg))
                } else {
                    Command::Change(Op::EditService(cfg))
                }
            }
            Cmd::Del => Command::Change(Op::DelService(self.key.ok_or_else(|| fail("Service not defined"))?)),
            Cmd::Flush => Command::Change(Op::Clear),
            Cmd::List => Command::List(ListOptions {
                service: self.key,
                numeric: self.numeric,
                format: self.format,
                exact: self.exact,
                nosort: self.nosort,
            }),
            Cmd::AddDest | Cmd::EditDest | Cmd::DelDest => {
                let key = self.key.ok_or_else(|| fail("Service not defined"))?;
                let (addr, port) =
                    self.server.ok_or_else(|| fail("illegal real server address[:port] specified"))?;
                // ipvsadm: a real server without a port inherits the virtual port.
                let port = port.unwrap_or(key.port());
                let mut fwd = self.fwd.unwrap_or(Fwd::Route);
                self.check_tunnel(&mut fwd)?;
                let d = DestConfig {
                    addr,
                    port,
                    fwd,
                    weight: self.weight.unwrap_or(1),
                    u_threshold: self.u_threshold,
                    l_threshold: self.l_threshold,
                };
                match cmd {
                    Cmd::AddDest => Command::Change(Op::AddDest(key, d)),
                    Cmd::EditDest => Command::Change(Op::EditDest(key, d)),
                    _ => Command::Change(Op::DelDest(key, addr, port)),
                }
            }
            Cmd::Timeout => {
                if self.set_args.len() != 3 {
                    return Err(fail("--set requires three arguments: TCP TCPFIN UDP"));
                }
                let t =
                    |s: &str| number(s, 0, 86400 * 31).ok_or_else(|| fail(format!("illegal timeout {s}")));
                Command::Change(Op::SetTimeouts {
                    tcp: t(&self.set_args[0])?,
                    tcp_fin: t(&self.set_args[1])?,
                    udp: t(&self.set_args[2])?,
                })
            }
            Cmd::Restore => Command::Restore,
            Cmd::Save => Command::Save { numeric: self.numeric },
            Cmd::Zero => Command::Change(Op::Zero(self.key)),
            Cmd::StartDaemon => Command::StartDaemon {
                master: daemon_master(self.daemon_state.as_deref(), "start-daemon")?,
                mcast_interface: self
                    .mcast_interface
                    .clone()
                    .unwrap_or_else(|| DEFAULT_MCAST_INTERFACE.to_owned()),
                syncid: self.syncid.unwrap_or(0),
            },
            Cmd::StopDaemon => {
                Command::StopDaemon { master: daemon_master(self.daemon_state.as_deref(), "stop_daemon")? }
            }
        })
    }

    fn service_config(&self) -> Result<ServiceConfig, ParseError> {
        let key = self.key.ok_or_else(|| fail("Service not defined"))?;
        if self.one_packet && !matches!(key, ServiceKey::Addr { protocol: proto::UDP, .. }) {
            return Err(fail("One-Packet Scheduling is only for UDP virtual services"));
        }
        if let ServiceKey::Addr { port: 0, .. } = key {
            if self.persistent.is_none() {
                return Err(fail("Zero port specified for non-persistent service"));
            }
        }
        let scheduler = self.sched.unwrap_or(SchedulerKind::Wlc);
        let mut cfg = ServiceConfig::new(key, scheduler);
        cfg.one_packet = self.one_packet;
        if let Some(timeout) = self.persistent {
            let prefix_len = match (&self.netmask, key.is_v6()) {
                (None, false) => 32,
                (None, true) => 128,
                (Some(m), false) => {
                    let mask: Ipv4Addr =
                        m.parse().map_err(|_| fail("illegal virtual server persistent mask specified"))?;
                    let bits = u32::from(mask);
                    if bits.leading_ones() + bits.trailing_zeros() != 32 {
                        return Err(fail("illegal virtual server persistent mask specified"));
                    }
                    bits.leading_ones() as u8
                }
                (Some(m), true) => {
                    number(m, 1, 128).ok_or_else(|| fail("illegal ipv6 netmask specified"))? as u8
                }
            };
            cfg.persistence = Some(Persistence { timeout_seconds: timeout, prefix_len });
        } else if self.netmask.is_some() {
            return Err(fail("Illegal 'netmask' option without 'persistent' option"));
        }
        if let Some(f) = &self.flags {
            cfg.flags = parse_sched_flags(f, scheduler)?;
        }
        Ok(cfg)
    }
}

/// `-b`: comma-separated flag names; sh-/mh- names only with their scheduler.
fn parse_sched_flags(s: &str, sched: SchedulerKind) -> Result<SchedFlags, ParseError> {
    let mut f = SchedFlags::default();
    for name in s.split(',') {
        match (name, sched) {
            ("flag-1", _) | ("sh-fallback", SchedulerKind::Sh) | ("mh-fallback", SchedulerKind::Mh) => {
                f.fallback = true
            }
            ("flag-2", _) | ("sh-port", SchedulerKind::Sh) | ("mh-port", SchedulerKind::Mh) => f.port = true,
            ("flag-3", _) => f.flag3 = true,
            _ => return Err(fail(format!("invalid scheduler flag {name}"))),
        }
    }
    Ok(f)
}

/// Every long option with its short letter (if it has one) and whether it takes an argument, in
/// the grammar's own order: what the manual page and the shell completions are built from.
pub(crate) fn option_table() -> Vec<(&'static str, Option<char>, bool)> {
    LONG.iter()
        .map(|&(long, tag, arg)| {
            let short = SHORT.iter().find(|&&(_, t, _)| t == tag).map(|&(c, _, _)| c);
            (long, short, arg != Arg::None)
        })
        .collect()
}
