//! `CitizenFeedback`: a citizen's rating given inside Zalo on a message sent with a
//! service-rating template (Zalo's `user_feedback` webhook), handed from the notifier
//! (which receives the webhook and knows which dossier the rated message was about) to
//! the tracker (which keeps one rating per dossier), on `loa.citizen`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A rating given in Zalo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CitizenFeedback {
    /// Tenant whose OA sent the rated message.
    pub tenant: String,
    /// The dossier the rated message was about.
    pub dossier_code: String,
    /// Zalo's id of the rated message: the rating's idempotency key.
    pub msg_id: String,
    /// Stars, 1 to 5 (5: Rất hài lòng, 3-4: Hài lòng, 1-2: Không hài lòng).
    pub stars: u8,
    /// The citizen's own words (may be empty).
    #[serde(default)]
    pub note: String,
    /// When the citizen gave it (Zalo's time).
    pub submitted_at: DateTime<Utc>,
}

impl CitizenFeedback {
    /// The routing key on `loa.citizen`: `feedback.<tenant>`.
    pub fn routing_key(&self) -> String {
        format!("feedback.{}", self.tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_travels_by_tenant_and_round_trips_tagged() {
        let f = CitizenFeedback {
            tenant: "demo".into(),
            dossier_code: "H56-0001".into(),
            msg_id: "m1".into(),
            stars: 5,
            note: String::new(),
            submitted_at: Utc::now(),
        };
        assert_eq!(f.routing_key(), "feedback.demo");
        let bytes = crate::Envelope::CitizenFeedbackV1(f.clone()).to_bytes();
        assert!(String::from_utf8_lossy(&bytes).contains("\"type\":\"citizen_feedback.v1\""));
        assert_eq!(
            crate::Envelope::from_bytes(&bytes).unwrap(),
            crate::Envelope::CitizenFeedbackV1(f)
        );
    }
}
