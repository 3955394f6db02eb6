//! The AMQP intake path: upstream systems publish the same JSON as `POST /v1/events`
//! to the `loa.ingress` exchange, with their source token in the `x-loa-token` header.
//! Valid events are forwarded to `loa.events` (confirmed) before the ingress message is
//! acked; refused ones are dead-lettered with the reason, also confirmed before the ack.
//!
//! Intake writes its dead letters itself instead of leaving the copy to the consumer:
//! everything on an ingress message but its body and routing key came from the
//! publisher, so the dead letter keeps only the publisher's own headers, never a
//! credential ([`is_credential_header`]) nor anything in Loa's `x-loa-…` namespace or
//! the broker's `x-death…` ones, and it names the tenant and source only when their
//! token was verified ([`H_TENANT`], [`H_SOURCE`]). A forged tenant header, or a body
//! naming another tenant, therefore never puts a message in front of a tenant's admins.

use crate::{metrics, publish, rules::EventRules};
use chrono::{DateTime, Utc};
use lapin::{message::Delivery, types::AMQPValue};
use loa_contracts::DossierEvent;
use loa_platform::{
    amqp::{
        consumer::{header, is_credential_header, H_SOURCE, H_TENANT},
        topology, Disposition, OutgoingMessage, Publisher,
    },
    Tenants,
};
use std::sync::Arc;

/// Header carrying the source's token on the AMQP path.
pub use loa_platform::amqp::consumer::H_SOURCE_TOKEN as H_TOKEN;

/// The tenant and source whose token an ingress message carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSource {
    /// The tenant the token belongs to.
    pub tenant: String,
    /// The source's id in the tenants file.
    pub source: String,
}

/// Why an ingress message was refused, and whose token it carried, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The dead letter's reason (`<code>: <field>: <message>`).
    pub reason: String,
    /// Set once the token was verified: the dead letter belongs to that tenant.
    pub verified: Option<VerifiedSource>,
}

/// Validates one ingress message as of `now`.
pub fn validate(
    delivery: &Delivery,
    tenants: &Tenants,
    rules: &EventRules,
    now: DateTime<Utc>,
) -> Result<DossierEvent, Refusal> {
    let refuse = |reason: String, verified: Option<&VerifiedSource>| Refusal {
        reason,
        verified: verified.cloned(),
    };
    let token = header(delivery, H_TOKEN)
        .ok_or_else(|| refuse(format!("unauthorized: missing {H_TOKEN} header"), None))?;
    let (tenant, source) = tenants
        .source_by_token(&token)
        .ok_or_else(|| refuse("unauthorized: unknown source token".to_owned(), None))?;
    let verified = VerifiedSource {
        tenant: tenant.id.clone(),
        source: source.id.clone(),
    };
    let verified = Some(&verified);
    if delivery.data.len() > rules.max_event_bytes {
        return Err(refuse(
            format!(
                "payload_too_large: an event may be at most {} bytes",
                rules.max_event_bytes
            ),
            verified,
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(&delivery.data)
        .map_err(|e| refuse(format!("invalid_json: {e}"), verified))?;
    let event = rules
        .parse(&value, now)
        .map_err(|e| refuse(format!("{}: {}: {}", e.code, e.field, e.message), verified))?;
    if event.tenant != tenant.id {
        return Err(refuse(
            "forbidden: tenant: this source may only publish events for its own tenant".to_owned(),
            verified,
        ));
    }
    Ok(event)
}

/// The dead letter of a refused ingress message: its body and routing key, the
/// publisher's own headers (as text) minus credentials and minus any header in Loa's
/// or the broker's namespace, then our reason, source queue and, when the token was
/// verified, its tenant and source.
pub fn dead_letter_of(delivery: &Delivery, refusal: &Refusal) -> OutgoingMessage {
    let mut headers: Vec<(String, String)> = delivery
        .properties
        .headers()
        .as_ref()
        .map(|h| h.inner().iter())
        .into_iter()
        .flatten()
        .filter(|(name, _)| publisher_header(name.as_str()))
        .filter_map(|(name, value)| Some((name.as_str().to_owned(), as_text(value)?)))
        .collect();
    headers.push((topology::H_REASON.to_owned(), refusal.reason.clone()));
    headers.push((
        topology::H_SOURCE_QUEUE.to_owned(),
        topology::Q_INGRESS.to_owned(),
    ));
    if let Some(verified) = &refusal.verified {
        headers.push((H_TENANT.to_owned(), verified.tenant.clone()));
        headers.push((H_SOURCE.to_owned(), verified.source.clone()));
    }
    OutgoingMessage {
        exchange: topology::EX_DEAD.to_owned(),
        routing_key: delivery.routing_key.as_str().to_owned(),
        body: delivery.data.clone(),
        message_id: delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default(),
        headers,
    }
}

/// Whether a publisher's header may travel into its dead letter: not a credential,
/// not ours (`x-loa-…`, which only Loa services write) and not the broker's (`x-death`,
/// `x-first-death-…`, `x-last-death-…`, which the dead-letter store reads).
fn publisher_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !is_credential_header(&lower)
        && !lower.starts_with("x-loa-")
        && !lower.starts_with("x-death")
        && !lower.starts_with("x-first-death")
        && !lower.starts_with("x-last-death")
}

/// A header value as text; tables and arrays are dropped (Loa's publisher writes text).
fn as_text(value: &AMQPValue) -> Option<String> {
    Some(match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        _ => return None,
    })
}

/// Handles one batch of ingress deliveries: forwards the valid events and
/// dead-letters the rest, both confirmed, before any is acked.
pub async fn handle_batch(
    batch: Arc<[Delivery]>,
    tenants: Tenants,
    publisher: Arc<Publisher>,
    rules: EventRules,
    pack: usize,
) -> Vec<Disposition> {
    let now = Utc::now();
    let mut dispositions = vec![Disposition::Ack; batch.len()];
    let mut valid = Vec::new();
    let mut valid_at = Vec::new();
    let mut letters = Vec::new();
    let mut letters_at = Vec::new();
    for (i, delivery) in batch.iter().enumerate() {
        match validate(delivery, &tenants, &rules, now) {
            Ok(event) => {
                valid.push(event);
                valid_at.push(i);
            }
            Err(refusal) => {
                tracing::warn!(
                    tenant = refusal.verified.as_ref().map_or("-", |v| v.tenant.as_str()),
                    reason = %refusal.reason,
                    "Dead-lettering an ingress message."
                );
                letters.push(dead_letter_of(delivery, &refusal));
                letters_at.push(i);
            }
        }
    }
    let n_valid = valid.len();
    metrics::events("amqp", "invalid", letters.len());
    if n_valid > 0 {
        if let Err(e) = publish::publish_events(&publisher, valid, None, pack).await {
            tracing::warn!(error.message = %e, "Could not forward ingress events; they will be redelivered.");
            metrics::events("amqp", "unavailable", n_valid);
            for &i in &valid_at {
                dispositions[i] = Disposition::Retry;
            }
        } else {
            metrics::events("amqp", "accepted", n_valid);
        }
    }
    if !letters.is_empty() {
        if let Err(e) = publisher.publish_all(&letters).await {
            tracing::warn!(error.message = %e, "Could not dead-letter ingress messages; they will be redelivered.");
            for &i in &letters_at {
                dispositions[i] = Disposition::Retry;
            }
        }
    }
    dispositions
}
