//! The versioned envelope around every AMQP message body.
//!
//! A `type` tag names the message and its version, so a consumer can refuse what it does
//! not understand (dead-letter it) instead of misreading it.

use crate::{DossierEvent, NotificationRequest};
use serde::{Deserialize, Serialize};

/// Every message Loa services exchange over RabbitMQ.
// The variants differ in size, but an envelope lives only between decoding and
// dispatch; boxing would cost an allocation per message for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Envelope {
    /// A validated, normalised dossier event (intake → tracker, `loa.events`).
    #[serde(rename = "dossier_event.v1")]
    DossierEventV1(DossierEvent),
    /// A notification to deliver (tracker → notifier, `loa.notifications`).
    #[serde(rename = "notification_request.v1")]
    NotificationRequestV1(NotificationRequest),
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
