//! Exchanges and queues, declared idempotently by every service when it connects, so
//! no publish can race a missing queue. Queue arguments are a schema: changing one
//! needs a new queue name (RabbitMQ refuses a re-declare with other arguments).

use lapin::{
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
    Channel, ExchangeKind,
};

/// Raw upstream events for the AMQP intake path (topic; any routing key).
pub const EX_INGRESS: &str = "loa.ingress";
/// Validated events, routed `dossier.<tenant>.<status>`.
pub const EX_EVENTS: &str = "loa.events";
/// Notification requests, routed `<lane>.<tenant>.<kind>`.
pub const EX_NOTIFICATIONS: &str = "loa.notifications";
/// Dead letters from every queue, keeping the original routing key.
pub const EX_DEAD: &str = "loa.dead";

/// Intake's queue on [`EX_INGRESS`].
pub const Q_INGRESS: &str = "intake.ingress";
/// The tracker's queue on [`EX_EVENTS`].
pub const Q_TRACKER_EVENTS: &str = "tracker.events";
/// Case updates for the notifier.
pub const Q_NOTIFIER_TRANSACTIONAL: &str = "notifier.transactional";
/// Broadcast messages for the notifier, a separate lane so they never delay case updates.
pub const Q_NOTIFIER_BROADCAST: &str = "notifier.broadcast";
/// Where every dead letter lands, inspectable and replayable.
pub const Q_DEAD: &str = "loa.dead-letters";

/// Header carrying why a message was dead-lettered.
pub const H_REASON: &str = "x-loa-reason";
/// Header naming the queue a dead letter came from.
pub const H_SOURCE_QUEUE: &str = "x-loa-source-queue";
/// Header carrying the W3C trace context.
pub const H_TRACEPARENT: &str = "traceparent";

/// Deliveries of one message before the broker dead-letters it as poison.
pub const DELIVERY_LIMIT: i32 = 10;

/// Delay queues (retries without a broker plugin): a headers exchange that routes a
/// message to the delay queue named in its [`H_DELAY_QUEUE`] header, keeping the
/// message's routing key, so that when it expires there it is dead-lettered back to
/// its work exchange with the routing key it was first published with.
pub const EX_DELAY: &str = "loa.delay";
/// Header naming the delay queue a message is published to through [`EX_DELAY`].
pub const H_DELAY_QUEUE: &str = "x-loa-delay-queue";
/// Header counting a message's attempts (1 when absent): the retry engine's own count,
/// independent of the broker's delivery count.
pub const H_ATTEMPT: &str = "x-loa-attempt";

/// The name of the delay queue of `prefix` that holds messages for `ttl` at most:
/// `notifier.delay.6000ms`. The TTL is in the name because queue arguments cannot
/// change: another TTL is another queue.
pub fn delay_queue_name(prefix: &str, ttl: std::time::Duration) -> String {
    format!("{prefix}.delay.{}ms", ttl.as_millis())
}

/// Declares [`EX_DELAY`] and a quorum delay queue on it: messages wait up to `ttl`
/// (less when their own `expiration` is shorter, for jitter), then are dead-lettered,
/// at least once, to `back_to` with their routing key. No consumer ever reads it.
/// Idempotent.
pub async fn declare_delay_queue(
    channel: &Channel,
    name: &str,
    ttl: std::time::Duration,
    back_to: &str,
) -> anyhow::Result<()> {
    declare_exchange_of_kind(channel, EX_DELAY, ExchangeKind::Headers).await?;
    // An expired message is confirmed by the work queue before the delay queue drops it.
    let mut args = quorum_args(Some(back_to));
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
    declare_quorum_queue(channel, name, args).await?;
    let mut binding = FieldTable::default();
    binding.insert("x-match".into(), AMQPValue::LongString("all".into()));
    binding.insert(H_DELAY_QUEUE.into(), AMQPValue::LongString(name.into()));
    super::timed(
        "queue.bind",
        channel.queue_bind(
            name.into(),
            EX_DELAY.into(),
            "".into(),
            QueueBindOptions { nowait: false },
            binding,
        ),
    )
    .await
}

/// Declares the whole topology. Idempotent.
pub async fn declare(channel: &Channel) -> anyhow::Result<()> {
    for ex in [EX_INGRESS, EX_EVENTS, EX_NOTIFICATIONS, EX_DEAD] {
        declare_exchange(channel, ex).await?;
    }
    declare_queue(channel, Q_DEAD, None).await?;
    bind(channel, Q_DEAD, EX_DEAD, "#").await?;
    declare_work_queue(channel, Q_INGRESS, EX_INGRESS, &["#"]).await?;
    declare_work_queue(channel, Q_TRACKER_EVENTS, EX_EVENTS, &["dossier.#"]).await?;
    declare_work_queue(
        channel,
        Q_NOTIFIER_TRANSACTIONAL,
        EX_NOTIFICATIONS,
        &["transactional.#"],
    )
    .await?;
    declare_work_queue(
        channel,
        Q_NOTIFIER_BROADCAST,
        EX_NOTIFICATIONS,
        &["broadcast.#"],
    )
    .await?;
    Ok(())
}

/// Declares a durable topic exchange.
pub async fn declare_exchange(channel: &Channel, name: &str) -> anyhow::Result<()> {
    declare_exchange_of_kind(channel, name, ExchangeKind::Topic).await
}

async fn declare_exchange_of_kind(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
) -> anyhow::Result<()> {
    let options = ExchangeDeclareOptions {
        passive: false,     // create it when missing
        durable: true,      // survives a broker restart
        auto_delete: false, // stays when no queue is bound
        internal: false,    // clients publish to it
        nowait: false,      // wait for the broker's answer
    };
    super::timed(
        "exchange.declare",
        channel.exchange_declare(name.into(), kind, options, FieldTable::default()),
    )
    .await
}

/// Declares a durable quorum work queue that dead-letters to [`EX_DEAD`] after
/// [`DELIVERY_LIMIT`] deliveries, and binds it.
pub async fn declare_work_queue(
    channel: &Channel,
    name: &str,
    exchange: &str,
    keys: &[&str],
) -> anyhow::Result<()> {
    declare_queue(channel, name, Some(EX_DEAD)).await?;
    for key in keys {
        bind(channel, name, exchange, key).await?;
    }
    Ok(())
}

/// Declares a durable quorum queue, optionally dead-lettering to `dlx`.
pub async fn declare_queue(channel: &Channel, name: &str, dlx: Option<&str>) -> anyhow::Result<()> {
    let mut args = quorum_args(dlx);
    if dlx.is_some() {
        // Explicit: RabbitMQ 3.10 has no default delivery limit.
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(DELIVERY_LIMIT),
        );
    }
    declare_quorum_queue(channel, name, args).await
}

/// Arguments of a quorum queue that, with `dlx`, dead-letters at least once to it (the
/// target confirms the dead letter before the source drops it).
fn quorum_args(dlx: Option<&str>) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if let Some(dlx) = dlx {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(dlx.into()),
        );
        args.insert(
            "x-dead-letter-strategy".into(),
            AMQPValue::LongString("at-least-once".into()),
        );
        // Required by at-least-once dead-lettering.
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
    }
    args
}

async fn declare_quorum_queue(
    channel: &Channel,
    name: &str,
    args: FieldTable,
) -> anyhow::Result<()> {
    let options = QueueDeclareOptions {
        passive: false,     // create it when missing
        durable: true,      // quorum queues are always durable
        exclusive: false,   // shared by every replica
        auto_delete: false, // outlives its consumers (delay queues have none, by design)
        nowait: false,      // wait for the broker's answer
    };
    super::timed(
        "queue.declare",
        channel.queue_declare(name.into(), options, args),
    )
    .await?;
    Ok(())
}

/// Binds a queue to an exchange.
pub async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> anyhow::Result<()> {
    super::timed(
        "queue.bind",
        channel.queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions { nowait: false },
            FieldTable::default(),
        ),
    )
    .await
}
