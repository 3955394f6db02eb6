use crate::helpers::{receipt_request, spawn_app, spawn_app_configured};
use loa_notifier::zalo::{sealing, TokenManager, ZaloClient};
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
            app.keyring.clone(),
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

#[tokio::test]
async fn zalo_tokens_are_sealed_in_the_table_and_never_stored_in_clear() {
    // Arrange
    let app = spawn_app().await;
    let request = receipt_request("HS-0111");

    // Act
    app.publish(&request).await;
    app.delivery_with_status(&request.notification_id, "sent")
        .await;

    // Assert
    let (Some(sealed_access), sealed_refresh) = app.sealed_tokens("demo").await else {
        panic!("an access token is stored");
    };
    let (Some(access), refresh) = app.stored_tokens("demo").await else {
        unreachable!()
    };
    for (sealed, plain) in [(&sealed_access, &access), (&sealed_refresh, &refresh)] {
        assert!(sealed.starts_with("sealed:v1:dev:"), "{sealed}");
        assert!(!sealed.contains(plain.as_str()));
    }
}

#[tokio::test]
async fn tokens_stored_in_clear_before_sealing_are_sealed_when_a_notifier_starts() {
    // Arrange: the row as an older notifier left it, in clear.
    let mut app = spawn_app().await;
    let first = receipt_request("HS-0112");
    app.publish(&first).await;
    app.delivery_with_status(&first.notification_id, "sent")
        .await;
    let (Some(access), refresh) = app.stored_tokens("demo").await else {
        panic!("an access token is stored");
    };
    let client = app.pool.get().await.unwrap();
    client
        .execute(
            "UPDATE notifier.oauth_tokens SET access_token = $1, refresh_token = $2
              WHERE tenant = 'demo'",
            &[&access, &refresh],
        )
        .await
        .unwrap();

    // Act: a notifier (a replica after the upgrade) starts.
    app.spawn_replica(|_| {}).await;

    // Assert: sealed, the same tokens inside, and sending goes on with them.
    let (sealed_access, sealed_refresh) = app.sealed_tokens("demo").await;
    assert!(sealed_refresh.starts_with("sealed:v1:dev:"));
    assert!(sealed_access.unwrap().starts_with("sealed:v1:dev:"));
    assert_eq!(app.stored_tokens("demo").await, (Some(access), refresh));
    let second = receipt_request("HS-0113");
    app.publish(&second).await;
    app.delivery_with_status(&second.notification_id, "sent")
        .await;
}

#[tokio::test]
async fn after_a_key_rotation_every_token_is_resealed_and_the_old_key_is_no_longer_needed() {
    // Arrange: a notifier sealing with k1.
    let (k1, k2) = (sealing::new_key("k1"), sealing::new_key("k2"));
    let configured = k1.clone();
    let mut app = spawn_app_configured(
        |_| {},
        move |s| s.token_keys = Some(Secret::new(configured)),
    )
    .await;
    let first = receipt_request("HS-0114");
    app.publish(&first).await;
    app.delivery_with_status(&first.notification_id, "sent")
        .await;
    let before = app.stored_tokens("demo").await;
    assert!(app
        .sealed_tokens("demo")
        .await
        .1
        .starts_with("sealed:v1:k1:"));

    // Act: k2 first, k1 kept to open the old values; reseal (`loa secrets rotate-key`).
    let rotated = sealing::Keyring::parse(&format!("{k2},{k1}"), "notifier.token_keys").unwrap();
    let done = sealing::reseal_all(&app.pool, &rotated).await.unwrap();
    let again = sealing::reseal_all(&app.pool, &rotated).await.unwrap();

    // Assert: every row under k2, same tokens; a notifier with k2 alone starts and
    // sends, and one that lost the key the tokens are under refuses to start.
    assert_eq!((done.resealed, again.resealed, again.current), (2, 0, 2));
    let (access, refresh) = app.sealed_tokens("demo").await;
    assert!(refresh.starts_with("sealed:v1:k2:"));
    assert!(access.unwrap().starts_with("sealed:v1:k2:"));
    assert_eq!(
        rotated
            .open("demo", "refresh_token", &refresh)
            .unwrap()
            .expose(),
        before.1
    );
    let only_k2 = k2.clone();
    app.spawn_replica(move |s| s.token_keys = Some(Secret::new(only_k2)))
        .await;
    let second = receipt_request("HS-0115");
    app.publish(&second).await;
    app.delivery_with_status(&second.notification_id, "sent")
        .await;
    let common = loa_platform::CommonSettings {
        amqp_url: app.env.amqp_url.clone(),
        database_url: app.env.database_url.clone(),
        ..loa_platform::CommonSettings::default()
    };
    let mut stale = crate::helpers::test_settings();
    stale.token_keys = Some(Secret::new(k1));
    let refused = match loa_notifier::Application::build(&common, &stale, app.tenants.clone()).await
    {
        Ok(_) => panic!("a notifier without the tokens' key must not start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(refused.contains("key `k2`"), "{refused}");
}

/// `loa_notifier_token_refresh_failures_total{tenant="demo",class="needs_operator"}`.
async fn needs_operator_refresh_failures(app: &crate::helpers::TestApp) -> u64 {
    let metrics = app.metrics().await;
    metrics
        .lines()
        .find(|l| {
            l.starts_with("loa_notifier_token_refresh_failures_total{")
                && l.contains(r#"tenant="demo""#)
                && l.contains(r#"class="needs_operator""#)
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_token_answer_without_tokens_pauses_the_tenant_instead_of_being_retried() {
    // Arrange: the access token is revoked, and Zalo answers the refresh with an HTTP
    // 200 that holds no tokens and no error code (a spent or revoked refresh token).
    let app = spawn_app().await;
    let failures_before = needs_operator_refresh_failures(&app).await;
    app.expire_tokens().await;
    app.inject_fault(serde_json::json!({"api": "oauth", "no_tokens": true}))
        .await;
    let request = receipt_request("HS-0106");

    // Act
    app.publish(&request).await;

    // Assert: held and the tenant paused (an operator must re-authorise), not retried
    // as a passing failure until it is dead-lettered.
    let (_, _, _, error, _) = app
        .delivery_with_status(&request.notification_id, "held")
        .await;
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("without an access token")),
        "{error:?}"
    );
    let pause = app.pause_state().await;
    assert_eq!(pause["paused"], true);
    assert!(needs_operator_refresh_failures(&app).await > failures_before);
    assert!(app.messages_for(&request.notification_id).await.is_empty());
    assert!(app.take_dead_letters().await.is_empty());
}
