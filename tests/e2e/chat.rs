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
    let r = sys
        .client
        .post(format!("{}/_sandbox/users/{user_id}/{action}", sys.sandbox))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{action}: {}", r.status());
    r.json().await.unwrap()
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

/// Posts a webhook body to the notifier signed as the sandbox signs it.
async fn post_signed(sys: &TestSystem, event: &Value) -> reqwest::Response {
    let tenants = crate::helpers::test_tenants();
    let demo = tenants.get("demo").unwrap();
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
