use std::ffi::CString;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::burst::PacketBurst;
use crate::eal::Eal;
use crate::error::{DpdkError, Result};
use crate::mbuf::Mempool;

/// A DPDK ethdev port id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u16);

/// A queue index on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(pub u16);

/// How to bring up a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
    /// Accept frames for any destination MAC (needed to forward at L2 and on veth-backed ports).
    pub promiscuous: bool,
    /// Set the port MTU, in bytes; `None` keeps the PMD's default.
    pub mtu_bytes: Option<u16>,
    /// With several RX queues: the Toeplitz key (40 bytes on most NICs); `None` = the PMD's default.
    pub rss_key: Option<Vec<u8>>,
}

/// RSS hash fields rvs asks for (rte_ethdev.h's RTE_ETH_RSS_* bits): IPv4/IPv6 addresses, and ports
/// for TCP and UDP. The port gets those of them it offers (`flow_type_rss_offloads`).
pub mod rss {
    pub const IPV4: u64 = 1 << 2;
    pub const NONFRAG_IPV4_TCP: u64 = 1 << 4;
    pub const NONFRAG_IPV4_UDP: u64 = 1 << 5;
    pub const IPV6: u64 = 1 << 8;
    pub const NONFRAG_IPV6_TCP: u64 = 1 << 10;
    pub const NONFRAG_IPV6_UDP: u64 = 1 << 11;
    pub const WANTED: u64 =
        IPV4 | NONFRAG_IPV4_TCP | NONFRAG_IPV4_UDP | IPV6 | NONFRAG_IPV6_TCP | NONFRAG_IPV6_UDP;

    /// The fields in `hf` as ethtool-like names ("ipv4 ipv4-tcp ..."), or "none".
    pub fn describe(hf: u64) -> String {
        let names = [
            (IPV4, "ipv4"),
            (NONFRAG_IPV4_TCP, "ipv4-tcp"),
            (NONFRAG_IPV4_UDP, "ipv4-udp"),
            (IPV6, "ipv6"),
            (NONFRAG_IPV6_TCP, "ipv6-tcp"),
            (NONFRAG_IPV6_UDP, "ipv6-udp"),
        ];
        let on: Vec<&str> = names.iter().filter(|(b, _)| hf & b != 0).map(|(_, n)| *n).collect();
        if on.is_empty() { "none".into() } else { on.join(" ") }
    }
}

/// Typestate: the port is configured but not forwarding.
#[derive(Debug)]
pub enum Stopped {}
/// Typestate: the port is started.
#[derive(Debug)]
pub enum Started {}

/// Counters the PMD keeps for a port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Dropped by the hardware/PMD because no RX descriptor was free.
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    /// RX mbuf allocation failures.
    pub rx_nombuf: u64,
}

/// A configured ethdev port. Stopped and closed on drop, unless queue handles are still out (then it is
/// left running and a warning is logged: stopping it under a polling worker would race).
#[derive(Debug)]
pub struct Port<S> {
    inner: PortInner,
    _state: PhantomData<S>,
}

/// The state shared by every typestate; it owns the port and closes it on drop, so state transitions
/// just move it into a new `Port<T>`.
#[derive(Debug)]
struct PortInner {
    id: PortId,
    /// The RSS hash fields in use (0: no RSS).
    rss_hf: u64,
    name: String,
    rx_queues: u16,
    tx_queues: u16,
    rx_taken: Vec<bool>,
    tx_taken: Vec<bool>,
    // Every queue handle holds a clone: strong_count == 1 means no worker can still be polling.
    users: Arc<()>,
    started: bool,
    // Kept alive for as long as the RX queues may allocate from it.
    _pool: Mempool,
}

impl Port<Stopped> {
    /// Finds a port by its DPDK name: the vdev name before the first comma (`net_af_packet0`), or the
    /// PCI address (`0000:03:00.0`).
    pub fn lookup(_eal: &Eal, name: &str) -> Result<PortId> {
        let cname = CString::new(name).map_err(|_| DpdkError::NoSuchPort(name.to_owned()))?;
        let mut id = 0u16;
        // SAFETY: cname is a valid C string; `id` is a valid out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        if ret != 0 {
            return Err(DpdkError::NoSuchPort(name.to_owned()));
        }
        Ok(PortId(id))
    }

    /// Configures `id` with its queues, RX queues drawing buffers from `pool`.
    pub fn configure(eal: &Eal, id: PortId, cfg: &PortConfig, pool: &Mempool) -> Result<Self> {
        let _ = eal;
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: `info` is a valid out-pointer; an invalid port id is reported as an error.
        let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(id.0, &mut info) };
        if ret != 0 {
            return Err(DpdkError::from_ret("rte_eth_dev_info_get", ret));
        }
        if cfg.rx_queues == 0 || cfg.tx_queues == 0 {
            return Err(DpdkError::InvalidArgument("a port needs at least one RX and one TX queue".into()));
        }
        if cfg.rx_queues > info.max_rx_queues || cfg.tx_queues > info.max_tx_queues {
            return Err(DpdkError::InvalidArgument(format!(
                "port {} offers {} RX and {} TX queues; {} and {} were asked for",
                id.0, info.max_rx_queues, info.max_tx_queues, cfg.rx_queues, cfg.tx_queues
            )));
        }
        // All-zero is a valid rte_eth_conf (enums are newtype integers): no RSS, no offloads. With
        // several RX queues, RSS over the fields the port offers; a port that offers none (some
        // virtual devices) spreads packets its own way, or not at all.
        let mut conf = dpdk_sys::rte_eth_conf::default();
        let rss_hf = if cfg.rx_queues > 1 { rss::WANTED & info.flow_type_rss_offloads } else { 0 };
        let mut key = cfg.rss_key.clone().unwrap_or_default();
        if rss_hf != 0 {
            conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode::RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
            if !key.is_empty() {
                if info.hash_key_size != 0 && key.len() != usize::from(info.hash_key_size) {
                    return Err(DpdkError::InvalidArgument(format!(
                        "port {} takes a {}-byte RSS key; {} bytes were given",
                        id.0,
                        info.hash_key_size,
                        key.len()
                    )));
                }
                conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
                // Checked against the device's key size (a u8) just above.
                conf.rx_adv_conf.rss_conf.rss_key_len = u8::try_from(key.len()).unwrap_or(u8::MAX);
            }
        }
        // SAFETY: valid port id (info_get succeeded) and a valid, fully initialised conf.
        let ret = unsafe { dpdk_sys::rte_eth_dev_configure(id.0, cfg.rx_queues, cfg.tx_queues, &conf) };
        if ret != 0 {
            return Err(DpdkError::from_ret("rte_eth_dev_configure", ret));
        }
        let mut nb_rxd = cfg.rx_descriptors;
        let mut nb_txd = cfg.tx_descriptors;
        // SAFETY: valid port id and out-pointers; DPDK clamps the counts to the device's limits.
        let ret = unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(id.0, &mut nb_rxd, &mut nb_txd) };
        if ret != 0 {
            return Err(DpdkError::from_ret("rte_eth_dev_adjust_nb_rx_tx_desc", ret));
        }
        // SAFETY: valid port id.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id.0) };
        // SOCKET_ID_ANY (-1): any socket will do; take 0.
        let socket = u32::try_from(socket).unwrap_or(0);
        for q in 0..cfg.rx_queues {
            // SAFETY: configured port, q < rx_queues; NULL rxconf means the PMD default; the pool is a
            // valid pktmbuf pool kept alive by the Port.
            let ret = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(id.0, q, nb_rxd, socket, std::ptr::null(), pool.as_ptr())
            };
            if ret != 0 {
                return Err(DpdkError::from_ret("rte_eth_rx_queue_setup", ret));
            }
        }
        for q in 0..cfg.tx_queues {
            // SAFETY: configured port, q < tx_queues; NULL txconf means the PMD default.
            let ret = unsafe { dpdk_sys::rte_eth_tx_queue_setup(id.0, q, nb_txd, socket, std::ptr::null()) };
            if ret != 0 {
                return Err(DpdkError::from_ret("rte_eth_tx_queue_setup", ret));
            }
        }
        if let Some(mtu) = cfg.mtu_bytes {
            // SAFETY: valid port id.
            let ret = unsafe { dpdk_sys::rte_eth_dev_set_mtu(id.0, mtu) };
            if ret != 0 {
                return Err(DpdkError::from_ret("rte_eth_dev_set_mtu", ret));
            }
        }
        let mut name_buf = [0 as std::ffi::c_char; dpdk_sys::RTE_ETH_NAME_MAX_LEN as usize];
        // SAFETY: the buffer has RTE_ETH_NAME_MAX_LEN bytes as the function requires.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_name_by_port(id.0, name_buf.as_mut_ptr()) };
        let name = if ret == 0 {
            // SAFETY: on success DPDK wrote a NUL-terminated name into the buffer.
            unsafe { std::ffi::CStr::from_ptr(name_buf.as_ptr()) }.to_string_lossy().into_owned()
        } else {
            format!("port{}", id.0)
        };
        let port = Self {
            inner: PortInner {
                id,
                rss_hf,
                name,
                rx_queues: cfg.rx_queues,
                tx_queues: cfg.tx_queues,
                rx_taken: vec![false; usize::from(cfg.rx_queues)],
                tx_taken: vec![false; usize::from(cfg.tx_queues)],
                users: Arc::new(()),
                started: false,
                _pool: pool.clone(),
            },
            _state: PhantomData,
        };
        if cfg.promiscuous {
            // SAFETY: valid, configured port.
            let ret = unsafe { dpdk_sys::rte_eth_promiscuous_enable(id.0) };
            if ret != 0 && ret != -libc_enotsup() {
                return Err(DpdkError::from_ret("rte_eth_promiscuous_enable", ret));
            }
        }
        Ok(port)
    }

    pub fn start(mut self) -> Result<Port<Started>> {
        // SAFETY: the port is configured with all its queues set up.
        let ret = unsafe { dpdk_sys::rte_eth_dev_start(self.inner.id.0) };
        if ret != 0 {
            return Err(DpdkError::from_ret("rte_eth_dev_start", ret));
        }
        self.inner.started = true;
        Ok(self.into_state())
    }
}

impl Port<Started> {
    /// Stops the port; refused (and the started port handed back) while any queue handle is out.
    #[allow(clippy::result_large_err)]
    pub fn stop(mut self) -> Result<Port<Stopped>, (Self, DpdkError)> {
        if let Err(e) = self.ensure_no_users() {
            return Err((self, e));
        }
        // SAFETY: a started port with no queue handle left, so no thread is polling it.
        let ret = unsafe { dpdk_sys::rte_eth_dev_stop(self.inner.id.0) };
        if ret != 0 {
            return Err((self, DpdkError::from_ret("rte_eth_dev_stop", ret)));
        }
        self.inner.started = false;
        Ok(self.into_state())
    }
}

impl<S> Port<S> {
    pub fn id(&self) -> PortId {
        self.inner.id
    }

    /// The DPDK device name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The RSS hash fields in use (`rss::*` bits); 0 when the port does not hash (one queue, or a
    /// device that offers no RSS).
    pub fn rss_hash_fields(&self) -> u64 {
        self.inner.rss_hf
    }

    /// The size of the port's RSS redirection table (0: it has none, or the PMD does not say).
    pub fn reta_size(&self) -> u16 {
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: valid port id and out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(self.inner.id.0, &mut info) };
        if ret == 0 { info.reta_size } else { 0 }
    }

    pub fn rx_queue_count(&self) -> u16 {
        self.inner.rx_queues
    }

    pub fn tx_queue_count(&self) -> u16 {
        self.inner.tx_queues
    }

    pub fn mac(&self) -> [u8; 6] {
        let mut addr = dpdk_sys::rte_ether_addr::default();
        // SAFETY: valid port id and out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_macaddr_get(self.inner.id.0, &mut addr) };
        if ret == 0 { addr.addr_bytes } else { [0; 6] }
    }

    /// For predicting the NIC's queue choice in software: points the redirection table at the first
    /// `queues` queues in turn (entry i -> queue i mod `queues`, what most PMDs do by default, set
    /// here so it is known) and returns it with the hash key the port uses. `None` when the port does
    /// not hash (one queue, or no RSS offered) or has no redirection table.
    pub fn rss_steering(&self, queues: u16) -> Result<Option<(Vec<u8>, Vec<u16>)>> {
        if self.inner.rss_hf == 0 || queues == 0 {
            return Ok(None);
        }
        let mut info = dpdk_sys::rte_eth_dev_info::default();
        // SAFETY: valid port id and out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(self.inner.id.0, &mut info) };
        if ret != 0 {
            return Err(DpdkError::from_ret("rte_eth_dev_info_get", ret));
        }
        let size = usize::from(info.reta_size);
        const GROUP: usize = 64; // RTE_ETH_RETA_GROUP_SIZE
        if size == 0 || size % GROUP != 0 {
            return Ok(None);
        }
        let reta: Vec<u16> = (0..size).map(|i| u16::try_from(i % usize::from(queues)).unwrap_or(0)).collect();
        let mut groups: Vec<dpdk_sys::rte_eth_rss_reta_entry64> = reta
            .chunks(GROUP)
            .map(|c| {
                let mut g = dpdk_sys::rte_eth_rss_reta_entry64 { mask: u64::MAX, ..Default::default() };
                g.reta.copy_from_slice(c);
                g
            })
            .collect();
        // SAFETY: `groups` holds reta_size / 64 valid entries, as the call requires for reta_size.
        let ret = unsafe {
            dpdk_sys::rte_eth_dev_rss_reta_update(self.inner.id.0, groups.as_mut_ptr(), info.reta_size)
        };
        if ret != 0 {
            return Err(DpdkError::from_ret("rte_eth_dev_rss_reta_update", ret));
        }
        let mut key = vec![0u8; usize::from(info.hash_key_size.max(40))];
        let mut conf = dpdk_sys::rte_eth_rss_conf {
            rss_key: key.as_mut_ptr(),
            rss_key_len: u8::try_from(key.len()).unwrap_or(u8::MAX),
            rss_hf: 0,
        };
        // SAFETY: valid port id; `conf.rss_key` points at `rss_key_len` writable bytes that outlive
        // the call.
        let ret = unsafe { dpdk_sys::rte_eth_dev_rss_hash_conf_get(self.inner.id.0, &mut conf) };
        if ret != 0 {
            return Err(DpdkError::from_ret("rte_eth_dev_rss_hash_conf_get", ret));
        }
        key.truncate(usize::from(conf.rss_key_len).min(key.len()));
        Ok(Some((key, reta)))
    }

    /// Whether the link is up now (no waiting: virtual links such as net_memif come up when the peer
    /// connects, which a caller polls for).
    pub fn link_up(&self) -> bool {
        let mut link = dpdk_sys::rte_eth_link::default();
        // SAFETY: valid port id and out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_link_get_nowait(self.inner.id.0, &mut link) };
        ret == 0 && link.link_status() != 0
    }

    pub fn stats(&self) -> Result<PortStats> {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: valid port id and out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_stats_get(self.inner.id.0, &mut s) };
        if ret != 0 {
            return Err(DpdkError::from_ret("rte_eth_stats_get", ret));
        }
        Ok(PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Hands out RX queue `q`, once: the receiver is its only poller.
    pub fn take_rx_queue(&mut self, q: QueueId) -> Result<RxQueue> {
        take(&mut self.inner.rx_taken, self.inner.id, q, self.inner.rx_queues)?;
        Ok(RxQueue { port: self.inner.id, queue: q, _user: Arc::clone(&self.inner.users) })
    }

    /// Hands out TX queue `q`, once: the receiver is its only sender.
    pub fn take_tx_queue(&mut self, q: QueueId) -> Result<TxQueue> {
        take(&mut self.inner.tx_taken, self.inner.id, q, self.inner.tx_queues)?;
        Ok(TxQueue { port: self.inner.id, queue: q, _user: Arc::clone(&self.inner.users) })
    }

    fn ensure_no_users(&self) -> Result<()> {
        let busy = Arc::strong_count(&self.inner.users) != 1;
        if busy { Err(DpdkError::QueuesInUse(self.inner.id.0)) } else { Ok(()) }
    }

    fn into_state<T>(self) -> Port<T> {
        Port { inner: self.inner, _state: PhantomData }
    }
}

impl Drop for PortInner {
    fn drop(&mut self) {
        if Arc::strong_count(&self.users) != 1 {
            tracing::warn!(port = self.id.0, "port dropped while queue handles are out; leaving it open");
            return;
        }
        if self.started {
            // SAFETY: no queue handle is left, so nobody polls the port.
            let ret = unsafe { dpdk_sys::rte_eth_dev_stop(self.id.0) };
            if ret != 0 {
                tracing::warn!(port = self.id.0, ret, "rte_eth_dev_stop failed");
            }
        }
        // SAFETY: the port is stopped and unused; close releases its queues and their mbufs.
        let ret = unsafe { dpdk_sys::rte_eth_dev_close(self.id.0) };
        if ret != 0 {
            tracing::warn!(port = self.id.0, ret, "rte_eth_dev_close failed");
        }
    }
}

fn take(taken: &mut [bool], port: PortId, q: QueueId, count: u16) -> Result<()> {
    let slot =
        taken.get_mut(usize::from(q.0)).ok_or(DpdkError::NoSuchQueue { port: port.0, queue: q.0, count })?;
    if *slot {
        return Err(DpdkError::QueueTaken { port: port.0, queue: q.0 });
    }
    *slot = true;
    Ok(())
}

const fn libc_enotsup() -> i32 {
    95 // ENOTSUP on Linux: a PMD without promiscuous control (e.g. net_null) is not an error for us.
}

/// The one receiver of an RX queue. `Send` (moved to its worker) but not `Sync` or `Clone`.
#[derive(Debug)]
pub struct RxQueue {
    port: PortId,
    queue: QueueId,
    _user: Arc<()>,
}

/// The one sender on a TX queue.
#[derive(Debug)]
pub struct TxQueue {
    port: PortId,
    queue: QueueId,
    _user: Arc<()>,
}

/// What a TX burst did with its packets: every packet is either sent or freed here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TxOutcome {
    pub sent: u16,
    /// Packets the driver refused (ring full), freed by us.
    pub dropped: u16,
}

impl RxQueue {
    pub fn port(&self) -> PortId {
        self.port
    }

    pub fn queue(&self) -> QueueId {
        self.queue
    }

    /// Receives into the free slots of `burst`; returns how many packets arrived.
    #[inline]
    pub fn rx_burst(&mut self, burst: &mut PacketBurst) -> usize {
        let (ptr, free) = burst.raw_tail();
        if free == 0 {
            return 0;
        }
        // SAFETY: `ptr` points at `free` writable mbuf-pointer slots; this handle is the queue's only
        // poller; the queue id was range-checked when the handle was made. Were the port stopped or
        // closed meanwhile (it cannot be while this handle lives), DPDK >= 21.11 routes the call to a
        // dummy returning 0.
        let n = unsafe { dpdk_sys::rvs_eth_rx_burst(self.port.0, self.queue.0, ptr, free) };
        let n = usize::from(n.min(free));
        // SAFETY: the PMD wrote `n` valid mbufs with refcnt 1 that it no longer owns.
        unsafe { burst.commit_tail(n) };
        n
    }
}

impl TxQueue {
    pub fn port(&self) -> PortId {
        self.port
    }

    pub fn queue(&self) -> QueueId {
        self.queue
    }

    /// Sends every packet of `burst` once: the driver takes what it can, the rest are freed and
    /// counted in the outcome. The burst is empty afterwards. Never retries (a full ring means the
    /// link is saturated; spinning would stall RX and drop more).
    #[inline]
    pub fn tx_burst(&mut self, burst: &mut PacketBurst) -> TxOutcome {
        if burst.is_empty() {
            return TxOutcome::default();
        }
        let (ptr, len) = burst.raw_filled();
        // SAFETY: `ptr` points at `len` valid owned mbufs; this handle is the queue's only sender; the
        // queue id was range-checked. The PMD takes ownership of the first `sent` pointers only.
        let sent = unsafe { dpdk_sys::rvs_eth_tx_burst(self.port.0, self.queue.0, ptr, len) }.min(len);
        let dropped = burst.release_sent(usize::from(sent));
        // At most the burst's length.
        TxOutcome { sent, dropped: u16::try_from(dropped).unwrap_or(u16::MAX) }
    }

    /// Offers the burst once and keeps what the driver refused, in order, for the caller to offer
    /// again: back-pressure for a sender that must not lose packets (a traffic generator), where the
    /// data plane's [`Self::tx_burst`] drops instead. Returns how many were sent.
    #[inline]
    pub fn tx_burst_retaining(&mut self, burst: &mut PacketBurst) -> u16 {
        if burst.is_empty() {
            return 0;
        }
        let (ptr, len) = burst.raw_filled();
        // SAFETY: as in tx_burst; the PMD takes ownership of the first `sent` pointers only, and the
        // others stay owned by the burst.
        let sent = unsafe { dpdk_sys::rvs_eth_tx_burst(self.port.0, self.queue.0, ptr, len) }.min(len);
        burst.keep_unsent(usize::from(sent));
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::rss;

    #[test]
    fn rss_fields_read_as_ethtool_names() {
        assert_eq!(rss::describe(0), "none");
        assert_eq!(rss::describe(rss::IPV4 | rss::NONFRAG_IPV4_UDP), "ipv4 ipv4-udp");
        assert_eq!(rss::describe(rss::WANTED), "ipv4 ipv4-tcp ipv4-udp ipv6 ipv6-tcp ipv6-udp");
    }
}
