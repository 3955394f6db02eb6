//! A batch consumer: collects up to `batch_size` deliveries (or whatever arrived within
//! `batch_wait` of the first), hands them to the handler, then settles each one as the
//! handler decided. Acks happen only after the handler returned, i.e. after its work is
//! durable; dead letters are published (confirmed) to `loa.dead` with their reason
//! before the original is acked.
//!
//! With `max_batches_in_flight` above one, the next batch is taken and handled while
//! earlier ones are still at work (their round trips overlap). Each batch is settled
//! as soon as its handler returns, whatever the batches taken before it are doing, and
//! only unfinished batches count against the limit: one batch held up (a Zalo call
//! that hangs until its time-out) costs one slot, never the lane. Handlers must then
//! tolerate concurrent batches, as they already must for replicas.
//!
//! The loop owns its connection and rebuilds everything after any broker error, so a
//! force-closed connection costs a redelivery, never a lost message.
//!
//! # Whose dead letter is it
//!
//! A dead letter is listed to the admins of one tenant, so that tenant must come from
//! something Loa verified, never from the body (anyone who can publish to `loa.ingress`
//! writes the body). The service that verified the tenant stamps it in [`H_TENANT`]
//! (and intake the verified source in [`H_SOURCE`]) when it publishes: intake on every
//! event it forwards and on every ingress dead letter whose token it verified; the
//! tracker on what it dead-letters itself; the relay and the notifier on notification
//! requests, which all descend from events intake verified. The dead-letter store takes
//! the tenant from that stamp alone. Credentials a publisher sent ([`CREDENTIAL_HEADERS`])
//! never travel into a dead letter.

use super::{publisher::OutgoingMessage, timed, topology, BrokerStatus};
use futures_util::{stream::FuturesUnordered, StreamExt};
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
        ConfirmSelectOptions,
    },
    types::{AMQPValue, FieldTable},
    Channel,
};
use std::{collections::BTreeSet, future::Future, sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

/// Header carrying the tenant a Loa service verified for a message (see the module
/// docs). Intake drops any a publisher sets on `loa.ingress`.
pub const H_TENANT: &str = "x-loa-tenant";
/// Header naming the upstream source (its id in the tenants file, never its token)
/// whose token intake verified for an ingress dead letter, so a replay can present
/// that source's current token again.
pub const H_SOURCE: &str = "x-loa-source";
/// Header carrying an upstream source's token on the AMQP ingress path.
pub const H_SOURCE_TOKEN: &str = "x-loa-token";
/// Headers that carry credentials: dropped from every dead letter, never stored.
pub const CREDENTIAL_HEADERS: &[&str] = &[H_SOURCE_TOKEN, "authorization"];

/// Whether a header carries a credential (compared without regard to case).
pub fn is_credential_header(name: &str) -> bool {
    CREDENTIAL_HEADERS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
}

/// What to do with one delivery after the handler ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done (or a duplicate): remove it from the queue.
    Ack,
    /// Failed for a reason that may pass: give it back. Each return counts towards
    /// the queue's delivery limit, after which the broker dead-letters it.
    Retry,
    /// Can never succeed: move it to the dead letters with this reason.
    DeadLetter(String),
}

/// How a batch consumer reads its queue.
#[derive(Debug, Clone)]
pub struct BatchConsumerSettings {
    /// Queue to consume.
    pub queue: String,
    /// Connection and consumer name (visible in the management UI).
    pub name: String,
    /// Unacked deliveries the broker may push ahead (≥ `batch_size`).
    pub prefetch: u16,
    /// Most deliveries handed to the handler at once.
    pub batch_size: usize,
    /// How long to wait for more deliveries after the first one of a batch.
    pub batch_wait: Duration,
    /// Batches handled at once (1: one after the other). More overlap one batch's
    /// database and network round trips with the next one's, and keep a batch that
    /// is held up from stopping the others (each is settled when it finishes).
    pub max_batches_in_flight: usize,
}

/// The handler gets the batch as a shared slice and returns one [`Disposition`] per
/// delivery, in order.
///
/// Consumes until `cancel` fires, reconnecting after every failure. The in-flight
/// batch is always finished and settled before returning. Meanwhile the queue's depth
/// and consumers are sampled into `loa_queue_messages` / `loa_queue_consumers`
/// ([`super::queue_health`]).
pub async fn run_batch_consumer<F, Fut>(
    amqp_url: &str,
    settings: BatchConsumerSettings,
    status: BrokerStatus,
    cancel: CancellationToken,
    mut handler: F,
) where
    F: FnMut(Arc<[Delivery]>) -> Fut,
    Fut: Future<Output = Vec<Disposition>>,
{
    // The queue's series exist from the start, before the first connection.
    metrics::init(&settings.queue);
    let health_name = format!("{}-health", settings.name);
    let health = super::queue_health::sample_until_stopped(
        amqp_url,
        &settings.queue,
        &health_name,
        cancel.clone(),
    );
    let consume = async {
        let mut attempt = 0;
        while !cancel.is_cancelled() {
            match consume_once(amqp_url, &settings, &status, &cancel, &mut handler).await {
                Ok(()) => attempt = 0,
                Err(e) => {
                    status.set(false);
                    tracing::warn!(queue = %settings.queue, error.message = %e, "Consumer lost its broker connection; reconnecting.");
                    attempt += 1;
                }
            }
            if cancel.is_cancelled() || !super::backoff(attempt, &cancel).await {
                break;
            }
        }
        status.set(false);
        tracing::info!(queue = %settings.queue, "Consumer stopped.");
    };
    tokio::join!(consume, health);
}

async fn consume_once<F, Fut>(
    amqp_url: &str,
    settings: &BatchConsumerSettings,
    status: &BrokerStatus,
    cancel: &CancellationToken,
    handler: &mut F,
) -> anyhow::Result<()>
where
    F: FnMut(Arc<[Delivery]>) -> Fut,
    Fut: Future<Output = Vec<Disposition>>,
{
    let connection = super::connect(amqp_url, &settings.name).await?;
    let channel = timed("channel.open", connection.create_channel()).await?;
    topology::declare(&channel).await?;
    let dead_channel = timed("channel.open", connection.create_channel()).await?;
    timed(
        "confirm.select",
        dead_channel.confirm_select(ConfirmSelectOptions { nowait: false }),
    )
    .await?;
    timed(
        "basic.qos",
        channel.basic_qos(settings.prefetch, BasicQosOptions { global: false }),
    )
    .await?;
    let mut consumer = timed(
        "basic.consume",
        channel.basic_consume(
            settings.queue.as_str().into(),
            settings.name.as_str().into(),
            BasicConsumeOptions {
                no_local: false,  // irrelevant for queues
                no_ack: false,    // manual acks, after the work is durable
                exclusive: false, // other replicas may consume too
                nowait: false,    // wait for consume-ok
            },
            FieldTable::default(),
        ),
    )
    .await?;
    status.set(true);
    tracing::info!(queue = %settings.queue, "Consuming.");

    // Batches are handled up to `max_batches_in_flight` at a time and settled as each
    // finishes. `unsettled` holds the sequence numbers of the batches taken and not yet
    // settled: an ack with `multiple` is used only by the oldest of them, so it never
    // covers a delivery whose batch is still being handled.
    let in_flight_limit = settings.max_batches_in_flight.max(1);
    let mut in_flight = FuturesUnordered::new();
    let mut unsettled = BTreeSet::new();
    let mut taken: u64 = 0;
    let outcome = loop {
        let can_take = in_flight.len() < in_flight_limit;
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break Ok(()),
            Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                let (seq, batch, dispositions): Handled = done;
                let oldest = unsettled.first() == Some(&seq);
                unsettled.remove(&seq);
                if let Err(e) = settle(&settings.queue, &dead_channel, &batch, dispositions, oldest).await {
                    break Err(e);
                }
            }
            next = consumer.next(), if can_take => {
                let first = match next {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => break Err(e.into()),
                    None => break Err(anyhow::anyhow!("the broker cancelled the consumer")),
                };
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + settings.batch_wait;
                let mut failed = None;
                while batch.len() < settings.batch_size {
                    match tokio::time::timeout_at(deadline, consumer.next()).await {
                        Ok(Some(Ok(d))) => batch.push(d),
                        Ok(Some(Err(e))) => {
                            failed = Some(e);
                            break;
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
                let batch: Arc<[Delivery]> = batch.into();
                let work = handler(batch.clone());
                taken += 1;
                unsettled.insert(taken);
                in_flight.push(handled(taken, batch, work));
                if let Some(e) = failed {
                    break Err(e.into());
                }
            }
        }
    };
    // Whatever happened, the batches already taken finish their work, so nothing is
    // left half done; they are settled while the channel still works (otherwise the
    // broker redelivers them, and the handlers' idempotency absorbs the copies).
    let mut outcome = outcome;
    while let Some(done) = in_flight.next().await {
        let (seq, batch, dispositions): Handled = done;
        let oldest = unsettled.first() == Some(&seq);
        unsettled.remove(&seq);
        if outcome.is_ok() {
            if let Err(e) =
                settle(&settings.queue, &dead_channel, &batch, dispositions, oldest).await
            {
                outcome = Err(e);
            }
        }
    }
    outcome
}

/// A batch's sequence number on its channel, the batch, and what its handler decided
/// for each delivery.
type Handled = (u64, Arc<[Delivery]>, Vec<Disposition>);

async fn handled<Fut>(seq: u64, batch: Arc<[Delivery]>, work: Fut) -> Handled
where
    Fut: Future<Output = Vec<Disposition>>,
{
    (seq, batch, work.await)
}

/// Settles one batch. `oldest`: no batch taken before it is still unsettled, so one
/// ack with `multiple` may cover the whole batch; otherwise each delivery is acked on
/// its own (a `multiple` ack would also ack the older batch still at work).
async fn settle(
    queue: &str,
    dead_channel: &Channel,
    batch: &[Delivery],
    dispositions: Vec<Disposition>,
    oldest: bool,
) -> anyhow::Result<()> {
    assert_eq!(
        batch.len(),
        dispositions.len(),
        "a handler settles every delivery it was given"
    );
    if oldest && dispositions.iter().all(|d| *d == Disposition::Ack) {
        let last = batch.last().expect("batches are never empty");
        let acked = timed("basic.ack", last.ack(BasicAckOptions { multiple: true })).await?;
        if !acked {
            metrics::lost_acks(queue, batch.len());
        }
        return Ok(());
    }
    for (delivery, disposition) in batch.iter().zip(dispositions) {
        let sent = match disposition {
            Disposition::Ack => {
                timed(
                    "basic.ack",
                    delivery.ack(BasicAckOptions { multiple: false }),
                )
                .await?
            }
            Disposition::Retry => {
                timed(
                    "basic.reject",
                    delivery.reject(BasicRejectOptions { requeue: true }),
                )
                .await?
            }
            Disposition::DeadLetter(reason) => {
                dead_letter(queue, dead_channel, delivery, &reason).await?;
                timed(
                    "basic.ack",
                    delivery.ack(BasicAckOptions { multiple: false }),
                )
                .await?
            }
        };
        if !sent {
            metrics::lost_acks(queue, 1);
        }
    }
    Ok(())
}

/// Publishes a copy of `delivery` to `loa.dead` with the reason, and waits for the
/// confirm. Only then may the original be acked. The copy keeps every header (a
/// tenant stamp included) except credentials.
pub async fn dead_letter(
    queue: &str,
    channel: &Channel,
    delivery: &Delivery,
    reason: &str,
) -> anyhow::Result<()> {
    tracing::warn!(queue, reason, "Dead-lettering a message.");
    let mut headers = FieldTable::default();
    for (name, value) in delivery
        .properties
        .headers()
        .as_ref()
        .map(|h| h.inner().iter())
        .into_iter()
        .flatten()
    {
        if !is_credential_header(name.as_str()) {
            headers.insert(name.clone(), value.clone());
        }
    }
    headers.insert(
        topology::H_REASON.into(),
        AMQPValue::LongString(reason.into()),
    );
    headers.insert(
        topology::H_SOURCE_QUEUE.into(),
        AMQPValue::LongString(queue.into()),
    );
    let properties = delivery
        .properties
        .clone()
        .with_headers(headers)
        .with_delivery_mode(2);
    let confirm = timed(
        "basic.publish",
        channel.basic_publish(
            topology::EX_DEAD.into(),
            delivery.routing_key.clone(),
            lapin::options::BasicPublishOptions {
                mandatory: true, // the dead-letter queue must exist
                immediate: false,
            },
            &delivery.data,
            properties,
        ),
    )
    .await?;
    match timed("publisher confirm", confirm).await? {
        lapin::Confirmation::Ack(None) => {
            metrics::dead_lettered(queue);
            Ok(())
        }
        other => anyhow::bail!("dead letter not confirmed: {other:?}"),
    }
}

/// Reads a string header from a delivery.
pub fn header(delivery: &Delivery, name: &str) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// Converts an outgoing message's headers for re-publication.
pub fn outgoing_from_delivery(
    delivery: &Delivery,
    exchange: &str,
    routing_key: &str,
) -> OutgoingMessage {
    OutgoingMessage {
        exchange: exchange.to_owned(),
        routing_key: routing_key.to_owned(),
        body: delivery.data.clone(),
        message_id: delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default(),
        headers: Vec::new(),
    }
}

mod metrics {
    use prometheus::{register_int_counter_vec, IntCounterVec};
    use std::sync::LazyLock;

    static LOST_ACKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
        register_int_counter_vec!(
            "loa_amqp_lost_acks_total",
            "Acks the client could not send because the channel had died; the broker redelivers those messages.",
            &["queue"]
        )
        .expect("metric registers once")
    });
    static DEAD_LETTERED: LazyLock<IntCounterVec> = LazyLock::new(|| {
        register_int_counter_vec!(
            "loa_amqp_dead_lettered_total",
            "Messages moved to loa.dead by a consumer, with their reason in a header.",
            &["queue"]
        )
        .expect("metric registers once")
    });

    /// Creates the queue's series at zero, so `increase()` in an alert sees the first
    /// lost ack or dead letter too (a series that appears at 1 has no increase).
    pub fn init(queue: &str) {
        LOST_ACKS.with_label_values(&[queue]);
        DEAD_LETTERED.with_label_values(&[queue]);
    }

    pub fn lost_acks(queue: &str, n: usize) {
        LOST_ACKS.with_label_values(&[queue]).inc_by(n as u64);
    }

    pub fn dead_lettered(queue: &str) {
        DEAD_LETTERED.with_label_values(&[queue]).inc();
    }
}
