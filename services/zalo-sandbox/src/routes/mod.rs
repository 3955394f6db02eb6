//! HTTP handlers: Zalo's own paths (answered the way Zalo answers: HTTP 200, negative
//! error codes, string numbers) and the `/_sandbox/…` control paths (answered with the
//! project's usual JSON errors).
//!
//! | path | what |
//! |---|---|
//! | `POST /v4/oa/access_token` | refresh an OA access token, or exchange a consent's code ([`oauth`]) |
//! | `GET`/`POST /v4/oa/permission` | the OA admin's consent page, PKCE ([`permission`]) |
//! | `POST /message/template`, `GET /message/quota` | ZNS by phone ([`zns`]) |
//! | `POST /v3.0/oa/message/cs`, `POST /v3.0/oa/message/template`, `GET /v2.0/oa/getoa`, `GET /v3.0/oa/user/detail` | OA API ([`oa`]) |
//! | `/_sandbox/…` | messages, stats, faults, limits, clock, tokens, webhook URL, simulated users (follow, unfollow, text, shared details) and ratings of a recorded message ([`control`]) |

pub mod broadcast;
pub mod control;
pub mod input;
pub mod oa;
pub mod oauth;
pub mod permission;
pub mod zns;

use crate::{
    metrics,
    sandbox::{Accepted, Refusal, Sandbox, SendOutcome},
    zalo::{success, Api},
};
use axum::{
    http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use loa_platform::http::{fallback, ops_router, Readiness};
use serde_json::{Map, Value};
use std::sync::Arc;

/// `X-RateLimit-Limit`: the bucket size.
pub static RATE_LIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remain`: whole tokens left.
pub static RATE_LIMIT_REMAIN: HeaderName = HeaderName::from_static("x-ratelimit-remain");

/// Every route of the sandbox, with health, readiness and metrics.
pub fn router(sandbox: Arc<Sandbox>) -> Router {
    Router::new()
        .route("/v4/oa/access_token", post(oauth::access_token))
        .route(
            "/v4/oa/permission",
            get(permission::consent_page).post(permission::approve),
        )
        .route("/message/template", post(zns::send_template))
        .route("/message/quota", get(zns::quota))
        .route("/v3.0/oa/message/cs", post(oa::send_cs))
        .route("/v2.0/oa/message", post(broadcast::send_broadcast))
        .route("/_sandbox/broadcasts", get(broadcast::list))
        .route("/v3.0/oa/message/template", post(oa::send_template))
        .route("/v2.0/oa/getoa", get(oa::get_oa))
        .route("/v3.0/oa/user/detail", get(oa::user_detail))
        .route("/_sandbox/messages", get(control::messages))
        .route("/_sandbox/stats", get(control::stats))
        .route("/_sandbox/reset", post(control::reset))
        .route(
            "/_sandbox/faults",
            post(control::add_faults)
                .get(control::list_faults)
                .delete(control::clear_faults),
        )
        .route(
            "/_sandbox/limits",
            post(control::set_limits).get(control::get_limits),
        )
        .route(
            "/_sandbox/clock",
            post(control::set_clock).get(control::get_clock),
        )
        .route("/_sandbox/tokens/expire", post(control::expire_tokens))
        .route(
            "/_sandbox/webhook",
            post(control::set_webhook).get(control::get_webhook),
        )
        .route("/_sandbox/users/{id}/follow", post(control::follow))
        .route("/_sandbox/users/{id}/unfollow", post(control::unfollow))
        .route("/_sandbox/users/{id}/text", post(control::user_text))
        .route(
            "/_sandbox/users/{id}/submit_info",
            post(control::submit_info),
        )
        .route(
            "/_sandbox/messages/{msg_id}/feedback",
            post(control::feedback),
        )
        .route("/_sandbox/messages/{msg_id}/click", post(control::click))
        .with_state(sandbox)
        .merge(ops_router(Readiness::new()))
        .fallback(fallback)
}

/// The `access_token` header, as Zalo reads it (not `Authorization: Bearer`).
pub fn access_token_header(headers: &HeaderMap) -> Option<&str> {
    headers.get("access_token").and_then(|v| v.to_str().ok())
}

/// A Zalo request body, as far as the envelope goes.
#[derive(Debug)]
pub enum Body {
    /// Nothing but whitespace.
    Empty,
    /// Not a JSON object.
    Invalid,
    /// A JSON object.
    Object(Map<String, Value>),
}

/// Parses a Zalo request body as a JSON object.
pub fn parse_object(body: &[u8]) -> Body {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Body::Empty;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Body::Object(map),
        _ => Body::Invalid,
    }
}

/// An id Zalo accepts either as a string or as a number.
pub fn id_string(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Answers a send after its delay: Zalo envelope, rate-limit headers, metrics.
pub async fn answer_send(
    sandbox: &Sandbox,
    api: Api,
    outcome: SendOutcome,
    data: impl FnOnce(&Accepted) -> Value,
) -> Response {
    let mut response = match &outcome.result {
        Ok(accepted) => {
            metrics::record_request(api.as_str(), "accepted");
            Json(success(data(accepted))).into_response()
        }
        Err(Refusal::Zalo(e)) => {
            metrics::record_request(api.as_str(), &e.code.to_string());
            Json(e.body()).into_response()
        }
        Err(Refusal::Http(status)) => {
            metrics::record_request(api.as_str(), &format!("http_{status}"));
            http_failure(*status)
        }
    };
    if let Some((limit, remain)) = outcome.rate_headers {
        let headers = response.headers_mut();
        headers.insert(RATE_LIMIT_LIMIT.clone(), HeaderValue::from(limit));
        headers.insert(RATE_LIMIT_REMAIN.clone(), HeaderValue::from(remain));
    }
    sandbox.pause(outcome.delay).await;
    response
}

/// An injected HTTP failure: the status with an HTML body, like a proxy in front of Zalo.
pub fn http_failure(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = format!(
        "<html><head><title>{status}</title></head><body><center><h1>{status}</h1></center></body></html>"
    );
    (status, [(header::CONTENT_TYPE, "text/html")], body).into_response()
}
