//! Consumes `tracker.events` in batches: decodes each delivery (one event, or the
//! events of a `dossier_event_batch.v1`), applies the batch's events in one transaction
//! ([`crate::store::apply_batch`]), and settles every delivery only after the commit.
//! Poison deliveries are dead-lettered with their reason; a poison event inside a
//! batch message is dead-lettered alone, as the `dossier_event.v1` it would have been
//! on its own, before its message is acked. A failed transaction gives the whole batch
//! back after a back-off.
//!
//! An event whose `event_id` another event with other content already holds (see
//! [`store::apply_batch`]) is counted as a `conflict`, logged without personal data,
//! and dead-lettered alone with the reason `event_id_reused: …`, so the tenant's admins
//! see the upstream bug; the rest of its batch or pack is applied as usual. The
//! tracker stamps the tenant ([`H_TENANT`]) on what it dead-letters itself: the events
//! came through intake, which verified their source.

use crate::{
    clock::Clock,
    metrics::{self, EventOutcome, UNKNOWN_TENANT},
    store::{self, ApplyContext, EventConflict, IncomingEvent},
};
use deadpool_postgres::Pool;
use lapin::message::Delivery;
use loa_contracts::{event::MAX_DOSSIER_CODE, DossierEvent, Envelope, PackedEvent};
use loa_platform::{
    amqp::{
        consumer::{header, H_TENANT},
        topology, Disposition, OutgoingMessage, Publisher,
    },
    telemetry, LiveTenants, Secret, Tenants,
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
use tracing::Instrument;

/// Everything the batch handler needs; shared by the consumer loop.
pub struct EventHandler {
    /// The tracker's database.
    pub pool: Pool,
    /// Configured tenants (as the tenants file says now); events for any other are
    /// dead-lettered.
    pub tenants: LiveTenants,
    /// Key of the lookup tokens.
    pub lookup_secret: Secret,
    /// Base of lookup links.
    pub public_base_url: String,
    /// Woken after every commit that planned notifications, so the relay publishes
    /// them at once instead of at its next poll.
    pub relay_wake: Arc<Notify>,
    /// Cuts a failure back-off short at shutdown.
    pub cancel: CancellationToken,
    /// Publishes the dead letters of poison events inside batch messages (connects on
    /// first use).
    pub dead_letters: Arc<Publisher>,
    /// The clock events are applied at.
    pub clock: Clock,
    /// Consecutive failed transactions, for the back-off.
    failures: AtomicU32,
}

impl EventHandler {
    /// A handler with no failures yet.
    pub fn new(
        pool: Pool,
        tenants: impl Into<LiveTenants>,
        lookup_secret: Secret,
        public_base_url: String,
        relay_wake: Arc<Notify>,
        cancel: CancellationToken,
        dead_letters: Arc<Publisher>,
    ) -> Self {
        Self {
            pool,
            tenants: tenants.into(),
            lookup_secret,
            public_base_url,
            relay_wake,
            cancel,
            dead_letters,
            clock: Clock::real(),
            failures: AtomicU32::new(0),
        }
    }

    /// The same handler applying events at `clock`'s time.
    pub fn with_clock(self, clock: Clock) -> Self {
        Self { clock, ..self }
    }

    /// Handles one batch and returns one disposition per delivery, in order. Acks only
    /// after the batch's transaction committed.
    pub async fn handle(&self, batch: &[Delivery]) -> Vec<Disposition> {
        let mut dispositions = vec![Disposition::Ack; batch.len()];
        let mut events = Vec::with_capacity(batch.len());
        // The delivery each event came in.
        let mut owners = Vec::with_capacity(batch.len());
        // Deliveries with events to apply, and the dead letters of packed poison events
        // (with their delivery), published once the batch is applied.
        let mut positions = Vec::with_capacity(batch.len());
        let mut loose: Vec<(usize, OutgoingMessage)> = Vec::new();
        // One version of the tenants for the whole batch.
        let tenants = self.tenants.current();
        for (i, delivery) in batch.iter().enumerate() {
            match decode(delivery, &tenants) {
                Decoded::One(Ok(event)) => {
                    events.push(event);
                    owners.push(i);
                    positions.push(i);
                }
                Decoded::One(Err(Poison { reason, tenant })) => {
                    metrics::event(&tenant, EventOutcome::DeadLetter);
                    dispositions[i] = Disposition::DeadLetter(reason);
                }
                Decoded::Pack(items) => {
                    positions.push(i);
                    for item in items {
                        match item {
                            Ok(event) => {
                                events.push(event);
                                owners.push(i);
                            }
                            Err(bad) => {
                                let PoisonEvent { packed, poison } = *bad;
                                metrics::event(&poison.tenant, EventOutcome::DeadLetter);
                                let tenant = Some(poison.tenant.as_str())
                                    .filter(|t| *t != UNKNOWN_TENANT)
                                    .map(str::to_owned);
                                loose.push((
                                    i,
                                    dead_letter_of(packed, &poison.reason, tenant.as_deref()),
                                ));
                            }
                        }
                    }
                }
            }
        }
        metrics::batch(events.len());
        if events.is_empty() {
            self.publish_loose(&loose, &mut dispositions).await;
            return dispositions;
        }
        let context = ApplyContext {
            lookup_secret: &self.lookup_secret,
            public_base_url: &self.public_base_url,
            now: self.clock.now(),
        };
        // Spans only when they are exported; `_event_spans` end with the batch.
        let (batch_span, _event_spans) = if telemetry::traces_on() {
            trace_batch(&mut events)
        } else {
            (tracing::Span::none(), Vec::new())
        };
        match store::apply_batch(&self.pool, &context, &events)
            .instrument(batch_span)
            .await
        {
            Ok(outcome) => {
                self.failures.store(0, Ordering::Relaxed);
                for (event, result) in events.iter().zip(&outcome.outcomes) {
                    metrics::event(&event.event.tenant, *result);
                }
                for n in &outcome.planned {
                    metrics::planned(&n.tenant, n.kind.as_str());
                }
                for conflict in &outcome.conflicts {
                    let incoming = &events[conflict.index];
                    let reason = conflict_reason(&incoming.event.event_id, conflict);
                    tracing::warn!(
                        tenant = %incoming.event.tenant,
                        event_id = %incoming.event.event_id,
                        differing = %conflict.differing.join(","),
                        "An event id was reused for an event with other content; the first \
                         event keeps it, the new one is dead-lettered."
                    );
                    let packed = PackedEvent {
                        traceparent: incoming.traceparent.clone(),
                        event: incoming.event.clone(),
                    };
                    let tenant = incoming.event.tenant.clone();
                    loose.push((
                        owners[conflict.index],
                        dead_letter_of(packed, &reason, Some(&tenant)),
                    ));
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
                return dispositions;
            }
        }
        self.publish_loose(&loose, &mut dispositions).await;
        dispositions
    }

    /// Dead-letters poison events of batch messages (confirmed) before their messages
    /// are acked; if the broker does not confirm, those messages come back (their good
    /// events are already applied, and dedupe on the next delivery).
    async fn publish_loose(
        &self,
        loose: &[(usize, OutgoingMessage)],
        dispositions: &mut [Disposition],
    ) {
        if loose.is_empty() {
            return;
        }
        let messages: Vec<OutgoingMessage> = loose.iter().map(|(_, m)| m.clone()).collect();
        if let Err(e) = self.dead_letters.publish_all(&messages).await {
            tracing::warn!(
                events = messages.len(),
                error.message = %e,
                "Failed to dead-letter poison events of a batch message; returning it to the queue."
            );
            for (i, _) in loose {
                dispositions[*i] = Disposition::Retry;
            }
        }
    }
}

/// Opens the batch's `tracker.batch` span and, per event, a `tracker.event` span
/// continuing the event's trace (the child of intake's span, through its
/// `traceparent`), linked from the batch span. Each event then carries its own span's
/// `traceparent` on to the notifications it plans, so the notifier's spans are its
/// children.
fn trace_batch(events: &mut [IncomingEvent]) -> (tracing::Span, Vec<tracing::Span>) {
    let batch = tracing::info_span!("tracker.batch", events = events.len());
    let mut spans = Vec::with_capacity(events.len());
    for incoming in events.iter_mut() {
        let span = tracing::info_span!(
            parent: None,
            "tracker.event",
            tenant = %incoming.event.tenant,
            event_id = %incoming.event.event_id,
        );
        telemetry::set_remote_parent(&span, incoming.traceparent.as_deref());
        if let Some(own) = telemetry::traceparent_of(&span) {
            telemetry::add_remote_link(&batch, Some(&own));
            incoming.traceparent = Some(own);
        }
        spans.push(span);
    }
    (batch, spans)
}

/// The prefix of the reason of an event whose id was reused (a reason's leading code
/// is its metrics label).
pub const EVENT_ID_REUSED: &str = "event_id_reused";

/// The dead-letter reason of a conflicting event: what happened, which fields differ
/// (names only) and what the source should do.
pub fn conflict_reason(event_id: &str, conflict: &EventConflict) -> String {
    let shown: String = event_id.chars().take(100).collect();
    let differing = if conflict.differing.is_empty() {
        String::new()
    } else {
        format!(" (differs in: {})", conflict.differing.join(", "))
    };
    format!(
        "{EVENT_ID_REUSED}: event_id {shown:?} was already used for an event with other \
         content{differing}; the first one is kept. Send a new event under a new event_id."
    )
}

/// An event as the dead letter it would have been on its own, with the reason and,
/// when known, its tenant stamped.
fn dead_letter_of(packed: PackedEvent, reason: &str, tenant: Option<&str>) -> OutgoingMessage {
    let mut headers = vec![
        (topology::H_REASON.to_owned(), reason.to_owned()),
        (
            topology::H_SOURCE_QUEUE.to_owned(),
            topology::Q_TRACKER_EVENTS.to_owned(),
        ),
    ];
    if let Some(tenant) = tenant {
        headers.push((H_TENANT.to_owned(), tenant.to_owned()));
    }
    if let Some(trace) = packed.traceparent {
        headers.push((topology::H_TRACEPARENT.to_owned(), trace));
    }
    OutgoingMessage {
        exchange: topology::EX_DEAD.to_owned(),
        routing_key: packed.event.routing_key(),
        message_id: packed.event.event_id.clone(),
        headers,
        body: Envelope::DossierEventV1(packed.event).to_bytes(),
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

/// What a delivery carries.
// Lives only between decoding and dispatch; boxing the one event would cost an
// allocation per message for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decoded {
    /// A `dossier_event.v1` for a configured tenant, or why the delivery is poison
    /// (whole: undecodable, not an event, a batch for an unknown tenant).
    One(Result<IncomingEvent, Poison>),
    /// The events of a `dossier_event_batch.v1`, each checked on its own: a poison
    /// one comes back whole, to be dead-lettered alone.
    Pack(Vec<Result<IncomingEvent, Box<PoisonEvent>>>),
}

/// An event of a batch message that can never be applied, kept whole for its dead
/// letter (rare, hence boxed).
#[derive(Debug)]
pub struct PoisonEvent {
    /// The event as it was packed.
    pub packed: PackedEvent,
    /// Why.
    pub poison: Poison,
}

/// Decodes a delivery into events for a configured tenant, or says why it is poison.
pub fn decode(delivery: &Delivery, tenants: &Tenants) -> Decoded {
    match decode_body(&delivery.data, tenants) {
        Ok(Body::One(event)) => Decoded::One(Ok(IncomingEvent {
            event,
            traceparent: header(delivery, topology::H_TRACEPARENT),
        })),
        Ok(Body::Pack(items)) => Decoded::Pack(
            items
                .into_iter()
                .map(|item| {
                    item.map(|p| IncomingEvent {
                        event: p.event,
                        traceparent: p.traceparent,
                    })
                })
                .collect(),
        ),
        Err(poison) => Decoded::One(Err(poison)),
    }
}

/// A decoded body (see [`decode_body`]).
#[allow(clippy::large_enum_variant)] // As [`Decoded`].
#[derive(Debug)]
pub enum Body {
    /// One checked event.
    One(DossierEvent),
    /// A batch's events, each checked.
    Pack(Vec<Result<PackedEvent, Box<PoisonEvent>>>),
}

/// Decodes a body (see [`decode`]).
pub fn decode_body(body: &[u8], tenants: &Tenants) -> Result<Body, Poison> {
    let envelope = Envelope::from_bytes(body)
        .map_err(|e| Poison::new(format!("undecodable body: {e}"), UNKNOWN_TENANT))?;
    match envelope {
        Envelope::DossierEventV1(event) => check(event, tenants).map(Body::One),
        Envelope::DossierEventBatchV1(batch) => {
            if tenants.get(&batch.tenant).is_none() {
                return Err(unknown_tenant(&batch.tenant));
            }
            Ok(Body::Pack(
                batch
                    .events
                    .into_iter()
                    .map(|p| {
                        let checked = if p.event.tenant != batch.tenant {
                            Err(Poison::new(
                                "an event of another tenant inside a batch message",
                                &batch.tenant,
                            ))
                        } else {
                            check_fields(&p.event)
                        };
                        match checked {
                            Ok(()) => Ok(p),
                            Err(poison) => Err(Box::new(PoisonEvent { packed: p, poison })),
                        }
                    })
                    .collect(),
            ))
        }
        Envelope::NotificationRequestV1(_) | Envelope::NotificationBatchV1(_) => Err(Poison::new(
            "unexpected message type (a notification) on the events queue",
            UNKNOWN_TENANT,
        )),
        Envelope::ChatLookupV1(_) => Err(Poison::new(
            "unexpected message type (a chat lookup) on the events queue",
            UNKNOWN_TENANT,
        )),
        Envelope::CitizenFeedbackV1(_) => Err(Poison::new(
            "unexpected message type (a citizen's rating) on the events queue",
            UNKNOWN_TENANT,
        )),
    }
}

fn unknown_tenant(tenant: &str) -> Poison {
    let shown: String = tenant.chars().take(40).collect();
    Poison::new(format!("unknown tenant {shown:?}"), UNKNOWN_TENANT)
}

/// An event for a configured tenant with the fields the store relies on.
fn check(event: DossierEvent, tenants: &Tenants) -> Result<DossierEvent, Poison> {
    if tenants.get(&event.tenant).is_none() {
        return Err(unknown_tenant(&event.tenant));
    }
    check_fields(&event)?;
    Ok(event)
}

fn check_fields(event: &DossierEvent) -> Result<(), Poison> {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use loa_platform::tenants::demo_tenant;
    use serde_json::{json, Value};

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
            "procedure": {"code": "1.001193", "name": "Đăng ký khai sinh"},
            "agency": {"code": "H56", "name": "UBND phường Đức Thắng"},
            "applicant": {"name": "Trần Thị Bích", "phone": "84903123456"},
            "channels": {"zalo": true}
        }))
        .unwrap()
    }

    fn pack(tenant: &str, events: &[Value]) -> Vec<u8> {
        let events: Vec<Value> = events
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e.as_object_mut().unwrap().remove("type");
                json!({"event": e})
            })
            .collect();
        serde_json::to_vec(
            &json!({"type": "dossier_event_batch.v1", "tenant": tenant, "events": events}),
        )
        .unwrap()
    }

    fn event_value(tenant: &str, id: &str) -> Value {
        let mut v: Value = serde_json::from_slice(&body(tenant)).unwrap();
        v["event_id"] = json!(id);
        v
    }

    #[test]
    fn a_dossier_event_for_a_known_tenant_decodes() {
        let Body::One(event) = decode_body(&body("demo"), &tenants()).unwrap() else {
            panic!("one event")
        };
        assert_eq!(event.dossier_code, "H56-0001");
    }

    #[test]
    fn a_batch_message_decodes_to_its_events_each_checked_alone() {
        let mut foreign = event_value("elsewhere", "e3");
        foreign["tenant"] = json!("elsewhere");
        let body = pack(
            "demo",
            &[event_value("demo", "e1"), event_value("demo", " "), foreign],
        );

        let Body::Pack(items) = decode_body(&body, &tenants()).unwrap() else {
            panic!("a pack")
        };

        assert_eq!(items.len(), 3);
        assert_eq!(items[0].as_ref().unwrap().event.event_id, "e1");
        let empty = items[1].as_ref().unwrap_err();
        assert_eq!(empty.packed.event.event_id, " ");
        assert_eq!(empty.poison.reason, "event_id is empty");
        assert_eq!(empty.poison.tenant, "demo");
        assert!(items[2]
            .as_ref()
            .unwrap_err()
            .poison
            .reason
            .contains("another tenant"));
    }

    #[test]
    fn a_batch_message_for_an_unknown_tenant_is_poison_whole() {
        let body = pack("nowhere", &[event_value("nowhere", "e1")]);

        let poison = decode_body(&body, &tenants()).unwrap_err();

        assert_eq!(poison.tenant, UNKNOWN_TENANT);
        assert!(poison.reason.contains("unknown tenant"));
    }

    #[test]
    fn a_packed_poison_event_dead_letters_as_the_single_event_it_was() {
        let event: DossierEvent = match Envelope::from_bytes(&body("demo")).unwrap() {
            Envelope::DossierEventV1(e) => e,
            other => panic!("{other:?}"),
        };
        let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

        let letter = dead_letter_of(
            PackedEvent {
                traceparent: Some(trace.to_owned()),
                event: event.clone(),
            },
            "event_id is empty",
            Some("demo"),
        );

        assert_eq!(letter.exchange, topology::EX_DEAD);
        assert_eq!(letter.routing_key, "dossier.demo.2");
        assert_eq!(letter.message_id, "e1");
        assert_eq!(
            Envelope::from_bytes(&letter.body).unwrap(),
            Envelope::DossierEventV1(event)
        );
        for (name, value) in [
            (topology::H_REASON, "event_id is empty"),
            (topology::H_SOURCE_QUEUE, topology::Q_TRACKER_EVENTS),
            (topology::H_TRACEPARENT, trace),
            (H_TENANT, "demo"),
        ] {
            assert!(letter
                .headers
                .contains(&(name.to_owned(), value.to_owned())));
        }
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
