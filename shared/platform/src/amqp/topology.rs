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
/// What citizens ask or tell the OA that the tracker handles: chat lookups, routed
/// `lookup.<tenant>`, and ratings given in Zalo, routed `feedback.<tenant>`.
pub const EX_CITIZEN: &str = "loa.citizen";
/// Dead letters from every queue, keeping the original routing key.
pub const EX_DEAD: &str = "loa.dead";

/// Intake's queue on [`EX_INGRESS`].
pub const Q_INGRESS: &str = "intake.ingress";
/// The tracker's queue on [`EX_EVENTS`].
pub const Q_TRACKER_EVENTS: &str = "tracker.events";
/// The tracker's queue on [`EX_CITIZEN`]: chat lookups to answer, ratings to count.
pub const Q_TRACKER_CITIZEN: &str = "tracker.citizen";
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

/// Header counting a message's attempts (1 when absent): the retry engine's own count,
/// independent of the broker's delivery count.
pub const H_ATTEMPT: &str = "x-loa-attempt";

/// The name of the delay tier of `prefix` that holds messages for `ttl` at most:
/// `notifier.delay.6000ms`. The TTL is in the name because queue arguments cannot
/// change: another TTL is another queue.
pub fn delay_queue_name(prefix: &str, ttl: std::time::Duration) -> String {
    format!("{prefix}.delay.{}ms", ttl.as_millis())
}

/// Declares one delay tier (retries without a broker plugin): a fanout exchange and a
/// quorum queue, both named `name`, bound one to one. A message published to the
/// exchange, with any routing key, lands in that one queue, waits up to `ttl` (less
/// when its own `expiration` is shorter, for jitter), then is dead-lettered, at least
/// once, to `back_to` with the routing key it was published with, so it returns to
/// the work queue it came from. No consumer ever reads the queue. Idempotent.
///
/// Why a fanout exchange per tier and not one exchange for all tiers: the tier must
/// be chosen by something the broker matches while the routing key stays the
/// message's own (the dead-letter hop routes by it). A headers exchange keyed on our
/// own `x-…` header looks right but is not: RabbitMQ ignores binding arguments whose
/// names start with `x-` when matching, so such a binding matches every message and
/// each retry was copied into every tier. A direct exchange or the default exchange
/// would need the tier as routing key and lose the original one. Exchanges cost
/// nothing at rest.
pub async fn declare_delay_tier(
    channel: &Channel,
    name: &str,
    ttl: std::time::Duration,
    back_to: &str,
) -> anyhow::Result<()> {
    declare_exchange_of_kind(channel, name, ExchangeKind::Fanout).await?;
    // An expired message is confirmed by the work queue before the delay queue drops it.
    let mut args = quorum_args(Some(back_to));
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl_ms));
    declare_quorum_queue(channel, name, args).await?;
    bind(channel, name, name, "").await
}

/// Declares the whole topology. Idempotent.
pub async fn declare(channel: &Channel) -> anyhow::Result<()> {
    for ex in [EX_INGRESS, EX_EVENTS, EX_NOTIFICATIONS, EX_CITIZEN, EX_DEAD] {
        declare_exchange(channel, ex).await?;
    }
    declare_queue(channel, Q_DEAD, None).await?;
    bind(channel, Q_DEAD, EX_DEAD, "#").await?;
    declare_work_queue(channel, Q_INGRESS, EX_INGRESS, &["#"]).await?;
    declare_work_queue(channel, Q_TRACKER_EVENTS, EX_EVENTS, &["dossier.#"]).await?;
    declare_work_queue(
        channel,
        Q_TRACKER_CITIZEN,
        EX_CITIZEN,
        &["lookup.#", "feedback.#"],
    )
    .await?;
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
