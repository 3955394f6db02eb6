//! The tracker's Prometheus metrics, registered in the default registry and served on
//! `/metrics`. Labels are bounded: tenants come from configuration (anything else is
//! `unknown`), never a dossier code or a phone number.

use prometheus::{
    exponential_buckets, register_gauge, register_gauge_vec, register_histogram,
    register_int_counter_vec, register_int_gauge, Gauge, GaugeVec, Histogram, IntCounterVec,
    IntGauge,
};
use std::sync::LazyLock;

/// Label for a tenant that is not configured (dead-lettered events).
pub const UNKNOWN_TENANT: &str = "unknown";

/// What happened to one consumed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// It became (or updated) its dossier's current state.
    Applied,
    /// Its `event_id` was already recorded: no effect.
    Duplicate,
    /// Recorded in the history only: the dossier already had a newer state (the
    /// event may still fill in facts the state lacked, such as the reception date).
    Stale,
    /// Its `event_id` was already recorded for an event with other content: an
    /// upstream bug. Not applied; dead-lettered (`event_id_reused`) for the tenant's
    /// admins.
    Conflict,
    /// The lifecycle does not allow its status after its dossier's (see
    /// [`crate::lifecycle`]): kept in the history, flagged, not applied, not notified.
    InvalidTransition,
    /// Undecodable, of another type, or for an unknown tenant.
    DeadLetter,
}

impl EventOutcome {
    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Stale => "stale",
            Self::Conflict => "conflict",
            Self::InvalidTransition => "invalid_transition",
            Self::DeadLetter => "dead_letter",
        }
    }

    /// Every outcome, for creating the series at zero.
    pub const ALL: [EventOutcome; 6] = [
        Self::Applied,
        Self::Duplicate,
        Self::Stale,
        Self::Conflict,
        Self::InvalidTransition,
        Self::DeadLetter,
    ];
}

static EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_tracker_events_total",
        "Dossier events consumed by the tracker, by tenant and outcome (applied, duplicate, stale, conflict, invalid_transition, dead_letter).",
        &["tenant", "outcome"]
    )
    .expect("metric registers once")
});

static BATCH_SIZE: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "loa_tracker_batch_size",
        "Events per consumed batch (one Postgres transaction each; a delivery may carry a pack of events).",
        exponential_buckets(1.0, 2.0, 12).expect("static buckets are valid")
    )
    .expect("metric registers once")
});

static PLANNED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_tracker_notifications_planned_total",
        "Notifications written to the outbox, by tenant and kind.",
        &["tenant", "kind"]
    )
    .expect("metric registers once")
});

static OUTBOX_PENDING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "loa_tracker_outbox_pending",
        "Outbox rows not yet published to RabbitMQ (sampled by the relay every second)."
    )
    .expect("metric registers once")
});

static OUTBOX_OLDEST: LazyLock<Gauge> = LazyLock::new(|| {
    register_gauge!(
        "loa_tracker_outbox_oldest_seconds",
        "Age of the oldest outbox row not yet published to RabbitMQ, 0 when none waits \
         (sampled by the relay every second): how far behind the relay is."
    )
    .expect("metric registers once")
});

static OVERDUE: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "loa_tracker_overdue_dossiers",
        "Open dossiers past their appointment day while being processed (not waiting for the \
         citizen), by tenant, as the last overdue sweep counted them (NaN before the first).",
        &["tenant"]
    )
    .expect("metric registers once")
});

static PERSONAL_DATA_ERASED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_tracker_personal_data_erased_total",
        "Dossiers whose names and phones the retention sweep reduced to masked forms, by \
         tenant (retention_days after their last event).",
        &["tenant"]
    )
    .expect("metric registers once")
});

static RESULT_DOWNLOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_tracker_result_downloads_total",
        "Electronic results opened through the lookup page's download link (a 303 to the \
         province's document store), by tenant.",
        &["tenant"]
    )
    .expect("metric registers once")
});

static RATINGS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_tracker_ratings_total",
        "Satisfaction ratings recorded (a first rating or a change inside the window), by \
         tenant and level (very_satisfied, satisfied, dissatisfied), from the lookup page or \
         Zalo's rating template.",
        &["tenant", "level"]
    )
    .expect("metric registers once")
});

static ZALO_FEEDBACK: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_tracker_zalo_feedback_total",
        "Ratings given in Zalo (user_feedback on a rating template) the notifier forwarded, \
         by tenant and outcome: recorded, duplicate (a redelivery), window_closed (the \
         dossier's rating is final), not_rateable (result not returned), ignored (no such \
         dossier, no stars).",
        &["tenant", "outcome"]
    )
    .expect("metric registers once")
});

static RELAY_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "loa_tracker_outbox_relay_seconds",
        "Time to publish and confirm one relayed outbox batch and mark it published.",
        exponential_buckets(0.001, 2.0, 14).expect("static buckets are valid")
    )
    .expect("metric registers once")
});

/// Registers every metric now, so `/metrics` shows them (at zero) before the first
/// event, and dashboards and alerts see the series from the start.
pub fn register() {
    LazyLock::force(&EVENTS);
    LazyLock::force(&BATCH_SIZE);
    LazyLock::force(&PLANNED);
    LazyLock::force(&OUTBOX_PENDING);
    LazyLock::force(&OUTBOX_OLDEST);
    LazyLock::force(&RELAY_SECONDS);
    LazyLock::force(&OVERDUE);
    LazyLock::force(&PERSONAL_DATA_ERASED);
    LazyLock::force(&RESULT_DOWNLOADS);
    LazyLock::force(&RATINGS);
    LazyLock::force(&ZALO_FEEDBACK);
}

/// Creates every outcome's series at zero for each configured tenant (and for
/// `unknown`, where dead letters of unknown tenants are counted), so an alert on
/// `increase(loa_tracker_events_total{outcome="conflict"}[…])` sees the first one;
/// likewise every notification kind's planned count.
pub fn init(tenants: &loa_platform::Tenants) {
    let ids = tenants
        .all()
        .iter()
        .map(|t| t.id.as_str())
        .chain([UNKNOWN_TENANT]);
    for tenant in ids {
        for outcome in EventOutcome::ALL {
            EVENTS.with_label_values(&[tenant, outcome.as_str()]);
        }
    }
    for tenant in tenants.all() {
        for kind in loa_contracts::NotificationKind::CASE_UPDATES {
            PLANNED.with_label_values(&[tenant.id.as_str(), kind.as_str()]);
        }
        PERSONAL_DATA_ERASED.with_label_values(&[tenant.id.as_str()]);
        RESULT_DOWNLOADS.with_label_values(&[tenant.id.as_str()]);
        for level in crate::ratings::RatingLevel::ALL {
            RATINGS.with_label_values(&[tenant.id.as_str(), level.as_str()]);
        }
        crate::chat::init_metrics(&tenant.id);
        for outcome in crate::ratings::FeedbackOutcome::ALL {
            ZALO_FEEDBACK.with_label_values(&[tenant.id.as_str(), outcome.as_str()]);
        }
        // Not known until the first sweep: NaN, not a misleading 0.
        let overdue = OVERDUE.with_label_values(&[tenant.id.as_str()]);
        if overdue.get() == 0.0 {
            overdue.set(f64::NAN);
        }
    }
}

/// Counts dossiers whose personal data the retention sweep erased.
pub fn personal_data_erased(tenant: &str, dossiers: u64) {
    PERSONAL_DATA_ERASED
        .with_label_values(&[tenant])
        .inc_by(dossiers);
}

/// Counts one download of an electronic result through the lookup page.
pub fn result_download(tenant: &str) {
    RESULT_DOWNLOADS.with_label_values(&[tenant]).inc();
}

/// Counts one rating recorded.
pub fn rating(tenant: &str, level: crate::ratings::RatingLevel) {
    RATINGS.with_label_values(&[tenant, level.as_str()]).inc();
}

/// Counts one rating given in Zalo by what became of it.
pub fn zalo_feedback(tenant: &str, outcome: crate::ratings::FeedbackOutcome) {
    ZALO_FEEDBACK
        .with_label_values(&[tenant, outcome.as_str()])
        .inc();
}

/// Sets a tenant's count of open overdue dossiers.
pub fn overdue_dossiers(tenant: &str, count: i64) {
    OVERDUE.with_label_values(&[tenant]).set(count as f64);
}

/// Counts one event's outcome.
pub fn event(tenant: &str, outcome: EventOutcome) {
    EVENTS.with_label_values(&[tenant, outcome.as_str()]).inc();
}

/// Records a batch's size.
pub fn batch(size: usize) {
    BATCH_SIZE.observe(size as f64);
}

/// Counts one notification written to the outbox.
pub fn planned(tenant: &str, kind: &str) {
    PLANNED.with_label_values(&[tenant, kind]).inc();
}

/// Sets the unpublished outbox backlog: its rows and its oldest row's age.
pub fn outbox_backlog(rows: i64, oldest_seconds: f64) {
    OUTBOX_PENDING.set(rows);
    OUTBOX_OLDEST.set(oldest_seconds);
}

/// Records one relay batch's duration.
pub fn relay_seconds(seconds: f64) {
    RELAY_SECONDS.observe(seconds);
}
