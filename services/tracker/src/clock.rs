//! The tracker's wall clock: real time plus an adjustable offset.
//!
//! Everything the tracker decides by the date reads it: when an event was applied,
//! "today" for early / on time / overdue on the lookup page and in the APIs, the
//! overdue sweep, and the window in which a rating may still be changed. Tests move it
//! to the day after an appointment instead of waiting for it.

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

    /// The tracker's current instant.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Makes the clock read `at` now; it keeps ticking from there.
    pub fn set_now(&self, at: DateTime<Utc>) {
        let offset = (at - Utc::now()).num_milliseconds();
        self.offset_ms.store(offset, Ordering::Relaxed);
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
    }
}
