//! Intake metrics. Labels are bounded: tenant ids come from configuration.

use prometheus::{register_histogram, register_int_counter_vec, Histogram, IntCounterVec};
use std::sync::LazyLock;

static EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_intake_events_total",
        "Events received by intake, by path (http, amqp) and outcome (accepted, invalid, unauthorized, forbidden, unavailable).",
        &["path", "outcome"]
    )
    .expect("metric registers once")
});

static PUBLISH_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "loa_intake_publish_seconds",
        "Time from publishing a batch of events to RabbitMQ's confirm of all of them.",
        vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]
    )
    .expect("metric registers once")
});

/// The `path` label values: the HTTP API and the AMQP ingress queue.
pub const PATHS: [&str; 2] = ["http", "amqp"];
/// The `outcome` label values.
pub const OUTCOMES: [&str; 5] = [
    "accepted",
    "invalid",
    "unauthorized",
    "forbidden",
    "unavailable",
];

/// Registers every metric and creates each path and outcome's series at zero, so
/// `/metrics` shows them before the first event and `rate()` in an alert sees the
/// first refusal too.
pub fn register() {
    LazyLock::force(&PUBLISH_SECONDS);
    for path in PATHS {
        for outcome in OUTCOMES {
            EVENTS.with_label_values(&[path, outcome]);
        }
    }
}

/// Counts `n` events with an outcome.
pub fn events(path: &str, outcome: &str, n: usize) {
    if n > 0 {
        EVENTS.with_label_values(&[path, outcome]).inc_by(n as u64);
    }
}

/// Records how long a confirmed publish took.
pub fn publish_seconds(seconds: f64) {
    PUBLISH_SECONDS.observe(seconds);
}
