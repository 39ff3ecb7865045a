//! Connection-table and scheduler benchmarks (criterion): lookup hit and miss at 1 M and 10 M
//! entries, one by one and in bursts of 32; schedule + insert per scheduler; memory per connection.
//! Keys are spread at random over the table so lookups miss the CPU caches as real traffic does.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rvs_ipvs::conn::{BATCH, ConnKey, ConnTable, NewEntry, NoPrefetch, WarmTuple};
use rvs_ipvs::state::tcp_flags::SYN;
use rvs_ipvs::{
    DestConfig, Fwd, InVerdict, Ipvs, PacketMeta, SchedulerKind, ServiceConfig, ServiceKey, proto,
};

fn key(i: u64) -> ConnKey<[u8; 4]> {
    // Client address and port from i; 64 k ports per address.
    ConnKey {
        proto: 6,
        caddr: (0x0a00_0000u32 + (i >> 16) as u32).to_be_bytes(),
        cport: i as u16,
        vaddr: [192, 0, 2, 80],
        vport: 80,
    }
}

fn filled(n: u64) -> ConnTable<[u8; 4]> {
    let mut t = ConnTable::new(n as usize, 0x5eed);
    for i in 0..n {
        let e = NewEntry {
            key: key(i),
            raddr: [203, 0, 113, 10],
            rport: 8080,
            flags: 0,
            state: 1,
            fwd: 0,
            dest: 0,
            control: u32::MAX,
            expires: 900_000,
            reply: true,
        };
        t.insert(&e).expect("room");
    }
    t
}

/// Random sample of indexes below `n` (xorshift), so successive lookups hit unrelated lines.
fn sample(n: u64, count: usize, salt: u64) -> Vec<u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15 ^ salt;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        })
        .collect()
}

fn lookups(c: &mut Criterion) {
    for n in [1_000_000u64, 10_000_000] {
        let t = filled(n);
        eprintln!(
            "table of {n} IPv4 connections: {} bytes per slot (64-byte entry + index), {} MiB in all",
            t.bytes_per_slot(),
            (t.bytes_per_slot() * t.capacity()) >> 20
        );
        let hits: Vec<ConnKey<[u8; 4]>> = sample(n, 1 << 16, 1).into_iter().map(key).collect();
        let misses: Vec<ConnKey<[u8; 4]>> = sample(n, 1 << 16, 2).into_iter().map(|i| key(i + n)).collect();
        let mut g = c.benchmark_group(format!("lookup_{}M", n / 1_000_000));
        g.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);
        g.throughput(Throughput::Elements(1));
        for (name, keys) in [("hit", &hits), ("miss", &misses)] {
            g.bench_function(BenchmarkId::new("single", name), |b| {
                let mut i = 0usize;
                b.iter(|| {
                    i = (i + 1) & (keys.len() - 1);
                    black_box(t.lookup(&keys[i], false))
                })
            });
        }
        g.throughput(Throughput::Elements(BATCH as u64));
        for (name, keys) in [("hit", &hits), ("miss", &misses)] {
            g.bench_function(BenchmarkId::new("batch32", name), |b| {
                let tuples: Vec<WarmTuple<[u8; 4]>> = keys.iter().map(WarmTuple::client).collect();
                let mut out = [None; BATCH];
                let mut i = 0usize;
                b.iter(|| {
                    i = (i + BATCH) & (tuples.len() - 1);
                    t.lookup_burst(&tuples[i..i + BATCH], &mut out, &NoPrefetch);
                    black_box(&out);
                })
            });
        }
        g.finish();
    }
}

fn schedule_insert(c: &mut Criterion) {
    let mut g = c.benchmark_group("schedule_insert");
    g.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500)).sample_size(20);
    g.throughput(Throughput::Elements(1));
    const CAP: u64 = 1 << 22;
    let svc = ServiceKey::Addr { protocol: proto::TCP, addr: "192.0.2.80".parse().unwrap(), port: 80 };
    let shard = |kind: SchedulerKind| {
        let mut v = Ipvs::new(CAP as usize, 16, 7);
        let mut cfg = ServiceConfig::new(svc, kind);
        cfg.mh_table_size = 65537;
        v.add_service(cfg).unwrap();
        for i in 0..10u8 {
            let mut d = DestConfig::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10 + i)), 8080, Fwd::Masq);
            d.weight = u32::from(i % 3) + 1;
            v.add_dest(&svc, d).unwrap();
        }
        v
    };
    for kind in SchedulerKind::ALL {
        // One shard per scheduler, reused across samples (a fresh 160 MB table per sample would time
        // cold caches); rebuilt, untimed, only when it fills up.
        let mut v = shard(kind);
        let mut next = 0u64;
        g.bench_function(kind.name(), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                let mut done = 0u64;
                while done < iters {
                    if next + 1 >= CAP {
                        v = shard(kind);
                        next = 0;
                    }
                    let chunk = (iters - done).min(CAP - 1 - next);
                    let start = Instant::now();
                    for i in next..next + chunk {
                        let p = PacketMeta {
                            protocol: proto::TCP,
                            src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + (i >> 16) as u32)),
                            sport: i as u16,
                            dst: svc_addr(),
                            dport: 80,
                            tcp_flags: SYN,
                            fwmark: None,
                            len: 64,
                        };
                        let r = v.in_packet(&p, 0);
                        debug_assert!(matches!(r, InVerdict::Forward { new: true, .. }));
                        black_box(r);
                    }
                    spent += start.elapsed();
                    next += chunk;
                    done += chunk;
                }
                spent
            })
        });
    }
    g.finish();
}

fn svc_addr() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80))
}

criterion_group!(benches, lookups, schedule_insert);
criterion_main!(benches);
