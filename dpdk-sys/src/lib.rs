//! Raw FFI bindings to the system DPDK, generated at build time by bindgen over the headers that
//! `pkg-config libdpdk` names, plus `rvs_*` wrappers (csrc/shim.c) for DPDK's `static inline` fast-path
//! functions, which have no symbol to link against.
//!
//! Nothing here is safe to call casually: the safe layer is `rvs-dpdk` (appliance/dpdk). DPDK enums are
//! generated as newtype constants (`struct rte_eth_rx_mq_mode(pub u32)`) so that zero-initialised
//! configuration structs are always valid values.

#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    missing_debug_implementations,
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block
)]
#![allow(unsafe_op_in_unsafe_fn)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// The DPDK version the bindings were generated against (pkg-config's `--modversion`).
pub const BUILT_AGAINST_VERSION: &str = env!("RVS_DPDK_BUILT_VERSION");
