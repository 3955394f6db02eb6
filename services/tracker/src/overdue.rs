//! The overdue sweep: marks open dossiers that passed their appointment while being
//! processed, and counts them per tenant for `loa_tracker_overdue_dossiers{tenant}`.
//!
//! "Overdue" is decided by [`crate::domain::timeliness`]: an open dossier (no result,
//! not closed) that is not waiting for the citizen (5), whose appointment moved by the
//! time spent waiting for the citizen ([`crate::DossierState::effective_due`]) fell on a
//! Vietnamese day before today. [`OVERDUE_OPEN`] is the same rule in SQL, and a test
//! holds the page, the APIs and the sweep to the same answer.
//!
//! Every replica runs the sweep on a timer, but only one at a time marks: the first to
//! take a transaction-scoped advisory lock; the others only count, so each replica's
//! gauge is right (take `max by (tenant)` across replicas). A mark (`overdue_since`)
//! is set once; it is cleared if the dossier stops being overdue while still open (it
//! now waits for the citizen, or got a later appointment) and kept once it closes, so
//! the console can tell which dossiers went late.

use crate::{clock::Clock, domain::day_start, metrics};
use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use loa_contracts::{time::vietnam_day, DossierStatus};
use loa_platform::LiveTenants;
use std::{collections::HashMap, time::Duration};
use tokio_util::sync::CancellationToken;

/// Advisory-lock key of the sweep (namespace, key): one marker at a time.
const SWEEP_LOCK: (i32, i32) = (7302, 1);

/// The SQL condition of an open dossier past its appointment day, with `$today` the
/// start of today in Asia/Ho_Chi_Minh and `$closed` the closed statuses. The first
/// comparison lets the open-by-due index find the candidates (the effective
/// appointment is never earlier than the appointment).
pub const OVERDUE_OPEN: &str = "completed_at IS NULL AND status <> ALL($closed) AND status <> 5 \
     AND due_at < $today AND due_at + paused_after_due_secs * interval '1 second' < $today";

/// [`OVERDUE_OPEN`] with its placeholders bound to numbered parameters.
pub fn overdue_open_sql(today: &str, closed: &str) -> String {
    OVERDUE_OPEN
        .replace("$today", today)
        .replace("$closed", closed)
}

/// The closed statuses (3, 7, 8, 10), as stored.
pub fn closed_statuses() -> Vec<i16> {
    DossierStatus::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| i16::from(s.code()))
        .collect()
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Whether this replica held the lock and marked (false: another one is marking).
    pub marked_here: bool,
    /// Dossiers newly marked overdue.
    pub marked: u64,
    /// Open dossiers whose mark was cleared (no longer overdue).
    pub cleared: u64,
    /// Open overdue dossiers per tenant (tenants without any are absent).
    pub overdue: HashMap<String, i64>,
}

/// One sweep as of `now`: marks and clears if no other replica is doing it, then
/// counts.
#[tracing::instrument(skip_all)]
pub async fn sweep_once(pool: &Pool, now: DateTime<Utc>) -> anyhow::Result<Sweep> {
    let today = day_start(vietnam_day(&now));
    let closed = closed_statuses();
    let mut client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let tx = client
        .transaction()
        .await
        .context("Failed to begin the overdue sweep")?;
    let locked: bool = tx
        .query_one(
            "SELECT pg_try_advisory_xact_lock($1, $2)",
            &[&SWEEP_LOCK.0, &SWEEP_LOCK.1],
        )
        .await
        .context("Failed to try the overdue sweep's lock")?
        .get(0);
    let mut sweep = Sweep {
        marked_here: locked,
        ..Sweep::default()
    };
    if locked {
        sweep.marked = tx
            .execute(
                &format!(
                    "UPDATE tracker.dossiers SET overdue_since = $3
                      WHERE overdue_since IS NULL AND {}",
                    overdue_open_sql("$1", "$2")
                ),
                &[&today, &closed, &now],
            )
            .await
            .context("Failed to mark overdue dossiers")?;
        sweep.cleared = tx
            .execute(
                &format!(
                    "UPDATE tracker.dossiers SET overdue_since = NULL
                      WHERE overdue_since IS NOT NULL AND completed_at IS NULL
                        AND NOT ({})",
                    overdue_open_sql("$1", "$2")
                ),
                &[&today, &closed],
            )
            .await
            .context("Failed to clear overdue marks")?;
    }
    let rows = tx
        .query(
            &format!(
                "SELECT tenant, count(*) FROM tracker.dossiers WHERE {} GROUP BY tenant",
                overdue_open_sql("$1", "$2")
            ),
            &[&today, &closed],
        )
        .await
        .context("Failed to count overdue dossiers")?;
    tx.commit()
        .await
        .context("Failed to commit the overdue sweep")?;
    sweep.overdue = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    Ok(sweep)
}

/// Sweeps every `interval` until `cancel` fires, setting the gauge of every
/// configured tenant after each sweep.
pub async fn run_sweeper(
    pool: Pool,
    tenants: LiveTenants,
    clock: Clock,
    interval: Duration,
    cancel: CancellationToken,
) {
    loop {
        match sweep_once(&pool, clock.now()).await {
            Ok(sweep) => {
                for tenant in tenants.current().all() {
                    let count = sweep.overdue.get(&tenant.id).copied().unwrap_or(0);
                    metrics::overdue_dossiers(&tenant.id, count);
                }
                if sweep.marked > 0 || sweep.cleared > 0 {
                    tracing::info!(
                        marked = sweep.marked,
                        cleared = sweep.cleared,
                        "Swept dossiers past their appointment."
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error.cause_chain = ?e, error.message = %e, "The overdue sweep failed; retrying at the next tick.")
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
