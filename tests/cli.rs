//! The binaries' command-line behaviour that needs no DPDK port: version strings and config errors.

use std::process::Command;

const RVSD: &str = env!("CARGO_BIN_EXE_rvsd");

fn rvsd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(RVSD).args(args).output().expect("run rvsd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_names_rvs_git_and_dpdk() {
    let (code, out, _) = rvsd(&["--version"]);
    assert_eq!(code, 0);
    let pc = Command::new("pkg-config").args(["--modversion", "libdpdk"]).output().expect("pkg-config");
    let dpdk = String::from_utf8_lossy(&pc.stdout).trim().to_owned();
    assert!(out.starts_with(&format!("rvsd {} (git ", env!("CARGO_PKG_VERSION"))), "{out}");
    assert!(out.contains(&format!(", DPDK {dpdk})")), "{out} vs DPDK {dpdk}");
    assert!(!out.contains("git unknown"), "the git revision was embedded: {out}");
}

#[test]
fn a_bad_config_key_is_named_with_exit_status_2() {
    let dir = std::env::temp_dir().join(format!("rvs-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/demo.toml")).expect("demo");

    let bad = dir.join("bad-key.toml");
    std::fs::write(&bad, demo.replace("memory_mib = 256", "memory_mb = 256")).expect("write");
    let (code, _, err) = rvsd(&["--config", bad.to_str().expect("utf-8"), "--check"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown field `memory_mb`"), "{err}");
    let line = demo.lines().position(|l| l.starts_with("memory_mib")).expect("demo sets memory_mib") + 1;
    assert!(err.contains(&format!("line {line}")), "the error points at line {line}: {err}");

    let bad = dir.join("bad-value.toml");
    std::fs::write(&bad, demo.replace("worker_lcores = [1]", "worker_lcores = [0]")).expect("write");
    let (code, _, err) = rvsd(&["--config", bad.to_str().expect("utf-8")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("eal.worker_lcores: lcore 0 is the main lcore"), "{err}");

    let (code, _, err) = rvsd(&["--config", "/nonexistent/rvsd.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read /nonexistent/rvsd.toml"), "{err}");

    let (code, out, _) =
        rvsd(&["--config", concat!(env!("CARGO_MANIFEST_DIR"), "/conf/demo.toml"), "--check"]);
    assert_eq!(code, 0);
    assert!(out.contains("--vdev net_af_packet0,iface=rvsdmdf"), "{out}");
    // The hardware report reads this machine: its worker, its ports (virtual here), its hugepages
    // as the kernel counts them.
    assert!(out.contains("worker lcore 1: NUMA node"), "{out}");
    assert!(out.contains("port front: virtual device net_af_packet0"), "{out}");
    let pages = std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
        .expect("2 MiB hugepages on x86");
    assert!(out.contains(&format!("hugepages of 2048 kB: {} reserved", pages.trim())), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
