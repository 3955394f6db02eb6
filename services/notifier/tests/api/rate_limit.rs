//! The per-tenant rate limit holds across replicas, uses most of what Zalo allows, and
//! backs off when Zalo says -32 anyway.

use crate::helpers::{receipt_request, spawn_app_configured, TestApp};
use chrono::{DateTime, Utc};
use loa_contracts::NotificationRequest;
use loa_platform::testing::eventually;
use serde_json::{json, Value};
use std::time::Duration;

async fn sandbox_limits(app: &TestApp, limits: Value) {
    let r = app
        .http
        .post(format!("{}/_sandbox/limits", app.sandbox_url))
        .json(&limits)
        .send()
        .await
        .expect("sandbox answers");
    assert!(r.status().is_success());
}

async fn count_sent(app: &TestApp, requests: &[NotificationRequest]) -> i64 {
    let ids: Vec<&str> = requests
        .iter()
        .map(|r| r.notification_id.as_str())
        .collect();
    let client = app.pool.get().await.unwrap();
    client
        .query_one(
            "SELECT count(*) FROM notifier.deliveries
              WHERE notification_id = ANY($1) AND status = 'sent'",
            &[&ids],
        )
        .await
        .unwrap()
        .get(0)
}

fn received_at(message: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(message["received_at"].as_str().unwrap())
        .unwrap()
        .to_utc()
}

#[tokio::test]
async fn two_notifiers_sharing_a_tenant_never_exceed_its_zalo_rate_limit_and_use_most_of_it() {
    // Arrange: Zalo allows 20 requests a second with a burst of 20, and the tenant is
    // configured the same; two notifiers share the work (small prefetch, so both do).
    let small_batches = |s: &mut loa_notifier::NotifierSettings| {
        s.prefetch = 32;
        s.batch_size = 32;
        s.rate_limit_horizon_ms = 1_000;
    };
    let mut app = spawn_app_configured(
        |tenants| {
            tenants[0].zalo.rate_per_second = 20.0;
            tenants[0].zalo.burst = 20;
        },
        small_batches,
    )
    .await;
    app.spawn_replica(small_batches).await;
    sandbox_limits(
        &app,
        json!({"api": "zns", "rate_per_second": 20, "burst": 20}),
    )
    .await;
    let requests: Vec<NotificationRequest> = (0..300)
        .map(|i| receipt_request(&format!("HS-R{i:03}")))
        .collect();

    // Act
    app.publish_many(&requests).await;

    // Assert: all sent in bounded time (at 20/s, 300 take about 14 s).
    eventually(Duration::from_secs(40), || async {
        (count_sent(&app, &requests).await == 300).then_some(())
    })
    .await
    .expect("every request is sent");
    let stats = app.sandbox_stats().await;
    assert_eq!(stats["refused"], json!({}), "no -32: {stats}");
    assert_eq!(stats["accepted"], 300);
    let peak = stats["peak_rate_per_second"].as_u64().unwrap();
    assert!(peak <= 40, "peak {peak}/s over limit + burst");
    // Throughput once the burst is spent: at least 90 % of the limit.
    let mut times: Vec<DateTime<Utc>> = app
        .sandbox_messages()
        .await
        .iter()
        .map(received_at)
        .collect();
    times.sort();
    let span = (times[times.len() - 1] - times[0]).num_milliseconds() as f64 / 1000.0;
    let rate = (times.len() - 20) as f64 / span;
    assert!(rate >= 18.0, "{rate:.1}/s over {span:.1} s");
}

#[tokio::test]
async fn a_rate_limit_refusal_slows_the_tenant_down_and_never_loops_hot() {
    // Arrange: the tenant thinks it may send 50/s, but Zalo allows 5/s.
    let app = spawn_app_configured(
        |tenants| {
            tenants[0].zalo.rate_per_second = 50.0;
            tenants[0].zalo.burst = 10;
        },
        |s| s.max_attempts = 30,
    )
    .await;
    sandbox_limits(
        &app,
        json!({"api": "zns", "rate_per_second": 5, "burst": 5}),
    )
    .await;
    let requests: Vec<NotificationRequest> = (0..30)
        .map(|i| receipt_request(&format!("HS-S{i:03}")))
        .collect();

    // Act
    app.publish_many(&requests).await;

    // Assert: everything goes through the delay queues eventually, and the refusals
    // stay a small multiple of the messages (each -32 costs a delay and a penalty).
    eventually(Duration::from_secs(60), || async {
        (count_sent(&app, &requests).await == 30).then_some(())
    })
    .await
    .expect("every request is sent");
    let stats = app.sandbox_stats().await;
    let refused = stats["refused"]["-32"].as_u64().unwrap_or(0);
    assert!(refused > 0, "the test needs Zalo to refuse: {stats}");
    assert!(refused < 150, "{refused} refusals for 30 messages: {stats}");
}
