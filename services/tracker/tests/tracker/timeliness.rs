//! Early, on time, overdue and waiting for the citizen, on a clock the test moves: the
//! lookup page, the dossier API, the search, the overview and the overdue sweep agree.

use crate::helpers::*;
use chrono::{DateTime, Utc};
use loa_platform::testing::{eventually, TestEnv};
use serde_json::{json, Value};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// The codes `timeliness=overdue` finds.
async fn overdue_codes(app: &TestApp) -> Vec<String> {
    let page = app.admin_get("/v1/dossiers?timeliness=overdue").await;
    let mut codes: Vec<String> = page["dossiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap().to_owned())
        .collect();
    codes.sort();
    codes
}

async fn marked_overdue(app: &TestApp, code: &str) -> bool {
    let client = app.pool.get().await.unwrap();
    client
        .query_one(
            "SELECT overdue_since IS NOT NULL FROM tracker.dossiers WHERE dossier_code = $1",
            &[&code],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn the_page_the_apis_and_the_sweep_agree_on_early_overdue_and_waiting_dossiers() {
    // Arrange: five dossiers received on 28/11, due on 03/12 unless said otherwise.
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(
        &env,
        loa_tracker::TrackerSettings {
            overdue_sweep_secs: 1,
            ..settings(true)
        },
    )
    .await;
    let [late, waiting, resumed, early, undated] =
        ["0801", "0802", "0803", "0804", "0805"].map(dossier_code);
    let no_due = |v: &mut Value| {
        v.as_object_mut().unwrap().remove("due_at");
    };
    let events = [
        event("t-1", &late, 2, "2026-11-28T09:30:00+07:00"),
        event_with("t-2", &late, 4, "2026-11-29T09:30:00+07:00", no_due),
        event("t-3", &waiting, 2, "2026-11-28T09:30:00+07:00"),
        event_with("t-4", &waiting, 5, "2026-12-01T10:00:00+07:00", no_due),
        event("t-5", &resumed, 2, "2026-11-28T09:30:00+07:00"),
        event_with("t-6", &resumed, 5, "2026-12-01T10:00:00+07:00", no_due),
        event_with("t-7", &resumed, 4, "2026-12-03T10:00:00+07:00", no_due),
        event("t-8", &early, 2, "2026-11-28T09:30:00+07:00"),
        event_with("t-9", &early, 9, "2026-12-02T15:00:00+07:00", no_due),
        event_with("t-10", &undated, 2, "2026-11-28T09:30:00+07:00", no_due),
        event_with("t-11", &undated, 4, "2026-11-29T09:30:00+07:00", no_due),
    ];
    for e in &events {
        broker.publish(e).await;
    }
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    app.wait_applied(&ids).await;

    // Act: it is 05/12, two days after the appointment.
    app.clock.set_now(at("2026-12-05T09:00:00+07:00"));

    // Assert: only the one processed past its appointment is overdue, everywhere.
    let badge = |html: &str, label: &str| html.contains(&format!("\">{label}</span>"));
    let late_page = app.lookup_page(&late).await;
    assert!(badge(&late_page, "Quá hạn"), "{late_page}");
    let waiting_page = app.lookup_page(&waiting).await;
    assert!(
        badge(&waiting_page, "Tạm dừng, chờ bổ sung giấy tờ"),
        "{waiting_page}"
    );
    assert!(waiting_page.contains("từ ngày 01/12/2026 (không tính vào thời hạn giải quyết)"));
    let resumed_page = app.lookup_page(&resumed).await;
    assert!(badge(&resumed_page, "Đang trong hạn"), "{resumed_page}");
    assert!(resumed_page.contains("<dt>Hạn giải quyết sau khi bổ sung</dt><dd>05/12/2026</dd>"));
    assert!(resumed_page.contains("<dd>2 ngày (không tính vào thời hạn giải quyết)</dd>"));
    assert!(badge(
        &app.lookup_page(&early).await,
        "Đã có kết quả trước hạn"
    ));
    let undated_page = app.lookup_page(&undated).await;
    assert!(!undated_page.contains("class=\"badge"), "{undated_page}");

    for (code, expected) in [
        (&late, json!("overdue")),
        (&waiting, json!("paused")),
        (&resumed, json!("in_progress")),
        (&early, json!("early")),
        (&undated, Value::Null),
    ] {
        let dossier = app.admin_get(&format!("/v1/dossiers/{code}")).await;
        assert_eq!(dossier["timeliness"], expected, "{code}");
    }
    assert_eq!(overdue_codes(&app).await, std::slice::from_ref(&late));
    assert_eq!(app.admin_get("/v1/overview").await["overdue_open"], 1);
    eventually(WAIT, || async {
        let gauge = app
            .metric("loa_tracker_overdue_dossiers{tenant=\"demo\"}")
            .await?;
        (gauge == 1.0 && marked_overdue(&app, &late).await).then_some(())
    })
    .await
    .unwrap();
    for code in [&waiting, &resumed, &early, &undated] {
        assert!(!marked_overdue(&app, code).await, "{code}");
    }

    // Act: the next day the resumed one is past its moved appointment too, and the
    // late one now waits for the citizen's documents.
    app.clock.set_now(at("2026-12-06T09:00:00+07:00"));
    broker
        .publish(&event_with(
            "t-12",
            &late,
            5,
            "2026-12-06T08:00:00+07:00",
            no_due,
        ))
        .await;
    app.wait_applied(&["t-12"]).await;

    // Assert
    assert_eq!(overdue_codes(&app).await, std::slice::from_ref(&resumed));
    eventually(WAIT, || async {
        let gauge = app
            .metric("loa_tracker_overdue_dossiers{tenant=\"demo\"}")
            .await?;
        let swept = !marked_overdue(&app, &late).await && marked_overdue(&app, &resumed).await;
        (gauge == 1.0 && swept).then_some(())
    })
    .await
    .unwrap();
    assert!(badge(&app.lookup_page(&resumed).await, "Quá hạn"));
    app.stop().await;
}

#[tokio::test]
async fn only_one_replica_marks_at_a_time() {
    // Arrange: a transaction of another replica holds the sweep's lock.
    let env = TestEnv::new().await.unwrap();
    let app = TestApp::spawn(
        &env,
        loa_tracker::TrackerSettings {
            overdue_sweep_secs: 3_600,
            ..settings(false)
        },
    )
    .await;
    let mut holder = app.pool.get().await.unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.execute("SELECT pg_advisory_xact_lock(7302, 1)", &[])
        .await
        .unwrap();

    // Act
    let busy = loa_tracker::overdue::sweep_once(&app.pool, Utc::now())
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    // Assert: refused while held; once released, taken (the app's own sweeper, which
    // ran at start-up, may hold it for an instant).
    assert!(!busy.marked_here);
    eventually(WAIT, || async {
        let free = loa_tracker::overdue::sweep_once(&app.pool, Utc::now())
            .await
            .ok()?;
        free.marked_here.then_some(())
    })
    .await
    .unwrap();
    app.stop().await;
}
