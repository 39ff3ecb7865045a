//! The IPVS model for rvs: services, real servers ("destinations"), the schedulers, the connection
//! table with IPVS's TCP state machine and timeouts, and persistence — everything that decides where
//! a packet goes, and nothing that moves it.
//!
//! Sans-I/O (like quinn-proto): no DPDK, no sockets, no clock. Time is an argument ([`Time`], in
//! milliseconds from any fixed origin), so tests drive simulated time and the data plane passes its
//! TSC-derived clock.
//!
//! One [`Ipvs`] is one worker's shard: its own copy of the services and their counters, and its own
//! connection table. The control plane applies the same configuration operations to every shard.
//! Where Linux behaviour is matched, the kernel function is named in the docs.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
// Numbers on the packet path are narrowed and sign-changed only where the value is known to fit
// (as Firecracker sets these for its device code); an `as` that could lose bits says why it cannot.
#![cfg_attr(
    not(test),
    warn(
        clippy::cast_possible_truncation,
        clippy::cast_possible_wrap,
        clippy::cast_sign_loss,
        clippy::error_impl_error
    )
)]

pub mod conn;
mod engine;
mod ops;
pub mod sched;
pub mod service;
pub mod state;
pub mod sync;
pub mod sysctl;

pub use conn::{ConnInfo, ConnTable};
pub use engine::{
    ConnId, DefenseCounters, DropCounters, DropReason, InVerdict, Ipvs, OutVerdict, PacketMeta,
};
pub use ops::{DestReport, Op, ReportCursor, ServiceReport, ShardReport};
pub use sched::SchedulerKind;
pub use service::{
    Dest, DestConfig, DestId, Fwd, Persistence, SchedFlags, ServiceConfig, ServiceId, ServiceKey, Stats,
    TunCsum, TunnelType,
};
pub use state::{TcpState, Timeouts};
pub use sysctl::{Mode, Sysctl, SysctlError};

/// Milliseconds since an origin the caller picks (the data plane: its start).
pub type Time = u64;

/// IP protocol numbers IPVS services use.
pub mod proto {
    /// Templates of firewall-mark services carry protocol 0 (IPPROTO_IP), as in IPVS.
    pub const IP: u8 = 0;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const SCTP: u8 = 132;
}

/// Narrowing helpers, where the value is known to fit or the cut is the point (hash folding).
pub(crate) mod num {
    /// A 128-bit value folded to 64 bits: the halves mixed (an IPv6 address into a hash key).
    #[inline]
    pub fn fold128(x: u128, rot: u32) -> u64 {
        let lo = u64::try_from(x & u128::from(u64::MAX)).unwrap_or(0);
        let hi = u64::try_from(x >> 64).unwrap_or(0);
        lo ^ hi.rotate_left(rot)
    }

    /// A hash reduced to a table index by `mask` (a power of two minus one, below the table's length).
    #[inline]
    pub fn masked(h: u64, mask: usize) -> usize {
        usize::try_from(h & u64::try_from(mask).unwrap_or(u64::MAX)).unwrap_or(0)
    }

    /// An index into a table the engine sized (at most 2^26 entries: it fits a u32).
    #[inline]
    pub fn idx32(i: usize) -> u32 {
        u32::try_from(i).unwrap_or(u32::MAX)
    }
}

/// Configuration errors, with ipvsadm's wording where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("Service already exists")]
    ServiceExists,
    #[error("No such service")]
    NoService,
    #[error("Destination already exists")]
    DestExists,
    #[error("No such destination")]
    NoDest,
    #[error("Zero port specified for non-persistent service")]
    ZeroPortNonPersistent,
    #[error("Illegal weight specified")]
    BadWeight,
    #[error("Invalid scheduler flags: {0}")]
    BadSchedFlags(&'static str),
    #[error("Invalid netmask / prefix length")]
    BadNetmask,
    #[error("Address family of the destination differs from the service's")]
    FamilyMismatch,
    #[error("Maglev table size must be a prime of at least 11")]
    BadTableSize,
}
