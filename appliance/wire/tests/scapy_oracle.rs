//! The independent oracle (test layer 3): scapy builds the packets (oracle/gen.py), rvs-wire rewrites
//! them, and scapy decodes the result and recomputes every checksum (oracle/check.py). Our own parser
//! never judges our own output here.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;

use rvs_wire::arp::{self, ArpPacket};
use rvs_wire::icmpv4;
use rvs_wire::icmpv6;
use rvs_wire::ipv4::Ipv4Packet;
use rvs_wire::rewrite::{self, Egress, Encap, NatMapping, TtlPolicy, TunOuter, Verdict};
use rvs_wire::tcp::TcpSegment;
use rvs_wire::{PacketBuffer, VecBuffer};

const PYTHON: &str = "/usr/bin/python3";
const ME: [u8; 6] = [0x02, 0, 0, 0, 0, 0xd1];
const PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0xc1];
const RS_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];
const ME_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

fn egress(ttl: TtlPolicy) -> Egress {
    Egress { src_mac: ME, dst_mac: RS_MAC, mtu: 1500, ttl, offload: Default::default() }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex")).collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Applies the rewrite a case's name asks for; returns the output frame.
fn run_case(name: &str, input: &[u8]) -> Vec<u8> {
    let v4 = NatMapping {
        virt: (Ipv4Addr::new(192, 0, 2, 80).into(), 80),
        real: (Ipv4Addr::new(203, 0, 113, 10).into(), 8080),
    };
    let v6 = NatMapping {
        virt: ("2001:db8::80".parse::<Ipv6Addr>().expect("v6").into(), 80),
        real: ("2001:db8:2::10".parse::<Ipv6Addr>().expect("v6").into(), 8080),
    };
    let is6 = name.contains('6');
    let mut b = VecBuffer::new(input);
    let to_client = Egress { dst_mac: PEER, ..egress(TtlPolicy::Decrement) };
    let outer4 = TunOuter {
        src: ME_IP.into(),
        dst: Ipv4Addr::new(203, 0, 113, 10).into(),
        ttl: 64,
        ident: 1,
        encap: Default::default(),
    };
    let outer6 = TunOuter {
        src: "2001:db8:2::1".parse::<Ipv6Addr>().expect("v6").into(),
        dst: "2001:db8:2::10".parse::<Ipv6Addr>().expect("v6").into(),
        ttl: 64,
        ident: 0,
        encap: Default::default(),
    };
    let verdict = match name {
        n if n.starts_with("nat_in_") => {
            rewrite::nat_in(&mut b, &egress(TtlPolicy::Decrement), if is6 { &v6 } else { &v4 })
        }
        n if n.starts_with("nat_out_") => rewrite::nat_out(&mut b, &to_client, if is6 { &v6 } else { &v4 }),
        n if n.starts_with("natfrag_") => {
            let info = rewrite::parse_ip(b.bytes()).expect("parse");
            let first = Ipv4Packet::new_checked_header(&input[14..]).expect("ipv4").frag_offset() == 0;
            if n.starts_with("natfrag_in_") {
                rewrite::nat_fragment(&mut b, &info, &egress(TtlPolicy::Decrement), &v4, true, first)
            } else {
                rewrite::nat_fragment(&mut b, &info, &to_client, &v4, false, first)
            }
        }
        "dr_keep_v4" => rewrite::dr(&mut b, &egress(TtlPolicy::Preserve)),
        n if n.starts_with("dr_") => rewrite::dr(&mut b, &egress(TtlPolicy::Decrement)),
        "tun_4in6" | "tun_6in6" => rewrite::tun(&mut b, &egress(TtlPolicy::Decrement), &outer6),
        "mss_tun_4in4" => {
            // What the pipeline does for TUN servers with tun_clamp_mss: the MTU less 60 bytes.
            let info = rewrite::parse_ip(b.bytes()).expect("parse");
            let end = info.l2_len + info.ip_len;
            let mut t = TcpSegment::new_checked(&mut b.bytes_mut()[info.l4_offset..end]).expect("tcp");
            assert!(t.clamp_mss(1500 - 60), "clamped");
            rewrite::tun(&mut b, &egress(TtlPolicy::Decrement), &outer4)
        }
        n if n.starts_with("tun_") || n.starts_with("gre") || n.starts_with("gue") || n == "ttl_expired" => {
            let encap = match n.split('_').next() {
                Some("gre") => Encap::Gre { csum: false },
                Some("grecsum") => Encap::Gre { csum: true },
                Some("gue") => Encap::Gue { sport: 50000, dport: 6080, csum: false },
                Some("guecsum") => Encap::Gue { sport: 50001, dport: 6080, csum: true },
                _ => Encap::Ipip,
            };
            let outer = TunOuter { encap, ..outer4 };
            match rewrite::tun(&mut b, &egress(TtlPolicy::Decrement), &outer).expect("tun") {
                Verdict::Forward => Ok(Verdict::Forward),
                v => {
                    // The director answers with the ICMP error the verdict names, quoting the original.
                    let kind = match v {
                        Verdict::FragNeeded { mtu } => icmpv4::ErrorKind::FragNeeded { mtu },
                        Verdict::TtlExceeded => icmpv4::ErrorKind::TtlExceeded,
                        other => panic!("{name}: unexpected verdict {other:?}"),
                    };
                    let mut out = vec![0u8; 1600];
                    let n = icmpv4::build_error(&mut out, PEER, ME, ME_IP, kind, &b.bytes()[14..])
                        .expect("error");
                    out.truncate(n);
                    return out;
                }
            }
        }
        n if n.starts_with("icmp_in_") => rewrite::icmp_nat_in(&mut b, &egress(TtlPolicy::Decrement), &v4),
        n if n.starts_with("icmp_out_") => rewrite::icmp_nat_out(&mut b, &to_client, &v4),
        n if n.starts_with("icmp6_in_") => rewrite::icmp_nat_in(&mut b, &egress(TtlPolicy::Decrement), &v6),
        n if n.starts_with("icmp6_out_") => rewrite::icmp_nat_out(&mut b, &to_client, &v6),
        "echo_v4" => rewrite::echo_reply_v4(&mut b).map(|()| Verdict::Forward),
        "echo_v6" => rewrite::echo_reply_v6(&mut b).map(|()| Verdict::Forward),
        "arp_who_has" => {
            let req = ArpPacket::new_checked(&input[14..]).expect("arp");
            let mut out = vec![0u8; 60];
            let n = arp::build_reply(&mut out, &req, ME).expect("reply");
            out.truncate(n);
            return out;
        }
        "vlan_pop" => {
            assert_eq!(rewrite::vlan::pop_vlan(&mut b), Ok(100));
            return b.bytes().to_vec();
        }
        "vlan_push" => {
            let mut b = VecBuffer::with_room(input, 4, 0);
            rewrite::vlan::push_vlan(&mut b, 100).expect("push");
            return b.bytes().to_vec();
        }
        "nd_ns" => {
            let mut out = vec![0u8; 128];
            let n = icmpv6::build_neighbor_advert(&mut out, &input[14..], PEER, ME).expect("na");
            out.truncate(n);
            return out;
        }
        other => panic!("no rewrite for case {other}"),
    };
    assert_eq!(verdict, Ok(Verdict::Forward), "{name}");
    b.bytes().to_vec()
}

#[test]
fn scapy_judges_every_rewrite() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle");
    let gen_out = Command::new(PYTHON)
        .arg(format!("{dir}/gen.py"))
        .output()
        .expect("python3 with scapy (apt-get install python3-scapy, or run scripts/setup.sh)");
    assert!(gen_out.status.success(), "gen.py: {}", String::from_utf8_lossy(&gen_out.stderr));
    let cases = String::from_utf8(gen_out.stdout).expect("utf-8");
    let mut results = String::new();
    let mut count = 0;
    for line in cases.lines() {
        let (name, h) = line.split_once('\t').expect("name<TAB>hex");
        let input = hex(h);
        let output = run_case(name, &input);
        results.push_str(&format!("{name}\t{h}\t{}\n", to_hex(&output)));
        count += 1;
    }
    assert!(count >= 25, "gen.py produced {count} cases");
    let path = std::env::temp_dir().join(format!("rvs-oracle-{}.tsv", std::process::id()));
    std::fs::File::create(&path).and_then(|mut f| f.write_all(results.as_bytes())).expect("write cases");
    let check = Command::new(PYTHON).arg(format!("{dir}/check.py")).arg(&path).output().expect("check.py");
    let report = String::from_utf8_lossy(&check.stdout);
    println!("{report}{}", String::from_utf8_lossy(&check.stderr));
    let _ = std::fs::remove_file(&path);
    assert!(check.status.success(), "scapy rejected some rewrites:\n{report}");
    // Each case, plus the two datagrams reassembled from the fragment cases.
    assert!(report.contains(&format!("{} passed, 0 failed", count + 2)), "{report}");
}

/// Golden pairs for the frame builders (`wire::repr`), checksums included: scapy builds the same
/// frames from the same fields, and the bytes must be identical, every header's checksum and
/// length with them.
#[test]
fn repr_frames_are_byte_for_byte_scapys() {
    use rvs_wire::arp::ArpRepr;
    use rvs_wire::icmpv6;
    use rvs_wire::ip_proto;
    use rvs_wire::repr::{Frame6Repr, FrameRepr, Ipv4Repr, Ipv6Repr, L4Repr, TcpRepr};
    let ip6 = Ipv6Repr::new("2001:db8:c::10".parse().unwrap(), "2001:db8:f::80".parse().unwrap());
    let nd = |build: &dyn Fn(&mut [u8]) -> rvs_wire::Result<usize>| {
        let mut f = vec![0; 128];
        let n = build(&mut f).unwrap();
        f.truncate(n);
        f
    };
    let arp_frame = |r: ArpRepr, dst| {
        let mut f = vec![0; rvs_wire::arp::FRAME_LEN];
        r.emit(&mut f, dst).unwrap();
        f
    };
    use rvs_wire::tcp::flags;
    let (a, b) = ([2, 0, 0, 0, 0, 0xc1], [2, 0, 0, 0, 0, 0xd1]);
    let ip = Ipv4Repr {
        ttl: 61,
        tos: 0x10,
        ident: 0x1234,
        ..Ipv4Repr::new([198, 51, 100, 7].into(), [192, 0, 2, 80].into())
    };
    let tcp = TcpRepr {
        seq: 0x0102_0304,
        ack: 0x0a0b_0c0d,
        window: 29200,
        mss: Some(1460),
        ..TcpRepr::new(40000, 80, flags::SYN | flags::ACK)
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "Ether(src=A, dst=B) / IP(src='198.51.100.7', dst='192.0.2.80', ttl=61, tos=0x10, id=0x1234, flags='DF') \
             / TCP(sport=40000, dport=80, seq=0x01020304, ack=0x0a0b0c0d, flags='SA', window=29200, options=[('MSS', 1460)])",
            FrameRepr::tcp(a, b, ip, tcp).emit(),
        ),
        (
            "Ether(src=A, dst=B) / IP(src='198.51.100.7', dst='192.0.2.80', ttl=61, tos=0x10, id=0x1234, flags='DF') \
             / TCP(sport=40001, dport=443, seq=1000, flags='PA', window=64240) / Raw(b'hello, world')",
            FrameRepr {
                payload: b"hello, world".to_vec(),
                ..FrameRepr::tcp(a, b, ip, TcpRepr::new(40001, 443, flags::PSH | flags::ACK))
            }
            .emit(),
        ),
        (
            "Ether(src=A, dst=B) / IP(src='198.51.100.7', dst='192.0.2.80', ttl=61, tos=0x10, id=0x1234, flags='DF') \
             / UDP(sport=5353, dport=53) / Raw(b'odd-length query')",
            FrameRepr::udp(a, b, ip, (5353, 53), b"odd-length query").emit(),
        ),
        (
            "Ether(src=A, dst=B) / IP(src='198.51.100.7', dst='192.0.2.80', ttl=61, tos=0x10, id=0x1234, flags='MF', \
             frag=3, proto=17) / Raw(bytes([7]) * 16)",
            FrameRepr {
                ip: Ipv4Repr { more_frags: true, dont_frag: false, frag_offset: 24, ..ip },
                l4: L4Repr::Raw { protocol: ip_proto::UDP },
                payload: vec![7; 16],
                src_mac: a,
                dst_mac: b,
            }
            .emit(),
        ),
        (
            "Ether(src=A, dst=B) / IP(src='198.51.100.7', dst='192.0.2.80', ttl=61, tos=0x10, id=0x1234, flags='DF') \
             / ICMP(type=8, code=0, id=0x4242, seq=7) / Raw(b'ping!')",
            FrameRepr::icmp(a, b, ip, (8, 0, 0x4242_0007), b"ping!").emit(),
        ),
        (
            "Ether(src=A, dst=B) / IP(src='198.51.100.7', dst='192.0.2.80', ttl=61, tos=0x10, id=0x1234, flags='DF') \
             / ICMP(type=3, code=4, nexthopmtu=1400) / Raw(bytes(range(28)))",
            FrameRepr::icmp(a, b, ip, (3, 4, 1400), &(0..28).collect::<Vec<u8>>()).emit(),
        ),
        (
            "Ether(src=A, dst='ff:ff:ff:ff:ff:ff') / ARP(op=1, hwsrc=A, psrc='192.0.2.1', pdst='192.0.2.80')",
            arp_frame(
                ArpRepr::request(a, [192, 0, 2, 1].into(), [192, 0, 2, 80].into()),
                rvs_wire::ethernet::BROADCAST,
            ),
        ),
        (
            "Ether(src=A, dst=B) / ARP(op=2, hwsrc=A, psrc='192.0.2.80', hwdst=B, pdst='192.0.2.1')",
            arp_frame(
                ArpRepr {
                    operation: rvs_wire::arp::OP_REPLY,
                    sender_mac: a,
                    sender_ip: [192, 0, 2, 80].into(),
                    target_mac: b,
                    target_ip: [192, 0, 2, 1].into(),
                },
                b,
            ),
        ),
        (
            "Ether(src=A, dst=B) / IPv6(src='2001:db8:c::10', dst='2001:db8:f::80', hlim=61, tc=0x20) \
             / TCP(sport=40000, dport=80, seq=0x01020304, ack=0x0a0b0c0d, flags='SA', window=29200, options=[('MSS', 1460)])",
            Frame6Repr::tcp(a, b, Ipv6Repr { hop_limit: 61, traffic_class: 0x20, ..ip6 }, tcp).emit(),
        ),
        (
            "Ether(src=A, dst=B) / IPv6(src='2001:db8:c::10', dst='2001:db8:f::80') / UDP(sport=5353, dport=53) / Raw(b'v6 query')",
            Frame6Repr::udp(a, b, ip6, (5353, 53), b"v6 query").emit(),
        ),
        (
            "Ether(src=A, dst=B) / IPv6(src='2001:db8:c::10', dst='2001:db8:f::80') / ICMPv6EchoRequest(id=0x4242, seq=7, data=b'ping6')",
            Frame6Repr::icmp(a, b, ip6, (128, 0, 0x4242_0007), b"ping6").emit(),
        ),
        (
            "Ether(src=A, dst='33:33:ff:00:00:11') / IPv6(src='2001:db8:b::1', dst='ff02::1:ff00:11', hlim=255) \
             / ICMPv6ND_NS(tgt='2001:db8:b::11') / ICMPv6NDOptSrcLLAddr(lladdr=A)",
            nd(&|out: &mut [u8]| {
                let (ours, target) = ("2001:db8:b::1".parse().unwrap(), "2001:db8:b::11".parse().unwrap());
                icmpv6::build_neighbor_solicit(out, a, &ours, &target)
            }),
        ),
        (
            "Ether(src=A, dst='33:33:00:00:00:01') / IPv6(src='2001:db8:f::80', dst='ff02::1', hlim=255) \
             / ICMPv6ND_NA(tgt='2001:db8:f::80', R=0, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=A)",
            nd(&|out: &mut [u8]| {
                icmpv6::build_unsolicited_advert(out, a, &"2001:db8:f::80".parse().unwrap())
            }),
        ),
    ];
    let mut script = String::from(
        "from scapy.all import Ether, IP, IPv6, TCP, UDP, ICMP, ARP, ICMPv6ND_NS, ICMPv6ND_NA, \
         ICMPv6NDOptSrcLLAddr, ICMPv6NDOptDstLLAddr, ICMPv6EchoRequest, Raw, raw\nA, B = '02:00:00:00:00:c1', '02:00:00:00:00:d1'\n",
    );
    for (expr, _) in &cases {
        script.push_str(&format!("print(raw({expr}).hex())\n"));
    }
    let out = Command::new(PYTHON).args(["-c", &script]).output().expect("python3 with scapy");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let scapy: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(scapy.len(), cases.len());
    for ((expr, ours), theirs) in cases.iter().zip(&scapy) {
        assert_eq!(&to_hex(ours), theirs, "{expr}");
    }
}
