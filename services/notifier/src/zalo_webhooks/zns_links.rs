//! Phones linked to Zalo users by a citizen's answer to a ZNS, so chat lookups
//! ([`super::lookups`]) can be answered for citizens who never shared their phone with
//! the OA but did get (and answer) a ZNS of ours.
//!
//! Zalo tells the two halves apart: a ZNS delivery receipt (`user_received_message`
//! with `delivery_time`) names the **phone** the message reached (`recipient.id`) and
//! no Zalo user (Zalo stopped returning it), so a receipt alone links nothing. A
//! citizen's answer to that message (`user_feedback` on a rating template,
//! `user_click_response_button`) comes from the **user** (`sender.id`) and names the
//! message (`msg_id`, `tracking_id`), not the phone. So:
//!
//! 1. every signed ZNS receipt keeps which phone its message reached
//!    ([`remember_recipient`], `notifier.zns_recipients`, kept [`KEPT_FOR`]);
//! 2. an answer naming a message that a receipt says was delivered to phone P, and
//!    that is a ZNS delivery of ours in the same tenant, links P to the answering
//!    user ([`link_answer`], `subscribers.phone_source = 'zns_interaction'`).
//!
//! An answer naming a message Loa never sent, another tenant's, one never reported
//! delivered, or with a `tracking_id` other than the receipt's, links nothing. Only
//! the person holding the phone's Zalo account can answer a ZNS delivered to it, and
//! webhooks are signed with the OA's secret, so the link is as strong as a shared
//! phone.

use super::subscribers::{self, PhoneSource};
use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use loa_contracts::PhoneNumber;
use std::time::Duration;

/// How long the phone a ZNS reached is kept for an answer to link: a citizen answers
/// a message within days, and the phone should not be kept longer than that.
pub const KEPT_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// A citizen's answer to a ZNS (`user_click_response_button`, or the user and message
/// of a `user_feedback`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interaction {
    /// `sender.id`: the Zalo user who answered.
    pub user_id: String,
    /// `message.msg_id`: Zalo's id of the ZNS answered.
    pub msg_id: String,
    /// `message.tracking_id`: our notification id, when Zalo echoes it.
    pub tracking_id: Option<String>,
    /// Zalo's time of the answer.
    pub at: DateTime<Utc>,
}

/// Keeps the phone a ZNS receipt says its message reached (the first receipt of a
/// message wins; a redelivered one changes nothing).
pub(crate) async fn remember_recipient<C: GenericClient>(
    client: &C,
    tenant: &str,
    msg_id: &str,
    tracking_id: Option<&str>,
    phone: &PhoneNumber,
    delivered_at: DateTime<Utc>,
) -> anyhow::Result<()> {
    client
        .execute(
            "INSERT INTO notifier.zns_recipients (tenant, msg_id, tracking_id, phone, delivered_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant, msg_id) DO NOTHING",
            &[
                &tenant,
                &msg_id,
                &tracking_id,
                &phone.as_str(),
                &delivered_at,
            ],
        )
        .await
        .context("Failed to keep the phone a ZNS reached")?;
    Ok(())
}

/// Whether an answer linked a phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Linked {
    /// The answered message is a ZNS of ours delivered to a phone, now the user's.
    Yes,
    /// Nothing to link (not ours, not delivered, or the ids disagree).
    No,
}

/// Links the phone the answered ZNS reached to the user who answered, when the
/// message is a ZNS delivery of ours in `tenant` that a receipt reported delivered.
pub(crate) async fn link_answer<C: GenericClient>(
    client: &C,
    tenant: &str,
    answer: &Interaction,
) -> anyhow::Result<Linked> {
    let tracking_id = answer.tracking_id.as_deref().filter(|t| !t.is_empty());
    let row = client
        .query_opt(
            "SELECT r.phone FROM notifier.zns_recipients r
              WHERE r.tenant = $1 AND r.msg_id = $2
                AND ($3::text IS NULL OR r.tracking_id IS NULL OR r.tracking_id = $3)
                AND EXISTS (SELECT 1 FROM notifier.deliveries d
                             WHERE d.tenant = r.tenant AND d.channel = 'zns'
                               AND (d.zalo_msg_id = r.msg_id OR d.notification_id = r.tracking_id))",
            &[&tenant, &answer.msg_id, &tracking_id],
        )
        .await
        .context("Failed to find the phone an answered ZNS reached")?;
    let Some(phone) = row
        .map(|r| r.get::<_, String>(0))
        .and_then(|p| PhoneNumber::parse(&p).ok())
    else {
        tracing::info!(
            tenant,
            "An answer to a message names no delivered ZNS of ours; no phone is linked."
        );
        return Ok(Linked::No);
    };
    subscribers::set_phone(
        client,
        tenant,
        &answer.user_id,
        &phone,
        answer.at,
        PhoneSource::ZnsInteraction,
    )
    .await?;
    tracing::info!(
        tenant,
        "A Zalo user answered a ZNS delivered to a phone; the phone is linked to them."
    );
    Ok(Linked::Yes)
}

/// Deletes the phones ZNS messages reached more than [`KEPT_FOR`] ago. Returns the
/// rows deleted.
pub(crate) async fn prune<C: GenericClient>(client: &C) -> anyhow::Result<u64> {
    client
        .execute(
            "DELETE FROM notifier.zns_recipients
              WHERE delivered_at < now() - make_interval(secs => $1)",
            &[&KEPT_FOR.as_secs_f64()],
        )
        .await
        .context("Failed to prune the phones ZNS messages reached")
}
