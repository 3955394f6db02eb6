//! The versioned envelope around every AMQP message body.
//!
//! A `type` tag names the message and its version, so a consumer can refuse what it does
//! not understand (dead-letter it) instead of misreading it.

use crate::{ChatLookup, CitizenFeedback, DossierEvent, NotificationRequest};
use serde::{Deserialize, Serialize};

/// Every message Loa services exchange over RabbitMQ.
// The variants differ in size, but an envelope lives only between decoding and
// dispatch; boxing would cost an allocation per message for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type")]
pub enum Envelope {
    /// A validated, normalised dossier event (intake → tracker, `loa.events`).
    #[serde(rename = "dossier_event.v1")]
    DossierEventV1(DossierEvent),
    /// Several validated events of one tenant and one status in one message (intake
    /// packs the events of a request that way), so the broker carries one message,
    /// not one per event, on the first hop. Published with the same routing key as
    /// each of its events, `dossier.<tenant>.<status>`. Each event keeps its own id,
    /// dedupe and dead letter.
    #[serde(rename = "dossier_event_batch.v1")]
    DossierEventBatchV1(DossierEventBatch),
    /// A notification to deliver (tracker → notifier, `loa.notifications`).
    #[serde(rename = "notification_request.v1")]
    NotificationRequestV1(NotificationRequest),
    /// Several notifications of one tenant and lane in one message (the tracker's
    /// outbox relay packs what it relays together), so the broker carries one
    /// message, not one per notification, on the busiest hop. Each request keeps its
    /// own id, retries and dead letter.
    #[serde(rename = "notification_batch.v1")]
    NotificationBatchV1(NotificationBatch),
    /// A citizen's chat lookup to answer (notifier → tracker, `loa.citizen`,
    /// `lookup.<tenant>`); the answer is a `notification_request.v1` of kind
    /// `chat_reply`.
    #[serde(rename = "chat_lookup.v1")]
    ChatLookupV1(ChatLookup),
    /// A rating a citizen gave inside Zalo (notifier → tracker, `loa.citizen`,
    /// `feedback.<tenant>`), counted as the dossier's rating.
    #[serde(rename = "citizen_feedback.v1")]
    CitizenFeedbackV1(CitizenFeedback),
}

/// The body of a [`Envelope::DossierEventBatchV1`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DossierEventBatch {
    /// The tenant of every event (so a dead-lettered batch is listed under it).
    pub tenant: String,
    /// The events, in the order they were accepted.
    pub events: Vec<PackedEvent>,
}

/// One event of a [`DossierEventBatch`], with the trace context a message of its own
/// would carry in its `traceparent` header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PackedEvent {
    /// W3C trace context of the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The event.
    pub event: DossierEvent,
}

/// The body of a [`Envelope::NotificationBatchV1`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NotificationBatch {
    /// The tenant of every request (so a dead-lettered batch is listed under it).
    pub tenant: String,
    /// The requests. An element may carry its own `type` tag (the relay packs stored
    /// `notification_request.v1` bodies as they are); it is ignored.
    pub requests: Vec<NotificationRequest>,
}

impl NotificationBatch {
    /// The body of a batch built from already serialised `notification_request.v1`
    /// envelopes, without parsing them again.
    pub fn body_from_envelopes<'a>(
        tenant: &str,
        envelopes: impl IntoIterator<Item = &'a str>,
    ) -> Vec<u8> {
        let mut body = Vec::with_capacity(256);
        body.extend_from_slice(br#"{"type":"notification_batch.v1","tenant":"#);
        body.extend_from_slice(
            serde_json::to_string(tenant)
                .expect("a string serialises")
                .as_bytes(),
        );
        body.extend_from_slice(br#","requests":["#);
        for (i, envelope) in envelopes.into_iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(envelope.as_bytes());
        }
        body.extend_from_slice(b"]}");
        body
    }
}

impl Envelope {
    /// Serialises to the JSON body published on the broker.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("contracts always serialise")
    }

    /// Parses a body; an error means the message is poison for this consumer.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Lane, NotificationKind, Recipient};

    fn request(id: &str) -> NotificationRequest {
        NotificationRequest {
            notification_id: id.to_owned(),
            tenant: "an-giang".to_owned(),
            kind: NotificationKind::Receipt,
            recipient: Recipient {
                phone: Some("84903123456".to_owned()),
                zalo_user_id: None,
            },
            params: [("dossier_code".to_owned(), "H56-01 \"Đặc biệt\"".to_owned())].into(),
            lane: Lane::Transactional,
            dossier_code: Some("H56-01".to_owned()),
            not_before: None,
            trace_context: None,
            event_accepted_at: None,
            created_at: chrono::Utc::now(),
            broadcast: None,
        }
    }

    #[test]
    fn a_batch_packed_from_stored_request_envelopes_decodes_to_the_same_requests() {
        let requests = vec![request("a"), request("b")];
        let stored: Vec<String> = requests
            .iter()
            .map(|r| {
                String::from_utf8(Envelope::NotificationRequestV1(r.clone()).to_bytes()).unwrap()
            })
            .collect();
        let body =
            NotificationBatch::body_from_envelopes("an-giang", stored.iter().map(String::as_str));
        assert_eq!(
            Envelope::from_bytes(&body).unwrap(),
            Envelope::NotificationBatchV1(NotificationBatch {
                tenant: "an-giang".to_owned(),
                requests,
            })
        );
    }

    #[test]
    fn an_event_batch_round_trips_and_names_its_tenant_at_the_top() {
        let event = crate::DossierEvent::from_json(&crate::event::tests::sample()).unwrap();
        let batch = Envelope::DossierEventBatchV1(DossierEventBatch {
            tenant: event.tenant.clone(),
            events: vec![
                PackedEvent {
                    traceparent: Some(
                        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
                    ),
                    event: event.clone(),
                },
                PackedEvent {
                    traceparent: None,
                    event,
                },
            ],
        });
        let value: serde_json::Value = serde_json::from_slice(&batch.to_bytes()).unwrap();
        assert_eq!(value["type"], "dossier_event_batch.v1");
        assert_eq!(value["tenant"], "demo");
        assert!(value["events"][1].get("traceparent").is_none());
        assert_eq!(Envelope::from_bytes(&batch.to_bytes()).unwrap(), batch);
    }

    #[test]
    fn a_batch_round_trips_and_names_its_tenant_at_the_top() {
        let batch = Envelope::NotificationBatchV1(NotificationBatch {
            tenant: "dong-nai".to_owned(),
            requests: vec![request("a")],
        });
        let value: serde_json::Value = serde_json::from_slice(&batch.to_bytes()).unwrap();
        assert_eq!(value["type"], "notification_batch.v1");
        assert_eq!(value["tenant"], "dong-nai");
        assert_eq!(Envelope::from_bytes(&batch.to_bytes()).unwrap(), batch);
    }
}
