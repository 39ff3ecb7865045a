//! ipvsadm command lines and rule files: parsing never panics; whatever parses as configuration
//! applies to an IPVS model without panicking, and a model's -Sn output parses back.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rvs_adm::listing::{self, Snapshot};
use rvs_adm::{Command, parse, parse_rules};
use rvs_ipvs::{Ipvs, Op};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let args: Vec<&str> = text.split_whitespace().collect();
    let _ = parse(&args);
    let Ok(cmds) = parse_rules(text) else { return };
    let mut m = Ipvs::new(8, 8, 0);
    for (_, c) in cmds {
        let _ = match c {
            Command::Change(Op::AddService(cfg)) => m.add_service(cfg).map(|_| ()),
            Command::Change(Op::AddDest(k, d)) => m.add_dest(&k, d).map(|_| ()),
            Command::Change(Op::DelService(k)) => m.del_service(&k),
            _ => Ok(()),
        };
    }
    let saved = listing::save(&Snapshot::from_ipvs(&m, 0), true);
    assert!(parse_rules(&saved).is_ok(), "our own -Sn must parse:\n{saved}");
});
