//! `rvs-perf pauses`: how long a director worker stays away from its queues while the management core
//! changes and reads its state (the worker's `rvs_worker_longest_pause_seconds`, the longest of its
//! millisecond housekeeping turns: expiry, configuration changes, reports).
//!
//! One rvsd, director mode on two net_null ports (the worker polls full bursts all the time; the
//! frames are dropped at once, so its packet work is small and steady), then in turn: a restore of
//! 10,000 services with two servers each, 50 scrapes of /metrics, `-Lnc`, and an mh service's
//! weight change (a 65,537-slot Maglev table rebuilt in the worker). The gauge is a maximum since
//! start, so each step's figure is the longest pause up to and including it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const METRICS: &str = "127.0.0.1:9798";

fn config(dir: &Path) -> String {
    format!(
        "[eal]\nmain_lcore = 0\nworker_lcores = [1]\nlcore_cpus = [0, 1]\nmemory_mib = 512\nhugepages = true\n\
         file_prefix = \"rvs-perf-pauses-{pid}\"\nextra_args = [\"--huge-unlink\"]\n\n[mempool]\nmbufs = 16383\n\
         cache_size = 256\n\n[[port]]\nname = \"front\"\ndevice = \"net_null0\"\naddress = \"192.0.2.2/24\"\n\n\
         [[port]]\nname = \"back\"\ndevice = \"net_null1\"\naddress = \"203.0.113.1/24\"\n\n\
         [forwarding]\nmode = \"director\"\n\n[control]\nsocket_path = \"{}\"\nconnections_per_worker = 1048576\n\n\
         [metrics]\nlisten_address = \"{METRICS}\"\n\n[management]\nstats_interval_seconds = 0\n",
        dir.join("rvsd.sock").display(),
        pid = std::process::id()
    )
}

fn metrics() -> Result<String> {
    crate::running::scrape(METRICS)
}

/// (longest pause so far in µs, housekeeping turns over 50 µs so far).
fn longest_pause_us() -> Result<(f64, f64)> {
    let body = metrics()?;
    let value = |name: &str| -> Result<f64> {
        let line = body.lines().find(|l| l.starts_with(name)).with_context(|| format!("no {name}"))?;
        Ok(line.rsplit(' ').next().unwrap_or("").parse()?)
    };
    Ok((value("rvs_worker_longest_pause_seconds{")? * 1e6, value("rvs_worker_long_pauses_total{")?))
}

fn adm(rvsadm: &Path, sock: &Path, args: &[&str], stdin: &str) -> Result<String> {
    let mut child = Command::new(rvsadm)
        .arg("--socket")
        .arg(sock)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("rvsadm")?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(stdin.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("rvsadm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn run(rvsd: PathBuf) -> Result<()> {
    let rvsadm = rvsd.with_file_name("rvsadm");
    let dir = std::env::temp_dir().join(format!("rvs-perf-pauses-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("rvsd.toml");
    std::fs::write(&cfg, config(&dir))?;
    let sock = dir.join("rvsd.sock");
    let d = crate::running::start_rvsd(&rvsd, &cfg, METRICS)?;
    std::thread::sleep(Duration::from_secs(1));
    let mut rows = vec![("idle, 1 s after start".to_string(), longest_pause_us()?)];

    let mut rules = String::new();
    for i in 0..10_000u32 {
        let vip = format!("10.{}.{}.{}:80", i >> 16, (i >> 8) & 255, i & 255);
        rules.push_str(&format!("-A -t {vip} -s wlc\n"));
        for s in 1..=2 {
            rules.push_str(&format!("-a -t {vip} -r 203.0.113.{s}:8080 -m -w 1\n"));
        }
    }
    let t = Instant::now();
    adm(&rvsadm, &sock, &["-R"], &rules)?;
    // The workers apply it a share per millisecond; a listing waits until they have.
    let listed = adm(&rvsadm, &sock, &["-Ln"], "")?;
    let applied = t.elapsed();
    if listed.lines().filter(|l| l.starts_with("TCP")).count() != 10_000 {
        bail!("the restore did not list 10,000 services");
    }
    rows.push((
        format!("restore of 10,000 services / 20,000 servers (applied in {applied:.2?})"),
        longest_pause_us()?,
    ));
    for _ in 0..50 {
        metrics()?;
    }
    rows.push(("50 scrapes of /metrics with 10,000 services".into(), longest_pause_us()?));
    adm(&rvsadm, &sock, &["-Lnc"], "")?;
    rows.push(("-Lnc over a 1 M-entry table".into(), longest_pause_us()?));
    adm(&rvsadm, &sock, &["-A", "-t", "192.0.2.99:80", "-s", "mh"], "")?;
    for s in 1..=10 {
        adm(&rvsadm, &sock, &["-a", "-t", "192.0.2.99:80", "-r", &format!("203.0.113.{s}:80"), "-g"], "")?;
    }
    adm(&rvsadm, &sock, &["-e", "-t", "192.0.2.99:80", "-r", "203.0.113.3:80", "-g", "-w", "5"], "")?;
    adm(&rvsadm, &sock, &["-Ln", "-t", "192.0.2.99:80"], "")?;
    rows.push(("an mh service built and edited (65,537-slot Maglev table)".into(), longest_pause_us()?));
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "longest worker pause (rvs_worker_longest_pause_seconds, a maximum since start), and turns over 50 µs:"
    );
    for (what, (us, long)) in &rows {
        println!("  {us:>9.1} µs  {long:>5} over 50 µs  after {what}");
    }
    Ok(())
}
