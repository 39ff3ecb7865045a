//! The Prometheus endpoint. Metrics mirror counters the data plane and the IPVS model already keep
//! (absolute values, read at scrape time), so the exporter never adds work to the packet path.
//! Naming follows prometheus.io's rules: the `rvs_` prefix, base units, `_total` on counters only,
//! `_info` for build metadata. IPVS series keep node_exporter's label names (local_address,
//! local_port, remote_address, remote_port, proto, local_mark) so dashboards port by renaming.

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};
use rvs_adm::listing::Snapshot;
use rvs_dataplane::CounterSnapshot;
use rvs_dpdk::PortStats;
use rvs_ipvs::{DefenseCounters, DropCounters, DropReason, ServiceKey, proto};
use tracing::{debug, warn};

/// What one scrape reports.
#[derive(Debug)]
pub struct Sources<'a> {
    pub version: &'a str,
    pub git_revision: &'a str,
    pub dpdk_version: &'a str,
    pub ports: &'a [(String, PortStats)],
    pub workers: &'a [(u32, CounterSnapshot)],
    /// TSC ticks per second (worker cycle counts to seconds).
    pub tsc_hz: u64,
    /// Whether each worker's loop is running (false: it stopped or panicked, and rvsd is exiting).
    pub workers_running: &'a [(u32, bool)],
    pub pool: (&'a str, u32, u32),
    /// The director's services and servers, counters summed over the workers' shards.
    pub ipvs: &'a Snapshot,
    pub ipvs_drops: DropCounters,
    pub ipvs_defense: DefenseCounters,
    pub table_entries: usize,
    pub table_capacity: usize,
    /// The health checks (empty without a keepalived configuration).
    pub health: &'a crate::health::HealthRows,
    /// With `vip_ownership = "kernel_twin"` or `"routed"`: each service VIP and whether the
    /// director holds it (VRRP put it on a twin; rvs announces it).
    pub vips_held: &'a [(std::net::Ipv4Addr, bool)],
    /// The sync daemons: (messages sent, received, refused), and whether (master, backup) run.
    pub sync: ([u64; 3], (bool, bool)),
}

/// Builds metric families: one per name, each with help, type and labelled samples.
struct Families(Vec<MetricFamily>);

impl Families {
    fn family(&mut self, name: &str, help: &str, kind: MetricType) -> &mut MetricFamily {
        if let Some(i) = self.0.iter().position(|f| f.name() == name) {
            return &mut self.0[i];
        }
        let mut f = MetricFamily::default();
        f.set_name(name.to_owned());
        f.set_help(help.to_owned());
        f.set_field_type(kind);
        self.0.push(f);
        let last = self.0.len() - 1;
        &mut self.0[last]
    }

    fn sample(&mut self, name: &str, help: &str, kind: MetricType, labels: &[(&str, String)], value: f64) {
        let mut m = Metric::default();
        let pairs: Vec<LabelPair> = labels
            .iter()
            .map(|(k, v)| {
                let mut l = LabelPair::default();
                l.set_name((*k).to_owned());
                l.set_value(v.clone());
                l
            })
            .collect();
        m.set_label(pairs);
        match kind {
            MetricType::COUNTER => {
                let mut c = Counter::default();
                c.set_value(value);
                m.set_counter(c);
            }
            _ => {
                let mut g = Gauge::default();
                g.set_value(value);
                m.set_gauge(g);
            }
        }
        self.family(name, help, kind).mut_metric().push(m);
    }

    fn counter(&mut self, name: &str, help: &str, labels: &[(&str, String)], value: u64) {
        self.sample(name, help, MetricType::COUNTER, labels, value as f64);
    }

    fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, String)], value: f64) {
        self.sample(name, help, MetricType::GAUGE, labels, value);
    }
}

/// node_exporter's service labels: proto, local_address, local_port, local_mark.
fn service_labels(k: &ServiceKey) -> Vec<(&'static str, String)> {
    match *k {
        ServiceKey::Addr { protocol, addr, port } => vec![
            ("local_address", addr.to_string()),
            ("local_port", port.to_string()),
            (
                "proto",
                match protocol {
                    proto::TCP => "TCP",
                    proto::UDP => "UDP",
                    _ => "SCTP",
                }
                .to_owned(),
            ),
            ("local_mark", String::new()),
        ],
        ServiceKey::Fwmark { mark, .. } => vec![
            ("local_address", String::new()),
            ("local_port", "0".into()),
            ("proto", "FWM".into()),
            ("local_mark", mark.to_string()),
        ],
    }
}

fn with(mut base: Vec<(&'static str, String)>, addr: IpAddr, port: u16) -> Vec<(&'static str, String)> {
    base.push(("remote_address", addr.to_string()));
    base.push(("remote_port", port.to_string()));
    base
}

/// The exposition text of one scrape.
pub fn render(s: &Sources<'_>) -> String {
    let mut f = Families(Vec::new());
    f.gauge(
        "rvs_build_info",
        "rvs build: version, git revision, DPDK version (value 1).",
        &[
            ("version", s.version.into()),
            ("git_revision", s.git_revision.into()),
            ("dpdk_version", s.dpdk_version.into()),
        ],
        1.0,
    );
    for (name, p) in s.ports {
        let l = [("port", name.clone())];
        f.counter(
            "rvs_port_received_packets_total",
            "Packets received by the port (PMD counter).",
            &l,
            p.rx_packets,
        );
        f.counter(
            "rvs_port_transmitted_packets_total",
            "Packets sent by the port (PMD counter).",
            &l,
            p.tx_packets,
        );
        f.counter(
            "rvs_port_received_bytes_total",
            "Bytes received by the port (PMD counter).",
            &l,
            p.rx_bytes,
        );
        f.counter(
            "rvs_port_transmitted_bytes_total",
            "Bytes sent by the port (PMD counter).",
            &l,
            p.tx_bytes,
        );
        for (reason, v) in [
            ("rx_missed", p.rx_missed),
            ("rx_no_mbuf", p.rx_nombuf),
            ("rx_error", p.rx_errors),
            ("tx_error", p.tx_errors),
        ] {
            f.counter(
                "rvs_port_dropped_packets_total",
                "Packets the port dropped, by reason.",
                &[("port", name.clone()), ("reason", reason.into())],
                v,
            );
        }
    }
    for (lcore, running) in s.workers_running {
        f.gauge(
            "rvs_worker_running",
            "1 while the worker's poll loop runs; 0 once it stopped (rvsd then exits non-zero).",
            &[("worker", lcore.to_string())],
            f64::from(u8::from(*running)),
        );
    }
    for (lcore, w) in s.workers {
        let l = [("worker", lcore.to_string())];
        f.gauge(
            "rvs_worker_longest_pause_seconds",
            "The longest a worker spent away from its queues at once since it started (expiry, configuration changes, reports).",
            &l,
            w.longest_pause_cycles as f64 / s.tsc_hz.max(1) as f64,
        );
        f.counter(
            "rvs_worker_long_pauses_total",
            "Housekeeping turns that kept a worker from its queues for more than 50 microseconds.",
            &l,
            w.long_pauses,
        );
        f.counter("rvs_worker_received_packets_total", "Packets a worker received.", &l, w.rx_packets);
        f.counter("rvs_worker_transmitted_packets_total", "Packets a worker sent.", &l, w.tx_packets);
        f.counter(
            "rvs_worker_handed_off_packets_total",
            "Packets a worker passed to the worker owning their flow (several workers, unpredictable NIC hash).",
            &l,
            w.handed_off,
        );
        for (direction, v) in [("to", w.to_kernel), ("from", w.from_kernel)] {
            f.counter(
                "rvs_worker_kernel_frames_total",
                "Frames a worker passed up to the ports' kernel twins (to), and frames the kernel sent on them (from).",
                &[("worker", lcore.to_string()), ("direction", direction.into())],
                v,
            );
        }
        f.counter(
            "rvs_worker_neighbours_refused_total",
            "ARP senders asking for the director not learned: the neighbour table's room for them was full.",
            &l,
            w.neighbours_refused,
        );
        f.counter(
            "rvs_worker_neighbours_evicted_total",
            "Neighbours pushed out of a full table to make room for a next hop.",
            &l,
            w.neighbours_evicted,
        );
        f.counter(
            "rvs_worker_mirrored_connections_total",
            "NAT connections a worker copied to the worker the NIC delivers their replies to (nat_reply_steering = toeplitz).",
            &l,
            w.mirrored,
        );
        for r in rvs_dataplane::DropReason::ALL {
            f.counter(
                "rvs_worker_dropped_packets_total",
                "Packets a worker dropped, by reason.",
                &[("worker", lcore.to_string()), ("reason", r.name().into())],
                w.dropped(r),
            );
        }
        f.counter(
            "rvs_worker_busy_cycles_total",
            "TSC cycles of poll-loop iterations that moved packets; busy ratio = rate(this) / rate(rvs_worker_loop_cycles_total).",
            &l,
            w.busy_cycles,
        );
        f.counter(
            "rvs_worker_loop_cycles_total",
            "TSC cycles of all poll-loop iterations.",
            &l,
            w.loop_cycles,
        );
        for (event, n) in rvs_dataplane::SYNC_EVENTS.iter().zip(w.sync) {
            f.counter(
                "rvs_worker_sync_connections_total",
                "Connection sync per worker: sent to the master daemon, lost (its queue full), installed from a master, refused (no such service or server here).",
                &[("worker", lcore.to_string()), ("event", (*event).into())],
                n,
            );
        }
        for (stage, cycles) in rvs_dataplane::STAGES.iter().zip(w.stage_cycles) {
            f.counter(
                "rvs_worker_stage_cycles_total",
                "TSC cycles a worker spent in each stage of the packet path (parse, lookup, ipvs, rewrite, tx); cycles per packet = rate(this) / rate(rvs_worker_staged_packets_total).",
                &[("worker", lcore.to_string()), ("stage", (*stage).into())],
                cycles,
            );
        }
        f.counter(
            "rvs_worker_staged_packets_total",
            "Packets that went through a worker's stages in bursts (what it received, less what it handed to other workers).",
            &l,
            w.staged_packets,
        );
    }
    let (pool, in_use, cap) = s.pool;
    f.gauge(
        "rvs_mempool_mbufs_in_use",
        "Packet buffers out of the pool.",
        &[("pool", pool.into())],
        f64::from(in_use),
    );
    f.gauge("rvs_mempool_mbufs", "Packet buffers in the pool.", &[("pool", pool.into())], f64::from(cap));
    let entries = s.table_entries;
    f.gauge(
        "rvs_connection_table_entries",
        "Connections and persistence templates in the tables.",
        &[],
        entries as f64,
    );
    f.gauge(
        "rvs_connection_table_capacity",
        "Connection-table capacity, all workers.",
        &[],
        s.table_capacity as f64,
    );

    let mut total = rvs_ipvs::Stats::default();
    for sv in &s.ipvs.services {
        let (cfg, stats) = (&sv.cfg, &sv.stats);
        total.add(stats);
        let sl = service_labels(&cfg.key);
        f.counter(
            "rvs_ipvs_service_connections_total",
            "Connections scheduled for the service.",
            &sl,
            stats.conns,
        );
        f.counter(
            "rvs_ipvs_service_incoming_packets_total",
            "Packets client -> service.",
            &sl,
            stats.in_pkts,
        );
        f.counter(
            "rvs_ipvs_service_outgoing_packets_total",
            "Packets service -> client (NAT only).",
            &sl,
            stats.out_pkts,
        );
        f.counter("rvs_ipvs_service_incoming_bytes_total", "Bytes client -> service.", &sl, stats.in_bytes);
        f.counter(
            "rvs_ipvs_service_outgoing_bytes_total",
            "Bytes service -> client (NAT only).",
            &sl,
            stats.out_bytes,
        );
        for d in &sv.dests {
            let bl = with(sl.clone(), d.cfg.addr, d.cfg.port);
            f.gauge(
                "rvs_ipvs_backend_connections_active",
                "Active connections (node_exporter's series).",
                &bl,
                f64::from(d.active),
            );
            f.gauge(
                "rvs_ipvs_backend_connections_inactive",
                "Inactive connections (node_exporter's series).",
                &bl,
                f64::from(d.inactive),
            );
            f.gauge(
                "rvs_ipvs_backend_weight",
                "Weight of the real server; 0 = quiesced.",
                &bl,
                f64::from(d.cfg.weight),
            );
            f.counter(
                "rvs_ipvs_backend_connections_total",
                "Connections scheduled to the real server.",
                &bl,
                d.stats.conns,
            );
            f.counter(
                "rvs_ipvs_backend_incoming_packets_total",
                "Packets client -> real server.",
                &bl,
                d.stats.in_pkts,
            );
            f.counter(
                "rvs_ipvs_backend_outgoing_packets_total",
                "Packets real server -> client (NAT only).",
                &bl,
                d.stats.out_pkts,
            );
            f.counter(
                "rvs_ipvs_backend_incoming_bytes_total",
                "Bytes client -> real server.",
                &bl,
                d.stats.in_bytes,
            );
            f.counter(
                "rvs_ipvs_backend_outgoing_bytes_total",
                "Bytes real server -> client (NAT only).",
                &bl,
                d.stats.out_bytes,
            );
        }
    }
    f.counter(
        "rvs_ipvs_connections_total",
        "Connections scheduled, all services (node_exporter's series).",
        &[],
        total.conns,
    );
    f.counter("rvs_ipvs_incoming_packets_total", "Packets in, all services.", &[], total.in_pkts);
    f.counter("rvs_ipvs_outgoing_packets_total", "Packets out, all services.", &[], total.out_pkts);
    f.counter("rvs_ipvs_incoming_bytes_total", "Bytes in, all services.", &[], total.in_bytes);
    f.counter("rvs_ipvs_outgoing_bytes_total", "Bytes out, all services.", &[], total.out_bytes);
    for r in DropReason::ALL {
        f.counter(
            "rvs_ipvs_dropped_packets_total",
            "Packets for a service that IPVS dropped, by reason.",
            &[("reason", r.name().into())],
            s.ipvs_drops.get(r),
        );
    }
    let d = &s.ipvs_defense;
    for (action, v) in [
        ("stateless_syn", d.stateless_syns),
        ("entry_made_on_ack", d.made_on_ack),
        ("stateless_synack", d.stateless_replies),
        ("half_open_dropped", d.dropped_entries),
    ] {
        f.counter(
            "rvs_ipvs_defense_total",
            "What the SYN-flood defences did: SYNs forwarded without an entry, entries made by a client's first ACK, NAT SYN-ACKs translated without an entry, half-open entries dropped (drop_entry).",
            &[("action", action.into())],
            v,
        );
    }
    render_health(&mut f, s.health);
    let ([sent, received, refused], (master, backup)) = s.sync;
    for (dir, n) in [("sent", sent), ("received", received), ("refused", refused)] {
        f.counter(
            "rvs_sync_messages_total",
            "IPVS sync protocol messages the master daemon sent, and the backup daemon received and used or refused.",
            &[("direction", dir.into())],
            n,
        );
    }
    for (role, on) in [("master", master), ("backup", backup)] {
        f.gauge(
            "rvs_sync_daemon_running",
            "1 while the connection sync daemon of this role runs (rvsadm --start-daemon).",
            &[("role", role.into())],
            if on { 1.0 } else { 0.0 },
        );
    }
    for (vip, held) in s.vips_held {
        f.gauge(
            "rvs_vip_held",
            "1 while the director holds the VIP: with vip_ownership kernel_twin, VRRP put it on a kernel twin (MASTER) and rvs answers for it; with routed, rvs keeps it on the twins for the routing daemon to announce (a server can take its connections). 0 otherwise.",
            &[("address", vip.to_string())],
            if *held { 1.0 } else { 0.0 },
        );
    }
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&f.0, &mut out) {
        warn!(error = %e, "encoding metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The health checks under node_exporter's service and server labels, plus `check` (tcp, http,
/// https, misc, ping) for a checker's own series.
fn render_health(f: &mut Families, h: &crate::health::HealthRows) {
    for q in &h.quorums {
        f.gauge(
            "rvs_healthcheck_quorum_up",
            "1 while the live servers' weight meets the virtual server's quorum; 0 while the sorry server (if any) takes the traffic.",
            &service_labels(&q.service),
            if q.up { 1.0 } else { 0.0 },
        );
    }
    for r in &h.reals {
        let l = with(service_labels(&r.service), r.real.0, r.real.1);
        f.gauge(
            "rvs_healthcheck_up",
            "1 while every check of the real server passes, else 0 (it is out of the service, or at weight 0 with inhibit_on_failure).",
            &l,
            if r.up { 1.0 } else { 0.0 },
        );
        f.counter(
            "rvs_healthcheck_transitions_total",
            "Times the real server went down or came back up.",
            &l,
            r.transitions,
        );
    }
    for c in &h.checks {
        let mut l = with(service_labels(&c.service), c.real.0, c.real.1);
        l.push(("check", c.check.into()));
        f.gauge("rvs_healthcheck_check_up", "1 while this checker passes.", &l, if c.up { 1.0 } else { 0.0 });
        f.gauge(
            "rvs_healthcheck_last_duration_seconds",
            "How long the checker's last attempt took (connect, request and answer; script run time).",
            &l,
            c.last_seconds,
        );
        let mut ok = l.clone();
        ok.push(("result", "ok".into()));
        f.counter("rvs_healthcheck_checks_total", "Check attempts by result.", &ok, c.ok);
        let mut failed = l;
        failed.push(("result", "failed".into()));
        f.counter("rvs_healthcheck_checks_total", "Check attempts by result.", &failed, c.failed);
    }
}

/// Concurrent scrape connections; more are closed at once (Prometheus uses one per target).
const MAX_CONNECTIONS: usize = 16;
/// The whole request head must arrive within this time...
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// ...and fit in this many bytes (hyper's smallest allowed buffer is 8 KiB).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// A connection (keep-alive included) lives at most this long.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// How long a scrape waits for the management loop to render the body.
const RENDER_TIMEOUT: Duration = Duration::from_secs(5);

/// A scrape waiting for its body: the management loop owns what the body reports (the IPVS model,
/// the ports), so the HTTP thread asks it, and it answers between two of its turns.
#[derive(Debug)]
struct Scrape {
    reply: tokio::sync::oneshot::Sender<String>,
}

/// The Prometheus endpoint: HTTP on a thread of its own (hyper on a current-thread tokio runtime),
/// so no client, however slow or large, ever holds the management loop; the loop only renders
/// bodies ([`MetricsServer::poll`]).
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    scrapes: crossbeam_channel::Receiver<Scrape>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    pub fn bind(addr: &str) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let (tx, scrapes) = crossbeam_channel::bounded(MAX_CONNECTIONS);
        let (shutdown, stop) = tokio::sync::oneshot::channel();
        let rt = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
        let thread = std::thread::Builder::new()
            .name("rvs-metrics".into())
            .spawn(move || rt.block_on(serve(listener, tx, stop)))?;
        Ok(Self { addr: local, scrapes, shutdown: Some(shutdown), thread: Some(thread) })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }

    /// Renders a body for every scrape waiting (called from the management loop; never blocks).
    pub fn poll(&self, body: impl Fn() -> String) {
        while let Ok(s) = self.scrapes.try_recv() {
            // The client may have gone meanwhile; nothing to do then.
            let _ = s.reply.send(body());
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: TcpListener,
    scrapes: crossbeam_channel::Sender<Scrape>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "metrics listener");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "metrics accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Over the limit: close at once rather than queue.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else { continue };
        let scrapes = scrapes.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, scrapes.clone()));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                debug!(error = %e, "metrics connection");
            }
            drop(slot);
        });
    }
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(content_type));
    r
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    scrapes: crossbeam_channel::Sender<Scrape>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    const PLAIN: &str = "text/plain; charset=utf-8";
    if req.uri().path() != "/metrics" {
        return Ok(text(StatusCode::NOT_FOUND, "rvsd serves /metrics\n".into(), PLAIN));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n".into(), PLAIN));
    }
    let (reply, body) = tokio::sync::oneshot::channel();
    if scrapes.try_send(Scrape { reply }).is_err() {
        return Ok(text(StatusCode::SERVICE_UNAVAILABLE, "too many scrapes waiting\n".into(), PLAIN));
    }
    Ok(match tokio::time::timeout(RENDER_TIMEOUT, body).await {
        Ok(Ok(b)) => text(StatusCode::OK, b, "text/plain; version=0.0.4; charset=utf-8"),
        _ => text(StatusCode::SERVICE_UNAVAILABLE, "rvsd did not render the metrics in time\n".into(), PLAIN),
    })
}
