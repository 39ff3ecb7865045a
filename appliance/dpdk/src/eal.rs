use std::ffi::{CString, c_char, c_int, c_void};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::error::{DpdkError, Result};

/// A DPDK logical core id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LcoreId(pub u32);

impl std::fmt::Display for LcoreId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the EAL needs to start, in typed form. [`EalConfig::to_args`] turns it into the command line
/// `rte_eal_init` parses, so tests and the daemon build arguments the same way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EalConfig {
    /// The main lcore (management thread). Must not be among `worker_lcores`.
    pub main_lcore: u32,
    /// Lcores that run poll-mode workers.
    pub worker_lcores: Vec<u32>,
    /// Memory to reserve at start, in MiB (`-m`); `None` lets the EAL grow on demand.
    pub memory_mib: Option<u32>,
    /// Run without hugepages (`--no-huge`): slower, but needs no reservation; for tests.
    pub no_huge: bool,
    /// Keep no files in /var/run/dpdk and hugetlbfs (`--in-memory`); lets many processes coexist.
    /// Ignored with `no_huge`: DPDK refuses the two together (--no-huge implies legacy memory).
    pub in_memory: bool,
    /// `--file-prefix`, unique per concurrently running DPDK process.
    pub file_prefix: Option<String>,
    /// Virtual devices, as `--vdev` device arguments (e.g. `net_af_packet0,iface=veth0`).
    pub vdevs: Vec<String>,
    /// PCI devices to use (`-a`); when empty, PCI probing is switched off.
    pub pci_allow: Vec<String>,
    /// The CPU each lcore runs on, main first then workers (`--lcores 0@0,1@1,2@1`); `None` = lcore n
    /// on CPU n (`-l`). Lets a machine with fewer CPUs than lcores run them (tests; never production:
    /// two poll-mode lcores on one CPU take turns by the scheduler's time slices).
    pub lcore_cpus: Option<Vec<u32>>,
    /// Further EAL arguments, passed verbatim after the ones above.
    pub extra_args: Vec<String>,
}

impl EalConfig {
    pub fn to_args(&self) -> Vec<String> {
        let mut lcores = vec![self.main_lcore];
        lcores.extend(self.worker_lcores.iter().copied());
        let mut args = match &self.lcore_cpus {
            Some(cpus) => {
                let map =
                    lcores.iter().zip(cpus).map(|(l, c)| format!("{l}@{c}")).collect::<Vec<_>>().join(",");
                vec!["--lcores".to_string(), map]
            }
            None => vec!["-l".to_string(), lcores.iter().map(u32::to_string).collect::<Vec<_>>().join(",")],
        };
        args.extend(["--main-lcore".to_string(), self.main_lcore.to_string()]);
        if let Some(m) = self.memory_mib {
            args.extend(["-m".to_string(), m.to_string()]);
        }
        if self.no_huge {
            args.push("--no-huge".to_string());
        }
        if self.in_memory && !self.no_huge {
            args.push("--in-memory".to_string());
        }
        if let Some(p) = &self.file_prefix {
            args.extend(["--file-prefix".to_string(), p.clone()]);
        }
        for v in &self.vdevs {
            args.extend(["--vdev".to_string(), v.clone()]);
        }
        if self.pci_allow.is_empty() {
            args.push("--no-pci".to_string());
        }
        for a in &self.pci_allow {
            args.extend(["-a".to_string(), a.clone()]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// The initialised DPDK environment. Not `Send`: DPDK expects init, launch and cleanup on the main lcore.
#[derive(Debug)]
pub struct Eal {
    _main_thread: PhantomData<*const ()>,
}

impl Eal {
    /// Starts the EAL with `args` (without the program name). Only once per process.
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Self> {
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(DpdkError::AlreadyInitialized);
        }
        let mut owned = Vec::with_capacity(args.len() + 1);
        owned.push(CString::new("rvs").map_err(|e| DpdkError::InvalidArgument(e.to_string()))?);
        for a in args {
            let a = a.as_ref();
            owned.push(
                CString::new(a)
                    .map_err(|_| DpdkError::InvalidArgument(format!("EAL argument {a:?} contains NUL")))?,
            );
        }
        // rte_eal_init permutes argv and may keep pointers into it for the life of the process, so the
        // strings are leaked on purpose: a few bytes, once.
        let owned: &'static [CString] = Vec::leak(owned);
        let argv: &'static mut [*mut c_char] =
            Vec::leak(owned.iter().map(|s| s.as_ptr().cast_mut()).collect::<Vec<_>>());
        let argc = c_int::try_from(argv.len())
            .map_err(|_| DpdkError::InvalidArgument("too many EAL arguments".into()))?;
        // SAFETY: argv points to argc valid NUL-terminated strings that live for the rest of the process;
        // INITIALISED guarantees this is the only call in the process.
        let ret = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            return Err(DpdkError::from_rte_errno("rte_eal_init"));
        }
        Ok(Self { _main_thread: PhantomData })
    }

    /// The worker lcores the EAL enabled (all but the main one), in order.
    pub fn worker_lcores(&self) -> Vec<LcoreId> {
        let mut out = Vec::new();
        // SAFETY: the EAL is initialised; RTE_MAX_LCORE as the start value asks for the first lcore.
        let mut id = unsafe { dpdk_sys::rte_get_next_lcore(u32::MAX, 1, 0) };
        while id < dpdk_sys::RTE_MAX_LCORE {
            out.push(LcoreId(id));
            // SAFETY: as above; `id` is a valid lcore index.
            id = unsafe { dpdk_sys::rte_get_next_lcore(id, 1, 0) };
        }
        out
    }

    pub fn main_lcore(&self) -> LcoreId {
        // SAFETY: the EAL is initialised.
        LcoreId(unsafe { dpdk_sys::rte_get_main_lcore() })
    }

    /// The NUMA socket of an lcore (for placing its mempool and queues).
    pub fn lcore_socket(&self, lcore: LcoreId) -> u32 {
        // SAFETY: the EAL is initialised; out-of-range ids return SOCKET_ID_ANY-like values, not UB.
        unsafe { dpdk_sys::rte_lcore_to_socket_id(lcore.0) }
    }

    /// Timestamp-counter ticks per second.
    pub fn tsc_hz(&self) -> u64 {
        // SAFETY: the EAL is initialised (it calibrated the TSC).
        unsafe { dpdk_sys::rvs_get_tsc_hz() }
    }

    /// Runs `f` on worker `lcore`. A panic in `f` is caught on the lcore (it must never unwind into C)
    /// and reported by [`LaunchHandle::join`].
    pub fn launch<F>(&self, lcore: LcoreId, f: F) -> Result<LaunchHandle>
    where
        F: FnOnce() -> i32 + Send + 'static,
    {
        if !self.worker_lcores().contains(&lcore) {
            return Err(DpdkError::NotAWorker(lcore.0));
        }
        let state = Arc::new(AtomicU8::new(RUNNING));
        let job = Box::new(Job { f: Box::new(f), state: Arc::clone(&state) });
        let arg = Box::into_raw(job).cast::<c_void>();
        // SAFETY: `trampoline` has the lcore_function_t signature and takes back ownership of `arg`, a
        // leaked Box<Job>, exactly once. `lcore` is an enabled worker lcore.
        let ret = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg, lcore.0) };
        if ret != 0 {
            // SAFETY: the launch failed, so the trampoline never ran and never will: we still own `arg`.
            drop(unsafe { Box::from_raw(arg.cast::<Job>()) });
            return Err(DpdkError::from_ret("rte_eal_remote_launch", ret));
        }
        Ok(LaunchHandle { lcore, state, joined: false })
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: called once, on the thread that initialised the EAL (Eal is !Send); every lcore
        // function was joined by its LaunchHandle's drop at the latest.
        let ret = unsafe { dpdk_sys::rte_eal_cleanup() };
        if ret != 0 {
            tracing::warn!(ret, "rte_eal_cleanup failed");
        }
    }
}

const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const PANICKED: u8 = 2;

struct Job {
    f: Box<dyn FnOnce() -> i32 + Send>,
    state: Arc<AtomicU8>,
}

extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<Job> leaked by Eal::launch, handed to exactly one trampoline call.
    let job = unsafe { Box::from_raw(arg.cast::<Job>()) };
    let Job { f, state } = *job;
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(ret) => {
            state.store(FINISHED, Ordering::Release);
            ret
        }
        Err(_) => {
            state.store(PANICKED, Ordering::Release);
            -1
        }
    }
}

/// A function running on a worker lcore. Dropping the handle waits for it (like a scoped thread), so an
/// lcore is always back in the WAIT state before the EAL is cleaned up.
#[derive(Debug)]
pub struct LaunchHandle {
    lcore: LcoreId,
    state: Arc<AtomicU8>,
    joined: bool,
}

impl LaunchHandle {
    pub fn lcore(&self) -> LcoreId {
        self.lcore
    }

    /// Whether the function is still running (false once it returned or panicked), without waiting:
    /// the management loop watches its workers with it.
    pub fn is_running(&self) -> bool {
        self.state.load(Ordering::Acquire) == RUNNING
    }

    /// Whether the function panicked (the panic was caught on the lcore).
    pub fn panicked(&self) -> bool {
        self.state.load(Ordering::Acquire) == PANICKED
    }

    /// Waits for the function and returns its value, or [`DpdkError::Panicked`].
    pub fn join(mut self) -> Result<i32> {
        self.wait()
    }

    fn wait(&mut self) -> Result<i32> {
        self.joined = true;
        // SAFETY: the lcore was launched by us and is waited for once (guarded by `joined`).
        let ret = unsafe { dpdk_sys::rte_eal_wait_lcore(self.lcore.0) };
        match self.state.load(Ordering::Acquire) {
            PANICKED => Err(DpdkError::Panicked(self.lcore.0)),
            _ => Ok(ret),
        }
    }
}

impl Drop for LaunchHandle {
    fn drop(&mut self) {
        if !self.joined {
            let _ = self.wait();
        }
    }
}

/// The CPU timestamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: reads the TSC; no preconditions.
    unsafe { dpdk_sys::rvs_rdtsc() }
}

/// Asks the CPU to bring the cache line `r` begins in into all cache levels, and returns at once
/// (DPDK's `rte_prefetch0`). Lines the packet path will read a little later are fetched together
/// this way instead of one miss after another.
#[inline]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing the program sees, never faults (even on an
    // unmapped address), and `r` is a live reference anyway.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(std::ptr::from_ref(r).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// A spin-wait hint for polling loops with nothing to do.
#[inline]
pub fn cpu_pause() {
    // SAFETY: a pause instruction; no preconditions.
    unsafe { dpdk_sys::rvs_pause() }
}
