//! The director pipeline's per-packet cost on one core, without I/O: frames of established flows
//! (`flows` of them, visited in a scattered order so the connection table is not cache-resident)
//! through the stages in bursts of 32, as the worker runs them — parse, the burst's lookups, IPVS,
//! NAT / DR / TUN rewrite with route and neighbour — and one by one through `Pipeline::handle`; the
//! new-connection rate (each flow's SYN through the stages: schedule, insert, rewrite); and the cost
//! of a SYN-flood packet while stateless_syn acts (random source, no entry). Each packet is first
//! copied into its buffer (a 60-byte memcpy, as a NIC would have written it), which is included in
//! the figures.
//!
//! `cargo run --release -p rvs-dataplane --example pipeline_rate -- [flows...]`
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rvs_dataplane::net::{Interface, Network, Route};
use rvs_dataplane::{Action, Meta, Pipeline, WorkerCounters};
use rvs_ipvs::{DestConfig, Fwd, Ipvs, Op, SchedulerKind, ServiceConfig, ServiceKey, TunnelType};
use rvs_wire::repr::{FrameRepr, Ipv4Repr, TcpRepr};
use rvs_wire::{PacketBuffer, VecBuffer};

// As in rvsd: the connection table in huge pages.
#[global_allocator]
static ALLOC: rvs_dpdk::HugeAlloc = rvs_dpdk::HugeAlloc;

const FRONT: [u8; 6] = [2, 0, 0, 0, 0, 0xf0];
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);

/// A 60-byte TCP frame to the VIP (padded as on the wire); `fill` writes each flow's client in.
fn frame(flags: u8) -> Vec<u8> {
    let tcp = TcpRepr { seq: 0, window: 0, ..TcpRepr::new(0, 80, flags) };
    let mut f =
        FrameRepr::tcp([2, 0, 0, 0, 0, 1], FRONT, Ipv4Repr::new(Ipv4Addr::new(198, 51, 100, 1), VIP), tcp)
            .emit();
    f.resize(60, 0);
    f
}

/// Flow i's client endpoint, distinct for every i.
fn client(i: u32) -> ([u8; 4], u16) {
    ((0xc633_0000u32.wrapping_add(i >> 4)).to_be_bytes(), 1024 + (i & 15) as u16)
}

fn pipeline(fwd: Fwd, flows: usize) -> Pipeline {
    let iface = |mac, addr: [u8; 4]| Interface {
        name: "p".into(),
        mac,
        addr: addr.into(),
        prefix_len: 24,
        mtu: 1500,
        addr6: None,
    };
    let net = Network::new(
        vec![iface(FRONT, [192, 0, 2, 2]), iface([2, 0, 0, 0, 0, 0xb0], [203, 0, 113, 1])],
        &[Route { prefix: Ipv4Addr::UNSPECIFIED, prefix_len: 0, gateway: [192, 0, 2, 1].into() }],
        vec![],
    )
    .expect("net");
    // Room for a quarter more than the flows: the defences act when an eighth of the table is left
    // (amemthresh), and with no room to spare the last eighth of the SYNs went statelessly (no
    // entry), making the new-connection figure a mix.
    let shard = Ipvs::new(flows + flows / 4 + 1024, 1024, 1);
    let mut p = Pipeline::new(Arc::new(net), shard, Arc::new(WorkerCounters::default()));
    let key = ServiceKey::Addr { protocol: 6, addr: VIP.into(), port: 80 };
    let mut ops = vec![Op::AddService(ServiceConfig::new(key, SchedulerKind::Wlc))];
    for i in 0..8u8 {
        let rs = Ipv4Addr::new(203, 0, 113, 10 + i);
        ops.push(Op::AddDest(key, DestConfig::new(rs.into(), 80, fwd)));
        p.neigh.learn(rs, [2, 0, 0, 0, 1, i], 1, true, 0);
    }
    p.neigh.learn(Ipv4Addr::new(192, 0, 2, 1), [2, 0, 0, 0, 0, 1], 0, true, 0);
    assert_eq!(p.apply(&ops), 0);
    p
}

/// TSC ticks per nanosecond, measured against the monotonic clock.
fn tsc_per_ns() -> f64 {
    let (t0, c0) = (Instant::now(), rvs_dpdk::rdtsc());
    std::thread::sleep(Duration::from_millis(200));
    (rvs_dpdk::rdtsc() - c0) as f64 / t0.elapsed().as_nanos() as f64
}

/// Copies `template` into `buf` as flow `i`'s packet.
fn fill(buf: &mut VecBuffer, template: &[u8], i: u32) {
    buf.refill(template);
    let (a, sp) = client(i);
    let b = buf.bytes_mut();
    b[26..30].copy_from_slice(&a);
    b[34..36].copy_from_slice(&sp.to_be_bytes());
}

/// `n` packets made from `template` (flow `flow_of(k)`'s for the k-th) in bursts of 32 through the
/// stages, as the worker runs them: cycles per packet in all, and in copy-in, parse, lookup, ipvs
/// and rewrite (the clock read between stages costs a few cycles of its own, counted in the next
/// stage). Every packet must be forwarded.
fn bursts(
    p: &mut Pipeline,
    template: &[u8],
    n: u64,
    now: u64,
    flow_of: impl Fn(u64) -> u32,
) -> (f64, [f64; 5]) {
    let mut burst: Vec<VecBuffer> = (0..32).map(|_| VecBuffer::new(template)).collect();
    let mut metas = [Meta::default(); 32];
    let mut forwarded = 0u64;
    let mut stage = [0u64; 5];
    let c0 = rvs_dpdk::rdtsc();
    for b in 0..n / 32 {
        let s0 = rvs_dpdk::rdtsc();
        for (j, buf) in burst.iter_mut().enumerate() {
            fill(buf, template, flow_of(b * 32 + j as u64));
        }
        let s1 = rvs_dpdk::rdtsc();
        let k = p.parse_stage(0, burst.iter().map(|b| b.bytes()), &mut metas);
        let s2 = rvs_dpdk::rdtsc();
        p.lookup_stage(&mut metas[..k]);
        let s3 = rvs_dpdk::rdtsc();
        for (buf, meta) in burst.iter_mut().zip(metas.iter_mut()) {
            p.ipvs_stage(0, buf, meta, now);
        }
        let s4 = rvs_dpdk::rdtsc();
        for (buf, meta) in burst.iter_mut().zip(&metas) {
            if let Action::Tx(_) = p.rewrite_stage(0, buf, meta, now) {
                forwarded += 1;
            }
        }
        let s5 = rvs_dpdk::rdtsc();
        for (acc, (a, z)) in stage.iter_mut().zip([(s0, s1), (s1, s2), (s2, s3), (s3, s4), (s4, s5)]) {
            *acc += z - a;
        }
    }
    let packets = (n / 32 * 32) as f64;
    assert_eq!(forwarded as f64, packets, "every packet is forwarded");
    ((rvs_dpdk::rdtsc() - c0) as f64 / packets, stage.map(|c| c as f64 / packets))
}

/// The same flows in a table on huge pages and in one on 4 KiB pages, measured in alternation (ten
/// rounds each) so that the machine's drift hits both alike: the median cycles per packet of each.
fn compare_pages(fwd: Fwd, name: &str, flows: usize) {
    let syn = frame(0x02);
    let mut tables = [true, false].map(|huge| {
        rvs_dpdk::huge::set_advise(huge);
        let mut p = pipeline(fwd, flows);
        let mut buf = VecBuffer::new(&syn);
        for i in 0..flows as u32 {
            fill(&mut buf, &syn, i);
            p.handle(0, &mut buf, 1);
        }
        (huge, p, Vec::new())
    });
    rvs_dpdk::huge::set_advise(true);
    let n = 2_000_000u64.max(flows as u64);
    let ack = frame(0x10);
    // A stride coprime to `flows` visits every flow in a scattered order.
    let flow_of = |k: u64| ((k * 7_919) % flows as u64) as u32;
    for _ in 0..10 {
        for (_, p, runs) in &mut tables {
            runs.push(bursts(p, &ack, n, 2, flow_of));
        }
    }
    for (huge, _, runs) in &mut tables {
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (c, s) = runs[runs.len() / 2];
        let pages = if *huge { "2M" } else { "4K" };
        println!(
            "{name:<5} {flows:>9} {pages} pages: {c:>5.0} cycles/packet (median of 10)   {:.0}/{:.0}/{:.0}/{:.0}/{:.0}",
            s[0], s[1], s[2], s[3], s[4]
        );
    }
}

fn main() {
    // Arguments: flow counts, and optionally the modes to run (nat, dr, tun); `pages` compares the
    // table on huge pages with one on 4 KiB pages instead.
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let modes: Vec<String> = std::env::args().skip(1).filter(|a| a.parse::<usize>().is_err()).collect();
    let sizes = if args.is_empty() { vec![1_000, 100_000, 1_000_000] } else { args };
    let pages = modes.iter().any(|m| m == "pages");
    let ghz = tsc_per_ns();
    println!(
        "TSC {ghz:.2} GHz; 60-byte TCP frames; per packet: copy-in, parse, IPVS, rewrite, route, neighbour"
    );
    println!(
        "{:<5} {:>9} {:>10} {:>9} {:>12} {:>12} {:>13} {:>14}   copy/parse/lookup/ipvs/rewrite (established, new)",
        "mode", "flows", "Mpps/core", "cyc/pkt", "(1 by 1)", "new conn/s", "cyc/new conn", "cyc/flood SYN"
    );
    for (name, fwd) in [("nat", Fwd::Masq), ("dr", Fwd::Route), ("tun", Fwd::Tunnel(TunnelType::Ipip))] {
        if modes.iter().any(|m| m != "pages") && !modes.iter().any(|m| m == name) {
            continue;
        }
        for &flows in &sizes {
            if pages {
                compare_pages(fwd, name, flows);
                continue;
            }
            let mut p = pipeline(fwd, flows);
            let syn = frame(0x02);
            let mut buf = VecBuffer::new(&syn);
            // New connections: every flow's SYN, in bursts through the stages (the few left over
            // from the last whole burst one by one, untimed).
            let in_bursts = flows as u64 / 32 * 32;
            let t = Instant::now();
            let (new_cycles, new_stage) = bursts(&mut p, &syn, in_bursts, 1, |k| k as u32);
            let new_ns = t.elapsed().as_nanos() as f64 / in_bursts as f64;
            for i in in_bursts as u32..flows as u32 {
                fill(&mut buf, &syn, i);
                let act = p.handle(0, &mut buf, 1);
                assert!(matches!(act, Action::Tx(1)), "SYN {i}: {act:?}");
            }
            let ack = frame(0x10);
            let n = 4_000_000u64.max(flows as u64 * 2);
            // A stride coprime to `flows` visits every flow in a scattered order.
            let stride = 7_919u64;
            let flow_of = |k: u64| ((k * stride) % flows as u64) as u32;
            // One packet at a time, as rvs did before the warm stage...
            let mut forwarded = 0u64;
            let c0 = rvs_dpdk::rdtsc();
            for k in 0..n {
                fill(&mut buf, &ack, flow_of(k));
                if let Action::Tx(_) = p.handle(0, &mut buf, 2) {
                    forwarded += 1;
                }
            }
            let single = (rvs_dpdk::rdtsc() - c0) as f64 / n as f64;
            assert_eq!(forwarded, n, "every packet of an established flow is forwarded");
            // ...and in bursts of 32 through the stages, as the worker runs them.
            let t = Instant::now();
            let (cycles, stage) = bursts(&mut p, &ack, n, 2, flow_of);
            let ns = t.elapsed().as_nanos() as f64 / (n / 32 * 32) as f64;
            // A SYN flood's packets while stateless_syn acts: random sources, no entry made.
            p.ipvs.sysctl.stateless_syn = rvs_ipvs::Mode::ALWAYS;
            let flood = 1_000_000u64;
            let (flood_cycles, _) = bursts(&mut p, &syn, flood, 3, |k| {
                0x4000_0000 + (k as u32).wrapping_mul(2_654_435_761) % 0x3fff_ffff
            });
            println!(
                "{name:<5} {flows:>9} {:>10.2} {:>9.0} {:>12.0} {:>12.0} {:>13.0} {:>14.0}   {:.0}/{:.0}/{:.0}/{:.0}/{:.0}   {:.0}/{:.0}/{:.0}/{:.0}/{:.0}",
                1e3 / ns,
                cycles,
                single,
                1e9 / new_ns,
                new_cycles,
                flood_cycles,
                stage[0],
                stage[1],
                stage[2],
                stage[3],
                stage[4],
                new_stage[0],
                new_stage[1],
                new_stage[2],
                new_stage[3],
                new_stage[4],
            );
        }
    }
}
