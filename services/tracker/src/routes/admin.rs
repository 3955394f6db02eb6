//! The admin console's tracker API (tenant admin token, or the console's service
//! credential with `X-Loa-Tenant`):
//!
//! - `GET /v1/dossiers?q=&agency=&procedure=&status=&timeliness=&from=&to=&after=&limit=`:
//!   search ([`crate::search`]); `400` naming the offending parameter;
//! - `GET /v1/overview`: today's events, dossiers received today, open dossiers past
//!   their due day.

use super::AppState;
use crate::search::{self, Overview, SearchPage};
use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::{HeaderMap, StatusCode},
    Json,
};
use loa_platform::http::{admin_tenant, ApiError};
use std::collections::HashMap;

/// `GET /v1/dossiers`.
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
pub async fn overview(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Overview>, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?;
    Ok(Json(
        search::overview(&state.pool, &tenant.id, state.clock.now()).await?,
    ))
}
