//! Prometheus counters of the sandbox, in the default registry (served on `/metrics`).
//! Labels are bounded: API family, outcome (`accepted` or a Zalo error code), event name.

use prometheus::{register_int_counter_vec, IntCounterVec};
use std::sync::LazyLock;

/// Answers to Zalo API calls by family and outcome.
pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_sandbox_requests_total",
        "Zalo API calls answered by the sandbox, by API family and outcome (accepted or error code).",
        &["api", "outcome"]
    )
    .expect("the sandbox request counter is registered once")
});

/// Webhook deliveries by event and outcome.
pub static WEBHOOKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_sandbox_webhooks_total",
        "Webhooks emitted by the sandbox, by event name and outcome (delivered, failed, dropped).",
        &["event", "outcome"]
    )
    .expect("the sandbox webhook counter is registered once")
});

/// Registers the counters now, each API's accepted calls and receipt webhooks
/// delivered at zero, so `/metrics` lists them before the first request.
pub fn register() {
    for api in ["zns", "oa", "oauth"] {
        REQUESTS.with_label_values(&[api, "accepted"]);
    }
    WEBHOOKS.with_label_values(&["user_received_message", "delivered"]);
}

/// Counts one answer.
pub fn record_request(api: &str, outcome: &str) {
    REQUESTS.with_label_values(&[api, outcome]).inc();
}

/// Counts one webhook outcome.
pub fn record_webhook(event: &str, outcome: &str) {
    WEBHOOKS.with_label_values(&[event, outcome]).inc();
}
