use dpdk_sys::rte_mbuf;

use crate::mbuf::Mbuf;

/// Packets per rx/tx burst: DPDK's customary 32 amortises the per-call cost and fits the L1 cache.
pub const BURST_SIZE: usize = 32;

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
        (ptr, free as u16)
    }

    /// The filled slots as the raw array DPDK reads.
    pub(crate) fn raw_filled(&mut self) -> (*mut *mut rte_mbuf, u16) {
        (self.slots.as_mut_ptr().cast::<*mut rte_mbuf>(), self.len as u16)
    }

    /// Records that DPDK wrote `n` mbuf pointers into the tail.
    ///
    /// # Safety
    /// The `n` slots after `len` must hold valid, uniquely owned mbufs.
    pub(crate) unsafe fn commit_tail(&mut self, n: usize) {
        self.len += n;
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
