//! HTTP plumbing shared by every service: the JSON error body, a JSON extractor whose
//! refusals use it, health / readiness / metrics endpoints, and (in its modules) who a
//! request is and serving it.
//!
//! # Layout
//!
//! - [`auth`]: bearer tokens, the tenant of an admin or source token, the brake on
//!   failed authentications.
//! - [`client`]: the client's address, through a trusted proxy only.
//! - [`serve`](mod@serve): listening, and serving with the limits against hostile clients.
//! - [`rate`]: a per-address request rate limit (the public lookup page's).

pub mod auth;
pub mod client;
pub mod openapi;
pub mod rate;
pub mod serve;

pub use auth::{admin_tenant, bearer_token, source_tenant, AuthThrottle, TENANT_HEADER};
pub use client::ClientAddr;
pub use serve::{listen, serve, HttpSettings, ListenError};

use axum::{
    extract::{rejection::JsonRejection, FromRequest, Request},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use futures_util::future::BoxFuture;
use loa_contracts::ValidationError;
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

/// An error answered to an HTTP client: `{"error": {"code", "message", "field"}}`.
/// 5xx bodies are opaque; their cause is logged once, here.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// The offending field, when there is one.
    pub field: Option<String>,
    /// Seconds after which a retry may succeed (503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A generic error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// Names the offending field.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 401: no or unknown credentials.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid `Authorization: Bearer <token>` header is required",
        )
        .with_field("Authorization")
    }

    /// 403: known credentials, not for this resource.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(message: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        e.retry_after = Some(retry_after);
        e
    }

    /// 500: logs the cause, answers nothing about it.
    pub fn internal(cause: &anyhow::Error) -> Self {
        tracing::error!(error.cause_chain = ?cause, error.message = %cause, "Request failed.");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    /// The JSON body (also used for per-item batch results).
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.code, "message": self.message, "field": self.field}})
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: e.code,
            message: e.message,
            field: Some(e.field),
            retry_after: None,
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::internal(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A JSON body extractor whose refusals are [`ApiError`]s: 415 without a JSON content
/// type, 413 over the body limit, 400 for malformed JSON, 422 for a wrong shape.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    if serve::is_body_timeout(&rejection) {
        return serve::body_timeout_error();
    }
    let status = rejection.status();
    let (code, field) = match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", "Content-Type"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "body"),
        StatusCode::UNPROCESSABLE_ENTITY => ("invalid_body", "body"),
        _ => ("invalid_json", "body"),
    };
    let status = if status.is_client_error() {
        status
    } else {
        StatusCode::BAD_REQUEST
    };
    ApiError::new(status, code, rejection.body_text()).with_field(field)
}

type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The named checks `/readyz` runs.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Check)>,
}

impl Readiness {
    /// No checks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check.
    pub fn check<F, Fut>(mut self, name: &'static str, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        self.checks.push((name, Arc::new(move || Box::pin(f()))));
        self
    }

    /// Postgres answers a query.
    pub fn postgres(self, pool: deadpool_postgres::Pool) -> Self {
        self.check("postgres", move || {
            let pool = pool.clone();
            async move { crate::db::ping(&pool).await.map_err(|e| format!("{e:#}")) }
        })
    }

    /// A broker connection is up.
    pub fn broker(self, status: crate::amqp::BrokerStatus) -> Self {
        self.check("rabbitmq", move || {
            let up = status.is_connected();
            async move {
                if up {
                    Ok(())
                } else {
                    Err("not connected".to_owned())
                }
            }
        })
    }

    async fn run(&self) -> (bool, serde_json::Value) {
        let mut all_ok = true;
        let mut report = serde_json::Map::new();
        for (name, check) in &self.checks {
            let result = tokio::time::timeout(std::time::Duration::from_secs(3), check()).await;
            let value = match result {
                Ok(Ok(())) => json!("ok"),
                Ok(Err(e)) => {
                    all_ok = false;
                    json!(e)
                }
                Err(_) => {
                    all_ok = false;
                    json!("timed out")
                }
            };
            report.insert((*name).to_owned(), value);
        }
        (all_ok, serde_json::Value::Object(report))
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

/// `/healthz` (alive), `/readyz` (dependencies reachable) and `/metrics` (Prometheus).
pub fn ops_router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(Health { status: "ok" }) }))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    let (ok, report) = readiness.run().await;
                    let status = if ok {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    (status, Json(json!({"ready": ok, "checks": report})))
                }
            }),
        )
        .route("/metrics", get(metrics))
}

/// `/metrics` alone, for the listener of its own that `http.metrics_bind` asks for.
pub fn metrics_router() -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(fallback)
}

async fn metrics() -> Response {
    let families = prometheus::gather();
    let mut out = String::new();
    match prometheus::TextEncoder::new().encode_utf8(&families, &mut out) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(e) => ApiError::internal(&anyhow::Error::new(e)).into_response(),
    }
}

/// A JSON 404 for unknown routes.
pub async fn fallback() -> ApiError {
    ApiError::not_found("no such endpoint")
}
