//! The ZNS daily quota as Zalo's answers report it: only `-144` spends the day.

use crate::helpers::{receipt_request, spawn_app, TestApp};
use loa_contracts::Lane;
use serde_json::{json, Value};

async fn sandbox(app: &TestApp, path: &str, body: Option<Value>) -> Value {
    let request = match body {
        Some(body) => app
            .http
            .post(format!("{}{path}", app.sandbox_url))
            .json(&body),
        None => app.http.get(format!("{}{path}", app.sandbox_url)),
    };
    let r = request.send().await.expect("sandbox answers");
    assert!(r.status().is_success(), "{path} refused");
    r.json().await.expect("sandbox answers JSON")
}

/// The stored quota of the demo tenant: (daily_quota, remaining, exhausted) per day.
async fn stored_quota(app: &TestApp) -> Vec<(Option<i32>, Option<i32>, bool)> {
    let client = app.pool.get().await.unwrap();
    client
        .query(
            "SELECT daily_quota, remaining, exhausted FROM notifier.zns_quota WHERE tenant = 'demo'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn a_success_reporting_a_zero_quota_does_not_hold_the_next_sends() {
    // Arrange: an OA without a daily quota; Zalo's successes then report "0" and "0".
    let app = spawn_app().await;
    sandbox(
        &app,
        "/_sandbox/limits",
        Some(json!({"api": "zns", "daily_quota": null})),
    )
    .await;
    let first = receipt_request("HS-Q001");
    app.publish(&first).await;
    app.delivery_with_status(&first.notification_id, "sent")
        .await;

    // Act: a case update and a broadcast after that answer.
    let update = receipt_request("HS-Q002");
    let mut broadcast = receipt_request("HS-Q003");
    broadcast.lane = Lane::Broadcast;
    app.publish(&update).await;
    app.publish(&broadcast).await;

    // Assert: both sent, nothing deferred, and no day marked spent.
    for r in [&update, &broadcast] {
        app.delivery_with_status(&r.notification_id, "sent").await;
        assert_eq!(app.messages_for(&r.notification_id).await.len(), 1);
    }
    assert!(
        stored_quota(&app)
            .await
            .iter()
            .all(|(.., exhausted)| !exhausted),
        "{:?}",
        stored_quota(&app).await
    );
}

#[tokio::test]
async fn a_last_message_leaving_zero_does_not_spend_the_day_only_zalos_minus_144_does() {
    // Arrange: a quota of one a day; its one success reports "1" and "0" left.
    let app = spawn_app().await;
    sandbox(
        &app,
        "/_sandbox/limits",
        Some(json!({"api": "zns", "daily_quota": 1})),
    )
    .await;
    let first = receipt_request("HS-Q010");
    app.publish(&first).await;
    app.delivery_with_status(&first.notification_id, "sent")
        .await;
    assert_eq!(stored_quota(&app).await, [(Some(1), Some(0), false)]);

    // Act: the next case update is still offered to Zalo, which refuses it with -144.
    let second = receipt_request("HS-Q011");
    app.publish(&second).await;

    // Assert: deferred by Zalo's answer, and only then is the day spent.
    app.delivery_with_status(&second.notification_id, "deferred")
        .await;
    let stats = sandbox(&app, "/_sandbox/stats", None).await;
    assert_eq!(stats["refused"], json!({"-144": 1}));
    assert_eq!(stored_quota(&app).await, [(Some(1), Some(0), true)]);
}
