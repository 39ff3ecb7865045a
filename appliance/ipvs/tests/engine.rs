//! IPVS semantics through the engine's packet API, with simulated time.

use std::net::IpAddr;

use rvs_ipvs::conn::WarmTuple;
use rvs_ipvs::state::tcp_flags::{ACK, FIN, RST, SYN};
use rvs_ipvs::{
    DestConfig, DropReason, Fwd, InVerdict, Ipvs, Mode, OutVerdict, PacketMeta, Persistence, SchedulerKind,
    ServiceConfig, ServiceError, ServiceKey, TcpState, TunnelType, proto,
};

const SEC: u64 = 1000;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp_svc(port: u16) -> ServiceKey {
    ServiceKey::Addr { protocol: proto::TCP, addr: ip("192.0.2.80"), port }
}

fn pkt(proto_: u8, src: &str, sport: u16, dst: &str, dport: u16, flags: u8) -> PacketMeta {
    PacketMeta {
        protocol: proto_,
        src: ip(src),
        sport,
        dst: ip(dst),
        dport,
        tcp_flags: flags,
        fwmark: None,
        len: 100,
    }
}

fn syn(client: &str, cport: u16) -> PacketMeta {
    pkt(proto::TCP, client, cport, "192.0.2.80", 80, SYN)
}

fn seg(client: &str, cport: u16, flags: u8) -> PacketMeta {
    pkt(proto::TCP, client, cport, "192.0.2.80", 80, flags)
}

/// A reply from real server `rs`:`rport` to the client.
fn reply(rs: &str, rport: u16, client: &str, cport: u16, flags: u8) -> PacketMeta {
    pkt(proto::TCP, rs, rport, client, cport, flags)
}

fn dest_of(v: InVerdict) -> IpAddr {
    match v {
        InVerdict::Forward { daddr, .. } => daddr,
        other => panic!("not forwarded: {other:?}"),
    }
}

/// A service with servers .10, .11, ... (port 8080 for NAT).
fn setup(sched: SchedulerKind, fwd: Fwd, n: u8) -> Ipvs {
    let mut v = Ipvs::new(1000, 100, 1);
    v.add_service(ServiceConfig::new(tcp_svc(80), sched)).unwrap();
    for i in 0..n {
        v.add_dest(&tcp_svc(80), DestConfig::new(ip(&format!("203.0.113.{}", 10 + i)), 8080, fwd)).unwrap();
    }
    v
}

fn counts(v: &Ipvs) -> Vec<(u32, u32)> {
    v.services().flat_map(|(_, _, _, ds)| ds.into_iter().map(|(_, d)| (d.active, d.inactive))).collect()
}

fn state_of(v: &Ipvs, cport: u16) -> TcpState {
    let c = v.connections().find(|c| c.cport == cport && !c.is_template()).expect("connection");
    TcpState::from_u8(c.state)
}

#[test]
fn nat_connection_lifecycle_counters_and_expiry() {
    let mut v = setup(SchedulerKind::Rr, Fwd::Masq, 1);
    let first = v.in_packet(&syn("198.51.100.7", 40000), 0);
    let InVerdict::Forward { daddr, dport, fwd, new, .. } = first else { panic!("{first:?}") };
    assert_eq!((daddr, dport, fwd, new), (ip("203.0.113.10"), 8080, Fwd::Masq, true));
    assert_eq!(state_of(&v, 40000), TcpState::SynRecv);
    assert_eq!(counts(&v), [(1, 0)], "SYN_RECV counts as active (kernel tcp_state_active_table)");

    // The server's SYN-ACK comes back through the director (NAT): found by the reply tuple.
    let r = v.out_packet(&reply("203.0.113.10", 8080, "198.51.100.7", 40000, SYN | ACK), 10);
    assert!(matches!(r, OutVerdict::Reply { vaddr, vport: 80, .. } if vaddr == ip("192.0.2.80")));
    assert!(matches!(
        v.in_packet(&seg("198.51.100.7", 40000, ACK), 20),
        InVerdict::Forward { new: false, .. }
    ));
    assert_eq!(state_of(&v, 40000), TcpState::Established);
    assert_eq!(counts(&v), [(1, 0)]);

    // Close: client FIN, server ACK+FIN, client ACK -> TIME_WAIT, inactive.
    let _ = v.in_packet(&seg("198.51.100.7", 40000, FIN | ACK), 30);
    let _ = v.out_packet(&reply("203.0.113.10", 8080, "198.51.100.7", 40000, ACK), 40);
    let _ = v.out_packet(&reply("203.0.113.10", 8080, "198.51.100.7", 40000, FIN | ACK), 50);
    let _ = v.in_packet(&seg("198.51.100.7", 40000, ACK), 60);
    assert_eq!(state_of(&v, 40000), TcpState::TimeWait);
    assert_eq!(counts(&v), [(0, 1)]);

    // TIME_WAIT lasts 120 s.
    v.expire(100 * SEC, 1000);
    assert_eq!(v.occupancy().0, 1);
    v.expire(121 * SEC, 1000);
    assert_eq!(v.occupancy().0, 0);
    assert_eq!(counts(&v), [(0, 0)]);
    let stats = v.services().next().unwrap().2;
    assert_eq!((stats.conns, stats.in_pkts, stats.out_pkts), (1, 4, 3));
}

#[test]
fn dr_uses_the_input_only_table_and_never_sees_replies() {
    let mut v = setup(SchedulerKind::Rr, Fwd::Route, 1);
    let InVerdict::Forward { dport, .. } = v.in_packet(&syn("198.51.100.7", 1), 0) else { panic!() };
    assert_eq!(dport, 80, "DR forces the real port to the virtual port");
    let _ = v.in_packet(&seg("198.51.100.7", 1, ACK), 1);
    assert_eq!(state_of(&v, 1), TcpState::Established);
    let _ = v.in_packet(&seg("198.51.100.7", 1, FIN | ACK), 2);
    assert_eq!(state_of(&v, 1), TcpState::FinWait);
    assert_eq!(v.out_packet(&reply("203.0.113.10", 80, "198.51.100.7", 1, ACK), 3), OutVerdict::NotOurs);
}

#[test]
fn udp_is_inactive_and_uses_the_udp_timeout() {
    let mut v = Ipvs::new(100, 10, 1);
    let k = ServiceKey::Addr { protocol: proto::UDP, addr: ip("192.0.2.53"), port: 53 };
    v.add_service(ServiceConfig::new(k, SchedulerKind::Wlc)).unwrap();
    v.add_dest(&k, DestConfig::new(ip("203.0.113.31"), 53, Fwd::Tunnel(Default::default()))).unwrap();
    let q = pkt(proto::UDP, "198.51.100.7", 5353, "192.0.2.53", 53, 0);
    assert!(matches!(v.in_packet(&q, 0), InVerdict::Forward { new: true, .. }));
    assert!(matches!(v.in_packet(&q, SEC), InVerdict::Forward { new: false, .. }));
    assert_eq!(counts(&v), [(0, 1)]);
    let c = v.connections().next().unwrap();
    assert_eq!(c.expires, 301 * SEC);
    v.timeouts.set(0, 0, 10);
    let _ = v.in_packet(&q, 2 * SEC);
    v.expire(13 * SEC, 100);
    assert_eq!(v.occupancy().0, 0, "--set udp 10 applies to the next refresh");
}

#[test]
fn non_syn_without_connection_and_foreign_traffic() {
    let mut v = setup(SchedulerKind::Rr, Fwd::Masq, 1);
    assert_eq!(v.in_packet(&seg("198.51.100.7", 5, ACK), 0), InVerdict::Drop(DropReason::NotSyn));
    assert_eq!(v.in_packet(&seg("198.51.100.7", 5, SYN | RST), 0), InVerdict::Drop(DropReason::NotSyn));
    assert_eq!(v.drops.not_syn, 2);
    assert_eq!(
        v.in_packet(&pkt(proto::TCP, "198.51.100.7", 5, "192.0.2.99", 80, SYN), 0),
        InVerdict::NotOurs
    );
    assert_eq!(v.in_packet(&pkt(proto::UDP, "198.51.100.7", 5, "192.0.2.80", 80, 0), 0), InVerdict::NotOurs);
    v.sysctl.sloppy_tcp = true;
    assert!(matches!(v.in_packet(&seg("198.51.100.7", 5, ACK), 0), InVerdict::Forward { new: true, .. }));
}

#[test]
fn weight_zero_quiesces_new_connections_only() {
    let mut v = setup(SchedulerKind::Rr, Fwd::Masq, 2);
    let a = dest_of(v.in_packet(&syn("198.51.100.1", 1), 0));
    let mut cfg = DestConfig::new(a, 8080, Fwd::Masq);
    cfg.weight = 0;
    v.edit_dest(&tcp_svc(80), cfg).unwrap();
    for c in 2..20 {
        assert_ne!(
            dest_of(v.in_packet(&syn("198.51.100.1", c), 0)),
            a,
            "no new connections to a quiesced server"
        );
    }
    assert_eq!(dest_of(v.in_packet(&seg("198.51.100.1", 1, ACK), 1)), a, "the established one continues");
}

#[test]
fn deleted_server_expire_nodest_conn_0_and_1() {
    for expire_nodest in [false, true] {
        let mut v = setup(SchedulerKind::Rr, Fwd::Masq, 2);
        v.sysctl.expire_nodest_conn = expire_nodest;
        let a = dest_of(v.in_packet(&syn("198.51.100.1", 1), 0));
        let _ = v.in_packet(&seg("198.51.100.1", 1, ACK), 1);
        v.del_dest(&tcp_svc(80), a, 8080).unwrap();
        let next = v.in_packet(&seg("198.51.100.1", 1, ACK), 2);
        if expire_nodest {
            // Expired at once; this ACK cannot open a new connection (not a SYN).
            assert_eq!(next, InVerdict::Drop(DropReason::NotSyn));
            assert!(v.connections().all(|c| c.cport != 1));
        } else {
            assert_eq!(next, InVerdict::Drop(DropReason::DestUnavailable));
            assert_eq!(v.drops.dest_unavailable, 1);
            assert_eq!(v.occupancy().0, 1, "kept until it expires");
            v.expire(1000 * SEC, 100);
            assert_eq!(v.occupancy().0, 0);
        }
        assert_ne!(dest_of(v.in_packet(&syn("198.51.100.1", 9), 3000 * SEC)), a);
    }
}

#[test]
fn a_removed_server_comes_back_from_the_trash() {
    let mut v = setup(SchedulerKind::Rr, Fwd::Masq, 1);
    let a = dest_of(v.in_packet(&syn("198.51.100.1", 1), 0));
    let _ = v.in_packet(&seg("198.51.100.1", 1, ACK), 1);
    v.del_dest(&tcp_svc(80), a, 8080).unwrap();
    v.add_dest(&tcp_svc(80), DestConfig::new(a, 8080, Fwd::Masq)).unwrap();
    assert_eq!(dest_of(v.in_packet(&seg("198.51.100.1", 1, ACK), 2)), a, "its connection lives again");
    assert_eq!(counts(&v), [(1, 0)], "with its counters");
}

/// `-Sn; -C; -R` (a reload) re-creates the service and its servers: the servers come back from the
/// trash, found by the service's address/port/protocol as IPVS finds them, and established
/// connections go on (they were dropped as destination_unavailable when the trash was keyed by the
/// service's internal id).
#[test]
fn a_cleared_and_restored_service_keeps_its_connections() {
    let mut v = setup(SchedulerKind::Rr, Fwd::Masq, 2);
    let a = dest_of(v.in_packet(&syn("198.51.100.1", 1), 0));
    let _ = v.in_packet(&seg("198.51.100.1", 1, ACK), 1);
    let r = v.out_packet(&reply(&a.to_string(), 8080, "198.51.100.1", 1, ACK), 1);
    assert!(matches!(r, OutVerdict::Reply { .. }));
    v.clear();
    v.add_service(ServiceConfig::new(tcp_svc(80), SchedulerKind::Rr)).unwrap();
    for rs in ["203.0.113.11", "203.0.113.10"] {
        v.add_dest(&tcp_svc(80), DestConfig::new(ip(rs), 8080, Fwd::Masq)).unwrap();
    }
    assert_eq!(dest_of(v.in_packet(&seg("198.51.100.1", 1, ACK), 2)), a, "the connection goes on");
    let r = v.out_packet(&reply(&a.to_string(), 8080, "198.51.100.1", 1, ACK), 2);
    assert!(matches!(r, OutVerdict::Reply { .. }), "{r:?}");
    let total: u32 = counts(&v).iter().map(|c| c.0).sum();
    assert_eq!(total, 1, "counted once, on the re-created service's server");
    let stats = v.services().next().unwrap().2;
    assert_eq!(stats.in_pkts, 1, "its packets count on the new service");
    // A server not re-added stays in the trash; its connections drop as before.
    v.del_dest(&tcp_svc(80), a, 8080).unwrap();
    assert_eq!(v.in_packet(&seg("198.51.100.1", 1, ACK), 3), InVerdict::Drop(DropReason::DestUnavailable));
    // And a service that is not re-created frees everything once its connections expire.
    v.clear();
    v.expire(2000 * SEC, 10_000);
    assert_eq!(v.occupancy().0, 0);
}

#[test]
fn persistence_on_a_port_zero_service_with_netmask() {
    let mut v = Ipvs::new(1000, 10, 1);
    let k = tcp_svc(0);
    let mut cfg = ServiceConfig::new(k, SchedulerKind::Rr);
    cfg.persistence = Some(Persistence { timeout_seconds: 360, prefix_len: 24 });
    v.add_service(cfg).unwrap();
    for i in 0..3 {
        v.add_dest(&k, DestConfig::new(ip(&format!("203.0.113.{}", 10 + i)), 0, Fwd::Route)).unwrap();
    }
    let home = dest_of(v.in_packet(&pkt(proto::TCP, "198.51.100.7", 1, "192.0.2.80", 80, SYN), 0));
    // Another port of the service, and another client of the same /24: same server.
    for (client, port) in [("198.51.100.7", 443), ("198.51.100.7", 22), ("198.51.100.99", 8443)] {
        let v_ = v.in_packet(&pkt(proto::TCP, client, 7, "192.0.2.80", port, SYN), SEC);
        let InVerdict::Forward { daddr, dport, .. } = v_ else { panic!() };
        assert_eq!((daddr, dport), (home, port), "all ports follow the template, real port = packet port");
    }
    assert_ne!(dest_of(v.in_packet(&pkt(proto::TCP, "198.51.101.7", 1, "192.0.2.80", 80, SYN), SEC)), home);
    // The template: client masked, port 0, state NONE; listed like ipvsadm -Lnc's last row.
    let t = v.connections().find(|c| c.is_template() && c.caddr == ip("198.51.100.0")).unwrap();
    assert_eq!((t.cport, t.vport, t.state), (0, 0, TcpState::None as u8));
    assert_eq!(v.services().next().unwrap().3.iter().map(|(_, d)| d.persistent).sum::<u32>(), 2);
}

#[test]
fn a_template_outlives_its_timeout_while_it_controls_connections() {
    let mut v = Ipvs::new(1000, 10, 1);
    let k = tcp_svc(80);
    let mut cfg = ServiceConfig::new(k, SchedulerKind::Rr);
    cfg.persistence = Some(Persistence { timeout_seconds: 10, prefix_len: 32 });
    v.add_service(cfg).unwrap();
    v.add_dest(&k, DestConfig::new(ip("203.0.113.10"), 80, Fwd::Route)).unwrap();
    v.add_dest(&k, DestConfig::new(ip("203.0.113.11"), 80, Fwd::Route)).unwrap();
    let home = dest_of(v.in_packet(&syn("198.51.100.7", 1), 0));
    let _ = v.in_packet(&seg("198.51.100.7", 1, ACK), 1); // ESTABLISHED: 900 s
    for t in (20..200).step_by(20) {
        v.expire(t * SEC, 100);
        assert!(
            v.connections().any(|c| c.is_template()),
            "at {t}s the template still controls the connection"
        );
    }
    assert_eq!(dest_of(v.in_packet(&syn("198.51.100.7", 2), 200 * SEC)), home, "so the client stays home");
    // Once its connections are gone, the template expires on its own timeout.
    v.expire(2000 * SEC, 1000);
    v.expire(2020 * SEC, 1000);
    assert_eq!(v.occupancy().0, 0);
}

#[test]
fn expire_quiescent_template() {
    for eqt in [false, true] {
        let mut v = Ipvs::new(100, 10, 1);
        let k = tcp_svc(80);
        let mut cfg = ServiceConfig::new(k, SchedulerKind::Rr);
        cfg.persistence = Some(Persistence { timeout_seconds: 300, prefix_len: 32 });
        v.add_service(cfg).unwrap();
        v.add_dest(&k, DestConfig::new(ip("203.0.113.10"), 80, Fwd::Route)).unwrap();
        v.add_dest(&k, DestConfig::new(ip("203.0.113.11"), 80, Fwd::Route)).unwrap();
        v.sysctl.expire_quiescent_template = eqt;
        let home = dest_of(v.in_packet(&syn("198.51.100.7", 1), 0));
        let mut q = DestConfig::new(home, 80, Fwd::Route);
        q.weight = 0;
        v.edit_dest(&k, q).unwrap();
        let next = dest_of(v.in_packet(&syn("198.51.100.7", 2), SEC));
        assert_eq!(next == home, !eqt, "expire_quiescent_template={eqt}");
    }
}

#[test]
fn fwmark_service_groups_ports_80_and_443() {
    let mut v = Ipvs::new(100, 10, 1);
    let k = ServiceKey::Fwmark { mark: 1, v6: false };
    let mut cfg = ServiceConfig::new(k, SchedulerKind::Rr);
    cfg.persistence = Some(Persistence { timeout_seconds: 300, prefix_len: 32 });
    v.add_service(cfg).unwrap();
    for i in 0..3 {
        v.add_dest(&k, DestConfig::new(ip(&format!("203.0.113.{}", 10 + i)), 0, Fwd::Masq)).unwrap();
    }
    let mut p80 = syn("198.51.100.7", 1);
    p80.fwmark = Some(1);
    let mut p443 = pkt(proto::TCP, "198.51.100.7", 2, "192.0.2.80", 443, SYN);
    p443.fwmark = Some(1);
    let (a, b) = (v.in_packet(&p80, 0), v.in_packet(&p443, 0));
    let (InVerdict::Forward { daddr: d1, dport: q1, .. }, InVerdict::Forward { daddr: d2, dport: q2, .. }) =
        (a, b)
    else {
        panic!()
    };
    assert_eq!(d1, d2, "one scheduling unit for both ports");
    assert_eq!((q1, q2), (80, 443));
    let t = v.connections().find(|c| c.is_template()).unwrap();
    assert_eq!(t.proto, proto::IP, "FWM templates carry protocol 0");
    assert_eq!(t.vaddr, ip("0.0.0.1"), "and the mark as virtual address");
}

#[test]
fn a_full_table_drops_new_flows_and_keeps_old_ones() {
    let mut v = Ipvs::new(4, 1, 1);
    // IPVS's own behaviour: every SYN makes an entry.
    v.sysctl.stateless_syn = Mode::OFF;
    v.add_service(ServiceConfig::new(tcp_svc(80), SchedulerKind::Rr)).unwrap();
    v.add_dest(&tcp_svc(80), DestConfig::new(ip("203.0.113.10"), 8080, Fwd::Masq)).unwrap();
    for c in 0..4 {
        assert!(matches!(v.in_packet(&syn("198.51.100.7", c), 0), InVerdict::Forward { .. }));
    }
    assert_eq!(v.in_packet(&syn("198.51.100.7", 99), 0), InVerdict::Drop(DropReason::TableFull));
    assert_eq!(v.drops.table_full, 1);
    for c in 0..4 {
        assert!(matches!(
            v.in_packet(&seg("198.51.100.7", c, ACK), 1),
            InVerdict::Forward { new: false, .. }
        ));
    }
    assert_eq!(counts(&v), [(4, 0)], "the refused flow left no trace in the counters");
}

#[test]
fn conn_reuse_mode_reschedules_a_syn_on_time_wait() {
    let mut v = setup(SchedulerKind::Rr, Fwd::Masq, 2);
    let a = dest_of(v.in_packet(&syn("198.51.100.7", 7), 0));
    let _ = v.in_packet(&seg("198.51.100.7", 7, ACK), 1);
    let _ = v.in_packet(&seg("198.51.100.7", 7, RST), 2); // -> CLOSE
    assert_eq!(state_of(&v, 7), TcpState::Close);
    let b = dest_of(v.in_packet(&syn("198.51.100.7", 7), 3));
    assert_ne!(a, b, "a new connection, rescheduled (rr moved on)");
    assert_eq!(state_of(&v, 7), TcpState::SynRecv);
    assert_eq!(v.occupancy().0, 1);
    v.sysctl.conn_reuse_mode = 0;
    let _ = v.in_packet(&seg("198.51.100.7", 7, RST), 4);
    assert_eq!(dest_of(v.in_packet(&syn("198.51.100.7", 7), 5)), b, "mode 0: the old entry is reused");
}

#[test]
fn one_packet_scheduling_keeps_no_entry() {
    let mut v = Ipvs::new(100, 10, 1);
    let k = ServiceKey::Addr { protocol: proto::UDP, addr: ip("192.0.2.53"), port: 53 };
    let mut cfg = ServiceConfig::new(k, SchedulerKind::Rr);
    cfg.one_packet = true;
    v.add_service(cfg).unwrap();
    v.add_dest(&k, DestConfig::new(ip("203.0.113.31"), 53, Fwd::Masq)).unwrap();
    v.add_dest(&k, DestConfig::new(ip("203.0.113.32"), 53, Fwd::Masq)).unwrap();
    let q = pkt(proto::UDP, "198.51.100.7", 5353, "192.0.2.53", 53, 0);
    let picks: Vec<IpAddr> = (0..4).map(|_| dest_of(v.in_packet(&q, 0))).collect();
    assert_eq!(picks[0], picks[2]);
    assert_ne!(picks[0], picks[1], "every datagram scheduled on its own");
    assert_eq!(v.occupancy().0, 0);
}

#[test]
fn upper_threshold_overloads_and_lower_releases() {
    // fo sends everything to the heaviest available server, so only the threshold moves traffic.
    let mut v = Ipvs::new(100, 10, 1);
    v.add_service(ServiceConfig::new(tcp_svc(80), SchedulerKind::Fo)).unwrap();
    let mut big = DestConfig::new(ip("203.0.113.10"), 8080, Fwd::Masq);
    big.weight = 100;
    big.u_threshold = 2;
    big.l_threshold = 1;
    v.add_dest(&tcp_svc(80), big).unwrap();
    v.add_dest(&tcp_svc(80), DestConfig::new(ip("203.0.113.11"), 8080, Fwd::Masq)).unwrap();
    assert_eq!(dest_of(v.in_packet(&syn("198.51.100.7", 1), 0)), ip("203.0.113.10"));
    assert_eq!(dest_of(v.in_packet(&syn("198.51.100.7", 2), 0)), ip("203.0.113.10"));
    assert_eq!(dest_of(v.in_packet(&syn("198.51.100.7", 3), 0)), ip("203.0.113.11"), "overloaded at 2");
    // Establish both, then reset them one by one (ESTABLISHED + RST -> CLOSE, 10 s). (A RST in
    // SYN_RECV would not close: the kernel's INPUT table keeps SYN_RECV there.)
    let _ = v.in_packet(&seg("198.51.100.7", 1, ACK), 1);
    let _ = v.in_packet(&seg("198.51.100.7", 2, ACK), 1);
    let _ = v.in_packet(&seg("198.51.100.7", 1, RST), 1);
    v.expire(12 * SEC, 100);
    assert_eq!(
        dest_of(v.in_packet(&syn("198.51.100.7", 4), 13 * SEC)),
        ip("203.0.113.11"),
        "1 is not below 1"
    );
    let _ = v.in_packet(&seg("198.51.100.7", 2, RST), 14 * SEC);
    v.expire(25 * SEC, 100);
    assert_eq!(dest_of(v.in_packet(&syn("198.51.100.7", 5), 26 * SEC)), ip("203.0.113.10"));
}

#[test]
fn configuration_errors_read_as_ipvsadm_says_them() {
    let mut v = Ipvs::new(10, 10, 1);
    assert_eq!(
        v.add_service(ServiceConfig::new(tcp_svc(0), SchedulerKind::Rr)),
        Err(ServiceError::ZeroPortNonPersistent)
    );
    assert_eq!(
        ServiceError::ZeroPortNonPersistent.to_string(),
        "Zero port specified for non-persistent service"
    );
    v.add_service(ServiceConfig::new(tcp_svc(80), SchedulerKind::Rr)).unwrap();
    assert_eq!(
        v.add_service(ServiceConfig::new(tcp_svc(80), SchedulerKind::Wlc)),
        Err(ServiceError::ServiceExists)
    );
    let d = DestConfig::new(ip("203.0.113.10"), 80, Fwd::Route);
    v.add_dest(&tcp_svc(80), d).unwrap();
    assert_eq!(v.add_dest(&tcp_svc(80), d), Err(ServiceError::DestExists));
    assert_eq!(ServiceError::DestExists.to_string(), "Destination already exists");
    assert_eq!(v.add_dest(&tcp_svc(81), d), Err(ServiceError::NoService));
    assert_eq!(
        v.add_dest(&tcp_svc(80), DestConfig::new(ip("2001:db8::1"), 80, Fwd::Route)),
        Err(ServiceError::FamilyMismatch)
    );
    assert_eq!(
        v.add_dest(
            &tcp_svc(80),
            DestConfig { weight: 70000, ..DestConfig::new(ip("203.0.113.11"), 80, Fwd::Route) }
        ),
        Err(ServiceError::BadWeight)
    );
    assert_eq!(v.del_dest(&tcp_svc(80), ip("203.0.113.99"), 80), Err(ServiceError::NoDest));
    let mut sh = ServiceConfig::new(tcp_svc(81), SchedulerKind::Rr);
    sh.flags.fallback = true;
    assert!(matches!(v.add_service(sh), Err(ServiceError::BadSchedFlags(_))));
    let mut mh = ServiceConfig::new(tcp_svc(82), SchedulerKind::Mh);
    mh.mh_table_size = 65536;
    assert_eq!(v.add_service(mh), Err(ServiceError::BadTableSize));
}

#[test]
fn ipv6_services_work_the_same() {
    let mut v = Ipvs::new(10, 100, 1);
    let k = ServiceKey::Addr { protocol: proto::TCP, addr: ip("2001:db8::80"), port: 80 };
    v.add_service(ServiceConfig::new(k, SchedulerKind::Rr)).unwrap();
    v.add_dest(&k, DestConfig::new(ip("2001:db8:2::10"), 8080, Fwd::Masq)).unwrap();
    let p = pkt(proto::TCP, "2001:db8:1::7", 40000, "2001:db8::80", 80, SYN);
    assert_eq!(dest_of(v.in_packet(&p, 0)), ip("2001:db8:2::10"));
    let r = pkt(proto::TCP, "2001:db8:2::10", 8080, "2001:db8:1::7", 40000, SYN | ACK);
    assert!(matches!(v.out_packet(&r, 1), OutVerdict::Reply { vport: 80, .. }));
    assert_eq!(v.occupancy(), (1, 110));
}

/// A tunnel may carry one family inside the other (the kernel's mixed-family destinations):
/// an IPv4 service with an IPv6 TUN server and the reverse schedule, keep and list their
/// connections with the server's own address; persistence templates bind to it; such connections
/// are not offered to the sync daemon (its messages give a connection one family). Other methods
/// still refuse a server of the other family.
#[test]
fn tunnels_carry_the_other_family() {
    let mut v = Ipvs::new(100, 100, 1);
    v.add_service(ServiceConfig {
        persistence: Some(Persistence { timeout_seconds: 300, prefix_len: 32 }),
        ..ServiceConfig::new(tcp_svc(80), SchedulerKind::Rr)
    })
    .unwrap();
    v.add_dest(&tcp_svc(80), DestConfig::new(ip("2001:db8:b::12"), 80, Fwd::Tunnel(TunnelType::Ipip)))
        .unwrap();
    assert_eq!(
        v.add_dest(&tcp_svc(80), DestConfig::new(ip("2001:db8:b::13"), 80, Fwd::Route)),
        Err(ServiceError::FamilyMismatch)
    );
    v.set_sync_master(true);
    assert_eq!(dest_of(v.in_packet(&syn("198.51.100.7", 40000), 0)), ip("2001:db8:b::12"));
    assert_eq!(dest_of(v.in_packet(&seg("198.51.100.7", 40000, ACK), 1)), ip("2001:db8:b::12"));
    assert_eq!(dest_of(v.in_packet(&syn("198.51.100.7", 40001), 2)), ip("2001:db8:b::12"), "by the template");
    let listed: Vec<IpAddr> = v.connections().map(|c| c.raddr).collect();
    assert_eq!(listed.len(), 3, "two connections and a template");
    assert!(listed.iter().all(|a| *a == ip("2001:db8:b::12")), "{listed:?}");
    let mut out = Vec::new();
    v.drain_sync(3, &mut out);
    assert!(out.is_empty(), "{out:?}");

    let k6 = ServiceKey::Addr { protocol: proto::TCP, addr: ip("2001:db8:f::82"), port: 80 };
    v.add_service(ServiceConfig::new(k6, SchedulerKind::Rr)).unwrap();
    v.add_dest(&k6, DestConfig::new(ip("203.0.113.12"), 80, Fwd::Tunnel(TunnelType::Ipip))).unwrap();
    let p = pkt(proto::TCP, "2001:db8:c::10", 40000, "2001:db8:f::82", 80, SYN);
    assert_eq!(dest_of(v.in_packet(&p, 4)), ip("203.0.113.12"));
    assert!(v.connections().any(|c| c.caddr == ip("2001:db8:c::10") && c.raddr == ip("203.0.113.12")));
}

#[test]
fn a_burst_decides_exactly_as_packet_by_packet() {
    let mut a = setup(SchedulerKind::Wlc, Fwd::Masq, 3);
    let mut b = setup(SchedulerKind::Wlc, Fwd::Masq, 3);
    // SYNs, repeats, non-SYNs without connections, foreign traffic, IPv6: 70 packets, 3 bursts.
    let pkts: Vec<PacketMeta> = (0..70u16)
        .map(|i| match i % 7 {
            0..=2 => syn("198.51.100.7", 1000 + i / 2),
            3 => seg("198.51.100.7", 1000 + i / 3, ACK),
            4 => seg("198.51.100.9", 5, ACK),
            5 => pkt(proto::TCP, "198.51.100.7", i, "192.0.2.99", 80, SYN),
            _ => pkt(proto::TCP, "2001:db8::7", i, "2001:db8::80", 80, SYN),
        })
        .collect();
    // The data plane's way: each burst of 32 looked up together, then decided in order with the
    // lookups as hints (an earlier packet of the burst may have made or ended a connection).
    let mut burst = Vec::new();
    for chunk in pkts.chunks(32) {
        let tuples: Vec<(usize, WarmTuple<[u8; 4]>)> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match (p.src, p.dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => Some((
                    i,
                    WarmTuple {
                        proto: p.protocol,
                        src: s.octets(),
                        sport: p.sport,
                        dst: d.octets(),
                        dport: p.dport,
                        reply: false,
                    },
                )),
                _ => None,
            })
            .collect();
        let just: Vec<WarmTuple<[u8; 4]>> = tuples.iter().map(|(_, t)| *t).collect();
        let mut found = vec![None; just.len()];
        a.lookup_burst_v4(&just, &mut found, &rvs_ipvs::conn::NoPrefetch);
        let mut hints = vec![None; chunk.len()];
        for ((i, _), f) in tuples.iter().zip(found) {
            hints[*i] = f;
        }
        for (p, h) in chunk.iter().zip(hints) {
            burst.push(a.in_packet_hinted(p, h, 5));
        }
    }
    let single: Vec<InVerdict> = pkts.iter().map(|p| b.in_packet(p, 5)).collect();
    assert_eq!(burst, single);
    assert_eq!(a.occupancy(), b.occupancy());
}

#[test]
fn a_mirror_translates_replies_on_another_shard_without_counting_the_connection_twice() {
    // Two shards with the same configuration, as two workers have.
    let mut owner = setup(SchedulerKind::Rr, Fwd::Masq, 2);
    let mut other = setup(SchedulerKind::Rr, Fwd::Masq, 2);
    let InVerdict::Forward { conn: Some(conn), daddr, .. } = owner.in_packet(&syn("198.51.100.7", 40000), 0)
    else {
        panic!("not scheduled")
    };
    let reply_to = |v: &mut Ipvs, flags, t| {
        v.out_packet(&reply(&daddr.to_string(), 8080, "198.51.100.7", 40000, flags), t)
    };
    // (Without stateless_syn, which translates a SYN-ACK with no entry from the configuration.)
    other.sysctl.stateless_syn = Mode::OFF;
    assert_eq!(reply_to(&mut other, SYN | ACK, 5), OutVerdict::NotOurs, "no copy yet");

    let c = owner.connection(conn).expect("connection");
    other.insert_mirror(&c, 10).unwrap();
    assert!(matches!(reply_to(&mut other, SYN | ACK, 20), OutVerdict::Reply { vport: 80, .. }));
    // Listings and ActiveConn/InActConn come from the owner's shard alone.
    assert_eq!(other.connections().count(), 0);
    assert_eq!(counts(&other), [(0, 0), (0, 0)]);
    assert_eq!(counts(&owner), [(1, 0), (0, 0)]);
    // Out packets are counted where they pass.
    let out: u64 = other.services().map(|(_, _, s, _)| s.out_pkts).sum();
    assert_eq!(out, 1);
    // Inserting again refreshes rather than duplicating.
    other.insert_mirror(&c, 30).unwrap();
    assert_eq!(other.occupancy().0, 1);

    // The copy expires on its own (SYN_RECV's 60 s after the last reply), releasing its destination:
    // deleting the server afterwards frees it at once.
    assert_eq!(other.expire(20 + 61 * SEC, 1000), 1);
    assert_eq!(other.occupancy().0, 0);
    assert_eq!(reply_to(&mut other, ACK, 20 + 62 * SEC), OutVerdict::NotOurs);
    assert_eq!(counts(&other), [(0, 0), (0, 0)]);
}

/// A SYN flood from spoofed sources against a NAT service, in simulated time: 20,000 SYNs a second
/// for two minutes on a shard of 50,000 entries, while 500 established clients keep sending and 50
/// new clients a second connect (SYN, the server's SYN-ACK back through the director, ACK, data,
/// the server's answer). Without defences (IPVS's defaults) the flood fills the table and new
/// clients are refused; with stateless_syn (rvs's default) the flood holds no entries and every
/// client gets through; drop_entry and secure_tcp alone (IPVS's defences) keep the table from
/// filling but lose some.
#[test]
fn a_syn_flood_neither_fills_the_table_nor_stops_new_clients() {
    struct Outcome {
        established_ok: f64,
        new_ok: f64,
        peak: usize,
        /// Entries of spoofed sources (100.64/10) at the end.
        flood_entries: usize,
        full_drops: u64,
    }
    let run = |configure: &dyn Fn(&mut Ipvs)| -> Outcome {
        let mut v = Ipvs::new(50_000, 1024, 7);
        v.add_service(ServiceConfig::new(tcp_svc(80), SchedulerKind::Wlc)).unwrap();
        for i in 0..4u8 {
            v.add_dest(&tcp_svc(80), DestConfig::new(ip(&format!("203.0.113.{}", 10 + i)), 8080, Fwd::Masq))
                .unwrap();
        }
        configure(&mut v);
        let mut rng = 0x1234_5678_9abc_def1u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        // Established clients: full handshakes before the flood.
        let established: Vec<(String, u16)> =
            (0..500u16).map(|i| (format!("198.51.100.{}", i % 250), 20000 + i)).collect();
        let mut servers = std::collections::HashMap::new();
        for (c, port) in &established {
            let d = dest_of(v.in_packet(&syn(c, *port), 0));
            let _ = v.out_packet(&reply(&d.to_string(), 8080, c, *port, SYN | ACK), 0);
            let _ = v.in_packet(&seg(c, *port, ACK), 0);
            servers.insert((c.clone(), *port), d);
        }
        let (mut est_sent, mut est_ok, mut new_tried, mut new_ok, mut peak) =
            (0u64, 0u64, 0u64, 0u64, 0usize);
        let mut newport = 30000u16;
        for ms in 1..=120_000u64 {
            // 20 spoofed SYNs a millisecond.
            for _ in 0..20 {
                let r = next();
                let src = format!("100.{}.{}.{}", 64 + (r >> 8) % 64, (r >> 16) % 256, (r >> 24) % 256);
                let _ =
                    v.in_packet(&pkt(proto::TCP, &src, (r >> 40) as u16 | 1024, "192.0.2.80", 80, SYN), ms);
            }
            // Every established client sends once every 100 ms.
            if ms % 100 == 0 {
                for (c, port) in &established {
                    est_sent += 1;
                    est_ok +=
                        u64::from(matches!(v.in_packet(&seg(c, *port, ACK), ms), InVerdict::Forward { .. }));
                }
            }
            // A new client every 20 ms: its handshake and a request and answer over 3 ms.
            if ms % 20 == 0 {
                new_tried += 1;
                newport = newport.wrapping_add(1).max(30000);
                let c = format!("198.51.100.{}", (newport % 200) + 1);
                let ok = (|| {
                    let InVerdict::Forward { daddr, dport, .. } = v.in_packet(&syn(&c, newport), ms) else {
                        return false;
                    };
                    let OutVerdict::Reply { vport: 80, .. } =
                        v.out_packet(&reply(&daddr.to_string(), dport, &c, newport, SYN | ACK), ms + 1)
                    else {
                        return false;
                    };
                    let InVerdict::Forward { daddr: d2, .. } = v.in_packet(&seg(&c, newport, ACK), ms + 2)
                    else {
                        return false;
                    };
                    let InVerdict::Forward { daddr: d3, conn: Some(_), .. } =
                        v.in_packet(&seg(&c, newport, ACK), ms + 3)
                    else {
                        return false;
                    };
                    let answer = v.out_packet(&reply(&daddr.to_string(), dport, &c, newport, ACK), ms + 3);
                    d2 == daddr
                        && d3 == daddr
                        && matches!(answer, OutVerdict::Reply { conn: Some(_), vport: 80, .. })
                })();
                new_ok += u64::from(ok);
            }
            v.expire(ms, 256);
            peak = peak.max(v.occupancy().0);
        }
        Outcome {
            established_ok: est_ok as f64 / est_sent as f64,
            new_ok: new_ok as f64 / new_tried as f64,
            peak,
            flood_entries: v
                .connections()
                .filter(|c| matches!(c.caddr, IpAddr::V4(a) if a.octets()[0] == 100))
                .count(),
            full_drops: v.drops.table_full,
        }
    };

    let undefended = run(&|v| v.sysctl.stateless_syn = Mode::OFF);
    assert_eq!(undefended.peak, 50_000, "the flood fills an undefended table");
    assert!(undefended.new_ok < 0.1, "and new clients are refused: {:.3}", undefended.new_ok);
    assert!(undefended.full_drops > 1_000_000);

    let defended = run(&|_| {});
    assert_eq!(defended.established_ok, 1.0);
    assert_eq!(defended.new_ok, 1.0, "every new client completes");
    assert!(defended.peak < 50_000, "peak {} entries", defended.peak);
    assert!(defended.flood_entries <= 50_000 * 7 / 8, "{} flood entries", defended.flood_entries);
    assert_eq!(defended.full_drops, 0);

    let ipvs_only = run(&|v| {
        v.sysctl.stateless_syn = Mode::OFF;
        v.sysctl.drop_entry = Mode::AUTO;
        v.sysctl.secure_tcp = Mode::AUTO;
    });
    assert_eq!(ipvs_only.established_ok, 1.0);
    eprintln!(
        "SYN flood, 20k/s on 50k entries: undefended new {:.3} peak {} flood {}; stateless_syn new {:.3} peak {} \
         flood {}; drop_entry+secure_tcp new {:.3} peak {} flood {}",
        undefended.new_ok,
        undefended.peak,
        undefended.flood_entries,
        defended.new_ok,
        defended.peak,
        defended.flood_entries,
        ipvs_only.new_ok,
        ipvs_only.peak,
        ipvs_only.flood_entries
    );
}

/// A worker builds reports a share per millisecond: the pieces add up to the report made at once.
#[test]
fn a_report_built_in_steps_equals_one_built_at_once() {
    let mut v = Ipvs::new(4096, 64, 3);
    for i in 0..300u16 {
        let k = tcp_svc(1000 + i);
        v.add_service(ServiceConfig::new(k, SchedulerKind::Rr)).unwrap();
        for d in 0..(i % 20) {
            v.add_dest(&k, DestConfig::new(ip(&format!("203.0.113.{}", 1 + d)), 80, Fwd::Route)).unwrap();
        }
    }
    v.del_service(&tcp_svc(1005)).unwrap();
    for c in 0..1000u16 {
        let _ = v.in_packet(&pkt(proto::TCP, "198.51.100.7", 2000 + c, "192.0.2.80", 1000 + c % 300, SYN), 1);
    }
    let whole = v.report(true, 5);
    let mut r = v.report_start(5);
    let mut at = rvs_ipvs::ReportCursor::default();
    let mut steps = 0;
    while !v.report_step(&mut r, &mut at, true, 7) {
        steps += 1;
    }
    assert!(steps > 100, "{steps} steps");
    assert_eq!(r, whole);
    assert_eq!(whole.services.len(), 299);
    assert!(whole.conns.len() > 900);
}

/// mh tables built once on the management core's copy and installed by a worker's shard schedule
/// exactly as the shard's own would, and a deferred shard never builds one while tables arrive.
#[test]
fn maglev_tables_shipped_from_the_model_schedule_as_built_ones() {
    let k = tcp_svc(80);
    let setup_mh = |v: &mut Ipvs| {
        v.set_sched_seed(42);
        let mut cfg = ServiceConfig::new(k, SchedulerKind::Mh);
        cfg.mh_table_size = 251;
        v.apply(&rvs_ipvs::Op::AddService(cfg)).unwrap();
    };
    let (mut model, mut own, mut shipped) =
        (Ipvs::new(100, 10, 1), Ipvs::new(1000, 10, 2), Ipvs::new(1000, 10, 3));
    for v in [&mut model, &mut own, &mut shipped] {
        setup_mh(v);
    }
    shipped.defer_sched_tables();
    for i in 0..5u8 {
        let op =
            rvs_ipvs::Op::AddDest(k, DestConfig::new(ip(&format!("203.0.113.{}", 10 + i)), 80, Fwd::Route));
        for v in [&mut model, &mut own, &mut shipped] {
            v.apply(&op).unwrap();
        }
    }
    let t = model.sched_table(&k).expect("mh has a table");
    assert_eq!(t.len(), 251);
    assert!(shipped.sched_table(&k).expect("table").is_empty(), "a deferred shard built nothing");
    shipped.apply(&rvs_ipvs::Op::SchedTable(k, t)).unwrap();
    for c in 0..200u16 {
        let client = format!("198.51.100.{}", c % 250);
        let (a, b) =
            (own.in_packet(&syn(&client, 5000 + c), 1), shipped.in_packet(&syn(&client, 5000 + c), 1));
        assert_eq!(dest_of(a), dest_of(b), "client {client}");
    }
}

/// A real server at the director's own address (or on loopback) is the director itself: forwarded
/// "Local" whatever -m/-g/-i said, with the service's port (the packet reaches the local stack
/// unchanged), as the kernel makes such a destination LOCALNODE.
#[test]
fn a_real_server_at_the_directors_own_address_is_local() {
    let mut v = Ipvs::new(100, 10, 1);
    v.set_local_addrs(vec![ip("192.0.2.2")]);
    v.add_service(ServiceConfig::new(tcp_svc(80), SchedulerKind::Rr)).unwrap();
    v.add_dest(&tcp_svc(80), DestConfig::new(ip("192.0.2.2"), 8080, Fwd::Masq)).unwrap();
    v.add_dest(&tcp_svc(80), DestConfig::new(ip("127.0.0.1"), 80, Fwd::Route)).unwrap();
    v.add_dest(&tcp_svc(80), DestConfig::new(ip("203.0.113.10"), 8080, Fwd::Masq)).unwrap();
    let fwds: Vec<(IpAddr, u16, Fwd)> =
        v.services().next().unwrap().3.iter().map(|(_, d)| (d.cfg.addr, d.cfg.port, d.cfg.fwd)).collect();
    assert_eq!(
        fwds,
        [
            (ip("192.0.2.2"), 80, Fwd::Local),
            (ip("127.0.0.1"), 80, Fwd::Local),
            (ip("203.0.113.10"), 8080, Fwd::Masq)
        ]
    );
    let InVerdict::Forward { fwd, .. } = v.in_packet(&syn("198.51.100.7", 1), 0) else { panic!() };
    assert_eq!(fwd, Fwd::Local);
}

/// The sync daemon's two ends: the master notes a NAT connection as it is made and as it becomes
/// established; the messages carry it (encoded and decoded as on the wire); the backup installs it
/// with the same server, state and counters, and then forwards the client's next segment (no SYN)
/// to that server and translates the server's reply, as the master would have.
#[test]
fn a_synced_connection_carries_on_on_the_backup() {
    let mut master = setup(SchedulerKind::Rr, Fwd::Masq, 3);
    let mut backup = setup(SchedulerKind::Rr, Fwd::Masq, 3);
    master.set_sync_master(true);
    // Two connections: the second's server is .11 (rr), which the backup's scheduler would not
    // pick first.
    dest_of(master.in_packet(&syn("198.51.100.7", 40000), 0));
    let server = dest_of(master.in_packet(&syn("198.51.100.7", 40001), 0));
    assert_eq!(server, ip("203.0.113.11"));
    assert!(matches!(
        master.out_packet(&reply("203.0.113.11", 8080, "198.51.100.7", 40001, SYN | ACK), 1),
        OutVerdict::Reply { .. }
    ));
    dest_of(master.in_packet(&seg("198.51.100.7", 40001, ACK), 2));
    let mut sent = Vec::new();
    master.drain_sync(2, &mut sent);
    assert!(!master.sync_pending());
    let last = sent.iter().rev().find(|c| c.cport == 40001).expect("noted");
    assert_eq!((last.state, last.daddr, last.dport), (1, ip("203.0.113.11"), 8080), "ESTABLISHED: {last:?}");
    let wire = rvs_ipvs::sync::encode(3, &sent, rvs_ipvs::sync::MAX_MESSAGE);
    for m in &wire {
        let (syncid, conns) = rvs_ipvs::sync::decode(m).expect("decodes");
        assert_eq!(syncid, 3);
        for c in &conns {
            backup.install_synced(c, 2).expect("installs");
        }
    }
    assert_eq!(counts(&backup), counts(&master), "the same active/inactive counts");
    // The client's next segment reaches the same server through the backup, without a SYN.
    assert_eq!(dest_of(backup.in_packet(&seg("198.51.100.7", 40001, ACK), 3)), server);
    assert!(matches!(
        backup.out_packet(&reply("203.0.113.11", 8080, "198.51.100.7", 40001, ACK), 3),
        OutVerdict::Reply { vport: 80, .. }
    ));
    // A second message about the same connection updates it (no second entry).
    backup.install_synced(last, 4).expect("updates");
    assert_eq!(backup.occupancy().0, master.occupancy().0);
    // A connection of a server the backup does not have is refused.
    let mut stray = *last;
    stray.daddr = ip("203.0.113.99");
    assert!(backup.install_synced(&stray, 4).is_err());
}
