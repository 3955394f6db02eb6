//! Consuming events: state, history, dedupe, ordering and what gets planned.

use crate::helpers::*;
use loa_contracts::{
    notification::notification_id, DossierEvent, DossierEventBatch, Envelope, NotificationKind,
    PackedEvent,
};
use loa_platform::{amqp::topology, testing::TestEnv};
use loa_tracker::lookup_token;
use serde_json::json;

#[tokio::test]
async fn an_event_becomes_the_dossiers_state_and_plans_a_receipt_with_the_right_params() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(true)).await;
    let code = dossier_code("0001");

    // Act
    broker
        .publish(&event("evt-1", &code, 2, "2026-11-28T09:30:00+07:00"))
        .await;
    app.wait_applied(&["evt-1"]).await;
    app.wait_relayed().await;

    // Assert
    assert_eq!(app.status_of(&code).await, Some(2));
    let observed = broker.notifications().await;
    assert_eq!(observed.len(), 1, "{observed:?}");
    let n = &observed[0];
    let token = lookup_token(&loa_platform::Secret::new(SECRET), "demo", &code);
    assert_eq!(n.request.kind, NotificationKind::Receipt);
    assert_eq!(
        n.request.notification_id,
        notification_id("demo", "evt-1", NotificationKind::Receipt)
    );
    assert_eq!(n.message_id, n.request.notification_id);
    assert_eq!(n.request.recipient.phone.as_deref(), Some("84903123456"));
    assert_eq!(
        n.request.recipient.zalo_user_id.as_deref(),
        Some("3512873524511234567")
    );
    let p = &n.request.params;
    assert_eq!(p["customer_name"], "ông/bà Trần Thị Bích");
    assert_eq!(p["dossier_code"], code);
    assert_eq!(p["procedure_name"], "Đăng ký kết hôn");
    assert_eq!(p["status"], "Đã tiếp nhận hồ sơ");
    assert_eq!(p["agency_name"], "UBND phường Đức Thắng");
    assert_eq!(p["lookup_url"], format!("{BASE_URL}/tra-cuu/{token}"));
    assert_eq!(p["received_date"], "28/11/2026");
    assert_eq!(p["due_date"], "03/12/2026");
    assert_eq!(p.len(), NotificationKind::Receipt.required_params().len());
    assert!(n.request.event_accepted_at.is_some());
    assert_eq!(n.request.trace_context.as_deref(), Some(TRACEPARENT));
    assert_eq!(n.traceparent.as_deref(), Some(TRACEPARENT));
    app.stop().await;
}

#[tokio::test]
async fn the_same_event_twice_plans_one_notification() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(true)).await;
    let code = dossier_code("0002");
    let receipt = event("evt-dup", &code, 2, "2026-11-28T09:30:00+07:00");

    // Act: once, then again in a later batch and twice within one batch, then a
    // sentinel that is consumed after the repeats.
    broker.publish(&receipt).await;
    app.wait_applied(&["evt-dup"]).await;
    broker.publish(&receipt).await;
    broker.publish(&receipt).await;
    let sentinel = event_with(
        "evt-sentinel",
        &dossier_code("0099"),
        2,
        "2026-11-28T10:00:00+07:00",
        |v| {
            v["channels"]["zalo"] = json!(false);
        },
    );
    broker.publish(&sentinel).await;
    app.wait_applied(&["evt-sentinel"]).await;
    app.wait_relayed().await;

    // Assert
    let observed = broker.notifications().await;
    assert_eq!(observed.len(), 1, "{observed:?}");
    assert_eq!(
        app.count("SELECT count(*) FROM tracker.dossier_events")
            .await,
        2
    );
    assert_eq!(
        app.count("SELECT count(*) FROM tracker.outbox").await,
        0,
        "relayed, so gone"
    );
    app.stop().await;
}

#[tokio::test]
async fn out_of_order_events_end_in_the_newest_state_and_a_stale_event_plans_nothing() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(true)).await;
    let code = dossier_code("0003");
    let ready = event_with("evt-9", &code, 9, "2026-12-03T10:00:00+07:00", |v| {
        v["sequence"] = json!(3)
    });
    let received = event_with("evt-2", &code, 2, "2026-11-28T09:30:00+07:00", |v| {
        v["sequence"] = json!(1)
    });
    let processing = event_with("evt-4", &code, 4, "2026-11-29T08:00:00+07:00", |v| {
        v["sequence"] = json!(2)
    });

    // Act: the newest arrives first.
    broker.publish(&ready).await;
    app.wait_applied(&["evt-9"]).await;
    broker.publish(&received).await;
    broker.publish(&processing).await;
    app.wait_applied(&["evt-2", "evt-4"]).await;
    app.wait_relayed().await;

    // Assert
    assert_eq!(app.status_of(&code).await, Some(9));
    let observed = broker.notifications().await;
    let kinds: Vec<_> = observed.iter().map(|o| o.request.kind).collect();
    assert_eq!(
        kinds,
        vec![NotificationKind::ResultReady],
        "the stale receipt plans nothing"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM tracker.dossier_events")
            .await,
        3,
        "full history kept"
    );
    app.stop().await;
}

#[tokio::test]
async fn several_events_of_one_dossier_in_one_batch_apply_in_order() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let code = dossier_code("0004");

    // Act: published before the tracker starts, so they arrive as one batch.
    broker
        .publish(&event("evt-a", &code, 2, "2026-11-28T09:30:00+07:00"))
        .await;
    broker
        .publish(&event("evt-b", &code, 4, "2026-11-29T09:30:00+07:00"))
        .await;
    broker
        .publish(&event_with(
            "evt-c",
            &code,
            5,
            "2026-11-30T09:30:00+07:00",
            |v| {
                v["required_documents"] =
                    json!(["Bản sao CCCD", "Giấy xác nhận tình trạng hôn nhân"]);
            },
        ))
        .await;
    let app = TestApp::spawn(&env, settings(true)).await;
    app.wait_applied(&["evt-a", "evt-b", "evt-c"]).await;
    app.wait_relayed().await;

    // Assert
    assert_eq!(app.status_of(&code).await, Some(5));
    let observed = broker.notifications().await;
    let kinds: Vec<_> = observed.iter().map(|o| o.request.kind).collect();
    assert_eq!(
        kinds,
        vec![
            NotificationKind::Receipt,
            NotificationKind::SupplementRequested
        ]
    );
    assert_eq!(
        observed[1].request.params["documents"],
        "Bản sao CCCD; Giấy xác nhận tình trạng hôn nhân"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_result_ready_before_the_due_day_plans_result_ready_early() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(true)).await;
    let code = dossier_code("0005");

    // Act: the result event does not repeat the appointment date.
    broker
        .publish(&event("evt-r", &code, 2, "2026-11-28T09:30:00+07:00"))
        .await;
    app.wait_applied(&["evt-r"]).await;
    broker
        .publish(&event_with(
            "evt-e",
            &code,
            9,
            "2026-12-01T15:00:00+07:00",
            |v| {
                v.as_object_mut().unwrap().remove("due_at");
            },
        ))
        .await;
    app.wait_applied(&["evt-e"]).await;
    app.wait_relayed().await;

    // Assert
    let observed = broker.notifications().await;
    let early = observed
        .iter()
        .find(|o| o.request.kind == NotificationKind::ResultReadyEarly)
        .unwrap_or_else(|| panic!("no early notification in {observed:?}"));
    assert_eq!(early.request.params["due_date"], "03/12/2026");
    assert_eq!(early.request.params["status"], "Có kết quả trước hạn");
    let client = app.pool.get().await.unwrap();
    let completed: Option<chrono::DateTime<chrono::Utc>> = client
        .query_one(
            "SELECT completed_at FROM tracker.dossiers WHERE dossier_code = $1",
            &[&code],
        )
        .await
        .unwrap()
        .get(0);
    assert!(completed.is_some());
    app.stop().await;
}

#[tokio::test]
async fn a_dossier_filed_on_behalf_of_the_owner_notifies_the_filer() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(true)).await;
    let code = dossier_code("0006");

    // Act
    broker
        .publish(&event_with(
            "evt-f",
            &code,
            2,
            "2026-11-28T09:30:00+07:00",
            |v| {
                v["on_behalf_of"] = json!({"name": "Lê Văn Cường", "phone": "+84 912 345 678"});
            },
        ))
        .await;
    app.wait_applied(&["evt-f"]).await;
    app.wait_relayed().await;

    // Assert
    let observed = broker.notifications().await;
    assert_eq!(observed.len(), 1);
    let n = &observed[0].request;
    assert_eq!(n.recipient.phone.as_deref(), Some("84912345678"));
    assert_eq!(n.recipient.zalo_user_id, None);
    assert_eq!(n.params["customer_name"], "ông/bà Lê Văn Cường");
    app.stop().await;
}

#[tokio::test]
async fn a_citizen_without_a_zalo_opt_in_gets_nothing_planned() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(true)).await;
    let code = dossier_code("0007");

    // Act
    broker
        .publish(&event_with(
            "evt-n",
            &code,
            2,
            "2026-11-28T09:30:00+07:00",
            |v| {
                v["channels"] = json!({"zalo": false, "broadcast": true});
            },
        ))
        .await;
    app.wait_applied(&["evt-n"]).await;

    // Assert: the state changed in the same transaction that would have planned.
    assert_eq!(app.status_of(&code).await, Some(2));
    assert_eq!(app.count("SELECT count(*) FROM tracker.outbox").await, 0);
    assert!(broker.notifications().await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_poison_message_ends_in_the_dead_letters_with_its_reason() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(true)).await;
    let unknown_tenant = event_with(
        "evt-x",
        &dossier_code("0008"),
        2,
        "2026-11-28T09:30:00+07:00",
        |v| {
            v["tenant"] = json!("nowhere");
        },
    );

    // Act
    broker
        .publish_raw("dossier.demo.2", b"{not json".to_vec(), "poison-1")
        .await;
    broker.publish(&unknown_tenant).await;

    // Assert
    let mut dead = broker.dead_letters().await;
    if dead.len() < 2 {
        dead.extend(broker.dead_letters().await);
    }
    let reasons: Vec<String> = dead
        .iter()
        .map(|d| header(d, topology::H_REASON).expect("x-loa-reason header"))
        .collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("undecodable body")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("unknown tenant")),
        "{reasons:?}"
    );
    assert!(dead.iter().all(
        |d| header(d, topology::H_SOURCE_QUEUE).as_deref() == Some(topology::Q_TRACKER_EVENTS)
    ));
    assert_eq!(
        app.count("SELECT count(*) FROM tracker.dossier_events")
            .await,
        0
    );
    app.stop().await;
}

#[tokio::test]
async fn a_batch_message_applies_its_events_and_dead_letters_a_poison_one_alone() {
    // Arrange: three events of one tenant and status in one message, as intake packs
    // them, the middle one with a dossier code the store cannot take.
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(true)).await;
    let at = "2026-11-28T09:30:00+07:00";
    let other_trace = "00-1af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01";
    let mut poison = event("evt-b", &dossier_code("0402"), 2, at);
    poison.dossier_code = "H".repeat(loa_contracts::event::MAX_DOSSIER_CODE + 1);
    let packed = |event: DossierEvent, trace: &str| PackedEvent {
        traceparent: Some(trace.to_owned()),
        event: DossierEvent {
            accepted_at: Some(chrono::Utc::now()),
            ..event
        },
    };
    let body = Envelope::DossierEventBatchV1(DossierEventBatch {
        tenant: "demo".into(),
        events: vec![
            packed(event("evt-a", &dossier_code("0401"), 2, at), TRACEPARENT),
            packed(poison, TRACEPARENT),
            packed(event("evt-c", &dossier_code("0403"), 2, at), other_trace),
        ],
    })
    .to_bytes();

    // Act
    broker.publish_raw("dossier.demo.2", body, "evt-a+2").await;

    // Assert: the good events are applied, each notification with its own trace.
    app.wait_applied(&["evt-a", "evt-c"]).await;
    app.wait_relayed().await;
    let mut traces: Vec<(String, Option<String>)> = broker
        .notifications()
        .await
        .into_iter()
        .map(|n| (n.request.dossier_code.unwrap(), n.request.trace_context))
        .collect();
    traces.sort();
    assert_eq!(
        traces,
        [
            (dossier_code("0401"), Some(TRACEPARENT.to_owned())),
            (dossier_code("0403"), Some(other_trace.to_owned())),
        ]
    );
    // The poison event alone is a dead letter, as the single event it would have been.
    let dead = broker.dead_letters().await;
    assert_eq!(dead.len(), 1);
    let reason = header(&dead[0], topology::H_REASON).unwrap();
    assert!(reason.starts_with("dossier_code must have"), "{reason}");
    assert_eq!(
        header(&dead[0], topology::H_SOURCE_QUEUE).as_deref(),
        Some(topology::Q_TRACKER_EVENTS)
    );
    assert_eq!(dead[0].routing_key.as_str(), "dossier.demo.2");
    let Envelope::DossierEventV1(dead_event) = Envelope::from_bytes(&dead[0].data).unwrap() else {
        panic!("a single event")
    };
    assert_eq!(dead_event.event_id, "evt-b");
    assert_eq!(
        app.count("SELECT count(*) FROM tracker.dossier_events")
            .await,
        2
    );
    // And the message itself was acked: nothing comes back once the consumer is gone.
    app.stop().await;
    assert!(broker.take_all(topology::Q_TRACKER_EVENTS).await.is_empty());
}

#[tokio::test]
async fn a_reused_event_id_inside_a_pack_is_dead_lettered_alone_and_counted_as_a_conflict() {
    // Arrange: `dupm-1` applied; then a pack with a harmless repeat of it, the same
    // id with another name and phone, and a new event.
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(true)).await;
    let at = "2026-11-28T09:30:00+07:00";
    let original = event("dupm-1", &dossier_code("0501"), 2, at);
    broker.publish(&original).await;
    app.wait_applied(&["dupm-1"]).await;
    app.wait_relayed().await;
    broker.notifications().await;
    let reused = event_with("dupm-1", &dossier_code("0501"), 2, at, |v| {
        v["applicant"] = json!({"name": "Lê Văn Cường", "phone": "0912 345 678"});
    });
    let packed = |event: DossierEvent| PackedEvent {
        traceparent: Some(TRACEPARENT.to_owned()),
        event: DossierEvent {
            accepted_at: Some(chrono::Utc::now()),
            ..event
        },
    };
    let body = Envelope::DossierEventBatchV1(DossierEventBatch {
        tenant: "demo".into(),
        events: vec![
            packed(original.clone()),
            packed(reused),
            packed(event("dupm-new", &dossier_code("0502"), 2, at)),
        ],
    })
    .to_bytes();

    // Act
    broker.publish_raw("dossier.demo.2", body, "dupm-1+2").await;

    // Assert: the new event is applied and notified, the repeat does nothing, and
    // the reused id alone is a dead letter naming the tenant and what differs.
    app.wait_applied(&["dupm-new"]).await;
    app.wait_relayed().await;
    let notified: Vec<String> = broker
        .notifications()
        .await
        .into_iter()
        .map(|n| n.request.dossier_code.unwrap())
        .collect();
    assert_eq!(notified, [dossier_code("0502")]);
    let dead = broker.dead_letters().await;
    assert_eq!(dead.len(), 1);
    let reason = header(&dead[0], topology::H_REASON).unwrap();
    assert!(reason.starts_with("event_id_reused: "), "{reason}");
    assert!(reason.contains("differs in: applicant"), "{reason}");
    assert!(
        !reason.contains("Cường") && !reason.contains("0912"),
        "{reason}"
    );
    assert_eq!(
        header(&dead[0], loa_platform::amqp::consumer::H_TENANT).as_deref(),
        Some("demo")
    );
    let Envelope::DossierEventV1(dead_event) = Envelope::from_bytes(&dead[0].data).unwrap() else {
        panic!("a single event")
    };
    assert_eq!(
        dead_event.applicant.name, "Lê Văn Cường",
        "the new content is kept"
    );
    let metrics = reqwest::get(format!("{}/metrics", app.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Counted (by any amount: the tests of this binary share the registry), and the
    // series of a tenant without conflicts exists at zero.
    assert!(
        metrics.contains(r#"loa_tracker_events_total{outcome="conflict",tenant="demo"} "#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"loa_tracker_events_total{outcome="conflict",tenant="other"} 0"#),
        "{metrics}"
    );
    app.stop().await;
    assert!(broker.take_all(topology::Q_TRACKER_EVENTS).await.is_empty());
}
