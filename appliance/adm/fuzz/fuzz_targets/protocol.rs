//! The control protocol decoder on arbitrary bytes: an error or a request, never a panic; a
//! decoded request re-encodes to bytes that decode to the same request.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rvs_adm::protocol::{Request, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = Request::read_from(&mut &data[..]) {
        let mut again = Vec::new();
        req.write_to(&mut again).expect("in-memory write");
        assert_eq!(Request::read_from(&mut &again[..]).expect("re-decodes"), req);
    }
    let _ = Response::read_from(&mut &data[..]);
});
