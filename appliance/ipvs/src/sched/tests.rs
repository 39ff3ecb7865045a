//! The schedulers against the behaviour the LVS documentation and the kernel define.

use std::collections::HashMap as StdMap;
use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::*;
use crate::service::{Dest, DestConfig, DestId, Fwd, SchedFlags, ServiceId};

struct Fixture {
    arena: Vec<Option<Dest>>,
    ids: Vec<DestId>,
    flags: SchedFlags,
}

impl Fixture {
    fn new(weights: &[u32]) -> Self {
        let arena: Vec<Option<Dest>> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let addr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10 + i as u8));
                Some(Dest::new(
                    DestConfig { weight: w, ..DestConfig::new(addr, 80, Fwd::Masq) },
                    ServiceId(0),
                ))
            })
            .collect();
        let ids = (0..weights.len() as u32).map(DestId).collect();
        Self { arena, ids, flags: SchedFlags::default() }
    }

    fn d(&mut self, i: usize) -> &mut Dest {
        self.arena[i].as_mut().unwrap()
    }

    fn ctx(&self, src: IpAddr, sport: u16, dst: IpAddr, now: Time) -> SchedCtx<'_> {
        SchedCtx { arena: &self.arena, ids: &self.ids, src, sport, dst, now, flags: self.flags }
    }

    fn sched(&self, kind: SchedulerKind) -> Scheduler {
        let mut s = Scheduler::new(kind, 251, 99);
        s.update(&self.ctx(client(0), 0, vip(), 0));
        s
    }

    fn pick(&self, s: &mut Scheduler, src: IpAddr) -> Option<usize> {
        s.schedule(&self.ctx(src, 1234, vip(), 0)).map(|d| d.0 as usize)
    }
}

fn client(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xc633_6400 + n)) // 198.51.100.0 + n
}

fn vip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 80))
}

#[test]
fn rr_cycles_and_skips_quiesced_and_overloaded() {
    let mut f = Fixture::new(&[1, 1, 1]);
    let mut s = f.sched(SchedulerKind::Rr);
    let seq: Vec<_> = (0..6).map(|_| f.pick(&mut s, client(0)).unwrap()).collect();
    assert_eq!(seq, [0, 1, 2, 0, 1, 2]);
    f.d(1).cfg.weight = 0;
    f.d(2).overloaded = true;
    let seq: Vec<_> = (0..3).map(|_| f.pick(&mut s, client(0)).unwrap()).collect();
    assert_eq!(seq, [0, 0, 0]);
    f.d(0).cfg.weight = 0;
    assert_eq!(f.pick(&mut s, client(0)), None);
}

#[test]
fn wrr_1_3_6_is_exact_in_every_window_and_interleaves() {
    let f = Fixture::new(&[1, 3, 6]);
    let mut s = f.sched(SchedulerKind::Wrr);
    let seq: Vec<usize> = (0..3000).map(|_| f.pick(&mut s, client(0)).unwrap()).collect();
    assert_eq!(&seq[..10], &[2, 2, 2, 1, 2, 1, 2, 0, 1, 2], "the kernel's order");
    for start in [0, 1, 7, 333, 1999] {
        let mut n = [0usize; 3];
        seq[start..start + 1000].iter().for_each(|&d| n[d] += 1);
        assert_eq!(n, [100, 300, 600], "window at {start}");
    }
    // Interleaved, not bursts: within a period the longest run is 3, and across the seam of two
    // periods (... B C | C C C ...) the kernel's own sequence has 4; a bursty scheduler would send 6.
    let longest = seq.chunk_by(|a, b| a == b).map(<[usize]>::len).max().unwrap();
    assert_eq!(longest, 4, "interleaved: longest run {longest}");
}

#[test]
fn wrr_follows_weight_changes_and_quiescing() {
    let mut f = Fixture::new(&[2, 2]);
    let mut s = f.sched(SchedulerKind::Wrr);
    f.d(0).cfg.weight = 0;
    s.update(&f.ctx(client(0), 0, vip(), 0));
    assert!((0..20).all(|_| f.pick(&mut s, client(0)) == Some(1)));
    f.d(1).cfg.weight = 0;
    s.update(&f.ctx(client(0), 0, vip(), 0));
    assert_eq!(f.pick(&mut s, client(0)), None);
}

#[test]
fn lc_and_wlc_compare_active_times_256_plus_inactive() {
    let mut f = Fixture::new(&[1, 1, 3]);
    f.d(0).active = 1; // overhead 256
    f.d(1).inactive = 255; // overhead 255
    f.d(2).active = 2; // overhead 512
    let mut lc = f.sched(SchedulerKind::Lc);
    assert_eq!(f.pick(&mut lc, client(0)), Some(1), "255 < 256 < 512");
    // wlc divides by weight: 256/1, 255/1, 512/3 = 170.7 -> the heavier server wins.
    let mut wlc = f.sched(SchedulerKind::Wlc);
    assert_eq!(f.pick(&mut wlc, client(0)), Some(2));
    f.d(2).overloaded = true;
    assert_eq!(f.pick(&mut wlc, client(0)), Some(1));
    // Ties go to the first in the list.
    let f = Fixture::new(&[1, 1]);
    assert_eq!(f.pick(&mut f.sched(SchedulerKind::Lc), client(0)), Some(0));
}

#[test]
fn sed_and_nq() {
    let mut f = Fixture::new(&[1, 4]);
    f.d(0).active = 0;
    f.d(1).active = 2;
    // sed: (0+1)/1 = 1 vs (2+1)/4 = 0.75 -> server 1, although server 0 is idle.
    assert_eq!(f.pick(&mut f.sched(SchedulerKind::Sed), client(0)), Some(1));
    // nq: an idle server first.
    assert_eq!(f.pick(&mut f.sched(SchedulerKind::Nq), client(0)), Some(0));
    f.d(0).active = 1;
    // None idle: as sed. (1+1)/1 = 2 vs 3/4.
    assert_eq!(f.pick(&mut f.sched(SchedulerKind::Nq), client(0)), Some(1));
}

#[test]
fn fo_and_ovf() {
    let mut f = Fixture::new(&[5, 10, 10]);
    assert_eq!(
        f.pick(&mut f.sched(SchedulerKind::Fo), client(0)),
        Some(1),
        "highest weight, first of equals"
    );
    f.d(1).overloaded = true;
    assert_eq!(f.pick(&mut f.sched(SchedulerKind::Fo), client(0)), Some(2));
    let mut f = Fixture::new(&[5, 10]);
    f.d(1).active = 10;
    assert_eq!(f.pick(&mut f.sched(SchedulerKind::Ovf), client(0)), Some(1), "active == weight still fits");
    f.d(1).active = 11;
    assert_eq!(f.pick(&mut f.sched(SchedulerKind::Ovf), client(0)), Some(0), "overflow to the next");
}

#[test]
fn sh_keeps_a_client_and_falls_back_only_when_asked() {
    let mut f = Fixture::new(&[1, 1, 1]);
    let s = f.sched(SchedulerKind::Sh);
    let mut s = s;
    let home: Vec<usize> = (0..200).map(|c| f.pick(&mut s, client(c)).unwrap()).collect();
    for c in 0..200 {
        assert_eq!(f.pick(&mut s, client(c)), Some(home[c as usize]), "same client, same server");
    }
    assert!((0..3).all(|d| home.contains(&d)), "spread over all servers");
    // The home of client 0 goes away (weight 0): no server without fallback...
    let gone = home[0];
    f.d(gone).cfg.weight = 0;
    assert_eq!(f.pick(&mut s, client(0)), None);
    // ...and another available one with sh-fallback; clients of other servers stay where they were.
    f.flags.fallback = true;
    let other = f.pick(&mut s, client(0)).unwrap();
    assert_ne!(other, gone);
    for c in 0..200 {
        if home[c as usize] != gone {
            assert_eq!(f.pick(&mut s, client(c)), Some(home[c as usize]));
        }
    }
}

#[test]
fn sh_weights_take_a_share_of_buckets() {
    let f = Fixture::new(&[1, 3]);
    let mut s = f.sched(SchedulerKind::Sh);
    let mut n = [0usize; 2];
    for c in 0..20_000 {
        n[f.pick(&mut s, client(c)).unwrap()] += 1;
    }
    let share = n[1] as f64 / 20_000.0;
    assert!((0.70..0.80).contains(&share), "weight 3 of 4 takes ~75 % of clients: {share}");
}

#[test]
fn sh_port_flag_spreads_one_client() {
    let mut f = Fixture::new(&[1, 1, 1, 1]);
    f.flags.port = true;
    let mut s = f.sched(SchedulerKind::Sh);
    let servers: std::collections::HashSet<_> =
        (0..64).map(|p| s.schedule(&f.ctx(client(1), 1000 + p, vip(), 0)).unwrap()).collect();
    assert!(servers.len() > 1, "with sh-port the source port spreads one client");
}

#[test]
fn dh_keeps_a_destination_address_on_one_server() {
    let mut f = Fixture::new(&[1, 1]);
    let mut s = f.sched(SchedulerKind::Dh);
    let target = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 200));
    let first = s.schedule(&f.ctx(client(1), 1, target, 0)).unwrap();
    for c in 0..50 {
        assert_eq!(s.schedule(&f.ctx(client(c), 9, target, 0)), Some(first), "any client, same server");
    }
    f.d(first.0 as usize).cfg.weight = 0;
    assert_eq!(s.schedule(&f.ctx(client(1), 1, target, 0)), None, "dh has no fallback");
}

#[test]
fn mh_moves_about_one_nth_when_a_server_leaves() {
    let n = 8;
    let mut f = Fixture::new(&vec![1; n]);
    let mut s = Scheduler::new(SchedulerKind::Mh, 65537, 7);
    s.update(&f.ctx(client(0), 0, vip(), 0));
    let keys = 50_000u32;
    let before: Vec<usize> = (0..keys).map(|c| f.pick(&mut s, client(c)).unwrap()).collect();
    let mut per = vec![0usize; n];
    before.iter().for_each(|&d| per[d] += 1);
    assert!(
        per.iter().all(|&c| (keys as usize / n) * 8 / 10 < c && c < (keys as usize / n) * 12 / 10),
        "{per:?}"
    );
    // Server 3 leaves the list.
    f.ids.retain(|d| d.0 != 3);
    s.update(&f.ctx(client(0), 0, vip(), 0));
    let moved = (0..keys).filter(|&c| f.pick(&mut s, client(c)) != Some(before[c as usize])).count();
    let its_own = per[3];
    assert!(moved >= its_own, "its own keys must move");
    assert!(
        (moved as f64) < its_own as f64 * 1.10,
        "at most ~1/N plus a margin: moved {moved}, owned {its_own}"
    );
}

#[test]
fn mh_quiesced_server_keeps_table_and_falls_back() {
    let mut f = Fixture::new(&[1, 1, 1]);
    f.flags.fallback = true;
    let mut s = Scheduler::new(SchedulerKind::Mh, 251, 7);
    s.update(&f.ctx(client(0), 0, vip(), 0));
    let before: Vec<usize> = (0..3000).map(|c| f.pick(&mut s, client(c)).unwrap()).collect();
    f.d(1).cfg.weight = 0; // last_weight stays 1: the table is not rebuilt
    s.update(&f.ctx(client(0), 0, vip(), 0));
    for c in 0..3000u32 {
        let now = f.pick(&mut s, client(c)).unwrap();
        if before[c as usize] == 1 {
            assert_ne!(now, 1);
        } else {
            assert_eq!(now, before[c as usize], "others untouched");
        }
    }
}

#[test]
fn lblc_keeps_destinations_and_expires_them() {
    let mut f = Fixture::new(&[1, 1]);
    let mut s = f.sched(SchedulerKind::Lblc);
    let t1 = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 201));
    let first = s.schedule(&f.ctx(client(1), 1, t1, 0)).unwrap();
    // Make the chosen one look busier: wlc would now pick the other, but the cache holds.
    f.d(first.0 as usize).inactive = 5;
    assert_eq!(s.schedule(&f.ctx(client(2), 1, t1, 1000)), Some(first));
    // Overloaded in lblc's sense (active > weight while the other is under half): reschedule.
    f.d(first.0 as usize).active = 3;
    let second = s.schedule(&f.ctx(client(3), 1, t1, 2000)).unwrap();
    assert_ne!(second, first);
    let Scheduler::Lblc(l) = &mut s else { unreachable!() };
    assert_eq!(l.entries(), 1);
    // Unused for a day: gone at the 30th check.
    let day = 24 * 3600 * 1000;
    for k in 0..31 {
        l.expire(day + 2000 + k * 60_000);
    }
    assert_eq!(l.entries(), 0);
}

#[test]
fn lblcr_grows_and_shrinks_its_set() {
    let mut f = Fixture::new(&[1, 1, 1]);
    let mut s = f.sched(SchedulerKind::Lblcr);
    let t = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 202));
    let a = s.schedule(&f.ctx(client(1), 1, t, 0)).unwrap();
    f.d(a.0 as usize).active = 5; // overloaded while others idle
    let b = s.schedule(&f.ctx(client(2), 1, t, 1000)).unwrap();
    assert_ne!(a, b);
    let Scheduler::Lblcr(l) = &s else { unreachable!() };
    assert_eq!(l.set_for(&t).unwrap(), &[a, b], "the set grew");
    // A day without change: the most loaded member (a) leaves the set.
    let day = 24 * 3600 * 1000;
    f.d(a.0 as usize).active = 0;
    f.d(b.0 as usize).inactive = 1;
    let _ = s.schedule(&f.ctx(client(3), 1, t, day + 2000));
    let Scheduler::Lblcr(l) = &s else { unreachable!() };
    assert_eq!(l.set_for(&t).unwrap().len(), 1);
}

#[test]
fn twos_prefers_the_less_loaded_of_two_weighted_draws() {
    let mut f = Fixture::new(&[1, 1]);
    f.d(0).active = 100;
    let mut s = f.sched(SchedulerKind::Twos);
    let mut n = [0usize; 2];
    for _ in 0..1000 {
        n[f.pick(&mut s, client(0)).unwrap()] += 1;
    }
    // The kernel draws r in [0, total + 1) and subtracts weights in list order, so with weights 1:1
    // the first server is drawn with p = 2/3. The loaded server 0 wins only when both draws land on
    // it: (2/3)^2 = 4/9 of the time.
    let p0 = n[0] as f64 / 1000.0;
    assert!((0.38..0.51).contains(&p0), "{n:?}");
    // With equal loads the first draw stands: server 0 takes 2/3.
    f.d(0).active = 0;
    let mut n = [0usize; 2];
    for _ in 0..3000 {
        n[f.pick(&mut s, client(0)).unwrap()] += 1;
    }
    assert!((0.62..0.71).contains(&(n[0] as f64 / 3000.0)), "{n:?}");
}

proptest! {
    /// Whatever the weights, loads and flags: no scheduler ever picks a weight-0 or overloaded server.
    #[test]
    fn never_weight_zero_or_overloaded(
        weights in proptest::collection::vec(0u32..5, 1..8),
        over in proptest::collection::vec(any::<bool>(), 8),
        loads in proptest::collection::vec((0u32..20, 0u32..20), 8),
        fallback in any::<bool>(),
        clients in proptest::collection::vec(any::<u32>(), 1..20),
    ) {
        let mut f = Fixture::new(&weights);
        for i in 0..weights.len() {
            f.d(i).overloaded = over[i];
            f.d(i).active = loads[i].0;
            f.d(i).inactive = loads[i].1;
        }
        for kind in SchedulerKind::ALL {
            f.flags = SchedFlags { fallback: fallback && matches!(kind, SchedulerKind::Sh | SchedulerKind::Mh), ..Default::default() };
            let mut s = Scheduler::new(kind, 251, 3);
            s.update(&f.ctx(client(0), 0, vip(), 0));
            for &c in &clients {
                if let Some(d) = s.schedule(&f.ctx(IpAddr::V4(Ipv4Addr::from(c)), 1, vip(), 0)) {
                    let d = f.arena[d.0 as usize].as_ref().unwrap();
                    prop_assert!(d.weight() > 0 && !d.overloaded, "{} picked weight {} overloaded {}", kind.name(), d.weight(), d.overloaded);
                }
            }
        }
    }
}

#[test]
fn names_round_trip() {
    let by_name: StdMap<&str, SchedulerKind> = SchedulerKind::ALL.iter().map(|k| (k.name(), *k)).collect();
    assert_eq!(by_name.len(), 14);
    for (n, k) in by_name {
        assert_eq!(SchedulerKind::from_name(n), Some(k));
    }
    assert_eq!(SchedulerKind::from_name("random"), None);
}
