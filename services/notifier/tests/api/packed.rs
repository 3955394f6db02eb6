//! Requests the tracker's relay packs into one `notification_batch.v1` message: each
//! is sent, retried or dead-lettered on its own.

use crate::helpers::{receipt_request, spawn_app, TestApp};
use loa_contracts::{Envelope, NotificationBatch, NotificationRequest};
use serde_json::json;

async fn publish_packed(app: &TestApp, requests: &[NotificationRequest]) {
    let body = Envelope::NotificationBatchV1(NotificationBatch {
        tenant: "demo".to_owned(),
        requests: requests.to_vec(),
    })
    .to_bytes();
    app.publish_raw("transactional.demo.batch", body, "batch:test")
        .await;
}

#[tokio::test]
async fn a_packed_delivery_sends_each_request_and_dead_letters_only_the_one_that_cannot_be_sent() {
    // Arrange: two good requests and one without any recipient.
    let app = spawn_app().await;
    let (first, second) = (receipt_request("HS-P001"), receipt_request("HS-P002"));
    let mut nobody = receipt_request("HS-P003");
    nobody.recipient.phone = None;

    // Act
    publish_packed(&app, &[first.clone(), nobody.clone(), second.clone()]).await;

    // Assert: both good ones sent once, the pack acked, one dead letter of its own.
    for request in [&first, &second] {
        app.delivery_with_status(&request.notification_id, "sent")
            .await;
        assert_eq!(app.messages_for(&request.notification_id).await.len(), 1);
    }
    app.wait_until_settled().await;
    let letters = app.dead_letters().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let (reason, body) = &letters[0];
    assert!(
        reason
            .as_deref()
            .unwrap_or_default()
            .contains("neither a phone number nor a Zalo user id"),
        "{reason:?}"
    );
    match Envelope::from_bytes(body).unwrap() {
        Envelope::NotificationRequestV1(r) => assert_eq!(r, nobody),
        other => panic!("the dead letter is the request alone, not {other:?}"),
    }
    assert!(app.messages_for(&nobody.notification_id).await.is_empty());
}

#[tokio::test]
async fn a_request_of_a_packed_delivery_that_fails_for_now_is_retried_alone() {
    // Arrange: Zalo fails the first call only.
    let app = spawn_app().await;
    app.inject_fault(json!({"api": "zns", "error_code": -100, "count": 1}))
        .await;
    let requests: Vec<NotificationRequest> = (0..3)
        .map(|i| receipt_request(&format!("HS-P1{i:02}")))
        .collect();

    // Act
    publish_packed(&app, &requests).await;

    // Assert: every request sent exactly once; one of them after a retry.
    let mut attempts = Vec::new();
    for request in &requests {
        let (_, n, ..) = app
            .delivery_with_status(&request.notification_id, "sent")
            .await;
        attempts.push(n);
        assert_eq!(app.messages_for(&request.notification_id).await.len(), 1);
    }
    attempts.sort_unstable();
    assert_eq!(attempts, [1, 1, 2]);
    app.wait_until_settled().await;
    assert!(app.take_dead_letters().await.is_empty());
}
