//! Republishes parked requests when they are due: `deferred` rows whose `not_before`
//! has come (night ban over, next quota day, `not_before`, a resumed tenant's held
//! requests), `ambiguous` rows whose `recheck_at` has come without a receipt (a
//! receipt would have moved them to `delivered` or `seen`, so those are never resent;
//! they keep `recheck_at`, so the sender knows the send is a resend and looks for a
//! receipt once more), and copies parked on a `sending` row behind the lease of a
//! sender that died (the lease lapsed without a result; the row keeps its lapsed
//! lease and dispatch mark, so the next claim knows whether Zalo may have it).
//!
//! Every replica runs it. Each round takes at most `batch` due rows with
//! `FOR UPDATE SKIP LOCKED` (replicas share the work, never the rows), publishes their
//! stored requests to `loa.notifications` with publisher confirms, marks them
//! `retrying` and commits. A crash between the confirm and the commit republishes them
//! once more; the claim in front of every send makes that harmless. Due times are read
//! from the notifier's [`Clock`], so a test can jump to 06:05 instead of waiting.

use crate::{clock::Clock, deliveries::DeliveryStatus, limits::pause};
use anyhow::Context;
use deadpool_postgres::Pool;
use loa_platform::{
    amqp::{topology, OutgoingMessage, Publisher},
    LiveTenants,
};
use serde_json::Value;
use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

/// The scheduler. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Scheduler {
    pool: Pool,
    publisher: Arc<Publisher>,
    clock: Clock,
    tenants: LiveTenants,
    interval: Duration,
    batch: i64,
}

impl Scheduler {
    /// Polls every `interval` and republishes at most `batch` rows per statement.
    pub(crate) fn new(
        pool: Pool,
        publisher: Arc<Publisher>,
        clock: Clock,
        tenants: LiveTenants,
        interval: Duration,
        batch: usize,
    ) -> Self {
        Self {
            pool,
            publisher,
            clock,
            tenants,
            interval,
            batch: i64::try_from(batch.max(1)).unwrap_or(1000),
        }
    }

    /// Runs until `cancel` fires: republishes due rows (all of them, a batch at a
    /// time) and refreshes the pause gauge, then sleeps one interval.
    pub(crate) async fn run(&self, cancel: CancellationToken) {
        loop {
            loop {
                if cancel.is_cancelled() {
                    return;
                }
                match self.republish_due().await {
                    Ok(n) if n as i64 >= self.batch => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error.cause_chain = ?e, error.message = %e, "Failed to republish due deliveries; trying again.");
                        break;
                    }
                }
            }
            if let Err(e) = pause::refresh_gauge(&self.pool, &self.tenants.current()).await {
                tracing::warn!(error.message = %e, "Failed to read tenant pauses.");
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// One round: republishes up to `batch` due rows and returns how many.
    pub(crate) async fn republish_due(&self) -> anyhow::Result<usize> {
        let now = self.clock.now();
        let mut client = self
            .pool
            .get()
            .await
            .context("Failed to get a PostgreSQL connection")?;
        let tx = client
            .transaction()
            .await
            .context("Failed to begin a transaction")?;
        // Two statements, one per partial index; each row locked, none waited for.
        let mut rows = tx
            .query(
                "SELECT notification_id, tenant, status, attempts, request
                   FROM notifier.deliveries
                  WHERE status = 'deferred' AND (not_before IS NULL OR not_before <= $1)
                    AND request IS NOT NULL
                  ORDER BY not_before NULLS FIRST
                  LIMIT $2
                  FOR UPDATE SKIP LOCKED",
                &[&now, &self.batch],
            )
            .await
            .context("Failed to select due deferred deliveries")?;
        rows.extend(
            tx.query(
                "SELECT notification_id, tenant, status, attempts, request
                   FROM notifier.deliveries
                  WHERE status = 'ambiguous' AND recheck_at <= $1 AND request IS NOT NULL
                  ORDER BY recheck_at
                  LIMIT $2
                  FOR UPDATE SKIP LOCKED",
                &[&now, &self.batch],
            )
            .await
            .context("Failed to select due ambiguous deliveries")?,
        );
        rows.extend(
            tx.query(
                "SELECT notification_id, tenant, status, attempts, request
                   FROM notifier.deliveries
                  WHERE status = 'sending' AND lease_until <= now() AND request IS NOT NULL
                  ORDER BY lease_until
                  LIMIT $1
                  FOR UPDATE SKIP LOCKED",
                &[&self.batch],
            )
            .await
            .context("Failed to select copies parked behind lapsed leases")?,
        );
        if rows.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut broken = Vec::new();
        let mut messages = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.get(0);
            let tenant: String = row.get(1);
            let status: DeliveryStatus = row.get(2);
            let attempts: i32 = row.get(3);
            let body: Value = row.get(4);
            let request = match serde_json::from_value::<loa_contracts::Envelope>(body.clone()) {
                Ok(loa_contracts::Envelope::NotificationRequestV1(r)) => r,
                _ => {
                    tracing::error!(notification_id = %id, "A parked request cannot be read back; marking it failed.");
                    broken.push(id);
                    continue;
                }
            };
            // As the relay stamped it, so a dead letter stays the tenant's.
            let mut headers = vec![(
                loa_platform::amqp::consumer::H_TENANT.to_owned(),
                request.tenant.clone(),
            )];
            if matches!(status, DeliveryStatus::Ambiguous | DeliveryStatus::Sending) {
                // No receipt in time, or a dead sender's copy: count the attempts so
                // far, so a send that never gets an answer ends as a dead letter, not
                // a loop.
                if status == DeliveryStatus::Ambiguous {
                    tracing::warn!(notification_id = %id, tenant = %tenant, attempts, "No receipt for an ambiguous send; sending it again.");
                } else {
                    tracing::info!(notification_id = %id, tenant = %tenant, "Its sender stopped holding a request; republishing the copy parked behind its lease.");
                }
                headers.push((
                    topology::H_ATTEMPT.to_owned(),
                    (attempts.max(0) + 1).to_string(),
                ));
            }
            if let Some(trace) = &request.trace_context {
                headers.push((topology::H_TRACEPARENT.to_owned(), trace.clone()));
            }
            messages.push(OutgoingMessage {
                exchange: topology::EX_NOTIFICATIONS.to_owned(),
                routing_key: request.routing_key(),
                body: serde_json::to_vec(&body).context("Failed to encode a parked request")?,
                message_id: id.clone(),
                headers,
            });
            ids.push(id);
        }
        self.publisher
            .publish_all(&messages)
            .await
            .context("Failed to republish due deliveries")?;
        tx.execute(
            "UPDATE notifier.deliveries
                SET status = CASE WHEN status = 'sending' THEN status ELSE 'retrying' END,
                    recheck_at = CASE WHEN status = 'ambiguous' THEN recheck_at END,
                    not_before = NULL, request = NULL, updated_at = now()
              WHERE notification_id = ANY($1)",
            &[&ids],
        )
        .await
        .context("Failed to mark republished deliveries")?;
        if !broken.is_empty() {
            tx.execute(
                "UPDATE notifier.deliveries
                    SET status = 'failed', last_error = 'parked request cannot be read back',
                        request = NULL, updated_at = now()
                  WHERE notification_id = ANY($1)",
                &[&broken],
            )
            .await
            .context("Failed to mark unreadable deliveries")?;
        }
        tx.commit()
            .await
            .context("Failed to commit republished deliveries")?;
        tracing::info!(count = ids.len(), "Republished due deliveries.");
        Ok(rows.len())
    }
}
