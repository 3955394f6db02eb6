//! ZNS by phone (`business.openapi.zalo.me`): `POST /message/template` and
//! `GET /message/quota`.

use super::{access_token_header, answer_send, id_string, parse_object, Body};
use crate::{
    apps::{zns_phone, App},
    sandbox::{Content, Sandbox, SendRequest},
    zalo::{codes, success, Api, Channel, ZaloError},
};
use axum::{
    body::Bytes,
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// `POST /message/template`: sends a ZNS template to a phone number.
pub async fn send_template(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let app = sandbox.tokens.check_access(
        &sandbox.apps,
        access_token_header(&headers),
        sandbox.clock.now_ms(),
    );
    let parsed = parse_object(&body);
    // Faults name phones in the canonical form; the request may use another.
    let targets = match &parsed {
        Body::Object(obj) => obj
            .get("phone")
            .and_then(Value::as_str)
            .map(|p| zns_phone(p.trim()).unwrap_or_else(|| p.to_owned()))
            .into_iter()
            .collect(),
        _ => Vec::new(),
    };
    let content = match (&app, parsed) {
        (Ok(app), Body::Object(obj)) => validate(app, &obj),
        (_, Body::Empty) => Err(ZaloError::code(codes::BODY_EMPTY)),
        (_, Body::Invalid) => Err(ZaloError::code(codes::BODY_NOT_JSON)),
        // Not judged: the token is refused first.
        (Err(_), Body::Object(_)) => Ok(Content::default()),
    };
    let outcome = sandbox.process_send(SendRequest {
        channel: Channel::Zns,
        app,
        content,
        targets,
    });
    answer_send(&sandbox, Api::Zns, outcome, |accepted| {
        json!({
            "msg_id": accepted.message.msg_id,
            "sent_time": accepted.message.received_at.timestamp_millis().to_string(),
            "sending_mode": "1",
            "quota": {
                "dailyQuota": accepted.quota.0.to_string(),
                "remainingQuota": accepted.quota.1.to_string(),
            },
        })
    })
    .await
}

/// Checks a ZNS body in Zalo's order: phone (-108, any form Zalo delivers to, recorded
/// as `84…`), template (-109), data (-111, -112, -1122, -1121).
fn validate(app: &App, body: &Map<String, Value>) -> Result<Content, ZaloError> {
    let phone = body
        .get("phone")
        .and_then(Value::as_str)
        .and_then(|p| zns_phone(p.trim()))
        .ok_or_else(|| ZaloError::code(codes::INVALID_PHONE))?;
    let (template_id, template_data) =
        app.check_template(body.get("template_id"), body.get("template_data"))?;
    Ok(Content {
        phone: Some(phone),
        template_id: Some(template_id),
        template_data: Some(template_data),
        tracking_id: id_string(body.get("tracking_id")),
        mode: body.get("mode").and_then(Value::as_str).map(str::to_owned),
        ..Content::default()
    })
}

/// `GET /message/quota`: the OA's daily ZNS quota and what is left of it today.
pub async fn quota(State(sandbox): State<Arc<Sandbox>>, headers: HeaderMap) -> Response {
    let app = sandbox.tokens.check_access(
        &sandbox.apps,
        access_token_header(&headers),
        sandbox.clock.now_ms(),
    );
    match app {
        Ok(app) => {
            let (daily, remaining) = sandbox.zns_quota(&app);
            Json(success(json!({
                "dailyQuota": daily.to_string(),
                "remainingQuota": remaining.to_string(),
            })))
            .into_response()
        }
        Err(problem) => Json(problem.zalo_error(false).body()).into_response(),
    }
}
