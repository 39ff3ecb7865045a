//! New-connection rate of one shard: SYNs from distinct clients scheduled and inserted, timed after
//! the table is built and touched. `cargo run --release -p rvs-ipvs --example syn_rate -- [sched] [n]`
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use rvs_ipvs::state::tcp_flags::SYN;
use rvs_ipvs::{DestConfig, Fwd, Ipvs, PacketMeta, SchedulerKind, ServiceConfig, ServiceKey, proto};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).and_then(|s| SchedulerKind::from_name(s)).unwrap_or(SchedulerKind::Rr);
    let n: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1_500_000);
    let svc =
        ServiceKey::Addr { protocol: proto::TCP, addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80)), port: 80 };
    let mut v = Ipvs::new(n as usize + 16, 16, 7);
    v.add_service(ServiceConfig::new(svc, kind)).unwrap();
    for i in 0..10u8 {
        let mut d = DestConfig::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10 + i)), 8080, Fwd::Masq);
        d.weight = u32::from(i % 3) + 1;
        v.add_dest(&svc, d).unwrap();
    }
    let start = Instant::now();
    for i in 0..n {
        let p = PacketMeta {
            protocol: proto::TCP,
            src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + (i >> 16) as u32)),
            sport: i as u16,
            dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80)),
            dport: 80,
            tcp_flags: SYN,
            fwmark: None,
            len: 64,
        };
        std::hint::black_box(v.in_packet(&p, 0));
    }
    let e = start.elapsed();
    println!(
        "{} {} SYNs: {:.0} ns each, {:.2} M/s",
        kind.name(),
        n,
        e.as_nanos() as f64 / n as f64,
        n as f64 / e.as_secs_f64() / 1e6
    );
}
