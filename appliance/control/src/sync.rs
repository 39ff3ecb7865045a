//! The connection synchronisation daemons (`rvsadm --start-daemon master|backup`), as IPVS runs
//! them: the master multicasts the connections its workers make and change (IPVS sync protocol
//! version 1, 224.0.0.81:8848, TTL 1) out of an interface of the director's kernel, normally a
//! kernel twin, so the messages leave through rvs; the backup listens on its interface and hands
//! what it receives to the worker that owns each client, which installs the connections. After a
//! failover, the new master's workers know the established connections.
//!
//! Each daemon is a thread of its own beside the management core; the workers only push the
//! connections a burst touched into a bounded queue (what does not fit is counted lost).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use rvs_dataplane::WorkerMsg;
use rvs_ipvs::sync::{self, SyncConn};
use socket2::{Domain, Protocol, Socket, Type};
use tracing::{info, warn};

/// Connections waiting for the master daemon, from all workers.
pub const QUEUE: usize = 65_536;

/// One daemon's settings, as `--start-daemon` gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    pub mcast_interface: String,
    pub syncid: u8,
}

/// What the daemons did, for the exporter.
#[derive(Debug, Default)]
pub struct SyncStats {
    pub messages_sent: AtomicU64,
    pub messages_received: AtomicU64,
    /// Received but not used: undecodable, or another sync id.
    pub messages_refused: AtomicU64,
}

#[derive(Debug)]
struct Running {
    cfg: DaemonConfig,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The master and backup daemons of this director (either, both or none, as in IPVS).
#[derive(Debug)]
pub struct SyncDaemons {
    master: Option<Running>,
    backup: Option<Running>,
    queue: Receiver<SyncConn>,
    workers: Vec<Sender<WorkerMsg>>,
    owner_key: u64,
    pub stats: Arc<SyncStats>,
}

impl SyncDaemons {
    /// `queue` receives what the workers send; `workers` (in lcore order) and `owner_key` route
    /// received connections to the worker that owns each client.
    pub fn new(queue: Receiver<SyncConn>, workers: Vec<Sender<WorkerMsg>>, owner_key: u64) -> Self {
        Self { master: None, backup: None, queue, workers, owner_key, stats: Arc::default() }
    }

    pub fn start(&mut self, master: bool, cfg: DaemonConfig) -> Result<(), String> {
        let slot = if master { &self.master } else { &self.backup };
        if slot.is_some() {
            // libipvs's words for the kernel's EEXIST.
            return Err("Daemon has already run".into());
        }
        let addr = interface_v4(&cfg.mcast_interface)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&stop), Arc::clone(&self.stats));
        let c = cfg.clone();
        let thread = if master {
            let socket = master_socket(&cfg.mcast_interface, addr).map_err(|e| e.to_string())?;
            let q = self.queue.clone();
            for w in &self.workers {
                let _ = w.send(WorkerMsg::SyncMaster(true));
            }
            std::thread::Builder::new()
                .name("rvs-sync-master".into())
                .spawn(move || run_master(&c, &socket, &q, &s, &st))
        } else {
            let socket = backup_socket(&cfg.mcast_interface, addr).map_err(|e| e.to_string())?;
            let (workers, key) = (self.workers.clone(), self.owner_key);
            std::thread::Builder::new()
                .name("rvs-sync-backup".into())
                .spawn(move || run_backup(&c, &socket, &workers, key, &s, &st))
        }
        .map_err(|e| e.to_string())?;
        info!(
            role = if master { "master" } else { "backup" },
            interface = %cfg.mcast_interface,
            syncid = cfg.syncid,
            "connection sync daemon started"
        );
        let r = Some(Running { cfg, stop, thread: Some(thread) });
        if master {
            self.master = r
        } else {
            self.backup = r
        }
        Ok(())
    }

    pub fn stop(&mut self, master: bool) -> Result<(), String> {
        let slot = if master { &mut self.master } else { &mut self.backup };
        // libipvs's words for the kernel's ESRCH.
        slot.take().ok_or_else(|| "No daemon is running".to_owned())?;
        if master {
            for w in &self.workers {
                let _ = w.send(WorkerMsg::SyncMaster(false));
            }
        }
        info!(role = if master { "master" } else { "backup" }, "connection sync daemon stopped");
        Ok(())
    }

    /// `-L --daemon` as ipvsadm prints it.
    pub fn listing(&self) -> String {
        let mut out = String::new();
        for (name, d) in [("master", &self.master), ("backup", &self.backup)] {
            if let Some(d) = d {
                out.push_str(&format!(
                    "{name} sync daemon (mcast={}, syncid={})\n",
                    d.cfg.mcast_interface, d.cfg.syncid
                ));
            }
        }
        out
    }

    /// Which daemons run (master, backup).
    pub fn running(&self) -> (bool, bool) {
        (self.master.is_some(), self.backup.is_some())
    }
}

/// The first IPVS address of `iface` (the daemons send from it and join the group on it).
fn interface_v4(iface: &str) -> Result<Ipv4Addr, String> {
    let mut w = crate::addrwatch::TwinAddrs::open(&[iface]).map_err(|e| format!("{iface}: {e}"))?;
    let addrs = w.read().map_err(|e| format!("{iface}: {e}"))?;
    addrs.into_iter().next().ok_or_else(|| format!("{iface} has no IPv4 address to sync from"))
}

fn master_socket(iface: &str, addr: Ipv4Addr) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.bind_device(Some(iface.as_bytes()))?;
    s.set_multicast_if_v4(&addr)?;
    // sync_ttl's default: the stream stays on the directors' link.
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_loop_v4(false)?;
    s.bind(&SocketAddrV4::new(addr, 0).into())?;
    Ok(s)
}

fn backup_socket(iface: &str, addr: Ipv4Addr) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.bind_device(Some(iface.as_bytes()))?;
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, sync::PORT).into())?;
    s.join_multicast_v4(&sync::GROUP, &addr)?;
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(s)
}

/// Batches what the workers send (up to a message's worth, or 20 ms) and multicasts it.
fn run_master(cfg: &DaemonConfig, s: &Socket, q: &Receiver<SyncConn>, stop: &AtomicBool, st: &SyncStats) {
    let to = SocketAddrV4::new(sync::GROUP, sync::PORT).into();
    let mut batch = Vec::with_capacity(256);
    while !stop.load(Ordering::Relaxed) {
        match q.recv_timeout(Duration::from_millis(20)) {
            Ok(c) => batch.push(c),
            Err(_) => continue,
        }
        let deadline = std::time::Instant::now() + Duration::from_millis(20);
        while batch.len() < 4096 {
            match q.recv_deadline(deadline) {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        for m in sync::encode(cfg.syncid, &batch, sync::MAX_MESSAGE) {
            match s.send_to(&m, &to) {
                Ok(_) => {
                    st.messages_sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => warn!(error = %e, "sending a sync message"),
            }
        }
        batch.clear();
    }
}

/// Receives sync messages and hands each connection to the worker owning its client.
fn run_backup(
    cfg: &DaemonConfig,
    s: &Socket,
    workers: &[Sender<WorkerMsg>],
    owner_key: u64,
    stop: &AtomicBool,
    st: &SyncStats,
) {
    let mut buf = [0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let n = match std::io::Read::read(&mut &*s, &mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                continue;
            }
            Err(e) => {
                warn!(error = %e, "receiving sync messages");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let conns = match sync::decode(buf.get(..n).unwrap_or_default()) {
            Ok((id, c)) if cfg.syncid == 0 || id == cfg.syncid => c,
            Ok(_) => {
                st.messages_refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(e) => {
                st.messages_refused.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "an undecodable sync message");
                continue;
            }
        };
        st.messages_received.fetch_add(1, Ordering::Relaxed);
        let mut per: Vec<Vec<SyncConn>> = vec![Vec::new(); workers.len()];
        for c in conns {
            let w = match c.caddr {
                std::net::IpAddr::V4(a) => rvs_dataplane::owner_of(owner_key, a, workers.len()),
                std::net::IpAddr::V6(_) => 0,
            };
            if let Some(v) = per.get_mut(w) {
                v.push(c);
            }
        }
        for (w, v) in workers.iter().zip(per) {
            if !v.is_empty() {
                let _ = w.send(WorkerMsg::Synced(v.into()));
            }
        }
    }
}
