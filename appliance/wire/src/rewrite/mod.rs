//! What the director does to the packets it forwards, per IPVS forwarding mode, and the replies it
//! builds itself. Written once against [`PacketBuffer`], so the same code runs on an mbuf and a `Vec`.
//!
//! Every forwarding function first decides, then changes: it returns [`Verdict::Forward`] after
//! rewriting the packet, and any other verdict (or an error) with the packet **unchanged**, so the
//! caller can quote the original in an ICMP error ([`crate::icmpv4::build_error`]).
//!
//! # TTL and hop limit (the choice, written down)
//!
//! Linux IPVS decrements the IPv4 TTL / IPv6 hop limit of every packet it forwards to a non-local real
//! server, in all three modes (`decrement_ttl()` in `__ip_vs_get_out_rt`, net/netfilter/ipvs/
//! ip_vs_xmit.c), answers TTL <= 1 with ICMP time exceeded, and for TUN decrements the inner header
//! before encapsulating; NAT replies pass the kernel's forwarding path, which decrements too. rvs does
//! the same by default ([`TtlPolicy::Decrement`]): the director is a router hop, and traceroute through
//! it looks as it does through IPVS. [`TtlPolicy::Preserve`] leaves TTLs alone, which makes DR a pure
//! MAC rewrite (the IP packet byte for byte untouched) for deployments that want the director invisible.
//!
//! # Layer 2
//!
//! Output frames carry a plain 14-byte Ethernet II header with the egress MACs: VLAN tags of the
//! ingress frame are removed (egress tagging belongs to the egress port).

mod local;
mod nat;
mod tun;
pub mod vlan;

pub use local::{echo_reply_v4, echo_reply_v6};
pub use nat::{
    NatMapping, icmp_error_inner, icmp_nat_in, icmp_nat_out, icmp6_error_inner, nat_fragment, nat_in,
    nat_in_with, nat_out, nat_out_with, nat4_in_with, nat4_out_with,
};
pub use tun::{Encap, TunOuter, tun, tun_with};

use std::net::IpAddr;

use crate::buffer::PacketBuffer;
use crate::ethernet::{self, MacAddr, ethertype};
use crate::ipv4::Ipv4Packet;
use crate::ipv6::Ipv6Packet;
use crate::{PacketError, Result};

/// Whether forwarding lowers the TTL / hop limit (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TtlPolicy {
    /// As Linux IPVS: decrement, and refuse at TTL <= 1.
    #[default]
    Decrement,
    /// Leave TTL / hop limit untouched.
    Preserve,
}

/// Where and how a rewritten packet leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Egress {
    /// The egress port's MAC.
    pub src_mac: MacAddr,
    /// The next hop's MAC (the real server, or the gateway towards it or the client).
    pub dst_mac: MacAddr,
    /// The egress link's IP MTU in bytes.
    pub mtu: u16,
    pub ttl: TtlPolicy,
    /// Checksums the egress NIC completes (DPDK TX checksum offload); none by default.
    pub offload: Offload,
}

/// Checksums left to the NIC. When the port offers TX checksum offload, the rewrite does the part
/// the NIC cannot: with `ipv4`, the IPv4 header checksum is zeroed for the NIC to fill
/// (RTE_MBUF_F_TX_IP_CKSUM); with `l4`, the TCP/UDP checksum field is set to the pseudo-header sum,
/// which the NIC completes over the segment (RTE_MBUF_F_TX_TCP_CKSUM / _UDP_CKSUM, the contract of
/// `rte_ipv4_phdr_cksum`). The caller sets the mbuf flags and l2/l3 lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offload {
    pub ipv4: bool,
    pub l4: bool,
}

impl Offload {
    pub const NONE: Self = Self { ipv4: false, l4: false };
}

/// The decision a forwarding rewrite took. Anything but `Forward` leaves the packet unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// Rewritten; send it.
    Forward,
    /// TTL / hop limit would reach zero: answer with ICMP time exceeded.
    TtlExceeded,
    /// Too big for the egress MTU and may not be fragmented (IPv4 DF, or any IPv6): answer with ICMP
    /// fragmentation needed / packet too big carrying `mtu`.
    FragNeeded { mtu: u16 },
    /// Too big and IPv4 DF clear: IPVS would fragment; rvs does not fragment yet, so drop and count.
    TooBig,
}

/// Where things are in a frame, after a checked parse down to the upper-layer header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpInfo {
    /// Bytes of Ethernet header and VLAN tags.
    pub l2_len: usize,
    pub v6: bool,
    /// Offset of the upper-layer header (TCP, UDP, ICMP) from the start of the frame.
    pub l4_offset: usize,
    /// The upper-layer protocol.
    pub protocol: u8,
    /// Length of the IP packet per its header (Ethernet padding excluded).
    pub ip_len: usize,
    pub ttl: u8,
    /// Part of a fragmented datagram.
    pub fragment: bool,
    /// IPv4 DF (always true for IPv6, which routers never fragment).
    pub dont_frag: bool,
    /// The traffic class / TOS byte.
    pub tos: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
}

impl IpInfo {
    pub fn l3_offset(&self) -> usize {
        self.l2_len
    }
}

/// [`parse_ip`] for an untagged IPv4 frame only (`None` for anything else, which the caller then
/// parses whole): the packet path's common case, inlined into it so that the result is built in
/// place rather than returned through memory.
#[inline]
pub fn parse_ipv4_untagged(frame: &[u8]) -> Option<IpInfo> {
    if frame.get(12..14)? != ethertype::IPV4.to_be_bytes() {
        return None;
    }
    let p = Ipv4Packet::new_checked(frame.get(ethernet::HEADER_LEN..)?).ok()?;
    Some(ipv4_info(ethernet::HEADER_LEN, &p))
}

/// An IPv4 packet's [`IpInfo`], its header `l2_len` bytes into the frame.
#[inline]
fn ipv4_info(l2_len: usize, p: &Ipv4Packet<&[u8]>) -> IpInfo {
    IpInfo {
        l2_len,
        v6: false,
        l4_offset: l2_len + p.header_len(),
        protocol: p.protocol(),
        ip_len: usize::from(p.total_len()),
        ttl: p.ttl(),
        fragment: p.is_fragment(),
        dont_frag: p.dont_frag(),
        tos: p.tos(),
        src: p.src().into(),
        dst: p.dst().into(),
    }
}

/// Parses Ethernet (+VLAN) and IPv4 or IPv6 down to the upper-layer header.
pub fn parse_ip(frame: &[u8]) -> Result<IpInfo> {
    let l2 = ethernet::parse_l2(frame)?;
    let ip = frame.get(l2.len..).unwrap_or_default();
    match l2.ethertype {
        ethertype::IPV4 => Ok(ipv4_info(l2.len, &Ipv4Packet::new_checked(ip)?)),
        ethertype::IPV6 => {
            let p = Ipv6Packet::new_checked(ip)?;
            let ul = p.upper_layer()?;
            Ok(IpInfo {
                l2_len: l2.len,
                v6: true,
                l4_offset: l2.len + ul.offset,
                protocol: ul.protocol,
                ip_len: crate::ipv6::HEADER_LEN + usize::from(p.payload_len()),
                ttl: p.hop_limit(),
                fragment: ul.is_fragment(),
                dont_frag: true,
                tos: p.traffic_class(),
                src: p.src().into(),
                dst: p.dst().into(),
            })
        }
        _ => Err(PacketError::Unsupported("not IP")),
    }
}

/// The checks every forwarding mode makes before touching the packet: TTL, then MTU (`overhead` =
/// bytes the mode adds, 20 for IPIP).
pub(crate) fn preflight(info: &IpInfo, egress: &Egress, overhead: usize) -> Option<Verdict> {
    if egress.ttl == TtlPolicy::Decrement && info.ttl <= 1 {
        return Some(Verdict::TtlExceeded);
    }
    let mtu = usize::from(egress.mtu);
    if info.ip_len + overhead > mtu {
        if info.dont_frag {
            // `mtu` came from a u16.
            return Some(Verdict::FragNeeded {
                mtu: u16::try_from(mtu.saturating_sub(overhead)).unwrap_or(u16::MAX),
            });
        }
        return Some(Verdict::TooBig);
    }
    None
}

/// Lowers the TTL / hop limit of the IP header at `l3` per policy (IPv4 checksum updated).
pub(crate) fn apply_ttl(frame: &mut [u8], l3: usize, v6: bool, policy: TtlPolicy) {
    if policy == TtlPolicy::Preserve {
        return;
    }
    let ip = frame.get_mut(l3..).unwrap_or_default();
    if v6 {
        let mut p = Ipv6Packet::new_unchecked(ip);
        let h = p.hop_limit();
        p.set_hop_limit(h.saturating_sub(1));
    } else {
        Ipv4Packet::new_unchecked(ip).decrement_ttl();
    }
}

/// Replaces the frame's L2 header (of `l2_len` bytes) with a plain Ethernet II header.
pub(crate) fn set_l2<B: PacketBuffer + ?Sized>(
    buf: &mut B,
    l2_len: usize,
    egress: &Egress,
    ethertype: u16,
) -> Result<()> {
    let extra = l2_len.checked_sub(ethernet::HEADER_LEN).ok_or(PacketError::Malformed("L2 header"))?;
    if extra > 0 {
        buf.strip_front(extra)?;
    }
    ethernet::write_header(buf.bytes_mut(), egress.dst_mac, egress.src_mac, ethertype)
}

/// DR (direct routing, "gatewaying"): the frame goes to the real server's MAC; with
/// [`TtlPolicy::Preserve`] the IP packet is untouched, with `Decrement` only its TTL (and IPv4
/// checksum) change.
pub fn dr<B: PacketBuffer + ?Sized>(buf: &mut B, egress: &Egress) -> Result<Verdict> {
    let info = parse_ip(buf.bytes())?;
    dr_with(buf, &info, egress)
}

/// [`dr`] with the frame already parsed: `info` is [`parse_ip`]'s result for this buffer as it is
/// (the director's parse stage hands it down instead of parsing the frame again).
pub fn dr_with<B: PacketBuffer + ?Sized>(buf: &mut B, info: &IpInfo, egress: &Egress) -> Result<Verdict> {
    let info = *info;
    if let Some(v) = preflight(&info, egress, 0) {
        return Ok(v);
    }
    apply_ttl(buf.bytes_mut(), info.l2_len, info.v6, egress.ttl);
    let et = if info.v6 { ethertype::IPV6 } else { ethertype::IPV4 };
    set_l2(buf, info.l2_len, egress, et)?;
    Ok(Verdict::Forward)
}

#[cfg(test)]
mod tests;
