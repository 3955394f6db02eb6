//! `notifier.deliveries`: one row per notification id, the notifier's idempotency key
//! and its record of what happened. Written in batches: one statement claims a whole
//! batch before sending, one statement records the whole batch's results.
//!
//! Statuses:
//! - `sending`: claimed, with a short lease (`lease_until`, renewed by its owner
//!   `lease_owner` while it lives: [`crate::engine::leases`]) while a sender is at it, and a
//!   dispatch mark (`dispatched_at`) once its Zalo call is about to leave; a `sending`
//!   row without a lease was given back to the queue (a database hiccup), one whose
//!   lease lapsed was abandoned by a dead sender (with a dispatch mark: Zalo may have
//!   it); a copy that arrived while the lease was live may wait in `request`;
//! - `sent` (Zalo accepted it), then `delivered` and `seen` (receipts, written by the
//!   webhook handler): final, never claimed again;
//! - `failed`: the last attempt failed for good and was dead-lettered (a replayed dead
//!   letter may claim it again);
//! - `retrying`: waiting in a delay queue, or republished by the scheduler;
//! - parked, with the request stored in `request` and the AMQP message acked:
//!   `deferred` until `not_before` (night ban, quota day, `not_before`; NULL: due now),
//!   `held` while its tenant is paused, `ambiguous` until `recheck_at` (a send that
//!   timed out after Zalo may have accepted it). A copy of a parked request that
//!   arrives meanwhile is acked without sending; the scheduler republishes the row.

use super::{
    history::{self, Transition},
    status::DeliveryStatus,
};
use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};

use std::{collections::HashMap, time::Duration};
use tokio_postgres::types::ToSql;

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
    /// The broadcast it belongs to (its progress counts it).
    pub broadcast_id: Option<String>,
}

/// What is known of a request's attempt before the one just claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prior {
    /// Nothing in doubt: no earlier attempt, its result was recorded, or it never
    /// left (its sender stopped before dispatching it).
    Known,
    /// Its sender stopped (the lease lapsed) after dispatching it: Zalo may have
    /// accepted it, and no result was recorded.
    Interrupted,
    /// It timed out after dispatch, was parked as ambiguous, and no receipt came by
    /// its recheck time.
    Unanswered,
}

/// What the claim found for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This process holds it now. `attempts` counts this one.
    Claimed {
        /// Attempts including this one.
        attempts: i32,
        /// Whether an earlier attempt may have reached Zalo.
        prior: Prior,
    },
    /// Already sent (or delivered, or seen): ack without sending.
    AlreadySent,
    /// Parked (deferred, held or ambiguous) with its request stored: ack without
    /// sending; the scheduler republishes it when it is due.
    Parked,
    /// Another sender holds a live lease on it right now.
    InFlight,
}

/// Claims every request of a batch in one statement (ids must be distinct), leased
/// to `owner` for `lease`.
pub async fn claim(
    pool: &Pool,
    rows: &[NewDelivery],
    lease: Duration,
    owner: i64,
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
    let broadcasts: Vec<Option<&str>> = rows.iter().map(|r| r.broadcast_id.as_deref()).collect();
    let lease_secs = lease.as_secs_f64();

    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    // `prior` and `claimed` see the same snapshot: `prior` is the state before this
    // statement; `claimed` lists the rows this statement took.
    let statement = client
        .prepare_cached(
            "WITH input AS (
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                      $7::timestamptz[], $10::text[])
                     AS t(notification_id, tenant, kind, lane, dossier_code, channel, event_accepted_at,
                          broadcast_id)
             ), prior AS (
                 SELECT d.notification_id, d.status
                   FROM notifier.deliveries d JOIN input i USING (notification_id)
             ), claimed AS (
                 INSERT INTO notifier.deliveries AS d
                        (notification_id, tenant, kind, lane, dossier_code, channel, status, attempts,
                         event_accepted_at, lease_until, lease_owner, broadcast_id)
                 SELECT notification_id, tenant, kind, lane, dossier_code, channel, 'sending', 1,
                        event_accepted_at, now() + make_interval(secs => $8), $9, broadcast_id
                   FROM input
                 ON CONFLICT (notification_id) DO UPDATE
                    SET status = 'sending', attempts = d.attempts + 1, channel = EXCLUDED.channel,
                        lease_until = EXCLUDED.lease_until, lease_owner = EXCLUDED.lease_owner,
                        -- Read from the row as locked here, not from `prior`'s snapshot:
                        -- a scheduler that republished an ambiguous row may commit its
                        -- `retrying` between the two. A `sending` row with a lease
                        -- (lapsed, or it would not be claimed) was abandoned by its
                        -- sender, after its dispatch mark or before; a `retrying` row
                        -- with a recheck time is an ambiguous send come due.
                        prior_doubt = CASE
                            WHEN d.status = 'sending' AND d.lease_until IS NOT NULL
                                 AND d.dispatched_at IS NOT NULL THEN 'interrupted'
                            WHEN d.status = 'retrying' AND d.recheck_at IS NOT NULL THEN 'unanswered'
                        END,
                        dispatched_at = NULL, request = NULL, updated_at = now()
                  WHERE d.status NOT IN ('sent', 'delivered', 'seen', 'deferred', 'held', 'ambiguous',
                                         'skipped', 'cancelled')
                    AND NOT (d.status = 'sending' AND d.lease_until IS NOT NULL AND d.lease_until > now())
                 RETURNING d.notification_id, d.attempts, d.prior_doubt
             )
             SELECT i.notification_id, p.status, c.attempts, c.prior_doubt
               FROM input i
               LEFT JOIN prior p USING (notification_id)
               LEFT JOIN claimed c USING (notification_id)",
        )
        .await
        .context("Failed to prepare the claim")?;
    let result = client
        .query(
            &statement,
            &[
                &ids,
                &tenants,
                &kinds,
                &lanes,
                &dossiers,
                &channels,
                &accepted,
                &lease_secs,
                &owner,
                &broadcasts,
            ],
        )
        .await
        .context("Failed to claim deliveries")?;
    // One answer row per input id: its status before the claim, and what the claim
    // took (attempts and doubt) if it took it.
    let by_id: HashMap<String, Claim> = result
        .iter()
        .map(|r| {
            let prior_status: Option<DeliveryStatus> = r.get(1);
            let claim = match (r.get::<_, Option<i32>>(2), prior_status) {
                (Some(attempts), _) => Claim::Claimed {
                    attempts,
                    prior: match r.get::<_, Option<&str>>(3) {
                        Some("interrupted") => Prior::Interrupted,
                        Some("unanswered") => Prior::Unanswered,
                        _ => Prior::Known,
                    },
                },
                (None, Some(status)) if status.is_settled() => Claim::AlreadySent,
                (None, Some(status)) if status.is_parked() => Claim::Parked,
                // Leased by another sender, or inserted by one after our snapshot.
                (None, _) => Claim::InFlight,
            };
            (r.get::<_, String>(0), claim)
        })
        .collect();
    Ok(rows
        .iter()
        .map(|r| {
            by_id
                .get(&r.notification_id)
                .copied()
                .unwrap_or(Claim::InFlight)
        })
        .collect())
}

/// Marks `ids` as dispatched: their Zalo calls are about to leave. From now until
/// their results are recorded, a sender that dies leaves them in doubt ([`Prior`]).
pub async fn mark_dispatched(pool: &Pool, ids: &[&str]) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let statement = client
        .prepare_cached(
            "UPDATE notifier.deliveries SET dispatched_at = now()
              WHERE notification_id = ANY($1::text[])",
        )
        .await
        .context("Failed to prepare the dispatch mark")?;
    client
        .execute(&statement, &[&ids])
        .await
        .context("Failed to mark deliveries dispatched")?;
    Ok(())
}

/// Writes dispatch marks as sends leave, in groups: each send asks for its mark
/// right before its Zalo call ([`DispatchMarks::mark`]) and waits for it; one task
/// writes whatever marks have been asked for meanwhile with one statement (a group
/// commit). So a mark is never far ahead of its call, and a sender that dies leaves
/// in doubt only the sends that were actually leaving, not every request it had
/// slots for.
#[derive(Clone)]
pub(crate) struct DispatchMarks {
    asks: tokio::sync::mpsc::Sender<(String, tokio::sync::oneshot::Sender<bool>)>,
}

impl DispatchMarks {
    /// Most marks written by one statement.
    const GROUP: usize = 1024;
    /// Group statements in flight at once: one at a time made every send wait for
    /// the group before it (the claim-to-Zalo time doubled under load).
    const WRITERS: usize = 4;

    /// Starts the writer task (it ends when the last clone is dropped).
    pub(crate) fn start(pool: Pool) -> Self {
        let (asks, mut queue) =
            tokio::sync::mpsc::channel::<(String, tokio::sync::oneshot::Sender<bool>)>(4096);
        let writers = std::sync::Arc::new(tokio::sync::Semaphore::new(Self::WRITERS));
        tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                let Ok(permit) = writers.clone().acquire_owned().await else {
                    return;
                };
                // Whatever was asked for while waiting for a writer joins the group.
                let mut group = vec![first];
                while group.len() < Self::GROUP {
                    match queue.try_recv() {
                        Ok(ask) => group.push(ask),
                        Err(_) => break,
                    }
                }
                let pool = pool.clone();
                tokio::spawn(async move {
                    let ids: Vec<&str> = group.iter().map(|(id, _)| id.as_str()).collect();
                    let written = match mark_dispatched(&pool, &ids).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(error.message = %e, count = ids.len(), "Failed to mark sends dispatched; they do not leave.");
                            false
                        }
                    };
                    drop(permit);
                    for (_, reply) in group {
                        let _ = reply.send(written);
                    }
                });
            }
        });
        Self { asks }
    }

    /// Marks one request dispatched; returns once the mark is durable. An error
    /// means the call must not be made.
    pub(crate) async fn mark(&self, notification_id: &str) -> anyhow::Result<()> {
        let (reply, written) = tokio::sync::oneshot::channel();
        self.asks
            .send((notification_id.to_owned(), reply))
            .await
            .map_err(|_| anyhow::anyhow!("the dispatch mark writer stopped"))?;
        match written.await {
            Ok(true) => Ok(()),
            _ => anyhow::bail!("the dispatch mark could not be written"),
        }
    }
}

/// Parks copies of requests that another sender holds a live lease on: each copy's
/// envelope waits on its `sending` row, to be republished by the scheduler if the
/// lease lapses without a result (the holder died); a result recorded by the holder
/// drops it. Returns the ids parked; an id missing from the answer is no longer
/// leased (claim it again).
pub(crate) async fn park_behind_lease(
    pool: &Pool,
    copies: &[(&str, serde_json::Value)],
) -> anyhow::Result<std::collections::HashSet<String>> {
    if copies.is_empty() {
        return Ok(Default::default());
    }
    let ids: Vec<&str> = copies.iter().map(|(id, _)| *id).collect();
    let bodies: Vec<&serde_json::Value> = copies.iter().map(|(_, b)| b).collect();
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let rows = client
        .query(
            "UPDATE notifier.deliveries d SET request = u.body, updated_at = now()
               FROM UNNEST($1::text[], $2::jsonb[]) AS u(notification_id, body)
              WHERE d.notification_id = u.notification_id
                AND d.status = 'sending' AND d.lease_until > now()
              RETURNING d.notification_id",
            &[&ids, &bodies],
        )
        .await
        .context("Failed to park requests behind their leases")?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A delivery's state after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Zalo accepted it.
    Sent,
    /// It failed permanently (and is dead-lettered).
    Failed,
    /// It failed for now and goes back to the queue as it is (`sending`, no lease).
    Pending,
    /// It waits in a delay queue (`retrying`).
    Retrying,
    /// Parked until a wall-clock time (`None`: due now).
    Deferred {
        /// When it is due.
        until: Option<DateTime<Utc>>,
    },
    /// Parked while its tenant is paused.
    Held,
    /// A broadcast's message left unsent for good (the reason is the error).
    Skipped,
    /// Parked until a receipt proves it was delivered, or until `recheck_at`.
    Ambiguous {
        /// When to resend it if no receipt came.
        recheck_at: DateTime<Utc>,
    },
}

impl Status {
    /// The stored status (a request given back to the queue stays `sending`).
    pub fn stored(self) -> DeliveryStatus {
        match self {
            Self::Sent => DeliveryStatus::Sent,
            Self::Failed => DeliveryStatus::Failed,
            Self::Pending => DeliveryStatus::Sending,
            Self::Retrying => DeliveryStatus::Retrying,
            Self::Deferred { .. } => DeliveryStatus::Deferred,
            Self::Held => DeliveryStatus::Held,
            Self::Skipped => DeliveryStatus::Skipped,
            Self::Ambiguous { .. } => DeliveryStatus::Ambiguous,
        }
    }
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

/// An outcome with what the engine stores beside it.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// The outcome.
    pub outcome: Outcome,
    /// The request envelope (JSON), kept while the row is parked.
    pub request: Option<serde_json::Value>,
    /// Whether Zalo was called for it this time; the claim counted an attempt that is
    /// taken back when nothing was sent (a `not_before`, a paused tenant, the quota).
    pub attempted: bool,
}

/// Records a batch of outcomes in one statement and releases their leases.
pub async fn record(pool: &Pool, outcomes: &[Outcome]) -> anyhow::Result<()> {
    let records: Vec<Record> = outcomes
        .iter()
        .map(|o| Record {
            outcome: o.clone(),
            request: None,
            attempted: true,
        })
        .collect();
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    record_batch(&client, &records).await
}

/// Records a batch of results (with parked requests) in one statement and releases
/// their leases, on a pooled connection or inside the caller's transaction. A final
/// row (sent, delivered, seen) keeps its status: a receipt may have overtaken the
/// sender's own record.
pub(crate) async fn record_batch<C: GenericClient>(
    client: &C,
    records: &[Record],
) -> anyhow::Result<()> {
    record_batch_with_history(client, records, &[]).await
}

/// [`record_batch`] and the batch's history rows ([`receipts::record_transitions`])
/// in one statement: atomic without a transaction, and one round trip for the
/// sender's hot path.
pub(crate) async fn record_batch_with_history<C: GenericClient>(
    client: &C,
    records: &[Record],
    transitions: &[Transition],
) -> anyhow::Result<()> {
    if records.is_empty() {
        history::record_transitions(client, transitions).await?;
        return Ok(());
    }
    let ids: Vec<&str> = records
        .iter()
        .map(|r| r.outcome.notification_id.as_str())
        .collect();
    let statuses: Vec<&str> = records
        .iter()
        .map(|r| r.outcome.status.stored().as_str())
        .collect();
    let channels: Vec<&str> = records.iter().map(|r| r.outcome.channel.as_str()).collect();
    let msg_ids: Vec<Option<&str>> = records
        .iter()
        .map(|r| r.outcome.zalo_msg_id.as_deref())
        .collect();
    let codes: Vec<Option<i32>> = records.iter().map(|r| r.outcome.error_code).collect();
    let errors: Vec<Option<&str>> = records.iter().map(|r| r.outcome.error.as_deref()).collect();
    let not_before: Vec<Option<DateTime<Utc>>> = records
        .iter()
        .map(|r| match r.outcome.status {
            Status::Deferred { until } => until,
            _ => None,
        })
        .collect();
    let recheck_at: Vec<Option<DateTime<Utc>>> = records
        .iter()
        .map(|r| match r.outcome.status {
            Status::Ambiguous { recheck_at } => Some(recheck_at),
            _ => None,
        })
        .collect();
    let requests: Vec<Option<&serde_json::Value>> =
        records.iter().map(|r| r.request.as_ref()).collect();
    let attempted: Vec<bool> = records.iter().map(|r| r.attempted).collect();
    let history = history::TransitionColumns::of(transitions);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        &ids,
        &statuses,
        &channels,
        &msg_ids,
        &codes,
        &errors,
        &not_before,
        &recheck_at,
        &requests,
        &attempted,
    ];
    params.extend(history.params());
    let statement = client
        .prepare_cached(record_sql())
        .await
        .context("Failed to prepare the deliveries record")?;
    client
        .execute(&statement, &params)
        .await
        .context("Failed to record deliveries")?;
    Ok(())
}

/// The record statement: the deliveries update ($1..$10) and the history insert
/// ($11..$15), both data-modifying parts of one statement.
fn record_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "WITH recorded AS (
                 UPDATE notifier.deliveries d
                    SET status = CASE WHEN d.status IN ('sent', 'delivered', 'seen') THEN d.status
                                      ELSE u.status END,
                        channel = u.channel,
                        zalo_msg_id = COALESCE(d.zalo_msg_id, u.zalo_msg_id),
                        last_error_code = CASE WHEN u.status = 'sent' THEN d.last_error_code ELSE u.error_code END,
                        last_error = CASE WHEN u.status = 'sent' THEN d.last_error ELSE u.error END,
                        sent_at = CASE WHEN u.status = 'sent' THEN COALESCE(d.sent_at, now()) ELSE d.sent_at END,
                        not_before = u.not_before,
                        recheck_at = u.recheck_at,
                        request = CASE WHEN u.status IN ('deferred', 'held', 'ambiguous') THEN u.request END,
                        attempts = CASE WHEN u.attempted THEN d.attempts ELSE GREATEST(d.attempts - 1, 0) END,
                        lease_until = NULL,
                        updated_at = now()
                   FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::text[],
                               $7::timestamptz[], $8::timestamptz[], $9::jsonb[], $10::bool[])
                        AS u(notification_id, status, channel, zalo_msg_id, error_code, error,
                             not_before, recheck_at, request, attempted)
                  WHERE d.notification_id = u.notification_id
                    AND (d.status NOT IN ('sent', 'delivered', 'seen') OR u.status = 'sent')
                 RETURNING 1
             ), history AS (
                 {}
                 RETURNING 1
             )
             SELECT (SELECT count(*) FROM recorded), (SELECT count(*) FROM history)",
            history::insert_transitions_sql(11)
        )
    })
}
