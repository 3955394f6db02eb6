//! `GET /v1/dossiers/{code}` and `GET /v1/dossiers/{code}/qr.svg`, for a tenant's
//! admins and the desk software that prints receipts. A token only ever sees its own
//! tenant's dossiers: another tenant's dossier is simply not found.

use super::AppState;
use crate::{
    domain::Timeliness,
    store::{self, lookup_url, DossierState, HistoryEntry},
};
use axum::{
    extract::{Path, State},
    http::{header, HeaderMap},
    response::{IntoResponse, Response},
    Json,
};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use loa_contracts::{
    event::MAX_DOSSIER_CODE,
    time::{vietnam, vietnam_day},
    DossierStatus,
};
use loa_platform::{
    http::{
        admin_tenant,
        openapi::{AdminRefusals, ErrorBody},
        ApiError,
    },
    TenantSettings,
};
use serde::Serialize;

/// A status with its code, English name and Vietnamese label.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusView {
    /// National code 1..10.
    pub code: u8,
    /// English snake_case name.
    pub name: &'static str,
    /// Official Vietnamese label.
    pub label_vi: &'static str,
}

impl From<DossierStatus> for StatusView {
    fn from(s: DossierStatus) -> Self {
        Self {
            code: s.code(),
            name: s.name(),
            label_vi: s.label_vi(),
        }
    }
}

/// A code and a name (procedure, agency).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NamedView {
    /// Catalogue code.
    pub code: String,
    /// Display name.
    pub name: String,
}

/// One history entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryView {
    /// The event's id.
    pub event_id: String,
    /// The status it reported.
    pub status: StatusView,
    /// When it happened (Vietnamese offset).
    pub occurred_at: DateTime<FixedOffset>,
    /// Upstream's sequence, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<i64>,
    /// The appointment the event carried (Vietnamese offset), if any: every value the
    /// appointment ever had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<DateTime<FixedOffset>>,
    /// The lifecycle does not allow this status after the dossier's: recorded, neither
    /// applied nor notified.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub invalid_transition: bool,
}

/// The dossier as the API returns it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DossierView {
    /// The code printed on the receipt.
    pub code: String,
    /// Current status.
    pub status: StatusView,
    /// The procedure.
    pub procedure: NamedView,
    /// The handling agency.
    pub agency: NamedView,
    /// When the desk received it.
    pub received_at: Option<DateTime<FixedOffset>>,
    /// The appointment date.
    pub due_at: Option<DateTime<FixedOffset>>,
    /// When the result became ready.
    pub completed_at: Option<DateTime<FixedOffset>>,
    /// `early`, `on_time`, `overdue`, `in_progress`; null for a dossier closed without
    /// a result (refused, withdrawn, stopped).
    pub timeliness: Option<Timeliness>,
    /// The public lookup link (the QR code's target).
    pub lookup_url: String,
    /// When the current state was written.
    pub updated_at: DateTime<FixedOffset>,
    /// Every event received, in order of occurrence.
    pub history: Vec<HistoryView>,
}

pub(crate) fn local(at: DateTime<Utc>) -> DateTime<FixedOffset> {
    at.with_timezone(&vietnam())
}

impl DossierView {
    /// Builds the view of a dossier and its history on `today` (a Vietnamese day).
    pub fn new(
        state: DossierState,
        history: Vec<HistoryEntry>,
        public_base_url: &str,
        today: NaiveDate,
    ) -> Self {
        Self {
            timeliness: state.timeliness(today),
            lookup_url: lookup_url(public_base_url, &state.lookup_token),
            code: state.dossier_code,
            status: state.status.into(),
            procedure: NamedView {
                code: state.procedure_code,
                name: state.procedure_name,
            },
            agency: NamedView {
                code: state.agency_code,
                name: state.agency_name,
            },
            received_at: state.received_at.map(local),
            due_at: state.due_at.map(local),
            completed_at: state.completed_at.map(local),
            updated_at: local(state.updated_at),
            history: history
                .into_iter()
                .map(|h| HistoryView {
                    event_id: h.event_id,
                    status: h.status.into(),
                    occurred_at: local(h.occurred_at),
                    sequence: h.sequence,
                    due_at: h.due_at.map(local),
                    invalid_transition: h.invalid_transition,
                })
                .collect(),
        }
    }
}

/// The tenant whose admin presented the request's bearer token.
fn authorised(state: &AppState, headers: &HeaderMap) -> Result<TenantSettings, ApiError> {
    admin_tenant(&state.tenants.current(), headers)
}

async fn find(state: &AppState, tenant: &str, code: &str) -> Result<DossierState, ApiError> {
    let not_found = || ApiError::not_found("no dossier with this code").with_field("code");
    if code.is_empty() || code.chars().count() > MAX_DOSSIER_CODE {
        return Err(not_found());
    }
    store::dossier_by_code(&state.pool, tenant, code)
        .await?
        .ok_or_else(not_found)
}

/// `GET /v1/dossiers/{code}`: the dossier's current state, timeliness and history.
#[utoipa::path(get, path = "/v1/dossiers/{code}", tag = "dossiers",
    security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    params(("code" = String, Path, description = "The dossier code printed on the receipt")),
    responses(
        (status = 200, body = DossierView),
        (status = 404, body = ErrorBody, description = "No such dossier for this tenant"),
        AdminRefusals,
    ))]
pub async fn get_dossier(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Result<Json<DossierView>, ApiError> {
    let tenant = authorised(&state, &headers)?;
    let dossier = find(&state, &tenant.id, &code).await?;
    let history = store::history(&state.pool, &tenant.id, &code).await?;
    Ok(Json(DossierView::new(
        dossier,
        history,
        &state.public_base_url,
        vietnam_day(&state.clock.now()),
    )))
}

/// `GET /v1/dossiers/{code}/qr.svg`: a QR code of the lookup link, for the paper receipt.
#[utoipa::path(get, path = "/v1/dossiers/{code}/qr.svg", tag = "dossiers",
    security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    params(("code" = String, Path, description = "The dossier code printed on the receipt")),
    responses(
        (status = 200, body = String, content_type = "image/svg+xml", description = "The lookup link as a QR code"),
        (status = 404, body = ErrorBody, description = "No such dossier for this tenant"),
        AdminRefusals,
    ))]
pub async fn get_qr(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = authorised(&state, &headers)?;
    let dossier = find(&state, &tenant.id, &code).await?;
    let svg = qr_svg(&lookup_url(&state.public_base_url, &dossier.lookup_token))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        svg,
    )
        .into_response())
}

/// Renders `text` as an SVG QR code (medium error correction, quiet zone included).
pub fn qr_svg(text: &str) -> Result<String, ApiError> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| ApiError::internal(&anyhow::anyhow!("Failed to encode a QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(240, 240)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_link_renders_as_an_svg_qr_code() {
        let svg = qr_svg("http://127.0.0.1:8081/tra-cuu/0123456789abcdef01234567").unwrap();
        assert!(svg.contains("<svg"));
        assert!(svg.ends_with("</svg>"));
    }
}
