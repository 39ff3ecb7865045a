//! rvsd: the rvs director daemon.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use rvs_control::Config;

// Allocations of 2 MiB and more (the workers' connection tables and their indexes) in huge pages: at a
// million flows that cut a connection lookup's cost by a fifth to a quarter on a test VM (see
// rvs_dpdk::huge; `pipeline_rate pages` measures it).
#[global_allocator]
static ALLOC: rvs_dpdk::HugeAlloc = rvs_dpdk::HugeAlloc;

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
    #[arg(long, short = 'c', value_name = "FILE", required_unless_present = "manual")]
    config: Option<PathBuf>,
    /// Validate the configuration, print the DPDK arguments it implies, and exit.
    #[arg(long)]
    check: bool,
    /// Print this manual page (roff) and exit.
    #[arg(long)]
    manual: bool,
}

/// rvsd(8) in roff, from the clap definition above: the options cannot drift from the page.
fn man_page() -> String {
    let mut cmd = <Args as clap::CommandFactory>::command();
    // Built, the command also lists the --help and --version clap adds.
    cmd.build();
    let esc = rvs_adm::manual::roff;
    let mut m =
        format!(".TH RVSD 8 \"\" \"rvs {}\" \"System Administration\"\n", esc(env!("CARGO_PKG_VERSION")));
    m.push_str(".SH NAME\nrvsd \\- the rvs director daemon\n.SH SYNOPSIS\n.B rvsd\n");
    m.push_str("\\fB\\-c\\fR \\fIFILE\\fR [\\fB\\-\\-check\\fR]\n.SH DESCRIPTION\n");
    m.push_str(&esc(&cmd.get_about().map(ToString::to_string).unwrap_or_default()));
    m.push_str(
        ".\nrvsd runs the DPDK workers that forward the virtual services, the management core that \
         answers rvsadm(8) on its control socket and serves Prometheus metrics, and the health checks \
         of a keepalived.conf. SIGHUP re\\-reads the rules; SIGINT and SIGTERM stop it cleanly.\n",
    );
    m.push_str(".SH OPTIONS\n");
    for a in cmd.get_arguments() {
        m.push_str(".TP\n");
        let mut head = Vec::new();
        if let Some(c) = a.get_short() {
            head.push(format!("\\fB\\-{c}\\fR"));
        }
        if let Some(l) = a.get_long() {
            head.push(format!("\\fB\\-\\-{}\\fR", esc(l)));
        }
        m.push_str(&head.join(", "));
        if let Some(v) = a.get_value_names().and_then(|v| v.first()).filter(|_| a.get_action().takes_values())
        {
            m.push_str(&format!(" \\fI{}\\fR", esc(v)));
        }
        m.push('\n');
        m.push_str(&esc(&a.get_help().map(ToString::to_string).unwrap_or_default()));
        m.push('\n');
    }
    m.push_str(".SH EXIT STATUS\n0 after a clean stop or a passed check; 2 for a bad command line or configuration.\n");
    m.push_str(".SH FILES\n.TP\n/etc/rvs/rvsd.toml\nThe configuration (ports, workers, forwarding, control, metrics).\n");
    m.push_str(".TP\n/etc/rvs/rules\nThe rules restored at start, in rvsadm \\-S form.\n");
    m.push_str(".SH ENVIRONMENT\n.TP\nRVS_LOG\nThe log filter (tracing's syntax), default info.\n");
    m.push_str(".SH SEE ALSO\n.BR rvsadm (8),\n.BR keepalived.conf (5)\n");
    m
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

    if args.manual {
        print!("{}", man_page());
        return ExitCode::SUCCESS;
    }
    let Some(config) = args.config else {
        eprintln!("rvsd: --config is required");
        return ExitCode::from(2);
    };
    let cfg = match Config::from_file(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rvsd: {}: {e}", config.display());
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
        println!("{}: ok", config.display());
        println!("eal arguments: {}", cfg.eal.to_args().join(" "));
        // What the machine offers these ports and workers; warnings never fail the check (the
        // configuration may be prepared on another machine than the director).
        for f in rvs_control::hardware::survey(&cfg, std::path::Path::new("/")) {
            println!("{}{}", if f.warning { "warning: " } else { "" }, f.text);
        }
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
    tracing::info!(version = LONG_VERSION, config = %config.display(), "rvsd starting");
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
