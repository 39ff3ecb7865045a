//! Large allocations in 2 MiB pages.
//!
//! A worker's connection table at a million flows is ~100 MiB of entries and indexes read at random.
//! In 4 KiB pages almost every lookup also misses the TLB and walks the page tables (the second-level
//! TLB of a current x86 core covers a few MiB in 4 KiB pages, gigabytes in 2 MiB ones), which is how the
//! lookup stage came to cost more than everything else in the packet path. [`HugeAlloc`], the global
//! allocator of rvsd and of the benchmarks, maps every allocation of 2 MiB or more on its own, aligned
//! to 2 MiB, and asks the kernel for transparent huge pages there (`madvise(MADV_HUGEPAGE)`, honoured
//! when `/sys/kernel/mm/transparent_hugepage/enabled` is `always` or `madvise`, Debian's default).
//! Smaller allocations go to the system allocator.
//!
//! Why transparent huge pages and not DPDK's hugepage heap (`rte_malloc_socket`): the tables are
//! built before the EAL's memory is sized for them, tests run the engine without an EAL, and the
//! reserved pool is what the mbufs need. The page faults that fill the mapping happen on the thread
//! that first writes it, so a table built on its worker's lcore is local to that worker's NUMA node.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether new large mappings are advised for huge pages (see [`set_advise`]).
static ADVISE: AtomicBool = AtomicBool::new(true);

/// Whether mappings made from now on ask for huge pages (the default) or keep 4 KiB pages, so that a
/// benchmark can compare the two in one process (`pipeline_rate pages`).
pub fn set_advise(on: bool) {
    ADVISE.store(on, Ordering::Relaxed);
}

/// The huge page size, and the smallest allocation mapped on its own.
pub const HUGE_PAGE: usize = 2 << 20;

/// The global allocator that puts allocations of [`HUGE_PAGE`] bytes or more in huge pages.
#[derive(Debug, Clone, Copy, Default)]
pub struct HugeAlloc;

fn is_huge(layout: Layout) -> bool {
    layout.size() >= HUGE_PAGE && layout.align() <= HUGE_PAGE
}

/// The length of the mapping for `size` bytes: whole huge pages, or `None` past the address space.
fn mapped_len(size: usize) -> Option<usize> {
    size.checked_add(HUGE_PAGE - 1).map(|n| n & !(HUGE_PAGE - 1))
}

/// Maps `size` bytes aligned to [`HUGE_PAGE`] and marks them for huge pages; null when the kernel
/// refuses (the allocator's contract for failure).
fn map_huge(size: usize) -> *mut u8 {
    let Some(len) = mapped_len(size) else { return ptr::null_mut() };
    let Some(over) = len.checked_add(HUGE_PAGE) else { return ptr::null_mut() };
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches no existing
    // memory; the result is checked against MAP_FAILED before use.
    let raw = unsafe {
        libc::mmap(
            ptr::null_mut(),
            over,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    // Mapped one huge page longer than needed, so that an aligned start lies inside; the slack before
    // and after it goes back.
    let base = raw.cast::<u8>();
    let head = base.align_offset(HUGE_PAGE).min(HUGE_PAGE);
    let tail = over - head - len;
    // `head + len + tail == over`: both stay inside the mapping made above.
    let (start, end) = (base.wrapping_add(head), base.wrapping_add(head + len));
    if head > 0 {
        // SAFETY: [base, start) is the part of our own fresh mapping before the aligned start; nothing
        // refers to it.
        unsafe { libc::munmap(base.cast(), head) };
    }
    if tail > 0 {
        // SAFETY: [end, end + tail) is the part of our own fresh mapping after the allocation.
        unsafe { libc::munmap(end.cast(), tail) };
    }
    let advice = if ADVISE.load(Ordering::Relaxed) { libc::MADV_HUGEPAGE } else { libc::MADV_NOHUGEPAGE };
    // SAFETY: [start, start + len) is mapped (ours, just made); the advice only changes how the kernel
    // backs it. Failure (THP switched off) leaves 4 KiB pages, which are correct, only slower.
    unsafe { libc::madvise(start.cast(), len, advice) };
    start
}

// SAFETY: every pointer handed out is either the system allocator's (and goes back to it: `is_huge`
// depends only on the layout, which the caller must pass back unchanged) or a fresh private mapping of
// at least `size` bytes aligned to HUGE_PAGE >= `align`, unmapped whole on dealloc; distinct calls
// never share memory.
unsafe impl GlobalAlloc for HugeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout) {
            map_huge(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees (non-zero size).
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout) {
            // Fresh anonymous memory reads as zeros; not writing it leaves the pages to be faulted in by
            // the thread that first uses them.
            map_huge(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if is_huge(layout) {
            if let Some(len) = mapped_len(layout.size()) {
                // SAFETY: `p` came from `map_huge` for this layout, which mapped exactly `len` bytes.
                unsafe { libc::munmap(p.cast(), len) };
            }
        } else {
            // SAFETY: `p` came from System.alloc with this layout.
            unsafe { System.dealloc(p, layout) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees a valid layout and a non-zero `new_size` that does not overflow
        // when rounded up to `layout.align()`.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_huge(layout), is_huge(new)) {
            // SAFETY: both sides belong to the system allocator; forwarded with the caller's guarantees.
            (false, false) => unsafe { System.realloc(p, layout, new_size) },
            (true, true) if mapped_len(layout.size()) == mapped_len(new_size) => p,
            // A growing or shrinking large block (a listing's text, say) moves by remapping its pages
            // instead of copying them. The new start is only page-aligned, which is enough when the
            // layout asks no more; it may then miss some huge pages, never correctness.
            (true, true) if layout.align() <= 4096 => {
                let (Some(old_len), Some(new_len)) = (mapped_len(layout.size()), mapped_len(new_size)) else {
                    return ptr::null_mut();
                };
                // SAFETY: [p, p + old_len) is the whole mapping map_huge (or an earlier mremap) made for
                // this block; MREMAP_MAYMOVE gives back a mapping of new_len bytes holding the old
                // contents, or MAP_FAILED and leaves the old one in place.
                let q = unsafe { libc::mremap(p.cast(), old_len, new_len, libc::MREMAP_MAYMOVE) };
                if q == libc::MAP_FAILED { ptr::null_mut() } else { q.cast() }
            }
            _ => {
                // SAFETY: a fresh allocation of `new`, as alloc's contract allows.
                let q = unsafe { self.alloc(new) };
                if !q.is_null() {
                    // SAFETY: both blocks are live, distinct, and at least min(old, new) bytes long.
                    unsafe { ptr::copy_nonoverlapping(p, q, layout.size().min(new_size)) };
                    // SAFETY: `p` was allocated by this allocator with `layout`; it is not used again.
                    unsafe { self.dealloc(p, layout) };
                }
                q
            }
        }
    }
}

/// Bytes of this process's anonymous memory backed by huge pages (`AnonHugePages` in
/// /proc/self/smaps_rollup), for the log line that says whether the tables got them.
pub fn anon_huge_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let line = text.lines().find(|l| l.starts_with("AnonHugePages:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The kernel's transparent huge page mode (the bracketed word of
/// /sys/kernel/mm/transparent_hugepage/enabled: `always`, `madvise` or `never`).
pub fn thp_mode() -> Option<String> {
    parse_thp_mode(&std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?)
}

/// The selected mode in the text of /sys/kernel/mm/transparent_hugepage/enabled
/// (`always [madvise] never` -> `madvise`).
pub fn parse_thp_mode(text: &str) -> Option<String> {
    let (_, rest) = text.split_once('[')?;
    let (mode, _) = rest.split_once(']')?;
    Some(mode.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block from [`HugeAlloc`], freed on drop, read and written through safe slices.
    struct Block {
        p: *mut u8,
        layout: Layout,
    }

    impl Block {
        fn new(size: usize, zeroed: bool) -> Self {
            let layout = Layout::from_size_align(size, 64).expect("layout");
            let p = if zeroed {
                // SAFETY: a non-zero size.
                unsafe { HugeAlloc.alloc_zeroed(layout) }
            } else {
                // SAFETY: a non-zero size.
                unsafe { HugeAlloc.alloc(layout) }
            };
            assert!(!p.is_null());
            Self { p, layout }
        }

        fn resize(&mut self, size: usize) {
            // SAFETY: `p` is live and was allocated with `layout`; it is replaced by the result.
            let q = unsafe { HugeAlloc.realloc(self.p, self.layout, size) };
            assert!(!q.is_null());
            self.p = q;
            self.layout = Layout::from_size_align(size, 64).expect("layout");
        }

        fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: `p` points to `layout.size()` bytes this block owns (initialised: they are read
            // only after being zeroed or written), borrowed as long as the block is.
            unsafe { std::slice::from_raw_parts_mut(self.p, self.layout.size()) }
        }
    }

    impl Drop for Block {
        fn drop(&mut self) {
            // SAFETY: `p` was allocated with `layout` and is not used again.
            unsafe { HugeAlloc.dealloc(self.p, self.layout) };
        }
    }

    #[test]
    fn large_blocks_are_aligned_zeroed_usable_and_resizable() {
        for size in [HUGE_PAGE, HUGE_PAGE + 1, 3 * HUGE_PAGE - 7] {
            let mut b = Block::new(size, true);
            assert_eq!(b.p as usize % HUGE_PAGE, 0);
            assert!(b.bytes().iter().all(|&x| x == 0));
            b.bytes().fill(0xa5);
            b.resize(size * 2);
            assert!(b.bytes()[..size].iter().all(|&x| x == 0xa5), "contents kept");
            b.bytes().fill(0x5a);
            b.resize(size * 7);
            assert!(b.bytes()[..size * 2].iter().all(|&x| x == 0x5a), "contents kept by a remap");
            b.bytes().fill(0xa5);
            b.resize(100);
            assert!(b.bytes().iter().all(|&x| x == 0xa5), "shrunk to a small block");
        }
    }

    #[test]
    fn the_selected_thp_mode_is_the_bracketed_word() {
        assert_eq!(parse_thp_mode("always [madvise] never\n").as_deref(), Some("madvise"));
        assert_eq!(parse_thp_mode("[always] madvise never").as_deref(), Some("always"));
        assert_eq!(parse_thp_mode("always madvise never"), None);
    }

    #[test]
    fn small_blocks_use_the_system_allocator() {
        let mut b = Block::new(4096, false);
        b.bytes().fill(1);
        assert_ne!(b.p as usize % HUGE_PAGE, 0, "not a mapping of its own (almost surely)");
    }

    #[test]
    fn a_block_of_many_megabytes_gets_huge_pages_where_the_kernel_offers_them() {
        if thp_mode().as_deref() == Some("never") {
            return;
        }
        let before = anon_huge_bytes().unwrap_or(0);
        let mut b = Block::new(64 * HUGE_PAGE, false);
        b.bytes().fill(1);
        let after = anon_huge_bytes().unwrap_or(0);
        // The kernel may fall back where memory is fragmented: half the block in huge pages shows
        // the advice took.
        assert!(after >= before + 32 * HUGE_PAGE as u64, "{before} -> {after} bytes in huge pages");
    }
}
