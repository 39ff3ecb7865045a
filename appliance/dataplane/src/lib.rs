//! The rvs data plane: what runs on each worker lcore.
//!
//! Rules for everything in this crate (ARCHITECTURE.md, "Hot-path rules"): bursts of 32, no heap
//! allocation, lock, syscall, log line or panic per packet; every dropped packet is counted under a
//! named reason. Workers share no mutable state: each owns its queues and its [`WorkerCounters`], which
//! the management core reads without locks.
//!
//! Two kinds of worker: [`DirectorWorker`] runs the director ([`Pipeline`]: ARP, ICMP echo, IPVS,
//! NAT/DR/TUN rewrites, routes, neighbours); [`L2Worker`] is an L2 cross-connect in the shape of
//! testpmd's `io` and `macswap` modes, the baseline the director is measured against.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]
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

mod counters;
mod director;
pub mod frag;
mod l2;
pub mod neigh;
pub mod net;
mod pipeline;
mod pkt;
pub mod ratelimit;
pub mod rss;

pub use counters::{CounterSnapshot, DropReason, SYNC_EVENTS, WorkerCounters};
pub use director::{
    DirectorWorker, HOLD_CAPACITY, Handoff, IfaceQueues, PortQueues, Steering, TwinQueues, WorkerMsg,
};
pub use l2::{ForwardMode, L2Worker, Link};
pub use pipeline::{Action, Meta, Pipeline, STAGES, owner_of};
pub use pkt::MbufPacket;
