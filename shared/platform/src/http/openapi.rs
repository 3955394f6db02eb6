//! The services' OpenAPI documents: the pieces every service shares (the error body,
//! the refusals of authentication and of JSON bodies, the security schemes, the ops
//! endpoints) and the assembly of a service's document, served at `/openapi.json` and
//! committed under `docs/api/`.
//!
//! A service documents an endpoint with `#[utoipa::path(...)]` on its handler and one
//! line naming the handler in its `#[openapi(paths(...))]` list; response types derive
//! [`utoipa::ToSchema`]. The event types' schemas come from `schemars`, as the committed
//! event schema does ([`document`] merges them), so there is one source for them.

use axum::{
    http::{header, StatusCode},
    response::IntoResponse,
    routing::get,
    Router,
};
use serde_json::{Map, Value};
use std::sync::Arc;
use utoipa::{
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    IntoResponses, Modify, OpenApi, ToSchema,
};

/// The body of every refusal: `{"error": {"code", "message", "field"}}`
/// ([`super::ApiError`]).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// What went wrong.
    error: ErrorDetail,
}

/// One refusal's details.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`unauthorized`, `invalid_phone`, …): program
    /// against it.
    code: String,
    /// For people; may change.
    message: String,
    /// The offending field, header or JSON path (`events[3].applicant.phone`), if any.
    field: Option<String>,
}

/// How an admin API refuses credentials: a tenant admin's token, or the console's
/// service token with `X-Loa-Tenant`.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum AdminRefusals {
    /// The service credential without `X-Loa-Tenant` naming a configured tenant
    /// (`invalid_header`).
    #[response(status = 400)]
    NoTenant(ErrorBody),
    /// No bearer token, or an unknown one (`unauthorized`).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// A source's token, which only sends events (`wrong_token_kind`).
    #[response(status = 403)]
    WrongKind(ErrorBody),
    /// Too many failed authentications from this address
    /// (`too_many_failed_authentications`).
    #[response(status = 429, headers(("Retry-After" = u64, description = "Seconds to wait")))]
    Throttled(ErrorBody),
}

/// How intake refuses a source's credentials.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum SourceRefusals {
    /// No bearer token, or an unknown one (`unauthorized`).
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// A tenant admin's token (`wrong_token_kind`), or an event of another tenant than
    /// the source's (`forbidden`, field `tenant`).
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// How a JSON body is refused before it is read ([`super::JsonBody`]).
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum JsonRefusals {
    /// Not JSON (`invalid_json`).
    #[response(status = 400)]
    Malformed(ErrorBody),
    /// The body arrived too slowly (`body_timeout`).
    #[response(status = 408)]
    Slow(ErrorBody),
    /// Over the size limit (`payload_too_large`).
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Not `application/json` (`unsupported_media_type`).
    #[response(status = 415)]
    NotJson(ErrorBody),
    /// JSON of the wrong shape, or a value out of its rules; `field` names it.
    #[response(status = 422)]
    Invalid(ErrorBody),
}

/// The security schemes the documents name: `source_token` (an upstream source's
/// bearer token, intake), `admin_token` (a tenant admin's bearer token), and
/// `service_token` + `tenant` (the console's credential and the tenant it acts for).
pub struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(what))
                    .build(),
            )
        };
        components.add_security_scheme(
            "source_token",
            bearer("An upstream source's token (the tenants file's `[[tenants.sources]]`)."),
        );
        components.add_security_scheme(
            "admin_token",
            bearer("A tenant admin's token (the tenants file's `admin_tokens`)."),
        );
        components.add_security_scheme(
            "service_token",
            bearer("The console's service credential; needs `X-Loa-Tenant`."),
        );
        components.add_security_scheme(
            "tenant",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                super::TENANT_HEADER,
                "The tenant a service-credential request acts for.",
            ))),
        );
    }
}

/// `/healthz`'s answer.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Health {
    /// Always `ok`.
    status: String,
}

/// `/readyz`'s answer.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Ready {
    /// Every check passed.
    ready: bool,
    /// Each dependency's check: `ok`, or why it failed.
    checks: std::collections::BTreeMap<String, String>,
}

/// Alive.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
#[allow(dead_code)]
fn healthz() {}

/// Ready: PostgreSQL and RabbitMQ answer.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, body = Ready, description = "Ready"),
    (status = 503, body = Ready, description = "A dependency does not answer"),
))]
#[allow(dead_code)]
fn readyz() {}

/// Prometheus text exposition (the catalogue is `docs/metrics.md`).
#[utoipa::path(get, path = "/metrics", tag = "ops", responses(
    (status = 200, body = String, content_type = "text/plain", description = "Prometheus text format 0.0.4"),
))]
#[allow(dead_code)]
fn metrics() {}

#[derive(OpenApi)]
#[openapi(paths(healthz, readyz, metrics))]
struct OpsApi;

/// A service's whole document as JSON: its own paths, the ops endpoints every service
/// serves, the security schemes, and `schemas` (JSON Schemas generated elsewhere, by
/// `schemars`, referred to as `#/components/schemas/<name>`) added to the components.
pub fn document(mut api: utoipa::openapi::OpenApi, schemas: Map<String, Value>) -> Value {
    api.merge(OpsApi::openapi());
    SecuritySchemes.modify(&mut api);
    let mut doc = serde_json::to_value(&api).expect("an OpenAPI document serialises");
    // Every body Loa reads is required (utoipa leaves a referenced one optional).
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for operation in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in operation.values_mut() {
                if let Some(body) = op.get_mut("requestBody").and_then(Value::as_object_mut) {
                    body.insert("required".to_owned(), Value::Bool(true));
                }
            }
        }
    }
    let components = doc
        .as_object_mut()
        .expect("a document is an object")
        .entry("components")
        .or_insert_with(|| Value::Object(Map::new()));
    let all = components
        .as_object_mut()
        .expect("components is an object")
        .entry("schemas")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .expect("schemas is an object");
    for (name, schema) in schemas {
        all.insert(name, schema);
    }
    doc
}

/// The document as committed under `docs/api/`: pretty JSON with a final newline.
pub fn pretty(doc: &Value) -> String {
    let mut text = serde_json::to_string_pretty(doc).expect("JSON serialises");
    text.push('\n');
    text
}

/// `GET /openapi.json`, serving `doc` (built once, at start-up).
pub fn openapi_router(doc: &Value) -> Router {
    let body: Arc<str> = pretty(doc).into();
    Router::new().route(
        "/openapi.json",
        get(move || {
            let body = body.clone();
            async move {
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    body.to_string(),
                )
                    .into_response()
            }
        }),
    )
}
