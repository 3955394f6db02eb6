//! The admin console's notifier API (tenant admin token, or the console's service
//! credential with `X-Loa-Tenant`; another tenant's rows are not found, never
//! forbidden):
//!
//! - `GET /v1/overview`: today's deliveries by state, the ZNS quota, the send rate
//!   against the tenant's limit, the pause, the OA token's expiry, unreplayed dead
//!   letters;
//! - `GET /v1/deliveries?status=failed|deferred|held|ambiguous|retrying&after=&limit=`:
//!   deliveries needing attention, newest first, each saying whether it can be resent
//!   or cancelled (the dossier form `?dossier_code=` lives in [`crate::routes`]);
//! - `POST /v1/deliveries/{id}/resend`: a deferred or ambiguous delivery is made due
//!   now, its request's own `not_before` dropped (the scheduler republishes it; an
//!   ambiguous one may then reach the citizen twice: the admin decides), a failed one
//!   has its dead letter replayed;
//! - `POST /v1/deliveries/{id}/cancel`: a parked delivery (deferred, held, ambiguous)
//!   is never sent: `failed`, its stored request dropped;
//! - `GET /v1/citizen-messages?kind=lookup|text&before_id=&limit=`: what citizens
//!   texted the OA (chat lookups and other texts) and what Loa answered;
//! - `POST /v1/zalo/authorization` with `{"code", "code_verifier"}`: after an OA admin
//!   re-authorised the app (Zalo's consent page, PKCE), exchanges the code with Zalo
//!   (the app secret stays here) and stores the new token pair, so an expired or
//!   revoked refresh token never needs SQL. The pair is stored under the token row's
//!   lock, as a refresh stores its own; a paused tenant stays paused until an admin
//!   resumes it.
//!
//! Resend and cancel each add a row to the delivery's history (`resend_requested`,
//! `cancelled`). A delivery that is no longer in a state the action applies to (the
//! scheduler or a sender took it meanwhile) is a `409`.

use super::query::{invalid_query, QueryParams};
use crate::{
    dead_letters::{self, Selection},
    deliveries::DeliveryStatus,
    limits::{
        pause::{self, PauseView},
        quota,
    },
    zalo::sealing::Keyring,
};
use anyhow::Context;
use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    http::{HeaderMap, StatusCode},
    routing::{get, post},
    Json, Router,
};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use deadpool_postgres::Pool;
use loa_contracts::time::{vietnam, vietnam_day};
use loa_platform::{
    amqp::Publisher,
    http::{
        admin_tenant,
        openapi::{AdminRefusals, ErrorBody, JsonRefusals},
        ApiError,
    },
    LiveTenants,
};
use serde::Serialize;
use serde_json::json;
use std::{collections::BTreeMap, collections::HashMap, sync::Arc};

/// What the admin routes share.
#[derive(Clone)]
pub(crate) struct AdminState {
    /// The notifier's database.
    pub pool: Pool,
    /// Tenants (credentials, rate limits), as the tenants file says now.
    pub tenants: LiveTenants,
    /// Publishes replayed dead letters (resending a failed delivery).
    pub publisher: Arc<Publisher>,
    /// Seals the token pair a new OA authorisation brings.
    pub keyring: Keyring,
}

/// The admin routes.
pub(crate) fn router(state: AdminState) -> Router {
    Router::new()
        .route("/v1/overview", get(overview))
        .route("/v1/deliveries/{id}/resend", post(resend))
        .route("/v1/deliveries/{id}/cancel", post(cancel))
        .route("/v1/citizen-messages", get(citizen_messages))
        .route("/v1/zalo/authorization", post(authorize))
        .with_state(state)
}

fn day_start(day: NaiveDate) -> DateTime<Utc> {
    vietnam()
        .from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight exists"))
        .single()
        .expect("a fixed offset has one midnight")
        .with_timezone(&Utc)
}

/// The ZNS quota of the day as last reported.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct QuotaView {
    /// Zalo's daily quota.
    pub daily_quota: Option<i32>,
    /// What remains (lowered by every reserved send).
    pub remaining: Option<i32>,
    /// Spent: ZNS sends wait for the next quota day.
    pub exhausted: bool,
}

/// The send rate against the tenant's limit.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct RateView {
    /// The tenant's `rate_per_second`.
    pub limit_per_second: f64,
    /// Deliveries Zalo accepted in the last 60 s.
    pub sent_last_minute: i64,
}

/// The OA's access token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TokenView {
    /// When the access token expires (refreshed well before).
    pub access_expires_at: Option<DateTime<Utc>>,
    /// When it was last refreshed.
    pub refreshed_at: Option<DateTime<Utc>>,
}

/// `GET /v1/overview`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Overview {
    /// Today in Vietnam.
    pub day: NaiveDate,
    /// Deliveries created today, by their current status.
    pub deliveries_today: BTreeMap<String, i64>,
    /// Today's ZNS quota, if Zalo reported one.
    pub quota: Option<QuotaView>,
    /// Send rate.
    pub rate: RateView,
    /// Pause state.
    pub pause: PauseView,
    /// Token, if the tenant has one stored.
    pub token: Option<TokenView>,
    /// Dead letters not replayed yet.
    pub dead_letters_unreplayed: i64,
}

/// `GET /v1/overview`.
#[utoipa::path(get, path = "/v1/overview", tag = "admin", security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    responses((status = 200, body = Overview), AdminRefusals))]
pub(crate) async fn overview(
    State(state): State<AdminState>,
    headers: HeaderMap,
) -> Result<Json<Overview>, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?;
    let day = vietnam_day(&Utc::now());
    let client = state
        .pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let by_status = client
        .query(
            "SELECT status, count(*) FROM notifier.deliveries
              WHERE tenant = $1 AND created_at >= $2 GROUP BY status",
            &[&tenant.id, &day_start(day)],
        )
        .await
        .context("Failed to count today's deliveries")?;
    let mut deliveries_today: BTreeMap<String, i64> = DeliveryStatus::ALL
        .into_iter()
        .map(DeliveryStatus::as_str)
        .map(|s| (s.to_owned(), 0))
        .collect();
    for row in &by_status {
        deliveries_today.insert(row.get(0), row.get(1));
    }
    let counts = client
        .query_one(
            "SELECT (SELECT count(*) FROM notifier.deliveries
                      WHERE tenant = $1 AND created_at >= now() - interval '1 day'
                        AND sent_at >= now() - interval '60 seconds'),
                    (SELECT count(*) FROM notifier.dead_letters WHERE tenant = $1 AND replayed_at IS NULL)",
            &[&tenant.id],
        )
        .await
        .context("Failed to count the send rate and dead letters")?;
    let token = client
        .query_opt(
            "SELECT access_expires_at, refreshed_at FROM notifier.oauth_tokens WHERE tenant = $1",
            &[&tenant.id],
        )
        .await
        .context("Failed to read the OA token")?
        .map(|r| TokenView {
            access_expires_at: r.get(0),
            refreshed_at: r.get(1),
        });
    drop(client);
    let quota = quota::read(&state.pool, &tenant.id, day).await?.map(
        |(daily_quota, remaining, exhausted)| QuotaView {
            daily_quota,
            remaining,
            exhausted,
        },
    );
    Ok(Json(Overview {
        day,
        deliveries_today,
        quota,
        rate: RateView {
            limit_per_second: tenant.zalo.rate_per_second,
            sent_last_minute: counts.get(0),
        },
        pause: pause::status(&state.pool, &tenant.id).await?,
        token,
        dead_letters_unreplayed: counts.get(1),
    }))
}

/// The states an admin lists deliveries by.
pub(crate) const ATTENTION_STATES: [DeliveryStatus; 6] = [
    DeliveryStatus::Failed,
    DeliveryStatus::Deferred,
    DeliveryStatus::Held,
    DeliveryStatus::Ambiguous,
    DeliveryStatus::Retrying,
    DeliveryStatus::Cancelled,
];

/// One delivery needing attention.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AttentionView {
    /// The request's id.
    pub notification_id: String,
    /// Its dossier.
    pub dossier_code: Option<String>,
    /// Notification kind.
    pub kind: String,
    /// `transactional` or `broadcast`.
    pub lane: String,
    /// Channel tried.
    pub channel: String,
    /// Current status.
    #[schema(value_type = String)]
    pub status: DeliveryStatus,
    /// Attempts so far.
    pub attempts: i32,
    /// Zalo's code of the last failure.
    pub last_error_code: Option<i32>,
    /// The last failure (the reason).
    pub last_error: Option<String>,
    /// A deferred delivery's due time.
    pub not_before: Option<DateTime<Utc>>,
    /// When an ambiguous delivery is resent unless its receipt comes.
    pub recheck_at: Option<DateTime<Utc>>,
    /// First seen.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// `POST …/resend` applies (deferred, ambiguous, or failed with a dead letter).
    pub can_resend: bool,
    /// `POST …/cancel` applies (deferred, held, ambiguous).
    pub can_cancel: bool,
}

/// A page of deliveries needing attention.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AttentionPage {
    /// Newest change first.
    pub deliveries: Vec<AttentionView>,
    /// Pass as `after` for the next page; null on the last (always present: it tells
    /// this page from a dossier's deliveries).
    #[schema(required = true)]
    pub next_after: Option<String>,
}

/// Lists a tenant's deliveries in one of [`ATTENTION_STATES`] (query parameters
/// `status`, `after`, `limit`).
pub(crate) async fn list_by_status(
    pool: &Pool,
    tenant: &str,
    params: &QueryParams,
) -> Result<AttentionPage, ApiError> {
    params.allow_only(&["status", "after", "limit", "dossier_code"])?;
    let status = params
        .get("status")
        .ok_or_else(|| invalid_query("status", "`status` or `dossier_code` is required"))?;
    let status = ATTENTION_STATES
        .into_iter()
        .find(|s| s.as_str() == status)
        .ok_or_else(|| {
            let names: Vec<&str> = ATTENTION_STATES.iter().map(|s| s.as_str()).collect();
            invalid_query("status", format!("`status` is one of {}", names.join(", ")))
        })?;
    let after = params
        .get("after")
        .map(|value| {
            value
                .split_once('_')
                .and_then(|(micros, id)| {
                    Some((
                        DateTime::from_timestamp_micros(micros.parse().ok()?)?,
                        id.to_owned(),
                    ))
                })
                .ok_or_else(|| {
                    invalid_query("after", "`after` is the `next_after` of a previous page")
                })
        })
        .transpose()?;
    let limit = params.limit(50, 200)?;
    let (after_at, after_id) = after.unwrap_or((DateTime::<Utc>::MAX_UTC, String::new()));
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let rows = client
        .query(
            "SELECT d.notification_id, d.dossier_code, d.kind, d.lane, d.channel, d.status, d.attempts,
                    d.last_error_code, d.last_error, d.not_before, d.recheck_at, d.created_at, d.updated_at,
                    EXISTS (SELECT 1 FROM notifier.dead_letters l
                             WHERE l.tenant = d.tenant AND l.message_id = d.notification_id
                               AND l.replayed_at IS NULL)
               FROM notifier.deliveries d
              WHERE d.tenant = $1 AND d.status = $2
                AND ($3::text = '' OR (d.updated_at, d.notification_id) < ($4, $3::text))
              ORDER BY d.updated_at DESC, d.notification_id DESC
              LIMIT $5",
            &[&tenant, &status.as_str(), &after_id, &after_at, &(limit + 1)],
        )
        .await
        .context("Failed to list deliveries by status")?;
    let mut deliveries: Vec<AttentionView> = rows
        .iter()
        .map(|r| {
            let status: DeliveryStatus = r.get(5);
            let has_dead_letter: bool = r.get(13);
            AttentionView {
                can_resend: matches!(status, DeliveryStatus::Deferred | DeliveryStatus::Ambiguous)
                    || (status == DeliveryStatus::Failed && has_dead_letter),
                can_cancel: status.is_parked(),
                notification_id: r.get(0),
                dossier_code: r.get(1),
                kind: r.get(2),
                lane: r.get(3),
                channel: r.get(4),
                status,
                attempts: r.get(6),
                last_error_code: r.get(7),
                last_error: r.get(8),
                not_before: r.get(9),
                recheck_at: r.get(10),
                created_at: r.get(11),
                updated_at: r.get(12),
            }
        })
        .collect();
    let next_after = (deliveries.len() as i64 > limit).then(|| {
        deliveries.truncate(usize::try_from(limit).unwrap_or(50));
        let last = deliveries.last().expect("a full page has a last row");
        format!(
            "{}_{}",
            last.updated_at.timestamp_micros(),
            last.notification_id
        )
    });
    Ok(AttentionPage {
        deliveries,
        next_after,
    })
}

/// What an action did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ActionResult {
    /// The delivery.
    pub notification_id: String,
    /// `due_now` (deferred or ambiguous, made due), `replayed` (a failed delivery's
    /// dead letter republished) or `cancelled`.
    pub result: &'static str,
}

fn conflict(message: &str) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "conflict", message).with_field("id")
}

async fn status_of(pool: &Pool, tenant: &str, id: &str) -> Result<DeliveryStatus, ApiError> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    client
        .query_opt(
            "SELECT status FROM notifier.deliveries WHERE tenant = $1 AND notification_id = $2",
            &[&tenant, &id],
        )
        .await
        .context("Failed to read a delivery")?
        .map(|r| r.get(0))
        .ok_or_else(|| ApiError::not_found("no delivery with this id").with_field("id"))
}

/// Changes a parked delivery with `update` (which must keep `tenant = $1 AND
/// notification_id = $2 AND status IN (…)` in its WHERE) and records `history` in
/// the same transaction; `false` when it was no longer parked.
async fn change_parked(
    pool: &Pool,
    tenant: &str,
    id: &str,
    update: &str,
    history: &str,
) -> Result<bool, ApiError> {
    let mut client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let tx = client
        .transaction()
        .await
        .context("Failed to begin a transaction")?;
    let changed = tx
        .execute(update, &[&tenant, &id])
        .await
        .context("Failed to change a delivery")?;
    if changed == 0 {
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO notifier.delivery_events (notification_id, tenant, status, at, detail)
         VALUES ($2, $1, $3, now(), $4)",
        &[&tenant, &id, &history, &json!({"by": "admin"})],
    )
    .await
    .context("Failed to record a delivery's history")?;
    tx.commit().await.context("Failed to commit")?;
    Ok(true)
}

/// `POST /v1/deliveries/{id}/resend`.
#[utoipa::path(post, path = "/v1/deliveries/{id}/resend", tag = "admin", security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    params(("id" = String, Path, description = "The delivery's notification id")),
    responses(
        (status = 200, body = ActionResult),
        (status = 404, body = ErrorBody, description = "No such delivery for this tenant"),
        (status = 409, body = ErrorBody, description = "Not in a state a resend applies to (`conflict`)"),
        (status = 503, body = ErrorBody, description = "The broker did not confirm the replay: retry",
            headers(("Retry-After" = u64, description = "Seconds"))),
        AdminRefusals,
    ))]
pub(crate) async fn resend(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ActionResult>, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?.id.clone();
    let status = status_of(&state.pool, &tenant, &id).await?;
    let result = match status {
        DeliveryStatus::Deferred | DeliveryStatus::Ambiguous => {
            let changed = change_parked(
                &state.pool,
                &tenant,
                &id,
                "UPDATE notifier.deliveries
                    SET status = 'deferred', not_before = NULL, recheck_at = NULL,
                        request = request - 'not_before', updated_at = now()
                  WHERE tenant = $1 AND notification_id = $2 AND status IN ('deferred', 'ambiguous')",
                "resend_requested",
            )
            .await?;
            if !changed {
                return Err(conflict("the delivery changed meanwhile; reload and try again"));
            }
            "due_now"
        }
        DeliveryStatus::Failed => {
            let client = state
                .pool
                .get()
                .await
                .context("Failed to get a PostgreSQL connection")?;
            let ids: Vec<i64> = client
                .query(
                    "SELECT id FROM notifier.dead_letters
                      WHERE tenant = $1 AND message_id = $2 AND replayed_at IS NULL ORDER BY id",
                    &[&tenant, &id],
                )
                .await
                .context("Failed to find the delivery's dead letter")?
                .iter()
                .map(|r| r.get(0))
                .collect();
            drop(client);
            if ids.is_empty() {
                return Err(conflict("this failed delivery has no dead letter left to replay"));
            }
            let report = dead_letters::replay(
                &state.pool,
                &state.publisher,
                &state.tenants.current(),
                Some(&tenant),
                &Selection::Ids(ids),
            )
            .await
            .map_err(|e| match e {
                dead_letters::ReplayError::Unavailable { .. } => {
                    ApiError::unavailable(e.to_string(), 5)
                }
                dead_letters::ReplayError::Unexpected(e) => ApiError::internal(&e),
            })?;
            if report.replayed == 0 {
                return Err(conflict("the dead letter could not be replayed"));
            }
            "replayed"
        }
        _ => {
            return Err(conflict(&format!(
                "a delivery that is `{status}` cannot be resent (only deferred, ambiguous or failed ones)"
            )))
        }
    };
    Ok(Json(ActionResult {
        notification_id: id,
        result,
    }))
}

/// `POST /v1/deliveries/{id}/cancel`.
#[utoipa::path(post, path = "/v1/deliveries/{id}/cancel", tag = "admin", security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    params(("id" = String, Path, description = "The delivery's notification id")),
    responses(
        (status = 200, body = ActionResult),
        (status = 404, body = ErrorBody, description = "No such delivery for this tenant"),
        (status = 409, body = ErrorBody, description = "Not parked (deferred, held, ambiguous): `conflict`"),
        AdminRefusals,
    ))]
pub(crate) async fn cancel(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ActionResult>, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?.id.clone();
    let status = status_of(&state.pool, &tenant, &id).await?;
    let changed = change_parked(
        &state.pool,
        &tenant,
        &id,
        "UPDATE notifier.deliveries
            SET status = 'cancelled', request = NULL, not_before = NULL, recheck_at = NULL,
                last_error_code = NULL, last_error = 'Cancelled by an admin', updated_at = now()
          WHERE tenant = $1 AND notification_id = $2 AND status IN ('deferred', 'held', 'ambiguous')",
        "cancelled",
    )
    .await?;
    if !changed {
        return Err(conflict(&format!(
            "a delivery that is `{status}` cannot be cancelled (only deferred, held or ambiguous ones)"
        )));
    }
    Ok(Json(ActionResult {
        notification_id: id,
        result: "cancelled",
    }))
}

/// One message a citizen sent the OA.
/// A message a citizen texted the OA.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CitizenMessageView {
    /// Row id (paging).
    pub id: i64,
    /// The sender, masked (`…4567`): enough to tell senders apart.
    pub zalo_user: String,
    /// `lookup` ("tra cứu <mã>") or `text` (anything else).
    pub kind: String,
    /// The dossier code asked about (lookups).
    pub dossier_code: Option<String>,
    /// What the citizen wrote (texts), without invisible or control characters, at
    /// most 2,000 characters. Plain text: escape it to show it.
    pub text: Option<String>,
    /// Whether `text` was cut at 2,000 characters.
    pub text_truncated: bool,
    /// When Zalo received it.
    pub received_at: DateTime<Utc>,
    /// When it was handed over to be answered.
    pub forwarded_at: Option<DateTime<Utc>>,
    /// `forward` (to be answered), `rate_limited` (a lookup over the per-user limit,
    /// never answered) or `answered_today` (a text whose sender already got the day's
    /// automatic reply: not answered again).
    pub outcome: String,
    /// What Loa answered: the reply's delivery, once the tracker's answer reached
    /// the notifier.
    pub reply: Option<ReplyView>,
}

/// The delivery of the answer to a citizen's message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct ReplyView {
    /// The reply's notification id.
    pub notification_id: String,
    /// Its delivery status (`sent`, `skipped` outside Zalo's 7-day window, …).
    #[schema(value_type = String)]
    pub status: DeliveryStatus,
    /// Why it was not sent, if it was not.
    pub last_error: Option<String>,
    /// When Zalo accepted it.
    pub sent_at: Option<DateTime<Utc>>,
}

/// A page of citizen messages.
/// A page of citizens' messages, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CitizenMessagesPage {
    /// Newest first.
    pub messages: Vec<CitizenMessageView>,
    /// Pass as `before_id` for the next page; null on the last.
    pub next_before_id: Option<i64>,
}

/// `GET /v1/citizen-messages`.
#[utoipa::path(get, path = "/v1/citizen-messages", tag = "admin", security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    params(
        ("kind" = Option<String>, Query, description = "`lookup` or `text`; both when absent"),
        ("before_id" = Option<i64>, Query, description = "The `next_before_id` of the previous page"),
        ("limit" = Option<i64>, Query, description = "Messages per page, 1..200 (50)"),
    ),
    responses(
        (status = 200, body = CitizenMessagesPage),
        (status = 400, body = ErrorBody, description = "A parameter out of its rules (`invalid_query`), or `invalid_header`"),
        AdminRefusals,
    ))]
pub(crate) async fn citizen_messages(
    State(state): State<AdminState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<CitizenMessagesPage>, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?;
    let params = QueryParams::read(query)?;
    params.allow_only(&["kind", "before_id", "limit"])?;
    let kind = params
        .get("kind")
        .map(|value| {
            ["lookup", "text"]
                .into_iter()
                .find(|k| *k == value)
                .ok_or_else(|| invalid_query("kind", "`kind` is `lookup` or `text`"))
        })
        .transpose()?;
    let before = params
        .int(
            "before_id",
            i64::MIN..=i64::MAX,
            "`before_id` is an integer",
        )?
        .unwrap_or(i64::MAX);
    let limit = params.limit(50, 200)?;
    let client = state
        .pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let rows = client
        .query(
            "SELECT id, zalo_user_id, kind, dossier_code, received_at, forwarded_at, outcome, msg_id,
                    body, body_truncated
               FROM notifier.citizen_messages
              WHERE tenant = $1 AND id < $2 AND ($4::text IS NULL OR kind = $4)
              ORDER BY id DESC LIMIT $3",
            &[&tenant.id, &before, &limit, &kind],
        )
        .await
        .context("Failed to list citizen messages")?;
    let reply_ids: Vec<String> = rows
        .iter()
        .map(|r| loa_contracts::citizen::chat_reply_id(&tenant.id, r.get::<_, &str>(7)))
        .collect();
    let mut replies: HashMap<String, ReplyView> = client
        .query(
            "SELECT notification_id, status, last_error, sent_at FROM notifier.deliveries
              WHERE tenant = $1 AND notification_id = ANY($2)",
            &[&tenant.id, &reply_ids],
        )
        .await
        .context("Failed to read the replies to citizen messages")?
        .iter()
        .map(|r| {
            let id: String = r.get(0);
            (
                id.clone(),
                ReplyView {
                    notification_id: id,
                    status: r.get(1),
                    last_error: r.get(2),
                    sent_at: r.get(3),
                },
            )
        })
        .collect();
    let messages: Vec<CitizenMessageView> = rows
        .iter()
        .zip(&reply_ids)
        .map(|(r, reply_id)| {
            let user: String = r.get(1);
            let tail: String = user
                .chars()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            CitizenMessageView {
                id: r.get(0),
                zalo_user: format!("…{tail}"),
                kind: r.get(2),
                dossier_code: r.get(3),
                text: r.get(8),
                text_truncated: r.get(9),
                received_at: r.get(4),
                forwarded_at: r.get(5),
                outcome: r.get(6),
                reply: replies.remove(reply_id),
            }
        })
        .collect();
    let next_before_id = (messages.len() as i64 == limit)
        .then(|| messages.last().map(|m| m.id))
        .flatten();
    Ok(Json(CitizenMessagesPage {
        messages,
        next_before_id,
    }))
}

/// What `POST /v1/zalo/authorization` answers.
/// The stored authorisation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Authorized {
    /// The tenant.
    pub tenant: String,
    /// When the new access token expires.
    pub access_expires_at: DateTime<Utc>,
}

/// The body of `POST /v1/zalo/authorization` (documentation: the handler reads it
/// field by field, naming the one that is wrong).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct AuthorizationCode {
    /// The code Zalo's consent page returned, 1..512 characters.
    code: String,
    /// The PKCE verifier of the code challenge sent to Zalo, 1..512 characters.
    code_verifier: String,
}

fn bad_body(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_field(field)
}

/// `POST /v1/zalo/authorization`.
#[utoipa::path(post, path = "/v1/zalo/authorization", tag = "admin", security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    request_body(content = AuthorizationCode),
    responses(
        (status = 200, body = Authorized, description = "The new token pair is stored"),
        (status = 503, body = ErrorBody, description = "Zalo did not answer: retry",
            headers(("Retry-After" = u64, description = "Seconds"))),
        JsonRefusals, AdminRefusals,
    ))]
pub(crate) async fn authorize(
    State(state): State<AdminState>,
    headers: HeaderMap,
    loa_platform::http::JsonBody(body): loa_platform::http::JsonBody<serde_json::Value>,
) -> Result<Json<Authorized>, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?;
    let text = |field: &str| -> Result<String, ApiError> {
        body[field]
            .as_str()
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 512)
            .map(str::to_owned)
            .ok_or_else(|| bad_body(field, format!("`{field}` is a non-empty string")))
    };
    let (code, verifier) = (text("code")?, text("code_verifier")?);
    let app = &tenant.zalo;
    let url = format!("{}/v4/oa/access_token", app.oauth_url.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .context("Failed to build an HTTP client")?;
    let form = [
        ("code", code.as_str()),
        ("app_id", app.app_id.as_str()),
        ("grant_type", "authorization_code"),
        ("code_verifier", verifier.as_str()),
    ];
    let encoded: String = form_body(&form);
    let answer = client
        .post(&url)
        .header("secret_key", app.app_secret.expose())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encoded)
        .send()
        .await
        .map_err(|e| ApiError::unavailable(format!("Zalo did not answer: {e}"), 5))?;
    let answer: serde_json::Value = answer
        .json()
        .await
        .map_err(|_| ApiError::unavailable("Zalo's answer was not JSON", 5))?;
    let (Some(access), Some(refresh)) = (
        answer["access_token"].as_str().filter(|t| !t.is_empty()),
        answer["refresh_token"].as_str().filter(|t| !t.is_empty()),
    ) else {
        let why = answer["error_description"]
            .as_str()
            .or(answer["error_reason"].as_str())
            .or(answer["message"].as_str())
            .unwrap_or("no tokens in Zalo's answer");
        return Err(bad_body(
            "code",
            format!("Zalo refused the code ({}): {why}", answer["error"]),
        ));
    };
    let ttl = answer["expires_in"]
        .as_str()
        .and_then(|s| s.parse::<i64>().ok())
        .or(answer["expires_in"].as_i64())
        .unwrap_or(90_000);
    let expires_at = Utc::now() + chrono::Duration::seconds(ttl);
    let mut client = state
        .pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let tx = client
        .transaction()
        .await
        .context("Failed to begin a transaction")?;
    // Wait for a refresh in flight (it holds the row), then replace what it stored.
    tx.execute(
        "SELECT 1 FROM notifier.oauth_tokens WHERE tenant = $1 FOR UPDATE",
        &[&tenant.id],
    )
    .await
    .context("Failed to lock the token row")?;
    tx.execute(
        "INSERT INTO notifier.oauth_tokens (tenant, access_token, access_expires_at, refresh_token, refreshed_at)
         VALUES ($1, $2, $3, $4, now())
         ON CONFLICT (tenant) DO UPDATE
            SET access_token = EXCLUDED.access_token, access_expires_at = EXCLUDED.access_expires_at,
                refresh_token = EXCLUDED.refresh_token, refreshed_at = now(), updated_at = now()",
        &[
            &tenant.id,
            &state.keyring.seal(&tenant.id, "access_token", access),
            &expires_at,
            &state.keyring.seal(&tenant.id, "refresh_token", refresh),
        ],
    )
    .await
    .context("Failed to store the new token pair")?;
    tx.commit()
        .await
        .context("Failed to commit the new token pair")?;
    tracing::info!(tenant = %tenant.id, "Stored the token pair of a new OA authorisation.");
    Ok(Json(Authorized {
        tenant: tenant.id.clone(),
        access_expires_at: expires_at,
    }))
}

/// `application/x-www-form-urlencoded` of `pairs`.
fn form_body(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}
