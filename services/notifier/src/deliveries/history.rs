//! Every delivery's history: one row of `notifier.delivery_events` per status
//! transition (failures, retries, parks, receipts). A send the sender recorded has no
//! row: the delivery row's `sent_at` is its entry ([`crate::deliveries::views_for`]).

use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::{json, Value};

/// One status transition of a delivery, for its history.
#[derive(Debug, Clone)]
pub(crate) struct Transition {
    /// The delivery (its notification id).
    pub notification_id: String,
    /// Its tenant.
    pub tenant: String,
    /// The status it moved to: `sent`, `delivered`, `seen`, `failed`, `deferred`,
    /// `held`, `ambiguous`, `retrying`.
    pub status: String,
    /// When it happened (Zalo's time for receipts).
    pub at: DateTime<Utc>,
    /// Anything worth keeping: channel, `msg_id`, error code and reason (never a phone
    /// number or a token).
    pub detail: Value,
}

impl Transition {
    /// A transition with an empty detail.
    pub(crate) fn new(
        notification_id: impl Into<String>,
        tenant: impl Into<String>,
        status: impl Into<String>,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            notification_id: notification_id.into(),
            tenant: tenant.into(),
            status: status.into(),
            at,
            detail: json!({}),
        }
    }

    /// Adds detail.
    pub(crate) fn with_detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

/// Appends transitions to `notifier.delivery_events` in one statement, on a pooled
/// connection or inside the caller's transaction (pass the transaction to make the
/// history atomic with the status change). `sent`, `delivered` and `seen` are kept
/// once per delivery: a repeated one is skipped. Returns the rows written.
pub(crate) async fn record_transitions<C: GenericClient>(
    client: &C,
    transitions: &[Transition],
) -> anyhow::Result<u64> {
    if transitions.is_empty() {
        return Ok(0);
    }
    let columns = TransitionColumns::of(transitions);
    let statement = client
        .prepare_cached(&insert_transitions_sql(1))
        .await
        .context("Failed to prepare the delivery history insert")?;
    client
        .execute(&statement, &columns.params())
        .await
        .context("Failed to record delivery transitions")
}

/// Transitions as the column arrays [`insert_transitions_sql`] binds.
pub(crate) struct TransitionColumns<'a> {
    ids: Vec<&'a str>,
    tenants: Vec<&'a str>,
    statuses: Vec<&'a str>,
    ats: Vec<DateTime<Utc>>,
    details: Vec<String>,
}

impl<'a> TransitionColumns<'a> {
    pub(crate) fn of(transitions: &'a [Transition]) -> Self {
        Self {
            ids: transitions
                .iter()
                .map(|t| t.notification_id.as_str())
                .collect(),
            tenants: transitions.iter().map(|t| t.tenant.as_str()).collect(),
            statuses: transitions.iter().map(|t| t.status.as_str()).collect(),
            ats: transitions.iter().map(|t| t.at).collect(),
            details: transitions.iter().map(|t| t.detail.to_string()).collect(),
        }
    }

    /// The five parameters, in the order of [`insert_transitions_sql`].
    pub(crate) fn params(&self) -> [&(dyn tokio_postgres::types::ToSql + Sync); 5] {
        [
            &self.ids,
            &self.tenants,
            &self.statuses,
            &self.ats,
            &self.details,
        ]
    }
}

/// The history insert, its five array parameters numbered from `first`, so that it
/// can stand alone or be a part of a larger statement.
pub(crate) fn insert_transitions_sql(first: usize) -> String {
    let p = |k: usize| first + k;
    format!(
        "INSERT INTO notifier.delivery_events (notification_id, tenant, status, at, detail)
         SELECT notification_id, tenant, status, at, detail::jsonb
           FROM UNNEST(${}::text[], ${}::text[], ${}::text[], ${}::timestamptz[], ${}::text[])
                AS t(notification_id, tenant, status, at, detail)
         ON CONFLICT DO NOTHING",
        p(0),
        p(1),
        p(2),
        p(3),
        p(4)
    )
}
