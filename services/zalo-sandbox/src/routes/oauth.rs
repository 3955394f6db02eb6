//! OA OAuth v4 (`oauth.zaloapp.com`): `POST /v4/oa/access_token` with a form body
//! (`refresh_token`, `app_id`, `grant_type=refresh_token`, or `code`, `app_id`,
//! `grant_type=authorization_code`, `code_verifier` after an OA admin's consent at
//! `/v4/oa/permission`, see [`super::permission`]) and the app secret in the
//! `secret_key` header. Answers are flat, not enveloped.

use super::http_failure;
use crate::{
    faults::{self, Failure},
    metrics,
    sandbox::Sandbox,
    tokens,
    zalo::{codes, ZaloError},
};
use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;
use std::{collections::HashMap, sync::Arc, time::Duration};

/// `POST /v4/oa/access_token`: redeems a refresh token for a new access token and a new
/// refresh token (the old one is spent).
pub async fn access_token(
    State(sandbox): State<Arc<Sandbox>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let effect = sandbox.oauth_faults();
    let mut delay = Duration::from_millis(effect.latency_ms);
    let response = match effect.failure {
        Some(Failure::Http(status)) => {
            metrics::record_request("oauth", &format!("http_{status}"));
            http_failure(status)
        }
        Some(Failure::Zalo(code)) => refuse(ZaloError::code(code)),
        Some(Failure::NoTokens) => {
            metrics::record_request("oauth", "no_tokens");
            StatusCode::OK.into_response()
        }
        None => {
            // Zalo reads the form body; parameters in the query string are accepted too.
            let mut form = parse_form(query.as_deref().unwrap_or_default().as_bytes());
            form.extend(parse_form(&body));
            let secret = headers
                .get("secret_key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            match redeem(&sandbox, &form, secret) {
                Ok(answer) => {
                    metrics::record_request("oauth", "accepted");
                    if effect.hang {
                        delay += Duration::from_secs(faults::HANG_SECS);
                    }
                    Json(answer).into_response()
                }
                Err(e) => refuse(e),
            }
        }
    };
    sandbox.pause(delay).await;
    response
}

fn refuse(error: ZaloError) -> Response {
    metrics::record_request("oauth", &error.code.to_string());
    Json(error.oauth_body()).into_response()
}

fn redeem(
    sandbox: &Sandbox,
    form: &HashMap<String, String>,
    secret: &str,
) -> Result<serde_json::Value, ZaloError> {
    let field = |name: &str| form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let grant = field("grant_type");
    if !matches!(grant, Some("refresh_token" | "authorization_code")) {
        return Err(ZaloError::new(
            codes::OAUTH_INVALID_PARAM,
            "grant_type must be refresh_token or authorization_code",
        ));
    }
    let app_id = field("app_id")
        .ok_or_else(|| ZaloError::new(codes::OAUTH_INVALID_PARAM, "app_id is required"))?;
    let app = sandbox
        .apps
        .get(app_id)
        .ok_or_else(|| ZaloError::new(codes::OAUTH_INVALID_APP, "Invalid app_id"))?;
    if !app.app_secret.matches(secret) {
        return Err(ZaloError::new(
            codes::OAUTH_INVALID_APP,
            "Invalid secret_key for this app_id",
        ));
    }
    let generation = if grant == Some("authorization_code") {
        // An OA admin's consent (`/v4/oa/permission`), with its PKCE verifier.
        let code = field("code")
            .ok_or_else(|| ZaloError::new(codes::OAUTH_INVALID_PARAM, "code is required"))?;
        let verifier = field("code_verifier").ok_or_else(|| {
            ZaloError::new(codes::OAUTH_INVALID_PARAM, "code_verifier is required")
        })?;
        sandbox
            .tokens
            .exchange_code(app, code, verifier, sandbox.clock.now_ms())?
    } else {
        let refresh = field("refresh_token").ok_or_else(|| {
            ZaloError::new(codes::OAUTH_INVALID_PARAM, "refresh_token is required")
        })?;
        sandbox.tokens.redeem(app, refresh)?
    };
    let ttl = sandbox.settings.access_token_ttl_secs;
    let expires_ms = sandbox
        .clock
        .now_ms()
        .saturating_add(i64::try_from(ttl.saturating_mul(1000)).unwrap_or(i64::MAX));
    tracing::info!(app_id = %app.app_id, generation, "Refresh token redeemed; issued a new token pair.");
    Ok(json!({
        "access_token": sandbox.tokens.issue_access(app, expires_ms),
        "refresh_token": tokens::refresh_token(app, generation),
        "expires_in": ttl.to_string(),
    }))
}

/// Decodes `application/x-www-form-urlencoded` pairs (`+` is a space, `%XX` a byte).
pub fn parse_form(raw: &[u8]) -> HashMap<String, String> {
    raw.split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let mut kv = pair.splitn(2, |b| *b == b'=');
            let key = decode_component(kv.next().unwrap_or_default());
            let value = decode_component(kv.next().unwrap_or_default());
            (key, value)
        })
        .collect()
}

fn decode_component(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = raw
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode_plus_and_percent_escapes() {
        let form = parse_form(
            b"refresh_token=zrt1.2.ab%2Bc&app_id=123&grant_type=refresh_token&note=a+b%&x",
        );
        assert_eq!(form["refresh_token"], "zrt1.2.ab+c");
        assert_eq!(form["app_id"], "123");
        assert_eq!(form["note"], "a b%");
        assert_eq!(form["x"], "");
    }
}
