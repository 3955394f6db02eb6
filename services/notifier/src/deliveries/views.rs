//! Deliveries as the API shows them: a dossier's deliveries, and each one's receipt
//! times and history.

use super::DeliveryStatus;
use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// One delivery as the deliveries API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// The request's id (Zalo's `tracking_id`).
    pub notification_id: String,
    /// Notification kind.
    pub kind: String,
    /// Channel used or tried.
    pub channel: String,
    /// `sending`, `sent`, `delivered`, `seen`, `failed`, `retrying`, `deferred`,
    /// `held` or `ambiguous`.
    pub status: String,
    /// Zalo's message id, once sent.
    pub zalo_msg_id: Option<String>,
    /// Attempts so far.
    pub attempts: i32,
    /// Zalo's code of the last failure.
    pub last_error_code: Option<i32>,
    /// The last failure.
    pub last_error: Option<String>,
    /// First seen.
    pub created_at: DateTime<Utc>,
    /// Accepted by Zalo.
    pub sent_at: Option<DateTime<Utc>>,
    /// A `deferred` delivery's due time (absent when due now or not deferred).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    /// When an `ambiguous` delivery is resent unless its receipt comes first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recheck_at: Option<DateTime<Utc>>,
}

/// A tenant's deliveries for one dossier, oldest first.
pub async fn list_for_dossier(
    pool: &Pool,
    tenant: &str,
    dossier_code: &str,
) -> anyhow::Result<Vec<DeliveryView>> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let rows = client
        .query(
            "SELECT notification_id, kind, channel, status, zalo_msg_id, attempts, last_error_code, last_error,
                    created_at, sent_at, not_before, recheck_at
               FROM notifier.deliveries
              WHERE tenant = $1 AND dossier_code = $2
              ORDER BY created_at, notification_id
              LIMIT 1000",
            &[&tenant, &dossier_code],
        )
        .await
        .context("Failed to list deliveries")?;
    Ok(rows
        .iter()
        .map(|r| DeliveryView {
            notification_id: r.get(0),
            kind: r.get(1),
            channel: r.get(2),
            status: r.get(3),
            zalo_msg_id: r.get(4),
            attempts: r.get(5),
            last_error_code: r.get(6),
            last_error: r.get(7),
            created_at: r.get(8),
            sent_at: r.get(9),
            not_before: r.get(10),
            recheck_at: r.get(11),
        })
        .collect())
}

/// One row of a delivery's history, as the deliveries API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// The status the delivery moved to.
    pub status: String,
    /// When.
    pub at: DateTime<Utc>,
    /// What else is known (channel, `msg_id`, error).
    #[schema(value_type = Object)]
    pub detail: Value,
}

/// Receipt times and history of one delivery.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ReceiptView {
    /// When the phone received it (Zalo's `delivery_time`).
    pub delivered_at: Option<DateTime<Utc>>,
    /// When the citizen opened it.
    pub seen_at: Option<DateTime<Utc>>,
    /// Transitions in the order they were recorded (Zalo's receipt times and ours
    /// come from different clocks, so `at` alone may not be monotonic).
    pub history: Vec<HistoryEntry>,
}

/// Receipt times and histories of a tenant's deliveries, by notification id.
///
/// The sender does not write a history row for a send: the delivery row's `sent_at`,
/// `channel` and `zalo_msg_id` are the `sent` entry, placed before the receipts that
/// follow it. A `sent` row in the table (a send a receipt proved, or one recorded
/// before this was so) stands for itself.
pub async fn views_for(
    pool: &Pool,
    tenant: &str,
    notification_ids: &[String],
) -> anyhow::Result<HashMap<String, ReceiptView>> {
    if notification_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let deliveries = client
        .query(
            "SELECT notification_id, delivered_at, seen_at, sent_at, channel, zalo_msg_id
               FROM notifier.deliveries
              WHERE tenant = $1 AND notification_id = ANY($2)",
            &[&tenant, &notification_ids],
        )
        .await
        .context("Failed to read delivery receipts")?;
    let mut views: HashMap<String, ReceiptView> = deliveries
        .iter()
        .map(|r| {
            (
                r.get(0),
                ReceiptView {
                    delivered_at: r.get(1),
                    seen_at: r.get(2),
                    history: Vec::new(),
                },
            )
        })
        .collect();
    let rows = client
        .query(
            "SELECT notification_id, status, at, detail FROM notifier.delivery_events
              WHERE tenant = $1 AND notification_id = ANY($2)
              ORDER BY notification_id, id",
            &[&tenant, &notification_ids],
        )
        .await
        .context("Failed to read delivery histories")?;
    for r in &rows {
        let id: String = r.get(0);
        views.entry(id).or_default().history.push(HistoryEntry {
            status: r.get(1),
            at: r.get(2),
            detail: r.get(3),
        });
    }
    for r in &deliveries {
        let sent_at: Option<DateTime<Utc>> = r.get(3);
        if let (Some(at), Some(view)) = (sent_at, views.get_mut(r.get::<_, &str>(0))) {
            let channel: &str = r.get(4);
            let msg_id: Option<&str> = r.get(5);
            insert_sent(
                &mut view.history,
                HistoryEntry {
                    status: DeliveryStatus::Sent.as_str().to_owned(),
                    at,
                    detail: json!({"channel": channel, "msg_id": msg_id}),
                },
            );
        }
    }
    Ok(views)
}

/// Puts a recorded send into a history that has no `sent` row: after what came before
/// it (failed tries, deferrals), before the receipts that follow it. Nothing follows a
/// send but receipts.
fn insert_sent(history: &mut Vec<HistoryEntry>, sent: HistoryEntry) {
    let is = |h: &HistoryEntry, s: DeliveryStatus| h.status == s.as_str();
    if history.iter().any(|h| is(h, DeliveryStatus::Sent)) {
        return;
    }
    let at = history
        .iter()
        .position(|h| is(h, DeliveryStatus::Delivered) || is(h, DeliveryStatus::Seen))
        .unwrap_or(history.len());
    history.insert(at, sent);
}
