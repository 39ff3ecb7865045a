//! rvsadm against a running rvsd over the control socket: rules loaded at start, ipvsadm commands
//! and listings, -Sn / -C / -R reproducing the table, all-or-nothing restores, errors with exit
//! status 2, the socket's permissions, and a clear answer to a client of another protocol version.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::Daemon;

const RVSD: &str = env!("CARGO_BIN_EXE_rvsd");
const RVSADM: &str = env!("CARGO_BIN_EXE_rvsadm");

struct Adm {
    sock: PathBuf,
}

impl Adm {
    /// Runs rvsadm with `args` (and `stdin`), returning (status, stdout, stderr).
    fn run(&self, args: &str, stdin: &str) -> (i32, String, String) {
        common::rvsadm(RVSADM, &self.sock, args, stdin)
    }

    fn ok(&self, args: &str) -> String {
        let (code, out, err) = self.run(args, "");
        assert_eq!(code, 0, "rvsadm {args}: {err}");
        out
    }
}

fn start(dir: &Path, tag: &str) -> (Daemon, Adm) {
    let rules = dir.join("rules");
    std::fs::write(&rules, "-A -t 192.0.2.80:80 -s wrr\n-a -t 192.0.2.80:80 -r 203.0.113.10:8080 -m -w 3\n")
        .expect("rules");
    start_with(dir, tag, &format!("rules_file = \"{}\"", rules.display()))
}

/// rvsd with `rules_line` (rules_file or keepalived_conf) in its [control] section.
fn start_with(dir: &Path, tag: &str, rules_line: &str) -> (Daemon, Adm) {
    let (config, sock) = write_config(dir, tag, rules_line);
    let mut d = Daemon::spawn(
        {
            let mut c = Command::new(RVSD);
            c.arg("--config").arg(&config);
            c
        },
        &dir.join("rvsd.log"),
    );
    d.wait_for_log("control socket listening", Duration::from_secs(30));
    (d, Adm { sock })
}

/// A two-net_null-port configuration in `dir`; returns its path and its control socket's.
fn write_config(dir: &Path, tag: &str, rules_line: &str) -> (PathBuf, PathBuf) {
    let sock = dir.join("rvsd.sock");
    let config = dir.join("rvsd.toml");
    std::fs::write(
        &config,
        format!(
            r#"{head}
[[port]]
name = "a"
device = "net_null0"
rx_descriptors = 256
tx_descriptors = 256

[[port]]
name = "b"
device = "net_null1"
rx_descriptors = 256
tx_descriptors = 256

[forwarding]
mode = "io"
ports = ["a", "b"]

[management]
stats_interval_seconds = 0

[control]
socket_path = "{sock}"
{rules_line}
connections_per_worker = 4096

[metrics]
listen_address = "127.0.0.1:0"

[ipvs]
expire_nodest_conn = 1
"#,
            head = eal_head(tag, 4095),
            sock = sock.display(),
        ),
    )
    .expect("config");
    (config, sock)
}

#[test]
fn rvsadm_drives_rvsd_like_ipvsadm_drives_ipvs() {
    let dir = fresh_dir("rvs-control");
    let (mut rvsd, adm) = start(&dir, "adm");

    // The socket is mode 0660.
    let mode = std::fs::metadata(&adm.sock).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);

    // Rules from the config's rules file are there; ipvsadm commands add to them.
    adm.ok("-a -t 192.0.2.80:80 -r 203.0.113.11:8080 -m -w 1");
    adm.ok("-A -u 192.0.2.53:53 -s sh -b sh-fallback,sh-port");
    adm.ok("-a -u 192.0.2.53:53 -r 203.0.113.31 -i");
    adm.ok("--add-service --fwmark-service 1 --persistent 600 --netmask 255.255.255.0");
    adm.ok("-a -f 1 -r 203.0.113.41:0 -g -w 5");
    let want = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.0.2.80:80 wrr
  -> 203.0.113.10:8080            Masq    3      0          0         
  -> 203.0.113.11:8080            Masq    1      0          0         
UDP  192.0.2.53:53 sh (sh-fallback,sh-port)
  -> 203.0.113.31:53              Tunnel  1      0          0         
FWM  1 wlc persistent 600 mask 255.255.255.0
  -> 203.0.113.41:0               Route   5      0          0         
";
    assert_eq!(adm.ok("-Ln"), want);
    assert_eq!(adm.ok(""), adm.ok("-L"), "no arguments lists");
    assert!(adm.ok("-L").contains("TCP  192.0.2.80:http wrr\n"));
    assert_eq!(adm.ok("-L --timeout"), "Timeout (tcp tcpfin udp): 900 120 300\n");
    adm.ok("--set 3600 0 60");
    assert_eq!(adm.ok("-L --timeout"), "Timeout (tcp tcpfin udp): 3600 120 60\n");

    // IPVS's knobs (rvs's --sysctl): the config's [ipvs] section, then changed at run time.
    assert_eq!(adm.ok("--sysctl expire_nodest_conn"), "net.ipv4.vs.expire_nodest_conn = 1\n");
    assert_eq!(adm.ok("--sysctl conn_reuse_mode=2"), "net.ipv4.vs.conn_reuse_mode = 2\n");
    assert!(adm.ok("--sysctl").contains("net.ipv4.vs.conn_reuse_mode = 2\n"));
    let (code, _, err) = adm.run("--sysctl drop_entry=9", "");
    assert_eq!(code, 2, "{err}");

    // Save, clear, restore: the same table.
    let saved = adm.ok("-Sn");
    adm.ok("-C");
    assert_eq!(adm.ok("-Sn"), "");
    let (code, _, err) = adm.run("-R", &saved);
    assert_eq!(code, 0, "{err}");
    assert_eq!(adm.ok("-Ln"), want);

    // A restore with a bad line changes nothing and names the line.
    let (code, _, err) = adm.run("-R", "-A -t 192.0.2.81:80\n-a -t 192.0.2.81:80 -r 203.0.113.9 -w 99999\n");
    assert_eq!((code, err.as_str()), (2, "line 2: illegal weight specified; nothing was changed\n"));
    assert_eq!(adm.ok("-Sn"), saved);

    // ipvsadm's errors and exit status 2.
    assert_eq!(adm.run("-A -t 192.0.2.80:80", ""), (2, String::new(), "Service already exists\n".into()));
    assert_eq!(adm.run("-a -t 192.0.2.99:80 -r 203.0.113.1", "").2, "Service not defined\n");
    assert_eq!(adm.run("-A -t 192.0.2.70:0", "").2, "Zero port specified for non-persistent service\n");
    let (code, _, err) = adm.run("-L --bogus", "");
    assert_eq!(code, 2);
    assert!(err.ends_with("Try `rvsadm -h' or 'rvsadm --help' for more information.\n"), "{err}");

    // A client without permission is refused (nobody is neither root nor in the socket's group).
    let denied = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", RVSADM, "--socket"])
        .arg(&adm.sock)
        .arg("-Ln")
        .output()
        .expect("setpriv (util-linux)");
    assert_eq!(denied.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("Permission denied"), "{denied:?}");

    // A client of another protocol version gets a clear answer, in a frame it can read.
    let mut s = std::os::unix::net::UnixStream::connect(&adm.sock).expect("connect");
    s.write_all(b"RVS\x09").expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("read");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.contains("peer speaks control protocol version 9; this side speaks version 1"), "{text}");

    rvsd.signal("-TERM");
    assert!(rvsd.wait(Duration::from_secs(20)).success(), "{}", rvsd.log_text());
    assert!(!adm.sock.exists(), "the socket is removed at exit");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_rules_file_stops_rvsd_at_start() {
    let dir = fresh_dir("rvs-control-bad");
    let rules = dir.join("rules");
    std::fs::write(&rules, "-A -t 192.0.2.80:80\n-A -t 192.0.2.80:80\n").expect("rules");
    let config = dir.join("rvsd.toml");
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/demo.toml")).expect("demo");
    let text = demo
        .replace(
            "socket_path = \"/run/rvs/demo.sock\"",
            &format!("socket_path = \"{}\"", dir.join("s").display()),
        )
        .replace("rules_file = \"conf/demo.rules\"", &format!("rules_file = \"{}\"", rules.display()));
    assert!(text.contains(&rules.display().to_string()), "the demo config names a rules file");
    std::fs::write(&config, text).expect("config");
    let out = Command::new(RVSD).arg("--config").arg(&config).output().expect("rvsd");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2: Service already exists"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The address the metrics endpoint bound (port 0 in the config: the log names the real one).
fn metrics_address(d: &mut Daemon) -> String {
    d.wait_for_log("metrics listening", Duration::from_secs(30));
    let log = d.log_text();
    let line = log.lines().find(|l| l.contains("metrics listening")).expect("line");
    line.split("address=").nth(1).expect("address").split_whitespace().next().expect("addr").to_owned()
}

fn http_get(addr: &str, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("curl");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn prometheus_scrapes_rvsd_and_promtool_accepts_the_exposition() {
    let dir = fresh_dir("rvs-metrics");
    // The rules come from keepalived.conf, with a health check that passes (a listener of this
    // test's), so that the health series and their panels have data.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let ka = dir.join("keepalived.conf");
    std::fs::write(
        &ka,
        format!(
            "virtual_server 192.0.2.80 80 {{\n lb_algo wrr\n lb_kind NAT\n\
             real_server 203.0.113.10 8080 {{\n weight 3\n }}\n\
             real_server 203.0.113.11 8080 {{\n TCP_CHECK {{\n connect_ip 127.0.0.1\n connect_port {}\n delay_loop 1\n }}\n }}\n}}\n",
            listener.local_addr().expect("addr").port()
        ),
    )
    .expect("write");
    let (mut rvsd, adm) = start_with(&dir, "metrics", &format!("keepalived_conf = \"{}\"", ka.display()));
    adm.ok("-A -f 3 -p");
    adm.ok("-a -f 3 -r 203.0.113.50:0 -m -w 0");
    let addr = metrics_address(&mut rvsd);

    let text = http_get(&addr, "/metrics");
    let body = dir.join("metrics.txt");
    std::fs::write(&body, &text).expect("write");
    let lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&body).expect("open"))
        .output()
        .expect("promtool (apt-get install prometheus)");
    assert!(
        lint.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    assert!(
        text.contains(&format!("rvs_build_info{{version=\"{}\",git_revision=", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains(r#"rvs_ipvs_backend_weight{local_address="192.0.2.80",local_port="80",proto="TCP",local_mark="",remote_address="203.0.113.10",remote_port="8080"} 3"#), "{text}");
    assert!(text.contains(r#"rvs_ipvs_backend_weight{local_address="",local_port="0",proto="FWM",local_mark="3",remote_address="203.0.113.50",remote_port="0"} 0"#), "{text}");
    assert!(text.contains("rvs_mempool_mbufs{pool=\"rvs_pkt\"} 4095"), "{text}");
    assert!(text.contains(r#"rvs_healthcheck_up{local_address="192.0.2.80",local_port="80",proto="TCP",local_mark="",remote_address="203.0.113.11",remote_port="8080"} 1"#), "{text}");
    assert!(text.contains(r#"rvs_healthcheck_quorum_up{local_address="192.0.2.80",local_port="80",proto="TCP",local_mark=""} 1"#), "{text}");
    assert!(http_get(&addr, "/other").contains("rvsd serves /metrics"));

    // A real Prometheus server scrapes it and answers queries through its HTTP API.
    let prom_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        l.local_addr().expect("addr").port()
    };
    let prom_cfg = dir.join("prometheus.yml");
    std::fs::write(&prom_cfg, format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: rvsd\n    static_configs:\n      - targets: ['{addr}']\n")).expect("cfg");
    let mut prom = Daemon::spawn(
        {
            let mut c = Command::new("prometheus");
            c.arg(format!("--config.file={}", prom_cfg.display()))
                .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"));
            c
        },
        &dir.join("prometheus.log"),
    );
    prom.wait_for_log("Server is ready to receive web requests", Duration::from_secs(60));
    let query = |q: &str| -> String {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--get", "--data-urlencode"])
            .arg(format!("query={q}"))
            .arg(format!("http://127.0.0.1:{prom_port}/api/v1/query"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut weight = String::new();
    for _ in 0..60 {
        weight = query(r#"rvs_ipvs_backend_weight{remote_address="203.0.113.10"}"#);
        if weight.contains(r#""3"]"#) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(weight.contains(r#""3"]"#), "Prometheus has the weight: {weight}");
    // Traffic: net_null ports forward packets all the time, so the port counters grow between scrapes.
    let mut rate = String::new();
    for _ in 0..60 {
        rate = query("sum(rate(rvs_port_received_packets_total[5s])) > 1000");
        if rate.contains(r#""result":[{"#) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(rate.contains(r#""result":[{"#), "the port counters rise: {rate}");

    // Every query of the Grafana dashboard returns data from this Prometheus.
    let dashboard = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/grafana/rvs-dashboard.json");
    let exprs = Command::new("python3")
        .args(["-c", "import json,sys; [print(t['expr']) for p in json.load(open(sys.argv[1]))['panels'] for t in p['targets']]"])
        .arg(dashboard)
        .output()
        .expect("python3");
    let exprs = String::from_utf8_lossy(&exprs.stdout).into_owned();
    assert!(exprs.lines().count() >= 13, "{exprs}");
    for e in exprs.lines() {
        let r = query(e);
        assert!(
            r.contains(r#""status":"success""#) && r.contains(r#""result":[{"#),
            "panel query {e} returned no data: {r}"
        );
    }
    let rules = Command::new("promtool")
        .args(["check", "rules", concat!(env!("CARGO_MANIFEST_DIR"), "/conf/prometheus/rvs-alerts.yml")])
        .output()
        .expect("promtool");
    assert!(rules.status.success(), "{rules:?}");
    drop(prom);
    rvsd.signal("-TERM");
    assert!(rvsd.wait(Duration::from_secs(20)).success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// An empty directory of this test's own under the temporary directory.
fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).expect("value").parse().expect("number")
}

/// Writes `chunk` every `every` until the peer stops taking it or `limit` passes; returns how long
/// the peer kept the connection.
fn trickle(
    mut w: impl Write + Send + 'static,
    chunk: &'static [u8],
    every: Duration,
    limit: Duration,
) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let t0 = std::time::Instant::now();
        while t0.elapsed() < limit {
            if w.write_all(chunk).and_then(|()| w.flush()).is_err() {
                break;
            }
            std::thread::sleep(every);
        }
        t0.elapsed()
    })
}

/// A scrape, timed.
fn timed_get(addr: &str) -> Duration {
    let t0 = std::time::Instant::now();
    assert!(http_get(addr, "/metrics").contains("rvs_build_info"));
    t0.elapsed()
}

/// Clients that send slowly, never finish a line, or send without end: rvsadm and scrapes are still
/// answered at once, the slow clients are cut off at a total deadline, memory stays flat, and SIGTERM
/// still stops rvsd. (The hand-written endpoint on the management loop froze all of these.)
#[test]
fn hostile_clients_never_stall_rvsd() {
    let dir = fresh_dir("rvs-hostile");
    let (mut rvsd, adm) = start(&dir, "hostile");
    let addr = metrics_address(&mut rvsd);
    // Memory settles once the ports have cycled every mbuf and a scrape has run.
    std::thread::sleep(Duration::from_secs(2));
    timed_get(&addr);
    let rss_before = rss_kib(rvsd.child.id());

    // A scrape whose header never ends, one byte at a time.
    let mut slow_http = std::net::TcpStream::connect(&addr).expect("connect");
    slow_http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ").expect("write");
    let slow_http = trickle(slow_http, b"a", Duration::from_millis(100), Duration::from_secs(60));
    // A control request that never completes: one argument of 4096 bytes, sent a byte at a time.
    let mut slow_ctl = std::os::unix::net::UnixStream::connect(&adm.sock).expect("connect");
    slow_ctl.write_all(b"RVS\x01\x00\x00\x00\x01\x00\x00\x10\x00").expect("write");
    let slow_ctl = trickle(slow_ctl, b"a", Duration::from_millis(100), Duration::from_secs(60));
    // A request line without end, as fast as the server takes it.
    let flood = std::net::TcpStream::connect(&addr).expect("connect");
    let flood = trickle(flood, &[b'a'; 65536], Duration::ZERO, Duration::from_secs(60));

    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..5 {
        let t0 = std::time::Instant::now();
        assert!(adm.ok("-Ln").contains("192.0.2.80:80"));
        assert!(t0.elapsed() < Duration::from_secs(1), "rvsadm took {:?}", t0.elapsed());
        let t = timed_get(&addr);
        assert!(t < Duration::from_secs(1), "a scrape took {t:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let kept = flood.join().expect("flood");
    assert!(kept < Duration::from_secs(15), "a request line without end was read for {kept:?}");
    let kept = slow_http.join().expect("slow http");
    assert!(kept < Duration::from_secs(40), "a header sent byte by byte was read for {kept:?}");
    let kept = slow_ctl.join().expect("slow control");
    assert!(kept < Duration::from_secs(15), "a control request sent byte by byte was read for {kept:?}");
    let grown = rss_kib(rvsd.child.id()).saturating_sub(rss_before);
    eprintln!("rvsd grew by {grown} KiB while clients sent without end");
    assert!(grown < 16 * 1024, "rvsd grew by {grown} KiB");

    // Changes are logged with who made them (SO_PEERCRED).
    adm.ok("-A -t 192.0.2.81:80");
    let log = rvsd.log_text();
    let line = log.lines().find(|l| l.contains("configuration changed")).expect("logged");
    assert!(line.contains("uid=0") && line.contains("pid="), "{line}");

    // SIGTERM with a slow client connected.
    let mut lingering = std::net::TcpStream::connect(&addr).expect("connect");
    lingering.write_all(b"GET /metrics HTTP/1.1\r\n").expect("write");
    let t0 = std::time::Instant::now();
    rvsd.signal("-TERM");
    assert!(rvsd.wait(Duration::from_secs(10)).success(), "{}", rvsd.log_text());
    assert!(t0.elapsed() < Duration::from_secs(5), "SIGTERM took {:?}", t0.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The [eal] and [mempool] sections every rvsd of these tests starts with (no hugepages, a file
/// prefix of its own).
fn eal_head(tag: &str, mbufs: u32) -> String {
    format!(
        "\n[eal]\nworker_lcores = [1]\nmemory_mib = 128\nhugepages = false\nfile_prefix = \"rvs-ctl-{tag}-{}\"\n\n\
         [mempool]\nmbufs = {mbufs}\ncache_size = 64\n",
        std::process::id()
    )
}

/// A director config on two net_null ports (no namespaces needed), with `extra` appended.
fn director_config(dir: &Path, tag: &str, extra: &str) -> PathBuf {
    let config = dir.join("rvsd.toml");
    std::fs::write(
        &config,
        format!(
            r#"{head}
[[port]]
name = "front"
device = "net_null0"
address = "192.0.2.2/24"

[[port]]
name = "back"
device = "net_null1"
address = "203.0.113.1/24"

[forwarding]
mode = "director"

[management]
stats_interval_seconds = 0

[control]
socket_path = "{sock}"
connections_per_worker = 4096

[metrics]
listen_address = "127.0.0.1:0"
{extra}
"#,
            head = eal_head(tag, 8191),
            sock = dir.join("rvsd.sock").display(),
        ),
    )
    .expect("config");
    config
}

/// A worker that dies is noticed within a second: rvsd logs it and exits non-zero (so that systemd
/// restarts it). Before, its share of the traffic was lost silently until shutdown.
#[test]
fn a_worker_that_panics_stops_rvsd_within_a_second() {
    let dir = fresh_dir("rvs-panic");
    let config = director_config(&dir, "panic", "");
    let mut rvsd = Daemon::spawn(
        {
            let mut c = Command::new(RVSD);
            c.arg("--config").arg(&config).env("RVS_FAULT_WORKER_PANIC_AFTER_MS", "1500");
            c
        },
        &dir.join("rvsd.log"),
    );
    let addr = metrics_address(&mut rvsd);
    assert!(http_get(&addr, "/metrics").contains("rvs_worker_running{worker=\"1\"} 1"));
    rvsd.wait_for_log("injected fault", Duration::from_secs(20));
    let t0 = std::time::Instant::now();
    let status = rvsd.wait(Duration::from_secs(10));
    assert!(t0.elapsed() < Duration::from_secs(1), "rvsd took {:?} to stop", t0.elapsed());
    assert_eq!(status.code(), Some(1), "{}", rvsd.log_text());
    let log = rvsd.log_text();
    assert!(log.contains("a worker stopped") && log.contains("worker on lcore 1 panicked"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// SIGHUP re-reads the rules file and applies the difference; a bad file changes nothing; rvsd
/// keeps running either way (SIGHUP's default action killed it before).
#[test]
fn sighup_rereads_the_rules_file() {
    let dir = fresh_dir("rvs-hup");
    let (mut rvsd, adm) = start(&dir, "hup");
    let rules = dir.join("rules");
    let next = "-A -t 192.0.2.80:80 -s wrr\n-a -t 192.0.2.80:80 -r 203.0.113.10:8080 -m -w 5\n\
                -A -u 192.0.2.53:53 -s rr\n-a -u 192.0.2.53:53 -r 203.0.113.31:53 -g -w 1\n";
    std::fs::write(&rules, next).expect("rules");
    rvsd.signal("-HUP");
    rvsd.wait_for_log("SIGHUP: rules file re-read", Duration::from_secs(10));
    let want = "-A -t 192.0.2.80:80 -s wrr\n-a -t 192.0.2.80:80 -r 203.0.113.10:8080 -m -w 5\n\
                -A -u 192.0.2.53:53 -s rr\n-a -u 192.0.2.53:53 -r 203.0.113.31:53 -g -w 1\n";
    assert_eq!(adm.ok("-Sn"), want);

    std::fs::write(&rules, "-A -t 192.0.2.80:80\n-a -t 192.0.2.99:80 -r 203.0.113.1\n").expect("rules");
    rvsd.signal("-HUP");
    rvsd.wait_for_log("SIGHUP: rules file refused", Duration::from_secs(10));
    assert_eq!(adm.ok("-Sn"), want, "a bad file changes nothing");
    assert!(rvsd.child.try_wait().expect("wait").is_none(), "still running");
    rvsd.signal("-TERM");
    assert!(rvsd.wait(Duration::from_secs(20)).success());
    let _ = std::fs::remove_dir_all(&dir);
}

fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().expect("spawn");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// images/build-deb.sh packages the binaries this test run built; lintian finds nothing to say
/// beyond the package's overrides; dpkg installs the package on this
/// machine, its conffile passes `rvsd --check`, systemd-analyze accepts its unit, `man` shows both
/// pages, bash completes rvsadm's options and schedulers, the installed rvsd runs and the unit's own
/// readiness command sees it answer, and a purge leaves nothing behind.
#[test]
fn the_deb_package_installs_its_rvsd_runs_and_a_purge_removes_it() {
    common::require_root_and_tools(&["dpkg-deb", "dpkg-shlibdeps", "systemd-analyze", "man", "lintian"]);
    let dir = fresh_dir("rvs-deb");
    let bin_dir = Path::new(RVSD).parent().expect("bin dir");
    let (code, text) = run(Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/images/build-deb.sh"))
        .arg("--binaries")
        .arg(bin_dir)
        .arg("--out")
        .arg(&dir)
        .arg("--fast"));
    assert_eq!(code, 0, "build-deb.sh: {text}");
    let deb = PathBuf::from(text.trim().lines().last().expect("the .deb's path"));
    assert!(deb.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("rvs_")), "{text}");
    let (_, depends) = run(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Depends"));
    assert!(depends.contains("librte-ethdev") && depends.contains("libc6"), "Depends: {depends}");
    // The EAL's plugins: without the PCI bus it cannot even parse a NIC's address.
    assert!(
        depends.contains("librte-bus-pci") && depends.contains("librte-mempool-ring"),
        "Depends: {depends}"
    );
    // lintian, pedantic and with the informational tags: nothing but the package's own overrides.
    let (code, text) = run(Command::new("lintian")
        .args(["-I", "--pedantic", "--fail-on", "error,warning,info,pedantic"])
        .arg(&deb));
    let tags: Vec<&str> = text.lines().filter(|l| !l.contains("root privileges")).collect();
    assert!(code == 0 && tags.is_empty(), "lintian: {text}");

    let (code, text) = run(Command::new("dpkg").arg("-i").arg(&deb));
    assert_eq!(code, 0, "dpkg -i: {text}");
    let (_, status) = run(Command::new("dpkg").args(["-s", "rvs"]));
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(
        status.contains("/etc/rvs/rvsd.toml") && status.contains("/etc/rvs/rules"),
        "conffiles: {status}"
    );
    let (code, text) = run(Command::new("/usr/sbin/rvsd").args(["--check", "-c", "/etc/rvs/rvsd.toml"]));
    assert_eq!(code, 0, "the shipped configuration: {text}");
    let (code, text) =
        run(Command::new("systemd-analyze").args(["verify", "/lib/systemd/system/rvsd.service"]));
    assert_eq!(code, 0, "systemd-analyze verify: {text}");
    for f in [
        "/usr/share/rvs/grafana/dashboards/rvs-dashboard.json",
        "/usr/share/rvs/grafana/provisioning/dashboards/rvs.yaml",
        "/usr/share/rvs/prometheus/rvs-alerts.yml",
        "/usr/share/rvs/bird/director.conf",
        "/usr/share/doc/rvs/copyright",
    ] {
        assert!(Path::new(f).is_file(), "{f} is installed");
    }

    // `man rvsadm` finds the installed page; bash completes a scheduler after `rvsadm -A -t VIP -s`
    // and the options after `-A -t VIP`.
    for (page, has) in [("rvsadm", "--add-service"), ("rvsd", "--config")] {
        let (code, text) = run(Command::new("man").arg(page).env("MANPAGER", "cat").env("MANWIDTH", "100"));
        assert_eq!(code, 0, "man {page}: {text}");
        assert!(text.replace('\u{2010}', "-").contains(has), "man {page}: {text}");
    }
    let complete = |words: &str| {
        let script = format!(
            "source /usr/share/bash-completion/completions/rvsadm; COMP_WORDS=({words}); \
             COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); _rvsadm; echo \"${{COMPREPLY[*]}}\""
        );
        run(Command::new("bash").arg("-c").arg(script)).1
    };
    assert_eq!(complete("rvsadm -A -t 192.0.2.80:80 -s w").trim(), "wrr wlc");
    let opts = complete("rvsadm -A -t 192.0.2.80:80 -");
    for o in ["-s", "--scheduler", "-p", "--persistent", "-M", "-b"] {
        assert!(opts.split_whitespace().any(|w| w == o), "{o} offered after -A -t: {opts}");
    }
    assert!(Path::new("/usr/share/zsh/vendor-completions/_rvsadm").is_file());
    assert!(Path::new("/usr/share/fish/vendor_completions.d/rvsadm.fish").is_file());

    // The installed rvsd, on net_null ports; the unit's ExecStartPost line judges it ready.
    let rules = dir.join("rules");
    std::fs::write(&rules, "-A -t 192.0.2.80:80 -s rr\n-a -t 192.0.2.80:80 -r 203.0.113.10:8080 -m\n")
        .expect("rules");
    let (config, sock) = write_config(&dir, "deb", &format!("rules_file = \"{}\"", rules.display()));
    let mut rvsd = Daemon::spawn(
        {
            let mut c = Command::new("/usr/sbin/rvsd");
            c.arg("-c").arg(&config);
            c
        },
        &dir.join("rvsd.log"),
    );
    let unit = std::fs::read_to_string("/lib/systemd/system/rvsd.service").expect("unit");
    let ready = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStartPost=/bin/sh -c "))
        .expect("a readiness ExecStartPost")
        .trim_matches('\'');
    let (code, text) = run(Command::new("sh").arg("-c").arg(ready).env("RVS_SOCKET", &sock));
    assert_eq!(code, 0, "the readiness check: {text}\n{}", rvsd.log_text());
    let (code, out, err) = common::rvsadm("/usr/sbin/rvsadm", &sock, "-Ln", "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("TCP  192.0.2.80:80 rr") && out.contains("203.0.113.10:8080"), "{out}");
    rvsd.signal("-TERM");
    assert!(rvsd.wait(Duration::from_secs(20)).success(), "{}", rvsd.log_text());

    let (code, text) = run(Command::new("dpkg").args(["--purge", "rvs"]));
    assert_eq!(code, 0, "dpkg --purge: {text}");
    for gone in [
        "/usr/sbin/rvsd",
        "/usr/sbin/rvsadm",
        "/lib/systemd/system/rvsd.service",
        "/etc/rvs/rvsd.toml",
        "/usr/share/man/man8/rvsadm.8.gz",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after the purge");
    }
}

/// A machine tree for the appliance's rvs-prepare (`RVS_ROOT`): sysfs as the kernel lays it out for
/// a NIC on `nic_driver` at 0000:3b:00.0 and a Mellanox one at 0000:5e:00.0, hugepage pools (1 GiB
/// ones only if `giant`), IOMMU groups only if `iommu`, and the rvsd.toml asking for them.
fn prepare_tree(name: &str, giant: bool, iommu: bool) -> PathBuf {
    let root = fresh_dir(name);
    let w = |p: &str, text: &str| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(path, text).expect("write");
    };
    w("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "0\n");
    if giant {
        w("sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages", "0\n");
    }
    std::fs::create_dir_all(root.join("sys/kernel/iommu_groups")).expect("dir");
    if iommu {
        std::fs::create_dir_all(root.join("sys/kernel/iommu_groups/7")).expect("dir");
    }
    w("sys/bus/pci/drivers/ixgbe/unbind", "");
    w("sys/bus/pci/drivers/mlx5_core/unbind", "");
    w("sys/bus/pci/drivers_probe", "");
    for (dev, drv) in [("0000:3b:00.0", "ixgbe"), ("0000:5e:00.0", "mlx5_core")] {
        w(&format!("sys/bus/pci/devices/{dev}/vendor"), "0x8086\n");
        std::os::unix::fs::symlink(
            format!("../../drivers/{drv}"),
            root.join(format!("sys/bus/pci/devices/{dev}/driver")),
        )
        .expect("symlink");
    }
    w("proc/cmdline", "BOOT_IMAGE=/vmlinuz root=LABEL=rvs-root ro console=ttyS0\n");
    w(
        "etc/rvs/rvsd.toml",
        "[eal]\nworker_lcores = [2, 3]\nmemory_mib = 2048\nhugepages = true\n\n\
         [[port]]\nname = \"outside\"\ndevice = \"0000:3b:00.0\"\n\n\
         [[port]]\nname = \"inside\"\ndevice = \"0000:5e:00.0\"\n\n\
         [[port]]\nname = \"lab\"\ndevice = \"net_af_packet0,iface=eth9\"\n",
    );
    root
}

fn run_prepare(root: &Path) -> String {
    let (code, text) = run(Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/images/appliance/rvs-prepare"))
        .env("RVS_ROOT", root));
    assert_eq!(code, 0, "rvs-prepare: {text}");
    text
}

fn read_tree(root: &Path, p: &str) -> String {
    std::fs::read_to_string(root.join(p)).unwrap_or_else(|_| "(absent)".into())
}

/// The appliance's boot-time preparation on a machine with 1 GiB pages and an IOMMU: 3 GiB pages for
/// 2048 MiB (plus its margin), the Intel NIC moved to vfio-pci (unbound, overridden, probed), the
/// Mellanox NIC and the vdev left alone, and the next boot's kernel line isolating the workers'
/// CPUs and reserving the pages at boot (GRUB reads /etc/rvs/boot.cfg).
#[test]
fn the_appliance_prepares_giant_pages_vfio_and_the_boot_line() {
    let root = prepare_tree("rvs-prepare-giant", true, true);
    let text = run_prepare(&root);
    assert_eq!(read_tree(&root, "sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages"), "3", "{text}");
    assert_eq!(read_tree(&root, "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"), "0\n");
    assert_eq!(read_tree(&root, "sys/bus/pci/devices/0000:3b:00.0/driver_override"), "vfio-pci");
    assert_eq!(read_tree(&root, "sys/bus/pci/drivers/ixgbe/unbind"), "0000:3b:00.0");
    assert_eq!(read_tree(&root, "sys/bus/pci/drivers_probe"), "0000:3b:00.0");
    assert_eq!(read_tree(&root, "sys/bus/pci/devices/0000:5e:00.0/driver_override"), "(absent)");
    assert!(text.contains("0000:5e:00.0: stays on mlx5_core"), "{text}");
    let boot = read_tree(&root, "etc/rvs/boot.cfg");
    assert!(
        boot.contains(
            "set rvs_cmdline=\"isolcpus=2,3 nohz_full=2,3 rcu_nocbs=2,3 default_hugepagesz=1G hugepagesz=1G hugepages=3\""
        ),
        "{boot}"
    );
    assert!(text.contains("reboot to apply"), "{text}");
    // Run again with that line booted: nothing more to say about the kernel line.
    let line = boot.lines().find_map(|l| l.strip_prefix("set rvs_cmdline=\"")).expect("line");
    std::fs::write(
        root.join("proc/cmdline"),
        format!("root=LABEL=rvs-root ro {}", line.trim_end_matches('"')),
    )
    .expect("cmdline");
    assert!(!run_prepare(&root).contains("reboot to apply"));
    let _ = std::fs::remove_dir_all(&root);
}

/// The same in a VM without 1 GiB pages, an IOMMU or vfio's no-IOMMU mode: 2 MiB pages, and the NIC
/// goes to uio_pci_generic (what the image test's guest does).
#[test]
fn the_appliance_prepares_small_pages_and_uio_without_an_iommu() {
    let root = prepare_tree("rvs-prepare-small", false, false);
    let text = run_prepare(&root);
    assert_eq!(read_tree(&root, "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"), "1056", "{text}");
    assert_eq!(read_tree(&root, "sys/bus/pci/devices/0000:3b:00.0/driver_override"), "uio_pci_generic");
    assert!(text.contains("no IOMMU"), "{text}");
    let boot = read_tree(&root, "etc/rvs/boot.cfg");
    assert!(boot.contains("set rvs_cmdline=\"isolcpus=2,3 nohz_full=2,3 rcu_nocbs=2,3\""), "{boot}");
    let _ = std::fs::remove_dir_all(&root);
}
