//! Finds the system DPDK with pkg-config, generates bindings over its headers with bindgen, and compiles
//! the C shim that exports DPDK's `static inline` fast-path functions.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// 21.11 is the first LTS whose ethdev resets a stopped port's fast-path ops to harmless dummies
/// (`rte_eth_fp_ops`) and exports `rte_pktmbuf_free_bulk`; the safe layer relies on both.
const MIN_DPDK: &str = "21.11";
const INSTALL_HINT: &str = "install it with: apt-get install libdpdk-dev pkg-config libclang-dev \
                            (or run scripts/setup.sh)";

fn main() {
    println!("cargo:rerun-if-changed=csrc/wrapper.h");
    println!("cargo:rerun-if-changed=csrc/shim.h");
    println!("cargo:rerun-if-changed=csrc/shim.c");
    println!("cargo:rerun-if-env-changed=LIBCLANG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let lib = match pkg_config::Config::new().atleast_version(MIN_DPDK).cargo_metadata(true).probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => fail(&format!(
            "DPDK >= {MIN_DPDK} (pkg-config module libdpdk) was not found or is too old: {e}\n{INSTALL_HINT}"
        )),
    };
    // `cargo:version` reaches dependent build scripts as DEP_RTE_EAL_VERSION.
    println!("cargo:version={}", lib.version);
    println!("cargo:rustc-env=RVS_DPDK_BUILT_VERSION={}", lib.version);

    // The raw flags matter: they carry `-include rte_config.h` and `-march=...`, which the parsed
    // include-path list from the pkg-config crate drops. Without -march the headers take generic code
    // paths and some vector types differ from the library's build.
    let cflags = raw_cflags();
    pin_libclang();

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));

    let mut cc = cc::Build::new();
    cc.file("csrc/shim.c").include("csrc").opt_level(3).warnings(false);
    for f in &cflags {
        cc.flag(f);
    }
    cc.compile("rvs_dpdk_shim");

    let bindings = bindgen::Builder::default()
        .header("csrc/wrapper.h")
        .clang_args(&cflags)
        .clang_arg("-Icsrc")
        // Functions pull in the types they use; binding every rte_ type would drag in rte_flow's
        // packed-and-aligned headers, which Rust cannot represent.
        .allowlist_function(
            "rvs_.*|rte_eal_.*|rte_eth_.*|rte_pktmbuf_.*|rte_mempool_.*|rte_ring_.*|rte_lcore_.*\
             |rte_socket_.*|rte_strerror|rte_get_.*_lcore|rte_get_tsc_hz|rte_exit|rte_version",
        )
        .allowlist_type("rte_eth_conf|rte_eth_dev_info|rte_eth_stats|rte_ether_addr|rte_mbuf")
        .allowlist_var("RTE_ETH_.*|RTE_MBUF_.*|RTE_MAX_.*|RING_F_.*|RTE_PKTMBUF_HEADROOM|RTE_MEMPOOL_.*")
        // Enums as newtype constants: several DPDK enums have no zero variant, and config structs are
        // zero-initialised, which would be undefined behaviour with Rust enums.
        .default_enum_style(bindgen::EnumVariation::NewType { is_bitfield: false, is_global: false })
        .prepend_enum_name(false)
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        // Header-only helpers that bindgen cannot bind (inline, varargs-heavy or not needed).
        .blocklist_function("rte_.*_printf|rte_log.*|rte_vlog")
        .generate()
        .unwrap_or_else(|e| fail(&format!("bindgen failed over the DPDK headers: {e}")));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .unwrap_or_else(|e| fail(&format!("cannot write bindings: {e}")));
}

fn raw_cflags() -> Vec<String> {
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_string());
    let output = Command::new(&pkg_config)
        .args(["--cflags", "libdpdk"])
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run {pkg_config}: {e}\n{INSTALL_HINT}")));
    if !output.status.success() {
        fail(&format!("pkg-config --cflags libdpdk failed\n{INSTALL_HINT}"));
    }
    String::from_utf8_lossy(&output.stdout).split_whitespace().map(str::to_owned).collect()
}

/// With several libclang versions installed, clang-sys may pick one whose headers do not match the
/// resource directory it finds, and bindgen then fails on DPDK's intrinsics. Pin the one that ships the
/// unversioned `libclang.so` (that symlink comes from the libclang-dev package we ask for).
fn pin_libclang() {
    if env::var_os("LIBCLANG_PATH").is_some() {
        return;
    }
    let Ok(dir) = std::fs::read_dir("/usr/lib") else {
        return;
    };
    let mut candidates: Vec<(u32, PathBuf)> = dir
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let ver: u32 = name.strip_prefix("llvm-")?.parse().ok()?;
            let lib = e.path().join("lib");
            Path::new(&lib.join("libclang.so")).exists().then_some((ver, lib))
        })
        .collect();
    candidates.sort();
    if let Some((_, lib)) = candidates.pop() {
        // SAFETY: build scripts are single-threaded at this point; nothing else reads the environment
        // concurrently.
        unsafe { env::set_var("LIBCLANG_PATH", &lib) };
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("\nerror: {msg}\n");
    println!("cargo:warning={}", msg.lines().next().unwrap_or(msg));
    std::process::exit(1);
}
