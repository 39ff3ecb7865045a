//! The safe face of DPDK for rvs. With `dpdk-sys`, this is the only crate allowed `unsafe`; every block
//! states why it is sound (`clippy::undocumented_unsafe_blocks` is denied workspace-wide).
//!
//! Ownership model:
//! - [`Eal`] is initialised once per process, lives on the main thread and cleans up on drop. Drop it
//!   last (declare it first).
//! - [`Mempool`] is a shared handle; the pool is freed only when the last handle goes and every mbuf is
//!   back, otherwise it is leaked on purpose (freeing it under live mbufs would be use-after-free).
//! - [`Mbuf`] owns one direct mbuf with reference count 1 and frees it on drop; [`PacketBurst`] holds up to
//!   [`BURST_SIZE`] of them.
//! - [`RxQueue`]/[`TxQueue`] are handed out once per (port, queue) so exactly one thread polls each. A
//!   port refuses to stop or close while any of its queue handles lives.
//! - [`TxQueue::tx_burst`] takes exact ownership: the mbufs the driver accepted are forgotten, the rest are
//!   freed and counted, and the call never retries.
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

mod burst;
mod eal;
mod error;
pub mod huge;
mod mbuf;
mod port;

pub use burst::{BURST_SIZE, PacketBurst};
pub use eal::{Eal, EalConfig, LaunchHandle, LcoreId, cpu_pause, prefetch, rdtsc};
pub use error::{DpdkError, Result};
pub use huge::HugeAlloc;
pub use mbuf::{Mbuf, Mempool, MempoolConfig};
pub use port::{
    Port, PortConfig, PortId, PortStats, QueueId, RxQueue, Started, Stopped, TxOutcome, TxQueue, rss,
};

/// The DPDK version the bindings were generated against.
pub const DPDK_VERSION: &str = dpdk_sys::BUILT_AGAINST_VERSION;
