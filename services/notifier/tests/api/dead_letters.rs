//! Dead letters: stored from `loa.dead-letters`, listed per tenant, replayed.

use crate::helpers::{receipt_request, spawn_app, TestApp, PATIENCE};
use lapin::options::{BasicGetOptions, BasicRejectOptions};
use loa_platform::{
    amqp::{topology, OutgoingMessage},
    testing::eventually,
};
use serde_json::{json, Value};

/// `GET /v1/dead-letters{query}` with an optional bearer token.
async fn get_dead_letters(app: &TestApp, query: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app
        .http
        .get(format!("{}/v1/dead-letters{query}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("notifier answers")
}

/// The dead letters `token`'s tenant sees with `query`.
async fn dead_letters_seen(app: &TestApp, query: &str, token: &str) -> Vec<Value> {
    let response = get_dead_letters(app, query, Some(token)).await;
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.expect("JSON");
    page["dead_letters"].as_array().expect("a list").clone()
}

/// Waits until `token`'s tenant sees `n` dead letters with `query`.
async fn wait_for_dead_letters(app: &TestApp, query: &str, token: &str, n: usize) -> Vec<Value> {
    match eventually(PATIENCE, || async {
        let seen = dead_letters_seen(app, query, token).await;
        (seen.len() == n).then_some(seen)
    })
    .await
    {
        Ok(seen) => seen,
        Err(_) => panic!(
            "expected {n} dead letter(s), saw {:?}",
            dead_letters_seen(app, query, token).await
        ),
    }
}

/// `POST /v1/dead-letters/replay`.
async fn replay(app: &TestApp, body: Value, token: Option<&str>) -> reqwest::Response {
    let mut request = app
        .http
        .post(format!("{}/v1/dead-letters/replay", app.address))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("notifier answers")
}

/// Publishes a dead letter the way a consumer of `source_queue` does.
async fn publish_dead_letter(
    app: &TestApp,
    source_queue: &str,
    routing_key: &str,
    reason: &str,
    body: &Value,
) {
    app.publisher
        .publish(&OutgoingMessage {
            exchange: topology::EX_DEAD.into(),
            routing_key: routing_key.into(),
            body: serde_json::to_vec(body).unwrap(),
            message_id: body["event_id"].as_str().unwrap_or("m").into(),
            headers: vec![
                (topology::H_REASON.into(), reason.into()),
                (topology::H_SOURCE_QUEUE.into(), source_queue.into()),
                (
                    "traceparent".into(),
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
                ),
                ("x-loa-attempt".into(), "7".into()),
            ],
        })
        .await
        .expect("the broker confirms");
}

fn event_body(tenant: &str, event_id: &str) -> Value {
    json!({"event_id": event_id, "tenant": tenant, "dossier_code": "HS-DL", "status": 2})
}

#[tokio::test]
async fn a_failed_delivery_is_stored_as_a_dead_letter_its_tenant_alone_can_list() {
    // Arrange
    let app = spawn_app().await;
    app.inject_fault(json!({"api": "zns", "error_code": -108, "rate": 1.0, "count": 1}))
        .await;
    let request = receipt_request("HS-0901");

    // Act
    app.publish(&request).await;

    // Assert
    let letters = wait_for_dead_letters(&app, "", "demo-admin", 1).await;
    let letter = &letters[0];
    assert_eq!(letter["tenant"], "demo");
    assert_eq!(letter["source_queue"], "notifier.transactional");
    assert_eq!(letter["exchange"], "loa.notifications");
    assert_eq!(letter["routing_key"], "transactional.demo.receipt");
    assert_eq!(letter["message_id"], request.notification_id.as_str());
    assert_eq!(letter["replayed_at"], Value::Null);
    assert_eq!(
        letter["body"]["notification_id"],
        request.notification_id.as_str()
    );
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .starts_with("zalo error -108"),
        "{letter}"
    );
    assert!(dead_letters_seen(&app, "", "other-admin").await.is_empty());
    assert_eq!(get_dead_letters(&app, "", None).await.status(), 401);
    assert_eq!(
        get_dead_letters(&app, "", Some("demo-token"))
            .await
            .status(),
        401,
        "a source token is not an admin token"
    );
    let metrics = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Counted (by any amount: every test of this binary shares the registry).
    assert!(
        metrics.contains(r#"loa_notifier_dead_letters_total{reason="zalo_-108",tenant="demo"} "#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_replayed_dead_letter_is_delivered_once_and_marked_replayed() {
    // Arrange
    let app = spawn_app().await;
    app.inject_fault(json!({"api": "zns", "error_code": -108, "rate": 1.0, "count": 1}))
        .await;
    let request = receipt_request("HS-0902");
    app.publish(&request).await;
    let id = wait_for_dead_letters(&app, "", "demo-admin", 1).await[0]["id"]
        .as_i64()
        .unwrap();

    // Act
    let response = replay(&app, json!({"ids": [id]}), Some("demo-admin")).await;

    // Assert
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["replayed"], 1);
    assert_eq!(report["replayed_ids"], json!([id]));
    app.delivery_with_status(&request.notification_id, "sent")
        .await;
    app.wait_until_settled().await;
    assert_eq!(app.messages_for(&request.notification_id).await.len(), 1);
    let letters = dead_letters_seen(&app, "", "demo-admin").await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["replay_count"], 1);
    assert!(letters[0]["replayed_at"].is_string());
    assert!(dead_letters_seen(&app, "?replayed=false", "demo-admin")
        .await
        .is_empty());
}

#[tokio::test]
async fn replaying_all_or_by_filter_takes_only_the_tenants_unreplayed_dead_letters() {
    // Arrange
    let app = spawn_app().await;
    for (tenant, event, reason) in [
        ("demo", "e-1", "invalid_field: status: unknown status"),
        ("demo", "e-2", "invalid_json: expected value"),
        ("other", "e-3", "invalid_field: status: unknown status"),
    ] {
        publish_dead_letter(
            &app,
            topology::Q_TRACKER_EVENTS,
            &format!("dossier.{tenant}.2"),
            reason,
            &event_body(tenant, event),
        )
        .await;
    }
    wait_for_dead_letters(&app, "", "demo-admin", 2).await;
    wait_for_dead_letters(&app, "", "other-admin", 1).await;

    // Act
    let by_filter = replay(
        &app,
        json!({"filter": {"reason": "invalid_field", "source_queue": "tracker.events"}}),
        Some("demo-admin"),
    )
    .await;
    let by_filter: Value = by_filter.json().await.unwrap();
    let all: Value = replay(&app, json!({"all": true}), Some("demo-admin"))
        .await
        .json()
        .await
        .unwrap();
    let again: Value = replay(&app, json!({"all": true}), Some("demo-admin"))
        .await
        .json()
        .await
        .unwrap();

    // Assert
    assert_eq!(by_filter["replayed"], 1, "{by_filter}");
    assert_eq!(all["replayed"], 1, "only the one left: {all}");
    assert_eq!(again["replayed"], 0, "{again}");
    let other = dead_letters_seen(&app, "", "other-admin").await;
    assert_eq!(
        other[0]["replayed_at"],
        Value::Null,
        "other tenant untouched"
    );
    // Both demo events went back to `loa.events`, i.e. to the tracker's queue.
    eventually(PATIENCE, || async {
        (app.env.queue_depth(topology::Q_TRACKER_EVENTS).ok()? == 2).then_some(())
    })
    .await
    .expect("two events back in tracker.events");
    let conn = loa_platform::amqp::connect(&app.env.amqp_url, "replay-reader")
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let message = channel
        .basic_get(
            topology::Q_TRACKER_EVENTS.into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("a replayed event");
    let headers = message.delivery.properties.headers().clone().unwrap();
    assert!(headers.inner().contains_key("traceparent"));
    for dropped in ["x-loa-reason", "x-loa-source-queue", "x-loa-attempt"] {
        assert!(!headers.inner().contains_key(dropped), "{dropped} kept");
    }
}

#[tokio::test]
async fn a_dead_letter_delivered_twice_is_stored_once_and_revived_when_it_dies_after_a_replay() {
    // Arrange
    let app = spawn_app().await;
    let body = event_body("demo", "e-dup");
    let dead = |_: ()| {
        publish_dead_letter(
            &app,
            topology::Q_TRACKER_EVENTS,
            "dossier.demo.2",
            "invalid_field: status: unknown status",
            &body,
        )
    };

    // Act
    dead(()).await;
    dead(()).await;
    let first = wait_for_dead_letters(&app, "", "demo-admin", 1).await;
    // A marker after both copies: once it is stored, both copies were handled.
    publish_dead_letter(
        &app,
        topology::Q_TRACKER_EVENTS,
        "dossier.demo.2",
        "marker: x",
        &event_body("demo", "e-marker"),
    )
    .await;
    wait_for_dead_letters(&app, "?reason=marker", "demo-admin", 1).await;
    let id = first[0]["id"].as_i64().unwrap();
    replay(&app, json!({"ids": [id]}), Some("demo-admin")).await;
    dead(()).await;

    // Assert
    let revived = wait_for_dead_letters(
        &app,
        "?replayed=false&reason=invalid_field",
        "demo-admin",
        1,
    )
    .await;
    assert_eq!(revived[0]["id"], id, "the same row");
    assert_eq!(revived[0]["deaths"], 2);
    assert_eq!(revived[0]["replay_count"], 1);
    assert_eq!(
        dead_letters_seen(&app, "?reason=invalid_field", "demo-admin")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn a_message_over_its_delivery_limit_is_stored_with_the_queue_and_exchange_it_came_from() {
    // Arrange: an event in the tracker's queue (no tracker runs here) that keeps
    // being given back until the broker dead-letters it.
    let app = spawn_app().await;
    app.publisher
        .publish(&OutgoingMessage {
            exchange: topology::EX_EVENTS.into(),
            routing_key: "dossier.demo.2".into(),
            body: serde_json::to_vec(&event_body("demo", "e-limit")).unwrap(),
            message_id: "e-limit".into(),
            headers: Vec::new(),
        })
        .await
        .unwrap();
    let conn = loa_platform::amqp::connect(&app.env.amqp_url, "rejecter")
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();

    // Act
    for _ in 0..=topology::DELIVERY_LIMIT + 1 {
        let Some(message) = channel
            .basic_get(
                topology::Q_TRACKER_EVENTS.into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .unwrap()
        else {
            break;
        };
        message
            .delivery
            .reject(BasicRejectOptions { requeue: true })
            .await
            .unwrap();
    }

    // Assert
    let letters = wait_for_dead_letters(&app, "", "demo-admin", 1).await;
    assert_eq!(letters[0]["source_queue"], "tracker.events");
    assert_eq!(letters[0]["exchange"], "loa.events");
    assert_eq!(letters[0]["reason"], "delivery limit exceeded");
    assert_eq!(letters[0]["routing_key"], "dossier.demo.2");
    assert_eq!(letters[0]["body"]["event_id"], "e-limit");
}

#[tokio::test]
async fn another_tenants_dead_letters_cannot_be_replayed_and_bad_input_names_the_field() {
    // Arrange
    let app = spawn_app().await;
    publish_dead_letter(
        &app,
        topology::Q_TRACKER_EVENTS,
        "dossier.demo.2",
        "invalid_field: x",
        &event_body("demo", "e-iso"),
    )
    .await;
    let id = wait_for_dead_letters(&app, "", "demo-admin", 1).await[0]["id"]
        .as_i64()
        .unwrap();

    // Act
    let foreign: Value = replay(&app, json!({"ids": [id]}), Some("other-admin"))
        .await
        .json()
        .await
        .unwrap();
    let unauthorized = replay(&app, json!({"all": true}), None).await;
    let empty = replay(&app, json!({}), Some("demo-admin")).await;
    let bad_id = replay(&app, json!({"ids": [id, "x"]}), Some("demo-admin")).await;
    let bad_limit = get_dead_letters(&app, "?limit=100000", Some("demo-admin")).await;
    let bad_since = get_dead_letters(&app, "?since=yesterday", Some("demo-admin")).await;

    // Assert
    assert_eq!(foreign["replayed"], 0);
    assert_eq!(foreign["not_found"], json!([id]));
    let letters = dead_letters_seen(&app, "", "demo-admin").await;
    assert_eq!(letters[0]["replay_count"], 0, "untouched");
    assert_eq!(unauthorized.status(), 401);
    for (response, status, field) in [
        (empty, 422, "ids"),
        (bad_id, 422, "ids[1]"),
        (bad_limit, 400, "limit"),
        (bad_since, 400, "since"),
    ] {
        assert_eq!(response.status(), status);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{body}");
    }
}

#[tokio::test]
async fn dead_letters_page_by_id() {
    // Arrange
    let app = spawn_app().await;
    for i in 0..5 {
        publish_dead_letter(
            &app,
            topology::Q_TRACKER_EVENTS,
            "dossier.demo.2",
            "invalid_field: x",
            &event_body("demo", &format!("e-page-{i}")),
        )
        .await;
    }
    wait_for_dead_letters(&app, "", "demo-admin", 5).await;

    // Act
    let first: Value = get_dead_letters(&app, "?limit=3", Some("demo-admin"))
        .await
        .json()
        .await
        .unwrap();
    let cursor = first["next_after_id"].as_i64().expect("a next page");
    let second: Value = get_dead_letters(
        &app,
        &format!("?limit=3&after_id={cursor}"),
        Some("demo-admin"),
    )
    .await
    .json()
    .await
    .unwrap();

    // Assert
    assert_eq!(first["dead_letters"].as_array().unwrap().len(), 3);
    assert_eq!(second["dead_letters"].as_array().unwrap().len(), 2);
    assert_eq!(second["next_after_id"], Value::Null);
    assert!(second["dead_letters"][0]["id"].as_i64().unwrap() > cursor);
}
