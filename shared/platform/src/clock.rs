//! A service's wall clock: real time plus an adjustable offset.
//!
//! Every decision a service makes by the calendar reads one (the notifier's night-ban and
//! quota-day deferrals, the tracker's overdue sweep and rating window, retention). Tests
//! and the demo move it to 23:00 or to the day after an appointment instead of waiting
//! hours, the way the sandbox's `POST /_sandbox/clock` moves Zalo's.
//!
//! Pacing, rate limits and time-outs do not use it: they run on the database's
//! `clock_timestamp()` and tokio's monotonic clock, which no test should bend.

use chrono::{DateTime, Duration, Utc};
use std::sync::{
    atomic::{AtomicI64, Ordering},
    Arc,
};

/// Real time shifted by an offset. Cheap to clone; clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The real clock.
    pub fn real() -> Self {
        Self::default()
    }

    /// The service's current instant.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Makes the clock read `at` now; it keeps ticking from there.
    pub fn set_now(&self, at: DateTime<Utc>) {
        let offset = (at - Utc::now()).num_milliseconds();
        self.offset_ms.store(offset, Ordering::Relaxed);
    }

    /// Back to real time.
    pub fn reset(&self) {
        self.offset_ms.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_clock_keeps_ticking_from_the_value_set_and_clones_share_it() {
        let clock = Clock::real();
        let copy = clock.clone();
        let target = DateTime::parse_from_rfc3339("2030-01-01T16:00:00Z")
            .unwrap()
            .to_utc();
        clock.set_now(target);
        assert!((copy.now() - target).num_seconds().abs() < 2);
        clock.reset();
        assert!((copy.now() - Utc::now()).num_seconds().abs() < 2);
    }
}
