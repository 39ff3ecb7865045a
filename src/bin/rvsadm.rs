//! rvsadm: the ipvsadm-compatible administration tool.
//!
//! The control socket and the ipvsadm grammar are not built yet; until they are, this binary says so
//! plainly (and fails) rather than pretending to have applied anything.

use std::process::ExitCode;

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("RVS_GIT_REVISION"), ")");

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-v") {
        println!("rvsadm {VERSION}");
        return ExitCode::SUCCESS;
    }
    eprintln!("rvsadm: the rvsd control socket is not available in this build yet; no change was made");
    ExitCode::from(2)
}
