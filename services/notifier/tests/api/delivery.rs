use crate::helpers::{receipt_request, request_for, spawn_app, spawn_app_with, PHONE};
use loa_contracts::NotificationKind;
use loa_platform::amqp::topology;
use serde_json::json;

#[tokio::test]
async fn a_request_becomes_exactly_one_zns_message_with_its_template_and_params() {
    // Arrange
    let app = spawn_app().await;
    let request = receipt_request("HS-0001");

    // Act
    app.publish(&request).await;

    // Assert
    let (status, attempts, _, error, msg_id) = app
        .delivery_with_status(&request.notification_id, "sent")
        .await;
    assert_eq!((status.as_str(), attempts, error), ("sent", 1, None));
    app.wait_until_settled().await;
    let messages = app.messages_for(&request.notification_id).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m["channel"], "zns");
    assert_eq!(m["phone"], PHONE);
    assert_eq!(
        m["template_id"],
        NotificationKind::Receipt.default_template_id()
    );
    assert_eq!(m["template_data"], json!(request.params));
    assert_eq!(m["msg_id"].as_str(), msg_id.as_deref());
}

#[tokio::test]
async fn the_same_request_published_twice_is_sent_once() {
    // Arrange
    let app = spawn_app().await;
    let request = receipt_request("HS-0002");

    // Act: two copies at once (one batch), then a third after it was sent.
    app.publish(&request).await;
    app.publish(&request).await;
    app.delivery_with_status(&request.notification_id, "sent")
        .await;
    app.wait_until_settled().await;
    app.publish(&request).await;
    app.wait_until_settled().await;

    // Assert
    assert_eq!(app.messages_for(&request.notification_id).await.len(), 1);
    let (_, attempts, ..) = app.delivery(&request.notification_id).await.unwrap();
    assert_eq!(attempts, 1);
}

#[tokio::test]
async fn transient_errors_are_retried_until_zalo_accepts() {
    // Arrange
    let app = spawn_app().await;
    app.inject_fault(json!({"api": "zns", "error_code": -100, "rate": 1.0, "count": 2}))
        .await;
    let request = receipt_request("HS-0003");

    // Act
    app.publish(&request).await;

    // Assert
    let (_, attempts, ..) = app
        .delivery_with_status(&request.notification_id, "sent")
        .await;
    assert_eq!(attempts, 3, "two refusals, then the send");
    app.wait_until_settled().await;
    assert_eq!(app.messages_for(&request.notification_id).await.len(), 1);
}

#[tokio::test]
async fn a_permanent_recipient_error_is_recorded_failed_and_dead_lettered_with_its_reason() {
    // Arrange
    let app = spawn_app().await;
    app.inject_fault(json!({"api": "zns", "error_code": -108, "rate": 1.0, "count": 1}))
        .await;
    let request = receipt_request("HS-0004");

    // Act
    app.publish(&request).await;

    // Assert
    let (_, attempts, code, error, msg_id) = app
        .delivery_with_status(&request.notification_id, "failed")
        .await;
    assert_eq!((attempts, code, msg_id), (1, Some(-108), None));
    assert!(error.unwrap().starts_with("zalo error -108"));
    let letters = app.dead_letters().await;
    assert_eq!(letters.len(), 1);
    let reason = letters[0].0.clone().unwrap();
    assert!(reason.starts_with("zalo error -108: "), "{reason}");
    assert!(app.messages_for(&request.notification_id).await.is_empty());
}

#[tokio::test]
async fn an_unknown_template_is_recorded_failed_and_dead_lettered_with_zalo_error_109() {
    // Arrange
    let app = spawn_app_with(|tenants| {
        tenants[0]
            .zalo
            .templates
            .insert("receipt".into(), "999999".into());
    })
    .await;
    let request = receipt_request("HS-0005");

    // Act
    app.publish(&request).await;

    // Assert
    let (_, _, code, ..) = app
        .delivery_with_status(&request.notification_id, "failed")
        .await;
    assert_eq!(code, Some(-109));
    let reason = app.dead_letters().await[0].0.clone().unwrap();
    assert!(reason.starts_with("zalo error -109"), "{reason}");
}

#[tokio::test]
async fn a_kind_without_a_configured_template_is_dead_lettered_with_a_clear_reason() {
    // Arrange
    let app = spawn_app_with(|tenants| {
        tenants[0].zalo.templates.remove("receipt");
    })
    .await;
    let request = receipt_request("HS-0006");

    // Act
    app.publish(&request).await;

    // Assert
    let reason = app.dead_letters().await[0].0.clone().unwrap();
    assert_eq!(
        reason,
        "no Zalo template configured for kind `receipt` in tenant `demo`"
    );
    let (status, ..) = app.delivery(&request.notification_id).await.unwrap();
    assert_eq!(status, "failed");
    assert!(app.sandbox_messages().await.is_empty());
}

#[tokio::test]
async fn a_rating_request_of_a_tenant_without_a_rating_template_is_skipped_not_dead_lettered() {
    // Arrange
    let app = spawn_app_with(|tenants| {
        tenants[0].zalo.templates.remove("rating_request");
    })
    .await;
    let request = request_for("demo", "HS-0016", NotificationKind::RatingRequest);
    let receipt = receipt_request("HS-0017");

    // Act
    app.publish(&request).await;
    app.publish(&receipt).await;

    // Assert
    let (_, _, _, reason, _) = app
        .delivery_with_status(&request.notification_id, "skipped")
        .await;
    assert_eq!(reason.as_deref(), Some("no_rating_template"));
    app.delivery_with_status(&receipt.notification_id, "sent")
        .await;
    assert!(app.take_dead_letters().await.is_empty());
    let sent = app.sandbox_messages().await;
    assert_eq!(sent.len(), 1, "only the receipt reached Zalo: {sent:#?}");
}

#[tokio::test]
async fn an_undecodable_request_is_dead_lettered_and_the_rest_of_the_batch_is_sent() {
    // Arrange
    let app = spawn_app().await;
    let request = receipt_request("HS-0007");

    // Act
    app.publish_raw(
        "transactional.demo.receipt",
        b"{\"type\":\"nonsense\"}".to_vec(),
        "junk",
    )
    .await;
    app.publish(&request).await;

    // Assert
    let letters = app.dead_letters().await;
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].0.as_deref().unwrap().starts_with("undecodable"),
        "{letters:?}"
    );
    app.delivery_with_status(&request.notification_id, "sent")
        .await;
    app.wait_until_settled().await;
    assert_eq!(app.env.queue_depth(topology::Q_DEAD).unwrap(), 0);
}
