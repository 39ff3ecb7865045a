//! rvs-perf: benchmarks, never timed tests (ARCHITECTURE.md, test layer 7).
//!
//! `rvs-perf baseline` runs the real `rvsd` and `dpdk-testpmd` one after the other through the same kind
//! of ports (two net_null vdevs), the same lcores, pool size, descriptor counts and burst size, in both
//! forwarding modes (io, macswap), and prints Mpps, CPU cycles per packet and the ratio rvsd/testpmd.
//!
//! How each side is measured:
//! - rvsd: from its own worker counters (logged every second): forwarded packets and TSC cycles of the
//!   poll loop between the first sample after warm-up and the last; cycles/packet = cycles / packets.
//! - testpmd: from its per-second "Throughput (since last show)" lines, Tx-pps summed over both ports
//!   and averaged after warm-up; its forwarding lcore polls 100 % of the time, so cycles/packet =
//!   TSC Hz / pps, the same TSC rate rvsd reports.
//!
//! net_null allocates and frees an mbuf per packet and never touches a wire, so these figures measure the
//! cost of the forwarding loop itself, not a NIC.

mod bench;
mod generator;
mod healthchecks;
mod packets;
mod pauses;
mod running;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use running::Running;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "rvs-perf", about = "rvs benchmark harness")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// rvsd's L2 loop against dpdk-testpmd on net_null ports.
    Baseline {
        /// Seconds measured per run (after warm-up).
        #[arg(long, default_value_t = 5)]
        seconds: u32,
        /// Seconds of warm-up discarded per run.
        #[arg(long, default_value_t = 2)]
        warmup_seconds: u32,
        /// The rvsd binary (default: next to this one).
        #[arg(long)]
        rvsd: Option<PathBuf>,
        /// The testpmd binary.
        #[arg(long, default_value = "dpdk-testpmd")]
        testpmd: String,
        /// Run without hugepages (both sides).
        #[arg(long)]
        no_huge: bool,
        /// Rounds per mode; rvsd and testpmd alternate within each round and the table shows medians,
        /// so that drift in the machine's speed (common on VMs) hits both sides alike.
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Also write the table as CSV to this file.
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// How long a director worker pauses while rvsd changes and reads its state (a 10,000-service
    /// restore, scrapes, -Lnc, an mh rebuild).
    Pauses {
        /// The rvsd binary (default: next to this one; rvsadm beside it).
        #[arg(long)]
        rvsd: Option<PathBuf>,
    },
    /// What health checks cost rvsd: a keepalived.conf of N real servers with TCP checks against
    /// local listeners; checks per second, the checker thread's and the management thread's CPU.
    Healthchecks {
        /// The rvsd binary (default: next to this one).
        #[arg(long)]
        rvsd: Option<PathBuf>,
        #[arg(long, default_value_t = 1000)]
        servers: u32,
        #[arg(long, default_value_t = 1.0)]
        delay_loop_seconds: f64,
        /// Seconds measured.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// The director (NAT, DR, TUN) against an in-process DPDK traffic generator over net_memif, with
    /// dpdk-testpmd through the same ports for the ratio; writes director.md, director.csv and
    /// summary.txt into --out-dir.
    Director {
        /// Forwarding modes to measure.
        #[arg(long, value_delimiter = ',', default_value = "nat,dr,tun")]
        modes: Vec<bench::Mode>,
        /// Concurrent established flows per run.
        #[arg(long, value_delimiter = ',', default_value = "1000,100000,1000000,10000000")]
        flows: Vec<u32>,
        /// The flow count at which the SYN flood runs (and the testpmd comparison is quoted).
        #[arg(long, default_value_t = 1_000_000)]
        flood_flows: u32,
        /// The flood's SYN rate as a multiple of the device's measured 64-byte rate (the established
        /// packets run at half that rate meanwhile).
        #[arg(long, default_value_t = 1.0)]
        flood_load: f64,
        /// Seconds per measurement window.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Seconds of traffic before each window.
        #[arg(long, default_value_t = 1.0)]
        warmup_seconds: f64,
        /// The rvsd binary (default: next to this one).
        #[arg(long)]
        rvsd: Option<PathBuf>,
        /// The testpmd binary; "none" skips the comparison.
        #[arg(long, default_value = "dpdk-testpmd")]
        testpmd: String,
        /// Runs of each measurement, taken in turn; the table gives medians.
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Where the table, CSV and summary go.
        #[arg(long, default_value = "target/perf")]
        out_dir: PathBuf,
        /// Give each director port a kernel twin (the exception path's cost when idle).
        #[arg(long)]
        kernel_twins: bool,
    },
    /// One run of `director` (it starts one per device and flow count); prints one result line.
    #[command(hide = true)]
    DirectorRun {
        #[arg(long)]
        dut: bench::Dut,
        #[arg(long)]
        flows: u32,
        #[arg(long)]
        flood_flows: u32,
        #[arg(long)]
        flood_load: f64,
        #[arg(long)]
        seconds: f64,
        #[arg(long)]
        warmup_seconds: f64,
        #[arg(long)]
        rvsd: PathBuf,
        #[arg(long)]
        testpmd: String,
        #[arg(long)]
        kernel_twins: bool,
    },
}

/// Shared by both sides so that the comparison is like for like.
const MBUFS: u32 = 16383;
const DESCRIPTORS: u32 = 1024;
const MAIN_LCORE: u32 = 0;
const WORKER_LCORE: u32 = 1;

#[derive(Debug, Clone, Copy)]
struct Figure {
    mpps: f64,
    cycles_per_packet: f64,
}

/// The rvsd binary: as given, or the one built next to this one.
fn rvsd_path(given: Option<PathBuf>) -> Result<PathBuf> {
    let rvsd = match given {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("rvsd"),
    };
    if !rvsd.exists() {
        bail!("{} not found: build it with `cargo build --release -p rvs --bin rvsd`", rvsd.display());
    }
    Ok(rvsd)
}

fn main() -> Result<()> {
    match Args::parse().cmd {
        Cmd::DirectorRun {
            dut,
            flows,
            flood_flows,
            flood_load,
            seconds,
            warmup_seconds,
            rvsd,
            testpmd,
            kernel_twins,
        } => bench::run_one(
            dut,
            flows,
            bench::BenchArgs {
                modes: Vec::new(),
                flows: vec![flows],
                flood_flows,
                flood_load,
                seconds,
                warmup_seconds,
                rounds: 1,
                rvsd,
                testpmd: Some(testpmd).filter(|t| t != "none"),
                out_dir: PathBuf::new(),
                kernel_twins,
            },
        ),
        Cmd::Director {
            modes,
            flows,
            flood_flows,
            flood_load,
            seconds,
            warmup_seconds,
            rvsd,
            testpmd,
            rounds,
            out_dir,
            kernel_twins,
        } => {
            let rvsd = rvsd_path(rvsd)?;
            if flows.iter().any(|&f| f == 0 || f > 15_000_000) {
                bail!("--flows: each count must be 1..=15000000 (the generator's client addressing)");
            }
            bench::run(bench::BenchArgs {
                modes,
                flows,
                flood_flows,
                flood_load,
                seconds,
                warmup_seconds,
                rounds,
                rvsd,
                testpmd: Some(testpmd).filter(|t| t != "none"),
                out_dir,
                kernel_twins,
            })
        }
        Cmd::Pauses { rvsd } => pauses::run(rvsd_path(rvsd)?),
        Cmd::Healthchecks { rvsd, servers, delay_loop_seconds, seconds } => {
            healthchecks::run(rvsd_path(rvsd)?, servers, delay_loop_seconds, seconds)
        }
        Cmd::Baseline { seconds, warmup_seconds, rvsd, testpmd, no_huge, rounds, csv } => {
            let rvsd = rvsd_path(rvsd)?;
            let run = Run { rvsd, testpmd, seconds, warmup: warmup_seconds, no_huge, rounds: rounds.max(1) };
            baseline(&run, csv)
        }
    }
}

struct Run {
    rvsd: PathBuf,
    testpmd: String,
    seconds: u32,
    warmup: u32,
    no_huge: bool,
    rounds: u32,
}

/// Median of each side over the rounds, with the spread of the ratio.
struct Row {
    mode: &'static str,
    ours: Figure,
    theirs: Figure,
    ratio_min: f64,
    ratio_max: f64,
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn baseline(run: &Run, csv: Option<PathBuf>) -> Result<()> {
    let (seconds, warmup, no_huge) = (run.seconds, run.warmup, run.no_huge);
    let mut rows = Vec::new();
    let mut tsc_hz = 0u64;
    for mode in ["io", "macswap"] {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for round in 1..=run.rounds {
            let (o, hz) = run_rvsd(&run.rvsd, mode, seconds, warmup, no_huge)
                .with_context(|| format!("rvsd {mode}"))?;
            tsc_hz = hz;
            let t = run_testpmd(&run.testpmd, mode, seconds, warmup, no_huge, hz)
                .with_context(|| format!("testpmd {mode}"))?;
            eprintln!(
                "round {round}/{} {mode}: rvsd {:.2} Mpps, testpmd {:.2} Mpps, ratio {:.3}",
                run.rounds,
                o.mpps,
                t.mpps,
                o.mpps / t.mpps
            );
            ours.push(o);
            theirs.push(t);
        }
        let ratios: Vec<f64> = ours.iter().zip(&theirs).map(|(o, t)| o.mpps / t.mpps).collect();
        let med = |v: &[Figure]| Figure {
            mpps: median(v.iter().map(|f| f.mpps).collect()),
            cycles_per_packet: median(v.iter().map(|f| f.cycles_per_packet).collect()),
        };
        rows.push(Row {
            mode,
            ours: med(&ours),
            theirs: med(&theirs),
            ratio_min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratio_max: ratios.iter().copied().fold(0.0, f64::max),
        });
    }

    let mut table = String::new();
    let _ = writeln!(
        table,
        "rvs perf baseline: 2 x net_null, 1 worker lcore, burst 32, {} s measured after {} s warm-up, \
         median of {} alternating rounds, TSC {:.2} GHz{}",
        seconds,
        warmup,
        run.rounds,
        tsc_hz as f64 / 1e9,
        if no_huge { ", no hugepages" } else { "" }
    );
    let _ = writeln!(
        table,
        "| mode    | rvsd Mpps | rvsd cycles/pkt | testpmd Mpps | testpmd cycles/pkt | rvsd/testpmd | ratio range   |"
    );
    let _ = writeln!(
        table,
        "|---------|-----------|-----------------|--------------|--------------------|--------------|---------------|"
    );
    let mut csv_text = String::from(
        "mode,rvsd_mpps,rvsd_cycles_per_packet,testpmd_mpps,testpmd_cycles_per_packet,ratio,ratio_min,ratio_max\n",
    );
    for r in &rows {
        let (o, t) = (r.ours, r.theirs);
        let ratio = o.mpps / t.mpps;
        let _ = writeln!(
            table,
            "| {:<7} | {:>9.2} | {:>15.1} | {:>12.2} | {:>18.1} | {:>12.3} | {:.3}..{:.3} |",
            r.mode, o.mpps, o.cycles_per_packet, t.mpps, t.cycles_per_packet, ratio, r.ratio_min, r.ratio_max
        );
        let _ = writeln!(
            csv_text,
            "{},{:.3},{:.2},{:.3},{:.2},{:.4},{:.4},{:.4}",
            r.mode, o.mpps, o.cycles_per_packet, t.mpps, t.cycles_per_packet, ratio, r.ratio_min, r.ratio_max
        );
    }
    print!("{table}");
    let summary: Vec<String> = rows
        .iter()
        .map(|r| {
            let (o, t) = (r.ours, r.theirs);
            format!(
                "{} {:.1} Mpps {:.0} cyc/pkt ratio {:.2}",
                r.mode,
                o.mpps,
                o.cycles_per_packet,
                o.mpps / t.mpps
            )
        })
        .collect();
    println!("summary: {}", summary.join("; "));
    if let Some(path) = csv {
        std::fs::write(&path, csv_text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn field(line: &str, key: &str) -> Option<u64> {
    let pat = format!("{key}=");
    let at = line.find(&pat)? + pat.len();
    line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn run_rvsd(
    rvsd: &std::path::Path,
    mode: &str,
    seconds: u32,
    warmup: u32,
    no_huge: bool,
) -> Result<(Figure, u64)> {
    let dir = std::env::temp_dir().join(format!("rvs-perf-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join(format!("rvsd-{mode}.toml"));
    std::fs::write(
        &config,
        format!(
            "[eal]\nmain_lcore = {MAIN_LCORE}\nworker_lcores = [{WORKER_LCORE}]\nmemory_mib = 256\nhugepages = {}\n\
             file_prefix = \"rvs-perf-{}\"\n\n[mempool]\nmbufs = {MBUFS}\ncache_size = 256\n\n\
             [[port]]\nname = \"a\"\ndevice = \"net_null0\"\nrx_descriptors = {DESCRIPTORS}\ntx_descriptors = {DESCRIPTORS}\n\n\
             [[port]]\nname = \"b\"\ndevice = \"net_null1\"\nrx_descriptors = {DESCRIPTORS}\ntx_descriptors = {DESCRIPTORS}\n\n\
             [forwarding]\nmode = \"{mode}\"\nports = [\"a\", \"b\"]\n\n[management]\nstats_interval_seconds = 1\n\n\
             [control]\nsocket_path = \"{}\"\n",
            !no_huge,
            std::process::id(),
            dir.join("rvsd.sock").display()
        ),
    )?;
    let mut cmd = Command::new(rvsd);
    cmd.arg("--config").arg(&config).env("RVS_LOG", "info");
    let mut run = Running::spawn(cmd)?;
    let mut tsc_hz = 0;
    let mut samples: Vec<(u64, u64)> = Vec::new(); // (loop_cycles, tx_packets) of worker lcore
    let lines =
        run.collect_until(Instant::now() + Duration::from_secs(u64::from(seconds + warmup) + 3), |l| {
            if l.contains(" forwarding ") {
                tsc_hz = field(l, "tsc_hz").unwrap_or(0);
            }
            if l.contains(" stats ") && l.contains("lcore=") {
                if let (Some(c), Some(p)) = (field(l, "loop_cycles"), field(l, "tx_packets")) {
                    samples.push((c, p));
                }
            }
        })?;
    run.stop()?;
    let _ = std::fs::remove_dir_all(&dir);
    if tsc_hz == 0 {
        bail!("rvsd did not report its TSC rate:\n{}", lines.join("\n"));
    }
    let use_from = (warmup as usize).min(samples.len().saturating_sub(2));
    let (Some(first), Some(last)) = (samples.get(use_from), samples.last()) else {
        bail!("rvsd reported too few statistics:\n{}", lines.join("\n"));
    };
    let (cycles, packets) = (last.0 - first.0, last.1 - first.1);
    if packets == 0 {
        bail!("rvsd forwarded nothing");
    }
    let secs = cycles as f64 / tsc_hz as f64;
    Ok((
        Figure { mpps: packets as f64 / secs / 1e6, cycles_per_packet: cycles as f64 / packets as f64 },
        tsc_hz,
    ))
}

fn run_testpmd(
    testpmd: &str,
    mode: &str,
    seconds: u32,
    warmup: u32,
    no_huge: bool,
    tsc_hz: u64,
) -> Result<Figure> {
    let mut cmd = Command::new(testpmd);
    cmd.args([
        "-l",
        &format!("{MAIN_LCORE},{WORKER_LCORE}"),
        "--main-lcore",
        &MAIN_LCORE.to_string(),
        "-m",
        "256",
    ]);
    if no_huge {
        cmd.arg("--no-huge");
    } else {
        cmd.arg("--in-memory");
    }
    cmd.args(["--no-pci", "--vdev", "net_null0", "--vdev", "net_null1", "--", "--nb-cores=1"]);
    cmd.arg(format!("--forward-mode={mode}"));
    cmd.args([
        "--stats-period=1".to_string(),
        format!("--total-num-mbufs={MBUFS}"),
        format!("--rxd={DESCRIPTORS}"),
        format!("--txd={DESCRIPTORS}"),
        "--burst=32".to_string(),
    ]);
    let mut run =
        Running::spawn(cmd).with_context(|| format!("starting {testpmd} (apt-get install dpdk-dev)"))?;
    // Tx-pps of both ports per stats period; a period's total is complete when the second port reports.
    let mut periods: Vec<f64> = Vec::new();
    let mut current = Vec::new();
    let lines =
        run.collect_until(Instant::now() + Duration::from_secs(u64::from(seconds + warmup) + 3), |l| {
            if let Some(rest) = l.trim_start().strip_prefix("Tx-pps:") {
                if let Some(v) = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) {
                    current.push(v);
                    if current.len() == 2 {
                        periods.push(current.iter().sum());
                        current.clear();
                    }
                }
            }
        })?;
    run.stop()?;
    let measured: Vec<f64> = periods.iter().copied().skip(warmup as usize + 1).collect();
    if measured.is_empty() {
        bail!("testpmd printed no throughput after warm-up:\n{}", lines.join("\n"));
    }
    let pps = measured.iter().sum::<f64>() / measured.len() as f64;
    Ok(Figure { mpps: pps / 1e6, cycles_per_packet: tsc_hz as f64 / pps })
}
