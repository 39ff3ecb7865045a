//! A token bucket driven by the caller's clock (milliseconds), for ICMP the director sends: Linux
//! limits ICMP errors with `icmp_msgs_per_sec` (1000) and `icmp_msgs_burst` (50); rvs keeps one such
//! bucket per worker for errors and one for echo replies, so a flood of pings or of packets that
//! draw errors costs the workers and the wire a bounded amount.

use rvs_ipvs::Time;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    per_sec: u32,
    burst: u32,
    /// Tokens in thousandths, so that sub-token refills at high call rates are not lost.
    milli_tokens: u64,
    last: Time,
}

impl TokenBucket {
    /// `per_sec` tokens a second, at most `burst` saved up (it starts full). `per_sec` 0 = unlimited.
    pub fn new(per_sec: u32, burst: u32) -> Self {
        Self { per_sec, burst, milli_tokens: u64::from(burst) * 1000, last: 0 }
    }

    /// Takes a token at time `now` (ms) if there is one.
    #[inline]
    pub fn allow(&mut self, now: Time) -> bool {
        if self.per_sec == 0 {
            return true;
        }
        let elapsed = now.saturating_sub(self.last);
        self.last = self.last.max(now);
        let cap = u64::from(self.burst.max(1)) * 1000;
        self.milli_tokens = (self.milli_tokens + elapsed.saturating_mul(u64::from(self.per_sec))).min(cap);
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

impl Default for TokenBucket {
    /// Linux's defaults: 1000 a second, bursts of 50.
    fn default() -> Self {
        Self::new(1000, 50)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_the_rate() {
        let mut b = TokenBucket::default();
        let first = (0..1000).filter(|_| b.allow(0)).count();
        assert_eq!(first, 50, "the burst");
        // Over the next 10 s, at 10 attempts per ms: 1000 a second.
        let later = (1..=10_000u64).map(|ms| (0..10).filter(|_| b.allow(ms)).count()).sum::<usize>();
        assert_eq!(later, 10_000);
        let mut free = TokenBucket::new(0, 0);
        assert!((0..10_000).all(|_| free.allow(5)), "0 = unlimited");
    }
}
