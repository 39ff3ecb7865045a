//! The rvs data plane: what runs on each worker lcore.
//!
//! Rules for everything in this crate (ARCHITECTURE.md, "Hot-path rules"): bursts of 32, no heap
//! allocation, lock, syscall, log line or panic per packet; every dropped packet is counted under a
//! named reason. Workers share no mutable state: each owns its queues and its [`WorkerCounters`], which
//! the management core reads without locks.
//!
//! At this stage the pipeline is an L2 cross-connect between two ports (the shape of testpmd's `io`
//! and `macswap` modes); the IPVS pipeline replaces the per-packet step in a later stage.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)
)]

mod counters;
mod l2;
mod pkt;

pub use counters::{CounterSnapshot, WorkerCounters};
pub use l2::{ForwardMode, L2Worker, Link};
pub use pkt::MbufPacket;
