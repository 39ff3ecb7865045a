//! DPDK in the loop, end to end: rvsd cross-connects two veth pairs through net_af_packet ports in a
//! "director" namespace, between a client and a server namespace. Real kernels talk through it (ARP,
//! ping, a TCP download); scapy sends numbered UDP frames, plain and VLAN-tagged; tshark captures them on
//! the far side and decodes them; then rvsd stops on SIGTERM with every mbuf back in its pool.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Daemon, TestBed, log_field, require_root_and_tools, sh};

const RVSD: &str = env!("CARGO_BIN_EXE_rvsd");
const FRAMES: usize = 200;
const VLAN_FRAMES: usize = 50;

#[test]
fn rvsd_forwards_real_traffic_between_namespaces() {
    require_root_and_tools(&["ip", "ethtool", "tshark", "/usr/bin/python3", "curl", "ping"]);
    let mut bed = TestBed::new("l2");
    bed.add_ns("c");
    bed.add_ns("d");
    bed.add_ns("s");
    let (c0, d0) = bed.veth("c", "c0", "d", "d0");
    let (s0, d1) = bed.veth("s", "s0", "d", "d1");
    bed.exec("c", &["ip", "addr", "add", "192.0.2.1/24", "dev", &c0]);
    bed.exec("s", &["ip", "addr", "add", "192.0.2.2/24", "dev", &s0]);
    // A kernel sending into a veth leaves TCP/UDP checksums for "hardware" that a DPDK port is not:
    // finish them in software (ARCHITECTURE.md, "Checksum offload on veth").
    bed.exec("c", &["ethtool", "-K", &c0, "tx", "off"]);
    bed.exec("s", &["ethtool", "-K", &s0, "tx", "off"]);

    let config = bed.dir.join("rvsd.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[eal]
worker_lcores = [1]
memory_mib = 256
hugepages = false
file_prefix = "{p}"

[mempool]
mbufs = 8191
cache_size = 128

[[port]]
name = "client"
device = "net_af_packet0,iface={d0},qpairs=1,framecnt=8192"

[[port]]
name = "server"
device = "net_af_packet1,iface={d1},qpairs=1,framecnt=8192"

[forwarding]
mode = "io"
ports = ["client", "server"]

[management]
stats_interval_seconds = 1

[control]
socket_path = "{sock}"
"#,
            p = bed.prefix,
            sock = bed.dir.join("rvsd.sock").display()
        ),
    )
    .expect("config");

    let mut rvsd = Daemon::spawn(
        bed.cmd("d", &[RVSD, "--config", config.to_str().expect("utf-8")]),
        &bed.dir.join("rvsd.log"),
    );
    rvsd.wait_for_log("forwarding", Duration::from_secs(30));

    // Real kernels through the director: ARP resolution and ICMP both ways.
    bed.exec("c", &["ping", "-c", "3", "-i", "0.2", "-W", "2", "192.0.2.2"]);

    // A real TCP download (1 MiB) through it.
    let www = bed.dir.join("www");
    std::fs::create_dir_all(&www).expect("www");
    let body: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    std::fs::write(www.join("blob"), &body).expect("blob");
    let _http = Daemon::spawn(
        bed.cmd(
            "s",
            &[
                "/usr/bin/python3",
                "-m",
                "http.server",
                "8080",
                "--bind",
                "192.0.2.2",
                "--directory",
                www.to_str().expect("utf-8"),
            ],
        ),
        &bed.dir.join("http.log"),
    );
    let got = {
        let mut last = None;
        for _ in 0..50 {
            let out = bed
                .cmd("c", &["curl", "-sS", "--max-time", "10", "http://192.0.2.2:8080/blob"])
                .output()
                .expect("curl");
            if out.status.success() {
                last = Some(out.stdout);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        last.expect("the download through rvsd succeeds")
    };
    assert!(got == body, "the 1 MiB body arrived intact ({} bytes)", got.len());

    // scapy sends, tshark captures on the far side: both independent of our code.
    let pcap = bed.dir.join("server.pcap");
    let mut tshark = Daemon::spawn(
        bed.cmd(
            "s",
            &[
                "tshark",
                "-n",
                "-i",
                &s0,
                "-f",
                "udp dst port 9999 or (vlan and udp dst port 9999)",
                "-c",
                &(FRAMES + VLAN_FRAMES).to_string(),
                "-a",
                "duration:30",
                "-w",
                pcap.to_str().expect("utf-8"),
            ],
        ),
        &bed.dir.join("tshark.log"),
    );
    tshark.wait_for_log("Capturing on", Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let s_mac = bed.mac("s", &s0);
    let send = bed.dir.join("send_udp.py");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scapy/send_udp.py"), &send)
        .expect("copy script");
    let send = send.to_str().expect("utf-8");
    bed.exec(
        "c",
        &["/usr/bin/python3", send, &c0, &s_mac, "192.0.2.1", "192.0.2.2", "9999", &FRAMES.to_string()],
    );
    bed.exec(
        "c",
        &[
            "/usr/bin/python3",
            send,
            &c0,
            &s_mac,
            "192.0.2.1",
            "192.0.2.2",
            "9999",
            &VLAN_FRAMES.to_string(),
            "100",
        ],
    );
    let st = tshark.wait(Duration::from_secs(40));
    assert!(st.success(), "tshark: {}", tshark.log_text());

    let fields = sh(&[
        "tshark",
        "-n",
        "-r",
        pcap.to_str().expect("utf-8"),
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-T",
        "fields",
        "-E",
        "separator=;",
        "-e",
        "vlan.id",
        "-e",
        "ip.src",
        "-e",
        "ip.dst",
        "-e",
        "ip.checksum.status",
        "-e",
        "udp.srcport",
        "-e",
        "udp.dstport",
        "-e",
        "udp.checksum.status",
        "-e",
        "udp.length",
        "-e",
        "data.data",
    ]);
    let text = String::from_utf8_lossy(&fields.stdout);
    let (mut plain, mut tagged) = (BTreeSet::new(), BTreeSet::new());
    for line in text.lines() {
        let f: Vec<&str> = line.split(';').collect();
        assert_eq!(f.len(), 9, "{line}");
        assert_eq!((f[1], f[2], f[5]), ("192.0.2.1", "192.0.2.2", "9999"), "{line}");
        // tshark checksum status: 1 = Good, 0 = Bad, 2 = Unverified.
        assert_eq!(f[3], "1", "IPv4 header checksum good per tshark: {line}");
        assert_eq!(f[6], "1", "UDP checksum good per tshark: {line}");
        let i: usize = f[4].parse::<usize>().expect("port") - 20000;
        let payload = hex(f[8]);
        assert_eq!(&payload[..9], format!("rvs-{i:05}").as_bytes(), "{line}");
        assert_eq!(payload.len(), 18 + (i * 37) % 1400, "payload length of frame {i}");
        assert_eq!(f[7].parse::<usize>().expect("len"), payload.len() + 8);
        let fresh = match f[0] {
            "" => plain.insert(i),
            "100" => tagged.insert(i),
            other => panic!("unexpected VLAN {other}: {line}"),
        };
        assert!(fresh, "frame {i} (vlan {:?}) arrived twice", f[0]);
    }
    assert_eq!(plain.len(), FRAMES, "every plain frame arrived once");
    assert_eq!(tagged.len(), VLAN_FRAMES, "every VLAN-tagged frame arrived once");

    // Clean stop: exit 0, counters account for the traffic, every mbuf back in the pool.
    rvsd.signal("-TERM");
    let st = rvsd.wait(Duration::from_secs(20));
    let log = rvsd.log_text();
    assert!(st.success(), "rvsd exit {st}:\n{log}");
    assert_eq!(log_field(&log, "mempool after shutdown", "in_use"), Some(0), "{log}");
    let fwd = log_field(&log, "worker totals", "tx_packets").expect("worker totals");
    assert!(fwd >= (FRAMES + VLAN_FRAMES) as u64 + 700, "forwarded {fwd} frames (UDP + 1 MiB of TCP + ping)");
    let client_rx = log_field(&log, "port totals port=client", "rx_packets").expect("client totals");
    let server_tx = log_field(&log, "port totals port=server", "tx_packets").expect("server totals");
    assert!(
        client_rx >= (FRAMES + VLAN_FRAMES) as u64 && server_tx >= (FRAMES + VLAN_FRAMES) as u64,
        "{log}"
    );
    assert!(log.contains("rvsd stopped cleanly"));
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex")).collect()
}
