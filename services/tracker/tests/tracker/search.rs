//! The console's dossier search: by code, by phone (through keyed hashes), filters,
//! paging, tenant isolation, and its speed with 100,000 dossiers in the tenant.

use crate::helpers::*;
use loa_platform::{testing::TestEnv, Secret};
use loa_tracker::{
    search,
    testing::{load_many_dossiers, rows_removed, KNOWN_PHONE_DOSSIER, RARE_STATUS},
};
use serde_json::{json, Value};
use std::{collections::HashMap, time::Instant};

async fn get(app: &TestApp, token: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}/v1/dossiers", app.address))
        .bearer_auth(token)
        .query(query)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn codes(page: &Value) -> Vec<String> {
    page["dossiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_dossier_is_found_by_its_code_or_its_applicants_phone_and_only_by_its_tenant() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(false)).await;
    let mine = dossier_code("0301");
    let filed_for = dossier_code("0302");
    broker
        .publish(&event("evt-s1", &mine, 2, "2026-11-28T09:30:00+07:00"))
        .await;
    broker
        .publish(&event_with(
            "evt-s2",
            &filed_for,
            2,
            "2026-11-28T09:40:00+07:00",
            |v| {
                v["applicant"]["phone"] = json!("0987 000 111");
                v["on_behalf_of"] = json!({"name": "Lê Văn Cường", "phone": "0912345678"});
            },
        ))
        .await;
    app.wait_applied(&["evt-s1", "evt-s2"]).await;

    // Act
    let (status, by_code) = get(&app, "demo-admin", &[("q", &mine)]).await;
    let (_, by_prefix) = get(&app, "demo-admin", &[("q", "000.00.06.H56-261128-03")]).await;
    let (_, by_phone) = get(&app, "demo-admin", &[("q", "+84 903.123.456")]).await;
    let (_, by_filer) = get(&app, "demo-admin", &[("q", "0912 345 678")]).await;
    let (_, other_tenant) = get(&app, "other-admin", &[("q", "0903123456")]).await;
    let (unauthorised, _) = get(&app, "nope", &[]).await;

    // Assert
    assert_eq!(status, 200, "{by_code}");
    assert_eq!(codes(&by_code), std::slice::from_ref(&mine));
    assert_eq!(
        by_code["dossiers"][0]["status"]["label_vi"],
        "Được tiếp nhận"
    );
    assert_eq!(by_code["dossiers"][0]["timeliness"], "overdue");
    assert_eq!(
        codes(&by_prefix),
        [filed_for.clone(), mine.clone()],
        "newest first"
    );
    assert_eq!(codes(&by_phone), [mine]);
    assert_eq!(codes(&by_filer), [filed_for]);
    assert!(codes(&other_tenant).is_empty());
    assert_eq!(unauthorised, 401);
    let client = app.pool.get().await.unwrap();
    let stored: Vec<String> = client
        .query("SELECT phone_key FROM tracker.dossier_phones", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored.len(), 3);
    assert!(stored
        .iter()
        .all(|k| !k.contains("903123456") && k.len() == 32));
    app.stop().await;
}

#[tokio::test]
async fn a_bad_search_parameter_is_a_400_naming_it() {
    let env = TestEnv::new().await.unwrap();
    let app = TestApp::spawn(&env, settings(false)).await;
    for (query, field) in [
        (vec![("status", "42")], "status"),
        (vec![("timeliness", "soon")], "timeliness"),
        (vec![("from", "yesterday")], "from"),
        (vec![("color", "red")], "color"),
    ] {
        let (status, body) = get(&app, "demo-admin", &query).await;
        assert_eq!(status, 400, "{query:?}: {body}");
        assert_eq!(body["error"]["field"], field);
    }
    app.stop().await;
}

#[tokio::test]
async fn every_search_answers_within_100_ms_through_an_index_with_100000_dossiers() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let app = TestApp::spawn(&env, settings(false)).await;
    load_many_dossiers(&app.pool, &Secret::new(SECRET))
        .await
        .unwrap();
    let (_, first) = get(&app, "demo-admin", &[("status", "5")]).await;
    let cursor = first["next"].as_str().expect("a second page").to_owned();
    let searches: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("q", KNOWN_PHONE_DOSSIER)],
        vec![("q", "BULK-00543")],
        vec![("q", "0903 123 456")],
        vec![("agency", "A7")],
        vec![("procedure", "P13")],
        vec![("status", "5")],
        vec![("status", "5"), ("after", &cursor)],
        vec![("status", RARE_STATUS)],
        vec![("timeliness", "overdue")],
        vec![("timeliness", "early")],
        vec![("from", "2026-01-01"), ("to", "2026-01-31")],
        vec![
            ("from", "2026-01-01"),
            ("to", "2026-01-31"),
            ("agency", "A4"),
        ],
        vec![("agency", "A9"), ("status", "10"), ("timeliness", "early")],
    ];
    let client = app.pool.get().await.unwrap();

    for query in &searches {
        // Act: the plan and the server's execution time, then the HTTP round trip.
        let params: HashMap<String, String> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let now = chrono::Utc::now();
        let q = search::parse(&params, &Secret::new(SECRET), "demo", now).unwrap();
        let (sql, args) = search::statement("demo", &q);
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            args.iter().map(|a| a.as_ref() as _).collect();
        let plan: Value = client
            .query_one(&format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}"), &refs)
            .await
            .unwrap()
            .get(0);
        let mut best = f64::MAX;
        let mut page = Value::Null;
        // The best of five: the machine is shared, the index walk is what is measured.
        for _ in 0..5 {
            let started = Instant::now();
            let (status, body) = get(&app, "demo-admin", query).await;
            best = best.min(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(status, 200, "{query:?}: {body}");
            page = body;
        }

        // Assert
        let text = plan.to_string();
        let executed = plan[0]["Execution Time"].as_f64().unwrap();
        println!(
            "{query:?}: {} rows, executed in {executed:.1} ms, answered in {best:.1} ms",
            codes(&page).len()
        );
        assert!(
            !text.contains("\"Node Type\":\"Seq Scan\""),
            "{query:?} scans a table: {plan:#}"
        );
        assert!(
            rows_removed(&plan) < 2000.0,
            "{query:?} reads {} rows it does not return: {plan:#}",
            rows_removed(&plan)
        );
        assert!(
            executed < 100.0,
            "{query:?} took {executed} ms in PostgreSQL: {plan:#}"
        );
        assert!(best < 100.0, "{query:?} took {best} ms through HTTP");
        assert!(!codes(&page).is_empty(), "{query:?} found nothing");
    }
    let (_, by_phone) = get(&app, "demo-admin", &[("q", "0903123456")]).await;
    assert_eq!(codes(&by_phone), [KNOWN_PHONE_DOSSIER]);
    let january = [("from", "2026-01-01"), ("to", "2026-01-31")];
    let (_, first_january) = get(&app, "demo-admin", &january).await;
    let next = first_january["next"].as_str().unwrap().to_owned();
    let (_, second_january) = get(
        &app,
        "demo-admin",
        &[january[0], january[1], ("after", &next)],
    )
    .await;
    let received = |page: &Value| -> Vec<String> {
        page["dossiers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["received_at"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut both = received(&first_january);
    both.extend(received(&second_january));
    assert_eq!(both.len(), 40);
    assert!(
        both.windows(2).all(|w| w[0] >= w[1]),
        "newest received first, across pages"
    );
    assert!(both.iter().all(|r| r.starts_with("2026-01")), "{both:?}");
    let (_, page_two) = get(&app, "demo-admin", &[("status", "5"), ("after", &cursor)]).await;
    let first_codes = codes(&first);
    assert!(
        codes(&page_two).iter().all(|c| !first_codes.contains(c)),
        "pages do not overlap"
    );
    app.stop().await;
}
