//! Pausing a tenant whose sending needs an operator, and resuming it.
//!
//! Some Zalo answers cannot pass by themselves: the ZNS balance is empty (`-115`), the
//! Zalo Cloud Account is out of money (`-321`), the OA lost its ZNS permission
//! (`-135`), the refresh token was refused (a human must re-authorise the OA), …
//! ([`crate::zalo::ErrorClass::NeedsOperator`]). Retrying those only burns attempts and
//! dead-letters good messages, so the first one pauses the tenant:
//!
//! - the pause is a row in `notifier.tenant_pauses`, read by the gate in front of every
//!   batch on every replica (`notifier.take_send_slots`), so all replicas stop sending
//!   for that tenant at once;
//! - the tenant's requests are then `held` in `notifier.deliveries` with their body and
//!   acked: nothing retries hot, nothing fails;
//! - `loa_notifier_tenant_paused{tenant}` is 1 (every replica refreshes it from the
//!   table), which is what the alert fires on;
//! - `POST /v1/pause/resume`, with one of the tenant's admin tokens, clears the pause
//!   and makes every held request due now; the scheduler ([`crate::engine::scheduler`])
//!   republishes them. `GET /v1/pause` shows the state.

use crate::metrics;
use anyhow::Context;
use axum::{extract::State, http::HeaderMap, Json};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use loa_platform::{
    http::{admin_tenant, ApiError},
    LiveTenants, Tenants,
};
use serde::Serialize;

/// Pauses a tenant's sending (idempotent: the first reason stays until resumed).
pub(crate) async fn pause(
    pool: &Pool,
    tenant: &str,
    error_code: Option<i64>,
    reason: &str,
) -> anyhow::Result<()> {
    let code = error_code.and_then(|c| i32::try_from(c).ok());
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let changed = client
        .execute(
            "INSERT INTO notifier.tenant_pauses AS p (tenant, paused, error_code, reason)
             VALUES ($1, true, $2, $3)
             ON CONFLICT (tenant) DO UPDATE
                SET paused = true, error_code = EXCLUDED.error_code, reason = EXCLUDED.reason,
                    paused_at = now(), resumed_at = NULL, updated_at = now()
              WHERE NOT p.paused",
            &[&tenant, &code, &reason],
        )
        .await
        .context("Failed to pause the tenant")?;
    metrics::tenant_paused(tenant, true);
    if changed > 0 {
        tracing::error!(
            tenant,
            error.code = ?error_code,
            reason,
            "Paused the tenant's sending until an operator resumes it."
        );
    }
    Ok(())
}

/// Clears a tenant's pause and makes its held requests due now. Returns how many
/// requests were released.
pub(crate) async fn resume(pool: &Pool, tenant: &str) -> anyhow::Result<u64> {
    let mut client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let tx = client
        .transaction()
        .await
        .context("Failed to begin a transaction")?;
    tx.execute(
        "UPDATE notifier.tenant_pauses
            SET paused = false, resumed_at = now(), updated_at = now()
          WHERE tenant = $1 AND paused",
        &[&tenant],
    )
    .await
    .context("Failed to clear the pause")?;
    let released = tx
        .execute(
            "UPDATE notifier.deliveries
                SET status = 'deferred', not_before = NULL, updated_at = now()
              WHERE tenant = $1 AND status = 'held'",
            &[&tenant],
        )
        .await
        .context("Failed to release held deliveries")?;
    tx.commit().await.context("Failed to commit the resume")?;
    metrics::tenant_paused(tenant, false);
    tracing::info!(tenant, released, "Resumed the tenant's sending.");
    Ok(released)
}

/// A tenant's pause as `GET /v1/pause` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct PauseView {
    /// The tenant.
    pub tenant: String,
    /// Whether its sending is paused.
    pub paused: bool,
    /// Zalo's code that paused it.
    pub error_code: Option<i32>,
    /// Why (Zalo's message or the refresh failure).
    pub reason: Option<String>,
    /// Since when.
    pub paused_at: Option<DateTime<Utc>>,
    /// When it was last resumed.
    pub resumed_at: Option<DateTime<Utc>>,
    /// Requests held until the resume.
    pub held: i64,
}

/// The pause state of one tenant.
pub(crate) async fn status(pool: &Pool, tenant: &str) -> anyhow::Result<PauseView> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let row = client
        .query_one(
            "SELECT p.paused, p.error_code, p.reason, p.paused_at, p.resumed_at,
                    (SELECT count(*) FROM notifier.deliveries d
                      WHERE d.tenant = $1 AND d.status = 'held')
               FROM (SELECT 1) one
               LEFT JOIN notifier.tenant_pauses p ON p.tenant = $1",
            &[&tenant],
        )
        .await
        .context("Failed to read the pause")?;
    Ok(PauseView {
        tenant: tenant.to_owned(),
        paused: row.get::<_, Option<bool>>(0).unwrap_or(false),
        error_code: row.get(1),
        reason: row.get(2),
        paused_at: row.get(3),
        resumed_at: row.get(4),
        held: row.get(5),
    })
}

/// Sets `loa_notifier_tenant_paused` for every configured tenant from the table, so
/// each replica reports the pause another replica set.
pub(crate) async fn refresh_gauge(pool: &Pool, tenants: &Tenants) -> anyhow::Result<()> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let rows = client
        .query(
            "SELECT tenant FROM notifier.tenant_pauses WHERE paused",
            &[],
        )
        .await
        .context("Failed to read the pauses")?;
    let paused: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    for t in tenants.all() {
        metrics::tenant_paused(&t.id, paused.contains(&t.id));
    }
    Ok(())
}

/// What the pause endpoints need.
#[derive(Clone)]
pub(crate) struct PauseState {
    /// The notifier's database.
    pub pool: Pool,
    /// Tenants, for admin tokens (as the tenants file says now).
    pub tenants: LiveTenants,
}

/// Answer of `POST /v1/pause/resume`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Resumed {
    /// The tenant (from the admin token).
    pub tenant: String,
    /// Always true: resuming a tenant that is not paused is a no-op.
    pub resumed: bool,
    /// Held requests made due again.
    pub released: u64,
}

/// `POST /v1/pause/resume`: the admin of the tenant whose token is presented resumes
/// its sending.
#[utoipa::path(post, path = "/v1/pause/resume", tag = "admin", security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    responses((status = 200, body = Resumed), loa_platform::http::openapi::AdminRefusals))]
pub(crate) async fn resume_handler(
    State(state): State<PauseState>,
    headers: HeaderMap,
) -> Result<Json<Resumed>, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?;
    let released = resume(&state.pool, &tenant.id).await?;
    Ok(Json(Resumed {
        tenant: tenant.id.clone(),
        resumed: true,
        released,
    }))
}

/// `GET /v1/pause`: the pause state of the token's tenant.
#[utoipa::path(get, path = "/v1/pause", tag = "admin", security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    responses((status = 200, body = PauseView), loa_platform::http::openapi::AdminRefusals))]
pub(crate) async fn status_handler(
    State(state): State<PauseState>,
    headers: HeaderMap,
) -> Result<Json<PauseView>, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?;
    Ok(Json(status(&state.pool, &tenant.id).await?))
}

/// The pause routes, to merge into the API router.
pub(crate) fn router(state: PauseState) -> axum::Router {
    axum::Router::new()
        .route("/v1/pause", axum::routing::get(status_handler))
        .route("/v1/pause/resume", axum::routing::post(resume_handler))
        .with_state(state)
}
