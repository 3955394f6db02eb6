//! The OA's users as Zalo reports them: who follows each tenant's OA (so the sender
//! can reach them by Zalo user id, the OA channel) and the chat lookups they send.
//!
//! `notifier.subscribers (tenant, zalo_user_id, phone, following, updated_at)` is
//! written from `follow` / `unfollow` webhooks (`updated_at` is Zalo's event time, so
//! an older event arriving late cannot undo a newer one) and from `user_submit_info`
//! (the only webhook that carries a phone). Webhooks never carry the phone otherwise.
//!
//! `notifier.citizen_messages` keeps "tra cứu <code>" messages for the tracker to
//! answer, and `notifier.citizen_feedback` the ratings citizens give a message sent
//! with a rating template (`user_feedback`), for the ratings feature.
//!
//! Who follows, and with which phone, is read on the send path by
//! [`crate::engine::channel::followers_by_phone`].

use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use loa_contracts::{
    text::{fold_vietnamese, is_combining_mark},
    PhoneNumber,
};

/// Records that `zalo_user_id` follows (or stopped following) the tenant's OA, as of
/// `at` (Zalo's timestamp); an event older than what is on record changes nothing.
pub(crate) async fn set_following<C: GenericClient>(
    client: &C,
    tenant: &str,
    zalo_user_id: &str,
    following: bool,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    client
        .execute(
            "INSERT INTO notifier.subscribers AS s (tenant, zalo_user_id, phone, following, updated_at)
             VALUES ($1, $2, NULL, $3, $4)
             ON CONFLICT (tenant, zalo_user_id) DO UPDATE
                SET following = EXCLUDED.following, updated_at = EXCLUDED.updated_at
              WHERE s.updated_at <= EXCLUDED.updated_at",
            &[&tenant, &zalo_user_id, &following, &at],
        )
        .await
        .context("Failed to record a follow state")?;
    Ok(())
}

/// Records the phone a user shared with the OA (`user_submit_info`). A user not on
/// record yet is kept as not following until Zalo says otherwise.
pub(crate) async fn set_phone<C: GenericClient>(
    client: &C,
    tenant: &str,
    zalo_user_id: &str,
    phone: &PhoneNumber,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    // A phone names one citizen per tenant: an imported phone-only row joins this user.
    crate::broadcasts::join_phones(
        client,
        tenant,
        &[Some(phone.as_str())],
        &[Some(zalo_user_id)],
    )
    .await?;
    client
        .execute(
            "INSERT INTO notifier.subscribers (tenant, zalo_user_id, phone, following, updated_at)
             VALUES ($1, $2, $3, false, $4)
             ON CONFLICT (tenant, zalo_user_id) DO UPDATE SET phone = EXCLUDED.phone",
            &[&tenant, &zalo_user_id, &phone.as_str(), &at],
        )
        .await
        .context("Failed to record a subscriber's phone")?;
    Ok(())
}

/// Keeps a citizen's "tra cứu <code>" chat message for the tracker to answer. A
/// message already kept (same `msg_id`) is skipped.
pub(crate) async fn record_lookup<C: GenericClient>(
    client: &C,
    tenant: &str,
    zalo_user_id: &str,
    msg_id: &str,
    dossier_code: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    client
        .execute(
            "INSERT INTO notifier.citizen_messages (tenant, zalo_user_id, kind, dossier_code, msg_id, received_at)
             VALUES ($1, $2, 'lookup', $3, $4, $5)
             ON CONFLICT (tenant, msg_id) DO NOTHING",
            &[&tenant, &zalo_user_id, &dossier_code, &msg_id, &at],
        )
        .await
        .context("Failed to record a chat lookup")?;
    Ok(())
}

/// A citizen's rating of a message sent with a rating template (`user_feedback`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Feedback {
    /// Zalo's id of the rated message.
    pub msg_id: String,
    /// Our notification id, echoed by Zalo (`message.tracking_id`).
    pub tracking_id: Option<String>,
    /// Stars, 1 to 5, when Zalo's event carried a readable one.
    pub rating: Option<i16>,
    /// The citizen's own words (may be empty).
    pub note: String,
    /// The ready-made phrases the citizen ticked.
    pub feedbacks: Vec<String>,
    /// When the citizen submitted it (`message.submit_time`, else the event's time).
    pub submitted_at: DateTime<Utc>,
}

/// Keeps a citizen's rating for the ratings feature. A message is rated once: a
/// second rating of the same message keeps the first.
pub(crate) async fn record_feedback<C: GenericClient>(
    client: &C,
    tenant: &str,
    feedback: &Feedback,
) -> anyhow::Result<()> {
    client
        .execute(
            "INSERT INTO notifier.citizen_feedback
                    (tenant, msg_id, tracking_id, rating, note, feedbacks, submitted_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (tenant, msg_id) DO NOTHING",
            &[
                &tenant,
                &feedback.msg_id,
                &feedback.tracking_id,
                &feedback.rating,
                &feedback.note,
                &serde_json::json!(feedback.feedbacks),
                &feedback.submitted_at,
            ],
        )
        .await
        .context("Failed to record a citizen's rating")?;
    Ok(())
}

/// The dossier code of a "tra cuu <code>" message, whatever its case and diacritics
/// ("Tra cứu HS-0301", "TRA CUU: hs-0301", "tracuu HS-0301"); `None` for any other
/// text. The code is returned as typed (codes are opaque), without trailing
/// punctuation, at most 50 characters.
pub(crate) fn parse_lookup(text: &str) -> Option<String> {
    // Combining marks (decomposed input) go first, so indices agree with `folded`.
    let chars: Vec<char> = text
        .trim()
        .chars()
        .filter(|c| !is_combining_mark(*c))
        .collect();
    let folded: Vec<char> = chars.iter().map(|&c| fold_vietnamese(c)).collect();
    let mut i = 0;
    for (n, word) in ["tra", "cuu"].iter().enumerate() {
        if n > 0 {
            while folded.get(i).copied().is_some_and(is_separator) {
                i += 1;
            }
        }
        for expected in word.chars() {
            if folded.get(i) != Some(&expected) {
                return None;
            }
            i += 1;
        }
    }
    if folded.get(i).is_some_and(|c| c.is_alphanumeric()) {
        // "tra cuuX…": the keyword runs into another word.
        return None;
    }
    let rest: String = chars[i..].iter().collect();
    let code = rest
        .split(|c: char| c.is_whitespace() || c == ':')
        .find(|w| !w.is_empty() && *w != "-")?
        .trim_matches(|c: char| matches!(c, '.' | ',' | '!' | '?' | '"' | '\'' | '“' | '”'));
    (!code.is_empty() && code.chars().count() <= 50).then(|| code.to_owned())
}

fn is_separator(c: char) -> bool {
    c.is_whitespace() || c == '-' || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_recognised_whatever_their_case_and_diacritics() {
        for text in [
            "tra cuu HS-0301",
            "Tra cứu HS-0301",
            "TRA CỨU   HS-0301.",
            "tra cuu: HS-0301",
            "tracuu HS-0301",
            "  Tra-cứu HS-0301 giúp em",
        ] {
            assert_eq!(parse_lookup(text).as_deref(), Some("HS-0301"), "{text}");
        }
    }

    #[test]
    fn other_messages_are_not_lookups() {
        for text in [
            "xin chào",
            "tra cuu",
            "tra cứu   ",
            "tra cuuHS-0301",
            "hãy tra cứu HS-0301",
            "trà",
        ] {
            assert_eq!(parse_lookup(text), None, "{text}");
        }
    }

    #[test]
    fn decomposed_diacritics_are_folded_too() {
        // "cứu" as `u` + combining horn + combining acute, as some keyboards type it.
        let text = "Tra cu\u{31b}\u{301}u HS-0301";
        assert_eq!(parse_lookup(text).as_deref(), Some("HS-0301"));
        assert_eq!(fold_vietnamese('Đ'), 'd');
        assert_eq!(fold_vietnamese('Ự'), 'u');
        assert_eq!(fold_vietnamese('x'), 'x');
    }
}
