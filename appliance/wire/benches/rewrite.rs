//! Nanoseconds per packet for parse + rewrite in each forwarding mode, on a 64-byte TCP frame (the
//! size line-rate figures are quoted at). `copy` is the cost of resetting the packet alone, which the
//! TUN and DR rows include; NAT rows rewrite in place, alternating directions so the packet returns
//! to its original state every two iterations.

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{Criterion, criterion_group, criterion_main};
use rvs_wire::ipv4;
use rvs_wire::rewrite::{self, Egress, NatMapping, TtlPolicy, TunOuter, Verdict, parse_ip};
use rvs_wire::tcp::TcpSegment;
use rvs_wire::{PacketBuffer, VecBuffer};

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
const RIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

/// A 64-byte Ethernet frame (60 + FCS): Ethernet + IPv4 + TCP + 6 bytes of payload.
fn frame() -> Vec<u8> {
    let mut f = vec![0u8; 60];
    rvs_wire::ethernet::write_header(&mut f, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], 0x0800).unwrap();
    ipv4::write_header(&mut f[14..], CLIENT, VIP, 6, 26, 64, 0, 1, true).unwrap();
    let t = &mut f[34..];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&80u16.to_be_bytes());
    t[12] = 0x50;
    t[13] = 0x10;
    TcpSegment::new_unchecked(t).fill_checksum_v4(CLIENT, VIP);
    f
}

fn bench(c: &mut Criterion) {
    let f = frame();
    let eg = Egress {
        src_mac: [2, 0, 0, 0, 0, 3],
        dst_mac: [2, 0, 0, 0, 0, 4],
        mtu: 1500,
        ttl: TtlPolicy::Preserve,
        offload: Default::default(),
    };
    let m = NatMapping { virt: (VIP.into(), 80), real: (RIP.into(), 8080) };
    let back = NatMapping { virt: m.real, real: m.virt };
    let mut g = c.benchmark_group("per_packet_64B");

    let mut b = VecBuffer::new(&f);
    g.bench_function("parse", |x| x.iter(|| black_box(parse_ip(black_box(&f)))));
    g.bench_function("copy", |x| x.iter(|| b.refill(black_box(&f))));
    // The packet's state outlives each criterion sample, so the direction flag must too.
    let mut flip = false;
    g.bench_function("nat", |x| {
        x.iter(|| {
            flip = !flip;
            let r = rewrite::nat_in(&mut b, &eg, if flip { &m } else { &back });
            assert_eq!(r, Ok(Verdict::Forward));
        })
    });
    let dec = Egress { ttl: TtlPolicy::Decrement, ..eg };
    g.bench_function("nat_ttl_decrement", |x| {
        x.iter(|| {
            b.refill(&f);
            black_box(rewrite::nat_in(&mut b, &dec, &m))
        })
    });
    g.bench_function("dr", |x| x.iter(|| black_box(rewrite::dr(&mut b, &eg))));
    let outer = TunOuter {
        src: Ipv4Addr::new(203, 0, 113, 1).into(),
        dst: RIP.into(),
        ttl: 64,
        ident: 0,
        encap: Default::default(),
    };
    g.bench_function("tun", |x| {
        x.iter(|| {
            b.refill(&f);
            black_box(rewrite::tun(&mut b, &dec, &outer))
        })
    });
    g.finish();
    let _ = b.len();
}

criterion_group!(benches, bench);
criterion_main!(benches);
