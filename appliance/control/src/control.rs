//! The control socket: rvsadm's requests, parsed with ipvsadm's grammar, checked and applied to the
//! IPVS configuration in one place. Each request is atomic: a command either applies whole or
//! answers an error and changes nothing; a restore is tried on a scratch copy first.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rvs_adm::listing;
use rvs_adm::protocol::{FrameError, Request, Response};
use rvs_adm::{Command, parse, parse_rules};
use rvs_ipvs::{DestConfig, Ipvs, Op, ServiceConfig, ServiceError, ServiceKey, Time};

use crate::rates::Estimator;
use crate::shards::Shards;
use tracing::{info, warn};

/// Requests waiting for the management loop, at most (more are answered "busy" at once).
const QUEUED_REQUESTS: usize = 8;
/// Connections being read or answered at once, at most (more are closed at once).
const MAX_CONNECTIONS: usize = 8;
/// A whole request must arrive within this time, however it is split into reads (a rule file of
/// 64 MiB takes well under a second over a unix socket).
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// And the whole response must be taken within this time.
const RESPONSE_DEADLINE: Duration = Duration::from_secs(10);
/// How long a connection waits for the management loop to execute its request.
const EXECUTE_TIMEOUT: Duration = Duration::from_secs(60);

/// Who sent a request (SO_PEERCRED), for the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub pid: i32,
}

/// A request read in full, waiting for the management loop.
#[derive(Debug)]
struct Pending {
    req: Request,
    peer: Peer,
    reply: crossbeam_channel::Sender<Response>,
}

/// The control socket. Connections are accepted, read and answered on threads of their own, with
/// time and size limits per request; the management loop only executes requests read in full
/// ([`ControlServer::poll`]), so no client, however slow, holds it. The socket is removed on drop.
#[derive(Debug)]
pub struct ControlServer {
    path: PathBuf,
    requests: crossbeam_channel::Receiver<Pending>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Numeric group id of `name`, from /etc/group.
fn group_id(name: &str) -> io::Result<u32> {
    let groups = std::fs::read_to_string("/etc/group")?;
    groups
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let (n, _, gid) = (f.next()?, f.next()?, f.next()?);
            (n == name).then(|| gid.parse().ok()).flatten()
        })
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no group named {name:?}")))
}

/// Makes way for a new socket at `path`: nothing there, or a socket nobody listens on (left by a
/// dead rvsd), which is removed. Anything else is left alone and is an error: a mistyped
/// `socket_path` must never delete a file.
fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket; rvsd leaves it alone",
        ));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(io::ErrorKind::AddrInUse, "another rvsd is listening there"));
    }
    std::fs::remove_file(path)
}

/// Binds a unix socket at `path` that is never reachable with a wider mode than 0660: it is created
/// in a fresh directory of mode 0700 beside `path`, given its mode and group there, then renamed
/// into place (no umask, which is process-wide, and no window between bind and chmod).
fn bind_private(path: &Path, group: Option<u32>) -> io::Result<UnixListener> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("rvsd.sock");
    let private = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // A leftover of this pid's earlier life: a directory of ours, never followed if a symlink.
    if std::fs::symlink_metadata(&private).is_ok_and(|m| m.is_dir()) {
        std::fs::remove_dir_all(&private)?;
    }
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let inner = private.join("s");
    let bound = (|| {
        let listener = UnixListener::bind(&inner)?;
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o660))?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(&inner, None, Some(gid))?;
        }
        std::fs::rename(&inner, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&inner);
    let _ = std::fs::remove_dir(&private);
    bound
}

impl ControlServer {
    /// Listens on `path` with mode 0660 (and `group` as its group): only root and that group may
    /// change the director. A socket left by a dead rvsd is replaced; a live one, or a file that is
    /// not a socket, is an error.
    pub fn bind(path: &Path, group: Option<&str>) -> io::Result<Self> {
        let gid = group.map(group_id).transpose()?;
        clear_stale(path)?;
        let listener = bind_private(path, gid)?;
        listener.set_nonblocking(true)?;
        let (tx, requests) = crossbeam_channel::bounded(QUEUED_REQUESTS);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("rvs-control".into())
                .spawn(move || accept(listener, tx, stop))?
        };
        Ok(Self { path: path.to_owned(), requests, stop, thread: Some(thread) })
    }

    /// Executes every request read in full so far, one at a time (called from the management loop;
    /// never waits for a client).
    pub fn poll(&self, d: &mut Director<'_>) {
        while let Ok(p) = self.requests.try_recv() {
            let span = tracing::info_span!("rvsadm", uid = p.peer.uid, pid = p.peer.pid);
            let resp = span.in_scope(|| execute(d, &p.req));
            // The client may have given up meanwhile.
            let _ = p.reply.send(resp);
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The accepting thread: one short-lived thread per connection, at most [`MAX_CONNECTIONS`].
fn accept(listener: UnixListener, requests: crossbeam_channel::Sender<Pending>, stop: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    warn!("control socket: too many connections at once; closing one");
                    continue;
                }
                active.fetch_add(1, Ordering::Relaxed);
                let (requests, active) = (requests.clone(), Arc::clone(&active));
                let spawned = std::thread::Builder::new().name("rvs-control-conn".into()).spawn({
                    let active = Arc::clone(&active);
                    move || {
                        if let Err(e) = converse(stream, &requests) {
                            warn!(error = %e, "control connection");
                        }
                        active.fetch_sub(1, Ordering::Relaxed);
                    }
                });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                warn!(error = %e, "control socket accept");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Reads from a stream until a deadline for the whole of what is read, not per read.
struct Deadline<'a> {
    stream: &'a UnixStream,
    until: Instant,
}

impl Deadline<'_> {
    fn left(&self) -> io::Result<Duration> {
        self.until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "request deadline passed"))
    }
}

impl io::Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        (&mut &*self.stream).read(buf)
    }
}

impl io::Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        (&mut &*self.stream).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One connection: read the request within its deadline, hand it to the management loop, write
/// the answer within its own.
fn converse(stream: UnixStream, requests: &crossbeam_channel::Sender<Pending>) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    let peer = rustix::net::sockopt::socket_peercred(&stream)
        .map(|c| Peer { uid: c.uid.as_raw(), pid: c.pid.as_raw_nonzero().get() })
        .unwrap_or_default();
    let read =
        Request::read_from(&mut Deadline { stream: &stream, until: Instant::now() + REQUEST_DEADLINE });
    let resp = match read {
        Ok(req) => {
            let (reply, answer) = crossbeam_channel::bounded(1);
            match requests.try_send(Pending { req, peer, reply }) {
                Ok(()) => answer
                    .recv_timeout(EXECUTE_TIMEOUT)
                    .unwrap_or_else(|_| Response::error(255, "rvsd: the request was not executed in time")),
                Err(_) => Response::error(255, "rvsd: busy (too many requests waiting); try again"),
            }
        }
        // An rvsadm of another version gets an answer it can at least print.
        Err(e @ FrameError::Version(_)) => Response::error(2, format!("rvsd: {e}")),
        Err(e) => {
            warn!(uid = peer.uid, pid = peer.pid, error = %e, "control request refused");
            Response::error(2, format!("rvsd: bad request: {e}"))
        }
    };
    resp.write_to(&mut Deadline { stream: &stream, until: Instant::now() + RESPONSE_DEADLINE })
}

/// What a request works on: the management core's configuration, the workers' shards behind it, and
/// the rate estimator.
#[derive(Debug)]
pub struct Director<'a> {
    pub model: &'a mut Ipvs,
    pub shards: &'a Shards,
    pub rates: &'a Estimator,
    /// What listings call the connection-table size.
    pub table_size: usize,
    pub now: Time,
    /// The connection sync daemons.
    pub sync: &'a mut crate::sync::SyncDaemons,
}

fn ipvs_error(e: &ServiceError, on_dest: bool) -> String {
    match e {
        // libipvs words ESRCH differently for service and server commands.
        ServiceError::NoService if on_dest => "Service not defined".into(),
        ServiceError::NoService => "No such service".into(),
        other => other.to_string(),
    }
}

/// Applies one configuration change to `model`, with ipvsadm's error texts.
pub fn apply(model: &mut Ipvs, op: &Op) -> Result<(), String> {
    let on_dest = matches!(op, Op::AddDest(..) | Op::EditDest(..) | Op::DelDest(..));
    model.apply(op).map_err(|e| ipvs_error(&e, on_dest))
}

/// The configuration of `model` as the changes that rebuild it from empty (what -Sn would print).
pub fn model_ops(model: &Ipvs) -> Vec<Op> {
    let mut out = Vec::new();
    for (_, cfg, _, dests) in model.services() {
        out.push(Op::AddService(cfg.clone()));
        out.extend(dests.into_iter().map(|(_, d)| Op::AddDest(cfg.key, d.cfg)));
    }
    let (tcp, tcp_fin, udp) = model.timeouts.listed();
    out.push(Op::SetTimeouts { tcp, tcp_fin, udp });
    out.push(Op::SetSysctl(model.sysctl));
    out
}

/// Applies a rule file all or nothing: every line is first applied to a scratch copy of the
/// configuration; only if all succeed is the real one changed. Errors name the line. Returns the
/// changes, to publish as one batch.
pub fn restore(model: &mut Ipvs, text: &str) -> Result<Vec<Op>, String> {
    let cmds = parse_rules(text).map_err(|(line, e)| format!("line {line}: {}", e.message))?;
    let mut ops = Vec::with_capacity(cmds.len());
    for (line, c) in cmds {
        match c {
            Command::Change(op) => ops.push((line, op)),
            other => return Err(format!("line {line}: {other:?} does not belong in a rule file")),
        }
    }
    let mut scratch = Ipvs::new(16, 16, 0);
    for op in model_ops(model) {
        apply(&mut scratch, &op).map_err(|e| format!("rvsd: cannot copy the configuration: {e}"))?;
    }
    for (line, op) in &ops {
        apply(&mut scratch, op).map_err(|e| format!("line {line}: {e}"))?;
    }
    for (line, op) in &ops {
        // Cannot fail: the scratch copy took the same changes in the same order.
        apply(model, op).map_err(|e| format!("line {line}: {e}"))?;
    }
    Ok(ops.into_iter().map(|(_, op)| op).collect())
}

/// The changes that turn `current`'s services into `target`'s, touching only what differs: services
/// and servers that stay keep their counters and connections. Server removals come first, then
/// service removals, then edits and additions. Timeouts change only where `target` sets them
/// (a rule file without `--set` leaves them as they are, as `-R` would).
pub fn diff_ops(current: &Ipvs, target: &Ipvs) -> Vec<Op> {
    use std::collections::HashMap;
    let dests_of = |v: &Ipvs| -> HashMap<ServiceKey, (ServiceConfig, Vec<DestConfig>)> {
        v.services()
            .map(|(_, cfg, _, ds)| (cfg.key, (cfg.clone(), ds.into_iter().map(|(_, d)| d.cfg).collect())))
            .collect()
    };
    let (now, want) = (dests_of(current), dests_of(target));
    let (mut removals, mut deletions, mut rest) = (Vec::new(), Vec::new(), Vec::new());
    for (_, cfg, _, ds) in current.services() {
        match want.get(&cfg.key) {
            None => deletions.push(Op::DelService(cfg.key)),
            Some((_, keep)) => {
                for (_, d) in ds {
                    if !keep.iter().any(|k| k.addr == d.cfg.addr && k.port == d.cfg.port) {
                        removals.push(Op::DelDest(cfg.key, d.cfg.addr, d.cfg.port));
                    }
                }
            }
        }
    }
    for (_, cfg, _, ds) in target.services() {
        let targets = ds.into_iter().map(|(_, d)| d.cfg);
        match now.get(&cfg.key) {
            None => {
                rest.push(Op::AddService(cfg.clone()));
                rest.extend(targets.map(|d| Op::AddDest(cfg.key, d)));
            }
            Some((old_cfg, old_dests)) => {
                if old_cfg != cfg {
                    rest.push(Op::EditService(cfg.clone()));
                }
                for d in targets {
                    match old_dests.iter().find(|o| o.addr == d.addr && o.port == d.port) {
                        Some(o) if *o == d => {}
                        Some(_) => rest.push(Op::EditDest(cfg.key, d)),
                        None => rest.push(Op::AddDest(cfg.key, d)),
                    }
                }
            }
        }
    }
    let (tcp, tcp_fin, udp) = target.timeouts.listed();
    let defaults = rvs_ipvs::Timeouts::default().listed();
    if (tcp, tcp_fin, udp) != defaults && (tcp, tcp_fin, udp) != current.timeouts.listed() {
        rest.push(Op::SetTimeouts { tcp, tcp_fin, udp });
    }
    removals.into_iter().chain(deletions).chain(rest).collect()
}

/// Re-reads a rule file (SIGHUP): the configuration becomes what the file says, all or nothing,
/// changing only what differs ([`diff_ops`]). Returns the changes, to publish as one batch.
pub fn reload(model: &mut Ipvs, text: &str) -> Result<Vec<Op>, String> {
    let mut target = Ipvs::new(16, 16, 0);
    restore(&mut target, text)?;
    let ops = diff_ops(model, &target);
    let mut scratch = Ipvs::new(16, 16, 0);
    for op in model_ops(model).iter().chain(&ops) {
        apply(&mut scratch, op).map_err(|e| format!("rvsd: the changes do not apply: {e}"))?;
    }
    for op in &ops {
        apply(model, op)?;
    }
    Ok(ops)
}

fn usage(prog: &str) -> String {
    format!(
        "{prog} v{} (rvs; the ipvsadm 1.31 command language)
Usage:
  {prog} -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags] [-o]
  {prog} -D virtual-service
  {prog} -C
  {prog} -R
  {prog} -S [-n]
  {prog} -a|e virtual-service -r server-address [options]
  {prog} -d virtual-service -r server-address
  {prog} -L|l [virtual-service] [options]
  {prog} -Z [virtual-service]
  {prog} --set tcp tcpfin udp
  {prog} --sysctl [NAME[=VALUE]]      (rvs: IPVS's /proc/sys/net/ipv4/vs knobs)
  {prog} -h
",
        env!("CARGO_PKG_VERSION")
    )
}

/// One request, start to finish. A change is applied to the model and, only if it succeeded,
/// published to the shards as one batch.
pub fn execute(d: &mut Director<'_>, req: &Request) -> Response {
    let prog = req
        .args
        .first()
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_owned())
        .unwrap_or_else(|| "rvsadm".into());
    let args: &[String] = req.args.get(1..).unwrap_or_default();
    let cmd = match parse(args) {
        Ok(c) => c,
        Err(e) => {
            let mut msg = e.message;
            if e.try_help {
                msg.push_str(&format!("\nTry `{prog} -h' or '{prog} --help' for more information."));
            }
            return Response::error(e.status, msg);
        }
    };
    let snapshot = |d: &Director<'_>, conns: bool| {
        let (mut s, _) = d.shards.snapshot(d.model, conns, d.now);
        s.table_size = d.table_size;
        d.rates.fill(&mut s);
        s
    };
    match cmd {
        Command::List(o) if o.format == rvs_adm::ListFormat::Daemon => Response::ok(d.sync.listing()),
        Command::StartDaemon { master, mcast_interface, syncid } => {
            let cfg = crate::sync::DaemonConfig { mcast_interface, syncid };
            match d.sync.start(master, cfg) {
                Ok(()) => Response::ok(String::new()),
                Err(e) => Response::error(255, e),
            }
        }
        Command::StopDaemon { master } => match d.sync.stop(master) {
            Ok(()) => Response::ok(String::new()),
            Err(e) => Response::error(255, e),
        },
        Command::List(o) => {
            match listing::list(&snapshot(d, o.format == rvs_adm::ListFormat::Connections), &o) {
                Some(text) => Response::ok(text),
                None => Response::error(1, "No such service"),
            }
        }
        Command::Save { numeric } => Response::ok(listing::save(&snapshot(d, false), numeric)),
        Command::Restore => match std::str::from_utf8(&req.stdin) {
            Err(_) => Response::error(2, "the rule file is not UTF-8; nothing was changed"),
            Ok(text) => match restore(d.model, text) {
                Ok(ops) => {
                    info!(commands = ops.len(), "rules restored");
                    d.shards.publish(d.model, ops);
                    Response::ok(String::new())
                }
                Err(e) => Response::error(2, format!("{e}; nothing was changed")),
            },
        },
        Command::Help => Response::ok(usage(&prog)),
        Command::Version => Response::ok(format!("{prog} v{} (rvs)\n", env!("CARGO_PKG_VERSION"))),
        Command::Sysctl { name, value: None } => match d.model.sysctl.render(name.as_deref()) {
            Ok(text) => Response::ok(text),
            Err(e) => Response::error(2, format!("rvsadm: {e}")),
        },
        Command::Sysctl { name: Some(name), value: Some(value) } => {
            let mut s = d.model.sysctl;
            match s.set(&name, &value).and_then(|()| s.render(Some(&name))) {
                Ok(line) => {
                    info!(name, value, "IPVS setting changed");
                    d.model.sysctl = s;
                    d.shards.publish(d.model, vec![Op::SetSysctl(s)]);
                    Response::ok(line)
                }
                Err(e) => Response::error(2, format!("rvsadm: {e}")),
            }
        }
        Command::Sysctl { name: None, value: Some(_) } => {
            Response::error(2, "rvsadm: --sysctl =VALUE needs a NAME")
        }
        Command::Change(op) => match apply(d.model, &op) {
            Ok(()) => {
                info!(command = ?args, "configuration changed");
                d.shards.publish(d.model, vec![op]);
                Response::ok(String::new())
            }
            Err(e) => Response::error(2, e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(m: &mut Ipvs, req: &Request) -> Response {
        let (shards, rates) = (Shards::default(), Estimator::default());
        let mut sync = crate::sync::SyncDaemons::new(crossbeam_channel::never(), Vec::new(), 0);
        execute(
            &mut Director {
                model: m,
                shards: &shards,
                rates: &rates,
                table_size: 4096,
                now: 0,
                sync: &mut sync,
            },
            req,
        )
    }

    fn run(m: &mut Ipvs, line: &str) -> Response {
        let mut args = vec!["/usr/sbin/rvsadm".to_owned()];
        args.extend(line.split_whitespace().map(str::to_owned));
        exec(m, &Request { args, stdin: vec![] })
    }

    #[test]
    fn commands_apply_and_errors_change_nothing() {
        let mut m = Ipvs::new(16, 16, 0);
        assert_eq!(run(&mut m, "-A -t 192.0.2.80:80 -s rr").status, 0);
        assert_eq!(run(&mut m, "-a -t 192.0.2.80:80 -r 203.0.113.10:8080 -m -w 2").status, 0);
        let e = run(&mut m, "-a -t 192.0.2.80:80 -r 203.0.113.10:8080 -m");
        assert_eq!((e.status, e.stderr.as_str()), (2, "Destination already exists\n"));
        let e = run(&mut m, "-a -t 192.0.2.81:80 -r 203.0.113.10");
        assert_eq!(e.stderr, "Service not defined\n");
        let e = run(&mut m, "-D -t 192.0.2.81:80");
        assert_eq!(e.stderr, "No such service\n");
        let e = run(&mut m, "-A --bogus");
        assert_eq!(
            e.stderr,
            "--bogus: unknown option\nTry `rvsadm -h' or 'rvsadm --help' for more information.\n"
        );
        let l = run(&mut m, "-Ln");
        assert!(
            l.stdout.contains("  -> 203.0.113.10:8080            Masq    2      0          0         \n"),
            "{}",
            l.stdout
        );
        assert_eq!(run(&mut m, "-L -t 192.0.2.99:80").stderr, "No such service\n");
    }

    /// The stale-socket path removed whatever it could not connect to: a mistyped socket_path
    /// deleted a regular file. Now only a dead socket is replaced.
    #[test]
    fn bind_replaces_only_dead_sockets() {
        let dir = std::env::temp_dir().join(format!("rvs-bind-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("precious.conf");
        std::fs::write(&file, "keep me\n").unwrap();
        let e = ControlServer::bind(&file, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me\n");

        let sock = dir.join("rvsd.sock");
        drop(UnixListener::bind(&sock).unwrap()); // a dead rvsd's socket: the file stays
        let live = ControlServer::bind(&sock, None).unwrap();
        let meta = std::fs::symlink_metadata(&sock).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(
            ControlServer::bind(&sock, None).unwrap_err().kind(),
            io::ErrorKind::AddrInUse,
            "a live socket is not replaced"
        );
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "no private directory left behind: {left:?}");
        drop(live);
        assert!(!sock.exists(), "removed on drop");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reload_changes_only_what_differs() {
        let mut m = Ipvs::new(16, 16, 0);
        let before = "-A -t 192.0.2.80:80 -s wrr\n-a -t 192.0.2.80:80 -r 203.0.113.10:8080 -m -w 3\n\
                      -a -t 192.0.2.80:80 -r 203.0.113.11:8080 -m -w 1\n-A -u 192.0.2.53:53 -s rr\n\
                      -a -u 192.0.2.53:53 -r 203.0.113.31:53 -g -w 1\n";
        restore(&mut m, before).unwrap();
        let after = "-A -t 192.0.2.80:80 -s wrr\n-a -t 192.0.2.80:80 -r 203.0.113.10:8080 -m -w 5\n\
                     -a -t 192.0.2.80:80 -r 203.0.113.12:8080 -m -w 1\n-A -t 192.0.2.81:443 -s sh\n\
                     -a -t 192.0.2.81:443 -r 203.0.113.20:443 -g -w 1\n";
        let ops = reload(&mut m, after).unwrap();
        let key = ServiceKey::Addr { protocol: 6, addr: "192.0.2.80".parse().unwrap(), port: 80 };
        let udp = ServiceKey::Addr { protocol: 17, addr: "192.0.2.53".parse().unwrap(), port: 53 };
        assert_eq!(ops[0], Op::DelDest(key, "203.0.113.11".parse().unwrap(), 8080));
        assert_eq!(ops[1], Op::DelService(udp));
        assert!(!ops.iter().any(|o| matches!(o, Op::EditService(c) | Op::AddService(c) if c.key == key)));
        assert_eq!(ops.len(), 6, "{ops:?}");
        let mut fresh = Ipvs::new(16, 16, 0);
        restore(&mut fresh, after).unwrap();
        assert_eq!(model_ops(&m), model_ops(&fresh), "the same configuration as the file");
        assert!(reload(&mut m, after).unwrap().is_empty(), "nothing to do the second time");
        let e = reload(&mut m, "-A -t 192.0.2.80:80\n-A -t 192.0.2.80:80\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert_eq!(model_ops(&m), model_ops(&fresh), "a bad file changes nothing");
    }

    /// The knobs existed in the engine but nothing could set them.
    #[test]
    fn sysctl_shows_and_sets_ipvs_knobs() {
        let mut m = Ipvs::new(16, 16, 0);
        assert_eq!(run(&mut m, "--sysctl").stdout.lines().count(), rvs_ipvs::Sysctl::NAMES.len());
        let r = run(&mut m, "--sysctl expire_nodest_conn=1");
        assert_eq!((r.status, r.stdout.as_str()), (0, "net.ipv4.vs.expire_nodest_conn = 1\n"));
        assert!(m.sysctl.expire_nodest_conn);
        assert_eq!(run(&mut m, "--sysctl net.ipv4.vs.secure_tcp=3").stdout, "net.ipv4.vs.secure_tcp = 3\n");
        assert_eq!(run(&mut m, "--sysctl=secure_tcp").stdout, "net.ipv4.vs.secure_tcp = 3\n");
        let before = m.sysctl;
        let r = run(&mut m, "--sysctl secure_tcp=7");
        assert_eq!(r.status, 2);
        assert!(r.stderr.contains("secure_tcp: \"7\" is not a valid value (0 to 3)"), "{}", r.stderr);
        let r = run(&mut m, "--sysctl nat_icmp_send=1");
        assert!(r.stderr.contains("unknown IPVS setting \"nat_icmp_send\""), "{}", r.stderr);
        assert_eq!(m.sysctl, before);
        assert_eq!(run(&mut m, "-L --sysctl").status, 2, "--sysctl stands alone");
        // A restore copies the knobs along (model_ops carries them to new shards).
        assert!(model_ops(&m).contains(&Op::SetSysctl(before)));
    }

    #[test]
    fn restore_is_all_or_nothing() {
        let mut m = Ipvs::new(16, 16, 0);
        run(&mut m, "-A -t 192.0.2.80:80 -s rr");
        let before = run(&mut m, "-Sn").stdout;
        let bad = "-A -t 192.0.2.81:80\n-a -t 192.0.2.81:80 -r 203.0.113.1\n-A -t 192.0.2.80:80\n";
        let e = exec(
            &mut m,
            &Request { args: vec!["rvsadm".into(), "-R".into()], stdin: bad.as_bytes().to_vec() },
        );
        assert_eq!(
            (e.status, e.stderr.as_str()),
            (2, "line 3: Service already exists; nothing was changed\n")
        );
        assert_eq!(run(&mut m, "-Sn").stdout, before, "not even the first two lines applied");
        let good = "-A -t 192.0.2.81:80\n-a -t 192.0.2.81:80 -r 203.0.113.1\n";
        let ok = exec(
            &mut m,
            &Request { args: vec!["rvsadm".into(), "-R".into()], stdin: good.as_bytes().to_vec() },
        );
        assert_eq!(ok.status, 0, "{}", ok.stderr);
        assert!(run(&mut m, "-Sn").stdout.contains("-a -t 192.0.2.81:80 -r 203.0.113.1:80 -g -w 1\n"));
    }
}
