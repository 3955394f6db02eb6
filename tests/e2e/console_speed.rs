//! The console's own pages with 100,000 dossiers in the tenant: each dossier search
//! filter, a dossier's page and the overview answer within 100 ms, served by the real
//! console over the real tracker and notifier (issue 11).

use crate::{
    helpers::TestSystem,
    helpers_console::{add_user, http_sign_in},
};
use loa_tracker::{search, testing};
use serde_json::Value;
use std::{collections::HashMap, time::Instant};

/// Runs per page; the median is held to the bound, so a few runs slowed by the other
/// work on a shared machine do not decide, and a page slow every time does.
const RUNS: usize = 7;

#[tokio::test]
async fn every_console_dossier_search_a_dossier_page_and_the_overview_answer_within_100_ms_with_100000_dossiers(
) {
    // Arrange
    let sys = TestSystem::start().await;
    add_user(&sys, "demo", "lan", "admin", "mật-khẩu-của-Lan").await;
    let settings = crate::helpers::test_settings(&sys.env);
    let secret = &settings.services.tracker.lookup_secret;
    let pool = loa_platform::db::pool(&sys.env.database_url, 1).unwrap();
    testing::load_many_dossiers(&pool, secret).await.unwrap();
    let session = http_sign_in(&sys, "demo", "lan", "mật-khẩu-của-Lan")
        .await
        .expect("signed in");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let searches: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("q", testing::KNOWN_PHONE_DOSSIER)],
        vec![("q", "BULK-00543")],
        vec![("q", testing::KNOWN_PHONE)],
        vec![("agency", "A7")],
        vec![("procedure", "P13")],
        vec![("status", "5")],
        vec![("status", testing::RARE_STATUS)],
        vec![("timeliness", "overdue")],
        vec![("timeliness", "early")],
        vec![("from", "2026-01-01"), ("to", "2026-01-31")],
    ];
    let db = pool.get().await.unwrap();
    let mut pages: Vec<(String, Vec<(&str, &str)>)> = searches
        .into_iter()
        .map(|q| ("/admin/dossiers".to_owned(), q))
        .collect();
    pages.push((
        format!("/admin/dossiers/{}", testing::KNOWN_PHONE_DOSSIER),
        vec![],
    ));
    pages.push(("/admin/overview".to_owned(), vec![]));

    for (path, query) in &pages {
        // Act: the tracker's plan for a search, then the console's page, RUNS times.
        if path == "/admin/dossiers" {
            let mut params: HashMap<String, String> = query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            params.insert("limit".into(), "20".into());
            let q = search::parse(&params, secret, "demo", chrono::Utc::now()).unwrap();
            let (sql, args) = search::statement("demo", &q);
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
                args.iter().map(|a| a.as_ref() as _).collect();
            let plan: Value = db
                .query_one(&format!("EXPLAIN (ANALYZE, FORMAT JSON) {sql}"), &refs)
                .await
                .unwrap()
                .get(0);
            let text = plan.to_string();
            assert!(
                !text.contains("\"Node Type\":\"Seq Scan\""),
                "{query:?} scans a table: {plan:#}"
            );
            assert!(
                testing::rows_removed(&plan) < 2000.0,
                "{query:?} reads {} rows it does not return: {plan:#}",
                testing::rows_removed(&plan)
            );
        }
        let mut times = Vec::with_capacity(RUNS);
        let mut body = String::new();
        for _ in 0..RUNS {
            let started = Instant::now();
            let response = client
                .get(format!("{}{path}", sys.console))
                .query(query)
                .header("Cookie", format!("loa_console_session={session}"))
                .send()
                .await
                .unwrap();
            let status = response.status();
            body = response.text().await.unwrap();
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(status, 200, "{path} {query:?}: {body}");
        }
        times.sort_by(f64::total_cmp);
        let median = times[RUNS / 2];

        // Assert
        println!(
            "{path} {query:?}: median {median:.1} ms, fastest {:.1} ms, slowest {:.1} ms",
            times[0],
            times[RUNS - 1]
        );
        assert!(median < 100.0, "{path} {query:?}: median {median:.1} ms");
        if path == "/admin/dossiers" {
            assert!(
                body.contains("/admin/dossiers/BULK-"),
                "{query:?} found nothing"
            );
        }
    }
    sys.stop().await;
}
