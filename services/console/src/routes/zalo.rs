//! Re-authorising the tenant's Zalo OA, so an expired or revoked refresh token never
//! needs SQL: `POST /admin/zalo/authorize` (admins; CSRF) starts Zalo's OAuth v4
//! consent with PKCE and links to the permission page; Zalo sends the browser back
//! to `GET /admin/zalo/callback?code=…&oa_id=…&state=…`, where the code and the
//! verifier go to the notifier, which exchanges them (it keeps the app secret) and
//! stores the new token pair.
//!
//! The callback arrives from Zalo's site, so the `SameSite=Strict` session cookie is
//! not sent with it: the callback is authorised by its `state` instead, 256 random bits
//! bound (server side, stored hashed) to the account and tenant that started it,
//! single use, for 10 minutes; the PKCE verifier never leaves the console and the
//! notifier. The answer is a page with a link back, not a redirect (the cookie comes
//! back on the next same-site navigation).

use crate::{
    audit::{self, Action},
    backend::Service,
    html,
    sessions::{self, random_token},
    web::{page_response, AppState, FormData, PageError, SignedIn},
};
use anyhow::Context;
use axum::{
    extract::{Query, State},
    http::{header, HeaderMap, StatusCode},
    response::Response,
};
use maud::html;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// base64url without padding (RFC 4648 §5), as PKCE uses it.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 2);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// The PKCE S256 challenge of a verifier.
pub fn pkce_challenge(verifier: &str) -> String {
    base64url(&Sha256::digest(verifier.as_bytes()))
}

fn redirect_uri(state: &AppState, headers: &HeaderMap) -> String {
    let base = state.settings.public_url.clone().unwrap_or_else(|| {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1:8083");
        let scheme = if state.settings.dev_mode {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}")
    });
    format!("{}/admin/zalo/callback", base.trim_end_matches('/'))
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// `POST /admin/zalo/authorize`.
pub async fn authorize(
    State(state): State<AppState>,
    signed_in: SignedIn,
    headers: HeaderMap,
    form: FormData,
) -> Result<Response, PageError> {
    signed_in.require_csrf(&form)?;
    signed_in.require_admin()?;
    let tenant = state
        .tenants
        .current()
        .get(signed_in.tenant())
        .cloned()
        .ok_or(PageError::NotFound)?;
    let flow_state = random_token();
    let mut verifier_bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut verifier_bytes);
    let verifier = base64url(&verifier_bytes);
    let client = state
        .pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    client
        .execute(
            "INSERT INTO console.zalo_authorizations (state_hash, account_id, tenant, verifier, address)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &sessions::id_hash(&flow_state),
                &signed_in.account().id,
                &tenant.id,
                &verifier,
                &signed_in.address,
            ],
        )
        .await
        .context("Failed to store a Zalo authorisation")?;
    let url = format!(
        "{}/v4/oa/permission?app_id={}&redirect_uri={}&code_challenge={}&state={}",
        tenant.zalo.oauth_url.trim_end_matches('/'),
        encode(&tenant.zalo.app_id),
        encode(&redirect_uri(&state, &headers)),
        pkce_challenge(&verifier),
        flow_state
    );
    // A link, not a redirect: the pages' `form-action 'self'` would refuse a form's
    // redirect to Zalo, and the admin sees where they are going.
    let body = html! {
        section.card {
            h1 { "Cấp quyền lại cho Zalo OA" }
            p { "Quản trị viên của OA đăng nhập Zalo và bấm “Đồng ý” trên trang cấp quyền. Zalo sẽ đưa ông/bà trở lại đây." }
            p { a.button #zalo-permission href=(url) rel="noreferrer" { "Mở trang cấp quyền của Zalo" } }
            p.muted { "Liên kết có hiệu lực trong 10 phút." }
        }
    };
    let tenant_name = state.tenant_name(signed_in.tenant());
    Ok(page_response(
        StatusCode::OK,
        html::page(
            "Cấp quyền lại cho Zalo OA",
            Some(&super::frame(
                &signed_in,
                &tenant_name,
                html::Section::Overview,
            )),
            body,
        ),
    ))
}

fn result_page(status: StatusCode, ok: bool, text: &str) -> Response {
    let body = html! {
        section.card {
            h1 { (if ok { "Đã kết nối lại Zalo OA" } else { "Chưa kết nối lại được Zalo OA" }) }
            (html::notice(text, ok))
            p { a #back href="/admin/overview" { "Về trang tổng quan" } }
        }
    };
    page_response(status, html::page("Kết nối Zalo OA", None, body))
}

/// `GET /admin/zalo/callback?code=…&oa_id=…&state=…`.
pub async fn callback(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let field = |k: &str| query.get(k).map(|v| v.trim()).unwrap_or_default();
    let flow_state = field("state");
    if flow_state.len() != 64 {
        return Ok(result_page(
            StatusCode::BAD_REQUEST,
            false,
            "Đường dẫn trả về không hợp lệ. Vui lòng bắt đầu lại từ trang tổng quan.",
        ));
    }
    let client = state
        .pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let row = client
        .query_opt(
            "DELETE FROM console.zalo_authorizations z
              USING console.accounts a
              WHERE z.state_hash = $1 AND a.id = z.account_id
                AND z.created_at > now() - interval '10 minutes'
             RETURNING z.tenant, z.verifier, z.address, a.username",
            &[&sessions::id_hash(flow_state)],
        )
        .await
        .context("Failed to read a Zalo authorisation")?;
    let Some(row) = row else {
        return Ok(result_page(
            StatusCode::BAD_REQUEST,
            false,
            "Yêu cầu cấp quyền đã hết hạn hoặc đã được dùng. Vui lòng bắt đầu lại từ trang tổng quan.",
        ));
    };
    let (tenant, verifier, address, username): (String, String, Option<String>, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let code = field("code");
    let answer = if code.is_empty() {
        Err(crate::backend::BackendError::Refused {
            status: 400,
            message: "Zalo returned no code (the admin may have declined)".into(),
            field: Some("code".into()),
        })
    } else {
        state
            .backend
            .post::<Value>(
                Service::Notifier,
                &tenant,
                "/v1/zalo/authorization",
                &json!({"code": code, "code_verifier": verifier}),
            )
            .await
    };
    let outcome = match &answer {
        Ok(_) => json!({"stored": true}),
        Err(e) => json!({"stored": false, "error": e.to_string()}),
    };
    audit::record(
        &state.pool,
        &audit::Entry {
            tenant: &tenant,
            actor: &username,
            action: Action::ZaloReauthorize,
            object: query.get("oa_id").map(String::as_str),
            address: address.as_deref(),
            detail: outcome,
        },
    )
    .await?;
    Ok(match answer {
        Ok(stored) => result_page(
            StatusCode::OK,
            true,
            &format!(
                "Đã lưu quyền mới của OA. Access token hết hạn lúc {}. Nếu việc gửi tin đang tạm dừng, \
                 hãy bấm “Tiếp tục gửi tin” ở trang tổng quan.",
                stored["access_expires_at"].as_str().map(html::datetime_vn_str).unwrap_or_default()
            ),
        ),
        Err(e) => result_page(
            StatusCode::BAD_GATEWAY,
            false,
            &format!("Zalo không chấp nhận yêu cầu cấp quyền: {e}"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenges_are_the_s256_of_rfc_7636() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(base64url(&[0u8; 32]).len(), 43);
    }
}
