//! Configuration: services and their real servers added, edited and removed (what ipvsadm's
//! commands do), and the indexes that follow them.

use super::*;

impl Ipvs {
    pub fn add_service(&mut self, cfg: ServiceConfig) -> Result<ServiceId, ServiceError> {
        cfg.validate()?;
        if self.by_key.contains_key(&cfg.key) {
            return Err(ServiceError::ServiceExists);
        }
        let mut sched = Scheduler::new(cfg.scheduler, cfg.mh_table_size, self.sched_seed);
        if self.defer_tables {
            sched.defer_tables();
        }
        let entry = ServiceEntry {
            cfg: cfg.clone(),
            sched,
            dests: Vec::new(),
            stats: Stats::default(),
            removed: false,
            arena_refs: 0,
        };
        let id = match self.free_services.pop() {
            Some(i) => {
                if let Some(slot) = self.services.get_mut(i as usize) {
                    *slot = Some(entry);
                }
                ServiceId(i)
            }
            None => {
                self.services.push(Some(entry));
                ServiceId(crate::num::idx32(self.services.len() - 1))
            }
        };
        self.by_key.insert(cfg.key, id);
        Ok(id)
    }

    pub fn edit_service(&mut self, cfg: ServiceConfig) -> Result<(), ServiceError> {
        cfg.validate()?;
        let id = *self.by_key.get(&cfg.key).ok_or(ServiceError::NoService)?;
        let (seed, defer) = (self.sched_seed, self.defer_tables);
        let svc = self.svc_mut(id).ok_or(ServiceError::NoService)?;
        if svc.cfg.scheduler != cfg.scheduler || svc.cfg.mh_table_size != cfg.mh_table_size {
            svc.sched = Scheduler::new(cfg.scheduler, cfg.mh_table_size, seed);
            if defer {
                svc.sched.defer_tables();
            }
        }
        svc.cfg = cfg;
        self.resched(id);
        Ok(())
    }

    pub fn del_service(&mut self, key: &ServiceKey) -> Result<(), ServiceError> {
        let id = self.by_key.remove(key).ok_or(ServiceError::NoService)?;
        let dests = self.svc(id).map(|s| s.dests.clone()).unwrap_or_default();
        for d in dests {
            self.unlink_dest(id, d);
        }
        if let Some(s) = self.svc_mut(id) {
            s.removed = true;
        }
        self.gc_service(id);
        Ok(())
    }

    /// ipvsadm -C.
    pub fn clear(&mut self) {
        let keys: Vec<ServiceKey> = self.by_key.keys().copied().collect();
        for k in keys {
            let _ = self.del_service(&k);
        }
    }

    pub fn add_dest(&mut self, key: &ServiceKey, mut cfg: DestConfig) -> Result<DestId, ServiceError> {
        let id = *self.by_key.get(key).ok_or(ServiceError::NoService)?;
        // A tunnel may carry one family inside the other (IPv4 services to IPv6 servers and the
        // reverse, as the kernel allows since 3.18); every other method keeps the service's family.
        if cfg.addr.is_ipv6() != key.is_v6() && !matches!(cfg.fwd, Fwd::Tunnel(_)) {
            return Err(ServiceError::FamilyMismatch);
        }
        if cfg.weight > 65535 {
            return Err(ServiceError::BadWeight);
        }
        self.localize(&mut cfg);
        if !matches!(cfg.fwd, Fwd::Masq) {
            // DR and TUN cannot map ports: the packet reaches the server unchanged (ipvsadm).
            cfg.port = key.port();
        }
        let svc = self.svc(id).ok_or(ServiceError::NoService)?;
        if svc
            .dests
            .iter()
            .any(|&d| self.dest(d).is_some_and(|x| x.cfg.addr == cfg.addr && x.cfg.port == cfg.port))
        {
            return Err(ServiceError::DestExists);
        }
        // A removed destination with the same address comes back from the trash, connections and all
        // (bound to this service, which may be a new one with the old one's key).
        let did = match self.trash.remove(&(*key, cfg.addr, cfg.port)) {
            Some(did) => {
                let mut previous = None;
                if let Some(d) = self.dest_mut(did) {
                    d.removed = false;
                    d.cfg = cfg;
                    if cfg.weight > 0 {
                        d.last_weight = cfg.weight;
                    }
                    if d.service != id {
                        previous = Some(std::mem::replace(&mut d.service, id));
                    }
                }
                if let Some(old) = previous {
                    if let Some(s) = self.svc_mut(id) {
                        s.arena_refs += 1;
                    }
                    if let Some(s) = self.svc_mut(old) {
                        s.arena_refs = s.arena_refs.saturating_sub(1);
                    }
                    self.gc_service(old);
                }
                did
            }
            None => {
                let d = Dest::new(cfg, id);
                if let Some(s) = self.svc_mut(id) {
                    s.arena_refs += 1;
                }
                match self.free_dests.pop() {
                    Some(i) => {
                        if let (Some(slot), Some(r)) =
                            (self.dests.get_mut(i as usize), self.dest_refs.get_mut(i as usize))
                        {
                            *slot = Some(d);
                            *r = 0;
                        }
                        DestId(i)
                    }
                    None => {
                        self.dests.push(Some(d));
                        self.dest_refs.push(0);
                        DestId(crate::num::idx32(self.dests.len() - 1))
                    }
                }
            }
        };
        if let Some(s) = self.svc_mut(id) {
            s.dests.push(did);
        }
        self.nat_reverse_update(id, &cfg, true);
        self.resched(id);
        Ok(did)
    }

    pub fn edit_dest(&mut self, key: &ServiceKey, mut cfg: DestConfig) -> Result<(), ServiceError> {
        let id = *self.by_key.get(key).ok_or(ServiceError::NoService)?;
        if cfg.weight > 65535 {
            return Err(ServiceError::BadWeight);
        }
        self.localize(&mut cfg);
        if !matches!(cfg.fwd, Fwd::Masq) {
            cfg.port = key.port();
        }
        let did = self.find_dest(id, cfg.addr, cfg.port).ok_or(ServiceError::NoDest)?;
        if let Some(old) = self.dest(did).map(|d| d.cfg) {
            self.nat_reverse_update(id, &old, false);
            self.nat_reverse_update(id, &cfg, true);
        }
        if let Some(d) = self.dest_mut(did) {
            d.cfg = cfg;
            if cfg.weight > 0 {
                d.last_weight = cfg.weight;
            }
            // New thresholds take effect now, as __ip_vs_update_dest re-evaluates the flag.
            d.overloaded = false;
            d.check_overload_after_bind();
        }
        self.resched(id);
        Ok(())
    }

    pub fn del_dest(&mut self, key: &ServiceKey, addr: IpAddr, port: u16) -> Result<(), ServiceError> {
        let id = *self.by_key.get(key).ok_or(ServiceError::NoService)?;
        let port = if self.svc(id).is_some_and(|s| {
            s.dests
                .iter()
                .any(|&d| self.dest(d).is_some_and(|x| x.cfg.addr == addr && !matches!(x.cfg.fwd, Fwd::Masq)))
        }) {
            key.port()
        } else {
            port
        };
        let did = self.find_dest(id, addr, port).ok_or(ServiceError::NoDest)?;
        self.unlink_dest(id, did);
        Ok(())
    }

    /// ipvsadm -Z: zero the counters of one service (and its servers) or of all.
    pub fn zero(&mut self, key: Option<&ServiceKey>) -> Result<(), ServiceError> {
        let ids: Vec<ServiceId> = match key {
            Some(k) => vec![*self.by_key.get(k).ok_or(ServiceError::NoService)?],
            None => self.by_key.values().copied().collect(),
        };
        for id in ids {
            let dests = self.svc(id).map(|s| s.dests.clone()).unwrap_or_default();
            if let Some(s) = self.svc_mut(id) {
                s.stats = Stats::default();
            }
            for d in dests {
                if let Some(d) = self.dest_mut(d) {
                    d.stats = Stats::default();
                }
            }
        }
        Ok(())
    }

    pub(super) fn find_dest(&self, id: ServiceId, addr: IpAddr, port: u16) -> Option<DestId> {
        self.svc(id)?
            .dests
            .iter()
            .copied()
            .find(|&d| self.dest(d).is_some_and(|x| x.cfg.addr == addr && x.cfg.port == port))
    }

    pub(super) fn unlink_dest(&mut self, id: ServiceId, did: DestId) {
        if let Some(s) = self.svc_mut(id) {
            s.dests.retain(|&d| d != did);
        }
        if let Some(cfg) = self.dest(did).map(|d| d.cfg) {
            self.nat_reverse_update(id, &cfg, false);
        }
        let skey = self.svc(id).map(|s| s.cfg.key);
        if let (Some(d), Some(skey)) = (self.dest_mut(did), skey) {
            d.removed = true;
            let key = (skey, d.cfg.addr, d.cfg.port);
            self.trash.insert(key, did);
        }
        self.resched(id);
        self.gc_dest(did);
    }

    /// Frees a removed destination nothing refers to any more.
    pub(super) fn gc_dest(&mut self, did: DestId) {
        let i = did.0 as usize;
        let free = self.dests.get(i).and_then(Option::as_ref).is_some_and(|d| d.removed)
            && self.dest_refs.get(i).copied().unwrap_or(0) == 0;
        if free {
            let Some(d) = self.dests.get_mut(i).and_then(Option::take) else { return };
            if let Some(skey) = self.svc(d.service).map(|s| s.cfg.key) {
                let key = (skey, d.cfg.addr, d.cfg.port);
                if self.trash.get(&key) == Some(&did) {
                    self.trash.remove(&key);
                }
            }
            self.free_dests.push(did.0);
            if let Some(s) = self.svc_mut(d.service) {
                s.arena_refs = s.arena_refs.saturating_sub(1);
            }
            self.gc_service(d.service);
        }
    }

    pub(super) fn gc_service(&mut self, id: ServiceId) {
        let i = id.0 as usize;
        let done =
            self.services.get(i).and_then(Option::as_ref).is_some_and(|s| s.removed && s.arena_refs == 0);
        if done {
            if let Some(slot) = self.services.get_mut(i) {
                *slot = None;
            }
            self.free_services.push(id.0);
        }
    }

    pub(super) fn resched(&mut self, id: ServiceId) {
        let Some(Some(svc)) = self.services.get_mut(id.0 as usize) else { return };
        let ctx = SchedCtx {
            arena: &self.dests,
            ids: &svc.dests,
            src: IpAddr::from([0u8; 4]),
            sport: 0,
            dst: IpAddr::from([0u8; 4]),
            now: 0,
            flags: svc.cfg.flags,
        };
        svc.sched.update(&ctx);
    }

    /// Records (or, with `add` false, forgets) that NAT server `d` serves service `sid`, for
    /// translating SYN-ACKs without an entry.
    pub(super) fn nat_reverse_update(&mut self, sid: ServiceId, d: &DestConfig, add: bool) {
        let Some(ServiceKey::Addr { protocol, addr, port }) = self.svc(sid).map(|s| s.cfg.key) else {
            return;
        };
        if !matches!(d.fwd, Fwd::Masq) {
            return;
        }
        let key = (protocol, d.addr, d.port);
        let virt = (addr, port);
        if add {
            self.nat_reverse.entry(key).or_default().push(virt);
        } else if let Some(v) = self.nat_reverse.get_mut(&key) {
            if let Some(i) = v.iter().position(|x| *x == virt) {
                v.swap_remove(i);
            }
            if v.is_empty() {
                self.nat_reverse.remove(&key);
            }
        }
    }

    /// The virtual (address, port) a NAT server's packet from (`raddr`, `rport`) answers for, when
    /// the configuration alone says so (the server belongs to one virtual service).
    pub(super) fn nat_reverse_lookup(
        &self,
        protocol: u8,
        raddr: IpAddr,
        rport: u16,
    ) -> Option<(IpAddr, u16)> {
        let one = |v: &Vec<(IpAddr, u16)>| match v.as_slice() {
            [first, rest @ ..] if rest.iter().all(|x| x == first) => Some(*first),
            _ => None,
        };
        if let Some(v) = self.nat_reverse.get(&(protocol, raddr, rport)) {
            return one(v);
        }
        // A port-0 server answers from the port the client asked for: the virtual port.
        let (vaddr, vport) = one(self.nat_reverse.get(&(protocol, raddr, 0))?)?;
        Some((vaddr, if vport == 0 { rport } else { vport }))
    }
}
