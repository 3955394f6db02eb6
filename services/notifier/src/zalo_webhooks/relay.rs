//! The relays of what the webhook kept: for the tracker on `loa.citizen` (chat
//! lookups, [`super::lookups`]; ratings, [`super::feedback`]) and the automatic answers
//! to citizens' other texts on `loa.notifications` ([`super::texts`]). Rows are read
//! in batches, published with confirms and marked forwarded, in one transaction that
//! holds the rows (`FOR UPDATE SKIP LOCKED`, so every replica may run a relay). A row
//! is published at least once: a crash between the confirm and the mark publishes it
//! again, and the receiver keys what it receives (the tracker by message, the sender by
//! notification id), so it counts once.

use anyhow::Context;
use deadpool_postgres::Pool;
use loa_platform::amqp::{OutgoingMessage, Publisher};
use std::{sync::Arc, time::Duration};
use tokio_postgres::{types::ToSql, Row};
use tokio_util::sync::CancellationToken;

/// Most rows forwarded per transaction.
pub(crate) const BATCH: i64 = 100;

/// The parameters of a statement, owned (they are built from the rows they mark).
pub(crate) type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// What one relay forwards and how.
pub(crate) struct Relay {
    /// What it forwards, as logs and errors say it ("chat lookups").
    pub(crate) what: &'static str,
    /// The name of its broker connection.
    pub(crate) connection: &'static str,
    /// Reads up to `$1` rows not forwarded yet, oldest first, `FOR UPDATE SKIP LOCKED`.
    pub(crate) unforwarded: &'static str,
    /// A row's message; `None` marks it forwarded unpublished (nothing to count it for).
    pub(crate) message: fn(&Row) -> Option<OutgoingMessage>,
    /// Marks rows forwarded, with the parameters [`Relay::keys`] gives.
    pub(crate) mark_forwarded: &'static str,
    /// The keys of the rows read, as `mark_forwarded`'s parameters.
    pub(crate) keys: fn(&[Row]) -> Params,
    /// Called with the rows once they are marked and committed (metrics).
    pub(crate) forwarded: fn(&[Row]),
    /// How long it waits after finding nothing to forward.
    pub(crate) idle: Duration,
}

/// Runs `relay` until `cancel` fires, on a broker connection of its own.
pub(crate) async fn run_relay(
    relay: &'static Relay,
    pool: Pool,
    amqp_url: String,
    cancel: CancellationToken,
) {
    let publisher = Arc::new(Publisher::new(amqp_url, relay.connection));
    loop {
        let wait = match forward_batch(relay, &pool, &publisher).await {
            Ok(n) if n as i64 >= BATCH => Duration::ZERO,
            Ok(_) => relay.idle,
            Err(e) => {
                tracing::warn!(error.cause_chain = ?e, error.message = %e, "Failed to forward {}; retrying.", relay.what);
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Publishes one batch of `relay`'s rows (confirmed) and marks them forwarded, in one
/// transaction holding the rows. Returns how many rows it settled.
pub async fn forward_batch(
    relay: &Relay,
    pool: &Pool,
    publisher: &Publisher,
) -> anyhow::Result<usize> {
    let what = relay.what;
    let mut client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let tx = client
        .transaction()
        .await
        .context("Failed to begin a transaction")?;
    let rows = tx
        .query(relay.unforwarded, &[&BATCH])
        .await
        .with_context(|| format!("Failed to read the {what} to forward"))?;
    if rows.is_empty() {
        return Ok(0);
    }
    let messages: Vec<OutgoingMessage> = rows.iter().filter_map(relay.message).collect();
    publisher
        .publish_all(&messages)
        .await
        .with_context(|| format!("Failed to publish {what}"))?;
    let keys = (relay.keys)(&rows);
    let params: Vec<&(dyn ToSql + Sync)> = keys
        .iter()
        .map(|k| k.as_ref() as &(dyn ToSql + Sync))
        .collect();
    tx.execute(relay.mark_forwarded, &params)
        .await
        .with_context(|| format!("Failed to mark {what} forwarded"))?;
    tx.commit()
        .await
        .with_context(|| format!("Failed to commit forwarded {what}"))?;
    (relay.forwarded)(&rows);
    Ok(rows.len())
}
