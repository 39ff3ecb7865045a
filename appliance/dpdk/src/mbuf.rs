use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

use dpdk_sys::{rte_mbuf, rte_mempool};

use crate::burst::PacketBurst;
use crate::error::{DpdkError, Result};

/// Sizing of a packet-buffer pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Unique name within the process (DPDK keys pools by name).
    pub name: String,
    /// Number of mbufs. DPDK's ring-backed pools are most memory-efficient at 2^n - 1.
    pub mbufs: u32,
    /// Per-lcore cache; at most 512 (RTE_MEMPOOL_CACHE_MAX_SIZE) and at most mbufs / 1.5.
    pub cache_size: u32,
    /// Data room per mbuf, headroom included (RTE_MBUF_DEFAULT_BUF_SIZE is 2176).
    pub data_room_bytes: u16,
    /// NUMA socket; `None` = any.
    pub socket: Option<u32>,
}

/// A pool of packet buffers. Cloning shares the pool; it is freed when the last handle drops and every
/// mbuf is back in it (otherwise it is leaked, which is safe, and a warning says so).
#[derive(Debug, Clone)]
pub struct Mempool {
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    ptr: NonNull<rte_mempool>,
    name: String,
}

// SAFETY: DPDK mempools are multi-producer/multi-consumer safe (the default ring ops); the per-lcore
// cache is indexed by the calling lcore, so any thread may get and put.
unsafe impl Send for PoolInner {}
// SAFETY: as above; the shared handle only calls thread-safe mempool functions.
unsafe impl Sync for PoolInner {}

impl Mempool {
    pub fn new(cfg: &MempoolConfig) -> Result<Self> {
        let name = CString::new(cfg.name.as_str())
            .map_err(|_| DpdkError::InvalidArgument(format!("mempool name {:?} contains NUL", cfg.name)))?;
        // SOCKET_ID_ANY (-1) unless a NUMA socket is asked for.
        let socket = cfg.socket.map_or(-1, |s| i32::try_from(s).unwrap_or(-1));
        // SAFETY: `name` is a valid C string for the duration of the call (DPDK copies it); the sizes are
        // plain integers that DPDK validates itself.
        let ptr = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(
                name.as_ptr(),
                cfg.mbufs,
                cfg.cache_size,
                0,
                cfg.data_room_bytes,
                socket,
            )
        };
        let ptr = NonNull::new(ptr).ok_or_else(|| DpdkError::from_rte_errno("rte_pktmbuf_pool_create"))?;
        Ok(Self { inner: Arc::new(PoolInner { ptr, name: cfg.name.clone() }) })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Total mbufs in the pool.
    pub fn capacity(&self) -> u32 {
        // SAFETY: the pool lives as long as `self`; `size` is written once at creation.
        unsafe { (*self.inner.ptr.as_ptr()).size }
    }

    /// Mbufs currently out of the pool (per-lcore caches count as available).
    pub fn in_use(&self) -> u32 {
        // SAFETY: the pool is valid; the count is a racy snapshot by design, never UB.
        unsafe { dpdk_sys::rvs_mempool_in_use_count(self.inner.ptr.as_ptr()) }
    }

    pub fn available(&self) -> u32 {
        // SAFETY: as for in_use.
        unsafe { dpdk_sys::rvs_mempool_avail_count(self.inner.ptr.as_ptr()) }
    }

    /// Takes one mbuf, reset and empty; `None` when the pool is exhausted.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is a valid pktmbuf pool.
        let m = unsafe { dpdk_sys::rvs_pktmbuf_alloc(self.inner.ptr.as_ptr()) };
        NonNull::new(m).map(Mbuf)
    }

    /// Fills the free slots of `burst` with reset, empty mbufs, all or none (DPDK's bulk get takes them
    /// from the per-lcore cache in one step); returns how many were added.
    pub fn alloc_into(&self, burst: &mut PacketBurst) -> usize {
        let (ptr, free) = burst.raw_tail();
        if free == 0 {
            return 0;
        }
        // SAFETY: the pool is a valid pktmbuf pool; `ptr` points at `free` writable slots of the burst.
        let ret = unsafe { dpdk_sys::rvs_pktmbuf_alloc_bulk(self.inner.ptr.as_ptr(), ptr, u32::from(free)) };
        if ret != 0 {
            return 0;
        }
        // SAFETY: on success DPDK wrote `free` freshly allocated mbufs (refcnt 1) that nobody else owns.
        unsafe { burst.commit_tail(usize::from(free)) };
        usize::from(free)
    }

    pub(crate) fn as_ptr(&self) -> *mut rte_mempool {
        self.inner.ptr.as_ptr()
    }
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // SAFETY: the pool is valid until freed below.
        let in_use = unsafe { dpdk_sys::rvs_mempool_in_use_count(self.ptr.as_ptr()) };
        if in_use == 0 {
            // SAFETY: no handle is left (we are the last Arc) and no mbuf is out, so nothing can touch
            // the pool's memory after this.
            unsafe { dpdk_sys::rte_mempool_free(self.ptr.as_ptr()) };
        } else {
            tracing::warn!(pool = %self.name, in_use, "mempool still has mbufs out; leaking it");
        }
    }
}

/// `len` bytes that DPDK just added to `_owner`'s data at `p` (append/prepend), zeroed so that they
/// are initialised, as a slice borrowed from `_owner`: the lifetime cannot outlive the mbuf's
/// exclusive borrow (a free `'a` would let a caller keep the bytes past the packet).
fn zeroed(_owner: &mut Mbuf, p: NonNull<u8>, len: u16) -> &mut [u8] {
    let len = usize::from(len);
    // SAFETY: DPDK reserved `len` writable bytes at `p` inside the data buffer of `_owner`, which we
    // borrow exclusively for the returned slice's lifetime.
    unsafe { std::ptr::write_bytes(p.as_ptr(), 0, len) };
    // SAFETY: the bytes are now initialised, inside `_owner`'s buffer, and the slice's lifetime is
    // that of the exclusive borrow of `_owner`.
    unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), len) }
}

/// One owned packet buffer (a direct mbuf with reference count 1), freed on drop. Only the first
/// segment's data is exposed: rvs configures ports without scatter, so received packets are one segment.
#[derive(Debug)]
#[repr(transparent)]
pub struct Mbuf(NonNull<rte_mbuf>);

// SAFETY: an Mbuf is the unique owner of its buffer, and freeing returns it to a thread-safe mempool, so
// moving it to another thread is sound.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `ptr` must be a valid, direct mbuf with reference count 1 that nobody else will use or free.
    pub unsafe fn from_raw(ptr: NonNull<rte_mbuf>) -> Self {
        Self(ptr)
    }

    /// Gives up ownership without freeing.
    pub fn into_raw(self) -> NonNull<rte_mbuf> {
        let p = self.0;
        std::mem::forget(self);
        p
    }

    pub fn as_ptr(&self) -> *mut rte_mbuf {
        self.0.as_ptr()
    }

    /// Bytes of packet data in the first segment.
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.raw().data_len)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total packet length over all segments.
    pub fn pkt_len(&self) -> u32 {
        self.raw().pkt_len
    }

    pub fn segments(&self) -> u16 {
        self.raw().nb_segs
    }

    /// The port the packet arrived on.
    pub fn port(&self) -> u16 {
        self.raw().port
    }

    /// The NIC's RSS hash, when the port computed one.
    pub fn rss_hash(&self) -> u32 {
        // SAFETY: we own a valid mbuf.
        unsafe { dpdk_sys::rvs_pktmbuf_rss_hash(self.0.as_ptr()) }
    }

    pub fn headroom(&self) -> usize {
        // SAFETY: we own a valid mbuf.
        usize::from(unsafe { dpdk_sys::rvs_pktmbuf_headroom(self.0.as_ptr()) })
    }

    pub fn tailroom(&self) -> usize {
        // SAFETY: we own a valid mbuf.
        usize::from(unsafe { dpdk_sys::rvs_pktmbuf_tailroom(self.0.as_ptr()) })
    }

    /// The packet bytes of the first segment.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let (start, len) = self.data_span();
        // SAFETY: data_span is rte_pktmbuf_mtod and data_len: `len` initialised bytes inside the mbuf's
        // buffer, which we own exclusively (refcnt 1) for at least the lifetime of &self.
        unsafe { std::slice::from_raw_parts(start, len) }
    }

    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let (start, len) = self.data_span();
        // SAFETY: as for data(); &mut self guarantees no other reference into the buffer.
        unsafe { std::slice::from_raw_parts_mut(start, len) }
    }

    /// rte_pktmbuf_mtod and data_len, computed in Rust rather than through the C shim: these are plain
    /// fields whose names are stable across DPDK LTS releases, and inlined loads are far cheaper than a
    /// call per packet (measured with perf/: see the README).
    #[inline]
    fn data_span(&self) -> (*mut u8, usize) {
        let m = self.raw();
        // DPDK keeps data_off + data_len <= buf_len, so the offset stays inside the buffer allocation.
        (m.buf_addr.cast::<u8>().wrapping_add(usize::from(m.data_off)), usize::from(m.data_len))
    }

    #[inline]
    fn raw(&self) -> &rte_mbuf {
        // SAFETY: we own a valid, initialised mbuf for the lifetime of &self.
        unsafe { self.0.as_ref() }
    }

    /// Grows the packet at the tail by `len` bytes and returns them, zeroed; `None` if the tailroom is
    /// too small.
    pub fn append(&mut self, len: u16) -> Option<&mut [u8]> {
        // SAFETY: we own a valid mbuf; DPDK returns NULL when there is not enough tailroom.
        let p = unsafe { dpdk_sys::rvs_pktmbuf_append(self.0.as_ptr(), len) };
        Some(zeroed(self, NonNull::new(p.cast::<u8>())?, len))
    }

    /// Grows the packet at the head by `len` bytes (e.g. for an outer header) and returns them, zeroed;
    /// `None` if the headroom is too small.
    pub fn prepend(&mut self, len: u16) -> Option<&mut [u8]> {
        // SAFETY: we own a valid mbuf; DPDK returns NULL when there is not enough headroom.
        let p = unsafe { dpdk_sys::rvs_pktmbuf_prepend(self.0.as_ptr(), len) };
        Some(zeroed(self, NonNull::new(p.cast::<u8>())?, len))
    }

    /// Removes `len` bytes from the head; false (and no change) if the packet is shorter.
    pub fn adj(&mut self, len: u16) -> bool {
        // SAFETY: we own a valid mbuf; DPDK checks the length and returns NULL without change.
        !unsafe { dpdk_sys::rvs_pktmbuf_adj(self.0.as_ptr(), len) }.is_null()
    }

    /// Removes `len` bytes from the tail; false (and no change) if the last segment is shorter.
    pub fn trim(&mut self, len: u16) -> bool {
        // SAFETY: we own a valid mbuf; DPDK checks the length and returns -1 without change.
        unsafe { dpdk_sys::rvs_pktmbuf_trim(self.0.as_ptr(), len) == 0 }
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we are the unique owner; the mbuf goes back to its pool and is never touched again.
        unsafe { dpdk_sys::rvs_pktmbuf_free(self.0.as_ptr()) }
    }
}
