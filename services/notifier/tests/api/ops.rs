use crate::helpers::{receipt_request, spawn_app};
use loa_contracts::Lane;

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    // Arrange
    let app = spawn_app().await;
    let request = receipt_request("HS-0401");
    app.publish(&request).await;
    app.delivery_with_status(&request.notification_id, "sent")
        .await;

    // Act
    let health = app
        .http
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    let ready = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    let metrics = app.metrics().await;

    // Assert
    assert_eq!(health.status(), 200);
    assert_eq!(ready.status(), 200);
    for name in [
        "loa_notifier_deliveries_total",
        "loa_notifier_zalo_requests_total",
        "loa_notifier_zalo_request_duration_seconds",
        "loa_notifier_event_to_send_seconds",
        "loa_notifier_token_expiry_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
    assert!(
        !metrics.contains("84903123456"),
        "no phone number in metrics"
    );
    assert!(!metrics.contains("HS-0401"), "no dossier code in metrics");
}

#[tokio::test]
async fn broadcast_requests_are_sent_from_their_own_lane() {
    // Arrange
    let app = spawn_app().await;
    let mut request = receipt_request("HS-0402");
    request.lane = Lane::Broadcast;

    // Act
    app.publish(&request).await;

    // Assert
    app.delivery_with_status(&request.notification_id, "sent")
        .await;
    assert_eq!(app.messages_for(&request.notification_id).await.len(), 1);
}
