//! The sandbox clock: real time plus an adjustable offset, so tests can reach the night
//! window, the next quota day or token expiry without waiting. It keeps ticking after
//! being set. Rate limiting and the peak-rate window use the real monotonic clock.

use chrono::{DateTime, Duration, Utc};
use std::sync::atomic::{AtomicI64, Ordering};

/// Real time shifted by an offset.
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    /// The sandbox's current instant.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.offset_ms())
    }

    /// The sandbox's current instant as epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    /// The current offset from real time.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// Makes the clock read `at` now (and keep ticking from there).
    pub fn set_now(&self, at: DateTime<Utc>) {
        let offset = (at - Utc::now()).num_milliseconds();
        self.offset_ms.store(offset, Ordering::Relaxed);
    }

    /// Shifts the clock `secs` seconds from real time.
    pub fn set_offset_secs(&self, secs: i64) {
        self.offset_ms
            .store(secs.saturating_mul(1000), Ordering::Relaxed);
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
    fn setting_the_clock_moves_now_and_reset_returns_to_real_time() {
        let clock = Clock::default();
        let target = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        clock.set_now(target);
        assert!((clock.now() - target).num_seconds().abs() < 2);
        clock.set_offset_secs(3600);
        assert!(((clock.now() - Utc::now()).num_seconds() - 3600).abs() < 2);
        clock.reset();
        assert!((clock.now() - Utc::now()).num_seconds().abs() < 2);
    }
}
