//! Accepted events become confirmed messages on `loa.events`.
//!
//! The events of one request travel packed: those of one tenant and status share a
//! `dossier_event_batch.v1` message (up to `intake.pack_events`) routed like each of
//! them, `dossier.<tenant>.<status>`, so the broker carries a few messages per request
//! instead of one per event. Packing reorders events across statuses, which is only
//! harmless between different dossiers: an event whose dossier occurs again in the
//! same request is published on its own, in request order.
//!
//! Every message carries the tenant intake verified in [`H_TENANT`]: a dead letter made
//! of it downstream (the tracker's, or the broker's after its delivery limit) belongs
//! to that tenant's admins.

use loa_contracts::{DossierEvent, DossierEventBatch, Envelope, PackedEvent};
use loa_platform::amqp::{consumer::H_TENANT, topology, OutgoingMessage, PublishError, Publisher};
use rand::Rng;
use std::collections::HashMap;

/// Stamps the acceptance time and publishes every event (packed, see the module
/// docs; `pack` = 1 publishes each alone), returning once RabbitMQ has confirmed all
/// of them.
pub async fn publish_events(
    publisher: &Publisher,
    events: Vec<DossierEvent>,
    traceparent: Option<&str>,
    pack: usize,
) -> Result<(), PublishError> {
    let messages = messages_for(events, traceparent, pack, chrono::Utc::now());
    let started = std::time::Instant::now();
    let result = publisher.publish_all(&messages).await;
    crate::metrics::publish_seconds(started.elapsed().as_secs_f64());
    result
}

/// The messages that carry `events`, accepted at `now`: a message per routing key
/// and up to `pack` events, in the order of each message's first event, and a
/// message of its own for every event whose dossier occurs more than once.
pub fn messages_for(
    events: Vec<DossierEvent>,
    traceparent: Option<&str>,
    pack: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<OutgoingMessage> {
    let pack = pack.max(1);
    let mut occurrences: HashMap<(&str, &str), usize> = HashMap::new();
    for e in &events {
        *occurrences
            .entry((e.tenant.as_str(), e.dossier_code.as_str()))
            .or_default() += 1;
    }
    let alone: Vec<bool> = events
        .iter()
        .map(|e| pack == 1 || occurrences[&(e.tenant.as_str(), e.dossier_code.as_str())] > 1)
        .collect();
    drop(occurrences);

    // Slots in publishing order: each a group of events (by index) sharing a key.
    let mut slots: Vec<Vec<PackedEvent>> = Vec::new();
    let mut open: HashMap<String, usize> = HashMap::new();
    for (mut event, alone) in events.into_iter().zip(alone) {
        event.accepted_at = Some(now);
        let packed = PackedEvent {
            traceparent: Some(
                traceparent
                    .map(str::to_owned)
                    .unwrap_or_else(new_traceparent),
            ),
            event,
        };
        if alone {
            slots.push(vec![packed]);
            continue;
        }
        let key = packed.event.routing_key();
        match open.get(&key) {
            Some(&slot) if slots[slot].len() < pack => slots[slot].push(packed),
            _ => {
                open.insert(key, slots.len());
                slots.push(vec![packed]);
            }
        }
    }
    slots.into_iter().map(message_of).collect()
}

/// One event as a `dossier_event.v1` message, several as a `dossier_event_batch.v1`.
fn message_of(mut slot: Vec<PackedEvent>) -> OutgoingMessage {
    let routing_key = slot[0].event.routing_key();
    let trace = slot[0].traceparent.clone().unwrap_or_else(new_traceparent);
    let headers = vec![
        (topology::H_TRACEPARENT.to_owned(), trace),
        (H_TENANT.to_owned(), slot[0].event.tenant.clone()),
    ];
    if slot.len() == 1 {
        let event = slot.pop().expect("a slot has an event").event;
        return OutgoingMessage {
            exchange: topology::EX_EVENTS.to_owned(),
            routing_key,
            message_id: event.event_id.clone(),
            headers,
            body: Envelope::DossierEventV1(event).to_bytes(),
        };
    }
    // Names the pack by its first event and how many follow it.
    let message_id = format!("{}+{}", slot[0].event.event_id, slot.len() - 1);
    let tenant = slot[0].event.tenant.clone();
    OutgoingMessage {
        exchange: topology::EX_EVENTS.to_owned(),
        routing_key,
        message_id,
        headers,
        body: Envelope::DossierEventBatchV1(DossierEventBatch {
            tenant,
            events: slot,
        })
        .to_bytes(),
    }
}

/// Accepts an incoming W3C `traceparent` only if well-formed.
pub fn valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    parts.len() == 4
        && parts[0].len() == 2
        && parts[1].len() == 32
        && parts[2].len() == 16
        && parts[3].len() == 2
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
        && parts[1] != "00000000000000000000000000000000"
}

/// Starts a new trace: `00-<trace id>-<span id>-01`.
pub fn new_traceparent() -> String {
    let mut rng = rand::rng();
    let trace: u128 = rng.random::<u128>().max(1);
    let span: u64 = rng.random::<u64>().max(1);
    format!("00-{trace:032x}-{span:016x}-01")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: &str, dossier: &str, status: u8) -> DossierEvent {
        DossierEvent::from_json(&json!({
            "event_id": id,
            "tenant": "demo",
            "dossier_code": dossier,
            "status": status,
            "occurred_at": "2026-11-28T09:30:00+07:00",
            "procedure": {"code": "1.001193", "name": "Đăng ký khai sinh"},
            "agency": {"code": "000.00.06.H56", "name": "UBND phường Đức Thắng"},
            "applicant": {"name": "Trần Thị Bích", "phone": "0903123456"},
            "channels": {"zalo": true, "broadcast": false}
        }))
        .unwrap()
    }

    /// Each message as (routing key, event ids), in publishing order.
    fn shape(messages: &[OutgoingMessage]) -> Vec<(String, Vec<String>)> {
        messages
            .iter()
            .map(|m| {
                let ids = match Envelope::from_bytes(&m.body).unwrap() {
                    Envelope::DossierEventV1(e) => vec![e.event_id],
                    Envelope::DossierEventBatchV1(b) => {
                        b.events.into_iter().map(|p| p.event.event_id).collect()
                    }
                    other => panic!("not an event: {other:?}"),
                };
                (m.routing_key.clone(), ids)
            })
            .collect()
    }

    fn owned(key: &str, ids: &[&str]) -> (String, Vec<String>) {
        (key.to_owned(), ids.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn events_of_one_status_share_a_message_routed_like_each_of_them() {
        let now = chrono::Utc::now();
        let events = vec![
            event("e1", "D1", 2),
            event("e2", "D2", 5),
            event("e3", "D3", 2),
            event("e4", "D4", 5),
            event("e5", "D5", 2),
        ];

        let messages = messages_for(events, None, 32, now);

        assert_eq!(
            shape(&messages),
            [
                owned("dossier.demo.2", &["e1", "e3", "e5"]),
                owned("dossier.demo.5", &["e2", "e4"]),
            ]
        );
        assert_eq!(messages[0].message_id, "e1+2");
        let Envelope::DossierEventBatchV1(batch) = Envelope::from_bytes(&messages[0].body).unwrap()
        else {
            panic!("a pack")
        };
        assert_eq!(batch.tenant, "demo");
        assert!(batch.events.iter().all(|p| p.event.accepted_at == Some(now)
            && p.traceparent.as_deref().is_some_and(valid_traceparent)));
        let traces: std::collections::HashSet<_> =
            batch.events.iter().map(|p| p.traceparent.clone()).collect();
        assert_eq!(traces.len(), 3, "each event starts its own trace");
    }

    #[test]
    fn an_event_whose_dossier_recurs_in_the_request_travels_alone_in_request_order() {
        let events = vec![
            event("a2", "A", 2),
            event("b5", "B", 5),
            event("c2", "C", 2),
            event("a5", "A", 5),
            event("d5", "D", 5),
        ];

        let messages = messages_for(events, None, 32, chrono::Utc::now());

        assert_eq!(
            shape(&messages),
            [
                owned("dossier.demo.2", &["a2"]),
                owned("dossier.demo.5", &["b5", "d5"]),
                owned("dossier.demo.2", &["c2"]),
                owned("dossier.demo.5", &["a5"]),
            ]
        );
        assert_eq!(
            messages[0].message_id, "a2",
            "a lone event is a message of its own"
        );
    }

    #[test]
    fn a_pack_holds_at_most_pack_events_and_a_pack_of_one_publishes_each_alone() {
        let events = || {
            (1..=5)
                .map(|i| event(&format!("e{i}"), &format!("D{i}"), 2))
                .collect()
        };
        let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

        let in_twos = messages_for(events(), Some(trace), 2, chrono::Utc::now());
        let alone = messages_for(events(), Some(trace), 1, chrono::Utc::now());

        assert_eq!(
            shape(&in_twos),
            [
                owned("dossier.demo.2", &["e1", "e2"]),
                owned("dossier.demo.2", &["e3", "e4"]),
                owned("dossier.demo.2", &["e5"]),
            ]
        );
        assert_eq!(alone.len(), 5);
        assert!(in_twos.iter().chain(&alone).all(|m| m.headers
            == [
                (topology::H_TRACEPARENT.to_owned(), trace.to_owned()),
                (H_TENANT.to_owned(), "demo".to_owned())
            ]));
    }

    #[test]
    fn generated_trace_contexts_are_valid_and_garbage_is_not() {
        assert!(valid_traceparent(&new_traceparent()));
        assert!(!valid_traceparent("00-xyz-1-01"));
        assert!(!valid_traceparent(
            "00-00000000000000000000000000000000-0000000000000001-01"
        ));
    }
}
