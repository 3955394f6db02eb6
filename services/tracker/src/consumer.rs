//! Consumes `tracker.events` in batches: decodes each delivery, applies the batch in one
//! transaction ([`crate::store::apply_batch`]), and settles every delivery only after
//! the commit. Poison deliveries are dead-lettered with their reason; a failed
//! transaction gives the whole batch back after a back-off.

use crate::{
    metrics::{self, EventOutcome, UNKNOWN_TENANT},
    store::{self, ApplyContext, IncomingEvent},
};
use deadpool_postgres::Pool;
use lapin::message::Delivery;
use loa_contracts::{event::MAX_DOSSIER_CODE, Envelope};
use loa_platform::{
    amqp::{consumer::header, topology, Disposition},
    Secret, Tenants,
};
use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Everything the batch handler needs; shared by the consumer loop.
pub struct EventHandler {
    /// The tracker's database.
    pub pool: Pool,
    /// Configured tenants; events for any other are dead-lettered.
    pub tenants: Tenants,
    /// Key of the lookup tokens.
    pub lookup_secret: Secret,
    /// Base of lookup links.
    pub public_base_url: String,
    /// Woken after every commit that planned notifications, so the relay publishes
    /// them at once instead of at its next poll.
    pub relay_wake: Arc<Notify>,
    /// Cuts a failure back-off short at shutdown.
    pub cancel: CancellationToken,
    /// Consecutive failed transactions, for the back-off.
    failures: AtomicU32,
}

impl EventHandler {
    /// A handler with no failures yet.
    pub fn new(
        pool: Pool,
        tenants: Tenants,
        lookup_secret: Secret,
        public_base_url: String,
        relay_wake: Arc<Notify>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            pool,
            tenants,
            lookup_secret,
            public_base_url,
            relay_wake,
            cancel,
            failures: AtomicU32::new(0),
        }
    }

    /// Handles one batch and returns one disposition per delivery, in order. Acks only
    /// after the batch's transaction committed.
    pub async fn handle(&self, batch: &[Delivery]) -> Vec<Disposition> {
        metrics::batch(batch.len());
        let mut dispositions = vec![Disposition::Ack; batch.len()];
        let mut events = Vec::with_capacity(batch.len());
        let mut positions = Vec::with_capacity(batch.len());
        for (i, delivery) in batch.iter().enumerate() {
            match decode(delivery, &self.tenants) {
                Ok(event) => {
                    events.push(event);
                    positions.push(i);
                }
                Err(Poison { reason, tenant }) => {
                    metrics::event(&tenant, EventOutcome::DeadLetter);
                    dispositions[i] = Disposition::DeadLetter(reason);
                }
            }
        }
        if events.is_empty() {
            return dispositions;
        }
        let context = ApplyContext {
            lookup_secret: &self.lookup_secret,
            public_base_url: &self.public_base_url,
            now: chrono::Utc::now(),
        };
        match store::apply_batch(&self.pool, &context, &events).await {
            Ok(outcome) => {
                self.failures.store(0, Ordering::Relaxed);
                for (event, result) in events.iter().zip(&outcome.outcomes) {
                    metrics::event(&event.event.tenant, *result);
                }
                for n in &outcome.planned {
                    metrics::planned(&n.tenant, n.kind.as_str());
                }
                if !outcome.planned.is_empty() {
                    self.relay_wake.notify_one();
                }
                tracing::debug!(
                    events = events.len(),
                    planned = outcome.planned.len(),
                    "Applied a batch of dossier events."
                );
            }
            Err(e) => {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    events = events.len(),
                    failures,
                    error.cause_chain = ?e,
                    error.message = %e,
                    "Failed to apply a batch of dossier events; returning it to the queue."
                );
                // Each return counts towards the queue's delivery limit: wait before
                // giving the batch back, so an outage of Postgres does not burn it.
                let wait =
                    Duration::from_millis(200u64.saturating_mul(1 << failures.min(6)).min(10_000));
                tokio::select! {
                    _ = self.cancel.cancelled() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                for &i in &positions {
                    dispositions[i] = Disposition::Retry;
                }
            }
        }
        dispositions
    }
}

/// Why a delivery can never be applied, and the tenant label to count it under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    /// The reason, stored in the dead letter's `x-loa-reason` header.
    pub reason: String,
    /// A configured tenant, or `unknown`.
    pub tenant: String,
}

impl Poison {
    fn new(reason: impl Into<String>, tenant: &str) -> Self {
        Self {
            reason: reason.into(),
            tenant: tenant.to_owned(),
        }
    }
}

/// Decodes a delivery into an event for a configured tenant, or says why it is poison.
pub fn decode(delivery: &Delivery, tenants: &Tenants) -> Result<IncomingEvent, Poison> {
    decode_body(&delivery.data, tenants).map(|event| IncomingEvent {
        event,
        traceparent: header(delivery, topology::H_TRACEPARENT),
    })
}

/// Decodes a body (see [`decode`]).
pub fn decode_body(body: &[u8], tenants: &Tenants) -> Result<loa_contracts::DossierEvent, Poison> {
    let envelope = Envelope::from_bytes(body)
        .map_err(|e| Poison::new(format!("undecodable body: {e}"), UNKNOWN_TENANT))?;
    let event = match envelope {
        Envelope::DossierEventV1(event) => event,
        Envelope::NotificationRequestV1(_) | Envelope::NotificationBatchV1(_) => {
            return Err(Poison::new(
                "unexpected message type (a notification) on the events queue",
                UNKNOWN_TENANT,
            ))
        }
    };
    if tenants.get(&event.tenant).is_none() {
        let shown: String = event.tenant.chars().take(40).collect();
        return Err(Poison::new(
            format!("unknown tenant {shown:?}"),
            UNKNOWN_TENANT,
        ));
    }
    let code_len = event.dossier_code.chars().count();
    if code_len == 0 || code_len > MAX_DOSSIER_CODE {
        return Err(Poison::new(
            format!("dossier_code must have 1..{MAX_DOSSIER_CODE} characters"),
            &event.tenant,
        ));
    }
    if event.event_id.trim().is_empty() {
        return Err(Poison::new("event_id is empty", &event.tenant));
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use loa_platform::tenants::demo_tenant;
    use serde_json::json;

    fn tenants() -> Tenants {
        Tenants::new(vec![demo_tenant("http://127.0.0.1:1")]).unwrap()
    }

    fn body(tenant: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": "dossier_event.v1",
            "event_id": "e1",
            "tenant": tenant,
            "dossier_code": "H56-0001",
            "status": 2,
            "occurred_at": "2026-11-28T09:30:00+07:00",
            "procedure": {"code": "1.000894", "name": "Đăng ký khai sinh"},
            "agency": {"code": "H56", "name": "UBND phường Đức Thắng"},
            "applicant": {"name": "Trần Thị Bích", "phone": "84903123456"},
            "channels": {"zalo": true}
        }))
        .unwrap()
    }

    #[test]
    fn a_dossier_event_for_a_known_tenant_decodes() {
        let event = decode_body(&body("demo"), &tenants()).unwrap();
        assert_eq!(event.dossier_code, "H56-0001");
    }

    #[test]
    fn garbage_other_types_and_unknown_tenants_are_poison() {
        let t = tenants();
        assert!(decode_body(b"not json", &t)
            .unwrap_err()
            .reason
            .starts_with("undecodable body"));
        assert!(decode_body(b"{\"type\":\"x\"}", &t).is_err());
        let other = decode_body(&body("nowhere"), &t).unwrap_err();
        assert_eq!(other.tenant, UNKNOWN_TENANT);
        assert!(other.reason.contains("unknown tenant"));
    }
}
