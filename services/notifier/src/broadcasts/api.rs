//! The broadcasts' HTTP API (tenant admin token, or the console's service credential
//! with `X-Loa-Tenant`; another tenant's broadcasts are not found, never forbidden):
//!
//! - `POST /v1/broadcasts` with `{"title", "audience": {"all": true} | {"tags":
//!   "<expression>"}, "message": {"template": "announcement", "params": {"title",
//!   "body", "link"}}, "start_at"?, "end_at"?, "dry_run"?}`: `201 {"id", "state",
//!   "audience"}`; with `"dry_run": true`, `200 {"audience", "preview"}` and nothing is
//!   created. Parameters are checked against the template before anything is stored;
//!   `{name}` in a parameter becomes each citizen's name. A bad tag expression is a
//!   `422` naming its position.
//! - `POST /v1/broadcasts` with `{"title", "article": {"attachment_id", "cities":
//!   [<Zalo city code>…]}}`, for a tenant with `[tenants.broadcasts]
//!   article_broadcasts`: one call to the OA's broadcast endpoint, Zalo reaching the
//!   OA's followers in those provinces or cities itself (no fan-out, no subscribers);
//!   `201 {"id", "state": "completed", "zalo_msg_id"}`. Not in the tenant's quiet
//!   hours (`409 quiet_hours`); Zalo refusing it is a `502` with Zalo's code.
//! - `GET /v1/broadcasts/audience?tags=<expression>`: how many subscribers a
//!   broadcast to those tags (or, without `tags`, to everyone) would reach now; a bad
//!   expression is a `422` naming its position. Read-only: the console's compose
//!   form asks it while the admin types.
//! - `GET /v1/broadcasts?limit=` and `GET /v1/broadcasts/{id}`: state and progress.
//! - `POST /v1/broadcasts/{id}/pause`, `/resume`, `/cancel`: `409` when the
//!   broadcast's state does not allow it.

use super::{
    fanout::NO_NAME,
    store::{self, Acted, Action, Broadcast, BroadcastState, NewBroadcast},
    targeting,
};
use crate::{clock::Clock, routes::query::QueryParams};
use anyhow::Context;
use axum::{
    extract::{rejection::QueryRejection, Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use loa_contracts::NotificationKind;
use loa_platform::{
    http::{
        admin_tenant,
        openapi::{AdminRefusals, ErrorBody, JsonRefusals},
        ApiError, JsonBody,
    },
    LiveTenants, TenantSettings,
};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

/// Who an audience reaches besides its tags: opted in, not opted out, not unfollowed.
pub(crate) const REACHABLE: &str =
    "announcements AND opted_out_at IS NULL AND following IS DISTINCT FROM false";
/// Longest title, in characters.
const MAX_TITLE: usize = 200;
/// Longest parameter value, in characters (Zalo's template fields are short).
const MAX_PARAM: usize = 1000;

/// What the broadcast routes share.
#[derive(Clone)]
pub(crate) struct BroadcastsState {
    /// The notifier's database.
    pub pool: Pool,
    /// Tenants (admin tokens, templates), as the tenants file says now.
    pub tenants: LiveTenants,
    /// The notifier's wall clock (schedules, quiet hours).
    pub clock: Clock,
    /// Zalo, for Article broadcasts.
    pub zalo: crate::zalo::ZaloClient,
    /// Access tokens for them.
    pub tokens: std::sync::Arc<crate::zalo::TokenManager>,
}

/// The broadcast routes.
pub(crate) fn router(state: BroadcastsState) -> Router {
    Router::new()
        .route("/v1/broadcasts", post(create).get(list))
        .route("/v1/broadcasts/audience", get(audience))
        .route("/v1/broadcasts/{id}", get(show))
        .route("/v1/broadcasts/{id}/pause", post(pause))
        .route("/v1/broadcasts/{id}/resume", post(resume))
        .route("/v1/broadcasts/{id}/cancel", post(cancel))
        .with_state(state)
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_field(field)
}

/// A tag expression, or a `422 invalid_tags` naming `field` whose message ends with
/// the position where the expression goes wrong.
fn parse_tags(expression: &str, field: &str) -> Result<targeting::Expr, ApiError> {
    targeting::parse(expression).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_tags",
            e.to_string(),
        )
        .with_field(field)
    })
}

/// A broadcast's `title`, trimmed: for admins, not sent to citizens.
fn title_of(body: &Value) -> Result<String, ApiError> {
    match &body["title"] {
        Value::String(t)
            if !t.trim().is_empty()
                && t.chars().count() <= MAX_TITLE
                && !t.contains(char::is_control) =>
        {
            Ok(t.trim().to_owned())
        }
        _ => Err(invalid(
            "title",
            format!("`title` is a non-empty string of at most {MAX_TITLE} characters, without control characters"),
        )),
    }
}

/// A create request, checked.
struct Checked {
    title: String,
    tags: Option<targeting::Expr>,
    template: String,
    params: Map<String, Value>,
    start_at: Option<DateTime<Utc>>,
    end_at: Option<DateTime<Utc>>,
    dry_run: bool,
}

/// Checks a create request's body against the tenant (see the module docs).
fn check(body: &Value, tenant: &TenantSettings, now: DateTime<Utc>) -> Result<Checked, ApiError> {
    let Some(object) = body.as_object() else {
        return Err(invalid("body", "the body is a JSON object"));
    };
    for key in object.keys() {
        if ![
            "title", "audience", "message", "start_at", "end_at", "dry_run",
        ]
        .contains(&key.as_str())
        {
            return Err(invalid(key, format!("unknown field `{key}`")));
        }
    }
    let title = title_of(body)?;
    let audience = &body["audience"];
    let tags = match (audience.get("all"), audience.get("tags")) {
        (Some(Value::Bool(true)), None) => None,
        (None, Some(Value::String(expression))) => Some(parse_tags(expression, "audience.tags")?),
        _ => {
            return Err(invalid(
                "audience",
                "`audience` is {\"all\": true} or {\"tags\": \"<tag expression>\"}",
            ))
        }
    };
    let template = match &body["message"]["template"] {
        Value::String(t) => t.clone(),
        _ => {
            return Err(invalid(
                "message.template",
                "`message.template` names a template",
            ))
        }
    };
    let kind = NotificationKind::from_name(&template)
        .filter(|k| k.is_promotion())
        .filter(|k| tenant.zalo.template_for(*k).is_some())
        .ok_or_else(|| {
            invalid(
                "message.template",
                format!("`{template}` is not one of this tenant's announcement templates"),
            )
        })?;
    let params = match &body["message"]["params"] {
        Value::Object(p) => p.clone(),
        _ => return Err(invalid("message.params", "`message.params` is an object")),
    };
    for name in kind.required_params() {
        match params.get(*name) {
            Some(Value::String(v)) if !v.trim().is_empty() => {}
            _ => {
                return Err(invalid(
                    &format!("message.params.{name}"),
                    format!("the template needs `{name}`, a non-empty string"),
                ))
            }
        }
    }
    for (name, value) in &params {
        let field = format!("message.params.{name}");
        if !kind.required_params().contains(&name.as_str()) {
            return Err(invalid(
                &field,
                format!("the template has no parameter `{name}`"),
            ));
        }
        // What the template registered with Zalo takes (it refuses longer, -1121);
        // PostgreSQL's jsonb holds no NUL.
        let max = loa_contracts::templates::param_spec(name).map_or(MAX_PARAM, |s| s.max_chars);
        if value
            .as_str()
            .is_none_or(|v| v.chars().count() > max || v.contains('\0'))
        {
            return Err(invalid(
                &field,
                format!("a string of at most {max} characters, without NUL"),
            ));
        }
    }
    if let Some(link) = params.get("link").and_then(Value::as_str) {
        if !(link.starts_with("https://") || link.starts_with("http://"))
            || link.contains(char::is_whitespace)
        {
            return Err(invalid("message.params.link", "`link` is an http(s) URL"));
        }
    }
    let time = |field: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
        match &body[field] {
            Value::Null => Ok(None),
            Value::String(s) => DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.to_utc()))
                .map_err(|_| invalid(field, format!("`{field}` is an RFC 3339 time"))),
            _ => Err(invalid(field, format!("`{field}` is an RFC 3339 time"))),
        }
    };
    let start_at = time("start_at")?;
    let end_at = time("end_at")?;
    if let Some(end) = end_at {
        if end <= start_at.unwrap_or(now).max(now) {
            return Err(invalid(
                "end_at",
                "`end_at` is after `start_at` and after now",
            ));
        }
    }
    let dry_run = match &body["dry_run"] {
        Value::Null => false,
        Value::Bool(b) => *b,
        _ => return Err(invalid("dry_run", "`dry_run` is true or false")),
    };
    Ok(Checked {
        title,
        tags,
        template,
        params,
        start_at,
        end_at,
        dry_run,
    })
}

/// How many of the tenant's subscribers an audience reaches now, and the name of
/// one of them (for the preview).
async fn count_audience(
    pool: &Pool,
    tenant: &str,
    tags: Option<&targeting::Expr>,
) -> anyhow::Result<(i64, Option<String>)> {
    let mut binds: Vec<String> = Vec::new();
    let condition = tags.map_or_else(|| "true".to_owned(), |e| e.to_sql(2, &mut binds));
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&tenant];
    for b in &binds {
        params.push(b);
    }
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), (array_agg(name ORDER BY id) FILTER (WHERE name IS NOT NULL))[1]
                   FROM notifier.subscribers
                  WHERE tenant = $1 AND {REACHABLE} AND ({condition})"
            ),
            &params,
        )
        .await
        .context("Failed to count an audience")?;
    Ok((row.get(0), row.get(1)))
}

/// `POST /v1/broadcasts`'s answer: the broadcast stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Created {
    id: String,
    state: BroadcastState,
    /// A template broadcast: the subscribers it reaches as it is created.
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<i64>,
    /// An Article broadcast: the message id Zalo gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    zalo_msg_id: Option<String>,
}

/// What one citizen would receive, shown by a dry run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Preview {
    template: String,
    /// The tenant's Zalo template id for it.
    template_id: Option<String>,
    /// The parameters, `{name}` replaced by one subscriber's name.
    params: BTreeMap<String, String>,
}

/// `POST /v1/broadcasts` with `"dry_run": true`: nothing is created.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DryRun {
    /// Subscribers the broadcast would reach now.
    audience: i64,
    preview: Preview,
}

/// `POST /v1/broadcasts`: the body is checked by hand (see the module docs), so the
/// document shows it as an object with examples.
#[utoipa::path(post, path = "/v1/broadcasts", tag = "broadcasts",
    security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    request_body(content = Object, description = "A template broadcast `{\"title\", \"audience\": {\"all\": true} | {\"tags\": \"<expression>\"}, \"message\": {\"template\", \"params\"}, \"start_at\"?, \"end_at\"?, \"dry_run\"?}`, or an Article broadcast `{\"title\", \"article\": {\"attachment_id\", \"cities\": [<Zalo city code>…]}}` (docs/broadcasts.md)",
        example = json!({
            "title": "Lịch nghỉ Tết",
            "audience": {"tags": "phuong-1 AND NOT test"},
            "message": {"template": "announcement", "params": {
                "title": "Lịch nghỉ Tết", "body": "Kính gửi {name}: bộ phận một cửa nghỉ từ 14/02/2026.",
                "link": "https://example.gov.vn/tet"}},
            "dry_run": true,
        })),
    responses(
        (status = 201, body = Created, description = "Stored: a template broadcast starts at `start_at`; an Article broadcast was sent"),
        (status = 200, body = DryRun, description = "A dry run: nothing is stored"),
        (status = 409, body = ErrorBody, description = "An Article broadcast in the tenant's quiet hours (`quiet_hours`)"),
        (status = 502, body = ErrorBody, description = "Zalo refused an Article broadcast (`zalo_error`); nothing is stored"),
        JsonRefusals, AdminRefusals,
    ))]
pub(crate) async fn create(
    State(state): State<BroadcastsState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?;
    let now = state.clock.now();
    if body.get("article").is_some() {
        return create_article(&state, &tenant, &body, now).await;
    }
    let checked = check(&body, &tenant, now)?;
    let (audience, sample_name) =
        count_audience(&state.pool, &tenant.id, checked.tags.as_ref()).await?;
    if checked.dry_run {
        let name = sample_name.as_deref().unwrap_or(NO_NAME);
        let params: BTreeMap<String, String> = checked
            .params
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().unwrap_or_default().replace("{name}", name),
                )
            })
            .collect();
        let kind = NotificationKind::from_name(&checked.template);
        let template_id = kind
            .and_then(|k| tenant.zalo.template_for(k))
            .map(str::to_owned);
        return Ok(Json(DryRun {
            audience,
            preview: Preview {
                template: checked.template,
                template_id,
                params,
            },
        })
        .into_response());
    }
    let new = NewBroadcast {
        id: format!("b{:016x}", rand::random::<u64>()),
        tenant: tenant.id.clone(),
        title: checked.title,
        audience_tags: checked.tags.as_ref().map(ToString::to_string),
        template: checked.template,
        params: Value::Object(checked.params),
        start_at: checked.start_at.unwrap_or(now),
        end_at: checked.end_at,
        audience,
    };
    let stored = store::insert(&state.pool, &new).await?;
    tracing::info!(tenant = %tenant.id, broadcast = %stored.id, audience, "Broadcast created.");
    Ok((
        StatusCode::CREATED,
        Json(Created {
            id: stored.id,
            state: stored.state,
            audience: Some(stored.audience),
            zalo_msg_id: None,
        }),
    )
        .into_response())
}

/// Longest Article attachment id, in characters.
const MAX_ATTACHMENT_ID: usize = 100;
/// Most cities one Article broadcast targets (Vietnam has 63 provinces and cities).
const MAX_CITIES: usize = 63;

/// An Article broadcast's request, checked: title, attachment id and city codes.
fn check_article(
    body: &Value,
    tenant: &TenantSettings,
) -> Result<(String, String, Vec<u32>), ApiError> {
    let Some(object) = body.as_object() else {
        return Err(invalid("body", "the body is a JSON object"));
    };
    if let Some(key) = object
        .keys()
        .find(|k| !["title", "article"].contains(&k.as_str()))
    {
        return Err(invalid(
            key,
            format!("an Article broadcast has only `title` and `article`, not `{key}`"),
        ));
    }
    if !tenant.broadcasts.article_broadcasts {
        return Err(invalid(
            "article",
            "this tenant does not send Article broadcasts ([tenants.broadcasts] article_broadcasts)",
        ));
    }
    let title = title_of(body)?;
    let article = &body["article"];
    let attachment_id = match &article["attachment_id"] {
        Value::String(id)
            if !id.trim().is_empty()
                && id.chars().count() <= MAX_ATTACHMENT_ID
                && id
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) =>
        {
            id.trim().to_owned()
        }
        _ => {
            return Err(invalid(
                "article.attachment_id",
                format!(
                "the Article's Zalo id: up to {MAX_ATTACHMENT_ID} letters, digits, `-`, `_` or `.`"
            ),
            ))
        }
    };
    let cities: Option<Vec<u32>> = article["cities"].as_array().and_then(|codes| {
        codes
            .iter()
            .map(|c| {
                c.as_u64()
                    .filter(|n| (1..=999).contains(n))
                    .map(|n| n as u32)
            })
            .collect()
    });
    let cities = match cities {
        Some(c) if !c.is_empty() && c.len() <= MAX_CITIES => c,
        _ => {
            return Err(invalid(
                "article.cities",
                format!("1 to {MAX_CITIES} of Zalo's province or city codes (integers 1 to 999)"),
            ))
        }
    };
    Ok((title, attachment_id, cities))
}

/// `POST /v1/broadcasts` with `article`: one call to the OA's broadcast endpoint.
async fn create_article(
    state: &BroadcastsState,
    tenant: &TenantSettings,
    body: &Value,
    now: DateTime<Utc>,
) -> Result<Response, ApiError> {
    let (title, attachment_id, cities) = check_article(body, tenant)?;
    if tenant.broadcasts.quiet_hours.contains(now) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "quiet_hours",
            "the tenant's quiet hours hold broadcasts now: send it after them",
        )
        .with_field("article"));
    }
    let zalo_refused = |message: String| {
        ApiError::new(StatusCode::BAD_GATEWAY, "zalo_error", message).with_field("article")
    };
    let token = state
        .tokens
        .access_token(&tenant.id)
        .await
        .map_err(|e| zalo_refused(format!("no access token for the OA: {e}")))?;
    let msg_id = state
        .zalo
        .send_article_broadcast(&tenant.zalo, token.expose(), &attachment_id, &cities)
        .await
        .map_err(|f| zalo_refused(f.to_string()))?;
    let new = NewBroadcast {
        id: format!("b{:016x}", rand::random::<u64>()),
        tenant: tenant.id.clone(),
        title,
        audience_tags: None,
        template: "article".to_owned(),
        params: json!({"attachment_id": attachment_id, "cities": cities}),
        start_at: now,
        end_at: None,
        audience: 0,
    };
    let stored = store::insert_article(&state.pool, &new, &msg_id).await?;
    tracing::info!(tenant = %tenant.id, broadcast = %stored.id, cities = cities.len(), "Article broadcast sent.");
    Ok((
        StatusCode::CREATED,
        Json(Created {
            id: stored.id,
            state: stored.state,
            audience: None,
            zalo_msg_id: Some(msg_id),
        }),
    )
        .into_response())
}

/// A broadcast with its progress, as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct BroadcastView {
    id: String,
    title: String,
    state: BroadcastState,
    audience: i64,
    queued: i64,
    /// Accepted by Zalo (delivered and seen included).
    sent: i64,
    delivered: i64,
    seen: i64,
    /// By Zalo's error code (or `other`).
    failed: BTreeMap<String, i64>,
    /// By reason: `cancelled`, `ended`, `opted_out`, `monthly_cap`, `recipient_limit`.
    skipped: BTreeMap<String, i64>,
    /// Held back for now: quiet hours, a pause, the quota.
    deferred: i64,
    /// At the rate of the last seconds; `null` when not running or no rate yet.
    eta_seconds: Option<i64>,
    tags: Option<String>,
    template: String,
    /// The template's parameters, or an Article's `attachment_id` and `cities`.
    #[schema(value_type = Object)]
    params: Value,
    start_at: DateTime<Utc>,
    end_at: Option<DateTime<Utc>>,
    /// When the fan-out had published every recipient.
    expanded_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

fn view(b: Broadcast, counts: Option<&BTreeMap<String, i64>>) -> BroadcastView {
    let empty = BTreeMap::new();
    let counts = counts.unwrap_or(&empty);
    let n = |key: &str| counts.get(key).copied().unwrap_or(0);
    let by_prefix = |prefix: &str| -> BTreeMap<String, i64> {
        counts
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|r| (r.to_owned(), *v)))
            .filter(|(_, v)| *v > 0)
            .collect()
    };
    let failed = by_prefix("failed:");
    let mut skipped = by_prefix("skipped:");
    // Recipients whose parked message an admin cancelled one by one.
    if n("cancelled") > 0 {
        *skipped.entry("cancelled".to_owned()).or_default() += n("cancelled");
    }
    if let (Some(reason), true) = (&b.left_out_reason, b.left_out > 0) {
        *skipped.entry(reason.clone()).or_default() += b.left_out;
    }
    let sent = n("sent") + n("delivered") + n("seen");
    let settled = sent + failed.values().sum::<i64>() + skipped.values().sum::<i64>();
    let eta_seconds = match (b.state, b.rate_per_second) {
        (BroadcastState::Running, Some(rate)) if rate > 0.0 => {
            Some(((b.audience - settled).max(0) as f64 / rate).ceil() as i64)
        }
        _ => None,
    };
    BroadcastView {
        id: b.id,
        title: b.title,
        state: b.state,
        audience: b.audience,
        queued: b.queued,
        sent,
        delivered: n("delivered") + n("seen"),
        seen: n("seen"),
        failed,
        skipped,
        deferred: n("deferred") + n("held"),
        eta_seconds,
        tags: b.audience_tags,
        template: b.template,
        params: b.params,
        start_at: b.start_at,
        end_at: b.end_at,
        expanded_at: b.expanded_at,
        created_at: b.created_at,
        finished_at: b.finished_at,
    }
}

/// `GET /v1/broadcasts/audience`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AudienceCount {
    /// Subscribers the audience reaches now (opted in, not opted out, following).
    audience: i64,
}

/// `GET /v1/broadcasts/audience?tags=`.
#[utoipa::path(get, path = "/v1/broadcasts/audience", tag = "broadcasts",
    security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    params(("tags" = Option<String>, Query, description = "A tag expression (`ward:phu-thuy AND (topic:nong-nghiep OR topic:thuy-san)`); everyone reachable when absent")),
    responses(
        (status = 200, body = AudienceCount),
        (status = 400, body = ErrorBody, description = "An unknown parameter (`invalid_query`); `field` names it"),
        (status = 422, body = ErrorBody, description = "The expression does not parse (`invalid_tags`, field `tags`); the message ends with `at position <n>`, the 1-based character where it goes wrong"),
        AdminRefusals,
    ))]
pub(crate) async fn audience(
    State(state): State<BroadcastsState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<AudienceCount>, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?;
    let params = QueryParams::read(query)?;
    params.allow_only(&["tags"])?;
    let tags = params
        .get("tags")
        .map(|expression| parse_tags(expression, "tags"))
        .transpose()?;
    let (audience, _) = count_audience(&state.pool, &tenant.id, tags.as_ref()).await?;
    Ok(Json(AudienceCount { audience }))
}

/// `GET /v1/broadcasts`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct BroadcastList {
    /// Newest first.
    broadcasts: Vec<BroadcastView>,
}

/// `GET /v1/broadcasts?limit=`.
#[utoipa::path(get, path = "/v1/broadcasts", tag = "broadcasts",
    security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    params(("limit" = Option<i64>, Query, description = "1..500 (50)")),
    responses(
        (status = 200, body = BroadcastList),
        (status = 400, body = ErrorBody, description = "A parameter out of its rules (`invalid_query`); `field` names it"),
        AdminRefusals,
    ))]
pub(crate) async fn list(
    State(state): State<BroadcastsState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<BroadcastList>, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?;
    let limit = QueryParams::read(query)?.limit(50, 500)?;
    let broadcasts = store::list(&state.pool, &tenant.id, limit).await?;
    let ids: Vec<&str> = broadcasts.iter().map(|b| b.id.as_str()).collect();
    let counts = store::counts(&state.pool, &ids).await?;
    let views: Vec<BroadcastView> = broadcasts
        .into_iter()
        .map(|b| {
            let c = counts.get(&b.id).cloned();
            view(b, c.as_ref())
        })
        .collect();
    Ok(Json(BroadcastList { broadcasts: views }))
}

/// `GET /v1/broadcasts/{id}`.
#[utoipa::path(get, path = "/v1/broadcasts/{id}", tag = "broadcasts",
    security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    params(("id" = String, Path, description = "The broadcast's id")),
    responses(
        (status = 200, body = BroadcastView),
        (status = 404, body = ErrorBody, description = "No such broadcast for this tenant"),
        AdminRefusals,
    ))]
pub(crate) async fn show(
    State(state): State<BroadcastsState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<BroadcastView>, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?;
    let broadcast = store::get(&state.pool, &tenant.id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such broadcast"))?;
    let counts = store::counts(&state.pool, &[id.as_str()]).await?;
    Ok(Json(view(broadcast, counts.get(&id))))
}

/// How pause, resume and cancel refuse an admin besides the credential checks: the
/// three transitions answer alike, so their documents share these.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum TransitionRefusals {
    /// No such broadcast for this tenant
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The broadcast's state does not allow it (`invalid_state`)
    #[response(status = 409)]
    InvalidState(ErrorBody),
}

/// Applies `action` to the tenant's broadcast `id` and answers its view: the one body
/// of the pause, resume and cancel handlers, which differ only in their documents.
async fn act(
    state: BroadcastsState,
    headers: HeaderMap,
    id: String,
    action: Action,
) -> Result<Json<BroadcastView>, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?;
    match store::act(&state.pool, &tenant.id, &id, action, state.clock.now()).await? {
        Acted::Done(broadcast) => {
            tracing::info!(tenant = %tenant.id, broadcast = %id, action = ?action, "Broadcast changed by an admin.");
            let counts = store::counts(&state.pool, &[id.as_str()]).await?;
            Ok(Json(view(*broadcast, counts.get(&id))))
        }
        Acted::NotFound => Err(ApiError::not_found("no such broadcast")),
        Acted::Conflict(current) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_state",
            format!("the broadcast is {}", current.as_str()),
        )
        .with_field("state")),
    }
}

/// `POST /v1/broadcasts/{id}/pause`.
#[utoipa::path(post, path = "/v1/broadcasts/{id}/pause", tag = "broadcasts",
    security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    params(("id" = String, Path, description = "The broadcast's id")),
    responses(
        (status = 200, body = BroadcastView, description = "Holds a running or scheduled broadcast"),
        TransitionRefusals,
        AdminRefusals,
    ))]
pub(crate) async fn pause(
    State(state): State<BroadcastsState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<BroadcastView>, ApiError> {
    act(state, headers, id, Action::Pause).await
}

/// `POST /v1/broadcasts/{id}/resume`.
#[utoipa::path(post, path = "/v1/broadcasts/{id}/resume", tag = "broadcasts",
    security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    params(("id" = String, Path, description = "The broadcast's id")),
    responses(
        (status = 200, body = BroadcastView, description = "Lets a paused broadcast go on"),
        TransitionRefusals,
        AdminRefusals,
    ))]
pub(crate) async fn resume(
    State(state): State<BroadcastsState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<BroadcastView>, ApiError> {
    act(state, headers, id, Action::Resume).await
}

/// `POST /v1/broadcasts/{id}/cancel`.
#[utoipa::path(post, path = "/v1/broadcasts/{id}/cancel", tag = "broadcasts",
    security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    params(("id" = String, Path, description = "The broadcast's id")),
    responses(
        (status = 200, body = BroadcastView, description = "Stops a broadcast for good"),
        TransitionRefusals,
        AdminRefusals,
    ))]
pub(crate) async fn cancel(
    State(state): State<BroadcastsState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<BroadcastView>, ApiError> {
    act(state, headers, id, Action::Cancel).await
}
