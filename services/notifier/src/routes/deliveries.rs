//! The notifier's HTTP API (besides `/healthz`, `/readyz`, `/metrics`).
//!
//! - `GET /v1/deliveries?dossier_code=…`: a dossier's deliveries, for the tenant
//!   whose admin bearer token is presented (401 otherwise); another tenant's
//!   deliveries are invisible, not forbidden, so codes cannot be probed. Each
//!   delivery comes with `delivered_at`, `seen_at` and its `history` (one entry per
//!   status transition, from `notifier.delivery_events`).
//!   With `?status=failed|deferred|held|ambiguous|retrying|cancelled` instead, the tenant's
//!   deliveries in that state ([`super::admin::list_by_status`]).
//! - `POST /zalo/webhook` lives in [`super::webhook`].

use crate::deliveries::{self, DeliveryView, ReceiptView};
use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::{HeaderMap, StatusCode},
    routing::get,
    Json, Router,
};
use deadpool_postgres::Pool;
use loa_platform::{
    http::{
        admin_tenant,
        openapi::{AdminRefusals, ErrorBody},
        ApiError,
    },
    LiveTenants,
};
use serde::Serialize;
use std::collections::HashMap;

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    /// The notifier's database.
    pub pool: Pool,
    /// Tenants, for admin tokens (as the tenants file says now).
    pub tenants: LiveTenants,
}

/// The API routes (without the ops routes).
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/deliveries", get(list_deliveries))
        .with_state(state)
}

/// A dossier's deliveries.
#[derive(Serialize, utoipa::ToSchema)]
struct DeliveriesPage {
    /// The dossier.
    dossier_code: String,
    /// Its deliveries, oldest first.
    deliveries: Vec<DeliveryWithHistory>,
}

/// `GET /v1/deliveries`'s answer: a dossier's deliveries, or a page of those in a state.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
enum DeliveriesAnswer {
    /// `?dossier_code=`.
    ByDossier(DeliveriesPage),
    /// `?status=`.
    ByStatus(super::admin::AttentionPage),
}

/// A delivery with its receipt times (`delivered_at`, `seen_at`) and its history.
#[derive(Serialize, utoipa::ToSchema)]
struct DeliveryWithHistory {
    #[serde(flatten)]
    delivery: DeliveryView,
    #[serde(flatten)]
    receipts: ReceiptView,
}

/// `GET /v1/deliveries`.
#[utoipa::path(get, path = "/v1/deliveries", tag = "admin",
    security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    params(
        ("dossier_code" = Option<String>, Query, description = "A dossier's deliveries with their history"),
        ("status" = Option<String>, Query, description = "Without `dossier_code`: `failed`, `deferred`, `held`, `ambiguous`, `retrying` or `cancelled`"),
        ("after" = Option<String>, Query, description = "With `status`: the `next_after` of the previous page"),
        ("limit" = Option<i64>, Query, description = "With `status`: 1..200 (50)"),
    ),
    responses(
        (status = 200, body = DeliveriesAnswer),
        (status = 400, body = ErrorBody, description = "No `dossier_code` nor `status`, or a parameter out of its rules; `field` names it"),
        AdminRefusals,
    ))]
async fn list_deliveries(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<DeliveriesAnswer>, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?;
    let params = query.map(|Query(q)| q).unwrap_or_default();
    if params.contains_key("status") && !params.contains_key("dossier_code") {
        let page = super::admin::list_by_status(&state.pool, &tenant.id, &params.into()).await?;
        return Ok(Json(DeliveriesAnswer::ByStatus(page)));
    }
    let dossier_code = params
        .get("dossier_code")
        .cloned()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_field",
                "`dossier_code` is required",
            )
            .with_field("dossier_code")
        })?;
    // `status`, `after` and `limit` page a listing by state; a dossier's deliveries
    // come whole, so they would be silently ignored here.
    if let Some(other) = params.keys().find(|k| k.as_str() != "dossier_code") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("`{other}` does not apply to a dossier's deliveries (`dossier_code`)"),
        )
        .with_field(other.clone()));
    }
    if dossier_code.chars().count() > 50 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "a dossier code has at most 50 characters",
        )
        .with_field("dossier_code"));
    }
    let deliveries = deliveries::list_for_dossier(&state.pool, &tenant.id, &dossier_code).await?;
    let ids: Vec<String> = deliveries
        .iter()
        .map(|d| d.notification_id.clone())
        .collect();
    let mut views = deliveries::views_for(&state.pool, &tenant.id, &ids).await?;
    let deliveries = deliveries
        .into_iter()
        .map(|delivery| DeliveryWithHistory {
            receipts: views.remove(&delivery.notification_id).unwrap_or_default(),
            delivery,
        })
        .collect();
    Ok(Json(DeliveriesAnswer::ByDossier(DeliveriesPage {
        dossier_code,
        deliveries,
    })))
}
