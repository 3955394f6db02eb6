//! `notifier.deliveries`: one row per notification id, the notifier's idempotency key
//! and its record of what happened. Written in batches: one statement claims a whole
//! batch before sending, one statement records the whole batch's results.
//!
//! A row is `sending` from the claim until the result is recorded, with a lease
//! (`lease_until`) while a sender is at it; `sent` is final; `failed` means the last
//! attempt failed permanently (a replayed dead letter may claim it again). A transient
//! failure leaves `sending` with the lease cleared, so the redelivery can claim it.

use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use std::{collections::HashMap, time::Duration};

/// What a row must say when a request is claimed.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// The request's id (primary key).
    pub notification_id: String,
    /// Tenant id.
    pub tenant: String,
    /// Notification kind (`receipt`, …).
    pub kind: String,
    /// `transactional` or `broadcast`.
    pub lane: String,
    /// The dossier, for the deliveries API.
    pub dossier_code: Option<String>,
    /// The channel about to be tried (`zns`, `oa_template`, `none`).
    pub channel: String,
    /// When intake accepted the originating event.
    pub event_accepted_at: Option<DateTime<Utc>>,
}

/// What the claim found for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This process may send it now. `attempts` counts this one; `resumed` says an
    /// earlier attempt was cut off mid-send (it may have reached Zalo).
    Claimed {
        /// Attempts including this one.
        attempts: i32,
        /// A previous attempt ended without a recorded result.
        resumed: bool,
    },
    /// Already sent: ack without sending.
    AlreadySent,
    /// Another sender holds a live lease on it right now.
    InFlight,
}

/// Claims every request of a batch in one statement (ids must be distinct).
pub async fn claim(
    pool: &Pool,
    rows: &[NewDelivery],
    lease: Duration,
) -> anyhow::Result<Vec<Claim>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.notification_id.as_str()).collect();
    let tenants: Vec<&str> = rows.iter().map(|r| r.tenant.as_str()).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    let lanes: Vec<&str> = rows.iter().map(|r| r.lane.as_str()).collect();
    let dossiers: Vec<Option<&str>> = rows.iter().map(|r| r.dossier_code.as_deref()).collect();
    let channels: Vec<&str> = rows.iter().map(|r| r.channel.as_str()).collect();
    let accepted: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.event_accepted_at).collect();
    let lease_secs = lease.as_secs_f64();

    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    // `prior` and `claimed` see the same snapshot: `prior` is the state before this
    // statement; `claimed` lists the rows this statement took.
    let result = client
        .query(
            "WITH input AS (
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                      $7::timestamptz[])
                     AS t(notification_id, tenant, kind, lane, dossier_code, channel, event_accepted_at)
             ), prior AS (
                 -- A `sending` row with a lease was cut off mid-send (a recorded
                 -- transient failure clears the lease).
                 SELECT d.notification_id, d.status,
                        (d.status = 'sending' AND d.lease_until IS NOT NULL) AS interrupted
                   FROM notifier.deliveries d JOIN input i USING (notification_id)
             ), claimed AS (
                 INSERT INTO notifier.deliveries AS d
                        (notification_id, tenant, kind, lane, dossier_code, channel, status, attempts,
                         event_accepted_at, lease_until)
                 SELECT notification_id, tenant, kind, lane, dossier_code, channel, 'sending', 1,
                        event_accepted_at, now() + make_interval(secs => $8)
                   FROM input
                 ON CONFLICT (notification_id) DO UPDATE
                    SET status = 'sending', attempts = d.attempts + 1, channel = EXCLUDED.channel,
                        lease_until = EXCLUDED.lease_until, updated_at = now()
                  WHERE d.status <> 'sent'
                    AND NOT (d.status = 'sending' AND d.lease_until IS NOT NULL AND d.lease_until > now())
                 RETURNING d.notification_id, d.attempts
             )
             SELECT i.notification_id, p.status, c.attempts, coalesce(p.interrupted, false)
               FROM input i
               LEFT JOIN prior p USING (notification_id)
               LEFT JOIN claimed c USING (notification_id)",
            &[&ids, &tenants, &kinds, &lanes, &dossiers, &channels, &accepted, &lease_secs],
        )
        .await
        .context("Failed to claim deliveries")?;
    let by_id: HashMap<String, (Option<String>, Option<i32>, bool)> = result
        .iter()
        .map(|r| (r.get::<_, String>(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    Ok(rows
        .iter()
        .map(|r| match by_id.get(&r.notification_id) {
            Some((_, Some(attempts), interrupted)) => Claim::Claimed {
                attempts: *attempts,
                resumed: *interrupted,
            },
            Some((Some(prior), None, _)) if prior == "sent" => Claim::AlreadySent,
            // Leased by another sender, or inserted by one after our snapshot.
            _ => Claim::InFlight,
        })
        .collect())
}

/// Whether any of `ids` is still leased by a sender (`sending` with a live lease).
pub async fn any_in_flight(pool: &Pool, ids: &[String]) -> anyhow::Result<bool> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let row = client
        .query_one(
            "SELECT count(*) FROM notifier.deliveries
              WHERE notification_id = ANY($1) AND status = 'sending' AND lease_until > now()",
            &[&ids],
        )
        .await
        .context("Failed to read delivery leases")?;
    Ok(row.get::<_, i64>(0) > 0)
}

/// A delivery's state after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Zalo accepted it.
    Sent,
    /// It failed permanently (and is dead-lettered).
    Failed,
    /// It failed for now and goes back to the queue.
    Pending,
}

/// The result of one attempt, to record.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Which delivery.
    pub notification_id: String,
    /// Its new state.
    pub status: Status,
    /// The channel that was tried.
    pub channel: String,
    /// Zalo's message id (when sent).
    pub zalo_msg_id: Option<String>,
    /// Zalo's error code (when it answered one).
    pub error_code: Option<i32>,
    /// Why it failed (never a phone number or a token).
    pub error: Option<String>,
}

/// Records a batch of outcomes in one statement and releases their leases.
pub async fn record(pool: &Pool, outcomes: &[Outcome]) -> anyhow::Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = outcomes
        .iter()
        .map(|o| o.notification_id.as_str())
        .collect();
    let statuses: Vec<&str> = outcomes
        .iter()
        .map(|o| match o.status {
            Status::Sent => "sent",
            Status::Failed => "failed",
            Status::Pending => "sending",
        })
        .collect();
    let channels: Vec<&str> = outcomes.iter().map(|o| o.channel.as_str()).collect();
    let msg_ids: Vec<Option<&str>> = outcomes.iter().map(|o| o.zalo_msg_id.as_deref()).collect();
    let codes: Vec<Option<i32>> = outcomes.iter().map(|o| o.error_code).collect();
    let errors: Vec<Option<&str>> = outcomes.iter().map(|o| o.error.as_deref()).collect();
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    client
        .execute(
            "UPDATE notifier.deliveries d
                SET status = u.status,
                    channel = u.channel,
                    zalo_msg_id = COALESCE(u.zalo_msg_id, d.zalo_msg_id),
                    last_error_code = CASE WHEN u.status = 'sent' THEN d.last_error_code ELSE u.error_code END,
                    last_error = CASE WHEN u.status = 'sent' THEN d.last_error ELSE u.error END,
                    sent_at = CASE WHEN u.status = 'sent' THEN now() ELSE d.sent_at END,
                    lease_until = NULL,
                    updated_at = now()
               FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::text[])
                    AS u(notification_id, status, channel, zalo_msg_id, error_code, error)
              WHERE d.notification_id = u.notification_id AND d.status <> 'sent'",
            &[&ids, &statuses, &channels, &msg_ids, &codes, &errors],
        )
        .await
        .context("Failed to record deliveries")?;
    Ok(())
}

/// One delivery as the deliveries API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    /// The request's id (Zalo's `tracking_id`).
    pub notification_id: String,
    /// Notification kind.
    pub kind: String,
    /// Channel used or tried.
    pub channel: String,
    /// `sending`, `sent` or `failed`.
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
                    created_at, sent_at
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
        })
        .collect())
}
