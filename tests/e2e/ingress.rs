//! The AMQP intake path.

use crate::helpers::{receipt_event, TestSystem};
use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable},
    BasicProperties, Connection, ConnectionProperties,
};
use loa_platform::amqp::topology;
use serde_json::{json, Value};
use std::time::Duration;

pub(crate) async fn publish_ingress(amqp_url: &str, token: Option<&str>, body: &[u8]) {
    let conn = Connection::connect(amqp_url, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut headers = FieldTable::default();
    if let Some(t) = token {
        headers.insert("x-loa-token".into(), AMQPValue::LongString(t.into()));
    }
    let confirm = ch
        .basic_publish(
            topology::EX_INGRESS.into(),
            "upstream.demo".into(),
            BasicPublishOptions {
                mandatory: true,
                immediate: false,
            },
            body,
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(headers),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        matches!(confirm, lapin::Confirmation::Ack(None)),
        "{confirm:?}"
    );
}

#[tokio::test]
async fn a_valid_event_published_to_the_ingress_exchange_reaches_the_citizen() {
    let sys = TestSystem::start().await;

    let event = receipt_event("amqp-1", "H56-0101");
    publish_ingress(
        &sys.env.amqp_url,
        Some("demo-token"),
        &serde_json::to_vec(&event).unwrap(),
    )
    .await;

    let messages = sys.settle_messages(1).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["template_data"]["dossier_code"], "H56-0101");
    sys.stop().await;
}

#[tokio::test]
async fn invalid_or_unauthenticated_ingress_messages_are_dead_lettered_with_their_reason() {
    let sys = TestSystem::start().await;
    let mut bad = receipt_event("amqp-bad", "H56-0102");
    bad["status"] = json!(42);

    publish_ingress(
        &sys.env.amqp_url,
        Some("demo-token"),
        &serde_json::to_vec(&bad).unwrap(),
    )
    .await;
    publish_ingress(
        &sys.env.amqp_url,
        None,
        &serde_json::to_vec(&receipt_event("amqp-anon", "H56-0103")).unwrap(),
    )
    .await;
    publish_ingress(&sys.env.amqp_url, Some("demo-token"), b"not json").await;

    // The notifier stores every dead letter (it consumes `loa.dead-letters`).
    let (db, conn) = tokio_postgres::connect(&sys.env.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let reasons: Vec<String> =
        loa_platform::testing::eventually(Duration::from_secs(15), || async {
            let rows = db
                .query(
                    "SELECT reason FROM notifier.dead_letters WHERE source_queue = $1",
                    &[&topology::Q_INGRESS],
                )
                .await
                .ok()?;
            (rows.len() >= 3).then(|| rows.iter().map(|r| r.get(0)).collect())
        })
        .await
        .expect("three dead letters");
    assert!(reasons.iter().any(|r| r.contains("status")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.starts_with("unauthorized")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("invalid_json")),
        "{reasons:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sys.sandbox_messages().await.is_empty());
    sys.stop().await;
}

/// The dead letters `admin_token`'s tenant sees through `GET /v1/dead-letters`.
async fn dead_letters_of(sys: &TestSystem, notifier: &str, admin_token: &str) -> Vec<Value> {
    let page: Value = sys
        .client
        .get(format!("{notifier}/v1/dead-letters"))
        .bearer_auth(admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["dead_letters"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_ingress_dead_letter_is_listed_only_to_the_tenant_whose_token_was_verified() {
    // Arrange
    let sys = TestSystem::start().await;
    let notifier = format!(
        "http://127.0.0.1:{}",
        sys.system.as_ref().unwrap().notifier_port.unwrap()
    );
    let mut for_other = receipt_event("tb-anon", "H56-0111");
    for_other["tenant"] = json!("other");
    let for_demo = receipt_event("tb-foreign", "H56-0112");

    // Act: no token, with a body naming `other`; other's token with a body for `demo`;
    // demo's token with a body that is not JSON.
    publish_ingress(
        &sys.env.amqp_url,
        None,
        &serde_json::to_vec(&for_other).unwrap(),
    )
    .await;
    publish_ingress(
        &sys.env.amqp_url,
        Some("other-token"),
        &serde_json::to_vec(&for_demo).unwrap(),
    )
    .await;
    publish_ingress(&sys.env.amqp_url, Some("demo-token"), b"{not json").await;

    // Assert: each tenant sees only what its own token sent.
    let (db, conn) = tokio_postgres::connect(&sys.env.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows: Vec<(Option<String>, String, Value)> =
        loa_platform::testing::eventually(Duration::from_secs(15), || async {
            let rows = db
                .query(
                    "SELECT tenant, reason, headers FROM notifier.dead_letters ORDER BY id",
                    &[],
                )
                .await
                .ok()?;
            (rows.len() >= 3).then(|| {
                rows.iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2)))
                    .collect()
            })
        })
        .await
        .expect("three dead letters");
    let other = dead_letters_of(&sys, &notifier, "other-admin").await;
    assert_eq!(other.len(), 1, "{other:?}");
    assert_eq!(other[0]["body"]["event_id"], "tb-foreign");
    assert!(other[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("forbidden"));
    let demo = dead_letters_of(&sys, &notifier, "demo-admin").await;
    assert_eq!(demo.len(), 1, "{demo:?}");
    assert!(demo[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("invalid_json"));
    let anonymous = rows
        .iter()
        .find(|(_, reason, _)| reason.starts_with("unauthorized"))
        .expect("the anonymous one is stored");
    assert_eq!(anonymous.0, None, "operators only");
    for (_, _, headers) in &rows {
        assert!(headers.get("x-loa-token").is_none(), "{headers}");
    }

    // Act: other's admin replays its dead letter; intake must authenticate it again.
    let id = other[0]["id"].as_i64().unwrap();
    let report: Value = sys
        .client
        .post(format!("{notifier}/v1/dead-letters/replay"))
        .bearer_auth("other-admin")
        .json(&json!({"ids": [id]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Assert: it dies again for the same reason (forbidden, so its source's token was
    // presented and verified), not as unauthorized.
    assert_eq!(report["replayed"], 1, "{report}");
    let again = loa_platform::testing::eventually(Duration::from_secs(15), || async {
        let seen = dead_letters_of(&sys, &notifier, "other-admin").await;
        (seen.len() == 1 && seen[0]["deaths"] == 2).then_some(seen)
    })
    .await
    .expect("the replay died again");
    assert!(again[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("forbidden"));
    sys.stop().await;
}
