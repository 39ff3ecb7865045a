//! `rvs-perf director`: the director's forwarding rate per mode and flow count, through DPDK ports.
//!
//! This process is the traffic generator: two net_memif ports in the server role, polled by
//! [`crate::generator::Generator`] on its own lcore. The device under test, the real `rvsd` (or, for the
//! comparison, `dpdk-testpmd` in io mode), runs as a child process whose two memif client ports connect
//! to them: generator port 0 = the director's front (clients), port 1 = its back (real servers).
//!
//! Per mode (NAT, DR, TUN) and flow count, one rvsd run:
//! 1. a few priming SYNs, so that the director has resolved the real servers' addresses;
//! 2. one SYN per flow: the new-connection rate is flows / time until the last SYN came out;
//! 3. established-flow ACKs over every flow, 64-byte frames then TRex's IMIX: Mpps measured on the
//!    servers' side; cycles/packet from the worker's busy-cycle and packet counters (Prometheus);
//! 4. at the flood flow count, established 64-byte packets at half the measured rate while SYNs from
//!    random sources fill the rest of the link: the share of established packets that still came out.
//!
//! The generator is lossless (it offers a refused packet again) except in the flood, so the rate seen
//! is the slower of the device and the generator; the table gives the device's busy ratio to tell.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crossbeam_channel::Sender;
use rvs_dpdk::{Eal, EalConfig, LcoreId, Mempool, MempoolConfig, Port, PortConfig, QueueId, Started};

use crate::generator::{Counters, Generator, Plan};
use crate::packets::{self, Addressing};
use crate::running::Running;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Nat,
    Dr,
    Tun,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Nat => "NAT",
            Mode::Dr => "DR",
            Mode::Tun => "TUN",
        }
    }
    fn flag(self) -> &'static str {
        match self {
            Mode::Nat => "-m",
            Mode::Dr => "-g",
            Mode::Tun => "-i",
        }
    }
}

/// One device-under-test run, done in a process of its own: DPDK 22.11's memif server does not
/// survive a client reconnecting (its interrupt thread panics on a closed descriptor), so each run
/// gets a fresh generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dut {
    Testpmd,
    Nat,
    Dr,
    Tun,
}

#[derive(Debug, Clone)]
pub struct BenchArgs {
    pub modes: Vec<Mode>,
    pub flows: Vec<u32>,
    pub flood_flows: u32,
    /// The flood's rate as a multiple of the device's measured 64-byte rate.
    pub flood_load: f64,
    pub seconds: f64,
    pub warmup_seconds: f64,
    /// Runs of each measurement; the table gives medians.
    pub rounds: u32,
    pub rvsd: PathBuf,
    pub testpmd: Option<String>,
    pub out_dir: PathBuf,
    /// Gives each director port a kernel twin (TAP), to measure what the exception path costs the
    /// workers when it carries nothing (its RX polled every 100 µs).
    pub kernel_twins: bool,
}

const GEN_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 0x0a, 0], [2, 0, 0, 0, 0x0a, 1]];
const DUT_MACS: [[u8; 6]; 2] = [[2, 0, 0, 0, 0x0d, 0], [2, 0, 0, 0, 0x0d, 1]];
const VIP: [u8; 4] = [198, 18, 1, 100];
const SERVERS: u8 = 8;
/// Priming flows live far above any measured flow count so they never collide with one.
const PRIMING_FIRST: u32 = 16_000_000;
const PRIMING_COUNT: u32 = 64;
const METRICS_PORT: u16 = 9797;

fn mac_str(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// What one measurement window saw.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
struct Window {
    #[serde(with = "nan_null")]
    mpps: f64,
    #[serde(with = "nan_null")]
    gbps: f64,
    /// Device cycles per forwarded packet (rvsd: busy cycles / packets; testpmd: TSC Hz / pps).
    #[serde(with = "nan_null")]
    cycles: f64,
    /// Share of the device's loop time spent on iterations that moved packets (1.0 = saturated).
    #[serde(with = "nan_null")]
    busy: f64,
    /// Flood only: share of offered established packets that came out, and flood SYNs out per second.
    #[serde(with = "nan_null")]
    est_share: f64,
    #[serde(with = "nan_null")]
    flood_out_mpps: f64,
    /// Flood only: share of legitimate new connections that completed (SYN out, the server's SYN-ACK
    /// back for NAT, ACK out), and the connection table's fullest moment (share of its capacity).
    #[serde(with = "nan_null")]
    new_share: f64,
    #[serde(with = "nan_null")]
    table_peak: f64,
    /// Busy cycles per packet in each stage of the packet path (rvsd's worker counters, in
    /// `rvs_dataplane::STAGES` order; testpmd: none).
    #[serde(default)]
    stages: [f64; 5],
}

/// Numbers per [`Window`] when rounds are combined field by field.
const WINDOW_FIELDS: usize = 13;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Row {
    mode: String,
    flows: u32,
    syn_rate: Option<f64>,
    syn_complete: bool,
    small: Window,
    imix: Window,
    flood: Option<Window>,
    #[serde(with = "nan_null")]
    rss_mib: f64,
    tsc_hz: f64,
}

/// JSON has no NaN: absent numbers travel as null.
mod nan_null {
    pub fn serialize<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() { s.serialize_f64(*v) } else { s.serialize_none() }
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

impl Window {
    fn fields(&self) -> [f64; WINDOW_FIELDS] {
        let [a, b, c, d, e] = self.stages;
        [
            self.mpps,
            self.gbps,
            self.cycles,
            self.busy,
            self.est_share,
            self.flood_out_mpps,
            self.new_share,
            self.table_peak,
            a,
            b,
            c,
            d,
            e,
        ]
    }
    fn from_fields(f: &[f64]) -> Option<Self> {
        let [mpps, gbps, cycles, busy, est_share, flood_out_mpps, new_share, table_peak, a, b, c, d, e] =
            f.try_into().ok()?;
        Some(Self {
            mpps,
            gbps,
            cycles,
            busy,
            est_share,
            flood_out_mpps,
            new_share,
            table_peak,
            stages: [a, b, c, d, e],
        })
    }
}

const ROW_TAG: &str = "RVS-PERF-ROW";

impl Row {
    /// One line for the parent process: the tag, then the row as JSON.
    fn to_line(&self) -> String {
        format!("{ROW_TAG} {}", serde_json::to_string(self).unwrap_or_default())
    }

    /// Each numeric field the median of the rounds' (NaN = absent), except completeness: a round with
    /// lost SYNs marks the row.
    fn median(rounds: &[Row]) -> Option<Row> {
        let first = rounds.first()?;
        let all: Vec<Vec<f64>> = rounds.iter().map(Row::numbers).collect();
        let nums: Vec<f64> = (0..all[0].len())
            .map(|i| {
                let v: Vec<f64> = all.iter().map(|n| n[i]).filter(|x| !x.is_nan()).collect();
                match i {
                    _ if v.is_empty() => f64::NAN,
                    2 => v.iter().copied().fold(1.0, f64::min),
                    _ => crate::median(v),
                }
            })
            .collect();
        Row::from_numbers(first.mode.clone(), &nums)
    }

    fn numbers(&self) -> Vec<f64> {
        let mut nums = vec![
            f64::from(self.flows),
            self.syn_rate.unwrap_or(f64::NAN),
            if self.syn_complete { 1.0 } else { 0.0 },
            self.rss_mib,
        ];
        nums.extend(self.small.fields());
        nums.extend(self.imix.fields());
        nums.extend(self.flood.map_or([f64::NAN; WINDOW_FIELDS], |f| f.fields()));
        nums.push(self.tsc_hz);
        nums
    }

    fn from_line(line: &str) -> Option<Self> {
        let json = line.split_once(ROW_TAG)?.1.trim();
        serde_json::from_str(json).ok()
    }

    /// The inverse of [`Row::numbers`].
    fn from_numbers(mode: String, n: &[f64]) -> Option<Self> {
        const W: usize = WINDOW_FIELDS;
        if n.len() != 4 + 3 * W + 1 {
            return None;
        }
        Some(Row {
            mode,
            flows: n[0] as u32,
            syn_rate: Some(n[1]).filter(|v| !v.is_nan()),
            syn_complete: n[2] == 1.0,
            rss_mib: n[3],
            small: Window::from_fields(&n[4..4 + W])?,
            imix: Window::from_fields(&n[4 + W..4 + 2 * W])?,
            flood: Some(&n[4 + 2 * W..4 + 3 * W]).filter(|f| !f[0].is_nan()).and_then(Window::from_fields),
            tsc_hz: n[4 + 3 * W],
        })
    }
}

/// Fields drop in order: the ports before the EAL they live in.
struct Harness {
    ports: [Port<Started>; 2],
    plans: Sender<Plan>,
    counters: Arc<Counters>,
    tsc_hz: u64,
    socket: PathBuf,
    work: PathBuf,
    args: BenchArgs,
    _eal: Eal,
}

/// The whole benchmark: testpmd, then each mode at each flow count, each in a child process.
pub fn run(args: BenchArgs) -> Result<()> {
    let mut jobs: Vec<(Dut, u32)> = Vec::new();
    if args.testpmd.is_some() {
        jobs.push((Dut::Testpmd, args.flood_flows));
    }
    for &mode in &args.modes {
        let dut = match mode {
            Mode::Nat => Dut::Nat,
            Mode::Dr => Dut::Dr,
            Mode::Tun => Dut::Tun,
        };
        jobs.extend(args.flows.iter().map(|&f| (dut, f)));
    }
    let me = std::env::current_exe()?;
    // Rounds go over every job in turn, so that drift in the machine's speed (VMs) hits all alike.
    let mut results: Vec<Vec<Row>> = vec![Vec::new(); jobs.len()];
    for round in 1..=args.rounds.max(1) {
        for (j, &(dut, flows)) in jobs.iter().enumerate() {
            let row = one_run(&me, &args, dut, flows)?;
            eprintln!("round {round}/{}: {}", args.rounds, describe(&row));
            results[j].push(row);
        }
    }
    let mut rows = Vec::new();
    let mut testpmd = None;
    for ((dut, _), rounds) in jobs.iter().zip(&results) {
        let row = Row::median(rounds).context("no result")?;
        if *dut == Dut::Testpmd {
            testpmd = Some(row);
        } else {
            rows.push(row);
        }
    }
    let (md, csv, summary) =
        report(&rows, testpmd.as_ref(), rows.first().map_or(0, |r| r.tsc_hz as u64), &args);
    std::fs::create_dir_all(&args.out_dir)?;
    std::fs::write(args.out_dir.join("director.md"), &md)?;
    std::fs::write(args.out_dir.join("director.csv"), &csv)?;
    std::fs::write(args.out_dir.join("summary.txt"), format!("{summary}\n"))?;
    print!("{md}");
    println!("{summary}");
    Ok(())
}

fn one_run(me: &Path, args: &BenchArgs, dut: Dut, flows: u32) -> Result<Row> {
    let mut cmd = Command::new(me);
    cmd.arg("director-run")
        .arg("--dut")
        .arg(format!("{dut:?}").to_lowercase())
        .arg("--flows")
        .arg(flows.to_string())
        .arg("--flood-flows")
        .arg(args.flood_flows.to_string())
        .arg("--flood-load")
        .arg(args.flood_load.to_string())
        .arg("--seconds")
        .arg(args.seconds.to_string())
        .arg("--warmup-seconds")
        .arg(args.warmup_seconds.to_string())
        .arg("--rvsd")
        .arg(&args.rvsd)
        .arg("--testpmd")
        .arg(args.testpmd.as_deref().unwrap_or("none"));
    if args.kernel_twins {
        cmd.arg("--kernel-twins");
    }
    let mut child = Running::spawn(cmd)?;
    // 10 M flows take a while to set up; a stuck run still ends.
    let (line, before) = child
        .wait_for_after(ROW_TAG, Duration::from_secs(300))
        .with_context(|| format!("{dut:?} with {flows} flows"))?;
    // The run's own notes (where lost SYNs went) reach the user; the rest is its generator's chatter.
    for note in before.iter().filter(|l| l.contains("SYNs lost")) {
        eprintln!("{note}");
    }
    let row = Row::from_line(&line).with_context(|| format!("unreadable result line {line:?}"))?;
    let _ = child.finish(Duration::from_secs(20));
    Ok(row)
}

/// One run, in this process: the generator, the device under test, one result line on stdout.
pub fn run_one(dut: Dut, flows: u32, args: BenchArgs) -> Result<()> {
    let work = std::env::temp_dir().join(format!("rvs-perf-director-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let socket = work.join("memif.sock");
    let vdev = |i: usize| {
        format!(
            "net_memif{i},role=server,id={i},socket={},socket-abstract=no,mac={}",
            socket.display(),
            mac_str(GEN_MACS[i])
        )
    };
    // The generator's lcore shares CPU 0 with both processes' main threads (they sleep); the device
    // under test polls CPU 1 alone.
    let eal_cfg = EalConfig {
        main_lcore: 0,
        worker_lcores: vec![1],
        lcore_cpus: Some(vec![0, 0]),
        memory_mib: Some(256),
        in_memory: true,
        file_prefix: Some(format!("rvs-perf-gen-{}", std::process::id())),
        vdevs: vec![vdev(0), vdev(1)],
        ..EalConfig::default()
    };
    let eal = Eal::init(&eal_cfg.to_args()).context("starting the generator's EAL")?;
    let pool = Mempool::new(&MempoolConfig {
        name: "gen".into(),
        mbufs: 32767,
        cache_size: 512,
        data_room_bytes: 2176,
        socket: None,
    })?;
    let port_cfg = PortConfig {
        rx_queues: 1,
        tx_queues: 1,
        rx_descriptors: 1024,
        tx_descriptors: 1024,
        promiscuous: true,
        mtu_bytes: None,
        rss_key: None,
    };
    let mut ports = Vec::new();
    for i in 0..2 {
        let id = Port::lookup(&eal, &format!("net_memif{i}"))?;
        ports.push(Port::configure(&eal, id, &port_cfg, &pool)?.start()?);
    }
    let [mut p0, mut p1]: [Port<Started>; 2] = ports.try_into().map_err(|_| anyhow::anyhow!("two ports"))?;
    let (plans, plan_rx) = crossbeam_channel::bounded(4);
    let counters = Arc::new(Counters::default());
    let tsc_hz = eal.tsc_hz();
    let generator = Generator {
        rx: [p0.take_rx_queue(QueueId(0))?, p1.take_rx_queue(QueueId(0))?],
        tx: [p0.take_tx_queue(QueueId(0))?, p1.take_tx_queue(QueueId(0))?],
        macs: GEN_MACS,
        pool,
        addressing: Addressing { src_mac: GEN_MACS[0], dst_mac: DUT_MACS[0], vip: VIP.into(), vport: 80 },
        plans: plan_rx,
        counters: Arc::clone(&counters),
        tsc_hz,
    };
    let handle = eal.launch(LcoreId(1), move || generator.run())?;
    let h = Harness { ports: [p0, p1], plans, counters, tsc_hz, socket, work: work.clone(), args, _eal: eal };
    let result = h.one(dut, flows);
    let _ = h.plans.send(Plan::Stop);
    let _ = handle.join();
    let _ = std::fs::remove_dir_all(&work);
    drop(h);
    result
}

impl Harness {
    fn one(&self, dut: Dut, flows: u32) -> Result<()> {
        let (mut row, dut) = match dut {
            Dut::Testpmd => self.testpmd(self.args.testpmd.as_deref().unwrap_or("dpdk-testpmd")),
            Dut::Nat => self.rvsd(Mode::Nat, flows),
            Dut::Dr => self.rvsd(Mode::Dr, flows),
            Dut::Tun => self.rvsd(Mode::Tun, flows),
        }?;
        row.tsc_hz = self.tsc_hz as f64;
        // The result goes out before the device stops: see `Dut`.
        println!("{}", row.to_line());
        let _ = std::io::Write::flush(&mut std::io::stdout());
        dut.stop().context("stopping the device under test")?;
        self.wait_links_down()
    }

    fn plan(&self, p: Plan) -> Result<()> {
        self.counters.plan_taken.store(false, Ordering::Release);
        self.plans.send(p).context("the generator stopped")?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.counters.plan_taken.load(Ordering::Acquire) {
            if Instant::now() > deadline {
                bail!("the generator did not take a plan within 2 s");
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }

    fn wait_links(&self, dut: &mut Running) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.ports.iter().all(|p| p.link_up()) {
            if Instant::now() > deadline {
                bail!("memif links did not come up within 15 s:\n{}", dut.drain().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn rx(&self) -> u64 {
        self.counters.rx.load(Ordering::Relaxed)
    }

    /// Sends `count` SYNs from `first` on and waits for them to come out: the rate at which they
    /// did, and whether all did. When some never come out, the rate is over the time until the last
    /// one that did (not the 2 s of silence that ends the wait, which once made 64 lost SYNs of a
    /// million read as a third of the rate).
    fn syn(&self, first: u32, count: u32) -> Result<(f64, bool)> {
        let before = self.rx();
        let start = Instant::now();
        self.plan(Plan::Syn { first, count })?;
        let (mut last_seen, mut last_change) = (before, Instant::now());
        loop {
            let now = self.rx();
            if now - before >= u64::from(count) {
                return Ok((f64::from(count) / start.elapsed().as_secs_f64(), true));
            }
            if now != last_seen {
                (last_seen, last_change) = (now, Instant::now());
            } else if last_change.elapsed() > Duration::from_secs(2) {
                let active = (last_change - start).as_secs_f64().max(1e-6);
                return Ok(((last_seen - before) as f64 / active, false));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    fn rvsd(&self, mode: Mode, flows: u32) -> Result<(Row, Running)> {
        let a = &self.args;
        let flood = flows == a.flood_flows;
        // Room for the flows and the priming SYNs; a flood run also gets room for as many again.
        let capacity = if flood { 2 * flows } else { flows + flows / 32 } + 65536;
        // Without a flood the defences stay off until the spare 64k are half gone: at the default
        // (an eighth of the table) the last few percent of the priming SYNs went through
        // statelessly, and the new-connection rate measured a mix of the two paths.
        let ipvs = if flood { String::new() } else { "[ipvs]\namemthresh = 32768\n\n".to_string() };
        let rules = self.work.join("rules");
        let mut r = format!("-A -t {}:80 -s rr\n", std::net::Ipv4Addr::from(VIP));
        for s in 0..SERVERS {
            let port = if mode == Mode::Nat { 8080 } else { 80 };
            let _ = writeln!(
                r,
                "-a -t {}:80 -r 198.19.0.{}:{port} {} -w 1",
                std::net::Ipv4Addr::from(VIP),
                11 + s,
                mode.flag()
            );
        }
        std::fs::write(&rules, r)?;
        let config = self.work.join("rvsd.toml");
        let memif = |i: usize, name: &str, addr: &str| {
            let twin = if a.kernel_twins { format!("kernel_twin = \"rvsperf{i}\"\n") } else { String::new() };
            format!(
                "[[port]]\nname = \"{name}\"\ndevice = \"net_memif{i},role=client,id={i},socket={},socket-abstract=no,mac={}\"\n\
                 address = \"{addr}\"\nrx_descriptors = 1024\ntx_descriptors = 1024\n{twin}",
                self.socket.display(),
                mac_str(DUT_MACS[i])
            )
        };
        std::fs::write(
            &config,
            format!(
                "[eal]\nmain_lcore = 0\nworker_lcores = [1]\nlcore_cpus = [0, 1]\nmemory_mib = 256\nhugepages = true\n\
                 file_prefix = \"rvs-perf-dut-{pid}\"\nextra_args = [\"--huge-unlink\"]\n\n\
                 [mempool]\nmbufs = 16383\ncache_size = 256\n\n{}\n{}\n\
                 [forwarding]\nmode = \"director\"\n\n[[route]]\ndestination = \"0.0.0.0/0\"\ngateway = \"198.18.0.1\"\n\n{ipvs}\
                 [control]\nsocket_path = \"{}\"\nrules_file = \"{}\"\nconnections_per_worker = {capacity}\n\n\
                 [metrics]\nlisten_address = \"127.0.0.1:{METRICS_PORT}\"\n",
                memif(0, "front", "198.18.0.2/24"),
                memif(1, "back", "198.19.0.1/24"),
                self.work.join("rvsd.sock").display(),
                rules.display(),
                pid = std::process::id(),
            ),
        )?;
        let mut cmd = Command::new(&a.rvsd);
        cmd.arg("--config").arg(&config).env("RVS_LOG", "warn,rvs_control=info");
        let mut dut = Running::spawn(cmd).context("starting rvsd")?;
        dut.wait_for("forwarding", Duration::from_secs(60))?;
        self.wait_links(&mut dut)?;
        let mut row = Row { mode: mode.name().into(), flows, ..Row::default() };

        let (_, primed) = self.syn(PRIMING_FIRST, PRIMING_COUNT)?;
        if !primed {
            bail!(
                "the priming SYNs did not come out of the director (rx {}, other {}, ARP replies {}):\n{}",
                self.rx(),
                self.counters.rx_other.load(Ordering::Relaxed),
                self.counters.arp_replies.load(Ordering::Relaxed),
                dut.drain().join("\n")
            );
        }
        let (rate, complete) = self.syn(0, flows)?;
        row.syn_rate = Some(rate);
        row.syn_complete = complete;
        if !complete {
            // Say where the lost SYNs went (the device's drop counters).
            match scrape_text(&format!("127.0.0.1:{METRICS_PORT}")) {
                Ok(body) => {
                    let drops: Vec<&str> = body
                        .lines()
                        .filter(|l| l.contains("dropped_packets_total{") && !l.ends_with(" 0"))
                        .collect();
                    eprintln!("{mode:?} {flows} flows: SYNs lost; the device's drops: {}", drops.join("; "));
                }
                Err(e) => {
                    eprintln!("{mode:?} {flows} flows: SYNs lost; no drop counters to say where: {e:#}")
                }
            }
            // Some SYNs were lost (a device drop, or the generator descheduled while the device's TX
            // ring to it was full): a second SYN for a live connection is just forwarded, a lost one
            // creates its connection now, so the established-flow rounds run over every flow.
            let _ = self.syn(0, flows)?;
        }
        row.rss_mib = rss_mib(dut.pid());

        let metrics = format!("127.0.0.1:{METRICS_PORT}");
        self.plan(Plan::Flows { flows, sizes: vec![packets::SMALL] })?;
        row.small = self.measure(Some(&metrics), mode == Mode::Nat)?;
        // memif cannot change its 1500-byte MTU, so in TUN mode IMIX's largest frames are 20 bytes
        // shorter: the IPIP header must fit (a real server LAN would carry a larger MTU instead).
        let imix = packets::IMIX.map(|s| if mode == Mode::Tun && s > 1500 { s - 20 } else { s });
        self.plan(Plan::Flows { flows, sizes: imix.to_vec() })?;
        row.imix = self.measure(Some(&metrics), mode == Mode::Nat)?;
        if flood {
            let capacity = row.small.mpps * 1e6;
            // Legitimate new clients at 1 % of the device's rate alongside.
            self.plan(Plan::Flood {
                flows,
                pps: capacity / 2.0,
                flood_pps: capacity * a.flood_load,
                new_pps: capacity / 100.0,
            })?;
            row.flood = Some(self.measure(Some(&metrics), mode == Mode::Nat)?);
        }
        self.plan(Plan::Idle)?;
        Ok((row, dut))
    }

    fn wait_links_down(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.ports.iter().any(|p| p.link_up()) {
            if Instant::now() > deadline {
                bail!("memif links stayed up after the device stopped");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn testpmd(&self, bin: &str) -> Result<(Row, Running)> {
        let mut cmd = Command::new(bin);
        cmd.args(["-l", "0,1", "--main-lcore", "0", "-m", "256", "--in-memory", "--no-pci"]);
        cmd.arg(format!("--file-prefix=rvs-perf-testpmd-{}", std::process::id()));
        for (i, mac) in DUT_MACS.iter().enumerate() {
            cmd.arg("--vdev").arg(format!(
                "net_memif{i},role=client,id={i},socket={},socket-abstract=no,mac={}",
                self.socket.display(),
                mac_str(*mac)
            ));
        }
        cmd.args([
            "--",
            "--nb-cores=1",
            "--forward-mode=io",
            "--stats-period=1",
            "--total-num-mbufs=16383",
            "--rxd=1024",
            "--txd=1024",
            "--burst=32",
        ]);
        let mut dut = Running::spawn(cmd).context("starting dpdk-testpmd (apt-get install dpdk-dev)")?;
        self.wait_links(&mut dut)?;
        let flows = self.args.flood_flows;
        let mut row = Row { mode: "testpmd".into(), flows, ..Row::default() };
        self.plan(Plan::Flows { flows, sizes: vec![packets::SMALL] })?;
        row.small = self.measure(None, false)?;
        self.plan(Plan::Flows { flows, sizes: packets::IMIX.to_vec() })?;
        row.imix = self.measure(None, false)?;
        self.plan(Plan::Idle)?;
        let _ = dut.drain();
        Ok((row, dut))
    }

    /// Warms up, then measures one window. `metrics`: the device's Prometheus address (rvsd).
    fn measure(&self, metrics: Option<&str>, nat: bool) -> Result<Window> {
        let a = &self.args;
        std::thread::sleep(Duration::from_secs_f64(a.warmup_seconds));
        let c = &self.counters;
        let read = || {
            (
                c.rx.load(Ordering::Relaxed),
                c.rx_bytes.load(Ordering::Relaxed),
                c.rx_flood.load(Ordering::Relaxed),
                c.offered_est.load(Ordering::Relaxed),
            )
        };
        let new = || {
            (
                c.offered_new.load(Ordering::Relaxed),
                c.rx_new_syn.load(Ordering::Relaxed),
                c.rx_new_synack.load(Ordering::Relaxed),
                c.rx_new_ack.load(Ordering::Relaxed),
            )
        };
        let m0 = metrics.map(scrape).transpose()?;
        let (t0, g0, n0) = (Instant::now(), read(), new());
        // The connection table's occupancy through the window, a sample every quarter second.
        let mut peak = 0.0f64;
        let mut samples = Vec::new();
        let end = t0 + Duration::from_secs_f64(a.seconds);
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(250).min(end.saturating_duration_since(Instant::now())));
            if let Some(m) = metrics.map(scrape).transpose()? {
                let (e, cap) =
                    (m.get("rvs_connection_table_entries"), m.get("rvs_connection_table_capacity"));
                if let (Some(e), Some(cap)) = (e, cap) {
                    let share = e / cap.max(1.0);
                    peak = peak.max(share);
                    samples.push(format!("{:.3}", share));
                }
            }
        }
        let (t1, g1, n1) = (Instant::now(), read(), new());
        let m1 = metrics.map(scrape).transpose()?;
        let secs = (t1 - t0).as_secs_f64();
        let rx = (g1.0 - g0.0) as f64;
        let pps = rx / secs;
        let mut w = Window {
            mpps: pps / 1e6,
            // On the wire each frame also carries 4 bytes of FCS and 20 of preamble and gap.
            gbps: ((g1.1 - g0.1) as f64 + rx * 24.0) * 8.0 / secs / 1e9,
            cycles: self.tsc_hz as f64 / pps.max(1.0),
            busy: 1.0,
            ..Window::default()
        };
        if let (Some(m0), Some(m1)) = (m0, m1) {
            let d = |k: &str| m1.get(k).copied().unwrap_or(0.0) - m0.get(k).copied().unwrap_or(0.0);
            let (busy, total, pkts) = (
                d("rvs_worker_busy_cycles_total"),
                d("rvs_worker_loop_cycles_total"),
                d("rvs_worker_received_packets_total"),
            );
            if pkts > 0.0 && total > 0.0 {
                w.cycles = busy / pkts;
                w.busy = busy / total;
            }
            let staged = d("rvs_worker_staged_packets_total");
            if staged > 0.0 {
                for (c, stage) in w.stages.iter_mut().zip(["parse", "lookup", "ipvs", "rewrite", "tx"]) {
                    *c = d(&format!("rvs_worker_stage_cycles_total/{stage}")) / staged;
                }
            }
        }
        let offered = (g1.3 - g0.3) as f64;
        if offered > 0.0 {
            let flood_out = (g1.2 - g0.2) as f64;
            w.est_share = (rx - flood_out) / offered;
            w.flood_out_mpps = flood_out / secs / 1e6;
            w.mpps = (rx - flood_out) / secs / 1e6;
            let offered_new = (n1.0 - n0.0) as f64;
            let (syn, synack, ack) = ((n1.1 - n0.1) as f64, (n1.2 - n0.2) as f64, (n1.3 - n0.3) as f64);
            // NAT's handshake crosses the director twice more: the server's SYN-ACK must come back.
            let completed = if nat { syn.min(synack).min(ack) } else { syn.min(ack) };
            w.new_share = if offered_new > 0.0 { completed / offered_new } else { f64::NAN };
            w.table_peak = peak;
            eprintln!(
                "flood window: new connections offered {offered_new}, SYNs out {syn}, SYN-ACKs back {synack}, \
                 ACKs out {ack}; table occupancy every 250 ms: {}",
                samples.join(" ")
            );
        }
        Ok(w)
    }
}

/// A Prometheus text page.
fn scrape_text(addr: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("metrics at {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

/// Sums of the worker series of a Prometheus text page, by metric name.
fn scrape(addr: &str) -> Result<std::collections::HashMap<String, f64>> {
    let body = scrape_text(addr)?;
    let mut out = std::collections::HashMap::new();
    for line in
        body.lines().filter(|l| l.starts_with("rvs_worker_") || l.starts_with("rvs_connection_table_"))
    {
        let (Some(name), Some(v)) = (line.split(['{', ' ']).next(), line.rsplit(' ').next()) else {
            continue;
        };
        if let Ok(v) = v.parse::<f64>() {
            *out.entry(name.to_string()).or_insert(0.0) += v;
            // The stage series are also kept per stage: "rvs_worker_stage_cycles_total/parse".
            if let Some(stage) = line.split("stage=\"").nth(1).and_then(|r| r.split('"').next()) {
                *out.entry(format!("{name}/{stage}")).or_insert(0.0) += v;
            }
        }
    }
    Ok(out)
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn describe(r: &Row) -> String {
    let mut s = format!(
        "{} {} flows: 64B {:.2} Mpps {:.0} cyc/pkt (busy {:.2}), IMIX {:.2} Mpps {:.2} Gb/s",
        r.mode, r.flows, r.small.mpps, r.small.cycles, r.small.busy, r.imix.mpps, r.imix.gbps
    );
    if let Some(rate) = r.syn_rate {
        let _ = write!(s, ", SYN {:.2} M/s{}", rate / 1e6, if r.syn_complete { "" } else { " (incomplete)" });
    }
    if let Some(f) = &r.flood {
        let _ = write!(
            s,
            ", flood: {:.1} % established forwarded, {:.1} % new connections completed, table peak {:.1} %",
            f.est_share * 100.0,
            f.new_share * 100.0,
            f.table_peak * 100.0
        );
    }
    s
}

fn human(n: u32) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1000 && n % 1000 == 0 => format!("{}k", n / 1000),
        n => n.to_string(),
    }
}

fn report(rows: &[Row], testpmd: Option<&Row>, tsc_hz: u64, a: &BenchArgs) -> (String, String, String) {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "rvs director through DPDK ports: 2 x net_memif to an in-workspace generator, 1 worker lcore, TCP, \
         median of {} rounds, {} s per window after {} s warm-up, TSC {:.2} GHz\n",
        a.rounds,
        a.seconds,
        a.warmup_seconds,
        tsc_hz as f64 / 1e9
    );
    let _ = writeln!(
        md,
        "| mode | flows | new conns/s | 64B Mpps | cycles/pkt | busy | vs testpmd | IMIX Mpps | IMIX Gb/s | IMIX vs testpmd | RSS MiB | SYN flood: est. forwarded, new completed, table peak |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut csv = String::from(
        "mode,flows,syn_per_second,syn_complete,mpps_64,cycles_per_packet_64,busy_64,ratio_testpmd_64,\
         mpps_imix,gbps_imix,cycles_per_packet_imix,ratio_testpmd_imix,rss_mib,flood_est_share,flood_syn_out_mpps,\
         flood_new_share,flood_table_peak\n",
    );
    let ratio = |ours: f64, theirs: Option<f64>| theirs.filter(|t| *t > 0.0).map(|t| ours / t);
    let fmt_opt = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    for r in rows.iter().chain(testpmd) {
        let is_ref = r.mode == "testpmd";
        let r64 = if is_ref { None } else { ratio(r.small.mpps, testpmd.map(|t| t.small.mpps)) };
        let rimix = if is_ref { None } else { ratio(r.imix.mpps, testpmd.map(|t| t.imix.mpps)) };
        // A thousand SYNs pass in well under the harness's polling resolution: too short to time.
        let syn = r
            .syn_rate
            .filter(|_| r.flows >= 100_000)
            .map(|s| format!("{:.2} M{}", s / 1e6, if r.syn_complete { "" } else { "*" }));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} | {:.0} | {:.2} | {} | {:.2} | {:.2} | {} | {} | {} |",
            r.mode,
            if is_ref { "any".into() } else { human(r.flows) },
            syn.unwrap_or_else(|| "-".into()),
            r.small.mpps,
            r.small.cycles,
            r.small.busy,
            fmt_opt(r64, 2),
            r.imix.mpps,
            r.imix.gbps,
            fmt_opt(rimix, 2),
            if is_ref { "-".into() } else { format!("{:.0}", r.rss_mib) },
            r.flood.map_or("-".into(), |f| format!(
                "{:.1} %, new {:.1} %, table peak {:.0} % (flood SYNs out {:.2} Mpps)",
                f.est_share * 100.0,
                f.new_share * 100.0,
                f.table_peak * 100.0,
                f.flood_out_mpps
            )),
        );
        let _ = writeln!(
            csv,
            "{},{},{},{},{:.4},{:.1},{:.3},{},{:.4},{:.3},{:.1},{},{:.1},{},{},{},{}",
            r.mode,
            r.flows,
            r.syn_rate.map_or(String::new(), |s| format!("{s:.0}")),
            r.syn_complete,
            r.small.mpps,
            r.small.cycles,
            r.small.busy,
            r64.map_or(String::new(), |v| format!("{v:.4}")),
            r.imix.mpps,
            r.imix.gbps,
            r.imix.cycles,
            rimix.map_or(String::new(), |v| format!("{v:.4}")),
            r.rss_mib,
            r.flood.map_or(String::new(), |f| format!("{:.4}", f.est_share)),
            r.flood.map_or(String::new(), |f| format!("{:.4}", f.flood_out_mpps)),
            r.flood.map_or(String::new(), |f| format!("{:.4}", f.new_share)),
            r.flood.map_or(String::new(), |f| format!("{:.4}", f.table_peak)),
        );
    }
    let _ = writeln!(
        md,
        "\ncycles/pkt: rvsd's busy worker cycles per received packet (its Prometheus counters); testpmd: TSC Hz \
         / pps (it polls 100 %). busy < 1 means the generator, not the device, set the rate. new conns/s: \
         one SYN per flow, the SYNs that came out over the time until the last of them did (* = some \
         never did; the run prints where they were dropped). RSS: rvsd's resident memory with \
         every flow in its table (hugepage buffers not included). SYN flood: established 64-byte packets at \
         half the 64B rate above plus SYNs from random 100.64/10 sources at {:.1} times it, so {:.0} % of the \
         established packets would still pass if flood SYNs cost the device what established packets do \
         and it dropped the excess evenly.",
        a.flood_load,
        100.0 * (1.0 / (0.5 + a.flood_load)).min(1.0)
    );
    // Where a worker's cycles go: its per-stage counters over the 64-byte window.
    let _ = writeln!(
        md,
        "\nCycles per packet by stage (64-byte window; rvsd's rvs_worker_stage_cycles_total over \
         rvs_worker_staged_packets_total; the rest of the busy cycles are RX and the loop itself):\n\n\
         | mode | flows | parse | lookup | ipvs | rewrite | tx | sum | busy cycles/pkt |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows.iter().filter(|r| r.small.stages.iter().any(|&c| c > 0.0)) {
        let [a, b, c, d, e] = r.small.stages;
        let _ = writeln!(
            md,
            "| {} | {} | {a:.0} | {b:.0} | {c:.0} | {d:.0} | {e:.0} | {:.0} | {:.0} |",
            r.mode,
            human(r.flows),
            a + b + c + d + e,
            r.small.cycles
        );
    }
    let at = |mode: &str, flows: u32| rows.iter().find(|r| r.mode == mode && r.flows == flows);
    let mut parts = Vec::new();
    for mode in ["NAT", "DR", "TUN"] {
        if let Some(r) = at(mode, a.flood_flows) {
            let r64 = ratio(r.small.mpps, testpmd.map(|t| t.small.mpps));
            parts.push(format!(
                "{mode} {} flows {:.2} Mpps {:.0} cyc/pkt{}",
                human(r.flows),
                r.small.mpps,
                r.small.cycles,
                r64.map_or(String::new(), |v| format!(" ({v:.2} x testpmd)"))
            ));
        }
    }
    let best_syn = rows.iter().filter_map(|r| r.syn_rate.filter(|_| r.flows >= 100_000)).fold(0.0, f64::max);
    let flood = rows.iter().filter_map(|r| r.flood.map(|f| f.est_share)).fold(f64::INFINITY, f64::min);
    let biggest = rows.iter().max_by_key(|r| r.flows);
    let mut summary = format!("summary: {}", parts.join("; "));
    if best_syn > 0.0 {
        let _ = write!(summary, "; new conns up to {:.2} M/s", best_syn / 1e6);
    }
    if flood.is_finite() {
        let _ = write!(summary, "; under SYN flood >= {:.1} % of established forwarded", flood * 100.0);
    }
    if let Some(b) = biggest {
        let _ = write!(summary, "; {} flows in {:.0} MiB", human(b.flows), b.rss_mib);
    }
    if let Some(t) = testpmd {
        let _ = write!(summary, "; testpmd io {:.2} Mpps", t.small.mpps);
    }
    (md, csv, summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(mpps: f64, syn: Option<f64>, complete: bool, flood: bool) -> Row {
        let w = Window {
            mpps,
            gbps: 1.5,
            cycles: 900.0,
            busy: 1.0,
            est_share: 0.0,
            flood_out_mpps: 0.0,
            new_share: 0.0,
            table_peak: 0.0,
            stages: [40.0, 90.0, 60.0, 80.0, 30.0],
        };
        Row {
            mode: "NAT".into(),
            flows: 1_000_000,
            syn_rate: syn,
            syn_complete: complete,
            small: w,
            imix: w,
            flood: flood.then_some(Window { est_share: 0.75, ..w }),
            rss_mib: 240.0,
            tsc_hz: 2.6e9,
        }
    }

    #[test]
    fn a_result_line_reads_back_and_rounds_take_medians() {
        let r = Row::from_line(&format!("noise {}", row(2.5, Some(1.6e6), true, true).to_line())).unwrap();
        assert_eq!(
            (r.mode.as_str(), r.flows, r.small.mpps, r.syn_rate),
            ("NAT", 1_000_000, 2.5, Some(1.6e6))
        );
        assert_eq!(r.flood.map(|f| f.est_share), Some(0.75));
        assert_eq!(r.small.stages[1], 90.0);
        assert!(Row::from_line("RVS-PERF-ROW NAT 1 2").is_none());
        assert!(r.to_line().starts_with("RVS-PERF-ROW {\"mode\":\"NAT\""), "{}", r.to_line());

        let m = Row::median(&[
            row(2.0, Some(1.0e6), true, false),
            row(9.0, None, false, false),
            row(3.0, Some(2.0e6), true, false),
        ])
        .unwrap();
        assert_eq!(m.small.mpps, 3.0);
        assert_eq!(m.syn_rate, Some(1.5e6), "absent values are left out");
        assert!(!m.syn_complete, "one incomplete round marks the row");
        assert!(m.flood.is_none());
    }
}
