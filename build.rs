//! Build-time facts for `rvsd --version`: the DPDK version found by pkg-config (the build fails with an
//! install hint when it is missing or too old) and the git revision of the source tree.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    // Keep in step with dpdk-sys/build.rs.
    let dpdk = match pkg_config::Config::new().atleast_version("21.11").cargo_metadata(false).probe("libdpdk")
    {
        Ok(lib) => lib.version,
        Err(e) => {
            eprintln!(
                "\nerror: rvs needs DPDK >= 21.11 (pkg-config module libdpdk): {e}\n\
                 install it with: apt-get install libdpdk-dev pkg-config libclang-dev (or run scripts/setup.sh)\n"
            );
            std::process::exit(1);
        }
    };
    println!("cargo:rustc-env=RVS_DPDK_VERSION={dpdk}");

    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let rev = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    println!("cargo:rustc-env=RVS_GIT_REVISION={rev}{}", if dirty { "-dirty" } else { "" });
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
        if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{r}");
        }
    }
}
