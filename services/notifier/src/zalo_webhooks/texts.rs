//! A citizen's other texts to the OA (neither a lookup nor "huỷ"): kept in
//! `notifier.citizen_messages` (kind `text`) by the webhook's own transaction
//! ([`record`]), so the console shows what citizens wrote and what Loa answered.
//!
//! What is kept: the text without invisible or control characters (zero-width,
//! direction overrides, NUL: [`loa_contracts::text::strip_invisible`]), at most
//! [`MAX_TEXT_CHARS`] characters with a flag when it was cut, the sender's Zalo user id
//! and Zalo's `msg_id` (`UNIQUE (tenant, msg_id)`: a replayed webhook stores nothing
//! twice). The text is never logged: it may hold a phone number or a name.
//!
//! What Loa answers: a citizen who writes to an OA expects a sign that someone is
//! there, and a canned answer to every line of a conversation would be spam. So the
//! user's first text of a day (Vietnam time) gets one short OA consultation message
//! ([`loa_contracts::templates::chat_reply_other_text`]: received, staff read the
//! OA's messages, how to look a dossier up); later texts that day are kept as
//! `answered_today` and get nothing. The reply is a `chat_reply` notification whose
//! id is [`loa_contracts::citizen::chat_reply_id`] of the message (the console finds
//! it by that id), published to `loa.notifications` by [`TEXT_REPLIES`] (confirmed,
//! then marked forwarded) and sent like any other delivery, inside Zalo's 7-day window that
//! the citizen's own message opened.

use super::relay::Relay;
use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use deadpool_postgres::GenericClient;
use loa_contracts::{
    citizen::chat_reply_id,
    text::strip_invisible,
    time::{vietnam, vietnam_day},
    Envelope, Lane, NotificationKind, NotificationRequest, Recipient,
};
use loa_platform::amqp::{consumer::H_TENANT, topology, OutgoingMessage};
use prometheus::{register_int_counter_vec, IntCounterVec};
use std::{sync::LazyLock, time::Duration};
use tokio_postgres::Row;

static TEXTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_notifier_citizen_texts_total",
        "Other texts citizens sent the OA (neither a lookup nor an opt-out), by tenant and \
         outcome: answered (the user's first of the day, given the automatic reply), \
         answered_today (kept, not answered again), reply_published (the reply handed to \
         the sender).",
        &["tenant", "outcome"]
    )
    .expect("metric registers once")
});

/// Longest text kept, in characters; the rest is cut (and the row says so).
pub const MAX_TEXT_CHARS: usize = 2000;

/// Creates the tenant's series at zero, so the first text shows in `increase()`.
pub(crate) fn init_metrics(tenant: &str) {
    for outcome in ["answered", "answered_today", "reply_published"] {
        TEXTS.with_label_values(&[tenant, outcome]);
    }
}

/// A citizen's text as it is kept: invisible and control characters removed (line
/// breaks and tabs stay), trimmed, at most [`MAX_TEXT_CHARS`] characters. The flag
/// says whether it was cut.
pub(crate) fn sanitized(text: &str) -> (String, bool) {
    let clean = strip_invisible(text);
    let clean = clean.trim();
    match clean.char_indices().nth(MAX_TEXT_CHARS) {
        Some((cut, _)) => (clean[..cut].trim_end().to_owned(), true),
        None => (clean.to_owned(), false),
    }
}

/// What became of a text kept by [`record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kept {
    /// The user's first text of the day: the automatic reply goes out.
    Answered,
    /// The user already got today's reply: kept, not answered.
    AnsweredToday,
    /// A replay of a message already kept: nothing done.
    Duplicate,
}

/// Keeps a citizen's text (inside the webhook's transaction), deciding whether it gets
/// the day's automatic reply: not when another text of this user on the same Vietnam
/// day (by Zalo's time `at`, earlier or later: webhooks may arrive out of order) was
/// answered. Concurrent texts of one user are serialised by a transaction-scoped
/// advisory lock, so a burst gets one reply.
pub(crate) async fn record<C: GenericClient>(
    client: &C,
    tenant: &str,
    zalo_user_id: &str,
    msg_id: &str,
    text: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<Kept> {
    client
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('citizen_text' || chr(31) || $1 || chr(31) || $2, 0))",
            &[&tenant, &zalo_user_id],
        )
        .await
        .context("Failed to lock a user's texts")?;
    let (day_start, day_end) = vietnam_day_bounds(at);
    let answered: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM notifier.citizen_messages
                             WHERE tenant = $1 AND zalo_user_id = $2 AND kind = 'text'
                               AND outcome = 'forward'
                               AND received_at >= $3 AND received_at < $4)",
            &[&tenant, &zalo_user_id, &day_start, &day_end],
        )
        .await
        .context("Failed to look for today's answer to a user's texts")?
        .get(0);
    let (kept, outcome) = if answered {
        (Kept::AnsweredToday, "answered_today")
    } else {
        (Kept::Answered, "forward")
    };
    let (body, truncated) = sanitized(text);
    let inserted = client
        .execute(
            "INSERT INTO notifier.citizen_messages
                    (tenant, zalo_user_id, kind, msg_id, received_at, outcome, body, body_truncated)
             VALUES ($1, $2, 'text', $3, $4, $5, $6, $7)
             ON CONFLICT (tenant, msg_id) DO NOTHING",
            &[
                &tenant,
                &zalo_user_id,
                &msg_id,
                &at,
                &outcome,
                &body,
                &truncated,
            ],
        )
        .await
        .context("Failed to record a citizen's text")?;
    if inserted == 0 {
        return Ok(Kept::Duplicate);
    }
    let label = match kept {
        Kept::Answered => "answered",
        _ => "answered_today",
    };
    TEXTS.with_label_values(&[tenant, label]).inc();
    Ok(kept)
}

/// The Vietnam day of `at`, as the instants it starts and ends.
fn vietnam_day_bounds(at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let midnight = vietnam_day(&at)
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists");
    let start = vietnam()
        .from_local_datetime(&midnight)
        .single()
        .expect("a fixed offset has one midnight")
        .with_timezone(&Utc);
    (start, start + chrono::Duration::days(1))
}

/// The automatic reply to a kept text: an OA consultation message to its sender.
pub(crate) fn reply_to(
    tenant: &str,
    zalo_user_id: &str,
    msg_id: &str,
    now: DateTime<Utc>,
) -> NotificationRequest {
    NotificationRequest {
        notification_id: chat_reply_id(tenant, msg_id),
        tenant: tenant.to_owned(),
        kind: NotificationKind::ChatReply,
        recipient: Recipient {
            phone: None,
            zalo_user_id: Some(zalo_user_id.to_owned()),
        },
        params: [(
            "text".to_owned(),
            loa_contracts::templates::chat_reply_other_text().to_owned(),
        )]
        .into(),
        lane: Lane::Transactional,
        dossier_code: None,
        not_before: None,
        trace_context: None,
        event_accepted_at: None,
        created_at: now,
        broadcast: None,
    }
}

/// Publishes the automatic answers to kept texts (each stamped with its tenant) and
/// marks their texts forwarded. A reply published twice (a crash between the confirm
/// and the mark) is sent once: its id is the text's [`chat_reply_id`].
pub(crate) const TEXT_REPLIES: Relay = Relay {
    what: "replies to citizens' texts",
    connection: "loa-notifier-text-replies",
    unforwarded: "SELECT id, tenant, zalo_user_id, msg_id FROM notifier.citizen_messages
                   WHERE forwarded_at IS NULL AND outcome = 'forward' AND kind = 'text'
                   ORDER BY id
                   LIMIT $1
                     FOR UPDATE SKIP LOCKED",
    message: reply_message,
    mark_forwarded: "UPDATE notifier.citizen_messages SET forwarded_at = now() WHERE id = ANY($1)",
    keys: |rows| {
        vec![Box::new(
            rows.iter().map(|r| r.get(0)).collect::<Vec<i64>>(),
        )]
    },
    forwarded: |rows| {
        for row in rows {
            let tenant: &str = row.get(1);
            TEXTS.with_label_values(&[tenant, "reply_published"]).inc();
        }
    },
    idle: Duration::from_millis(200),
};

/// A kept text's reply, published to `loa.notifications` as the tracker's relay
/// publishes a notification.
fn reply_message(row: &Row) -> Option<OutgoingMessage> {
    let tenant: String = row.get(1);
    let reply = reply_to(&tenant, row.get(2), row.get(3), Utc::now());
    Some(OutgoingMessage {
        exchange: topology::EX_NOTIFICATIONS.to_owned(),
        routing_key: reply.routing_key(),
        message_id: reply.notification_id.clone(),
        body: Envelope::NotificationRequestV1(reply).to_bytes(),
        headers: vec![(H_TENANT.to_owned(), tenant)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_kept_without_invisible_characters_and_cut_at_two_thousand_characters() {
        let (text, cut) = sanitized(" Xin\u{0} chào\u{200B} \u{202E}cán bộ\u{202C}\nạ \u{FEFF}");
        assert_eq!((text.as_str(), cut), ("Xin chào cán bộ\nạ", false));

        let long = "ằ".repeat(MAX_TEXT_CHARS + 5);
        let (text, cut) = sanitized(&long);
        assert_eq!((text.chars().count(), cut), (MAX_TEXT_CHARS, true));
        let exact = "a".repeat(MAX_TEXT_CHARS);
        assert_eq!(sanitized(&exact), (exact.clone(), false));
    }

    #[test]
    fn a_vietnam_day_runs_from_midnight_in_hanoi() {
        let at = DateTime::parse_from_rfc3339("2026-12-04T18:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let (start, end) = vietnam_day_bounds(at);
        assert_eq!(start.to_rfc3339(), "2026-12-04T17:00:00+00:00");
        assert_eq!(end.to_rfc3339(), "2026-12-05T17:00:00+00:00");
    }

    #[test]
    fn the_reply_to_a_text_is_a_consultation_message_found_by_the_texts_id() {
        let reply = reply_to("demo", "u1", "m1", Utc::now());
        assert_eq!(reply.notification_id, chat_reply_id("demo", "m1"));
        assert_eq!(reply.kind, NotificationKind::ChatReply);
        assert_eq!(reply.recipient.zalo_user_id.as_deref(), Some("u1"));
        assert!(reply.params["text"].contains("tra cứu <mã hồ sơ>"));
    }
}
