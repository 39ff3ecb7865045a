//! The rvs management core: it reads and validates the configuration, brings up DPDK, launches the
//! workers, reports statistics, and shuts everything down cleanly. It never sits on the packet path.

#![forbid(unsafe_code)]

pub mod addrwatch;
pub mod config;
pub mod control;
pub mod daemon;
pub mod hardware;
pub mod health;
pub mod keepalived;
pub mod metrics;
pub mod rates;
pub mod shards;
pub mod sync;

pub use config::{Config, ConfigError};
pub use daemon::{BuildInfo, DaemonError, Signals, Summary, run};
