//! The OA API (`openapi.zalo.me`): consultation text and ZBS template by user id to
//! followers, OA info and user detail.

use super::{access_token_header, answer_send, id_string, parse_object, Body};
use crate::{
    apps::App,
    sandbox::{Content, Sandbox, SendRequest},
    zalo::{codes, success, Api, Channel, ZaloError},
};
use axum::{
    body::Bytes,
    extract::{Query, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Map, Value};
use std::{collections::HashMap, sync::Arc};

/// Longest consultation text Zalo accepts, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

/// `POST /v3.0/oa/message/cs`: a consultation text to a follower.
pub async fn send_cs(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    send(sandbox, headers, body, Channel::OaCs).await
}

/// `POST /v3.0/oa/message/template`: a ZBS template to a follower, by user id.
pub async fn send_template(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    send(sandbox, headers, body, Channel::OaTemplate).await
}

async fn send(
    sandbox: Arc<Sandbox>,
    headers: HeaderMap,
    body: Bytes,
    channel: Channel,
) -> Response {
    let app = sandbox.tokens.check_access(
        &sandbox.apps,
        access_token_header(&headers),
        sandbox.clock.now_ms(),
    );
    let parsed = parse_object(&body);
    let targets = match &parsed {
        Body::Object(obj) => user_id_of(obj).into_iter().collect(),
        _ => Vec::new(),
    };
    let content = match (&app, parsed) {
        (Ok(app), Body::Object(obj)) => match channel {
            Channel::OaCs => validate_cs(&obj),
            _ => validate_template(app, &obj),
        },
        (_, Body::Empty | Body::Invalid) => {
            Err(ZaloError::new(codes::OA_INVALID_FIELD, "body is invalid!"))
        }
        // Not judged: the token is refused first.
        (Err(_), Body::Object(_)) => Ok(Content::default()),
    };
    let outcome = sandbox.process_send(SendRequest {
        channel,
        app,
        content,
        targets,
    });
    answer_send(&sandbox, Api::Oa, outcome, |accepted| {
        json!({
            "message_id": accepted.message.msg_id,
            "user_id": accepted.message.user_id,
            "sent_time": accepted.message.received_at.timestamp_millis().to_string(),
        })
    })
    .await
}

/// The recipient: flat `user_id` or `recipient.user_id` (clients send either).
fn user_id_of(body: &Map<String, Value>) -> Option<String> {
    id_string(body.get("user_id"))
        .or_else(|| id_string(body.get("recipient").and_then(|r| r.get("user_id"))))
}

fn validate_cs(body: &Map<String, Value>) -> Result<Content, ZaloError> {
    let user_id = user_id_of(body)
        .ok_or_else(|| ZaloError::new(codes::OA_INVALID_FIELD, "recipient.user_id is invalid!"))?;
    let message = body
        .get("message")
        .and_then(Value::as_object)
        .ok_or_else(|| ZaloError::new(codes::OA_INVALID_FIELD, "message is invalid!"))?;
    let text = message
        .get("text")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty());
    if text.is_none() && message.get("attachment").is_none() {
        return Err(ZaloError::new(
            codes::OA_INVALID_FIELD,
            "message.text is invalid!",
        ));
    }
    if text.is_some_and(|t| t.chars().count() > MAX_TEXT_CHARS) {
        return Err(ZaloError::new(
            codes::OA_PARAM_LIMIT,
            format!("message.text exceeds {MAX_TEXT_CHARS} characters"),
        ));
    }
    Ok(Content {
        user_id: Some(user_id),
        text: text.map(str::to_owned),
        ..Content::default()
    })
}

fn validate_template(app: &App, body: &Map<String, Value>) -> Result<Content, ZaloError> {
    let user_id = user_id_of(body)
        .ok_or_else(|| ZaloError::new(codes::OA_INVALID_FIELD, "user_id is invalid!"))?;
    let (template_id, template_data) =
        app.check_template(body.get("template_id"), body.get("template_data"))?;
    Ok(Content {
        user_id: Some(user_id),
        template_id: Some(template_id),
        template_data: Some(template_data),
        tracking_id: id_string(body.get("tracking_id")),
        ..Content::default()
    })
}

/// `GET /v2.0/oa/getoa`: the OA's profile (clients use it as a token health check).
pub async fn get_oa(State(sandbox): State<Arc<Sandbox>>, headers: HeaderMap) -> Response {
    match sandbox.tokens.check_access(
        &sandbox.apps,
        access_token_header(&headers),
        sandbox.clock.now_ms(),
    ) {
        Ok(app) => Json(success(json!({
            "oa_id": app.oa_id,
            "oaid": app.oa_id,
            "name": app.name,
            "description": format!("Zalo sandbox OA of tenant {}", app.tenant_id),
            "is_verified": true,
            "oa_type": 4,
            "package_name": "sandbox",
        })))
        .into_response(),
        Err(problem) => Json(problem.zalo_error(true).body()).into_response(),
    }
}

/// `GET /v3.0/oa/user/detail?data={"user_id":"…"}`: a follower's details, with the phone
/// they shared when the sandbox was told one.
pub async fn user_detail(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let app = match sandbox.tokens.check_access(
        &sandbox.apps,
        access_token_header(&headers),
        sandbox.clock.now_ms(),
    ) {
        Ok(app) => app,
        Err(problem) => return Json(problem.zalo_error(true).body()).into_response(),
    };
    let user_id = query
        .get("data")
        .and_then(|d| serde_json::from_str::<Value>(d).ok())
        .and_then(|d| id_string(d.get("user_id")))
        .or_else(|| query.get("user_id").cloned());
    let Some(user_id) = user_id else {
        return Json(ZaloError::new(codes::OA_INVALID_FIELD, "user_id is invalid!").body())
            .into_response();
    };
    let Some(follower) = sandbox.follower(&app, &user_id) else {
        return Json(ZaloError::new(codes::OA_INVALID_FIELD, "user_id is invalid!").body())
            .into_response();
    };
    let suffix: String = user_id
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Json(success(json!({
        "user_id": user_id,
        "user_id_by_app": user_id,
        "display_name": format!("Người dùng {suffix}"),
        "user_is_follower": follower.following,
        "shared_info": follower.phone.map(|phone| json!({"phone": phone})),
    })))
    .into_response()
}
