//! rvsadm's output against ipvsadm's documented layouts (shared/reference/ipvsadm.md), byte for
//! byte, trailing spaces included; and the grammar against ipvsadm's rules and error texts.

use std::net::IpAddr;

use rvs_adm::listing::{self, ConnView, DestView, Rates, ServiceView, Snapshot};
use rvs_adm::{Command, ListFormat, ListOptions, parse, parse_rules};
use rvs_ipvs::{
    DestConfig, Fwd, Ipvs, Op, Persistence, SchedFlags, SchedulerKind, ServiceConfig, ServiceKey, Stats,
    TunCsum, TunnelType, proto,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(a: &str, port: u16) -> ServiceKey {
    ServiceKey::Addr { protocol: proto::TCP, addr: ip(a), port }
}

fn dest(a: &str, port: u16, fwd: Fwd, weight: u32, active: u32, inactive: u32) -> DestView {
    DestView {
        cfg: DestConfig { weight, ..DestConfig::new(ip(a), port, fwd) },
        active,
        inactive,
        persistent: 0,
        stats: Stats::default(),
        rates: Rates::default(),
    }
}

fn svc(cfg: ServiceConfig, dests: Vec<DestView>) -> ServiceView {
    ServiceView { cfg, stats: Stats::default(), rates: Rates::default(), dests }
}

/// The services of the reference's -Ln example, inserted out of order to exercise sorting.
fn reference_snapshot() -> Snapshot {
    let mut https = ServiceConfig::new(tcp("10.0.0.2", 443), SchedulerKind::Rr);
    https.persistence = Some(Persistence { timeout_seconds: 360, prefix_len: 24 });
    let mut dns = ServiceConfig::new(
        ServiceKey::Addr { protocol: proto::UDP, addr: ip("10.0.0.3"), port: 53 },
        SchedulerKind::Sh,
    );
    dns.flags = SchedFlags { fallback: true, port: true, flag3: false };
    Snapshot {
        table_size: 4096,
        services: vec![
            svc(
                ServiceConfig::new(ServiceKey::Fwmark { mark: 1, v6: false }, SchedulerKind::Wlc),
                vec![dest("192.168.1.10", 0, Fwd::Masq, 1, 0, 0)],
            ),
            svc(dns, vec![dest("10.0.0.31", 53, Fwd::Tunnel(TunnelType::Ipip), 1, 0, 7)]),
            svc(https, vec![dest("10.0.0.21", 443, Fwd::Route, 100, 3, 0)]),
            svc(
                ServiceConfig::new(tcp("10.0.0.1", 80), SchedulerKind::Wlc),
                vec![dest("192.168.1.10", 80, Fwd::Masq, 1, 12, 40)],
            ),
        ],
        timeouts: (900, 120, 300),
        conns: vec![],
    }
}

fn list(s: &Snapshot, format: ListFormat) -> String {
    listing::list(s, &ListOptions { numeric: true, format, ..ListOptions::default() }).unwrap()
}

#[test]
fn ln_matches_the_reference_layout() {
    let want = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.0.0.1:80 wlc
  -> 192.168.1.10:80              Masq    1      12         40        
TCP  10.0.0.2:443 rr persistent 360 mask 255.255.255.0
  -> 10.0.0.21:443                Route   100    3          0         
UDP  10.0.0.3:53 sh (sh-fallback,sh-port)
  -> 10.0.0.31:53                 Tunnel  1      0          7         
FWM  1 wlc
  -> 192.168.1.10:0               Masq    1      0          0         
";
    assert_eq!(list(&reference_snapshot(), ListFormat::Table), want);
}

#[test]
fn nosort_keeps_insertion_order_and_names_resolve_without_n() {
    let s = reference_snapshot();
    let out = listing::list(&s, &ListOptions { nosort: true, numeric: true, ..Default::default() }).unwrap();
    let firsts: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with("IP ") && !l.starts_with("Prot"))
        .collect();
    assert_eq!(
        firsts,
        [
            "FWM  1 wlc",
            "UDP  10.0.0.3:53 sh (sh-fallback,sh-port)",
            "TCP  10.0.0.2:443 rr persistent 360 mask 255.255.255.0",
            "TCP  10.0.0.1:80 wlc"
        ]
    );
    let named = listing::list(&s, &ListOptions::default()).unwrap();
    assert!(named.contains("TCP  10.0.0.1:http wlc\n"), "{named}");
    assert!(named.contains("UDP  10.0.0.3:domain sh"), "{named}");
}

#[test]
fn stats_match_the_reference_layout_with_scaled_numbers() {
    let mut s = reference_snapshot();
    s.services.retain(|sv| sv.cfg.key == tcp("10.0.0.1", 80));
    s.services[0].stats = Stats {
        conns: 123456,
        in_pkts: 98765432,
        out_pkts: 87654321,
        in_bytes: 123_456_789_012,
        out_bytes: 9_876_543_210_987,
    };
    s.services[0].dests[0].stats = Stats {
        conns: 61728,
        in_pkts: 49382716,
        out_pkts: 43827160,
        in_bytes: 61_728_394_506,
        out_bytes: 4_938_271_605_493,
    };
    let want = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  10.0.0.1:80                    123456 98765432 87654321     123G    9876G
  -> 192.168.1.10:80                 61728 49382716 43827160   61728M    4938G
";
    assert_eq!(list(&s, ListFormat::Stats), want);
    let exact = listing::list(
        &s,
        &ListOptions { numeric: true, format: ListFormat::Stats, exact: true, ..Default::default() },
    )
    .unwrap();
    assert!(
        exact.contains(
            "TCP  10.0.0.1:80                    123456 98765432 87654321 123456789012 9876543210987\n"
        ),
        "{exact}"
    );
}

#[test]
fn rate_thresholds_and_persistent_conn_layouts() {
    let mut s = reference_snapshot();
    s.services.retain(|sv| sv.cfg.key == tcp("10.0.0.1", 80));
    s.services[0].rates = Rates { cps: 12, inpps: 3400, outpps: 3000, inbps: 250_000_000, outbps: 9_000_000 };
    s.services[0].dests[0].rates =
        Rates { cps: 6, inpps: 1700, outpps: 1500, inbps: 125_000_000, outbps: 4_500_000 };
    s.services[0].dests[0].cfg.u_threshold = 100;
    s.services[0].dests[0].persistent = 5;
    let rate = list(&s, ListFormat::Rate);
    assert_eq!(
        rate.lines().skip(1).collect::<Vec<_>>(),
        [
            "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS",
            "  -> RemoteAddress:Port",
            "TCP  10.0.0.1:80                        12     3400     3000  250000K  9000000",
            "  -> 192.168.1.10:80                     6     1700     1500  125000K  4500000",
        ]
    );
    let thr = list(&s, ListFormat::Thresholds);
    assert_eq!(
        thr.lines().skip(1).collect::<Vec<_>>(),
        [
            "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn ",
            "  -> RemoteAddress:Port",
            "TCP  10.0.0.1:80 wlc",
            "  -> 192.168.1.10:80              100        0          12         40        ",
        ]
    );
    let pc = list(&s, ListFormat::PersistentConn);
    assert_eq!(
        pc.lines().skip(1).collect::<Vec<_>>(),
        [
            "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn ",
            "  -> RemoteAddress:Port",
            "TCP  10.0.0.1:80 wlc",
            "  -> 192.168.1.10:80              1         5           12         40        ",
        ]
    );
}

#[test]
fn connections_and_timeouts_match_the_reference() {
    let mut s = reference_snapshot();
    s.conns = vec![
        ConnView {
            proto: proto::TCP,
            caddr: ip("10.0.0.50"),
            cport: 40001,
            vaddr: ip("10.0.0.1"),
            vport: 80,
            daddr: ip("192.168.1.10"),
            dport: 80,
            state: "ESTABLISHED",
            expires_seconds: 899,
        },
        ConnView {
            proto: proto::UDP,
            caddr: ip("10.0.0.53"),
            cport: 5353,
            vaddr: ip("10.0.0.3"),
            vport: 53,
            daddr: ip("10.0.0.31"),
            dport: 53,
            state: "UDP",
            expires_seconds: 299,
        },
        ConnView {
            proto: proto::TCP,
            caddr: ip("10.0.0.0"),
            cport: 0,
            vaddr: ip("10.0.0.2"),
            vport: 443,
            daddr: ip("10.0.0.21"),
            dport: 443,
            state: "NONE",
            expires_seconds: 359,
        },
    ];
    let want = "IPVS connection entries
pro expire state       source             virtual            destination
TCP 14:59  ESTABLISHED 10.0.0.50:40001    10.0.0.1:80        192.168.1.10:80
UDP 04:59  UDP         10.0.0.53:5353     10.0.0.3:53        10.0.0.31:53
TCP 05:59  NONE        10.0.0.0:0         10.0.0.2:443       10.0.0.21:443
";
    assert_eq!(list(&s, ListFormat::Connections), want);
    assert_eq!(list(&s, ListFormat::Timeout), "Timeout (tcp tcpfin udp): 900 120 300\n");
}

#[test]
fn save_matches_the_reference_rule_file() {
    let mut s = reference_snapshot();
    s.services[1].dests.clear(); // the reference's UDP service has no server line
    let want = "-A -t 10.0.0.1:80 -s wlc
-a -t 10.0.0.1:80 -r 192.168.1.10:80 -m -w 1
-A -t 10.0.0.2:443 -s rr -p 360 -M 255.255.255.0
-a -t 10.0.0.2:443 -r 10.0.0.21:443 -g -w 100
-A -u 10.0.0.3:53 -s sh -b sh-fallback,sh-port
-A -f 1 -s wlc
-a -f 1 -r 192.168.1.10:0 -m -w 1
";
    assert_eq!(listing::save(&s, true), want);
}

fn apply(v: &mut Ipvs, c: Command) {
    match c {
        Command::Change(Op::AddService(cfg)) => {
            v.add_service(cfg).unwrap();
        }
        Command::Change(Op::AddDest(k, d)) => {
            v.add_dest(&k, d).unwrap();
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn save_restore_round_trips_through_the_ipvs_model() {
    let rules = "# a rule file as ipvsadm -Sn writes it, with the ipvsadm word ipvsadm-restore accepts
ipvsadm -A -t 192.0.2.80:80 -s wrr
-a -t 192.0.2.80:80 -r 203.0.113.10:8080 -m -w 3
-a -t 192.0.2.80:80 -r 203.0.113.11:8080 -m -w 1

-A -t 192.0.2.80:0 -s sh -b sh-port -p 600 -M 255.255.0.0
-a -t 192.0.2.80:0 -r 203.0.113.20:0 -g -w 1
-A -u [2001:db8::53]:53 -s mh -b mh-fallback -o
-a -u [2001:db8::53]:53 -r [2001:db8:2::1]:53 -i -w 2
-A -f 7 -6 -s rr -p 60 -M 64
-a -f 7 -6 -r [2001:db8:2::7]:0 -m -w 1
";
    let mut v = Ipvs::new(100, 100, 1);
    for (_, c) in parse_rules(rules).unwrap() {
        apply(&mut v, c);
    }
    let saved = listing::save(&Snapshot::from_ipvs(&v, 0), true);
    let mut again = Ipvs::new(100, 100, 1);
    for (_, c) in parse_rules(&saved).unwrap() {
        apply(&mut again, c);
    }
    assert_eq!(
        listing::save(&Snapshot::from_ipvs(&again, 0), true),
        saved,
        "-Sn; -C; -R reproduces the table"
    );
    assert!(saved.contains("-A -t 192.0.2.80:0 -s sh -b sh-port -p 600 -M 255.255.0.0\n"), "{saved}");
    assert!(saved.contains("-A -u [2001:db8::53]:53 -s mh -b mh-fallback -o\n"), "{saved}");
    assert!(saved.contains("-A -f 7 -6 -s rr -p 60 -M 64\n"), "{saved}");
}

#[test]
fn a_restore_with_a_bad_line_names_it_and_yields_nothing() {
    let rules = "-A -t 192.0.2.80:80 -s rr\n-a -t 192.0.2.80:80 -r 203.0.113.10 -w 70000\n";
    let (line, err) = parse_rules(rules).unwrap_err();
    assert_eq!((line, err.message.as_str()), (2, "illegal weight specified"));
}

fn err(args: &str) -> String {
    parse(&args.split_whitespace().collect::<Vec<_>>()).unwrap_err().message
}

fn ok(args: &str) -> Command {
    parse(&args.split_whitespace().collect::<Vec<_>>()).unwrap()
}

#[test]
fn defaults_users_rely_on() {
    let Command::Change(Op::AddService(cfg)) = ok("-A -t 192.0.2.80:80") else { panic!() };
    assert_eq!(cfg.scheduler, SchedulerKind::Wlc, "wlc by default");
    let Command::Change(Op::AddService(cfg)) = ok("-A -t 192.0.2.80:0 -p") else { panic!() };
    assert_eq!(
        cfg.persistence,
        Some(Persistence { timeout_seconds: 360, prefix_len: 32 }),
        "-p alone is 360 s"
    );
    let Command::Change(Op::AddService(cfg)) =
        ok("--add-service --tcp-service 192.0.2.80:https --persistent 120 --scheduler sed")
    else {
        panic!()
    };
    assert_eq!(
        (cfg.key.port(), cfg.persistence.unwrap().timeout_seconds, cfg.scheduler),
        (443, 120, SchedulerKind::Sed)
    );
    let Command::Change(Op::AddDest(_, d)) = ok("-a -t 192.0.2.80:80 -r 203.0.113.10") else { panic!() };
    assert_eq!((d.port, d.fwd, d.weight), (80, Fwd::Route, 1), "port inherited, -g, weight 1");
    let Command::Change(Op::AddDest(_, d)) =
        ok("-a -t 192.0.2.80:80 -r 203.0.113.10:8080 -m -w 0 -x 100 -y 50")
    else {
        panic!()
    };
    assert_eq!((d.port, d.fwd, d.weight, d.u_threshold, d.l_threshold), (8080, Fwd::Masq, 0, 100, 50));
    assert_eq!(ok("-Ln"), Command::List(ListOptions { numeric: true, ..Default::default() }));
    assert_eq!(ok(""), Command::List(ListOptions::default()));
    assert_eq!(
        ok("-n"),
        Command::List(ListOptions { numeric: true, ..Default::default() }),
        "options alone list"
    );
    assert_eq!(
        ok("-Lnc"),
        Command::List(ListOptions { numeric: true, format: ListFormat::Connections, ..Default::default() })
    );
    assert_eq!(
        ok("-L --timeout"),
        Command::List(ListOptions { format: ListFormat::Timeout, ..Default::default() })
    );
    assert_eq!(
        ok("-L -n --stats --exact -t 192.0.2.80:80"),
        Command::List(ListOptions {
            service: Some(tcp("192.0.2.80", 80)),
            numeric: true,
            format: ListFormat::Stats,
            exact: true,
            nosort: false
        })
    );
    assert_eq!(ok("--set 3600 0 60"), Command::Change(Op::SetTimeouts { tcp: 3600, tcp_fin: 0, udp: 60 }));
    assert_eq!(ok("-Sn"), Command::Save { numeric: true });
    assert_eq!(ok("-Z -t 192.0.2.80:80"), Command::Change(Op::Zero(Some(tcp("192.0.2.80", 80)))));
    assert_eq!(
        ok("-d -t 192.0.2.80:80 -r 203.0.113.10:8080"),
        Command::Change(Op::DelDest(tcp("192.0.2.80", 80), ip("203.0.113.10"), 8080))
    );
    assert_eq!(ok("-C"), Command::Change(Op::Clear));
    assert_eq!(ok("-R"), Command::Restore);
    assert_eq!(ok("-h"), Command::Help);
    let dest = |line: &str| {
        let Command::Change(Op::AddDest(_, d)) = ok(line) else { panic!("{line}") };
        d.fwd
    };
    assert_eq!(
        dest("-a -u 192.0.2.53:53 -r 203.0.113.31 -i --tun-type gue --tun-port 6080 --tun-csum"),
        Fwd::Tunnel(TunnelType::Gue { port: 6080, csum: TunCsum::Csum })
    );
    assert_eq!(
        dest("-a -u 192.0.2.53:53 -r 203.0.113.31 -i --tun-type gre"),
        Fwd::Tunnel(TunnelType::Gre { csum: TunCsum::NoCsum })
    );
    assert_eq!(dest("-a -u 192.0.2.53:53 -r 203.0.113.31 -i --tun-type ipip"), Fwd::Tunnel(TunnelType::Ipip));
}

/// ipvsadm 1.31's tunnel checks (tunnel_types_v_options and process_options), word for word.
#[test]
fn tunnel_option_errors_are_ipvsadms() {
    let a = "-a -t 192.0.2.80:80 -r 203.0.113.31";
    for (line, want) in [
        (
            format!("{a} -i --tun-type gue"),
            "You need to supply the 'tun-port' option for the 'gue' tunnel type",
        ),
        (format!("{a} -i --tun-port 6080"), "Illegal 'tun-port' option with the 'ipip' tunnel type"),
        (
            format!("{a} -i --tun-type gre --tun-remcsum"),
            "Illegal 'tun-remcsum' option with the 'gre' tunnel type",
        ),
        (
            format!("{a} -i --tun-type gre --tun-port 1"),
            "Illegal 'tun-port' option with the 'gre' tunnel type",
        ),
        (
            format!("{a} -i --tun-type gue --tun-port 6080 --tun-nocsum --tun-csum"),
            "The option 'tun-csum' conflicts with the 'tun-nocsum' option in the 'gue' tunnel type",
        ),
        (format!("{a} -m --tun-type gre"), "Tunnel options conflict with forward method"),
        (format!("{a} --tun-csum"), "Tunnel options conflict with forward method"),
        (format!("{a} -i --tun-type gue --tun-port 0"), "illegal tunnel port specified"),
        (format!("{a} -i --tun-type vxlan"), "illegal tunnel type specified"),
        (
            "-A -t 192.0.2.80:80 --tun-type gre".to_owned(),
            "Illegal 'tun-type' option with the 'add-service' command",
        ),
        ("-L --tun-info --tun-info".to_owned(), "multiple 'tun-info' options specified"),
        ("-Sn --tun-info".to_owned(), "Illegal 'tun-info' option with the 'save' command"),
    ] {
        assert_eq!(err(&line), want, "{line}");
    }
}

fn tunnel_snapshot() -> Snapshot {
    let svc_key = tcp("192.0.2.80", 80);
    let dests = vec![
        dest("203.0.113.11", 80, Fwd::Tunnel(TunnelType::Ipip), 1, 0, 0),
        dest("203.0.113.12", 80, Fwd::Tunnel(TunnelType::Gue { port: 6080, csum: TunCsum::NoCsum }), 2, 0, 0),
        dest(
            "203.0.113.13",
            80,
            Fwd::Tunnel(TunnelType::Gue { port: 6079, csum: TunCsum::RemCsum }),
            1,
            0,
            0,
        ),
        dest("203.0.113.14", 80, Fwd::Tunnel(TunnelType::Gre { csum: TunCsum::Csum }), 3, 1, 2),
        dest("203.0.113.15", 80, Fwd::Route, 1, 0, 0),
    ];
    Snapshot {
        table_size: 4096,
        services: vec![svc(ServiceConfig::new(svc_key, SchedulerKind::Rr), dests)],
        timeouts: (900, 120, 300),
        conns: vec![],
    }
}

/// `-Ln --tun-info` as ipvsadm 1.31 prints it (print_title, fwd_tun_info: "n/a" for other methods).
#[test]
fn ln_tun_info_matches_ipvsadm() {
    let want = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn
TCP  192.0.2.80:80 rr
  -> 203.0.113.11:80              Tunnel  ipip          1      0          0         
  -> 203.0.113.12:80              Tunnel  gue:6080:-c   2      0          0         
  -> 203.0.113.13:80              Tunnel  gue:6079:r+c  1      0          0         
  -> 203.0.113.14:80              Tunnel  gre:+c        3      1          2         
  -> 203.0.113.15:80              Route   n/a           1      0          0         
";
    assert_eq!(list(&tunnel_snapshot(), ListFormat::TunInfo), want);
}

/// `-Sn` writes each tunnel server's type and options as ipvsadm 1.31 does (print_tunnel_rule), and
/// `-R` reads them back to the same table.
#[test]
fn save_writes_tunnel_options_and_restore_reads_them_back() {
    let want = "-A -t 192.0.2.80:80 -s rr
-a -t 192.0.2.80:80 -r 203.0.113.11:80 -i -w 1 --tun-type ipip
-a -t 192.0.2.80:80 -r 203.0.113.12:80 -i -w 2 --tun-type gue --tun-port 6080 --tun-nocsum
-a -t 192.0.2.80:80 -r 203.0.113.13:80 -i -w 1 --tun-type gue --tun-port 6079 --tun-remcsum
-a -t 192.0.2.80:80 -r 203.0.113.14:80 -i -w 3 --tun-type gre --tun-csum
-a -t 192.0.2.80:80 -r 203.0.113.15:80 -g -w 1
";
    let saved = listing::save(&tunnel_snapshot(), true);
    assert_eq!(saved, want);
    let mut v = Ipvs::new(100, 100, 1);
    for (_, c) in parse_rules(&saved).unwrap() {
        apply(&mut v, c);
    }
    assert_eq!(listing::save(&Snapshot::from_ipvs(&v, 0), true), want);
}

#[test]
fn ipvsadm_error_texts() {
    assert_eq!(err("-A -t 192.0.2.80:0"), "Zero port specified for non-persistent service");
    assert_eq!(err("-A -D -t 192.0.2.80:80"), "multiple commands specified");
    assert_eq!(err("-A -t 192.0.2.80:80 -s rr -s wlc"), "multiple 'scheduler' options specified");
    assert_eq!(
        err("-A -s rr"),
        "You need to supply the 'service-address' option for the 'add-service' command"
    );
    assert_eq!(
        err("-a -t 192.0.2.80:80"),
        "You need to supply the 'real-server' option for the 'add-server' command"
    );
    assert_eq!(err("-A -t 192.0.2.80:80 -w 3"), "Illegal 'weight' option with the 'add-service' command");
    assert_eq!(
        err("-D -t 192.0.2.80:80 -s rr"),
        "Illegal 'scheduler' option with the 'delete-service' command"
    );
    assert_eq!(
        err("-L -c --timeout"),
        "The option 'timeout' conflicts with 'connection' option in the 'list' command"
    );
    assert_eq!(err("-C -n"), "Illegal 'numeric' option with the 'flush' command");
    assert_eq!(err("-a -t 192.0.2.80:80 -r 203.0.113.10 -w 65536"), "illegal weight specified");
    assert_eq!(err("-a -t 192.0.2.80:80 -r nonsense"), "illegal real server address[:port] specified");
    assert_eq!(err("-A -t 192.0.2.999:80"), "illegal virtual server address[:port] specified");
    assert_eq!(err("-A -t 192.0.2.80:80 -o"), "One-Packet Scheduling is only for UDP virtual services");
    assert_eq!(
        err("-A -t 192.0.2.80:0 -p 10 -M 255.0.255.0"),
        "illegal virtual server persistent mask specified"
    );
    assert_eq!(err("-A -f 0"), "invalid fwmark value `0' specified");
    assert_eq!(err("-A -t 192.0.2.80:80 -6"), "-6 used before -f");
    assert_eq!(err("-A -t 192.0.2.80:80 -s random"), "Scheduler not found: ip_vs_random.ko");
    assert_eq!(err("-A -t 192.0.2.80:80 -s rr -b sh-port"), "invalid scheduler flag sh-port");
    assert_eq!(err("-A -t 192.0.2.80:80 --pe sip"), "option '--pe' is not supported by rvs");
    let e = parse(&["-A", "--frobnicate"]).unwrap_err();
    assert!(e.try_help && e.status == 2, "popt-level errors add the try-help line");
    assert_eq!(parse(&["-A", "-t", "192.0.2.80:0"]).unwrap_err().status, 2);
}

#[test]
fn the_sync_daemon_commands_read_as_ipvsadm_reads_them() {
    assert_eq!(
        ok("--start-daemon master --mcast-interface eth1 --syncid 7"),
        Command::StartDaemon { master: true, mcast_interface: "eth1".into(), syncid: 7 }
    );
    assert_eq!(
        ok("--start-daemon backup"),
        Command::StartDaemon { master: false, mcast_interface: "eth0".into(), syncid: 0 },
        "ipvsadm's defaults: eth0, sync id 0"
    );
    assert_eq!(ok("--stop-daemon backup"), Command::StopDaemon { master: false });
    assert_eq!(err("--start-daemon primary"), "illegal start-daemon parameter specified");
    assert_eq!(err("--stop-daemon x"), "illegal stop_daemon parameter specified");
    assert_eq!(err("--start-daemon master --syncid 256"), "illegal syncid specified");
    assert_eq!(
        err("--start-daemon master --mcast-interface abcdefghijklmnopq"),
        "illegal multicast interface name specified"
    );
    assert_eq!(
        err("--stop-daemon master --mcast-interface eth0"),
        "Illegal 'mcast-interface' option with the 'stop-daemon' command"
    );
    let Command::List(o) = ok("-L --daemon") else { panic!() };
    assert_eq!(o.format, ListFormat::Daemon);
}
