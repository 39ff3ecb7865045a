//! The control socket: rvsadm's requests, parsed with ipvsadm's grammar, checked and applied to the
//! IPVS configuration in one place. Each request is atomic: a command either applies whole or
//! answers an error and changes nothing; a restore is tried on a scratch copy first.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rvs_adm::listing::{self, Snapshot};
use rvs_adm::protocol::{FrameError, Request, Response};
use rvs_adm::{Command, parse, parse_rules};
use rvs_ipvs::{Error as IpvsError, Ipvs, Time};

use crate::rates::Estimator;
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
    pub fn poll(&self, model: &mut Ipvs, rates: &Estimator, table_size: usize, now: Time) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = serve(stream, model, rates, table_size, now) {
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

fn serve(
    mut stream: UnixStream,
    model: &mut Ipvs,
    rates: &Estimator,
    table_size: usize,
    now: Time,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let resp = match Request::read_from(&mut stream) {
        Ok(req) => execute(model, rates, &req, table_size, now),
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

/// Applies one configuration command.
pub fn apply(model: &mut Ipvs, cmd: &Command) -> Result<(), String> {
    match cmd {
        Command::AddService(cfg) => {
            model.add_service(cfg.clone()).map(|_| ()).map_err(|e| ipvs_error(&e, false))
        }
        Command::EditService(cfg) => model.edit_service(cfg.clone()).map_err(|e| ipvs_error(&e, false)),
        Command::DelService(k) => model.del_service(k).map_err(|e| ipvs_error(&e, false)),
        Command::Clear => {
            model.clear();
            Ok(())
        }
        Command::AddDest(k, d) => model.add_dest(k, *d).map(|_| ()).map_err(|e| ipvs_error(&e, true)),
        Command::EditDest(k, d) => model.edit_dest(k, *d).map_err(|e| ipvs_error(&e, true)),
        Command::DelDest(k, a, p) => model.del_dest(k, *a, *p).map_err(|e| ipvs_error(&e, true)),
        Command::Zero(k) => model.zero(k.as_ref()).map_err(|e| ipvs_error(&e, false)),
        Command::SetTimeouts { tcp, tcp_fin, udp } => {
            model.timeouts.set(*tcp, *tcp_fin, *udp);
            Ok(())
        }
        other => Err(format!("{other:?} is not a configuration command")),
    }
}

/// The configuration of `model` as commands (what -Sn would print), to rebuild it elsewhere.
fn config_commands(model: &Ipvs) -> Vec<Command> {
    let mut out = Vec::new();
    for (_, cfg, _, dests) in model.services() {
        out.push(Command::AddService(cfg.clone()));
        for (_, d) in dests {
            out.push(Command::AddDest(cfg.key, d.cfg));
        }
    }
    let (t, f, u) = model.timeouts.listed();
    out.push(Command::SetTimeouts { tcp: t, tcp_fin: f, udp: u });
    out
}

/// Applies a rule file all or nothing: every line is first applied to a scratch copy of the
/// configuration; only if all succeed is the real one changed. Errors name the line.
pub fn restore(model: &mut Ipvs, text: &str) -> Result<usize, String> {
    let cmds = parse_rules(text).map_err(|(line, e)| format!("line {line}: {}", e.message))?;
    let mut scratch = Ipvs::new(16, 16, 0);
    for c in config_commands(model) {
        apply(&mut scratch, &c).map_err(|e| format!("rvsd: cannot copy the configuration: {e}"))?;
    }
    for (line, c) in &cmds {
        apply(&mut scratch, c).map_err(|e| format!("line {line}: {e}"))?;
    }
    for (line, c) in &cmds {
        // Cannot fail: the scratch copy took the same commands in the same order.
        apply(model, c).map_err(|e| format!("line {line}: {e}"))?;
    }
    Ok(cmds.len())
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

/// One request, start to finish.
pub fn execute(model: &mut Ipvs, rates: &Estimator, req: &Request, table_size: usize, now: Time) -> Response {
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
    let snapshot = |m: &Ipvs| {
        let mut s = Snapshot { table_size, ..Snapshot::from_ipvs(m, now) };
        rates.fill(&mut s);
        s
    };
    match cmd {
        Command::List(o) => match listing::list(&snapshot(model), &o) {
            Some(text) => Response::ok(text),
            None => Response::error(1, "No such service"),
        },
        Command::Save { numeric } => Response::ok(listing::save(&snapshot(model), numeric)),
        Command::Restore => match std::str::from_utf8(&req.stdin) {
            Err(_) => Response::error(2, "the rule file is not UTF-8; nothing was changed"),
            Ok(text) => match restore(model, text) {
                Ok(n) => {
                    info!(commands = n, "rules restored");
                    Response::ok(String::new())
                }
                Err(e) => Response::error(2, format!("{e}; nothing was changed")),
            },
        },
        Command::Help => Response::ok(usage(&prog)),
        Command::Version => Response::ok(format!("{prog} v{} (rvs)\n", env!("CARGO_PKG_VERSION"))),
        c => match apply(model, &c) {
            Ok(()) => {
                info!(command = ?args, "configuration changed");
                Response::ok(String::new())
            }
            Err(e) => Response::error(2, e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(m: &mut Ipvs, line: &str) -> Response {
        let mut args = vec!["/usr/sbin/rvsadm".to_owned()];
        args.extend(line.split_whitespace().map(str::to_owned));
        execute(m, &Estimator::default(), &Request { args, stdin: vec![] }, 4096, 0)
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
        let e = execute(
            &mut m,
            &Estimator::default(),
            &Request { args: vec!["rvsadm".into(), "-R".into()], stdin: bad.as_bytes().to_vec() },
            1,
            0,
        );
        assert_eq!(
            (e.status, e.stderr.as_str()),
            (2, "line 3: Service already exists; nothing was changed\n")
        );
        assert_eq!(run(&mut m, "-Sn").stdout, before, "not even the first two lines applied");
        let good = "-A -t 192.0.2.81:80\n-a -t 192.0.2.81:80 -r 203.0.113.1\n";
        let ok = execute(
            &mut m,
            &Estimator::default(),
            &Request { args: vec!["rvsadm".into(), "-R".into()], stdin: good.as_bytes().to_vec() },
            1,
            0,
        );
        assert_eq!(ok.status, 0, "{}", ok.stderr);
        assert!(run(&mut m, "-Sn").stdout.contains("-a -t 192.0.2.81:80 -r 203.0.113.1:80 -g -w 1\n"));
    }
}
