//! Impossible times are refused at the door, on every path, naming the field: an event
//! "from" 9999 would otherwise stay its dossier's newest and freeze it.

use crate::helpers::*;
use loa_platform::{amqp::topology, testing::TestEnv};
use serde_json::{json, Value};

/// `event(id)` with `field` set to `value`.
fn with(event_id: &str, field: &str, value: &str) -> Value {
    let mut e = event(event_id);
    e[field] = json!(value);
    e
}

#[tokio::test]
async fn an_event_with_an_impossible_time_gets_a_422_naming_the_field_and_is_not_published() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let app = TestApp::spawn(&env, settings()).await;
    let cases = [
        (
            with("t-9999", "occurred_at", "9999-12-31T23:59:59Z"),
            "occurred_at",
            "time_in_future",
        ),
        (
            with("t-2126", "occurred_at", "2126-11-28T09:30:00+07:00"),
            "occurred_at",
            "time_in_future",
        ),
        (
            with("t-0000", "occurred_at", "0000-01-01T00:00:00Z"),
            "occurred_at",
            "time_too_early",
        ),
        (
            with("t-recv", "received_at", "2126-11-28T09:30:00+07:00"),
            "received_at",
            "time_in_future",
        ),
        (
            with("t-due", "due_at", "2026-11-01T17:00:00+07:00"),
            "due_at",
            "due_before_received",
        ),
        (
            with("t-due-far", "due_at", "2126-11-01T17:00:00+07:00"),
            "due_at",
            "due_too_far",
        ),
    ];

    // Act
    let mut answers = Vec::new();
    for (body, _, _) in &cases {
        answers.push(app.post_event("demo-token", body).await);
    }
    let (accepted, _) = app.post_event("demo-token", &event("t-ok")).await;

    // Assert
    for ((status, body), (_, field, code)) in answers.iter().zip(&cases) {
        assert_eq!(*status, 422, "{body}");
        assert_eq!(body["error"]["field"], *field, "{body}");
        assert_eq!(body["error"]["code"], *code, "{body}");
    }
    assert_eq!(accepted, 202);
    assert_eq!(
        app.forwarded_event_ids(1).await,
        ["t-ok"],
        "only the plausible event reached loa.events"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_batch_refuses_each_impossible_time_in_its_own_result_and_publishes_the_rest() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let app = TestApp::spawn(&env, settings()).await;
    let events = [
        event("b-ok-1"),
        with("b-future", "occurred_at", "9999-12-31T23:59:59Z"),
        with("b-due", "due_at", "2026-11-01T17:00:00+07:00"),
        event("b-ok-2"),
    ];

    // Act
    let (status, body) = app.post_batch("demo-token", &events).await;

    // Assert
    assert_eq!(status, 207, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(2))
    );
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[1]["status"], 422);
    assert_eq!(results[1]["event_id"], "b-future");
    assert_eq!(results[1]["error"]["field"], "events[1].occurred_at");
    assert_eq!(results[1]["error"]["code"], "time_in_future");
    assert_eq!(results[2]["status"], 422);
    assert_eq!(results[2]["error"]["field"], "events[2].due_at");
    assert_eq!(results[2]["error"]["code"], "due_before_received");
    assert_eq!(app.forwarded_event_ids(2).await, ["b-ok-1", "b-ok-2"]);
    app.stop().await;
}

#[tokio::test]
async fn an_ingress_message_with_an_impossible_time_is_dead_lettered_with_the_reason() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let app = TestApp::spawn(&env, settings()).await;
    let future = with("a-future", "occurred_at", "9999-12-31T23:59:59Z");

    // Act
    app.publish_ingress(
        &[("x-loa-token", "demo-token")],
        &serde_json::to_vec(&future).unwrap(),
    )
    .await;

    // Assert
    let dead = app.wait_for(topology::Q_DEAD, 1).await;
    let reason = header(&dead[0], topology::H_REASON).unwrap();
    assert!(
        reason.starts_with("time_in_future: occurred_at"),
        "{reason}"
    );
    assert_eq!(
        header(&dead[0], topology::H_SOURCE_QUEUE).as_deref(),
        Some(topology::Q_INGRESS)
    );
    assert!(app.take_all(topology::Q_TRACKER_EVENTS).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn the_allowed_clock_skew_is_an_intake_setting() {
    // Arrange: a source whose clock runs 30 minutes fast.
    let env = TestEnv::new().await.unwrap();
    let ahead = (chrono::Utc::now() + chrono::Duration::minutes(30)).to_rfc3339();
    let fast = |id: &str| {
        let mut e = with(id, "occurred_at", &ahead);
        e["received_at"] = json!(ahead);
        e
    };
    let strict = TestApp::spawn(&env, settings()).await;
    let lenient = TestApp::spawn(
        &env,
        loa_intake::IntakeSettings {
            clock_skew_secs: 3600,
            ..settings()
        },
    )
    .await;

    // Act
    let (by_default, body) = strict.post_event("demo-token", &fast("s-1")).await;
    let (with_an_hour, _) = lenient.post_event("demo-token", &fast("s-2")).await;

    // Assert
    assert_eq!(by_default, 422, "ten minutes by default: {body}");
    assert_eq!(with_an_hour, 202);
    strict.stop().await;
    lenient.stop().await;
}

#[tokio::test]
async fn a_clock_skew_of_more_than_a_day_is_refused_at_start() {
    let env = TestEnv::new().await.unwrap();
    let common = loa_platform::CommonSettings {
        amqp_url: env.amqp_url.clone(),
        ..Default::default()
    };
    let settings = loa_intake::IntakeSettings {
        clock_skew_secs: 2 * 24 * 3600,
        ..settings()
    };

    let refused = loa_intake::Application::build(&common, &settings, tenants()).await;

    let message = refused.err().expect("refused").to_string();
    assert!(message.contains("intake.clock_skew_secs"), "{message}");
}
