//! `notifier.webhook_events`: every accepted webhook, once. [`store`] records a
//! verified webhook and applies its effect in one transaction; [`run_pruner`] drops
//! settled events past their retention.

use super::{
    command::{self, Command},
    lookups::{self, LookupLimit},
    parse::{Event, Webhook},
    receipts::{self, Applied, Receipt},
    subscribers::{self, PhoneSource},
    texts,
    zns_links::{self, Interaction, Linked},
};
use anyhow::Context;
use deadpool_postgres::Pool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long settled webhook events are kept. Deduplication needs them as long as a
/// webhook can pass the freshness check ([`Freshness::from_settings`] refuses a longer
/// window); the rest is for investigations.
pub const EVENT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Deletes settled webhook events older than [`EVENT_RETENTION`], a few thousand
/// rows per statement so no transaction grows large, and the phones ZNS messages
/// reached past [`zns_links::KEPT_FOR`]. Returns the rows deleted.
pub async fn prune_events(pool: &Pool) -> anyhow::Result<u64> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let mut deleted = 0;
    loop {
        let n = client
            .execute(
                "DELETE FROM notifier.webhook_events
                  WHERE ctid = ANY(ARRAY(
                        SELECT ctid FROM notifier.webhook_events
                         WHERE received_at < now() - make_interval(secs => $1)
                           AND outcome <> 'pending'
                         LIMIT 5000))",
                &[&EVENT_RETENTION.as_secs_f64()],
            )
            .await
            .context("Failed to prune webhook events")?;
        deleted += n;
        if n < 5000 {
            deleted += zns_links::prune(&client).await?;
            return Ok(deleted);
        }
    }
}

/// How often old webhook events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Prunes webhook events past their retention every few minutes until `cancel`
/// fires (every replica may run it: each delete takes a few thousand rows).
pub(crate) async fn run_pruner(pool: Pool, cancel: CancellationToken) {
    loop {
        if let Err(e) = prune_events(&pool).await {
            tracing::warn!(error.cause_chain = ?e, error.message = %e, "Failed to prune old webhook events.");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

/// Whether a stored webhook was new or a redelivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// First time: recorded and applied.
    Accepted,
    /// Seen before: nothing done.
    Duplicate,
}

/// Records a verified webhook and applies it, in one transaction. `limit` bounds each
/// user's chat lookups.
pub(crate) async fn store(
    pool: &Pool,
    tenant: &str,
    webhook: &Webhook,
    limit: LookupLimit,
) -> anyhow::Result<Stored> {
    let mut client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let tx = client
        .transaction()
        .await
        .context("Failed to begin a transaction")?;
    let inserted = tx
        .execute(
            "INSERT INTO notifier.webhook_events
                    (tenant, event_name, dedup_key, msg_id, occurred_at, body, outcome)
             VALUES ($1, $2, $3, $4, $5, $6, 'received')
             ON CONFLICT DO NOTHING",
            &[
                &tenant,
                &webhook.event_name,
                &webhook.dedup_key,
                &webhook.msg_id,
                &webhook.occurred_at,
                &webhook.stored_body,
            ],
        )
        .await
        .context("Failed to record a webhook")?;
    if inserted == 0 {
        return Ok(Stored::Duplicate);
    }
    let outcome = match &webhook.event {
        Event::Receipt(receipt) => {
            if let (
                Receipt::Received {
                    msg_id,
                    tracking_id,
                    at,
                },
                Some(phone),
            ) = (receipt, &webhook.zns_recipient)
            {
                zns_links::remember_recipient(
                    &tx,
                    tenant,
                    msg_id,
                    tracking_id.as_deref(),
                    phone,
                    *at,
                )
                .await?;
            }
            match receipts::apply(&tx, tenant, receipt).await? {
                Applied::Done => "applied",
                Applied::Waiting => "pending",
            }
        }
        Event::Follow { user_id, following } => {
            subscribers::set_following(&tx, tenant, user_id, *following, webhook.occurred_at)
                .await?;
            "applied"
        }
        Event::SubmitInfo {
            user_id,
            phone: Some(phone),
        } => {
            subscribers::set_phone(
                &tx,
                tenant,
                user_id,
                phone,
                webhook.occurred_at,
                PhoneSource::SubmitInfo,
            )
            .await?;
            "applied"
        }
        Event::Text {
            user_id,
            msg_id,
            text,
        } => match command::parse(text) {
            Command::OptOut => {
                let citizen = crate::broadcasts::Citizen::ZaloUser(user_id.clone());
                crate::broadcasts::opt_out(&tx, tenant, &citizen).await?;
                "applied"
            }
            Command::Lookup { code } => {
                lookups::record(
                    &tx,
                    tenant,
                    user_id,
                    msg_id,
                    &code,
                    webhook.occurred_at,
                    limit,
                )
                .await?;
                "applied"
            }
            Command::Other => {
                texts::record(&tx, tenant, user_id, msg_id, text, webhook.occurred_at).await?;
                "applied"
            }
        },
        Event::Feedback(feedback) => {
            subscribers::record_feedback(&tx, tenant, feedback).await?;
            if let Some(user_id) = &feedback.user_id {
                let answer = Interaction {
                    user_id: user_id.clone(),
                    msg_id: feedback.msg_id.clone(),
                    tracking_id: feedback.tracking_id.clone(),
                    at: webhook.occurred_at,
                };
                zns_links::link_answer(&tx, tenant, &answer).await?;
            }
            "applied"
        }
        Event::Click(answer) => match zns_links::link_answer(&tx, tenant, answer).await? {
            Linked::Yes => "applied",
            Linked::No => "ignored",
        },
        Event::SubmitInfo { phone: None, .. } | Event::Other => "ignored",
    };
    tx.execute(
        "UPDATE notifier.webhook_events
            SET outcome = $4,
                next_attempt_at = CASE WHEN $4 = 'pending' THEN now() + interval '500 milliseconds' END
          WHERE tenant = $1 AND event_name = $2 AND dedup_key = $3",
        &[&tenant, &webhook.event_name, &webhook.dedup_key, &outcome],
    )
    .await
    .context("Failed to record a webhook's outcome")?;
    tx.commit().await.context("Failed to commit a webhook")?;
    Ok(Stored::Accepted)
}
