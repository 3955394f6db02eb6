//! Span export over OTLP: on only with an endpoint, spans linked through W3C
//! `traceparent`, and trace ids in the JSON logs.

use loa_platform::{
    telemetry::{self, LogFormat},
    testing::otlp::OtlpReceiver,
};
use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

/// Log lines written to memory.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// What a service does with an incoming message: a span continuing its
/// `traceparent`, a log line inside it, the `traceparent` it sends on, and an
/// `#[instrument]`-like span with no dot in its name.
fn handle_one_message() -> Option<String> {
    let span = tracing::info_span!("test.consume", tenant = "demo");
    telemetry::set_remote_parent(&span, Some(&format!("00-{TRACE}-{PARENT}-01")));
    let _entered = span.enter();
    tracing::info!("Handled a message.");
    let _inner = tracing::info_span!("poll_once").entered();
    telemetry::traceparent_of(&span)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_continue_the_incoming_traceparent_and_reach_the_otlp_endpoint_with_trace_ids_in_the_logs(
) {
    // Arrange
    let receiver = OtlpReceiver::start().await.unwrap();
    let traces = telemetry::start_traces(Some(&receiver.endpoint), "loa-test")
        .unwrap()
        .expect("an endpoint starts the exporter");
    let lines = Lines::default();
    let sink = lines.clone();
    let subscriber =
        telemetry::subscriber(LogFormat::Json, "info", move || sink.clone(), Some(&traces));

    // Act
    let sent_on = tracing::subscriber::with_default(subscriber, handle_one_message);
    traces.flush();
    let spans = receiver
        .wait_for(Duration::from_secs(10), |s| !s.is_empty())
        .await;

    // Assert: one span, the child of the incoming one, in its trace.
    assert_eq!(spans.len(), 1, "{spans:?}");
    let span = &spans[0];
    assert_eq!(span.name, "test.consume");
    assert_eq!(span.service, "loa-test");
    assert_eq!(span.trace_id, TRACE);
    assert_eq!(span.parent_span_id, PARENT);
    assert_eq!(span.attribute("tenant"), Some("demo"));
    // What goes on names this span.
    assert_eq!(
        sent_on.as_deref(),
        Some(format!("00-{TRACE}-{}-01", span.span_id).as_str())
    );
    // The log line leads to the trace.
    let logged = lines.text();
    let line: serde_json::Value = serde_json::from_str(logged.lines().next().unwrap()).unwrap();
    assert_eq!(line["trace_id"], TRACE, "{logged}");
    assert_eq!(line["message"], "Handled a message.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_endpoint_there_is_no_exporter_nothing_is_exported_and_no_trace_id_is_logged() {
    // Arrange: a receiver that would see anything sent anywhere by this process's
    // exporter, had one been made.
    let receiver = OtlpReceiver::start().await.unwrap();
    let traces = telemetry::start_traces(None, "loa-test").unwrap();
    let blank = telemetry::start_traces(Some("  "), "loa-test").unwrap();
    let lines = Lines::default();
    let sink = lines.clone();
    let subscriber = telemetry::subscriber(
        LogFormat::Json,
        "info",
        move || sink.clone(),
        traces.as_ref(),
    );

    // Act
    let sent_on = tracing::subscriber::with_default(subscriber, handle_one_message);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Assert
    assert!(
        traces.is_none() && blank.is_none(),
        "no exporter without an endpoint"
    );
    assert!(!telemetry::traces_on(), "the services make no spans");
    assert_eq!(sent_on, None, "no span context to send on");
    assert!(receiver.spans().is_empty());
    let logged = lines.text();
    assert!(logged.contains("Handled a message."), "{logged}");
    assert!(!logged.contains("trace_id"), "{logged}");
}

#[test]
fn an_endpoint_that_is_not_an_http_url_is_refused_naming_the_setting() {
    let refused = telemetry::start_traces(Some("127.0.0.1:4318"), "loa-test")
        .err()
        .expect("refused");

    assert!(refused.to_string().contains("otlp_endpoint"), "{refused}");
}
