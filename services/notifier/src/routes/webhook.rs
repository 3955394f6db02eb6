//! `POST /zalo/webhook`: authenticates the event ([`crate::zalo_webhooks::authenticate`]),
//! records and applies it ([`crate::zalo_webhooks::store`]) and answers within Zalo's
//! 2 s.

use crate::zalo_webhooks::{
    authenticate, event_label, store, Freshness, LookupLimit, Stored, KNOWN_EVENTS,
};
use axum::{body::Bytes, extract::State, http::HeaderMap, routing::post, Json, Router};
use chrono::Utc;
use deadpool_postgres::Pool;
use loa_platform::{http::ApiError, LiveTenants, Tenants};
use prometheus::{register_int_counter_vec, IntCounterVec};
use serde_json::{json, Value};
use std::{sync::LazyLock, time::Duration};

/// The longest the handler may take before answering 503 (Zalo's limit is 2 s).
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_millis(1_500);

static WEBHOOKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "loa_notifier_webhooks_total",
        "Zalo webhooks received, by tenant, event and outcome (accepted, duplicate, \
         bad_signature, stale, unknown_app, invalid, error).",
        &["tenant", "event", "outcome"]
    )
    .expect("metric registers once")
});

/// What the webhook handler needs.
#[derive(Clone)]
pub(crate) struct WebhookState {
    /// The notifier's database.
    pub pool: Pool,
    /// Tenants, for app ids and OA secret keys (as the tenants file says now).
    pub tenants: LiveTenants,
    /// How recent a webhook must be.
    pub freshness: Freshness,
    /// Each Zalo user's chat lookups per window.
    pub lookup_limit: LookupLimit,
}

/// `POST /zalo/webhook`.
pub(crate) fn router(state: WebhookState) -> Router {
    Router::new()
        .route("/zalo/webhook", post(receive))
        .with_state(state)
}

/// `POST /zalo/webhook`.
#[utoipa::path(post, path = "/zalo/webhook", tag = "zalo",
    params(("X-ZEvent-Signature" = String, Header, description = "`mac=` SHA-256 of app id, body, timestamp and the OA secret key")),
    request_body(content = Object, description = "A Zalo webhook event (`app_id`, `event_name`, `timestamp`, …)"),
    responses(
        (status = 200, body = Object, description = "Recorded (`{\"received\": true}`, with `\"duplicate\": true` for a redelivery)"),
        (status = 400, body = loa_platform::http::openapi::ErrorBody, description = "Not an event Loa can read; `field` names why"),
        (status = 401, body = loa_platform::http::openapi::ErrorBody, description = "Bad signature or stale timestamp"),
        (status = 403, body = loa_platform::http::openapi::ErrorBody, description = "An app id of no configured tenant"),
        (status = 503, body = loa_platform::http::openapi::ErrorBody, description = "Not recorded: Zalo redelivers",
            headers(("Retry-After" = u64, description = "Seconds"))),
    ))]
pub(crate) async fn receive(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let tenants = state.tenants.current();
    let (tenant, webhook) =
        match authenticate(&tenants, &headers, &body, Utc::now(), state.freshness) {
            Ok(ok) => ok,
            Err(refusal) => {
                count(&refusal.tenant, refusal.event, refusal.outcome);
                tracing::warn!(
                    tenant = %refusal.tenant,
                    event = refusal.event,
                    outcome = refusal.outcome,
                    reason = %refusal.error.message,
                    "Refused a Zalo webhook."
                );
                return Err(*refusal.error);
            }
        };
    let label = event_label(Some(&webhook.event_name));
    let stored = tokio::time::timeout(
        ANSWER_WITHIN,
        store(&state.pool, &tenant.id, &webhook, state.lookup_limit),
    )
    .await
    .unwrap_or_else(|_| {
        Err(anyhow::anyhow!(
            "recording the webhook took longer than {ANSWER_WITHIN:?}"
        ))
    });
    match stored {
        Ok(Stored::Accepted) => {
            count(&tenant.id, label, "accepted");
            tracing::debug!(tenant = %tenant.id, event = %webhook.event_name, "Accepted a Zalo webhook.");
            Ok(Json(json!({"received": true})))
        }
        Ok(Stored::Duplicate) => {
            count(&tenant.id, label, "duplicate");
            tracing::debug!(tenant = %tenant.id, event = %webhook.event_name, "Ignored a redelivered Zalo webhook.");
            Ok(Json(json!({"received": true, "duplicate": true})))
        }
        Err(e) => {
            count(&tenant.id, label, "error");
            tracing::error!(tenant = %tenant.id, event = %webhook.event_name, error.cause_chain = ?e, error.message = %e, "Failed to record a Zalo webhook.");
            Err(ApiError::unavailable(
                "the webhook could not be recorded",
                1,
            ))
        }
    }
}

/// Creates, at zero, each configured tenant's count of every known event accepted,
/// duplicated and failed, so the first one of each shows in `increase()`.
pub(crate) fn init_metrics(tenants: &Tenants) {
    for tenant in tenants.all() {
        for event in KNOWN_EVENTS {
            for outcome in ["accepted", "duplicate", "error"] {
                WEBHOOKS.with_label_values(&[&tenant.id, event, outcome]);
            }
        }
        crate::zalo_webhooks::lookups::init_metrics(&tenant.id);
        crate::zalo_webhooks::texts::init_metrics(&tenant.id);
    }
}

fn count(tenant: &str, event: &str, outcome: &str) {
    WEBHOOKS.with_label_values(&[tenant, event, outcome]).inc();
}
