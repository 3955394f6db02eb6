//! `POST /zalo/webhook`: signatures, freshness, deduplication, receipts moving
//! deliveries on, subscribers and chat lookups.

use crate::helpers::{receipt_request, spawn_app, TestApp, PATIENCE, PHONE};
use loa_platform::testing::eventually;
use serde_json::{json, Value};

const DEMO_APP: &str = "1000000000000000001";
const DEMO_OA: &str = "2000000000000000001";
const OTHER_APP: &str = "1000000000000000002";

const HOUR_MS: i64 = 3_600_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The demo tenant's OA secret key, as the notifier is configured.
fn oa_secret(app: &TestApp, tenant: &str) -> String {
    app.tenants
        .get(tenant)
        .expect("tenant")
        .zalo
        .oa_secret_key
        .expose()
        .to_owned()
}

/// Signs `body` as Zalo does for `app_id` with `secret`.
fn signature(app_id: &str, raw: &[u8], body: &Value, secret: &str) -> String {
    loa_zalo_sandbox::webhook_signature(
        app_id,
        raw,
        body["timestamp"].as_str().expect("timestamp"),
        secret,
    )
}

/// Posts raw bytes with an optional signature header.
async fn post_raw(app: &TestApp, raw: Vec<u8>, signature: Option<String>) -> reqwest::Response {
    let mut request = app
        .http
        .post(format!("{}/zalo/webhook", app.address))
        .header("content-type", "application/json")
        .body(raw);
    if let Some(signature) = signature {
        request = request.header("X-ZEvent-Signature", signature);
    }
    request.send().await.expect("notifier answers")
}

/// Posts `body` signed for the demo tenant, as the sandbox would.
async fn post_signed(app: &TestApp, body: &Value) -> reqwest::Response {
    let raw = serde_json::to_vec(body).unwrap();
    let app_id = body["app_id"].as_str().unwrap_or(DEMO_APP);
    let tenant = if app_id == OTHER_APP { "other" } else { "demo" };
    let sig = signature(app_id, &raw, body, &oa_secret(app, tenant));
    post_raw(app, raw, Some(sig)).await
}

fn zns_received(msg_id: &str, tracking_id: &str, at_ms: i64) -> Value {
    json!({
        "app_id": DEMO_APP, "oa_id": DEMO_OA,
        "sender": {"id": DEMO_OA}, "recipient": {"id": PHONE},
        "event_name": "user_received_message",
        "message": {"msg_id": msg_id, "tracking_id": tracking_id, "delivery_time": at_ms.to_string()},
        "timestamp": at_ms.to_string(),
    })
}

fn oa_received(msg_id: &str, at_ms: i64) -> Value {
    json!({
        "app_id": DEMO_APP, "oa_id": DEMO_OA,
        "sender": {"id": DEMO_OA}, "recipient": {"id": "7000000000000000001"},
        "event_name": "user_received_message",
        "message": {"msg_id": msg_id},
        "timestamp": at_ms.to_string(),
    })
}

fn seen(msg_id: &str, at_ms: i64) -> Value {
    json!({
        "app_id": DEMO_APP, "oa_id": DEMO_OA,
        "sender": {"id": DEMO_OA}, "recipient": {"id": PHONE},
        "event_name": "user_seen_message",
        "message": {"msg_ids": [msg_id]},
        "timestamp": at_ms.to_string(),
    })
}

/// Points the sandbox's webhooks at this notifier.
async fn point_sandbox_at_notifier(app: &TestApp) {
    let r = app
        .http
        .post(format!("{}/_sandbox/webhook", app.sandbox_url))
        .json(&json!({"url": format!("{}/zalo/webhook", app.address)}))
        .send()
        .await
        .expect("sandbox answers");
    assert!(r.status().is_success());
}

/// Sends a receipt notification for `dossier_code` and waits until it is sent;
/// returns (notification id, Zalo msg id).
async fn send_one(app: &TestApp, dossier_code: &str) -> (String, String) {
    let request = receipt_request(dossier_code);
    app.publish(&request).await;
    let (.., msg_id) = app
        .delivery_with_status(&request.notification_id, "sent")
        .await;
    (
        request.notification_id,
        msg_id.expect("a sent delivery has a msg id"),
    )
}

/// The only delivery of a dossier, as the deliveries API shows it.
async fn delivery_view(app: &TestApp, dossier_code: &str) -> Value {
    let r = app
        .get_deliveries(&format!("?dossier_code={dossier_code}"), Some("demo-admin"))
        .await;
    assert_eq!(r.status(), 200);
    let mut body: Value = r.json().await.unwrap();
    body["deliveries"][0].take()
}

/// Waits until the deliveries API shows the dossier's delivery with `status`.
async fn view_with_status(app: &TestApp, dossier_code: &str, status: &str) -> Value {
    match eventually(PATIENCE, || async {
        let d = delivery_view(app, dossier_code).await;
        (d["status"] == status).then_some(d)
    })
    .await
    {
        Ok(d) => d,
        Err(_) => panic!(
            "the delivery of {dossier_code} never became {status}: {}",
            delivery_view(app, dossier_code).await
        ),
    }
}

fn history_statuses(view: &Value) -> Vec<String> {
    view["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_owned())
        .collect()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let client = app.pool.get().await.unwrap();
    client.query_one(sql, &[]).await.unwrap().get(0)
}

async fn error_field(response: reqwest::Response) -> Value {
    let body: Value = response.json().await.unwrap();
    body["error"]["field"].clone()
}

#[tokio::test]
async fn a_signed_receipt_moves_a_sent_delivery_to_delivered_then_seen() {
    // Arrange: the sandbox sends its receipts to the notifier.
    let app = spawn_app().await;
    point_sandbox_at_notifier(&app).await;

    // Act: the sandbox accepts the message and emits its signed ZNS receipt.
    let (_, msg_id) = send_one(&app, "HS-0401").await;
    let delivered = view_with_status(&app, "HS-0401", "delivered").await;
    let response = post_signed(&app, &seen(&msg_id, now_ms())).await;

    // Assert
    assert_eq!(response.status(), 200);
    assert!(delivered["delivered_at"].is_string());
    assert_eq!(history_statuses(&delivered), ["sent", "delivered"]);
    let view = view_with_status(&app, "HS-0401", "seen").await;
    assert!(view["seen_at"].is_string());
    assert_eq!(view["delivered_at"], delivered["delivered_at"]);
    assert_eq!(history_statuses(&view), ["sent", "delivered", "seen"]);
    assert_eq!(view["history"][1]["detail"]["msg_id"], msg_id.as_str());
    // The receipt was shaped as Zalo's: no `oa_id`, the tenant found by `app_id`.
    let client = app.pool.get().await.unwrap();
    let receipt: Value = client
        .query_one(
            "SELECT body FROM notifier.webhook_events WHERE event_name = 'user_received_message'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(receipt.get("oa_id").is_none(), "{receipt}");
    assert_eq!(receipt["app_id"], DEMO_APP);
}

#[tokio::test]
async fn a_recorded_send_shows_in_the_history_without_a_history_row_of_its_own() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let (id, msg_id) = send_one(&app, "HS-0420").await;

    // Assert: the delivery row is the entry (one row fewer per message on the hot path).
    let view = delivery_view(&app, "HS-0420").await;
    assert_eq!(history_statuses(&view), ["sent"]);
    assert_eq!(view["history"][0]["detail"]["msg_id"], msg_id.as_str());
    assert_eq!(view["history"][0]["detail"]["channel"], "zns");
    assert_eq!(view["history"][0]["at"], view["sent_at"]);
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT count(*) FROM notifier.delivery_events WHERE notification_id = '{id}'"
            )
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_receipt_sets_delivered_at_to_zalos_delivery_time() {
    // Arrange
    let app = spawn_app().await;
    let (id, msg_id) = send_one(&app, "HS-0402").await;
    let delivery_time = now_ms() - 60_000;

    // Act
    let response = post_signed(&app, &zns_received(&msg_id, &id, delivery_time)).await;

    // Assert
    assert_eq!(response.status(), 200);
    let view = delivery_view(&app, "HS-0402").await;
    assert_eq!(view["status"], "delivered");
    let at = chrono::DateTime::parse_from_rfc3339(view["delivered_at"].as_str().unwrap()).unwrap();
    assert_eq!(at.timestamp_millis(), delivery_time);
}

#[tokio::test]
async fn a_forged_or_missing_signature_is_refused_with_401_and_has_no_effect() {
    // Arrange
    let app = spawn_app().await;
    let (id, msg_id) = send_one(&app, "HS-0403").await;
    let body = zns_received(&msg_id, &id, now_ms());
    let raw = serde_json::to_vec(&body).unwrap();

    // Act
    let forged = post_raw(
        &app,
        raw.clone(),
        Some(signature(DEMO_APP, &raw, &body, "not-the-oa-secret-key")),
    )
    .await;
    let unsigned = post_raw(&app, raw.clone(), None).await;
    let mut tampered_body = body.clone();
    tampered_body["message"]["msg_id"] = json!("someone-elses-msg");
    let tampered = post_raw(
        &app,
        serde_json::to_vec(&tampered_body).unwrap(),
        Some(signature(DEMO_APP, &raw, &body, &oa_secret(&app, "demo"))),
    )
    .await;

    // Assert
    for response in [forged, unsigned, tampered] {
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_signature");
        assert_eq!(body["error"]["field"], "X-ZEvent-Signature");
    }
    assert_eq!(app.delivery(&id).await.unwrap().0, "sent");
    assert_eq!(
        count(&app, "SELECT count(*) FROM notifier.webhook_events").await,
        0
    );
    let metrics = app.metrics().await;
    assert!(metrics
        .lines()
        .any(|l| l.starts_with("loa_notifier_webhooks_total")
            && l.contains(r#"outcome="bad_signature""#)
            && l.contains(r#"tenant="demo""#)
            && l.contains(r#"event="user_received_message""#)));
}

#[tokio::test]
async fn a_stale_or_future_timestamp_is_refused_with_401_naming_the_field() {
    // Arrange
    let app = spawn_app().await;
    let (id, msg_id) = send_one(&app, "HS-0404").await;

    // Act
    let stale = post_signed(&app, &zns_received(&msg_id, &id, now_ms() - 25 * HOUR_MS)).await;
    let future = post_signed(&app, &zns_received(&msg_id, &id, now_ms() + 10 * 60_000)).await;

    // Assert
    for response in [stale, future] {
        assert_eq!(response.status(), 401);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "stale_timestamp");
        assert_eq!(body["error"]["field"], "timestamp");
    }
    assert_eq!(app.delivery(&id).await.unwrap().0, "sent");
}

#[tokio::test]
async fn a_receipt_redelivered_hours_late_with_its_original_timestamp_is_applied_once() {
    // Arrange: Zalo could not reach us when the receipt was first due; it redelivers
    // the same body (same timestamp) hours later, then once more.
    let app = spawn_app().await;
    let (id, msg_id) = send_one(&app, "HS-0411").await;
    let delivered_at = now_ms() - 5 * HOUR_MS;
    let body = zns_received(&msg_id, &id, delivered_at);

    // Act
    let late = post_signed(&app, &body).await;
    let again = post_signed(&app, &body).await;

    // Assert
    assert_eq!(late.status(), 200);
    assert_eq!(again.status(), 200);
    let view = delivery_view(&app, "HS-0411").await;
    assert_eq!(view["status"], "delivered");
    assert_eq!(history_statuses(&view), ["sent", "delivered"]);
    let at = chrono::DateTime::parse_from_rfc3339(view["delivered_at"].as_str().unwrap()).unwrap();
    assert_eq!(at.timestamp_millis(), delivered_at);
}

#[tokio::test]
async fn a_webhook_from_an_unknown_app_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let mut body = oa_received("m-unknown-app", now_ms());
    body["app_id"] = json!("1999999999999999999");
    let raw = serde_json::to_vec(&body).unwrap();
    let sig = signature("1999999999999999999", &raw, &body, "whatever");

    // Act
    let response = post_raw(&app, raw, Some(sig)).await;

    // Assert
    assert_eq!(response.status(), 403);
    assert_eq!(error_field(response).await, "app_id");
}

#[tokio::test]
async fn a_replayed_webhook_has_one_effect_and_is_still_answered_200() {
    // Arrange
    let app = spawn_app().await;
    let (id, msg_id) = send_one(&app, "HS-0405").await;
    let body = zns_received(&msg_id, &id, now_ms());

    // Act
    let first = post_signed(&app, &body).await;
    let replay = post_signed(&app, &body).await;

    // Assert
    assert_eq!(first.status(), 200);
    assert_eq!(replay.status(), 200);
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["duplicate"], true);
    let view = delivery_view(&app, "HS-0405").await;
    assert_eq!(history_statuses(&view), ["sent", "delivered"]);
    assert_eq!(
        count(&app, "SELECT count(*) FROM notifier.webhook_events").await,
        1
    );
}

#[tokio::test]
async fn a_late_receipt_never_moves_a_seen_delivery_back() {
    // Arrange: the seen event overtakes the receipt.
    let app = spawn_app().await;
    let (id, msg_id) = send_one(&app, "HS-0406").await;
    let t = now_ms();
    assert_eq!(post_signed(&app, &seen(&msg_id, t)).await.status(), 200);

    // Act
    let late = post_signed(&app, &zns_received(&msg_id, &id, t - 1_000)).await;

    // Assert: still seen; the receipt only fills delivered_at.
    assert_eq!(late.status(), 200);
    let view = delivery_view(&app, "HS-0406").await;
    assert_eq!(view["status"], "seen");
    assert!(view["delivered_at"].is_string() && view["seen_at"].is_string());
    assert_eq!(history_statuses(&view), ["sent", "seen"]);
}

#[tokio::test]
async fn a_receipt_that_overtakes_the_senders_record_is_applied_once_the_delivery_is_recorded() {
    // Arrange: one delivery still leased by its sender, one whose msg id is not yet
    // recorded (an OA receipt names only the msg id).
    let app = spawn_app().await;
    let (leased, leased_msg) = send_one(&app, "HS-0407").await;
    let (unrecorded, _) = send_one(&app, "HS-0408").await;
    let client = app.pool.get().await.unwrap();
    client
        .execute(
            "UPDATE notifier.deliveries SET status = 'sending', lease_until = now() + interval '1 hour'
              WHERE notification_id = $1",
            &[&leased],
        )
        .await
        .unwrap();

    // Act
    let r1 = post_signed(&app, &zns_received(&leased_msg, &leased, now_ms())).await;
    let r2 = post_signed(&app, &oa_received("m-not-recorded-yet", now_ms())).await;

    // Assert: both wait, untouched, until the sender records.
    assert_eq!(r1.status(), 200);
    assert_eq!(r2.status(), 200);
    assert_eq!(app.delivery(&leased).await.unwrap().0, "sending");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM notifier.webhook_events WHERE outcome = 'pending'"
        )
        .await,
        2
    );
    client
        .execute(
            "UPDATE notifier.deliveries SET status = 'sent', lease_until = NULL WHERE notification_id = $1",
            &[&leased],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE notifier.deliveries SET zalo_msg_id = 'm-not-recorded-yet' WHERE notification_id = $1",
            &[&unrecorded],
        )
        .await
        .unwrap();
    app.delivery_with_status(&leased, "delivered").await;
    app.delivery_with_status(&unrecorded, "delivered").await;
    eventually(PATIENCE, || async {
        (count(
            &app,
            "SELECT count(*) FROM notifier.webhook_events WHERE outcome = 'applied'",
        )
        .await
            == 2)
            .then_some(())
    })
    .await
    .expect("both receipts are applied");
}

#[tokio::test]
async fn a_receipt_signed_for_another_tenant_does_not_touch_this_tenants_deliveries() {
    // Arrange
    let app = spawn_app().await;
    let (id, msg_id) = send_one(&app, "HS-0409").await;
    let mut body = zns_received(&msg_id, &id, now_ms());
    body["app_id"] = json!(OTHER_APP);

    // Act
    let response = post_signed(&app, &body).await;

    // Assert: accepted for `other`, but matches none of its deliveries.
    assert_eq!(response.status(), 200);
    assert_eq!(app.delivery(&id).await.unwrap().0, "sent");
}

#[tokio::test]
async fn follow_then_unfollow_updates_the_subscribers() {
    // Arrange
    let app = spawn_app().await;
    point_sandbox_at_notifier(&app).await;
    let subscriber = || async {
        let client = app.pool.get().await.ok()?;
        let row = client
            .query_opt(
                "SELECT following, phone FROM notifier.subscribers
                  WHERE tenant = 'demo' AND zalo_user_id = 'u-7001'",
                &[],
            )
            .await
            .ok()??;
        Some((row.get::<_, bool>(0), row.get::<_, Option<String>>(1)))
    };

    // Act + Assert: follow (the webhook carries no phone).
    let r = app
        .http
        .post(format!("{}/_sandbox/users/u-7001/follow", app.sandbox_url))
        .json(&json!({"phone": "0903123456"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let followed = eventually(PATIENCE, || async {
        subscriber().await.filter(|(following, _)| *following)
    })
    .await
    .expect("the follow is recorded");
    assert_eq!(followed.1, None);

    // Act + Assert: unfollow.
    let r = app
        .http
        .post(format!(
            "{}/_sandbox/users/u-7001/unfollow",
            app.sandbox_url
        ))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    eventually(PATIENCE, || async {
        subscriber().await.filter(|(following, _)| !*following)
    })
    .await
    .expect("the unfollow is recorded");
}

#[tokio::test]
async fn an_older_follow_event_arriving_late_does_not_undo_an_unfollow() {
    // Arrange
    let app = spawn_app().await;
    let t = now_ms();
    let event = |name: &str, at: i64| {
        json!({"app_id": DEMO_APP, "oa_id": DEMO_OA, "event_name": name,
               "follower": {"id": "u-7003"}, "user_id_by_app": "u-7003",
               "source": "oa_profile", "timestamp": at.to_string()})
    };

    // Act
    assert_eq!(post_signed(&app, &event("unfollow", t)).await.status(), 200);
    assert_eq!(
        post_signed(&app, &event("follow", t - 5_000))
            .await
            .status(),
        200
    );

    // Assert
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM notifier.subscribers WHERE zalo_user_id = 'u-7003' AND NOT following"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_shared_phone_is_stored_normalised() {
    // Arrange
    let app = spawn_app().await;
    let body = json!({"app_id": DEMO_APP, "oa_id": DEMO_OA, "event_name": "user_submit_info",
        "sender": {"id": "u-7004"}, "recipient": {"id": DEMO_OA},
        "info": {"name": "Nguyễn Thị Hoàng Anh", "phone": "0903 123 456"},
        "timestamp": now_ms().to_string()});

    // Act
    let response = post_signed(&app, &body).await;

    // Assert: the phone is on the subscriber, not in the stored event.
    assert_eq!(response.status(), 200);
    let client = app.pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT phone FROM notifier.subscribers WHERE tenant = 'demo' AND zalo_user_id = 'u-7004'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some(PHONE));
    let stored: Value = client
        .query_one("SELECT body FROM notifier.webhook_events", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!stored.to_string().contains("123 456"));
}

#[tokio::test]
async fn a_phone_shared_through_the_sandbox_lets_a_phone_only_request_go_by_oa() {
    // Arrange: a citizen follows the OA, then shares their phone with it.
    let app = spawn_app().await;
    point_sandbox_at_notifier(&app).await;
    for (path, body) in [
        ("follow", json!({})),
        (
            "submit_info",
            json!({"name": "Nguyễn Thị Hoàng Anh", "phone": "0903 123 456"}),
        ),
    ] {
        let r = app
            .http
            .post(format!("{}/_sandbox/users/u-7010/{path}", app.sandbox_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    eventually(PATIENCE, || async {
        (count(
            &app,
            "SELECT count(*) FROM notifier.subscribers
              WHERE zalo_user_id = 'u-7010' AND following AND phone = '84903123456'",
        )
        .await
            == 1)
            .then_some(())
    })
    .await
    .expect("the follow and the shared phone are recorded");

    // Act: a request that names only the phone.
    let (id, _) = send_one(&app, "HS-0412").await;

    // Assert: it went by the OA, to the user who shared that phone.
    let sent = app.messages_for(&id).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["channel"], "oa_template");
    assert_eq!(sent[0]["user_id"], "u-7010");
    let stored: Value = app
        .pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT body FROM notifier.webhook_events WHERE event_name = 'user_submit_info'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored["info"], "redacted");
}

#[tokio::test]
async fn a_rating_from_the_sandbox_is_accepted_and_kept_for_the_ratings_feature() {
    // Arrange
    let app = spawn_app().await;
    point_sandbox_at_notifier(&app).await;
    let (id, msg_id) = send_one(&app, "HS-0413").await;

    // Act: the citizen rates the message, and Zalo sends the event once more.
    for _ in 0..2 {
        let r = app
            .http
            .post(format!(
                "{}/_sandbox/messages/{msg_id}/feedback",
                app.sandbox_url
            ))
            .json(&json!({"rate": 4, "note": "Cán bộ hướng dẫn tận tình",
                          "feedbacks": ["Đúng hẹn"]}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    // Assert: one rating, tied to our notification; the event itself keeps no note.
    let rating = eventually(PATIENCE, || async {
        let client = app.pool.get().await.ok()?;
        client
            .query_opt(
                "SELECT tracking_id, rating, note, feedbacks FROM notifier.citizen_feedback
                  WHERE tenant = 'demo' AND msg_id = $1",
                &[&msg_id],
            )
            .await
            .ok()?
            .map(|r| {
                (
                    r.get::<_, Option<String>>(0),
                    r.get::<_, Option<i16>>(1),
                    r.get::<_, String>(2),
                    r.get::<_, Value>(3),
                )
            })
    })
    .await
    .expect("the rating is recorded");
    assert_eq!(
        rating,
        (
            Some(id),
            Some(4),
            "Cán bộ hướng dẫn tận tình".to_owned(),
            json!(["Đúng hẹn"])
        )
    );
    eventually(PATIENCE, || async {
        let client = app.pool.get().await.ok()?;
        let rows = client
            .query(
                "SELECT outcome, body FROM notifier.webhook_events WHERE event_name = 'user_feedback'",
                &[],
            )
            .await
            .ok()?;
        let sandbox_stats: Value = app
            .http
            .get(format!("{}/_sandbox/stats", app.sandbox_url))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        // Both posts answered (the sandbox counts only 2xx as sent), one row applied.
        (rows.len() == 1
            && rows[0].get::<_, String>(0) == "applied"
            && rows[0].get::<_, Value>(1)["message"]["note"] == "redacted"
            && sandbox_stats["webhooks_failed"] == 0
            && sandbox_stats["webhooks_sent"].as_u64() >= Some(3))
        .then_some(())
    })
    .await
    .expect("the rating event is stored once, without its note");
}

#[tokio::test]
async fn a_tra_cuu_chat_message_is_kept_as_a_lookup() {
    // Arrange
    let app = spawn_app().await;
    point_sandbox_at_notifier(&app).await;

    // Act
    for text in ["Tra cứu HS-0410", "xin chào"] {
        let r = app
            .http
            .post(format!("{}/_sandbox/users/u-7002/text", app.sandbox_url))
            .json(&json!({ "text": text }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    // Assert: both are stored, one is a lookup (the other is a text, below).
    eventually(PATIENCE, || async {
        (count(
            &app,
            "SELECT count(*) FROM notifier.webhook_events WHERE event_name = 'user_send_text'",
        )
        .await
            == 2)
            .then_some(())
    })
    .await
    .expect("both messages are recorded");
    let client = app.pool.get().await.unwrap();
    let rows = client
        .query(
            "SELECT zalo_user_id, dossier_code, kind FROM notifier.citizen_messages WHERE kind = 'lookup'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "u-7002");
    assert_eq!(rows[0].get::<_, String>(1), "HS-0410");
    assert_eq!(rows[0].get::<_, String>(2), "lookup");
}

/// The user writes `text` to the OA through the sandbox (which then counts them as
/// having interacted); returns the sandbox's answer, with the webhook it sent.
async fn citizen_writes(app: &TestApp, user: &str, text: &str) -> Value {
    let r = app
        .http
        .post(format!("{}/_sandbox/users/{user}/text", app.sandbox_url))
        .json(&json!({ "text": text }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    r.json().await.unwrap()
}

/// The sandbox's consultation messages to `user`.
async fn consultation_texts(app: &TestApp, user: &str) -> Vec<String> {
    app.sandbox_messages()
        .await
        .into_iter()
        .filter(|m| m["channel"] == "oa_cs" && m["user_id"] == user)
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_citizens_other_texts_are_kept_once_sanitized_and_cut_and_only_the_first_of_the_day_is_answered(
) {
    // Arrange
    let app = spawn_app().await;
    point_sandbox_at_notifier(&app).await;
    let user = "7000000000000000071";
    let dirty = format!(
        "Cho tôi hỏi\u{200B} \u{202E}thủ tục\u{202C} cấp lại\u{0} sổ đỏ\u{FEFF}.\n{}",
        "ạ".repeat(2100)
    );
    let later = json!({
        "app_id": DEMO_APP, "oa_id": DEMO_OA, "event_name": "user_send_text",
        "sender": {"id": user}, "recipient": {"id": DEMO_OA},
        "message": {"msg_id": "text-later", "text": dirty},
        "timestamp": now_ms().to_string(),
    });

    let r = app
        .http
        .post(format!("{}/_sandbox/users/{user}/follow", app.sandbox_url))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    // Act: a first text through the sandbox, a second one (long, with invisible and
    // control characters) straight from "Zalo", which then redelivers it.
    let first = citizen_writes(&app, user, "Xin chào cán bộ, tôi cần hỏi về hồ sơ đất đai").await;
    let first_msg_id = first["msg_id"].as_str().unwrap().to_owned();
    eventually(PATIENCE, || async {
        (count(
            &app,
            "SELECT count(*) FROM notifier.citizen_messages WHERE kind = 'text'",
        )
        .await
            == 1)
            .then_some(())
    })
    .await
    .expect("the first text is kept");
    let second = post_signed(&app, &later).await;
    let replayed = post_signed(&app, &later).await;

    // Assert: two rows, the second sanitized and cut, nothing stored twice.
    assert_eq!(second.status(), 200);
    assert_eq!(replayed.status(), 200);
    let client = app.pool.get().await.unwrap();
    let rows = client
        .query(
            "SELECT msg_id, zalo_user_id, body, body_truncated, outcome
               FROM notifier.citizen_messages WHERE kind = 'text' ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].get::<_, String>(0), first_msg_id);
    assert_eq!(rows[0].get::<_, String>(1), user);
    assert_eq!(
        rows[0].get::<_, String>(2),
        "Xin chào cán bộ, tôi cần hỏi về hồ sơ đất đai"
    );
    assert!(!rows[0].get::<_, bool>(3));
    assert_eq!(rows[0].get::<_, String>(4), "forward");
    let body: String = rows[1].get(2);
    assert_eq!(rows[1].get::<_, String>(0), "text-later");
    assert!(
        body.starts_with("Cho tôi hỏi thủ tục cấp lại sổ đỏ.\nạạ"),
        "{}",
        &body[..60]
    );
    assert_eq!(body.chars().count(), 2000);
    assert!(rows[1].get::<_, bool>(3), "the text says it was cut");
    assert_eq!(rows[1].get::<_, String>(4), "answered_today");
    // The stored webhooks keep no words of the citizen's.
    let stored: Vec<Value> = client
        .query(
            "SELECT body FROM notifier.webhook_events WHERE event_name = 'user_send_text'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|b| b["message"]["text"] == "redacted"));

    // What Loa answered: one consultation message, to the first text only.
    let reply_id = loa_contracts::citizen::chat_reply_id("demo", &first_msg_id);
    app.delivery_with_status(&reply_id, "sent").await;
    let texts = consultation_texts(&app, user).await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].contains("tra cứu <mã hồ sơ>"), "{}", texts[0]);
    assert_eq!(
        app.delivery(&loa_contracts::citizen::chat_reply_id("demo", "text-later"))
            .await,
        None
    );
}

#[tokio::test]
async fn invalid_json_and_missing_fields_are_refused_with_400_naming_the_field() {
    // Arrange
    let app = spawn_app().await;
    let mut no_msg_id = oa_received("x", now_ms());
    no_msg_id["message"] = json!({});

    // Act
    let not_json = post_raw(&app, b"{\"app_id\": ".to_vec(), Some("mac=00".into())).await;
    let missing = post_signed(&app, &no_msg_id).await;

    // Assert
    assert_eq!(not_json.status(), 400);
    assert_eq!(error_field(not_json).await, "body");
    assert_eq!(missing.status(), 400);
    assert_eq!(error_field(missing).await, "message.msg_id");
}

#[tokio::test]
async fn webhook_events_past_their_retention_are_pruned_but_pending_ones_are_kept() {
    // Arrange
    let app = spawn_app().await;
    let client = app.pool.get().await.unwrap();
    client
        .batch_execute(
            "INSERT INTO notifier.webhook_events
                    (tenant, event_name, dedup_key, occurred_at, received_at, body, outcome)
             VALUES ('demo', 'follow', 'old', now(), now() - interval '8 days', '{}', 'applied'),
                    ('demo', 'follow', 'new', now(), now() - interval '1 day', '{}', 'applied'),
                    ('demo', 'user_seen_message', 'old-pending', now(), now() - interval '8 days',
                     '{}', 'pending')",
        )
        .await
        .unwrap();

    // Act
    let deleted = loa_notifier::zalo_webhooks::prune_events(&app.pool)
        .await
        .unwrap();

    // Assert
    assert_eq!(deleted, 1);
    let rows = client
        .query(
            "SELECT dedup_key FROM notifier.webhook_events ORDER BY dedup_key",
            &[],
        )
        .await
        .unwrap();
    let keys: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(keys, ["new", "old-pending"]);
}
