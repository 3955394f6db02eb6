//! Retries through the delay tiers, counted from outside: what sits in the tiers'
//! queues, how many times Zalo was called and when, and what is dead-lettered.

use crate::helpers::{receipt_request, spawn_app_configured, TestApp, PATIENCE};
use loa_notifier::engine::tier_queue;
use loa_platform::testing::eventually;
use serde_json::json;
use std::time::{Duration, Instant};

/// How many times the sandbox refused a ZNS send with `code`.
async fn refused(app: &TestApp, code: i64) -> u64 {
    let stats = app.sandbox_stats().await;
    stats["refused"][code.to_string()].as_u64().unwrap_or(0)
}

/// Messages waiting in the delay tiers of `delays_ms`, summed over the tiers.
async fn waiting_in_tiers(app: &TestApp, delays_ms: &[u64]) -> u32 {
    let mut total = 0;
    for ms in delays_ms {
        total += app
            .env
            .ready_messages(&tier_queue(Duration::from_millis(*ms)))
            .await
            .expect("the tier exists");
    }
    total
}

/// Watches the sandbox until `calls` refusals with `code` were seen (or `within`
/// passed) and returns when each was first seen, relative to `start`.
async fn watch_refusals(
    app: &TestApp,
    code: i64,
    calls: usize,
    start: Instant,
    within: Duration,
) -> Vec<Duration> {
    let mut seen = Vec::new();
    while seen.len() < calls && start.elapsed() < within {
        let n = refused(app, code).await as usize;
        while seen.len() < n {
            seen.push(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen
}

#[tokio::test]
async fn a_retry_waits_as_exactly_one_copy_in_one_delay_queue() {
    // Arrange: tiers long enough to look at the queues while the retry waits.
    let delays = [3_000, 6_000, 12_000];
    let app = spawn_app_configured(|_| {}, |s| s.retry_delays_ms = delays.to_vec()).await;
    app.inject_fault(json!({"api": "zns", "error_code": -100, "count": 1}))
        .await;
    let request = receipt_request("HS-R001");

    // Act
    app.publish(&request).await;

    // Assert: one refused call, then one copy in the first tier and none elsewhere.
    app.delivery_with_status(&request.notification_id, "retrying")
        .await;
    eventually(PATIENCE, || async {
        (waiting_in_tiers(&app, &delays).await > 0).then_some(())
    })
    .await
    .expect("the retry reaches a delay queue");
    let first_tier = tier_queue(Duration::from_millis(delays[0]));
    assert_eq!(app.env.ready_messages(&first_tier).await.unwrap(), 1);
    assert_eq!(waiting_in_tiers(&app, &delays).await, 1);

    // Assert: sent on the second attempt: two Zalo calls, two attempts, tiers empty.
    let (_, attempts, ..) = app
        .delivery_with_status(&request.notification_id, "sent")
        .await;
    assert_eq!(attempts, 2);
    assert_eq!(refused(&app, -100).await, 1);
    assert_eq!(app.messages_for(&request.notification_id).await.len(), 1);
    assert_eq!(waiting_in_tiers(&app, &delays).await, 0);
}

#[tokio::test]
async fn a_message_that_keeps_failing_makes_max_attempts_calls_over_the_tiers_then_one_dead_letter_and_nothing_after(
) {
    // Arrange: Zalo answers -100 for ever; four attempts over tiers of 200, 400, 800 ms.
    let delays = [200, 400, 800];
    let app = spawn_app_configured(
        |_| {},
        |s| {
            s.retry_delays_ms = delays.to_vec();
            s.max_attempts = 4;
        },
    )
    .await;
    app.inject_fault(json!({"api": "zns", "error_code": -100}))
        .await;
    let request = receipt_request("HS-R002");
    let start = Instant::now();

    // Act
    app.publish(&request).await;

    // Assert: exactly four calls, each after its tier's wait (the tier −20 % jitter).
    let calls = watch_refusals(&app, -100, 4, start, PATIENCE).await;
    assert_eq!(calls.len(), 4, "calls seen at {calls:?}");
    for (k, tier_ms) in delays.iter().enumerate() {
        let gap = calls[k + 1].saturating_sub(calls[k]);
        assert!(
            gap >= Duration::from_millis(tier_ms * 8 / 10),
            "wait {} was {gap:?}, the tier is {tier_ms} ms (calls at {calls:?})",
            k + 1
        );
    }
    let (_, attempts, code, ..) = app
        .delivery_with_status(&request.notification_id, "failed")
        .await;
    assert_eq!((attempts, code), (4, Some(-100)));
    let letters = app.dead_letters().await;
    assert_eq!(letters.len(), 1);
    let reason = letters[0].0.clone().unwrap();
    assert!(reason.ends_with("(gave up after 4 attempts)"), "{reason}");

    // Assert: nothing after the dead letter, however long the longest tier lasts.
    tokio::time::sleep(Duration::from_millis(3 * 960)).await;
    assert_eq!(refused(&app, -100).await, 4);
    assert_eq!(waiting_in_tiers(&app, &delays).await, 0);
    assert_eq!(
        app.delivery(&request.notification_id).await.unwrap().0,
        "failed"
    );
    assert!(app.take_dead_letters().await.is_empty());
    assert!(app.messages_for(&request.notification_id).await.is_empty());
}
