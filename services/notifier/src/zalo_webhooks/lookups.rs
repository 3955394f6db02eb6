//! Chat lookups, the notifier's half: a citizen's "tra cứu <mã>" is kept in
//! `notifier.citizen_messages` by the webhook's own transaction ([`record`], which
//! also applies the per-user limit), and the relay [`CHAT_LOOKUPS`] hands each kept
//! lookup to the tracker on `loa.citizen` (`chat_lookup.v1`, published with confirms,
//! then marked forwarded), with the phones linked to the Zalo user who asked. The
//! tracker answers with a `chat_reply` notification, which the sender delivers as an
//! OA consultation message like any other delivery.
//!
//! A redelivered webhook never reaches [`record`] (webhook dedup), and a message kept
//! twice is one row (`UNIQUE (tenant, msg_id)`); a lookup published twice (a crash
//! between the confirm and the mark) is answered once: the reply's notification id
//! comes from the message id.

use super::relay::Relay;
use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use loa_contracts::{ChatLookup, Envelope};
use loa_platform::amqp::{topology, OutgoingMessage};
use prometheus::{register_int_counter_vec, IntCounterVec};
use std::{sync::LazyLock, time::Duration};
use tokio_postgres::Row;

static LOOKUPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_notifier_chat_lookups_total",
        "Chat lookups (\"tra cứu <mã>\") received, by tenant and outcome: forwarded to \
         the tracker, or rate_limited (over the per-user limit: kept, never answered).",
        &["tenant", "outcome"]
    )
    .expect("metric registers once")
});

/// How many lookups one Zalo user may make in a window; the excess is kept, counted
/// and not answered (answering would let a flood of lookups make the OA send a flood
/// of replies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupLimit {
    /// Lookups answered per user and window.
    pub max: u32,
    /// The sliding window.
    pub window: Duration,
}

impl Default for LookupLimit {
    fn default() -> Self {
        Self {
            max: 5,
            window: Duration::from_secs(600),
        }
    }
}

/// Creates the tenant's series at zero, so the first lookup shows in `increase()`.
pub(crate) fn init_metrics(tenant: &str) {
    for outcome in ["forwarded", "rate_limited"] {
        LOOKUPS.with_label_values(&[tenant, outcome]);
    }
}

/// What became of a lookup kept by [`record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kept {
    /// To be forwarded to the tracker.
    Forward,
    /// Over the user's limit: kept, not answered.
    RateLimited,
}

/// Keeps a citizen's chat lookup (inside the webhook's transaction), judged against
/// the user's limit: the lookups of this user kept for forwarding since the window
/// before `at` (Zalo's time of the message), later ones included, so webhooks that
/// arrive out of order cannot slip past it. Concurrent lookups of one user are
/// serialised by a transaction-scoped advisory lock, so a burst cannot either.
pub(crate) async fn record<C: GenericClient>(
    client: &C,
    tenant: &str,
    zalo_user_id: &str,
    msg_id: &str,
    dossier_code: &str,
    at: DateTime<Utc>,
    limit: LookupLimit,
) -> anyhow::Result<Kept> {
    client
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('chat_lookup' || chr(31) || $1 || chr(31) || $2, 0))",
            &[&tenant, &zalo_user_id],
        )
        .await
        .context("Failed to lock a user's chat lookups")?;
    let recent: i64 = client
        .query_one(
            "SELECT count(*) FROM notifier.citizen_messages
              WHERE tenant = $1 AND zalo_user_id = $2 AND kind = 'lookup' AND outcome = 'forward'
                AND received_at > $3::timestamptz - make_interval(secs => $4::float8)",
            &[&tenant, &zalo_user_id, &at, &limit.window.as_secs_f64()],
        )
        .await
        .context("Failed to count a user's recent chat lookups")?
        .get(0);
    let kept = if recent < i64::from(limit.max) {
        Kept::Forward
    } else {
        Kept::RateLimited
    };
    let outcome = match kept {
        Kept::Forward => "forward",
        Kept::RateLimited => "rate_limited",
    };
    let inserted = client
        .execute(
            "INSERT INTO notifier.citizen_messages
                    (tenant, zalo_user_id, kind, dossier_code, msg_id, received_at, outcome)
             VALUES ($1, $2, 'lookup', $3, $4, $5, $6)
             ON CONFLICT (tenant, msg_id) DO NOTHING",
            &[
                &tenant,
                &zalo_user_id,
                &dossier_code,
                &msg_id,
                &at,
                &outcome,
            ],
        )
        .await
        .context("Failed to record a chat lookup")?;
    if inserted > 0 && kept == Kept::RateLimited {
        LOOKUPS.with_label_values(&[tenant, "rate_limited"]).inc();
        tracing::info!(
            tenant,
            limit = limit.max,
            window_secs = limit.window.as_secs(),
            "A Zalo user went over the chat lookup limit; the lookup is kept but not answered."
        );
    }
    Ok(kept)
}

/// Forwards kept lookups to the tracker, each with the phones linked to the Zalo user
/// who asked.
pub(crate) const CHAT_LOOKUPS: Relay = Relay {
    what: "chat lookups",
    connection: "loa-notifier-lookups",
    unforwarded: "SELECT m.id, m.tenant, m.zalo_user_id, m.msg_id, m.dossier_code, m.received_at,
                         coalesce(array_agg(DISTINCT s.phone) FILTER (WHERE s.phone IS NOT NULL), '{}')
                    FROM (SELECT id, tenant, zalo_user_id, msg_id, dossier_code, received_at
                            FROM notifier.citizen_messages
                           WHERE forwarded_at IS NULL AND outcome = 'forward' AND kind = 'lookup'
                           ORDER BY id
                           LIMIT $1
                             FOR UPDATE SKIP LOCKED) m
                    LEFT JOIN notifier.subscribers s
                           ON s.tenant = m.tenant AND s.zalo_user_id = m.zalo_user_id
                   GROUP BY m.id, m.tenant, m.zalo_user_id, m.msg_id, m.dossier_code, m.received_at
                   ORDER BY m.id",
    message: lookup_message,
    mark_forwarded: "UPDATE notifier.citizen_messages SET forwarded_at = now() WHERE id = ANY($1)",
    keys: |rows| vec![Box::new(rows.iter().map(|r| r.get(0)).collect::<Vec<i64>>())],
    forwarded: |rows| {
        for row in rows {
            let tenant: &str = row.get(1);
            LOOKUPS.with_label_values(&[tenant, "forwarded"]).inc();
        }
    },
    idle: Duration::from_millis(200),
};

/// A kept lookup's message.
fn lookup_message(row: &Row) -> Option<OutgoingMessage> {
    let lookup = ChatLookup {
        tenant: row.get(1),
        zalo_user_id: row.get(2),
        msg_id: row.get(3),
        dossier_code: row.get::<_, Option<String>>(4).unwrap_or_default(),
        received_at: row.get(5),
        linked_phones: row.get(6),
    };
    Some(OutgoingMessage {
        exchange: topology::EX_CITIZEN.to_owned(),
        routing_key: lookup.routing_key(),
        message_id: lookup.reply_id(),
        body: Envelope::ChatLookupV1(lookup).to_bytes(),
        headers: Vec::new(),
    })
}
