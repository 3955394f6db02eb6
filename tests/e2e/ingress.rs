//! The AMQP intake path.

use crate::helpers::{receipt_event, TestSystem};
use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable},
    BasicProperties, Connection, ConnectionProperties,
};
use loa_platform::amqp::topology;
use serde_json::json;
use std::time::Duration;

async fn publish_ingress(amqp_url: &str, token: Option<&str>, body: &[u8]) {
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
