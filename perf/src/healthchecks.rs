//! `rvs-perf healthchecks`: what health checks cost the director. One rvsd (director mode on two
//! net_null ports, as `pauses` runs it) reads a keepalived.conf of `--servers` real servers, each
//! with a TCP_CHECK every `--delay-loop-seconds` against listeners of this process on loopback (the
//! checks are real connects; the listeners accept and close). Over `--seconds` it reports the checks
//! done per second, the CPU time of rvsd's health-check thread and of its management thread (which
//! reads the checkers' state every 100 ms), the worker's longest pause, and rvsd's resident memory.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

const METRICS: &str = "127.0.0.1:9797";
const LISTENERS: usize = 4;

fn config(dir: &Path) -> String {
    format!(
        "[eal]\nmain_lcore = 0\nworker_lcores = [1]\nlcore_cpus = [0, 1]\nmemory_mib = 512\nhugepages = true\n\
         file_prefix = \"rvs-perf-hc-{pid}\"\nextra_args = [\"--huge-unlink\"]\n\n[mempool]\nmbufs = 16383\n\
         cache_size = 256\n\n[[port]]\nname = \"front\"\ndevice = \"net_null0\"\naddress = \"192.0.2.2/24\"\n\n\
         [[port]]\nname = \"back\"\ndevice = \"net_null1\"\naddress = \"203.0.113.1/24\"\n\n\
         [forwarding]\nmode = \"director\"\n\n[control]\nsocket_path = \"{}\"\nconnections_per_worker = 65536\n\
         keepalived_conf = \"{}\"\n\n[metrics]\nlisten_address = \"{METRICS}\"\n\n[management]\nstats_interval_seconds = 0\n",
        dir.join("rvsd.sock").display(),
        dir.join("keepalived.conf").display(),
        pid = std::process::id()
    )
}

fn keepalived_conf(servers: u32, delay_loop: f64, ports: &[u16]) -> String {
    let mut out = String::new();
    let per_vs = 100;
    for v in 0..servers.div_ceil(per_vs) {
        out.push_str(&format!("virtual_server 192.0.2.{} 80 {{\n  lb_algo wlc\n  lb_kind NAT\n", 10 + v));
        for r in 0..per_vs.min(servers - v * per_vs) {
            let port = ports[(r as usize) % ports.len()];
            out.push_str(&format!(
                "  real_server 10.{v}.{}.{} 8080 {{\n    TCP_CHECK {{\n      connect_ip 127.0.0.1\n      \
                 connect_port {port}\n      delay_loop {delay_loop}\n      warmup {delay_loop}\n      \
                 connect_timeout 2\n    }}\n  }}\n",
                r / 250,
                1 + (r % 250),
            ));
        }
        out.push_str("}\n");
    }
    out
}

fn metrics() -> Result<String> {
    crate::running::scrape(METRICS)
}

/// CPU seconds (user + system) of each of the process's threads, by thread name.
fn thread_cpu(pid: u32) -> Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = t?.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default().trim().to_owned();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the ")" that ends the name: state is field 3; utime and stime are 14 and 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // USER_HZ is 100 on Linux.
        out.push((comm, (ticks(14) + ticks(15)) / 100.0));
    }
    Ok(out)
}

fn cpu_of(threads: &[(String, f64)], name: &str) -> f64 {
    threads.iter().filter(|(n, _)| n == name).map(|(_, s)| s).sum()
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

pub fn run(rvsd: PathBuf, servers: u32, delay_loop: f64, seconds: u64) -> Result<()> {
    if servers == 0 || servers > 60_000 {
        bail!("--servers is 1..60000");
    }
    let accepted = Arc::new(AtomicU64::new(0));
    let mut ports = Vec::new();
    for _ in 0..LISTENERS {
        let l = TcpListener::bind("127.0.0.1:0")?;
        ports.push(l.local_addr()?.port());
        let n = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for c in l.incoming() {
                if c.is_ok() {
                    n.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let dir = std::env::temp_dir().join(format!("rvs-perf-hc-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("keepalived.conf"), keepalived_conf(servers, delay_loop, &ports))?;
    let cfg = dir.join("rvsd.toml");
    std::fs::write(&cfg, config(&dir))?;
    let d = crate::running::start_rvsd(&rvsd, &cfg, METRICS)?;
    // The first checks are spread over one warm-up; measure in the steady state after it.
    std::thread::sleep(Duration::from_secs_f64(delay_loop * 2.0 + 1.0));
    let pid = d.pid();
    let (cpu0, acc0, t) = (thread_cpu(pid)?, accepted.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let (cpu1, acc1, dt) = (thread_cpu(pid)?, accepted.load(Ordering::Relaxed), t.elapsed().as_secs_f64());
    let body = metrics()?;
    let up = body.lines().filter(|l| l.starts_with("rvs_healthcheck_up{") && l.ends_with(" 1")).count();
    let pause = body
        .lines()
        .find(|l| l.starts_with("rvs_worker_longest_pause_seconds{"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    let share = |name: &str| (cpu_of(&cpu1, name) - cpu_of(&cpu0, name)) / dt * 100.0;
    let rss = rss_mib(pid);
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "health checks: {servers} real servers, TCP_CHECK every {delay_loop} s, measured over {dt:.1} s"
    );
    println!(
        "  checks completed:        {:>9.0} /s (expected {:.0}/s)",
        (acc1 - acc0) as f64 / dt,
        f64::from(servers) / delay_loop
    );
    println!("  servers up:              {up:>9} of {servers}");
    println!("  rvs-health thread CPU:   {:>9.2} % of one core", share("rvs-health"));
    println!("  management thread CPU:   {:>9.2} % of one core (includes its 5 ms poll loop)", share("rvsd"));
    println!("  worker longest pause:    {:>9.1} µs since start", pause * 1e6);
    println!("  rvsd resident memory:    {rss:>9.1} MiB");
    Ok(())
}
