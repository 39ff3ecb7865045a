use dpdk_sys::rte_mbuf;

use crate::mbuf::Mbuf;

/// Packets per rx/tx burst: DPDK's customary 32 amortises the per-call cost and fits the L1 cache.
pub const BURST_SIZE: usize = 32;

/// A count of burst slots (at most [`BURST_SIZE`]) as DPDK's u16.
#[inline]
fn burst_u16(n: usize) -> u16 {
    u16::try_from(n.min(BURST_SIZE)).unwrap_or(0)
}

/// Up to [`BURST_SIZE`] owned mbufs, filled by [`crate::RxQueue::rx_burst`] and emptied by
/// [`crate::TxQueue::tx_burst`]. Invariant: slots `..len` are `Some`, slots `len..` are `None`.
///
/// `Option<Mbuf>` has the layout of `*mut rte_mbuf` (None = NULL; Mbuf is a transparent NonNull), so the
/// slot array is handed to DPDK as its `struct rte_mbuf **` without copying.
#[derive(Debug)]
pub struct PacketBurst {
    slots: [Option<Mbuf>; BURST_SIZE],
    len: usize,
}

impl Default for PacketBurst {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketBurst {
    pub fn new() -> Self {
        Self { slots: [const { None }; BURST_SIZE], len: 0 }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == BURST_SIZE
    }

    /// Adds a packet; gives it back when the burst is full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        match self.slots.get_mut(self.len) {
            Some(slot) => {
                *slot = Some(m);
                self.len += 1;
                Ok(())
            }
            None => Err(m),
        }
    }

    /// Removes the last packet.
    pub fn pop(&mut self) -> Option<Mbuf> {
        let i = self.len.checked_sub(1)?;
        self.len = i;
        self.slots.get_mut(i).and_then(Option::take)
    }

    /// Hands every packet to `f`, in order, leaving the burst empty.
    #[inline]
    pub fn take_each(&mut self, mut f: impl FnMut(Mbuf)) {
        let n = std::mem::take(&mut self.len);
        for m in self.slots.iter_mut().take(n).filter_map(Option::take) {
            f(m);
        }
    }

    /// Hands every packet to `f`, in order; those it gives back stay (in order), the others are
    /// gone with `f` (sent elsewhere, or freed).
    pub fn keep_or_take(&mut self, mut f: impl FnMut(Mbuf) -> Option<Mbuf>) {
        let mut w = 0;
        for r in 0..self.len {
            let Some(m) = self.slots.get_mut(r).and_then(Option::take) else { continue };
            if let Some(m) = f(m) {
                if let Some(slot) = self.slots.get_mut(w) {
                    *slot = Some(m);
                    w += 1;
                }
            }
        }
        self.len = w;
    }

    /// Frees every packet in the burst.
    pub fn clear(&mut self) {
        for slot in self.slots.iter_mut().take(self.len) {
            *slot = None;
        }
        self.len = 0;
    }

    pub fn iter(&self) -> impl Iterator<Item = &Mbuf> {
        self.slots.iter().take(self.len).flatten()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Mbuf> {
        self.slots.iter_mut().take(self.len).flatten()
    }

    /// Keeps the packets for which `keep` returns true, in order, and frees the others; returns how
    /// many were freed.
    pub fn retain(&mut self, mut keep: impl FnMut(&mut Mbuf) -> bool) -> usize {
        let mut w = 0;
        for r in 0..self.len {
            let Some(mut m) = self.slots.get_mut(r).and_then(Option::take) else {
                continue;
            };
            if keep(&mut m) {
                if let Some(slot) = self.slots.get_mut(w) {
                    *slot = Some(m);
                    w += 1;
                }
            }
        }
        let freed = self.len - w;
        self.len = w;
        freed
    }

    /// Free slots, as the raw array DPDK fills, and how many there are.
    pub(crate) fn raw_tail(&mut self) -> (*mut *mut rte_mbuf, u16) {
        let free = BURST_SIZE - self.len;
        // `len <= BURST_SIZE`, so the offset stays inside (or one past) the array.
        let ptr = self.slots[self.len..].as_mut_ptr().cast::<*mut rte_mbuf>();
        (ptr, burst_u16(free))
    }

    /// The filled slots as the raw array DPDK reads.
    pub(crate) fn raw_filled(&mut self) -> (*mut *mut rte_mbuf, u16) {
        (self.slots.as_mut_ptr().cast::<*mut rte_mbuf>(), burst_u16(self.len))
    }

    /// Records that DPDK wrote `n` mbuf pointers into the tail, and forgets whatever it wrote past
    /// them: vector RX paths (ixgbe's, i40e's, ice's) store whole groups of 4 or 8 descriptors'
    /// pointers and return a smaller count, so the slots after `len + n` may hold pointers to mbufs
    /// the driver still owns. Left there, `push`, `Drop` or `clear` would free them (a double free).
    ///
    /// # Safety
    /// The `n` slots after `len` must hold valid, uniquely owned mbufs.
    pub(crate) unsafe fn commit_tail(&mut self, n: usize) {
        self.len = (self.len + n).min(BURST_SIZE);
        for slot in self.slots.iter_mut().skip(self.len) {
            // Not ours: overwrite with None without dropping (which would free the driver's mbuf).
            std::mem::forget(slot.take());
        }
    }

    /// DPDK took ownership of the first `n` packets: forget them (no free) and move the rest to the
    /// front, in order.
    pub(crate) fn keep_unsent(&mut self, n: usize) {
        let n = n.min(self.len);
        for slot in self.slots.iter_mut().take(n) {
            // The driver owns these mbufs now.
            std::mem::forget(slot.take());
        }
        self.slots[..self.len].rotate_left(n);
        self.len -= n;
    }

    /// DPDK took ownership of the first `n` packets: forget them (no free), free the rest, and empty
    /// the burst. Returns how many were freed.
    pub(crate) fn release_sent(&mut self, n: usize) -> usize {
        let n = n.min(self.len);
        for slot in self.slots.iter_mut().take(n) {
            // The driver owns these mbufs now; freeing them here would be a double free.
            std::mem::forget(slot.take());
        }
        let dropped = self.len - n;
        for slot in self.slots.iter_mut().take(self.len).skip(n) {
            *slot = None;
        }
        self.len = 0;
        dropped
    }
}

// The zero-copy hand-over to DPDK depends on this layout guarantee.
const _: () = assert!(size_of::<Option<Mbuf>>() == size_of::<*mut rte_mbuf>());

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Eal, EalConfig, Mempool, MempoolConfig};

    /// A vector RX path writes pointers past the count it returns. Here the "driver's" mbufs are real
    /// ones the test still owns: after the burst is used and dropped, they must still be allocated
    /// (in_use unchanged), which fails when the tail is left as the driver wrote it.
    /// (The only EAL test of this crate's unit tests: an EAL starts once per process.)
    #[test]
    fn rx_tail_written_past_the_count_is_not_ours() {
        let cfg = EalConfig {
            main_lcore: 0,
            worker_lcores: vec![],
            memory_mib: Some(64),
            no_huge: true,
            in_memory: true,
            file_prefix: Some(format!("rvs-burst-test-{}", std::process::id())),
            ..EalConfig::default()
        };
        let _eal = Eal::init(&cfg.to_args()).expect("EAL");
        let pool = Mempool::new(&MempoolConfig {
            name: "burst_tail".into(),
            mbufs: 255,
            cache_size: 0,
            data_room_bytes: 2176,
            socket: None,
        })
        .expect("pool");
        let received: Vec<Mbuf> = (0..3).map(|_| pool.alloc().expect("mbuf")).collect();
        let drivers: Vec<*mut rte_mbuf> =
            (0..5).map(|_| pool.alloc().expect("mbuf").into_raw().as_ptr()).collect();
        assert_eq!(pool.in_use(), 8);
        let mut burst = PacketBurst::new();
        let (tail, free) = burst.raw_tail();
        assert_eq!(usize::from(free), BURST_SIZE);
        // The first 3 slots get mbufs the burst now owns, the next 5 pointers the "driver" keeps,
        // as a vector PMD leaves them.
        let owned = received.into_iter().map(|m| m.into_raw().as_ptr());
        for (i, p) in owned.chain(drivers.iter().copied()).enumerate() {
            // SAFETY: `tail` points at BURST_SIZE writable slots and i < 8.
            let slot = unsafe { tail.add(i) };
            // SAFETY: `slot` is in bounds and aligned for a pointer.
            unsafe { slot.write(p) };
        }
        // SAFETY: the first 3 slots hold valid mbufs nobody else owns.
        unsafe { burst.commit_tail(3) };
        assert_eq!(burst.len(), 3);
        // Every path that touches slots past len: push into them, clear, drop.
        let extra = pool.alloc().expect("mbuf");
        assert!(burst.push(extra).is_ok());
        burst.clear();
        assert!(burst.push(pool.alloc().expect("mbuf")).is_ok());
        drop(burst);
        assert_eq!(pool.in_use(), 5, "only the driver's mbufs are still out");
        for p in drivers {
            // SAFETY: each pointer came from into_raw above and was never freed.
            drop(unsafe { Mbuf::from_raw(std::ptr::NonNull::new(p).expect("non-null")) });
        }
        assert_eq!(pool.in_use(), 0);
    }
}
