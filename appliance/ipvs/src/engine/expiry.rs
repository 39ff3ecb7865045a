//! Connection expiry, a budget at a time (the timer wheel is the table's; this ends what it
//! hands back and unbinds it from its server).

use super::*;

impl Ipvs {
    /// Expires connections and templates whose time has come, examining at most `budget` entries
    /// per table. Returns how many went. Allocation-free once `scratch` has grown to the budget.
    pub fn expire(&mut self, now: Time, budget: usize) -> usize {
        let mut n = 0;
        for v6 in [false, true] {
            if self.sysctl.drop_entry.active(self.pressure(v6)) {
                n += self.drop_half_open(v6);
            }
        }
        for v6 in [false, true] {
            let mut gone = std::mem::take(&mut self.scratch);
            gone.clear();
            let (dests, services) = (&self.dests, &self.services);
            let decide = |_: u32, c: &ConnInfo| {
                if c.is_template() && c.control > 0 && c.control != NONE {
                    // A template lives while it controls connections (ip_vs_conn_expire).
                    let timeout = dests
                        .get(c.dest as usize)
                        .and_then(Option::as_ref)
                        .and_then(|d| services.get(d.service.0 as usize)?.as_ref()?.cfg.persistence)
                        .map_or(360, |p| p.timeout_seconds);
                    return Expiry::Rearm(now + u64::from(timeout) * 1000);
                }
                gone.push(*c);
                Expiry::Remove
            };
            n += if v6 { self.v6.expire(now, budget, decide) } else { self.v4.expire(now, budget, decide) };
            for c in &gone {
                self.unbind(v6, c);
            }
            self.scratch = gone;
        }
        // Scheduler housekeeping (lblc/lblcr cache expiry, on a scale of minutes): a share of the
        // services per run, so thousands of services cost each run the same as a few.
        let slots = self.services.len();
        for _ in 0..slots.min(SCHED_TICKS_PER_RUN) {
            self.sched_cursor = if self.sched_cursor + 1 >= slots { 0 } else { self.sched_cursor + 1 };
            if let Some(Some(s)) = self.services.get_mut(self.sched_cursor) {
                s.sched.tick(now);
            }
        }
        n
    }
}
