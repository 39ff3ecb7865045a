//! IPVS's run-time knobs (/proc/sys/net/ipv4/vs), by their kernel names and with the kernel's
//! defaults, as values a shard decides with. Set from the `[ipvs]` section of rvsd's configuration
//! and at run time with `rvsadm --sysctl NAME=VALUE`.
//!
//! Where rvs differs, the difference is in the unit of "memory": IPVS's defences look at free
//! system memory (`amemthresh`, in pages); a shard's memory for connections is its connection
//! table, so rvs's `amemthresh` counts free connection-table entries per worker (rvsd sets it to an
//! eighth of `connections_per_worker` unless the configuration says otherwise). `stateless_syn` is
//! rvs's own (see [`Sysctl::stateless_syn`]).

/// A defence's setting, as IPVS's drop_entry / drop_packet / secure_tcp take it: 0 never, 1 and 2
/// automatic (on while free memory is below `amemthresh`; the kernel shows 2 while it is on), 3
/// always.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mode(u8);

impl Mode {
    pub const OFF: Mode = Mode(0);
    pub const AUTO: Mode = Mode(1);
    pub const ALWAYS: Mode = Mode(3);

    pub fn new(v: u8) -> Option<Self> {
        (v <= 3).then_some(Self(v))
    }

    pub fn value(self) -> u8 {
        self.0
    }

    /// Whether the defence acts now, given whether the table is short of free entries.
    #[inline]
    pub fn active(self, pressure: bool) -> bool {
        match self.0 {
            0 => false,
            3 => true,
            _ => pressure,
        }
    }
}

/// The knobs, by kernel name. Defaults are the kernel's (rvs's own: `stateless_syn` 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sysctl {
    /// Connections to a removed server: false = their packets are dropped until they expire; true =
    /// they are expired at once and the packet is scheduled afresh.
    pub expire_nodest_conn: bool,
    /// Templates pointing at a quiesced (weight 0) server are dropped when next used.
    pub expire_quiescent_template: bool,
    /// 1 (default): a SYN reusing the ports of a closing connection gets a new one, rescheduled.
    pub conn_reuse_mode: u8,
    /// Schedule TCP connections on any segment, not only on SYN.
    pub sloppy_tcp: bool,
    /// Accepted and kept for configuration files that set it; rvs has no SCTP services.
    pub sloppy_sctp: bool,
    /// Free connection-table entries (per worker) below which automatic defences act.
    pub amemthresh: u32,
    /// drop_packet's rate in mode 3: one new connection of every `am_droprate` is refused.
    pub am_droprate: u32,
    /// Drop half-open entries (SYN_RECV with no reply seen) to make room, scanning a share of the
    /// table each second (ip_vs_random_dropentry).
    pub drop_entry: Mode,
    /// Refuse a share of new connections, more the fuller the table (ip_vs_todrop).
    pub drop_packet: Mode,
    /// Shorter half-open timeouts: SYN_RECV lasts [`SECURE_SYN_RECV_SECONDS`] instead of 60 s.
    pub secure_tcp: Mode,
    /// rvs's own: SYNs are forwarded without an entry, to the server a hash of the connection's
    /// tuple picks among the service's available servers by weight, and the entry is made by the
    /// client's first ACK, which hashes to the same server (NAT's SYN-ACK is translated from the
    /// service's configuration). A flood of spoofed SYNs then holds no state at all. While it acts,
    /// schedulers other than sh/mh are replaced by that hash for new connections, and an ACK with no
    /// entry makes one (short-lived until the client's next packet).
    pub stateless_syn: Mode,
}

/// SYN_RECV's timeout while secure_tcp acts (IPVS's defence tables shorten half-open states).
pub const SECURE_SYN_RECV_SECONDS: u32 = 10;

impl Default for Sysctl {
    fn default() -> Self {
        Self {
            expire_nodest_conn: false,
            expire_quiescent_template: false,
            conn_reuse_mode: 1,
            sloppy_tcp: false,
            sloppy_sctp: false,
            amemthresh: 1024,
            am_droprate: 10,
            drop_entry: Mode::OFF,
            drop_packet: Mode::OFF,
            secure_tcp: Mode::OFF,
            stateless_syn: Mode::AUTO,
        }
    }
}

/// Why a setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SysctlError {
    #[error("unknown IPVS setting {0:?} (rvs knows: {names})", names = Sysctl::NAMES.join(", "))]
    Unknown(String),
    #[error("{name}: {value:?} is not a valid value ({range})")]
    BadValue { name: &'static str, value: String, range: &'static str },
}

impl Sysctl {
    /// Every name, in /proc/sys/net/ipv4/vs's (alphabetical) order.
    pub const NAMES: [&'static str; 11] = [
        "am_droprate",
        "amemthresh",
        "conn_reuse_mode",
        "drop_entry",
        "drop_packet",
        "expire_nodest_conn",
        "expire_quiescent_template",
        "secure_tcp",
        "sloppy_sctp",
        "sloppy_tcp",
        "stateless_syn",
    ];

    /// The value of `name`, as sysctl prints it.
    pub fn get(&self, name: &str) -> Result<u32, SysctlError> {
        Ok(match name {
            "am_droprate" => self.am_droprate,
            "amemthresh" => self.amemthresh,
            "conn_reuse_mode" => u32::from(self.conn_reuse_mode),
            "drop_entry" => u32::from(self.drop_entry.value()),
            "drop_packet" => u32::from(self.drop_packet.value()),
            "expire_nodest_conn" => u32::from(self.expire_nodest_conn),
            "expire_quiescent_template" => u32::from(self.expire_quiescent_template),
            "secure_tcp" => u32::from(self.secure_tcp.value()),
            "sloppy_sctp" => u32::from(self.sloppy_sctp),
            "sloppy_tcp" => u32::from(self.sloppy_tcp),
            "stateless_syn" => u32::from(self.stateless_syn.value()),
            other => return Err(SysctlError::Unknown(other.to_owned())),
        })
    }

    /// Sets `name` from its text form, with the kernel's ranges; on error nothing changes.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), SysctlError> {
        let key =
            Self::NAMES.iter().find(|n| **n == name).ok_or_else(|| SysctlError::Unknown(name.into()))?;
        let bad = |range| SysctlError::BadValue { name: key, value: value.to_owned(), range };
        let n: u64 = value.trim().parse().map_err(|_| bad("a number"))?;
        let flag = || match n {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(bad("0 or 1")),
        };
        let mode = || u8::try_from(n).ok().and_then(Mode::new).ok_or_else(|| bad("0 to 3"));
        match *key {
            "am_droprate" => {
                self.am_droprate =
                    u32::try_from(n).ok().filter(|&v| v >= 1).ok_or_else(|| bad("1 or more"))?
            }
            "amemthresh" => {
                self.amemthresh = u32::try_from(n).ok().filter(|&v| v >= 1).ok_or_else(|| bad("1 or more"))?
            }
            "conn_reuse_mode" => {
                self.conn_reuse_mode =
                    u8::try_from(n).ok().filter(|&v| v <= 3).ok_or_else(|| bad("0 to 3"))?
            }
            "drop_entry" => self.drop_entry = mode()?,
            "drop_packet" => self.drop_packet = mode()?,
            "expire_nodest_conn" => self.expire_nodest_conn = flag()?,
            "expire_quiescent_template" => self.expire_quiescent_template = flag()?,
            "secure_tcp" => self.secure_tcp = mode()?,
            "sloppy_sctp" => self.sloppy_sctp = flag()?,
            "sloppy_tcp" => self.sloppy_tcp = flag()?,
            "stateless_syn" => self.stateless_syn = mode()?,
            _ => return Err(SysctlError::Unknown(name.into())),
        }
        Ok(())
    }

    /// `net.ipv4.vs.NAME = VALUE` lines, as `sysctl net.ipv4.vs` prints them.
    pub fn render(&self, only: Option<&str>) -> Result<String, SysctlError> {
        let mut out = String::new();
        for name in Self::NAMES.iter().filter(|n| only.is_none_or(|o| o == **n)) {
            out.push_str(&format!("net.ipv4.vs.{name} = {}\n", self.get(name)?));
        }
        match only {
            Some(o) if out.is_empty() => Err(SysctlError::Unknown(o.to_owned())),
            _ => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_values_and_ranges_as_the_kernel_has_them() {
        let mut s = Sysctl::default();
        assert_eq!(s.render(Some("drop_entry")).unwrap(), "net.ipv4.vs.drop_entry = 0\n");
        assert_eq!(s.render(None).unwrap().lines().count(), Sysctl::NAMES.len());
        for name in Sysctl::NAMES {
            let v = s.get(name).unwrap().to_string();
            s.set(name, &v).unwrap();
        }
        assert_eq!(s, Sysctl::default(), "every value round-trips");
        s.set("secure_tcp", "3").unwrap();
        assert!(s.secure_tcp.active(false));
        s.set("drop_entry", "1").unwrap();
        assert!(!s.drop_entry.active(false) && s.drop_entry.active(true));
        let before = s;
        assert!(matches!(s.set("secure_tcp", "4"), Err(SysctlError::BadValue { .. })));
        assert!(matches!(s.set("sloppy_tcp", "2"), Err(SysctlError::BadValue { .. })));
        assert!(matches!(s.set("amemthresh", "-1"), Err(SysctlError::BadValue { .. })));
        assert!(matches!(s.set("nat_icmp_send", "1"), Err(SysctlError::Unknown(_))));
        assert_eq!(s, before, "a refused value changes nothing");
    }
}
