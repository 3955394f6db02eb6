//! The admin console's tracker API (tenant admin token, or the console's service
//! credential with `X-Loa-Tenant`):
//!
//! - `GET /v1/dossiers?q=&agency=&procedure=&status=&timeliness=&from=&to=&after=&limit=`:
//!   search ([`crate::search`]); `400` naming the offending parameter;
//! - `GET /v1/overview`: today's events, dossiers received today, open dossiers past
//!   their due day;
//! - `POST /v1/subjects/erase`: a citizen's erasure request ([`crate::erasure`]).

use super::AppState;
use crate::search::{self, Overview, SearchPage};
use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::{HeaderMap, StatusCode},
    Json,
};
use loa_platform::{
    erasure::{credential_kind, ErasureReport, ErasureRequest},
    http::{
        admin_tenant,
        openapi::{AdminRefusals, ErrorBody, JsonRefusals},
        ApiError, JsonBody,
    },
};
use serde_json::Value;
use std::collections::HashMap;

/// `GET /v1/dossiers`.
#[utoipa::path(get, path = "/v1/dossiers", tag = "dossiers",
    security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    params(
        ("q" = Option<String>, Query, description = "A dossier code prefix, or an applicant's phone (exact)"),
        ("agency" = Option<String>, Query, description = "Agency code"),
        ("procedure" = Option<String>, Query, description = "Procedure code"),
        ("status" = Option<String>, Query, description = "National status code 1..10 or its name"),
        ("timeliness" = Option<String>, Query, description = "`overdue` or `early`"),
        ("from" = Option<String>, Query, description = "Received on or after this day, YYYY-MM-DD"),
        ("to" = Option<String>, Query, description = "Received on or before this day, YYYY-MM-DD"),
        ("after" = Option<String>, Query, description = "The `next` of the previous page"),
        ("limit" = Option<i64>, Query, description = "Dossiers per page, 1..100 (20)"),
    ),
    responses(
        (status = 200, body = SearchPage, description = "Newest first"),
        (status = 400, body = ErrorBody, description = "A parameter out of its rules (`invalid_query`), named in `field`; or `invalid_header`"),
        AdminRefusals,
    ))]
pub async fn search_dossiers(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<SearchPage>, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?;
    let Query(params) = query.map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()).with_field("query")
    })?;
    let now = state.clock.now();
    let q = search::parse(&params, &state.lookup_secret, &tenant.id, now)?;
    Ok(Json(
        search::search(&state.pool, &tenant.id, &q, now).await?,
    ))
}

/// `GET /v1/overview`.
#[utoipa::path(get, path = "/v1/overview", tag = "dossiers",
    security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    responses((status = 200, body = Overview), AdminRefusals))]
pub async fn overview(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Overview>, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?;
    Ok(Json(
        search::overview(&state.pool, &tenant.id, state.clock.now()).await?,
    ))
}

/// `POST /v1/subjects/erase`.
#[utoipa::path(post, path = "/v1/subjects/erase", tag = "personal data",
    security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    request_body(content = loa_platform::erasure::ErasureRequestBody),
    responses(
        (status = 200, body = ErasureReport, description = "Erased (or nothing was left: zero counts); audited either way"),
        JsonRefusals, AdminRefusals,
    ))]
pub async fn erase_subject(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<ErasureReport>, ApiError> {
    let tenants = state.tenants.current();
    let tenant = admin_tenant(&tenants, &headers)?;
    let request = ErasureRequest::parse(&body)?;
    let report = crate::erasure::erase_subject(
        &state.pool,
        &state.lookup_secret,
        &tenant.id,
        &request,
        credential_kind(&tenants, &headers),
        state.clock.now(),
    )
    .await?;
    tracing::info!(
        tenant = %tenant.id,
        audit_id = report.audit_id,
        removed = ?report.removed,
        "A citizen's personal data was erased at their request."
    );
    Ok(Json(report))
}
