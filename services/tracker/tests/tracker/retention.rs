//! Personal data retention: past a tenant's `retention_days` after its last event, a
//! dossier's names and phones are masked in its history and its phone keys are gone;
//! newer dossiers are untouched, and the erased history still serves a late event.

use crate::helpers::*;
use chrono::Utc;
use loa_platform::testing::TestEnv;

async fn history_text(app: &TestApp, code: &str) -> String {
    let client = app.pool.get().await.unwrap();
    let rows = client
        .query(
            "SELECT event::text FROM tracker.dossier_events WHERE dossier_code = $1",
            &[&code],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get::<_, String>(0)).collect()
}

async fn phone_keys(app: &TestApp, code: &str) -> i64 {
    let client = app.pool.get().await.unwrap();
    client
        .query_one(
            "SELECT count(*) FROM tracker.dossier_phones WHERE dossier_code = $1",
            &[&code],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn past_its_retention_a_dossiers_names_and_phones_are_masked_and_a_late_event_still_applies()
{
    // Arrange: an old dossier (last event 40 days ago) and a recent one.
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(false)).await;
    let (old, recent) = (dossier_code("0901"), dossier_code("0902"));
    broker
        .publish(&event("r-1", &old, 2, "2026-11-28T09:30:00+07:00"))
        .await;
    broker
        .publish(&event("r-2", &old, 4, "2026-11-28T11:00:00+07:00"))
        .await;
    broker
        .publish(&event("r-3", &recent, 2, "2026-11-28T09:30:00+07:00"))
        .await;
    app.wait_applied(&["r-1", "r-2", "r-3"]).await;
    let client = app.pool.get().await.unwrap();
    client
        .execute(
            "UPDATE tracker.dossiers SET updated_at = now() - interval '40 days'
              WHERE dossier_code = $1",
            &[&old],
        )
        .await
        .unwrap();
    assert!(history_text(&app, &old).await.contains("Trần Thị Bích"));
    assert!(phone_keys(&app, &old).await > 0);

    // Act
    let erased = loa_tracker::retention::erase_expired(&app.pool, "demo", 30, Utc::now())
        .await
        .unwrap();
    let again = loa_tracker::retention::erase_expired(&app.pool, "demo", 30, Utc::now())
        .await
        .unwrap();

    // Assert: only the old dossier, once; masked forms, no Zalo id, no phone keys.
    assert_eq!((erased.dossiers, again.dossiers), (1, 0));
    let history = history_text(&app, &old).await;
    for gone in ["Trần Thị Bích", "84903123456", "3512873524511234567"] {
        assert!(!history.contains(gone), "{gone} left in {history}");
    }
    assert!(history.contains("Trần T. B.") && history.contains("8490*****56"));
    assert_eq!(phone_keys(&app, &old).await, 0);
    assert!(history_text(&app, &recent).await.contains("Trần Thị Bích"));
    assert!(phone_keys(&app, &recent).await > 0);
    assert!(app
        .metric("loa_tracker_personal_data_erased_total{tenant=\"demo\"}")
        .await
        .is_some_and(|n| n >= 1.0));
    // A late event makes the tracker fold the erased history again.
    broker
        .publish(&event("r-4", &old, 4, "2026-11-28T10:00:00+07:00"))
        .await;
    app.wait_applied(&["r-4"]).await;
    assert_eq!(app.status_of(&old).await, Some(4));
    app.stop().await;
}

#[tokio::test]
async fn only_one_replica_erases_at_a_time() {
    // Arrange: another replica's transaction holds the retention lock.
    let env = TestEnv::new().await.unwrap();
    let app = TestApp::spawn(&env, settings(false)).await;
    let mut holder = app.pool.get().await.unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.execute("SELECT pg_advisory_xact_lock(7302, 2)", &[])
        .await
        .unwrap();

    // Act
    let busy = loa_tracker::retention::erase_expired(&app.pool, "demo", 1, Utc::now())
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let free = loa_tracker::retention::erase_expired(&app.pool, "demo", 1, Utc::now())
        .await
        .unwrap();

    // Assert
    assert!(!busy.erased_here);
    assert!(free.erased_here);
    app.stop().await;
}

#[tokio::test]
async fn an_event_arriving_after_an_erasure_is_erased_again_past_its_retention() {
    // Arrange: a dossier erased at its citizen's request, then a new event naming them
    // again (the upstream still has their number), 40 days ago.
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(false)).await;
    let code = dossier_code("0911");
    broker
        .publish(&event("a-1", &code, 2, "2026-11-28T09:30:00+07:00"))
        .await;
    app.wait_applied(&["a-1"]).await;
    let erased = reqwest::Client::new()
        .post(format!("{}/v1/subjects/erase", app.address))
        .bearer_auth("demo-admin")
        .json(&serde_json::json!({"phone": "0903123456", "requested_by": "An"}))
        .send()
        .await
        .unwrap();
    assert_eq!(erased.status(), 200);
    broker
        .publish(&event("a-2", &code, 4, "2026-11-28T11:00:00+07:00"))
        .await;
    app.wait_applied(&["a-2"]).await;
    assert!(history_text(&app, &code).await.contains("84903123456"));
    let client = app.pool.get().await.unwrap();
    client
        .execute(
            "UPDATE tracker.dossiers
                SET updated_at = now() - interval '40 days',
                    personal_data_erased_at = now() - interval '41 days'
              WHERE dossier_code = $1",
            &[&code],
        )
        .await
        .unwrap();

    // Act
    let swept = loa_tracker::retention::erase_expired(&app.pool, "demo", 30, Utc::now())
        .await
        .unwrap();

    // Assert
    assert_eq!(swept.dossiers, 1);
    let history = history_text(&app, &code).await;
    assert!(!history.contains("84903123456"), "{history}");
    app.stop().await;
}
