//! Delivery receipts.
//!
//! Zalo reports what became of a message it accepted: `user_received_message` (the
//! phone got it; ZNS receipts carry our `tracking_id` and the `delivery_time`) and
//! `user_seen_message` (the citizen opened it). [`apply`] moves the delivery on,
//! `sent` → `delivered` → `seen`, never backwards: a receipt that arrives after the
//! seen event only fills `delivered_at`. Each transition is one row of the delivery's
//! history ([`crate::deliveries::record_transitions`]); a send the sender recorded has
//! no row, its entry is the delivery's `sent_at` ([`crate::deliveries::views_for`]).
//!
//! A receipt can overtake the sender: Zalo answers the send, emits the receipt, and
//! the receipt reaches us before the sender has recorded the batch (so no row has the
//! `zalo_msg_id` yet, or the row is still leased by the sender). Such a receipt is kept
//! `pending` in `notifier.webhook_events`, and [`run_reconciler`] applies it as soon
//! as the delivery is recorded (giving up after [`RECEIPT_WAIT`]).

use super::fields::{millis, required, text_at};
use crate::deliveries::{record_transitions, DeliveryStatus, Transition};
use anyhow::Context;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use loa_platform::http::ApiError;
use serde_json::{json, Value};
use std::{collections::HashSet, time::Duration};
use tokio_util::sync::CancellationToken;

/// How long a receipt waits for its delivery to be recorded before it is given up as
/// `unmatched` (a message sent by someone else through the same OA, or lost records).
pub(crate) const RECEIPT_WAIT: Duration = Duration::from_secs(3600);

/// How often the reconciler looks for pending receipts.
const RECONCILE_EVERY: Duration = Duration::from_millis(500);

/// Most pending receipts retried in one transaction.
const RECONCILE_BATCH: i64 = 200;

/// A delivery receipt, as parsed from a verified webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Receipt {
    /// `user_received_message`.
    Received {
        /// Zalo's message id.
        msg_id: String,
        /// Our notification id (ZNS receipts).
        tracking_id: Option<String>,
        /// `delivery_time` (ZNS), else the event's timestamp.
        at: DateTime<Utc>,
    },
    /// `user_seen_message`.
    Seen {
        /// Zalo's message ids.
        msg_ids: Vec<String>,
        /// The event's timestamp.
        at: DateTime<Utc>,
    },
}

/// What applying a receipt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Every message it names is matched (moved on, or already further along).
    Done,
    /// Some message is not recorded yet (or a sender is still at it): try again later.
    Waiting,
}

/// A delivery row as a receipt sees it.
struct Target {
    notification_id: String,
    status: DeliveryStatus,
    sent_at: Option<DateTime<Utc>>,
    leased: bool,
}

/// Applies a receipt to the tenant's deliveries (inside the caller's transaction,
/// which also holds the webhook's dedup row). Idempotent: applying it again changes
/// nothing, so a pending receipt can be retried freely.
pub(crate) async fn apply<C: GenericClient>(
    client: &C,
    tenant: &str,
    receipt: &Receipt,
) -> anyhow::Result<Applied> {
    match receipt {
        Receipt::Received {
            msg_id,
            tracking_id,
            at,
        } => apply_received(client, tenant, msg_id, tracking_id.as_deref(), *at, false).await,
        Receipt::Seen { msg_ids, at } => apply_seen(client, tenant, msg_ids, *at).await,
    }
}

fn target_of(row: &tokio_postgres::Row) -> Target {
    Target {
        notification_id: row.get(0),
        status: row.get(1),
        sent_at: row.get(2),
        leased: row.get(3),
    }
}

/// Applies a `user_received_message`. `by_holder`: the caller holds the delivery's
/// lease itself (a sender settling a doubtful send from a stored receipt), so the
/// lease is no reason to wait.
async fn apply_received<C: GenericClient>(
    client: &C,
    tenant: &str,
    msg_id: &str,
    tracking_id: Option<&str>,
    at: DateTime<Utc>,
    by_holder: bool,
) -> anyhow::Result<Applied> {
    // By our tracking id when Zalo echoes it (ZNS), else by Zalo's message id.
    let row = client
        .query_opt(
            "SELECT notification_id, status, sent_at, coalesce(lease_until > now(), false)
               FROM notifier.deliveries
              WHERE tenant = $1 AND (notification_id = $2 OR zalo_msg_id = $3)
              ORDER BY (notification_id = $2) IS TRUE DESC
              LIMIT 1
              FOR UPDATE",
            &[&tenant, &tracking_id, &msg_id],
        )
        .await
        .context("Failed to find the delivery of a receipt")?;
    let Some(target) = row.as_ref().map(target_of) else {
        return Ok(Applied::Waiting);
    };
    if target.status == DeliveryStatus::Sending && target.leased && !by_holder {
        // The sender has not recorded its answer yet; do not race its write (it will,
        // or its lease lapses and the next claim looks for this receipt).
        return Ok(Applied::Waiting);
    }
    let moves = !target.status.is_received();
    client
        .execute(
            "UPDATE notifier.deliveries
                SET status = CASE WHEN status IN ('delivered', 'seen') THEN status ELSE 'delivered' END,
                    delivered_at = coalesce(delivered_at, $2),
                    zalo_msg_id = coalesce(zalo_msg_id, $3),
                    lease_until = NULL, request = NULL, not_before = NULL, recheck_at = NULL,
                    updated_at = now()
              WHERE notification_id = $1",
            &[&target.notification_id, &at, &msg_id],
        )
        .await
        .context("Failed to record a delivery receipt")?;
    if moves {
        let mut transitions: Vec<Transition> = sent_if_unrecorded(&target, tenant, at, msg_id)
            .into_iter()
            .collect();
        transitions.push(
            Transition::new(
                &target.notification_id,
                tenant,
                DeliveryStatus::Delivered.as_str(),
                at,
            )
            .with_detail(json!({"msg_id": msg_id, "event": "user_received_message"})),
        );
        record_transitions(client, &transitions).await?;
    }
    Ok(Applied::Done)
}

/// Settles requests whose earlier send is unknown from receipts already stored for
/// them: a `user_received_message` carrying the request's id as its `tracking_id`
/// proves Zalo accepted (and delivered) it. The caller holds the requests' leases
/// (it just claimed them). Applies each such receipt, as the webhook would have, and
/// returns the ids it settled: those must not be sent again.
pub(crate) async fn settle_from_stored_receipts(
    pool: &Pool,
    requests: &[(&str, &str)],
) -> anyhow::Result<HashSet<String>> {
    let mut settled = HashSet::new();
    if requests.is_empty() {
        return Ok(settled);
    }
    let tenants: Vec<&str> = requests.iter().map(|(t, _)| *t).collect();
    let ids: Vec<&str> = requests.iter().map(|(_, id)| *id).collect();
    let mut client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let tx = client
        .transaction()
        .await
        .context("Failed to begin a transaction")?;
    let rows = tx
        .query(
            "SELECT w.tenant, w.event_name, w.dedup_key, w.body
               FROM UNNEST($1::text[], $2::text[]) AS r(tenant, notification_id)
               JOIN notifier.webhook_events w
                 ON w.tenant = r.tenant AND w.event_name = 'user_received_message'
                AND (w.body -> 'message' ->> 'tracking_id') = r.notification_id
              FOR UPDATE OF w",
            &[&tenants, &ids],
        )
        .await
        .context("Failed to look up stored receipts")?;
    for row in &rows {
        let (tenant, event_name, dedup_key): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        let body: Value = row.get(3);
        let Some(Receipt::Received {
            msg_id,
            tracking_id: Some(id),
            at,
        }) = receipt_of(&body)
        else {
            continue;
        };
        if apply_received(&tx, &tenant, &msg_id, Some(&id), at, true).await? == Applied::Done {
            settled.insert(id);
            tx.execute(
                "UPDATE notifier.webhook_events SET outcome = 'applied', next_attempt_at = NULL
                  WHERE tenant = $1 AND event_name = $2 AND dedup_key = $3",
                &[&tenant, &event_name, &dedup_key],
            )
            .await
            .context("Failed to mark a stored receipt applied")?;
        }
    }
    tx.commit()
        .await
        .context("Failed to commit stored receipts")?;
    Ok(settled)
}

async fn apply_seen<C: GenericClient>(
    client: &C,
    tenant: &str,
    msg_ids: &[String],
    at: DateTime<Utc>,
) -> anyhow::Result<Applied> {
    let rows = client
        .query(
            "SELECT notification_id, status, sent_at, coalesce(lease_until > now(), false), zalo_msg_id
               FROM notifier.deliveries
              WHERE tenant = $1 AND zalo_msg_id = ANY($2)
              ORDER BY notification_id
              FOR UPDATE",
            &[&tenant, &msg_ids],
        )
        .await
        .context("Failed to find the deliveries of a seen event")?;
    let matched: HashSet<String> = rows.iter().map(|r| r.get(4)).collect();
    let mut applied = if msg_ids.iter().all(|m| matched.contains(m)) {
        Applied::Done
    } else {
        Applied::Waiting
    };
    let mut moved: Vec<String> = Vec::new();
    let mut transitions = Vec::new();
    for row in &rows {
        let target = target_of(row);
        let msg_id: String = row.get(4);
        if target.status == DeliveryStatus::Sending && target.leased {
            applied = Applied::Waiting;
            continue;
        }
        if target.status != DeliveryStatus::Seen {
            transitions.extend(sent_if_unrecorded(&target, tenant, at, &msg_id));
            transitions.push(
                Transition::new(
                    &target.notification_id,
                    tenant,
                    DeliveryStatus::Seen.as_str(),
                    at,
                )
                .with_detail(json!({"msg_id": msg_id, "event": "user_seen_message"})),
            );
        }
        moved.push(target.notification_id);
    }
    if moved.is_empty() {
        return Ok(applied);
    }
    client
        .execute(
            "UPDATE notifier.deliveries
                SET status = 'seen', seen_at = coalesce(seen_at, $2), updated_at = now()
              WHERE notification_id = ANY($1)",
            &[&moved, &at],
        )
        .await
        .context("Failed to record a seen event")?;
    record_transitions(client, &transitions).await?;
    Ok(applied)
}

/// The `sent` row of a delivery whose send was never recorded as such (an ambiguous
/// send the receipt proves), at the receipt's time. A recorded send needs none: its
/// `sent_at` is its history entry (see [`views_for`]).
fn sent_if_unrecorded(
    target: &Target,
    tenant: &str,
    receipt_at: DateTime<Utc>,
    msg_id: &str,
) -> Option<Transition> {
    target.sent_at.is_none().then(|| {
        Transition::new(
            &target.notification_id,
            tenant,
            DeliveryStatus::Sent.as_str(),
            receipt_at,
        )
        .with_detail(json!({"msg_id": msg_id, "recorded_by": "receipt"}))
    })
}

/// Retries pending receipts until `cancel` fires (every replica may run it: rows are
/// taken with `SKIP LOCKED`).
pub(crate) async fn run_reconciler(pool: Pool, cancel: CancellationToken) {
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(RECONCILE_EVERY) => {}
        }
        match reconcile_pending(&pool).await {
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                // A database outage must not flood the log: 1st, 2nd, 4th, 8th… failure.
                if failures.is_power_of_two() {
                    tracing::warn!(failures, error.cause_chain = ?e, error.message = %e, "Failed to retry pending delivery receipts.");
                }
            }
        }
    }
}

/// One round of the reconciler: applies the pending receipts that are due, in one
/// transaction. Returns how many it settled (applied or given up).
pub(crate) async fn reconcile_pending(pool: &Pool) -> anyhow::Result<usize> {
    let mut client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let tx = client
        .transaction()
        .await
        .context("Failed to begin a transaction")?;
    let rows = tx
        .query(
            "SELECT tenant, event_name, dedup_key, body, attempts,
                    received_at < now() - make_interval(secs => $2)
               FROM notifier.webhook_events
              WHERE outcome = 'pending' AND next_attempt_at <= now()
              ORDER BY next_attempt_at
              LIMIT $1
              FOR UPDATE SKIP LOCKED",
            &[&RECONCILE_BATCH, &RECEIPT_WAIT.as_secs_f64()],
        )
        .await
        .context("Failed to read pending receipts")?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut settled = 0;
    for row in &rows {
        let (tenant, event_name, dedup_key): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        let body: Value = row.get(3);
        let attempts: i32 = row.get(4);
        let expired: bool = row.get(5);
        let applied = match receipt_of(&body) {
            Some(receipt) => apply(&tx, &tenant, &receipt).await?,
            // Cannot happen for rows this module wrote; settle it rather than loop.
            None => Applied::Done,
        };
        let outcome = match applied {
            Applied::Done => "applied",
            Applied::Waiting if expired => {
                tracing::info!(%tenant, event = %event_name, "Giving up on a delivery receipt that matches no delivery of ours.");
                "unmatched"
            }
            Applied::Waiting => "pending",
        };
        if outcome != "pending" {
            settled += 1;
        }
        // Back off 1, 2, 4 … 60 s between tries.
        let backoff = f64::from(1u32 << attempts.clamp(0, 6)).min(60.0);
        tx.execute(
            "UPDATE notifier.webhook_events
                SET outcome = $4, attempts = attempts + 1,
                    next_attempt_at = CASE WHEN $4 = 'pending' THEN now() + make_interval(secs => $5) END
              WHERE tenant = $1 AND event_name = $2 AND dedup_key = $3",
            &[&tenant, &event_name, &dedup_key, &outcome, &backoff],
        )
        .await
        .context("Failed to update a pending receipt")?;
    }
    tx.commit()
        .await
        .context("Failed to commit pending receipts")?;
    Ok(settled)
}

/// The receipt in a `user_received_message` / `user_seen_message` body (also a
/// stored one, for the reconciler); `None` for other events or malformed bodies.
pub(crate) fn receipt_of(body: &Value) -> Option<Receipt> {
    let event_name = text_at(body, &["event_name"])?;
    let occurred_at = millis(&text_at(body, &["timestamp"])?)?;
    receipt_fields(body, &event_name, occurred_at).ok()
}

pub(crate) fn receipt_fields(
    body: &Value,
    event_name: &str,
    occurred_at: DateTime<Utc>,
) -> Result<Receipt, ApiError> {
    if event_name == "user_seen_message" {
        let field = "message.msg_ids";
        let invalid = || {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "`message.msg_ids` must be a non-empty list of message ids",
            )
            .with_field(field)
        };
        let list = body
            .pointer("/message/msg_ids")
            .and_then(Value::as_array)
            .ok_or_else(invalid)?;
        let mut msg_ids: Vec<String> = list
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(invalid))
            .collect::<Result<_, _>>()?;
        msg_ids.sort();
        msg_ids.dedup();
        if msg_ids.is_empty() || msg_ids.len() > 1_000 {
            return Err(invalid());
        }
        return Ok(Receipt::Seen {
            msg_ids,
            at: occurred_at,
        });
    }
    let msg_id = required(body, &["message", "msg_id"])?;
    let tracking_id = text_at(body, &["message", "tracking_id"]).filter(|t| !t.is_empty());
    let at = match text_at(body, &["message", "delivery_time"]) {
        None => occurred_at,
        Some(t) => millis(&t).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "`message.delivery_time` must be epoch milliseconds",
            )
            .with_field("message.delivery_time")
        })?,
    };
    Ok(Receipt::Received {
        msg_id,
        tracking_id,
        at,
    })
}
