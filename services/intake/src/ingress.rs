//! The AMQP intake path: upstream systems publish the same JSON as `POST /v1/events`
//! to the `loa.ingress` exchange, with their source token in the `x-loa-token` header.
//! Valid events are forwarded to `loa.events` (confirmed) before the ingress message is
//! acked; invalid ones are dead-lettered with the reason.

use crate::{metrics, publish};
use lapin::message::Delivery;
use loa_contracts::DossierEvent;
use loa_platform::{
    amqp::{consumer::header, Disposition, Publisher},
    Tenants,
};
use std::sync::Arc;

/// Header carrying the source's token on the AMQP path.
pub const H_TOKEN: &str = "x-loa-token";

/// Validates one ingress message: the reason is what the dead letter will carry.
pub fn validate(
    delivery: &Delivery,
    tenants: &Tenants,
    max_bytes: usize,
) -> Result<DossierEvent, String> {
    let token = header(delivery, H_TOKEN)
        .ok_or_else(|| format!("unauthorized: missing {H_TOKEN} header"))?;
    let (tenant, _) = tenants
        .source_by_token(&token)
        .ok_or_else(|| "unauthorized: unknown source token".to_owned())?;
    if delivery.data.len() > max_bytes {
        return Err(format!(
            "payload_too_large: an event may be at most {max_bytes} bytes"
        ));
    }
    let value: serde_json::Value =
        serde_json::from_slice(&delivery.data).map_err(|e| format!("invalid_json: {e}"))?;
    let event = DossierEvent::from_json(&value)
        .map_err(|e| format!("{}: {}: {}", e.code, e.field, e.message))?;
    if event.tenant != tenant.id {
        return Err(
            "forbidden: tenant: this source may only publish events for its own tenant".to_owned(),
        );
    }
    Ok(event)
}

/// Handles one batch of ingress deliveries.
pub async fn handle_batch(
    batch: Arc<[Delivery]>,
    tenants: Tenants,
    publisher: Arc<Publisher>,
    max_bytes: usize,
    pack: usize,
) -> Vec<Disposition> {
    let mut dispositions = Vec::with_capacity(batch.len());
    let mut valid = Vec::new();
    for delivery in batch.iter() {
        match validate(delivery, &tenants, max_bytes) {
            Ok(event) => {
                valid.push(event);
                dispositions.push(Disposition::Ack);
            }
            Err(reason) => {
                dispositions.push(Disposition::DeadLetter(reason));
            }
        }
    }
    let n_valid = valid.len();
    metrics::events("amqp", "invalid", batch.len() - n_valid);
    if n_valid > 0 {
        if let Err(e) = publish::publish_events(&publisher, valid, None, pack).await {
            tracing::warn!(error.message = %e, "Could not forward ingress events; they will be redelivered.");
            metrics::events("amqp", "unavailable", n_valid);
            for d in dispositions.iter_mut() {
                if *d == Disposition::Ack {
                    *d = Disposition::Retry;
                }
            }
            return dispositions;
        }
        metrics::events("amqp", "accepted", n_valid);
    }
    dispositions
}
