//! `GET /v4/oa/permission`: Zalo's consent page, where an OA admin authorises an app
//! (`app_id`, `redirect_uri`, PKCE `code_challenge`, `state`); `POST` is the admin's
//! "Đồng ý": an authorization code is granted (single use, 10 minutes, bound to the
//! challenge) and the browser is sent to `redirect_uri?code=…&oa_id=…&state=…`. The
//! code is exchanged at `POST /v4/oa/access_token` with `grant_type=authorization_code`.

use super::oauth::parse_form;
use crate::{
    sandbox::Sandbox,
    zalo::{codes, ZaloError},
};
use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    http::{header, StatusCode},
    response::{Html, IntoResponse, Response},
};
use std::{collections::HashMap, sync::Arc};

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The consent request, checked.
struct Consent<'a> {
    app_id: &'a str,
    oa_id: String,
    oa_name: String,
    redirect_uri: &'a str,
    code_challenge: &'a str,
    state: &'a str,
}

fn check<'a>(
    sandbox: &Sandbox,
    form: &'a HashMap<String, String>,
) -> Result<Consent<'a>, ZaloError> {
    let field = |name: &str| form.get(name).map(|v| v.trim()).unwrap_or_default();
    let app = sandbox
        .apps
        .get(field("app_id"))
        .ok_or_else(|| ZaloError::new(codes::OAUTH_INVALID_APP, "Invalid appId"))?;
    let redirect_uri = field("redirect_uri");
    if !(redirect_uri.starts_with("http://") || redirect_uri.starts_with("https://")) {
        return Err(ZaloError::new(-14003, "Invalid redirect uri"));
    }
    let code_challenge = field("code_challenge");
    if code_challenge.len() != 43 {
        return Err(ZaloError::new(
            codes::OAUTH_INVALID_PARAM,
            "code_challenge must be base64url(SHA-256(code_verifier)), 43 characters",
        ));
    }
    Ok(Consent {
        app_id: field("app_id"),
        oa_id: app.oa_id.clone(),
        oa_name: app.name.clone(),
        redirect_uri,
        code_challenge,
        state: field("state"),
    })
}

fn refused(error: &ZaloError) -> Response {
    let page = format!(
        "<!DOCTYPE html><html lang=\"vi\"><head><meta charset=\"utf-8\"><title>Zalo</title></head>\
         <body><h1>Không thể cấp quyền</h1><p>Lỗi {}: {}</p></body></html>",
        error.code,
        escape(&error.message)
    );
    (StatusCode::BAD_REQUEST, Html(page)).into_response()
}

/// `GET /v4/oa/permission`: the consent page.
pub async fn consent_page(
    State(sandbox): State<Arc<Sandbox>>,
    RawQuery(query): RawQuery,
) -> Response {
    let form = parse_form(query.unwrap_or_default().as_bytes());
    let consent = match check(&sandbox, &form) {
        Ok(c) => c,
        Err(e) => return refused(&e),
    };
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        )
    };
    let page = format!(
        "<!DOCTYPE html><html lang=\"vi\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Cấp quyền cho ứng dụng · Zalo (sandbox)</title></head>\
         <body style=\"font-family:sans-serif;max-width:420px;margin:40px auto\">\
         <h1>Cấp quyền cho ứng dụng</h1>\
         <p>Ứng dụng <b>{app}</b> xin quyền quản lý Official Account <b>{oa}</b> (gửi tin, đọc tin nhắn, quản lý người quan tâm).</p>\
         <form method=\"post\" action=\"/v4/oa/permission\">{}{}{}{}\
         <button type=\"submit\" id=\"approve\">Đồng ý</button></form>\
         <p><small>Zalo sandbox: trang này thay cho trang cấp quyền của Zalo.</small></p></body></html>",
        hidden("app_id", consent.app_id),
        hidden("redirect_uri", consent.redirect_uri),
        hidden("code_challenge", consent.code_challenge),
        hidden("state", consent.state),
        app = escape(consent.app_id),
        oa = escape(&consent.oa_name),
    );
    Html(page).into_response()
}

/// `POST /v4/oa/permission`: the admin approved; back to the app with a code.
pub async fn approve(State(sandbox): State<Arc<Sandbox>>, body: Bytes) -> Response {
    let form = parse_form(&body);
    let consent = match check(&sandbox, &form) {
        Ok(c) => c,
        Err(e) => return refused(&e),
    };
    let app = sandbox.apps.get(consent.app_id).expect("checked above");
    let code = sandbox
        .tokens
        .grant_code(app, consent.code_challenge, sandbox.clock.now_ms());
    tracing::info!(app_id = %consent.app_id, "OA admin consented; authorization code granted.");
    let separator = if consent.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    let location = format!(
        "{}{separator}code={}&oa_id={}&state={}",
        consent.redirect_uri,
        encode(&code),
        encode(&consent.oa_id),
        encode(consent.state)
    );
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}
