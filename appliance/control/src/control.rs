//! The control socket: rvsadm's requests, parsed with ipvsadm's grammar, checked and applied to the
//! IPVS configuration in one place. Each request is atomic: a command either applies whole or
//! answers an error and changes nothing; a restore is tried on a scratch copy first.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rvs_adm::listing;
use rvs_adm::protocol::{FrameError, Request, Response};
use rvs_adm::{Command, parse, parse_rules};
use rvs_ipvs::{Error as IpvsError, Ipvs, Op, Time};

use crate::rates::Estimator;
use crate::shards::Shards;
use tracing::{info, warn};

/// The listening socket, removed on drop.
#[derive(Debug)]
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
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

impl ControlServer {
    /// Listens on `path` with mode 0660 (and `group` as its group): only root and that group may
    /// change the director. A socket left by a dead rvsd is replaced; a live one is an error.
    pub fn bind(path: &Path, group: Option<&str>) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(io::ErrorKind::AddrInUse, "another rvsd is listening there"));
            }
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
        if let Some(g) = group {
            std::os::unix::fs::chown(path, None, Some(group_id(g)?))?;
        }
        listener.set_nonblocking(true)?;
        Ok(Self { listener, path: path.to_owned() })
    }

    /// Serves every request waiting, one at a time (called from the management loop).
    pub fn poll(&self, d: &mut Director<'_>) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = serve(stream, d) {
                        warn!(error = %e, "control connection");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    warn!(error = %e, "control socket accept");
                    return;
                }
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
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
}

fn serve(mut stream: UnixStream, d: &mut Director<'_>) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let resp = match Request::read_from(&mut stream) {
        Ok(req) => execute(d, &req),
        // An rvsadm of another version gets an answer it can at least print.
        Err(e @ FrameError::Version(_)) => Response::error(2, format!("rvsd: {e}")),
        Err(e) => Response::error(2, format!("rvsd: bad request: {e}")),
    };
    resp.write_to(&mut stream)
}

fn ipvs_error(e: &IpvsError, on_dest: bool) -> String {
    match e {
        // libipvs words ESRCH differently for service and server commands.
        IpvsError::NoService if on_dest => "Service not defined".into(),
        IpvsError::NoService => "No such service".into(),
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
        let (mut s, _, _) = d.shards.snapshot(d.model, conns, d.now);
        s.table_size = d.table_size;
        d.rates.fill(&mut s);
        s
    };
    match cmd {
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
                    d.shards.publish(ops);
                    Response::ok(String::new())
                }
                Err(e) => Response::error(2, format!("{e}; nothing was changed")),
            },
        },
        Command::Help => Response::ok(usage(&prog)),
        Command::Version => Response::ok(format!("{prog} v{} (rvs)\n", env!("CARGO_PKG_VERSION"))),
        Command::Change(op) => match apply(d.model, &op) {
            Ok(()) => {
                info!(command = ?args, "configuration changed");
                d.shards.publish(vec![op]);
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
        execute(&mut Director { model: m, shards: &shards, rates: &rates, table_size: 4096, now: 0 }, req)
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
