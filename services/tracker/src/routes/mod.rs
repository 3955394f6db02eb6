//! The tracker's HTTP surface: the authorised dossier API and receipt QR codes
//! ([`api`]), the public lookup page ([`lookup`]), and the shared ops endpoints.

pub mod api;
pub mod lookup;

use axum::{routing::get, Router};
use deadpool_postgres::Pool;
use loa_platform::{
    http::{ops_router, Readiness},
    Tenants,
};
use std::sync::Arc;

/// What every handler reads.
#[derive(Clone)]
pub struct AppState {
    /// The tracker's database.
    pub pool: Pool,
    /// Tenants, for admin tokens and display names.
    pub tenants: Tenants,
    /// Base of lookup links.
    pub public_base_url: Arc<str>,
}

/// The whole router: API, QR, lookup page, and `/healthz`, `/readyz`, `/metrics`.
pub fn router(state: AppState, readiness: Readiness) -> Router {
    Router::new()
        .route("/v1/dossiers/{code}", get(api::get_dossier))
        .route("/v1/dossiers/{code}/qr.svg", get(api::get_qr))
        .route("/tra-cuu/{token}", get(lookup::lookup_page))
        .with_state(state)
        .merge(ops_router(readiness))
        .fallback(loa_platform::http::fallback)
}
