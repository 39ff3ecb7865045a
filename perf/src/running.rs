//! Child processes of the harness (rvsd, dpdk-testpmd) with their output lines on a channel.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// A child process whose output lines arrive on a channel; killed on drop.
pub struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Result<Self> {
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let (tx, rx) = mpsc::channel();
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as _),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Self { child, lines: rx })
    }

    /// Collects lines until `deadline`, failing early if the process exits.
    pub fn collect_until(&mut self, deadline: Instant, mut keep: impl FnMut(&str)) -> Result<Vec<String>> {
        let mut all = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(l) => {
                    keep(&l);
                    all.push(l);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(st) = self.child.try_wait()? {
                        bail!("exited early ({st}):\n{}", all.join("\n"));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("output closed early:\n{}", all.join("\n"))
                }
            }
        }
        Ok(all)
    }

    /// Waits for a line containing `needle`; fails with what was printed if the process exits or the
    /// time runs out.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        self.wait_for_after(needle, timeout).map(|(l, _)| l)
    }

    /// [`Running::wait_for`], also returning the lines printed before the one found.
    pub fn wait_for_after(&mut self, needle: &str, timeout: Duration) -> Result<(String, Vec<String>)> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(l) if l.contains(needle) => return Ok((l, seen)),
                Ok(l) => seen.push(l),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(st) = self.child.try_wait()? {
                        bail!("exited ({st}) before printing {needle:?}:\n{}", seen.join("\n"));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("output closed before {needle:?}:\n{}", seen.join("\n"))
                }
            }
        }
        bail!("no {needle:?} within {timeout:?}:\n{}", seen.join("\n"))
    }

    /// Lines printed since the last look, without waiting.
    pub fn drain(&mut self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Waits up to `timeout` for the process to exit by itself, then kills it.
    pub fn finish(mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait()? {
                if !st.success() {
                    bail!("exited with {st}");
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("did not stop within 20 s")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// rvsd's exposition at `addr` (one HTTP/1.0 GET).
pub fn scrape(addr: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| anyhow::anyhow!("metrics at {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

/// Starts rvsd with `config` (warnings only in its log) and waits until its metrics at `metrics`
/// answer, at most a minute.
pub fn start_rvsd(rvsd: &std::path::Path, config: &std::path::Path, metrics: &str) -> Result<Running> {
    let mut cmd = Command::new(rvsd);
    cmd.arg("--config").arg(config).env("RVS_LOG", "warn");
    let mut d = Running::spawn(cmd)?;
    let t0 = Instant::now();
    while scrape(metrics).is_err() {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("rvsd did not come up:\n{}", d.drain().join("\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(d)
}
