//! The control plane at scale: restore 10,000 services with 10 real servers each (`-R`), list them
//! (`-Ln`), save them (`-Sn`), as rvsd does it. `cargo run --release -p rvs-control --example
//! restore_bench -- [services] [servers]`
use std::fmt::Write as _;
use std::time::Instant;

use rvs_adm::listing::{self, Snapshot};
use rvs_adm::{ListOptions, protocol::Request};
use rvs_control::control::{Director, execute, restore};
use rvs_ipvs::Ipvs;

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (services, servers) = (args.first().copied().unwrap_or(10_000), args.get(1).copied().unwrap_or(10));
    let mut rules = String::new();
    for s in 0..services {
        let vip = format!("10.{}.{}.{}", 100 + s / 65536, (s / 256) % 256, s % 256);
        let _ = writeln!(rules, "-A -t {vip}:80 -s wlc");
        for r in 0..servers {
            let _ = writeln!(rules, "-a -t {vip}:80 -r 172.16.{}.{}:8080 -m -w 1", r, s % 250 + 1);
        }
    }
    let mut m = Ipvs::new(16, 16, 0);
    let t = Instant::now();
    let ops = restore(&mut m, &rules).expect("restore");
    let apply = t.elapsed();
    let n = ops.len();
    // What a worker then does between two bursts: the same batch applied to its shard.
    let mut shard = Ipvs::new(1 << 16, 1024, 1);
    let t = Instant::now();
    for op in &ops {
        shard.apply(op).expect("shard apply");
    }
    let shard_apply = t.elapsed();
    // And what it spends answering one counter report (a scrape, the 2-second estimator).
    let t = Instant::now();
    let report = shard.report(false, 0);
    let shard_report = t.elapsed();
    assert_eq!(report.services.len(), services);
    let t = Instant::now();
    let listed = listing::list(
        &Snapshot { table_size: 4096, ..Snapshot::from_ipvs(&m, 0) },
        &ListOptions { numeric: true, ..Default::default() },
    )
    .expect("list");
    let list = t.elapsed();
    let t = Instant::now();
    let rates = rvs_control::rates::Estimator::default();
    let shards = rvs_control::shards::Shards::default();
    let mut sync = rvs_control::sync::SyncDaemons::new(crossbeam_channel::never(), Vec::new(), 0);
    let mut d =
        Director { model: &mut m, shards: &shards, rates: &rates, table_size: 4096, now: 0, sync: &mut sync };
    let saved = execute(&mut d, &Request { args: vec!["rvsadm".into(), "-Sn".into()], stdin: vec![] }).stdout;
    let save = t.elapsed();
    assert_eq!(saved.lines().count(), services * (servers + 1));
    println!(
        "{services} services x {servers} servers ({n} commands, {} KiB of rules): restore {:.0} ms (then {:.0} ms in a worker's shard; a counter report {:.1} ms), list {:.0} ms ({} lines), save {:.0} ms",
        rules.len() / 1024,
        apply.as_secs_f64() * 1e3,
        shard_apply.as_secs_f64() * 1e3,
        shard_report.as_secs_f64() * 1e3,
        list.as_secs_f64() * 1e3,
        listed.lines().count(),
        save.as_secs_f64() * 1e3
    );
}
