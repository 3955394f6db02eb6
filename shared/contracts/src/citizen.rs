//! `ChatLookup`: a citizen's "tra cứu <mã>" written to the OA, handed from the
//! notifier (which receives Zalo's webhooks and knows the OA's users) to the tracker
//! (which owns the dossiers), on `loa.citizen`. The tracker answers with a
//! [`crate::NotificationRequest`] of kind [`crate::NotificationKind::ChatReply`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A chat lookup to answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChatLookup {
    /// Tenant whose OA received the message.
    pub tenant: String,
    /// The citizen's Zalo user id for that OA: who gets the answer.
    pub zalo_user_id: String,
    /// Zalo's id of the citizen's message: the lookup's idempotency key.
    pub msg_id: String,
    /// The dossier code as the citizen typed it.
    pub dossier_code: String,
    /// Canonical `84…` phones linked to this user: the phone the user shared with the
    /// OA (`user_submit_info`), or the phone a ZNS of ours reached that the user
    /// answered (a rating or a tapped button). The tracker answers with the dossier
    /// only when one of them is a phone of the dossier.
    #[serde(default)]
    pub linked_phones: Vec<String>,
    /// When the citizen sent it (Zalo's time).
    pub received_at: DateTime<Utc>,
}

impl ChatLookup {
    /// The routing key on `loa.citizen`: `lookup.<tenant>`.
    pub fn routing_key(&self) -> String {
        format!("lookup.{}", self.tenant)
    }

    /// The notification id of the answer: the same however often the lookup is
    /// delivered (32 hex characters, as every notification id).
    pub fn reply_id(&self) -> String {
        chat_reply_id(&self.tenant, &self.msg_id)
    }
}

/// The notification id of the answer to a tenant's chat message `msg_id`: how the
/// console finds what Loa answered a citizen.
pub fn chat_reply_id(tenant: &str, msg_id: &str) -> String {
    let digest = Sha256::digest(format!("{tenant}\u{1f}chat_reply\u{1f}{msg_id}"));
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_has_one_reply_id_per_message_and_travels_by_tenant() {
        let lookup = ChatLookup {
            tenant: "demo".into(),
            zalo_user_id: "u1".into(),
            msg_id: "m1".into(),
            dossier_code: "H56-0001".into(),
            linked_phones: vec![],
            received_at: Utc::now(),
        };
        let mut other = lookup.clone();
        other.msg_id = "m2".into();
        assert_eq!(lookup.reply_id(), lookup.clone().reply_id());
        assert_ne!(lookup.reply_id(), other.reply_id());
        assert_eq!(lookup.reply_id().len(), 32);
        assert_eq!(lookup.routing_key(), "lookup.demo");
    }
}
