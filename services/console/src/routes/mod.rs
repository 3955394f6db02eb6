//! The console's pages, all under `/admin/`, plus `/healthz`, `/readyz`, `/metrics`.
//!
//! Every page but sign-in needs a live session ([`SignedIn`]); everything it shows or
//! changes is the session's tenant's, asked of the tracker and the notifier with that
//! tenant. Every form carries the session's CSRF token; every action needs the
//! `admin` role and is audited. After an action the browser is sent back to a page
//! (`303`), which says what happened.

pub mod audience;
pub mod audit_log;
pub mod broadcasts;
pub mod citizen_messages;
pub mod dead_letters;
pub mod dossiers;
pub mod messages;
pub mod overview;
pub mod sign_in;
pub mod subscribers;
pub mod zalo;

use crate::{
    audit::{self, Action},
    backend::{BackendError, Service},
    html::{self, Frame, Section},
    web::{page_response, see_other, AppState, FormData, PageError, SignedIn},
};
use axum::{
    extract::{FromRequest, Path, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use loa_platform::http::{ops_router, Readiness};
use serde_json::{json, Map, Value};

/// The whole router.
pub fn router(state: AppState, readiness: Readiness) -> Router {
    Router::new()
        .route("/", get(|| async { see_other("/admin/overview") }))
        .route("/admin", get(|| async { see_other("/admin/overview") }))
        .route("/admin/", get(|| async { see_other("/admin/overview") }))
        .route(html::STYLESHEET_PATH, get(stylesheet))
        .route(audience::SCRIPT_PATH, get(audience::script))
        .route("/admin/sign-in", get(sign_in::form).post(sign_in::submit))
        .route("/admin/sign-out", post(sign_in::sign_out))
        .route("/admin/overview", get(overview::show))
        .route("/admin/overview/resume", post(overview::resume))
        .route("/admin/dossiers", get(dossiers::search))
        .route("/admin/dossiers/{code}", get(dossiers::show))
        .route("/admin/dossiers/{code}/qr.svg", get(dossiers::qr))
        .route("/admin/messages", get(messages::list))
        .route("/admin/messages/{id}/resend", post(messages::resend))
        .route("/admin/messages/{id}/cancel", post(messages::cancel))
        .route("/admin/broadcasts", get(broadcasts::list))
        .route(
            "/admin/broadcasts/new",
            get(broadcasts::compose).post(broadcasts::submit),
        )
        .route("/admin/broadcasts/audience", get(audience::count))
        .route("/admin/broadcasts/{id}", get(broadcasts::show))
        .route("/admin/broadcasts/{id}/pause", post(broadcasts::pause))
        .route("/admin/broadcasts/{id}/resume", post(broadcasts::resume))
        .route("/admin/broadcasts/{id}/cancel", post(broadcasts::cancel))
        .route("/admin/subscribers", get(subscribers::list))
        .route(
            "/admin/subscribers/import",
            post(subscribers::import).layer(subscribers::upload_limit()),
        )
        .route("/admin/subscribers/opt-out", post(subscribers::opt_out))
        .route("/admin/dead-letters", get(dead_letters::list))
        .route("/admin/dead-letters/replay", post(dead_letters::replay))
        .route("/admin/citizen-messages", get(citizen_messages::list))
        .route("/admin/audit", get(audit_log::show))
        .route("/admin/zalo/authorize", post(zalo::authorize))
        .route("/admin/zalo/callback", get(zalo::callback))
        .with_state(state)
        .merge(ops_router(readiness))
        .fallback(|| async { PageError::NotFound })
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        html::STYLESHEET,
    )
        .into_response()
}

/// The frame of a signed-in page.
pub(crate) fn frame<'a>(
    signed_in: &'a SignedIn,
    tenant_name: &'a str,
    section: Section,
) -> Frame<'a> {
    Frame {
        session: &signed_in.session,
        tenant_name,
        section,
        refresh_seconds: None,
    }
}

/// Appends an action of the signed-in account to the audit log.
pub(crate) async fn audited(
    state: &AppState,
    signed_in: &SignedIn,
    action: Action,
    object: Option<&str>,
    detail: Value,
) -> Result<(), PageError> {
    audit::record(
        &state.pool,
        &audit::Entry {
            tenant: signed_in.tenant(),
            actor: &signed_in.account().username,
            action,
            object,
            address: Some(&signed_in.address),
            detail,
        },
    )
    .await?;
    Ok(())
}

/// What a button on one object posts (`POST …/{id}/resend`, `…/{id}/pause`): the
/// session, the object's id from the path and the form (its CSRF token), extracted in
/// that order as a handler's arguments would be.
#[derive(FromRequest)]
#[from_request(state(AppState))]
pub struct ObjectButton {
    state: State<AppState>,
    signed_in: SignedIn,
    /// The object's id, as the path gives it.
    pub id: Path<String>,
    /// The form, with the CSRF token and what the page sends back to.
    pub form: FormData,
}

impl ObjectButton {
    /// Carries out `act` for the admin who pressed the button ([`act_on_notifier`]).
    pub(crate) async fn act(&self, act: NotifierAction<'_>) -> Result<Response, PageError> {
        act_on_notifier(&self.state, &self.signed_in, &self.form, act).await
    }
}

/// An admin's action that the notifier carries out for the admin's tenant (resend a
/// message, pause a broadcast, resume the tenant): one shape for every such button,
/// so each is checked, audited and answered alike.
pub(crate) struct NotifierAction<'a> {
    /// What the audit log calls it.
    pub action: Action,
    /// The audited object (a delivery's or a broadcast's id), if any.
    pub object: Option<&'a str>,
    /// The notifier's endpoint, posted `{}` (`/v1/broadcasts/{id}/pause`).
    pub path: String,
    /// The fields of the notifier's answer the audit row keeps.
    pub audit_fields: &'a [&'a str],
    /// The page the browser goes to afterwards, which says what happened.
    pub then: String,
}

/// Carries out `act`: the form's CSRF token and the admin role first, then the post to
/// the notifier, the audit row, and `303` to `act.then`. A refusal or an unreachable
/// notifier is the error page ([`PageError`]), and then nothing is audited.
pub(crate) async fn act_on_notifier(
    state: &AppState,
    signed_in: &SignedIn,
    form: &FormData,
    act: NotifierAction<'_>,
) -> Result<Response, PageError> {
    signed_in.require_csrf(form)?;
    signed_in.require_admin()?;
    let answer: Value = state
        .backend
        .post(Service::Notifier, signed_in.tenant(), &act.path, &json!({}))
        .await?;
    let detail: Map<String, Value> = act
        .audit_fields
        .iter()
        .map(|field| ((*field).to_owned(), answer[*field].clone()))
        .collect();
    audited(
        state,
        signed_in,
        act.action,
        act.object,
        Value::Object(detail),
    )
    .await?;
    Ok(see_other(&act.then))
}

/// A JSON number as an integer (0 when absent).
pub(crate) fn int(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

/// A JSON string or number as text, or `default`.
pub(crate) fn text(value: &Value, default: &str) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => default.to_owned(),
    }
}

/// A page of a signed-in section.
pub(crate) fn section_page(
    state: &AppState,
    signed_in: &SignedIn,
    section: Section,
    title: &str,
    body: maud::Markup,
) -> Response {
    let tenant_name = state.tenant_name(signed_in.tenant());
    page_response(
        StatusCode::OK,
        html::page(title, Some(&frame(signed_in, &tenant_name, section)), body),
    )
}

/// A search page's answer from a service: what it found, or nothing and, in
/// Vietnamese, why it refused the filters (shown above the form the official fixes);
/// any other failure is the page's.
fn searched(answer: Result<Value, BackendError>) -> Result<(Value, Option<String>), PageError> {
    match answer {
        Ok(found) => Ok((found, None)),
        Err(BackendError::Refused { message, field, .. }) => Ok((
            Value::Null,
            Some(format!(
                "Điều kiện tìm kiếm không hợp lệ{}: {message}",
                field.map(|f| format!(" ({f})")).unwrap_or_default()
            )),
        )),
        Err(e) => Err(e.into()),
    }
}
