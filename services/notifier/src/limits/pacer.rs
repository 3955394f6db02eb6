//! The last step before a Zalo call: one tenant's calls leave this process no closer
//! together than its rate allows, beyond half its burst.
//!
//! The shared limiter ([`super::ratelimit`]) hands out send slots that conform to
//! Zalo's limit, but a send can leave after its slot: it waits for its dispatch mark's
//! group write, or for the CPU on a busy machine. Late sends that leave together are a
//! burst, and Zalo's limiter refuses it with `-32` although every slot conformed. The
//! pacer spreads such a bunch at the tenant's rate again (a GCRA that delays instead
//! of refusing); a send on time is not held at all.

use std::{collections::HashMap, sync::Mutex, time::Duration};
use tokio::time::Instant;

/// Per tenant, the theoretical arrival time of the next call from this process.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    next: Mutex<HashMap<String, Instant>>,
}

impl Pacer {
    /// When a call for `tenant` may leave, reserving its place: now, unless calls
    /// left (or are about to) faster than `rate_per_second` beyond half of `burst`.
    pub(crate) fn reserve(&self, tenant: &str, rate_per_second: f64, burst: u32) -> Instant {
        let now = Instant::now();
        if !rate_per_second.is_finite() || rate_per_second <= 0.0 {
            return now;
        }
        let interval = Duration::from_secs_f64(1.0 / rate_per_second);
        let tolerance = interval * (burst / 2).max(1);
        let mut next = self
            .next
            .lock()
            .expect("the pacer's lock is never poisoned");
        let due = next.get(tenant).copied().unwrap_or(now).max(now);
        next.insert(tenant.to_owned(), due + interval);
        due.checked_sub(tolerance).map_or(now, |at| at.max(now))
    }

    /// Waits until a call for `tenant` may leave (see [`Self::reserve`]).
    pub(crate) async fn wait(&self, tenant: &str, rate_per_second: f64, burst: u32) {
        let at = self.reserve(tenant, rate_per_second, burst);
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_on_time_leave_at_once_and_a_late_bunch_is_spread_at_the_rate() {
        let pacer = Pacer::default();
        // 10 a second, burst 10 (half of it, 5 intervals, is the tolerance): six
        // calls asked for at once leave at once, then one every 100 ms.
        let leave: Vec<Instant> = (0..8).map(|_| pacer.reserve("t", 10.0, 10)).collect();
        let asked = Instant::now();
        assert!(leave[..6].iter().all(|at| *at <= asked));
        assert_eq!(leave[6] - leave[0], Duration::from_millis(100));
        assert_eq!(leave[7] - leave[0], Duration::from_millis(200));
        // Another tenant is not held by this one.
        assert!(pacer.reserve("other", 10.0, 10) <= Instant::now());
        // Once the bunch has drained, a call on time leaves at once.
        std::thread::sleep(Duration::from_millis(350));
        assert!(pacer.reserve("t", 10.0, 10) <= Instant::now());
    }

    #[test]
    fn a_tenant_without_a_rate_is_never_held() {
        let pacer = Pacer::default();
        for _ in 0..100 {
            assert!(pacer.reserve("t", 0.0, 1) <= Instant::now());
            assert!(pacer.reserve("t", f64::INFINITY, 1) <= Instant::now());
        }
    }
}
