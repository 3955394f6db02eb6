//! Dead letters: every message a Loa consumer gave up on, or the broker dead-lettered
//! after its delivery limit, lands in `loa.dead-letters`. The notifier stores each one
//! in `notifier.dead_letters`, lists them and replays them to where they came from.
//!
//! - [`DeadLetters::run_consumer`] consumes `loa.dead-letters` in batches, [`parse`]s
//!   every message (source queue and reason from our `x-loa-source-queue` /
//!   `x-loa-reason` headers, or from the broker's `x-death` for a delivery-limit dead
//!   letter; the tenant as below; credentials dropped), [`store`]s the batch in one
//!   statement and only then acks. Storing is idempotent on a content hash: a redelivered dead letter, or the
//!   same message dead-lettered twice for the same reason, stays one row; a replayed
//!   row that dies again is revived (`replayed_at` cleared, `deaths` counted up).
//! - [`list`] and [`replay`] are the logic shared by `GET /v1/dead-letters`,
//!   `POST /v1/dead-letters/replay` ([`DeadLetters::router`]) and `loa dead-letters`.
//!   A replay republishes each message, confirmed, to its original exchange and
//!   routing key with its original headers minus the dead-letter ones (and without
//!   `x-loa-attempt`, so retries start over), then marks it replayed.
//!
//! # Whose dead letter it is
//!
//! The tenant is never read from the body, which anyone who can publish to
//! `loa.ingress` writes. It is the tenant a Loa service verified and stamped in
//! `x-loa-tenant` (see `loa_platform::amqp::consumer`): intake stamps the tenant of the
//! source token it verified (on ingress dead letters and on every event it forwards),
//! the tracker and the notifier the tenant of the events and requests that descend from
//! those. The one exception is a raw upstream message the broker itself dead-lettered
//! from `intake.ingress` (its delivery limit): every header on it is the publisher's,
//! so the stamp and our reason headers on it are ignored, and its `x-loa-token` is
//! verified here instead. Without a verified tenant a row has none: operators only.
//!
//! Credentials (`x-loa-token`, `authorization`) are never stored. An AMQP ingress
//! message therefore cannot be replayed with the token it came with: intake stamps the
//! verified source's id (`x-loa-source`, never its token), and a replay presents that
//! source's *current* token from the tenants file, so intake authenticates it again and
//! a source removed since then cannot be replayed. An ingress dead letter without a
//! verified source is skipped: its publisher must send it again.
//!
//! The HTTP API is scoped to the tenant whose admin token is presented: another
//! tenant's rows, and rows without a tenant, are invisible. The CLI (an operator with
//! database access) may see every tenant.

use crate::routes::query::{invalid_query, QueryParams};
use anyhow::Context;
use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::{HeaderMap, StatusCode},
    routing::{get, post},
    Json, Router,
};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use lapin::{
    message::Delivery,
    types::{AMQPValue, FieldTable},
    BasicProperties,
};
use loa_platform::{
    amqp::{
        consumer::{is_credential_header, H_SOURCE, H_SOURCE_TOKEN, H_TENANT},
        run_batch_consumer, topology, BatchConsumerSettings, BrokerStatus, Disposition,
        OutgoingMessage, PublishError, Publisher,
    },
    http::{ApiError, JsonBody},
    LiveTenants, Tenants,
};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};
use tokio_util::sync::CancellationToken;

/// The reason stored for a message the broker dead-lettered after
/// [`topology::DELIVERY_LIMIT`] deliveries.
pub(crate) const DELIVERY_LIMIT_REASON: &str = "delivery limit exceeded";
/// The retry engine's attempt counter; a replay starts the count over.
pub(crate) const H_ATTEMPT: &str = "x-loa-attempt";
/// The metrics label of a tenant that is not configured (or not named).
pub(crate) const UNKNOWN_TENANT: &str = "unknown";
/// Most rows one list page returns.
pub const MAX_PAGE: i64 = 500;
/// Most ids one replay request may name.
pub(crate) const MAX_REPLAY_IDS: usize = 1000;
/// Rows replayed per transaction (and per pipelined, confirmed publish).
const REPLAY_CHUNK: i64 = 200;
/// Headers that describe a death, not the message: dropped on replay.
const DEATH_HEADERS: &[&str] = &[
    topology::H_REASON,
    topology::H_SOURCE_QUEUE,
    H_ATTEMPT,
    "x-loa-delay-queue",
    "x-death",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-first-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-last-death-exchange",
    "x-delivery-count",
];

/// The exchange a message consumed from `queue` was published to, so a replay can
/// publish it there again. `None` for a queue Loa does not know.
pub(crate) fn exchange_for_queue(queue: &str) -> Option<&'static str> {
    match queue {
        topology::Q_TRACKER_EVENTS => Some(topology::EX_EVENTS),
        topology::Q_INGRESS => Some(topology::EX_INGRESS),
        q if q.starts_with("notifier.") => Some(topology::EX_NOTIFICATIONS),
        _ => None,
    }
}

/// A dead letter as consumed, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewDeadLetter {
    /// The tenant a Loa service verified (see the module docs), if any.
    pub tenant: Option<String>,
    /// The queue that gave up on it (`unknown` when no header says).
    pub source_queue: String,
    /// Where a replay publishes it (`None`: not replayable).
    pub exchange: Option<String>,
    /// The routing key it was published with.
    pub routing_key: String,
    /// Why it died.
    pub reason: String,
    /// Every AMQP header but credentials, as JSON, with the trusted stamps only.
    pub headers: Value,
    /// The raw body.
    pub body: Vec<u8>,
    /// The publisher's message id (event or notification id), if any.
    pub message_id: Option<String>,
    /// sha256 of source queue, reason, routing key, message id, body and tenant.
    pub content_hash: Vec<u8>,
}

/// Reads a dead letter's origin, reason and tenant from its routing key and
/// properties (the tenant as the module docs say: a trusted stamp, or for a raw
/// ingress message the tenant of its token, verified against `tenants`). Never fails:
/// whatever cannot be read is stored as unknown.
pub(crate) fn parse(
    routing_key: &str,
    properties: &BasicProperties,
    body: &[u8],
    tenants: &Tenants,
) -> NewDeadLetter {
    let headers = properties.headers().clone().unwrap_or_default();
    let text = |name: &str| headers.inner().get(name).and_then(as_text);
    let death = latest_death(&headers);
    // The broker moved it straight out of the ingress queue: no Loa service wrote any
    // of its headers.
    let raw_ingress = death
        .as_ref()
        .is_some_and(|d| d.queue.as_deref() == Some(topology::Q_INGRESS));
    let ours = |name: &str| if raw_ingress { None } else { text(name) };
    let source_queue = ours(topology::H_SOURCE_QUEUE)
        .or_else(|| death.as_ref().and_then(|d| d.queue.clone()))
        .unwrap_or_else(|| "unknown".to_owned());
    let reason = ours(topology::H_REASON).unwrap_or_else(|| match death.as_ref() {
        Some(Death {
            reason: Some(r), ..
        }) if r == "delivery_limit" => DELIVERY_LIMIT_REASON.to_owned(),
        Some(Death {
            reason: Some(r), ..
        }) => format!("dead-lettered by the broker: {r}"),
        _ => "unknown".to_owned(),
    });
    let exchange = exchange_for_queue(&source_queue)
        .map(str::to_owned)
        .or_else(|| {
            // A queue we do not know: trust the broker's record of where it came from.
            death
                .as_ref()
                .filter(|_| ours(topology::H_REASON).is_none())
                .and_then(|d| d.exchange.clone())
                .filter(|e| !e.is_empty())
        });
    let message_id = properties
        .message_id()
        .as_ref()
        .map(|m| m.as_str().to_owned())
        .filter(|m| !m.is_empty());
    let (tenant, source) = if raw_ingress {
        text(H_SOURCE_TOKEN)
            .and_then(|token| tenants.source_by_token(&token))
            .map(|(t, s)| (Some(t.id.clone()), Some(s.id.clone())))
            .unwrap_or_default()
    } else {
        (text(H_TENANT), text(H_SOURCE))
    };
    let short =
        |t: String| Some(t.trim().to_owned()).filter(|t| !t.is_empty() && t.chars().count() <= 100);
    let (tenant, source) = (tenant.and_then(short), source.and_then(short));
    let content_hash = content_hash(
        &source_queue,
        &reason,
        routing_key,
        message_id.as_deref(),
        body,
        tenant.as_deref(),
    );
    let mut kept = FieldTable::default();
    for (name, value) in headers.inner() {
        let name_text = name.as_str();
        if !is_credential_header(name_text) && name_text != H_TENANT && name_text != H_SOURCE {
            kept.insert(name.clone(), value.clone());
        }
    }
    if let Some(tenant) = &tenant {
        kept.insert(
            H_TENANT.into(),
            AMQPValue::LongString(tenant.as_str().into()),
        );
    }
    if let Some(source) = &source {
        kept.insert(
            H_SOURCE.into(),
            AMQPValue::LongString(source.as_str().into()),
        );
    }
    NewDeadLetter {
        tenant,
        source_queue,
        exchange,
        routing_key: routing_key.to_owned(),
        reason,
        headers: table_to_json(&kept),
        body: body.to_vec(),
        message_id,
        content_hash,
    }
}

/// [`parse`] for a consumed delivery.
pub(crate) fn from_delivery(delivery: &Delivery, tenants: &Tenants) -> NewDeadLetter {
    parse(
        delivery.routing_key.as_str(),
        &delivery.properties,
        &delivery.data,
        tenants,
    )
}

/// The dedupe key of a dead letter. The tenant is hashed only when there is one (the
/// same garbage from two tenants is two rows; rows without a tenant keep the hash they
/// had before tenants were part of it).
fn content_hash(
    source_queue: &str,
    reason: &str,
    routing_key: &str,
    message_id: Option<&str>,
    body: &[u8],
    tenant: Option<&str>,
) -> Vec<u8> {
    let mut hasher = Sha256::new();
    let parts = [
        source_queue.as_bytes(),
        reason.as_bytes(),
        routing_key.as_bytes(),
        message_id.unwrap_or_default().as_bytes(),
        body,
    ];
    for part in parts.into_iter().chain(tenant.map(str::as_bytes)) {
        // Length-prefixed, so no two different tuples hash the same bytes.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().to_vec()
}

/// The most recent entry of the broker's `x-death` header.
struct Death {
    queue: Option<String>,
    exchange: Option<String>,
    reason: Option<String>,
}

fn latest_death(headers: &FieldTable) -> Option<Death> {
    // RabbitMQ keeps the most recent death first.
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(first) = deaths.as_slice().first()? else {
        return None;
    };
    let field = |name: &str| first.inner().get(name).and_then(as_text);
    Some(Death {
        queue: field("queue"),
        exchange: field("exchange"),
        reason: field("reason"),
    })
}

fn as_text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// AMQP headers as JSON: strings, numbers, booleans, nested tables and arrays as
/// themselves; timestamps as seconds; byte arrays as hex.
pub(crate) fn table_to_json(table: &FieldTable) -> Value {
    Value::Object(
        table
            .inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), amqp_to_json(v)))
            .collect(),
    )
}

fn amqp_to_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Float(n) => json!(n),
        AMQPValue::Double(n) => json!(n),
        AMQPValue::DecimalValue(d) => json!(f64::from(d.value) / 10f64.powi(i32::from(d.scale))),
        AMQPValue::ShortString(_) | AMQPValue::LongString(_) => {
            json!(as_text(value).unwrap_or_default())
        }
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(amqp_to_json).collect()),
        AMQPValue::Timestamp(t) => json!(t),
        AMQPValue::FieldTable(t) => table_to_json(t),
        AMQPValue::ByteArray(b) => json!(hex::encode(b.as_slice())),
        AMQPValue::Void => Value::Null,
    }
}

/// The headers a replay publishes: the stored ones minus those describing a death
/// (and any credential, should a row hold one), as strings (the only header type
/// Loa's publishers write).
pub(crate) fn replay_headers(stored: &Value) -> Vec<(String, String)> {
    let Some(map) = stored.as_object() else {
        return Vec::new();
    };
    map.iter()
        .filter(|(k, _)| !DEATH_HEADERS.contains(&k.as_str()) && !is_credential_header(k))
        .filter_map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((k.clone(), text))
        })
        .collect()
}

/// The headers that replay an AMQP ingress message: [`replay_headers`] without our
/// stamps (intake sets its own), plus the current token of the source intake verified
/// when the message died (`x-loa-source` of `tenant`), so intake authenticates the
/// replay as it would a new message. `Err` says why it cannot be replayed.
pub(crate) fn ingress_replay_headers(
    tenants: &Tenants,
    tenant: Option<&str>,
    stored: &Value,
) -> Result<Vec<(String, String)>, String> {
    let source = stored.get(H_SOURCE).and_then(Value::as_str);
    let (Some(tenant), Some(source)) = (tenant, source) else {
        return Err(
            "an AMQP ingress message is replayed with the token of the source intake \
                    verified, and this one came without a valid token: its publisher must \
                    send it again"
                .to_owned(),
        );
    };
    let configured = tenants
        .get(tenant)
        .and_then(|t| t.sources.iter().find(|s| s.id == source))
        .ok_or_else(|| {
            format!("its source {source:?} is no longer configured for tenant {tenant:?}")
        })?;
    let token = configured
        .token
        .plain()
        .map(|t| t.expose().to_owned())
        .ok_or_else(|| {
            format!(
                "its source {source:?} has only a hash of its token in the tenants file, \
                 which cannot be presented to intake: its publisher must send it again"
            )
        })?;
    let mut headers: Vec<(String, String)> = replay_headers(stored)
        .into_iter()
        .filter(|(k, _)| k != H_TENANT && k != H_SOURCE)
        .collect();
    headers.push((H_SOURCE_TOKEN.to_owned(), token));
    Ok(headers)
}

/// A metrics label for a reason: its leading `snake_case` code (`unauthorized`,
/// `invalid_json`), `zalo_<code>` for a Zalo error, `delivery_limit`, `undecodable`,
/// or `other`, so free text never becomes a label value.
pub(crate) fn reason_label(reason: &str) -> String {
    if reason == DELIVERY_LIMIT_REASON {
        return "delivery_limit".to_owned();
    }
    if reason.contains("(gave up after ") {
        return "gave_up".to_owned();
    }
    if let Some(rest) = reason.strip_prefix("zalo error ") {
        let code: String = rest
            .chars()
            .take_while(|c| *c == '-' || c.is_ascii_digit())
            .collect();
        if let Ok(code) = code.parse::<i32>() {
            if (-100_000..=100_000).contains(&code) {
                return format!("zalo_{code}");
            }
        }
    }
    if reason.starts_with("undecodable") {
        return "undecodable".to_owned();
    }
    let code = reason.split(':').next().unwrap_or_default();
    let is_code = !code.is_empty()
        && code.len() <= 40
        && code.starts_with(|c: char| c.is_ascii_lowercase())
        && code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if is_code && reason.len() > code.len() {
        return code.to_owned();
    }
    match reason {
        "unknown" => "unknown".to_owned(),
        r if r.starts_with("dead-lettered by the broker") => "broker".to_owned(),
        r if r.starts_with("not a ") => "wrong_type".to_owned(),
        r if r.starts_with("no Zalo template") => "no_template".to_owned(),
        r if r.starts_with("unknown tenant") => "unknown_tenant".to_owned(),
        _ => "other".to_owned(),
    }
}

/// Stores dead letters in one statement (duplicates folded onto their row) and
/// returns each one that is new, or revived after a replay (not plain duplicates).
pub(crate) async fn store(
    pool: &Pool,
    letters: &[NewDeadLetter],
) -> anyhow::Result<Vec<StoredLetter>> {
    // One row per hash: ON CONFLICT cannot touch the same row twice in a statement.
    let mut seen = HashSet::new();
    let unique: Vec<&NewDeadLetter> = letters
        .iter()
        .filter(|l| seen.insert(l.content_hash.as_slice()))
        .collect();
    if unique.is_empty() {
        return Ok(Vec::new());
    }
    let hashes: Vec<&[u8]> = unique.iter().map(|l| l.content_hash.as_slice()).collect();
    let tenants: Vec<Option<&str>> = unique.iter().map(|l| l.tenant.as_deref()).collect();
    let queues: Vec<&str> = unique.iter().map(|l| l.source_queue.as_str()).collect();
    let exchanges: Vec<Option<&str>> = unique.iter().map(|l| l.exchange.as_deref()).collect();
    let keys: Vec<&str> = unique.iter().map(|l| l.routing_key.as_str()).collect();
    let reasons: Vec<&str> = unique.iter().map(|l| l.reason.as_str()).collect();
    let headers: Vec<&Value> = unique.iter().map(|l| &l.headers).collect();
    let bodies: Vec<&[u8]> = unique.iter().map(|l| l.body.as_slice()).collect();
    let message_ids: Vec<Option<&str>> = unique.iter().map(|l| l.message_id.as_deref()).collect();
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let rows = client
        .query(
            "INSERT INTO notifier.dead_letters AS d
                    (content_hash, tenant, source_queue, exchange, routing_key, reason, headers, body,
                     message_id)
             SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::jsonb[], $8::bytea[], $9::text[])
             ON CONFLICT (content_hash) DO UPDATE
                SET replayed_at = NULL, dead_at = now(), deaths = d.deaths + 1,
                    headers = EXCLUDED.headers
              WHERE d.replayed_at IS NOT NULL
             RETURNING d.id, d.tenant, d.reason",
            &[
                &hashes,
                &tenants,
                &queues,
                &exchanges,
                &keys,
                &reasons,
                &headers,
                &bodies,
                &message_ids,
            ],
        )
        .await
        .context("Failed to store dead letters")?;
    Ok(rows
        .iter()
        .map(|r| StoredLetter {
            id: r.get(0),
            tenant: r.get(1),
            reason: r.get(2),
        })
        .collect())
}

/// A dead letter [`store`] wrote (new, or revived after a replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredLetter {
    /// Its row id.
    pub id: i64,
    /// Its tenant, if one was verified.
    pub tenant: Option<String>,
    /// Why it died.
    pub reason: String,
}

/// Filters of a list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this tenant's rows; `None` lists every tenant (operators only).
    pub tenant: Option<String>,
    /// Reasons starting with this.
    pub reason: Option<String>,
    /// Only dead letters from this queue.
    pub source_queue: Option<String>,
    /// Only those that died at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// `Some(false)`: not replayed yet; `Some(true)`: replayed.
    pub replayed: Option<bool>,
    /// Keyset paging: only ids above this.
    pub after_id: i64,
    /// Page size (1..=[`MAX_PAGE`]).
    pub limit: i64,
}

/// One dead letter as the API and the CLI show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetterView {
    /// Row id (for replays and paging).
    pub id: i64,
    /// The tenant whose source or events it came from, as verified (never the body's).
    pub tenant: Option<String>,
    /// The queue that gave up on it.
    pub source_queue: String,
    /// Where a replay publishes it (`null`: not replayable).
    pub exchange: Option<String>,
    /// Original routing key.
    pub routing_key: String,
    /// Why it died.
    pub reason: String,
    /// The publisher's message id.
    pub message_id: Option<String>,
    /// When it (last) died.
    pub dead_at: DateTime<Utc>,
    /// How often it died (a replayed message may die again).
    pub deaths: i32,
    /// When it was last replayed.
    pub replayed_at: Option<DateTime<Utc>>,
    /// How often it was replayed.
    pub replay_count: i32,
    /// The body, when it is JSON.
    #[schema(value_type = Option<Object>)]
    pub body: Option<Value>,
    /// The body as text, when it is not JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_text: Option<String>,
}

/// Lists dead letters by ascending id.
pub async fn list(pool: &Pool, filter: &ListFilter) -> anyhow::Result<Vec<DeadLetterView>> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let rows = client
        .query(
            "SELECT id, tenant, source_queue, exchange, routing_key, reason, message_id, dead_at, deaths,
                    replayed_at, replay_count, body
               FROM notifier.dead_letters
              WHERE ($1::text IS NULL OR tenant = $1)
                AND ($2::text IS NULL OR starts_with(reason, $2))
                AND ($3::text IS NULL OR source_queue = $3)
                AND ($4::timestamptz IS NULL OR dead_at >= $4)
                AND ($5::bool IS NULL OR (replayed_at IS NOT NULL) = $5)
                AND id > $6
              ORDER BY id
              LIMIT $7",
            &[
                &filter.tenant,
                &filter.reason,
                &filter.source_queue,
                &filter.since,
                &filter.replayed,
                &filter.after_id,
                &filter.limit.clamp(1, MAX_PAGE),
            ],
        )
        .await
        .context("Failed to list dead letters")?;
    Ok(rows
        .iter()
        .map(|r| {
            let raw: Vec<u8> = r.get(11);
            let (body, body_text) = match serde_json::from_slice::<Value>(&raw) {
                Ok(v) => (Some(v), None),
                Err(_) => (None, Some(String::from_utf8_lossy(&raw).into_owned())),
            };
            DeadLetterView {
                id: r.get(0),
                tenant: r.get(1),
                source_queue: r.get(2),
                exchange: r.get(3),
                routing_key: r.get(4),
                reason: r.get(5),
                message_id: r.get(6),
                dead_at: r.get(7),
                deaths: r.get(8),
                replayed_at: r.get(9),
                replay_count: r.get(10),
                body,
                body_text,
            }
        })
        .collect())
}

/// Which dead letters a replay takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These ids, replayed or not (asking by id means it).
    Ids(Vec<i64>),
    /// Every one not replayed yet.
    All,
    /// Those not replayed yet that match (reason by prefix, source queue exactly).
    Filter {
        /// Reason prefix.
        reason: Option<String>,
        /// Source queue.
        source_queue: Option<String>,
    },
}

/// A dead letter a replay left alone, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Skipped {
    /// Its id.
    pub id: i64,
    /// Why it was not replayed.
    pub why: String,
}

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ReplayReport {
    /// How many were republished and marked replayed.
    pub replayed: usize,
    /// Their ids.
    pub replayed_ids: Vec<i64>,
    /// Asked-for ids that do not exist (or belong to another tenant).
    pub not_found: Vec<i64>,
    /// Selected but not replayable.
    pub skipped: Vec<Skipped>,
}

/// Why a replay stopped early. What was replayed before stays replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The broker did not confirm; nothing of the failing chunk is marked replayed.
    #[error("the broker did not confirm the replay after {replayed} message(s): {source}")]
    Unavailable {
        /// Messages replayed (and marked) before the failure.
        replayed: usize,
        /// The publish failure.
        source: PublishError,
    },
    /// The database failed.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Replays the selected dead letters of `tenant` (`None`: every tenant; operators
/// only). Works in chunks: each chunk's rows are locked, published with confirms,
/// then marked replayed in the same transaction; concurrent replays skip each other's
/// rows. A crash between publish and commit may publish a chunk twice: consumers are
/// idempotent.
pub async fn replay(
    pool: &Pool,
    publisher: &Publisher,
    tenants: &Tenants,
    tenant: Option<&str>,
    selection: &Selection,
) -> Result<ReplayReport, ReplayError> {
    let mut report = ReplayReport::default();
    let mut client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let (ids, only_pending, reason, source_queue): (Option<Vec<i64>>, bool, _, _) = match selection
    {
        Selection::Ids(ids) => (Some(ids.clone()), false, None, None),
        Selection::All => (None, true, None, None),
        Selection::Filter {
            reason,
            source_queue,
        } => (None, true, reason.clone(), source_queue.clone()),
    };
    // Rows that die again during the replay get revived; the cap keeps them out.
    let max_id: i64 = client
        .query_one(
            "SELECT coalesce(max(id), 0) FROM notifier.dead_letters",
            &[],
        )
        .await
        .context("Failed to read dead letters")?
        .get(0);
    let mut found = HashSet::new();
    let mut cursor = 0i64;
    loop {
        let tx = client
            .transaction()
            .await
            .context("Failed to begin a transaction")?;
        // Asking by id waits for a concurrent replay; `all` and filters share the work.
        let lock = if ids.is_some() {
            "FOR UPDATE"
        } else {
            "FOR UPDATE SKIP LOCKED"
        };
        let rows = tx
            .query(
                &format!(
                    "SELECT id, tenant, exchange, routing_key, headers, body, message_id,
                            personal_data_erased_at IS NOT NULL
                       FROM notifier.dead_letters
                      WHERE id > $1 AND id <= $2
                        AND ($3::text IS NULL OR tenant = $3)
                        AND ($4::int8[] IS NULL OR id = ANY($4))
                        AND (NOT $5 OR replayed_at IS NULL)
                        AND ($6::text IS NULL OR starts_with(reason, $6))
                        AND ($7::text IS NULL OR source_queue = $7)
                      ORDER BY id
                      LIMIT $8
                      {lock}"
                ),
                &[
                    &cursor,
                    &max_id,
                    &tenant,
                    &ids,
                    &only_pending,
                    &reason,
                    &source_queue,
                    &REPLAY_CHUNK,
                ],
            )
            .await
            .context("Failed to select dead letters")?;
        let Some(last) = rows.last() else {
            break;
        };
        cursor = last.get(0);
        let mut messages = Vec::with_capacity(rows.len());
        let mut labels = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.get(0);
            found.insert(id);
            if row.get::<_, bool>(7) {
                report.skipped.push(Skipped {
                    id,
                    why: "its personal data was erased (retention or the citizen's request): \
                          replayed, it would carry masked phones"
                        .into(),
                });
                continue;
            }
            let Some(exchange) = row.get::<_, Option<String>>(2) else {
                report.skipped.push(Skipped {
                    id,
                    why: "its source queue is unknown, so there is nowhere to replay it".into(),
                });
                continue;
            };
            let stored: Value = row.get(4);
            let headers = if exchange == topology::EX_INGRESS {
                match ingress_replay_headers(
                    tenants,
                    row.get::<_, Option<String>>(1).as_deref(),
                    &stored,
                ) {
                    Ok(headers) => headers,
                    Err(why) => {
                        report.skipped.push(Skipped { id, why });
                        continue;
                    }
                }
            } else {
                replay_headers(&stored)
            };
            messages.push((
                id,
                OutgoingMessage {
                    exchange,
                    routing_key: row.get(3),
                    body: row.get(5),
                    message_id: row.get::<_, Option<String>>(6).unwrap_or_default(),
                    headers,
                },
            ));
            labels.push(row.get::<_, Option<String>>(1));
        }
        let published = publish_chunk(publisher, &messages, &mut report.skipped)
            .await
            .map_err(|source| ReplayError::Unavailable {
                replayed: report.replayed,
                source,
            })?;
        tx.execute(
            "UPDATE notifier.dead_letters
                SET replayed_at = now(), replay_count = replay_count + 1
              WHERE id = ANY($1)",
            &[&published],
        )
        .await
        .context("Failed to mark dead letters replayed")?;
        tx.commit()
            .await
            .context("Failed to mark dead letters replayed")?;
        let published_set: HashSet<i64> = published.iter().copied().collect();
        for ((id, _), tenant) in messages.iter().zip(&labels) {
            if published_set.contains(id) {
                metrics::replayed(tenants, tenant.as_deref());
            }
        }
        report.replayed += published.len();
        report.replayed_ids.extend(published);
    }
    if let Some(ids) = &ids {
        let mut missing: Vec<i64> = ids
            .iter()
            .filter(|id| !found.contains(id))
            .copied()
            .collect();
        missing.sort_unstable();
        missing.dedup();
        report.not_found = missing;
    }
    if report.replayed > 0 {
        tracing::info!(
            tenant = tenant.unwrap_or("*"),
            replayed = report.replayed,
            skipped = report.skipped.len(),
            "Replayed dead letters."
        );
    }
    Ok(report)
}

/// Publishes a chunk pipelined; if the broker refuses it (a message it cannot route),
/// publishes one by one to tell which, and skips those. Returns the published ids.
async fn publish_chunk(
    publisher: &Publisher,
    messages: &[(i64, OutgoingMessage)],
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<i64>, PublishError> {
    let batch: Vec<OutgoingMessage> = messages.iter().map(|(_, m)| m.clone()).collect();
    match publisher.publish_all(&batch).await {
        Ok(()) => return Ok(messages.iter().map(|(id, _)| *id).collect()),
        Err(PublishError::Refused(_)) => {}
        Err(e) => return Err(e),
    }
    let mut published = Vec::with_capacity(messages.len());
    for (id, message) in messages {
        match publisher.publish(message).await {
            Ok(()) => published.push(*id),
            Err(PublishError::Refused(why)) => skipped.push(Skipped {
                id: *id,
                why: format!("the broker refused it: {why}"),
            }),
            Err(e) => return Err(e),
        }
    }
    Ok(published)
}

/// Counts unreplayed dead letters per tenant label (configured tenants, everything
/// else as `unknown`) and publishes them as a gauge.
pub(crate) async fn refresh_unreplayed_gauge(pool: &Pool, tenants: &Tenants) -> anyhow::Result<()> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let rows = client
        .query(
            "SELECT tenant, count(*) FROM notifier.dead_letters
              WHERE replayed_at IS NULL GROUP BY tenant",
            &[],
        )
        .await
        .context("Failed to count dead letters")?;
    let mut counts: BTreeMap<String, i64> = tenants
        .all()
        .iter()
        .map(|t| (t.id.clone(), 0))
        .chain([(UNKNOWN_TENANT.to_owned(), 0)])
        .collect();
    for row in rows {
        let tenant: Option<String> = row.get(0);
        let label = metrics::tenant_label(tenants, tenant.as_deref());
        *counts.entry(label.to_owned()).or_default() += row.get::<_, i64>(1);
    }
    for (tenant, n) in counts {
        metrics::unreplayed(&tenant, n);
    }
    Ok(())
}

/// The dead-letter consumer and API. Cheap to clone.
#[derive(Clone)]
pub(crate) struct DeadLetters {
    pool: Pool,
    tenants: LiveTenants,
    amqp_url: String,
    publisher: Arc<Publisher>,
}

impl DeadLetters {
    /// Prepares the consumer and API; the replay publisher connects on first use.
    pub(crate) fn new(pool: Pool, tenants: impl Into<LiveTenants>, amqp_url: &str) -> Self {
        let tenants = tenants.into();
        metrics::init(&tenants.current());
        Self {
            pool,
            tenants,
            amqp_url: amqp_url.to_owned(),
            publisher: Arc::new(Publisher::new(amqp_url, "loa-notifier-replay")),
        }
    }

    /// `GET /v1/dead-letters` and `POST /v1/dead-letters/replay`.
    pub(crate) fn router(&self) -> Router {
        Router::new()
            .route("/v1/dead-letters", get(list_handler))
            .route("/v1/dead-letters/replay", post(replay_handler))
            .with_state(self.clone())
    }

    /// Consumes `loa.dead-letters` until `cancel` fires, storing every dead letter
    /// before acking it, and keeps the unreplayed gauge current.
    pub(crate) async fn run_consumer(self, status: BrokerStatus, cancel: CancellationToken) {
        let settings = BatchConsumerSettings {
            queue: topology::Q_DEAD.to_owned(),
            name: "loa-notifier-dead-letters".to_owned(),
            prefetch: 256,
            batch_size: 128,
            batch_wait: Duration::from_millis(20),
            max_batches_in_flight: 1,
        };
        let (pool, tenants) = (self.pool.clone(), self.tenants.clone());
        let consumer = run_batch_consumer(
            &self.amqp_url,
            settings,
            status,
            cancel.clone(),
            move |batch| {
                // One version of the tenants for the whole batch.
                let (pool, tenants) = (pool.clone(), tenants.current());
                async move { handle_deliveries(&pool, &tenants, &batch).await }
            },
        );
        let gauge = async {
            loop {
                if let Err(e) = refresh_unreplayed_gauge(&self.pool, &self.tenants.current()).await
                {
                    tracing::warn!(error.message = %e, "Could not count dead letters.");
                }
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(15)) => {}
                }
            }
        };
        // A reloaded tenants file brings its new tenants' series.
        let follow = self.tenants.for_each_change(cancel.clone(), metrics::init);
        tokio::join!(consumer, gauge, follow);
    }
}

/// The consumer's unit of work: stores a batch of dead letters and acks them, or
/// gives them all back when the database keeps failing. Never dead-letters (that
/// would loop).
pub(crate) async fn handle_deliveries(
    pool: &Pool,
    tenants: &Tenants,
    batch: &[Delivery],
) -> Vec<Disposition> {
    let letters: Vec<NewDeadLetter> = batch.iter().map(|d| from_delivery(d, tenants)).collect();
    // About 8 s: the dead-letter queue has no delivery limit, so this only paces
    // redeliveries while the database is away.
    const DELAYS_MS: [u64; 4] = [200, 800, 2_000, 5_000];
    let mut attempt = 0;
    loop {
        match store(pool, &letters).await {
            Ok(stored) => {
                for letter in &stored {
                    let label = reason_label(&letter.reason);
                    metrics::stored(tenants, letter.tenant.as_deref(), &label);
                    tracing::info!(
                        id = letter.id,
                        tenant = letter.tenant.as_deref().unwrap_or("-"),
                        reason = %label,
                        "Stored a dead letter."
                    );
                }
                return vec![Disposition::Ack; batch.len()];
            }
            Err(e) if attempt >= DELAYS_MS.len() => {
                tracing::error!(error.cause_chain = ?e, error.message = %e, "Could not store dead letters; returning them to the queue.");
                return vec![Disposition::Retry; batch.len()];
            }
            Err(e) => {
                tracing::warn!(attempt, error.message = %e, "Could not store dead letters; retrying.");
                tokio::time::sleep(Duration::from_millis(DELAYS_MS[attempt])).await;
                attempt += 1;
            }
        }
    }
}

// ---- HTTP ----

fn admin_tenant(state: &DeadLetters, headers: &HeaderMap) -> Result<String, ApiError> {
    loa_platform::http::admin_tenant(&state.tenants.current(), headers).map(|t| t.id)
}

/// What to replay: exactly one of `ids`, `all` or `filter` (documentation: the
/// handler reads the body field by field, naming the one that is wrong).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ReplayRequest {
    /// These dead letters (ids of this tenant's).
    ids: Option<Vec<i64>>,
    /// `true`: every dead letter not replayed yet.
    all: Option<bool>,
    /// Those whose reason starts with `reason` and/or that died in `source_queue`.
    #[schema(value_type = Option<Object>)]
    filter: Option<serde_json::Value>,
}

fn bad_body(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_field(field)
}

/// A text filter: trimmed, non-empty, at most 200 characters.
fn text_filter(
    field: &str,
    value: &str,
    error: fn(&str, String) -> ApiError,
) -> Result<String, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(error(field, format!("`{field}` must not be empty")));
    }
    if value.chars().count() > 200 {
        return Err(error(
            field,
            format!("`{field}` has at most 200 characters"),
        ));
    }
    // PostgreSQL refuses a NUL in text, and no reason or queue name holds a control
    // character.
    if value.chars().any(char::is_control) {
        return Err(error(
            field,
            format!("`{field}` must not contain control characters"),
        ));
    }
    Ok(value.to_owned())
}

/// The query parameters `GET /v1/dead-letters` knows.
const LIST_PARAMETERS: [&str; 6] = [
    "reason",
    "source_queue",
    "since",
    "replayed",
    "after_id",
    "limit",
];

/// Reads `GET /v1/dead-letters` query parameters into a filter for `tenant`, the way
/// every admin listing reads its query ([`QueryParams`]). Unlike the other listings'
/// text filters, an empty `reason` or `source_queue` is refused rather than ignored:
/// the same filter in a replay body selects, and an empty one there is an error too.
pub(crate) fn parse_list_query(tenant: &str, params: &QueryParams) -> Result<ListFilter, ApiError> {
    params.allow_only(&LIST_PARAMETERS)?;
    let text = |name: &str| {
        params
            .get(name)
            .map(|value| text_filter(name, value, invalid_query))
            .transpose()
    };
    let since = params
        .get("since")
        .map(|value| {
            DateTime::parse_from_rfc3339(value)
                .map(|since| since.with_timezone(&Utc))
                .map_err(|_| {
                    invalid_query(
                        "since",
                        "`since` must be an RFC 3339 timestamp (2026-11-28T09:30:00+07:00)",
                    )
                })
        })
        .transpose()?;
    let replayed = params
        .get("replayed")
        .map(|value| match value {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(invalid_query("replayed", "`replayed` is `true` or `false`")),
        })
        .transpose()?;
    Ok(ListFilter {
        tenant: Some(tenant.to_owned()),
        reason: text("reason")?,
        source_queue: text("source_queue")?,
        since,
        replayed,
        after_id: params
            .int(
                "after_id",
                0..=i64::MAX,
                "`after_id` is a non-negative integer",
            )?
            .unwrap_or(0),
        limit: params.limit(100, MAX_PAGE)?,
    })
}

/// Parses a replay request body: exactly one of `{"ids": [..]}`, `{"all": true}`,
/// `{"filter": {"reason": …, "source_queue": …}}`.
pub(crate) fn parse_replay_body(body: &Value) -> Result<Selection, ApiError> {
    let Some(object) = body.as_object() else {
        return Err(bad_body("body", "the body is a JSON object"));
    };
    if let Some(unknown) = object
        .keys()
        .find(|k| !["ids", "all", "filter"].contains(&k.as_str()))
    {
        return Err(bad_body(
            unknown,
            format!("unknown field `{unknown}`; give one of `ids`, `all` or `filter`"),
        ));
    }
    let given: Vec<&str> = ["ids", "all", "filter"]
        .into_iter()
        .filter(|k| object.contains_key(*k))
        .collect();
    match given.as_slice() {
        [] => Err(bad_body(
            "ids",
            "give one of `ids`, `all` or `filter` to say what to replay",
        )),
        [_, second, ..] => Err(bad_body(
            second,
            "give only one of `ids`, `all` or `filter`",
        )),
        ["ids"] => parse_ids(&object["ids"]),
        ["all"] => match object["all"] {
            Value::Bool(true) => Ok(Selection::All),
            _ => Err(bad_body(
                "all",
                "`all` must be `true` (to replay every dead letter not replayed yet)",
            )),
        },
        _ => parse_filter(&object["filter"]),
    }
}

fn parse_ids(value: &Value) -> Result<Selection, ApiError> {
    let Some(list) = value.as_array() else {
        return Err(bad_body("ids", "`ids` is an array of dead-letter ids"));
    };
    if list.is_empty() || list.len() > MAX_REPLAY_IDS {
        return Err(bad_body(
            "ids",
            format!("`ids` holds 1 to {MAX_REPLAY_IDS} ids"),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_i64()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad_body(&format!("ids[{i}]"), "an id is a positive integer"))
        })
        .collect::<Result<Vec<i64>, ApiError>>()
        .map(Selection::Ids)
}

fn parse_filter(value: &Value) -> Result<Selection, ApiError> {
    let Some(filter) = value.as_object() else {
        return Err(bad_body(
            "filter",
            "`filter` is an object with `reason` and/or `source_queue`",
        ));
    };
    let body_error = |f: &str, m: String| bad_body(f, m);
    let mut reason = None;
    let mut source_queue = None;
    for (key, value) in filter {
        let field = format!("filter.{key}");
        let slot = match key.as_str() {
            "reason" => &mut reason,
            "source_queue" => &mut source_queue,
            _ => {
                return Err(bad_body(
                    &field,
                    format!("unknown filter `{key}`; filter by `reason` or `source_queue`"),
                ))
            }
        };
        let Some(text) = value.as_str() else {
            return Err(bad_body(&field, format!("`{field}` is a string")));
        };
        *slot = Some(text_filter(&field, text, body_error)?);
    }
    if reason.is_none() && source_queue.is_none() {
        return Err(bad_body(
            "filter",
            "`filter` needs `reason` and/or `source_queue` (use `all` to replay everything)",
        ));
    }
    Ok(Selection::Filter {
        reason,
        source_queue,
    })
}

/// A page of dead letters, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ListPage {
    /// The dead letters.
    dead_letters: Vec<DeadLetterView>,
    /// Pass as `after_id` for the next page; `null` on the last page.
    next_after_id: Option<i64>,
}

/// `GET /v1/dead-letters`.
#[utoipa::path(get, path = "/v1/dead-letters", tag = "dead letters", security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    params(
        ("reason" = Option<String>, Query, description = "Reasons starting with this"),
        ("source_queue" = Option<String>, Query, description = "Only from this queue"),
        ("since" = Option<String>, Query, description = "Died at or after this RFC 3339 time"),
        ("replayed" = Option<bool>, Query, description = "Replayed already, or not"),
        ("after_id" = Option<i64>, Query, description = "The `next_after_id` of the previous page"),
        ("limit" = Option<i64>, Query, description = "Dead letters per page"),
    ),
    responses(
        (status = 200, body = ListPage),
        (status = 400, body = loa_platform::http::openapi::ErrorBody, description = "A parameter out of its rules (`invalid_query`), or `invalid_header`"),
        loa_platform::http::openapi::AdminRefusals,
    ))]
pub(crate) async fn list_handler(
    State(state): State<DeadLetters>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<ListPage>, ApiError> {
    let tenant = admin_tenant(&state, &headers)?;
    let filter = parse_list_query(&tenant, &QueryParams::read(query)?)?;
    let dead_letters = list(&state.pool, &filter).await?;
    let next_after_id = (dead_letters.len() as i64 == filter.limit)
        .then(|| dead_letters.last().map(|d| d.id))
        .flatten();
    Ok(Json(ListPage {
        dead_letters,
        next_after_id,
    }))
}

/// `POST /v1/dead-letters/replay`.
#[utoipa::path(post, path = "/v1/dead-letters/replay", tag = "dead letters", security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    request_body(content = ReplayRequest),
    responses(
        (status = 200, body = ReplayReport),
        (status = 503, body = loa_platform::http::openapi::ErrorBody, description = "The broker did not confirm: what was replayed stays replayed; retry",
            headers(("Retry-After" = u64, description = "Seconds"))),
        loa_platform::http::openapi::JsonRefusals, loa_platform::http::openapi::AdminRefusals,
    ))]
pub(crate) async fn replay_handler(
    State(state): State<DeadLetters>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<ReplayReport>, ApiError> {
    let tenant = admin_tenant(&state, &headers)?;
    let selection = parse_replay_body(&body)?;
    match replay(
        &state.pool,
        &state.publisher,
        &state.tenants.current(),
        Some(&tenant),
        &selection,
    )
    .await
    {
        Ok(report) => Ok(Json(report)),
        Err(e @ ReplayError::Unavailable { .. }) => {
            tracing::warn!(tenant = %tenant, error.message = %e, "A replay stopped: the broker did not confirm.");
            Err(ApiError::unavailable(e.to_string(), 5))
        }
        Err(ReplayError::Unexpected(e)) => Err(ApiError::internal(&e)),
    }
}

/// The dead-letter metrics. Labels are bounded: configured tenants (else `unknown`)
/// and [`reason_label`]s.
mod metrics {
    use super::UNKNOWN_TENANT;
    use loa_platform::Tenants;
    use prometheus::{
        register_int_counter_vec, register_int_gauge_vec, IntCounterVec, IntGaugeVec,
    };
    use std::sync::LazyLock;

    static STORED: LazyLock<IntCounterVec> = LazyLock::new(|| {
        register_int_counter_vec!(
            "loa_notifier_dead_letters_total",
            "Dead letters stored from loa.dead-letters (any service's), by tenant and reason class.",
            &["tenant", "reason"]
        )
        .expect("metric registers once")
    });
    static REPLAYED: LazyLock<IntCounterVec> = LazyLock::new(|| {
        register_int_counter_vec!(
            "loa_notifier_dead_letters_replayed_total",
            "Dead letters republished to their original exchange by a replay, by tenant.",
            &["tenant"]
        )
        .expect("metric registers once")
    });
    static UNREPLAYED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
        register_int_gauge_vec!(
            "loa_notifier_dead_letters_unreplayed",
            "Stored dead letters not replayed yet, by tenant (counted every 15 s).",
            &["tenant"]
        )
        .expect("metric registers once")
    });

    /// The label for a tenant named by a message body.
    pub(crate) fn tenant_label<'a>(tenants: &Tenants, tenant: Option<&'a str>) -> &'a str {
        match tenant {
            Some(t) if tenants.get(t).is_some() => t,
            _ => UNKNOWN_TENANT,
        }
    }

    /// Creates every configured tenant's series at zero, so dashboards and
    /// `increase()` see them from the start.
    pub(crate) fn init(tenants: &Tenants) {
        let ids = tenants
            .all()
            .iter()
            .map(|t| t.id.clone())
            .collect::<Vec<_>>();
        for tenant in ids.iter().map(String::as_str).chain([UNKNOWN_TENANT]) {
            for reason in REASONS_AT_ZERO {
                STORED.with_label_values(&[tenant, reason]);
            }
        }
        for tenant in &ids {
            REPLAYED.with_label_values(&[tenant]);
            UNREPLAYED.with_label_values(&[tenant]);
        }
    }

    /// The reason classes every service can produce, whatever the tenant; the others
    /// (`zalo_<code>`, a refusal's code) appear with their first dead letter.
    const REASONS_AT_ZERO: [&str; 3] = ["delivery_limit", "gave_up", "undecodable"];

    pub(crate) fn stored(tenants: &Tenants, tenant: Option<&str>, reason: &str) {
        STORED
            .with_label_values(&[tenant_label(tenants, tenant), reason])
            .inc();
    }

    pub(crate) fn replayed(tenants: &Tenants, tenant: Option<&str>) {
        REPLAYED
            .with_label_values(&[tenant_label(tenants, tenant)])
            .inc();
    }

    pub(crate) fn unreplayed(tenant: &str, n: i64) {
        UNREPLAYED.with_label_values(&[tenant]).set(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{FieldArray, ShortString};
    use loa_platform::tenants::demo_tenant;

    fn tenants() -> Tenants {
        Tenants::new(vec![demo_tenant("http://127.0.0.1:1")]).unwrap()
    }

    fn parse(routing_key: &str, properties: &BasicProperties, body: &[u8]) -> NewDeadLetter {
        super::parse(routing_key, properties, body, &tenants())
    }

    fn headers(pairs: Vec<(&str, AMQPValue)>) -> BasicProperties {
        let mut table = FieldTable::default();
        for (k, v) in pairs {
            table.insert(ShortString::from(k), v);
        }
        BasicProperties::default()
            .with_headers(table)
            .with_message_id("evt-1".into())
    }

    fn text(s: &str) -> AMQPValue {
        AMQPValue::LongString(s.into())
    }

    fn death(queue: &str, exchange: &str, reason: &str) -> AMQPValue {
        let mut entry = FieldTable::default();
        entry.insert("queue".into(), text(queue));
        entry.insert("exchange".into(), text(exchange));
        entry.insert("reason".into(), text(reason));
        entry.insert("count".into(), AMQPValue::LongLongInt(1));
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(entry)]))
    }

    #[test]
    fn a_consumer_dead_letter_keeps_its_reason_source_and_tenant_and_replays_to_its_exchange() {
        let props = headers(vec![
            (
                topology::H_REASON,
                text("zalo error -108: Phone number invalid"),
            ),
            (topology::H_SOURCE_QUEUE, text("notifier.transactional")),
            ("traceparent", text("00-abc-def-01")),
            (H_TENANT, text("demo")),
        ]);
        let letter = parse(
            "transactional.demo.receipt",
            &props,
            br#"{"type":"notification_request.v1","tenant":"demo"}"#,
        );
        assert_eq!(letter.tenant.as_deref(), Some("demo"));
        assert_eq!(letter.source_queue, "notifier.transactional");
        assert_eq!(letter.exchange.as_deref(), Some(topology::EX_NOTIFICATIONS));
        assert_eq!(letter.reason, "zalo error -108: Phone number invalid");
        assert_eq!(letter.message_id.as_deref(), Some("evt-1"));
        assert_eq!(letter.headers["traceparent"], "00-abc-def-01");
    }

    #[test]
    fn each_source_queue_maps_to_the_exchange_its_messages_came_from() {
        assert_eq!(exchange_for_queue("tracker.events"), Some("loa.events"));
        assert_eq!(exchange_for_queue("intake.ingress"), Some("loa.ingress"));
        assert_eq!(
            exchange_for_queue("notifier.broadcast"),
            Some("loa.notifications")
        );
        assert_eq!(exchange_for_queue("someone.else"), None);
    }

    #[test]
    fn a_broker_delivery_limit_dead_letter_is_read_from_x_death() {
        let props = headers(vec![(
            "x-death",
            death("tracker.events", "loa.events", "delivery_limit"),
        )]);
        let letter = parse("dossier.demo.2", &props, b"{\"tenant\":\"demo\"}");
        assert_eq!(letter.source_queue, "tracker.events");
        assert_eq!(letter.exchange.as_deref(), Some("loa.events"));
        assert_eq!(letter.reason, DELIVERY_LIMIT_REASON);
    }

    #[test]
    fn an_unknown_queue_in_x_death_replays_to_the_exchange_the_broker_recorded() {
        let props = headers(vec![(
            "x-death",
            death("custom.q", "custom.ex", "rejected"),
        )]);
        let letter = parse("k", &props, b"not json");
        assert_eq!(letter.source_queue, "custom.q");
        assert_eq!(letter.exchange.as_deref(), Some("custom.ex"));
        assert_eq!(letter.reason, "dead-lettered by the broker: rejected");
        assert_eq!(letter.tenant, None);
    }

    #[test]
    fn a_message_with_no_death_information_is_stored_as_unknown_and_not_replayable() {
        let letter = parse("k", &BasicProperties::default(), b"\x00\x01");
        assert_eq!(letter.source_queue, "unknown");
        assert_eq!(letter.reason, "unknown");
        assert_eq!(letter.exchange, None);
        assert_eq!(letter.message_id, None);
    }

    #[test]
    fn the_content_hash_is_stable_and_tells_different_reasons_apart() {
        let a = |reason: &str| {
            let props = headers(vec![
                (topology::H_REASON, text(reason)),
                (topology::H_SOURCE_QUEUE, text("tracker.events")),
            ]);
            parse("dossier.demo.2", &props, b"{}").content_hash
        };
        assert_eq!(a("x"), a("x"));
        assert_ne!(a("x"), a("y"));
    }

    #[test]
    fn a_replay_drops_the_death_headers_and_the_attempt_count_and_keeps_the_rest() {
        let stored = json!({
            "x-loa-reason": "r", "x-loa-source-queue": "q", "x-death": [{"queue": "q"}],
            "x-loa-attempt": 4, "x-first-death-queue": "q", "x-loa-token": "demo-token",
            "traceparent": "00-a-b-01", "x-number": 7, "x-flag": true
        });
        let mut kept = replay_headers(&stored);
        kept.sort();
        assert_eq!(
            kept,
            vec![
                ("traceparent".to_owned(), "00-a-b-01".to_owned()),
                ("x-flag".to_owned(), "true".to_owned()),
                ("x-number".to_owned(), "7".to_owned()),
            ],
            "a credential in an old row is never republished as it was"
        );
    }

    #[test]
    fn the_tenant_is_the_verified_stamp_never_the_body() {
        let body = br#"{"type":"dossier_event.v1","tenant":"demo","event_id":"e1"}"#;
        let unstamped = headers(vec![
            (
                topology::H_REASON,
                text("unauthorized: missing x-loa-token header"),
            ),
            (topology::H_SOURCE_QUEUE, text(topology::Q_INGRESS)),
        ]);
        let stamped_other = headers(vec![
            (topology::H_REASON, text("forbidden: tenant: …")),
            (topology::H_SOURCE_QUEUE, text(topology::Q_INGRESS)),
            (H_TENANT, text("other")),
            (H_SOURCE, text("other-one-stop")),
        ]);

        let anonymous = parse("upstream.x", &unstamped, body);
        let foreign = parse("upstream.x", &stamped_other, body);

        assert_eq!(anonymous.tenant, None, "the body's tenant is not trusted");
        assert_eq!(foreign.tenant.as_deref(), Some("other"));
        assert_eq!(foreign.headers[H_SOURCE], "other-one-stop");
        assert_ne!(
            anonymous.content_hash, foreign.content_hash,
            "tenants are part of the dedupe key"
        );
    }

    #[test]
    fn credentials_are_never_stored() {
        let props = headers(vec![
            (topology::H_REASON, text("invalid_json: x")),
            (topology::H_SOURCE_QUEUE, text(topology::Q_INGRESS)),
            ("x-loa-token", text("demo-admin")),
            ("Authorization", text("Bearer demo-token")),
            ("traceparent", text("00-a-b-01")),
        ]);

        let letter = parse("upstream.x", &props, b"{");

        let stored = letter.headers.as_object().unwrap();
        assert!(!stored.contains_key("x-loa-token"), "{stored:?}");
        assert!(!stored.contains_key("Authorization"), "{stored:?}");
        assert_eq!(stored["traceparent"], "00-a-b-01");
    }

    #[test]
    fn a_raw_ingress_message_the_broker_dead_lettered_belongs_to_the_tenant_of_its_token() {
        // Every header on it is the publisher's: the forged stamp and reason are
        // ignored, the token is verified here and then dropped.
        let forged = |token: &str| {
            headers(vec![
                (
                    "x-death",
                    death(topology::Q_INGRESS, topology::EX_INGRESS, "delivery_limit"),
                ),
                ("x-loa-token", text(token)),
                (H_TENANT, text("other")),
                (topology::H_REASON, text("forged")),
                (topology::H_SOURCE_QUEUE, text("notifier.transactional")),
            ])
        };

        let verified = parse(
            "upstream.x",
            &forged("demo-token"),
            br#"{"tenant":"other"}"#,
        );
        let unknown = parse(
            "upstream.x",
            &forged("not-a-token"),
            br#"{"tenant":"other"}"#,
        );

        assert_eq!(verified.tenant.as_deref(), Some("demo"));
        assert_eq!(verified.headers[H_TENANT], "demo");
        assert_eq!(verified.headers[H_SOURCE], "demo-one-stop");
        assert_eq!(verified.source_queue, topology::Q_INGRESS);
        assert_eq!(verified.reason, DELIVERY_LIMIT_REASON);
        assert_eq!(verified.exchange.as_deref(), Some(topology::EX_INGRESS));
        assert_eq!(unknown.tenant, None);
        assert!(unknown.headers.get(H_TENANT).is_none());
        for letter in [&verified, &unknown] {
            assert!(letter.headers.get("x-loa-token").is_none());
        }
    }

    #[test]
    fn an_ingress_replay_presents_the_current_token_of_the_source_intake_verified() {
        let stored = json!({
            "x-loa-reason": "forbidden: tenant", "x-loa-source-queue": "intake.ingress",
            "x-loa-tenant": "demo", "x-loa-source": "demo-one-stop", "traceparent": "00-a-b-01"
        });

        let mut replayed = ingress_replay_headers(&tenants(), Some("demo"), &stored).unwrap();
        replayed.sort();
        let anonymous = ingress_replay_headers(&tenants(), None, &json!({}));
        let removed = ingress_replay_headers(
            &tenants(),
            Some("demo"),
            &json!({"x-loa-source": "retired-system"}),
        );

        assert_eq!(
            replayed,
            [
                ("traceparent".to_owned(), "00-a-b-01".to_owned()),
                ("x-loa-token".to_owned(), "demo-token".to_owned()),
            ]
        );
        assert!(anonymous.unwrap_err().contains("without a valid token"));
        assert!(removed.unwrap_err().contains("no longer configured"));
    }

    #[test]
    fn an_ingress_replay_is_refused_when_the_tenants_file_holds_only_the_tokens_hash() {
        let mut demo = demo_tenant("http://127.0.0.1:1");
        demo.sources[0].token =
            loa_platform::Credential::parse(&loa_platform::credential::sha256_of("demo-token"))
                .unwrap();
        let tenants = Tenants::new(vec![demo]).unwrap();
        let stored = json!({"x-loa-tenant": "demo", "x-loa-source": "demo-one-stop"});

        let refused = ingress_replay_headers(&tenants, Some("demo"), &stored).unwrap_err();

        assert!(refused.contains("only a hash"), "{refused}");
    }

    #[test]
    fn reason_labels_are_bounded_codes() {
        assert_eq!(
            reason_label("zalo error -108: Phone number invalid"),
            "zalo_-108"
        );
        assert_eq!(reason_label(DELIVERY_LIMIT_REASON), "delivery_limit");
        assert_eq!(
            reason_label("unauthorized: unknown source token"),
            "unauthorized"
        );
        assert_eq!(
            reason_label("invalid_json: expected value at line 1"),
            "invalid_json"
        );
        assert_eq!(
            reason_label("event_id_reused: event_id \"e1\" was already used"),
            "event_id_reused"
        );
        assert_eq!(
            reason_label("time_in_future: occurred_at: must not be in the future"),
            "time_in_future"
        );
        assert_eq!(
            reason_label("undecodable notification request: missing field"),
            "undecodable"
        );
        assert_eq!(
            reason_label("no Zalo template configured for kind `receipt`"),
            "no_template"
        );
        assert_eq!(
            reason_label("dead-lettered by the broker: expired"),
            "broker"
        );
        assert_eq!(
            reason_label("zalo error -100: busy (gave up after 8 attempts)"),
            "gave_up"
        );
        assert_eq!(reason_label("Anything Else: 0903123456"), "other");
    }

    #[test]
    fn list_queries_are_validated_naming_the_parameter() {
        let q = |pairs: &[(&str, &str)]| {
            let params: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            parse_list_query("demo", &QueryParams::from(params))
        };
        let f = q(&[
            ("reason", "zalo error"),
            ("since", "2026-11-28T09:30:00+07:00"),
            ("replayed", "false"),
            ("limit", "10"),
            ("after_id", "5"),
        ])
        .unwrap();
        assert_eq!(f.tenant.as_deref(), Some("demo"));
        assert_eq!(f.replayed, Some(false));
        assert_eq!((f.limit, f.after_id), (10, 5));
        for (k, v) in [
            ("limit", "0"),
            ("limit", "x"),
            ("after_id", "-1"),
            ("since", "yesterday"),
            ("replayed", "maybe"),
            ("reason", " "),
            ("tenant", "other"),
        ] {
            let e = q(&[(k, v)]).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{k}={v}");
            assert_eq!(e.field.as_deref(), Some(k), "{k}={v}");
        }
    }

    #[test]
    fn replay_bodies_select_exactly_one_way_and_name_the_bad_field() {
        assert_eq!(
            parse_replay_body(&json!({"ids": [3, 1]})).unwrap(),
            Selection::Ids(vec![3, 1])
        );
        assert_eq!(
            parse_replay_body(&json!({"all": true})).unwrap(),
            Selection::All
        );
        assert_eq!(
            parse_replay_body(&json!({"filter": {"reason": "zalo error -108"}})).unwrap(),
            Selection::Filter {
                reason: Some("zalo error -108".into()),
                source_queue: None
            }
        );
        for (body, field) in [
            (json!([]), "body"),
            (json!({}), "ids"),
            (json!({"ids": [1], "all": true}), "all"),
            (json!({"ids": []}), "ids"),
            (json!({"ids": [1, "x"]}), "ids[1]"),
            (json!({"ids": [0]}), "ids[0]"),
            (json!({"all": false}), "all"),
            (json!({"filter": {}}), "filter"),
            (json!({"filter": {"reason": 5}}), "filter.reason"),
            (json!({"filter": {"tenant": "x"}}), "filter.tenant"),
            (json!({"every": true}), "every"),
        ] {
            let e = parse_replay_body(&body).unwrap_err();
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(e.field.as_deref(), Some(field), "{body}");
        }
    }
}
