//! The flood defences' arithmetic: how full the tables are, when a defence acts, and what it
//! does (drop_entry, drop_packet, secure_tcp, stateless_syn; docs/flood-defence.md).

use super::*;

impl Ipvs {
    /// (capacity, live entries) of one family's connection table.
    #[inline]
    pub(super) fn table_fill(&self, v6: bool) -> (usize, usize) {
        if v6 { (self.v6.capacity(), self.v6.len()) } else { (self.v4.capacity(), self.v4.len()) }
    }

    /// The family's table is short of free entries: automatic defences act.
    /// (`amemthresh` is in entries of the IPv4 table; the IPv6 table, smaller, uses the same share.)
    #[inline]
    pub(super) fn pressure(&self, v6: bool) -> bool {
        let (cap, len) = self.table_fill(v6);
        let free = cap.saturating_sub(len) as u128;
        free * (self.v4.capacity() as u128) < u128::from(self.sysctl.amemthresh) * cap as u128
    }

    /// drop_packet: one new connection in `rate` is refused, the rate rising as the table fills
    /// (ip_vs_todrop; in mode 3, one in am_droprate).
    pub(super) fn todrop(&mut self, v6: bool) -> bool {
        let rate = if self.sysctl.drop_packet == crate::sysctl::Mode::ALWAYS {
            self.sysctl.am_droprate
        } else {
            let (cap, len) = self.table_fill(v6);
            let free = u32::try_from(cap.saturating_sub(len)).unwrap_or(u32::MAX);
            // In the family's own table's scale (see pressure).
            let scale = |x: usize| x as u128 * cap as u128 / (self.v4.capacity().max(1) as u128);
            let thresh = u32::try_from(scale(self.sysctl.amemthresh as usize)).unwrap_or(u32::MAX).max(1);
            thresh / thresh.saturating_sub(free).max(1)
        };
        self.drop_counter += 1;
        if self.drop_counter >= rate.max(1) {
            self.drop_counter = 0;
            true
        } else {
            false
        }
    }

    /// The server a stateless SYN goes to, and the one its first ACK binds: sh and mh decide by
    /// hash already; other schedulers are replaced by a hash of the client's address and port over
    /// the available servers by weight, so the SYN and the ACK agree without an entry.
    pub(super) fn pick_stateless(&mut self, sid: ServiceId, p: &PacketMeta, now: Time) -> Option<DestId> {
        let svc = self.svc(sid)?;
        if matches!(svc.cfg.scheduler, crate::SchedulerKind::Sh | crate::SchedulerKind::Mh) {
            return self.pick(sid, p, now);
        }
        let avail =
            |d: &DestId| self.dest(*d).filter(|x| x.weight() > 0 && !x.removed).map(|x| (*d, x.weight()));
        let total: u64 = svc.dests.iter().filter_map(avail).map(|(_, w)| u64::from(w)).sum();
        if total == 0 {
            return None;
        }
        let h = stateless_hash(self.sched_seed, p.src, p.sport, p.dst, p.dport) % total;
        let mut acc = 0u64;
        for (d, w) in svc.dests.iter().filter_map(avail) {
            acc += u64::from(w);
            if h < acc {
                return Some(d);
            }
        }
        None
    }

    /// SYN_RECV's timeout: shortened while secure_tcp acts.
    pub(super) fn syn_recv_timeout(&self, pressure: bool) -> u32 {
        if self.sysctl.secure_tcp.active(pressure) {
            crate::sysctl::SECURE_SYN_RECV_SECONDS
        } else {
            self.timeouts.tcp(TcpState::SynRecv)
        }
    }
}

impl Ipvs {
    /// drop_entry (ip_vs_random_dropentry): examines the next 1/32000 of the table (called every
    /// millisecond: a thirty-second of it a second, as IPVS does) and drops TCP entries still
    /// half-open (SYN_RECV, SYNACK), which is what a SYN flood leaves. Returns how many went.
    pub(super) fn drop_half_open(&mut self, v6: bool) -> usize {
        let cap = if v6 { self.v6.capacity() } else { self.v4.capacity() };
        let span = (cap / 32_000).max(16).min(cap);
        let cursor = self.drop_cursor.get(usize::from(v6)).copied().unwrap_or(0) as usize;
        let mut dropped = 0;
        for k in 0..span {
            let i = crate::num::idx32((cursor + k) % cap.max(1));
            let c = if v6 { self.v6.get(i) } else { self.v4.get(i) };
            let Some(c) = c else { continue };
            let half_open = matches!(TcpState::from_u8(c.state), TcpState::SynRecv | TcpState::SynAck);
            if c.proto == proto::TCP && half_open && !c.is_template() && !c.is_mirror() {
                self.end_connection(v6, i);
                dropped += 1;
            }
        }
        if let Some(x) = self.drop_cursor.get_mut(usize::from(v6)) {
            *x = crate::num::idx32((cursor + span) % cap.max(1));
        }
        self.defense.dropped_entries += dropped as u64;
        dropped
    }
}

/// The hash stateless_syn schedules by: the connection's tuple under the shard's scheduler key (all
/// shards of a director share it, so a SYN and its ACK agree on any worker).
pub(super) fn stateless_hash(seed: u64, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> u64 {
    let fold = |a: IpAddr| match a {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => {
            let x = u128::from(a);
            crate::num::fold128(x, 29)
        }
    };
    let mut z = seed ^ fold(src).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ fold(dst).rotate_left(31);
    z ^= (u64::from(sport) << 16 | u64::from(dport)).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
