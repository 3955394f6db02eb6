use crate::helpers::{
    signature_is_valid, spawn_app, spawn_app_with_receiver, test_settings, WebhookReceiver, PHONE,
};
use loa_zalo_sandbox::SandboxSettings;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn zns_receipts_arrive_at_the_receiver_with_a_valid_signature() {
    // Arrange
    let (app, receiver) = spawn_app_with_receiver(test_settings(), 0).await;
    let token = app.access_token().await;

    // Act
    let answer = app
        .send_zns(&token, &app.zns_body(PHONE, "receipt-1"))
        .await;

    // Assert
    let receipt = receiver
        .wait_for("user_received_message", |b| {
            b["message"]["tracking_id"] == "receipt-1"
        })
        .await;
    assert!(app.signed(&receipt), "{:?}", receipt.headers);
    assert!(!signature_is_valid(
        &receipt,
        app.app_id(),
        "another-secret"
    ));
    let body = receipt.json();
    assert_eq!(body["app_id"], app.app_id());
    assert!(
        body.get("oa_id").is_none(),
        "Zalo's ZNS receipts have no oa_id: {body}"
    );
    assert_eq!(body["sender"]["id"], app.tenant.zalo.oa_id);
    assert_eq!(body["recipient"]["id"], PHONE);
    assert_eq!(body["message"]["msg_id"], answer["data"]["msg_id"]);
    assert!(body["message"]["delivery_time"]
        .as_str()
        .unwrap()
        .parse::<i64>()
        .is_ok());
    assert!(body["timestamp"].is_string());
    app.wait_webhooks_sent(1, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn follow_emits_a_signed_follow_webhook_to_a_url_set_at_run_time() {
    // Arrange: the receiver is only known after the sandbox started.
    let app = spawn_app().await;
    let receiver = WebhookReceiver::spawn(0).await;
    app.control_ok("webhook", json!({"url": receiver.url}))
        .await;

    // Act
    app.follow("7001", Some(json!({"phone": "84903123456"})))
        .await;

    // Assert
    let follow = receiver.wait_for("follow", |_| true).await;
    assert!(app.signed(&follow));
    let body = follow.json();
    assert_eq!(body["follower"]["id"], "7001");
    assert_eq!(body["oa_id"], app.tenant.zalo.oa_id);
    assert_eq!(body["source"], "oa_profile");
    assert!(body.get("sender").is_none());
}

#[tokio::test]
async fn oa_receipts_seen_events_and_user_texts_are_emitted() {
    let settings = SandboxSettings {
        seen_rate: 1.0,
        ..test_settings()
    };
    let (app, receiver) = spawn_app_with_receiver(settings, 0).await;
    let token = app.access_token().await;
    app.follow("7002", None).await;

    let sent = app.send_cs(&token, "7002", "Xin chào").await;
    app.control_ok("users/7002/text", json!({"text": "tra cuu ABC"}))
        .await;

    let msg_id = sent["data"]["message_id"].clone();
    let receipt = receiver
        .wait_for("user_received_message", |b| {
            b["message"]["msg_id"] == msg_id
        })
        .await;
    assert_eq!(receipt.json()["recipient"]["id"], "7002");
    let seen = receiver.wait_for("user_seen_message", |_| true).await;
    assert_eq!(seen.json()["message"]["msg_ids"], json!([msg_id]));
    let text = receiver.wait_for("user_send_text", |_| true).await;
    for event in [&receipt, &seen, &text] {
        assert!(event.json().get("oa_id").is_none(), "{:?}", event.json());
    }
    let body = text.json();
    assert_eq!(body["sender"]["id"], "7002");
    assert_eq!(body["recipient"]["id"], app.tenant.zalo.oa_id);
    assert_eq!(body["message"]["text"], "tra cuu ABC");
    assert_eq!(body["message"]["msg_id"].as_str().unwrap().len(), 20);
    assert!(app.signed(&text));
}

#[tokio::test]
async fn a_user_sharing_their_details_emits_user_submit_info_with_the_phone_as_84() {
    // Arrange
    let (app, receiver) = spawn_app_with_receiver(test_settings(), 0).await;
    app.follow("7004", None).await;

    // Act
    app.control_ok(
        "users/7004/submit_info",
        json!({"name": "Nguyễn Thị Hoàng Anh", "phone": "0903 123 456",
               "full_address": "12 Lê Lợi, phường Bến Nghé"}),
    )
    .await;

    // Assert
    let shared = receiver.wait_for("user_submit_info", |_| true).await;
    assert!(app.signed(&shared));
    let body = shared.json();
    assert_eq!(body["sender"]["id"], "7004");
    assert_eq!(body["recipient"]["id"], app.tenant.zalo.oa_id);
    assert_eq!(body["info"]["phone"], PHONE);
    assert_eq!(body["info"]["name"], "Nguyễn Thị Hoàng Anh");
    assert_eq!(body["info"]["full_address"], "12 Lê Lợi, phường Bến Nghé");
    assert!(body.get("oa_id").is_none());
    assert!(body["timestamp"].is_string());
}

#[tokio::test]
async fn a_citizen_rating_a_zns_message_emits_user_feedback_naming_the_message() {
    // Arrange
    let (app, receiver) = spawn_app_with_receiver(test_settings(), 0).await;
    let msg_id = app.send_receipt("rated-1").await;

    // Act
    app.control_ok(
        &format!("messages/{msg_id}/feedback"),
        json!({"rate": 5, "note": "Cán bộ hướng dẫn tận tình",
               "feedbacks": ["Đúng hẹn", "Thân thiện"]}),
    )
    .await;

    // Assert
    let rated = receiver.wait_for("user_feedback", |_| true).await;
    assert!(app.signed(&rated));
    let body = rated.json();
    assert_eq!(body["app_id"], app.app_id());
    assert_eq!(body["oa_id"], app.tenant.zalo.oa_id);
    assert_eq!(body["message"]["msg_id"], msg_id.as_str());
    assert_eq!(body["message"]["tracking_id"], "rated-1");
    assert_eq!(body["message"]["rate"], 5);
    assert_eq!(body["message"]["note"], "Cán bộ hướng dẫn tận tình");
    assert_eq!(
        body["message"]["feedbacks"],
        json!(["Đúng hẹn", "Thân thiện"])
    );
    assert!(body["message"]["submit_time"].is_string());
    // From the citizen: the Zalo account of the phone the ZNS reached.
    let rater = body["sender"]["id"].as_str().unwrap();
    assert_eq!(rater.len(), 19, "{rater}");
    assert!(rater.bytes().all(|b| b.is_ascii_digit()), "{rater}");
}

#[tokio::test]
async fn a_citizen_tapping_a_zns_button_emits_user_click_response_button_from_the_citizen() {
    // Arrange
    let (app, receiver) = spawn_app_with_receiver(test_settings(), 0).await;
    let msg_id = app.send_receipt("tapped-1").await;
    let receipt = receiver
        .wait_for("user_received_message", |_| true)
        .await
        .json();

    // Act
    app.control_ok(
        &format!("messages/{msg_id}/click"),
        json!({"user_id": "7005", "title": "Xem chi tiết"}),
    )
    .await;
    let default_user = app
        .control_json(&format!("messages/{msg_id}/click"), json!({}))
        .await;

    // Assert: the receipt names the phone only; the tap names the user and the ZNS.
    assert_eq!(receipt["recipient"]["id"], PHONE);
    assert!(receipt
        .get("sender")
        .is_some_and(|s| s["id"] == app.tenant.zalo.oa_id));
    let tapped = receiver
        .wait_for("user_click_response_button", |b| {
            b["sender"]["id"] == "7005"
        })
        .await;
    assert!(app.signed(&tapped));
    let body = tapped.json();
    assert_eq!(body["sender"]["id"], "7005");
    assert_eq!(body["recipient"]["id"], app.tenant.zalo.oa_id);
    assert_eq!(body["message"]["msg_id"], msg_id.as_str());
    assert_eq!(body["message"]["tracking_id"], "tapped-1");
    assert_eq!(body["message"]["button"]["title"], "Xem chi tiết");
    assert!(body["timestamp"].is_string());
    // Without a user named, the same account for the same phone every time.
    let again = app
        .control_json(&format!("messages/{msg_id}/click"), json!({}))
        .await;
    assert_eq!(default_user["user_id"], again["user_id"]);
    assert_eq!(
        default_user["event"]["sender"]["id"],
        default_user["user_id"]
    );
}

#[tokio::test]
async fn a_failed_webhook_post_is_retried() {
    let (app, receiver) = spawn_app_with_receiver(test_settings(), 1).await;

    app.follow("7003", None).await;

    let follow = receiver.wait_for("follow", |_| true).await;
    assert_eq!(follow.headers["num_retry"], "1");
    let stats = app.wait_webhooks_sent(1, Duration::from_secs(5)).await;
    assert_eq!(stats["webhooks_failed"], 0);
}

#[tokio::test]
async fn simulated_user_endpoints_refuse_bad_input_naming_the_field() {
    let app = spawn_app().await;

    let bad_phone = app.control("users/1/follow", json!({"phone": "12"})).await;
    let no_text = app.control("users/1/text", json!({"text": ""})).await;
    let no_shared_phone = app
        .control("users/1/submit_info", json!({"name": "Anh"}))
        .await;
    let no_such_message = app
        .control("messages/0123456789abcdef0123/feedback", json!({"rate": 5}))
        .await;
    let msg_id = app.send_receipt("r").await;
    let rate_six = app
        .control(&format!("messages/{msg_id}/feedback"), json!({"rate": 6}))
        .await;
    let unknown_app = app
        .client
        .post(format!("{}/_sandbox/users/1/follow?app_id=nope", app.base))
        .send()
        .await
        .unwrap();

    assert_eq!(bad_phone.status(), 422);
    assert_eq!(
        bad_phone.json::<serde_json::Value>().await.unwrap()["error"]["field"],
        "phone"
    );
    assert_eq!(
        no_text.json::<serde_json::Value>().await.unwrap()["error"]["field"],
        "text"
    );
    for (response, status, field) in [
        (no_shared_phone, 422, "phone"),
        (no_such_message, 404, "msg_id"),
        (rate_six, 422, "rate"),
    ] {
        assert_eq!(response.status(), status);
        assert_eq!(
            response.json::<serde_json::Value>().await.unwrap()["error"]["field"],
            field
        );
    }
    assert_eq!(unknown_app.status(), 404);
}
