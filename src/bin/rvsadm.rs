//! rvsadm: ipvsadm's command language for rvs. A thin client: it sends its command line (and, for
//! -R, the rules on standard input) to rvsd over the control socket and prints the answer, so every
//! change is parsed, checked and applied in one place, atomically.
//!
//! Extensions that never change an ipvsadm option's meaning: `--socket PATH` (or RVS_SOCKET) picks
//! the control socket; default /run/rvs/rvsd.sock. `--completions bash|zsh|fish` and `--manual`
//! print the completion script and the manual page, built from the grammar's own tables, without
//! talking to rvsd (the package build runs them).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use rvs_adm::protocol::{self, Request};

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("RVS_GIT_REVISION"), ")");

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    let prog = args.first().cloned().unwrap_or_else(|| "rvsadm".into());
    if args.iter().skip(1).any(|a| a == "--version" || a == "-v") {
        println!(
            "rvsadm {VERSION} (the ipvsadm 1.31 command language, control protocol {})",
            protocol::VERSION
        );
        return ExitCode::SUCCESS;
    }
    if let Some(i) = args.iter().position(|a| a == "--completions") {
        return match args.get(i + 1).map(|sh| rvs_adm::manual::completions(sh)) {
            Some(Ok(script)) => {
                print!("{script}");
                ExitCode::SUCCESS
            }
            Some(Err(e)) => {
                eprintln!("{prog}: {e}");
                ExitCode::from(2)
            }
            None => {
                eprintln!("{prog}: --completions needs a shell: bash, zsh or fish");
                ExitCode::from(2)
            }
        };
    }
    if args.iter().skip(1).any(|a| a == "--manual") {
        print!("{}", rvs_adm::manual::man_page(env!("CARGO_PKG_VERSION")));
        return ExitCode::SUCCESS;
    }
    let mut socket =
        std::env::var_os("RVS_SOCKET").map(PathBuf::from).unwrap_or_else(|| "/run/rvs/rvsd.sock".into());
    if let Some(i) = args.iter().position(|a| a == "--socket" || a.starts_with("--socket=")) {
        let a = args.remove(i);
        match a.strip_prefix("--socket=") {
            Some(p) => socket = p.into(),
            None if i < args.len() => socket = args.remove(i).into(),
            None => {
                eprintln!("--socket needs a path");
                return ExitCode::from(2);
            }
        }
    }
    let restore = args
        .iter()
        .skip(1)
        .any(|a| a == "--restore" || (a.starts_with('-') && !a.starts_with("--") && a.contains('R')));
    let mut stdin = Vec::new();
    if restore {
        if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
            eprintln!("{prog}: cannot read the rules: {e}");
            return ExitCode::from(2);
        }
    }
    match protocol::call(&socket, &Request { args, stdin }) {
        Ok(resp) => {
            let _ = std::io::stdout().write_all(resp.stdout.as_bytes());
            let _ = std::io::stderr().write_all(resp.stderr.as_bytes());
            ExitCode::from(u8::try_from(resp.status).unwrap_or(2))
        }
        Err(e) => {
            eprintln!("{prog}: cannot talk to rvsd at {}: {e}", socket.display());
            ExitCode::from(2)
        }
    }
}
