//! The notifier's Prometheus metrics (the Zalo request metrics live next to the client
//! in [`crate::zalo`]). Labels are bounded: tenant ids, channels, kinds, outcomes and
//! classes; never a phone number, a dossier code or a notification id.

use crate::{engine::Channel, zalo::ErrorClass};
use chrono::{DateTime, Utc};
use loa_contracts::NotificationKind;
use loa_platform::Tenants;
use prometheus::{
    register_gauge_vec, register_histogram_vec, register_int_counter_vec, GaugeVec, HistogramVec,
    IntCounterVec,
};
use std::{
    collections::HashSet,
    sync::{LazyLock, Mutex},
};

static BROADCAST_RECIPIENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_broadcast_recipients_total",
        "Broadcast recipients by tenant and state: queued (published by the fan-out), sent, \
         failed, deferred (held back: quiet hours, pause, quota) and skipped (cancelled, ended, \
         opted out, monthly cap, Zalo's per-user limits).",
        &["tenant", "state"]
    )
    .expect("metric registers once")
});
static BROADCASTS_ACTIVE: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "loa_broadcasts_active",
        "Broadcasts running or paused, by tenant.",
        &["tenant"]
    )
    .expect("metric registers once")
});
static DELIVERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_notifier_deliveries_total",
        "Notification requests handled, by tenant, channel (zns, oa_template, none), kind and outcome \
         (sent, duplicate, duplicate_parked, failed, invalid, retry_<error class or deferral: transient, defer_night, defer_quota, quota_reserve, not_before, ambiguous, held>).",
        &["tenant", "channel", "kind", "outcome"]
    )
    .expect("metric registers once")
});
static PERSONAL_DATA_ERASED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_notifier_personal_data_erased_total",
        "Rows whose personal data the retention sweep erased or reduced to masked forms \
         (the tenant's retention_days after their last change), by tenant and what they were \
         (deliveries, dead_letters, citizen_messages); dead letters without a tenant count \
         under `unknown`.",
        &["tenant", "kind"]
    )
    .expect("metric registers once")
});
static EVENT_TO_SEND: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "loa_notifier_event_to_send_seconds",
        "Time from intake accepting the dossier event to Zalo accepting the message, by kind.",
        &["kind"],
        vec![
            0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0,
            86400.0
        ]
    )
    .expect("metric registers once")
});
static AMBIGUOUS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_notifier_ambiguous_sends_total",
        "Sends that may or may not have reached Zalo, by tenant and cause: timeout (no answer \
         in time) or interrupted (a sender died after dispatching it). Each is parked until \
         its delivery receipt or its recheck time; only a resend after the recheck \
         (loa_notifier_ambiguous_resends_total) can duplicate a message.",
        &["tenant", "cause"]
    )
    .expect("metric registers once")
});
static TOKEN_EXPIRY: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "loa_notifier_token_expiry_seconds",
        "Seconds until the tenant's cached Zalo access token expires (updated every minute); \
         NaN until the notifier first holds one.",
        &["tenant"]
    )
    .expect("metric registers once")
});
static TOKEN_REFRESH_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_notifier_token_refresh_failures_total",
        "Failed Zalo token refreshes by tenant and error class; needs_operator means the refresh \
         token is refused and an OA admin must re-authorise the app.",
        &["tenant", "class"]
    )
    .expect("metric registers once")
});

/// The `reason` label values of `loa_notifier_retries_total`: the error classes sent
/// to a delay queue, the wall-clock deferrals, parked and held (see
/// [`crate::retry::decide`]).
pub(crate) const RETRY_REASONS: [&str; 8] = [
    "transient",
    "refresh_token",
    "defer_night",
    "defer_quota",
    "quota_reserve",
    "not_before",
    "ambiguous",
    "held",
];

/// The `cause` label values of `loa_notifier_ambiguous_sends_total`.
pub(crate) const AMBIGUOUS_CAUSES: [&str; 2] = ["timeout", "interrupted"];

/// The `outcome`s of `loa_notifier_deliveries_total` created at zero for every tenant,
/// channel and kind: the two the failure-ratio alert divides.
const DELIVERY_OUTCOMES_AT_ZERO: [&str; 2] = ["sent", "failed"];

/// Tenants whose series exist already (a reload adds only the new ones; gauges that
/// hold a value must not go back to NaN).
static INITIALISED: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);

/// What the retention sweep erases, as `loa_notifier_personal_data_erased_total`'s
/// `kind` label.
pub(crate) const PERSONAL_DATA_KINDS: [&str; 3] =
    ["deliveries", "dead_letters", "citizen_messages"];

/// Counts rows whose personal data the retention sweep erased.
pub(crate) fn personal_data_erased(tenant: &str, kind: &str, rows: u64) {
    PERSONAL_DATA_ERASED
        .with_label_values(&[tenant, kind])
        .inc_by(rows);
}

/// Creates every series whose labels are known from the configuration, so `/metrics`
/// shows them from the start (dashboards have data, and `rate()` / `increase()` in an
/// alert see the first retry, dead letter or refresh failure, which a series born at 1
/// would hide): per kind the event-to-send latency; per tenant the deliveries sent and
/// failed by channel and kind, the retries by reason, ambiguous sends by cause, their
/// resends, token refresh failures by class and personal data erased at zero, and not
/// paused. The quota and the
/// token expiry are unknown until Zalo answers: NaN, which no alert's comparison takes
/// for a value. Idempotent; call it again after the tenants changed.
pub(crate) fn init(tenants: &Tenants) {
    PERSONAL_DATA_ERASED.with_label_values(&[crate::dead_letters::UNKNOWN_TENANT, "dead_letters"]);
    for kind in NotificationKind::ALL {
        EVENT_TO_SEND.with_label_values(&[kind.as_str()]);
    }
    let mut initialised = INITIALISED.lock().unwrap_or_else(|e| e.into_inner());
    for t in tenants.all() {
        if !initialised.insert(t.id.clone()) {
            continue;
        }
        let tenant = t.id.as_str();
        for channel in [Channel::Zns, Channel::OaTemplate] {
            for kind in NotificationKind::ALL {
                for outcome in DELIVERY_OUTCOMES_AT_ZERO {
                    DELIVERIES.with_label_values(&[
                        tenant,
                        channel.as_str(),
                        kind.as_str(),
                        outcome,
                    ]);
                }
            }
        }
        for reason in RETRY_REASONS {
            RETRIES.with_label_values(&[tenant, reason]);
        }
        for cause in AMBIGUOUS_CAUSES {
            AMBIGUOUS.with_label_values(&[tenant, cause]);
        }
        AMBIGUOUS_RESENDS.with_label_values(&[tenant]);
        for kind in PERSONAL_DATA_KINDS {
            PERSONAL_DATA_ERASED.with_label_values(&[tenant, kind]);
        }
        for class in ErrorClass::ALL {
            TOKEN_REFRESH_FAILURES.with_label_values(&[tenant, class.as_str()]);
        }
        TENANT_PAUSED.with_label_values(&[tenant]);
        for state in ["queued", "sent", "failed", "deferred", "skipped"] {
            BROADCAST_RECIPIENTS.with_label_values(&[tenant, state]);
        }
        BROADCASTS_ACTIVE.with_label_values(&[tenant]);
        QUOTA_REMAINING.with_label_values(&[tenant]).set(f64::NAN);
        TOKEN_EXPIRY.with_label_values(&[tenant]).set(f64::NAN);
    }
}

/// Counts one handled request.
pub(crate) fn delivery(tenant: &str, channel: &str, kind: &str, outcome: &str) {
    DELIVERIES
        .with_label_values(&[tenant, channel, kind, outcome])
        .inc();
}

static AMBIGUOUS_RESENDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_notifier_ambiguous_resends_total",
        "Requests sent again although an earlier attempt may have reached Zalo (it timed out, \
         or its sender died after dispatching it, and no delivery receipt came by the recheck \
         time), by tenant: the most duplicate messages citizens can have received.",
        &["tenant"]
    )
    .expect("metric registers once")
});

/// Counts a resend of a request whose earlier attempt may have reached Zalo.
pub(crate) fn ambiguous_resend(tenant: &str) {
    AMBIGUOUS_RESENDS.with_label_values(&[tenant]).inc();
}

/// Counts a send whose fate is unknown (`timeout` or `interrupted`).
pub(crate) fn ambiguous_send(tenant: &str, cause: &str) {
    AMBIGUOUS.with_label_values(&[tenant, cause]).inc();
}

/// Observes the event-to-send latency of a message Zalo just accepted.
pub(crate) fn event_to_send(kind: &str, event_accepted_at: DateTime<Utc>) {
    let seconds = (Utc::now() - event_accepted_at).num_milliseconds().max(0) as f64 / 1000.0;
    EVENT_TO_SEND.with_label_values(&[kind]).observe(seconds);
}

/// Sets the seconds left on a tenant's access token.
pub(crate) fn token_expiry(tenant: &str, expires_at: DateTime<Utc>) {
    let seconds = (expires_at - Utc::now()).num_seconds() as f64;
    TOKEN_EXPIRY.with_label_values(&[tenant]).set(seconds);
}

/// Counts a failed refresh.
pub(crate) fn token_refresh_failed(tenant: &str, class: ErrorClass) {
    TOKEN_REFRESH_FAILURES
        .with_label_values(&[tenant, class.as_str()])
        .inc();
}

static RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_notifier_retries_total",
        "Requests the delivery engine will try again later, by tenant and reason: an error \
         class sent to a delay queue (transient, refresh_token), a wall-clock deferral \
         (defer_night, defer_quota, quota_reserve, not_before), ambiguous (parked until a \
         receipt or its recheck) or held (tenant paused).",
        &["tenant", "reason"]
    )
    .expect("metric registers once")
});
static QUOTA_REMAINING: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "loa_notifier_quota_remaining",
        "The tenant's ZNS daily quota left today, as Zalo last reported it (minus sends in \
         flight); NaN until Zalo first reported it.",
        &["tenant"]
    )
    .expect("metric registers once")
});
static TENANT_PAUSED: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "loa_notifier_tenant_paused",
        "1 while the tenant's sending is paused because Zalo needs an operator (balance, \
         permissions, refused refresh token); resumed with POST /v1/pause/resume.",
        &["tenant"]
    )
    .expect("metric registers once")
});

/// Counts a request put off for later (`reason`: a bounded class or deferral name).
pub(crate) fn retry(tenant: &str, reason: &str) {
    RETRIES.with_label_values(&[tenant, reason]).inc();
}

/// Sets the tenant's remaining ZNS quota.
pub(crate) fn quota_remaining(tenant: &str, remaining: i64) {
    QUOTA_REMAINING
        .with_label_values(&[tenant])
        .set(remaining as f64);
}

/// Sets whether the tenant's sending is paused.
pub(crate) fn tenant_paused(tenant: &str, paused: bool) {
    TENANT_PAUSED
        .with_label_values(&[tenant])
        .set(i64::from(paused));
}

/// Counts broadcast recipients reaching `state` (a bounded name).
pub(crate) fn broadcast_recipients(tenant: &str, state: &str, n: u64) {
    BROADCAST_RECIPIENTS
        .with_label_values(&[tenant, state])
        .inc_by(n);
}

/// Sets how many of the tenant's broadcasts are running or paused.
pub(crate) fn broadcasts_active(tenant: &str, n: i64) {
    BROADCASTS_ACTIVE.with_label_values(&[tenant]).set(n);
}
