//! The director end to end, on the namespace test bed of tests/testbed/testbed.sh: a client and a
//! router namespace, rvsd on two net_af_packet ports, and three real servers running nginx, set up as
//! LVS guides set up real servers. Every scenario sends real traffic (curl, UDP, scapy) and checks
//! what came back, what rvsadm lists and what the exporter counts.
//!
//! Each test builds its own bed; they run one at a time (a lock), because each rvsd busy-polls.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{Daemon, sh};

const RVSD: &str = env!("CARGO_BIN_EXE_rvsd");
const RVSADM: &str = env!("CARGO_BIN_EXE_rvsadm");
const PY: &str = "/usr/bin/python3";

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn testbed_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testbed/testbed.sh")
}

/// The test bed with rvsd running in it; torn down on drop.
struct Bed {
    prefix: String,
    dir: PathBuf,
    rvsd: Option<Daemon>,
    _lock: MutexGuard<'static, ()>,
}

impl Bed {
    fn up(tag: &str) -> Self {
        Self::up_with(tag, 1)
    }

    /// The bed with `workers` director workers, each with a queue pair on both ports.
    fn up_with(tag: &str, workers: usize) -> Self {
        Self::up_full(tag, workers, "")
    }

    /// The bed with `front_extra` added to the front port's section of rvsd's config.
    fn up_full(tag: &str, workers: usize, front_extra: &str) -> Self {
        Self::up_extra(tag, workers, [front_extra, "", "", ""])
    }

    /// The bed with extra lines in rvsd's config: `[front port, back port, [control], [forwarding]]`;
    /// the files they name may be written by `prepare` into the bed's directory before rvsd starts.
    fn up_extra(tag: &str, workers: usize, extra: [&str; 4]) -> Self {
        Self::up_prepared(tag, workers, extra, |_| {})
    }

    fn up_prepared(tag: &str, workers: usize, extra: [&str; 4], prepare: impl FnOnce(&Path)) -> Self {
        Self::up_general(tag, workers, extra, prepare, |c| c)
    }

    /// The bed with rvsd's configuration passed through `edit` before rvsd starts.
    fn up_general(
        tag: &str,
        workers: usize,
        extra: [&str; 4],
        prepare: impl FnOnce(&Path),
        edit: impl FnOnce(String) -> String,
    ) -> Self {
        let lock = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        common::require_root_and_tools(&["ip", "nginx", "curl", "clang", "ethtool", "tshark"]);
        let prefix = format!("{}{}", tag, std::process::id() % 1000);
        assert!(prefix.len() <= 6, "{prefix}: the bed's interface names need a short prefix");
        let dir = std::env::temp_dir().join(format!("rvs-director-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("work dir");
        let mut bed = Bed { prefix, dir, rvsd: None, _lock: lock };
        sh(&[testbed_script().to_str().expect("path"), "up", &bed.prefix, bed.dir.to_str().expect("dir")]);
        prepare(&bed.dir);
        let config = bed.dir.join("rvsd.toml");
        std::fs::write(&config, edit(bed.config(workers, extra))).expect("config");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &bed.ns("d"), RVSD, "--config"]).arg(&config);
        let mut d = Daemon::spawn(cmd, &bed.dir.join("rvsd.log"));
        d.wait_for_log("forwarding", Duration::from_secs(20));
        bed.rvsd = Some(d);
        bed
    }

    fn config(&self, workers: usize, extra: [&str; 4]) -> String {
        director_config(&Director {
            prefix: &self.prefix,
            ns: "d",
            dir: &self.dir,
            socket: "rvsd.sock",
            front: "192.0.2.2/24",
            back: "203.0.113.1/24",
            workers,
            extra,
        })
    }

    fn ns(&self, n: &str) -> String {
        format!("{}{}", self.prefix, n)
    }

    /// rvsadm with `args`; (status, stdout, stderr).
    fn adm_run(&self, args: &str, stdin: &str) -> (i32, String, String) {
        common::rvsadm(RVSADM, &self.dir.join("rvsd.sock"), args, stdin)
    }

    fn adm(&self, args: &str) -> String {
        let (code, out, err) = self.adm_run(args, "");
        assert_eq!(code, 0, "rvsadm {args}: {err}");
        out
    }

    /// Applies ipvsadm rules (one command per line) with -R.
    fn rules(&self, text: &str) {
        let (code, _, err) = self.adm_run("-R", text);
        assert_eq!(code, 0, "rvsadm -R: {err}\n{text}");
    }

    fn in_ns(&self, n: &str, args: &[&str]) -> Output {
        self.cmd_in_ns(n, args).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// A command to run in namespace `n`, not started yet.
    fn cmd_in_ns(&self, n: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(n)]).args(args);
        c
    }

    /// One HTTP GET from the client namespace (from `src`), the body.
    /// tshark on the server LAN (the router's side of the director's back port), writing `file`
    /// with the capture filter `filter`; it is given 1.5 s to start. Stop it with SIGINT.
    fn capture_back(&self, file: &Path, filter: &str) -> std::process::Child {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns("r"), "tshark", "-q", "-i", &format!("{}bd", self.prefix), "-w"])
            .arg(file)
            .args(["-f", filter])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tshark");
        std::thread::sleep(Duration::from_millis(1500));
        child
    }

    /// The client downloads server `server`'s 1 MiB file through `vip`; every byte must be right.
    fn assert_whole_download(&self, vip: &str, server: u8) {
        let out = self.in_ns("c", &["sh", "-c", &format!("curl -sS -m 20 http://{vip}/big.bin | sha256sum")]);
        let want = sh(&["sha256sum", self.dir.join(format!("s{server}/www/big.bin")).to_str().expect("p")]);
        let (got, want) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&want.stdout));
        assert_eq!(got.split_whitespace().next(), want.split_whitespace().next(), "1 MiB through {vip}");
    }

    fn get(&self, url: &str, src: &str) -> String {
        let out = self.in_ns("c", &["curl", "-sS", "-m", "5", "--interface", src, url]);
        assert!(out.status.success(), "curl {url} from {src}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `n` requests, each on a new connection, from `src`: the servers that answered, in order.
    fn gets(&self, url: &str, src: &str, n: usize) -> Vec<String> {
        let mut args: Vec<String> =
            ["curl", "-sS", "-m", "60", "--interface", src, "-H", "Connection: close"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        args.extend(std::iter::repeat_n(url.to_owned(), n));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.in_ns("c", &args);
        assert!(out.status.success(), "curl x{n} {url}: {}", String::from_utf8_lossy(&out.stderr));
        let got: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
        assert_eq!(got.len(), n, "one answer per request: {got:?}");
        got
    }

    /// Sends `count` UDP datagrams of `size` bytes from `src` to `dst:port`, one at a time, each
    /// waiting for its echo; returns (replies, answers per server).
    fn udp(&self, src: &str, dst: &str, port: u16, count: u32, size: usize) -> (u32, BTreeMap<String, u32>) {
        let script = format!(
            r#"
import socket, collections
s = socket.socket(socket.AF_INET6 if ":" in "{dst}" else socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("{src}", 0))
s.settimeout(1.0)
got, by = 0, collections.Counter()
for i in range({count}):
    s.sendto(b"%0{size}d" % i, ("{dst}", {port}))
    try:
        data, _ = s.recvfrom(4096)
    except socket.timeout:
        continue
    if data.endswith(b"%0{size}d" % i):
        got += 1
        by[data.split()[0].decode()] += 1
print(got, " ".join(f"{{k}}={{v}}" for k, v in sorted(by.items())))
"#
        );
        let out = self.in_ns("c", &[PY, "-c", &script]);
        assert!(out.status.success(), "udp client: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut f = text.split_whitespace();
        let got = f.next().and_then(|g| g.parse().ok()).expect("count");
        let by = f
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.parse().expect("n")))
            .collect();
        (got, by)
    }

    /// The exporter's text, scraped inside the director's namespace.
    fn metrics(&self) -> String {
        let out = self.in_ns("d", &["curl", "-sf", "-m", "5", "http://127.0.0.1:9510/metrics"]);
        assert!(out.status.success(), "scrape failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The worker's drop counter for `reason`.
    fn dropped(&self, reason: &str) -> u64 {
        metric(&self.metrics(), "rvs_worker_dropped_packets_total", &format!("reason=\"{reason}\""))
    }

    /// Stops nginx on real server `i` (1..=3), as an operator or a crash would.
    fn stop_nginx(&self, i: u8) {
        let pid = std::fs::read_to_string(self.dir.join(format!("nginx-s{i}.pid"))).expect("nginx pid");
        sh(&["kill", pid.trim()]);
        for _ in 0..50 {
            if !self.dir.join(format!("nginx-s{i}.pid")).exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nginx on s{i} did not stop");
    }

    fn start_nginx(&self, i: u8) {
        let conf = self.dir.join(format!("s{i}/nginx.conf"));
        let out =
            self.in_ns(&format!("s{i}"), &["nginx", "-c", conf.to_str().expect("path"), "-g", "user root;"]);
        assert!(out.status.success(), "nginx on s{i}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Polls `rvsadm -Ln` until `ok` holds of it; the time that took.
    fn wait_listing(&self, what: &str, limit: Duration, ok: impl Fn(&str) -> bool) -> Duration {
        let t = std::time::Instant::now();
        loop {
            let l = self.adm("-Ln");
            if ok(&l) {
                return t.elapsed();
            }
            assert!(t.elapsed() < limit, "{what}: not within {limit:?}:\n{l}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        self.rvsd.as_ref().map(Daemon::log_text).unwrap_or_default()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(mut d) = self.rvsd.take() {
            d.signal("-TERM");
            let st = d.wait(Duration::from_secs(10));
            if !std::thread::panicking() {
                assert!(st.success(), "rvsd exit {st}:\n{}", d.log_text());
                assert!(d.log_text().contains("in_use=0"), "every mbuf back in the pool:\n{}", d.log_text());
            }
        }
        let _ = Command::new(testbed_script()).args(["down", &self.prefix]).arg(&self.dir).output();
        if std::env::var_os("RVS_KEEP_TEST_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One director of the bed: which namespace, its addresses, where its files go, its extra lines
/// (`[front port, back port, [control], [forwarding]]`).
#[derive(Clone, Copy)]
struct Director<'a> {
    prefix: &'a str,
    ns: &'a str,
    dir: &'a Path,
    socket: &'a str,
    front: &'a str,
    back: &'a str,
    workers: usize,
    extra: [&'a str; 4],
}

/// rvsd's configuration for a director of the bed.
fn director_config(d: &Director<'_>) -> String {
    let Director { prefix: p, ns: x, dir, socket, front, back, workers, extra } = *d;
    let [front_extra, back_extra, control_extra, forwarding_extra] = extra;
    let lcores: Vec<String> = (1..=workers).map(|l| l.to_string()).collect();
    // This machine may have fewer CPUs than lcores: the workers share what there is.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu_of: Vec<String> = (0..=workers).map(|l| (l % cpus).to_string()).collect();
    format!(
        r#"
[eal]
main_lcore = 0
worker_lcores = [{lcores}]
lcore_cpus = [{cpu_of}]
hugepages = false
memory_mib = 256
file_prefix = "rvs-{p}{x}"

[mempool]
mbufs = 32767
cache_size = 128

[[port]]
name = "front"
device = "net_af_packet0,iface={p}{x}f,qpairs={workers},framecnt=8192"
address = "{front}"
{front_extra}

[[port]]
name = "back"
device = "net_af_packet1,iface={p}{x}b,qpairs={workers},framecnt=8192"
address = "{back}"
{back_extra}

[forwarding]
mode = "director"
# af_packet's fanout hash is not Toeplitz and has no redirection table: asking for prediction must
# fall back to the hand-over (two_workers_share_the_clients_and_nat_stays_whole checks it).
nat_reply_steering = "toeplitz"
{forwarding_extra}

[[route]]
destination = "0.0.0.0/0"
gateway = "192.0.2.1"

[[classifier]]
destination = "192.0.2.90"
protocol = "tcp"
ports = [80, 443]
mark = 1

[control]
socket_path = "{}/{socket}"
connections_per_worker = 65536
{control_extra}

[metrics]
listen_address = "127.0.0.1:9510"

[management]
stats_interval_seconds = 0
"#,
        dir.display(),
        lcores = lcores.join(", "),
        cpu_of = cpu_of.join(", "),
    )
}

/// The value of the first sample of `name` whose labels contain `labels`.
/// tshark's decode of `cap`: the `fields` of each packet that `filter` selects, '|'-separated, with
/// IPv4 and TCP checksums verified (their `.status` fields: 1 good, 0 bad).
fn tshark_fields(cap: &Path, filter: &str, fields: &[&str]) -> Vec<String> {
    let mut args = vec!["-r", cap.to_str().expect("p"), "-o", "ip.check_checksum:TRUE"];
    args.extend(["-o", "tcp.check_checksum:TRUE", "-Y", filter, "-T", "fields", "-E", "separator=|"]);
    for f in fields {
        args.extend(["-e", f]);
    }
    let out = Command::new("tshark").args(&args).output().expect("tshark -r");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

fn metric(text: &str, name: &str, labels: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .next()
        .unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{text}"))
}

fn count<'a>(names: impl IntoIterator<Item = &'a String>) -> BTreeMap<&'a str, usize> {
    let mut m = BTreeMap::new();
    for n in names {
        *m.entry(n.as_str()).or_default() += 1;
    }
    m
}

#[test]
fn rr_alternates_and_wrr_splits_one_to_two() {
    let bed = Bed::up("rr");
    bed.rules(
        "-A -t 192.0.2.80:80 -s rr\n\
         -a -t 192.0.2.80:80 -r 203.0.113.11:80 -m\n\
         -a -t 192.0.2.80:80 -r 203.0.113.12:80 -m\n\
         -a -t 192.0.2.80:80 -r 203.0.113.13:80 -m\n",
    );
    let got = bed.gets("http://192.0.2.80/", "198.51.100.10", 9);
    for w in got.windows(3) {
        let mut w = w.to_vec();
        w.sort();
        assert_eq!(w, ["s1", "s2", "s3"], "rr takes the servers in turn: {got:?}");
    }

    bed.adm("-E -t 192.0.2.80:80 -s wrr");
    bed.adm("-d -t 192.0.2.80:80 -r 203.0.113.13:80");
    bed.adm("-e -t 192.0.2.80:80 -r 203.0.113.12:80 -m -w 2");
    let got = bed.gets("http://192.0.2.80/", "198.51.100.10", 300);
    let c = count(&got);
    let (s1, s2) = (c.get("s1").copied().unwrap_or(0), c.get("s2").copied().unwrap_or(0));
    assert_eq!(s1 + s2, 300, "{c:?}");
    assert!((95..=105).contains(&s1) && (190..=210).contains(&s2), "wrr 1:2 within 5 %: {c:?}");
    let stats = bed.adm("-Ln --stats");
    assert!(stats.contains("TCP  192.0.2.80:80                     309"), "{stats}");
}

/// ipvsadm 1.31's other tunnel types to real servers that decapsulate them (the bed's XDP program
/// does what a GRE interface or a fou/GUE port would): a GUE server (UDP 6080, with the UDP checksum)
/// and a GRE one (no checksum) each serve a whole 1 MiB download, tshark on the server LAN decodes
/// the GRE packets with their inner TCP, and the listing shows the tunnels as ipvsadm does.
#[test]
fn gue_and_gre_real_servers_carry_whole_downloads() {
    let bed = Bed::up("gg");
    bed.rules(
        "-A -t 192.0.2.82:80 -s rr\n\
         -a -t 192.0.2.82:80 -r 203.0.113.11:80 -i --tun-type gue --tun-port 6080 --tun-csum\n\
         -A -t 192.0.2.81:80 -s rr\n\
         -a -t 192.0.2.81:80 -r 203.0.113.12:80 -i --tun-type gre --tun-nocsum\n",
    );
    let info = bed.adm("-Ln --tun-info");
    assert!(info.contains("  -> 203.0.113.11:80              Tunnel  gue:6080:+c   1 "), "{info}");
    assert!(info.contains("  -> 203.0.113.12:80              Tunnel  gre:-c        1 "), "{info}");
    let cap = bed.dir.join("tunnels.pcap");
    let mut tshark = bed.capture_back(&cap, "ip proto 47 or udp port 6080");
    assert_eq!(bed.get("http://192.0.2.82/", "198.51.100.10"), "s1", "GUE");
    assert_eq!(bed.get("http://192.0.2.81/", "198.51.100.10"), "s2", "GRE");
    for (vip, server) in [("192.0.2.82", 1), ("192.0.2.81", 2)] {
        bed.assert_whole_download(vip, server);
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill").args(["-INT", &tshark.id().to_string()]).output();
    let _ = tshark.wait();
    let fields = |filter: &str, fields: &[&str]| tshark_fields(&cap, filter, fields);
    // GRE: outer 203.0.113.1 -> .12, GRE carrying IPv4, the client's TCP to the VIP inside.
    let gre = fields(
        "gre && tcp.dstport == 80",
        &["ip.src", "ip.dst", "gre.proto", "ip.checksum.status", "tcp.checksum.status"],
    );
    assert!(gre.len() > 20, "GRE packets with TCP inside: {}", gre.len());
    assert!(
        gre.iter().all(|l| l == "203.0.113.1,198.51.100.10|203.0.113.12,192.0.2.81|0x0800|1,1|1"),
        "{:?}",
        &gre[..3]
    );
    // GUE: UDP to 6080 from the dynamic range, one source port per flow.
    let gue = fields("udp.dstport == 6080", &["ip.src", "ip.dst", "udp.srcport", "udp.checksum"]);
    assert!(gue.len() > 20, "GUE packets: {}", gue.len());
    assert!(gue.iter().all(|l| l.starts_with("203.0.113.1|203.0.113.11|")), "{:?}", &gue[..3]);
    assert!(
        gue.iter().all(|l| l
            .split('|')
            .nth(2)
            .and_then(|p| p.parse::<u16>().ok())
            .is_some_and(|p| p >= 49152)),
        "{:?}",
        &gue[..3]
    );
    assert!(
        gue.iter().all(|l| !l.ends_with("|0x0000")),
        "--tun-csum: every UDP checksum set: {:?}",
        &gue[..3]
    );
}

#[test]
fn nat_maps_ports_dr_and_tun_carry_whole_downloads() {
    let bed = Bed::up("md");
    bed.rules(
        "-A -t 192.0.2.80:80 -s rr\n\
         -a -t 192.0.2.80:80 -r 203.0.113.11:8080 -m\n\
         -A -t 192.0.2.81:80 -s rr\n\
         -a -t 192.0.2.81:80 -r 203.0.113.12:80 -g\n\
         -A -t 192.0.2.82:80 -s rr\n\
         -a -t 192.0.2.82:80 -r 203.0.113.13:80 -i\n",
    );
    // Watch the server LAN at the director's back port: tshark decodes what the director emits.
    let cap = bed.dir.join("back.pcap");
    let mut tshark = bed.capture_back(&cap, "tcp or ip proto 4");

    assert_eq!(bed.get("http://192.0.2.80/", "198.51.100.10"), "s1", "NAT 80 -> 8080");
    assert_eq!(bed.get("http://192.0.2.81/", "198.51.100.10"), "s2", "DR");
    assert_eq!(bed.get("http://192.0.2.82/", "198.51.100.10"), "s3", "TUN");
    for (vip, server) in [("192.0.2.80", 1), ("192.0.2.81", 2), ("192.0.2.82", 3)] {
        bed.assert_whole_download(vip, server);
    }
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill").args(["-INT", &tshark.id().to_string()]).output();
    let _ = tshark.wait();
    let stats = bed.adm("-Ln --stats");
    // DR and TUN replies bypass the director; NAT replies come back through it.
    let line = |vip: &str| stats.lines().find(|l| l.contains(vip)).unwrap_or_default().to_owned();
    let out_pkts =
        |l: String| l.split_whitespace().nth(4).and_then(|v| v.parse::<u64>().ok()).expect("OutPkts");
    assert!(out_pkts(line("192.0.2.80:80")) > 500, "{stats}");
    assert_eq!(out_pkts(line("192.0.2.81:80")), 0, "{stats}");
    assert_eq!(out_pkts(line("192.0.2.82:80")), 0, "{stats}");

    let decode = |filter: &str, fields: &[&str]| tshark_fields(&cap, filter, fields);
    let nat = decode(
        "ip.dst == 203.0.113.11 && tcp.dstport == 8080",
        &["ip.src", "tcp.checksum.status", "ip.checksum.status"],
    );
    assert!(!nat.is_empty(), "NAT packets to the real server on port 8080");
    assert!(
        nat.iter().all(|l| l == "198.51.100.10|1|1"),
        "client source kept, checksums good: {:?}",
        &nat[..nat.len().min(5)]
    );
    let dr = decode(
        "eth.dst == 00:00:00:00:00:00 || (ip.dst == 192.0.2.81 && !icmp)",
        &["eth.dst", "ip.dst", "tcp.checksum.status"],
    );
    let s2_mac = String::from_utf8_lossy(&bed.in_ns("s2", &["cat", "/sys/class/net/eth0/address"]).stdout)
        .trim()
        .to_owned();
    assert!(
        !dr.is_empty() && dr.iter().all(|l| l == &format!("{s2_mac}|192.0.2.81|1")),
        "DR frames go to s2's MAC, IP untouched: {dr:?}"
    );
    let tun = decode("ip.proto == 4", &["ip.src", "ip.dst", "tcp.dstport"]);
    assert!(!tun.is_empty(), "IPIP packets on the server LAN");
    assert!(
        tun.iter().all(|l| l == "203.0.113.1,198.51.100.10|203.0.113.13,192.0.2.82|80"),
        "outer director -> s3, inner client -> VIP: {tun:?}"
    );
}

#[test]
fn a_udp_service_and_echo_to_a_vip() {
    let bed = Bed::up("udp");
    bed.rules(
        "-A -u 192.0.2.80:5300 -s rr\n\
         -a -u 192.0.2.80:5300 -r 203.0.113.11:5300 -m\n\
         -a -u 192.0.2.80:5300 -r 203.0.113.12:5300 -m\n",
    );
    let mut by = BTreeMap::new();
    for src in 10..14 {
        let (got, b) = bed.udp(&format!("198.51.100.{src}"), "192.0.2.80", 5300, 5, 32);
        assert_eq!(got, 5, "every datagram answered");
        assert_eq!(b.len(), 1, "one flow, one server: {b:?}");
        by.extend(b.into_iter().map(|(k, v)| (format!("{src}{k}"), v)));
    }
    let servers: std::collections::BTreeSet<_> = by.keys().map(|k| &k[2..]).collect();
    assert_eq!(servers.len(), 2, "four flows over two servers: {by:?}");
    let out = bed.in_ns("c", &["ping", "-c", "3", "-i", "0.2", "-W", "2", "192.0.2.80"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 received"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = bed.in_ns("c", &["ping", "-c", "2", "-i", "0.2", "-W", "2", "192.0.2.2"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 received"), "the director's own address");
}

#[test]
fn quiesced_and_deleted_servers() {
    let bed = Bed::up("w0");
    bed.rules("-A -t 192.0.2.80:80 -s rr\n-a -t 192.0.2.80:80 -r 203.0.113.11:80 -m\n");
    // A slow download holds an established connection to s1. The client's receive buffer is kept
    // small: with the kernel's autotuned one, the whole file could cross the wire into it at once
    // and the connection close while curl still reads at its limited rate.
    let rmem = bed.in_ns("c", &["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 16384 32768"]);
    assert!(rmem.status.success(), "{rmem:?}");
    let slow = Command::new("ip")
        .args([
            "netns",
            "exec",
            &bed.ns("c"),
            "sh",
            "-c",
            "curl -sS -m 30 --limit-rate 300k http://192.0.2.80/big.bin | sha256sum",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl");
    std::thread::sleep(Duration::from_millis(700));
    bed.adm("-a -t 192.0.2.80:80 -r 203.0.113.12:80 -m");
    bed.adm("-e -t 192.0.2.80:80 -r 203.0.113.11:80 -m -w 0");
    let list = bed.adm("-Ln");
    assert!(
        list.contains("  -> 203.0.113.11:80              Masq    0      1          0"),
        "{list}{}{}",
        bed.adm("-Lnc"),
        bed.metrics()
            .lines()
            .filter(|l| l.contains("dropped") && !l.ends_with(" 0"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let got = bed.gets("http://192.0.2.80/", "198.51.100.10", 10);
    assert!(got.iter().all(|s| s == "s2"), "no new connection to the quiesced server: {got:?}");
    let out = slow.wait_with_output().expect("slow download");
    let want = sh(&["sha256sum", bed.dir.join("s1/www/big.bin").to_str().expect("p")]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).split_whitespace().next(),
        String::from_utf8_lossy(&want.stdout).split_whitespace().next(),
        "the established download to the quiesced server finished whole"
    );
    bed.adm("-a -t 192.0.2.80:80 -r 203.0.113.13:80 -m");
    bed.adm("-d -t 192.0.2.80:80 -r 203.0.113.12:80");
    let got = bed.gets("http://192.0.2.80/", "198.51.100.10", 6);
    assert!(got.iter().all(|s| s == "s3"), "s1 quiesced, s2 deleted: {got:?}");
    assert!(!bed.adm("-Ln").contains("203.0.113.12"));
}

#[test]
fn sh_persistence_and_a_firewall_mark_service_keep_clients_in_place() {
    let bed = Bed::up("sh");
    bed.rules(
        "-A -t 192.0.2.80:80 -s sh\n\
         -a -t 192.0.2.80:80 -r 203.0.113.11:80 -m\n\
         -a -t 192.0.2.80:80 -r 203.0.113.12:80 -m\n\
         -a -t 192.0.2.80:80 -r 203.0.113.13:80 -m\n\
         -A -t 192.0.2.81:0 -s rr -p 60\n\
         -a -t 192.0.2.81:0 -r 203.0.113.11:0 -g\n\
         -a -t 192.0.2.81:0 -r 203.0.113.12:0 -g\n\
         -a -t 192.0.2.81:0 -r 203.0.113.13:0 -g\n\
         -A -f 1 -s rr -p 60\n\
         -a -f 1 -r 203.0.113.11:0 -g\n\
         -a -f 1 -r 203.0.113.12:0 -g\n\
         -a -f 1 -r 203.0.113.13:0 -g\n",
    );
    let mut sh_servers = std::collections::BTreeSet::new();
    for src in 10..22 {
        let src = format!("198.51.100.{src}");
        let got = bed.gets("http://192.0.2.80/", &src, 4);
        assert!(got.windows(2).all(|w| w[0] == w[1]), "sh keeps {src} on one server: {got:?}");
        sh_servers.insert(got[0].clone());
    }
    assert!(sh_servers.len() >= 2, "sh spreads different clients: {sh_servers:?}");
    for src in ["198.51.100.10", "198.51.100.11", "198.51.100.12"] {
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.extend(bed.gets("http://192.0.2.81:80/", src, 1));
            seen.extend(bed.gets("http://192.0.2.81:8080/", src, 1));
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "-p on a port-0 service, ports 80 and 8080: {seen:?}");
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.extend(bed.gets("http://192.0.2.90:80/", src, 1));
            seen.extend(bed.gets("http://192.0.2.90:443/", src, 1));
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "FWM groups 80 and 443: {seen:?}");
    }
    let conns = bed.adm("-Lnc");
    assert!(conns.contains("TCP 00:5") || conns.contains("TCP 01:0"), "templates listed: {conns}");
    assert!(conns.contains("NONE        198.51.100.10:0    192.0.2.81:0       203.0.113.1"), "{conns}");
    // The classifier marks only its ports: 8080 on the FWM VIP is no service.
    let before = bed.dropped("no_service");
    let out = bed.in_ns("c", &["curl", "-s", "-m", "1", "http://192.0.2.90:8080/"]);
    assert!(!out.status.success());
    assert!(bed.dropped("no_service") > before);
}

#[test]
fn lnc_shows_live_states_and_stats_count_a_flow_exactly() {
    let bed = Bed::up("st");
    bed.rules(
        "-A -t 192.0.2.80:80 -s rr\n-a -t 192.0.2.80:80 -r 203.0.113.11:80 -m\n\
         -A -u 192.0.2.80:5300 -s rr\n-a -u 192.0.2.80:5300 -r 203.0.113.12:5300 -m\n",
    );
    // An idle but open TCP connection, from a known port.
    let mut nc = Command::new("ip")
        .args(["netns", "exec", &bed.ns("c"), PY, "-c",
            "import socket,time\ns=socket.create_connection(('192.0.2.80',80),source_address=('198.51.100.10',40123))\ntime.sleep(4)\n"])
        .spawn()
        .expect("client");
    std::thread::sleep(Duration::from_millis(1000));
    let conns = bed.adm("-Lnc");
    assert!(conns.contains("ESTABLISHED 198.51.100.10:40123 192.0.2.80:80      203.0.113.11:80"), "{conns}");
    assert!(conns.starts_with("IPVS connection entries\npro expire state       source"), "{conns}");
    let _ = nc.wait();
    std::thread::sleep(Duration::from_millis(300));
    let conns = bed.adm("-Lnc");
    let line = conns.lines().find(|l| l.contains(":40123")).unwrap_or_default();
    assert!(
        ["TIME_WAIT", "FIN_WAIT", "CLOSE", "LAST_ACK", "CLOSE_WAIT"].iter().any(|s| line.contains(s)),
        "closed: {conns}"
    );

    // Exactly 10 datagrams of 100 bytes and their 10 echoes ("s2 " + the 100 bytes).
    let (got, _) = bed.udp("198.51.100.11", "192.0.2.80", 5300, 10, 100);
    assert_eq!(got, 10);
    let stats = bed.adm("-Ln --stats --exact");
    // IP bytes: 20 + 8 + 100 in, 20 + 8 + 103 out.
    let fields = |prefix: &str| -> Vec<String> {
        stats
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(fields("UDP  192.0.2.80:5300")[2..], ["1", "10", "10", "1280", "1310"], "{stats}");
    assert_eq!(fields("  -> 203.0.113.12:5300")[2..], ["1", "10", "10", "1280", "1310"], "{stats}");
}

#[test]
fn malformed_and_unroutable_packets_are_dropped_counted_and_traffic_goes_on() {
    let bed = Bed::up("bad");
    bed.rules(
        "-A -t 192.0.2.80:80 -s rr\n-a -t 192.0.2.80:80 -r 203.0.113.11:80 -m\n\
         -A -t 192.0.2.83:80 -s rr\n-a -t 192.0.2.83:80 -r 198.18.0.1:80 -g\n",
    );
    assert_eq!(bed.get("http://192.0.2.80/", "198.51.100.10"), "s1");
    let mac = bed
        .log()
        .lines()
        .find(|l| l.contains("port started port=front"))
        .and_then(|l| l.split("mac=").nth(1))
        .and_then(|m| m.split_whitespace().next())
        .expect("front MAC in the log")
        .to_owned();
    let before = |r: &str| bed.dropped(r);
    let (m0, u0, n0, r0) =
        (before("malformed"), before("unsupported"), before("no_service"), before("no_route"));
    // From the router, straight at the director's front port.
    let script = format!(
        r#"
from scapy.all import Ether, IP, TCP, UDP, Raw, sendp
import warnings
warnings.filterwarnings("ignore")
e = Ether(dst="{mac}", src="02:00:00:00:00:99")
frames = [
    e / IP(src="198.51.100.10", dst="192.0.2.80", ihl=15) / b"short",              # header past the end
    (e / IP(src="198.51.100.10", dst="192.0.2.80", len=1000) / TCP()),            # length past the end
    e / IP(src="198.51.100.10", dst="192.0.2.80", proto=6) / b"tcp",              # TCP header cut
    e / IP(src="198.51.100.10", dst="192.0.2.80", version=5) / TCP(),             # not version 4
    Ether(dst="{mac}", type=0x88b5) / b"local experimental ethertype",            # unsupported
    e / IP(src="198.51.100.10", dst="198.51.100.99") / UDP(dport=9),              # not a VIP
    e / IP(src="198.51.100.10", dst="192.0.2.80") / TCP(dport=22, flags="S"),     # no such port
    e / IP(src="198.51.100.10", dst="192.0.2.83") / TCP(dport=80, flags="S"),     # DR server off-link
]
for f in frames:
    b = bytes(f) if not isinstance(f, bytes) else f
sendp([Ether(bytes(f)) for f in frames], iface="{p}rf", verbose=False)
"#,
        p = bed.prefix
    );
    let out = bed.in_ns("r", &[PY, "-c", &script]);
    assert!(out.status.success(), "scapy: {}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(bed.dropped("malformed") - m0, 4, "{}", bed.metrics());
    assert!(bed.dropped("unsupported") - u0 >= 1);
    assert_eq!(bed.dropped("no_service") - n0, 2);
    assert_eq!(bed.dropped("no_route") - r0, 1);
    assert_eq!(bed.get("http://192.0.2.80/", "198.51.100.10"), "s1", "traffic goes on");
}

#[test]
fn rules_change_under_load_without_losing_a_packet() {
    let bed = Bed::up("hit");
    bed.rules(
        "-A -u 192.0.2.80:5300 -s wrr\n\
         -a -u 192.0.2.80:5300 -r 203.0.113.11:5300 -m\n\
         -a -u 192.0.2.80:5300 -r 203.0.113.12:5300 -m\n",
    );
    let churn_dir = bed.dir.clone();
    let sock = bed.dir.join("rvsd.sock");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = std::sync::Arc::clone(&stop);
    // Rules change continuously while the flows run: services come and go, weights and the
    // scheduler of the loaded service change, whole rule files are restored.
    let churn = std::thread::spawn(move || {
        let adm = |args: &str, stdin: &str| {
            let (code, _, err) = common::rvsadm(RVSADM, &sock, args, stdin);
            assert_eq!(code, 0, "rvsadm {args}: {err}");
        };
        let mut rules = String::new();
        for i in 0..50 {
            rules.push_str(&format!(
                "-A -t 192.0.2.{}:{} -s wlc\n-a -t 192.0.2.{0}:{1} -r 203.0.113.13:80 -m\n",
                100 + i % 50,
                1000 + i
            ));
        }
        std::fs::write(churn_dir.join("churn.rules"), &rules).expect("w");
        let mut n = 0u32;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) && n < 2000 {
            let i = n % 20;
            adm(&format!("-A -t 192.0.2.99:{} -s rr", 2000 + i), "");
            adm(&format!("-a -t 192.0.2.99:{} -r 203.0.113.13:80 -m", 2000 + i), "");
            adm(&format!("-e -u 192.0.2.80:5300 -r 203.0.113.11:5300 -m -w {}", 1 + i), "");
            adm(&format!("-E -u 192.0.2.80:5300 -s {}", if i % 2 == 0 { "rr" } else { "wrr" }), "");
            adm(&format!("-D -t 192.0.2.99:{}", 2000 + i), "");
            if n == 1 {
                adm("-R", &rules);
            }
            n += 1;
        }
        n
    });
    let mut total = 0;
    for src in 10..14 {
        let (got, _) = bed.udp(&format!("198.51.100.{src}"), "192.0.2.80", 5300, 3000, 64);
        assert_eq!(got, 3000, "every datagram of flow {src} and its answer went through");
        total += got;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let changes = churn.join().expect("churn");
    assert!(changes >= 20, "the rules changed while traffic flowed ({changes} rounds)");
    let m = bed.metrics();
    for r in [
        "no_destination",
        "table_full",
        "destination_unavailable",
        "not_syn",
        "no_neighbour",
        "tx_ring_full",
        "no_mbuf",
    ] {
        assert_eq!(metric(&m, "rvs_worker_dropped_packets_total", &format!("reason=\"{r}\"")), 0, "{r}");
    }
    eprintln!("{total} datagrams echoed during {changes} rounds of rule changes");
}

#[test]
fn two_workers_share_the_clients_and_nat_stays_whole() {
    let bed = Bed::up_with("two", 2);
    bed.rules(
        "-A -t 192.0.2.80:80 -s rr\n\
         -a -t 192.0.2.80:80 -r 203.0.113.11:8080 -m\n\
         -a -t 192.0.2.80:80 -r 203.0.113.12:8080 -m\n\
         -a -t 192.0.2.80:80 -r 203.0.113.13:8080 -m\n\
         -A -u 192.0.2.80:5300 -s rr\n\
         -a -u 192.0.2.80:5300 -r 203.0.113.11:5300 -m\n\
         -a -u 192.0.2.80:5300 -r 203.0.113.12:5300 -m\n",
    );
    // Twenty clients, three NAT connections each: every one completes, whichever queue the kernel's
    // fanout hash puts its packets on.
    let mut answered = 0;
    for c in 10..30 {
        answered += bed.gets("http://192.0.2.80/", &format!("198.51.100.{c}"), 3).len();
    }
    assert_eq!(answered, 60);
    for c in 10..18 {
        let (got, _) = bed.udp(&format!("198.51.100.{c}"), "192.0.2.80", 5300, 20, 32);
        assert_eq!(got, 20, "UDP flow from .{c}");
    }
    let m = bed.metrics();
    let per = |name: &str, w: u32| metric(&m, name, &format!("worker=\"{w}\""));
    let (rx1, rx2) =
        (per("rvs_worker_received_packets_total", 1), per("rvs_worker_received_packets_total", 2));
    assert!(rx1 > 50 && rx2 > 50, "both workers receive: {rx1} / {rx2}");
    let handed =
        per("rvs_worker_handed_off_packets_total", 1) + per("rvs_worker_handed_off_packets_total", 2);
    assert!(handed > 0, "NAT replies reached the other worker's queue and were handed to the owner");
    for r in ["handoff_full", "no_service", "not_syn", "no_neighbour"] {
        assert_eq!(metric(&m, "rvs_worker_dropped_packets_total", &format!("reason=\"{r}\"")), 0, "{r}\n{m}");
    }
    let stats = bed.adm("-Ln --stats");
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with("TCP  192.0.2.80:80") && l.split_whitespace().nth(2) == Some("60")),
        "{stats}"
    );
    let log = bed.rvsd.as_ref().expect("running").log_text();
    assert!(log.contains("NAT replies are handed to their client's worker instead"), "{log}");
    // Each worker's table (65,536 entries of 64 bytes) is built in huge pages where the kernel
    // offers transparent ones.
    let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    let huge_mib = log
        .split("huge_page_mib=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok());
    if !thp.contains("[never]") {
        assert!(huge_mib.is_some_and(|m| m >= 8), "two 4 MiB tables in huge pages ({thp}): {log}");
    }
    eprintln!("two workers: rx {rx1} / {rx2}, handed over {handed}, {huge_mib:?} MiB in huge pages");
}

/// The README's reload, `-Sn; -C; -R`, in the middle of a download: the re-created service finds
/// its servers in the trash (keyed by the service's address/port/protocol, as IPVS keys it) and the
/// download completes. Before, every live connection died as destination_unavailable.
#[test]
fn a_reload_keeps_live_downloads() {
    let bed = Bed::up("rl");
    bed.rules(
        "-A -t 192.0.2.80:80 -s rr\n\
         -a -t 192.0.2.80:80 -r 203.0.113.11:8080 -m\n\
         -A -t 192.0.2.81:80 -s rr\n\
         -a -t 192.0.2.81:80 -r 203.0.113.12:80 -g\n",
    );
    let want = |server: u32| {
        let out = sh(&["sha256sum", bed.dir.join(format!("s{server}/www/big.bin")).to_str().expect("p")]);
        String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned()
    };
    // 1 MiB at 256 KiB/s: four seconds each, NAT and DR at once. A small receive buffer keeps the
    // servers sending all along (else the whole file sits in the client's socket at once).
    let out = bed.in_ns("c", &["sysctl", "-w", "net.ipv4.tcp_rmem=4096 16384 16384"]);
    assert!(out.status.success(), "{out:?}");
    let downloads: Vec<_> = ["192.0.2.80", "192.0.2.81"]
        .iter()
        .map(|vip| {
            bed.cmd_in_ns(
                "c",
                &["sh", "-c", &format!("curl -sS -m 30 --limit-rate 256K http://{vip}/big.bin | sha256sum")],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("curl")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let saved = bed.adm("-Sn");
    bed.adm("-C");
    let (code, _, err) = bed.adm_run("-R", &saved);
    assert_eq!(code, 0, "{err}");
    for (d, server) in downloads.into_iter().zip([1, 2]) {
        let out = d.wait_with_output().expect("curl");
        let got = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            got.split_whitespace().next().unwrap_or_default(),
            want(server),
            "download from s{server}"
        );
    }
    // Packets that arrive between -C and -R are dropped as destination_unavailable, as IPVS drops
    // them (expire_nodest_conn = 0); TCP retransmits them once the servers are back.
    let lost = bed.dropped("destination_unavailable");
    assert!(lost < 50, "{lost} packets lost to the reload");
}

/// The seed-style LVS-NAT lab: the VIP is the front port's own address (192.0.2.2), as in the
/// LVS-NAT guides' `ipvsadm -A -t <the director's address>:80`. Before, ping worked but no
/// connection was ever scheduled. Other ports of that address stay the director's own.
#[test]
fn a_nat_service_on_the_directors_own_address() {
    let bed = Bed::up("own");
    bed.rules(
        "-A -t 192.0.2.2:80 -s rr\n\
         -a -t 192.0.2.2:80 -r 203.0.113.11:8080 -m\n\
         -a -t 192.0.2.2:80 -r 203.0.113.12:8080 -m\n",
    );
    let got = bed.gets("http://192.0.2.2/", "198.51.100.10", 10);
    let c = count(&got);
    assert_eq!((c.get("s1"), c.get("s2")), (Some(&5), Some(&5)), "{got:?}");
    assert!(
        bed.adm("-Ln --stats").contains("TCP  192.0.2.2:80                       10"),
        "{}",
        bed.adm("-Ln --stats")
    );
    let out = bed.in_ns("c", &["curl", "-sS", "-m", "2", "http://192.0.2.2:22/"]);
    assert!(!out.status.success(), "nothing answers the director's own port 22 yet");
    assert!(bed.dropped("to_director") >= 1);
}

/// A small web server in namespace `ns` on `addr:port` serving `dir` (http.server's own start-up
/// looks its address up in DNS, which a test namespace cannot reach, and waits for the timeout).
fn web_server(ns: &str, addr: &str, port: u16, dir: &Path) -> Command {
    let code = "import functools,http.server,socketserver,sys\n\
                class S(http.server.ThreadingHTTPServer):\n\
                \x20   def server_bind(self):\n\
                \x20       socketserver.TCPServer.server_bind(self)\n\
                \x20       self.server_name, self.server_port = 'director', self.server_address[1]\n\
                h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[3])\n\
                S((sys.argv[1], int(sys.argv[2])), h).serve_forever()\n";
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, "python3", "-c", code, addr, &port.to_string()]).arg(dir);
    c
}

/// The front port's kernel twin: a web server on the director's own kernel, listening on the port's
/// address, answers the client through rvs (before, such traffic was dropped as to_director); the
/// director's kernel pings the router through the twin (its ARP goes out through rvs and the answer
/// comes back up); and a flood at the director's address is bounded by the workers' budget.
#[test]
fn the_directors_kernel_speaks_through_its_twin() {
    let bed = Bed::up_full("kt", 1, "kernel_twin = \"rvstwin0\"");
    // 192.0.2.81 has the director itself as its real server (IPVS's Local forwarding, the LVS
    // guides' sorry page on the director).
    bed.rules(
        "-A -t 192.0.2.80:80 -s rr\n-a -t 192.0.2.80:80 -r 203.0.113.11:8080 -m\n\
         -A -t 192.0.2.81:80 -s rr\n-a -t 192.0.2.81:80 -r 192.0.2.2:80 -m\n",
    );
    assert!(
        bed.adm("-Ln").contains("  -> 192.0.2.2:80                 Local   1      0          0"),
        "{}",
        bed.adm("-Ln")
    );
    let d = bed.ns("d");
    let addr = Command::new("ip")
        .args(["netns", "exec", &d, "ip", "-4", "addr", "show", "dev", "rvstwin0"])
        .output()
        .expect("ip");
    assert!(String::from_utf8_lossy(&addr.stdout).contains("192.0.2.2/24"), "{addr:?}");
    // A server on the director's kernel (the role of ssh or BGP), on the port's own address.
    let www = bed.dir.join("twin-www");
    std::fs::create_dir_all(&www).expect("dir");
    std::fs::write(www.join("index.html"), "the director's own kernel\n").expect("write");
    let mut server = web_server(&d, "192.0.2.2", 8000, &www)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    std::thread::sleep(Duration::from_millis(1500));
    let body = bed.get("http://192.0.2.2:8000/", "198.51.100.10");
    assert_eq!(body, "the director's own kernel");
    // The service on a VIP still goes to its real server.
    assert_eq!(bed.get("http://192.0.2.80/", "198.51.100.10"), "s1");
    // The Local service: its VIP is put on the twin, and the director's kernel answers it.
    let mut local = web_server(&d, "192.0.2.81", 80, &www)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(bed.get("http://192.0.2.81/", "198.51.100.10"), "the director's own kernel");
    let _ = local.kill();
    let _ = local.wait();
    // The kernel's own traffic: it resolves the router through the twin and gets its echo reply.
    let ping = Command::new("ip")
        .args(["netns", "exec", &d, "ping", "-c", "2", "-W", "2", "192.0.2.1"])
        .output()
        .expect("ping");
    assert!(ping.status.success(), "{}", String::from_utf8_lossy(&ping.stdout));
    let m = bed.metrics();
    assert!(metric(&m, "rvs_worker_kernel_frames_total", "direction=\"to\"") >= 4, "{m}");
    assert!(metric(&m, "rvs_worker_kernel_frames_total", "direction=\"from\"") >= 4);
    assert_eq!(bed.dropped("to_director"), 0);
    // A SYN flood at the director's own address: at most the budget reaches the kernel.
    let flood = bed.in_ns(
        "c",
        &["python3", "-c", "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nt=time.time()\nn=0\nwhile time.time()-t<1.0:\n  s.sendto(b'x',('192.0.2.2',9))\n  n+=1\nprint(n)"],
    );
    let sent: u64 = String::from_utf8_lossy(&flood.stdout).trim().parse().unwrap_or(0);
    std::thread::sleep(Duration::from_millis(500));
    let m = bed.metrics();
    let up = metric(&m, "rvs_worker_kernel_frames_total", "direction=\"to\"");
    let budget = bed.dropped("kernel_budget");
    eprintln!(
        "{sent} datagrams at the director's port 9 in 1 s: {up} frames went up in all, {budget} over the budget"
    );
    assert!(up < 20_000 + 512 + 100, "{up} frames reached the kernel");
    let _ = server.kill();
    let _ = server.wait();
}

/// IPv6 through the director (`testbed.sh ipv6`): curl -6 from the client to IPv6 VIPs in the three
/// modes, real nginx on IPv6 behind them. NAT balances round robin and maps ports; DR and TUN (IPv6
/// in IPv6, undone by the servers' XDP program) carry whole 1 MiB downloads; the router resolves
/// the VIP and the director its neighbours with neighbour discovery; ping -6 to a VIP is answered;
/// rvsadm lists the services as ipvsadm prints IPv6; UDP crosses NAT, a server's ICMPv6 port
/// unreachable reaches the client translated, a `-6` firewall-mark service takes what the IPv6
/// classifier marks, and TUN crosses families both ways (4in6, 6in4).
#[test]
fn ipv6_nat_dr_and_tun_carry_whole_downloads() {
    let extra = [
        "address6 = \"2001:db8:f::2/64\"",
        "address6 = \"2001:db8:b::1/64\"",
        "",
        "[[route]]\ndestination = \"::/0\"\ngateway = \"2001:db8:f::1\"\n\n\
         [[classifier]]\ndestination = \"2001:db8:f::90\"\nprotocol = \"tcp\"\nports = [80]\nmark = 2",
    ];
    let bed = Bed::up_prepared("v6", 2, extra, |dir| {
        let prefix = dir.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("rvs-director-"));
        sh(&[
            testbed_script().to_str().expect("path"),
            "ipv6",
            prefix.expect("prefix"),
            dir.to_str().expect("dir"),
        ]);
    });
    bed.rules(
        "-A -t [2001:db8:f::80]:80 -s rr\n\
         -a -t [2001:db8:f::80]:80 -r [2001:db8:b::11]:80 -m\n\
         -a -t [2001:db8:f::80]:80 -r [2001:db8:b::12]:80 -m\n\
         -A -t [2001:db8:f::83]:80 -s rr\n-a -t [2001:db8:f::83]:80 -r [2001:db8:b::13]:8080 -m\n\
         -A -t [2001:db8:f::81]:80 -s rr\n-a -t [2001:db8:f::81]:80 -r [2001:db8:b::13]:80 -g\n\
         -A -t [2001:db8:f::82]:80 -s rr\n-a -t [2001:db8:f::82]:80 -r [2001:db8:b::12]:80 -i\n",
    );
    let listing = bed.adm("-Ln");
    assert!(listing.contains("TCP  [2001:db8:f::80]:80 rr\n  -> [2001:db8:b::11]:80"), "{listing}");
    let get6 = |url: &str, n: usize| -> Vec<String> {
        let mut args = vec!["curl", "-6", "-sS", "-m", "20", "-H", "Connection: close"];
        args.extend(std::iter::repeat_n(url, n));
        let out = bed.in_ns("c", &args);
        assert!(
            out.status.success(),
            "curl -6 {url}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            bed.log()
        );
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
    };
    let got = get6("http://[2001:db8:f::80]/", 4);
    assert_eq!(count(&got), BTreeMap::from([("s1", 2), ("s2", 2)]), "NAT over IPv6: {got:?}");
    assert_eq!(get6("http://[2001:db8:f::83]/", 1), ["s3"], "NAT maps :80 to :8080");
    assert_eq!(get6("http://[2001:db8:f::81]/", 1), ["s3"], "DR");
    assert_eq!(get6("http://[2001:db8:f::82]/", 1), ["s2"], "TUN");
    for (vip, server) in [("[2001:db8:f::80]", 1), ("[2001:db8:f::81]", 3), ("[2001:db8:f::82]", 2)] {
        let out =
            bed.in_ns("c", &["sh", "-c", &format!("curl -6 -sS -m 20 http://{vip}/big.bin | sha256sum")]);
        let want = sh(&["sha256sum", bed.dir.join(format!("s{server}/www/big.bin")).to_str().expect("p")]);
        let (got, want) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&want.stdout));
        assert_eq!(got.split_whitespace().next(), want.split_whitespace().next(), "1 MiB through {vip}");
    }
    // UDP over IPv6 through NAT: one socket is one connection, on the first server.
    bed.rules(
        "-A -u [2001:db8:f::80]:5300 -s rr\n-a -u [2001:db8:f::80]:5300 -r [2001:db8:b::11]:5300 -m\n\
               -a -u [2001:db8:f::80]:5300 -r [2001:db8:b::13]:5300 -m\n",
    );
    let (got, by) = bed.udp("2001:db8:c::10", "2001:db8:f::80", 5300, 20, 200);
    assert_eq!((got, by), (20, BTreeMap::from([("s1".to_owned(), 20)])));
    // A real server's ICMPv6 port unreachable about a client's NAT datagram reaches the client
    // translated: its kernel matches the quote to its socket and reports the refusal.
    bed.rules("-A -u [2001:db8:f::80]:5999 -s rr\n-a -u [2001:db8:f::80]:5999 -r [2001:db8:b::11]:5999 -m\n");
    let out = refusal_probe(&bed, "2001:db8:f::80", 5999);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("refused"),
        "ICMPv6 unreachable not translated: {out:?}\n{}",
        bed.metrics()
            .lines()
            .filter(|l| l.starts_with("rvs_worker_dropped") && !l.ends_with(" 0"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Tunnels across families, as the kernel's mixed-family destinations: an IPv4 service whose
    // server is reached over IPv6 (4in6), and an IPv6 service over IPv4 (6in4).
    bed.rules(
        "-A -t 192.0.2.84:80 -s rr\n-a -t 192.0.2.84:80 -r [2001:db8:b::12]:80 -i\n\
         -A -t [2001:db8:f::84]:80 -s rr\n-a -t [2001:db8:f::84]:80 -r 203.0.113.13:80 -i\n",
    );
    assert!(bed.adm("-Ln").contains("TCP  192.0.2.84:80 rr\n  -> [2001:db8:b::12]:80"), "{}", bed.adm("-Ln"));
    let out =
        bed.in_ns("c", &["curl", "-sS", "-m", "10", "--interface", "198.51.100.10", "http://192.0.2.84/"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "s2", "4in6: {out:?}");
    assert_eq!(get6("http://[2001:db8:f::84]/", 1), ["s3"], "6in4");
    // A -6 firewall-mark service (DR) on what the IPv6 classifier marks.
    bed.rules("-A -f 2 -6 -s rr\n-a -f 2 -6 -r [2001:db8:b::13] -g\n");
    assert!(bed.adm("-Ln").contains("FWM  2 IPv6 rr"), "{}", bed.adm("-Ln"));
    assert_eq!(get6("http://[2001:db8:f::90]/", 1), ["s3"], "FWM over IPv6");
    let ping = bed.in_ns("c", &["ping", "-6", "-c", "2", "-W", "2", "2001:db8:f::80"]);
    assert!(ping.status.success(), "ping -6 a VIP: {}", String::from_utf8_lossy(&ping.stdout));
    let listing = bed.adm("-Ln --stats");
    assert!(listing.contains("[2001:db8:f::81]:80"), "{listing}");
}

/// UDP datagrams of 3,000 bytes, fragmented by the client's kernel and by the real server's, cross
/// a NAT service whole both ways: the first fragment is scheduled with its ports, the later ones
/// follow it (rvs's fragment table), the server reassembles the client's datagram and the client
/// the server's answer. The director's ports are TAPs bridged to the wires here (`testbed.sh
/// tapports`): net_af_packet's fanout would reassemble before rvsd saw a fragment.
#[test]
fn fragmented_udp_datagrams_cross_a_nat_service_whole() {
    let bed = Bed::up_general(
        "fr",
        1,
        ["", "", "", ""],
        |_| {},
        |c| {
            let p = c
                .lines()
                .find_map(|l| l.strip_prefix("file_prefix = \"rvs-"))
                .map(|l| l.trim_end_matches("d\"").to_owned());
            let p = p.expect("prefix");
            c.replace(
                &format!("net_af_packet0,iface={p}df,qpairs=1,framecnt=8192"),
                &format!("net_tap0,iface={p}tf"),
            )
            .replace(
                &format!("net_af_packet1,iface={p}db,qpairs=1,framecnt=8192"),
                &format!("net_tap1,iface={p}tb"),
            )
        },
    );
    assert!(std::fs::read_to_string(bed.dir.join("rvsd.toml")).expect("config").contains("net_tap0"));
    sh(&[testbed_script().to_str().expect("path"), "tapports", &bed.prefix]);
    bed.rules("-A -u 192.0.2.80:5300 -s rr\n-a -u 192.0.2.80:5300 -r 203.0.113.11:5300 -m\n");
    let before = bed.dropped("fragment");
    let cap = bed.dir.join("frag.pcap");
    let mut tshark = bed.capture_back(&cap, "ip host 198.51.100.10");
    let (got, by) = bed.udp("198.51.100.10", "192.0.2.80", 5300, 40, 3000);
    let _ = Command::new("kill").args(["-INT", &tshark.id().to_string()]).status();
    let _ = tshark.wait();
    assert_eq!(got, 40, "every 3,000-byte datagram answered: {by:?}\n{}", bed.metrics());
    assert_eq!(by, BTreeMap::from([("s1".to_owned(), 40)]));
    assert_eq!(bed.dropped("fragment"), before, "no fragment lost its datagram");
    // On the server LAN the client's datagrams are fragments, NATed (tshark's decode): 3,008 bytes
    // of UDP in 1,500-byte frames are a first fragment (with the ports) and two later ones each
    // (the capture may start a datagram late).
    let later = tshark_fields(&cap, "ip.dst == 203.0.113.11 && ip.frag_offset > 0", &["ip.id"]);
    let first = tshark_fields(
        &cap,
        "ip.dst == 203.0.113.11 && ip.flags.mf == 1 && ip.frag_offset == 0",
        &["udp.dstport"],
    );
    assert!(
        first.len() >= 35 && later.len() == 2 * first.len(),
        "fragments on the server LAN: {} first, {} later",
        first.len(),
        later.len()
    );
    // Small ones still go the fast way.
    let (got, _) = bed.udp("198.51.100.11", "192.0.2.80", 5300, 10, 100);
    assert_eq!(got, 10);
}

/// VLAN 100 on the director's front wire (`testbed.sh vlan`: a host in namespace `v` behind an
/// access port made of tc programs, the bridge carrying its tagged frames): its connections to a
/// VIP on the VLAN's subnet are balanced over the NAT servers and every byte of a 1 MiB download
/// comes back; tshark on the bridge sees the director's frames to it tagged 100 and none untagged;
/// the VLAN's kernel twin carries a web server on the director's VLAN address; a frame for VLAN
/// 200 and a QinQ frame are dropped and counted under their own reasons.
#[test]
fn a_vlan_sub_port_is_balanced_and_has_its_own_twin() {
    let vlan = "[[port.vlan]]\nid = 100\naddress = \"198.18.100.2/24\"\nkernel_twin = \"rvsv100\"";
    let bed = Bed::up_prepared("vl", 1, [vlan, "", "", ""], |dir| {
        let prefix = dir.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("rvs-director-"));
        sh(&[
            testbed_script().to_str().expect("path"),
            "vlan",
            prefix.expect("prefix"),
            dir.to_str().expect("dir"),
        ]);
    });
    bed.rules(
        "-A -t 198.18.100.80:80 -s rr\n-a -t 198.18.100.80:80 -r 203.0.113.11:80 -m\n\
         -a -t 198.18.100.80:80 -r 203.0.113.12:80 -m\n",
    );
    let cap = bed.dir.join("vlan.pcap");
    let mut tshark = Command::new("ip")
        .args(["netns", "exec", &bed.ns("r"), "tshark", "-q", "-i", &format!("{}rv", bed.prefix), "-w"])
        .arg(&cap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tshark");
    std::thread::sleep(Duration::from_millis(1500));
    let mut args = vec!["curl", "-sS", "-m", "20", "-H", "Connection: close", "--interface", "198.18.100.10"];
    args.extend(std::iter::repeat_n("http://198.18.100.80/", 6));
    let out = bed.in_ns("v", &args);
    assert!(
        out.status.success(),
        "curl on VLAN 100: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        bed.log()
    );
    let got: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(count(&got), BTreeMap::from([("s1", 3), ("s2", 3)]), "{got:?}");
    let sum = bed.in_ns("v", &["sh", "-c", "curl -sS -m 20 http://198.18.100.80/big.bin | sha256sum"]);
    let mut want = Vec::new();
    for s in [1, 2] {
        let w = sh(&["sha256sum", bed.dir.join(format!("s{s}/www/big.bin")).to_str().expect("p")]);
        want.push(
            String::from_utf8_lossy(&w.stdout).split_whitespace().next().unwrap_or_default().to_owned(),
        );
    }
    let got = String::from_utf8_lossy(&sum.stdout).split_whitespace().next().unwrap_or_default().to_owned();
    assert!(want.contains(&got), "1 MiB over VLAN 100: {got} not in {want:?}");

    // The VLAN's twin: the director's kernel has the VLAN's address there and serves on it.
    let d = bed.ns("d");
    let addr = bed.in_ns("d", &["ip", "-4", "addr", "show", "dev", "rvsv100"]);
    assert!(String::from_utf8_lossy(&addr.stdout).contains("198.18.100.2/24"), "{addr:?}");
    let www = bed.dir.join("vlan-www");
    std::fs::create_dir_all(&www).expect("dir");
    std::fs::write(www.join("index.html"), "the director on VLAN 100\n").expect("write");
    let mut server = web_server(&d, "198.18.100.2", 8000, &www)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("py");
    std::thread::sleep(Duration::from_millis(1500));
    let out = bed.in_ns("v", &["curl", "-sS", "-m", "5", "http://198.18.100.2:8000/"]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "the director on VLAN 100", "{out:?}");

    // Frames for a VLAN the port does not carry, and stacked tags, from the router's side.
    // The front port's MAC (net_af_packet's is its interface's).
    let link = bed.in_ns("d", &["cat", &format!("/sys/class/net/{}df/address", bed.prefix)]);
    let mac = String::from_utf8_lossy(&link.stdout).trim().to_owned();
    let (unknown, qinq) = (bed.dropped("vlan_unknown"), bed.dropped("qinq"));
    let script = format!(
        "from scapy.all import Ether, Dot1Q, Dot1AD, IP, TCP, sendp\n\
         ip = IP(src='198.18.100.11', dst='198.18.100.80') / TCP(dport=80, flags='S')\n\
         sendp(Ether(dst='{mac}') / Dot1Q(vlan=200) / ip, iface='{p}bv', count=3, verbose=0)\n\
         sendp(Ether(dst='{mac}') / Dot1AD(vlan=7) / Dot1Q(vlan=100) / ip, iface='{p}bv', count=2, verbose=0)\n",
        p = bed.prefix
    );
    let out = bed.in_ns("r", &[PY, "-c", &script]);
    assert!(out.status.success(), "scapy: {}", String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!((bed.dropped("vlan_unknown") - unknown, bed.dropped("qinq") - qinq), (3, 2));

    let _ = Command::new("kill").args(["-INT", &tshark.id().to_string()]).status();
    let _ = tshark.wait();
    let tagged = tshark_fields(
        &cap,
        "eth.src == MAC && ip.src == 198.18.100.80".replace("MAC", &mac).as_str(),
        &["vlan.id"],
    );
    assert!(!tagged.is_empty(), "tshark saw the director's answers on the VLAN host's link");
    assert!(tagged.iter().all(|t| t.starts_with("100")), "every answer tagged 100: {tagged:?}");
}

/// Up to three datagrams from the client to `vip:port` on a connected UDP socket, each waiting 2 s
/// for an answer; prints "refused" when the client's kernel reports an ICMP port unreachable.
fn refusal_probe(bed: &Bed, vip: &str, port: u16) -> Output {
    let family = if vip.contains(':') { "AF_INET6" } else { "AF_INET" };
    let probe = format!(
        "import socket\n\
         s = socket.socket(socket.{family}, socket.SOCK_DGRAM)\n\
         s.settimeout(2)\n\
         s.connect(('{vip}', {port}))\n\
         for i in range(3):\n\
         \x20   s.send(b'hello')\n\
         \x20   try:\n\
         \x20       s.recv(100)\n\
         \x20       print('answered')\n\
         \x20   except ConnectionRefusedError:\n\
         \x20       print('refused')\n\
         \x20       break\n\
         \x20   except socket.timeout:\n\
         \x20       print('timeout')\n"
    );
    bed.in_ns("c", &[PY, "-c", &probe])
}

/// An ICMP error from a NAT real server about a client's packet (here port unreachable: nothing
/// listens on the server's port) is translated back to the client: its kernel matches the quoted
/// packet to its socket and reports the refusal (the client's kernel is the independent decoder).
/// Before, such errors were dropped and the client waited for its timeout.
#[test]
fn icmp_errors_about_nat_flows_reach_the_client() {
    let bed = Bed::up_with("ic", 2);
    bed.rules("-A -u 192.0.2.80:5999 -s rr\n-a -u 192.0.2.80:5999 -r 203.0.113.11:5999 -m\n");
    let out = refusal_probe(&bed, "192.0.2.80", 5999);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("refused"),
        "the client never heard of the refusal: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// keepalived.conf with the director's usual neighbours: sections for keepalived's own VRRP, which
/// rvs skips, and the LVS part. `{dir}` is the bed's directory.
fn keepalived_conf(dir: &Path) -> String {
    format!(
        r#"! rvs test bed
global_defs {{
   router_id rvs_bed
   enable_script_security
   script_user root
}}

vrrp_instance VI_1 {{
    state BACKUP
    nopreempt
    interface rvstwin0
    virtual_router_id 51
    priority 100
    advert_int 1
    authentication {{
        auth_type PASS
        auth_pass rvs
    }}
    virtual_ipaddress {{
        192.0.2.200/24 dev rvstwin0
    }}
}}

# NAT web service: TCP checks; the director's own web server is the sorry page.
virtual_server 192.0.2.80 80 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    sorry_server 192.0.2.2 80

    real_server 203.0.113.11 8080 {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }}
    }}
    real_server 203.0.113.12 8080 {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }}
    }}
    real_server 203.0.113.13 8080 {{
        weight 1
        TCP_CHECK {{
            connect_timeout 1
            retry 1
            delay_before_retry 1
        }}
    }}
}}

# HTTP checks of /status (200 expected), servers kept at weight 0 while they fail.
virtual_server 192.0.2.84 80 {{
    delay_loop 1
    lb_algo wrr
    lb_kind NAT
    protocol TCP
    real_server 203.0.113.11 80 {{
        weight 2
        inhibit_on_failure
        HTTP_GET {{
            url {{
                path /status
                status_code 200
            }}
            connect_timeout 1
            retry 0
        }}
    }}
    real_server 203.0.113.12 80 {{
        weight 2
        inhibit_on_failure
        HTTP_GET {{
            url {{
                path /status
                status_code 200
            }}
            connect_timeout 1
            retry 0
        }}
    }}
}}

# A script decides (MISC_CHECK): s3 is out while {dir}/s3.down exists.
virtual_server 192.0.2.85 80 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server 203.0.113.12 80 {{
        MISC_CHECK {{
            misc_path "/bin/true"
        }}
    }}
    real_server 203.0.113.13 80 {{
        notify_down "/bin/touch {dir}/s3.notified-down"
        MISC_CHECK {{
            misc_path "/bin/sh -c '! test -e {dir}/s3.down'"
            misc_timeout 2
            retry 0
        }}
    }}
}}
"#,
        dir = dir.display()
    )
}

/// Health checks from the director's own kernel, through its twins: a real server whose nginx stops
/// is taken out within delay_loop × (retry + 1) plus one interval, and 100 new connections then all
/// go to the others; it comes back when nginx does; with every server down the sorry server (the
/// director's own web page) answers. An HTTP check whose status turns 500 and a MISC_CHECK script
/// take servers out and back the same way. `keepalived -t` accepts the same file.
#[test]
fn health_checks_take_failed_servers_out_and_bring_them_back() {
    let tag = format!("hc{}", std::process::id() % 1000);
    let ka_line = format!(
        "keepalived_conf = \"{}/rvs-director-{tag}/keepalived.conf\"",
        std::env::temp_dir().display()
    );
    let bed = Bed::up_prepared(
        "hc",
        1,
        ["kernel_twin = \"rvstwin0\"", "kernel_twin = \"rvstwin1\"", &ka_line, ""],
        |dir| std::fs::write(dir.join("keepalived.conf"), keepalived_conf(dir)).expect("write"),
    );
    let ka = bed.dir.join("keepalived.conf");
    // The same file passes keepalived's own check, in rvsd's namespace (where the twin its VRRP
    // section names exists).
    let t = bed.in_ns("d", &["keepalived", "-t", "-f", ka.to_str().expect("path")]);
    assert!(
        t.status.success(),
        "keepalived -t: {}{}",
        String::from_utf8_lossy(&t.stdout),
        String::from_utf8_lossy(&t.stderr)
    );
    let all_up = |l: &str| {
        ["203.0.113.11:8080", "203.0.113.12:8080", "203.0.113.13:8080"].iter().all(|s| l.contains(s))
    };
    bed.wait_listing("every server up", Duration::from_secs(10), all_up);
    let got = bed.gets("http://192.0.2.80/", "198.51.100.10", 30);
    assert_eq!(count(&got).len(), 3, "{got:?}");

    // s2's nginx stops: out within delay_loop (1 s) × (retry 1 + 1) + one interval (1 s).
    bed.stop_nginx(2);
    let took = bed.wait_listing("s2 out", Duration::from_secs(10), |l| !l.contains("203.0.113.12:8080"));
    eprintln!("s2 taken out {took:?} after its nginx stopped");
    assert!(took <= Duration::from_millis(3500), "took {took:?}");
    let got = bed.gets("http://192.0.2.80/", "198.51.100.10", 100);
    let c = count(&got);
    assert_eq!((c.get("s1"), c.get("s3"), c.get("s2")), (Some(&50), Some(&50), None), "{c:?}");
    assert!(bed.log().contains("real server down"), "{}", bed.log());
    bed.start_nginx(2);
    let took = bed.wait_listing("s2 back", Duration::from_secs(10), all_up);
    eprintln!("s2 back {took:?} after its nginx started");
    assert!(count(&bed.gets("http://192.0.2.80/", "198.51.100.10", 30)).contains_key("s2"));
    let m = bed.metrics();
    assert_eq!(
        metric(
            &m,
            "rvs_healthcheck_transitions_total",
            "remote_address=\"203.0.113.12\",remote_port=\"8080\""
        ),
        2
    );
    assert_eq!(metric(&m, "rvs_healthcheck_up", "remote_address=\"203.0.113.12\",remote_port=\"8080\""), 1);

    // Every server down: the sorry server, a web page on the director itself, answers.
    let sorry = bed.dir.join("sorry");
    std::fs::create_dir_all(&sorry).expect("dir");
    std::fs::write(sorry.join("index.html"), "sorry\n").expect("write");
    let mut page = web_server(&bed.ns("d"), "0.0.0.0", 80, &sorry)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    for i in 1..=3 {
        bed.stop_nginx(i);
    }
    bed.wait_listing("the sorry server alone", Duration::from_secs(10), |l| {
        l.contains("192.0.2.2:80                 Local") && !l.contains(":8080")
    });
    std::thread::sleep(Duration::from_millis(500));
    // The answer comes from the director's kernel, from the VIP it now holds on its twin.
    assert_eq!(bed.get("http://192.0.2.80/", "198.51.100.10"), "sorry");
    assert_eq!(metric(&bed.metrics(), "rvs_healthcheck_quorum_up", "local_address=\"192.0.2.80\""), 0);
    for i in 1..=3 {
        bed.start_nginx(i);
    }
    bed.wait_listing("servers back, sorry server gone", Duration::from_secs(10), |l| {
        all_up(l) && !l.contains("192.0.2.2:80")
    });
    let _ = page.kill();
    let _ = page.wait();

    // HTTP_GET: s1's /status answers 500: it stays at weight 0 (inhibit_on_failure), s2 takes all.
    bed.wait_listing("http checks up", Duration::from_secs(10), |l| {
        l.contains("  -> 203.0.113.11:80              Masq    2")
            && l.contains("  -> 203.0.113.12:80              Masq    2")
    });
    std::fs::write(bed.dir.join("s1/www/fail"), "").expect("write");
    bed.wait_listing("s1 at weight 0", Duration::from_secs(5), |l| {
        l.contains("  -> 203.0.113.11:80              Masq    0")
    });
    let got = bed.gets("http://192.0.2.84/", "198.51.100.10", 20);
    assert_eq!(count(&got).get("s2"), Some(&20), "{got:?}");
    std::fs::remove_file(bed.dir.join("s1/www/fail")).expect("rm");
    bed.wait_listing("s1 back at 2", Duration::from_secs(5), |l| {
        l.contains("  -> 203.0.113.11:80              Masq    2")
    });

    // MISC_CHECK: the script fails while s3.down exists; notify_down runs.
    bed.wait_listing("misc up", Duration::from_secs(5), |l| l.contains("203.0.113.13:80 "));
    std::fs::write(bed.dir.join("s3.down"), "").expect("write");
    bed.wait_listing("s3 out", Duration::from_secs(5), |l| !l.contains("203.0.113.13:80 "));
    let got = bed.gets("http://192.0.2.85/", "198.51.100.10", 10);
    assert_eq!(count(&got).get("s2"), Some(&10), "{got:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(bed.dir.join("s3.notified-down").exists(), "notify_down ran");
    std::fs::remove_file(bed.dir.join("s3.down")).expect("rm");
    bed.wait_listing("s3 back", Duration::from_secs(5), |l| l.contains("203.0.113.13:80 "));
    let m = bed.metrics();
    assert!(metric(&m, "rvs_healthcheck_checks_total", "check=\"http\",result=\"failed\"") >= 1, "{m}");
    assert!(metric(&m, "rvs_healthcheck_checks_total", "check=\"misc\",result=\"ok\"") >= 1);
}

/// The virtual servers of keepalived's own samples (keepalived.conf.sample: a NAT service with
/// HTTP_GET checks and a sorry server, a DR service with TCP_CHECK and persistence; a fwmark
/// service), with the bed's addresses, drive the director: `rvsadm -Sn` shows the rules they mean
/// and traffic follows them. SIGHUP re-reads the file and changes only what differs: a server that
/// stays keeps its counters.
#[test]
fn keepalived_samples_drive_the_director_and_a_reload_changes_only_the_difference() {
    let tag = format!("ks{}", std::process::id() % 1000);
    let path = std::env::temp_dir().join(format!("rvs-director-{tag}/keepalived.conf"));
    let sample = |third: &str| {
        format!(
            r#"! Configuration File for keepalived
global_defs {{
   notification_email {{
     acassen@firewall.loc
   }}
   router_id LVS_DEVEL
}}

virtual_server 192.0.2.80 80 {{
    delay_loop 6
    lb_algo rr
    lb_kind NAT
    persistence_timeout 50
    protocol TCP

    sorry_server 203.0.113.13 8080

    real_server 203.0.113.11 8080 {{
        weight 1
        HTTP_GET {{
            url {{
              path /status
              status_code 200
            }}
            connect_timeout 3
            retry 3
            delay_before_retry 3
        }}
    }}
    {third}
}}

virtual_server 192.0.2.81 80 {{
    delay_loop 3
    lb_algo wlc
    lb_kind DR
    persistence_timeout 50
    persistence_granularity 255.255.255.0
    protocol TCP

    real_server 203.0.113.11 80 {{
        weight 3
        TCP_CHECK {{
            connect_timeout 3
        }}
    }}
    real_server 203.0.113.12 80 {{
        weight 1
        TCP_CHECK {{
            connect_timeout 3
        }}
    }}
}}

virtual_server fwmark 1 {{
    delay_loop 3
    lb_algo sh
    lb_kind DR
    real_server 203.0.113.12 80 {{
        TCP_CHECK {{
            connect_port 80
        }}
    }}
}}
"#
        )
    };
    let s2 = "real_server 203.0.113.12 8080 {\n weight 2\n TCP_CHECK {\n connect_timeout 3\n }\n }";
    let first = sample(s2);
    let bed = Bed::up_prepared(
        "ks",
        1,
        ["", "kernel_twin = \"rvstwin1\"", &format!("keepalived_conf = \"{}\"", path.display()), ""],
        |dir| std::fs::write(dir.join("keepalived.conf"), &first).expect("write"),
    );
    let check = Command::new(RVSD)
        .arg("--check")
        .arg("--config")
        .arg(bed.dir.join("rvsd.toml"))
        .output()
        .expect("rvsd");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("ok: 3 virtual servers, 5 real servers, 5 checks"),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let want = "-A -t 192.0.2.80:80 -s rr -p 50\n\
                -a -t 192.0.2.80:80 -r 203.0.113.11:8080 -m -w 1\n\
                -a -t 192.0.2.80:80 -r 203.0.113.12:8080 -m -w 2\n\
                -A -t 192.0.2.81:80 -s wlc -p 50 -M 255.255.255.0\n\
                -a -t 192.0.2.81:80 -r 203.0.113.11:80 -g -w 3\n\
                -a -t 192.0.2.81:80 -r 203.0.113.12:80 -g -w 1\n\
                -A -f 1 -s sh\n\
                -a -f 1 -r 203.0.113.12:0 -g -w 1\n";
    bed.wait_listing("the sample's services", Duration::from_secs(10), |_| bed.adm("-Sn") == want);
    // Traffic follows: NAT to the servers' port 8080, DR to the VIP on their loopback.
    let got = bed.gets("http://192.0.2.80/", "198.51.100.10", 4);
    assert!(got.iter().all(|s| s == "s1" || s == "s2"), "{got:?}");
    assert_eq!(
        bed.get("http://192.0.2.81/", "198.51.100.11"),
        bed.get("http://192.0.2.81/", "198.51.100.12")
    );
    let before = bed.adm("-Ln --stats");
    let s1_line =
        |l: &str| l.lines().find(|x| x.contains("203.0.113.11:8080")).map(str::to_owned).unwrap_or_default();
    // s2 leaves the NAT service in the file, s3 joins at weight 5; SIGHUP.
    std::fs::write(&path, sample("real_server 203.0.113.13 8080 {\n weight 5\n }")).expect("write");
    bed.rvsd.as_ref().expect("rvsd").signal("-HUP");
    bed.wait_listing("the reloaded services", Duration::from_secs(10), |l| {
        l.contains("203.0.113.13:8080            Masq    5") && !l.contains("203.0.113.12:8080")
    });
    assert!(bed.log().contains("SIGHUP: keepalived configuration re-read"), "{}", bed.log());
    assert_eq!(s1_line(&bed.adm("-Ln --stats")), s1_line(&before), "s1 kept its counters");
    // A file rvs cannot use changes nothing.
    std::fs::write(&path, sample("real_server 203.0.113.13 8080 {\n weight 5\n BFD_CHECK {\n }\n }"))
        .expect("write");
    let listed = bed.adm("-Sn");
    bed.rvsd.as_ref().expect("rvsd").signal("-HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert!(bed.log().contains("keepalived configuration refused"), "{}", bed.log());
    assert_eq!(bed.adm("-Sn"), listed);
}

/// A VRRP instance of stock keepalived, for `ns` on `iface`, written into `dir`; its process runs
/// until the returned child is killed.
fn keepalived_vrrp(
    bed: &Bed,
    ns: &str,
    name: &str,
    iface: &str,
    state: &str,
    priority: u8,
) -> std::process::Child {
    let conf = bed.dir.join(format!("{name}.conf"));
    std::fs::write(
        &conf,
        format!(
            "global_defs {{\n  router_id {name}\n}}\n\
             vrrp_instance VI_1 {{\n  state {state}\n  interface {iface}\n  virtual_router_id 51\n  \
             priority {priority}\n  advert_int 1\n  authentication {{\n    auth_type PASS\n    auth_pass rvs\n  }}\n  \
             virtual_ipaddress {{\n    192.0.2.80/24 dev {iface}\n  }}\n}}\n"
        ),
    )
    .expect("write");
    let pid = |k: &str| bed.dir.join(format!("{name}-{k}.pid")).display().to_string();
    bed.cmd_in_ns(
        ns,
        &[
            "keepalived",
            "-P",
            "-n",
            "-l",
            "-G",
            "-f",
            conf.to_str().expect("path"),
            "-p",
            &pid("main"),
            "-r",
            &pid("vrrp"),
            "-c",
            &pid("checkers"),
        ],
    )
    .stdout(std::fs::File::create(bed.dir.join(format!("{name}.log"))).expect("log"))
    .stderr(Stdio::null())
    .spawn()
    .expect("keepalived")
}

/// VRRP with stock keepalived on the director's kernel twin (`vip_ownership = "kernel_twin"`): the
/// other VRRP router (keepalived in the router namespace, priority 200) holds the VIP, its adverts
/// reach the director's keepalived through rvs and keep it BACKUP, and rvs does not answer for the
/// VIP. When the other stops, the director's keepalived takes over, puts the VIP on the twin, and rvs
/// follows: it answers for the VIP and clients reach the real servers. When the other returns
/// (preempting), the VIP leaves the twin and rvs releases it.
#[test]
fn vrrp_with_keepalived_on_the_twin_moves_the_vip_and_rvs_follows() {
    let bed =
        Bed::up_extra("vr", 1, ["kernel_twin = \"rvstwin0\"", "", "", "vip_ownership = \"kernel_twin\""]);
    bed.rules("-A -t 192.0.2.80:80 -s rr\n-a -t 192.0.2.80:80 -r 203.0.113.11:8080 -m\n-a -t 192.0.2.80:80 -r 203.0.113.12:8080 -m\n");
    let held = || metric(&bed.metrics(), "rvs_vip_held", "address=\"192.0.2.80\"");
    let wait_held = |want: u64, limit: Duration| -> Duration {
        let t = std::time::Instant::now();
        while held() != want {
            assert!(t.elapsed() < limit, "rvs_vip_held never became {want}:\n{}", bed.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        t.elapsed()
    };
    let rf = format!("{}rf", bed.prefix);
    let mut other = keepalived_vrrp(&bed, "r", "other", &rf, "MASTER", 200);
    std::thread::sleep(Duration::from_millis(1500));
    let mut mine = keepalived_vrrp(&bed, "d", "mine", "rvstwin0", "BACKUP", 100);
    // Longer than the master-down interval (3 x advert_int + skew): the director's keepalived hears
    // the other's adverts through rvs, or it would have taken the VIP by now.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(held(), 0, "a BACKUP director does not hold the VIP:\n{}", bed.log());
    let twin = bed.in_ns("d", &["ip", "-4", "addr", "show", "dev", "rvstwin0"]);
    assert!(!String::from_utf8_lossy(&twin.stdout).contains("192.0.2.80"), "{twin:?}");

    // The other router stops (its keepalived sends a priority-0 advert): the director takes over.
    let _ = Command::new("kill").arg(other.id().to_string()).status();
    let _ = other.wait();
    let took = wait_held(1, Duration::from_secs(10));
    eprintln!("the director held the VIP {took:?} after the other VRRP router stopped");
    let got = bed.gets("http://192.0.2.80/", "198.51.100.10", 10);
    assert!(got.iter().all(|s| s == "s1" || s == "s2"), "{got:?}");
    assert!(bed.log().contains("VIP held"), "{}", bed.log());
    // The director's own adverts leave through rvs: tshark on the router's side decodes them.
    let cap = bed.in_ns(
        "r",
        &[
            "tshark",
            "-i",
            &rf,
            "-a",
            "duration:3",
            "-f",
            "ip proto 112",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "vrrp.prio",
            "-e",
            "vrrp.ip_addr",
        ],
    );
    let adverts = String::from_utf8_lossy(&cap.stdout)
        .lines()
        .filter(|l| l.starts_with("192.0.2.2\t100\t192.0.2.80"))
        .count();
    assert!(
        adverts >= 2,
        "VRRP adverts of the director (priority 100, VIP 192.0.2.80) on the wire: {:?}",
        String::from_utf8_lossy(&cap.stdout)
    );

    // The other returns with its higher priority and preempts: the VIP leaves the twin; rvs follows.
    let mut other = keepalived_vrrp(&bed, "r", "other2", &rf, "MASTER", 200);
    let took = wait_held(0, Duration::from_secs(10));
    eprintln!("the director released the VIP {took:?} after the other VRRP router returned");
    assert!(bed.log().contains("VIP released"), "{}", bed.log());
    for c in [&mut mine, &mut other] {
        let _ = Command::new("kill").arg(c.id().to_string()).status();
        let _ = c.wait();
    }
}

/// The pair of keepalived files shipped in conf/keepalived/ (VRRP on the twin, the services and
/// their checks in the same file) pass stock keepalived's check (in a namespace with an interface
/// of the twin's name) and rvsd's reading.
#[test]
fn the_shipped_keepalived_pair_passes_keepalived_and_rvs() {
    common::require_root_and_tools(&["ip", "keepalived"]);
    let ns = format!("kapair{}", std::process::id() % 1000);
    let _ = Command::new("ip").args(["netns", "del", &ns]).output();
    sh(&["ip", "netns", "add", &ns]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &ns,
        "ip",
        "link",
        "add",
        "name",
        "rvs-front",
        "type",
        "veth",
        "peer",
        "name",
        "rvs-peer",
    ]);
    for f in ["director-a.conf", "director-b.conf"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/keepalived").join(f);
        let t = Command::new("ip")
            .args(["netns", "exec", &ns, "keepalived", "-t", "-f"])
            .arg(&path)
            .output()
            .expect("keepalived");
        assert!(
            t.status.success(),
            "keepalived -t {f}: {}{}",
            String::from_utf8_lossy(&t.stdout),
            String::from_utf8_lossy(&t.stderr)
        );
        let c = rvs_control_check(&path);
        assert!(c.contains("ok: 1 virtual servers, 2 real servers, 2 checks"), "{f}: {c}");
    }
    let _ = Command::new("ip").args(["netns", "del", &ns]).output();
}

/// `rvsd --check` of a minimal director config that reads `keepalived` as its rules.
fn rvs_control_check(keepalived: &Path) -> String {
    let dir = std::env::temp_dir().join(format!("rvs-kacheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg = dir.join("rvsd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[eal]\nmain_lcore = 0\nworker_lcores = [1]\nhugepages = false\n\n[[port]]\nname = \"front\"\ndevice = \"net_null0\"\n\
             address = \"192.0.2.2/24\"\nkernel_twin = \"rvs-front\"\n\n[forwarding]\nmode = \"director\"\nvip_ownership = \"kernel_twin\"\n\n\
             [control]\nkeepalived_conf = \"{}\"\n",
            keepalived.display()
        ),
    )
    .expect("write");
    let out = Command::new(RVSD).arg("--check").arg("--config").arg(&cfg).output().expect("rvsd");
    let _ = std::fs::remove_dir_all(&dir);
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The connection sync daemons. Master: `--start-daemon master` on the front twin; the stream that
/// leaves through rvs decodes in tshark's `ipvs` dissector (nothing malformed) and names the
/// connections clients made, with the sync id. Backup: a sync message built from the protocol's
/// layout by the test (Python's struct, not rvs's encoder) and multicast from the router installs
/// a connection to s3 that no client ever opened here; the client's ACK of that connection (no
/// SYN: without the entry it would be dropped) reaches s3 through NAT, and s3's RST comes back
/// translated from the VIP.
#[test]
fn connection_sync_stream_decodes_and_a_backup_installs_what_it_receives() {
    let bed = Bed::up_full("sy", 1, "kernel_twin = \"rvstwin0\"");
    bed.rules("-A -t 192.0.2.80:80 -s rr\n-a -t 192.0.2.80:80 -r 203.0.113.11:8080 -m\n-a -t 192.0.2.80:80 -r 203.0.113.12:8080 -m\n-a -t 192.0.2.80:80 -r 203.0.113.13:8080 -m\n");
    bed.adm("--start-daemon master --mcast-interface rvstwin0 --syncid 5");
    let (code, _, err) = bed.adm_run("--start-daemon master --mcast-interface rvstwin0", "");
    assert_eq!((code, err.trim()), (255, "Daemon has already run"));
    let rf = format!("{}rf", bed.prefix);
    let cap = bed
        .cmd_in_ns(
            "r",
            &[
                "tshark",
                "-i",
                &rf,
                "-a",
                "duration:6",
                "-f",
                "udp port 8848",
                "-T",
                "fields",
                "-E",
                "separator=;",
                "-E",
                "aggregator=,",
                "-e",
                "ipvs.syncid",
                "-e",
                "ipvs.caddr",
                "-e",
                "ipvs.vaddr",
                "-e",
                "ipvs.daddr",
                "-e",
                "_ws.malformed",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tshark");
    std::thread::sleep(Duration::from_millis(2000));
    let got = bed.gets("http://192.0.2.80/", "198.51.100.10", 6);
    assert_eq!(count(&got).len(), 3, "{got:?}");
    let out = cap.wait_with_output().expect("tshark");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.is_empty(), "no sync messages on the wire:\n{}", bed.log());
    for line in text.lines() {
        let f: Vec<&str> = line.split(';').collect();
        assert_eq!(f.first(), Some(&"5"), "syncid: {line}");
        assert!(f.get(4).is_none_or(|m| m.is_empty()), "malformed: {line}");
    }
    assert!(
        text.contains("198.51.100.10") && text.contains("192.0.2.80") && text.contains("203.0.113.13"),
        "{text}"
    );
    let m = bed.metrics();
    assert!(metric(&m, "rvs_sync_messages_total", "direction=\"sent\"") >= 1, "{m}");
    assert!(metric(&m, "rvs_worker_sync_connections_total", "event=\"sent\"") >= 6);
    assert_eq!(bed.adm("-L --daemon"), "master sync daemon (mcast=rvstwin0, syncid=5)\n");
    bed.adm("--stop-daemon master");

    // Backup: a message from "the other director" (the router here) about a connection to s3.
    bed.adm("--start-daemon backup --mcast-interface rvstwin0 --syncid 5");
    assert_eq!(bed.adm("-L --daemon"), "backup sync daemon (mcast=rvstwin0, syncid=5)\n");
    let send = r#"
import socket, struct
a = socket.inet_aton
conn = struct.pack('!BBHIHHHHII4s4s4s', 0, 6, 36, 0, 1, 41000, 80, 8080, 0, 900,
                   a('198.51.100.20'), a('192.0.2.80'), a('203.0.113.13'))
msg = struct.pack('!BBHBbH', 0, 5, 8 + len(conn), 1, 1, 0) + conn
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, a('192.0.2.1'))
for _ in range(3):
    s.sendto(msg, ('224.0.0.81', 8848))
"#;
    let out = bed.in_ns("r", &[PY, "-c", send]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = std::time::Instant::now();
    while !bed.adm("-Lnc").contains("198.51.100.20:41000 192.0.2.80:80      203.0.113.13:8080") {
        assert!(t.elapsed() < Duration::from_secs(5), "not installed:\n{}\n{}", bed.adm("-Lnc"), bed.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(bed.adm("-Lnc").contains("ESTABLISHED 198.51.100.20:41000"), "{}", bed.adm("-Lnc"));
    let probe = format!(
        r#"
from scapy.all import IP, TCP, sr1, conf
conf.verb = 0
r = sr1(IP(src='198.51.100.20', dst='192.0.2.80')/TCP(sport=41000, dport=80, flags='A', seq=1000, ack=2000), timeout=3, iface='{}c0')
print(r[IP].src, r[TCP].sport, r[TCP].flags if r else 'none')
"#,
        bed.prefix
    );
    let out = bed.in_ns("c", &[PY, "-c", &probe]);
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.trim().starts_with("192.0.2.80 80 R"),
        "the server's RST, translated: {answer:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(metric(&bed.metrics(), "rvs_worker_sync_connections_total", "event=\"installed\"") >= 1);
    bed.adm("--stop-daemon backup");
    let (code, _, err) = bed.adm_run("--stop-daemon backup", "");
    assert_eq!((code, err.trim()), (255, "No daemon is running"));
}

/// Two directors as an LVS-NAT pair, each with its keepalived (both BACKUP with nopreempt, 100 and
/// 95, the VIP and the servers' gateway 203.0.113.1 in one sync group) and rvsd following the
/// twins; connection sync from the master to the backup over the back twins.
struct PairBed {
    prefix: String,
    dir: PathBuf,
    rvsd: Vec<Option<Daemon>>,
    /// keepalived and BIRD processes, stopped on drop.
    keepalived: Vec<std::process::Child>,
    _lock: MutexGuard<'static, ()>,
}

impl PairBed {
    /// The VRRP pair: rvs follows the VIPs keepalived puts on the twins.
    fn up(tag: &str) -> Self {
        Self::up_with(tag, "vip_ownership = \"kernel_twin\"", "")
    }

    /// Two directors with `forwarding` and `control` lines added to their [forwarding] and
    /// [control] sections (a following [section] may go in `control`).
    fn up_with(tag: &str, forwarding: &str, control: &str) -> Self {
        let lock = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        common::require_root_and_tools(&["ip", "nginx", "curl", "clang", "ethtool", "keepalived", "bird"]);
        let prefix = format!("{}{}", tag, std::process::id() % 1000);
        let dir = std::env::temp_dir().join(format!("rvs-pair-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("work dir");
        sh(&[testbed_script().to_str().expect("path"), "up", &prefix, dir.to_str().expect("dir"), "pair"]);
        let mut bed = PairBed { prefix, dir, rvsd: Vec::new(), keepalived: Vec::new(), _lock: lock };
        for (x, n) in [("d", 2), ("e", 3)] {
            let socket = format!("{x}.sock");
            let (front, back) = (format!("192.0.2.{n}/24"), format!("203.0.113.{n}/24"));
            let cfg = director_config(&Director {
                prefix: &bed.prefix,
                ns: x,
                dir: &bed.dir,
                socket: &socket,
                front: &front,
                back: &back,
                workers: 1,
                extra: ["kernel_twin = \"rvstwin0\"", "kernel_twin = \"rvstwin1\"", control, forwarding],
            });
            let path = bed.dir.join(format!("{x}.toml"));
            std::fs::write(&path, cfg).expect("config");
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", &format!("{}{x}", bed.prefix), RVSD, "--config"]).arg(&path);
            let mut d = Daemon::spawn(cmd, &bed.dir.join(format!("{x}.log")));
            d.wait_for_log("forwarding", Duration::from_secs(30));
            bed.rvsd.push(Some(d));
        }
        bed
    }

    fn adm(&self, x: &str, args: &str) -> String {
        let (code, out, err) = common::rvsadm(RVSADM, &self.dir.join(format!("{x}.sock")), args, "");
        assert_eq!(code, 0, "rvsadm {args} on {x}: {err}");
        out
    }

    fn in_ns(&self, n: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &format!("{}{n}", self.prefix)])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    fn held(&self, x: &str) -> u64 {
        let out = self.in_ns(x, &["curl", "-sf", "-m", "2", "http://127.0.0.1:9510/metrics"]);
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find(|l| l.starts_with("rvs_vip_held{address=\"192.0.2.80\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    fn keepalived(&mut self, x: &str, priority: u8) {
        let conf = self.dir.join(format!("keepalived-{x}.conf"));
        let inst = |name: &str, iface: &str, vrid: u8, vip: &str| {
            format!(
                "vrrp_instance {name} {{\n  state BACKUP\n  nopreempt\n  interface {iface}\n  virtual_router_id {vrid}\n  \
                 priority {priority}\n  advert_int 1\n  authentication {{\n    auth_type PASS\n    auth_pass rvs\n  }}\n  \
                 virtual_ipaddress {{\n    {vip} dev {iface}\n  }}\n}}\n"
            )
        };
        std::fs::write(
            &conf,
            format!(
                "global_defs {{\n  router_id director_{x}\n}}\nvrrp_sync_group LVS {{\n  group {{\n    FRONT\n    BACK\n  }}\n}}\n{}{}",
                inst("FRONT", "rvstwin0", 51, "192.0.2.80/24"),
                inst("BACK", "rvstwin1", 52, "203.0.113.1/24")
            ),
        )
        .expect("write");
        let pid = |k: &str| self.dir.join(format!("ka-{x}-{k}.pid")).display().to_string();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &format!("{}{x}", self.prefix),
                "keepalived",
                "-P",
                "-n",
                "-l",
                "-G",
                "-f",
            ])
            .arg(&conf)
            .args(["-p", &pid("main"), "-r", &pid("vrrp"), "-c", &pid("checkers")])
            .stdout(std::fs::File::create(self.dir.join(format!("keepalived-{x}.log"))).expect("log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("keepalived");
        self.keepalived.push(child);
    }
}

impl Drop for PairBed {
    fn drop(&mut self) {
        for k in &mut self.keepalived {
            let _ = Command::new("kill").arg(k.id().to_string()).status();
            let _ = k.wait();
        }
        for d in self.rvsd.iter_mut().flatten() {
            d.signal("-TERM");
            let _ = d.wait(Duration::from_secs(10));
        }
        let _ = Command::new(testbed_script()).args(["down", &self.prefix]).arg(&self.dir).output();
        if std::env::var_os("RVS_KEEP_TEST_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The LVS-NAT pair fails over with its connections: a slow NAT download through the master (its
/// connection synced to the backup) goes on after the master's rvsd is killed: keepalived moves the
/// VIP and the servers' gateway to the backup within 3 x advert_int plus its skew, the backup's rvs
/// follows, and the download finishes with every byte right.
#[test]
fn a_nat_pair_fails_over_and_a_synced_download_finishes() {
    let mut bed = PairBed::up("pr");
    let rules = "-A -t 192.0.2.80:80 -s rr\n-a -t 192.0.2.80:80 -r 203.0.113.11:80 -m\n-a -t 192.0.2.80:80 -r 203.0.113.12:80 -m\n";
    for x in ["d", "e"] {
        let (code, _, err) = common::rvsadm(RVSADM, &bed.dir.join(format!("{x}.sock")), "-R", rules);
        assert_eq!(code, 0, "{err}");
    }
    bed.adm("d", "--start-daemon master --mcast-interface rvstwin1 --syncid 9");
    bed.adm("e", "--start-daemon backup --mcast-interface rvstwin1 --syncid 9");
    bed.keepalived("d", 100);
    std::thread::sleep(Duration::from_millis(500));
    bed.keepalived("e", 95);
    let t = std::time::Instant::now();
    while bed.held("d") != 1 {
        assert!(t.elapsed() < Duration::from_secs(15), "director d never became MASTER");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(bed.held("e"), 0, "only the MASTER holds the VIP");
    let ok =
        bed.in_ns("c", &["curl", "-sS", "-m", "5", "--interface", "198.51.100.10", "http://192.0.2.80/"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    // A slow download (1 MiB at 100 kB/s) with a small receive buffer, so that it stays on the wire.
    let rmem = bed.in_ns("c", &["sysctl", "-qw", "net.ipv4.tcp_rmem=4096 16384 32768"]);
    assert!(rmem.status.success());
    let slow = Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("{}c", bed.prefix),
            "sh",
            "-c",
            "curl -sS -m 60 --interface 198.51.100.11 --limit-rate 100k http://192.0.2.80/big.bin | sha256sum",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("curl");
    let t = std::time::Instant::now();
    while !bed.adm("e", "-Lnc").contains("ESTABLISHED 198.51.100.11:") {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the download's connection never reached the backup:\n{}",
            bed.adm("e", "-Lnc")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    // The master's rvsd dies (its twins vanish with it; its keepalived goes to FAULT).
    if let Some(d) = bed.rvsd.get_mut(0).and_then(Option::take) {
        d.signal("-KILL");
    }
    let t = std::time::Instant::now();
    while bed.held("e") != 1 {
        assert!(t.elapsed() < Duration::from_secs(15), "director e never took the VIP");
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = t.elapsed();
    eprintln!("the backup held the VIP {took:?} after the master's rvsd was killed");
    assert!(took < Duration::from_secs(6), "3 x advert_int + skew, and a margin: {took:?}");
    let out = slow.wait_with_output().expect("download");
    let got = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned();
    let sums: Vec<String> = ["s1", "s2"]
        .iter()
        .map(|s| {
            let o = sh(&["sha256sum", bed.dir.join(format!("{s}/www/big.bin")).to_str().expect("p")]);
            String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap_or_default().to_owned()
        })
        .collect();
    assert!(
        sums.contains(&got),
        "the download finished whole through the backup: {got} not in {sums:?}; curl: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        bed.adm("e", "-Lnc")
    );
    // New connections work through the new master too.
    let ok =
        bed.in_ns("c", &["curl", "-sS", "-m", "5", "--interface", "198.51.100.12", "http://192.0.2.80/"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

/// The same pair, the master's keepalived stopped instead (it gives the VIP up with a priority-0
/// advert): a client requesting every 50 ms sees failures for at most one advert interval (1 s).
#[test]
fn a_pair_moves_the_vip_within_an_advert_when_the_masters_keepalived_stops() {
    let mut bed = PairBed::up("pk");
    let rules = "-A -t 192.0.2.80:80 -s rr\n-a -t 192.0.2.80:80 -r 203.0.113.11:80 -m\n-a -t 192.0.2.80:80 -r 203.0.113.12:80 -m\n";
    for x in ["d", "e"] {
        let (code, _, err) = common::rvsadm(RVSADM, &bed.dir.join(format!("{x}.sock")), "-R", rules);
        assert_eq!(code, 0, "{err}");
    }
    bed.keepalived("d", 100);
    std::thread::sleep(Duration::from_millis(500));
    bed.keepalived("e", 95);
    let t = std::time::Instant::now();
    while bed.held("d") != 1 {
        assert!(t.elapsed() < Duration::from_secs(15), "director d never became MASTER");
        std::thread::sleep(Duration::from_millis(200));
    }
    let script = r#"
import socket, time
fails, start = [], time.time()
while time.time() - start < 6.0:
    t = time.time()
    try:
        s = socket.create_connection(("192.0.2.80", 80), timeout=0.5, source_address=("198.51.100.13", 0))
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        ok = s.recv(100).startswith(b"HTTP/1.1 200")
        s.close()
    except OSError:
        ok = False
    if not ok:
        fails.append(t - start)
    time.sleep(max(0.0, 0.05 - (time.time() - t)))
# The longest stretch of consecutive failures, in seconds (0 if none).
longest, run_start, last = 0.0, None, None
for f in fails:
    if last is None or f - last > 0.3:
        run_start = f
    longest = max(longest, f - run_start + 0.05)
    last = f
print(f"{longest:.3f} {len(fails)}")
"#;
    let client = Command::new("ip")
        .args(["netns", "exec", &format!("{}c", bed.prefix), PY, "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("client loop");
    std::thread::sleep(Duration::from_secs(2));
    // keepalived's own stop (SIGTERM): it sends priority 0 and removes the VIP from the twin.
    if let Some(k) = bed.keepalived.first() {
        let _ = Command::new("kill").arg(k.id().to_string()).status();
    }
    let out = client.wait_with_output().expect("client");
    let text = String::from_utf8_lossy(&out.stdout);
    let longest: f64 = text.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(99.0);
    eprintln!("longest run of failed requests across the failover: {longest} s ({text})");
    assert!(longest <= 1.0, "failures for {longest} s, more than one advert interval");
    assert_eq!((bed.held("d"), bed.held("e")), (0, 1), "the VIP moved to e");
}

/// Directors behind a router that spreads a VIP's flows over them (ECMP), as larger LVS sites run:
/// `vip_ownership = "routed"`, the VIPs announced over BGP by BIRD on each director's front twin,
/// BFD for fast failure detection, and the directors' connection tables independent (no sync):
/// sloppy TCP lets a director take a flow in the middle, and the shared mh key gives it the same
/// real server.
const ROUTED: &str = "vip_ownership = \"routed\"\nwithdraw_drain_milliseconds = 1500";
const SLOPPY: &str = "[ipvs]\nsloppy_tcp = true";

impl PairBed {
    /// BIRD 2 in the router (AS 65000, ECMP: `merge paths`, the kernel's L4 multipath hash) and in
    /// each director (AS 65001), which announces the /32s rvs keeps on its front twin: the files
    /// shipped in conf/bird/, with the bed's interface names and each director's address.
    fn birds(&mut self) {
        let shipped = |f: &str| {
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/bird").join(f))
                .expect("conf/bird")
        };
        let ok = self.in_ns("r", &["sysctl", "-qw", "net.ipv4.fib_multipath_hash_policy=1"]);
        assert!(ok.status.success());
        let router = shipped("router.conf").replace("\"eth1\"", &format!("\"{}bf\"", self.prefix));
        self.bird("r", &router);
        for (x, n) in [("d", 2), ("e", 3)] {
            let conf = shipped("director.conf")
                .replace("192.0.2.2", &format!("192.0.2.{n}"))
                .replace("rvs-front", "rvstwin0");
            self.bird(x, &conf);
        }
    }

    fn bird(&mut self, n: &str, conf: &str) {
        let path = self.dir.join(format!("bird-{n}.conf"));
        std::fs::write(&path, conf).expect("bird.conf");
        let ctl = self.dir.join(format!("bird-{n}.ctl"));
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("{}{n}", self.prefix), "bird", "-f", "-c"])
            .arg(&path)
            .arg("-s")
            .arg(&ctl)
            .stdout(std::fs::File::create(self.dir.join(format!("bird-{n}.log"))).expect("log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("bird");
        self.keepalived.push(child);
    }

    /// The router's next hops for `vip` (empty: no route but the connected subnet's).
    fn next_hops(&self, vip: &str) -> Vec<String> {
        let out = self.in_ns("r", &["ip", "-4", "route", "show", vip]);
        let text = String::from_utf8_lossy(&out.stdout);
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut hops: Vec<String> =
            words.windows(2).filter(|w| w[0] == "via").map(|w| w[1].to_owned()).collect();
        hops.sort();
        hops
    }

    fn wait_next_hops(&self, vip: &str, want: &[&str], within: Duration, what: &str) -> Duration {
        let t = std::time::Instant::now();
        while self.next_hops(vip) != want {
            assert!(
                t.elapsed() < within,
                "{what}: the router's next hops for {vip} are {:?}, not {want:?}\n{}",
                self.next_hops(vip),
                String::from_utf8_lossy(
                    &self
                        .in_ns(
                            "r",
                            &[
                                "birdc",
                                "-s",
                                &self.dir.join("bird-r.ctl").display().to_string(),
                                "show",
                                "protocols"
                            ]
                        )
                        .stdout
                )
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        t.elapsed()
    }
}

/// A number in the flow fleet's JSON summary.
fn fleet_field(summary: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\": ");
    summary
        .find(&pat)
        .and_then(|i| summary[i + pat.len()..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in the fleet's summary: {summary}"))
}

/// Two directors behind BIRD ECMP with an mh DR service: 10,000 kept-alive flows are spread over
/// both; one director's rvsd is stopped (SIGTERM: it withdraws its VIP and forwards while the
/// route moves); the router moves its flows to the other director, which takes them in the middle
/// (sloppy TCP) to the same real servers (mh, same key): fewer than 0.1 % of the flows are lost (a
/// flow sent to another server would be reset there), and 1,000 new connections afterwards all work.
#[test]
fn behind_bird_ecmp_a_stopped_director_loses_almost_no_established_dr_flow() {
    ecmp_director_leaves("ec", "-TERM");
}

/// The same with the director's rvsd killed (a crash: no withdrawal, its twin vanishes): the
/// router's BFD notices within 3 x 100 ms and the flows move as above.
#[test]
fn behind_bird_ecmp_a_killed_director_loses_almost_no_established_dr_flow() {
    ecmp_director_leaves("ek", "-KILL");
}

fn ecmp_director_leaves(tag: &str, signal: &str) {
    use std::io::BufRead;
    let mut bed = PairBed::up_with(tag, ROUTED, SLOPPY);
    let rules = "-A -t 192.0.2.81:80 -s mh -b mh-port\n-a -t 192.0.2.81:80 -r 203.0.113.11:80 -g\n\
                 -a -t 192.0.2.81:80 -r 203.0.113.12:80 -g\n-a -t 192.0.2.81:80 -r 203.0.113.13:80 -g\n";
    for x in ["d", "e"] {
        let (code, _, err) = common::rvsadm(RVSADM, &bed.dir.join(format!("{x}.sock")), "-R", rules);
        assert_eq!(code, 0, "{err}");
    }
    bed.birds();
    bed.wait_next_hops("192.0.2.81", &["192.0.2.2", "192.0.2.3"], Duration::from_secs(30), "both announce");
    let sources: Vec<String> = (10..30).map(|i| format!("198.51.100.{i}")).collect();
    let fleet = testbed_script().with_file_name("flow_fleet.py");
    let mut client = Command::new("ip")
        .args(["netns", "exec", &format!("{}c", bed.prefix), PY])
        .arg(&fleet)
        .args(["192.0.2.81", "80", "10000", "2", "16"])
        .args(&sources)
        .env("FLEET_NEW", "1000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flow fleet");
    let mut lines = std::io::BufReader::new(client.stdout.take().expect("stdout")).lines();
    let ready = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(ready, "ready 10000", "every flow opened");
    std::thread::sleep(Duration::from_secs(3));
    let flows =
        |bed: &PairBed, x: &str| bed.adm(x, "-Lnc").lines().filter(|l| l.contains("ESTABLISHED")).count();
    let (on_d, on_e) = (flows(&bed, "d"), flows(&bed, "e"));
    eprintln!("established flows before the stop: {on_d} through d, {on_e} through e");
    assert!(on_d > 2000 && on_e > 2000, "the router spreads the flows: {on_d} / {on_e}");
    let Some(mut d) = bed.rvsd.get_mut(0).and_then(Option::take) else { panic!("director d") };
    d.signal(signal);
    let moved = bed.wait_next_hops("192.0.2.81", &["192.0.2.3"], Duration::from_secs(5), "d left");
    eprintln!("the router sent 192.0.2.81 to e alone {moved:?} after d's {signal}");
    let status = d.wait(Duration::from_secs(10));
    if signal == "-TERM" {
        assert!(status.success(), "{}", d.log_text());
        assert!(d.log_text().contains("VIPs withdrawn for the stop"), "{}", d.log_text());
    }
    // Each flow asks every 2 s, so d's arrive at e (which takes them in the middle) within a round
    // or two; a loaded machine makes the fleet's rounds slower, hence a deadline, not a fixed wait.
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut after = flows(&bed, "e");
    while after <= on_e + on_d * 9 / 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        after = flows(&bed, "e");
    }
    eprintln!("established flows through e after the stop: {after}");
    assert!(after > on_e + on_d * 9 / 10, "e took d's flows over: {on_e} + {on_d} -> {after}");
    let summary = lines.next().and_then(Result::ok).unwrap_or_default();
    let _ = client.wait();
    eprintln!("flow fleet: {summary}");
    let lost = fleet_field(&summary, "lost_established");
    assert!(lost * 1000 < 10_000, "lost {lost} of 10,000 established flows (0.1 % is 10): {summary}");
    assert_eq!(fleet_field(&summary, "failed_to_open"), 0, "{summary}");
    assert_eq!(fleet_field(&summary, "new_failed"), 0, "new connections after convergence: {summary}");
}

/// `routed`: a VIP is announced only while its service has a server that passes its health check.
/// Both servers of 192.0.2.82 fail their HTTP check: the directors take the VIP off their twins,
/// BIRD withdraws it and the router has no route for it; one server recovers: it is announced
/// again and serves.
#[test]
fn a_routed_vip_is_withdrawn_while_its_service_has_no_healthy_server() {
    let ka = std::env::temp_dir().join(format!("rvs-ecmp-ka-{}.conf", std::process::id()));
    let server = |ip: &str| {
        format!(
            "    real_server {ip} 80 {{\n        weight 1\n        HTTP_GET {{\n            url {{\n                \
             path /status\n                status_code 200\n            }}\n            connect_timeout 1\n            \
             retry 0\n        }}\n    }}\n"
        )
    };
    std::fs::write(
        &ka,
        format!(
            "virtual_server 192.0.2.82 80 {{\n    delay_loop 1\n    lb_algo mh\n    lb_kind DR\n    protocol TCP\n{}{}}}\n",
            server("203.0.113.11"),
            server("203.0.113.12")
        ),
    )
    .expect("keepalived.conf");
    let control = format!("keepalived_conf = \"{}\"\n{SLOPPY}", ka.display());
    let mut bed = PairBed::up_with("hw", ROUTED, &control);
    let _ = std::fs::remove_file(&ka);
    bed.birds();
    // Both directors run the same keepalived configuration, so both announce the VIP.
    let d = &["192.0.2.2", "192.0.2.3"];
    bed.wait_next_hops("192.0.2.82", d, Duration::from_secs(30), "both servers pass");
    let fail = |i: u8| bed.dir.join(format!("s{i}/www/fail"));
    for i in [1, 2] {
        std::fs::write(fail(i), "").expect("fail");
    }
    let gone = bed.wait_next_hops("192.0.2.82", &[], Duration::from_secs(10), "no server passes");
    eprintln!("192.0.2.82 withdrawn {gone:?} after both servers began failing");
    assert!(bed.rvsd[0].as_ref().is_some_and(|r| r.log_text().contains("VIP withdrawn")));
    std::fs::remove_file(fail(2)).expect("recover");
    bed.wait_next_hops("192.0.2.82", d, Duration::from_secs(10), "s2 passes again");
    let out = bed.in_ns("c", &["curl", "-sS", "-m", "5", "http://192.0.2.82/"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "s2", "{}", String::from_utf8_lossy(&out.stderr));
}
