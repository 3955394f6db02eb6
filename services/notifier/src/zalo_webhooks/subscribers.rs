//! The OA's users as Zalo reports them: who follows each tenant's OA (so the sender
//! can reach them by Zalo user id, the OA channel) and the ratings they give.
//!
//! `notifier.subscribers (tenant, zalo_user_id, phone, following, updated_at)` is
//! written from `follow` / `unfollow` webhooks (`updated_at` is Zalo's event time, so
//! an older event arriving late cannot undo a newer one) and from `user_submit_info`
//! (the only webhook that carries a phone with the user) and from a user's answer to
//! a ZNS delivered to a phone ([`super::zns_links`]); `phone_source` says which.
//!
//! `notifier.citizen_feedback` keeps the ratings citizens give a message sent
//! with a rating template (`user_feedback`), for the ratings feature.
//!
//! Who follows, and with which phone, is read on the send path by
//! [`crate::engine::channel::followers_by_phone`].

use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use loa_contracts::PhoneNumber;

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
             ON CONFLICT (tenant, zalo_user_id) WHERE zalo_user_id IS NOT NULL DO UPDATE
                SET following = EXCLUDED.following, updated_at = EXCLUDED.updated_at
              WHERE s.updated_at <= EXCLUDED.updated_at",
            &[&tenant, &zalo_user_id, &following, &at],
        )
        .await
        .context("Failed to record a follow state")?;
    Ok(())
}

/// How a phone came to be linked to a Zalo user (`subscribers.phone_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PhoneSource {
    /// The user shared it with the OA (`user_submit_info`).
    SubmitInfo,
    /// The user answered (rated, tapped a button of) a ZNS of ours that Zalo
    /// delivered to that phone ([`super::zns_links`]).
    ZnsInteraction,
}

impl PhoneSource {
    fn as_str(self) -> &'static str {
        match self {
            Self::SubmitInfo => "user_submit_info",
            Self::ZnsInteraction => "zns_interaction",
        }
    }
}

/// Links `phone` to a Zalo user: the phone they shared with the OA, or the phone a
/// ZNS they answered reached (`source`). A user has one phone on record (the latest
/// link), and a phone one user. A user not on record yet is kept as not following
/// until Zalo says otherwise.
pub(crate) async fn set_phone<C: GenericClient>(
    client: &C,
    tenant: &str,
    zalo_user_id: &str,
    phone: &PhoneNumber,
    at: DateTime<Utc>,
    source: PhoneSource,
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
            "INSERT INTO notifier.subscribers
                    (tenant, zalo_user_id, phone, following, updated_at, phone_source)
             VALUES ($1, $2, $3, false, $4, $5)
             ON CONFLICT (tenant, zalo_user_id) WHERE zalo_user_id IS NOT NULL DO UPDATE
                SET phone = EXCLUDED.phone, phone_source = EXCLUDED.phone_source",
            &[
                &tenant,
                &zalo_user_id,
                &phone.as_str(),
                &at,
                &source.as_str(),
            ],
        )
        .await
        .context("Failed to record a subscriber's phone")?;
    Ok(())
}

/// A citizen's rating of a message sent with a rating template (`user_feedback`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Feedback {
    /// `sender.id`: the Zalo user who rated (links the rated ZNS's phone to them).
    pub user_id: Option<String>,
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
