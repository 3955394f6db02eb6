//! Logging and tracing set-up. Logs are English; phone numbers are masked by their
//! types ([`loa_contracts::PhoneNumber`] displays masked) and secrets print as `***`.
//!
//! # Traces
//!
//! With `otlp_endpoint` set, [`init_with_traces`] adds a `tracing-opentelemetry` layer
//! whose spans a batch processor sends to `<endpoint>/v1/traces` as OTLP JSON, and
//! JSON log lines inside a span carry its `trace_id`. The services make their spans
//! (`intake.request`, `tracker.batch`, `tracker.event`, `notifier.send`, `zalo.call`)
//! only when [`traces_on`] says so: with no endpoint there is no exporter, no span and
//! no extra work on the hot path, only that one flag read per request or batch.
//!
//! Spans are linked across processes through the W3C `traceparent` the messages
//! already carry: a service opens its span as a child of the incoming `traceparent`
//! ([`set_remote_parent`]) and sends on its own span's ([`traceparent_of`]).

use opentelemetry::{
    propagation::TextMapPropagator,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider, Resource};
use serde::Deserialize;
use std::{
    collections::HashMap,
    sync::atomic::{AtomicBool, Ordering},
};
use tracing::Subscriber;
use tracing_opentelemetry::{OpenTelemetrySpanExt, OtelData};
use tracing_subscriber::{
    filter::filter_fn,
    fmt::{
        format::{Format, Json, JsonFields, Writer},
        FmtContext, FormatEvent, MakeWriter,
    },
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
    EnvFilter, Layer,
};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    #[default]
    Pretty,
    /// One JSON object per line, for production log shipping.
    Json,
}

/// Installs the global subscriber. `RUST_LOG` overrides `default_filter`.
/// Safe to call more than once (later calls are ignored), which tests rely on.
pub fn init<W>(format: LogFormat, default_filter: &str, sink: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let _ = subscriber(format, default_filter, sink, None).try_init();
}

/// [`init`], plus span export to `otlp_endpoint` when it is set (see the module
/// docs). Keep the returned [`Traces`] until the process ends: dropping it sends the
/// spans still buffered. Fails only on an endpoint that is not a URL.
pub fn init_with_traces<W>(
    format: LogFormat,
    default_filter: &str,
    sink: W,
    otlp_endpoint: Option<&str>,
    service_name: &str,
) -> Result<Option<Traces>, TracesError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let traces = start_traces(otlp_endpoint, service_name)?;
    let installed = subscriber(format, default_filter, sink, traces.as_ref())
        .try_init()
        .is_ok();
    if installed && traces.is_some() {
        TRACES_ON.store(true, Ordering::Relaxed);
    }
    Ok(traces)
}

/// The subscriber [`init`] and [`init_with_traces`] install, for tests that set it
/// as their default instead: `RUST_LOG` or `default_filter`, log lines to `sink`,
/// and the spans to `traces` when given (JSON lines then carry `trace_id`).
pub fn subscriber<W>(
    format: LogFormat,
    default_filter: &str,
    sink: W,
    traces: Option<&Traces>,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let registry = tracing_subscriber::registry().with(filter);
    let lines = tracing_subscriber::fmt::layer().with_writer(sink);
    match (format, traces) {
        (LogFormat::Pretty, None) => Box::new(registry.with(lines)),
        (LogFormat::Pretty, Some(t)) => Box::new(registry.with(lines).with(t.layer())),
        (LogFormat::Json, None) => Box::new(registry.with(lines.json().flatten_event(true))),
        (LogFormat::Json, Some(t)) => Box::new(
            registry
                .with(lines.json().flatten_event(true).event_format(WithTraceId(
                    tracing_subscriber::fmt::format().json().flatten_event(true),
                )))
                .with(t.layer()),
        ),
    }
}

static TRACES_ON: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported: the services make their spans only then.
pub fn traces_on() -> bool {
    TRACES_ON.load(Ordering::Relaxed)
}

/// Why span export could not start.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration value `otlp_endpoint`: {0}")]
pub struct TracesError(String);

/// The span exporter: a batch processor sending OTLP JSON over HTTP. Dropping it
/// sends what is still buffered and stops the exporter.
pub struct Traces {
    provider: SdkTracerProvider,
}

/// Starts exporting to `<otlp_endpoint>/v1/traces` under `service_name`, or nothing
/// when no endpoint is set.
pub fn start_traces(
    otlp_endpoint: Option<&str>,
    service_name: &str,
) -> Result<Option<Traces>, TracesError> {
    let Some(endpoint) = otlp_endpoint.map(str::trim).filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(TracesError(format!(
            "`{endpoint}` is not an http:// or https:// URL"
        )));
    }
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(url)
        .build()
        .map_err(|e| TracesError(e.to_string()))?;
    // The batch processor runs on its own thread (with the blocking HTTP client):
    // spans leave the services' tasks as a channel send, and an unreachable
    // collector costs dropped spans, never a slower request.
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder_empty()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build();
    Ok(Some(Traces { provider }))
}

impl Traces {
    /// The layer turning `tracing` spans into exported spans.
    fn layer<S>(&self) -> impl Layer<S> + Send + Sync
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("loa"))
            .with_filter(filter_fn(|meta| {
                !meta.is_span() || is_exported(meta.name())
            }))
    }

    /// Sends the finished spans now (tests; shutdown does it too).
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!(error.message = %e, "Failed to send the buffered spans.");
        }
    }
}

impl Drop for Traces {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Whether a span of this name is exported: the services' own, named
/// `<service>.<step>` (`tracker.batch`). Spans of `#[instrument]`ed functions, such
/// as the outbox relay's poll, stay in the logs only: most polls find nothing.
pub fn is_exported(span_name: &str) -> bool {
    span_name.contains('.')
}

/// Makes `span` a child of the W3C `traceparent` (another service's span), so both
/// share one trace. A missing or malformed `traceparent` leaves `span` a root.
pub fn set_remote_parent(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Links `span` to the W3C `traceparent` without making it its parent (a batch span
/// and the events it carries, each in its own trace).
pub fn add_remote_link(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let linked = TraceContextPropagator::new().extract(&carrier);
    let context = linked.span().span_context().clone();
    if context.is_valid() {
        span.add_link(context);
    }
}

/// The W3C `traceparent` naming `span`, to send on to the next service; `None` when
/// `span` is not exported (traces off).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// The JSON line of an event with the `trace_id` of its innermost exported span
/// first, so a log line leads to its trace.
struct WithTraceId(Format<Json>);

impl<S> FormatEvent<S, JsonFields> for WithTraceId
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let trace_id = ctx.event_scope().and_then(|scope| {
            scope
                .into_iter()
                .find_map(|span| span.extensions().get::<OtelData>()?.trace_id())
        });
        let Some(trace_id) = trace_id else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"trace_id\":\"{trace_id}\",{rest}"),
            None => writer.write_str(&line),
        }
    }
}
