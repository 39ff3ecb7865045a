//! ipvsadm's language, for `rvsadm`: command lines parsed into typed [`Command`]s with ipvsadm 1.31's
//! defaults, option-legality rules and error texts ([`grammar`]), and the listings and rule files
//! printed byte for byte in ipvsadm's layouts ([`listing`]). No I/O: the control socket carries
//! commands to rvsd, and rvsd's answers are rendered here.

#![forbid(unsafe_code)]

pub mod grammar;
pub mod listing;
pub mod manual;
pub mod protocol;

pub use grammar::{Command, ListFormat, ListOptions, ParseError, parse, parse_rules};
