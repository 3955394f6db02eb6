//! The outbox relay: publishes planned notifications to `loa.notifications` with
//! publisher confirms, in id order, and deletes them only after the confirm.
//!
//! Rows are claimed with `SELECT … FOR UPDATE SKIP LOCKED` inside a short transaction
//! that stays open while the batch is published, so any number of tracker replicas can
//! relay side by side, and a crash anywhere before the commit leaves the rows for the
//! next attempt (a crash after the confirm but before the commit republishes them: the
//! notifier dedupes by notification id, which is also the AMQP `message_id`).
//!
//! Every message carries its tenant in [`H_TENANT`]: the rows descend from events intake
//! verified, and a dead letter the notifier makes of one belongs to that tenant.

use crate::metrics;
use anyhow::Context;
use deadpool_postgres::Pool;
use loa_contracts::NotificationBatch;
use loa_platform::amqp::{consumer::H_TENANT, topology, OutgoingMessage, Publisher};
use std::{sync::Arc, time::Duration};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How often the relay looks for rows nobody woke it for (left by a crashed process or
/// another replica).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long the final drain at shutdown may take.
const FINAL_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The relay's dependencies.
#[derive(Clone)]
pub struct Relay {
    /// The tracker's database.
    pub pool: Pool,
    /// A confirming publisher.
    pub publisher: Arc<Publisher>,
    /// Most rows per transaction.
    pub batch: usize,
    /// Most notifications packed into one message (1: one message each).
    pub pack: usize,
    /// Woken by the consumer after each commit that planned notifications.
    pub wake: Arc<Notify>,
}

/// Publishes up to `batch` outbox rows, in id order, and deletes them once RabbitMQ
/// confirmed them all. Returns how many were relayed.
///
/// One statement claims and deletes the rows (`DELETE … RETURNING` over a `FOR UPDATE
/// SKIP LOCKED` sub-select); the delete only takes effect with the commit, which
/// happens after the confirm, and any failure before it rolls it back. A relayed row
/// is not kept: the event's id already keeps it from being planned again (a
/// redelivered event is a duplicate in `tracker.dossier_events`), and a delete writes
/// no new row version and no index entries, unlike marking it. Bodies are read as
/// text and published as they are, without a JSON round trip.
#[tracing::instrument(skip_all)]
pub async fn relay_once(
    pool: &Pool,
    publisher: &Publisher,
    batch: usize,
    pack: usize,
) -> anyhow::Result<usize> {
    let mut client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let tx = client
        .transaction()
        .await
        .context("Failed to begin the relay transaction")?;
    let limit = i64::try_from(batch).unwrap_or(i64::MAX);
    let claim = tx
        .prepare_cached(
            "DELETE FROM tracker.outbox AS o
             USING (SELECT id FROM tracker.outbox
                    ORDER BY id
                    LIMIT $1
                    FOR UPDATE SKIP LOCKED) AS claimed
             WHERE o.id = claimed.id
             RETURNING o.id, o.notification_id, o.routing_key, o.body::text, o.traceparent, o.tenant",
        )
        .await
        .context("Failed to prepare the outbox claim")?;
    let mut rows = tx
        .query(&claim, &[&limit])
        .await
        .context("Failed to claim outbox rows")?;
    if rows.is_empty() {
        return Ok(0);
    }
    // RETURNING does not keep the sub-select's order.
    rows.sort_unstable_by_key(|r| r.get::<_, i64>(0));
    let started = std::time::Instant::now();
    let relayed = rows.len();
    let outbox: Vec<OutboxRow> = rows
        .into_iter()
        .map(|row| OutboxRow {
            notification_id: row.get(1),
            routing_key: row.get(2),
            body: row.get(3),
            traceparent: row.get(4),
            tenant: row.get(5),
        })
        .collect();
    let messages = pack_messages(outbox, pack);
    publisher
        .publish_all(&messages)
        .await
        .context("RabbitMQ did not confirm the outbox batch")?;
    tx.commit()
        .await
        .context("Failed to commit the relay transaction")?;
    metrics::relay_seconds(started.elapsed().as_secs_f64());
    tracing::debug!(
        rows = relayed,
        messages = messages.len(),
        "Relayed outbox rows."
    );
    Ok(relayed)
}

/// One claimed outbox row.
struct OutboxRow {
    notification_id: String,
    routing_key: String,
    body: String,
    traceparent: Option<String>,
    tenant: String,
}

/// Turns rows (in id order) into messages: the rows of one tenant and lane travel
/// together, up to `pack` per `notification_batch.v1` message (routing key
/// `<lane>.<tenant>.batch`); a row alone, or with `pack` ≤ 1, travels as it was
/// stored. Messages leave in the order of their first row.
fn pack_messages(rows: Vec<OutboxRow>, pack: usize) -> Vec<OutgoingMessage> {
    let pack = pack.max(1);
    let mut groups: Vec<((String, String), Vec<OutboxRow>)> = Vec::new();
    for row in rows {
        let lane = row
            .routing_key
            .split('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        let key = (lane, row.tenant.clone());
        match groups.iter_mut().find(|(k, g)| *k == key && g.len() < pack) {
            Some((_, group)) => group.push(row),
            None => groups.push((key, vec![row])),
        }
    }
    groups
        .into_iter()
        .map(|((lane, tenant), mut group)| {
            if group.len() == 1 {
                let row = group.pop().expect("one row");
                let mut headers = vec![(H_TENANT.to_owned(), tenant)];
                if let Some(trace) = row.traceparent {
                    headers.push((topology::H_TRACEPARENT.to_owned(), trace));
                }
                return OutgoingMessage {
                    exchange: topology::EX_NOTIFICATIONS.to_owned(),
                    routing_key: row.routing_key,
                    body: row.body.into_bytes(),
                    message_id: row.notification_id,
                    headers,
                };
            }
            OutgoingMessage {
                exchange: topology::EX_NOTIFICATIONS.to_owned(),
                routing_key: format!("{lane}.{tenant}.batch"),
                body: NotificationBatch::body_from_envelopes(
                    &tenant,
                    group.iter().map(|r| r.body.as_str()),
                ),
                message_id: format!("batch:{}+{}", group[0].notification_id, group.len()),
                headers: vec![(H_TENANT.to_owned(), tenant)],
            }
        })
        .collect()
}

/// Relays until the outbox has no unclaimed rows left.
pub async fn drain(relay: &Relay) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let n = relay_once(&relay.pool, &relay.publisher, relay.batch, relay.pack).await?;
        total += n;
        if n < relay.batch.max(1) {
            return Ok(total);
        }
    }
}

/// The outbox's backlog: rows waiting to be relayed, and how long the oldest has waited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    /// Rows not yet published.
    pub rows: i64,
    /// Seconds since the oldest of them was planned (0 when there is none).
    pub oldest_seconds: f64,
}

/// Samples the backlog (for the `loa_tracker_outbox_pending` and
/// `loa_tracker_outbox_oldest_seconds` gauges). The outbox holds only unpublished
/// rows, so the scan is as small as the backlog.
pub async fn backlog(pool: &Pool) -> anyhow::Result<Backlog> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let row = client
        .query_one(
            "SELECT count(*),
                    COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8
               FROM tracker.outbox",
            &[],
        )
        .await
        .context("Failed to sample the outbox backlog")?;
    Ok(Backlog {
        rows: row.get(0),
        oldest_seconds: row.get::<_, f64>(1).max(0.0),
    })
}

/// Runs the relay until `stop` fires: drains when woken and every
/// [`POLL_INTERVAL`], backs off after failures, and drains once more (bounded) before
/// returning, so notifications of the last consumed batch leave with this process.
pub async fn run_relay(relay: Relay, stop: CancellationToken) {
    let mut attempt = 0u32;
    let mut last_sample: Option<tokio::time::Instant> = None;
    tracing::info!("Outbox relay started.");
    loop {
        match drain(&relay).await {
            Ok(_) => attempt = 0,
            Err(e) => {
                attempt += 1;
                tracing::warn!(attempt, error.cause_chain = ?e, error.message = %e, "Outbox relay failed; retrying.");
                if !loa_platform::amqp::backoff(attempt, &stop).await {
                    break;
                }
                continue;
            }
        }
        // A gauge, not a hot path: sampled at most once per poll interval.
        if last_sample.is_none_or(|at| at.elapsed() >= POLL_INTERVAL) {
            last_sample = Some(tokio::time::Instant::now());
            match backlog(&relay.pool).await {
                Ok(b) => metrics::outbox_backlog(b.rows, b.oldest_seconds),
                Err(e) => {
                    tracing::debug!(error.message = %e, "Could not sample the outbox backlog.")
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = relay.wake.notified() => {}
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
    }
    match tokio::time::timeout(FINAL_DRAIN_TIMEOUT, drain(&relay)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error.message = %e, "Final outbox drain failed; rows stay for the next start.")
        }
        Err(_) => tracing::warn!("Final outbox drain timed out; rows stay for the next start."),
    }
    tracing::info!("Outbox relay stopped.");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, tenant: &str, lane: &str) -> OutboxRow {
        OutboxRow {
            notification_id: id.to_owned(),
            routing_key: format!("{lane}.{tenant}.receipt"),
            body: format!(r#"{{"type":"notification_request.v1","notification_id":"{id}"}}"#),
            traceparent: Some(format!("trace-{id}")),
            tenant: tenant.to_owned(),
        }
    }

    #[test]
    fn rows_of_one_tenant_and_lane_travel_together_up_to_the_pack_size_in_first_row_order() {
        let rows = vec![
            row("a1", "an-giang", "transactional"),
            row("d1", "dong-nai", "transactional"),
            row("a2", "an-giang", "transactional"),
            row("a3", "an-giang", "broadcast"),
            row("a4", "an-giang", "transactional"),
        ];
        let messages = pack_messages(rows, 2);
        let keys: Vec<(&str, &str)> = messages
            .iter()
            .map(|m| (m.routing_key.as_str(), m.message_id.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("transactional.an-giang.batch", "batch:a1+2"),
                ("transactional.dong-nai.receipt", "d1"),
                ("broadcast.an-giang.receipt", "a3"),
                ("transactional.an-giang.receipt", "a4"),
            ]
        );
        let batch: serde_json::Value = serde_json::from_slice(&messages[0].body).unwrap();
        assert_eq!(batch["type"], "notification_batch.v1");
        assert_eq!(batch["tenant"], "an-giang");
        assert_eq!(batch["requests"][1]["notification_id"], "a2");
        // A row alone keeps its stored body and its trace header; every message
        // names its tenant.
        assert_eq!(
            messages[1].headers,
            [
                (H_TENANT.to_owned(), "dong-nai".to_owned()),
                (topology::H_TRACEPARENT.to_owned(), "trace-d1".to_owned())
            ]
        );
        assert_eq!(
            messages[0].headers,
            [(H_TENANT.to_owned(), "an-giang".to_owned())]
        );
    }

    #[test]
    fn a_pack_size_of_one_sends_every_row_on_its_own() {
        let rows = vec![
            row("a1", "an-giang", "transactional"),
            row("a2", "an-giang", "transactional"),
        ];
        let ids: Vec<String> = pack_messages(rows, 1)
            .into_iter()
            .map(|m| m.message_id)
            .collect();
        assert_eq!(ids, ["a1", "a2"]);
    }
}
