//! Health checks of real servers, as keepalived's checkers do them from an LVS director.
//!
//! The checks run on their own thread ("rvs-health"), never on a worker lcore and never on the
//! management loop: a current-thread tokio runtime with one task per checker, so a thousand servers
//! cost one thread and their sockets, and a check that hangs holds only its own task (every step has
//! a timeout). Checks are ordinary kernel sockets: with kernel twins they leave from the director's
//! own port addresses through rvs, as keepalived's leave an LVS director.
//!
//! Each checker publishes its state in a [`CheckCell`] (atomics). The management loop reads the
//! cells every [`Health::poll`] (100 ms), decides which servers are up (all their checkers pass),
//! applies keepalived's quorum and sorry-server rules, and turns the difference between the previous
//! and the new picture into IPVS changes ([`Op`]s), which the daemon applies and publishes as it does
//! rvsadm's. Only the services the keepalived configuration defines are touched.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rvs_ipvs::{DestConfig, Ipvs, Op, ServiceKey};
use tracing::{info, warn};

use crate::keepalived::{CheckKind, Checker, KeepalivedConf, UrlCheck, VirtualServer};

/// A checker's state, written by its task, read by the management loop and the metrics.
#[derive(Debug)]
pub struct CheckCell {
    up: AtomicBool,
    /// misc_dynamic's weight; `NO_WEIGHT` when the check gives none.
    weight: AtomicU32,
    ok: AtomicU64,
    failed: AtomicU64,
    /// The last check's duration in microseconds.
    last_us: AtomicU64,
    /// Why the last check failed (for the transition's log line).
    reason: Mutex<String>,
}

const NO_WEIGHT: u32 = u32::MAX;

impl CheckCell {
    fn new(up: bool) -> Self {
        Self {
            up: AtomicBool::new(up),
            weight: AtomicU32::new(NO_WEIGHT),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_us: AtomicU64::new(0),
            reason: Mutex::new(String::new()),
        }
    }
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
    fn dynamic_weight(&self) -> Option<u32> {
        Some(self.weight.load(Ordering::Relaxed)).filter(|&w| w != NO_WEIGHT)
    }
    fn reason(&self) -> String {
        self.reason.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// One checker's row for the exporter.
#[derive(Debug, Clone)]
pub struct CheckRow {
    pub service: ServiceKey,
    pub real: (IpAddr, u16),
    /// tcp, http, https, misc, ping.
    pub check: &'static str,
    pub up: bool,
    pub ok: u64,
    pub failed: u64,
    pub last_seconds: f64,
}

/// A real server's row for the exporter.
#[derive(Debug, Clone)]
pub struct RealRow {
    pub service: ServiceKey,
    pub real: (IpAddr, u16),
    pub up: bool,
    pub transitions: u64,
}

/// A virtual server's quorum for the exporter.
#[derive(Debug, Clone)]
pub struct QuorumRow {
    pub service: ServiceKey,
    pub up: bool,
}

/// What the exporter shows of the health checks.
#[derive(Debug, Clone, Default)]
pub struct HealthRows {
    pub checks: Vec<CheckRow>,
    pub reals: Vec<RealRow>,
    pub quorums: Vec<QuorumRow>,
}

#[derive(Debug)]
struct RealState {
    cells: Vec<Arc<CheckCell>>,
    alive: bool,
    weight: u32,
    transitions: u64,
}

#[derive(Debug)]
struct VsState {
    reals: Vec<RealState>,
    quorum_up: bool,
}

/// The health checks of one keepalived configuration, their thread, and the picture they give.
#[derive(Debug)]
pub struct Health {
    conf: KeepalivedConf,
    state: Vec<VsState>,
    /// The services as last applied (configuration adjusted by health): the next change is the
    /// difference to it.
    applied: Ipvs,
    locals: Vec<IpAddr>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    log: LogLimit,
}

impl Health {
    /// Starts the checks of `conf`. Servers keep the state they had in `previous` (a reload) where
    /// the same server is checked the same way; new ones start up, or down with `alpha`.
    pub fn start(
        conf: KeepalivedConf,
        locals: Vec<IpAddr>,
        previous: Option<&Health>,
    ) -> std::io::Result<Self> {
        let mut state = Vec::with_capacity(conf.virtual_servers.len());
        let mut tasks: Vec<(Checker, Arc<CheckCell>)> = Vec::new();
        for vs in &conf.virtual_servers {
            let mut reals = Vec::with_capacity(vs.reals.len());
            for rs in &vs.reals {
                let old = previous.and_then(|p| p.find(vs, rs.dest.addr, rs.dest.port));
                let cells: Vec<Arc<CheckCell>> = rs
                    .checkers
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        match old.filter(|(ovs, ors)| {
                            previous.is_some_and(|p| {
                                p.conf.virtual_servers[*ovs].reals[*ors].checkers.get(i) == Some(c)
                            })
                        }) {
                            Some((ovs, ors)) => {
                                Arc::clone(&previous.expect("checked").state[ovs].reals[ors].cells[i])
                            }
                            None => Arc::new(CheckCell::new(!c.alpha)),
                        }
                    })
                    .collect();
                tasks.extend(rs.checkers.iter().cloned().zip(cells.iter().cloned()));
                let alive = cells.iter().all(|c| c.is_up());
                let weight = Self::weight_of(&cells, rs.dest.weight);
                let transitions =
                    old.and_then(|(a, b)| previous.map(|p| p.state[a].reals[b].transitions)).unwrap_or(0);
                reals.push(RealState { cells, alive, weight, transitions });
            }
            let live: u64 = reals.iter().filter(|r| r.alive).map(|r| u64::from(r.weight)).sum();
            let quorum_up =
                match previous.and_then(|p| p.conf.virtual_servers.iter().position(|o| o.name == vs.name)) {
                    Some(i) => previous.map(|p| p.state[i].quorum_up).unwrap_or(true),
                    None => live >= u64::from(vs.quorum),
                };
            state.push(VsState { reals, quorum_up });
        }
        let stop = Arc::new(AtomicBool::new(false));
        // The cells are shared: the old thread must stop before the new one writes to them.
        let thread = if tasks.is_empty() {
            None
        } else {
            let stop = Arc::clone(&stop);
            Some(
                std::thread::Builder::new()
                    .name("rvs-health".into())
                    .spawn(move || run_checks(tasks, &stop))?,
            )
        };
        let mut h = Health {
            conf,
            state,
            applied: Ipvs::new(16, 16, 0),
            locals,
            stop,
            thread,
            log: LogLimit::default(),
        };
        h.applied.set_local_addrs(h.locals.clone());
        Ok(h)
    }

    fn find(&self, vs: &VirtualServer, addr: IpAddr, port: u16) -> Option<(usize, usize)> {
        let v = self.conf.virtual_servers.iter().position(|o| o.name == vs.name)?;
        let r = self.conf.virtual_servers[v]
            .reals
            .iter()
            .position(|r| r.dest.addr == addr && r.dest.port == port)?;
        Some((v, r))
    }

    /// How many checkers run.
    pub fn checkers(&self) -> usize {
        self.conf.virtual_servers.iter().flat_map(|v| &v.reals).map(|r| r.checkers.len()).sum()
    }

    fn weight_of(cells: &[Arc<CheckCell>], configured: u32) -> u32 {
        cells.iter().rev().find_map(|c| c.dynamic_weight()).unwrap_or(configured)
    }

    /// The services of the configuration as the checks say they should be now.
    fn target(&self) -> Ipvs {
        let mut t = Ipvs::new(16, 16, 0);
        t.set_local_addrs(self.locals.clone());
        for (vs, st) in self.conf.virtual_servers.iter().zip(&self.state) {
            let mut dests: Vec<DestConfig> = Vec::new();
            let sorry_in_use = !st.quorum_up && vs.sorry.is_some();
            for (rs, r) in vs.reals.iter().zip(&st.reals) {
                let mut d = rs.dest;
                if r.alive && !sorry_in_use {
                    d.weight = r.weight;
                    dests.push(d);
                } else if !r.alive && rs.inhibit_on_failure {
                    d.weight = 0;
                    dests.push(d);
                }
            }
            if let Some(mut s) = vs.sorry {
                if sorry_in_use || vs.sorry_inhibit {
                    if !sorry_in_use {
                        s.weight = 0;
                    }
                    // A sorry server that is also a real server: the sorry role wins while in use.
                    dests.retain(|d| !(d.addr == s.addr && d.port == s.port));
                    dests.push(s);
                }
            }
            for svc in &vs.services {
                if t.apply(&Op::AddService(svc.clone())).is_err() {
                    continue;
                }
                for d in &dests {
                    let _ = t.apply(&Op::AddDest(svc.key, *d));
                }
            }
        }
        t
    }

    /// The changes from what was applied to what the checks say now; the caller applies them.
    fn advance(&mut self) -> Vec<Op> {
        let target = self.target();
        let ops = crate::control::diff_ops(&self.applied, &target);
        self.applied = target;
        ops
    }

    /// The services and servers of the configuration as they start (no check has run yet).
    pub fn initial_ops(&mut self) -> Vec<Op> {
        self.advance()
    }

    /// Reads the checkers' cells; on a change of a server's state or weight, logs it, runs its
    /// notify script, updates the quorum, and returns the IPVS changes.
    pub fn poll(&mut self) -> Vec<Op> {
        let mut changed = false;
        for (vs, st) in self.conf.virtual_servers.iter().zip(self.state.iter_mut()) {
            let mut vs_changed = false;
            for (rs, r) in vs.reals.iter().zip(st.reals.iter_mut()) {
                let alive = r.cells.iter().all(|c| c.is_up());
                let weight = Self::weight_of(&r.cells, rs.dest.weight);
                if weight != r.weight {
                    r.weight = weight;
                    vs_changed = true;
                }
                if alive == r.alive {
                    continue;
                }
                r.alive = alive;
                r.transitions += 1;
                vs_changed = true;
                let why = r.cells.iter().find(|c| !c.is_up()).map(|c| c.reason()).unwrap_or_default();
                let real = fmt_sa(rs.dest.addr, rs.dest.port);
                if self.log.allow() {
                    if alive {
                        info!(virtual_server = %vs.name, real_server = %real, "real server up: its checks pass");
                    } else {
                        warn!(virtual_server = %vs.name, real_server = %real, reason = %why, "real server down");
                    }
                }
                if let Some(cmd) = if alive { &rs.notify_up } else { &rs.notify_down } {
                    run_script(cmd);
                }
            }
            if vs_changed {
                changed = true;
                let live: u64 = st.reals.iter().filter(|r| r.alive).map(|r| u64::from(r.weight)).sum();
                let (q, h) = (u64::from(vs.quorum), u64::from(vs.hysteresis));
                // keepalived's rule: gaining needs quorum + hysteresis, losing falls below
                // quorum - hysteresis (or to no live weight at all).
                if !st.quorum_up && live >= q + h {
                    st.quorum_up = true;
                    info!(virtual_server = %vs.name, live_weight = live, "quorum gained");
                    if let Some(c) = &vs.quorum_up {
                        run_script(c);
                    }
                } else if st.quorum_up && (live == 0 || live < q.saturating_sub(h)) {
                    st.quorum_up = false;
                    warn!(virtual_server = %vs.name, live_weight = live, sorry_server = vs.sorry.is_some(), "quorum lost");
                    if let Some(c) = &vs.quorum_down {
                        run_script(c);
                    }
                }
            }
        }
        if changed { self.advance() } else { Vec::new() }
    }

    /// Switches to a new configuration (a reload): the changes from the old picture to the new.
    pub fn replace(&mut self, conf: KeepalivedConf) -> std::io::Result<Vec<Op>> {
        self.stop_thread();
        let mut next = Health::start(conf, self.locals.clone(), Some(self))?;
        next.applied = std::mem::replace(&mut self.applied, Ipvs::new(16, 16, 0));
        let ops = next.advance();
        *self = next;
        Ok(ops)
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn rows(&self) -> HealthRows {
        let mut out = HealthRows::default();
        for (vs, st) in self.conf.virtual_servers.iter().zip(&self.state) {
            for svc in &vs.services {
                out.quorums.push(QuorumRow { service: svc.key, up: st.quorum_up });
                for (rs, r) in vs.reals.iter().zip(&st.reals) {
                    let real = (rs.dest.addr, rs.dest.port);
                    out.reals.push(RealRow {
                        service: svc.key,
                        real,
                        up: r.alive,
                        transitions: r.transitions,
                    });
                    for (c, cell) in rs.checkers.iter().zip(&r.cells) {
                        out.checks.push(CheckRow {
                            service: svc.key,
                            real,
                            check: check_name(&c.kind),
                            up: cell.is_up(),
                            ok: cell.ok.load(Ordering::Relaxed),
                            failed: cell.failed.load(Ordering::Relaxed),
                            last_seconds: cell.last_us.load(Ordering::Relaxed) as f64 / 1e6,
                        });
                    }
                }
            }
        }
        out
    }
}

impl Drop for Health {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

fn check_name(k: &CheckKind) -> &'static str {
    match k {
        CheckKind::Tcp => "tcp",
        CheckKind::Http { tls: false, .. } => "http",
        CheckKind::Http { tls: true, .. } => "https",
        CheckKind::Misc { .. } => "misc",
        CheckKind::Ping => "ping",
        CheckKind::Dns { .. } => "dns",
        CheckKind::Udp { .. } => "udp",
        CheckKind::Smtp { .. } => "smtp",
    }
}

fn fmt_sa(a: IpAddr, p: u16) -> String {
    SocketAddr::new(a, p).to_string()
}

/// notify_up/down and quorum_up/down: run through the shell and not waited for (a script that
/// hangs must not hold the management loop); a thread reaps it.
fn run_script(cmd: &str) {
    let cmd = cmd.to_owned();
    let spawned = std::process::Command::new("/bin/sh").arg("-c").arg(&cmd).spawn();
    match spawned {
        Ok(mut child) => {
            let _ = std::thread::Builder::new().name("rvs-notify".into()).spawn(move || {
                let _ = child.wait();
            });
        }
        Err(e) => warn!(command = %cmd, error = %e, "cannot run a notify script"),
    }
}

/// At most 20 transition lines a second: a flapping pool must not flood the log.
#[derive(Debug, Default)]
struct LogLimit {
    window: Option<Instant>,
    lines: u32,
    suppressed: u64,
}

impl LogLimit {
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        if self.window.is_none_or(|w| now.duration_since(w) >= Duration::from_secs(1)) {
            if self.suppressed > 0 {
                warn!(suppressed = self.suppressed, "health-check transition lines suppressed (over 20/s)");
            }
            self.window = Some(now);
            self.lines = 0;
            self.suppressed = 0;
        }
        self.lines += 1;
        if self.lines > 20 {
            self.suppressed += 1;
            return false;
        }
        true
    }
}

// ---- the checks ------------------------------------------------------------------------------------

/// The checker thread: every checker a task, until `stop`.
fn run_checks(tasks: Vec<(Checker, Arc<CheckCell>)>, stop: &AtomicBool) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "health checks cannot start");
            return;
        }
    };
    let tls = Arc::new(tls_config());
    rt.block_on(async {
        for (c, cell) in tasks {
            tokio::spawn(checker_task(c, cell, Arc::clone(&tls)));
        }
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    // Dropping the runtime cancels the tasks; scripts still running are killed (kill_on_drop).
}

async fn checker_task(c: Checker, cell: Arc<CheckCell>, tls: Arc<rustls::ClientConfig>) {
    if !c.warmup.is_zero() {
        let frac = (crate::daemon::random_seed() % 1000) as f64 / 1000.0;
        tokio::time::sleep(c.warmup.mul_f64(frac)).await;
    }
    loop {
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let r = check_once(&c, &tls).await;
            cell.last_us.store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            match r {
                Ok(weight) => {
                    cell.ok.fetch_add(1, Ordering::Relaxed);
                    cell.weight.store(weight.unwrap_or(NO_WEIGHT), Ordering::Relaxed);
                    cell.up.store(true, Ordering::Relaxed);
                    break;
                }
                Err(why) => {
                    cell.failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut r) = cell.reason.lock() {
                        *r = why;
                    }
                    // A server that is up gets `retry` more tries before it is declared down.
                    if cell.is_up() && attempt < c.retry {
                        attempt += 1;
                        tokio::time::sleep(c.delay_before_retry).await;
                        continue;
                    }
                    cell.up.store(false, Ordering::Relaxed);
                    break;
                }
            }
        }
        tokio::time::sleep(c.delay_loop).await;
    }
}

/// One attempt: Ok with misc_dynamic's weight if it gave one, or why it failed.
async fn check_once(c: &Checker, tls: &Arc<rustls::ClientConfig>) -> Result<Option<u32>, String> {
    match &c.kind {
        CheckKind::Tcp => connect(c).await.map(|_| None),
        CheckKind::Http { tls: use_tls, urls, virtualhost, sni } => {
            for u in urls {
                let host = u.virtualhost.as_deref().or(virtualhost.as_deref());
                let stream = connect(c).await?;
                let (status, body) = if *use_tls {
                    let name = match (sni, host) {
                        (true, Some(h)) => rustls::pki_types::ServerName::try_from(h.to_owned())
                            .map_err(|_| format!("`{h}` is not a host name for SNI"))?,
                        _ => rustls::pki_types::ServerName::IpAddress(c.target.ip().into()),
                    };
                    let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls));
                    let s = tokio::time::timeout(c.connect_timeout, connector.connect(name, stream))
                        .await
                        .map_err(|_| "TLS handshake timed out".to_owned())?
                        .map_err(|e| format!("TLS handshake: {e}"))?;
                    http_get(s, c, u, host).await?
                } else {
                    http_get(stream, c, u, host).await?
                };
                if !u.accepts(status) {
                    return Err(format!("GET {} answered {status}", u.path));
                }
                if let Some(want) = u.digest {
                    let got: [u8; 16] = <md5::Md5 as md5::Digest>::digest(&body).into();
                    if got != want {
                        return Err(format!("GET {}: the body's MD5 digest differs", u.path));
                    }
                }
            }
            Ok(None)
        }
        CheckKind::Misc { command, timeout, dynamic } => {
            let mut child = tokio::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(command)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot run {command}: {e}"))?;
            let limit = timeout.unwrap_or(c.delay_loop);
            let status = tokio::time::timeout(limit, child.wait())
                .await
                .map_err(|_| format!("{command} did not finish in {limit:?}"))?
                .map_err(|e| format!("{command}: {e}"))?;
            match status.code() {
                Some(0) => Ok(None),
                Some(n) if *dynamic && n >= 2 => Ok(Some((n - 2) as u32)),
                Some(n) => Err(format!("{command} exited with {n}")),
                None => Err(format!("{command} was killed by a signal")),
            }
        }
        CheckKind::Dns { qtype, name } => dns(c, *qtype, name).await.map(|()| None),
        CheckKind::Udp { payload, require_reply, min_len, max_len } => {
            udp(c, payload, require_reply.as_deref(), *min_len, *max_len).await.map(|()| None)
        }
        CheckKind::Smtp { helo_name } => smtp(c, helo_name.as_deref()).await.map(|()| None),
        CheckKind::Ping => {
            let (target, timeout) = (c.target.ip(), c.connect_timeout);
            tokio::task::spawn_blocking(move || ping(target, timeout))
                .await
                .map_err(|e| format!("ping task: {e}"))?
                .map(|_| None)
        }
    }
}

async fn connect(c: &Checker) -> Result<tokio::net::TcpStream, String> {
    let socket = match c.target {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket: {e}"))?;
    if let Some(b) = c.bindto {
        socket.bind(SocketAddr::new(b, 0)).map_err(|e| format!("bind {b}: {e}"))?;
    }
    tokio::time::timeout(c.connect_timeout, socket.connect(c.target))
        .await
        .map_err(|_| format!("connect to {} timed out", c.target))?
        .map_err(|e| format!("connect to {}: {e}", c.target))
}

/// A UDP socket "connected" to the check's target (so that an ICMP error about what it sends is
/// reported on it), from `bindto` if given.
async fn udp_socket(c: &Checker) -> Result<tokio::net::UdpSocket, String> {
    let any = match c.target {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
    };
    let s = tokio::net::UdpSocket::bind(c.bindto.map_or(any, |b| SocketAddr::new(b, 0)))
        .await
        .map_err(|e| format!("udp socket: {e}"))?;
    s.connect(c.target).await.map_err(|e| format!("udp to {}: {e}", c.target))?;
    Ok(s)
}

/// DNS_CHECK: a query (recursion desired) for `name` of `qtype`; a response with the query's ID.
async fn dns(c: &Checker, qtype: u16, name: &str) -> Result<(), String> {
    let s = udp_socket(c).await?;
    let id = u16::try_from(crate::daemon::random_seed() & 0xffff).unwrap_or(1);
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        let len = u8::try_from(label.len()).map_err(|_| format!("DNS label {label:?} too long"))?;
        q.push(len);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    s.send(&q).await.map_err(|e| format!("DNS query to {}: {e}", c.target))?;
    let mut buf = [0u8; 1500];
    let deadline = tokio::time::Instant::now() + c.connect_timeout;
    loop {
        let n = tokio::time::timeout_at(deadline, s.recv(&mut buf))
            .await
            .map_err(|_| format!("no DNS answer from {} in {:?}", c.target, c.connect_timeout))?
            .map_err(|e| format!("DNS to {}: {e}", c.target))?;
        let r = buf.get(..n).unwrap_or_default();
        // The same ID, and the QR bit: a response (whatever its RCODE: the server answers).
        if r.len() >= 12 && r[..2] == id.to_be_bytes() && r[2] & 0x80 != 0 {
            return Ok(());
        }
    }
}

/// UDP_CHECK: the payload (random bytes when none is given) must draw no ICMP error within the
/// timeout; with require_reply, a reply of min..=max bytes matching the pattern must come.
async fn udp(
    c: &Checker,
    payload: &[u8],
    require_reply: Option<&[Option<u8>]>,
    min_len: usize,
    max_len: usize,
) -> Result<(), String> {
    let s = udp_socket(c).await?;
    let data: Vec<u8> = if payload.is_empty() {
        crate::daemon::random_seed().to_be_bytes().to_vec()
    } else {
        payload.to_vec()
    };
    s.send(&data).await.map_err(|e| format!("udp to {}: {e}", c.target))?;
    let mut buf = vec![0u8; 65_536];
    match tokio::time::timeout(c.connect_timeout, s.recv(&mut buf)).await {
        // No answer and no ICMP error: up, unless a reply is required.
        Err(_) if require_reply.is_none() => Ok(()),
        Err(_) => Err(format!("no UDP reply from {} in {:?}", c.target, c.connect_timeout)),
        // An ICMP error (port or host unreachable) comes back as the socket's error.
        Ok(Err(e)) => Err(format!("udp to {}: {e}", c.target)),
        Ok(Ok(n)) => {
            let Some(pattern) = require_reply else { return Ok(()) };
            if !(min_len..=max_len).contains(&n) {
                return Err(format!("a UDP reply of {n} bytes, not {min_len}..={max_len}"));
            }
            let got = buf.get(..n).unwrap_or_default();
            if pattern.iter().zip(got).any(|(want, b)| want.is_some_and(|w| w != *b)) {
                return Err("the UDP reply does not match require_reply".into());
            }
            Ok(())
        }
    }
}

/// One SMTP reply: its last line (which has a space after the code; "220-" lines continue it).
async fn smtp_reply<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
) -> Result<String, String> {
    loop {
        let line = lines.next_line().await.map_err(|e| e.to_string())?.ok_or("the connection ended")?;
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(line);
        }
    }
}

/// SMTP_CHECK: the greeting is 220 and HELO is answered 250 (then QUIT).
async fn smtp(c: &Checker, helo_name: Option<&str>) -> Result<(), String> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let stream = connect(c).await?;
    let (r, mut w) = stream.into_split();
    // At most 64 KiB of replies: a server that talks on and on is not an SMTP server.
    let mut lines = BufReader::new(r.take(64 * 1024)).lines();
    let io = async {
        let greeting = smtp_reply(&mut lines).await?;
        if !greeting.starts_with("220") {
            return Err(format!("SMTP greeting {greeting:?}"));
        }
        let host = helo_name.unwrap_or("rvs-healthcheck");
        w.write_all(format!("HELO {host}\r\n").as_bytes()).await.map_err(|e| e.to_string())?;
        let helo = smtp_reply(&mut lines).await?;
        if !helo.starts_with("250") {
            return Err(format!("SMTP HELO answered {helo:?}"));
        }
        let _ = w.write_all(b"QUIT\r\n").await;
        Ok(())
    };
    tokio::time::timeout(c.connect_timeout, io)
        .await
        .map_err(|_| format!("SMTP with {} took longer than {:?}", c.target, c.connect_timeout))?
}

/// A response is read to its end, at most this much (a digest needs the whole body).
const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// GET as keepalived sends it (HTTP/1.0, the connection closes after the answer): the status and
/// the body.
async fn http_get<S>(
    mut s: S,
    c: &Checker,
    u: &UrlCheck,
    host: Option<&str>,
) -> Result<(u16, Vec<u8>), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = host.map_or_else(|| c.target.to_string(), str::to_owned);
    let req = format!(
        "GET {} HTTP/1.0\r\nUser-Agent: rvs-healthcheck\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        u.path
    );
    let io = async {
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 || buf.len() + n > MAX_RESPONSE_BYTES {
                buf.extend_from_slice(&chunk[..n.min(MAX_RESPONSE_BYTES.saturating_sub(buf.len()))]);
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(buf)
    };
    let buf = match tokio::time::timeout(c.connect_timeout, io).await {
        Err(_) => return Err(format!("GET {}: no complete answer in {:?}", u.path, c.connect_timeout)),
        // A TLS server that closes without close_notify still sent a whole HTTP/1.0 answer.
        Ok(Err(e)) if e.kind() != std::io::ErrorKind::UnexpectedEof => {
            return Err(format!("GET {}: {e}", u.path));
        }
        Ok(Err(_)) => return Err(format!("GET {}: the connection ended early", u.path)),
        Ok(Ok(b)) => b,
    };
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("GET {}: no HTTP answer", u.path))?;
    let status_line = std::str::from_utf8(&buf[..head_end]).ok().and_then(|h| h.lines().next()).unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let status = match (parts.next(), parts.next().and_then(|s| s.parse::<u16>().ok())) {
        (Some(v), Some(s)) if v.starts_with("HTTP/") => s,
        _ => return Err(format!("GET {}: not an HTTP status line: {status_line:?}", u.path)),
    };
    Ok((status, buf[head_end + 4..].to_vec()))
}

/// SSL_GET checks the server's HTTP answer, not its certificate (keepalived does not verify it
/// either): any certificate is accepted, signatures are still checked as TLS requires.
fn tls_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyCertificate(Arc::clone(&provider)));
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        })
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// PING_CHECK: one ICMP echo over a raw socket (rvsd runs as root, as keepalived does), waiting up
/// to `timeout` for the matching reply.
fn ping(target: IpAddr, timeout: Duration) -> Result<(), String> {
    use rvs_wire::icmpv4::{self, Icmpv4Packet};
    use rvs_wire::ipv4::Ipv4Packet;
    use socket2::{Domain, Protocol, Socket, Type};
    let IpAddr::V4(dst) = target else {
        return Err("PING_CHECK over IPv6 is not supported yet".into());
    };
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
        .map_err(|e| format!("raw socket: {e}"))?;
    let id = (crate::daemon::random_seed() & 0xffff) as u16;
    let seq = 1u16;
    let mut pkt = [0u8; icmpv4::HEADER_LEN + 8];
    let mut echo = Icmpv4Packet::new_unchecked(&mut pkt[..]);
    echo.set_type_code(icmpv4::kind::ECHO_REQUEST, 0);
    echo.set_rest_of_header(u32::from(id) << 16 | u32::from(seq));
    echo.data_mut().copy_from_slice(b"rvs-hchk");
    echo.fill_checksum();
    let to = SocketAddr::new(target, 0).into();
    s.send_to(&pkt, &to).map_err(|e| format!("ping {dst}: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no echo reply from {dst} in {timeout:?}"));
        }
        s.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        // The raw socket hands over the IPv4 header too: the source is read from it.
        let n = match std::io::Read::read(&mut &s, &mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(format!("no echo reply from {dst} in {timeout:?}"));
            }
            Err(e) => return Err(format!("ping {dst}: {e}")),
        };
        let Ok(ip) = Ipv4Packet::new_checked(&buf[..n]) else { continue };
        if ip.src() != dst {
            continue;
        }
        let Ok(reply) = Icmpv4Packet::new_checked(ip.payload()) else { continue };
        if reply.msg_type() == icmpv4::kind::ECHO_REPLY && (reply.echo_ident(), reply.echo_seq()) == (id, seq)
        {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The live model after `ops`: (server, weight) per service, sorted.
    fn servers(model: &Ipvs) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = model
            .services()
            .flat_map(|(_, _, _, ds)| {
                ds.into_iter().map(|(_, d)| (fmt_sa(d.cfg.addr, d.cfg.port), d.cfg.weight))
            })
            .collect();
        out.sort();
        out
    }

    /// Polls until the model shows `want` (real TCP checks against listeners on loopback).
    fn settle(h: &mut Health, model: &mut Ipvs, want: &[(&str, u32)]) {
        let want: Vec<(String, u32)> = want.iter().map(|(a, w)| ((*a).to_owned(), *w)).collect();
        for _ in 0..100 {
            for op in h.poll() {
                model.apply(&op).expect("applies");
            }
            if servers(model) == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("wanted {want:?}, have {:?}", servers(model));
    }

    /// keepalived's rules on real TCP checks: a failed server leaves (or stays at weight 0 with
    /// inhibit_on_failure); below the quorum the sorry server takes over alone; back above it the
    /// servers return and the sorry server leaves.
    #[test]
    fn failed_servers_leave_the_quorum_brings_the_sorry_server_and_recovery_undoes_it() {
        let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let (pa, pb) = (a.local_addr().unwrap().port(), b.local_addr().unwrap().port());
        let text = format!(
            "virtual_server 192.0.2.2 80 {{\n lb_algo rr\n quorum 2\n sorry_server 10.9.9.9 80\n\
             real_server 10.0.0.1 80 {{\n TCP_CHECK {{\n connect_ip 127.0.0.1\n connect_port {pa}\n \
             connect_timeout 1\n retry 0\n delay_loop 0.1\n }}\n }}\n\
             real_server 10.0.0.2 80 {{\n weight 2\n inhibit_on_failure\n TCP_CHECK {{\n connect_ip 127.0.0.1\n \
             connect_port {pb}\n connect_timeout 1\n retry 0\n delay_loop 0.1\n }}\n }}\n}}\n"
        );
        let conf = crate::keepalived::parse_str("t.conf", &text).expect("valid");
        let mut h = Health::start(conf, Vec::new(), None).expect("thread");
        let mut model = Ipvs::new(16, 16, 0);
        for op in h.initial_ops() {
            model.apply(&op).expect("applies");
        }
        assert_eq!(servers(&model), [("10.0.0.1:80".to_owned(), 1), ("10.0.0.2:80".to_owned(), 2)]);
        // b fails: it stays at weight 0 (inhibit_on_failure); live weight 1 < quorum 2: the sorry
        // server alone (b stays listed at 0: it still drains).
        drop(b);
        settle(&mut h, &mut model, &[("10.0.0.2:80", 0), ("10.9.9.9:80", 1)]);
        assert!(!h.rows().quorums[0].up);
        // b returns: quorum again, the sorry server leaves.
        let _b = std::net::TcpListener::bind(("127.0.0.1", pb)).expect("rebind");
        settle(&mut h, &mut model, &[("10.0.0.1:80", 1), ("10.0.0.2:80", 2)]);
        // a fails: it is removed; live weight 2 keeps the quorum.
        drop(a);
        settle(&mut h, &mut model, &[("10.0.0.2:80", 2)]);
        let rows = h.rows();
        assert!(rows.quorums[0].up);
        assert!(rows.reals.iter().any(|r| r.real.0.to_string() == "10.0.0.1" && !r.up && r.transitions == 1));
        assert!(rows.checks.iter().all(|c| c.ok > 0 && c.check == "tcp"));
    }

    /// An HTTP_GET check reads the status and the body's digest; a MISC_CHECK with misc_dynamic
    /// sets the weight from its exit status.
    #[test]
    fn http_status_digest_and_dynamic_misc_weights() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().unwrap().port();
        let status = Arc::new(std::sync::atomic::AtomicU16::new(200));
        let s2 = Arc::clone(&status);
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let mut c = c;
                let mut buf = [0u8; 1024];
                let _ = std::io::Read::read(&mut c, &mut buf);
                let body = "hello\n";
                let _ = std::io::Write::write_all(
                    &mut c,
                    format!(
                        "HTTP/1.0 {} X\r\nContent-Length: {}\r\n\r\n{body}",
                        s2.load(Ordering::Relaxed),
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        });
        // md5("hello\n") = b1946ac92492d2347c6235b4d2611184
        let dir = std::env::temp_dir().join(format!("rvs-misc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let code = dir.join("code");
        std::fs::write(&code, "7").unwrap();
        let text = format!(
            "virtual_server 192.0.2.2 80 {{\n\
             real_server 10.0.0.1 80 {{\n HTTP_GET {{\n url {{\n path /health\n status_code 200-204\n \
             digest b1946ac92492d2347c6235b4d2611184\n }}\n connect_ip 127.0.0.1\n connect_port {port}\n \
             retry 0\n delay_loop 0.1\n }}\n }}\n\
             real_server 10.0.0.2 80 {{\n MISC_CHECK {{\n misc_path \"exit $(cat {})\"\n misc_dynamic\n delay_loop 0.1\n retry 0\n }}\n }}\n}}\n",
            code.display()
        );
        let mut h =
            Health::start(crate::keepalived::parse_str("t.conf", &text).unwrap(), Vec::new(), None).unwrap();
        let mut model = Ipvs::new(16, 16, 0);
        for op in h.initial_ops() {
            model.apply(&op).unwrap();
        }
        settle(&mut h, &mut model, &[("10.0.0.1:80", 1), ("10.0.0.2:80", 5)]);
        status.store(500, Ordering::Relaxed);
        std::fs::write(&code, "1").unwrap();
        settle(&mut h, &mut model, &[]);
        status.store(204, Ordering::Relaxed);
        std::fs::write(&code, "0").unwrap();
        settle(&mut h, &mut model, &[("10.0.0.1:80", 1), ("10.0.0.2:80", 1)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn wait_up(h: &Health, want: &[bool]) {
        for _ in 0..100 {
            let got: Vec<bool> = h.rows().checks.iter().map(|c| c.up).collect();
            if got == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("wanted {want:?}, have {:?}", h.rows().checks);
    }

    /// SSL_GET against a real TLS server (openssl s_server -www, with a self-signed certificate: the
    /// check does not verify it, as keepalived's does not): up while the status is accepted, down
    /// when the url's expected status is not what the server answers.
    #[test]
    fn ssl_get_talks_to_a_real_tls_server() {
        let dir = std::env::temp_dir().join(format!("rvs-ssl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=rvs-test", "-days", "1"])
            .arg("-keyout")
            .arg(dir.join("k.pem"))
            .arg("-out")
            .arg(dir.join("c.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl (apt-get install openssl)");
        assert!(ok.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &port.to_string()])
            .arg("-cert")
            .arg(dir.join("c.pem"))
            .arg("-key")
            .arg(dir.join("k.pem"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server");
        // s_server -www answers any GET with "HTTP/1.0 200 ok" and a status page.
        let conf = |status: &str| {
            format!(
                "virtual_server 192.0.2.2 443 {{\n real_server 10.0.0.1 443 {{\n SSL_GET {{\n url {{\n path /\n \
                 status_code {status}\n }}\n connect_ip 127.0.0.1\n connect_port {port}\n connect_timeout 2\n \
                 retry 0\n delay_loop 0.2\n }}\n }}\n}}\n"
            )
        };
        std::thread::sleep(Duration::from_millis(300));
        let h =
            Health::start(crate::keepalived::parse_str("t.conf", &conf("200")).unwrap(), Vec::new(), None)
                .unwrap();
        for _ in 0..100 {
            if h.rows().checks[0].ok > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        wait_up(&h, &[true]);
        assert_eq!(h.rows().checks[0].check, "https");
        drop(h);
        let h =
            Health::start(crate::keepalived::parse_str("t.conf", &conf("204")).unwrap(), Vec::new(), None)
                .unwrap();
        wait_up(&h, &[false]);
        drop(h);
        let _ = server.kill();
        let _ = server.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// PING_CHECK answers for loopback and fails, within its timeout, for an address nobody has; a
    /// MISC_CHECK that hangs is killed at misc_timeout and counts as failed, while the management
    /// side's poll never waits for it; `alpha` servers start down.
    #[test]
    fn ping_a_hanging_script_and_alpha() {
        let text = "virtual_server 192.0.2.2 80 {\n alpha\n\
                    real_server 127.0.0.1 80 {\n PING_CHECK {\n connect_timeout 1\n retry 0\n delay_loop 0.2\n }\n }\n\
                    real_server 192.0.2.123 80 {\n PING_CHECK {\n connect_timeout 0.3\n retry 0\n delay_loop 0.2\n }\n }\n\
                    real_server 10.0.0.3 80 {\n MISC_CHECK {\n misc_path \"sleep 30\"\n misc_timeout 0.5\n retry 0\n delay_loop 0.2\n }\n }\n}\n";
        let mut h =
            Health::start(crate::keepalived::parse_str("t.conf", text).unwrap(), Vec::new(), None).unwrap();
        let mut model = Ipvs::new(16, 16, 0);
        for op in h.initial_ops() {
            model.apply(&op).unwrap();
        }
        let listed = |m: &Ipvs| m.services().map(|(_, _, _, ds)| ds.len()).sum::<usize>();
        assert_eq!(listed(&model), 0, "alpha: every server starts down");
        let t = Instant::now();
        for _ in 0..40 {
            let p = Instant::now();
            for op in h.poll() {
                model.apply(&op).unwrap();
            }
            assert!(p.elapsed() < Duration::from_millis(20), "a poll took {:?}", p.elapsed());
            std::thread::sleep(Duration::from_millis(50));
        }
        let rows = h.rows();
        assert!(rows.checks[0].up, "loopback answers ping: {rows:?}");
        assert!(!rows.checks[1].up && rows.checks[1].failed > 0);
        assert!(rows.checks[1].last_seconds < 0.5, "a failed ping waits its timeout: {rows:?}");
        assert!(!rows.checks[2].up && rows.checks[2].failed > 0);
        assert!((0.45..1.5).contains(&rows.checks[2].last_seconds), "killed at misc_timeout: {rows:?}");
        assert_eq!(listed(&model), 1);
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    /// DNS_CHECK against a UDP responder that answers queries (same ID, QR set); UDP_CHECK against
    /// an echo with a reply pattern, and against a closed port (the kernel's ICMP port unreachable
    /// fails it); SMTP_CHECK against a server that greets 220 and takes HELO, and one that greets 554.
    #[test]
    fn dns_udp_and_smtp_checks_talk_to_real_peers() {
        let dns = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dns_port = dns.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut b = [0u8; 512];
            while let Ok((n, from)) = dns.recv_from(&mut b) {
                let mut r = b[..n].to_vec();
                r[2] |= 0x80;
                let _ = dns.send_to(&r, from);
            }
        });
        let echo = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let echo_port = echo.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut b = [0u8; 512];
            while let Ok((n, from)) = echo.recv_from(&mut b) {
                let _ = echo.send_to(&b[..n], from);
            }
        });
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let smtp = |greeting: &'static str| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            std::thread::spawn(move || {
                for c in l.incoming().flatten() {
                    let mut c = c;
                    let _ = std::io::Write::write_all(&mut c, greeting.as_bytes());
                    let mut b = [0u8; 256];
                    let _ = std::io::Read::read(&mut c, &mut b);
                    let _ = std::io::Write::write_all(&mut c, b"250 hello\r\n");
                }
            });
            port
        };
        let (smtp_ok, smtp_bad) = (smtp("220-first\r\n220 ready\r\n"), smtp("554 go away\r\n"));
        let check = |body: &str| {
            // alpha: every checker starts failed, so an "up" is a check that passed.
            format!(
                " {body} {{\n alpha\n connect_ip 127.0.0.1\n connect_timeout 1\n retry 0\n delay_loop 0.2\n warmup 0\n"
            )
        };
        let text = format!(
            "virtual_server 192.0.2.2 53 {{\n protocol UDP\n real_server 10.0.0.1 53 {{\n{} connect_port {dns_port}\n type A\n name example.org\n }}\n\
             {} connect_port {echo_port}\n payload 68656c6c6f\n require_reply 68 65 xx\n }}\n\
             {} connect_port {closed}\n }}\n\
             {} connect_port {smtp_ok}\n helo_name rvs.test\n }}\n\
             {} connect_port {smtp_bad}\n }}\n }}\n}}\n",
            check("DNS_CHECK"),
            check("UDP_CHECK"),
            check("UDP_CHECK"),
            check("SMTP_CHECK"),
            check("SMTP_CHECK")
        );
        let h =
            Health::start(crate::keepalived::parse_str("t.conf", &text).unwrap(), Vec::new(), None).unwrap();
        wait_up(&h, &[true, true, false, true, false]);
        assert_eq!(
            h.rows().checks.iter().map(|c| c.check).collect::<Vec<_>>(),
            ["dns", "udp", "udp", "smtp", "smtp"]
        );
    }
}
