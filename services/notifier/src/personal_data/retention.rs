//! Personal data retention in the notifier: a tenant's `retention_days` (tenants file,
//! the same setting the tracker's retention reads) after a row's last change,
//!
//! - a delivery still parked with its request body (deferred, held, ambiguous, or
//!   waiting behind a lease) is given up: `failed`, body dropped, a history row saying
//!   why (a message that could not be sent in that long is no longer worth sending,
//!   and its body holds the recipient's phone and name);
//! - a dead letter's body has its persons reduced to masked forms
//!   ([`super::masked_body`]) and is marked `personal_data_erased_at`: it is not looked
//!   at again and is never replayed. Dead letters without a verified tenant (refused
//!   at the ingress) follow the shortest retention of any tenant;
//! - a chat lookup already forwarded to the tracker (or never to be: over the
//!   per-user limit), and a citizen's other text already answered (or not to be:
//!   answered that day already), is deleted.
//!
//! Every replica runs the sweep on a timer; one at a time erases (a transaction-scoped
//! advisory lock), [`BATCH`] rows of a kind per transaction, each counted in
//! `loa_notifier_personal_data_erased_total{tenant, kind}`. The clock is the
//! notifier's ([`crate::clock::Clock`]), which tests move.

use super::masked_body;
use crate::{clock::Clock, dead_letters::UNKNOWN_TENANT, metrics};
use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Pool, Transaction};
use loa_platform::{
    sweep::{in_locked_batches, SweepLock},
    LiveTenants,
};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Advisory lock of the notifier's retention sweep.
const RETENTION_LOCK: SweepLock = SweepLock {
    key: (7303, 1),
    name: "the retention sweep",
};

/// Rows of one kind erased per transaction.
pub const BATCH: i64 = 500;

/// What a delivery given up by retention says in `last_error` and its history.
pub const GIVEN_UP: &str = "Not sent within the tenant's personal data retention";

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    /// Whether this replica held the lock (false: another one is erasing).
    pub erased_here: bool,
    /// Parked deliveries given up, their bodies dropped.
    pub deliveries: u64,
    /// Dead letters whose bodies were masked.
    pub dead_letters: u64,
    /// Chat lookups and texts deleted (forwarded or answered, or never to be).
    pub citizen_messages: u64,
}

impl Erased {
    fn total(&self) -> u64 {
        self.deliveries + self.dead_letters + self.citizen_messages
    }
}

/// Erases what of `tenant` (`None`: the dead letters no tenant was verified for) last
/// changed more than `days` before `now`, [`BATCH`] rows at a time, until none is
/// left or another replica holds the lock.
pub async fn erase_expired(
    pool: &Pool,
    tenant: Option<&str>,
    days: u32,
    now: DateTime<Utc>,
) -> anyhow::Result<Erased> {
    let cutoff = now - chrono::Duration::days(i64::from(days));
    let label = tenant.unwrap_or(UNKNOWN_TENANT);
    let mut total = Erased::default();
    let held = in_locked_batches(
        pool,
        &RETENTION_LOCK,
        |tx| {
            let tenant = tenant.map(str::to_owned);
            Box::pin(async move {
                let tenant = tenant.as_deref();
                Ok(Erased {
                    erased_here: true,
                    deliveries: give_up_parked(tx, tenant, cutoff, now).await?,
                    dead_letters: mask_dead_letters(tx, tenant, cutoff, now).await?,
                    citizen_messages: delete_lookups(tx, tenant, cutoff).await?,
                })
            })
        },
        |batch| {
            for (kind, n) in [
                ("deliveries", batch.deliveries),
                ("dead_letters", batch.dead_letters),
                ("citizen_messages", batch.citizen_messages),
            ] {
                if n > 0 {
                    metrics::personal_data_erased(label, kind, n);
                }
            }
            total.deliveries += batch.deliveries;
            total.dead_letters += batch.dead_letters;
            total.citizen_messages += batch.citizen_messages;
            // A full batch of any kind: there may be more.
            [batch.deliveries, batch.dead_letters, batch.citizen_messages]
                .iter()
                .any(|n| *n >= BATCH as u64)
        },
    )
    .await?;
    total.erased_here = held || total.total() > 0;
    Ok(total)
}

/// Gives up a batch of parked deliveries last changed before `cutoff`.
async fn give_up_parked(
    tx: &Transaction<'_>,
    tenant: Option<&str>,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let Some(tenant) = tenant else {
        return Ok(0);
    };
    let given_up = tx
        .query(
            "WITH expired AS (
                 SELECT notification_id FROM notifier.deliveries
                  WHERE tenant = $1 AND request IS NOT NULL AND updated_at < $2
                    AND status IN ('deferred', 'held', 'ambiguous', 'sending')
                  ORDER BY updated_at LIMIT $3
                  FOR UPDATE SKIP LOCKED)
             UPDATE notifier.deliveries d
                SET status = 'failed', request = NULL, not_before = NULL, recheck_at = NULL,
                    lease_until = NULL, last_error_code = NULL, last_error = $4, updated_at = $5
               FROM expired e
              WHERE d.notification_id = e.notification_id
             RETURNING d.notification_id",
            &[&tenant, &cutoff, &BATCH, &GIVEN_UP, &now],
        )
        .await
        .context("Failed to give up parked deliveries past their retention")?;
    let ids: Vec<String> = given_up.iter().map(|r| r.get(0)).collect();
    if !ids.is_empty() {
        tx.execute(
            "INSERT INTO notifier.delivery_events (notification_id, tenant, status, at, detail)
             SELECT id, $2, 'failed', $3, jsonb_build_object('reason', $4::text)
               FROM unnest($1::text[]) AS id",
            &[&ids, &tenant, &now, &GIVEN_UP],
        )
        .await
        .context("Failed to record the given-up deliveries' history")?;
    }
    Ok(ids.len() as u64)
}

/// Masks the bodies of a batch of dead letters that last died before `cutoff`.
async fn mask_dead_letters(
    tx: &Transaction<'_>,
    tenant: Option<&str>,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let rows = tx
        .query(
            "SELECT id, body FROM notifier.dead_letters
              WHERE tenant IS NOT DISTINCT FROM $1 AND dead_at < $2
                AND personal_data_erased_at IS NULL
              ORDER BY id LIMIT $3
              FOR UPDATE SKIP LOCKED",
            &[&tenant, &cutoff, &BATCH],
        )
        .await
        .context("Failed to find dead letters past their retention")?;
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    let bodies: Vec<Vec<u8>> = rows
        .iter()
        .map(|r| masked_body(r.get::<_, &[u8]>(1)))
        .collect();
    store_masked_dead_letters(tx, &ids, &bodies, now).await?;
    Ok(ids.len() as u64)
}

/// Writes masked dead-letter bodies and marks them erased.
pub(crate) async fn store_masked_dead_letters(
    tx: &Transaction<'_>,
    ids: &[i64],
    bodies: &[Vec<u8>],
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    tx.execute(
        "UPDATE notifier.dead_letters d SET body = u.body, personal_data_erased_at = $3
           FROM unnest($1::int8[], $2::bytea[]) AS u(id, body)
          WHERE d.id = u.id",
        &[&ids, &bodies, &now],
    )
    .await
    .context("Failed to store the masked dead letters")?;
    Ok(())
}

/// Deletes a batch of citizens' messages (chat lookups and other texts) received
/// before `cutoff` and done with (forwarded or answered, or never to be).
async fn delete_lookups(
    tx: &Transaction<'_>,
    tenant: Option<&str>,
    cutoff: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let Some(tenant) = tenant else {
        return Ok(0);
    };
    tx.execute(
        "DELETE FROM notifier.citizen_messages WHERE id IN (
             SELECT id FROM notifier.citizen_messages
              WHERE tenant = $1 AND received_at < $2
                AND (forwarded_at IS NOT NULL OR outcome <> 'forward')
              ORDER BY id LIMIT $3
              FOR UPDATE SKIP LOCKED)",
        &[&tenant, &cutoff, &BATCH],
    )
    .await
    .context("Failed to delete citizens' messages past their retention")
}

/// Erases what is past every tenant's retention (and the untenanted dead letters',
/// the shortest of them) every `interval` until `cancel`.
pub async fn run_retention(
    pool: Pool,
    tenants: LiveTenants,
    clock: Clock,
    interval: Duration,
    cancel: CancellationToken,
) {
    loop {
        let current = tenants.current();
        let mut passes: Vec<(Option<String>, u32)> = current
            .all()
            .iter()
            .filter_map(|t| t.retention_days.map(|d| (Some(t.id.clone()), d)))
            .collect();
        if let Some(shortest) = passes.iter().map(|(_, d)| *d).min() {
            passes.push((None, shortest));
        }
        for (tenant, days) in passes {
            let label = tenant.as_deref().unwrap_or(UNKNOWN_TENANT).to_owned();
            match erase_expired(&pool, tenant.as_deref(), days, clock.now()).await {
                Ok(done) if done.total() > 0 => tracing::info!(
                    tenant = %label,
                    deliveries = done.deliveries,
                    dead_letters = done.dead_letters,
                    citizen_messages = done.citizen_messages,
                    "Erased personal data past its retention."
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    tenant = %label,
                    error.message = %e,
                    "The retention sweep failed; retrying at the next tick."
                ),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
