//! A sweep every replica runs on a timer but one at a time does (personal data
//! retention in the tracker and the notifier): batches of rows, each batch one
//! transaction that holds a transaction-scoped advisory lock.
//!
//! The lock is tried, not waited for: a replica that finds it taken leaves the work to
//! the one holding it. It is taken again by every batch, and released by the batch's
//! commit, so a sweep never holds a connection or a lock longer than one batch and a
//! replica that stops halfway leaves the rest to the next tick.

use anyhow::Context;
use deadpool_postgres::{Pool, Transaction};
use futures_util::future::BoxFuture;

/// The transaction-scoped advisory lock of one sweep.
#[derive(Debug, Clone, Copy)]
pub struct SweepLock {
    /// `pg_try_advisory_xact_lock`'s keys (namespace, key): one pair per sweep.
    pub key: (i32, i32),
    /// The sweep, as errors name it ("the retention sweep").
    pub name: &'static str,
}

/// Runs `batch` in one transaction after another, each holding `lock`, and hands what
/// each did to `committed` once its transaction committed (so that nothing is counted
/// that was rolled back), until `committed` answers `false` or another replica holds
/// the lock.
///
/// Returns whether this replica held the lock every time (`false`: another one was
/// sweeping, possibly after some batches here).
///
/// `batch` returns a boxed future that owns what it needs besides the transaction
/// (an async closure's future would not be provably `Send` for a task to hold).
pub async fn in_locked_batches<T>(
    pool: &Pool,
    lock: &SweepLock,
    mut batch: impl for<'a> FnMut(&'a Transaction<'_>) -> BoxFuture<'a, anyhow::Result<T>>,
    mut committed: impl FnMut(T) -> bool,
) -> anyhow::Result<bool> {
    let name = lock.name;
    loop {
        let mut client = pool
            .get()
            .await
            .context("Failed to get a PostgreSQL connection")?;
        let tx = client
            .transaction()
            .await
            .with_context(|| format!("Failed to begin {name}"))?;
        let locked: bool = tx
            .query_one(
                "SELECT pg_try_advisory_xact_lock($1, $2)",
                &[&lock.key.0, &lock.key.1],
            )
            .await
            .with_context(|| format!("Failed to try {name}'s lock"))?
            .get(0);
        if !locked {
            return Ok(false);
        }
        let done = batch(&tx).await?;
        tx.commit()
            .await
            .with_context(|| format!("Failed to commit {name}"))?;
        if !committed(done) {
            return Ok(true);
        }
    }
}
