//! The console's Prometheus metrics (bounded labels: outcomes and action names).

use crate::audit::Action;
use prometheus::{register_int_counter_vec, IntCounterVec};
use std::sync::LazyLock;

static ACTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_console_actions_total",
        "Audited console actions (sign-ins, failures, resends, replays, …), by action.",
        &["action"]
    )
    .expect("metric registers once")
});

/// Starts every series at zero, so an alert on a rate sees the first failure.
pub fn register() {
    for action in Action::ALL {
        ACTIONS.with_label_values(&[action.as_str()]);
    }
}

/// Counts an audited action.
pub fn action(action: Action) {
    ACTIONS.with_label_values(&[action.as_str()]).inc();
}
