//! The last step before a Zalo call: one tenant's calls leave this process no closer
//! together than its rate allows, beyond half its burst.
//!
//! The shared limiter ([`super::ratelimit`]) hands out send slots that conform to
//! Zalo's limit, but a send can leave after its slot: it waits for its dispatch mark's
//! group write, or for the CPU on a busy machine. Late sends that leave together are a
//! burst, and Zalo's limiter refuses it with `-32` although every slot conformed. The
//! pacer spreads such a bunch at the tenant's rate again (a GCRA that delays instead
//! of refusing); a send on time is not held at all.
//!
//! The GCRA is checked when a call actually leaves, never planned ahead: a call
//! waits in the tenant's queue (first come, first served) and is let go only once
//! the clock, read again after every wait, says it conforms. A plan made ahead is
//! not enough: with departures booked at reservation time, a runtime that stalled
//! (a starved CPU, a long poll) woke every call whose time had passed during the
//! stall at once, and with the CPU loaded 34 calls of a 250/s broadcast booked over
//! 290 ms left within 1 ms, a burst of the very kind the pacer is for. Measured at
//! departure, a stall lets at most the tolerance go at once, the rest follows at
//! the rate, and the time the stall took is not lost beyond that tolerance (Zalo's
//! bucket does not keep more either).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::time::Instant;

/// One tenant's theoretical arrival time of its next call, behind a fair (FIFO) lock
/// its waiting calls queue on.
type Gate = Arc<tokio::sync::Mutex<Option<Instant>>>;

/// Per tenant, when the next call from this process may leave.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    gates: Mutex<HashMap<String, Gate>>,
}

impl Pacer {
    /// Waits until a call for `tenant` may leave, and counts it as left: at once,
    /// unless calls left faster than `rate_per_second` beyond half of `burst`. Call
    /// it right before the call; a tenant without a rate is never held.
    pub(crate) async fn wait(&self, tenant: &str, rate_per_second: f64, burst: u32) {
        if !rate_per_second.is_finite() || rate_per_second <= 0.0 {
            return;
        }
        let interval = Duration::from_secs_f64(1.0 / rate_per_second);
        let tolerance = interval * (burst / 2).max(1);
        let gate = Arc::clone(
            self.gates
                .lock()
                .expect("the pacer's lock is never poisoned")
                .entry(tenant.to_owned())
                .or_default(),
        );
        // Held while waiting: the calls behind queue in order, and only the first
        // sleeps (no herd of wake-ups racing for the same instant).
        let mut next = gate.lock().await;
        loop {
            let now = Instant::now();
            let due = next.unwrap_or(now).max(now);
            match due.checked_sub(tolerance) {
                Some(earliest) if earliest > now => tokio::time::sleep_until(earliest).await,
                _ => {
                    *next = Some(due + interval);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(100);
    /// Timers fire late, never early, and a busy machine delays them more: how far a
    /// departure may be from its exact instant.
    const SLACK: Duration = Duration::from_millis(40);

    fn near(at: Instant, expected: Instant) -> bool {
        at >= expected && at <= expected + SLACK
    }

    /// Lets `n` calls through one pacer at once (10 a second, burst 10: half of it,
    /// 5 intervals, is the tolerance) and returns when each left, sorted, after
    /// `stall` (if any) froze the runtime once every call was waiting.
    async fn departures(n: usize, stall: Option<Duration>) -> (Instant, Vec<Instant>) {
        let pacer = Arc::new(Pacer::default());
        let started = Instant::now();
        let calls: Vec<_> = (0..n)
            .map(|_| {
                let pacer = Arc::clone(&pacer);
                tokio::spawn(async move {
                    pacer.wait("t", 10.0, 10).await;
                    Instant::now()
                })
            })
            .collect();
        tokio::task::yield_now().await;
        if let Some(stall) = stall {
            // The runtime's only thread stops, as on a starved CPU or during a long
            // poll: every timer due meanwhile is late when it resumes.
            std::thread::sleep(stall);
        }
        let mut left = Vec::new();
        for call in calls {
            left.push(call.await.expect("the call waits"));
        }
        left.sort();
        (started, left)
    }

    /// Whether `left` conforms to a GCRA of `interval` and `tolerance` (up to
    /// [`SLACK`]): in any window, at most `tolerance / interval + 1` calls beyond the
    /// rate.
    fn conforms(left: &[Instant], interval: Duration, tolerance: Duration) -> bool {
        let mut next: Option<Instant> = None;
        for &at in left {
            let due = next.unwrap_or(at).max(at);
            if at + tolerance + SLACK < due {
                return false;
            }
            next = Some(due + interval);
        }
        true
    }

    #[tokio::test]
    async fn calls_on_time_leave_at_once_and_a_bunch_is_spread_at_the_rate() {
        let (started, left) = departures(8, None).await;

        // Six leave at once, then one every 100 ms.
        assert!(left[..6].iter().all(|at| near(*at, started)), "{left:?}");
        assert!(near(left[6], started + INTERVAL), "{left:?}");
        assert!(near(left[7], started + INTERVAL * 2), "{left:?}");
    }

    #[tokio::test]
    async fn another_tenant_is_not_held_and_a_drained_tenant_s_call_leaves_at_once() {
        let pacer = Pacer::default();
        let started = Instant::now();
        for _ in 0..6 {
            pacer.wait("t", 10.0, 10).await;
        }
        pacer.wait("other", 10.0, 10).await;
        assert!(near(Instant::now(), started));
        pacer.wait("t", 10.0, 10).await;
        assert!(near(Instant::now(), started + INTERVAL));
        tokio::time::sleep(INTERVAL * 10).await;
        let drained = Instant::now();
        pacer.wait("t", 10.0, 10).await;
        assert!(near(Instant::now(), drained));
    }

    #[tokio::test]
    async fn calls_a_stalled_runtime_held_back_do_not_leave_together_when_it_resumes() {
        // Arrange: 20 calls wait; six leave, then the runtime stalls for a second, in
        // which ten more were due.
        let stall = INTERVAL * 10;

        // Act
        let (started, left) = departures(20, Some(stall)).await;

        // Assert: after the stall no more than the tolerance at once, the rest at the
        // rate; the stall is lost beyond the tolerance only.
        let offsets: Vec<Duration> = left.iter().map(|at| *at - started).collect();
        assert!(conforms(&left, INTERVAL, INTERVAL * 5), "{offsets:?}");
        let resumed = left[6];
        assert!(near(resumed, started + stall), "{offsets:?}");
        assert_eq!(
            left.iter().filter(|at| near(**at, resumed)).count(),
            6,
            "{offsets:?}"
        );
        assert!(near(left[19], resumed + INTERVAL * 8), "{offsets:?}");
    }

    #[tokio::test]
    async fn a_tenant_without_a_rate_is_never_held() {
        let pacer = Pacer::default();
        let started = Instant::now();
        for _ in 0..100 {
            pacer.wait("t", 0.0, 1).await;
            pacer.wait("t", f64::INFINITY, 1).await;
        }
        assert!(near(Instant::now(), started));
    }
}
