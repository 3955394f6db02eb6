//! `POST /zalo/webhook`: the events Zalo pushes to each tenant's app (delivery
//! receipts, follows, chat), verified, deduplicated and recorded.
//!
//! For every request, in this order:
//! 1. the body must be a JSON object; its `app_id` names the tenant (an unknown app is
//!    refused with 403);
//! 2. `X-ZEvent-Signature` must be `mac=` + the lowercase hex of the plain SHA-256 of
//!    `app_id + raw body + timestamp + OA secret key`, where `timestamp` is the body's
//!    `timestamp` string (compared in constant time; 401 otherwise);
//! 3. the body's `timestamp` must be recent (not older than
//!    `webhook_max_age_secs`, a day by default: Zalo redelivers with the original
//!    timestamp for hours; not further ahead than `webhook_max_ahead_secs`; 401);
//! 4. one transaction inserts the event into `notifier.webhook_events`, keyed by
//!    (tenant, event name, `message.msg_id` or the body's SHA-256): a redelivered
//!    webhook finds its key taken and has no second effect, but is answered 200;
//! 5. in the same transaction the event takes effect: receipts move deliveries on
//!    ([`super::receipts`]), follow / unfollow / shared phones update the subscribers,
//!    chat lookups, other texts and ratings are kept ([`super::lookups`],
//!    [`super::texts`], [`super::subscribers`]), and a ZNS receipt's phone is kept for
//!    a citizen's answer to that ZNS (a rating, a tapped button) to link it to them
//!    ([`super::zns_links`]).
//!
//! The tenant is found by `app_id`, which every event Zalo sends carries (a ZNS
//! receipt carries no `oa_id`); `oa_id` is only a fallback.
//!
//! Zalo wants an answer within 2 s; the handler only writes a few rows and never
//! calls Zalo, and gives up with a 503 after [`ANSWER_WITHIN`].

use super::{
    fields::{millis, required, text_at},
    receipts::{self, Receipt},
    signature::{signature_matches, SIGNATURE_HEADER},
    store::EVENT_RETENTION,
    subscribers, zns_links,
};
use crate::NotifierSettings;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use loa_contracts::{phone::mask_phone, PhoneNumber};
use loa_platform::{http::ApiError, tenants::TenantSettings, Tenants};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Event names with their own label value; every other name counts as `other`.
pub(crate) const KNOWN_EVENTS: [&str; 9] = [
    "user_received_message",
    "user_seen_message",
    "follow",
    "unfollow",
    "user_submit_info",
    "user_send_text",
    "user_feedback",
    "user_click_response_button",
    "oa_send_text",
];

/// How recent a webhook's `timestamp` must be.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Freshness {
    /// Oldest accepted age.
    pub max_age: Duration,
    /// Furthest accepted distance into the future (clock skew).
    pub max_ahead: Duration,
}

impl Freshness {
    /// From the notifier's settings, refusing a window that pruning would undercut: a
    /// webhook is deduplicated by its row in `notifier.webhook_events`, kept
    /// [`EVENT_RETENTION`] after it was received. A redelivery is accepted until its
    /// timestamp is `max_age` old, and that timestamp may have been up to `max_ahead`
    /// later than its first arrival, so rows must outlive `max_age + max_ahead`, or a
    /// late replay would find its row pruned and take effect twice.
    pub(crate) fn from_settings(settings: &NotifierSettings) -> anyhow::Result<Self> {
        let freshness = Self {
            max_age: Duration::from_secs(settings.webhook_max_age_secs),
            max_ahead: Duration::from_secs(settings.webhook_max_ahead_secs),
        };
        let window = freshness.max_age.saturating_add(freshness.max_ahead);
        anyhow::ensure!(
            window <= EVENT_RETENTION,
            "notifier.webhook_max_age_secs ({}) plus notifier.webhook_max_ahead_secs ({}) \
             must not exceed the {} s webhook events are kept for deduplication",
            settings.webhook_max_age_secs,
            settings.webhook_max_ahead_secs,
            EVENT_RETENTION.as_secs()
        );
        Ok(freshness)
    }
}

/// A webhook whose signature and freshness are checked, parsed for its effect.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    /// `event_name`.
    pub event_name: String,
    /// The body's `timestamp`.
    pub occurred_at: DateTime<Utc>,
    /// `message.msg_id`, or the hex SHA-256 of the raw body.
    pub dedup_key: String,
    /// `message.msg_id`, when there is one.
    pub msg_id: Option<String>,
    /// The phone a ZNS receipt says the message reached (`recipient.id`), kept apart
    /// from the stored body (which masks it) for [`super::zns_links`].
    pub zns_recipient: Option<PhoneNumber>,
    /// What it means for us.
    pub event: Event,
    /// The body as stored: phone numbers masked, shared personal info dropped.
    pub stored_body: Value,
}

/// The events the notifier acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// `user_received_message` or `user_seen_message`.
    Receipt(Receipt),
    /// `follow` (true) or `unfollow` (false).
    Follow {
        /// `follower.id`: the user's id for this OA.
        user_id: String,
        /// Follows now.
        following: bool,
    },
    /// `user_submit_info`: the user shared their details with the OA.
    SubmitInfo {
        /// `sender.id`.
        user_id: String,
        /// `info.phone`, when it is a valid Vietnamese mobile number.
        phone: Option<PhoneNumber>,
    },
    /// `user_feedback`: a citizen rated a message sent with a rating template.
    Feedback(subscribers::Feedback),
    /// `user_click_response_button`: a citizen tapped a button of a ZNS they received.
    Click(zns_links::Interaction),
    /// `user_send_text`: a citizen wrote to the OA.
    Text {
        /// `sender.id`.
        user_id: String,
        /// `message.msg_id`.
        msg_id: String,
        /// `message.text`.
        text: String,
    },
    /// Anything else (echoes of our own messages, reactions, …): kept, not acted on.
    Other,
}

/// Why a webhook was refused: the answer and the metric labels.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// Tenant label (`unknown` before the app is known).
    pub tenant: String,
    /// Event label.
    pub event: &'static str,
    /// Outcome label: `bad_signature`, `stale`, `unknown_app` or `invalid`.
    pub outcome: &'static str,
    /// The HTTP answer (boxed: a refusal is the rare path).
    pub error: Box<ApiError>,
}

/// Checks a webhook (steps 1–3 of the module docs) without touching the database.
pub(crate) fn authenticate<'t>(
    tenants: &'t Tenants,
    headers: &HeaderMap,
    raw_body: &[u8],
    now: DateTime<Utc>,
    freshness: Freshness,
) -> Result<(&'t TenantSettings, Webhook), Refusal> {
    let refuse = |tenant: &str, event: &'static str, outcome, error| Refusal {
        tenant: tenant.to_owned(),
        event,
        outcome,
        error: Box::new(error),
    };
    let invalid = |field: &str, message: String| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", message).with_field(field)
    };
    let body: Value = serde_json::from_slice(raw_body).map_err(|e| {
        refuse(
            "unknown",
            "unknown",
            "invalid",
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the body is not JSON: {e}"),
            )
            .with_field("body"),
        )
    })?;
    if !body.is_object() {
        return Err(refuse(
            "unknown",
            "unknown",
            "invalid",
            invalid("body", "the body must be a JSON object".into()),
        ));
    }
    let event_label = event_label(body.get("event_name").and_then(Value::as_str));

    // 1. The tenant, by app id (or OA id for the few events without one).
    let tenant = match text_at(&body, &["app_id"]) {
        Some(app_id) => tenants.by_app_id(&app_id),
        None => match text_at(&body, &["oa_id"]).or_else(|| text_at(&body, &["oaId"])) {
            Some(oa_id) => tenants.all().iter().find(|t| t.zalo.oa_id == oa_id),
            None => {
                return Err(refuse(
                    "unknown",
                    event_label,
                    "invalid",
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "missing_field",
                        "`app_id` is required",
                    )
                    .with_field("app_id"),
                ))
            }
        },
    };
    let Some(tenant) = tenant else {
        return Err(refuse(
            "unknown",
            event_label,
            "unknown_app",
            ApiError::forbidden("no tenant is configured for this Zalo app").with_field("app_id"),
        ));
    };
    let id = tenant.id.as_str();

    // 2. The signature.
    let Some(signature) = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
    else {
        return Err(refuse(
            id,
            event_label,
            "bad_signature",
            bad_signature("the `X-ZEvent-Signature` header is required"),
        ));
    };
    let Some(timestamp) = text_at(&body, &["timestamp"]) else {
        return Err(refuse(
            id,
            event_label,
            "invalid",
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_field",
                "`timestamp` is required",
            )
            .with_field("timestamp"),
        ));
    };
    if !signature_matches(
        signature,
        &tenant.zalo.app_id,
        raw_body,
        &timestamp,
        tenant.zalo.oa_secret_key.expose(),
    ) {
        return Err(refuse(
            id,
            event_label,
            "bad_signature",
            bad_signature("`X-ZEvent-Signature` does not sign this body"),
        ));
    }

    // 3. Freshness.
    let Some(occurred_at) = millis(&timestamp) else {
        return Err(refuse(
            id,
            event_label,
            "invalid",
            invalid("timestamp", "`timestamp` must be epoch milliseconds".into()),
        ));
    };
    let age = now.signed_duration_since(occurred_at);
    let too_old = age.to_std().is_ok_and(|a| a > freshness.max_age);
    let too_new = (-age).to_std().is_ok_and(|a| a > freshness.max_ahead);
    if too_old || too_new {
        return Err(refuse(
            id,
            event_label,
            "stale",
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "stale_timestamp",
                if too_old {
                    "`timestamp` is too old; replayed webhooks are refused"
                } else {
                    "`timestamp` is too far in the future"
                },
            )
            .with_field("timestamp"),
        ));
    }

    // The event itself (signed, so a malformed one is Zalo's or a bug: 400).
    let webhook = parse(&body, raw_body, occurred_at)
        .map_err(|error| refuse(id, event_label, "invalid", error))?;
    Ok((tenant, webhook))
}

fn bad_signature(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", message).with_field(SIGNATURE_HEADER)
}

/// Parses the event of a signed body.
fn parse(body: &Value, raw_body: &[u8], occurred_at: DateTime<Utc>) -> Result<Webhook, ApiError> {
    let event_name = required(body, &["event_name"])?;
    let msg_id = text_at(body, &["message", "msg_id"]);
    let event = match event_name.as_str() {
        "user_received_message" | "user_seen_message" => {
            Event::Receipt(receipts::receipt_fields(body, &event_name, occurred_at)?)
        }
        "follow" | "unfollow" => Event::Follow {
            user_id: required(body, &["follower", "id"])?,
            following: event_name == "follow",
        },
        "user_submit_info" => Event::SubmitInfo {
            user_id: required(body, &["sender", "id"])?,
            phone: text_at(body, &["info", "phone"]).and_then(|p| PhoneNumber::parse(&p).ok()),
        },
        "user_feedback" => Event::Feedback(feedback_fields(body, occurred_at)?),
        "user_click_response_button" => Event::Click(zns_links::Interaction {
            user_id: required(body, &["sender", "id"])?,
            msg_id: required(body, &["message", "msg_id"])?,
            tracking_id: text_at(body, &["message", "tracking_id"]),
            at: occurred_at,
        }),
        "user_send_text" => Event::Text {
            user_id: required(body, &["sender", "id"])?,
            msg_id: required(body, &["message", "msg_id"])?,
            text: text_at(body, &["message", "text"]).unwrap_or_default(),
        },
        _ => Event::Other,
    };
    let dedup_key = msg_id
        .clone()
        .unwrap_or_else(|| hex::encode(Sha256::digest(raw_body)));
    // A ZNS receipt (it has a delivery time) names the phone the message reached.
    let zns_recipient = match &event {
        Event::Receipt(Receipt::Received { .. })
            if text_at(body, &["message", "delivery_time"]).is_some() =>
        {
            text_at(body, &["recipient", "id"]).and_then(|p| PhoneNumber::parse(&p).ok())
        }
        _ => None,
    };
    Ok(Webhook {
        event_name,
        occurred_at,
        dedup_key,
        msg_id,
        zns_recipient,
        event,
        stored_body: redacted(body),
    })
}

/// The rating in a `user_feedback` body: `message` names the rated message
/// (`msg_id`, required) and our `tracking_id`, with `rate`, `note`, `feedbacks` and
/// `submit_time`. Read leniently past the message id (numbers as strings or not, a
/// missing rating), so no citizen's rating is refused for its shape.
fn feedback_fields(
    body: &Value,
    occurred_at: DateTime<Utc>,
) -> Result<subscribers::Feedback, ApiError> {
    let rating = body
        .pointer("/message/rate")
        .and_then(crate::zalo::lenient_i64)
        .filter(|r| (1..=5).contains(r))
        .and_then(|r| i16::try_from(r).ok());
    let feedbacks = body
        .pointer("/message/feedbacks")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(subscribers::Feedback {
        user_id: text_at(body, &["sender", "id"]),
        msg_id: required(body, &["message", "msg_id"])?,
        tracking_id: text_at(body, &["message", "tracking_id"]),
        rating,
        note: text_at(body, &["message", "note"]).unwrap_or_default(),
        feedbacks,
        submitted_at: text_at(body, &["message", "submit_time"])
            .and_then(|t| millis(&t))
            .unwrap_or(occurred_at),
    })
}

pub(crate) fn event_label(name: Option<&str>) -> &'static str {
    match name {
        None => "unknown",
        Some(name) => KNOWN_EVENTS
            .iter()
            .find(|known| **known == name)
            .copied()
            .unwrap_or("other"),
    }
}

/// The body as kept in `notifier.webhook_events`: a ZNS receipt's recipient (a phone
/// number) masked, what a user shared (`info`) dropped, a rating's free text
/// (`message.note`, kept in `notifier.citizen_feedback` only) and what a citizen
/// wrote (`message.text` of `user_send_text`, kept sanitized in
/// `notifier.citizen_messages` only, where retention and erasure find it) dropped.
fn redacted(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(id) = body.pointer_mut("/recipient/id") {
        if let Some(phone) = id.as_str().filter(|p| PhoneNumber::parse(p).is_ok()) {
            *id = Value::String(mask_phone(phone));
        }
    }
    if let Some(info) = body.get_mut("info") {
        *info = json!("redacted");
    }
    match body.get("event_name").and_then(Value::as_str) {
        Some("user_feedback") => {
            if let Some(note) = body.pointer_mut("/message/note") {
                *note = json!("redacted");
            }
        }
        Some("user_send_text") => {
            if let Some(text) = body.pointer_mut("/message/text") {
                *text = json!("redacted");
            }
        }
        _ => {}
    }
    body
}

#[cfg(test)]
#[cfg(test)]
mod tests {
    use super::*;
    use crate::zalo_webhooks::{receipts::receipt_of, signature::expected_signature};
    use loa_platform::tenants::demo_tenant;

    const APP: &str = "1000000000000000001";
    const SECRET: &str = "demo-oa-secret-key";

    fn tenants() -> Tenants {
        Tenants::new(vec![demo_tenant("http://127.0.0.1:1")]).unwrap()
    }

    fn freshness() -> Freshness {
        Freshness {
            max_age: Duration::from_secs(900),
            max_ahead: Duration::from_secs(300),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_700_000_000_000).unwrap()
    }

    fn signed(body: &Value) -> (Vec<u8>, HeaderMap) {
        let raw = serde_json::to_vec(body).unwrap();
        let ts = body["timestamp"].as_str().unwrap();
        let mut headers = HeaderMap::new();
        let mac = format!("mac={}", expected_signature(APP, &raw, ts, SECRET));
        headers.insert(SIGNATURE_HEADER, mac.parse().unwrap());
        (raw, headers)
    }

    fn receipt(ts: i64) -> Value {
        json!({
            "app_id": APP, "event_name": "user_received_message",
            "sender": {"id": "2000000000000000001"}, "recipient": {"id": "84903123456"},
            "message": {"msg_id": "m1", "tracking_id": "n1", "delivery_time": ts.to_string()},
            "timestamp": ts.to_string(),
        })
    }

    #[test]
    fn a_signed_fresh_receipt_is_accepted_with_our_tracking_id_and_delivery_time() {
        let body = receipt(1_700_000_000_000 - 5_000);
        let (raw, headers) = signed(&body);
        let tenants = tenants();
        let (tenant, webhook) = authenticate(&tenants, &headers, &raw, now(), freshness()).unwrap();
        assert_eq!(tenant.id, "demo");
        assert_eq!(webhook.dedup_key, "m1");
        assert_eq!(
            webhook.event,
            Event::Receipt(Receipt::Received {
                msg_id: "m1".into(),
                tracking_id: Some("n1".into()),
                at: DateTime::from_timestamp_millis(1_700_000_000_000 - 5_000).unwrap(),
            })
        );
        assert_eq!(webhook.stored_body["recipient"]["id"], "8490*****56");
        assert_eq!(
            receipt_of(&webhook.stored_body),
            match webhook.event {
                Event::Receipt(r) => Some(r),
                _ => None,
            }
        );
    }

    #[test]
    fn what_a_citizen_writes_reaches_us_without_direction_overrides_or_zero_width_characters() {
        let ts: i64 = 1_700_000_000_000 - 1_000;
        let body = json!({
            "app_id": APP, "event_name": "user_send_text",
            "sender": {"id": "2000000000000000001"}, "recipient": {"id": "3000"},
            "message": {"msg_id": "t1", "text": "Hồ sơ \u{202E}000.005\u{202C} của tôi\u{200B} sao rồi?"},
            "timestamp": ts.to_string(),
        });
        let (raw, headers) = signed(&body);
        let (_, webhook) = authenticate(&tenants(), &headers, &raw, now(), freshness()).unwrap();
        match webhook.event {
            Event::Text { text, .. } => assert_eq!(text, "Hồ sơ 000.005 của tôi sao rồi?"),
            other => panic!("not a text: {other:?}"),
        }
    }

    #[test]
    fn stale_and_future_timestamps_are_refused_naming_the_field() {
        for ts in [
            1_700_000_000_000 - 16 * 60_000,
            1_700_000_000_000 + 6 * 60_000,
        ] {
            let (raw, headers) = signed(&receipt(ts));
            let refusal = authenticate(&tenants(), &headers, &raw, now(), freshness()).unwrap_err();
            assert_eq!(refusal.outcome, "stale");
            assert_eq!(refusal.error.status, StatusCode::UNAUTHORIZED);
            assert_eq!(refusal.error.field.as_deref(), Some("timestamp"));
        }
    }

    #[test]
    fn by_default_a_redelivery_keeps_its_timestamp_for_a_day_and_not_longer() {
        let settings = NotifierSettings::default();
        let freshness = Freshness::from_settings(&settings).unwrap();
        let hour = 3_600_000;
        let (raw, headers) = signed(&receipt(1_700_000_000_000 - 23 * hour));
        assert!(authenticate(&tenants(), &headers, &raw, now(), freshness).is_ok());
        let (raw, headers) = signed(&receipt(1_700_000_000_000 - 25 * hour));
        let refusal = authenticate(&tenants(), &headers, &raw, now(), freshness).unwrap_err();
        assert_eq!(refusal.outcome, "stale");
    }

    #[test]
    fn a_freshness_window_that_pruning_would_undercut_is_refused_naming_the_setting() {
        let mut settings = NotifierSettings {
            webhook_max_age_secs: EVENT_RETENTION.as_secs(),
            ..NotifierSettings::default()
        };
        let error = Freshness::from_settings(&settings).unwrap_err();
        assert!(
            error.to_string().contains("notifier.webhook_max_age_secs"),
            "{error}"
        );
        settings.webhook_max_age_secs = EVENT_RETENTION.as_secs() - settings.webhook_max_ahead_secs;
        assert!(Freshness::from_settings(&settings).is_ok());
    }

    #[test]
    fn forged_unsigned_and_unknown_app_webhooks_are_refused() {
        let body = receipt(1_700_000_000_000);
        let (raw, headers) = signed(&body);
        let mut tampered = raw.clone();
        let at = tampered.iter().position(|b| *b == b'm').unwrap();
        tampered[at] = b'M';
        let refusal =
            authenticate(&tenants(), &headers, &tampered, now(), freshness()).unwrap_err();
        assert_eq!(refusal.outcome, "bad_signature");
        assert_eq!(refusal.error.status, StatusCode::UNAUTHORIZED);

        let refusal =
            authenticate(&tenants(), &HeaderMap::new(), &raw, now(), freshness()).unwrap_err();
        assert_eq!(refusal.outcome, "bad_signature");

        let mut other = body.clone();
        other["app_id"] = json!("999");
        let (raw, headers) = signed(&other);
        let refusal = authenticate(&tenants(), &headers, &raw, now(), freshness()).unwrap_err();
        assert_eq!(refusal.outcome, "unknown_app");
        assert_eq!(refusal.error.status, StatusCode::FORBIDDEN);
    }

    #[test]
    fn malformed_bodies_are_refused_naming_the_field() {
        let refusal = authenticate(
            &tenants(),
            &HeaderMap::new(),
            b"{not json",
            now(),
            freshness(),
        )
        .unwrap_err();
        assert_eq!(refusal.error.status, StatusCode::BAD_REQUEST);
        assert_eq!(refusal.error.field.as_deref(), Some("body"));

        let mut body = receipt(1_700_000_000_000);
        body["message"] = json!({"tracking_id": "n1"});
        let (raw, headers) = signed(&body);
        let refusal = authenticate(&tenants(), &headers, &raw, now(), freshness()).unwrap_err();
        assert_eq!(refusal.outcome, "invalid");
        assert_eq!(refusal.error.field.as_deref(), Some("message.msg_id"));

        let seen = json!({"app_id": APP, "event_name": "user_seen_message",
            "message": {"msg_ids": "m1"}, "timestamp": "1700000000000"});
        let (raw, headers) = signed(&seen);
        let refusal = authenticate(&tenants(), &headers, &raw, now(), freshness()).unwrap_err();
        assert_eq!(refusal.error.field.as_deref(), Some("message.msg_ids"));
    }

    #[test]
    fn events_without_a_msg_id_are_deduplicated_by_their_body() {
        let follow = json!({"app_id": APP, "oa_id": "2000000000000000001", "event_name": "follow",
            "follower": {"id": "u1"}, "timestamp": "1700000000000"});
        let (raw, headers) = signed(&follow);
        let (_, webhook) = authenticate(&tenants(), &headers, &raw, now(), freshness()).unwrap();
        assert_eq!(webhook.dedup_key, hex::encode(Sha256::digest(&raw)));
        assert_eq!(
            webhook.event,
            Event::Follow {
                user_id: "u1".into(),
                following: true
            }
        );
    }

    #[test]
    fn a_rating_is_read_leniently_and_its_note_is_not_kept_in_the_event() {
        let rating = |rate: Value| {
            json!({"app_id": APP, "oa_id": "2000000000000000001", "event_name": "user_feedback",
                "message": {"msg_id": "m9", "tracking_id": "n9", "rate": rate,
                    "note": "Cán bộ tận tình", "feedbacks": ["Đúng hẹn", 3],
                    "submit_time": "1699999990000"},
                "timestamp": "1700000000000"})
        };
        let (raw, headers) = signed(&rating(json!("5")));
        let (_, webhook) = authenticate(&tenants(), &headers, &raw, now(), freshness()).unwrap();
        assert_eq!(webhook.dedup_key, "m9");
        assert_eq!(
            webhook.event,
            Event::Feedback(subscribers::Feedback {
                user_id: None,
                msg_id: "m9".into(),
                tracking_id: Some("n9".into()),
                rating: Some(5),
                note: "Cán bộ tận tình".into(),
                feedbacks: vec!["Đúng hẹn".into()],
                submitted_at: DateTime::from_timestamp_millis(1_699_999_990_000).unwrap(),
            })
        );
        assert_eq!(webhook.stored_body["message"]["note"], "redacted");
        for odd in [json!(0), json!(6), json!("many"), Value::Null] {
            let (raw, headers) = signed(&rating(odd.clone()));
            let (_, webhook) =
                authenticate(&tenants(), &headers, &raw, now(), freshness()).unwrap();
            match webhook.event {
                Event::Feedback(f) => assert_eq!(f.rating, None, "{odd}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn shared_phones_are_normalised_and_not_stored_in_the_event() {
        let info = json!({"app_id": APP, "event_name": "user_submit_info",
            "sender": {"id": "u1"}, "info": {"name": "Anh", "phone": "0903 123 456"},
            "timestamp": "1700000000000"});
        let (raw, headers) = signed(&info);
        let (_, webhook) = authenticate(&tenants(), &headers, &raw, now(), freshness()).unwrap();
        assert_eq!(
            webhook.event,
            Event::SubmitInfo {
                user_id: "u1".into(),
                phone: Some(PhoneNumber::parse("84903123456").unwrap())
            }
        );
        assert_eq!(webhook.stored_body["info"], "redacted");
    }
}
