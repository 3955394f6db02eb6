//! The console's notifier API: overview, deliveries needing attention, resend and
//! cancel of one delivery, citizen messages; always the caller's tenant only.

use crate::helpers::{receipt_request, spawn_app, TestApp, PHONE};
use chrono::{Duration, Utc};
use loa_platform::testing::eventually;
use serde_json::{json, Value};

const PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

async fn get(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let r = app
        .http
        .get(format!("{}{path}", app.address))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn post(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let r = app
        .http
        .post(format!("{}{path}", app.address))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Publishes a receipt due in an hour and waits until the notifier parked it.
async fn deferred_receipt(app: &TestApp, code: &str) -> String {
    let mut request = receipt_request(code);
    request.not_before = Some(Utc::now() + Duration::hours(1));
    app.publish(&request).await;
    app.delivery_with_status(&request.notification_id, "deferred")
        .await;
    request.notification_id
}

async fn history(app: &TestApp, id: &str) -> Vec<String> {
    let client = app.pool.get().await.unwrap();
    client
        .query(
            "SELECT status FROM notifier.delivery_events WHERE notification_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn a_deferred_delivery_resent_by_an_admin_goes_out_now() {
    // Arrange
    let app = spawn_app().await;
    let id = deferred_receipt(&app, "HS-A101").await;
    let (_, listed) = get(&app, "/v1/deliveries?status=deferred", "demo-admin").await;

    // Act
    let (status, body) = post(&app, &format!("/v1/deliveries/{id}/resend"), "demo-admin").await;

    // Assert
    assert_eq!(listed["deliveries"][0]["notification_id"], id.as_str());
    assert_eq!(listed["deliveries"][0]["can_resend"], true);
    assert_eq!(listed["deliveries"][0]["can_cancel"], true);
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("due_now")),
        "{body}"
    );
    app.delivery_with_status(&id, "sent").await;
    let sent = app
        .wait_messages_for(&id, "the resent delivery reached the sandbox")
        .await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["phone"], PHONE);
    assert!(history(&app, &id)
        .await
        .contains(&"resend_requested".to_owned()));
}

#[tokio::test]
async fn a_cancelled_delivery_is_never_sent_and_says_why() {
    // Arrange
    let app = spawn_app().await;
    let id = deferred_receipt(&app, "HS-A102").await;

    // Act
    let (status, body) = post(&app, &format!("/v1/deliveries/{id}/cancel"), "demo-admin").await;
    let (again, _) = post(&app, &format!("/v1/deliveries/{id}/cancel"), "demo-admin").await;
    app.clock.set_now(Utc::now() + Duration::hours(2));
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;

    // Assert
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("cancelled")),
        "{body}"
    );
    assert_eq!(again, 409, "a cancelled delivery cannot be cancelled twice");
    let (state, .., error, _) = app.delivery(&id).await.unwrap();
    assert_eq!(
        (state.as_str(), error.as_deref()),
        ("cancelled", Some("Cancelled by an admin"))
    );
    assert!(app.messages_for(&id).await.is_empty(), "nothing was sent");
    assert!(history(&app, &id).await.contains(&"cancelled".to_owned()));
    let (_, cancelled) = get(&app, "/v1/deliveries?status=cancelled", "demo-admin").await;
    assert_eq!(cancelled["deliveries"][0]["notification_id"], id.as_str());
    assert_eq!(cancelled["deliveries"][0]["can_resend"], false);
    assert_eq!(cancelled["deliveries"][0]["can_cancel"], false);
    let (_, failed) = get(&app, "/v1/deliveries?status=failed", "demo-admin").await;
    assert_eq!(
        failed["deliveries"].as_array().map(Vec::len),
        Some(0),
        "a cancellation is not a failure: {failed}"
    );
}

#[tokio::test]
async fn a_cancelled_delivery_whose_request_comes_again_is_still_not_sent() {
    // Arrange: cancelled while parked; then the tracker's relay publishes the same
    // request again (at-least-once), due now.
    let app = spawn_app().await;
    let id = deferred_receipt(&app, "HS-A103").await;
    let (status, _) = post(&app, &format!("/v1/deliveries/{id}/cancel"), "demo-admin").await;
    assert_eq!(status, 200);
    let mut again = receipt_request("HS-A103");
    again.notification_id = id.clone();

    // Act
    app.publish(&again).await;
    let mut later = receipt_request("HS-A104");
    later.notification_id = format!("{id}-later");
    app.publish(&later).await;

    // Assert: a request published after it went out, so the first was handled.
    app.wait_messages_for(&later.notification_id, "the later request is sent")
        .await;
    assert!(
        app.messages_for(&id).await.is_empty(),
        "the cancelled delivery stays unsent"
    );
    let (state, ..) = app.delivery(&id).await.unwrap();
    assert_eq!(state, "cancelled");
}

#[tokio::test]
async fn another_tenants_delivery_is_not_found_and_stays_as_it_was() {
    let app = spawn_app().await;
    let id = deferred_receipt(&app, "HS-A103").await;
    let (resend, _) = post(&app, &format!("/v1/deliveries/{id}/resend"), "other-admin").await;
    let (cancel, _) = post(&app, &format!("/v1/deliveries/{id}/cancel"), "other-admin").await;
    let (_, listed) = get(&app, "/v1/deliveries?status=deferred", "other-admin").await;
    assert_eq!((resend, cancel), (404, 404));
    assert_eq!(listed["deliveries"], json!([]));
    assert_eq!(app.delivery(&id).await.unwrap().0, "deferred");
}

#[tokio::test]
async fn a_bad_delivery_state_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let (status, body) = get(&app, "/v1/deliveries?status=lost", "demo-admin").await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("status"))
    );
    let (status, body) = get(&app, "/v1/deliveries", "demo-admin").await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("dossier_code"))
    );
}

#[tokio::test]
async fn a_dossiers_deliveries_refuse_the_paging_of_a_listing_by_state_naming_it() {
    // Found by Schemathesis: `limit` and `after` were ignored beside `dossier_code`.
    let app = spawn_app().await;
    let (status, body) = get(
        &app,
        "/v1/deliveries?dossier_code=HS-1&limit=100000",
        "demo-admin",
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("limit"))
    );
    let (status, body) = get(&app, "/v1/deliveries?dossier_code=HS-1", "demo-admin").await;
    assert_eq!((status, body["deliveries"].clone()), (200, json!([])));
}

#[tokio::test]
async fn the_overview_counts_todays_deliveries_with_the_quota_rate_pause_and_token() {
    // Arrange
    let app = spawn_app().await;
    let request = receipt_request("HS-A104");
    app.publish(&request).await;
    app.delivery_with_status(&request.notification_id, "sent")
        .await;

    // Act
    let (status, overview) = get(&app, "/v1/overview", "demo-admin").await;
    let (_, other) = get(&app, "/v1/overview", "other-admin").await;

    // Assert
    assert_eq!(status, 200, "{overview}");
    assert_eq!(overview["deliveries_today"]["sent"], 1);
    assert_eq!(overview["deliveries_today"]["failed"], 0);
    assert_eq!(overview["rate"]["limit_per_second"], 50.0);
    assert_eq!(overview["rate"]["sent_last_minute"], 1);
    assert_eq!(overview["pause"]["paused"], false);
    assert!(
        overview["token"]["access_expires_at"].is_string(),
        "{overview}"
    );
    assert!(overview["quota"]["remaining"].is_number(), "{overview}");
    assert_eq!(other["deliveries_today"]["sent"], 0);
}

#[tokio::test]
async fn citizen_messages_are_listed_newest_first_with_the_sender_masked() {
    let app = spawn_app().await;
    let client = app.pool.get().await.unwrap();
    client
        .batch_execute(
            "INSERT INTO notifier.citizen_messages (tenant, zalo_user_id, kind, dossier_code, msg_id, received_at)
             VALUES ('demo', '3512873524511234567', 'lookup', 'HS-1', 'm1', now() - interval '1 minute'),
                    ('demo', '3512873524511239999', 'lookup', 'HS-2', 'm2', now()),
                    ('other', '3512873524511230000', 'lookup', 'HS-3', 'm3', now())",
        )
        .await
        .unwrap();
    let (status, page) = get(&app, "/v1/citizen-messages?limit=1", "demo-admin").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["messages"][0]["dossier_code"], "HS-2");
    assert_eq!(page["messages"][0]["zalo_user"], "…9999");
    let before = page["next_before_id"].as_i64().unwrap();
    let (_, next) = get(
        &app,
        &format!("/v1/citizen-messages?before_id={before}"),
        "demo-admin",
    )
    .await;
    assert_eq!(next["messages"][0]["dossier_code"], "HS-1");
    assert_eq!(next["messages"].as_array().unwrap().len(), 1);
    assert!(!page.to_string().contains("3512873524511239999"));
}

#[tokio::test]
async fn citizen_messages_are_filtered_by_kind_and_a_text_comes_with_its_words_and_cut_flag() {
    // Arrange: a lookup and two texts of demo's, a text of another tenant's.
    let app = spawn_app().await;
    let client = app.pool.get().await.unwrap();
    client
        .batch_execute(
            "INSERT INTO notifier.citizen_messages
                    (tenant, zalo_user_id, kind, dossier_code, msg_id, received_at, outcome, forwarded_at, body, body_truncated)
             VALUES ('demo', '3512873524511234567', 'lookup', 'HS-1', 'k1', now(), 'forward', now(), NULL, false),
                    ('demo', '3512873524511234567', 'text', NULL, 'k2', now(), 'forward', now(), '<b>Xin chào</b>', false),
                    ('demo', '3512873524511234567', 'text', NULL, 'k3', now(), 'answered_today', NULL, 'Dài quá', true),
                    ('other', '3512873524511230000', 'text', NULL, 'k4', now(), 'forward', now(), 'Của tỉnh khác', false)",
        )
        .await
        .unwrap();

    // Act
    let (status, texts) = get(&app, "/v1/citizen-messages?kind=text", "demo-admin").await;
    let (_, lookups) = get(&app, "/v1/citizen-messages?kind=lookup", "demo-admin").await;
    let (_, both) = get(&app, "/v1/citizen-messages", "demo-admin").await;
    let (bad, refusal) = get(&app, "/v1/citizen-messages?kind=rating", "demo-admin").await;

    // Assert
    assert_eq!(status, 200, "{texts}");
    let texts = texts["messages"].as_array().unwrap();
    assert_eq!(texts.len(), 2);
    assert_eq!(texts[0]["text"], "Dài quá");
    assert_eq!(texts[0]["text_truncated"], true);
    assert_eq!(texts[0]["outcome"], "answered_today");
    assert_eq!(texts[1]["text"], "<b>Xin chào</b>");
    assert_eq!(texts[1]["kind"], "text");
    assert_eq!(lookups["messages"].as_array().unwrap().len(), 1);
    assert_eq!(lookups["messages"][0]["text"], Value::Null);
    assert_eq!(both["messages"].as_array().unwrap().len(), 3);
    assert!(!both.to_string().contains("Của tỉnh khác"));
    assert_eq!(bad, 400);
    assert_eq!(refusal["error"]["field"], "kind");
}

#[tokio::test]
async fn an_authorization_code_zalo_refuses_is_a_422_naming_the_code_and_keeps_the_tokens() {
    // Arrange
    let app = spawn_app().await;
    let request = receipt_request("HS-A105");
    app.publish(&request).await;
    app.delivery_with_status(&request.notification_id, "sent")
        .await;
    let before = app.stored_tokens("demo").await;

    // Act
    let post_body = |body: Value| {
        app.http
            .post(format!("{}/v1/zalo/authorization", app.address))
            .bearer_auth("demo-admin")
            .json(&body)
            .send()
    };
    let refused = post_body(json!({"code": "zac1.forged", "code_verifier": "x".repeat(43)}))
        .await
        .unwrap();
    let missing = post_body(json!({"code": "zac1.forged"})).await.unwrap();
    let (status, body) = (
        refused.status().as_u16(),
        refused.json::<Value>().await.unwrap(),
    );

    // Assert
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "code");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("-14001"),
        "{body}"
    );
    assert_eq!(missing.status(), 422);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"]["field"],
        "code_verifier"
    );
    assert_eq!(app.stored_tokens("demo").await, before);
}

#[tokio::test]
async fn a_failed_delivery_resent_by_an_admin_replays_its_dead_letter_and_goes_out() {
    // Arrange: Zalo refuses the recipient once (-108: no fallback, no retry).
    let app = spawn_app().await;
    app.inject_fault(json!({"api": "zns", "error_code": -108, "rate": 1.0, "count": 1}))
        .await;
    let request = receipt_request("HS-A106");
    app.publish(&request).await;
    let id = request.notification_id.clone();
    app.delivery_with_status(&id, "failed").await;
    let listed = eventually(PATIENCE, || async {
        let (_, page) = get(&app, "/v1/deliveries?status=failed", "demo-admin").await;
        (page["deliveries"][0]["can_resend"] == true).then_some(page)
    })
    .await
    .expect("the failed delivery's dead letter is stored");

    // Act
    let (other, _) = post(&app, &format!("/v1/deliveries/{id}/resend"), "other-admin").await;
    let (status, body) = post(&app, &format!("/v1/deliveries/{id}/resend"), "demo-admin").await;

    // Assert
    assert_eq!(listed["deliveries"][0]["notification_id"], id.as_str());
    assert!(listed["deliveries"][0]["last_error"].is_string());
    assert_eq!(other, 404);
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("replayed")),
        "{body}"
    );
    app.delivery_with_status(&id, "sent").await;
    let sent = app
        .wait_messages_for(&id, "the replayed delivery reached the sandbox")
        .await;
    assert_eq!(sent.len(), 1);
    let (again, _) = post(&app, &format!("/v1/deliveries/{id}/resend"), "demo-admin").await;
    assert_eq!(again, 409, "a sent delivery is not resent");
}
