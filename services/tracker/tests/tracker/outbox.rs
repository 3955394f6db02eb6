//! The transactional outbox survives a crash between commit and publish.

use crate::helpers::*;
use loa_contracts::{notification::notification_id, Envelope, NotificationKind};
use loa_platform::testing::TestEnv;

#[tokio::test]
async fn a_notification_planned_before_a_crash_is_published_exactly_once_by_the_next_process() {
    // Arrange: a tracker that commits but never relays (the crash window).
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let first = TestApp::spawn(&env, settings(false)).await;
    let code = dossier_code("0101");
    broker
        .publish(&event("evt-crash", &code, 2, "2026-11-28T09:30:00+07:00"))
        .await;
    first.wait_applied(&["evt-crash"]).await;
    assert_eq!(first.count("SELECT count(*) FROM tracker.outbox").await, 1);
    first.stop().await;
    assert!(
        broker.notifications().await.is_empty(),
        "nothing left before the crash"
    );

    // Act: another process starts with the relay on.
    let second = TestApp::spawn(&env, settings(true)).await;
    second.wait_relayed().await;

    // Assert
    let observed = broker.notifications().await;
    assert_eq!(observed.len(), 1, "{observed:?}");
    assert_eq!(
        observed[0].message_id,
        notification_id("demo", "evt-crash", NotificationKind::Receipt)
    );
    assert_eq!(
        second.count("SELECT count(*) FROM tracker.outbox").await,
        0,
        "a relayed row leaves the outbox"
    );
    // Stopping drains the relay once more; nothing is published twice.
    second.stop().await;
    assert!(broker.notifications().await.is_empty());
}

#[tokio::test]
async fn notifications_relayed_together_for_one_tenant_travel_as_one_message_each_with_its_id() {
    // Arrange: three receipts planned while no relay runs.
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let first = TestApp::spawn(&env, settings(false)).await;
    let ids = ["evt-pack-1", "evt-pack-2", "evt-pack-3"];
    for (i, id) in ids.iter().enumerate() {
        broker
            .publish(&event(
                id,
                &dossier_code(&format!("02{i:02}")),
                2,
                "2026-11-28T09:30:00+07:00",
            ))
            .await;
    }
    first.wait_applied(&ids).await;
    first.stop().await;

    // Act: one relay round picks all three up.
    let second = TestApp::spawn(&env, settings(true)).await;
    second.wait_relayed().await;

    // Assert
    let messages = broker.notification_messages().await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let (routing_key, body) = &messages[0];
    assert_eq!(routing_key, "transactional.demo.batch");
    let Envelope::NotificationBatchV1(batch) = body else {
        panic!("a packed message, not {body:?}");
    };
    assert_eq!(batch.tenant, "demo");
    let got: Vec<&str> = batch
        .requests
        .iter()
        .map(|r| r.notification_id.as_str())
        .collect();
    let want: Vec<String> = ids
        .iter()
        .map(|id| notification_id("demo", id, NotificationKind::Receipt))
        .collect();
    assert_eq!(got, want, "in the order they were planned");
    second.stop().await;
}

#[tokio::test]
async fn upgrading_to_deleted_relayed_rows_drops_the_published_ones_and_keeps_the_waiting_ones() {
    // Arrange: the first schema, with one published and one waiting row.
    let env = TestEnv::new().await.unwrap();
    let pool = loa_platform::db::pool(&env.database_url, 2).unwrap();
    let all = loa_tracker::store::migrations();
    loa_platform::db::migrate(&pool, loa_tracker::SCHEMA, &all[..1])
        .await
        .unwrap();
    let client = pool.get().await.unwrap();
    client
        .batch_execute(
            "INSERT INTO tracker.outbox (notification_id, tenant, kind, routing_key, body, published_at)
             VALUES ('sent-1', 'demo', 'receipt', 'transactional.demo.receipt', '{}', now()),
                    ('waiting-1', 'demo', 'receipt', 'transactional.demo.receipt', '{}', NULL)",
        )
        .await
        .unwrap();

    // Act
    loa_tracker::migrate(&pool).await.unwrap();

    // Assert
    let left: Vec<String> = client
        .query("SELECT notification_id FROM tracker.outbox", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, ["waiting-1"]);
}

#[tokio::test]
async fn the_outbox_backlog_counts_the_waiting_rows_and_the_age_of_the_oldest() {
    // Arrange: a tracker that plans but never relays; one receipt waits.
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(false)).await;
    let empty = loa_tracker::relay::backlog(&app.pool).await.unwrap();
    broker
        .publish(&event(
            "evt-backlog",
            &dossier_code("0301"),
            2,
            "2026-11-28T09:30:00+07:00",
        ))
        .await;
    app.wait_applied(&["evt-backlog"]).await;
    // The planned row is made older, as if the relay had been stuck for ten minutes.
    let client = app.pool.get().await.unwrap();
    client
        .execute(
            "UPDATE tracker.outbox SET created_at = now() - interval '10 minutes'",
            &[],
        )
        .await
        .unwrap();

    // Act
    let waiting = loa_tracker::relay::backlog(&app.pool).await.unwrap();

    // Assert
    assert_eq!(empty.rows, 0);
    assert_eq!(empty.oldest_seconds, 0.0, "nothing waits, nothing is old");
    assert_eq!(waiting.rows, 1);
    assert!(
        (600.0..660.0).contains(&waiting.oldest_seconds),
        "{waiting:?}"
    );
    app.stop().await;
}
