//! keepalived.conf as a rules source: the LVS part of keepalived's configuration (`virtual_server`,
//! `virtual_server_group`, `real_server` and the checker blocks) read as keepalived reads it, turned
//! into IPVS services and the health checks that keep their servers honest.
//!
//! The file is read in two steps: [`lex`] turns the text (and every `include`d file) into words and
//! braces, remembering file and line, and [`tree`] groups them into keyword nodes with optional
//! blocks. Only then are the LVS blocks interpreted. Sections rvs does not act on (`global_defs`,
//! `vrrp_instance`, `vrrp_script`, ...) are skipped whole, so one file keeps serving a keepalived that
//! runs VRRP beside rvs. Inside the LVS blocks an unknown keyword, or one keepalived knows but rvs
//! does not support, is an error naming file, line and keyword: a check or a setting that is silently
//! dropped is worse than a director that refuses to start.
//!
//! Defaults are keepalived's (man keepalived.conf): `delay_loop` 60 s, `connect_timeout` 5 s,
//! `retry` 1, `delay_before_retry` 1 s, `lb_kind` NAT, `lb_algo` wlc (IPVS's own default), weight 1,
//! `quorum` 1, `hysteresis` 0, HTTP status 200-299.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rvs_ipvs::{
    DestConfig, Fwd, Persistence, SchedFlags, SchedulerKind, ServiceConfig, ServiceKey, TunCsum, TunnelType,
};

/// What is wrong with a keepalived configuration; always names where.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeepalivedError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{file}:{line}: {reason}")]
    Syntax { file: String, line: usize, reason: String },
    #[error("{file}:{line}: unknown keyword `{keyword}` in {block}")]
    UnknownKeyword { file: String, line: usize, keyword: String, block: String },
    #[error("{file}:{line}: `{keyword}` is keepalived's but rvs does not support it{why}")]
    Unsupported { file: String, line: usize, keyword: String, why: String },
    #[error("{file}:{line}: `{keyword}`: {reason}")]
    Value { file: String, line: usize, keyword: String, reason: String },
}

/// The LVS part of a keepalived configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeepalivedConf {
    pub virtual_servers: Vec<VirtualServer>,
}

/// One `virtual_server` block: one service, or one per member of its group, with the same servers.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualServer {
    /// How logs and metrics name it: `192.0.2.2:80`, `fwmark 1`, `group NAME`.
    pub name: String,
    pub services: Vec<ServiceConfig>,
    /// Least total weight of live servers for the service to count as up.
    pub quorum: u32,
    pub hysteresis: u32,
    /// Takes the traffic while the quorum is lost.
    pub sorry: Option<DestConfig>,
    /// The sorry server stays listed with weight 0 while it is not in use.
    pub sorry_inhibit: bool,
    pub quorum_up: Option<String>,
    pub quorum_down: Option<String>,
    /// Servers start as failed until a check passes (keepalived's `alpha`).
    pub alpha: bool,
    pub reals: Vec<RealServer>,
}

/// One `real_server` block.
#[derive(Debug, Clone, PartialEq)]
pub struct RealServer {
    pub dest: DestConfig,
    /// A failed server stays listed with weight 0 (its connections drain) instead of being removed.
    pub inhibit_on_failure: bool,
    pub notify_up: Option<String>,
    pub notify_down: Option<String>,
    /// All must pass for the server to be up; none: always up.
    pub checkers: Vec<Checker>,
}

/// One checker block of a real server.
#[derive(Debug, Clone, PartialEq)]
pub struct Checker {
    pub kind: CheckKind,
    /// Where the check connects (`connect_ip`/`connect_port`, else the real server's).
    pub target: SocketAddr,
    /// Source address (`bindto`), else the kernel's choice: a port address on a kernel twin.
    pub bindto: Option<IpAddr>,
    pub connect_timeout: Duration,
    /// Further attempts after a failure before the server is declared down.
    pub retry: u32,
    pub delay_before_retry: Duration,
    /// Time between checks.
    pub delay_loop: Duration,
    /// The first check waits a random time up to this.
    pub warmup: Duration,
    /// Starts as failed (keepalived's `alpha` on the checker or its virtual server).
    pub alpha: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// TCP_CHECK: the connection completes.
    Tcp,
    /// HTTP_GET, SSL_GET (`tls`): every url answers with an expected status (and body digest).
    Http { tls: bool, urls: Vec<UrlCheck>, virtualhost: Option<String>, sni: bool },
    /// MISC_CHECK: a command's exit status (0 up; with `dynamic`, 2..255 up with weight status-2).
    Misc { command: String, timeout: Option<Duration>, dynamic: bool },
    /// PING_CHECK: an ICMP echo is answered.
    Ping,
    /// DNS_CHECK: a query of `qtype` for `name` over UDP is answered (same ID, a response).
    Dns { qtype: u16, name: String },
    /// UDP_CHECK: `payload` (random when empty) draws no ICMP error within the timeout; with
    /// `require_reply`, a reply of `min..=max` bytes whose first bytes match the pattern (None: any).
    Udp { payload: Vec<u8>, require_reply: Option<Vec<Option<u8>>>, min_len: usize, max_len: usize },
    /// SMTP_CHECK: the server greets with 220 and accepts HELO with 250.
    Smtp { helo_name: Option<String> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct UrlCheck {
    pub path: String,
    /// MD5 of the body.
    pub digest: Option<[u8; 16]>,
    /// Inclusive ranges; empty means 200-299.
    pub status: Vec<(u16, u16)>,
    pub virtualhost: Option<String>,
}

impl UrlCheck {
    pub fn accepts(&self, status: u16) -> bool {
        if self.status.is_empty() {
            return (200..=299).contains(&status);
        }
        self.status.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

/// Reads `path` (and its includes) and interprets its LVS blocks.
pub fn load(path: &Path) -> Result<KeepalivedConf, KeepalivedError> {
    let tokens = lex_file(path, 0)?;
    let nodes = tree(&tokens)?;
    interpret(&nodes)
}

/// Interprets configuration text as if read from `name` (tests; includes are relative to `.`).
pub fn parse_str(name: &str, text: &str) -> Result<KeepalivedConf, KeepalivedError> {
    let mut tokens = Vec::new();
    lex(Arc::from(name), Path::new("."), text, 0, &mut tokens)?;
    interpret(&tree(&tokens)?)
}

// ---- words and braces --------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Open,
    Close,
    /// End of a line: a statement ends there.
    Eol,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    file: Arc<str>,
    line: usize,
}

/// Includes nest at most this deep (keepalived's own bound is similar; a file including itself
/// must end in an error, not a stack overflow).
const MAX_INCLUDE_DEPTH: usize = 8;

fn lex_file(path: &Path, depth: usize) -> Result<Vec<Token>, KeepalivedError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| KeepalivedError::Read { path: path.display().to_string(), reason: e.to_string() })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    lex(Arc::from(path.display().to_string().as_str()), dir, &text, depth, &mut out)?;
    Ok(out)
}

fn lex(
    file: Arc<str>,
    dir: &Path,
    text: &str,
    depth: usize,
    out: &mut Vec<Token>,
) -> Result<(), KeepalivedError> {
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let words = split_line(raw).map_err(|reason| KeepalivedError::Syntax {
            file: file.to_string(),
            line,
            reason,
        })?;
        if let Some(Tok::Word(w)) = words.first()
            && w == "include"
        {
            let Some(Tok::Word(pattern)) = words.get(1) else {
                return Err(KeepalivedError::Syntax {
                    file: file.to_string(),
                    line,
                    reason: "include needs a file".into(),
                });
            };
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(KeepalivedError::Syntax {
                    file: file.to_string(),
                    line,
                    reason: format!(
                        "includes nest deeper than {MAX_INCLUDE_DEPTH} (does a file include itself?)"
                    ),
                });
            }
            for path in include_paths(dir, pattern) {
                out.extend(lex_file(&path, depth + 1)?);
            }
            continue;
        }
        out.extend(words.into_iter().map(|tok| Token { tok, file: Arc::clone(&file), line }));
        out.push(Token { tok: Tok::Eol, file: Arc::clone(&file), line });
    }
    Ok(())
}

/// The files an `include` names: a glob pattern, relative to the including file's directory; no
/// match is not an error (keepalived includes `conf.d/*.conf` that may be empty).
fn include_paths(dir: &Path, pattern: &str) -> Vec<PathBuf> {
    let full = if Path::new(pattern).is_absolute() { PathBuf::from(pattern) } else { dir.join(pattern) };
    let Some(text) = full.to_str() else { return Vec::new() };
    let mut found: Vec<PathBuf> = match glob::glob(text) {
        Ok(paths) => paths.filter_map(Result::ok).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    found.sort();
    found
}

/// One line's words: `#` or `!` begins a comment, `"..."` is one word, braces are words of their own.
fn split_line(line: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<Tok>| {
        if !word.is_empty() {
            out.push(Tok::Word(std::mem::take(word)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            // keepalived: a comment starts at '#' or '!' anywhere outside quotes.
            '#' | '!' => break,
            '"' if word.is_empty() => {
                let mut quoted = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some(c) => quoted.push(c),
                        None => return Err("a quoted string does not end on its line".into()),
                    }
                }
                out.push(Tok::Word(quoted));
            }
            '{' | '}' => {
                flush(&mut word, &mut out);
                out.push(if c == '{' { Tok::Open } else { Tok::Close });
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    Ok(out)
}

// ---- keyword nodes ---------------------------------------------------------------------------------

/// A keyword, its arguments, and its block if it has one.
#[derive(Debug, Clone)]
struct Node {
    kw: String,
    args: Vec<String>,
    block: Option<Vec<Node>>,
    file: Arc<str>,
    line: usize,
}

fn tree(tokens: &[Token]) -> Result<Vec<Node>, KeepalivedError> {
    let mut at = 0;
    let nodes = block(tokens, &mut at, None)?;
    Ok(nodes)
}

/// Nodes up to the `}` that closes `opened_at` (or the end, at top level).
fn block(tokens: &[Token], at: &mut usize, opened_at: Option<&Token>) -> Result<Vec<Node>, KeepalivedError> {
    let mut nodes = Vec::new();
    loop {
        let Some(t) = tokens.get(*at) else {
            return match opened_at {
                None => Ok(nodes),
                Some(o) => Err(KeepalivedError::Syntax {
                    file: o.file.to_string(),
                    line: o.line,
                    reason: "this block's `{` has no `}`".into(),
                }),
            };
        };
        *at += 1;
        match &t.tok {
            Tok::Eol => {}
            Tok::Close => {
                return match opened_at {
                    Some(_) => Ok(nodes),
                    None => Err(KeepalivedError::Syntax {
                        file: t.file.to_string(),
                        line: t.line,
                        reason: "`}` without a block to close".into(),
                    }),
                };
            }
            Tok::Open => {
                // A block with no keyword: keepalived skips it; so do we (its contents are not ours).
                block(tokens, at, Some(t))?;
            }
            Tok::Word(kw) => {
                let mut node = Node {
                    kw: kw.clone(),
                    args: Vec::new(),
                    block: None,
                    file: Arc::clone(&t.file),
                    line: t.line,
                };
                while let Some(Token { tok: Tok::Word(w), .. }) = tokens.get(*at) {
                    node.args.push(w.clone());
                    *at += 1;
                }
                // The block may open on the next line ("virtual_server ... \n {").
                let mut look = *at;
                while matches!(tokens.get(look).map(|t| &t.tok), Some(Tok::Eol)) {
                    look += 1;
                }
                if let Some(open @ Token { tok: Tok::Open, .. }) = tokens.get(look) {
                    *at = look + 1;
                    node.block = Some(block(tokens, at, Some(open))?);
                }
                nodes.push(node);
            }
        }
    }
}

// ---- the LVS blocks --------------------------------------------------------------------------------

impl Node {
    fn err_value(&self, reason: impl Into<String>) -> KeepalivedError {
        KeepalivedError::Value {
            file: self.file.to_string(),
            line: self.line,
            keyword: self.kw.clone(),
            reason: reason.into(),
        }
    }
    fn unknown(&self, block: &str) -> KeepalivedError {
        KeepalivedError::UnknownKeyword {
            file: self.file.to_string(),
            line: self.line,
            keyword: self.kw.clone(),
            block: block.into(),
        }
    }
    fn unsupported(&self, why: &str) -> KeepalivedError {
        KeepalivedError::Unsupported {
            file: self.file.to_string(),
            line: self.line,
            keyword: self.kw.clone(),
            why: if why.is_empty() { String::new() } else { format!(" ({why})") },
        }
    }
    fn arg(&self, i: usize) -> Result<&str, KeepalivedError> {
        self.args.get(i).map(String::as_str).ok_or_else(|| self.err_value("a value is missing"))
    }
    fn u32(&self) -> Result<u32, KeepalivedError> {
        self.arg(0)?.parse().map_err(|_| self.err_value(format!("`{}` is not a whole number", self.args[0])))
    }
    fn seconds(&self) -> Result<Duration, KeepalivedError> {
        let v = self.arg(0)?;
        match v.parse::<f64>() {
            Ok(s) if s.is_finite() && (0.0..=86_400.0 * 365.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
            _ => Err(self.err_value(format!("`{v}` is not a time in seconds"))),
        }
    }
    fn ip(&self, i: usize) -> Result<IpAddr, KeepalivedError> {
        let v = self.arg(i)?;
        v.parse().map_err(|_| self.err_value(format!("`{v}` is not an IP address")))
    }
    fn port(&self, i: usize) -> Result<u16, KeepalivedError> {
        let v = self.arg(i)?;
        v.parse().map_err(|_| self.err_value(format!("`{v}` is not a port")))
    }
    /// A script: one word, or one quoted string with its arguments (`notify_up "/path/script arg"`).
    /// keepalived's optional `username [groupname]` after it are read and not used: scripts run as
    /// rvsd's user.
    fn command(&self) -> Result<String, KeepalivedError> {
        self.args.first().cloned().ok_or_else(|| self.err_value("a command is missing"))
    }
    /// A `<BOOL>` that may be left out (then true): on|off, true|false, yes|no.
    fn flag(&self) -> Result<bool, KeepalivedError> {
        match self.args.first().map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("on" | "true" | "yes") => Ok(true),
            Some("off" | "false" | "no") => Ok(false),
            Some(v) => Err(self.err_value(format!("`{v}` is not on|off|true|false|yes|no"))),
        }
    }
    fn children(&self) -> &[Node] {
        self.block.as_deref().unwrap_or(&[])
    }
    fn need_block(&self) -> Result<&[Node], KeepalivedError> {
        self.block.as_deref().ok_or_else(|| self.err_value("needs a `{ ... }` block"))
    }
}

fn interpret(nodes: &[Node]) -> Result<KeepalivedConf, KeepalivedError> {
    let mut groups = std::collections::HashMap::new();
    for n in nodes.iter().filter(|n| n.kw == "virtual_server_group") {
        let name = n.arg(0)?.to_owned();
        groups.insert(name, group_members(n)?);
    }
    let mut conf = KeepalivedConf::default();
    for n in nodes.iter().filter(|n| n.kw == "virtual_server") {
        conf.virtual_servers.push(virtual_server(n, &groups)?);
    }
    // Two blocks must not define the same service (keepalived would fight itself over it).
    let mut seen = std::collections::HashSet::new();
    for (vs, n) in conf.virtual_servers.iter().zip(nodes.iter().filter(|n| n.kw == "virtual_server")) {
        for s in &vs.services {
            if !seen.insert(s.key) {
                return Err(n.err_value(format!("{} is defined twice", vs.name)));
            }
        }
    }
    Ok(conf)
}

/// A group member before the virtual server gives it a protocol.
#[derive(Debug, Clone, Copy)]
enum Member {
    Addr(IpAddr, u16),
    Mark(u32),
}

fn group_members(n: &Node) -> Result<Vec<Member>, KeepalivedError> {
    let mut out = Vec::new();
    for m in n.need_block()? {
        if m.kw == "fwmark" {
            out.push(Member::Mark(m.u32()?));
            continue;
        }
        // `192.0.2.10 80` or a range in the last part: `192.0.2.10-20 80`.
        let port = m.port(0)?;
        match m.kw.split_once('-') {
            None => out.push(Member::Addr(
                m.kw.parse().map_err(|_| m.err_value(format!("`{}` is not an address", m.kw)))?,
                port,
            )),
            Some((first, last)) => {
                let first: Ipv4Addr =
                    first.parse().map_err(|_| m.err_value(format!("`{}` is not an address range", m.kw)))?;
                let last: u8 =
                    last.parse().map_err(|_| m.err_value(format!("`{}` is not an address range", m.kw)))?;
                let o = first.octets();
                if last < o[3] {
                    return Err(m.err_value("the range ends before it starts"));
                }
                for x in o[3]..=last {
                    out.push(Member::Addr(IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], x)), port));
                }
            }
        }
    }
    Ok(out)
}

/// What a virtual server hands down to its real servers and their checkers.
#[derive(Debug, Clone)]
struct Inherited {
    fwd: Fwd,
    delay_loop: Duration,
    connect_timeout: Duration,
    retry: Option<u32>,
    delay_before_retry: Option<Duration>,
    warmup: Option<Duration>,
    alpha: bool,
    inhibit: bool,
    virtualhost: Option<String>,
    vport: u16,
}

/// `lvs_method NAT|DR` or `lvs_method TUN [type {ipip|gue port NUM|gre} [nocsum|csum|remcsum]]`
/// (keepalived.conf(5); `lb_kind` is the older name).
fn fwd_of(n: &Node) -> Result<Fwd, KeepalivedError> {
    let kind = n.arg(0)?.to_ascii_uppercase();
    let rest = n.args.get(1..).unwrap_or_default();
    if kind != "TUN" && !rest.is_empty() {
        return Err(n.err_value(format!("`{}` follows {kind}: only TUN takes a tunnel type", rest.join(" "))));
    }
    match kind.as_str() {
        "NAT" => Ok(Fwd::Masq),
        "DR" => Ok(Fwd::Route),
        "TUN" => tunnel_of(n, rest).map(Fwd::Tunnel),
        v => Err(n.err_value(format!("`{v}` is not NAT, DR or TUN"))),
    }
}

fn tunnel_of(n: &Node, words: &[String]) -> Result<TunnelType, KeepalivedError> {
    let mut w = words.iter().map(String::as_str);
    let ty = match (w.next(), w.next()) {
        (None, _) => return Ok(TunnelType::Ipip),
        (Some("type"), Some(t)) => t,
        (Some(other), _) => return Err(n.err_value(format!("`{other}` after TUN: expected `type`"))),
    };
    let port = if ty == "gue" {
        match (w.next(), w.next().map(str::parse::<u16>)) {
            (Some("port"), Some(Ok(p))) if p > 0 => p,
            _ => return Err(n.err_value("a gue tunnel needs `port NUM` (1-65535)")),
        }
    } else {
        0
    };
    let csum = match w.next() {
        None | Some("nocsum") => TunCsum::NoCsum,
        Some("csum") => TunCsum::Csum,
        Some("remcsum") if ty == "gue" => TunCsum::RemCsum,
        Some(other) => return Err(n.err_value(format!("`{other}` is not a checksum option for {ty}"))),
    };
    if let Some(extra) = w.next() {
        return Err(n.err_value(format!("`{extra}` after the tunnel's options")));
    }
    match ty {
        "ipip" if csum == TunCsum::NoCsum => Ok(TunnelType::Ipip),
        "ipip" => Err(n.err_value("an ipip tunnel has no checksum option")),
        "gue" => Ok(TunnelType::Gue { port, csum }),
        "gre" => Ok(TunnelType::Gre { csum }),
        other => Err(n.err_value(format!("`{other}` is not a tunnel type (ipip, gue or gre)"))),
    }
}

fn virtual_server(
    n: &Node,
    groups: &std::collections::HashMap<String, Vec<Member>>,
) -> Result<VirtualServer, KeepalivedError> {
    let (members, name) = match n.arg(0)? {
        "fwmark" => {
            let mark = n
                .args
                .get(1)
                .and_then(|m| m.parse().ok())
                .ok_or_else(|| n.err_value("fwmark needs a number"))?;
            (vec![Member::Mark(mark)], format!("fwmark {mark}"))
        }
        "group" => {
            let g = n.arg(1)?;
            let m = groups.get(g).ok_or_else(|| n.err_value(format!("no virtual_server_group `{g}`")))?;
            (m.clone(), format!("group {g}"))
        }
        _ => {
            let (addr, port) = (n.ip(0)?, n.port(1)?);
            let name = match addr {
                IpAddr::V4(a) => format!("{a}:{port}"),
                IpAddr::V6(a) => format!("[{a}]:{port}"),
            };
            (vec![Member::Addr(addr, port)], name)
        }
    };
    let mut protocol = 6u8;
    let mut sched = SchedulerKind::Wlc;
    let mut flags = SchedFlags::default();
    let mut persistence_timeout = None;
    let mut granularity = None;
    let mut one_packet = false;
    let mut v6_family = None;
    let mut vs = VirtualServer {
        name,
        services: Vec::new(),
        quorum: 1,
        hysteresis: 0,
        sorry: None,
        sorry_inhibit: false,
        quorum_up: None,
        quorum_down: None,
        alpha: false,
        reals: Vec::new(),
    };
    let vport = match members.first() {
        Some(Member::Addr(_, p)) => *p,
        _ => 0,
    };
    let mut inh = Inherited {
        fwd: Fwd::Masq,
        delay_loop: Duration::from_secs(60),
        connect_timeout: Duration::from_secs(5),
        retry: None,
        delay_before_retry: None,
        warmup: None,
        alpha: false,
        inhibit: false,
        virtualhost: None,
        vport,
    };
    let mut sorry_node = None;
    let mut sorry_fwd = None;
    let body = n.need_block()?;
    for c in body {
        match c.kw.as_str() {
            "delay_loop" => inh.delay_loop = c.seconds()?,
            "lb_algo" | "lvs_sched" => {
                sched = SchedulerKind::from_name(c.arg(0)?)
                    .ok_or_else(|| c.err_value(format!("`{}` is not an IPVS scheduler", c.args[0])))?
            }
            "lb_kind" | "lvs_method" => inh.fwd = fwd_of(c)?,
            "protocol" => {
                protocol = match c.arg(0)?.to_ascii_uppercase().as_str() {
                    "TCP" => 6,
                    "UDP" => 17,
                    "SCTP" => return Err(c.unsupported("SCTP services")),
                    v => return Err(c.err_value(format!("`{v}` is not TCP or UDP"))),
                }
            }
            "persistence_timeout" => {
                persistence_timeout = Some(if c.args.is_empty() { 360 } else { c.u32()? })
            }
            "persistence_granularity" => granularity = Some(c),
            "ops" => one_packet = true,
            "hashed" => {}
            "flag-1" | "sh-fallback" | "mh-fallback" => flags.fallback = true,
            "flag-2" | "sh-port" | "mh-port" => flags.port = true,
            "flag-3" => flags.flag3 = true,
            "quorum" => vs.quorum = c.u32()?,
            "hysteresis" => vs.hysteresis = c.u32()?,
            "quorum_up" => vs.quorum_up = Some(c.command()?),
            "quorum_down" => vs.quorum_down = Some(c.command()?),
            "alpha" => inh.alpha = c.flag()?,
            "omega" => {}
            "sorry_server" => sorry_node = Some(c),
            "sorry_server_inhibit" => vs.sorry_inhibit = c.flag()?,
            "sorry_server_lvs_method" => sorry_fwd = Some(fwd_of(c)?),
            "ip_family" => {
                v6_family = Some(match c.arg(0)? {
                    "inet" => false,
                    "inet6" => true,
                    v => return Err(c.err_value(format!("`{v}` is not inet or inet6"))),
                })
            }
            "retry" => inh.retry = Some(c.u32()?),
            "delay_before_retry" => inh.delay_before_retry = Some(c.seconds()?),
            "warmup" => inh.warmup = Some(c.seconds()?),
            "connect_timeout" => inh.connect_timeout = c.seconds()?,
            "inhibit_on_failure" => inh.inhibit = c.flag()?,
            "virtualhost" => inh.virtualhost = Some(c.arg(0)?.to_owned()),
            // Mail alerts and VRRP coupling are keepalived's own business, not the director's.
            "smtp_alert" | "ha_suspend" | "nat_mask" => {}
            "real_server" => {}
            "persistence_engine" | "tun_type" | "tun_port" | "tun_flags" => {
                return Err(c.unsupported(""));
            }
            _ => return Err(c.unknown("virtual_server")),
        }
    }
    for c in body.iter().filter(|c| c.kw == "real_server") {
        vs.reals.push(real_server(c, &inh)?);
    }
    if let Some(s) = sorry_node {
        let addr = s.ip(0)?;
        let port = if s.args.len() > 1 { s.port(1)? } else { vport };
        let mut d = DestConfig::new(addr, port, sorry_fwd.unwrap_or(inh.fwd));
        d.weight = 1;
        vs.sorry = Some(d);
    }
    vs.alpha = inh.alpha;
    let persistence = match persistence_timeout {
        None => {
            if let Some(g) = granularity {
                return Err(g.err_value("needs persistence_timeout"));
            }
            None
        }
        Some(t) => {
            let v6 =
                matches!(members.first(), Some(Member::Addr(IpAddr::V6(_), _))) || v6_family == Some(true);
            let prefix_len = match granularity {
                None => {
                    if v6 {
                        128
                    } else {
                        32
                    }
                }
                Some(g) => {
                    let v = g.arg(0)?;
                    match (v.parse::<Ipv4Addr>(), v.parse::<u8>()) {
                        (Ok(mask), _) if !v6 => {
                            let bits = u32::from(mask);
                            if bits.leading_ones() + bits.trailing_zeros() != 32 {
                                return Err(g.err_value(format!("`{v}` is not a netmask")));
                            }
                            bits.leading_ones() as u8
                        }
                        (_, Ok(len)) if (1..=128).contains(&len) && (v6 || len <= 32) => len,
                        _ => return Err(g.err_value(format!("`{v}` is not a netmask"))),
                    }
                }
            };
            Some(Persistence { timeout_seconds: t, prefix_len })
        }
    };
    for m in members {
        let key = match m {
            Member::Addr(addr, port) => ServiceKey::Addr { protocol, addr, port },
            Member::Mark(mark) => ServiceKey::Fwmark { mark, v6: v6_family.unwrap_or(false) },
        };
        let mut cfg = ServiceConfig::new(key, sched);
        cfg.flags = flags;
        cfg.persistence = persistence;
        cfg.one_packet = one_packet;
        vs.services.push(cfg);
    }
    Ok(vs)
}

fn real_server(n: &Node, inh: &Inherited) -> Result<RealServer, KeepalivedError> {
    let addr = n.ip(0)?;
    let port = if n.args.len() > 1 { n.port(1)? } else { inh.vport };
    let mut inh = inh.clone();
    let mut rs = RealServer {
        dest: DestConfig::new(addr, port, inh.fwd),
        inhibit_on_failure: inh.inhibit,
        notify_up: None,
        notify_down: None,
        checkers: Vec::new(),
    };
    let body = n.children();
    // Settings first: a checker inherits the real server's, wherever in the block they stand.
    for c in body {
        match c.kw.as_str() {
            "weight" => {
                let w = c.u32()?;
                if w > 65535 {
                    return Err(c.err_value("a weight is 0..65535"));
                }
                rs.dest.weight = w;
            }
            "inhibit_on_failure" => rs.inhibit_on_failure = c.flag()?,
            "notify_up" => rs.notify_up = Some(c.command()?),
            "notify_down" => rs.notify_down = Some(c.command()?),
            "uthreshold" => rs.dest.u_threshold = c.u32()?,
            "lthreshold" => rs.dest.l_threshold = c.u32()?,
            "lvs_method" => rs.dest.fwd = fwd_of(c)?,
            "alpha" => inh.alpha = c.flag()?,
            "retry" => inh.retry = Some(c.u32()?),
            "delay_before_retry" => inh.delay_before_retry = Some(c.seconds()?),
            "warmup" => inh.warmup = Some(c.seconds()?),
            "delay_loop" => inh.delay_loop = c.seconds()?,
            "connect_timeout" => inh.connect_timeout = c.seconds()?,
            "virtualhost" => inh.virtualhost = Some(c.arg(0)?.to_owned()),
            "smtp_alert" | "snmp_name" => {}
            "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "MISC_CHECK" | "PING_CHECK" | "SMTP_CHECK"
            | "DNS_CHECK" | "UDP_CHECK" => {}
            "BFD_CHECK" | "FILE_CHECK" => {
                return Err(c.unsupported("they follow BFD sessions and track files rvs does not run"));
            }
            "tun_type" | "tun_port" | "tun_flags" => return Err(c.unsupported("")),
            _ => return Err(c.unknown("real_server")),
        }
    }
    for c in body {
        if matches!(
            c.kw.as_str(),
            "TCP_CHECK"
                | "HTTP_GET"
                | "SSL_GET"
                | "MISC_CHECK"
                | "PING_CHECK"
                | "SMTP_CHECK"
                | "DNS_CHECK"
                | "UDP_CHECK"
        ) {
            rs.checkers.push(checker(c, &rs.dest, &inh)?);
        }
    }
    Ok(rs)
}

fn checker(n: &Node, dest: &DestConfig, inh: &Inherited) -> Result<Checker, KeepalivedError> {
    let mut kind = match n.kw.as_str() {
        "TCP_CHECK" => CheckKind::Tcp,
        "HTTP_GET" | "SSL_GET" => CheckKind::Http {
            tls: n.kw == "SSL_GET",
            urls: Vec::new(),
            virtualhost: inh.virtualhost.clone(),
            sni: false,
        },
        "MISC_CHECK" => CheckKind::Misc { command: String::new(), timeout: None, dynamic: false },
        "DNS_CHECK" => CheckKind::Dns { qtype: 6, name: ".".into() },
        "UDP_CHECK" => CheckKind::Udp { payload: Vec::new(), require_reply: None, min_len: 0, max_len: 255 },
        "SMTP_CHECK" => CheckKind::Smtp { helo_name: None },
        _ => CheckKind::Ping,
    };
    // keepalived's per-checker defaults: DNS_CHECK retries 3 times, MISC_CHECK none, the others
    // once; HTTP_GET and SSL_GET wait 3 s before a retry, DNS_CHECK a delay_loop, the others 1 s.
    let default_retry = match n.kw.as_str() {
        "DNS_CHECK" => 3,
        "MISC_CHECK" => 0,
        _ => 1,
    };
    let default_delay = match n.kw.as_str() {
        "HTTP_GET" | "SSL_GET" => Duration::from_secs(3),
        "DNS_CHECK" => inh.delay_loop,
        _ => Duration::from_secs(1),
    };
    let (mut ip, mut port) = (dest.addr, dest.port);
    let mut c = Checker {
        kind: CheckKind::Tcp,
        target: SocketAddr::new(ip, port),
        bindto: None,
        connect_timeout: inh.connect_timeout,
        retry: inh.retry.unwrap_or(default_retry),
        delay_before_retry: inh.delay_before_retry.unwrap_or(default_delay),
        delay_loop: inh.delay_loop,
        warmup: Duration::ZERO,
        alpha: inh.alpha,
    };
    let mut warmup = inh.warmup;
    for k in n.children() {
        let here = n.kw.as_str();
        match (k.kw.as_str(), &mut kind) {
            ("connect_ip", _) => ip = k.ip(0)?,
            ("connect_port", _) => port = k.port(0)?,
            ("bindto", _) => c.bindto = Some(k.ip(0)?),
            ("connect_timeout", _) => c.connect_timeout = k.seconds()?,
            ("retry" | "nb_get_retry", _) => c.retry = k.u32()?,
            ("delay_before_retry", _) => c.delay_before_retry = k.seconds()?,
            ("delay_loop", _) => c.delay_loop = k.seconds()?,
            ("warmup", _) => warmup = Some(k.seconds()?),
            ("alpha", _) => c.alpha = k.flag()?,
            ("log_all_failures", _) => {}
            ("bind_port" | "bind_if" | "fwmark", _) => return Err(k.unsupported("")),
            ("fast_recovery", CheckKind::Http { .. }) => {}
            ("type", CheckKind::Dns { qtype, .. }) => {
                *qtype = match k.arg(0)?.to_ascii_uppercase().as_str() {
                    "A" => 1,
                    "NS" => 2,
                    "CNAME" => 5,
                    "SOA" => 6,
                    "MX" => 15,
                    "TXT" => 16,
                    "AAAA" => 28,
                    v => return Err(k.err_value(format!("`{v}` is not A, NS, CNAME, SOA, MX, TXT or AAAA"))),
                }
            }
            ("name", CheckKind::Dns { name, .. }) => *name = k.arg(0)?.to_owned(),
            ("payload", CheckKind::Udp { payload, .. }) => {
                *payload = hex_pattern(k, false)?.into_iter().map(|b| b.unwrap_or(0)).collect();
            }
            ("require_reply", CheckKind::Udp { require_reply, .. }) => {
                *require_reply = Some(if k.args.is_empty() { Vec::new() } else { hex_pattern(k, true)? });
            }
            ("min_reply_length", CheckKind::Udp { min_len, .. }) => *min_len = k.u32()? as usize,
            ("max_reply_length", CheckKind::Udp { max_len, .. }) => *max_len = k.u32()? as usize,
            ("helo_name", CheckKind::Smtp { helo_name }) => *helo_name = Some(k.arg(0)?.to_owned()),
            ("url", CheckKind::Http { urls, .. }) => urls.push(url(k)?),
            ("virtualhost", CheckKind::Http { virtualhost, .. }) => *virtualhost = Some(k.arg(0)?.to_owned()),
            ("enable_sni", CheckKind::Http { sni, tls: true, .. }) => *sni = true,
            ("http_protocol", CheckKind::Http { .. }) => match k.arg(0)? {
                "1.0" | "1.1" | "1.0C" | "1.0K" => {}
                v => return Err(k.err_value(format!("`{v}` is not 1.0, 1.1, 1.0C or 1.0K"))),
            },
            ("misc_path", CheckKind::Misc { command, .. }) => *command = k.command()?,
            ("misc_timeout", CheckKind::Misc { timeout, .. }) => *timeout = Some(k.seconds()?),
            ("misc_dynamic", CheckKind::Misc { dynamic, .. }) => *dynamic = true,
            // Scripts run as rvsd's user; the user and group are read and not used.
            ("user", CheckKind::Misc { .. }) => {}
            _ => return Err(k.unknown(here)),
        }
    }
    match &kind {
        CheckKind::Http { urls, .. } if urls.is_empty() => {
            return Err(n.err_value("needs at least one url block"));
        }
        CheckKind::Misc { command, .. } if command.is_empty() => return Err(n.err_value("needs misc_path")),
        CheckKind::Tcp | CheckKind::Http { .. } | CheckKind::Udp { .. } | CheckKind::Smtp { .. }
            if port == 0 =>
        {
            return Err(n.err_value("the real server has no port: give connect_port"));
        }
        _ => {}
    }
    if matches!(kind, CheckKind::Dns { .. }) && port == 0 {
        port = 53;
    }
    c.kind = kind;
    c.target = SocketAddr::new(ip, port);
    // keepalived spreads the first checks over up to a delay_loop unless warmup says otherwise.
    c.warmup = warmup.unwrap_or(c.delay_loop);
    Ok(c)
}

/// keepalived's free-form hex (`Ab12f 3 456`: pairs of digits, a lone digit in a group is a byte
/// of its own), with `x` for an ignored nibble when `wild`.
fn hex_pattern(n: &Node, wild: bool) -> Result<Vec<Option<u8>>, KeepalivedError> {
    let mut out = Vec::new();
    for group in &n.args {
        let digits: Vec<char> = group.chars().collect();
        for pair in digits.chunks(2) {
            let nib = |c: char| -> Result<Option<u8>, KeepalivedError> {
                if wild && (c == 'x' || c == 'X') {
                    return Ok(None);
                }
                c.to_digit(16)
                    .and_then(|d| u8::try_from(d).ok())
                    .map(Some)
                    .ok_or_else(|| n.err_value(format!("`{group}` is not hex")))
            };
            let b = match pair {
                [a] => nib(*a)?,
                [a, b] => match (nib(*a)?, nib(*b)?) {
                    (Some(a), Some(b)) => Some(a << 4 | b),
                    _ => None,
                },
                _ => None,
            };
            out.push(b);
        }
    }
    Ok(out)
}

fn url(n: &Node) -> Result<UrlCheck, KeepalivedError> {
    let mut u = UrlCheck { path: String::new(), digest: None, status: Vec::new(), virtualhost: None };
    for k in n.need_block()? {
        match k.kw.as_str() {
            "path" => u.path = k.arg(0)?.to_owned(),
            "digest" => {
                let hex = k.arg(0)?;
                let mut d = [0u8; 16];
                if hex.len() != 32 || !hex.is_ascii() {
                    return Err(k.err_value("an MD5 digest is 32 hex digits"));
                }
                for (i, b) in d.iter_mut().enumerate() {
                    *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                        .map_err(|_| k.err_value("an MD5 digest is 32 hex digits"))?;
                }
                u.digest = Some(d);
            }
            "status_code" => {
                for v in &k.args {
                    let range = match v.split_once('-') {
                        Some((a, b)) => (a.parse::<u16>(), b.parse::<u16>()),
                        None => (v.parse(), v.parse()),
                    };
                    match range {
                        (Ok(a), Ok(b)) if (100..=599).contains(&a) && a <= b && b <= 599 => {
                            u.status.push((a, b))
                        }
                        _ => return Err(k.err_value(format!("`{v}` is not a status code or range"))),
                    }
                }
                if k.args.is_empty() {
                    return Err(k.err_value("a status code is missing"));
                }
            }
            "virtualhost" => u.virtualhost = Some(k.arg(0)?.to_owned()),
            "regex" | "regex_no_match" | "regex_options" | "regex_stack" | "regex_min_offset"
            | "regex_max_offset" => {
                return Err(k.unsupported("use digest or status_code"));
            }
            _ => return Err(k.unknown("url")),
        }
    }
    if u.path.is_empty() {
        return Err(n.err_value("needs a path"));
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The virtual servers of keepalived's own sample (keepalived.conf.sample and
    /// keepalived.conf.HTTP_GET / keepalived.conf.SSL_GET in its samples/), as shipped, around VRRP
    /// and global sections that rvs skips.
    const SAMPLE: &str = r#"
! Configuration File for keepalived

global_defs {
   notification_email {
     acassen@firewall.loc
   }
   notification_email_from Alexandre.Cassen@firewall.loc
   smtp_server 192.168.200.1
   smtp_connect_timeout 30
   router_id LVS_DEVEL
}

vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 100
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass 1111
    }
    virtual_ipaddress {
        192.168.200.16
        192.168.200.17
    }
}

virtual_server 192.168.200.100 443 {
    delay_loop 6
    lb_algo rr
    lb_kind NAT
    persistence_timeout 50
    protocol TCP

    real_server 192.168.201.100 443 {
        weight 1
        SSL_GET {
            url {
              path /
              digest ff20ad2481f97b1754ef3e12ecd3a9cc
            }
            url {
              path /mrtg/
              digest 9b3a0c85a887a256d6939da88aabd8cd
            }
            connect_timeout 3
            retry 3
            delay_before_retry 3
        }
    }
}

virtual_server 10.10.10.2 1358 {
    delay_loop 6
    lb_algo rr
    lb_kind NAT
    persistence_timeout 50
    protocol TCP

    sorry_server 192.168.200.200 1358

    real_server 192.168.200.2 1358 {
        weight 1
        HTTP_GET {
            url {
              path /testurl/test.jsp
              digest 640205b7b0fc66c1ea91c463fac6334d
            }
            connect_timeout 3
            retry 3
            delay_before_retry 3
        }
    }
}

virtual_server 10.10.10.3 1358 {
    delay_loop 3
    lb_algo rr
    lb_kind DR
    persistence_timeout 50
    protocol TCP

    real_server 192.168.200.4 1358 {
        weight 1
        TCP_CHECK {
            connect_timeout 3
        }
    }
}
"#;

    #[test]
    fn keepalived_samples_read_as_services_servers_and_checks() {
        let c = parse_str("sample.conf", SAMPLE).expect("the sample is valid");
        assert_eq!(c.virtual_servers.len(), 3);
        let ssl = &c.virtual_servers[0];
        assert_eq!(ssl.name, "192.168.200.100:443");
        assert_eq!(ssl.services[0].scheduler, SchedulerKind::Rr);
        assert_eq!(ssl.services[0].persistence, Some(Persistence { timeout_seconds: 50, prefix_len: 32 }));
        let ck = &ssl.reals[0].checkers[0];
        assert_eq!(
            (ck.retry, ck.connect_timeout, ck.delay_before_retry),
            (3, Duration::from_secs(3), Duration::from_secs(3))
        );
        assert_eq!(ck.delay_loop, Duration::from_secs(6));
        let CheckKind::Http { tls: true, urls, .. } = &ck.kind else { panic!("{ck:?}") };
        assert_eq!(urls.len(), 2);
        assert_eq!(urls[1].path, "/mrtg/");
        assert_eq!(urls[0].digest.map(|d| d[0]), Some(0xff));
        let sorry = &c.virtual_servers[1];
        assert_eq!(sorry.sorry.map(|d| (d.addr, d.port)), Some(("192.168.200.200".parse().unwrap(), 1358)));
        let dr = &c.virtual_servers[2];
        assert_eq!(dr.reals[0].dest.fwd, Fwd::Route);
        assert_eq!(dr.reals[0].checkers[0].kind, CheckKind::Tcp);
        assert_eq!(dr.reals[0].checkers[0].target, "192.168.200.4:1358".parse().unwrap());
    }

    /// keepalived.conf(5)'s defaults per checker, booleans with or without a value, comments
    /// anywhere, scripts as one word or one quoted string followed by an ignored user.
    #[test]
    fn checker_defaults_booleans_and_comments_as_keepalived_reads_them() {
        let text = "virtual_server 192.0.2.1 53 { # a comment after the brace\n delay_loop 10\n protocol UDP\n\
                    real_server 10.0.0.1 53 {\n inhibit_on_failure off\n alpha yes\n notify_up \"/bin/up arg\" nobody\n\
                    DNS_CHECK {\n type A\n name example.org\n }\n UDP_CHECK {\n payload Ab12f 3\n require_reply 0x\n }\n\
                    MISC_CHECK {\n misc_path /bin/true\n user nobody\n }\n HTTP_GET {\n url {\n path /!health\n }\n }\n\
                    SMTP_CHECK {\n helo_name mx.example.org\n connect_port 25\n }\n }\n}\n";
        let c = parse_str("d.conf", text).expect("valid");
        let rs = &c.virtual_servers[0].reals[0];
        assert!(!rs.inhibit_on_failure);
        assert_eq!(rs.notify_up.as_deref(), Some("/bin/up arg"));
        let [dns, udp, misc, http, smtp] = &rs.checkers[..] else { panic!("{:?}", rs.checkers) };
        assert_eq!(dns.kind, CheckKind::Dns { qtype: 1, name: "example.org".into() });
        assert_eq!((dns.retry, dns.delay_before_retry, dns.target.port()), (3, Duration::from_secs(10), 53));
        assert!(dns.alpha && dns.warmup == Duration::from_secs(10), "warmup defaults to delay_loop");
        let CheckKind::Udp { payload, require_reply, .. } = &udp.kind else { panic!() };
        assert_eq!(payload, &vec![0xab, 0x12, 0x0f, 0x03]);
        assert_eq!(require_reply, &Some(vec![None]));
        assert_eq!((udp.retry, udp.delay_before_retry), (1, Duration::from_secs(1)));
        assert_eq!(misc.retry, 0);
        assert_eq!(http.delay_before_retry, Duration::from_secs(3));
        let CheckKind::Http { urls, .. } = &http.kind else { panic!() };
        assert_eq!(urls[0].path, "/", "`!` starts a comment anywhere");
        assert_eq!(smtp.kind, CheckKind::Smtp { helo_name: Some("mx.example.org".into()) });
    }

    /// keepalived.conf(5)'s `lvs_method TUN [type {ipip|gue port NUM|gre} [nocsum|csum|remcsum]]`,
    /// on the virtual server (inherited) and on a real server (its own).
    #[test]
    fn tunnel_types_read_as_keepalived_writes_them() {
        let text = "virtual_server 192.0.2.1 80 {\n lvs_method TUN type gue port 6080 csum\n\
                    real_server 10.0.0.1 80 {\n }\n real_server 10.0.0.2 80 {\n lvs_method TUN type gre\n }\n\
                    real_server 10.0.0.3 80 {\n lvs_method TUN\n }\n}\n";
        let c = parse_str("t.conf", text).expect("valid");
        let fwd: Vec<Fwd> = c.virtual_servers[0].reals.iter().map(|r| r.dest.fwd).collect();
        assert_eq!(
            fwd,
            [
                Fwd::Tunnel(TunnelType::Gue { port: 6080, csum: TunCsum::Csum }),
                Fwd::Tunnel(TunnelType::Gre { csum: TunCsum::NoCsum }),
                Fwd::Tunnel(TunnelType::Ipip),
            ]
        );
        for (method, want) in [
            ("TUN type gue", "needs `port NUM`"),
            ("TUN type gre remcsum", "`remcsum` is not a checksum option for gre"),
            ("TUN type vxlan", "`vxlan` is not a tunnel type"),
            ("DR type gre", "only TUN takes a tunnel type"),
            ("TUN type ipip csum", "an ipip tunnel has no checksum option"),
        ] {
            let text = format!("virtual_server 192.0.2.1 80 {{\n lvs_method {method}\n}}\n");
            let e = parse_str("t.conf", &text).expect_err(method).to_string();
            assert!(e.contains(want), "{method}: {e}");
        }
    }

    #[test]
    fn groups_fwmarks_and_granularity() {
        let text = "virtual_server_group web {\n 192.0.2.10-12 80\n fwmark 7\n}\n\
                    virtual_server group web {\n lvs_sched mh\n mh-port\n lvs_method DR\n \
                    persistence_timeout 60\n persistence_granularity 255.255.255.0\n \
                    real_server 203.0.113.11 80 {\n weight 3\n inhibit_on_failure\n }\n}\n";
        let c = parse_str("g.conf", text).expect("valid");
        let vs = &c.virtual_servers[0];
        assert_eq!(vs.services.len(), 4);
        assert_eq!(vs.services[3].key, ServiceKey::Fwmark { mark: 7, v6: false });
        assert!(vs.services[0].flags.port);
        assert_eq!(vs.services[2].persistence, Some(Persistence { timeout_seconds: 60, prefix_len: 24 }));
        assert_eq!((vs.reals[0].dest.weight, vs.reals[0].inhibit_on_failure), (3, true));
    }

    #[test]
    fn errors_name_file_line_and_keyword() {
        let e = parse_str("x.conf", "virtual_server 192.0.2.1 80 {\n  lb_algo rr\n  lb_algoo rr\n}\n")
            .unwrap_err();
        assert_eq!(e.to_string(), "x.conf:3: unknown keyword `lb_algoo` in virtual_server");
        let e = parse_str(
            "x.conf",
            "virtual_server 192.0.2.1 80 {\n real_server 10.0.0.1 80 {\n  BFD_CHECK {\n  }\n }\n}\n",
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("x.conf:3: `BFD_CHECK` is keepalived's but rvs does not support it"),
            "{e}"
        );
        let e = parse_str("x.conf", "virtual_server 192.0.2.1 80 {\n lb_algo xx\n}\n").unwrap_err();
        assert_eq!(e.to_string(), "x.conf:2: `lb_algo`: `xx` is not an IPVS scheduler");
        let e = parse_str("x.conf", "virtual_server 192.0.2.1 80 {\n").unwrap_err();
        assert_eq!(e.to_string(), "x.conf:1: this block's `{` has no `}`");
        let e = parse_str("x.conf", "}\n").unwrap_err();
        assert!(matches!(e, KeepalivedError::Syntax { line: 1, .. }));
        let e = parse_str("x.conf", "virtual_server 192.0.2.1 80 {\n real_server 10.0.0.1 80 {\n  HTTP_GET {\n  url {\n  path /\n  status_code 200 5xx\n }}}}\n")
            .unwrap_err();
        assert_eq!(e.to_string(), "x.conf:6: `status_code`: `5xx` is not a status code or range");
        // Sections rvs does not act on may hold anything.
        assert!(parse_str("x.conf", "vrrp_script chk { script \"/bin/true\"\n weird_keyword 1 }\n").is_ok());
    }

    #[test]
    fn includes_nest_and_a_loop_is_an_error() {
        let dir = std::env::temp_dir().join(format!("rvs-ka-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        std::fs::write(dir.join("main.conf"), "include conf.d/*.conf\n").unwrap();
        std::fs::write(dir.join("conf.d/a.conf"), "virtual_server 192.0.2.1 80 { # web\n real_server 10.0.0.1 8080 {\n MISC_CHECK {\n misc_path \"/bin/check --flag\"\n misc_dynamic\n }\n }\n}\n").unwrap();
        let c = load(&dir.join("main.conf")).expect("valid");
        let CheckKind::Misc { command, dynamic: true, .. } = &c.virtual_servers[0].reals[0].checkers[0].kind
        else {
            panic!()
        };
        assert_eq!(command, "/bin/check --flag");
        std::fs::write(dir.join("loop.conf"), "include loop.conf\n").unwrap();
        let e = load(&dir.join("loop.conf")).unwrap_err();
        assert!(e.to_string().contains("nest deeper"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
