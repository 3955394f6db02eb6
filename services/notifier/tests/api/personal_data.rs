//! Personal data in the notifier: retention (a tenant's `retention_days` after a row's
//! last change) and a citizen's erasure request (`POST /v1/subjects/erase`).

use crate::helpers::*;
use chrono::{Duration, Utc};
use loa_notifier::personal_data::retention::{erase_expired, GIVEN_UP};
use loa_platform::amqp::{consumer::H_TENANT, topology, OutgoingMessage};
use loa_platform::testing::{assert_erasure_refusals, columns_naming, request_erasure};
use serde_json::{json, Value};

/// Publishes a receipt due tomorrow and waits until the notifier parked it (its
/// request body, with the phone, stored in the row).
async fn parked_receipt(app: &TestApp, code: &str, phone: &str) -> String {
    let mut request = receipt_request(code);
    request.recipient.phone = Some(phone.to_owned());
    request.not_before = Some(Utc::now() + Duration::days(1));
    app.publish(&request).await;
    app.delivery_with_status(&request.notification_id, "deferred")
        .await;
    request.notification_id
}

/// An event a consumer gave up on, as `tracker.events` dead-letters it, naming `phone`.
fn dead_event(event_id: &str, phone: &str) -> Value {
    // The citizen's Zalo user id goes with their phone.
    let user = if phone.ends_with("56") {
        "7000000000000000042"
    } else {
        "7000000000000000043"
    };
    json!({
        "event_id": event_id, "tenant": "demo", "dossier_code": "HS-PD", "status": 2,
        "applicant": {"name": "Trần Thị Bích", "phone": phone, "zalo_user_id": user}
    })
}

/// Publishes a dead letter stamped with `tenant` (empty: none verified) and waits until
/// the notifier stored it; returns its id.
async fn dead_letter(app: &TestApp, tenant: &str, body: &Value) -> i64 {
    let message_id = body["event_id"].as_str().unwrap().to_owned();
    app.publisher
        .publish(&OutgoingMessage {
            exchange: topology::EX_DEAD.into(),
            routing_key: "tracker.events".into(),
            body: serde_json::to_vec(body).unwrap(),
            message_id: message_id.clone(),
            headers: vec![
                (topology::H_REASON.into(), "poison: test".into()),
                (topology::H_SOURCE_QUEUE.into(), "tracker.events".into()),
                (H_TENANT.into(), tenant.into()),
            ],
        })
        .await
        .expect("the broker confirms");
    let pool = app.pool.clone();
    loa_platform::testing::eventually(PATIENCE, || {
        let pool = pool.clone();
        let message_id = message_id.clone();
        async move {
            let client = pool.get().await.ok()?;
            client
                .query_opt(
                    "SELECT id FROM notifier.dead_letters WHERE message_id = $1",
                    &[&message_id],
                )
                .await
                .ok()?
                .map(|r| r.get::<_, i64>(0))
        }
    })
    .await
    .expect("the dead letter is stored")
}

/// A chat lookup by `user`, forwarded to the tracker or not.
async fn lookup(app: &TestApp, msg_id: &str, user: &str, forwarded: bool) {
    let client = app.pool.get().await.unwrap();
    client
        .execute(
            "INSERT INTO notifier.citizen_messages
                    (tenant, zalo_user_id, kind, dossier_code, msg_id, received_at, forwarded_at)
             VALUES ('demo', $1, 'lookup', 'HS-PD', $2, now(), CASE WHEN $3 THEN now() END)",
            &[&user, &msg_id, &forwarded],
        )
        .await
        .unwrap();
}

/// A chat lookup over the per-user limit: kept, never forwarded.
async fn limited_lookup(app: &TestApp, msg_id: &str, user: &str) {
    let client = app.pool.get().await.unwrap();
    client
        .execute(
            "INSERT INTO notifier.citizen_messages
                    (tenant, zalo_user_id, kind, dossier_code, msg_id, received_at, outcome)
             VALUES ('demo', $1, 'lookup', 'HS-PD', $2, now(), 'rate_limited')",
            &[&user, &msg_id],
        )
        .await
        .unwrap();
}

/// A citizen's other text to the OA, answered (its reply published) or not (the
/// user had been answered that day already).
async fn text(app: &TestApp, msg_id: &str, user: &str, body: &str, answered: bool) {
    let client = app.pool.get().await.unwrap();
    client
        .execute(
            "INSERT INTO notifier.citizen_messages
                    (tenant, zalo_user_id, kind, msg_id, received_at, outcome, forwarded_at, body)
             VALUES ('demo', $1, 'text', $2, now(),
                     CASE WHEN $3 THEN 'forward' ELSE 'answered_today' END,
                     CASE WHEN $3 THEN now() END, $4)",
            &[&user, &msg_id, &answered, &body],
        )
        .await
        .unwrap();
}

async fn age(app: &TestApp, sql: &str, key: &(dyn tokio_postgres::types::ToSql + Sync)) {
    let client = app.pool.get().await.unwrap();
    assert_eq!(client.execute(sql, &[key]).await.unwrap(), 1, "{sql}");
}

/// Makes citizens' messages (lookups, texts) 40 days old.
async fn age_citizen_messages(app: &TestApp, msg_ids: &[&str]) {
    for msg in msg_ids {
        age(
            app,
            "UPDATE notifier.citizen_messages SET received_at = now() - interval '40 days' WHERE msg_id = $1",
            msg,
        )
        .await;
    }
}

async fn delivery_row(app: &TestApp, id: &str) -> (String, Option<Value>, Option<String>) {
    let client = app.pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT status, request, last_error FROM notifier.deliveries WHERE notification_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

async fn dead_letter_body(app: &TestApp, id: i64) -> (String, bool) {
    let client = app.pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT body, personal_data_erased_at IS NOT NULL FROM notifier.dead_letters WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (String::from_utf8(row.get(0)).unwrap(), row.get(1))
}

async fn lookups(app: &TestApp) -> Vec<String> {
    let client = app.pool.get().await.unwrap();
    client
        .query(
            "SELECT msg_id FROM notifier.citizen_messages ORDER BY msg_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn metric(app: &TestApp, kind: &str) -> Option<f64> {
    let text = app.metrics().await;
    text.lines()
        .find(|l| {
            l.starts_with("loa_notifier_personal_data_erased_total{")
                && l.contains(&format!("kind=\"{kind}\""))
                && l.contains("tenant=\"demo\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn past_its_retention_a_parked_request_is_given_up_a_dead_letter_masked_and_a_lookup_deleted_and_nothing_newer(
) {
    // Arrange: of each kind, one row last changed 40 days ago and one now.
    let app = spawn_app().await;
    assert!(
        metric(&app, "dead_letters").await.is_some(),
        "the series exists before the first sweep"
    );
    let old = parked_receipt(&app, "HS-OLD", PHONE).await;
    let recent = parked_receipt(&app, "HS-NEW", PHONE).await;
    let old_letter = dead_letter(&app, "demo", &dead_event("dl-old", PHONE)).await;
    let recent_letter = dead_letter(&app, "demo", &dead_event("dl-new", PHONE)).await;
    lookup(&app, "m-old", "7000000000000000042", true).await;
    lookup(&app, "m-old-unforwarded", "7000000000000000042", false).await;
    // Over the per-user limit: kept, never forwarded. Written rate-limited in one
    // statement: a lookup first written `forward` could be forwarded by the relay
    // before a second statement marked it.
    limited_lookup(&app, "m-old-limited", "7000000000000000042").await;
    lookup(&app, "m-new", "7000000000000000042", true).await;
    age(
        &app,
        "UPDATE notifier.deliveries SET updated_at = now() - interval '40 days' WHERE notification_id = $1",
        &old,
    )
    .await;
    age(
        &app,
        "UPDATE notifier.dead_letters SET dead_at = now() - interval '40 days' WHERE id = $1",
        &old_letter,
    )
    .await;
    age_citizen_messages(&app, &["m-old", "m-old-unforwarded", "m-old-limited"]).await;

    // Act: a 30-day window, twice.
    let now = app.clock.now();
    let erased = erase_expired(&app.pool, Some("demo"), 30, now)
        .await
        .unwrap();
    let again = erase_expired(&app.pool, Some("demo"), 30, now)
        .await
        .unwrap();

    // Assert: exactly the old rows, once.
    assert_eq!(
        (
            erased.deliveries,
            erased.dead_letters,
            erased.citizen_messages
        ),
        (1, 1, 2)
    );
    assert_eq!(
        (again.deliveries, again.dead_letters, again.citizen_messages),
        (0, 0, 0)
    );
    let (status, request, error) = delivery_row(&app, &old).await;
    assert_eq!(
        (status.as_str(), request, error.as_deref()),
        ("failed", None, Some(GIVEN_UP))
    );
    let (status, request, _) = delivery_row(&app, &recent).await;
    assert_eq!(status, "deferred");
    assert_eq!(request.unwrap()["recipient"]["phone"], PHONE);

    let (body, erased_mark) = dead_letter_body(&app, old_letter).await;
    assert!(erased_mark);
    for gone in [PHONE, "Trần Thị Bích", "7000000000000000042"] {
        assert!(!body.contains(gone), "{gone} left in {body}");
    }
    assert!(
        body.contains("8490*****56") && body.contains("Trần T. B."),
        "{body}"
    );
    assert!(
        body.contains("\"event_id\":\"dl-old\""),
        "the rest stays: {body}"
    );
    let (body, erased_mark) = dead_letter_body(&app, recent_letter).await;
    assert!(!erased_mark && body.contains(PHONE) && body.contains("Trần Thị Bích"));

    assert_eq!(lookups(&app).await, ["m-new", "m-old-unforwarded"]);
    for kind in ["deliveries", "dead_letters", "citizen_messages"] {
        assert!(metric(&app, kind).await.is_some_and(|n| n >= 1.0), "{kind}");
    }

    // An erased dead letter is not replayed: it would carry masked phones.
    let replay: Value = app
        .http
        .post(format!("{}/v1/dead-letters/replay", app.address))
        .bearer_auth("demo-admin")
        .json(&json!({"ids": [old_letter]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replay["replayed"], 0, "{replay}");
    assert!(replay["skipped"][0]["why"]
        .as_str()
        .unwrap()
        .contains("erased"));
}

#[tokio::test]
async fn past_its_retention_a_citizens_text_is_deleted_answered_or_not_and_a_newer_one_is_kept() {
    // Arrange: two texts received 40 days ago (one answered, one not: the user had
    // their answer that day), one today.
    let app = spawn_app().await;
    let user = "7000000000000000042";
    text(&app, "t-old", user, "Tôi là Bích, số 0903 123 456", true).await;
    text(&app, "t-old-unanswered", user, "Cán bộ ơi?", false).await;
    text(&app, "t-new", user, "Cảm ơn cán bộ", true).await;
    age_citizen_messages(&app, &["t-old", "t-old-unanswered"]).await;

    // Act: a 30-day window.
    let erased = erase_expired(&app.pool, Some("demo"), 30, app.clock.now())
        .await
        .unwrap();

    // Assert
    assert_eq!(erased.citizen_messages, 2);
    assert_eq!(lookups(&app).await, ["t-new"]);
}

#[tokio::test]
async fn an_erasure_deletes_the_citizens_texts_and_anyones_text_naming_their_number_and_nothing_else(
) {
    // Arrange: the citizen (PHONE, Zalo user 7000000000000000042) wrote to the OA;
    // someone else wrote their number (dotted), and another number.
    let app = spawn_app().await;
    let r = app
        .http
        .post(format!("{}/v1/subscribers/import", app.address))
        .bearer_auth("demo-admin")
        .header("content-type", "application/x-ndjson")
        .body(r#"{"phone": "0903 123 456", "zalo_user_id": "7000000000000000042", "announcements": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    text(
        &app,
        "t-mine",
        "7000000000000000042",
        "Cho tôi hỏi về hồ sơ đất",
        true,
    )
    .await;
    text(
        &app,
        "t-naming",
        "7000000000000000077",
        "Nhờ cán bộ gọi lại cho mẹ tôi: 0903.123.456",
        true,
    )
    .await;
    text(
        &app,
        "t-other",
        "7000000000000000077",
        "Số của tôi là 0912 345 678",
        false,
    )
    .await;

    // Act
    let (status, report) = erase(
        &app,
        "demo-admin",
        json!({"phone": "84903123456", "requested_by": "Phiếu PYC-2026-18"}),
    )
    .await;

    // Assert
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["removed"]["citizen_messages"], 2, "{report}");
    assert_eq!(lookups(&app).await, ["t-other"]);
}

#[tokio::test]
async fn dead_letters_without_a_verified_tenant_follow_the_sweep_for_no_tenant() {
    // Arrange
    let app = spawn_app().await;
    let letter = dead_letter(&app, "", &dead_event("dl-untenanted", PHONE)).await;
    age(
        &app,
        "UPDATE notifier.dead_letters SET dead_at = now() - interval '40 days' WHERE id = $1",
        &letter,
    )
    .await;

    // Act
    let for_demo = erase_expired(&app.pool, Some("demo"), 30, app.clock.now())
        .await
        .unwrap();
    let for_none = erase_expired(&app.pool, None, 30, app.clock.now())
        .await
        .unwrap();

    // Assert
    assert_eq!((for_demo.dead_letters, for_none.dead_letters), (0, 1));
    let (body, _) = dead_letter_body(&app, letter).await;
    assert!(!body.contains(PHONE), "{body}");
}

#[tokio::test]
async fn only_one_notifier_replica_erases_at_a_time() {
    // Arrange: another replica's transaction holds the retention lock.
    let app = spawn_app().await;
    let mut holder = app.pool.get().await.unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.execute("SELECT pg_advisory_xact_lock(7303, 1)", &[])
        .await
        .unwrap();

    // Act
    let busy = erase_expired(&app.pool, Some("demo"), 1, Utc::now())
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let free = erase_expired(&app.pool, Some("demo"), 1, Utc::now())
        .await
        .unwrap();

    // Assert
    assert!(!busy.erased_here);
    assert!(free.erased_here);
}

async fn erase(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    request_erasure(&app.address, token, &body).await
}

#[tokio::test]
async fn an_erased_citizen_leaves_no_trace_in_the_notifier_and_the_request_is_audited_and_idempotent(
) {
    // Arrange: the citizen (PHONE, Zalo user 7000000000000000042) is a subscriber,
    // has a parked message, chat lookups and a dead letter; another citizen too.
    let app = spawn_app().await;
    let r = app
        .http
        .post(format!("{}/v1/subscribers/import", app.address))
        .bearer_auth("demo-admin")
        .header("content-type", "application/x-ndjson")
        .body(concat!(
            r#"{"phone": "0903 123 456", "zalo_user_id": "7000000000000000042", "name": "Trần Thị Bích", "tags": ["ward:phu-thuy"], "announcements": true}"#,
            "\n",
            r#"{"phone": "0912 345 678", "zalo_user_id": "7000000000000000043", "announcements": true}"#,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mine = parked_receipt(&app, "HS-MINE", PHONE).await;
    let theirs = parked_receipt(&app, "HS-THEIRS", "84912345678").await;
    lookup(&app, "m-mine", "7000000000000000042", true).await;
    lookup(&app, "m-theirs", "7000000000000000043", true).await;
    let my_letter = dead_letter(&app, "demo", &dead_event("dl-mine", "+84 903.123.456")).await;
    let their_letter = dead_letter(&app, "demo", &dead_event("dl-theirs", "84912345678")).await;
    // The phones ZNS receipts said were reached (what an answer to a ZNS links from).
    app.pool
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO notifier.zns_recipients (tenant, msg_id, tracking_id, phone, delivered_at)
             VALUES ('demo', 'z-mine', NULL, $1, now()), ('demo', 'z-theirs', NULL, '84912345678', now())",
            &[&PHONE],
        )
        .await
        .unwrap();
    assert!(!columns_naming(&app.pool, "notifier", "903123456")
        .await
        .unwrap()
        .is_empty());

    // Act
    let (status, report) = erase(
        &app,
        "demo-admin",
        json!({"phone": "0903 123 456", "requested_by": "Nguyễn Văn An, phiếu PYC-2026-17"}),
    )
    .await;
    let (again_status, again) = erase(
        &app,
        "demo-admin",
        json!({"phone": "84903123456", "requested_by": "Nguyễn Văn An, phiếu PYC-2026-17"}),
    )
    .await;

    // Assert: nothing of the citizen is left anywhere in the schema.
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["removed"],
        json!({"citizen_messages": 1, "dead_letters": 1, "deliveries": 1,
               "promotion_counts": 0, "ratings": 0, "subscribers": 1, "webhooks": 0,
               "zns_recipients": 1}),
    );
    assert_eq!(report["service"], "notifier");
    assert_eq!(report["tenant"], "demo");
    assert_eq!(
        columns_naming(&app.pool, "notifier", "903123456")
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    let (status_now, request, _) = delivery_row(&app, &mine).await;
    assert_eq!((status_now.as_str(), request), ("failed", None));
    let (body, _) = dead_letter_body(&app, my_letter).await;
    assert!(
        !body.contains("Trần Thị Bích") && !body.contains("7000000000000000042"),
        "{body}"
    );
    // The other citizen's data is untouched.
    assert_eq!(delivery_row(&app, &theirs).await.0, "deferred");
    assert!(dead_letter_body(&app, their_letter)
        .await
        .0
        .contains("84912345678"));
    assert_eq!(lookups(&app).await, ["m-theirs"]);
    // Idempotent: nothing left the second time, and audited both times.
    assert_eq!(again_status, 200);
    assert!(
        again["removed"]
            .as_object()
            .unwrap()
            .values()
            .all(|n| n == 0),
        "{again}"
    );
    assert_eq!(again["phone_hash"], report["phone_hash"]);
    let client = app.pool.get().await.unwrap();
    let audit = client
        .query(
            "SELECT tenant, phone_hash, requested_by, credential, removed
               FROM notifier.erasures ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].get::<_, String>(0), "demo");
    assert_eq!(
        audit[0].get::<_, String>(1),
        report["phone_hash"].as_str().unwrap()
    );
    assert_eq!(
        audit[0].get::<_, String>(2),
        "Nguyễn Văn An, phiếu PYC-2026-17"
    );
    assert_eq!(audit[0].get::<_, String>(3), "admin_token");
    assert_eq!(audit[0].get::<_, Value>(4), report["removed"]);
}

#[tokio::test]
async fn an_erasure_request_names_its_bad_field_and_needs_an_admin_token() {
    // Arrange
    let app = spawn_app().await;
    let before = columns_naming(&app.pool, "notifier", "903123456")
        .await
        .unwrap();

    // Act
    let missing = erase(&app, "demo-admin", json!({"requested_by": "An"})).await;

    // Assert
    assert_eq!(
        (missing.0, missing.1["error"]["field"].as_str()),
        (422, Some("phone"))
    );
    assert_erasure_refusals(&app.address, "123").await;
    let client = app.pool.get().await.unwrap();
    let audited: i64 = client
        .query_one("SELECT count(*) FROM notifier.erasures", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 0, "a refused request has no effect");
    assert_eq!(
        columns_naming(&app.pool, "notifier", "903123456")
            .await
            .unwrap(),
        before
    );
}
