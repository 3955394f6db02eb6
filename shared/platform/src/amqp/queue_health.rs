//! Queue health: how many messages wait in a queue and how many consumers read it, so
//! "the tracker is falling behind" is a dashboard panel and an alert, not a guess.
//!
//! Every batch consumer samples its own queue ([`super::run_batch_consumer`] runs
//! [`sample_until_stopped`] beside its loop), so each service exports the queues it
//! consumes, the notifier included for `loa.dead-letters`, without any wiring of its
//! own. Several replicas export the same queue: dashboards and alerts take the `max`
//! by queue.
//!
//! Sampling is a passive `queue.declare` every [`SAMPLE_INTERVAL`] on a connection of
//! its own: a passive declare of a missing queue closes its channel, and that must
//! never take a consumer's channel with it. Like every Loa connection, it first
//! declares the topology, so on a fresh vhost the queue exists before it is looked at.
//! The first sample is taken at start-up, so the series exist as soon as the broker
//! answers; while it does not, they keep their last value (no invented zero), and
//! `/readyz` tells that the broker is gone.

use super::timed;
use lapin::{options::QueueDeclareOptions, types::FieldTable, Channel, Connection};
use prometheus::{register_int_gauge_vec, IntGaugeVec};
use std::{sync::LazyLock, time::Duration};
use tokio_util::sync::CancellationToken;

/// How often a queue's depth and consumers are sampled: well under Prometheus' scrape
/// interval (15 s), and one cheap broker round trip per queue each time.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

static MESSAGES: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "loa_queue_messages",
        "Messages ready in a RabbitMQ queue (not yet delivered to a consumer), sampled every \
         5 s by each service that consumes the queue.",
        &["queue"]
    )
    .expect("metric registers once")
});
static CONSUMERS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "loa_queue_consumers",
        "Consumers attached to a RabbitMQ queue (every replica's), sampled every 5 s by each \
         service that consumes the queue.",
        &["queue"]
    )
    .expect("metric registers once")
});

/// What one passive declare told about a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSample {
    /// Messages ready for delivery.
    pub messages: u32,
    /// Consumers attached.
    pub consumers: u32,
}

/// Reads a queue's depth and consumer count without changing anything (a passive
/// declare). Fails, and closes `channel`, when the queue does not exist.
pub async fn sample(channel: &Channel, queue: &str) -> anyhow::Result<QueueSample> {
    let options = QueueDeclareOptions {
        passive: true,      // only look: never create or change the queue
        durable: false,     // ignored by a passive declare
        exclusive: false,   // ignored by a passive declare
        auto_delete: false, // ignored by a passive declare
        nowait: false,      // the answer carries the counts
    };
    let queue = timed(
        "queue.declare (passive)",
        channel.queue_declare(queue.into(), options, FieldTable::default()),
    )
    .await?;
    Ok(QueueSample {
        messages: queue.message_count(),
        consumers: queue.consumer_count(),
    })
}

/// Samples `queue` every [`SAMPLE_INTERVAL`] into `loa_queue_messages` and
/// `loa_queue_consumers` until `cancel` fires, reconnecting (with back-off) after any
/// broker error. `name` names the connection in the management UI.
pub async fn sample_until_stopped(
    amqp_url: &str,
    queue: &str,
    name: &str,
    cancel: CancellationToken,
) {
    let mut attempt = 0;
    let mut link: Option<(Connection, Channel)> = None;
    while !cancel.is_cancelled() {
        let sampled = async {
            if link.is_none() {
                let connection = super::connect(amqp_url, name).await?;
                let channel = timed("channel.open", connection.create_channel()).await?;
                super::topology::declare(&channel).await?;
                link = Some((connection, channel));
            }
            let (_, channel) = link.as_ref().expect("connected above");
            sample(channel, queue).await
        }
        .await;
        match sampled {
            Ok(s) => {
                attempt = 0;
                record(queue, s);
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(SAMPLE_INTERVAL) => {}
                }
            }
            Err(e) => {
                link = None;
                attempt += 1;
                tracing::debug!(queue, error.message = %e, "Could not sample the queue; reconnecting.");
                // From 0.8 s up: a gauge can wait longer than a consumer.
                if !super::backoff(attempt + 3, &cancel).await {
                    break;
                }
            }
        }
    }
    if let Some((connection, _)) = link {
        let _ = connection.close(200, "stopping".into()).await;
    }
}

/// Sets the queue's gauges from a sample.
pub fn record(queue: &str, sample: QueueSample) {
    MESSAGES
        .with_label_values(&[queue])
        .set(i64::from(sample.messages));
    CONSUMERS
        .with_label_values(&[queue])
        .set(i64::from(sample.consumers));
}
