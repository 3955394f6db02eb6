//! The AsyncAPI document of Loa's messages on RabbitMQ, committed as
//! `docs/asyncapi.yaml` and kept in step by a test: exchanges, routing keys, queues and
//! their arguments come from [`super::topology`]'s constants, the headers from the
//! constants the services read and write, and the payloads' schemas from the message
//! types themselves ([`loa_contracts::Envelope`], derived by `schemars` as the event
//! schema is), so the document cannot drift from the code.

use super::{
    consumer::{H_SOURCE, H_SOURCE_TOKEN, H_TENANT},
    topology::{
        DELIVERY_LIMIT, EX_CITIZEN, EX_DEAD, EX_EVENTS, EX_INGRESS, EX_NOTIFICATIONS, H_ATTEMPT,
        H_REASON, H_SOURCE_QUEUE, H_TRACEPARENT, Q_DEAD, Q_INGRESS, Q_NOTIFIER_BROADCAST,
        Q_NOTIFIER_TRANSACTIONAL, Q_TRACKER_CITIZEN, Q_TRACKER_EVENTS,
    },
};
use loa_contracts::{event::schemas_for, DossierEvent, Envelope};
use serde_json::{json, Map, Value};

const SCHEMAS: &str = "#/components/schemas/";

fn header(description: &str, ty: &str) -> Value {
    json!({"type": ty, "description": description})
}

fn traceparent() -> (String, Value) {
    (
        H_TRACEPARENT.to_owned(),
        json!({"type": "string", "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
               "description": "W3C trace context of the event the message comes from"}),
    )
}

fn tenant_stamp() -> (String, Value) {
    (
        H_TENANT.to_owned(),
        header(
            "The tenant a Loa service verified (intake from the source's token); a \
             publisher's own `x-loa-…` headers are dropped at intake",
            "string",
        ),
    )
}

fn headers(required: &[&str], props: Vec<(String, Value)>) -> Value {
    json!({"type": "object", "required": required, "properties": Map::from_iter(props)})
}

fn exchange_channel(
    address: &str,
    exchange: &str,
    kind: &str,
    messages: &[&str],
    what: &str,
) -> Value {
    let messages: Map<String, Value> = messages
        .iter()
        .map(|m| {
            (
                (*m).to_owned(),
                json!({"$ref": format!("#/components/messages/{m}")}),
            )
        })
        .collect();
    json!({
        "address": address,
        "description": what,
        "messages": messages,
        "bindings": {"amqp": {"is": "routingKey", "exchange": {
            "name": exchange, "type": kind, "durable": true, "autoDelete": false, "vhost": "/"}}},
    })
}

fn queue_channel(
    queue: &str,
    bound: &str,
    dead_letters: bool,
    messages: &[&str],
    what: &str,
) -> Value {
    let messages: Map<String, Value> = messages
        .iter()
        .map(|m| {
            (
                (*m).to_owned(),
                json!({"$ref": format!("#/components/messages/{m}")}),
            )
        })
        .collect();
    let arguments = if dead_letters {
        json!({"x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT,
               "x-dead-letter-exchange": EX_DEAD, "x-dead-letter-strategy": "at-least-once",
               "x-overflow": "reject-publish"})
    } else {
        json!({"x-queue-type": "quorum"})
    };
    json!({
        "address": queue,
        "description": format!("{what} Bound to {bound}."),
        "messages": messages,
        "bindings": {"amqp": {"is": "queue", "queue": {
            "name": queue, "durable": true, "exclusive": false, "autoDelete": false, "vhost": "/"}}},
        "x-arguments": arguments,
    })
}

fn operation(action: &str, channel: &str, what: &str) -> Value {
    json!({"action": action, "channel": {"$ref": format!("#/channels/{channel}")}, "summary": what})
}

/// The payload schema of each envelope variant, by its `type` tag, taken from the
/// schema `schemars` derives for [`Envelope`].
fn envelope_payloads(envelope: &Value) -> Vec<(String, Value)> {
    envelope["oneOf"]
        .as_array()
        .expect("the envelope is a tagged enum")
        .iter()
        .map(|variant| {
            let tag = variant
                .pointer("/properties/type/enum/0")
                .or_else(|| {
                    variant["allOf"].as_array().and_then(|parts| {
                        parts
                            .iter()
                            .find_map(|p| p.pointer("/properties/type/enum/0"))
                    })
                })
                .and_then(Value::as_str)
                .expect("each variant names its type");
            (tag.to_owned(), variant.clone())
        })
        .collect()
}

fn message(name: &str, title: &str, payload: Value, headers: Value, what: &str) -> (String, Value) {
    (
        name.to_owned(),
        json!({"name": name, "title": title, "summary": what, "contentType": "application/json",
               "headers": headers, "payload": payload,
               "bindings": {"amqp": {"deliveryMode": 2}}}),
    )
}

/// The whole AsyncAPI 3.0 document.
pub fn document() -> Value {
    let mut schemas = schemas_for::<Envelope>(SCHEMAS);
    schemas.extend(schemas_for::<DossierEvent>(SCHEMAS));
    let envelope = schemas
        .get("Envelope")
        .cloned()
        .expect("the envelope's schema");
    let payloads: Map<String, Value> = envelope_payloads(&envelope).into_iter().collect();
    let payload = |tag: &str| {
        payloads
            .get(tag)
            .cloned()
            .unwrap_or_else(|| panic!("no {tag}"))
    };
    let pipeline_headers = |extra: Vec<(String, Value)>| {
        let mut props = vec![traceparent(), tenant_stamp()];
        props.extend(extra);
        headers(&[H_TENANT], props)
    };
    let attempt = (
        H_ATTEMPT.to_owned(),
        json!({"type": "integer", "minimum": 1,
               "description": "The retry engine's count of attempts (1 when absent)"}),
    );
    let messages: Map<String, Value> = [
        message(
            "upstreamEvent",
            "An upstream dossier event",
            json!({"$ref": format!("{SCHEMAS}DossierEvent")}),
            headers(
                &[H_SOURCE_TOKEN],
                vec![
                    (
                        H_SOURCE_TOKEN.to_owned(),
                        header("The source's token (as `Authorization: Bearer` on HTTP); never stored", "string"),
                    ),
                    traceparent(),
                ],
            ),
            "What a one-stop system publishes: the same JSON as `POST /v1/events`, no envelope.",
        ),
        message(
            "dossierEvent",
            "dossier_event.v1",
            payload("dossier_event.v1"),
            pipeline_headers(vec![]),
            "One validated, normalised event, routed `dossier.<tenant>.<status>`.",
        ),
        message(
            "dossierEventBatch",
            "dossier_event_batch.v1",
            payload("dossier_event_batch.v1"),
            pipeline_headers(vec![]),
            "Up to `intake.pack_events` events of one tenant and status, with the routing key each would have had.",
        ),
        message(
            "notificationRequest",
            "notification_request.v1",
            payload("notification_request.v1"),
            pipeline_headers(vec![attempt.clone()]),
            "One notification, routed `<lane>.<tenant>.<kind>`; the notifier dedupes by `notification_id`.",
        ),
        message(
            "notificationBatch",
            "notification_batch.v1",
            payload("notification_batch.v1"),
            pipeline_headers(vec![attempt]),
            "Up to `relay_pack` requests of one tenant and lane, routed `<lane>.<tenant>.batch`; each settled on its own.",
        ),
        message(
            "chatLookup",
            "chat_lookup.v1",
            payload("chat_lookup.v1"),
            headers(&[], vec![traceparent()]),
            "A citizen's \"tra cứu <mã>\" to the OA, routed `lookup.<tenant>`, with the phones linked to the Zalo user; the tracker answers with a `notification_request.v1` of kind `chat_reply` (id from the tenant and `msg_id`).",
        ),
        message(
            "citizenFeedback",
            "citizen_feedback.v1",
            payload("citizen_feedback.v1"),
            headers(&[], vec![traceparent()]),
            "A rating a citizen gave inside Zalo on a message sent with a service-rating template (`user_feedback`), routed `feedback.<tenant>`, with the dossier that message was about; the tracker counts it as the dossier's rating (once per rated message).",
        ),
        message(
            "deadLetter",
            "A dead letter",
            json!({"description": "The body as it was when it died: any of the messages above, or what a publisher sent to loa.ingress"}),
            headers(
                &[H_REASON, H_SOURCE_QUEUE],
                vec![
                    (H_REASON.to_owned(), header("Why it died: `<code>: <field>: <message>` or a consumer's verdict", "string")),
                    (H_SOURCE_QUEUE.to_owned(), header("The queue that gave up on it", "string")),
                    tenant_stamp(),
                    (H_SOURCE.to_owned(), header("The id (never the token) of the source intake verified, for a replay", "string")),
                    ("x-death".to_owned(), header("The broker's record, when the broker dead-lettered it (delivery limit)", "array")),
                ],
            ),
            "Dead-lettered by a consumer (with the reason) or by the broker after the delivery limit; credential headers are dropped.",
        ),
    ]
    .into_iter()
    .collect();
    let channels = json!({
        "ingress": exchange_channel("{routingKey}", EX_INGRESS, "topic", &["upstreamEvent"],
            "Upstream events on AMQP: any routing key, the source token in `x-loa-token`."),
        "events": exchange_channel("dossier.{tenant}.{status}", EX_EVENTS, "topic",
            &["dossierEvent", "dossierEventBatch"], "Validated events, by tenant and national status code."),
        "notifications": exchange_channel("{lane}.{tenant}.{kind}", EX_NOTIFICATIONS, "topic",
            &["notificationRequest", "notificationBatch"],
            "Notification requests; `lane` is `transactional` or `broadcast`, `kind` a notification kind or `batch`."),
        "retryTiers": exchange_channel("{routingKey}", "notifier.delay.{ms}ms", "fanout",
            &["notificationRequest", "notificationBatch"],
            "One fanout exchange and one quorum queue per retry tier (per-message TTL with jitter), dead-lettered back to loa.notifications with the routing key kept."),
        "citizen": exchange_channel("{subject}.{tenant}", EX_CITIZEN, "topic", &["chatLookup", "citizenFeedback"],
            "What citizens ask or tell the OA that the tracker handles: `lookup` (chat lookups to answer) or `feedback` (ratings given in Zalo)."),
        "deadLetters": exchange_channel("{routingKey}", EX_DEAD, "topic", &["deadLetter"],
            "Dead letters from every queue, with their original routing key."),
        "intakeIngress": queue_channel(Q_INGRESS, &format!("{EX_INGRESS} `#`"), true, &["upstreamEvent"],
            "Intake's queue of upstream events."),
        "trackerEvents": queue_channel(Q_TRACKER_EVENTS, &format!("{EX_EVENTS} `dossier.#`"), true,
            &["dossierEvent", "dossierEventBatch"], "The tracker's queue."),
        "trackerCitizen": queue_channel(Q_TRACKER_CITIZEN, &format!("{EX_CITIZEN} `lookup.#`, `feedback.#`"), true,
            &["chatLookup", "citizenFeedback"], "The tracker's queue of chat lookups to answer and ratings given in Zalo to count."),
        "notifierTransactional": queue_channel(Q_NOTIFIER_TRANSACTIONAL, &format!("{EX_NOTIFICATIONS} `transactional.#`"), true,
            &["notificationRequest", "notificationBatch"], "Case updates for the notifier."),
        "notifierBroadcast": queue_channel(Q_NOTIFIER_BROADCAST, &format!("{EX_NOTIFICATIONS} `broadcast.#`"), true,
            &["notificationRequest", "notificationBatch"], "Broadcasts for the notifier: a lane of its own, so they never delay a case update."),
        "deadLetterQueue": queue_channel(Q_DEAD, &format!("{EX_DEAD} `#`"), false, &["deadLetter"],
            "Every dead letter; the notifier stores each (listed and replayed through its API)."),
    });
    let operations = json!({
        "publishUpstreamEvent": operation("send", "ingress", "A one-stop system publishes an event (confirms, mandatory, persistent)."),
        "intakeConsumesIngress": operation("receive", "intakeIngress", "Intake validates, forwards (confirmed) and only then acks."),
        "intakePublishesEvents": operation("send", "events", "Intake publishes what it accepted (HTTP or AMQP), confirmed before it answers."),
        "trackerConsumesEvents": operation("receive", "trackerEvents", "The tracker applies a batch in one transaction, then acks."),
        "notifierPublishesLookups": operation("send", "citizen", "The notifier's relay publishes the chat lookups its webhook recorded, confirmed, then marks them forwarded."),
        "trackerConsumesLookups": operation("receive", "trackerCitizen", "The tracker writes each lookup's answer to its outbox in one transaction, then acks."),
        "notifierPublishesFeedback": operation("send", "citizen", "The notifier's feedback relay publishes the ratings its webhook recorded, confirmed, then marks them forwarded."),
        "trackerConsumesFeedback": operation("receive", "trackerCitizen", "The tracker records each rating as its dossier's (one per rated message), then acks."),
        "relayPublishesNotifications": operation("send", "notifications", "The outbox relay publishes planned notifications, confirmed, then deletes their rows."),
        "notifierPublishesTextReplies": operation("send", "notifications", "The notifier's text reply relay publishes the automatic `chat_reply` to a citizen's first other text of the day (id from the tenant and `msg_id`), confirmed, then marks the text forwarded."),
        "notifierConsumesTransactional": operation("receive", "notifierTransactional", "The notifier claims, sends, records, then acks, retries or dead-letters."),
        "notifierConsumesBroadcast": operation("receive", "notifierBroadcast", "As for case updates, with their own concurrency."),
        "notifierRetries": operation("send", "retryTiers", "A transient failure waits in a retry tier with `x-loa-attempt` + 1."),
        "servicesDeadLetter": operation("send", "deadLetters", "A consumer dead-letters what it cannot process, with the reason."),
        "notifierStoresDeadLetters": operation("receive", "deadLetterQueue", "The notifier stores every dead letter before acking it."),
    });
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Loa messages",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Loa's exchanges, queues, routing keys, headers and message payloads on RabbitMQ. \
                Generated from the code (loa_platform::amqp::asyncapi); do not edit by hand: \
                `LOA_UPDATE_SCHEMA=1 cargo test --test e2e schema` rewrites it. Every work queue is a \
                durable quorum queue; messages are persistent JSON, published mandatory on confirm-mode channels.",
        },
        "defaultContentType": "application/json",
        "servers": {"rabbitmq": {"host": "rabbitmq:5672", "protocol": "amqp", "protocolVersion": "0.9.1",
            "description": "Every service's `amqp_url` (several hosts for a cluster)"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    })
}

/// `value` as block-style YAML (JSON strings are valid YAML double-quoted scalars, so
/// every string is written that way; keys are plain when they can be).
pub fn yaml(value: &Value) -> String {
    let mut out = String::new();
    write_yaml(value, 0, &mut out);
    out
}

fn plain_key(key: &str) -> String {
    let safe = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        && key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && !matches!(
            key.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if safe {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::Object(map) if map.is_empty() => Some("{}".to_owned()),
        Value::Array(items) if items.is_empty() => Some("[]".to_owned()),
        Value::Object(_) | Value::Array(_) => None,
        other => Some(other.to_string()),
    }
}

fn write_yaml(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                out.push_str(&format!("{pad}{}:", plain_key(key)));
                match scalar(v) {
                    Some(s) => out.push_str(&format!(" {s}\n")),
                    None => {
                        out.push('\n');
                        write_yaml(v, indent + 2, out);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                match scalar(item) {
                    Some(s) => out.push_str(&format!("{pad}- {s}\n")),
                    None => {
                        out.push_str(&format!("{pad}-\n"));
                        write_yaml(item, indent + 2, out);
                    }
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other).unwrap_or_default())),
    }
}
