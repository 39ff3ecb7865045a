//! The daemon's lifecycle on the management lcore: bring up DPDK from a validated [`Config`], launch
//! one worker per worker lcore, report statistics until asked to stop, then stop the workers, stop and
//! close the ports, and check that every mbuf came back to the pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rvs_dataplane::net::{Interface, Network};
use rvs_dataplane::ratelimit::TokenBucket;
use rvs_dataplane::rss::RssPredictor;
use rvs_dataplane::{
    CounterSnapshot, DirectorWorker, DropReason, Handoff, IfaceQueues, L2Worker, Link, Pipeline, PortQueues,
    Steering, TwinQueues, WorkerCounters,
};
use rvs_dpdk::{Eal, LaunchHandle, Mempool, Port, PortStats, QueueId, RxQueue, Started, TxQueue, rss};
use rvs_ipvs::{Ipvs, Op};
use rvs_wire::rewrite::TtlPolicy;
use tracing::{info, warn};

use crate::config::{Config, DirectorSpec, Forwarding, ReplySteering, VipOwnership};
use crate::control::{ControlServer, Director, model_ops, restore};
use crate::metrics::{MetricsServer, Sources};
use crate::shards::Shards;

/// Packets one worker may have waiting from the others (per-worker inbox).
pub const INBOX_CAPACITY: usize = 4096;

/// What rvs_build_info reports.
#[derive(Debug, Clone, Copy)]
pub struct BuildInfo {
    pub version: &'static str,
    pub git_revision: &'static str,
    pub dpdk_version: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{context}: {source}")]
    Dpdk { context: String, source: rvs_dpdk::DpdkError },
    #[error("worker on lcore {0} panicked")]
    WorkerPanicked(u32),
    #[error("worker on lcore {0} stopped on its own")]
    WorkerStopped(u32),
    #[error("{in_use} of {capacity} mbufs did not return to the pool after shutdown")]
    MbufLeak { in_use: u32, capacity: u32 },
    #[error("control socket {path}: {source}")]
    Control { path: String, source: std::io::Error },
    #[error("rules file {path}: {reason}")]
    Rules { path: String, reason: String },
    #[error("kernel twin {iface}: {reason}")]
    Twin { iface: String, reason: String },
    #[error("keepalived configuration: {0}")]
    Keepalived(#[from] crate::keepalived::KeepalivedError),
    #[error("starting the health checks: {0}")]
    HealthThread(#[source] std::io::Error),
    #[error("keepalived configuration: its services do not apply: {0}")]
    KeepalivedRules(String),
    #[error("the director's network (ports, routes, classifier): {0}")]
    Network(#[source] rvs_dataplane::net::NetError),
    #[error("director mode without the director's network (a bug in rvsd)")]
    NoNetwork,
    #[error("copying the rules to the worker on lcore {lcore}: {source}")]
    ShardCopy { lcore: u32, source: rvs_ipvs::ServiceError },
    #[error("the worker on lcore {0} ended while building its connection table")]
    WorkerGone(u32),
}

/// What a director worker's IPVS shard is built from, on the worker's lcore.
struct ShardPlan {
    capacity: usize,
    seed: u64,
    sched_seed: u64,
    locals: Vec<std::net::IpAddr>,
    ops: Vec<rvs_ipvs::Op>,
}

impl ShardPlan {
    fn build(self) -> Result<Ipvs, rvs_ipvs::ServiceError> {
        let mut shard = Ipvs::new(self.capacity, (self.capacity / 16).max(1024), self.seed);
        shard.set_sched_seed(self.sched_seed);
        shard.set_local_addrs(self.locals);
        for op in &self.ops {
            shard.apply(op)?;
        }
        // From here on, mh tables come from the management core's copy.
        shard.defer_sched_tables();
        Ok(shard)
    }
}

trait Context<T> {
    fn context(self, f: impl FnOnce() -> String) -> Result<T, DaemonError>;
}

impl<T> Context<T> for Result<T, rvs_dpdk::DpdkError> {
    fn context(self, f: impl FnOnce() -> String) -> Result<T, DaemonError> {
        self.map_err(|source| DaemonError::Dpdk { context: f(), source })
    }
}

/// What a run did, for the caller to print or check.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub ports: Vec<(String, PortStats)>,
    pub workers: Vec<(u32, CounterSnapshot)>,
    pub mbufs_in_use: u32,
    pub mbufs_capacity: u32,
    pub tsc_hz: u64,
}

/// What the signal handlers tell the management loop.
#[derive(Debug, Default)]
pub struct Signals {
    /// SIGINT, SIGTERM: stop.
    pub shutdown: Arc<AtomicBool>,
    /// SIGHUP: re-read the rules file.
    pub reload: Arc<AtomicBool>,
}

/// Runs the daemon until `signals.shutdown` becomes true (set by the signal handler).
pub fn run(cfg: &Config, build: &BuildInfo, signals: &Signals) -> Result<Summary, DaemonError> {
    let shutdown = &*signals.shutdown;
    // The IPVS configuration the control socket edits (the model); each worker's shard is a copy
    // that follows it through published batches of changes. Rules load before anything starts, all
    // or nothing.
    // The flow-owner hash's key is picked per start (it only has to agree among this director's
    // workers); each connection table has its own (see random_seed). The schedulers' key is the
    // configuration's: it must agree among the workers and the management core's copy (mh tables
    // are built on the copy) and across the directors that share traffic (a flow that an ECMP
    // router moves keeps its sh/mh server).
    let owner_key = random_seed();
    let sched_seed = match &cfg.forwarding {
        Forwarding::Director(d) => d.scheduler_hash_key,
        _ => random_seed(),
    };
    // The director's own addresses: a real server there is "Local" (the kernel twin serves it).
    let locals: Vec<std::net::IpAddr> = cfg
        .interfaces()
        .iter()
        .flat_map(|i| {
            let v4 = i.address.map(|(a, _)| std::net::IpAddr::V4(a));
            v4.into_iter().chain(i.address6.map(|(a, _)| std::net::IpAddr::V6(a)))
        })
        .collect();
    let mut model = load_model(cfg, &locals, sched_seed)?;
    let keepalived = cfg.keepalived_conf.as_deref().map(crate::keepalived::load).transpose()?;
    let started = Instant::now();
    let mut rates = crate::rates::Estimator::default();
    let eal = Eal::init(&cfg.eal.to_args()).context(|| "starting the DPDK EAL".into())?;
    // The control and metrics threads start after the EAL has pinned this thread to the main lcore's
    // CPU, so that they inherit that affinity and never preempt a worker on its own CPU.
    let control = ControlServer::bind(&cfg.socket_path, cfg.socket_group.as_deref())
        .map_err(|source| DaemonError::Control { path: cfg.socket_path.display().to_string(), source })?;
    info!(socket = %cfg.socket_path.display(), "control socket listening");
    let metrics = match &cfg.metrics_address {
        Some(a) => {
            let m = MetricsServer::bind(a)
                .map_err(|source| DaemonError::Control { path: format!("metrics {a}"), source })?;
            info!(address = %m.local_addr().map(|x| x.to_string()).unwrap_or_default(), "metrics listening");
            Some(m)
        }
        None => None,
    };
    let pool =
        Mempool::new(&cfg.mempool).context(|| format!("creating mempool of {} mbufs", cfg.mempool.mbufs))?;
    let mut summary = Summary { mbufs_capacity: pool.capacity(), tsc_hz: eal.tsc_hz(), ..Summary::default() };

    let mut ports = start_ports(cfg, &eal, &pool)?;

    let mut twins = start_twins(cfg, &eal, &pool, &ports)?;

    // The health checks start once the twins are configured (the checks leave through them; before,
    // they would find no route and fail), on a thread that inherits the main lcore's CPU, and before
    // the workers (whose shards copy the services the keepalived configuration defines).
    let mut health = keepalived.map(|conf| start_health(conf, &locals, &mut model)).transpose()?;
    let network = match &cfg.forwarding {
        Forwarding::Director(spec) => Some(build_network(cfg, spec, &ports)?),
        Forwarding::L2 { .. } => None,
    };
    let predictors = match &cfg.forwarding {
        Forwarding::Director(spec)
            if spec.reply_steering == ReplySteering::Toeplitz && eal.worker_lcores().len() > 1 =>
        {
            Some(rss_predictors(cfg, &ports, eal.worker_lcores().len())?).filter(|p| !p.is_empty())
        }
        _ => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let lcores = eal.worker_lcores();
    let mut workers: Vec<(LaunchHandle, Arc<WorkerCounters>)> = Vec::new();
    let (sync_tx, sync_rx) = crossbeam_channel::bounded(crate::sync::QUEUE);
    let launch = Launch {
        sync_tx: &sync_tx,
        cfg,
        eal: &eal,
        pool: &pool,
        model: &model,
        network: network.as_ref(),
        predictors: predictors.as_ref(),
        locals: &locals,
        owner_key,
        sched_seed,
        stop: &stop,
        tsc_hz: summary.tsc_hz,
    };
    let launched = launch_workers(&launch, &mut ports, &mut twins, &mut workers);
    let channels = match launched {
        Ok(c) => c,
        Err(e) => {
            stop.store(true, Ordering::Relaxed);
            drop(workers);
            return Err(e);
        }
    };
    let shards = Shards::new(channels);
    let mut sync = crate::sync::SyncDaemons::new(sync_rx, shards.senders(), owner_key);
    match &cfg.forwarding {
        Forwarding::L2 { mode, ports: (ia, ib) } => info!(
            workers = lcores.len(),
            mode = ?mode,
            tsc_hz = summary.tsc_hz,
            ports = %format!("{} <-> {}", cfg.ports[*ia].name, cfg.ports[*ib].name),
            "forwarding"
        ),
        Forwarding::Director(spec) => info!(
            workers = lcores.len(),
            mode = "director",
            tsc_hz = summary.tsc_hz,
            interfaces = %cfg.interfaces().iter().map(|i| format!("{}={}", i.name, i.address.map(|(a, l)| format!("{a}/{l}")).unwrap_or_default())).collect::<Vec<_>>().join(","),
            routes = spec.routes.len(),
            classifier_rules = spec.classifier.len(),
            connections_per_worker = cfg.connections_per_worker,
            // Whether the tables got huge pages (rvsd's allocator asks; the kernel decides).
            huge_page_mib = rvs_dpdk::huge::anon_huge_bytes().unwrap_or(0) >> 20,
            transparent_hugepage = rvs_dpdk::huge::thp_mode().unwrap_or_default(),
            "forwarding"
        ),
    }

    let interval = Duration::from_secs(u64::from(cfg.stats_interval_seconds));
    let mut next_report = Instant::now() + interval;
    let twin_ifaces: Vec<&str> = cfg.ports.iter().flat_map(|p| p.twins().map(|t| t.iface.as_str())).collect();
    let mut local_vips = std::collections::BTreeSet::new();
    let mut next_local_sync = Instant::now();
    let ownership = match &cfg.forwarding {
        Forwarding::Director(d) => d.vip_ownership,
        _ => VipOwnership::Always,
    };
    let follow_twins = ownership == VipOwnership::KernelTwin;
    let mut twin_addrs = if follow_twins {
        Some(crate::addrwatch::TwinAddrs::open(&twin_ifaces).map_err(|e| DaemonError::Twin {
            iface: twin_ifaces.join(","),
            reason: format!("watching the twins' addresses over netlink: {e}"),
        })?)
    } else {
        None
    };
    let mut held_vips: Option<std::collections::BTreeSet<std::net::Ipv4Addr>> = None;
    let mut next_health = Instant::now();
    let mut failed = None;
    while !shutdown.load(Ordering::Relaxed) {
        // 5 ms: a scripted rvsadm session waits at most this long per command.
        std::thread::sleep(Duration::from_millis(5));
        // A worker that stops (a panic caught on its lcore) leaves its queues unpolled and its share
        // of the traffic lost: stop the daemon at once, with a non-zero status, so that the service
        // manager restarts it (Restart=on-failure in its unit).
        if let Some((h, _)) = workers.iter().find(|(h, _)| !h.is_running()) {
            let (lcore, panicked) = (h.lcore().0, h.panicked());
            tracing::error!(lcore, panicked, "a worker stopped; rvsd stops so that it can be restarted");
            failed = Some(if panicked {
                DaemonError::WorkerPanicked(lcore)
            } else {
                DaemonError::WorkerStopped(lcore)
            });
            break;
        }
        let now_ms = started.elapsed().as_millis() as u64;
        if rates.due(now_ms) {
            let (snap, _) = shards.snapshot(&model, false, now_ms);
            rates.tick(&snap, now_ms);
        }
        if signals.reload.swap(false, Ordering::Relaxed) {
            match &mut health {
                Some(h) => reload_keepalived(cfg, h, &mut model, &shards),
                None => reload_rules(cfg, &mut model, &shards),
            }
        }
        if let Some(h) = &mut health
            && Instant::now() >= next_health
        {
            next_health = Instant::now() + Duration::from_millis(100);
            let ops = h.poll();
            apply_health(&mut model, &shards, ops);
        }
        control.poll(&mut Director {
            model: &mut model,
            shards: &shards,
            rates: &rates,
            table_size: cfg.table_size,
            now: now_ms,
            sync: &mut sync,
        });
        if let Some(m) = &metrics {
            m.poll(|| {
                let port_stats = port_totals(cfg, &ports);
                let worker_stats: Vec<(u32, CounterSnapshot)> =
                    workers.iter().map(|(h, c)| (h.lcore().0, c.snapshot())).collect();
                let running: Vec<(u32, bool)> =
                    workers.iter().map(|(h, _)| (h.lcore().0, h.is_running())).collect();
                let (snap, totals) = shards.snapshot(&model, false, now_ms);
                let health_rows = health.as_ref().map(crate::health::Health::rows).unwrap_or_default();
                let vips_held: Vec<(std::net::Ipv4Addr, bool)> = match &held_vips {
                    Some(h) => service_vips(&model).into_iter().map(|v| (v, h.contains(&v))).collect(),
                    None => Vec::new(),
                };
                crate::metrics::render(&Sources {
                    health: &health_rows,
                    vips_held: &vips_held,
                    sync: (
                        [
                            sync.stats.messages_sent.load(Ordering::Relaxed),
                            sync.stats.messages_received.load(Ordering::Relaxed),
                            sync.stats.messages_refused.load(Ordering::Relaxed),
                        ],
                        sync.running(),
                    ),
                    version: build.version,
                    git_revision: build.git_revision,
                    dpdk_version: build.dpdk_version,
                    ports: &port_stats,
                    workers: &worker_stats,
                    tsc_hz: summary.tsc_hz,
                    workers_running: &running,
                    pool: (pool.name(), pool.in_use(), pool.capacity()),
                    ipvs: &snap,
                    ipvs_drops: totals.drops,
                    ipvs_defense: totals.defense,
                    table_entries: totals.entries,
                    table_capacity: cfg.table_size,
                })
            });
        }
        if !twin_ifaces.is_empty() && Instant::now() >= next_local_sync {
            next_local_sync = Instant::now() + Duration::from_millis(100);
            match &mut twin_addrs {
                // VRRP places the VIPs on the twins: rvs holds what is there, and leaves the twins'
                // addresses to keepalived (a Local server's VIP is not added: a BACKUP must not hold it).
                Some(w) => follow_twin_vips(w, &locals, &shards, &mut held_vips),
                // A router sends the VIPs here while the routing daemon announces them: rvs puts on
                // the twins (for the daemon to see) the VIPs it can serve, and takes off the others.
                None if ownership == VipOwnership::Routed => {
                    let want = routable_vips(&model, &locals);
                    let before = held_vips.take().unwrap_or_default();
                    for a in want.difference(&before) {
                        info!(vip = %a, "VIP announced: a server can take its connections; on the kernel twins for the routing daemon");
                    }
                    for a in before.difference(&want) {
                        info!(vip = %a, "VIP withdrawn: no server can take its connections; off the kernel twins");
                    }
                    let mut on = before;
                    put_vips_on_twins(want, &twin_ifaces, &mut on);
                    held_vips = Some(on);
                }
                None => sync_local_vips(&model, &locals, &twin_ifaces, &mut local_vips),
            }
        }
        if cfg.stats_interval_seconds > 0 && Instant::now() >= next_report {
            next_report += interval;
            report(cfg, &ports, &workers, "stats");
        }
    }

    if ownership == VipOwnership::Routed
        && let Forwarding::Director(d) = &cfg.forwarding
    {
        withdraw_and_drain(&twin_ifaces, held_vips.take().unwrap_or_default(), d.withdraw_drain);
    }
    info!("stopping");
    stop.store(true, Ordering::Relaxed);
    let mut panicked = None;
    for (handle, counters) in workers {
        let lcore = handle.lcore().0;
        if handle.join().is_err() {
            panicked = Some(lcore);
        }
        summary.workers.push((lcore, counters.snapshot()));
    }
    summary.ports = port_totals(cfg, &ports);
    log_summary(&summary);
    // Ports are stopped and closed by drop; close releases the mbufs parked in RX rings (and
    // removes the twins' TAP interfaces).
    for port in ports.into_iter().chain(twins.into_iter().flatten()) {
        stop_port(port);
    }
    summary.mbufs_in_use = pool.in_use();
    info!(
        pool = pool.name(),
        in_use = summary.mbufs_in_use,
        capacity = summary.mbufs_capacity,
        "mempool after shutdown"
    );
    drop(pool);
    drop(eal);
    if let Some(e) = failed {
        return Err(e);
    }
    if let Some(lcore) = panicked {
        return Err(DaemonError::WorkerPanicked(lcore));
    }
    if summary.mbufs_in_use != 0 {
        return Err(DaemonError::MbufLeak { in_use: summary.mbufs_in_use, capacity: summary.mbufs_capacity });
    }
    Ok(summary)
}

/// What launching the workers needs from the start-up.
struct Launch<'a> {
    cfg: &'a Config,
    eal: &'a Eal,
    pool: &'a Mempool,
    /// The rules every shard starts with.
    model: &'a Ipvs,
    network: Option<&'a Arc<Network>>,
    predictors: Option<&'a Vec<Option<RssPredictor>>>,
    locals: &'a [std::net::IpAddr],
    owner_key: u64,
    sched_seed: u64,
    stop: &'a Arc<AtomicBool>,
    tsc_hz: u64,
    /// Where workers put the connections the master sync daemon sends.
    sync_tx: &'a crossbeam_channel::Sender<rvs_ipvs::sync::SyncConn>,
}

/// One worker per worker lcore, each with its queue pair on every port (and twin); `workers` gets
/// each one launched, so that the caller stops them if a later one fails. The workers' control
/// channels, in lcore order.
fn launch_workers(
    l: &Launch<'_>,
    ports: &mut [Port<Started>],
    twins: &mut [Option<Port<Started>>],
    workers: &mut Vec<(LaunchHandle, Arc<WorkerCounters>)>,
) -> Result<Vec<crossbeam_channel::Sender<rvs_dataplane::WorkerMsg>>, DaemonError> {
    let Launch {
        cfg,
        eal,
        pool,
        model,
        network,
        predictors,
        locals,
        owner_key,
        sched_seed,
        stop,
        tsc_hz,
        sync_tx,
    } = *l;
    let nports = ports.len();
    let lcores = eal.worker_lcores();
    let mut channels = Vec::new();
    // With several director workers, each owns the flows of its clients (Pipeline::owner); packets
    // arriving elsewhere cross over through these inboxes.
    let (inbox_tx, mut inbox_rx): (Vec<_>, Vec<_>) =
        lcores.iter().map(|_| crossbeam_channel::bounded::<Handoff>(INBOX_CAPACITY)).unzip();
    for (w, &lcore) in lcores.iter().enumerate() {
        let q = QueueId(w as u16);
        let mut take = |from: usize, to: usize| -> Result<(RxQueue, TxQueue), DaemonError> {
            Ok((
                ports[from]
                    .take_rx_queue(q)
                    .context(|| format!("port {:?} rx queue {}", cfg.ports[from].name, q.0))?,
                ports[to]
                    .take_tx_queue(q)
                    .context(|| format!("port {:?} tx queue {}", cfg.ports[to].name, q.0))?,
            ))
        };
        let counters = Arc::new(WorkerCounters::default());
        let handle = match &cfg.forwarding {
            Forwarding::L2 { mode, ports: (ia, ib) } => {
                let (a, b) = (take(*ia, *ib)?, take(*ib, *ia)?);
                let links = vec![Link { rx: a.0, tx: a.1 }, Link { rx: b.0, tx: b.1 }];
                let worker =
                    L2Worker { links, mode: *mode, counters: Arc::clone(&counters), stop: Arc::clone(stop) };
                eal.launch(lcore, move || worker.run())
            }
            Forwarding::Director(spec) => {
                // Built above for director mode, the only mode that reaches here.
                let net = network.map(Arc::clone).ok_or(DaemonError::NoNetwork)?;
                let queues = (0..nports)
                    .map(|p| take(p, p).map(|(rx, tx)| PortQueues { rx, tx }))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut ifaces = Vec::new();
                for (i, t) in cfg.interfaces().iter().zip(twins.iter_mut()) {
                    let twin = match t {
                        Some(t) => {
                            let rx =
                                t.take_rx_queue(q).context(|| format!("kernel twin rx queue {}", q.0))?;
                            let tx =
                                t.take_tx_queue(q).context(|| format!("kernel twin tx queue {}", q.0))?;
                            Some(TwinQueues::new(rx, tx))
                        }
                        None => None,
                    };
                    ifaces.push(IfaceQueues { port: i.port, vlan: i.vlan, twin });
                }
                // The shard (its connection table above all) is built on the worker's own lcore, so
                // that the pages it writes first are on that lcore's NUMA node; the pipeline gets a
                // placeholder until then.
                let shard = ShardPlan {
                    capacity: cfg.connections_per_worker,
                    seed: random_seed(),
                    sched_seed,
                    locals: locals.to_vec(),
                    ops: model_ops(model),
                };
                let mut pipeline = Pipeline::new(net, Ipvs::new(1, 1, 0), Arc::clone(&counters));
                pipeline.ttl = if spec.decrement_ttl { TtlPolicy::Decrement } else { TtlPolicy::Preserve };
                pipeline.owner_key = owner_key;
                let (per_sec, burst) = spec.icmp_errors;
                pipeline.icmp_errors = TokenBucket::new(per_sec, burst);
                pipeline.icmp_echo = TokenBucket::new(spec.icmp_echo_per_sec, burst);
                pipeline.twins = ifaces.iter().map(|i| i.twin.is_some()).collect();
                pipeline.kernel = TokenBucket::new(spec.kernel_packets.0, spec.kernel_packets.1);
                pipeline.tun_clamp_mss = spec.tun_clamp_mss;
                if spec.vip_ownership != VipOwnership::Always {
                    // kernel_twin: nothing held until the twins' addresses have been read. routed:
                    // never (the router routes the VIPs to the port address; several directors
                    // answering ARP for one VIP would fight over it).
                    pipeline.set_held_vips(Some(&[]));
                }
                if let Some(p) = predictors {
                    pipeline.predict_rss(w, p.clone());
                }
                let (tx, rx) = crossbeam_channel::unbounded();
                channels.push(tx);
                let mut worker = DirectorWorker {
                    ports: queues,
                    ifaces,
                    pipeline,
                    pool: pool.clone(),
                    control: rx,
                    counters: Arc::clone(&counters),
                    stop: Arc::clone(stop),
                    tsc_hz,
                    steering: (lcores.len() > 1).then(|| Steering {
                        index: w,
                        peers: inbox_tx.clone(),
                        inbox: inbox_rx.remove(0),
                    }),
                    panic_after_ms: fault_panic_after_ms(),
                    sync: Some(sync_tx.clone()),
                };
                let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
                let handle = eal
                    .launch(lcore, move || match shard.build() {
                        Ok(ipvs) => {
                            worker.pipeline.ipvs = ipvs;
                            let _ = ready_tx.send(Ok(()));
                            worker.run()
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            1
                        }
                    })
                    .context(|| format!("launching worker on lcore {lcore}"))?;
                // A worker that ended without a word panicked while building: its handle reports it.
                match ready_rx.recv() {
                    Ok(Ok(())) => Ok(handle),
                    Ok(Err(source)) => return Err(DaemonError::ShardCopy { lcore: lcore.0, source }),
                    Err(_) => return Err(DaemonError::WorkerGone(lcore.0)),
                }
            }
        }
        .context(|| format!("launching worker on lcore {lcore}"))?;
        workers.push((handle, counters));
    }
    Ok(channels)
}

/// The IPVS configuration the control socket edits, with the rules file's rules (all or nothing).
fn load_model(cfg: &Config, locals: &[std::net::IpAddr], sched_seed: u64) -> Result<Ipvs, DaemonError> {
    let mut model = Ipvs::new(16, 16, 0x5eed);
    model.set_sched_seed(sched_seed);
    model.set_local_addrs(locals.to_vec());
    model.sysctl = cfg.sysctl;
    if let Some(path) = &cfg.rules_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DaemonError::Rules { path: path.display().to_string(), reason: e.to_string() })?;
        let n = restore(&mut model, &text)
            .map_err(|reason| DaemonError::Rules { path: path.display().to_string(), reason })?
            .len();
        info!(path = %path.display(), commands = n, "rules loaded");
    }
    Ok(model)
}

/// The data ports, configured and started.
fn start_ports(cfg: &Config, eal: &Eal, pool: &Mempool) -> Result<Vec<Port<Started>>, DaemonError> {
    let mut ports = Vec::with_capacity(cfg.ports.len());
    for spec in &cfg.ports {
        let id = Port::lookup(eal, &spec.dpdk_name).context(|| format!("port {:?}", spec.name))?;
        let port = Port::configure(eal, id, &spec.config, pool)
            .and_then(Port::start)
            .context(|| format!("port {:?} ({})", spec.name, spec.dpdk_name))?;
        let hf = port.rss_hash_fields();
        info!(
            port = %spec.name,
            device = %spec.dpdk_name,
            mac = %fmt_mac(port.mac()),
            queues = spec.config.rx_queues,
            rss = %rss::describe(hf),
            reta_size = port.reta_size(),
            "port started"
        );
        // Hashed by addresses alone, all of one client's connections land on one queue (worker):
        // balanced only over many clients, and a benchmark from a few sources uses one core. (A
        // vdev without RSS, af_packet's fanout say, spreads by its own means: hf is 0 there.)
        if spec.config.rx_queues > 1
            && hf != 0
            && hf & (rss::NONFRAG_IPV4_TCP | rss::NONFRAG_IPV4_UDP)
                != (rss::NONFRAG_IPV4_TCP | rss::NONFRAG_IPV4_UDP)
        {
            warn!(port = %spec.name, rss = %rss::describe(hf), "the NIC does not hash IPv4 TCP and UDP by ports: one client's connections share one worker");
        }
        ports.push(port);
    }
    Ok(ports)
}

/// Kernel twins: a TAP port each (for the interfaces that have one: ports and VLANs), given the
/// interface's MAC, MTU, address and on-subnet routes in the kernel. Indexed as the interfaces.
fn start_twins(
    cfg: &Config,
    eal: &Eal,
    pool: &Mempool,
    ports: &[Port<Started>],
) -> Result<Vec<Option<Port<Started>>>, DaemonError> {
    let interfaces = cfg.interfaces();
    let mut twins = Vec::with_capacity(interfaces.len());
    for i in &interfaces {
        let (Some(t), Some(port)) = (i.twin, ports.get(i.port)) else {
            twins.push(None);
            continue;
        };
        let id =
            Port::lookup(eal, &t.dpdk_name).context(|| format!("interface {:?}: kernel twin", i.name))?;
        let twin = Port::configure(eal, id, &t.config, pool)
            .and_then(Port::start)
            .context(|| format!("interface {:?}: kernel twin {}", i.name, t.iface))?;
        configure_twin(&t.iface, port.mac(), i.address, i.mtu_bytes)?;
        if let Some((a6, len6)) = i.address6 {
            configure_twin6(&t.iface, (a6, len6), &cfg.forwarding);
        }
        // The director's routes whose gateway is on this interface's subnet, for the kernel's own
        // traffic.
        if let (Forwarding::Director(d), Some((addr, len))) = (&cfg.forwarding, i.address) {
            for r in d.routes.iter().filter(|r| rvs_dataplane::net::same_prefix(r.gateway, addr, len)) {
                let dst = format!("{}/{}", r.prefix, r.prefix_len);
                twin_ip(
                    &t.iface,
                    &["route", "replace", &dst, "via", &r.gateway.to_string(), "dev", &t.iface],
                )?;
            }
        }
        info!(interface = %i.name, twin = %t.iface, "kernel twin up");
        twins.push(Some(twin));
    }
    Ok(twins)
}

/// The health checks of a keepalived configuration, and its services applied to `model`. They
/// start once the twins are configured (the checks leave through them; before, they would find no
/// route and fail), on a thread that inherits the main lcore's CPU, and before the workers (whose
/// shards copy the services the configuration defines).
fn start_health(
    conf: crate::keepalived::KeepalivedConf,
    locals: &[std::net::IpAddr],
    model: &mut Ipvs,
) -> Result<crate::health::Health, DaemonError> {
    let mut h =
        crate::health::Health::start(conf, locals.to_vec(), None).map_err(DaemonError::HealthThread)?;
    for op in &h.initial_ops() {
        crate::control::apply(model, op).map_err(DaemonError::KeepalivedRules)?;
    }
    info!(
        services = model.service_count(),
        checkers = h.checkers(),
        "keepalived configuration loaded; health checks running"
    );
    Ok(h)
}

/// Gives a kernel twin the data port's MAC (so that the kernel's frames leave with it and answers
/// to them come back to it), MTU and address, and brings it up. With iproute2, on the management
/// core at start.
fn configure_twin(
    iface: &str,
    mac: [u8; 6],
    address: Option<(std::net::Ipv4Addr, u8)>,
    mtu: Option<u16>,
) -> Result<(), DaemonError> {
    let ip = |args: &[&str]| twin_ip(iface, args);
    let mac = fmt_mac(mac);
    let mtu = mtu.unwrap_or(1500).to_string();
    ip(&["link", "set", "dev", iface, "address", &mac, "mtu", &mtu, "up"])?;
    if let Some((a, len)) = address {
        ip(&["addr", "replace", &format!("{a}/{len}"), "dev", iface])?;
    }
    // The kernel would leave TCP/UDP checksums for a NIC to finish; the twin's frames go out through
    // the DPDK port as they are, so the kernel must finish them itself.
    match std::process::Command::new("ethtool").args(["-K", iface, "tx", "off"]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            warn!(twin = iface, error = %String::from_utf8_lossy(&o.stderr).trim(), "cannot turn off checksum offload")
        }
        Err(e) => warn!(twin = iface, error = %e, "cannot run ethtool to turn off checksum offload"),
    }
    Ok(())
}

/// The twin's IPv6 address (without duplicate address detection: rvs answers for it on the wire)
/// and the IPv6 routes whose gateway is on its subnet. A kernel with IPv6 turned off for new
/// interfaces refuses them: the twin then serves IPv4 only, which is said once in the log.
fn configure_twin6(iface: &str, (a6, len6): (std::net::Ipv6Addr, u8), forwarding: &Forwarding) {
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{iface}/accept_ra"), "0");
    if let Err(e) = twin_ip(iface, &["-6", "addr", "replace", &format!("{a6}/{len6}"), "dev", iface, "nodad"])
    {
        warn!(twin = iface, error = %e, "the kernel twin has no IPv6 (is IPv6 disabled for new interfaces?)");
        return;
    }
    let Forwarding::Director(d) = forwarding else { return };
    for r in d.routes6.iter().filter(|r| rvs_dataplane::net::same_prefix6(&r.gateway, &a6, len6)) {
        let dst = format!("{}/{}", r.prefix, r.prefix_len);
        if let Err(e) =
            twin_ip(iface, &["-6", "route", "replace", &dst, "via", &r.gateway.to_string(), "dev", iface])
        {
            warn!(twin = iface, route = %dst, error = %e, "IPv6 route on the kernel twin");
        }
    }
}

/// VIPs with a Local real server (the director itself) must be addresses of the director's kernel
/// for it to take their packets: each such VIP is put on every kernel twin (as /32) while it has one,
/// and taken off after.
fn sync_local_vips(
    model: &Ipvs,
    locals: &[std::net::IpAddr],
    twins: &[&str],
    on: &mut std::collections::BTreeSet<std::net::Ipv4Addr>,
) {
    let want: std::collections::BTreeSet<std::net::Ipv4Addr> = model
        .services()
        .filter(|(_, _, _, ds)| ds.iter().any(|(_, d)| matches!(d.cfg.fwd, rvs_ipvs::Fwd::Local)))
        .filter_map(|(_, cfg, _, _)| match cfg.key {
            rvs_ipvs::ServiceKey::Addr { addr: std::net::IpAddr::V4(a), .. } => Some(a),
            _ => None,
        })
        .filter(|a| !locals.contains(&std::net::IpAddr::V4(*a)))
        .collect();
    if want != *on {
        info!(vips = ?want, "VIPs with Local servers on the kernel twins");
    }
    put_vips_on_twins(want, twins, on);
}

/// `vip_ownership = "routed"`: the IPv4 VIPs (not the ports' own addresses) of the services that
/// can take a new connection: one server at least with a weight above 0 (the health checks remove
/// failed servers or set their weight to 0).
fn routable_vips(
    model: &Ipvs,
    locals: &[std::net::IpAddr],
) -> std::collections::BTreeSet<std::net::Ipv4Addr> {
    model
        .services()
        .filter(|(_, _, _, ds)| ds.iter().any(|(_, d)| !d.removed && d.weight() > 0))
        .filter_map(|(_, cfg, _, _)| match cfg.key {
            rvs_ipvs::ServiceKey::Addr { addr: std::net::IpAddr::V4(a), .. } => Some(a),
            _ => None,
        })
        .filter(|a| !locals.contains(&std::net::IpAddr::V4(*a)))
        .collect()
}

/// Makes the /32 addresses on the twins `want`, from `on` (what rvs put there before).
fn put_vips_on_twins(
    want: std::collections::BTreeSet<std::net::Ipv4Addr>,
    twins: &[&str],
    on: &mut std::collections::BTreeSet<std::net::Ipv4Addr>,
) {
    if want == *on {
        return;
    }
    for t in twins {
        for a in want.difference(on) {
            if let Err(e) = twin_ip(t, &["addr", "replace", &format!("{a}/32"), "dev", t]) {
                warn!(error = %e, "putting a VIP on a kernel twin");
            }
        }
        for a in on.difference(&want) {
            let _ = twin_ip(t, &["addr", "del", &format!("{a}/32"), "dev", t]);
        }
    }
    *on = want;
}

/// `routed`, at stop: the VIPs leave the twins first (the routing daemon withdraws them and the
/// router moves their flows to the other directors), and the workers go on forwarding for
/// `drain` while that happens, so that no packet meets a stopped director.
fn withdraw_and_drain(
    twins: &[&str],
    mut on: std::collections::BTreeSet<std::net::Ipv4Addr>,
    drain: Duration,
) {
    if on.is_empty() {
        return;
    }
    put_vips_on_twins(std::collections::BTreeSet::new(), twins, &mut on);
    info!(
        drain_ms = drain.as_millis() as u64,
        "VIPs withdrawn for the stop; forwarding while the routes move"
    );
    std::thread::sleep(drain);
}

/// The IPv4 VIPs of the services, each once.
fn service_vips(model: &Ipvs) -> std::collections::BTreeSet<std::net::Ipv4Addr> {
    model
        .services()
        .filter_map(|(_, cfg, _, _)| match cfg.key {
            rvs_ipvs::ServiceKey::Addr { addr: std::net::IpAddr::V4(a), .. } => Some(a),
            _ => None,
        })
        .collect()
}

/// `vip_ownership = "kernel_twin"`: reads the twins' addresses and, when they changed, tells the
/// workers which VIPs the director holds now (the port addresses themselves are always its own).
fn follow_twin_vips(
    w: &mut crate::addrwatch::TwinAddrs,
    locals: &[std::net::IpAddr],
    shards: &Shards,
    held: &mut Option<std::collections::BTreeSet<std::net::Ipv4Addr>>,
) {
    let now = match w.read() {
        Ok(a) => a.into_iter().filter(|a| !locals.contains(&std::net::IpAddr::V4(*a))).collect(),
        Err(e) => {
            warn!(error = %e, "reading the kernel twins' addresses");
            return;
        }
    };
    if held.as_ref() == Some(&now) {
        return;
    }
    let before = held.take().unwrap_or_default();
    for a in now.difference(&before) {
        info!(vip = %a, "VIP held: it is on a kernel twin (VRRP MASTER); answering ARP for it");
    }
    for a in before.difference(&now) {
        info!(vip = %a, "VIP released: it left the kernel twins (VRRP BACKUP); no longer answering for it");
    }
    shards.hold_vips(&now.iter().copied().collect::<Vec<_>>());
    *held = Some(now);
}

/// `ip ARGS` for a kernel twin.
fn twin_ip(iface: &str, args: &[&str]) -> Result<(), DaemonError> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| DaemonError::Twin { iface: iface.into(), reason: format!("running ip: {e}") })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(DaemonError::Twin {
            iface: iface.into(),
            reason: format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()),
        })
    }
}

/// SIGHUP: the rules file again, applied as the difference to what runs (all or nothing; a bad
/// file is logged and changes nothing).
fn reload_rules(cfg: &Config, model: &mut Ipvs, shards: &Shards) {
    let Some(path) = &cfg.rules_file else {
        warn!("SIGHUP: no [control].rules_file to re-read; nothing changed");
        return;
    };
    let result = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| crate::control::reload(model, &text));
    match result {
        Ok(ops) => {
            info!(path = %path.display(), changes = ops.len(), "SIGHUP: rules file re-read");
            shards.publish(model, ops);
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "SIGHUP: rules file refused; nothing changed")
        }
    }
}

/// SIGHUP with a keepalived configuration: the file again; the difference to what the checks had
/// applied goes out as one batch. A bad file is logged and changes nothing.
fn reload_keepalived(cfg: &Config, health: &mut crate::health::Health, model: &mut Ipvs, shards: &Shards) {
    let Some(path) = &cfg.keepalived_conf else { return };
    let conf = match crate::keepalived::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: keepalived configuration refused; nothing changed");
            return;
        }
    };
    match health.replace(conf) {
        Ok(ops) => {
            info!(path = %path.display(), changes = ops.len(), checkers = health.checkers(), "SIGHUP: keepalived configuration re-read");
            apply_health(model, shards, ops);
        }
        Err(e) => tracing::error!(error = %e, "SIGHUP: the health checks did not restart"),
    }
}

/// Applies what the health checks changed. Each change stands alone (a server that rvsadm removed
/// meanwhile makes its own change fail, not the others); what applied is published as one batch.
fn apply_health(model: &mut Ipvs, shards: &Shards, ops: Vec<Op>) {
    if ops.is_empty() {
        return;
    }
    let mut done = Vec::with_capacity(ops.len());
    for op in ops {
        match crate::control::apply(model, &op) {
            Ok(()) => done.push(op),
            Err(e) => warn!(change = ?op, error = %e, "a health-check change did not apply"),
        }
    }
    shards.publish(model, done);
}

/// `RVS_FAULT_WORKER_PANIC_AFTER_MS`: fault injection for the tests of a dying worker (a worker
/// panics that many milliseconds after it starts). Unset in production.
fn fault_panic_after_ms() -> Option<u64> {
    std::env::var("RVS_FAULT_WORKER_PANIC_AFTER_MS").ok()?.parse().ok()
}

/// A fresh 64-bit key for the data plane's hashes. std's `RandomState` is keyed from the OS's
/// random source once per thread and then varies per instance; SipHash over a counter and the clock
/// under those keys gives keys nobody outside can predict, with no extra dependency.
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// Each port's RSS for predicting where NAT replies arrive, or `None` for all of them (with a
/// warning) when any port cannot be predicted: a reply on an unpredictable port would find no copy of
/// its connection, so prediction is all or nothing and the hand-over serves otherwise.
fn rss_predictors(
    cfg: &Config,
    ports: &[Port<Started>],
    workers: usize,
) -> Result<Vec<Option<RssPredictor>>, DaemonError> {
    let mut out = Vec::with_capacity(ports.len());
    for (spec, port) in cfg.ports.iter().zip(ports) {
        let steering = port
            .rss_steering(workers as u16)
            .context(|| format!("port {:?}: setting the RSS redirection table", spec.name))?;
        let hf = port.rss_hash_fields();
        let predictor = steering.and_then(|(key, reta)| {
            RssPredictor::new(key, hf & rss::NONFRAG_IPV4_TCP != 0, hf & rss::NONFRAG_IPV4_UDP != 0, reta)
        });
        match predictor {
            Some(p) => out.push(Some(p)),
            None => {
                warn!(
                    port = %spec.name,
                    "nat_reply_steering = \"toeplitz\" needs RSS with a redirection table on every port; \
                     this one has none, so NAT replies are handed to their client's worker instead"
                );
                return Ok(Vec::new());
            }
        }
    }
    info!(workers, "NAT reply steering: Toeplitz predicted, one copy per connection");
    Ok(out)
}

/// The director's network: the configured addresses with the ports' MACs.
fn build_network(
    cfg: &Config,
    spec: &DirectorSpec,
    ports: &[Port<Started>],
) -> Result<Arc<Network>, DaemonError> {
    let interfaces = cfg
        .interfaces()
        .iter()
        .map(|i| {
            let (addr, prefix_len) = i.address.unwrap_or((std::net::Ipv4Addr::UNSPECIFIED, 32));
            Interface {
                name: i.name.clone(),
                mac: ports.get(i.port).map(Port::mac).unwrap_or_default(),
                addr,
                prefix_len,
                mtu: i.mtu_bytes.unwrap_or(1500),
                addr6: i.address6,
            }
        })
        .collect();
    Network::new(interfaces, &spec.routes, spec.classifier.clone())
        .and_then(|n| n.with_routes6(&spec.routes6))
        .map(|n| n.with_classifier6(spec.classifier6.clone()))
        .map(Arc::new)
        .map_err(DaemonError::Network)
}

/// Each port's PMD counters under its configured name (zeros if the PMD cannot say).
fn port_totals(cfg: &Config, ports: &[Port<Started>]) -> Vec<(String, PortStats)> {
    cfg.ports.iter().zip(ports).map(|(s, p)| (s.name.clone(), p.stats().unwrap_or_default())).collect()
}

fn stop_port(port: Port<Started>) {
    match port.stop() {
        Ok(stopped) => drop(stopped),
        Err((port, e)) => {
            warn!(port = port.name(), error = %e, "stopping port");
        }
    }
}

fn report(
    cfg: &Config,
    ports: &[Port<Started>],
    workers: &[(LaunchHandle, Arc<WorkerCounters>)],
    what: &str,
) {
    for (spec, port) in cfg.ports.iter().zip(ports) {
        if let Ok(s) = port.stats() {
            info!(port = %spec.name, rx_packets = s.rx_packets, tx_packets = s.tx_packets, rx_missed = s.rx_missed, rx_nombuf = s.rx_nombuf, "{what}");
        }
    }
    for (h, c) in workers {
        let s = c.snapshot();
        info!(
            lcore = h.lcore().0,
            rx_packets = s.rx_packets,
            tx_packets = s.tx_packets,
            dropped = s.dropped_total(),
            drop_tx_full = s.dropped(DropReason::TxRingFull),
            busy = %format!("{:.1}%", 100.0 * s.busy_ratio()),
            loop_cycles = s.loop_cycles,
            busy_cycles = s.busy_cycles,
            "{what}"
        );
    }
}

fn log_summary(s: &Summary) {
    for (name, p) in &s.ports {
        info!(port = %name, rx_packets = p.rx_packets, tx_packets = p.tx_packets, rx_bytes = p.rx_bytes, tx_bytes = p.tx_bytes, rx_missed = p.rx_missed, "port totals");
    }
    for (lcore, w) in &s.workers {
        info!(lcore, rx_packets = w.rx_packets, tx_packets = w.tx_packets, dropped = w.dropped_total(), drop_tx_full = w.dropped(DropReason::TxRingFull), busy = %format!("{:.1}%", 100.0 * w.busy_ratio()), "worker totals");
    }
}

fn fmt_mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_per_call() {
        let seeds: std::collections::HashSet<u64> = (0..64).map(|_| random_seed()).collect();
        assert_eq!(seeds.len(), 64);
    }
}
