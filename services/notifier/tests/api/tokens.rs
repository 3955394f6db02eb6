use crate::helpers::{receipt_request, spawn_app};
use loa_notifier::{tokens::TokenManager, zalo::ZaloClient};
use loa_platform::Secret;
use std::time::Duration;

#[tokio::test]
async fn the_configured_refresh_token_is_only_a_seed_and_the_rotated_one_is_stored() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let request = receipt_request("HS-0101");
    app.publish(&request).await;
    app.delivery_with_status(&request.notification_id, "sent")
        .await;

    // Assert
    let (access, refresh) = app.stored_tokens("demo").await;
    assert!(access.is_some());
    assert_ne!(refresh, "demo-refresh-token");
}

#[tokio::test]
async fn an_access_token_expired_mid_stream_is_refreshed_and_the_rotated_refresh_token_is_stored() {
    // Arrange: one message sent with the first token.
    let app = spawn_app().await;
    let first = receipt_request("HS-0102");
    app.publish(&first).await;
    app.delivery_with_status(&first.notification_id, "sent")
        .await;
    let (access_before, refresh_before) = app.stored_tokens("demo").await;

    // Act: Zalo revokes the access token; the next message meets -124.
    app.expire_tokens().await;
    let second = receipt_request("HS-0103");
    app.publish(&second).await;

    // Assert
    let (_, attempts, ..) = app
        .delivery_with_status(&second.notification_id, "sent")
        .await;
    assert_eq!(attempts, 1, "refreshed and resent within one attempt");
    let (access_after, refresh_after) = app.stored_tokens("demo").await;
    assert_ne!(access_after, access_before);
    assert_ne!(refresh_after, refresh_before);
    assert_eq!(app.messages_for(&second.notification_id).await.len(), 1);
}

#[tokio::test]
async fn many_sends_meeting_an_expired_token_share_one_refresh() {
    // Arrange
    let app = spawn_app().await;
    let first = receipt_request("HS-0104");
    app.publish(&first).await;
    app.delivery_with_status(&first.notification_id, "sent")
        .await;
    let (_, refresh_before) = app.stored_tokens("demo").await;
    app.expire_tokens().await;

    // Act: a batch of concurrent sends all meet the revoked token.
    let requests: Vec<_> = (0..40)
        .map(|i| receipt_request(&format!("HS-05{i:02}")))
        .collect();
    app.publish_many(&requests).await;

    // Assert: a second refresh with the same single-use token would have been refused
    // and cost those messages an attempt.
    for r in &requests {
        let (_, attempts, ..) = app.delivery_with_status(&r.notification_id, "sent").await;
        assert_eq!(attempts, 1);
    }
    let (_, refresh_after) = app.stored_tokens("demo").await;
    assert_ne!(refresh_after, refresh_before);
    assert_eq!(app.sandbox_messages().await.len(), 41);
}

#[tokio::test]
async fn two_replicas_replacing_the_same_refused_token_refresh_it_once() {
    // Arrange: two token managers with their own caches share one database, like two
    // notifier processes.
    let app = spawn_app().await;
    let (Some(current), refresh_before) = app.stored_tokens("demo").await else {
        panic!("the notifier refreshed at start-up");
    };
    let zalo = ZaloClient::new(Duration::from_secs(3)).unwrap();
    let replica = |_: u8| {
        TokenManager::new(
            app.pool.clone(),
            zalo.clone(),
            &app.tenants,
            Duration::from_secs(18_000),
        )
    };
    let (a, b) = (replica(1), replica(2));
    app.expire_tokens().await;
    let rejected = Secret::new(current.clone());

    // Act
    let (from_a, from_b) = tokio::join!(
        a.replace_rejected("demo", &rejected),
        b.replace_rejected("demo", &rejected)
    );

    // Assert: the loser of the row lock saw the winner's token instead of spending the
    // (now dead) refresh token again.
    let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
    assert_eq!(from_a, from_b);
    assert_ne!(from_a.expose(), current);
    let (stored_access, refresh_after) = app.stored_tokens("demo").await;
    assert_eq!(stored_access.as_deref(), Some(from_a.expose()));
    assert_ne!(refresh_after, refresh_before);
}
