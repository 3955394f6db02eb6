//! HTTP plumbing shared by every service: the JSON error body, a JSON extractor whose
//! refusals use it, bearer tokens, health / readiness / metrics endpoints, and serving
//! with graceful shutdown.

use axum::{
    extract::{rejection::JsonRejection, FromRequest, Request},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use futures_util::future::BoxFuture;
use loa_contracts::ValidationError;
use serde::Serialize;
use serde_json::json;
use std::{net::SocketAddr, sync::Arc};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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

/// Why a service could not listen on its address, saying which setting moves it: the
/// message is all an operator sees (`loa run` prints it as one line).
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another process listens there already.
    #[error(
        "{addr} is already in use by another process; stop it, or move {service} with \
         {env}=<host:port> (for example {env}={example})"
    )]
    Taken {
        /// The address asked for.
        addr: SocketAddr,
        /// The service (`intake`).
        service: String,
        /// The environment variable of the setting (`LOA_INTAKE__BIND`).
        env: String,
        /// Another address to suggest.
        example: SocketAddr,
    },
    /// Anything else: a foreign address, a privileged port.
    #[error("cannot listen on {addr} ({source}); set {env}=<host:port>")]
    Other {
        /// The address asked for.
        addr: SocketAddr,
        /// The environment variable of the setting.
        env: String,
        /// What the system said.
        source: std::io::Error,
    },
}

/// Binds a service's HTTP listener on `addr`, the value of the setting `key`
/// (`intake.bind`). A taken port is a [`ListenError`] naming `LOA_INTAKE__BIND`.
pub async fn listen(key: &str, addr: SocketAddr) -> Result<TcpListener, ListenError> {
    let (service, field) = key.split_once('.').unwrap_or((key, ""));
    let env = if field.is_empty() {
        format!("LOA_{}", service.to_uppercase())
    } else {
        format!("LOA_{}__{}", service.to_uppercase(), field.to_uppercase())
    };
    TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            let mut example = addr;
            example.set_port(addr.port().checked_add(10_000).unwrap_or(0));
            ListenError::Taken {
                addr,
                service: service.to_owned(),
                env,
                example,
            }
        } else {
            ListenError::Other { addr, env, source }
        }
    })
}

/// The bearer token of a request, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The header naming the tenant a service-credential request acts for.
pub const TENANT_HEADER: &str = "x-loa-tenant";

/// The tenant an admin API request acts for, or 401.
///
/// Two credentials are accepted: a tenant admin's bearer token (the tenant is the
/// token's), or the console's service token ([`Tenants::service_token`]) with the
/// tenant named in `X-Loa-Tenant`. The service token may act for any configured
/// tenant: only the console holds it, and the console names the tenant of the
/// signed-in account. An unknown or missing tenant header is a 400 naming it.
///
/// The tenant is returned as a copy, so a handler can keep it while the tenants file
/// is reloaded (pass `&live.current()`).
///
/// [`Tenants::service_token`]: crate::Tenants::service_token
pub fn admin_tenant(
    tenants: &crate::Tenants,
    headers: &HeaderMap,
) -> Result<crate::TenantSettings, ApiError> {
    let token = bearer_token(headers).ok_or_else(ApiError::unauthorized)?;
    if tenants.service_token().is_some_and(|s| s.matches(token)) {
        let named = headers
            .get(TENANT_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .unwrap_or_default();
        return tenants.get(named).cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_header",
                "the service credential needs `X-Loa-Tenant` naming a configured tenant",
            )
            .with_field("X-Loa-Tenant")
        });
    }
    tenants
        .tenant_by_admin_token(token)
        .cloned()
        .ok_or_else(ApiError::unauthorized)
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

/// Serves `router` on `listener` until `cancel` fires, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{tenants::demo_tenant, Secret, Tenants};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn tenants() -> Tenants {
        let demo = demo_tenant("http://127.0.0.1:1");
        let mut other = demo.clone();
        other.id = "other".into();
        other.admin_tokens = vec![Secret::new("other-admin")];
        Tenants::new(vec![demo, other])
            .unwrap()
            .with_service_token(Secret::new("s".repeat(40)))
    }

    #[test]
    fn the_service_credential_acts_for_the_tenant_its_header_names() {
        let tenants = tenants();
        let service = format!("Bearer {}", "s".repeat(40));
        let as_other = headers(&[("authorization", &service), (TENANT_HEADER, "other")]);
        assert_eq!(admin_tenant(&tenants, &as_other).unwrap().id, "other");
        let unnamed = headers(&[("authorization", &service)]);
        let e = admin_tenant(&tenants, &unnamed).unwrap_err();
        assert_eq!(
            (e.status, e.field.as_deref()),
            (StatusCode::BAD_REQUEST, Some("X-Loa-Tenant"))
        );
        let unknown = headers(&[("authorization", &service), (TENANT_HEADER, "nowhere")]);
        assert_eq!(
            admin_tenant(&tenants, &unknown).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn a_tenant_admin_token_ignores_the_tenant_header() {
        let tenants = tenants();
        let h = headers(&[
            ("authorization", "Bearer demo-admin"),
            (TENANT_HEADER, "other"),
        ]);
        assert_eq!(admin_tenant(&tenants, &h).unwrap().id, "demo");
        let wrong = headers(&[("authorization", "Bearer nope"), (TENANT_HEADER, "other")]);
        assert_eq!(
            admin_tenant(&tenants, &wrong).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
        let without_service = Tenants::new(vec![demo_tenant("http://x")]).unwrap();
        let service = format!("Bearer {}", "s".repeat(40));
        let h = headers(&[("authorization", &service), (TENANT_HEADER, "demo")]);
        assert_eq!(
            admin_tenant(&without_service, &h).unwrap_err().status,
            StatusCode::UNAUTHORIZED
        );
    }
}
