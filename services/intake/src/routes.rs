//! `POST /v1/events` and `POST /v1/events/batch`.

use crate::{metrics, publish, rules::EventRules};
use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};
use loa_contracts::{DossierEvent, ValidationError};
use loa_platform::http::openapi::{ErrorBody, JsonRefusals, SourceRefusals};
use loa_platform::{
    amqp::Publisher,
    http::{source_tenant, ApiError, JsonBody},
    telemetry, LiveTenants,
};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use tracing::Instrument;
use utoipa::ToSchema;

/// `202` to `POST /v1/events`: RabbitMQ has the event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventAccepted {
    /// The accepted event's id.
    pub event_id: String,
}

/// The answer to `POST /v1/events/batch`: a result per item, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAnswer {
    /// Items accepted (RabbitMQ has them).
    pub accepted: usize,
    /// Items refused.
    pub rejected: usize,
    /// One result per item of the request, in its order.
    pub results: Vec<ItemResult>,
}

/// One batch item's result.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemResult {
    /// The item's position in the request, from 0.
    pub index: usize,
    /// `202` accepted, else the status a lone `POST /v1/events` would have had.
    pub status: u16,
    /// The item's `event_id`, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Why it was refused; `field` is prefixed `events[<index>].`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
}

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    /// Tenants and their source credentials, as the tenants file says now.
    pub tenants: LiveTenants,
    /// The confirming publisher.
    pub publisher: Arc<Publisher>,
    /// Most events per batch.
    pub max_batch: usize,
    /// What every event is checked against.
    pub rules: EventRules,
    /// Most events per message on `loa.events` ([`crate::publish`]).
    pub pack_events: usize,
}

/// The tenant a request's bearer token belongs to (an admin's token is told it is the
/// wrong kind).
fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let (tenant, _source) = source_tenant(&state.tenants.current(), headers)?;
    Ok(tenant.id)
}

/// Validates one event as of `now` and checks that the source may publish for its
/// tenant.
fn accept(
    value: &Value,
    tenant: &str,
    rules: &EventRules,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<DossierEvent, ApiError> {
    let max_bytes = rules.max_event_bytes;
    if json_len(value) > max_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("an event may be at most {max_bytes} bytes"),
        )
        .with_field("body"));
    }
    let event = rules.parse(value, now)?;
    if event.tenant != tenant {
        return Err(
            ApiError::forbidden("this source may only publish events for its own tenant")
                .with_field("tenant"),
        );
    }
    Ok(event)
}

/// The length of `value` serialised compactly, counted without building the bytes.
fn json_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

/// Middleware of the event routes when traces are exported: the request is an
/// `intake.request` span, the child of the client's `traceparent` when it sends a
/// valid one, and the handler sees the span's own `traceparent` in its place, so the
/// events it publishes continue this span.
pub async fn trace_request(mut request: axum::extract::Request, next: Next) -> Response {
    let span = tracing::info_span!(
        parent: None,
        "intake.request",
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = %request.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    telemetry::set_remote_parent(&span, traceparent(request.headers()));
    if let Some(own) = telemetry::traceparent_of(&span).and_then(|t| HeaderValue::from_str(&t).ok())
    {
        request.headers_mut().insert("traceparent", own);
    }
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}

fn traceparent(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| publish::valid_traceparent(v))
}

fn unavailable(e: &loa_platform::amqp::PublishError) -> ApiError {
    tracing::warn!(error.message = %e, "RabbitMQ did not confirm; asking the client to retry.");
    ApiError::unavailable("the event could not be stored; retry later", 5)
}

/// `POST /v1/events`: one event. `202 {"event_id"}` once RabbitMQ confirmed it.
#[utoipa::path(post, path = "/v1/events", tag = "events",
    security(("source_token" = [])),
    request_body(content = ref("#/components/schemas/DossierEvent"), description = "One dossier event"),
    responses(
        (status = 202, body = EventAccepted, description = "RabbitMQ confirmed the event"),
        (status = 503, body = ErrorBody, description = "Not stored: retry after `Retry-After`",
            headers(("Retry-After" = u64, description = "Seconds"))),
        SourceRefusals, JsonRefusals,
    ))]
pub async fn post_event(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let tenant = authenticate(&state, &headers)
        .inspect_err(|_| metrics::events("http", "unauthorized", 1))?;
    let event = accept(&body, &tenant, &state.rules, chrono::Utc::now()).inspect_err(|e| {
        metrics::events(
            "http",
            if e.status == StatusCode::FORBIDDEN {
                "forbidden"
            } else {
                "invalid"
            },
            1,
        )
    })?;
    let event_id = event.event_id.clone();
    publish::publish_events(&state.publisher, vec![event], traceparent(&headers), 1)
        .await
        .map_err(|e| {
            metrics::events("http", "unavailable", 1);
            unavailable(&e)
        })?;
    metrics::events("http", "accepted", 1);
    Ok((StatusCode::ACCEPTED, Json(EventAccepted { event_id })).into_response())
}

/// `POST /v1/events/batch`: up to `max_batch` events as `{"events": [...]}` (or a bare
/// array). Valid events are published together; the answer lists a result per item in
/// order. `202` when every item was accepted, `207` when some were refused.
#[utoipa::path(post, path = "/v1/events/batch", tag = "events",
    security(("source_token" = [])),
    request_body(content = ref("#/components/schemas/DossierEventBatch"), description = "Up to `intake.max_batch` events"),
    responses(
        (status = 202, body = BatchAnswer, description = "Every item was accepted"),
        (status = 207, body = BatchAnswer, description = "Some items were refused; the others are accepted"),
        (status = 503, body = ErrorBody, description = "Nothing is known to be stored: resend the batch after `Retry-After`",
            headers(("Retry-After" = u64, description = "Seconds"))),
        SourceRefusals, JsonRefusals,
    ))]
pub async fn post_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let tenant = authenticate(&state, &headers)
        .inspect_err(|_| metrics::events("http", "unauthorized", 1))?;
    let items = match &body {
        Value::Array(items) => items,
        Value::Object(obj) => obj.get("events").and_then(Value::as_array).ok_or_else(|| {
            ApiError::from(ValidationError::new(
                "events",
                "invalid_type",
                "`events` must be an array",
            ))
        })?,
        _ => {
            return Err(ValidationError::new(
                "events",
                "invalid_type",
                "expected {\"events\": [...]}",
            )
            .into());
        }
    };
    if items.is_empty() {
        return Err(ValidationError::new(
            "events",
            "empty_batch",
            "a batch needs at least one event",
        )
        .into());
    }
    if items.len() > state.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("a batch may hold at most {} events", state.max_batch),
        )
        .with_field("events"));
    }

    let mut accepted = Vec::with_capacity(items.len());
    let mut results = Vec::with_capacity(items.len());
    let now = chrono::Utc::now();
    for (i, item) in items.iter().enumerate() {
        match accept(item, &tenant, &state.rules, now) {
            Ok(event) => {
                results.push(ItemResult {
                    index: i,
                    status: 202,
                    event_id: Some(event.event_id.clone()),
                    error: None,
                });
                accepted.push(event);
            }
            Err(mut e) => {
                e.field = Some(match e.field.take() {
                    Some(f) if !f.is_empty() => format!("events[{i}].{f}"),
                    _ => format!("events[{i}]"),
                });
                results.push(ItemResult {
                    index: i,
                    status: e.status.as_u16(),
                    event_id: item
                        .get("event_id")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    error: Some(e.body()["error"].clone()),
                });
            }
        }
    }
    let n_ok = accepted.len();
    let n_bad = items.len() - n_ok;
    metrics::events("http", "invalid", n_bad);
    publish::publish_events(
        &state.publisher,
        accepted,
        traceparent(&headers),
        state.pack_events,
    )
    .await
    .map_err(|e| {
        metrics::events("http", "unavailable", n_ok);
        unavailable(&e)
    })?;
    metrics::events("http", "accepted", n_ok);
    let status = if n_bad == 0 {
        StatusCode::ACCEPTED
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok((
        status,
        Json(BatchAnswer {
            accepted: n_ok,
            rejected: n_bad,
            results,
        }),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_counted_length_is_the_length_of_the_compact_serialisation() {
        let value = json!({"applicant": {"name": "Nguyễn Văn A", "phone": "0903 123 456"}, "n": [1, 2.5, null], "q": "\"\\\n"});
        assert_eq!(json_len(&value), serde_json::to_vec(&value).unwrap().len());
    }
}
