//! The packet path: a client's packet (its connection, or a new one scheduled), a reply, an ICMP
//! error about a connection; the TCP state machine step; persistence templates.

use super::*;

impl Ipvs {
    /// Keeps a copy of another shard's NAT connection `c` here, so that this shard translates the
    /// connection's replies: used where the NIC's hash is known to bring replies to another worker
    /// than the client's packets. The copy follows the replies' state transitions and expires on its
    /// own; it holds its destination (like a connection in IPVS's trash would) but is not counted in
    /// ActiveConn/InActConn, which the owner's shard counts. A copy of a connection already here is
    /// refreshed instead.
    pub fn insert_mirror(&mut self, c: &ConnInfo, now: Time) -> Result<(), DropReason> {
        if c.is_template() || self.dest(DestId(c.dest)).is_none() {
            return Err(DropReason::NoDestination);
        }
        let v6 = c.caddr.is_ipv6();
        let meta = PacketMeta {
            protocol: c.proto,
            src: c.raddr,
            sport: c.rport,
            dst: c.caddr,
            dport: c.cport,
            tcp_flags: 0,
            fwmark: None,
            len: 0,
        };
        let expires = c.expires.max(now + 1000);
        let existing =
            if v6 { self.lookup_out::<[u8; 16]>(&meta) } else { self.lookup_out::<[u8; 4]>(&meta) };
        if let Some(i) = existing {
            with_table!(self, v6, t => t.set_expiry(i, expires));
            return Ok(());
        }
        let flags = (c.flags & flag::NOOUTPUT) | flag::MIRROR | flag::INACTIVE;
        let inserted = if v6 {
            insert_mirror_entry(&mut self.v6, c, flags, expires)
        } else {
            insert_mirror_entry(&mut self.v4, c, flags, expires)
        };
        inserted.ok_or(DropReason::TableFull)?;
        if let Some(r) = self.dest_refs.get_mut(c.dest as usize) {
            *r += 1;
        }
        Ok(())
    }

    pub(super) fn find_service(&self, p: &PacketMeta) -> Option<ServiceId> {
        if let Some(mark) = p.fwmark {
            if let Some(&id) = self.by_key.get(&ServiceKey::Fwmark { mark, v6: p.dst.is_ipv6() }) {
                return Some(id);
            }
        }
        let exact = ServiceKey::Addr { protocol: p.protocol, addr: p.dst, port: p.dport };
        if let Some(&id) = self.by_key.get(&exact) {
            return Some(id);
        }
        self.by_key.get(&ServiceKey::Addr { protocol: p.protocol, addr: p.dst, port: 0 }).copied()
    }

    /// A client -> virtual service packet (ip_vs_in): its connection, or a new one.
    pub fn in_packet(&mut self, p: &PacketMeta, now: Time) -> InVerdict {
        self.in_packet_hinted(p, None, now)
    }

    /// [`Ipvs::in_packet`] with the connection a burst lookup ([`Ipvs::lookup_burst_v4`]) found for
    /// this IPv4 packet: it is checked to be still that packet's (an earlier packet of the burst may
    /// have ended it), else the packet is looked up again (a cheap probe over cached lines).
    pub fn in_packet_hinted(&mut self, p: &PacketMeta, hint: Option<u32>, now: Time) -> InVerdict {
        let v6 = p.src.is_ipv6();
        if self.skip_lookup(p, v6) {
            return self.schedule(p, now);
        }
        let hinted = hint.filter(|&i| !v6 && warm_tuple(p, false).is_some_and(|t| self.v4.still(i, &t)));
        let existing = match hinted {
            Some(i) => Some(i),
            None if v6 => self.lookup_in::<[u8; 16]>(p),
            None => self.lookup_in::<[u8; 4]>(p),
        };
        if let Some(i) = existing {
            // None: the connection was ended to make way for a new one, scheduled below.
            if let Some(v) = self.existing(v6, i, p, now) {
                return v;
            }
        }
        self.schedule(p, now)
    }

    /// Under a SYN flood (stateless_syn acting), a SYN skips the connection lookup: at millions of
    /// entries that lookup is a miss to memory costing more than the rest of the SYN's path, and a
    /// flood is nearly all misses. A retransmitted SYN of a connection made before the flood began is
    /// then scheduled by the hash like any other (it may reach another server, which answers it; the
    /// client's ACK then finds the old entry and the old server resets it: the client retries).
    #[inline]
    pub(super) fn skip_lookup(&self, p: &PacketMeta, v6: bool) -> bool {
        p.protocol == proto::TCP
            && p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST) == tcp_flags::SYN
            && self.sysctl.stateless_syn != crate::sysctl::Mode::OFF
            && self.sysctl.stateless_syn.active(self.pressure(v6))
    }

    /// The connections of a burst of IPv4 packets, looked up together ([`ConnTable::lookup_burst`]);
    /// hand each result to [`Ipvs::in_packet_hinted`] / [`Ipvs::out_packet_hinted`].
    pub fn lookup_burst_v4(
        &self,
        burst: &[crate::conn::WarmTuple<[u8; 4]>],
        out: &mut [Option<u32>],
        pf: &impl crate::conn::Prefetch,
    ) {
        self.v4.lookup_burst(burst, out, pf);
    }

    /// Whether an IPv4 client packet with these TCP flags would skip its connection lookup now
    /// (stateless_syn acting on a SYN): the burst lookup then leaves it out too.
    pub fn skips_lookup_v4(&self, protocol: u8, flags: u8) -> bool {
        protocol == proto::TCP
            && flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST) == tcp_flags::SYN
            && self.sysctl.stateless_syn != crate::sysctl::Mode::OFF
            && self.sysctl.stateless_syn.active(self.pressure(false))
    }

    pub(super) fn lookup_in<A: Addr>(&self, p: &PacketMeta) -> Option<u32>
    where
        Self: TableOf<A>,
    {
        self.table().lookup(&conn_key::<A>(p)?, false)
    }

    /// A packet of a known connection. `None` when the connection was ended to schedule anew.
    pub(super) fn existing(&mut self, v6: bool, i: u32, p: &PacketMeta, now: Time) -> Option<InVerdict> {
        let c = self.entry_hot(ConnId { v6, slot: i })?;
        let did = DestId(c.dest);
        let dest_removed = self.dest(did).is_none_or(|d| d.removed);
        if dest_removed {
            if self.sysctl.expire_nodest_conn {
                self.end_connection(v6, i);
                return None;
            }
            return Some(self.drop(DropReason::DestUnavailable));
        }
        if p.protocol == proto::TCP
            && self.sysctl.conn_reuse_mode != 0
            && p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST) == tcp_flags::SYN
            && self.new_conn_expected(&c)
        {
            self.end_connection(v6, i);
            return None;
        }
        self.transition(v6, i, c.step(), p, Direction::Input, now);
        let d = self.dest_mut(did)?;
        d.stats.in_pkts += 1;
        d.stats.in_bytes += u64::from(p.len);
        let (daddr, fwd, service) = (d.cfg.addr, d.cfg.fwd, d.service);
        if let Some(s) = self.svc_mut(service) {
            s.stats.in_pkts += 1;
            s.stats.in_bytes += u64::from(p.len);
        }
        Some(InVerdict::Forward {
            conn: Some(ConnId { v6, slot: i }),
            dest: did,
            daddr,
            dport: c.rport,
            fwd,
            new: false,
        })
    }

    /// is_new_conn_expected (conn_reuse_mode): a SYN may replace a connection that is closing.
    pub(super) fn new_conn_expected(&self, c: &crate::conn::Hot) -> bool {
        if c.control != NONE {
            return false;
        }
        let s = TcpState::from_u8(c.state);
        s == TcpState::TimeWait
            || s == TcpState::Close
            || (self.sysctl.conn_reuse_mode & 2 != 0
                && s == TcpState::FinWait
                && c.flags & flag::NOOUTPUT != 0)
    }

    /// A reply from a real server (ip_vs_out), for NAT connections.
    pub fn out_packet(&mut self, p: &PacketMeta, now: Time) -> OutVerdict {
        self.out_packet_hinted(p, None, now)
    }

    /// [`Ipvs::out_packet`] with a burst lookup's result, checked as [`Ipvs::in_packet_hinted`] does.
    pub fn out_packet_hinted(&mut self, p: &PacketMeta, hint: Option<u32>, now: Time) -> OutVerdict {
        let v6 = p.src.is_ipv6();
        let hinted = hint.filter(|&i| !v6 && warm_tuple(p, true).is_some_and(|t| self.v4.still(i, &t)));
        let found = match hinted {
            Some(i) => Some(i),
            None if v6 => self.lookup_out::<[u8; 16]>(p),
            None => self.lookup_out::<[u8; 4]>(p),
        };
        let Some(i) = found else { return self.stateless_reply(p) };
        let Some(c) = self.entry(ConnId { v6, slot: i }) else { return OutVerdict::NotOurs };
        self.transition(v6, i, c.step(), p, Direction::Output, now);
        if let Some(d) = self.dest_mut(DestId(c.dest)) {
            d.stats.out_pkts += 1;
            d.stats.out_bytes += u64::from(p.len);
            let service = d.service;
            if let Some(s) = self.svc_mut(service) {
                s.stats.out_pkts += 1;
                s.stats.out_bytes += u64::from(p.len);
            }
        }
        OutVerdict::Reply { conn: Some(ConnId { v6, slot: i }), vaddr: c.vaddr, vport: c.vport }
    }

    /// A NAT server's SYN-ACK with no entry: its SYN went through statelessly (stateless_syn), so
    /// it is translated from the configuration. Nothing else is (a reply without an entry is not
    /// ours).
    pub(super) fn stateless_reply(&mut self, p: &PacketMeta) -> OutVerdict {
        let synack = p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST)
            == tcp_flags::SYN | tcp_flags::ACK;
        if p.protocol != proto::TCP || !synack || self.sysctl.stateless_syn == crate::sysctl::Mode::OFF {
            return OutVerdict::NotOurs;
        }
        match self.nat_reverse_lookup(p.protocol, p.src, p.sport) {
            Some((vaddr, vport)) => {
                self.defense.stateless_replies += 1;
                OutVerdict::Reply { conn: None, vaddr, vport }
            }
            None => OutVerdict::NotOurs,
        }
    }

    /// An ICMP error about a packet a client sent through a NAT connection (ip_vs_out_icmp): `p` is
    /// the quoted packet as the real server received it (client -> real). The virtual endpoint the
    /// client knows, to translate the error back.
    pub fn icmp_about_client_packet(&self, p: &PacketMeta) -> Option<(IpAddr, u16)> {
        let reply = PacketMeta { src: p.dst, sport: p.dport, dst: p.src, dport: p.sport, ..*p };
        let v6 = p.src.is_ipv6();
        let i = if v6 { self.lookup_out::<[u8; 16]>(&reply) } else { self.lookup_out::<[u8; 4]>(&reply) }?;
        let c = self.entry(ConnId { v6, slot: i })?;
        Some((c.vaddr, c.vport))
    }

    /// An ICMP error about a packet the director sent a client for a connection (ip_vs_in_icmp):
    /// `p` is the quoted packet (virtual -> client). The connection's server and how it is reached.
    pub fn icmp_about_reply(&self, p: &PacketMeta) -> Option<(IpAddr, u16, Fwd)> {
        let forward = PacketMeta { src: p.dst, sport: p.dport, dst: p.src, dport: p.sport, ..*p };
        let v6 = p.src.is_ipv6();
        let i = if v6 { self.lookup_in::<[u8; 16]>(&forward) } else { self.lookup_in::<[u8; 4]>(&forward) }?;
        let c = self.entry(ConnId { v6, slot: i })?;
        let d = self.dest(DestId(c.dest))?;
        Some((d.cfg.addr, c.rport, d.cfg.fwd))
    }

    pub(super) fn lookup_out<A: Addr>(&self, p: &PacketMeta) -> Option<u32>
    where
        Self: TableOf<A>,
    {
        self.table().lookup_reply(p.protocol, &A::from_ip(p.src)?, p.sport, &A::from_ip(p.dst)?, p.dport)
    }

    /// The TCP state machine step and the timer refresh for one packet (set_tcp_state).
    pub(super) fn transition(
        &mut self,
        v6: bool,
        i: u32,
        c: crate::conn::Step,
        p: &PacketMeta,
        dir: Direction,
        now: Time,
    ) {
        let mut flags = c.flags;
        let timeout = if c.proto == proto::TCP {
            // A reply clears NOOUTPUT; until then client packets use the INPUT-ONLY table.
            let dir = match dir {
                Direction::Output => {
                    flags &= !flag::NOOUTPUT;
                    Direction::Output
                }
                _ if flags & flag::NOOUTPUT != 0 => Direction::InputOnly,
                d => d,
            };
            let old = TcpState::from_u8(c.state);
            let new = state::next_state(dir, old, p.tcp_flags).unwrap_or(old);
            if new != old && self.sync_master && flags & flag::MIRROR == 0 {
                self.note_sync(ConnId { v6, slot: i });
            }
            if new != old && flags & flag::MIRROR == 0 {
                let was_inactive = flags & flag::INACTIVE != 0;
                if let Some(d) = self.dest_mut(DestId(c.dest)) {
                    if !was_inactive && !new.is_active() {
                        d.active = d.active.saturating_sub(1);
                        d.inactive += 1;
                        flags |= flag::INACTIVE;
                    } else if was_inactive && new.is_active() {
                        d.active += 1;
                        d.inactive = d.inactive.saturating_sub(1);
                        flags &= !flag::INACTIVE;
                    }
                }
            }
            with_table!(self, v6, t => t.set_state(i, new as u8, flags));
            if new == TcpState::SynRecv {
                self.syn_recv_timeout(self.pressure(v6))
            } else {
                self.timeouts.tcp(new)
            }
        } else {
            if flags != c.flags {
                with_table!(self, v6, t => t.set_state(i, c.state, flags));
            }
            self.timeouts.udp
        };
        let at = now + u64::from(timeout) * 1000;
        with_table!(self, v6, t => t.set_expiry(i, at));
    }

    pub(super) fn schedule(&mut self, p: &PacketMeta, now: Time) -> InVerdict {
        let Some(sid) = self.find_service(p) else { return InVerdict::NotOurs };
        let Some(svc) = self.svc(sid) else { return InVerdict::NotOurs };
        let (cfg, v6) = (svc.cfg.clone(), p.src.is_ipv6());
        let tcp = p.protocol == proto::TCP;
        let syn = p.tcp_flags & tcp_flags::SYN != 0 && p.tcp_flags & tcp_flags::RST == 0;
        let pressure = self.pressure(v6);
        // A firewall-mark service's virtual address is not in its configuration, so its NAT
        // SYN-ACKs could not be translated without an entry: stateless_syn is for address services.
        let stateless_ok = tcp
            && matches!(cfg.key, ServiceKey::Addr { .. })
            && self.sysctl.stateless_syn != crate::sysctl::Mode::OFF;
        let mut on_ack = false;
        if tcp && !syn && !self.sysctl.sloppy_tcp {
            // The client's first ACK of a connection whose SYN went through without an entry.
            let ack = p.tcp_flags & (tcp_flags::ACK | tcp_flags::FIN | tcp_flags::RST) == tcp_flags::ACK;
            let recent = self.stateless_at.is_some_and(|t| now.saturating_sub(t) <= STATELESS_GRACE_MS);
            if !(stateless_ok && ack && recent) {
                return self.drop(DropReason::NotSyn);
            }
            on_ack = true;
        }
        if self.sysctl.drop_packet.active(pressure) && self.todrop(v6) {
            return self.drop(DropReason::DropPacket);
        }
        let stateless = stateless_ok && syn && self.sysctl.stateless_syn.active(pressure);
        if stateless {
            self.stateless_at = Some(now);
        }
        let hashed = stateless || on_ack;
        let how = if stateless {
            Persist::FindOnly
        } else if hashed {
            Persist::Hash
        } else {
            Persist::Schedule
        };
        let mut template = match self.persist(sid, &cfg, p, now, how) {
            Ok(t) => t,
            Err(r) => return self.drop(r),
        };
        let picked = match template {
            Some((_, d)) => Some(d),
            None if hashed => self.pick_stateless(sid, p, now),
            None => self.pick(sid, p, now),
        };
        let Some(did) = picked else { return self.drop(DropReason::NoDestination) };
        let Some(dest) = self.dest(did) else { return self.drop(DropReason::NoDestination) };
        let (daddr, fwd) = (dest.cfg.addr, dest.cfg.fwd);
        let dport = if dest.cfg.port != 0 { dest.cfg.port } else { p.dport };

        if stateless {
            // NAT: the SYN-ACK must be translatable from the configuration alone.
            let reversible = !matches!(fwd, Fwd::Masq)
                || self.nat_reverse_lookup(p.protocol, daddr, dport) == Some((p.dst, p.dport));
            if reversible {
                self.defense.stateless_syns += 1;
                self.count_packet(sid, did, p);
                return InVerdict::Forward { conn: None, dest: did, daddr, dport, fwd, new: true };
            }
            // A server of several services: this connection keeps an entry from its SYN.
            if template.is_none() {
                template = match self.persist(sid, &cfg, p, now, Persist::Hash) {
                    Ok(t) => t,
                    Err(r) => return self.drop(r),
                };
            }
        }
        if cfg.one_packet && p.protocol == proto::UDP {
            // -o: no entry is kept; each datagram is scheduled on its own (a template, if any, stays).
            self.count_new(sid, did, p);
            return InVerdict::Forward { conn: None, dest: did, daddr, dport, fwd, new: true };
        }

        let mut flags = flag::INACTIVE;
        if !matches!(fwd, Fwd::Masq) {
            flags |= flag::NOOUTPUT;
        }
        let inserted = if v6 {
            insert_conn(&mut self.v6, p, daddr, dport, fwd, did, template.map(|t| t.0), flags, now)
        } else {
            insert_conn(&mut self.v4, p, daddr, dport, fwd, did, template.map(|t| t.0), flags, now)
        };
        let Some(i) = inserted else { return self.drop(DropReason::TableFull) };
        if let Some((t, _)) = template {
            with_table!(self, v6, tb => tb.adjust_control(t, 1));
        }
        // ip_vs_bind_dest: a new connection starts inactive.
        if let Some(d) = self.dest_mut(did) {
            d.inactive += 1;
            d.check_overload_after_bind();
        }
        if let Some(r) = self.dest_refs.get_mut(did.0 as usize) {
            *r += 1;
        }
        self.count_new(sid, did, p);
        if self.sync_master && p.protocol != proto::TCP {
            // TCP connections are noted by their first state change, just below.
            self.note_sync(ConnId { v6, slot: i });
        }
        if let Some(c) = self.entry_hot(ConnId { v6, slot: i }) {
            self.transition(v6, i, c.step(), p, Direction::Input, now);
        }
        if on_ack {
            // Made by an ACK nobody vouches for (a spoofed one makes it too): half-open lifetime
            // until the client's next packet refreshes it.
            self.defense.made_on_ack += 1;
            let t = self.syn_recv_timeout(pressure);
            with_table!(self, v6, tb => tb.set_expiry(i, now + u64::from(t) * 1000));
        }
        InVerdict::Forward { conn: Some(ConnId { v6, slot: i }), dest: did, daddr, dport, fwd, new: true }
    }

    /// A packet of a connection without an entry (stateless_syn): counted, not as a connection.
    pub(super) fn count_packet(&mut self, sid: ServiceId, did: DestId, p: &PacketMeta) {
        if let Some(d) = self.dest_mut(did) {
            d.stats.in_pkts += 1;
            d.stats.in_bytes += u64::from(p.len);
        }
        if let Some(s) = self.svc_mut(sid) {
            s.stats.in_pkts += 1;
            s.stats.in_bytes += u64::from(p.len);
        }
    }

    pub(super) fn count_new(&mut self, sid: ServiceId, did: DestId, p: &PacketMeta) {
        if let Some(d) = self.dest_mut(did) {
            d.stats.conns += 1;
            d.stats.in_pkts += 1;
            d.stats.in_bytes += u64::from(p.len);
        }
        if let Some(s) = self.svc_mut(sid) {
            s.stats.conns += 1;
            s.stats.in_pkts += 1;
            s.stats.in_bytes += u64::from(p.len);
        }
    }

    pub(super) fn drop(&mut self, r: DropReason) -> InVerdict {
        self.drops.count(r);
        InVerdict::Drop(r)
    }

    pub(super) fn pick(&mut self, sid: ServiceId, p: &PacketMeta, now: Time) -> Option<DestId> {
        let Some(Some(svc)) = self.services.get_mut(sid.0 as usize) else { return None };
        let ctx = SchedCtx {
            arena: &self.dests,
            ids: &svc.dests,
            src: p.src,
            sport: p.sport,
            dst: p.dst,
            now,
            flags: svc.cfg.flags,
        };
        svc.sched.schedule(&ctx)
    }

    /// ip_vs_sched_persist: find or make the client's template; returns (template, destination).
    pub(super) fn persist(
        &mut self,
        sid: ServiceId,
        cfg: &ServiceConfig,
        p: &PacketMeta,
        now: Time,
        how: Persist,
    ) -> Result<Option<(u32, DestId)>, DropReason> {
        let Some(Persistence { prefix_len: prefix, timeout_seconds: timeout_s }) = cfg.persistence else {
            return Ok(None);
        };
        let v6 = p.src.is_ipv6();
        let snet = mask_addr(p.src, prefix);
        let (tproto, tvaddr, tvport) = match cfg.key {
            ServiceKey::Fwmark { mark, v6 } => (proto::IP, fwmark_addr(mark, v6), 0),
            ServiceKey::Addr { port: 0, .. } => (p.protocol, p.dst, 0),
            ServiceKey::Addr { port, .. } => (p.protocol, p.dst, port),
        };
        let found = if v6 {
            template_lookup::<[u8; 16]>(&self.v6, tproto, snet, tvaddr, tvport)
        } else {
            template_lookup::<[u8; 4]>(&self.v4, tproto, snet, tvaddr, tvport)
        };
        let expires = now + u64::from(timeout_s) * 1000;
        if let Some(t) = found {
            if let Some(c) = self.entry(ConnId { v6, slot: t }) {
                let d = DestId(c.dest);
                let valid = self.dest(d).is_some_and(|x| {
                    !x.removed
                        && x.service == sid
                        && !(self.sysctl.expire_quiescent_template && x.weight() == 0)
                });
                if valid {
                    with_table!(self, v6, tb => tb.set_expiry(t, expires));
                    return Ok(Some((t, d)));
                }
                // ip_vs_check_template: the template is invalidated; connections it controls go on.
                with_table!(self, v6, tb => tb.invalidate(t));
            }
        }
        let did = match how {
            Persist::FindOnly => return Ok(None),
            Persist::Schedule => self.pick(sid, p, now),
            Persist::Hash => self.pick_stateless(sid, p, now),
        }
        .ok_or(DropReason::NoDestination)?;
        let daddr = self.dest(did).map(|d| d.cfg.addr).ok_or(DropReason::NoDestination)?;
        let k = ConnKeyAny { proto: tproto, caddr: snet, vaddr: tvaddr, vport: tvport };
        let t = if v6 {
            insert_template(&mut self.v6, &k, daddr, did, expires)
        } else {
            insert_template(&mut self.v4, &k, daddr, did, expires)
        }
        .ok_or(DropReason::TableFull)?;
        if let Some(d) = self.dest_mut(did) {
            d.persistent += 1;
        }
        if let Some(r) = self.dest_refs.get_mut(did.0 as usize) {
            *r += 1;
        }
        Ok(Some((t, did)))
    }

    /// Ends a connection now (ip_vs_conn_expire_now + the unbind of ip_vs_conn_expire).
    pub(super) fn end_connection(&mut self, v6: bool, i: u32) {
        let removed = with_table!(self, v6, t => t.remove(i));
        if let Some(c) = removed {
            self.unbind(v6, &c);
        }
    }

    /// The bookkeeping of a connection or template that goes (ip_vs_unbind_dest and friends).
    pub(super) fn unbind(&mut self, v6: bool, c: &ConnInfo) {
        let did = DestId(c.dest);
        if c.is_mirror() {
            if let Some(r) = self.dest_refs.get_mut(did.0 as usize) {
                *r = r.saturating_sub(1);
            }
            self.gc_dest(did);
            return;
        }
        if let Some(d) = self.dest_mut(did) {
            if c.is_template() {
                d.persistent = d.persistent.saturating_sub(1);
            } else if c.flags & flag::INACTIVE != 0 {
                d.inactive = d.inactive.saturating_sub(1);
            } else {
                d.active = d.active.saturating_sub(1);
            }
            d.check_overload_after_unbind();
        }
        if !c.is_template() && c.control != NONE {
            with_table!(self, v6, t => t.adjust_control(c.control, -1));
        }
        if let Some(r) = self.dest_refs.get_mut(did.0 as usize) {
            *r = r.saturating_sub(1);
        }
        self.gc_dest(did);
    }
}

/// How [`Ipvs::persist`] gets a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Persist {
    /// A valid existing one, or none (a stateless SYN makes nothing).
    FindOnly,
    /// Existing, or made for the server the scheduler picks.
    Schedule,
    /// Existing, or made for the server [`Ipvs::pick_stateless`] picks.
    Hash,
}

/// A packet's forward tuple in one family's form (`None` for the other family).
/// An IPv4 packet's tuple as the burst lookup takes it.
pub(super) fn warm_tuple(p: &PacketMeta, reply: bool) -> Option<crate::conn::WarmTuple<[u8; 4]>> {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (p.src, p.dst) else { return None };
    Some(crate::conn::WarmTuple {
        proto: p.protocol,
        src: src.octets(),
        sport: p.sport,
        dst: dst.octets(),
        dport: p.dport,
        reply,
    })
}

pub(super) fn conn_key<A: Addr>(p: &PacketMeta) -> Option<ConnKey<A>> {
    Some(ConnKey {
        proto: p.protocol,
        caddr: A::from_ip(p.src)?,
        cport: p.sport,
        vaddr: A::from_ip(p.dst)?,
        vport: p.dport,
    })
}

/// A template key before it is bound to an address family.
pub(super) struct ConnKeyAny {
    proto: u8,
    caddr: IpAddr,
    vaddr: IpAddr,
    vport: u16,
}

pub(super) fn template_lookup<A: Addr>(
    t: &ConnTable<A>,
    proto_: u8,
    snet: IpAddr,
    vaddr: IpAddr,
    vport: u16,
) -> Option<u32> {
    let key = ConnKey { proto: proto_, caddr: A::from_ip(snet)?, cport: 0, vaddr: A::from_ip(vaddr)?, vport };
    t.lookup(&key, true)
}

pub(super) fn insert_template<A: Addr>(
    t: &mut ConnTable<A>,
    k: &ConnKeyAny,
    raddr: IpAddr,
    dest: DestId,
    expires: Time,
) -> Option<u32> {
    let key = ConnKey {
        proto: k.proto,
        caddr: A::from_ip(k.caddr)?,
        cport: 0,
        vaddr: A::from_ip(k.vaddr)?,
        vport: k.vport,
    };
    t.insert(&NewEntry {
        key,
        // A server of the other family (a tunnel's) is not kept in the entry: its destination says.
        raddr: A::from_ip(raddr).unwrap_or_default(),
        rport: 0,
        flags: flag::TEMPLATE,
        state: TcpState::None as u8,
        fwd: 0,
        dest: dest.0,
        control: 0,
        expires,
        reply: false,
    })
    .ok()
}

#[allow(clippy::too_many_arguments)]
pub(super) fn insert_conn<A: Addr>(
    t: &mut ConnTable<A>,
    p: &PacketMeta,
    daddr: IpAddr,
    dport: u16,
    fwd: Fwd,
    dest: DestId,
    template: Option<u32>,
    flags: u8,
    now: Time,
) -> Option<u32> {
    let key = conn_key::<A>(p)?;
    t.insert(&NewEntry {
        key,
        raddr: A::from_ip(daddr).unwrap_or_default(),
        rport: dport,
        flags,
        state: TcpState::None as u8,
        fwd: fwd_code(fwd),
        dest: dest.0,
        control: template.unwrap_or(NONE),
        // A new entry's first timeout is replaced by its state's at once (ip_vs_conn_new uses 3 s).
        expires: now + 3000,
        reply: matches!(fwd, Fwd::Masq),
    })
    .ok()
}

pub(super) fn insert_mirror_entry<A: Addr>(
    t: &mut ConnTable<A>,
    c: &ConnInfo,
    flags: u8,
    expires: Time,
) -> Option<u32> {
    let key = ConnKey {
        proto: c.proto,
        caddr: A::from_ip(c.caddr)?,
        cport: c.cport,
        vaddr: A::from_ip(c.vaddr)?,
        vport: c.vport,
    };
    t.insert(&NewEntry {
        key,
        raddr: A::from_ip(c.raddr)?,
        rport: c.rport,
        flags,
        state: c.state,
        fwd: c.fwd,
        dest: c.dest,
        control: NONE,
        expires,
        reply: true,
    })
    .ok()
}

/// The sync log bounds what one burst can note (the worker drains it after every burst).
const SYNC_LOG: usize = 4096;

impl Ipvs {
    /// Master sync daemon on or off: from now on new connections and state changes are noted.
    pub fn set_sync_master(&mut self, on: bool) {
        self.sync_master = on;
        if !on {
            self.sync_log.clear();
        }
    }

    fn note_sync(&mut self, id: ConnId) {
        if self.sync_log.len() < SYNC_LOG {
            self.sync_log.push(id);
        } else {
            self.sync_lost += 1;
        }
    }

    /// Whether connections wait to be sent.
    #[inline]
    pub fn sync_pending(&self) -> bool {
        !self.sync_log.is_empty()
    }

    /// The noted connections as the sync protocol carries them, oldest first; the log is emptied.
    pub fn drain_sync(&mut self, now: Time, out: &mut Vec<crate::sync::SyncConn>) {
        let log = std::mem::take(&mut self.sync_log);
        for id in &log {
            // The sync protocol gives a connection one address family: a tunnelled one of the
            // other family is not sent (the kernel's sync leaves such connections out too).
            let same_family = |c: &ConnInfo| c.raddr.is_ipv6() == c.caddr.is_ipv6();
            if let Some(c) = self.connection(*id).filter(|c| !c.is_mirror() && same_family(c)) {
                out.push(crate::sync::SyncConn::from_conn(&c, now));
            }
        }
        self.sync_log = log;
        self.sync_log.clear();
    }

    /// A connection a master director sent (the backup side of the sync daemon): installed as a
    /// connection of this shard, bound to this shard's server of that address and port in the
    /// service its virtual endpoint names, in the state and with the time left it was sent with; an
    /// entry of the same connection is updated. True when a new entry was made. Templates are not
    /// installed (persistence restarts after a failover).
    pub fn install_synced(&mut self, s: &crate::sync::SyncConn, now: Time) -> Result<bool, DropReason> {
        if s.is_template() {
            return Ok(false);
        }
        let v6 = s.caddr.is_ipv6();
        let key = if s.fwmark != 0 {
            ServiceKey::Fwmark { mark: s.fwmark, v6 }
        } else {
            ServiceKey::Addr { protocol: s.protocol, addr: s.vaddr, port: s.vport }
        };
        let sid = self.service_id(&key).ok_or(DropReason::NoDestination)?;
        let did = self.find_dest(sid, s.daddr, s.dport).ok_or(DropReason::NoDestination)?;
        let fwd = self.dest(did).map(|d| d.cfg.fwd).ok_or(DropReason::NoDestination)?;
        let p = PacketMeta {
            protocol: s.protocol,
            src: s.caddr,
            sport: s.cport,
            dst: s.vaddr,
            dport: s.vport,
            tcp_flags: 0,
            fwmark: (s.fwmark != 0).then_some(s.fwmark),
            len: 0,
        };
        let state = u8::try_from(s.state.min(10)).unwrap_or(0);
        let active = s.protocol == proto::TCP && TcpState::from_u8(state).is_active();
        let expires = now + u64::from(s.timeout_seconds.max(1)) * 1000;
        let mut flags = if active { 0 } else { flag::INACTIVE };
        if !matches!(fwd, Fwd::Masq) {
            flags |= flag::NOOUTPUT;
        }
        let existing = if v6 { self.lookup_in::<[u8; 16]>(&p) } else { self.lookup_in::<[u8; 4]>(&p) };
        if let Some(i) = existing {
            let Some(c) = self.entry(ConnId { v6, slot: i }) else { return Ok(false) };
            let was_active = c.flags & flag::INACTIVE == 0;
            if let Some(d) = self.dest_mut(DestId(c.dest)) {
                match (was_active, active) {
                    (true, false) => {
                        d.active = d.active.saturating_sub(1);
                        d.inactive += 1;
                    }
                    (false, true) => {
                        d.inactive = d.inactive.saturating_sub(1);
                        d.active += 1;
                    }
                    _ => {}
                }
            }
            let keep = c.flags & !(flag::INACTIVE | flag::NOOUTPUT);
            with_table!(self, v6, t => t.set_state(i, state, keep | flags));
            with_table!(self, v6, t => t.set_expiry(i, expires));
            return Ok(false);
        }
        let inserted = if v6 {
            insert_conn(&mut self.v6, &p, s.daddr, s.dport, fwd, did, None, flags, now)
        } else {
            insert_conn(&mut self.v4, &p, s.daddr, s.dport, fwd, did, None, flags, now)
        };
        let i = inserted.ok_or(DropReason::TableFull)?;
        with_table!(self, v6, t => t.set_state(i, state, flags));
        with_table!(self, v6, t => t.set_expiry(i, expires));
        if let Some(d) = self.dest_mut(did) {
            if active {
                d.active += 1;
            } else {
                d.inactive += 1;
            }
        }
        if let Some(r) = self.dest_refs.get_mut(did.0 as usize) {
            *r += 1;
        }
        Ok(true)
    }
}
