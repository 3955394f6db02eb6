//! `NotificationRequest`: what the tracker (case updates) and the notifier's broadcasts
//! (policy announcements) ask the notifier's sender to deliver.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Which message a citizen gets. Each kind maps to one Zalo template per tenant.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// Status 2: the electronic receipt, with dates and the lookup link.
    Receipt,
    /// Status 3: refused at intake, with the reason.
    Refused,
    /// Status 5: documents to supplement.
    SupplementRequested,
    /// Status 6: fees due.
    PaymentRequested,
    /// Status 7: withdrawal confirmed.
    Withdrawn,
    /// Status 8: processing stopped, with the reason.
    Stopped,
    /// Status 9 on or after the appointment date.
    ResultReady,
    /// Status 9 before the appointment date: "earlier than scheduled".
    ResultReadyEarly,
    /// Status 10: result handed over.
    ResultReturned,
    /// The source moved the appointment (an apology letter, "Phiếu xin lỗi và hẹn lại
    /// ngày trả kết quả", or a new date after a supplement): the citizen is told the
    /// old and the new date, and why when the source says.
    DueDateChanged,
    /// After status 10: the invitation to rate the service (Rất hài lòng / Hài lòng /
    /// Không hài lòng), its link leading to the lookup page's rating form. Registered
    /// as Zalo's service-rating template (type 5) where the province can, the citizen
    /// rates inside Zalo too (`user_feedback`).
    RatingRequest,
    /// A policy announcement broadcast to the tenant's opted-in subscribers: a
    /// promotion (Zalo's tag 3), so Zalo's promotion rules apply to it.
    Announcement,
    /// The answer to a citizen's chat lookup ("tra cứu <mã>"): a free-text OA
    /// consultation message (`/v3.0/oa/message/cs`) to the Zalo user who asked, inside
    /// Zalo's 7-day window after their message; no template, its one parameter is
    /// `text`. Not in [`Self::ALL`], which lists the kinds sent with a template.
    ChatReply,
}

impl NotificationKind {
    /// Every kind sent with a Zalo template: the case updates and the announcement
    /// (the chat reply, free text, is not one).
    pub const ALL: [NotificationKind; 12] = [
        Self::Receipt,
        Self::Refused,
        Self::SupplementRequested,
        Self::PaymentRequested,
        Self::Withdrawn,
        Self::Stopped,
        Self::ResultReady,
        Self::ResultReadyEarly,
        Self::ResultReturned,
        Self::DueDateChanged,
        Self::RatingRequest,
        Self::Announcement,
    ];

    /// The kinds a dossier's status change plans (the tracker's).
    pub const CASE_UPDATES: [NotificationKind; 11] = [
        Self::Receipt,
        Self::Refused,
        Self::SupplementRequested,
        Self::PaymentRequested,
        Self::Withdrawn,
        Self::Stopped,
        Self::ResultReady,
        Self::ResultReadyEarly,
        Self::ResultReturned,
        Self::DueDateChanged,
        Self::RatingRequest,
    ];

    /// The snake_case name used in config, metrics and ids.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receipt => "receipt",
            Self::Refused => "refused",
            Self::SupplementRequested => "supplement_requested",
            Self::PaymentRequested => "payment_requested",
            Self::Withdrawn => "withdrawn",
            Self::Stopped => "stopped",
            Self::ResultReady => "result_ready",
            Self::ResultReadyEarly => "result_ready_early",
            Self::ResultReturned => "result_returned",
            Self::DueDateChanged => "due_date_changed",
            Self::RatingRequest => "rating_request",
            Self::Announcement => "announcement",
            Self::ChatReply => "chat_reply",
        }
    }

    /// Looks a kind up by name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .chain([Self::ChatReply])
            .find(|k| k.as_str() == name)
    }

    /// Whether this kind is sent as a free-text OA consultation message (to a Zalo
    /// user id, inside the 7-day window) rather than with a template.
    pub fn is_consultation(self) -> bool {
        self == Self::ChatReply
    }

    /// The template parameters a template for this kind must be sent with. The sandbox
    /// registers its templates from this list, so sender and fake cannot drift apart.
    pub fn required_params(self) -> &'static [&'static str] {
        // Every kind's template gets the base six; some kinds add their own.
        macro_rules! base_and {
            ($($extra:literal),*) => {
                &[
                    "customer_name",
                    "dossier_code",
                    "procedure_name",
                    "status",
                    "agency_name",
                    "lookup_url",
                    $($extra),*
                ]
            };
        }
        // `addressee` ("ông/bà", or "Quý tổ chức" for an organisation) is the address
        // inside the text, for the kinds whose text speaks to the applicant.
        match self {
            Self::Receipt => base_and!("received_date", "due_date", "addressee"),
            Self::Refused | Self::Stopped => base_and!("reason"),
            Self::SupplementRequested => base_and!("documents", "addressee"),
            Self::PaymentRequested => base_and!("amount"),
            Self::ResultReadyEarly => base_and!("due_date", "electronic_copy", "addressee"),
            Self::ResultReady | Self::ResultReturned => base_and!("electronic_copy", "addressee"),
            Self::DueDateChanged => base_and!("old_due_date", "new_due_date", "reason"),
            Self::Withdrawn | Self::RatingRequest => base_and!("addressee"),
            Self::Announcement => &["title", "body", "link"],
            Self::ChatReply => &["text"],
        }
    }

    /// The template id registered for this kind in the default (demo) tenant and the
    /// sandbox's default registry. Real tenants configure their own approved ids.
    pub fn default_template_id(self) -> &'static str {
        match self {
            Self::Receipt => "410001",
            Self::Refused => "410003",
            Self::SupplementRequested => "410005",
            Self::PaymentRequested => "410006",
            Self::Withdrawn => "410007",
            Self::Stopped => "410008",
            Self::ResultReady => "410009",
            Self::ResultReadyEarly => "410019",
            Self::ResultReturned => "410010",
            Self::DueDateChanged => "410011",
            Self::RatingRequest => "410012",
            Self::Announcement => "420001",
            // Free text: no template.
            Self::ChatReply => "",
        }
    }

    /// Whether Zalo counts this kind as a promotion (template tag 3): at most 25 % of
    /// the day's ZNS quota, at most 4 per citizen per month.
    pub fn is_promotion(self) -> bool {
        self == Self::Announcement
    }
}

impl std::fmt::Display for NotificationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Transactional messages (case updates) and broadcasts travel in separate lanes so a
/// million-recipient broadcast never delays a case update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    /// Case updates.
    Transactional,
    /// Policy announcements.
    Broadcast,
}

impl Lane {
    /// The lane's name: the first word of its routing keys on `loa.notifications`, and
    /// what the notifier stores and labels metrics with.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transactional => "transactional",
            Self::Broadcast => "broadcast",
        }
    }
}

impl std::fmt::Display for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who gets a message: by Zalo user id when they follow the OA, else by phone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Recipient {
    /// Canonical `84…` number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Zalo user id for the tenant's OA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zalo_user_id: Option<String>,
}

/// A message to deliver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NotificationRequest {
    /// Deterministic id (see [`notification_id`]): the notifier's idempotency key and the
    /// `tracking_id` sent to Zalo.
    pub notification_id: String,
    /// Tenant whose OA sends it.
    pub tenant: String,
    /// Which template.
    pub kind: NotificationKind,
    /// Who receives it.
    pub recipient: Recipient,
    /// Template parameters, all strings as Zalo wants them.
    pub params: BTreeMap<String, String>,
    /// Transactional or broadcast.
    pub lane: Lane,
    /// The dossier it is about, for the deliveries API (never sent in metrics labels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dossier_code: Option<String>,
    /// Do not send before this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    /// W3C `traceparent` of the originating event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_context: Option<String>,
    /// When intake accepted the originating event (event-to-send latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_accepted_at: Option<DateTime<Utc>>,
    /// When the tracker planned it.
    pub created_at: DateTime<Utc>,
    /// The broadcast it belongs to and its subscriber, for a broadcast's requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<BroadcastRef>,
}

/// Which broadcast a request belongs to, and to whom in its audience: the notifier's
/// progress counters, its monthly promotion cap per citizen and pause / cancel read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BroadcastRef {
    /// The broadcast's id.
    pub id: String,
    /// The subscriber's id in the tenant's audience.
    pub subscriber: i64,
}

impl NotificationRequest {
    /// The routing key the request travels with on `loa.notifications`:
    /// `<lane>.<tenant>.<kind>`, so it lands in its own lane's queue.
    pub fn routing_key(&self) -> String {
        format!("{}.{}.{}", self.lane, self.tenant, self.kind)
    }
}

/// The notification id of a broadcast's message to one subscriber: the same for every
/// expansion of the same broadcast, so the notifier sends each recipient once whatever
/// crashed and republished meanwhile (32 hex characters, like [`notification_id`]).
pub fn broadcast_notification_id(tenant: &str, broadcast_id: &str, subscriber: i64) -> String {
    let digest = Sha256::digest(format!(
        "{tenant}\u{1f}broadcast\u{1f}{broadcast_id}\u{1f}{subscriber}"
    ));
    hex::encode(&digest[..16])
}

/// Derives a notification id from the event that caused it and its kind, so replanning
/// the same event always yields the same id: 32 hex characters (fits Zalo's
/// 48-character `tracking_id`).
pub fn notification_id(tenant: &str, event_id: &str, kind: NotificationKind) -> String {
    let digest = Sha256::digest(format!("{tenant}\u{1f}{event_id}\u{1f}{}", kind.as_str()));
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_ids_are_deterministic_and_distinct_per_kind() {
        let a = notification_id("demo", "e1", NotificationKind::Receipt);
        assert_eq!(a, notification_id("demo", "e1", NotificationKind::Receipt));
        assert_ne!(
            a,
            notification_id("demo", "e1", NotificationKind::ResultReady)
        );
        assert_ne!(a, notification_id("other", "e1", NotificationKind::Receipt));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn a_request_travels_in_its_own_lane() {
        let mut request = NotificationRequest {
            notification_id: "n1".into(),
            tenant: "dong-nai".into(),
            kind: NotificationKind::Receipt,
            recipient: Recipient {
                phone: Some("84903123456".into()),
                zalo_user_id: None,
            },
            params: BTreeMap::new(),
            lane: Lane::Transactional,
            dossier_code: None,
            not_before: None,
            trace_context: None,
            event_accepted_at: None,
            created_at: Utc::now(),
            broadcast: None,
        };
        assert_eq!(request.routing_key(), "transactional.dong-nai.receipt");
        request.lane = Lane::Broadcast;
        assert_eq!(request.routing_key(), "broadcast.dong-nai.receipt");
    }

    #[test]
    fn every_case_update_has_a_lookup_link_and_every_kind_a_name() {
        for k in NotificationKind::CASE_UPDATES {
            assert!(k.required_params().contains(&"lookup_url"), "{k}");
            assert!(!k.is_promotion(), "{k}");
        }
        for k in NotificationKind::ALL {
            assert_eq!(NotificationKind::from_name(k.as_str()), Some(k));
            assert!(!k.is_consultation(), "{k}");
        }
        assert_eq!(
            NotificationKind::from_name("chat_reply"),
            Some(NotificationKind::ChatReply)
        );
        assert!(NotificationKind::ChatReply.is_consultation());
        assert_eq!(
            NotificationKind::Announcement.required_params(),
            ["title", "body", "link"]
        );
        assert!(NotificationKind::Announcement.is_promotion());
    }

    #[test]
    fn a_broadcast_message_has_one_id_per_broadcast_and_subscriber() {
        let a = broadcast_notification_id("demo", "b1", 7);
        assert_eq!(a, broadcast_notification_id("demo", "b1", 7));
        assert_ne!(a, broadcast_notification_id("demo", "b1", 8));
        assert_ne!(a, broadcast_notification_id("demo", "b2", 7));
        assert_ne!(a, broadcast_notification_id("other", "b1", 7));
        assert_eq!(a.len(), 32);
    }

    #[test]
    fn kinds_add_their_own_parameters_to_the_base_six() {
        assert_eq!(
            &NotificationKind::Withdrawn.required_params()[6..],
            ["addressee"]
        );
        assert_eq!(
            &NotificationKind::ResultReady.required_params()[6..],
            ["electronic_copy", "addressee"]
        );
        assert_eq!(
            &NotificationKind::Receipt.required_params()[6..],
            ["received_date", "due_date", "addressee"]
        );
        assert_eq!(
            &NotificationKind::Refused.required_params()[6..],
            ["reason"]
        );
        assert_eq!(
            &NotificationKind::PaymentRequested.required_params()[6..],
            ["amount"]
        );
        assert_eq!(
            &NotificationKind::DueDateChanged.required_params()[6..],
            ["old_due_date", "new_due_date", "reason"]
        );
    }
}
