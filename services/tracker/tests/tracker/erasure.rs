//! A citizen's erasure request (`POST /v1/subjects/erase`): every dossier naming their
//! phone, as applicant or as filer, is masked, its phone keys and unsent notifications
//! gone; other citizens' dossiers are untouched; the request is audited and may be
//! repeated.

use crate::helpers::*;
use loa_platform::testing::{assert_erasure_refusals, columns_naming, request_erasure};
use serde_json::{json, Value};

async fn erase(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    request_erasure(&app.address, token, &body).await
}

#[tokio::test]
async fn an_erased_citizens_dossiers_are_masked_everywhere_in_the_tracker_and_the_request_is_audited(
) {
    // Arrange: the citizen (0903 123 456) applied for one dossier and filed another
    // for someone else; a third dossier is another citizen's. The relay is off, so
    // their notifications wait in the outbox.
    let env = loa_platform::testing::TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(false)).await;
    let (own, filed, theirs) = (
        dossier_code("1301"),
        dossier_code("1302"),
        dossier_code("1303"),
    );
    broker
        .publish(&event("e-1", &own, 2, "2026-11-28T09:30:00+07:00"))
        .await;
    broker
        .publish(&event_with(
            "e-2",
            &filed,
            2,
            "2026-11-28T09:30:00+07:00",
            |v| {
                v["applicant"] = json!({"name": "Lê Văn Tám", "phone": "0912 345 678"});
                v["on_behalf_of"] = json!({"name": "Trần Thị Bích", "phone": "0903 123 456"});
            },
        ))
        .await;
    broker
        .publish(&event_with(
            "e-3",
            &theirs,
            2,
            "2026-11-28T09:30:00+07:00",
            |v| {
                v["applicant"] = json!({"name": "Phạm Thị Hoa", "phone": "0987 654 321"});
            },
        ))
        .await;
    app.wait_applied(&["e-1", "e-2", "e-3"]).await;
    // Their rating's comment names them too (as a citizen may write it on the form).
    app.pool
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO tracker.ratings
                    (tenant, dossier_code, level, comment, source, first_rated_at, rated_at)
             VALUES ('demo', $1, 'satisfied', 'Gọi tôi: 0903.123.456', 'page', now(), now())",
            &[&own],
        )
        .await
        .unwrap();
    assert!(!columns_naming(&app.pool, "tracker", "903123456")
        .await
        .unwrap()
        .is_empty());
    assert!(app.count("SELECT count(*) FROM tracker.outbox").await >= 3);

    // Act
    let body = json!({"phone": "+84 903 123 456", "requested_by": "Nguyễn Văn An, PYC-17"});
    let (status, report) = erase(&app, "demo-admin", body.clone()).await;
    let (again_status, again) = erase(&app, "demo-admin", body).await;

    // Assert: no column of the schema holds the number; the dossiers stay.
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["service"], "tracker");
    assert_eq!(report["removed"]["dossiers_masked"], 2);
    assert_eq!(report["removed"]["events_masked"], 2);
    assert!(report["removed"]["outbox_deleted"].as_u64().unwrap() >= 2);
    assert_eq!(
        columns_naming(&app.pool, "tracker", "903123456")
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    let history: String = app
        .pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT event::text FROM tracker.dossier_events WHERE dossier_code = ANY($1)",
            &[&vec![own.clone(), filed.clone()]],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    for gone in ["Trần Thị Bích", "3512873524511234567"] {
        assert!(!history.contains(gone), "{gone} left in {history}");
    }
    assert_eq!(app.status_of(&own).await, Some(2));
    assert_eq!(
        app.count(
            "SELECT count(*) FROM tracker.ratings WHERE comment = '' AND level = 'satisfied'"
        )
        .await,
        1,
        "the rating stays, without its comment"
    );
    assert_eq!(app.status_of(&filed).await, Some(2));
    let search = app.admin_get("/v1/dossiers?q=0903123456").await;
    assert_eq!(search["dossiers"], json!([]), "{search}");
    // The other citizen's dossier is untouched.
    assert!(!columns_naming(&app.pool, "tracker", "987654321")
        .await
        .unwrap()
        .is_empty());
    let search = app.admin_get("/v1/dossiers?q=0987654321").await;
    assert_eq!(search["dossiers"][0]["code"], theirs.as_str(), "{search}");
    // Idempotent, and audited each time without the phone.
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
    assert_eq!(
        app.count(
            "SELECT count(*) FROM tracker.erasures WHERE requested_by = 'Nguyễn Văn An, PYC-17'"
        )
        .await,
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn an_erasure_request_in_the_tracker_names_its_bad_field_and_changes_nothing() {
    // Arrange
    let env = loa_platform::testing::TestEnv::new().await.unwrap();
    let app = TestApp::spawn(&env, settings(false)).await;

    // Act, Assert: the refusals every erasure endpoint owes.
    assert_erasure_refusals(&app.address, "abc").await;

    // Assert: none of them changed anything.
    assert_eq!(app.count("SELECT count(*) FROM tracker.erasures").await, 0);
    app.stop().await;
}
