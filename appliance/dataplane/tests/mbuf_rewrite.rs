//! The rewrites of rvs-wire on real DPDK mbufs give exactly the bytes they give on a Vec, and their
//! refusals leave the mbuf as it was (DPDK in the loop, without hugepages).

use std::net::Ipv4Addr;

use rvs_dataplane::MbufPacket;
use rvs_dpdk::{Eal, EalConfig, Mbuf, Mempool, MempoolConfig};
use rvs_wire::rewrite::{self, Egress, NatMapping, Offload, TtlPolicy, TunOuter, Verdict};
use rvs_wire::tcp::TcpSegment;
use rvs_wire::{PacketBuffer, VecBuffer, ipv4};

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
const RIP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);

fn frame(payload: usize, vlan: bool) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 20 + payload];
    rvs_wire::ethernet::write_header(&mut f, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2], 0x0800).unwrap();
    ipv4::write_header(&mut f[14..], CLIENT, VIP, 6, 20 + payload, 64, 0x10, 9, true).unwrap();
    let t = &mut f[34..];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&80u16.to_be_bytes());
    t[12] = 0x50;
    t[13] = 0x18;
    for (i, b) in t[20..].iter_mut().enumerate() {
        *b = i as u8;
    }
    TcpSegment::new_unchecked(t).fill_checksum_v4(CLIENT, VIP);
    if vlan {
        f.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    }
    f
}

fn mbuf_with(pool: &Mempool, data: &[u8]) -> Mbuf {
    let mut m = pool.alloc().expect("mbuf");
    m.append(data.len() as u16).expect("room").copy_from_slice(data);
    m
}

#[test]
fn rewrites_on_mbufs_equal_rewrites_on_vecs() {
    let cfg = EalConfig {
        worker_lcores: vec![1],
        memory_mib: Some(128),
        no_huge: true,
        file_prefix: Some(format!("rvs-dp-test-{}", std::process::id())),
        ..EalConfig::default()
    };
    let _eal = Eal::init(&cfg.to_args()).expect("EAL");
    let pool = Mempool::new(&MempoolConfig {
        name: "rw".into(),
        mbufs: 255,
        cache_size: 0,
        data_room_bytes: 2176,
        socket: None,
    })
    .expect("pool");

    let eg = Egress {
        src_mac: [2, 0, 0, 0, 0, 3],
        dst_mac: [2, 0, 0, 0, 0, 4],
        mtu: 1500,
        ttl: TtlPolicy::Decrement,
        offload: Offload::NONE,
    };
    let m = NatMapping { virt: (VIP.into(), 80), real: (RIP.into(), 8080) };
    let outer = TunOuter {
        src: Ipv4Addr::new(203, 0, 113, 1).into(),
        dst: RIP.into(),
        ttl: 64,
        ident: 3,
        encap: Default::default(),
    };

    for (vlan, payload) in [(false, 0), (true, 6), (false, 1400), (true, 1446)] {
        let f = frame(payload, vlan);
        let run = |buf: &mut dyn PacketBuffer, which: usize| -> rvs_wire::Result<Verdict> {
            match which {
                0 => rewrite::nat_in(buf, &eg, &m),
                1 => rewrite::dr(buf, &eg),
                _ => rewrite::tun(buf, &eg, &outer),
            }
        };
        for which in 0..3 {
            let mut v = VecBuffer::new(&f);
            let want = run(&mut v, which);
            let mut mb = mbuf_with(&pool, &f);
            let got = run(&mut MbufPacket(&mut mb), which);
            assert_eq!(got, want, "verdict, mode {which}, vlan {vlan}, payload {payload}");
            assert_eq!(mb.data(), v.bytes(), "bytes, mode {which}, vlan {vlan}, payload {payload}");
            if want != Ok(Verdict::Forward) {
                assert_eq!(mb.data(), &f[..], "a refusal leaves the mbuf as it was");
            }
        }
    }
    // 1486 bytes of IP + 20 of outer header exceed the 1500-byte MTU, and DF is set.
    let f = frame(1446, false);
    let mut mb = mbuf_with(&pool, &f);
    assert_eq!(rewrite::tun(&mut MbufPacket(&mut mb), &eg, &outer), Ok(Verdict::FragNeeded { mtu: 1480 }));
    drop(mb);
    assert_eq!(pool.in_use(), 0);
}
