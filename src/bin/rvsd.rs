//! rvsd: the rvs director daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use rvs_control::Config;

const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("RVS_GIT_REVISION"),
    ", DPDK ",
    env!("RVS_DPDK_VERSION"),
    ")"
);

/// The rvs director: an LVS-style load balancer on a DPDK data plane.
#[derive(Debug, Parser)]
#[command(name = "rvsd", version = LONG_VERSION)]
struct Args {
    /// The configuration file (TOML).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// Validate the configuration, print the DPDK arguments it implies, and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RVS_LOG").unwrap_or_else(|_| "info".into()),
        )
        .init();

    let cfg = match Config::from_file(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rvsd: {}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    if args.check {
        if let Some(path) = &cfg.keepalived_conf {
            match rvs_control::keepalived::load(path) {
                Ok(k) => {
                    let reals: usize = k.virtual_servers.iter().map(|v| v.reals.len()).sum();
                    let checks: usize =
                        k.virtual_servers.iter().flat_map(|v| &v.reals).map(|r| r.checkers.len()).sum();
                    println!(
                        "{}: ok: {} virtual servers, {reals} real servers, {checks} checks",
                        path.display(),
                        k.virtual_servers.len()
                    );
                }
                Err(e) => {
                    eprintln!("rvsd: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        println!("{}: ok", args.config.display());
        println!("eal arguments: {}", cfg.eal.to_args().join(" "));
        return ExitCode::SUCCESS;
    }

    // SIGINT/SIGTERM stop rvsd cleanly; SIGHUP re-reads the rules file. The handlers only set flags
    // the management loop polls.
    let signals = rvs_control::Signals::default();
    for (sig, flag) in [
        (signal_hook::consts::SIGINT, &signals.shutdown),
        (signal_hook::consts::SIGTERM, &signals.shutdown),
        (signal_hook::consts::SIGHUP, &signals.reload),
    ] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(flag)) {
            eprintln!("rvsd: cannot install the handler for signal {sig}: {e}");
            return ExitCode::FAILURE;
        }
    }
    tracing::info!(version = LONG_VERSION, config = %args.config.display(), "rvsd starting");
    let build = rvs_control::BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        git_revision: env!("RVS_GIT_REVISION"),
        dpdk_version: env!("RVS_DPDK_VERSION"),
    };
    match rvs_control::run(&cfg, &build, &signals) {
        Ok(_) => {
            tracing::info!("rvsd stopped cleanly");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("rvsd: {e}");
            ExitCode::FAILURE
        }
    }
}
