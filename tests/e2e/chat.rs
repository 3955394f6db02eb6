//! Chat lookups answered on Zalo: a citizen writes "tra cứu <mã>" to the OA (through
//! the sandbox, which signs and posts the webhook), the notifier relays it to the
//! tracker on RabbitMQ, the tracker answers, and the notifier sends the answer as an
//! OA consultation message the sandbox records.

use crate::helpers::{receipt_event, test_settings, TestSystem};
use loa_platform::testing::{eventually, TestEnv};
use serde_json::{json, Value};
use std::time::Duration;

const CODE: &str = "000.00.06.H56-261128-0101";

async fn start() -> TestSystem {
    let env = TestEnv::new().await.expect("PostgreSQL and RabbitMQ");
    let mut settings = test_settings(&env);
    settings.services.notifier.chat_lookups_per_window = 3;
    let sys = TestSystem::start_with(env, settings).await;
    sys.point_webhooks_at_notifier(true).await;
    sys
}

async fn user(sys: &TestSystem, user_id: &str, action: &str, body: Value) -> Value {
    sandbox_control(sys, &format!("users/{user_id}/{action}"), body).await
}

async fn query_i64(sys: &TestSystem, sql: &str, params: &[&str]) -> i64 {
    let pool = loa_platform::db::pool(&sys.env.database_url, 1).unwrap();
    let client = pool.get().await.unwrap();
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    client.query_one(sql, &params).await.unwrap().get(0)
}

/// A follower of the demo OA who shared `phone` (the notifier has recorded it).
async fn follower_with_phone(sys: &TestSystem, user_id: &str, phone: &str) {
    user(sys, user_id, "follow", json!({})).await;
    user(sys, user_id, "submit_info", json!({ "phone": phone })).await;
    let phone = loa_contracts::PhoneNumber::parse(phone).unwrap();
    eventually(Duration::from_secs(20), || async {
        (query_i64(
            sys,
            "SELECT count(*) FROM notifier.subscribers WHERE zalo_user_id = $1 AND phone = $2",
            &[user_id, phone.as_str()],
        )
        .await
            == 1)
            .then_some(())
    })
    .await
    .expect("the notifier recorded the shared phone");
}

/// The consultation messages the sandbox accepted for `user_id`, once `n` are there.
async fn replies(sys: &TestSystem, user_id: &str, n: usize) -> Vec<String> {
    let get = || async {
        let m: Vec<Value> = sys
            .client
            .get(format!(
                "{}/_sandbox/messages?user_id={user_id}&channel=oa_cs",
                sys.sandbox
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        m.iter()
            .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(30), || async {
        (get().await.len() >= n).then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("{n} chat replies reached {user_id}"));
    // Any extra (duplicate) reply would come right after.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    get().await
}

/// A dossier received for the phone 0903 123 456, its receipt sent.
async fn dossier(sys: &TestSystem) {
    let r = sys
        .post_event("demo-token", &receipt_event("chat-e1", CODE))
        .await;
    assert_eq!(r.status(), 202);
    sys.settle_messages(1).await;
}

#[tokio::test]
async fn a_follower_who_shared_the_dossier_s_phone_gets_its_status_appointment_and_link_in_chat() {
    // Arrange
    let sys = start().await;
    dossier(&sys).await;
    follower_with_phone(&sys, "u-linked", "0903123456").await;

    // Act: in lowercase, without diacritics, extra spaces; then the code alone.
    user(
        &sys,
        "u-linked",
        "text",
        json!({"text": format!("  TRA cuu   {CODE} ")}),
    )
    .await;
    user(
        &sys,
        "u-linked",
        "text",
        json!({"text": CODE.to_lowercase()}),
    )
    .await;

    // Assert
    let texts = replies(&sys, "u-linked", 2).await;
    assert_eq!(texts.len(), 2, "{texts:#?}");
    for text in &texts {
        assert!(
            text.starts_with(&format!("Hồ sơ {CODE}: Hồ sơ đã được tiếp nhận.")),
            "{text}"
        );
        assert!(text.contains("Ngày hẹn trả kết quả: 03/12/2026."), "{text}");
        assert!(text.contains("/tra-cuu/"), "{text}");
    }
    // Recorded like any delivery, with its own kind and channel.
    assert_eq!(
        query_i64(
            &sys,
            "SELECT count(*) FROM notifier.deliveries
              WHERE kind = 'chat_reply' AND channel = 'oa_cs' AND dossier_code = $1
                AND status IN ('sent', 'delivered', 'seen')",
            &[CODE],
        )
        .await,
        2
    );
    sys.stop().await;
}

#[tokio::test]
async fn a_user_not_linked_to_the_dossier_gets_the_same_polite_reply_as_for_a_dossier_that_does_not_exist(
) {
    // Arrange: this follower shared another phone.
    let sys = start().await;
    dossier(&sys).await;
    follower_with_phone(&sys, "u-stranger", "0912000111").await;

    // Act
    user(
        &sys,
        "u-stranger",
        "text",
        json!({"text": format!("tra cứu {CODE}")}),
    )
    .await;
    user(
        &sys,
        "u-stranger",
        "text",
        json!({"text": "tra cứu 000.00.06.H56-261128-0999"}),
    )
    .await;

    // Assert: nothing about the dossier, and no way to tell it exists.
    let texts = replies(&sys, "u-stranger", 2).await;
    assert_eq!(texts.len(), 2, "{texts:#?}");
    for text in &texts {
        assert!(text.starts_with("Cảm ơn ông/bà đã nhắn tin."), "{text}");
        for secret in [
            "tiếp nhận.",
            "03/12/2026",
            "/tra-cuu/",
            "Trần",
            "Đăng ký khai sinh",
        ] {
            assert!(!text.contains(secret), "{secret:?} in {text}");
        }
    }
    let masked = |t: &str| {
        t.replace(CODE, "<code>")
            .replace("000.00.06.H56-261128-0999", "<code>")
    };
    assert_eq!(masked(&texts[0]), masked(&texts[1]));
    sys.stop().await;
}

#[tokio::test]
async fn lookups_over_the_per_user_limit_are_kept_and_counted_but_not_answered() {
    // Arrange: the limit is 3 lookups per 10 minutes.
    let sys = start().await;
    dossier(&sys).await;
    follower_with_phone(&sys, "u-eager", "0903123456").await;

    // Act
    for _ in 0..5 {
        user(
            &sys,
            "u-eager",
            "text",
            json!({"text": format!("tra cuu {CODE}")}),
        )
        .await;
    }

    // Assert
    let texts = replies(&sys, "u-eager", 3).await;
    assert_eq!(texts.len(), 3, "{texts:#?}");
    eventually(Duration::from_secs(10), || async {
        (query_i64(
            &sys,
            "SELECT count(*) FROM notifier.citizen_messages
              WHERE zalo_user_id = $1 AND outcome = 'rate_limited'",
            &["u-eager"],
        )
        .await
            == 2)
            .then_some(())
    })
    .await
    .expect("two lookups are kept as rate limited");
    let metrics = sys
        .client
        .get(format!(
            "http://127.0.0.1:{}/metrics",
            sys.system.as_ref().unwrap().notifier_port.unwrap()
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains(r#"loa_notifier_chat_lookups_total{outcome="rate_limited",tenant="demo"} 2"#),
        "{metrics}"
    );
    sys.stop().await;
}

#[tokio::test]
async fn huy_still_opts_out_and_is_not_taken_for_a_lookup() {
    // Arrange
    let sys = start().await;
    follower_with_phone(&sys, "u-quiet", "0903123456").await;

    // Act
    user(&sys, "u-quiet", "text", json!({"text": "Huỷ"})).await;

    // Assert
    eventually(Duration::from_secs(20), || async {
        (query_i64(
            &sys,
            "SELECT count(*) FROM notifier.subscribers
              WHERE zalo_user_id = $1 AND opted_out_at IS NOT NULL",
            &["u-quiet"],
        )
        .await
            == 1)
            .then_some(())
    })
    .await
    .expect("the citizen is opted out");
    assert_eq!(
        query_i64(
            &sys,
            "SELECT count(*) FROM notifier.citizen_messages WHERE zalo_user_id = $1",
            &["u-quiet"],
        )
        .await,
        0
    );
    sys.stop().await;
}

#[tokio::test]
async fn a_replayed_lookup_webhook_is_answered_once() {
    // Arrange: the citizen's message, as Zalo signs it, posted twice (Zalo redelivers).
    let sys = start().await;
    dossier(&sys).await;
    follower_with_phone(&sys, "u-replay", "0903123456").await;
    sys.point_webhooks_at_notifier(false).await;
    let written = user(
        &sys,
        "u-replay",
        "text",
        json!({"text": format!("tra cứu {CODE}")}),
    )
    .await;

    // Act
    for _ in 0..3 {
        let r = post_signed(&sys, &written["event"]).await;
        assert_eq!(r.status(), 200);
    }

    // Assert
    let texts = replies(&sys, "u-replay", 1).await;
    assert_eq!(texts.len(), 1, "{texts:#?}");
    sys.stop().await;
}

#[tokio::test]
async fn a_reply_outside_zalo_s_7_day_window_is_recorded_as_skipped_with_its_reason() {
    // Arrange: the citizen's message reaches us, but by the time the answer leaves
    // (the sandbox's clock moved 8 days on) Zalo's window is closed.
    let sys = start().await;
    dossier(&sys).await;
    follower_with_phone(&sys, "u-late", "0903123456").await;
    sys.point_webhooks_at_notifier(false).await;
    let written = user(
        &sys,
        "u-late",
        "text",
        json!({"text": format!("tra cứu {CODE}")}),
    )
    .await;
    let clock = sys
        .client
        .post(format!("{}/_sandbox/clock", sys.sandbox))
        .json(&json!({"offset_secs": 8 * 86_400}))
        .send()
        .await
        .unwrap();
    assert!(clock.status().is_success());

    // Act
    assert_eq!(post_signed(&sys, &written["event"]).await.status(), 200);

    // Assert
    eventually(Duration::from_secs(30), || async {
        (query_i64(
            &sys,
            "SELECT count(*) FROM notifier.deliveries
              WHERE kind = 'chat_reply' AND status = 'skipped' AND last_error_code = -230",
            &[],
        )
        .await
            == 1)
            .then_some(())
    })
    .await
    .expect("the reply is recorded as skipped with Zalo's -230");
    let pool = loa_platform::db::pool(&sys.env.database_url, 1).unwrap();
    let reason: String = pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT last_error FROM notifier.deliveries WHERE kind = 'chat_reply'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(reason, "outside_cs_window");
    sys.stop().await;
}

/// The dossier's receipt, sent by ZNS to 0903 123 456 (nobody follows the OA with
/// that phone), once Zalo's delivery receipt for it reached the notifier: its Zalo
/// message id.
async fn delivered_receipt_zns(sys: &TestSystem) -> String {
    dossier(sys).await;
    let messages = sys.sandbox_messages().await;
    let zns = messages
        .iter()
        .find(|m| m["channel"] == "zns" && m["phone"] == "84903123456")
        .unwrap_or_else(|| panic!("the receipt went by ZNS: {messages:#?}"));
    let msg_id = zns["msg_id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(20), || async {
        (query_i64(
            sys,
            "SELECT count(*) FROM notifier.deliveries WHERE zalo_msg_id = $1 AND status IN ('delivered', 'seen')",
            &[&msg_id],
        )
        .await
            == 1)
            .then_some(())
    })
    .await
    .expect("Zalo's delivery receipt of the ZNS reached the notifier");
    msg_id
}

/// The Zalo users the notifier has linked to 0903 123 456, with how.
async fn links_of_the_dossier_s_phone(sys: &TestSystem) -> Vec<(String, Option<String>)> {
    let pool = loa_platform::db::pool(&sys.env.database_url, 1).unwrap();
    pool.get()
        .await
        .unwrap()
        .query(
            "SELECT zalo_user_id, phone_source FROM notifier.subscribers
              WHERE phone = '84903123456' AND zalo_user_id IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn sandbox_control(sys: &TestSystem, path: &str, body: Value) -> Value {
    let r = sys
        .client
        .post(format!("{}/_sandbox/{path}", sys.sandbox))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_citizen_who_only_received_a_zns_and_tapped_its_button_gets_the_status_in_chat() {
    // Arrange: the citizen follows the OA (it answers in chat only to followers) but
    // never shared a phone with it; the receipt reached their phone by ZNS, and they
    // tapped its button.
    let sys = start().await;
    user(&sys, "u-tapped", "follow", json!({})).await;
    let msg_id = delivered_receipt_zns(&sys).await;
    let tapped = sandbox_control(
        &sys,
        &format!("messages/{msg_id}/click"),
        json!({"user_id": "u-tapped", "title": "Xem chi tiết"}),
    )
    .await;
    assert_eq!(tapped["event"]["sender"]["id"], "u-tapped");
    assert_eq!(tapped["event"]["event_name"], "user_click_response_button");
    eventually(Duration::from_secs(20), || async {
        (!links_of_the_dossier_s_phone(&sys).await.is_empty()).then_some(())
    })
    .await
    .expect("the tap linked the phone the ZNS reached");

    // Act
    user(
        &sys,
        "u-tapped",
        "text",
        json!({"text": format!("tra cứu {CODE}")}),
    )
    .await;

    // Assert
    let texts = replies(&sys, "u-tapped", 1).await;
    assert_eq!(texts.len(), 1, "{texts:#?}");
    assert!(
        texts[0].starts_with(&format!("Hồ sơ {CODE}: Hồ sơ đã được tiếp nhận.")),
        "{}",
        texts[0]
    );
    assert_eq!(
        links_of_the_dossier_s_phone(&sys).await,
        [("u-tapped".to_owned(), Some("zns_interaction".to_owned()))]
    );
    sys.stop().await;
}

#[tokio::test]
async fn a_citizen_who_only_received_the_zns_gets_the_polite_reply() {
    // Arrange: the ZNS was delivered (Zalo's receipt names the phone, not the user),
    // and the citizen (a follower who shared no phone) did nothing with it.
    let sys = start().await;
    user(&sys, "u-reader", "follow", json!({})).await;
    delivered_receipt_zns(&sys).await;

    // Act
    user(
        &sys,
        "u-reader",
        "text",
        json!({"text": format!("tra cứu {CODE}")}),
    )
    .await;

    // Assert
    let texts = replies(&sys, "u-reader", 1).await;
    assert_eq!(texts.len(), 1, "{texts:#?}");
    assert!(
        texts[0].starts_with("Cảm ơn ông/bà đã nhắn tin."),
        "{}",
        texts[0]
    );
    assert!(links_of_the_dossier_s_phone(&sys).await.is_empty());
    sys.stop().await;
}

#[tokio::test]
async fn answers_naming_a_zns_loa_never_sent_another_tenant_s_or_another_tracking_id_link_nothing()
{
    // Arrange: Loa's receipt ZNS was delivered; a receipt and a tap for a message Loa
    // never sent (to the same phone), a tap on Loa's message with a forged tracking
    // id, all signed with the OA's key, and a tap on it signed for another tenant.
    let sys = start().await;
    user(&sys, "u-forger", "follow", json!({})).await;
    let msg_id = delivered_receipt_zns(&sys).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let foreign = "feedfeedfeedfeedfeed";
    let tenants = crate::helpers::test_tenants();
    let app_id = tenants.get("demo").unwrap().zalo.app_id.clone();
    let other_app_id = tenants.get("other").unwrap().zalo.app_id.clone();
    let answer_for = |app_id: &str, msg: &str, tracking: &str, user: &str| {
        json!({"app_id": app_id, "sender": {"id": user}, "recipient": {"id": "2000000000000000001"},
               "user_id_by_app": user, "event_name": "user_click_response_button",
               "message": {"msg_id": msg, "tracking_id": tracking,
                           "button": {"title": "Xem chi tiết", "payload": ""}},
               "timestamp": now})
    };
    let answer = |msg: &str, tracking: &str, user: &str| answer_for(&app_id, msg, tracking, user);
    let foreign_receipt = json!({
        "app_id": app_id, "sender": {"id": "2000000000000000001"}, "recipient": {"id": "84903123456"},
        "event_name": "user_received_message",
        "message": {"msg_id": foreign, "tracking_id": "not-ours", "delivery_time": now},
        "timestamp": now});

    // Act
    assert_eq!(post_signed(&sys, &foreign_receipt).await.status(), 200);
    assert_eq!(
        post_signed(&sys, &answer(foreign, "not-ours", "u-forger"))
            .await
            .status(),
        200
    );
    assert_eq!(
        post_signed(&sys, &answer("0123456789abcdef0123", "", "u-forger"))
            .await
            .status(),
        200
    );
    assert_eq!(
        post_signed(&sys, &answer(&msg_id, "forged-id", "u-forger"))
            .await
            .status(),
        200
    );
    let elsewhere = answer_for(&other_app_id, &msg_id, "", "u-forger");
    assert_eq!(
        post_signed_for(&sys, "other", &elsewhere).await.status(),
        200
    );
    user(
        &sys,
        "u-forger",
        "text",
        json!({"text": format!("tra cứu {CODE}")}),
    )
    .await;

    // Assert
    let texts = replies(&sys, "u-forger", 1).await;
    assert!(
        texts[0].starts_with("Cảm ơn ông/bà đã nhắn tin."),
        "{}",
        texts[0]
    );
    assert!(links_of_the_dossier_s_phone(&sys).await.is_empty());
    assert_eq!(
        query_i64(
            &sys,
            "SELECT count(*) FROM notifier.webhook_events
              WHERE event_name = 'user_click_response_button' AND outcome = 'ignored'",
            &[],
        )
        .await,
        4
    );
    sys.stop().await;
}

/// Posts a webhook body to the notifier signed as the sandbox signs it.
async fn post_signed(sys: &TestSystem, event: &Value) -> reqwest::Response {
    post_signed_for(sys, "demo", event).await
}

/// Posts a webhook body to the notifier signed as `tenant`'s Zalo app.
async fn post_signed_for(sys: &TestSystem, tenant: &str, event: &Value) -> reqwest::Response {
    let tenants = crate::helpers::test_tenants();
    let demo = tenants.get(tenant).unwrap();
    let body = serde_json::to_vec(event).unwrap();
    let signature = loa_zalo_sandbox::webhook_signature(
        &demo.zalo.app_id,
        &body,
        event["timestamp"].as_str().unwrap(),
        demo.zalo.oa_secret_key.expose(),
    );
    let port = sys.system.as_ref().unwrap().notifier_port.unwrap();
    sys.client
        .post(format!("http://127.0.0.1:{port}/zalo/webhook"))
        .header("X-ZEvent-Signature", signature)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}
