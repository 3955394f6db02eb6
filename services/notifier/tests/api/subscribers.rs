//! The broadcasts' audience: `POST /v1/subscribers/import` (ndjson, CSV), opt-outs by
//! the API and by a citizen writing "huỷ" to the OA, phones joined to followers.

use crate::helpers::{spawn_app, TestApp, PATIENCE};
use loa_platform::testing::eventually;
use serde_json::{json, Value};

async fn import(app: &TestApp, token: &str, content_type: &str, body: &str) -> (u16, Value) {
    let r = app
        .http
        .post(format!("{}/v1/subscribers/import", app.address))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn opt_out(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    opt(app, "opt-out", token, body).await
}

/// `POST /v1/subscribers/<which>` (`opt-out`, `opt-in`) as `token`.
async fn opt(app: &TestApp, which: &str, token: &str, body: Value) -> (u16, Value) {
    let r = app
        .http
        .post(format!("{}/v1/subscribers/{which}", app.address))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// `(phone, zalo_user_id, tags, announcements, opted out)` of a tenant's subscribers,
/// ordered by phone then user id.
async fn audience(
    app: &TestApp,
    tenant: &str,
) -> Vec<(Option<String>, Option<String>, Vec<String>, bool, bool)> {
    let client = app.pool.get().await.unwrap();
    client
        .query(
            "SELECT phone, zalo_user_id, tags, announcements, opted_out_at IS NOT NULL
               FROM notifier.subscribers WHERE tenant = $1 ORDER BY phone, zalo_user_id",
            &[&tenant],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

const NDJSON: &str = r#"{"phone": "0912 345 678", "tags": ["ward:phu-thuy", "topic:nong-nghiep"], "announcements": true}
{"zalo_user_id": "7000000000000000009", "tags": ["Ward:Tan-Hiep"], "announcements": true}
{"tags": ["ward:phu-thuy"]}
not json

{"phone": "12345", "announcements": true}
{"phone": "0987654321", "announcements": "yes"}
{"phone": "0987 111 222", "zalo_user_id": "7000000000000000010"}"#;

#[tokio::test]
async fn an_ndjson_import_reports_its_bad_lines_and_imports_the_rest_once() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let (status, first) = import(&app, "demo-admin", "application/x-ndjson", NDJSON).await;
    let (again, second) = import(&app, "demo-admin", "application/x-ndjson", NDJSON).await;

    // Assert: three good lines, four bad ones by line and field; the same again
    // changes nothing.
    assert_eq!((status, again), (200, 200), "{first} {second}");
    assert_eq!(
        (first["imported"].as_u64(), first["updated"].as_u64()),
        (Some(3), Some(0))
    );
    let rejected: Vec<(u64, &str)> = first["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rejected,
        [
            (3, "phone"),
            (4, "line"),
            (6, "phone"),
            (7, "announcements")
        ]
    );
    assert_eq!(first["rejected_total"], 4);
    assert_eq!(
        (second["imported"].as_u64(), second["updated"].as_u64()),
        (Some(0), Some(3))
    );
    let rows = audience(&app, "demo").await;
    assert_eq!(
        rows,
        [
            (
                Some("84912345678".into()),
                None,
                vec!["topic:nong-nghiep".into(), "ward:phu-thuy".into()],
                true,
                false
            ),
            (
                Some("84987111222".into()),
                Some("7000000000000000010".into()),
                vec![],
                false,
                false
            ),
            (
                None,
                Some("7000000000000000009".into()),
                vec!["ward:tan-hiep".into()],
                true,
                false
            ),
        ]
    );
}

#[tokio::test]
async fn a_csv_import_reads_its_header_and_a_bad_header_is_refused_with_no_effect() {
    // Arrange
    let app = spawn_app().await;
    let csv = "phone,zalo_user_id,tags,announcements\r\n\
               0912 345 678,,ward:phu-thuy|topic:thuy-san,true\r\n\
               ,,ward:x,true\r\n\
               \"+84 912 345 679\",u-1,,false\r\n";

    // Act
    let (status, body) = import(&app, "demo-admin", "text/csv; charset=utf-8", csv).await;
    let (bad_status, bad) = import(
        &app,
        "demo-admin",
        "text/csv",
        "phone,email\n0912345670,a@b\n",
    )
    .await;
    let (media_status, media) = import(&app, "demo-admin", "application/json", "{}").await;

    // Assert
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["imported"].as_u64(), body["rejected_total"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(body["rejected"][0]["line"], 3);
    assert_eq!(body["rejected"][0]["field"], "phone");
    assert_eq!(bad_status, 422);
    assert_eq!(bad["error"]["field"], "header");
    assert_eq!(media_status, 415);
    assert_eq!(media["error"]["field"], "Content-Type");
    let rows = audience(&app, "demo").await;
    assert_eq!(rows.len(), 2, "the refused import wrote nothing: {rows:?}");
    assert_eq!(rows[0].2, ["topic:thuy-san", "ward:phu-thuy"]);
}

#[tokio::test]
async fn an_opt_out_by_the_api_outlasts_a_later_import_and_names_a_bad_field() {
    // Arrange
    let app = spawn_app().await;
    let line = r#"{"phone": "0912345678", "announcements": true}"#;
    import(&app, "demo-admin", "application/x-ndjson", line).await;

    // Act
    let (status, body) = opt_out(&app, "demo-admin", json!({"phone": "0912 345 678"})).await;
    let (_, again) = opt_out(&app, "demo-admin", json!({"phone": "+84912345678"})).await;
    import(&app, "demo-admin", "application/x-ndjson", line).await;
    let (missing, missing_body) = opt_out(&app, "demo-admin", json!({})).await;
    let (bad, bad_body) = opt_out(&app, "demo-admin", json!({"phone": "12"})).await;
    let (unauthorised, _) = opt_out(&app, "wrong", json!({"phone": "0912345678"})).await;

    // Assert
    assert_eq!(
        (status, body["changed"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    assert_eq!(again["changed"], false);
    let rows = audience(&app, "demo").await;
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0].3 && rows[0].4,
        "opted in by the import, still opted out: {rows:?}"
    );
    assert_eq!(
        (missing, missing_body["error"]["field"].as_str()),
        (422, Some("phone"))
    );
    assert_eq!(
        (bad, bad_body["error"]["field"].as_str()),
        (422, Some("phone"))
    );
    assert_eq!(unauthorised, 401);
}

#[tokio::test]
async fn an_opt_in_by_the_api_lifts_an_opt_out_adds_an_unknown_citizen_and_names_a_bad_field() {
    // Arrange: one citizen imported without announcements, then opted out.
    let app = spawn_app().await;
    let line = r#"{"phone": "0912345678", "tags": ["ward:a"], "announcements": false}"#;
    import(&app, "demo-admin", "application/x-ndjson", line).await;
    opt_out(&app, "demo-admin", json!({"phone": "0912345678"})).await;

    // Act
    let (status, body) = opt(
        &app,
        "opt-in",
        "demo-admin",
        json!({"phone": "0912 345 678"}),
    )
    .await;
    let (_, again) = opt(
        &app,
        "opt-in",
        "demo-admin",
        json!({"phone": "+84912345678"}),
    )
    .await;
    let (_, unknown) = opt(
        &app,
        "opt-in",
        "demo-admin",
        json!({"zalo_user_id": "u-7200"}),
    )
    .await;
    let (both, both_body) = opt(
        &app,
        "opt-in",
        "demo-admin",
        json!({"phone": "0912345678", "zalo_user_id": "u-7200"}),
    )
    .await;
    let (bad, bad_body) = opt(&app, "opt-in", "demo-admin", json!({"zalo_user_id": "a b"})).await;
    let (unauthorised, _) = opt(&app, "opt-in", "wrong", json!({"phone": "0912345678"})).await;
    let (other_tenant, _) = opt(
        &app,
        "opt-in",
        "other-admin",
        json!({"phone": "0987654321"}),
    )
    .await;

    // Assert: both opted in, the imported one keeping its tags; nothing else written.
    assert_eq!(
        (
            status,
            body["opted_in"].as_bool(),
            body["changed"].as_bool()
        ),
        (200, Some(true), Some(true)),
        "{body}"
    );
    assert_eq!(again["changed"], false);
    assert_eq!(unknown["changed"], true);
    let rows = audience(&app, "demo").await;
    assert_eq!(
        rows,
        [
            (
                Some("84912345678".to_owned()),
                None,
                vec!["ward:a".to_owned()],
                true,
                false
            ),
            (None, Some("u-7200".to_owned()), vec![], true, false),
        ]
    );
    assert_eq!(
        (both, both_body["error"]["field"].as_str()),
        (422, Some("zalo_user_id"))
    );
    assert_eq!(
        (bad, bad_body["error"]["field"].as_str()),
        (422, Some("zalo_user_id"))
    );
    assert_eq!(unauthorised, 401);
    assert_eq!(other_tenant, 200);
    let others = audience(&app, "other").await;
    assert_eq!(
        others.len(),
        1,
        "the other tenant's own citizen: {others:?}"
    );
    assert_eq!(others[0].0.as_deref(), Some("84987654321"));
}

#[tokio::test]
async fn a_citizen_writing_huy_to_the_oa_is_opted_out() {
    // Arrange
    let app = spawn_app().await;
    let line = r#"{"zalo_user_id": "u-7100", "announcements": true}
{"zalo_user_id": "u-7101", "announcements": true}"#;
    import(&app, "demo-admin", "application/x-ndjson", line).await;
    let r = app
        .http
        .post(format!("{}/_sandbox/webhook", app.sandbox_url))
        .json(&json!({"url": format!("{}/zalo/webhook", app.address)}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    // Act
    for (user, text) in [("u-7100", "Huỷ"), ("u-7101", "huỷ hồ sơ giúp em")] {
        let r = app
            .http
            .post(format!("{}/_sandbox/users/{user}/text", app.sandbox_url))
            .json(&json!({ "text": text }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    // Assert: only the one who wrote just "huỷ".
    eventually(PATIENCE, || async {
        let client = app.pool.get().await.unwrap();
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM notifier.webhook_events WHERE event_name = 'user_send_text'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        (n == 2).then_some(())
    })
    .await
    .expect("both messages are recorded");
    let rows = audience(&app, "demo").await;
    let opted_out: Vec<(&str, bool)> = rows
        .iter()
        .map(|r| (r.1.as_deref().unwrap(), r.4))
        .collect();
    assert_eq!(opted_out, [("u-7100", true), ("u-7101", false)]);
}

#[tokio::test]
async fn a_follower_sharing_an_imported_phone_joins_that_citizen_s_row() {
    // Arrange: an imported, opted-in phone; a follower with a row of their own.
    let app = spawn_app().await;
    import(
        &app,
        "demo-admin",
        "application/x-ndjson",
        r#"{"phone": "0903123456", "tags": ["ward:a"], "announcements": true}"#,
    )
    .await;
    let r = app
        .http
        .post(format!("{}/_sandbox/webhook", app.sandbox_url))
        .json(&json!({"url": format!("{}/zalo/webhook", app.address)}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());

    // Act: the citizen follows the OA and shares that phone.
    for (path, body) in [
        ("follow", json!({})),
        (
            "submit_info",
            json!({"name": "Trần Văn Bình", "phone": "0903 123 456"}),
        ),
    ] {
        let r = app
            .http
            .post(format!("{}/_sandbox/users/u-7200/{path}", app.sandbox_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }

    // Assert: one row, with the user id, the imported tags and opt-in.
    eventually(PATIENCE, || async {
        let rows = audience(&app, "demo").await;
        (rows.len() == 1 && rows[0].1.as_deref() == Some("u-7200")).then_some(())
    })
    .await
    .expect("the phone joins the follower");
    let rows = audience(&app, "demo").await;
    assert_eq!(rows[0].2, ["ward:a"]);
    assert!(rows[0].3);
}

#[tokio::test]
async fn one_tenant_s_admin_imports_and_opts_out_in_their_own_tenant_only() {
    // Arrange
    let app = spawn_app().await;
    import(
        &app,
        "demo-admin",
        "application/x-ndjson",
        r#"{"phone": "0912345678", "announcements": true}"#,
    )
    .await;

    // Act: the other tenant's admin imports and opts out the same phone.
    let (status, body) = import(
        &app,
        "other-admin",
        "application/x-ndjson",
        r#"{"phone": "0912345678", "tags": ["x"]}"#,
    )
    .await;
    opt_out(&app, "other-admin", json!({"phone": "0912345678"})).await;
    let (unauthorised, _) = import(&app, "nobody", "application/x-ndjson", "{}").await;

    // Assert: the demo tenant's citizen is untouched.
    assert_eq!((status, body["imported"].as_u64()), (200, Some(1)));
    let demo = audience(&app, "demo").await;
    assert_eq!(
        demo,
        [(Some("84912345678".into()), None, vec![], true, false)]
    );
    let other = audience(&app, "other").await;
    assert!(other[0].4, "opted out in its own tenant");
    assert_eq!(unauthorised, 401);
}

#[tokio::test]
async fn a_nul_character_in_a_searched_tag_or_an_imported_name_is_refused_by_its_field_not_a_500() {
    // Arrange: PostgreSQL cannot hold a NUL in text (Schemathesis sent one as `tag`).
    let app = spawn_app().await;
    let lines = "{\"phone\": \"0912345678\", \"name\": \"L\\u0000an\", \"announcements\": true}\n\
                 {\"phone\": \"0912345679\", \"name\": \"Lan\", \"announcements\": true}\n";

    // Act
    let (import_status, imported) = import(&app, "demo-admin", "application/x-ndjson", lines).await;
    let r = app
        .http
        .get(format!("{}/v1/subscribers?tag=%00ward", app.address))
        .bearer_auth("demo-admin")
        .send()
        .await
        .unwrap();
    let (search_status, search): (u16, Value) = (r.status().as_u16(), r.json().await.unwrap());

    // Assert: the bad line is named and the good one imported; the search is a 400.
    assert_eq!(import_status, 200, "{imported}");
    assert_eq!(imported["imported"], 1, "{imported}");
    assert_eq!(
        imported["rejected"],
        json!([{"line": 1, "field": "name", "message": imported["rejected"][0]["message"]}])
    );
    assert_eq!(
        (search_status, search["error"]["field"].as_str()),
        (400, Some("tag")),
        "{search}"
    );
}

/// Lines the notifier writes in one transaction (`BATCH_LINES` in the import's code):
/// the tests below span batches with it.
const BATCH: usize = 10_000;

#[tokio::test]
async fn a_citizen_named_again_in_a_later_batch_ends_with_the_later_line_s_values_by_either_key() {
    // Arrange: a citizen known by phone and user id. The import names them by phone at
    // the end of a batch of phones, then by user id at the start of the next batch
    // (user ids only: written beside the first, it could update their row first and
    // be overwritten); and it names another citizen by phone in a batch, then again
    // in a later batch of phones.
    let app = spawn_app().await;
    import(
        &app,
        "demo-admin",
        "application/x-ndjson",
        r#"{"phone": "0900000001", "zalo_user_id": "7100000000000000001", "tags": ["ward:a"]}"#,
    )
    .await;
    let mut body = String::new();
    body.push_str("{\"phone\": \"0900000002\", \"tags\": [\"ward:x\"]}\n");
    for i in 1..BATCH - 1 {
        body.push_str(&format!(
            "{{\"phone\": \"091{i:07}\", \"tags\": [\"ward:x\"]}}\n"
        ));
    }
    body.push_str("{\"phone\": \"0900000001\", \"tags\": [\"ward:x\"]}\n");
    body.push_str("{\"zalo_user_id\": \"7100000000000000001\", \"tags\": [\"ward:y\"]}\n");
    for i in 1..BATCH {
        body.push_str(&format!(
            "{{\"zalo_user_id\": \"72{i:017}\", \"tags\": [\"ward:y\"]}}\n"
        ));
    }
    body.push_str("{\"phone\": \"0900000002\", \"tags\": [\"ward:y\"]}\n");

    // Act
    let (status, answer) = import(&app, "demo-admin", "application/x-ndjson", &body).await;

    // Assert: both citizens hold their last line's tags, each in one row.
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["imported"].as_u64(), answer["updated"].as_u64()),
        (Some(2 * BATCH as u64 - 2), Some(3)),
        "{answer}"
    );
    let client = app.pool.get().await.unwrap();
    let rows: Vec<(Option<String>, Option<String>, Vec<String>)> = client
        .query(
            "SELECT phone, zalo_user_id, tags FROM notifier.subscribers
              WHERE tenant = 'demo' AND (phone IN ('84900000001', '84900000002')
                                         OR zalo_user_id = '7100000000000000001')
              ORDER BY phone",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            (
                Some("84900000001".into()),
                Some("7100000000000000001".into()),
                vec!["ward:y".into()]
            ),
            (Some("84900000002".into()), None, vec!["ward:y".into()]),
        ]
    );
}

#[tokio::test]
async fn an_import_answered_200_has_every_batch_s_commit_flushed_to_disk() {
    // Arrange: the batches commit without waiting for the disk; the import must wait
    // once, at its end, before it answers. pg_walinspect reads the WAL that is on disk.
    let app = spawn_app().await;
    let client = app.pool.get().await.unwrap();
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        .await
        .unwrap();
    let start: String = client
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let body: String = (0..2 * BATCH + 1)
        .map(|i| format!("{{\"phone\": \"091{i:07}\", \"announcements\": true}}\n"))
        .collect();

    // Act
    let (status, answer) = import(&app, "demo-admin", "application/x-ndjson", &body).await;
    let flushed: String = client
        .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);

    // Assert: the commit record of every transaction that wrote the rows (three
    // batches) was in the WAL on disk when the answer came.
    assert_eq!(status, 200, "{answer}");
    let row = client
        .query_one(
            "WITH writers AS (
                 SELECT DISTINCT xmin::text::bigint AS xid FROM notifier.subscribers
                  WHERE tenant = 'demo'
             )
             SELECT (SELECT count(*) FROM writers),
                    (SELECT count(DISTINCT w.xid)
                       FROM pg_get_wal_records_info($1::text::pg_lsn, $2::text::pg_lsn) r
                       JOIN writers w ON w.xid = r.xid::text::bigint
                      WHERE r.resource_manager = 'Transaction' AND r.record_type = 'COMMIT')",
            &[&start, &flushed],
        )
        .await
        .unwrap();
    let (writers, flushed_commits): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(writers, 3, "one transaction a batch");
    assert_eq!(
        flushed_commits, writers,
        "every batch's commit was flushed (WAL on disk up to {flushed}) before the answer"
    );
}
