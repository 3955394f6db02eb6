//! A citizen's erasure request in the notifier (`POST /v1/subjects/erase`, see
//! [`loa_platform::erasure`]). In one transaction, for the caller's tenant:
//!
//! 1. the citizen's Zalo user ids are gathered: their subscriber row's, and the
//!    recipients' of parked requests addressed to their phone;
//! 2. their subscriber rows (phone, name, Zalo user id, tags, opt-in or opt-out) and
//!    monthly promotion counts are deleted;
//! 3. parked requests addressed to their phone or user ids are given up (`failed`,
//!    body dropped);
//! 4. their chat lookups and texts, any text to the OA that names their phone (in any
//!    written form: its digits are compared), the webhooks they sent or received
//!    (already stored with the phone masked), the ratings those webhooks carried and
//!    the phone ZNS receipts said were reached (`zns_recipients`, which answers link
//!    from) are deleted;
//! 5. dead letters (the tenant's, and those no tenant was verified for) whose body
//!    names the phone (in any written form: their digits are compared) or a user id
//!    have their persons masked, and are dropped whole when the number is still in
//!    them;
//! 6. the audit row is written.
//!
//! A later import or follow brings the citizen back as a new subscriber: that is the
//! province's (or the citizen's) new act, not a leftover.

use super::masked_body;
use crate::deliveries::DeliveryStatus;
use anyhow::Context;
use axum::{extract::State, http::HeaderMap, routing::post, Json, Router};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use loa_platform::{
    erasure::{self, credential_kind, ErasureReport, ErasureRequest},
    http::{admin_tenant, ApiError, JsonBody},
    LiveTenants,
};
use serde_json::Value;
use std::collections::BTreeMap;

/// What a parked request given up at the citizen's request says.
pub const ERASED: &str = "Erased at the citizen's request";

/// Erases what the notifier holds of `request.phone` in `tenant`, and audits it.
pub async fn erase_subject(
    pool: &Pool,
    tenant: &str,
    request: &ErasureRequest,
    credential: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<ErasureReport> {
    let phone = request.phone.as_str();
    let local = format!("0{}", &phone[2..]);
    let mut client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let tx = client
        .transaction()
        .await
        .context("Failed to begin the erasure")?;
    let mut removed = BTreeMap::new();

    // 1. Who they are on Zalo.
    let users: Vec<String> = tx
        .query(
            "SELECT zalo_user_id FROM notifier.subscribers
              WHERE tenant = $1 AND phone = $2 AND zalo_user_id IS NOT NULL
             UNION
             SELECT request -> 'recipient' ->> 'zalo_user_id' FROM notifier.deliveries
              WHERE tenant = $1 AND request IS NOT NULL
                AND request -> 'recipient' ->> 'phone' = $2
                AND request -> 'recipient' ->> 'zalo_user_id' IS NOT NULL",
            &[&tenant, &phone],
        )
        .await
        .context("Failed to find the citizen's Zalo user ids")?
        .iter()
        .map(|r| r.get(0))
        .collect();

    // 2. The audience.
    let subscribers: Vec<i64> = tx
        .query(
            "DELETE FROM notifier.subscribers
              WHERE tenant = $1 AND (phone = $2 OR zalo_user_id = ANY($3))
             RETURNING id",
            &[&tenant, &phone, &users],
        )
        .await
        .context("Failed to delete the citizen's subscriber rows")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let promotions = tx
        .execute(
            "DELETE FROM notifier.promotion_sends WHERE tenant = $1 AND subscriber_id = ANY($2)",
            &[&tenant, &subscribers],
        )
        .await
        .context("Failed to delete the citizen's promotion counts")?;
    removed.insert("subscribers".to_owned(), subscribers.len() as u64);
    removed.insert("promotion_counts".to_owned(), promotions);

    // 3. Parked requests.
    let parked = tx
        .query(
            "UPDATE notifier.deliveries
                SET status = CASE WHEN status IN ('deferred', 'held', 'ambiguous', 'sending')
                                  THEN 'failed' ELSE status END,
                    request = NULL, not_before = NULL, recheck_at = NULL,
                    last_error = $4, updated_at = $5
              WHERE tenant = $1 AND request IS NOT NULL
                AND (request -> 'recipient' ->> 'phone' = $2
                     OR request -> 'recipient' ->> 'zalo_user_id' = ANY($3))
             RETURNING notification_id",
            &[&tenant, &phone, &users, &ERASED, &now],
        )
        .await
        .context("Failed to give up the citizen's parked requests")?;
    let parked: Vec<String> = parked.iter().map(|r| r.get(0)).collect();
    if !parked.is_empty() {
        tx.execute(
            "INSERT INTO notifier.delivery_events (notification_id, tenant, status, at, detail)
             SELECT id, $2, $3, $4, jsonb_build_object('reason', $5::text)
               FROM unnest($1::text[]) AS id",
            &[
                &parked,
                &tenant,
                &DeliveryStatus::Failed.as_str(),
                &now,
                &ERASED,
            ],
        )
        .await
        .context("Failed to record the given-up deliveries' history")?;
    }
    removed.insert("deliveries".to_owned(), parked.len() as u64);

    // 4. What they wrote, what anyone wrote naming their number (`0903 123 456`,
    //    `+84 903.123.456`: the digits are compared), and what Zalo said about them.
    let national = &phone[2..];
    let lookups = tx
        .execute(
            "DELETE FROM notifier.citizen_messages
              WHERE tenant = $1
                AND (zalo_user_id = ANY($2)
                     OR (kind = 'text'
                         AND strpos(regexp_replace(body, '[^0-9]', '', 'g'), $3) > 0))",
            &[&tenant, &users, &national],
        )
        .await
        .context("Failed to delete the citizen's chat lookups and texts")?;
    let webhook_msg_ids: Vec<Option<String>> = tx
        .query(
            "DELETE FROM notifier.webhook_events
              WHERE tenant = $1
                AND (strpos(body::text, $2) > 0 OR strpos(body::text, $3) > 0
                     OR EXISTS (SELECT 1 FROM unnest($4::text[]) AS u
                                 WHERE strpos(body::text, '\"' || u || '\"') > 0))
             RETURNING msg_id",
            &[&tenant, &phone, &local, &users],
        )
        .await
        .context("Failed to delete the citizen's webhooks")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let webhook_msg_ids: Vec<String> = webhook_msg_ids.into_iter().flatten().collect();
    let ratings = tx
        .execute(
            "DELETE FROM notifier.citizen_feedback
              WHERE tenant = $1
                AND (msg_id = ANY($2) OR strpos(note, $3) > 0 OR strpos(note, $4) > 0
                     OR strpos(feedbacks::text, $3) > 0 OR strpos(feedbacks::text, $4) > 0)",
            &[&tenant, &webhook_msg_ids, &phone, &local],
        )
        .await
        .context("Failed to delete the citizen's ratings")?;
    // The phones ZNS receipts said their messages reached (the links answers made
    // from them went with the subscriber rows).
    let reached = tx
        .execute(
            "DELETE FROM notifier.zns_recipients WHERE tenant = $1 AND phone = $2",
            &[&tenant, &phone],
        )
        .await
        .context("Failed to delete the ZNS receipts' phones")?;
    removed.insert("zns_recipients".to_owned(), reached);
    removed.insert("citizen_messages".to_owned(), lookups);
    removed.insert("webhooks".to_owned(), webhook_msg_ids.len() as u64);
    removed.insert("ratings".to_owned(), ratings);

    // 5. Dead letters naming them, in whatever form the upstream wrote the number
    //    (`+84 903.123.456`): their digits are compared, not their text.
    let users_quoted: Vec<Vec<u8>> = users
        .iter()
        .map(|u| format!("\"{u}\"").into_bytes())
        .collect();
    let letters = tx
        .query(
            "SELECT id, body FROM notifier.dead_letters
              WHERE (tenant = $1 OR tenant IS NULL)
                AND (strpos(regexp_replace(encode(body, 'escape'), '[^0-9]', '', 'g'), $2) > 0
                     OR EXISTS (SELECT 1 FROM unnest($3::bytea[]) AS u
                                 WHERE position(u IN body) > 0))
              FOR UPDATE",
            &[&tenant, &national, &users_quoted],
        )
        .await
        .context("Failed to find the dead letters naming the citizen")?;
    let mut ids = Vec::with_capacity(letters.len());
    let mut bodies = Vec::with_capacity(letters.len());
    for row in &letters {
        let body: &[u8] = row.get(1);
        let named = names_number(body, national) || users_quoted.iter().any(|u| contains(body, u));
        if !named {
            continue; // The octal escapes of other characters made the digits match.
        }
        let masked = masked_body(body);
        ids.push(row.get::<_, i64>(0));
        // Named somewhere the masking does not look: nothing of it is kept.
        if names_number(&masked, national) || users_quoted.iter().any(|u| contains(&masked, u)) {
            bodies.push(Vec::new());
        } else {
            bodies.push(masked);
        }
    }
    super::retention::store_masked_dead_letters(&tx, &ids, &bodies, now).await?;
    removed.insert("dead_letters".to_owned(), ids.len() as u64);

    // 6. The audit.
    let report =
        erasure::record(&tx, "notifier", request, tenant, credential, now, removed).await?;
    tx.commit().await.context("Failed to commit the erasure")?;
    Ok(report)
}

/// Whether `national` (the 9 digits after `84`) appears in `text`'s digits taken
/// together: `0903 123 456`, `+84 903.123.456` and `84903123456` all name it.
pub(crate) fn names_number(text: &[u8], national: &str) -> bool {
    let digits: Vec<u8> = text.iter().copied().filter(u8::is_ascii_digit).collect();
    contains(&digits, national.as_bytes())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// What the erasure route needs.
#[derive(Clone)]
pub(crate) struct ErasureState {
    /// The notifier's database.
    pub pool: Pool,
    /// Tenants (admin tokens), as the tenants file says now.
    pub tenants: LiveTenants,
    /// The notifier's wall clock.
    pub clock: crate::clock::Clock,
}

/// `POST /v1/subjects/erase`.
pub(crate) fn router(state: ErasureState) -> Router {
    Router::new()
        .route(erasure::PATH, post(erase_handler))
        .with_state(state)
}

/// `POST /v1/subjects/erase`.
#[utoipa::path(post, path = "/v1/subjects/erase", tag = "personal data",
    security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    request_body(content = loa_platform::erasure::ErasureRequestBody),
    responses(
        (status = 200, body = ErasureReport, description = "Erased (or nothing was left: zero counts); audited either way"),
        loa_platform::http::openapi::JsonRefusals, loa_platform::http::openapi::AdminRefusals,
    ))]
pub(crate) async fn erase_handler(
    State(state): State<ErasureState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<ErasureReport>, ApiError> {
    let tenants = state.tenants.current();
    let tenant = admin_tenant(&tenants, &headers)?;
    let request = ErasureRequest::parse(&body)?;
    let report = erase_subject(
        &state.pool,
        &tenant.id,
        &request,
        credential_kind(&tenants, &headers),
        state.clock.now(),
    )
    .await?;
    tracing::info!(
        tenant = %tenant.id,
        audit_id = report.audit_id,
        removed = ?report.removed,
        "A citizen's personal data was erased at their request."
    );
    Ok(Json(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_recognised_in_any_written_form_and_not_in_its_masked_one() {
        for text in [
            "84903123456",
            "0903 123 456",
            "+84 903.123.456",
            "{\"p\":\"0903-123-456\"}",
        ] {
            assert!(names_number(text.as_bytes(), "903123456"), "{text}");
        }
        assert!(!names_number(b"8490*****56", "903123456"));
        assert!(!names_number(b"84903123457", "903123456"));
    }
}
