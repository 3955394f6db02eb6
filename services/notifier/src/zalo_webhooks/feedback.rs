//! Ratings given in Zalo, the notifier's half: a `user_feedback` on a message sent
//! with a service-rating template is kept in `notifier.citizen_feedback` by the
//! webhook's own transaction (see `subscribers::record_feedback`), and [`run_relay`]
//! hands each kept rating to the tracker on `loa.citizen` (`citizen_feedback.v1`,
//! published with confirms, then marked forwarded), with the dossier the rated
//! message was about (our delivery of it, found by the `tracking_id` Zalo echoes).
//!
//! A rating whose message names no delivery of ours, or no dossier, or carries no
//! readable star count, is marked forwarded without being published: there is no
//! dossier to count it for. A rating published twice (a crash between the confirm
//! and the mark) counts once: the tracker keys it by the rated message.

use anyhow::Context;
use deadpool_postgres::Pool;
use loa_contracts::{CitizenFeedback, Envelope};
use loa_platform::amqp::{topology, OutgoingMessage, Publisher};
use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

/// Most ratings forwarded per transaction.
const RELAY_BATCH: i64 = 100;
/// How often the relay looks for ratings to forward when it found none.
const RELAY_IDLE: Duration = Duration::from_millis(500);

/// Forwards kept ratings to the tracker until `cancel` fires (every replica may run
/// it: rows are claimed with `SKIP LOCKED`).
pub(crate) async fn run_relay(pool: Pool, publisher: Arc<Publisher>, cancel: CancellationToken) {
    loop {
        let wait = match forward_batch(&pool, &publisher).await {
            Ok(n) if n as i64 >= RELAY_BATCH => Duration::ZERO,
            Ok(_) => RELAY_IDLE,
            Err(e) => {
                tracing::warn!(error.cause_chain = ?e, error.message = %e, "Failed to forward ratings given in Zalo; retrying.");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Publishes one batch of kept ratings (confirmed) and marks them forwarded, in one
/// transaction holding their rows. Returns how many rows it settled.
pub async fn forward_batch(pool: &Pool, publisher: &Publisher) -> anyhow::Result<usize> {
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
            "SELECT f.tenant, f.msg_id, f.rating, f.note, f.submitted_at, d.dossier_code
               FROM (SELECT tenant, msg_id, tracking_id, rating, note, submitted_at, received_at
                       FROM notifier.citizen_feedback
                      WHERE forwarded_at IS NULL
                      ORDER BY received_at
                      LIMIT $1
                        FOR UPDATE SKIP LOCKED) f
               LEFT JOIN notifier.deliveries d
                      ON d.notification_id = f.tracking_id AND d.tenant = f.tenant
              ORDER BY f.received_at",
            &[&RELAY_BATCH],
        )
        .await
        .context("Failed to read the ratings to forward")?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut keys: (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    let mut messages = Vec::new();
    for row in &rows {
        let tenant: String = row.get(0);
        let msg_id: String = row.get(1);
        let stars = row
            .get::<_, Option<i16>>(2)
            .and_then(|s| u8::try_from(s).ok());
        let dossier_code: Option<String> = row.get(5);
        match (stars, dossier_code) {
            (Some(stars), Some(dossier_code)) => {
                let feedback = CitizenFeedback {
                    tenant: tenant.clone(),
                    dossier_code,
                    msg_id: msg_id.clone(),
                    stars,
                    note: row.get(3),
                    submitted_at: row.get(4),
                };
                messages.push(OutgoingMessage {
                    exchange: topology::EX_CITIZEN.to_owned(),
                    routing_key: feedback.routing_key(),
                    message_id: format!("feedback-{tenant}-{msg_id}"),
                    body: Envelope::CitizenFeedbackV1(feedback).to_bytes(),
                    headers: Vec::new(),
                });
            }
            _ => tracing::info!(
                tenant = %tenant,
                "A rating given in Zalo names no dossier of ours (no delivery for its tracking id, or no stars); not counted."
            ),
        }
        keys.0.push(tenant);
        keys.1.push(msg_id);
    }
    publisher
        .publish_all(&messages)
        .await
        .context("Failed to publish ratings given in Zalo")?;
    tx.execute(
        "UPDATE notifier.citizen_feedback SET forwarded_at = now()
          WHERE (tenant, msg_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
        &[&keys.0, &keys.1],
    )
    .await
    .context("Failed to mark ratings forwarded")?;
    tx.commit()
        .await
        .context("Failed to commit forwarded ratings")?;
    Ok(rows.len())
}
