//! `GET/POST /admin/sign-in` and `POST /admin/sign-out`.
//!
//! The sign-in form carries its own CSRF token (a random value in a `SameSite=Strict`
//! cookie, repeated in a hidden field), since there is no session yet. A sign-in is
//! refused while the account or the address is locked ([`crate::lockout`]); every
//! attempt is audited.

use crate::{
    accounts,
    audit::{self, Action},
    html,
    lockout::{self, Lock},
    sessions,
    web::{
        client_address, cookie, page_response, read_cookie, see_other, AppState, FormData,
        PageError, SignedIn, SESSION_COOKIE, SIGN_IN_COOKIE,
    },
};
use axum::{
    extract::{FromRequestParts, Request, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};
use loa_contracts::time::vietnam;
use maud::html;
use serde_json::json;

fn form_page(
    state: &AppState,
    csrf: &str,
    tenant: &str,
    username: &str,
    error: Option<&str>,
) -> maud::Markup {
    let tenants = state.tenants.current();
    let tenants = tenants.all();
    let body = html! {
        section.card.signin {
            h1 { "Đăng nhập" }
            p.muted { "Trang quản trị Loa dành cho cán bộ của đơn vị." }
            @if let Some(error) = error { (html::notice(error, false)) }
            form method="post" action="/admin/sign-in" {
                input type="hidden" name="csrf" value=(csrf);
                @if tenants.len() == 1 {
                    input type="hidden" name="tenant" value=(tenants[0].id);
                    p { b { (tenants[0].name) } }
                } @else {
                    label for="tenant" { "Đơn vị" }
                    select id="tenant" name="tenant" {
                        @for t in tenants {
                            option value=(t.id) selected[t.id == tenant] { (t.name) }
                        }
                    }
                }
                div {
                    label for="username" { "Tên đăng nhập" }
                    input id="username" name="username" autocomplete="username" required value=(username);
                }
                div {
                    label for="password" { "Mật khẩu" }
                    input id="password" name="password" type="password" autocomplete="current-password" required;
                }
                button type="submit" { "Đăng nhập" }
            }
        }
    };
    html::page("Đăng nhập", None, body)
}

fn with_sign_in_cookie(
    state: &AppState,
    status: StatusCode,
    csrf: &str,
    markup: maud::Markup,
) -> Response {
    let mut response = page_response(status, markup);
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie(SIGN_IN_COOKIE, csrf, !state.settings.dev_mode, None),
    );
    response
}

/// `GET /admin/sign-in`: the form (or the overview for a signed-in user).
pub async fn form(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    if SignedIn::from_request_parts(&mut parts, &state)
        .await
        .is_ok()
    {
        return see_other("/admin/overview");
    }
    let csrf = read_cookie(&parts.headers, SIGN_IN_COOKIE)
        .filter(|v| v.len() == 64)
        .map_or_else(sessions::random_token, str::to_owned);
    with_sign_in_cookie(
        &state,
        StatusCode::OK,
        &csrf,
        form_page(&state, &csrf, "", "", None),
    )
}

/// `POST /admin/sign-in`.
pub async fn submit(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, PageError> {
    let (parts, body) = request.into_parts();
    let address = client_address(&parts, state.settings.trust_forwarded_for);
    let expected = read_cookie(&parts.headers, SIGN_IN_COOKIE)
        .unwrap_or_default()
        .to_owned();
    let body = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| PageError::BadRequest("Không đọc được dữ liệu gửi lên.".into()))?;
    let form = FormData::parse(&body);
    if !sessions::csrf_matches(&expected, form.get("csrf")) {
        return Err(PageError::Csrf);
    }
    let tenant = form.get("tenant").unwrap_or_default().trim();
    let username: String = form
        .get("username")
        .unwrap_or_default()
        .trim()
        .chars()
        .take(64)
        .collect();
    let password = form.get("password").unwrap_or_default();
    let again = |status: StatusCode, error: &str| {
        with_sign_in_cookie(
            &state,
            status,
            &expected,
            form_page(&state, &expected, tenant, &username, Some(error)),
        )
    };
    if state.tenants.current().get(tenant).is_none() {
        return Ok(again(StatusCode::BAD_REQUEST, "Vui lòng chọn đơn vị."));
    }
    if username.is_empty() || password.is_empty() {
        return Ok(again(
            StatusCode::BAD_REQUEST,
            "Vui lòng nhập tên đăng nhập và mật khẩu.",
        ));
    }
    let entry = |action: Action, detail: serde_json::Value| audit::Entry {
        tenant,
        actor: &username,
        action,
        object: None,
        address: Some(&address),
        detail,
    };
    if let Some(lock) =
        lockout::check(&state.pool, &state.lockout, tenant, &username, &address).await?
    {
        let (until, scope) = match lock {
            Lock::Account(until) => (until, "account"),
            Lock::Address(until) => (until, "address"),
        };
        audit::record(
            &state.pool,
            &entry(
                Action::SignInLocked,
                json!({"locked": scope, "until": until}),
            ),
        )
        .await?;
        let until = until.with_timezone(&vietnam()).format("%H:%M %d/%m/%Y");
        return Ok(again(
            StatusCode::TOO_MANY_REQUESTS,
            &format!("Đăng nhập sai quá nhiều lần: tạm khoá đến {until}. Vui lòng thử lại sau."),
        ));
    }
    let Some(account) = accounts::authenticate(&state.pool, tenant, &username, password).await?
    else {
        lockout::record(&state.pool, tenant, &username, &address, false).await?;
        audit::record(&state.pool, &entry(Action::SignInFailed, json!({}))).await?;
        return Ok(again(
            StatusCode::UNAUTHORIZED,
            "Tên đăng nhập hoặc mật khẩu không đúng.",
        ));
    };
    lockout::record(&state.pool, tenant, &username, &address, true).await?;
    let session_id = sessions::start(&state.pool, &account, &address).await?;
    audit::record(
        &state.pool,
        &entry(Action::SignIn, json!({"role": account.role.as_str()})),
    )
    .await?;
    tracing::info!(tenant, account = account.id, "Console sign-in.");
    let mut response = see_other("/admin/overview");
    let secure = !state.settings.dev_mode;
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        cookie(SESSION_COOKIE, &session_id, secure, None),
    );
    headers.append(
        header::SET_COOKIE,
        cookie(SIGN_IN_COOKIE, "", secure, Some(0)),
    );
    Ok(response)
}

/// `POST /admin/sign-out`.
pub async fn sign_out(
    State(state): State<AppState>,
    signed_in: SignedIn,
    form: FormData,
) -> Result<Response, PageError> {
    signed_in.require_csrf(&form)?;
    sessions::end(&state.pool, &signed_in.session.id_hash).await?;
    audit::record(
        &state.pool,
        &audit::Entry {
            tenant: signed_in.tenant(),
            actor: &signed_in.account().username,
            action: Action::SignOut,
            object: None,
            address: Some(&signed_in.address),
            detail: json!({}),
        },
    )
    .await?;
    let mut response = see_other("/admin/sign-in");
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie(SESSION_COOKIE, "", !state.settings.dev_mode, Some(0)),
    );
    Ok(response.into_response())
}
