//! Dead letters: stored from `loa.dead-letters`, listed per tenant, replayed.

use crate::helpers::{receipt_request, spawn_app, spawn_app_configured, TestApp, PATIENCE};
use lapin::options::{BasicGetOptions, BasicRejectOptions};
use loa_platform::{
    amqp::{
        consumer::{H_SOURCE, H_TENANT},
        topology, OutgoingMessage,
    },
    testing::eventually,
};
use serde_json::{json, Value};

/// `GET /v1/dead-letters{query}` with an optional bearer token.
async fn get_dead_letters(app: &TestApp, query: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app
        .http
        .get(format!("{}/v1/dead-letters{query}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("notifier answers")
}

/// The dead letters `token`'s tenant sees with `query`.
async fn dead_letters_seen(app: &TestApp, query: &str, token: &str) -> Vec<Value> {
    let response = get_dead_letters(app, query, Some(token)).await;
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.expect("JSON");
    page["dead_letters"].as_array().expect("a list").clone()
}

/// Waits until `token`'s tenant sees `n` dead letters with `query`.
async fn wait_for_dead_letters(app: &TestApp, query: &str, token: &str, n: usize) -> Vec<Value> {
    match eventually(PATIENCE, || async {
        let seen = dead_letters_seen(app, query, token).await;
        (seen.len() == n).then_some(seen)
    })
    .await
    {
        Ok(seen) => seen,
        Err(_) => panic!(
            "expected {n} dead letter(s), saw {:?}",
            dead_letters_seen(app, query, token).await
        ),
    }
}

/// `POST /v1/dead-letters/replay`.
async fn replay(app: &TestApp, body: Value, token: Option<&str>) -> reqwest::Response {
    let mut request = app
        .http
        .post(format!("{}/v1/dead-letters/replay", app.address))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("notifier answers")
}

/// Publishes a dead letter the way a consumer of `source_queue` does, stamped with the
/// tenant of its body as the consumers stamp what came through intake.
async fn publish_dead_letter(
    app: &TestApp,
    source_queue: &str,
    routing_key: &str,
    reason: &str,
    body: &Value,
) {
    app.publisher
        .publish(&OutgoingMessage {
            exchange: topology::EX_DEAD.into(),
            routing_key: routing_key.into(),
            body: serde_json::to_vec(body).unwrap(),
            message_id: body["event_id"].as_str().unwrap_or("m").into(),
            headers: vec![
                (topology::H_REASON.into(), reason.into()),
                (topology::H_SOURCE_QUEUE.into(), source_queue.into()),
                (
                    "traceparent".into(),
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
                ),
                ("x-loa-attempt".into(), "7".into()),
                (
                    H_TENANT.into(),
                    body["tenant"].as_str().unwrap_or_default().into(),
                ),
            ],
        })
        .await
        .expect("the broker confirms");
}

fn event_body(tenant: &str, event_id: &str) -> Value {
    json!({"event_id": event_id, "tenant": tenant, "dossier_code": "HS-DL", "status": 2})
}

#[tokio::test]
async fn a_failed_delivery_is_stored_as_a_dead_letter_its_tenant_alone_can_list() {
    // Arrange
    let app = spawn_app().await;
    app.inject_fault(json!({"api": "zns", "error_code": -108, "rate": 1.0, "count": 1}))
        .await;
    let request = receipt_request("HS-0901");

    // Act
    app.publish(&request).await;

    // Assert
    let letters = wait_for_dead_letters(&app, "", "demo-admin", 1).await;
    let letter = &letters[0];
    assert_eq!(letter["tenant"], "demo");
    assert_eq!(letter["source_queue"], "notifier.transactional");
    assert_eq!(letter["exchange"], "loa.notifications");
    assert_eq!(letter["routing_key"], "transactional.demo.receipt");
    assert_eq!(letter["message_id"], request.notification_id.as_str());
    assert_eq!(letter["replayed_at"], Value::Null);
    assert_eq!(
        letter["body"]["notification_id"],
        request.notification_id.as_str()
    );
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .starts_with("zalo error -108"),
        "{letter}"
    );
    assert!(dead_letters_seen(&app, "", "other-admin").await.is_empty());
    assert_eq!(get_dead_letters(&app, "", None).await.status(), 401);
    assert_eq!(
        get_dead_letters(&app, "", Some("demo-token"))
            .await
            .status(),
        403,
        "a source token is not an admin token, and the caller is told so"
    );
    let metrics = app.metrics().await;
    // Counted (by any amount: every test of this binary shares the registry).
    assert!(
        metrics.contains(r#"loa_notifier_dead_letters_total{reason="zalo_-108",tenant="demo"} "#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_replayed_dead_letter_is_delivered_once_and_marked_replayed() {
    // Arrange
    let app = spawn_app().await;
    app.inject_fault(json!({"api": "zns", "error_code": -108, "rate": 1.0, "count": 1}))
        .await;
    let request = receipt_request("HS-0902");
    app.publish(&request).await;
    let id = wait_for_dead_letters(&app, "", "demo-admin", 1).await[0]["id"]
        .as_i64()
        .unwrap();

    // Act
    let response = replay(&app, json!({"ids": [id]}), Some("demo-admin")).await;

    // Assert
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["replayed"], 1);
    assert_eq!(report["replayed_ids"], json!([id]));
    app.delivery_with_status(&request.notification_id, "sent")
        .await;
    app.wait_until_settled().await;
    assert_eq!(app.messages_for(&request.notification_id).await.len(), 1);
    let letters = dead_letters_seen(&app, "", "demo-admin").await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["replay_count"], 1);
    assert!(letters[0]["replayed_at"].is_string());
    assert!(dead_letters_seen(&app, "?replayed=false", "demo-admin")
        .await
        .is_empty());
}

#[tokio::test]
async fn replaying_all_or_by_filter_takes_only_the_tenants_unreplayed_dead_letters() {
    // Arrange
    let app = spawn_app().await;
    for (tenant, event, reason) in [
        ("demo", "e-1", "invalid_field: status: unknown status"),
        ("demo", "e-2", "invalid_json: expected value"),
        ("other", "e-3", "invalid_field: status: unknown status"),
    ] {
        publish_dead_letter(
            &app,
            topology::Q_TRACKER_EVENTS,
            &format!("dossier.{tenant}.2"),
            reason,
            &event_body(tenant, event),
        )
        .await;
    }
    wait_for_dead_letters(&app, "", "demo-admin", 2).await;
    wait_for_dead_letters(&app, "", "other-admin", 1).await;

    // Act
    let by_filter = replay(
        &app,
        json!({"filter": {"reason": "invalid_field", "source_queue": "tracker.events"}}),
        Some("demo-admin"),
    )
    .await;
    let by_filter: Value = by_filter.json().await.unwrap();
    let all: Value = replay(&app, json!({"all": true}), Some("demo-admin"))
        .await
        .json()
        .await
        .unwrap();
    let again: Value = replay(&app, json!({"all": true}), Some("demo-admin"))
        .await
        .json()
        .await
        .unwrap();

    // Assert
    assert_eq!(by_filter["replayed"], 1, "{by_filter}");
    assert_eq!(all["replayed"], 1, "only the one left: {all}");
    assert_eq!(again["replayed"], 0, "{again}");
    let other = dead_letters_seen(&app, "", "other-admin").await;
    assert_eq!(
        other[0]["replayed_at"],
        Value::Null,
        "other tenant untouched"
    );
    // Both demo events went back to `loa.events`, i.e. to the tracker's queue.
    eventually(PATIENCE, || async {
        (app.env.queue_depth(topology::Q_TRACKER_EVENTS).ok()? == 2).then_some(())
    })
    .await
    .expect("two events back in tracker.events");
    let conn = loa_platform::amqp::connect(&app.env.amqp_url, "replay-reader")
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let message = channel
        .basic_get(
            topology::Q_TRACKER_EVENTS.into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
        .expect("a replayed event");
    let headers = message.delivery.properties.headers().clone().unwrap();
    assert!(headers.inner().contains_key("traceparent"));
    for dropped in ["x-loa-reason", "x-loa-source-queue", "x-loa-attempt"] {
        assert!(!headers.inner().contains_key(dropped), "{dropped} kept");
    }
}

#[tokio::test]
async fn a_dead_letter_delivered_twice_is_stored_once_and_revived_when_it_dies_after_a_replay() {
    // Arrange
    let app = spawn_app().await;
    let body = event_body("demo", "e-dup");
    let dead = |_: ()| {
        publish_dead_letter(
            &app,
            topology::Q_TRACKER_EVENTS,
            "dossier.demo.2",
            "invalid_field: status: unknown status",
            &body,
        )
    };

    // Act
    dead(()).await;
    dead(()).await;
    let first = wait_for_dead_letters(&app, "", "demo-admin", 1).await;
    // A marker after both copies: once it is stored, both copies were handled.
    publish_dead_letter(
        &app,
        topology::Q_TRACKER_EVENTS,
        "dossier.demo.2",
        "marker: x",
        &event_body("demo", "e-marker"),
    )
    .await;
    wait_for_dead_letters(&app, "?reason=marker", "demo-admin", 1).await;
    let id = first[0]["id"].as_i64().unwrap();
    replay(&app, json!({"ids": [id]}), Some("demo-admin")).await;
    dead(()).await;

    // Assert
    let revived = wait_for_dead_letters(
        &app,
        "?replayed=false&reason=invalid_field",
        "demo-admin",
        1,
    )
    .await;
    assert_eq!(revived[0]["id"], id, "the same row");
    assert_eq!(revived[0]["deaths"], 2);
    assert_eq!(revived[0]["replay_count"], 1);
    assert_eq!(
        dead_letters_seen(&app, "?reason=invalid_field", "demo-admin")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn a_message_over_its_delivery_limit_is_stored_with_the_queue_and_exchange_it_came_from() {
    // Arrange: an event in the tracker's queue (no tracker runs here), stamped with
    // its tenant as intake stamps it, that keeps being given back until the broker
    // dead-letters it.
    let app = spawn_app().await;
    app.publisher
        .publish(&OutgoingMessage {
            exchange: topology::EX_EVENTS.into(),
            routing_key: "dossier.demo.2".into(),
            body: serde_json::to_vec(&event_body("demo", "e-limit")).unwrap(),
            message_id: "e-limit".into(),
            headers: vec![(H_TENANT.into(), "demo".into())],
        })
        .await
        .unwrap();
    let conn = loa_platform::amqp::connect(&app.env.amqp_url, "rejecter")
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();

    // Act
    for _ in 0..=topology::DELIVERY_LIMIT + 1 {
        let Some(message) = channel
            .basic_get(
                topology::Q_TRACKER_EVENTS.into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .unwrap()
        else {
            break;
        };
        message
            .delivery
            .reject(BasicRejectOptions { requeue: true })
            .await
            .unwrap();
    }

    // Assert
    let letters = wait_for_dead_letters(&app, "", "demo-admin", 1).await;
    assert_eq!(letters[0]["source_queue"], "tracker.events");
    assert_eq!(letters[0]["exchange"], "loa.events");
    assert_eq!(letters[0]["reason"], "delivery limit exceeded");
    assert_eq!(letters[0]["routing_key"], "dossier.demo.2");
    assert_eq!(letters[0]["body"]["event_id"], "e-limit");
}

#[tokio::test]
async fn another_tenants_dead_letters_cannot_be_replayed_and_bad_input_names_the_field() {
    // Arrange
    let app = spawn_app().await;
    publish_dead_letter(
        &app,
        topology::Q_TRACKER_EVENTS,
        "dossier.demo.2",
        "invalid_field: x",
        &event_body("demo", "e-iso"),
    )
    .await;
    let id = wait_for_dead_letters(&app, "", "demo-admin", 1).await[0]["id"]
        .as_i64()
        .unwrap();

    // Act
    let foreign: Value = replay(&app, json!({"ids": [id]}), Some("other-admin"))
        .await
        .json()
        .await
        .unwrap();
    let unauthorized = replay(&app, json!({"all": true}), None).await;
    let empty = replay(&app, json!({}), Some("demo-admin")).await;
    let bad_id = replay(&app, json!({"ids": [id, "x"]}), Some("demo-admin")).await;
    let bad_limit = get_dead_letters(&app, "?limit=100000", Some("demo-admin")).await;
    let bad_since = get_dead_letters(&app, "?since=yesterday", Some("demo-admin")).await;

    // Assert
    assert_eq!(foreign["replayed"], 0);
    assert_eq!(foreign["not_found"], json!([id]));
    let letters = dead_letters_seen(&app, "", "demo-admin").await;
    assert_eq!(letters[0]["replay_count"], 0, "untouched");
    assert_eq!(unauthorized.status(), 401);
    for (response, status, field) in [
        (empty, 422, "ids"),
        (bad_id, 422, "ids[1]"),
        (bad_limit, 400, "limit"),
        (bad_since, 400, "since"),
    ] {
        assert_eq!(response.status(), status);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{body}");
    }
}

#[tokio::test]
async fn dead_letters_page_by_id() {
    // Arrange
    let app = spawn_app().await;
    for i in 0..5 {
        publish_dead_letter(
            &app,
            topology::Q_TRACKER_EVENTS,
            "dossier.demo.2",
            "invalid_field: x",
            &event_body("demo", &format!("e-page-{i}")),
        )
        .await;
    }
    wait_for_dead_letters(&app, "", "demo-admin", 5).await;

    // Act
    let first: Value = get_dead_letters(&app, "?limit=3", Some("demo-admin"))
        .await
        .json()
        .await
        .unwrap();
    let cursor = first["next_after_id"].as_i64().expect("a next page");
    let second: Value = get_dead_letters(
        &app,
        &format!("?limit=3&after_id={cursor}"),
        Some("demo-admin"),
    )
    .await
    .json()
    .await
    .unwrap();

    // Assert
    assert_eq!(first["dead_letters"].as_array().unwrap().len(), 3);
    assert_eq!(second["dead_letters"].as_array().unwrap().len(), 2);
    assert_eq!(second["next_after_id"], Value::Null);
    assert!(second["dead_letters"][0]["id"].as_i64().unwrap() > cursor);
}

/// Rejects (requeueing) every message of `queue` until the broker dead-letters them.
async fn exhaust_delivery_limit(app: &TestApp, queue: &str) {
    let conn = loa_platform::amqp::connect(&app.env.amqp_url, "rejecter")
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
    {
        message
            .delivery
            .reject(BasicRejectOptions { requeue: true })
            .await
            .unwrap();
    }
}

/// Every stored dead letter as (tenant, headers), by id.
async fn stored_rows(app: &TestApp) -> Vec<(Option<String>, Value)> {
    let client = app.pool.get().await.unwrap();
    client
        .query(
            "SELECT tenant, headers FROM notifier.dead_letters ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn a_dead_letter_belongs_to_the_stamped_tenant_never_to_the_tenant_its_body_names() {
    // Arrange: as intake writes them: a message without a token (no stamp) whose body
    // names `demo`, and one with other's token whose body names `demo` (forbidden);
    // both with the credentials a publisher sent.
    let app = spawn_app().await;
    let publisher = &app.publisher;
    let publish = |id: &str, tenant: Option<&str>, reason: &str| {
        let mut headers = vec![
            (topology::H_REASON.into(), reason.to_owned()),
            (topology::H_SOURCE_QUEUE.into(), topology::Q_INGRESS.into()),
            ("x-loa-token".into(), "other-token".into()),
            ("authorization".into(), "Bearer demo-admin".into()),
        ];
        if let Some(t) = tenant {
            headers.push((H_TENANT.into(), t.into()));
            headers.push((H_SOURCE.into(), "other-one-stop".into()));
        }
        let message = OutgoingMessage {
            exchange: topology::EX_DEAD.into(),
            routing_key: "upstream.x".into(),
            body: serde_json::to_vec(&event_body("demo", id)).unwrap(),
            message_id: id.into(),
            headers,
        };
        async move { publisher.publish(&message).await.unwrap() }
    };

    // Act
    publish("anon-1", None, "unauthorized: missing x-loa-token header").await;
    publish("foreign-1", Some("other"), "forbidden: tenant: …").await;

    // Assert
    let other = wait_for_dead_letters(&app, "", "other-admin", 1).await;
    assert_eq!(other[0]["message_id"], "foreign-1");
    assert_eq!(other[0]["tenant"], "other");
    assert!(
        dead_letters_seen(&app, "", "demo-admin").await.is_empty(),
        "the body's tenant sees nothing"
    );
    let rows = eventually(PATIENCE, || async {
        let rows = stored_rows(&app).await;
        (rows.len() == 2).then_some(rows)
    })
    .await
    .expect("both stored");
    let tenants: Vec<Option<&str>> = rows.iter().map(|(t, _)| t.as_deref()).collect();
    assert!(
        tenants.contains(&None) && tenants.contains(&Some("other")),
        "{tenants:?}"
    );
    for (_, headers) in &rows {
        assert!(headers.get("x-loa-token").is_none(), "{headers}");
        assert!(headers.get("authorization").is_none(), "{headers}");
    }
}

#[tokio::test]
async fn a_raw_ingress_message_the_broker_dead_lettered_is_its_tokens_tenants_and_replays_with_the_token(
) {
    // Arrange: upstream messages in intake's queue (no intake runs here), one with
    // demo's token but a forged stamp and body for `other`, one with a token nobody
    // has; the broker dead-letters both after their delivery limit.
    let app = spawn_app().await;
    let raw = |token: &str, id: &str| OutgoingMessage {
        exchange: topology::EX_INGRESS.into(),
        routing_key: "upstream.x".into(),
        body: serde_json::to_vec(&event_body("other", id)).unwrap(),
        message_id: id.into(),
        headers: vec![
            ("x-loa-token".into(), token.into()),
            (H_TENANT.into(), "other".into()),
        ],
    };
    app.publisher
        .publish(&raw("demo-token", "raw-1"))
        .await
        .unwrap();
    app.publisher
        .publish(&raw("stolen?", "raw-2"))
        .await
        .unwrap();
    for _ in 0..=topology::DELIVERY_LIMIT {
        exhaust_delivery_limit(&app, topology::Q_INGRESS).await;
    }
    let demo = wait_for_dead_letters(&app, "", "demo-admin", 1).await;

    // Act
    let report: Value = replay(&app, json!({"ids": [demo[0]["id"]]}), Some("demo-admin"))
        .await
        .json()
        .await
        .unwrap();

    // Assert: listed to the tenant of the token, without it; replayed with it.
    assert_eq!(demo[0]["message_id"], "raw-1");
    assert_eq!(demo[0]["reason"], "delivery limit exceeded");
    assert_eq!(demo[0]["source_queue"], topology::Q_INGRESS);
    assert!(dead_letters_seen(&app, "", "other-admin").await.is_empty());
    let rows = eventually(PATIENCE, || async {
        let rows = stored_rows(&app).await;
        (rows.len() == 2).then_some(rows)
    })
    .await
    .expect("both stored");
    assert_eq!(rows[0].0.as_deref(), Some("demo"));
    assert_eq!(rows[1].0, None, "an unknown token: operators only");
    for (_, headers) in &rows {
        assert!(headers.get("x-loa-token").is_none(), "{headers}");
    }
    assert_eq!(report["replayed"], 1, "{report}");
    let conn = loa_platform::amqp::connect(&app.env.amqp_url, "replay-reader")
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    let replayed = eventually(PATIENCE, || async {
        channel
            .basic_get(topology::Q_INGRESS.into(), BasicGetOptions { no_ack: true })
            .await
            .ok()?
    })
    .await
    .expect("the replay is back in intake's queue");
    let header = |name: &str| loa_platform::amqp::consumer::header(&replayed.delivery, name);
    assert_eq!(header("x-loa-token").as_deref(), Some("demo-token"));
    assert_eq!(header(H_TENANT), None, "intake stamps its own");
}

#[tokio::test]
async fn an_ingress_dead_letter_without_a_verified_source_is_not_replayed() {
    // Arrange: an operator replays everything; one ingress dead letter came without
    // a valid token.
    let app = spawn_app().await;
    app.publisher
        .publish(&OutgoingMessage {
            exchange: topology::EX_DEAD.into(),
            routing_key: "upstream.x".into(),
            body: serde_json::to_vec(&event_body("demo", "anon-2")).unwrap(),
            message_id: "anon-2".into(),
            headers: vec![
                (
                    topology::H_REASON.into(),
                    "unauthorized: unknown source token".into(),
                ),
                (topology::H_SOURCE_QUEUE.into(), topology::Q_INGRESS.into()),
            ],
        })
        .await
        .unwrap();
    eventually(PATIENCE, || async {
        (stored_rows(&app).await.len() == 1).then_some(())
    })
    .await
    .expect("stored");

    // Act
    let report = loa_notifier::dead_letters::replay(
        &app.pool,
        &app.publisher,
        &app.tenants,
        None,
        &loa_notifier::dead_letters::Selection::All,
    )
    .await
    .unwrap();

    // Assert
    assert_eq!(report.replayed, 0);
    assert_eq!(report.skipped.len(), 1);
    assert!(
        report.skipped[0].why.contains("without a valid token"),
        "{:?}",
        report.skipped
    );
}

#[tokio::test]
async fn the_notifiers_own_dead_letters_are_listed_to_the_tenant_of_the_request() {
    // Arrange: two attempts at most and Zalo always busy, so a request alone and one
    // from a pack are retried through a delay tier, then given up; a request without
    // any recipient inside the pack is dead-lettered alone, rebuilt from the request.
    let app = spawn_app_configured(|_| {}, |s| s.max_attempts = 2).await;
    app.inject_fault(json!({"api": "zns", "error_code": -100}))
        .await;
    let busy = receipt_request("HS-0911");
    let mut nobody = receipt_request("HS-0912");
    nobody.recipient.phone = None;
    let packed_busy = receipt_request("HS-0913");
    let pack = loa_contracts::Envelope::NotificationBatchV1(loa_contracts::NotificationBatch {
        tenant: "demo".to_owned(),
        requests: vec![nobody.clone(), packed_busy.clone()],
    })
    .to_bytes();

    // Act
    app.publish(&busy).await;
    app.publish_raw("transactional.demo.batch", pack, "batch:dl")
        .await;

    // Assert
    let letters = wait_for_dead_letters(&app, "", "demo-admin", 3).await;
    let reason_of = |request: &loa_contracts::NotificationRequest| {
        letters
            .iter()
            .find(|l| l["message_id"] == request.notification_id.as_str())
            .map(|l| l["reason"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| {
                panic!(
                    "no dead letter for {}: {letters:?}",
                    request.notification_id
                )
            })
    };
    for request in [&busy, &packed_busy] {
        assert!(reason_of(request).contains("gave up after 2 attempts"));
    }
    assert!(reason_of(&nobody).contains("neither a phone number nor a Zalo user id"));
    assert!(letters.iter().all(|l| l["tenant"] == "demo"));
}

#[tokio::test]
async fn upgrading_scrubs_stored_tokens_and_the_body_tenants_of_ingress_dead_letters() {
    // Arrange: rows as stored before (every header kept, the tenant from the body),
    // then migration 9 applied again as on an upgrade.
    let app = spawn_app().await;
    let client = app.pool.get().await.unwrap();
    for (hash, tenant, queue, headers) in [
        (
            "a",
            "demo",
            topology::Q_INGRESS,
            json!({"x-loa-token": "demo-admin", "Authorization": "Bearer x", "traceparent": "t"}),
        ),
        (
            "b",
            "demo",
            topology::Q_TRACKER_EVENTS,
            json!({"x-loa-token": "demo-token", "x-loa-reason": "r"}),
        ),
    ] {
        client
            .execute(
                "INSERT INTO notifier.dead_letters
                     (content_hash, tenant, source_queue, routing_key, reason, headers, body)
                 VALUES ($1, $2, $3, 'k', 'r', $4, '\\x7b7d')",
                &[&hash.as_bytes(), &tenant, &queue, &headers],
            )
            .await
            .unwrap();
    }
    client
        .execute(
            "DELETE FROM notifier.schema_migrations WHERE version = 9",
            &[],
        )
        .await
        .unwrap();

    // Act
    loa_notifier::migrate(&app.pool).await.unwrap();

    // Assert
    let rows = stored_rows(&app).await;
    assert_eq!(rows[0].0, None, "an ingress body's tenant is not kept");
    assert_eq!(rows[0].1, json!({"traceparent": "t"}));
    assert_eq!(rows[1].0.as_deref(), Some("demo"), "came through intake");
    assert_eq!(rows[1].1, json!({"x-loa-reason": "r"}));
}

#[tokio::test]
async fn a_dead_letter_filter_with_a_control_character_is_a_400_naming_it() {
    // Found by Schemathesis: a NUL in `reason` reached PostgreSQL and was a 500.
    let app = spawn_app().await;
    let r = get_dead_letters(&app, "?reason=%00x", Some("demo-admin")).await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "reason");
    let r = get_dead_letters(&app, "?reason=zalo", Some("demo-admin")).await;
    assert_eq!(r.status(), 200);
}
