//! Request plumbing shared by the pages: the state, the signed-in session extractor,
//! form bodies, cookies, the client's address, and [`PageError`], the one error type
//! of the page handlers (rendered as a Vietnamese page, never a stack trace).

use crate::{
    accounts::Account,
    backend::{Backend, BackendError},
    configuration::ConsoleSettings,
    html,
    lockout::LockoutPolicy,
    sessions::{self, Session, SessionPolicy},
};
use axum::{
    body::Bytes,
    extract::{ConnectInfo, FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use deadpool_postgres::Pool;
use loa_platform::LiveTenants;
use maud::{html as markup, Markup};
use std::{net::SocketAddr, sync::Arc};

/// What every handler reads.
#[derive(Clone)]
pub struct AppState {
    /// The console's database (accounts, sessions, audit).
    pub pool: Pool,
    /// The tracker's and notifier's admin APIs.
    pub backend: Backend,
    /// Tenants (names, and which exist), as the tenants file says now.
    pub tenants: LiveTenants,
    /// Settings.
    pub settings: Arc<ConsoleSettings>,
    /// Session lifetimes.
    pub sessions: SessionPolicy,
    /// Lockout thresholds.
    pub lockout: LockoutPolicy,
}

impl AppState {
    /// A tenant's display name (its id if it is no longer configured).
    pub fn tenant_name(&self, tenant: &str) -> String {
        self.tenants
            .current()
            .get(tenant)
            .map_or_else(|| tenant.to_owned(), |t| t.name.clone())
    }
}

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "loa_console_session";
/// Name of the sign-in form's CSRF cookie (before there is a session).
pub const SIGN_IN_COOKIE: &str = "loa_console_signin";

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, scoped to `/admin`, `Secure`
/// unless in development mode; `max_age` 0 deletes it.
pub fn cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> HeaderValue {
    let mut text = format!("{name}={value}; Path=/admin; HttpOnly; SameSite=Strict");
    if secure {
        text.push_str("; Secure");
    }
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&text).expect("cookie names and hex values are valid header text")
}

/// A cookie's value from the request's `Cookie` headers.
pub fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The client's address: the TCP peer, or the last `X-Forwarded-For` entry when the
/// console is told it sits behind a proxy that appends it.
pub fn client_address(parts: &Parts, trust_forwarded_for: bool) -> String {
    if trust_forwarded_for {
        if let Some(last) = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|v| !v.is_empty())
        {
            return last.chars().take(64).collect();
        }
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
}

/// The signed-in session of a request, with the client's address; a request without
/// a live session is sent to the sign-in page.
pub struct SignedIn {
    /// The session.
    pub session: Session,
    /// The client's address (for the audit log).
    pub address: String,
}

impl SignedIn {
    /// The account.
    pub fn account(&self) -> &Account {
        &self.session.account
    }

    /// The account's tenant.
    pub fn tenant(&self) -> &str {
        &self.session.account.tenant
    }

    /// Refuses (403) unless the account may act; viewers only read.
    pub fn require_admin(&self) -> Result<(), PageError> {
        if self.session.account.can_act() {
            Ok(())
        } else {
            Err(PageError::Forbidden)
        }
    }

    /// Refuses (403) a form without this session's CSRF token.
    pub fn require_csrf(&self, form: &FormData) -> Result<(), PageError> {
        if sessions::csrf_matches(&self.session.csrf_token, form.get("csrf")) {
            Ok(())
        } else {
            Err(PageError::Csrf)
        }
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let address = client_address(parts, state.settings.trust_forwarded_for);
        let Some(id) = read_cookie(&parts.headers, SESSION_COOKIE).filter(|v| v.len() == 64) else {
            return Err(PageError::SignIn);
        };
        match sessions::find(&state.pool, &state.sessions, id).await? {
            // A session of a tenant that is no longer configured is not honoured.
            Some(session)
                if state
                    .tenants
                    .current()
                    .get(&session.account.tenant)
                    .is_some() =>
            {
                Ok(Self { session, address })
            }
            _ => Err(PageError::SignIn),
        }
    }
}

/// A `application/x-www-form-urlencoded` body, every field kept (a checkbox list
/// repeats its name).
#[derive(Debug, Default)]
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    /// Parses a body.
    pub fn parse(body: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of a field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a field.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for FormData {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, PageError> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|_| PageError::BadRequest("Không đọc được dữ liệu gửi lên.".into()))?;
        Ok(Self::parse(&body))
    }
}

/// Headers of every page: not cached, not framed, nothing loaded from elsewhere (the
/// console's own stylesheet and scripts, and its own JSON, only).
const PAGE_HEADERS: [(HeaderName, &str); 5] = [
    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
    (header::CACHE_CONTROL, "no-store"),
    (header::REFERRER_POLICY, "same-origin"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
];

/// A rendered page with the console's headers.
pub fn page_response(status: StatusCode, markup: Markup) -> Response {
    (status, PAGE_HEADERS, markup.into_string()).into_response()
}

/// `303 See Other` to `to` (after a form).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Why a page could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// No live session: to the sign-in page.
    #[error("sign-in required")]
    SignIn,
    /// Not this tenant's, or nothing there.
    #[error("not found")]
    NotFound,
    /// A viewer tried to act.
    #[error("forbidden")]
    Forbidden,
    /// A form without the session's CSRF token.
    #[error("CSRF token missing or wrong")]
    Csrf,
    /// Bad input, with a Vietnamese explanation.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A backend or the database failed.
    #[error(transparent)]
    Unavailable(#[from] anyhow::Error),
}

impl From<BackendError> for PageError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::NotFound => Self::NotFound,
            BackendError::Refused { message, field, .. } => Self::BadRequest(match field {
                Some(field) => format!("Yêu cầu không hợp lệ ({field}): {message}"),
                None => format!("Yêu cầu không hợp lệ: {message}"),
            }),
            BackendError::Unavailable(e) => Self::Unavailable(e),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, text) = match &self {
            Self::SignIn => return see_other("/admin/sign-in"),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Không tìm thấy",
                "Không tìm thấy trang hoặc dữ liệu này.".to_owned(),
            ),
            Self::Forbidden => (
                StatusCode::FORBIDDEN,
                "Không có quyền",
                "Tài khoản của ông/bà chỉ có quyền xem, không thực hiện được thao tác này."
                    .to_owned(),
            ),
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "Phiên làm việc không hợp lệ",
                "Biểu mẫu đã hết hạn hoặc không hợp lệ. Vui lòng tải lại trang rồi thử lại."
                    .to_owned(),
            ),
            Self::BadRequest(text) => (
                StatusCode::BAD_REQUEST,
                "Yêu cầu không hợp lệ",
                text.clone(),
            ),
            Self::Unavailable(e) => {
                tracing::error!(error.cause_chain = ?e, error.message = %e, "A console page failed.");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Tạm thời không phục vụ được",
                    "Hệ thống đang bận hoặc một dịch vụ chưa sẵn sàng. Vui lòng thử lại sau ít phút.".to_owned(),
                )
            }
        };
        let body = markup! {
            section.card {
                h1 { (title) }
                p { (text) }
                p { a href="/admin/overview" { "Về trang tổng quan" } }
            }
        };
        page_response(status, html::page(title, None, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_http_only_strict_and_secure_outside_dev_mode() {
        let secure = cookie(SESSION_COOKIE, "abc", true, None);
        assert_eq!(
            secure.to_str().unwrap(),
            "loa_console_session=abc; Path=/admin; HttpOnly; SameSite=Strict; Secure"
        );
        let dev = cookie(SESSION_COOKIE, "", false, Some(0));
        assert_eq!(
            dev.to_str().unwrap(),
            "loa_console_session=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0"
        );
    }

    #[test]
    fn a_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; loa_console_session=xyz ; b=2"),
        );
        assert_eq!(read_cookie(&headers, SESSION_COOKIE), Some("xyz"));
        assert_eq!(read_cookie(&headers, "c"), None);
    }

    #[test]
    fn forms_keep_repeated_fields_and_decode_vietnamese() {
        let form = FormData::parse("id=1&id=2&q=H%E1%BB%93+s%C6%A1&csrf=t".as_bytes());
        assert_eq!(form.all("id"), ["1", "2"]);
        assert_eq!(form.get("q"), Some("Hồ sơ"));
        assert_eq!(form.get("missing"), None);
    }
}
