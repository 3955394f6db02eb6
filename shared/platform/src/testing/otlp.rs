//! A small OTLP/HTTP JSON receiver for tests: what an OpenTelemetry collector
//! would receive from `otlp_endpoint`, decoded into [`ReceivedSpan`]s.

use axum::{extract::State, routing::post, Json, Router};
use serde_json::Value;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

/// One exported span as the collector saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// The exporting process's `service.name`.
    pub service: String,
    /// The span's name (`intake.request`).
    pub name: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// The parent's span id; empty for a root.
    pub parent_span_id: String,
    /// `(trace id, span id)` of each linked span.
    pub links: Vec<(String, String)>,
    /// String and number attributes, as text.
    pub attributes: Vec<(String, String)>,
}

impl ReceivedSpan {
    /// The attribute `key`, as text.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A running receiver on a free loopback port; stops when dropped.
pub struct OtlpReceiver {
    /// What to set `otlp_endpoint` to.
    pub endpoint: String,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    server: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    /// Starts listening for `POST /v1/traces`.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let spans = Arc::new(Mutex::new(Vec::new()));
        let router = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(spans.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Self {
            endpoint,
            spans,
            server,
        })
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans
            .lock()
            .expect("the span list is not poisoned")
            .clone()
    }

    /// Polls until `done` holds for the spans received, or `timeout` passes;
    /// returns the spans either way.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) || tokio::time::Instant::now() >= until {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(spans): State<Arc<Mutex<Vec<ReceivedSpan>>>>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let received = decode(&body);
    spans
        .lock()
        .expect("the span list is not poisoned")
        .extend(received);
    Json(serde_json::json!({}))
}

/// The spans of an `ExportTraceServiceRequest` in OTLP JSON.
fn decode(body: &Value) -> Vec<ReceivedSpan> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let mut out = Vec::new();
    for resource in array(body, "resourceSpans") {
        let service = attributes(&resource["resource"])
            .into_iter()
            .find(|(k, _)| k == "service.name")
            .map(|(_, v)| v)
            .unwrap_or_default();
        for scope in array(resource, "scopeSpans") {
            for span in array(scope, "spans") {
                out.push(ReceivedSpan {
                    service: service.clone(),
                    name: text(&span["name"]),
                    trace_id: text(&span["traceId"]),
                    span_id: text(&span["spanId"]),
                    parent_span_id: text(&span["parentSpanId"]),
                    links: array(span, "links")
                        .map(|l| (text(&l["traceId"]), text(&l["spanId"])))
                        .collect(),
                    attributes: attributes(span),
                });
            }
        }
    }
    out
}

fn array<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    value[key].as_array().into_iter().flatten()
}

/// `attributes: [{key, value: {stringValue | intValue | …}}]` as text pairs.
fn attributes(value: &Value) -> Vec<(String, String)> {
    array(value, "attributes")
        .filter_map(|a| {
            let key = a["key"].as_str()?.to_owned();
            let any = a["value"].as_object()?.values().next()?;
            let shown = match any {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some((key, shown))
        })
        .collect()
}
