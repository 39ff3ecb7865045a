//! The network-namespace test bed (ARCHITECTURE.md, "Test-bed conventions"): namespaces and veth pairs
//! made by the test with a unique prefix, documentation-range addresses only, every wait bounded, and
//! everything torn down on drop, even when the test fails.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs a command to completion, failing the test with its output when it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Checks the tools the test bed needs, with the install hint when one is missing.
pub fn require_root_and_tools(tools: &[&str]) {
    let uid = sh(&["id", "-u"]);
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "the namespace test bed needs root (run scripts/test.sh as root)"
    );
    for t in tools {
        let found =
            Command::new("sh").args(["-c", &format!("command -v {t}")]).output().map(|o| o.status.success());
        assert!(matches!(found, Ok(true)), "{t} is missing: run scripts/setup.sh");
    }
}

/// A set of network namespaces and the veth pairs between them.
pub struct TestBed {
    pub prefix: String,
    namespaces: Vec<String>,
    pub dir: PathBuf,
}

impl TestBed {
    /// `tag` keeps names distinct between tests; the pid between runs. Interface names stay within 15
    /// characters.
    pub fn new(tag: &str) -> Self {
        let prefix = format!("rv{}{}", std::process::id() % 100_000, tag);
        assert!(prefix.len() <= 12, "prefix {prefix} too long for interface names");
        let dir = std::env::temp_dir().join(format!("rvs-test-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self { prefix, namespaces: Vec::new(), dir }
    }

    pub fn ns(&self, name: &str) -> String {
        format!("{}{}", self.prefix, name)
    }

    pub fn add_ns(&mut self, name: &str) -> String {
        let ns = self.ns(name);
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        sh(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        self.exec(name, &["ip", "link", "set", "lo", "up"]);
        // Keep IPv6 autoconfiguration chatter off the wire: the tests count frames.
        self.exec(name, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        self.exec(name, &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns
    }

    /// A veth pair `a` (in namespace `ns_a`) <-> `b` (in `ns_b`), both up.
    pub fn veth(&self, ns_a: &str, a: &str, ns_b: &str, b: &str) -> (String, String) {
        let (ia, ib) = (self.ns(a), self.ns(b));
        sh(&[
            "ip",
            "link",
            "add",
            &ia,
            "netns",
            &self.ns(ns_a),
            "type",
            "veth",
            "peer",
            "name",
            &ib,
            "netns",
            &self.ns(ns_b),
        ]);
        self.exec(ns_a, &["ip", "link", "set", &ia, "up"]);
        self.exec(ns_b, &["ip", "link", "set", &ib, "up"]);
        (ia, ib)
    }

    pub fn cmd(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(ns)]).args(args);
        c
    }

    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec"];
        let n = self.ns(ns);
        full.push(&n);
        full.extend_from_slice(args);
        sh(&full)
    }

    pub fn mac(&self, ns: &str, ifname: &str) -> String {
        let out = self.exec(ns, &["cat", &format!("/sys/class/net/{ifname}/address")]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            // Kill anything left in the namespace, then delete it (its veths go with it).
            let _ = Command::new("ip").args(["netns", "pids", ns]).output().map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).output();
                }
            });
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        if std::env::var_os("RVS_KEEP_TEST_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A background process killed on drop, with its stderr going to a file for inspection.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn spawn(mut cmd: Command, log: &Path) -> Self {
        let f = std::fs::File::create(log).expect("log file");
        let child =
            cmd.stdin(Stdio::null()).stdout(f.try_clone().expect("dup")).stderr(f).spawn().expect("spawn");
        Self { child, log: log.to_owned() }
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        let _ = std::fs::File::open(&self.log).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    /// Waits until the log contains `needle`, failing if the process exits or time runs out.
    pub fn wait_for_log(&mut self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.log_text().contains(needle) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("process exited ({st}) before logging {needle:?}:\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "no {needle:?} within {within:?}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill").args([sig, &self.child.id().to_string()]).output();
    }

    /// Waits for exit, bounded.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit within {within:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs rvsadm (`bin`) against the socket `sock` with `args` (split on whitespace) and `stdin`;
/// returns (exit status, stdout, stderr).
pub fn rvsadm(bin: &str, sock: &Path, args: &str, stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(bin)
        .arg("--socket")
        .arg(sock)
        .args(args.split_whitespace())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rvsadm");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of `key=N` in the first log line containing `line_has`.
pub fn log_field(log: &str, line_has: &str, key: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains(line_has))?;
    let pat = format!("{key}=");
    let rest = &line[line.find(&pat)? + pat.len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}
