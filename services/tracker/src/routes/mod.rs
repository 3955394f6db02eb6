//! The tracker's HTTP surface: the authorised dossier API and receipt QR codes
//! ([`api`]), the console's search and overview ([`admin`]), the public lookup page
//! ([`lookup`]) with its rating form ([`rating`]), the statistics ([`stats`]), and the
//! shared ops endpoints.

pub mod admin;
pub mod api;
pub mod lookup;
pub mod rating;
pub mod stats;

use crate::clock::Clock;
use axum::{
    middleware::from_fn_with_state,
    routing::{get, post},
    Router,
};
use deadpool_postgres::Pool;
use loa_platform::{
    http::{
        auth::throttle_failed_auth,
        ops_router,
        rate::{limit_rate, RateLimiter},
        AuthThrottle, Readiness,
    },
    LiveTenants, Secret,
};
use std::sync::Arc;

/// What every handler reads.
#[derive(Clone)]
pub struct AppState {
    /// The tracker's database.
    pub pool: Pool,
    /// Tenants, for admin tokens and display names (as the tenants file says now).
    pub tenants: LiveTenants,
    /// Base of lookup links.
    pub public_base_url: Arc<str>,
    /// Key of lookup tokens, and of the phone keys dossiers are searched by.
    pub lookup_secret: Secret,
    /// What "today" is for timeliness.
    pub clock: Clock,
}

/// The whole router: API, QR, lookup page (rate-limited per client address by
/// `lookup`), and `/healthz`, `/readyz`, `/metrics`; addresses that keep failing to
/// authenticate are slowed down.
pub fn router(state: AppState, readiness: Readiness, lookup: RateLimiter) -> Router {
    Router::new()
        .route("/v1/dossiers", get(admin::search_dossiers))
        .route("/v1/overview", get(admin::overview))
        .route(
            loa_platform::erasure::PATH,
            axum::routing::post(admin::erase_subject),
        )
        .route("/v1/dossiers/{code}", get(api::get_dossier))
        .route("/v1/dossiers/{code}/qr.svg", get(api::get_qr))
        .route(
            "/tra-cuu/{token}",
            get(lookup::lookup_page).route_layer(from_fn_with_state(lookup.clone(), limit_rate)),
        )
        .route(
            "/tra-cuu/{token}/ket-qua",
            get(lookup::download_result)
                .route_layer(from_fn_with_state(lookup.clone(), limit_rate)),
        )
        .route(
            "/tra-cuu/{token}/danh-gia",
            post(rating::submit_rating).route_layer(from_fn_with_state(lookup, limit_rate)),
        )
        .route("/v1/stats", get(stats::get_stats))
        .with_state(state)
        .merge(ops_router(readiness))
        .merge(loa_platform::http::openapi::openapi_router(
            &crate::openapi::document(),
        ))
        .fallback(loa_platform::http::fallback)
        .layer(from_fn_with_state(
            AuthThrottle::default(),
            throttle_failed_auth,
        ))
}
