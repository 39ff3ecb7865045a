use std::ffi::CStr;

/// Errors from the DPDK layer. DPDK reports failures as negative errno values or through `rte_errno`;
/// both are kept with DPDK's own text for them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpdkError {
    #[error("the DPDK EAL is already initialised in this process")]
    AlreadyInitialized,
    #[error("{op} failed: {reason} (errno {errno})")]
    Dpdk { op: &'static str, errno: i32, reason: String },
    #[error("no DPDK port named {0:?} (check the device arguments and that its PMD is installed)")]
    NoSuchPort(String),
    #[error("lcore {0} is not an enabled worker lcore")]
    NotAWorker(u32),
    #[error("queue {queue} of port {port} is already owned by a worker")]
    QueueTaken { port: u16, queue: u16 },
    #[error("queue {queue} is out of range: port {port} has {count}")]
    NoSuchQueue { port: u16, queue: u16, count: u16 },
    #[error("port {0} still has queue handles in use; stop the workers first")]
    QueuesInUse(u16),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("the function launched on lcore {0} panicked")]
    Panicked(u32),
}

pub type Result<T, E = DpdkError> = std::result::Result<T, E>;

impl DpdkError {
    /// From a DPDK return value of the form `-errno`.
    pub(crate) fn from_ret(op: &'static str, ret: i32) -> Self {
        Self::from_errno(op, ret.saturating_abs())
    }

    /// From the calling thread's `rte_errno`.
    pub(crate) fn from_rte_errno(op: &'static str) -> Self {
        // SAFETY: reads a thread-local integer; no preconditions.
        let errno = unsafe { dpdk_sys::rvs_errno() };
        Self::from_errno(op, errno)
    }

    fn from_errno(op: &'static str, errno: i32) -> Self {
        // SAFETY: rte_strerror accepts any integer and returns a pointer to a static or thread-local
        // NUL-terminated string, valid at least until the next call on this thread; we copy it at once.
        let text = unsafe { dpdk_sys::rte_strerror(errno) };
        // SAFETY: `text` is the non-NULL, NUL-terminated string rte_strerror just returned.
        let reason = unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned();
        Self::Dpdk { op, errno, reason }
    }
}
