//! The delay queues retries wait in.
//!
//! A `Retry` ([`crate::engine::policy::Decision::Retry`]) republishes the request, with
//! publisher confirms and **before** the original is acked, to a delay queue: a quorum
//! queue with `x-message-ttl` and no consumer that dead-letters (at least once) back to
//! `loa.notifications` with the request's own routing key, so it lands in its lane's
//! work queue again. See [`crate::engine::policy`] for when and why.

use lapin::options::ConfirmSelectOptions;
use loa_contracts::{Envelope, NotificationRequest};
use loa_platform::amqp::{topology, OutgoingMessage, PublishError, Publisher};
use std::{sync::Arc, time::Duration};
use tokio::sync::Mutex;

/// Share of a delay added or removed at random, so retries spread out.
pub(crate) const JITTER: f64 = 0.2;

/// The per-message TTL of a delay: the delay ±[`JITTER`].
pub(crate) fn jittered(delay: Duration) -> Duration {
    let factor = 1.0 + JITTER * (2.0 * rand::random::<f64>() - 1.0);
    Duration::from_millis((delay.as_millis() as f64 * factor).round().max(1.0) as u64)
}

/// The queue TTL of a delay tier: the longest jittered delay.
pub(crate) fn tier_ttl(delay: Duration) -> Duration {
    Duration::from_millis((delay.as_millis() as f64 * (1.0 + JITTER)).ceil() as u64)
}

/// The delay queue of a delay.
pub fn tier_queue(delay: Duration) -> String {
    topology::delay_queue_name("notifier", tier_ttl(delay))
}

/// One request to republish through a delay queue.
#[derive(Debug, Clone)]
pub(crate) struct DelayedRetry<'a> {
    /// The request.
    pub request: &'a NotificationRequest,
    /// Its routing key on `loa.notifications`.
    pub routing_key: String,
    /// The attempt number the copy carries.
    pub attempt: u32,
    /// The tier's delay (before jitter).
    pub delay: Duration,
}

/// Publishes retries to the delay queues, declaring them first. Cheap to share.
pub(crate) struct DelayQueues {
    publisher: Arc<Publisher>,
    amqp_url: String,
    delays: Vec<Duration>,
    declared: Mutex<bool>,
}

impl DelayQueues {
    /// Delay queues for the configured `delays`, published to with `publisher`.
    pub(crate) fn new(publisher: Arc<Publisher>, amqp_url: &str, delays: &[Duration]) -> Self {
        Self {
            publisher,
            amqp_url: amqp_url.to_owned(),
            delays: delays.to_vec(),
            declared: Mutex::new(false),
        }
    }

    /// The confirming publisher the retries go out with.
    pub(crate) fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Declares every tier's exchange and queue (idempotent).
    pub(crate) async fn declare(&self) -> anyhow::Result<()> {
        let mut declared = self.declared.lock().await;
        if *declared {
            return Ok(());
        }
        let connection =
            loa_platform::amqp::connect(&self.amqp_url, "loa-notifier-topology").await?;
        let channel =
            loa_platform::amqp::timed("channel.open", connection.create_channel()).await?;
        // The work exchange the tiers dead-letter to must exist as well.
        topology::declare(&channel).await?;
        for delay in &self.delays {
            topology::declare_delay_tier(
                &channel,
                &tier_queue(*delay),
                tier_ttl(*delay),
                topology::EX_NOTIFICATIONS,
            )
            .await?;
        }
        // Not needed on this channel, but proves it still works before closing.
        let _ = channel
            .confirm_select(ConfirmSelectOptions { nowait: false })
            .await;
        let _ = connection.close(200, "topology declared".into()).await;
        *declared = true;
        tracing::info!(
            tiers = self.delays.len(),
            "Declared the retry delay queues."
        );
        Ok(())
    }

    /// Publishes every retry to its tier, confirmed. Only then may the originals be
    /// acked.
    pub(crate) async fn publish(&self, retries: &[DelayedRetry<'_>]) -> Result<(), PublishError> {
        if retries.is_empty() {
            return Ok(());
        }
        self.declare()
            .await
            .map_err(|e| PublishError::Unavailable(format!("{e:#}")))?;
        let messages: Vec<(OutgoingMessage, Duration)> = retries
            .iter()
            .map(|r| {
                let mut headers = vec![
                    (topology::H_ATTEMPT.to_owned(), r.attempt.to_string()),
                    // Kept through the retry, so a dead letter stays the tenant's.
                    (
                        loa_platform::amqp::consumer::H_TENANT.to_owned(),
                        r.request.tenant.clone(),
                    ),
                ];
                if let Some(trace) = &r.request.trace_context {
                    headers.push((topology::H_TRACEPARENT.to_owned(), trace.clone()));
                }
                let message = OutgoingMessage {
                    // The tier's own exchange: exactly one queue, routing key kept.
                    exchange: tier_queue(r.delay),
                    routing_key: r.routing_key.clone(),
                    body: Envelope::NotificationRequestV1(r.request.clone()).to_bytes(),
                    message_id: r.request.notification_id.clone(),
                    headers,
                };
                (message, jittered(r.delay))
            })
            .collect();
        let result = self.publisher.publish_all_expiring(&messages).await;
        if let Err(PublishError::Refused(_)) = &result {
            // Unroutable: a tier queue was deleted behind our back. Declare again next time.
            *self.declared.lock().await = false;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_fifth_of_the_delay_and_below_the_queue_ttl() {
        let delay = Duration::from_secs(5);
        for _ in 0..200 {
            let j = jittered(delay);
            assert!(j >= Duration::from_secs(4) && j <= tier_ttl(delay), "{j:?}");
        }
        assert_eq!(tier_queue(delay), "notifier.delay.6000ms");
    }
}
