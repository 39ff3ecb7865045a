//! The packet path as stages over a burst, as VPP's graph nodes run: each stage is a loop over the
//! whole burst, and what a stage learns about a frame is kept in its [`Meta`], beside the mbuf,
//! for the stages after it. The worker runs them in order ([`crate::director`]):
//!
//! 1. **parse** ([`Pipeline::parse_stage`]): each frame parsed once, checked, into its `Meta`:
//!    offsets, addresses, ports, TCP flags, whether the destination is a VIP or ours, the
//!    classifier's mark. Frames that are not plain IPv4 TCP/UDP for IPVS (ARP, ICMP, the
//!    director's own traffic, fragments, anything malformed) are marked for the full path.
//! 2. **lookup** ([`Pipeline::lookup_stage`]): the burst's connection lookups, client packets and
//!    replies together, with their trips to memory overlapped.
//! 3. **ipvs** ([`Pipeline::ipvs_stage`]): each packet's IPVS decision (state, counters, scheduling
//!    of new connections), from the lookup's result. Frames for the full path are decided here,
//!    whole, by [`Pipeline::handle_full`].
//! 4. **rewrite** ([`Pipeline::rewrite_stage`]): NAT, DR or TUN rewrite from the parsed offsets,
//!    route and neighbour: the frame's [`Action`].
//!
//! then the worker stages TX. [`Pipeline::handle`] runs the same four stages on one frame.

use std::net::{IpAddr, Ipv4Addr};

use rvs_ipvs::conn::WarmTuple;
use rvs_ipvs::{Fwd, InVerdict, OutVerdict, PacketMeta, Time};
use rvs_wire::ethernet::ethertype;
use rvs_wire::rewrite::{self, IpInfo, NatMapping};
use rvs_wire::tcp::TcpSegment;
use rvs_wire::udp::UdpDatagram;
use rvs_wire::{PacketBuffer, ip_proto};

use super::{Action, Pipeline};
use crate::counters::DropReason;

/// The stages, in order, as the worker's counters name them.
pub const STAGES: [&str; 5] = ["parse", "lookup", "ipvs", "rewrite", "tx"];

/// The lookup stage's prefetch: the CPU's instruction, from `rvs_dpdk`.
struct CpuPrefetch;

impl rvs_ipvs::conn::Prefetch for CpuPrefetch {
    #[inline]
    fn line<T>(&self, r: &T) {
        rvs_dpdk::prefetch(r);
    }
}

/// What the stages know about one frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct Meta {
    /// Set by parse for IPv4 TCP/UDP frames IPVS decides; `None`: the full path.
    fast: Option<Fast>,
    /// Set by lookup: the connection the frame belongs to, if one was found.
    conn: Option<u32>,
    /// Set by ipvs, read by rewrite.
    decision: Decision,
}

impl Meta {
    /// Whether the parse stage put the frame on the fast path.
    pub fn is_fast(&self) -> bool {
        self.fast.is_some()
    }
}

/// A frame on the fast path, as parsed.
#[derive(Debug, Clone, Copy)]
struct Fast {
    info: IpInfo,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    tcp_flags: u8,
    vip: bool,
    local: bool,
    fwmark: Option<u32>,
}

impl Fast {
    /// A client's packet to a service (looked up by its source), else possibly a reply (looked up
    /// by its destination): only a VIP's or a marked packet can be a client's.
    fn client(&self) -> bool {
        self.vip || self.fwmark.is_some()
    }

    fn tuple(&self) -> WarmTuple<[u8; 4]> {
        WarmTuple {
            proto: self.info.protocol,
            src: self.src.octets(),
            sport: self.sport,
            dst: self.dst.octets(),
            dport: self.dport,
            reply: !self.client(),
        }
    }

    fn packet_meta(&self) -> PacketMeta {
        PacketMeta {
            protocol: self.info.protocol,
            src: IpAddr::V4(self.src),
            sport: self.sport,
            dst: IpAddr::V4(self.dst),
            dport: self.dport,
            tcp_flags: self.tcp_flags,
            fwmark: self.fwmark,
            // An IP packet's length is at most 65,535 (IPv4) or 65,575 (IPv6 with its header).
            len: u32::try_from(self.info.ip_len).unwrap_or(u32::MAX),
        }
    }
}

/// The ipvs stage's decision.
#[derive(Debug, Clone, Copy, Default)]
enum Decision {
    #[default]
    Pending,
    /// Decided whole (the full path, or a drop): nothing left for rewrite.
    Done(Action),
    /// A client's packet to its real server.
    Forward { fwd: Fwd, virt: (Ipv4Addr, u16), real: (IpAddr, u16) },
    /// A NAT server's reply, back to the client from the virtual endpoint.
    Reply { vaddr: IpAddr, vport: u16 },
}

impl Pipeline {
    /// Stage 1 over a burst: `metas[i]` for `frames[i]`. Returns how many frames there were.
    pub fn parse_stage<'a>(
        &self,
        port: usize,
        frames: impl Iterator<Item = &'a [u8]>,
        metas: &mut [Meta],
    ) -> usize {
        let mut n = 0;
        for (f, m) in frames.zip(metas.iter_mut()) {
            *m = Meta { fast: self.parse_fast(port, f), conn: None, decision: Decision::Pending };
            n += 1;
        }
        n
    }

    /// The fast path's frames: exactly those [`Pipeline::handle_full`] would hand to IPVS as TCP or
    /// UDP (our MAC, no VLAN, IPv4, not a fragment, not the director's own address alone).
    fn parse_fast(&self, port: usize, frame: &[u8]) -> Option<Fast> {
        let iface = self.net.interfaces.get(port)?;
        if frame.get(..6)? != iface.mac.as_slice() || frame.get(12..14)? != ethertype::IPV4.to_be_bytes() {
            return None;
        }
        let info = rewrite::parse_ipv4_untagged(frame)?;
        if info.fragment {
            return None;
        }
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (info.src, info.dst) else { return None };
        let local = self.net.local_port(dst).is_some();
        let vip = self.vips.contains_key(&dst);
        if local && !vip {
            return None;
        }
        let l4 = frame.get(info.l4_offset..)?;
        let (sport, dport, tcp_flags) = match info.protocol {
            ip_proto::TCP => {
                let t = TcpSegment::new_checked(l4).ok()?;
                (t.src_port(), t.dst_port(), t.flags())
            }
            ip_proto::UDP => {
                let u = UdpDatagram::new_checked(l4).ok()?;
                (u.src_port(), u.dst_port(), 0)
            }
            _ => return None,
        };
        let fwmark = self.net.classify(dst, info.protocol, dport);
        Some(Fast { info, src, dst, sport, dport, tcp_flags, vip, local, fwmark })
    }

    /// Stage 2: the burst's connection lookups, together.
    pub fn lookup_stage(&self, metas: &mut [Meta]) {
        const B: usize = rvs_ipvs::conn::BATCH;
        for chunk in metas.chunks_mut(B) {
            let mut tuples = [WarmTuple::<[u8; 4]>::default(); B];
            let mut at = [0usize; B];
            let mut n = 0;
            for (i, m) in chunk.iter().enumerate() {
                // A flood's SYN that IPVS will pass without an entry (stateless_syn acting) is not
                // looked up: at a million entries the lookup is a trip to memory for nothing.
                let skip = |f: &Fast| f.client() && self.ipvs.skips_lookup_v4(f.info.protocol, f.tcp_flags);
                if let (Some(f), Some(t), Some(a)) =
                    (m.fast.as_ref().filter(|f| !skip(f)), tuples.get_mut(n), at.get_mut(n))
                {
                    *t = f.tuple();
                    *a = i;
                    n += 1;
                }
            }
            let mut found = [None; B];
            self.ipvs.lookup_burst_v4(tuples.get(..n).unwrap_or_default(), &mut found, &CpuPrefetch);
            for (&i, &c) in at.iter().zip(&found).take(n) {
                if let Some(m) = chunk.get_mut(i) {
                    m.conn = c;
                }
            }
        }
    }

    /// Stage 3 for one frame of the burst (in order: a packet's decision may change the connections
    /// the next one finds).
    pub fn ipvs_stage<B: PacketBuffer + ?Sized>(
        &mut self,
        port: usize,
        buf: &mut B,
        meta: &mut Meta,
        now: Time,
    ) {
        let Some(f) = meta.fast else {
            meta.decision = Decision::Done(self.handle_full(port, buf, now));
            return;
        };
        let p = f.packet_meta();
        let verdict =
            if f.client() { self.ipvs.in_packet_hinted(&p, meta.conn, now) } else { InVerdict::NotOurs };
        meta.decision = match verdict {
            InVerdict::Forward { daddr, dport: rport, fwd, new, conn, .. } => {
                if new && matches!(fwd, Fwd::Masq) {
                    self.mirror_if_elsewhere(conn, &p, daddr, rport);
                }
                Decision::Forward { fwd, virt: (f.dst, f.dport), real: (daddr, rport) }
            }
            InVerdict::Drop(r) => Decision::Done(self.drop(DropReason::Ipvs(r))),
            InVerdict::NotOurs => {
                let hint = if f.client() { None } else { meta.conn };
                match self.ipvs.out_packet_hinted(&p, hint, now) {
                    OutVerdict::Reply { vaddr, vport, .. } => Decision::Reply { vaddr, vport },
                    OutVerdict::NotOurs if f.local => {
                        Decision::Done(self.up_to_kernel(port, now, DropReason::ToDirector))
                    }
                    OutVerdict::NotOurs if self.retry_unmatched => Decision::Done(Action::Retry),
                    OutVerdict::NotOurs => Decision::Done(self.drop(DropReason::NoService)),
                }
            }
        };
    }

    /// Stage 4 for one frame: its rewrite from the parsed offsets, route and neighbour.
    pub fn rewrite_stage<B: PacketBuffer + ?Sized>(
        &mut self,
        port: usize,
        buf: &mut B,
        meta: &Meta,
        now: Time,
    ) -> Action {
        match (meta.decision, meta.fast) {
            (Decision::Done(a), _) => a,
            (
                Decision::Forward { fwd: fwd @ (Fwd::Masq | Fwd::Route), virt, real: (IpAddr::V4(r), rport) },
                Some(f),
            ) => self.forward4(port, buf, fwd == Fwd::Masq, virt, (r, rport), &f.info, now),
            (Decision::Reply { vaddr: IpAddr::V4(v), vport }, Some(f)) => {
                self.reply4(port, buf, (v, vport), (f.src, f.sport), f.dst, &f.info, now)
            }
            (Decision::Forward { fwd, virt, real }, Some(f)) => {
                self.forward(port, buf, fwd, (virt.0.into(), virt.1), real, Some(&f.info), now)
            }
            (Decision::Reply { vaddr, vport }, Some(f)) => {
                let Some(nh) = self.net.route(f.dst) else { return self.drop(DropReason::NoRoute) };
                let egress = self.egress(nh);
                let m = NatMapping { virt: (vaddr, vport), real: (IpAddr::V4(f.src), f.sport) };
                let v = rewrite::nat_out_with(buf, &f.info, &egress, &m);
                self.finish(port, buf, v, nh, now)
            }
            // Not reached: a decision other than Done is only made for fast frames.
            _ => self.drop(DropReason::Unsupported),
        }
    }

    /// Decides one frame received on `port`, rewriting it in place: the four stages on one frame.
    pub fn handle<B: PacketBuffer + ?Sized>(&mut self, port: usize, buf: &mut B, now: Time) -> Action {
        let mut meta =
            Meta { fast: self.parse_fast(port, buf.bytes()), conn: None, decision: Decision::Pending };
        // One frame: the ipvs stage looks its connection up itself.
        self.ipvs_stage(port, buf, &mut meta, now);
        self.rewrite_stage(port, buf, &meta, now)
    }
}
