//! OpenTelemetry traces across the services run as separate processes: one trace
//! from intake's request to the notifier's Zalo call, exported over OTLP.

use crate::{
    helpers::{receipt_event, settle_messages, wait_ready},
    helpers_process::{base, spawn, spawn_with_stderr, Ports, Process},
};
use loa_platform::testing::{
    otlp::{OtlpReceiver, ReceivedSpan},
    TestEnv,
};
use std::{process::Stdio, time::Duration};

/// The one span named `name` in `trace`.
fn one<'a>(spans: &'a [ReceivedSpan], trace: &str, name: &str) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == trace && s.name == name)
        .collect();
    assert_eq!(found.len(), 1, "one {name} in the trace: {spans:#?}");
    found[0]
}

#[tokio::test]
async fn one_trace_covers_intake_the_tracker_the_notifier_and_its_zalo_call_across_processes() {
    // Arrange: every service but the sandbox exports to the receiver, at once.
    let receiver = OtlpReceiver::start().await.unwrap();
    let env = TestEnv::new().await.unwrap();
    let ports = Ports::free();
    let traced = [
        ("LOA_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let notifier_log = std::env::temp_dir().join(format!(
        "loa-traces-notifier-{}-{}.log",
        std::process::id(),
        env.name
    ));
    let notifier_settings = [
        traced[0],
        traced[1],
        // The debug line before each Zalo call, to find it in the logs.
        ("RUST_LOG", "info,lapin=warn,loa_notifier=debug"),
    ];
    let _services: Vec<Process> = vec![
        spawn("zalo-sandbox", &env, &ports, &[]),
        spawn("tracker", &env, &ports, &traced),
        spawn_with_stderr(
            "notifier",
            &env,
            &ports,
            &notifier_settings,
            Stdio::from(std::fs::File::create(&notifier_log).unwrap()),
        ),
        spawn("intake", &env, &ports, &traced),
    ];
    let client = reqwest::Client::new();
    wait_ready(
        &client,
        &[
            &base(ports.sandbox),
            &base(ports.tracker),
            &base(ports.notifier),
            &base(ports.intake),
        ],
    )
    .await;

    // Act
    let resp = client
        .post(format!("{}/v1/events", base(ports.intake)))
        .bearer_auth("demo-token")
        .json(&receipt_event("trace-1", "H56-0301"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    settle_messages(&client, &base(ports.sandbox), 1).await;
    let spans = receiver
        .wait_for(Duration::from_secs(20), |s| {
            [
                "intake.request",
                "tracker.batch",
                "notifier.send",
                "zalo.call",
            ]
            .iter()
            .all(|name| s.iter().any(|span| span.name == *name))
        })
        .await;

    // Assert: intake's request starts the trace (the client sent no traceparent) ...
    let request = spans
        .iter()
        .find(|s| s.name == "intake.request")
        .unwrap_or_else(|| panic!("intake's span: {spans:#?}"));
    let trace = request.trace_id.as_str();
    assert_eq!(request.parent_span_id, "", "a root");
    assert_eq!(request.service, "loa-intake");
    assert_eq!(request.attribute("http.route"), Some("/v1/events"));
    assert_eq!(request.attribute("http.response.status_code"), Some("202"));
    // ... the tracker's event span is its child, linked from the tracker's batch ...
    let event = one(&spans, trace, "tracker.event");
    assert_eq!(event.parent_span_id, request.span_id);
    assert_eq!(event.service, "loa-tracker");
    assert_eq!(event.attribute("event_id"), Some("trace-1"));
    let batch = spans
        .iter()
        .find(|s| s.name == "tracker.batch")
        .expect("the tracker's batch span");
    assert!(
        batch
            .links
            .contains(&(trace.to_owned(), event.span_id.clone())),
        "the batch links to the event: {batch:#?}"
    );
    // ... the notifier's send is the tracker's child, and the Zalo call the send's.
    let send = one(&spans, trace, "notifier.send");
    assert_eq!(send.parent_span_id, event.span_id);
    assert_eq!(send.service, "loa-notifier");
    assert_eq!(send.attribute("outcome"), Some("sent"));
    assert_eq!(send.attribute("channel"), Some("zns"));
    let call = one(&spans, trace, "zalo.call");
    assert_eq!(call.parent_span_id, send.span_id);
    assert_eq!(call.attribute("zalo.api"), Some("zns"));
    // The notifier's JSON log line of that call carries the trace id.
    let logged = std::fs::read_to_string(&notifier_log).unwrap();
    std::fs::remove_file(&notifier_log).unwrap();
    let line: serde_json::Value = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "Sending a ZNS message.")
        .unwrap_or_else(|| panic!("the send's log line: {logged}"));
    assert_eq!(line["trace_id"], trace, "{line}");
    assert!(!logged.contains("903123456"), "phones stay masked");
}

#[tokio::test]
async fn spans_still_buffered_are_sent_when_a_service_stops_on_sigterm() {
    // Arrange: intake exports only every ten minutes; the tracker declares the
    // exchanges and exports nothing.
    let receiver = OtlpReceiver::start().await.unwrap();
    let env = TestEnv::new().await.unwrap();
    let ports = Ports::free();
    let _tracker = spawn("tracker", &env, &ports, &[]);
    let mut intake = spawn(
        "intake",
        &env,
        &ports,
        &[
            ("LOA_OTLP_ENDPOINT", receiver.endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    );
    let client = reqwest::Client::new();
    wait_ready(&client, &[&base(ports.tracker), &base(ports.intake)]).await;
    let resp = client
        .post(format!("{}/v1/events", base(ports.intake)))
        .bearer_auth("demo-token")
        .json(&receipt_event("trace-2", "H56-0302"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(receiver.spans().is_empty(), "held until the export is due");

    // Act
    intake.signal("TERM");
    loa_platform::testing::eventually(Duration::from_secs(20), || {
        let stopped = !intake.is_running();
        async move { stopped.then_some(()) }
    })
    .await
    .expect("intake stops on SIGTERM");

    // Assert
    let spans = receiver.spans();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].name, "intake.request");
    assert_eq!(spans[0].service, "loa-intake");
}
