//! The IPv4 addresses of the kernel twins, read from the kernel over rtnetlink (an RTM_GETADDR dump,
//! the request `ip -4 addr show` makes). With `vip_ownership = "kernel_twin"` a VIP is the
//! director's only while one of its twins holds it: VRRP (keepalived's `virtual_ipaddress`) puts it
//! there on a MASTER and takes it away on a BACKUP, and rvs follows.
//!
//! A dump every 100 ms from the management loop: a few hundred bytes each way, no process spawned,
//! and no state to lose (a missed notification cannot leave rvs holding a VIP it should not).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, netlink};

const NLMSG_HDR: usize = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const AF_INET: u8 = 2;
const IFA_LOCAL: u16 = 2;
const IFA_ADDRESS: u16 = 1;

/// A netlink route socket and the interface indexes of the twins it reports on.
#[derive(Debug)]
pub struct TwinAddrs {
    fd: OwnedFd,
    ifindexes: Vec<u32>,
    seq: u32,
}

impl TwinAddrs {
    /// Watches the interfaces named `ifaces` (their indexes read once: the twins live as long as
    /// rvsd).
    pub fn open(ifaces: &[&str]) -> std::io::Result<Self> {
        let mut ifindexes = Vec::with_capacity(ifaces.len());
        for i in ifaces {
            let idx = std::fs::read_to_string(format!("/sys/class/net/{i}/ifindex"))?;
            ifindexes.push(
                idx.trim()
                    .parse()
                    .map_err(|_| std::io::Error::other(format!("{i}: unreadable ifindex {idx:?}")))?,
            );
        }
        let fd = rustix::net::socket(AddressFamily::NETLINK, SocketType::RAW, None)?;
        rustix::net::bind(&fd, &netlink::SocketAddrNetlink::new(0, 0))?;
        // A reply that does not come within this time ends the read (the loop never blocks long).
        rustix::net::sockopt::set_socket_timeout(
            &fd,
            rustix::net::sockopt::Timeout::Recv,
            Some(std::time::Duration::from_millis(200)),
        )?;
        Ok(Self { fd, ifindexes, seq: 0 })
    }

    /// The IPv4 addresses on the twins now.
    pub fn read(&mut self) -> std::io::Result<BTreeSet<Ipv4Addr>> {
        self.seq = self.seq.wrapping_add(1);
        let mut req = [0u8; NLMSG_HDR + 8];
        req[0..4].copy_from_slice(&((NLMSG_HDR + 8) as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&RTM_GETADDR.to_ne_bytes());
        req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        // struct ifaddrmsg: family, prefixlen, flags, scope, index (0: all).
        req[NLMSG_HDR] = AF_INET;
        rustix::net::sendto(&self.fd, &req, SendFlags::empty(), &netlink::SocketAddrNetlink::new(0, 0))?;
        let mut out = BTreeSet::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let (n, _) = rustix::net::recv(&self.fd, &mut buf[..], RecvFlags::empty())?;
            let Some(data) = buf.get(..n) else { break };
            if parse_dump(data, self.seq, &self.ifindexes, &mut out)? {
                return Ok(out);
            }
            if n == 0 {
                return Ok(out);
            }
        }
        Ok(out)
    }
}

/// Reads one datagram of an RTM_GETADDR dump into `out`; true once the dump is done.
fn parse_dump(
    mut data: &[u8],
    seq: u32,
    ifindexes: &[u32],
    out: &mut BTreeSet<Ipv4Addr>,
) -> std::io::Result<bool> {
    while data.len() >= NLMSG_HDR {
        let u32_at = |b: &[u8], at: usize| {
            b.get(at..at + 4).map_or(0, |x| u32::from_ne_bytes([x[0], x[1], x[2], x[3]]))
        };
        let u16_at = |b: &[u8], at: usize| b.get(at..at + 2).map_or(0, |x| u16::from_ne_bytes([x[0], x[1]]));
        let len = u32_at(data, 0) as usize;
        if len < NLMSG_HDR || len > data.len() {
            return Err(std::io::Error::other("malformed netlink message"));
        }
        let (kind, msg_seq) = (u16_at(data, 4), u32_at(data, 8));
        let msg = data.get(..len).unwrap_or_default();
        if msg_seq == seq {
            match kind {
                NLMSG_DONE => return Ok(true),
                NLMSG_ERROR => {
                    let errno = u32_at(msg, NLMSG_HDR) as i32;
                    if errno != 0 {
                        return Err(std::io::Error::from_raw_os_error(-errno));
                    }
                    return Ok(true);
                }
                RTM_NEWADDR => {
                    let body = msg.get(NLMSG_HDR..).unwrap_or_default();
                    let (family, index) = (body.first().copied().unwrap_or(0), u32_at(body, 4));
                    if family == AF_INET && ifindexes.contains(&index) {
                        // Attributes after the 8-byte ifaddrmsg, each 4-byte aligned.
                        let mut attrs = body.get(8..).unwrap_or_default();
                        let (mut local, mut address) = (None, None);
                        while attrs.len() >= 4 {
                            let alen = usize::from(u16_at(attrs, 0));
                            let atype = u16_at(attrs, 2);
                            if alen < 4 || alen > attrs.len() {
                                break;
                            }
                            if let Some(v) = attrs.get(4..8).filter(|_| alen == 8) {
                                let a = Ipv4Addr::new(v[0], v[1], v[2], v[3]);
                                match atype {
                                    IFA_LOCAL => local = Some(a),
                                    IFA_ADDRESS => address = Some(a),
                                    _ => {}
                                }
                            }
                            attrs = attrs.get(alen.next_multiple_of(4)..).unwrap_or_default();
                        }
                        if let Some(a) = local.or(address) {
                            out.insert(a);
                        }
                    }
                }
                _ => {}
            }
        }
        data = data.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loopback's addresses, read over netlink, include 127.0.0.1 (what `ip -4 addr show lo` says).
    #[test]
    fn reads_an_interfaces_ipv4_addresses() {
        let mut w = TwinAddrs::open(&["lo"]).expect("netlink");
        let a = w.read().expect("dump");
        assert!(a.contains(&Ipv4Addr::LOCALHOST), "{a:?}");
        assert_eq!(w.read().expect("again"), a);
    }

    #[test]
    fn malformed_dumps_are_errors_not_panics() {
        let mut out = BTreeSet::new();
        assert!(parse_dump(&[255; 40], 1, &[1], &mut out).is_err());
        assert_eq!(parse_dump(&[0; 10], 1, &[1], &mut out).ok(), Some(false));
    }
}
