//! The transactional outbox survives a crash between commit and publish.

use crate::helpers::*;
use loa_contracts::{notification::notification_id, NotificationKind};
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
    assert_eq!(
        first
            .count("SELECT count(*) FROM tracker.outbox WHERE published_at IS NULL")
            .await,
        1
    );
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
        second
            .count("SELECT count(*) FROM tracker.outbox WHERE published_at IS NOT NULL")
            .await,
        1
    );
    // Stopping drains the relay once more; nothing is published twice.
    second.stop().await;
    assert!(broker.notifications().await.is_empty());
}
