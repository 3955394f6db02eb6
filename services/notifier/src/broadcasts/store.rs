//! `notifier.broadcasts`: each broadcast with its state, its fan-out checkpoint and
//! its progress (the per-state counts the deliveries' trigger keeps in
//! `notifier.broadcast_counts`).
//!
//! States: `scheduled` (waiting for `start_at`), `running` (being expanded, or its
//! messages being sent), `paused`, `completed` (every recipient sent, failed or
//! skipped) and `cancelled` (by an admin, or when `end_at` passed: what was left is
//! counted as skipped).

use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Where a broadcast stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BroadcastState {
    /// Waiting for its `start_at`.
    Scheduled,
    /// Being expanded, or its messages being sent.
    Running,
    /// Paused by an admin: nothing is sent until a resume.
    Paused,
    /// Every recipient was sent, failed or skipped.
    Completed,
    /// Cancelled by an admin, or its `end_at` passed.
    Cancelled,
}

impl BroadcastState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            Self::Scheduled,
            Self::Running,
            Self::Paused,
            Self::Completed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// A broadcast as stored.
#[derive(Debug, Clone)]
pub(crate) struct Broadcast {
    pub id: String,
    pub tenant: String,
    pub title: String,
    /// The canonical tag expression; `None`: every opted-in subscriber.
    pub audience_tags: Option<String>,
    pub template: String,
    pub params: Value,
    pub state: BroadcastState,
    pub start_at: DateTime<Utc>,
    pub end_at: Option<DateTime<Utc>>,
    /// Recipients: counted at creation, the exact number once expanded.
    pub audience: i64,
    /// The last subscriber id published (the checkpoint).
    pub cursor: i64,
    /// Recipients published.
    pub queued: i64,
    pub expanded_at: Option<DateTime<Utc>>,
    /// Recipients never published (cancelled or ended before the fan-out reached them).
    pub left_out: i64,
    pub left_out_reason: Option<String>,
    /// Messages settled per second lately (sampled by the fan-out).
    pub rate_per_second: Option<f64>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, tenant, title, audience_tags, template, params, state, start_at, end_at,
    audience, cursor, queued, expanded_at, left_out, left_out_reason, rate_per_second, created_at,
    finished_at";

fn from_row(row: &tokio_postgres::Row) -> anyhow::Result<Broadcast> {
    let state: &str = row.get(6);
    Ok(Broadcast {
        id: row.get(0),
        tenant: row.get(1),
        title: row.get(2),
        audience_tags: row.get(3),
        template: row.get(4),
        params: row.get(5),
        state: BroadcastState::from_name(state)
            .with_context(|| format!("unknown broadcast state `{state}`"))?,
        start_at: row.get(7),
        end_at: row.get(8),
        audience: row.get(9),
        cursor: row.get(10),
        queued: row.get(11),
        expanded_at: row.get(12),
        left_out: row.get(13),
        left_out_reason: row.get(14),
        rate_per_second: row.get(15),
        created_at: row.get(16),
        finished_at: row.get(17),
    })
}

/// What creating a broadcast stores.
#[derive(Debug, Clone)]
pub(crate) struct NewBroadcast {
    pub id: String,
    pub tenant: String,
    pub title: String,
    pub audience_tags: Option<String>,
    pub template: String,
    pub params: Value,
    pub start_at: DateTime<Utc>,
    pub end_at: Option<DateTime<Utc>>,
    pub audience: i64,
}

/// Stores a new broadcast, `scheduled` (the fan-out starts it at `start_at`).
pub(crate) async fn insert(pool: &Pool, new: &NewBroadcast) -> anyhow::Result<Broadcast> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let row = client
        .query_one(
            &format!(
                "INSERT INTO notifier.broadcasts
                        (id, tenant, title, audience_tags, template, params, state, start_at, end_at,
                         audience)
                 VALUES ($1, $2, $3, $4, $5, $6, 'scheduled', $7, $8, $9)
                 RETURNING {COLUMNS}"
            ),
            &[
                &new.id,
                &new.tenant,
                &new.title,
                &new.audience_tags,
                &new.template,
                &new.params,
                &new.start_at,
                &new.end_at,
                &new.audience,
            ],
        )
        .await
        .context("Failed to store a broadcast")?;
    from_row(&row)
}

/// Stores an Article broadcast Zalo accepted (`zalo_msg_id`): completed at once,
/// never expanded (Zalo itself reaches the followers it targets).
pub(crate) async fn insert_article(
    pool: &Pool,
    new: &NewBroadcast,
    zalo_msg_id: &str,
) -> anyhow::Result<Broadcast> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let row = client
        .query_one(
            &format!(
                "INSERT INTO notifier.broadcasts
                        (id, tenant, title, audience_tags, template, params, state, start_at,
                         audience, expanded_at, finished_at, zalo_msg_id)
                 VALUES ($1, $2, $3, NULL, $4, $5, 'completed', $6, 0, now(), now(), $7)
                 RETURNING {COLUMNS}"
            ),
            &[
                &new.id,
                &new.tenant,
                &new.title,
                &new.template,
                &new.params,
                &new.start_at,
                &zalo_msg_id,
            ],
        )
        .await
        .context("Failed to store an Article broadcast")?;
    from_row(&row)
}

/// One of the tenant's broadcasts.
pub(crate) async fn get(pool: &Pool, tenant: &str, id: &str) -> anyhow::Result<Option<Broadcast>> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM notifier.broadcasts WHERE tenant = $1 AND id = $2"),
            &[&tenant, &id],
        )
        .await
        .context("Failed to read a broadcast")?;
    row.as_ref().map(from_row).transpose()
}

/// The tenant's latest broadcasts, newest first.
pub(crate) async fn list(pool: &Pool, tenant: &str, limit: i64) -> anyhow::Result<Vec<Broadcast>> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM notifier.broadcasts WHERE tenant = $1
                  ORDER BY created_at DESC, id LIMIT $2"
            ),
            &[&tenant, &limit],
        )
        .await
        .context("Failed to list broadcasts")?;
    rows.iter().map(from_row).collect()
}

/// Each broadcast's delivery counts by key (a status, `failed:<code>`,
/// `skipped:<reason>`).
pub(crate) async fn counts(
    pool: &Pool,
    ids: &[&str],
) -> anyhow::Result<HashMap<String, BTreeMap<String, i64>>> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let rows = client
        .query(
            "SELECT broadcast_id, key, sum(n)::int8 FROM notifier.broadcast_counts
              WHERE broadcast_id = ANY($1::text[]) GROUP BY broadcast_id, key",
            &[&ids],
        )
        .await
        .context("Failed to read broadcast progress")?;
    let mut out: HashMap<String, BTreeMap<String, i64>> = HashMap::new();
    for row in rows {
        out.entry(row.get(0))
            .or_default()
            .insert(row.get(1), row.get(2));
    }
    Ok(out)
}

/// What an admin can do to a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Pause,
    Resume,
    Cancel,
}

/// What an action came to.
#[derive(Debug)]
pub(crate) enum Acted {
    /// Done; the broadcast as it is now.
    Done(Box<Broadcast>),
    /// No such broadcast in this tenant.
    NotFound,
    /// Not in a state the action applies to.
    Conflict(BroadcastState),
}

/// Pauses, resumes or cancels one of the tenant's broadcasts. A resume makes its
/// paused messages due now; a cancel skips its parked messages (the ones still in the
/// queue are skipped by the sender's gate) and counts what was never published.
pub(crate) async fn act(
    pool: &Pool,
    tenant: &str,
    id: &str,
    action: Action,
    now: DateTime<Utc>,
) -> anyhow::Result<Acted> {
    let mut client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let tx = client
        .transaction()
        .await
        .context("Failed to begin a transaction")?;
    let sql = match action {
        Action::Pause => {
            "UPDATE notifier.broadcasts SET state = 'paused', updated_at = now()
              WHERE tenant = $1 AND id = $2 AND state IN ('scheduled', 'running') AND $3::timestamptz IS NOT NULL"
        }
        Action::Resume => {
            "UPDATE notifier.broadcasts
                SET state = CASE WHEN start_at > $3 THEN 'scheduled' ELSE 'running' END,
                    updated_at = now()
              WHERE tenant = $1 AND id = $2 AND state = 'paused'"
        }
        Action::Cancel => {
            "UPDATE notifier.broadcasts
                SET state = 'cancelled', finished_at = now(), updated_at = now(),
                    left_out = CASE WHEN expanded_at IS NULL THEN GREATEST(0, audience - queued) ELSE 0 END,
                    left_out_reason = 'cancelled'
              WHERE tenant = $1 AND id = $2 AND state IN ('scheduled', 'running', 'paused')
                AND $3::timestamptz IS NOT NULL"
        }
    };
    let row = tx
        .query_opt(&format!("{sql} RETURNING {COLUMNS}"), &[&tenant, &id, &now])
        .await
        .context("Failed to change a broadcast's state")?;
    let Some(row) = row else {
        let state = tx
            .query_opt(
                "SELECT state FROM notifier.broadcasts WHERE tenant = $1 AND id = $2",
                &[&tenant, &id],
            )
            .await
            .context("Failed to read a broadcast")?;
        return Ok(match state {
            None => Acted::NotFound,
            Some(r) => Acted::Conflict(
                BroadcastState::from_name(r.get(0)).unwrap_or(BroadcastState::Completed),
            ),
        });
    };
    match action {
        Action::Pause => {}
        Action::Resume => release_parked(&tx, id).await?,
        Action::Cancel => skip_parked(&tx, id, "cancelled").await?,
    }
    tx.commit()
        .await
        .context("Failed to commit a broadcast action")?;
    Ok(Acted::Done(Box::new(from_row(&row)?)))
}

/// Makes a broadcast's deferred messages due now (the gate looks at them again).
async fn release_parked<C: GenericClient>(client: &C, id: &str) -> anyhow::Result<()> {
    client
        .execute(
            "UPDATE notifier.deliveries SET not_before = NULL, updated_at = now()
              WHERE broadcast_id = $1 AND status = 'deferred'",
            &[&id],
        )
        .await
        .context("Failed to release a broadcast's messages")?;
    Ok(())
}

/// Skips a broadcast's parked messages for good.
pub(crate) async fn skip_parked<C: GenericClient>(
    client: &C,
    id: &str,
    reason: &str,
) -> anyhow::Result<()> {
    client
        .execute(
            "UPDATE notifier.deliveries
                SET status = 'skipped', last_error = $2, last_error_code = NULL, request = NULL,
                    not_before = NULL, updated_at = now()
              WHERE broadcast_id = $1 AND status IN ('deferred', 'held')",
            &[&id, &reason],
        )
        .await
        .context("Failed to skip a broadcast's parked messages")?;
    Ok(())
}
