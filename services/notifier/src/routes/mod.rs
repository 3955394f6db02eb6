//! The notifier's HTTP API (besides `/healthz`, `/readyz`, `/metrics`), one router:
//!
//! - [`deliveries`]: `GET /v1/deliveries`;
//! - [`crate::limits::pause`]: `GET /v1/pause`, `POST /v1/pause/resume`;
//! - [`admin`]: the console's API (overview, deliveries by state, resend, cancel,
//!   citizen messages);
//! - [`crate::dead_letters`]: `GET /v1/dead-letters`, `POST /v1/dead-letters/replay`;
//! - [`crate::broadcasts::subscribers_api`]: `POST /v1/subscribers/import`,
//!   `POST /v1/subscribers/opt-out`;
//! - [`crate::broadcasts::api`]: `/v1/broadcasts` (create, list, show, pause, resume,
//!   cancel);
//! - [`crate::personal_data::erasure`]: `POST /v1/subjects/erase`;
//! - [`webhook`]: `POST /zalo/webhook`.
//!
//! Every route but the webhook needs a tenant admin token (or the console's service
//! credential with `X-Loa-Tenant`) and sees only that tenant's rows: another tenant's
//! are not found, never forbidden. An address that keeps failing to authenticate is
//! held back ([`AuthThrottle`]).

pub(crate) mod admin;
pub(crate) mod deliveries;
pub(crate) mod query;
pub(crate) mod webhook;

pub(crate) use webhook::init_metrics;

use crate::{dead_letters::DeadLetters, limits::pause, zalo_webhooks::Freshness};
use axum::Router;
use deadpool_postgres::Pool;
use loa_platform::{
    amqp::Publisher,
    http::{auth::throttle_failed_auth, AuthThrottle},
    LiveTenants,
};
use std::sync::Arc;

/// What the API needs.
pub(crate) struct Api {
    /// The notifier's database.
    pub(crate) pool: Pool,
    /// Tenants: admin tokens, app ids and secrets, limits (as the tenants file says
    /// now).
    pub(crate) tenants: LiveTenants,
    /// How recent a webhook must be.
    pub(crate) freshness: Freshness,
    /// Each Zalo user's chat lookups per window.
    pub(crate) lookup_limit: crate::zalo_webhooks::LookupLimit,
    /// Publishes what admins send again (resent deliveries).
    pub(crate) publisher: Arc<Publisher>,
    /// The dead letters' store and replay.
    pub(crate) dead_letters: DeadLetters,
    /// Seals Zalo tokens at rest.
    pub(crate) keyring: crate::zalo::sealing::Keyring,
    /// The notifier's wall clock (broadcast schedules).
    pub(crate) clock: crate::clock::Clock,
    /// Zalo, for the calls an admin's request makes itself (Article broadcasts).
    pub(crate) zalo: crate::zalo::ZaloClient,
    /// Access tokens for those calls.
    pub(crate) tokens: Arc<crate::zalo::TokenManager>,
}

/// Every API route.
pub(crate) fn router(api: Api) -> Router {
    Router::new()
        .merge(deliveries::router(deliveries::AppState {
            pool: api.pool.clone(),
            tenants: api.tenants.clone(),
        }))
        .merge(pause::router(pause::PauseState {
            pool: api.pool.clone(),
            tenants: api.tenants.clone(),
        }))
        .merge(admin::router(admin::AdminState {
            pool: api.pool.clone(),
            tenants: api.tenants.clone(),
            publisher: api.publisher,
            keyring: api.keyring,
        }))
        .merge(crate::broadcasts::subscribers_api::router(
            crate::broadcasts::subscribers_api::SubscribersState {
                pool: api.pool.clone(),
                tenants: api.tenants.clone(),
            },
        ))
        .merge(crate::broadcasts::subscribers_search::router(
            crate::broadcasts::subscribers_api::SubscribersState {
                pool: api.pool.clone(),
                tenants: api.tenants.clone(),
            },
        ))
        .merge(crate::broadcasts::api::router(
            crate::broadcasts::api::BroadcastsState {
                pool: api.pool.clone(),
                tenants: api.tenants.clone(),
                clock: api.clock.clone(),
                zalo: api.zalo,
                tokens: api.tokens,
            },
        ))
        .merge(crate::personal_data::erasure::router(
            crate::personal_data::erasure::ErasureState {
                pool: api.pool.clone(),
                tenants: api.tenants.clone(),
                clock: api.clock.clone(),
            },
        ))
        .merge(api.dead_letters.router())
        // Admin routes only: Zalo's webhook servers post for every tenant from the
        // same addresses, so one tenant's wrong secret must not hold back another's.
        .layer(axum::middleware::from_fn_with_state(
            AuthThrottle::default(),
            throttle_failed_auth,
        ))
        .merge(webhook::router(webhook::WebhookState {
            pool: api.pool,
            tenants: api.tenants,
            freshness: api.freshness,
            lookup_limit: api.lookup_limit,
        }))
}
