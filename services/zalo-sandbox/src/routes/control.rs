//! `/_sandbox/…`: what tests, the demo and benchmarks use to inspect and steer the
//! sandbox. Bad input is a 4xx [`ApiError`] naming the field; nothing here panics.

use super::input::Fields;
use crate::{
    apps::App,
    faults::Fault,
    limits::ApiLimits,
    sandbox::{new_msg_id, MessageFilter, RecordedMessage, Sandbox},
    webhooks::{self, WebhookJob},
    zalo::{codes, Api, Channel},
};
use axum::{
    body::Bytes,
    extract::{rejection::QueryRejection, Path, Query, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use chrono::{DateTime, SecondsFormat, Utc};
use loa_contracts::PhoneNumber;
use loa_platform::http::{ApiError, JsonBody};
use serde::Deserialize;
use serde_json::{json, Value};
use std::{sync::Arc, time::Duration};

type Answer = Result<Json<Value>, ApiError>;

/// Query of `GET /_sandbox/messages`.
#[derive(Debug, Deserialize)]
pub struct MessagesQuery {
    tracking_id: Option<String>,
    phone: Option<String>,
    user_id: Option<String>,
    channel: Option<String>,
    app_id: Option<String>,
}

/// `GET /_sandbox/messages[?tracking_id=&phone=&user_id=&channel=&app_id=]`: accepted
/// messages, oldest first.
pub async fn messages(
    State(sandbox): State<Arc<Sandbox>>,
    query: Result<Query<MessagesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()).with_field("query")
    })?;
    let channel = match q.channel.as_deref() {
        None | Some("") => None,
        Some("zns") => Some(Channel::Zns),
        Some("oa_cs") => Some(Channel::OaCs),
        Some("oa_template") => Some(Channel::OaTemplate),
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "channel must be zns, oa_cs or oa_template",
            )
            .with_field("channel"))
        }
    };
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let filter = MessageFilter {
        tracking_id: nonempty(q.tracking_id),
        // `+84…` arrives as ` 84…` from a query string; normalise what can be.
        phone: nonempty(q.phone).map(|p| PhoneNumber::parse(&p).map(String::from).unwrap_or(p)),
        user_id: nonempty(q.user_id),
        channel,
        app_id: nonempty(q.app_id),
    };
    let found = sandbox.messages(&filter);
    let refs: Vec<&RecordedMessage> = found.iter().map(|m| &**m).collect();
    let body = serde_json::to_vec(&refs).map_err(|e| ApiError::internal(&e.into()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `GET /_sandbox/stats`.
pub async fn stats(State(sandbox): State<Arc<Sandbox>>) -> Json<Value> {
    Json(sandbox.stats())
}

/// `POST /_sandbox/reset`: clears messages, stats, faults, limits, quotas and the clock;
/// token state and followers stay.
pub async fn reset(State(sandbox): State<Arc<Sandbox>>) -> Json<Value> {
    sandbox.reset();
    tracing::info!("Sandbox reset.");
    Json(json!({"reset": true}))
}

const FAULT_FIELDS: &[&str] = &[
    "api",
    "error_code",
    "rate",
    "latency_ms",
    "hang_rate",
    "http_status",
    "no_tokens",
    "phone",
    "count",
];

/// `POST /_sandbox/faults`: adds one fault (an object) or several (an array).
///
/// A fault names its `api` (`zns`, `oa` or `oauth`) and what it does to the matching
/// requests, each optional:
///
/// | field | effect |
/// |---|---|
/// | `error_code` | answer this negative Zalo code (HTTP 200) |
/// | `http_status` | answer this 4xx/5xx status with a non-JSON body |
/// | `no_tokens` | `oauth` only: answer HTTP 200 with an empty body, no tokens and no error code (a spent or revoked refresh token, as Zalo sometimes answers it) |
/// | `rate` | probability of failing (1 when an error is named, else 0) |
/// | `latency_ms` | added to every matching request |
/// | `hang_rate` | probability that an accepted request's answer is held for 30 s |
/// | `phone` | only requests for this phone (or user id) |
/// | `count` | only the next N matching requests |
pub async fn add_faults(
    State(sandbox): State<Arc<Sandbox>>,
    JsonBody(body): JsonBody<Value>,
) -> Answer {
    let specs = match body {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| parse_fault(item, &format!("[{i}]")))
            .collect::<Result<Vec<_>, _>>()?,
        other => vec![parse_fault(other, "")?],
    };
    let added: Vec<Fault> = specs.into_iter().map(|f| sandbox.add_fault(f)).collect();
    tracing::info!(count = added.len(), "Sandbox faults added.");
    Ok(Json(json!({"added": added, "active": sandbox.faults()})))
}

fn parse_fault(body: Value, prefix: &str) -> Result<Fault, ApiError> {
    let f = Fields::new(body, FAULT_FIELDS, prefix)?;
    let api_name = f
        .str("api")?
        .ok_or_else(|| f.error("api", "`api` is required: zns, oa or oauth"))?;
    let api =
        Api::parse(&api_name).ok_or_else(|| f.error("api", "`api` must be zns, oa or oauth"))?;
    let error_code = f.i64("error_code")?;
    if error_code.is_some_and(|c| c >= 0) {
        return Err(f.error(
            "error_code",
            "`error_code` must be a negative Zalo error code",
        ));
    }
    let http_status = match f.u64("http_status")? {
        None => None,
        Some(s @ 400..=599) => u16::try_from(s).ok(),
        Some(_) => return Err(f.error("http_status", "`http_status` must be between 400 and 599")),
    };
    let no_tokens = f.bool("no_tokens")?.unwrap_or(false);
    if no_tokens && api != Api::Oauth {
        return Err(f.error(
            "no_tokens",
            "`no_tokens` applies to the token endpoint only: use it with `api` oauth",
        ));
    }
    if no_tokens && (error_code.is_some() || http_status.is_some()) {
        return Err(f.error(
            "no_tokens",
            "`no_tokens` answers HTTP 200 without an error: leave out `error_code` and `http_status`",
        ));
    }
    let explicit_failure = error_code.is_some() || http_status.is_some() || no_tokens;
    // Naming an error means "fail": rate 1 unless given. A bare rate fails with the
    // family's generic error.
    let rate = f
        .probability("rate")?
        .unwrap_or(if explicit_failure { 1.0 } else { 0.0 });
    let error_code = error_code.or_else(|| {
        (rate > 0.0 && http_status.is_none() && !no_tokens).then_some(match api {
            Api::Zns => codes::ZNS_UNKNOWN,
            Api::Oa => codes::OA_SEND_FAILED,
            Api::Oauth => codes::OAUTH_INVALID_PARAM,
        })
    });
    let phone = f
        .str("phone")?
        .map(|p| PhoneNumber::parse(&p).map(String::from).unwrap_or(p));
    let count = f.u64("count")?;
    if count == Some(0) {
        return Err(f.error("count", "`count` must be at least 1 (omit it for no limit)"));
    }
    Ok(Fault {
        id: 0,
        api,
        error_code,
        rate,
        latency_ms: f.u64("latency_ms")?.unwrap_or(0),
        hang_rate: f.probability("hang_rate")?.unwrap_or(0.0),
        http_status,
        no_tokens,
        phone,
        count,
    })
}

/// `GET /_sandbox/faults`: the active faults (counted ones show what is left).
pub async fn list_faults(State(sandbox): State<Arc<Sandbox>>) -> Json<Value> {
    Json(json!(sandbox.faults()))
}

/// `DELETE /_sandbox/faults`: removes every fault.
pub async fn clear_faults(State(sandbox): State<Arc<Sandbox>>) -> Json<Value> {
    sandbox.clear_faults();
    Json(json!({"cleared": true}))
}

/// `POST /_sandbox/limits`: changes the given limits of one family (`api`, default
/// `zns`); fields left out keep their value, `null` removes a limit.
pub async fn set_limits(
    State(sandbox): State<Arc<Sandbox>>,
    JsonBody(body): JsonBody<Value>,
) -> Answer {
    let f = Fields::new(
        body,
        &[
            "api",
            "rate_per_second",
            "burst",
            "daily_quota",
            "night_ban",
            "promotion_share",
            "promotion_monthly_per_user",
        ],
        "",
    )?;
    let api = match f.str("api")?.as_deref() {
        None | Some("zns") => Api::Zns,
        Some("oa") => Api::Oa,
        Some(_) => return Err(f.error("api", "`api` must be zns or oa (OAuth has no limits)")),
    };
    let mut limits = sandbox
        .limits(api)
        .unwrap_or_else(|| ApiLimits::defaults(api));
    if f.has("rate_per_second") {
        limits.rate_per_second = match f.f64("rate_per_second")? {
            Some(r) if r <= 0.0 => {
                return Err(f.error(
                    "rate_per_second",
                    "`rate_per_second` must be positive (null removes the limit)",
                ))
            }
            r => r,
        };
    }
    if f.has("burst") {
        limits.burst = match f.u64("burst")? {
            None => None,
            Some(b @ 1..=1_000_000) => u32::try_from(b).ok(),
            Some(_) => return Err(f.error("burst", "`burst` must be between 1 and 1000000")),
        };
    }
    if f.has("daily_quota") {
        limits.daily_quota = f.u64("daily_quota")?;
    }
    if f.has("night_ban") {
        limits.night_ban = f.bool("night_ban")?.unwrap_or(false);
    }
    if f.has("promotion_share") {
        limits.promotion_share = match f.f64("promotion_share")? {
            Some(s) if !(0.0..=1.0).contains(&s) => {
                return Err(f.error(
                    "promotion_share",
                    "`promotion_share` must be between 0 and 1 (null removes the rule)",
                ))
            }
            s => s,
        };
    }
    if f.has("promotion_monthly_per_user") {
        limits.promotion_monthly_per_user = match f.u64("promotion_monthly_per_user")? {
            None => None,
            Some(n @ 0..=1_000) => u32::try_from(n).ok(),
            Some(_) => return Err(f.error(
                "promotion_monthly_per_user",
                "`promotion_monthly_per_user` must be between 0 and 1000 (null removes the rule)",
            )),
        };
    }
    sandbox.set_limits(api, limits.clone());
    tracing::info!(api = api.as_str(), ?limits, "Sandbox limits changed.");
    Ok(Json(json!({"api": api, "limits": limits})))
}

/// `GET /_sandbox/limits`: the limits of both families.
pub async fn get_limits(State(sandbox): State<Arc<Sandbox>>) -> Json<Value> {
    Json(json!({"zns": sandbox.limits(Api::Zns), "oa": sandbox.limits(Api::Oa)}))
}

fn clock_answer(sandbox: &Sandbox) -> Json<Value> {
    Json(json!({
        "now": sandbox.clock.now().to_rfc3339_opts(SecondsFormat::Millis, true),
        "offset_secs": sandbox.clock.offset_ms() / 1000,
    }))
}

/// `POST /_sandbox/clock`: `{"now": "<RFC 3339>"}`, `{"offset_secs": n}`, or
/// `{"now": null}` for real time. The clock keeps ticking from the value set.
pub async fn set_clock(
    State(sandbox): State<Arc<Sandbox>>,
    JsonBody(body): JsonBody<Value>,
) -> Answer {
    let f = Fields::new(body, &["now", "offset_secs"], "")?;
    match (f.has("now"), f.has("offset_secs")) {
        (true, true) => {
            return Err(f.error(
                "offset_secs",
                "give either `now` or `offset_secs`, not both",
            ))
        }
        (false, false) => {
            return Err(f.error("now", "give `now` (RFC 3339 or null) or `offset_secs`"))
        }
        (true, false) => match f.str("now")? {
            None => sandbox.clock.reset(),
            Some(raw) => {
                let at = DateTime::parse_from_rfc3339(&raw).map_err(|e| {
                    f.error("now", format!("`now` must be an RFC 3339 instant: {e}"))
                })?;
                sandbox.clock.set_now(at.with_timezone(&Utc));
            }
        },
        (false, true) => match f.i64("offset_secs")? {
            None => sandbox.clock.reset(),
            Some(secs) => sandbox.clock.set_offset_secs(secs),
        },
    }
    tracing::info!(offset_ms = sandbox.clock.offset_ms(), "Sandbox clock set.");
    Ok(clock_answer(&sandbox))
}

/// `GET /_sandbox/clock`.
pub async fn get_clock(State(sandbox): State<Arc<Sandbox>>) -> Json<Value> {
    clock_answer(&sandbox)
}

/// `POST /_sandbox/tokens/expire`: every access token issued so far stops working
/// (refresh tokens are untouched), as when Zalo expires tokens mid-stream.
pub async fn expire_tokens(State(sandbox): State<Arc<Sandbox>>) -> Json<Value> {
    sandbox.tokens.expire_all();
    tracing::info!("Sandbox access tokens expired.");
    Json(json!({"expired": true}))
}

/// `POST /_sandbox/webhook`: `{"url": "http://…"}` points webhooks somewhere else at run
/// time (a test's receiver), `{"url": null}` turns them off.
pub async fn set_webhook(
    State(sandbox): State<Arc<Sandbox>>,
    JsonBody(body): JsonBody<Value>,
) -> Answer {
    let f = Fields::new(body, &["url"], "")?;
    let url = f.str("url")?;
    if let Some(u) = &url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(f.error("url", "`url` must start with http:// or https://"));
        }
    }
    sandbox.webhooks.set_url(url);
    Ok(Json(json!({"url": sandbox.webhooks.url().as_deref()})))
}

/// `GET /_sandbox/webhook`.
pub async fn get_webhook(State(sandbox): State<Arc<Sandbox>>) -> Json<Value> {
    Json(json!({"url": sandbox.webhooks.url().as_deref()}))
}

/// Query of the simulated-user endpoints.
#[derive(Debug, Deserialize)]
pub struct UserQuery {
    app_id: Option<String>,
}

fn app_for(
    sandbox: &Sandbox,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> Result<Arc<App>, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()).with_field("query")
    })?;
    match q.app_id.filter(|a| !a.is_empty()) {
        None => Ok(Arc::clone(sandbox.apps.first())),
        Some(id) => sandbox.apps.get(&id).cloned().ok_or_else(|| {
            ApiError::not_found(format!("no Zalo app `{id}` is registered")).with_field("app_id")
        }),
    }
}

fn optional_body(body: &Bytes, allowed: &[&str]) -> Result<Option<Fields>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()).with_field("body")
    })?;
    Fields::new(value, allowed, "").map(Some)
}

/// Emits `app`'s webhook `name` now, its body built by `event` for this instant (when
/// webhooks are on), and answers the control call with the app's id, `fields`, whether
/// the webhook was queued and the event itself: every simulated user action ends so.
fn emit(
    sandbox: &Sandbox,
    app: &App,
    name: &'static str,
    event: impl FnOnce(i64) -> Value,
    fields: Value,
) -> Answer {
    let at_ms = sandbox.clock.now_ms();
    let event = event(at_ms);
    let queued = sandbox.webhooks.is_enabled()
        && sandbox.webhooks.enqueue(WebhookJob::new(
            app,
            name,
            &event,
            &at_ms.to_string(),
            Duration::ZERO,
        ));
    let mut answer = serde_json::Map::new();
    answer.insert("app_id".to_owned(), json!(app.app_id));
    if let Value::Object(fields) = fields {
        answer.extend(fields);
    }
    answer.insert("webhook_queued".to_owned(), json!(queued));
    answer.insert("event".to_owned(), event);
    Ok(Json(Value::Object(answer)))
}

/// `POST /_sandbox/users/{id}/follow[?app_id=]`, body optional `{"phone": "84…"}`: the
/// user follows the OA (and shared that phone); emits a `follow` webhook.
pub async fn follow(
    State(sandbox): State<Arc<Sandbox>>,
    Path(user_id): Path<String>,
    query: Result<Query<UserQuery>, QueryRejection>,
    body: Bytes,
) -> Answer {
    set_following(&sandbox, user_id, query, &body, true)
}

/// `POST /_sandbox/users/{id}/unfollow[?app_id=]`: emits an `unfollow` webhook.
pub async fn unfollow(
    State(sandbox): State<Arc<Sandbox>>,
    Path(user_id): Path<String>,
    query: Result<Query<UserQuery>, QueryRejection>,
    body: Bytes,
) -> Answer {
    set_following(&sandbox, user_id, query, &body, false)
}

fn set_following(
    sandbox: &Sandbox,
    user_id: String,
    query: Result<Query<UserQuery>, QueryRejection>,
    body: &Bytes,
    following: bool,
) -> Answer {
    let app = app_for(sandbox, query)?;
    let phone = match optional_body(body, &["phone"])? {
        Some(f) => match f.str("phone")? {
            Some(raw) => Some(
                PhoneNumber::parse(&raw)
                    .map(String::from)
                    .map_err(|why| f.error("phone", why))?,
            ),
            None => None,
        },
        None => None,
    };
    let follower = sandbox.set_follower(&app, &user_id, following, phone);
    emit(
        sandbox,
        &app,
        if following { "follow" } else { "unfollow" },
        |at_ms| webhooks::follow_event(&app, &user_id, following, at_ms),
        json!({
            "user_id": user_id,
            "following": follower.following,
            "phone": follower.phone,
        }),
    )
}

/// `POST /_sandbox/users/{id}/text[?app_id=]` `{"text": "tra cuu ABC"}`: the user writes
/// to the OA; emits a `user_send_text` webhook.
pub async fn user_text(
    State(sandbox): State<Arc<Sandbox>>,
    Path(user_id): Path<String>,
    query: Result<Query<UserQuery>, QueryRejection>,
    JsonBody(body): JsonBody<Value>,
) -> Answer {
    let app = app_for(&sandbox, query)?;
    let f = Fields::new(body, &["text"], "")?;
    let text = f
        .str("text")?
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| f.error("text", "`text` is required"))?;
    let msg_id = new_msg_id();
    sandbox.interacted(&app, &user_id);
    emit(
        &sandbox,
        &app,
        "user_send_text",
        |at_ms| webhooks::user_text_event(&app, &user_id, &text, &msg_id, at_ms),
        json!({"user_id": user_id, "msg_id": msg_id}),
    )
}

/// `POST /_sandbox/users/{id}/submit_info[?app_id=]` `{"phone": "0903…", "name": "…",
/// "user_dob", "gender", "full_address"}` (only `phone` required): the user shares
/// their details with the OA; emits `user_submit_info` with the phone in the
/// canonical `84…` form, and the sandbox remembers it as the follower's phone.
pub async fn submit_info(
    State(sandbox): State<Arc<Sandbox>>,
    Path(user_id): Path<String>,
    query: Result<Query<UserQuery>, QueryRejection>,
    JsonBody(body): JsonBody<Value>,
) -> Answer {
    let app = app_for(&sandbox, query)?;
    const DETAILS: [&str; 4] = ["name", "user_dob", "gender", "full_address"];
    let f = Fields::new(
        body,
        &["phone", "name", "user_dob", "gender", "full_address"],
        "",
    )?;
    let raw = f
        .str("phone")?
        .ok_or_else(|| f.error("phone", "`phone` is required: the phone the user shares"))?;
    let phone = PhoneNumber::parse(&raw)
        .map(String::from)
        .map_err(|why| f.error("phone", why))?;
    let mut info = serde_json::Map::new();
    for key in DETAILS {
        if let Some(value) = f.str(key)? {
            info.insert(key.to_owned(), Value::String(value));
        }
    }
    info.insert("phone".to_owned(), Value::String(phone.clone()));
    sandbox.share_phone(&app, &user_id, phone);
    emit(
        &sandbox,
        &app,
        "user_submit_info",
        |at_ms| webhooks::submit_info_event(&app, &user_id, &Value::Object(info), at_ms),
        json!({"user_id": user_id}),
    )
}

/// The recorded message `msg_id` and the app that sent it, for a citizen's answer to it.
fn answered_message(
    sandbox: &Sandbox,
    msg_id: &str,
) -> Result<(Arc<RecordedMessage>, Arc<App>), ApiError> {
    let message = sandbox.message(msg_id).ok_or_else(|| {
        ApiError::not_found(format!("no recorded message `{msg_id}`")).with_field("msg_id")
    })?;
    let app = sandbox.apps.get(&message.app_id).cloned().ok_or_else(|| {
        ApiError::not_found(format!("no Zalo app `{}` is registered", message.app_id))
            .with_field("msg_id")
    })?;
    Ok((message, app))
}

/// Who answers a message: `user_id` when the control names one, else the message's
/// recipient as Zalo knows them (the OA user it went to, or the account of the phone
/// a ZNS reached, [`Sandbox::user_of_phone`]).
fn answering_user(
    sandbox: &Sandbox,
    app: &App,
    message: &RecordedMessage,
    f: &Fields,
) -> Result<String, ApiError> {
    if let Some(user_id) = f.str("user_id")?.filter(|u| !u.trim().is_empty()) {
        return Ok(user_id);
    }
    Ok(match (&message.user_id, &message.phone) {
        (Some(user_id), _) => user_id.clone(),
        (None, Some(phone)) => sandbox.user_of_phone(app, phone),
        (None, None) => String::new(),
    })
}

/// `POST /_sandbox/messages/{msg_id}/feedback` `{"rate": 1..5, "note": "…",
/// "feedbacks": ["…"], "user_id": "…"}` (only `rate` required): the citizen who got
/// that recorded message (sent with a rating template) rates it; emits `user_feedback`
/// from the citizen (`sender.id`: `user_id`, by default the recipient's Zalo user id)
/// to the message's app, naming the message's `msg_id` and `tracking_id`.
pub async fn feedback(
    State(sandbox): State<Arc<Sandbox>>,
    Path(msg_id): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Answer {
    let (message, app) = answered_message(&sandbox, &msg_id)?;
    let f = Fields::new(body, &["rate", "note", "feedbacks", "user_id"], "")?;
    let rate = match f.u64("rate")? {
        Some(r @ 1..=5) => u8::try_from(r).unwrap_or(5),
        Some(_) => return Err(f.error("rate", "`rate` must be between 1 and 5")),
        None => return Err(f.error("rate", "`rate` is required (1 to 5 stars)")),
    };
    let feedback = webhooks::Feedback {
        rate,
        note: f.str("note")?.unwrap_or_default(),
        feedbacks: f.strings("feedbacks")?.unwrap_or_default(),
    };
    let user_id = answering_user(&sandbox, &app, &message, &f)?;
    sandbox.interacted(&app, &user_id);
    emit(
        &sandbox,
        &app,
        "user_feedback",
        |at_ms| webhooks::feedback_event(&app, &message, &user_id, &feedback, at_ms),
        json!({"msg_id": msg_id, "user_id": user_id}),
    )
}

/// `POST /_sandbox/messages/{msg_id}/click` `{"user_id": "…", "title": "…",
/// "payload": "…"}` (all optional): the citizen who received that ZNS taps one of its
/// buttons; emits `user_click_response_button` from the citizen (`sender.id`:
/// `user_id`, by default the Zalo account of the phone the ZNS reached) naming the
/// message's `msg_id` and `tracking_id`. Only a ZNS message has such buttons (400
/// naming `msg_id` otherwise).
pub async fn click(
    State(sandbox): State<Arc<Sandbox>>,
    Path(msg_id): Path<String>,
    body: Bytes,
) -> Answer {
    let (message, app) = answered_message(&sandbox, &msg_id)?;
    if message.channel != Channel::Zns {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "only a ZNS message has response buttons",
        )
        .with_field("msg_id"));
    }
    let f = optional_body(&body, &["user_id", "title", "payload"])?.unwrap_or(Fields::new(
        json!({}),
        &[],
        "",
    )?);
    let user_id = answering_user(&sandbox, &app, &message, &f)?;
    let button = json!({
        "title": f.str("title")?.unwrap_or_else(|| "Xem chi tiết".to_owned()),
        "payload": f.str("payload")?.unwrap_or_default(),
    });
    sandbox.interacted(&app, &user_id);
    emit(
        &sandbox,
        &app,
        "user_click_response_button",
        |at_ms| webhooks::click_event(&app, &message, &user_id, &button, at_ms),
        json!({"msg_id": msg_id, "user_id": user_id}),
    )
}
