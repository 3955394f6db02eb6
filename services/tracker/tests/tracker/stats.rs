//! `GET /v1/stats` against a known data set: a few hundred generated dossiers whose
//! expected numbers the test works out from the generator's own facts (days in
//! Asia/Ho_Chi_Minh, the wait for the citizen added to the appointment and left out of
//! the processing time), not from the tracker's state.

use crate::helpers::*;
use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone};
use loa_contracts::DossierEvent;
use loa_platform::{testing::TestEnv, Secret};
use loa_tracker::{lookup_token, ratings::form_token};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const AGENCIES: [(&str, &str); 3] = [
    ("000.00.06.H56", "UBND phường Đức Thắng"),
    ("000.00.07.H56", "UBND phường Phú Tài"),
    ("000.12.30.H56", "Sở Tư pháp"),
];
const PROCEDURES: [(&str, &str); 3] = [
    ("1.001193", "Đăng ký khai sinh"),
    ("1.000894", "Đăng ký kết hôn"),
    ("1.000656", "Đăng ký khai tử"),
];
const LEVELS: [&str; 3] = ["very_satisfied", "satisfied", "dissatisfied"];

/// A small deterministic generator (64-bit LCG), so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// One generated dossier and what the test knows about it.
struct Generated {
    code: String,
    agency: usize,
    procedure: usize,
    received: DateTime<FixedOffset>,
    due: Option<DateTime<FixedOffset>>,
    pause_secs: i64,
    completed: Option<DateTime<FixedOffset>>,
    returned: Option<DateTime<FixedOffset>>,
    rating: Option<usize>,
    events: Vec<DossierEvent>,
}

fn vn() -> FixedOffset {
    FixedOffset::east_opt(7 * 3_600).unwrap()
}

fn event_json(
    id: String,
    g: &Generated,
    status: u8,
    at: DateTime<FixedOffset>,
    with_dates: bool,
) -> DossierEvent {
    let mut v = json!({
        "event_id": id,
        "tenant": "demo",
        "dossier_code": g.code,
        "status": status,
        "occurred_at": at.to_rfc3339(),
        "procedure": {"code": PROCEDURES[g.procedure].0, "name": PROCEDURES[g.procedure].1},
        "agency": {"code": AGENCIES[g.agency].0, "name": AGENCIES[g.agency].1},
        "applicant": {"name": "Nguyễn Văn An", "phone": "0903123456"},
        "channels": {"zalo": false, "broadcast": false}
    });
    // The dates only on the receipt: a later event repeating the appointment would be
    // a new appointment, which already allows for the wait.
    if with_dates {
        v["received_at"] = json!(g.received.to_rfc3339());
        if let Some(due) = g.due {
            v["due_at"] = json!(due.to_rfc3339());
        }
    }
    DossierEvent::from_json(&v).unwrap()
}

/// 320 dossiers received from 2026-09-21 to 2026-11-29, some waiting for the citizen,
/// most completed (some after the period), half of those returned and most of the
/// returned ones rated (only those returned before `rate_at`).
fn generate(rate_at: DateTime<FixedOffset>) -> Vec<Generated> {
    let mut rng = Lcg(20_261_204);
    let base = vn().with_ymd_and_hms(2026, 9, 21, 0, 0, 0).unwrap();
    (0..320)
        .map(|i| {
            let received = base
                + Duration::days(rng.below(70) as i64)
                + Duration::hours(7 + rng.below(10) as i64)
                + Duration::minutes(rng.below(60) as i64);
            let received_day = received.date_naive();
            let due = (rng.below(10) != 0).then(|| {
                vn().from_local_datetime(
                    &(received_day + Duration::days(1 + rng.below(12) as i64))
                        .and_hms_opt(17, 0, 0)
                        .unwrap(),
                )
                .unwrap()
            });
            let mut g = Generated {
                code: format!("000.00.06.H56-26{i:04}"),
                agency: rng.below(3) as usize,
                procedure: rng.below(3) as usize,
                received,
                due,
                pause_secs: 0,
                completed: None,
                returned: None,
                rating: None,
                events: Vec::new(),
            };
            let mut events = vec![event_json(format!("s{i}-2"), &g, 2, received, true)];
            let mut at = received + Duration::hours(1 + rng.below(30) as i64);
            events.push(event_json(format!("s{i}-4"), &g, 4, at, false));
            if rng.below(10) < 3 {
                at += Duration::hours(2 + rng.below(48) as i64);
                events.push(event_json(format!("s{i}-5"), &g, 5, at, false));
                let back = at + Duration::minutes(30 + rng.below(6 * 24 * 60) as i64);
                g.pause_secs = (back - at).num_seconds();
                at = back;
                events.push(event_json(format!("s{i}-4b"), &g, 4, at, false));
            }
            if rng.below(10) < 8 {
                at += Duration::minutes(60 + rng.below(14 * 24 * 60) as i64);
                g.completed = Some(at);
                events.push(event_json(format!("s{i}-9"), &g, 9, at, false));
                if rng.below(2) == 0 {
                    at += Duration::hours(1 + rng.below(72) as i64);
                    g.returned = Some(at);
                    events.push(event_json(format!("s{i}-10"), &g, 10, at, false));
                    if at < rate_at && rng.below(10) < 8 {
                        g.rating = Some(rng.below(3) as usize);
                    }
                }
            }
            g.events = events;
            g
        })
        .collect()
}

/// What the report should say for the dossiers `gs` over `from..=to`, worked out from
/// the generator's facts.
fn expected(gs: &[&Generated], from: NaiveDate, to: NaiveDate) -> Value {
    let inside = |d: DateTime<FixedOffset>| {
        let day = d.with_timezone(&vn()).date_naive();
        day >= from && day <= to
    };
    let (mut received, mut completed, mut early, mut on_time, mut late, mut none) =
        (0, 0, 0, 0, 0, 0);
    let mut times = Vec::new();
    let mut levels = [0u64; 3];
    for g in gs {
        if inside(g.received) {
            received += 1;
        }
        if let Some(done) = g.completed.filter(|d| inside(*d)) {
            completed += 1;
            match g.due {
                None => none += 1,
                Some(due) => {
                    // The clock stopped while the dossier waited for the citizen.
                    let due_day = (due + Duration::seconds(g.pause_secs)).date_naive();
                    let done_day = done.date_naive();
                    if done_day < due_day {
                        early += 1;
                    } else if done_day == due_day {
                        on_time += 1;
                    } else {
                        late += 1;
                    }
                }
            }
            times.push((done - g.received).num_seconds() - g.pause_secs);
        }
        // Every rating is given at the test's `rate_at`, inside the period.
        if let Some(level) = g.rating {
            levels[level] += 1;
        }
    }
    times.sort_unstable();
    let n = times.len();
    let median = match n {
        0 => Value::Null,
        _ if n % 2 == 1 => json!(times[n / 2]),
        _ => json!((times[n / 2 - 1] + times[n / 2]) / 2),
    };
    let total = levels.iter().sum::<u64>();
    json!({
        "received": received, "completed": completed, "early": early, "on_time": on_time,
        "late": late, "without_due_date": none, "median_processing_seconds": median,
        "ratings": {"very_satisfied": levels[0], "satisfied": levels[1], "dissatisfied": levels[2], "total": total},
        "satisfied_share": if total == 0 { Value::Null } else {
            json!(((levels[0] + levels[1]) as f64 / total as f64 * 10_000.0).round() / 10_000.0)
        },
    })
}

/// The parts of a report row the expectation covers.
fn comparable(row: &Value) -> Value {
    let mut out = json!({});
    for key in [
        "received",
        "completed",
        "early",
        "on_time",
        "late",
        "without_due_date",
        "median_processing_seconds",
        "ratings",
        "satisfied_share",
    ] {
        out[key] = row[key].clone();
    }
    out
}

#[tokio::test]
async fn statistics_match_a_known_data_set_of_a_few_hundred_dossiers() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(
        &env,
        loa_tracker::TrackerSettings {
            lookup_rate_per_minute: 60_000,
            lookup_burst: 10_000,
            ..settings(false)
        },
    )
    .await;
    let rate_at = vn().with_ymd_and_hms(2026, 11, 30, 20, 0, 0).unwrap();
    let data = generate(rate_at);
    let mut ids = Vec::new();
    for g in &data {
        for e in &g.events {
            broker.publish(e).await;
            ids.push(e.event_id.clone());
        }
    }
    app.wait_applied(&ids.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    app.clock.set_now(rate_at.to_utc());
    let client = reqwest::Client::new();
    for g in data.iter().filter(|g| g.rating.is_some()) {
        let token = lookup_token(&Secret::new(SECRET), "demo", &g.code);
        let issued = app.clock.now().timestamp();
        let form = form_token(&Secret::new(SECRET), &token, issued);
        let level = LEVELS[g.rating.unwrap()];
        let response = client
            .post(format!("{}/tra-cuu/{token}/danh-gia", app.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("issued={issued}&form_token={form}&level={level}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", g.code);
    }
    let from = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
    let to = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    let all: Vec<&Generated> = data.iter().collect();
    let rated = data.iter().filter(|g| g.rating.is_some()).count();
    assert!(
        data.len() >= 300 && rated >= 40,
        "a data set worth the name: {rated} rated"
    );

    // Act
    let by_agency = app
        .admin_get("/v1/stats?from=2026-10-01&to=2026-11-30&group=agency")
        .await;
    let by_procedure = app
        .admin_get("/v1/stats?from=2026-10-01&to=2026-11-30&group=procedure")
        .await;
    let csv = client
        .get(format!(
            "{}/v1/stats?from=2026-10-01&to=2026-11-30&group=procedure",
            app.address
        ))
        .bearer_auth("demo-admin")
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();

    // Assert
    let total = expected(&all, from, to);
    assert_eq!(comparable(&by_agency["total"]), total, "{by_agency:#}");
    assert_eq!(comparable(&by_procedure["total"]), total);
    let tallied = |t: &Value, k: &str| t[k].as_u64().unwrap();
    assert!(
        tallied(&total, "early") > 0
            && tallied(&total, "late") > 0
            && tallied(&total, "on_time") > 0
    );
    assert!(
        tallied(&total, "received") < data.len() as u64,
        "some were received before the period"
    );
    for (index, (code, name)) in AGENCIES.iter().enumerate() {
        let mine: Vec<&Generated> = data.iter().filter(|g| g.agency == index).collect();
        let row = by_agency["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["code"] == *code)
            .unwrap_or_else(|| panic!("no row for {code}"));
        assert_eq!(row["name"], *name);
        assert_eq!(comparable(row), expected(&mine, from, to), "{code}");
    }
    let mut procedure_rows = BTreeMap::new();
    for (index, (code, _)) in PROCEDURES.iter().enumerate() {
        let mine: Vec<&Generated> = data.iter().filter(|g| g.procedure == index).collect();
        procedure_rows.insert((*code).to_owned(), expected(&mine, from, to));
    }
    for row in by_procedure["rows"].as_array().unwrap() {
        let code = row["code"].as_str().unwrap();
        assert_eq!(comparable(row), procedure_rows[code], "{code}");
    }
    assert_eq!(by_procedure["rows"].as_array().unwrap().len(), 3);
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let last = text.trim_end().lines().last().unwrap();
    let cells: Vec<&str> = last.split(',').collect();
    assert_eq!(cells[1], "Tổng cộng");
    assert_eq!(cells[2], total["received"].to_string());
    assert_eq!(cells[3], total["completed"].to_string());
    assert_eq!(cells[12], total["ratings"]["total"].to_string());
    assert_eq!(text.trim_end().lines().count(), 1 + 3 + 1);
    app.stop().await;
}

#[tokio::test]
async fn bad_statistics_parameters_are_422_naming_the_field() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let app = TestApp::spawn(&env, settings(false)).await;
    let client = reqwest::Client::new();
    let cases = [
        ("to=2026-11-30", "from"),
        ("from=2026-11-01", "to"),
        ("from=2026-13-01&to=2026-12-31", "from"),
        ("from=2026-11-01&to=30/11/2026", "to"),
        ("from=2026-11-30&to=2026-11-01", "to"),
        ("from=2025-01-01&to=2026-11-30", "to"),
        ("from=2026-11-01&to=2026-11-30&group=ward", "group"),
    ];

    // Act + Assert
    for (query, field) in cases {
        let response = client
            .get(format!("{}/v1/stats?{query}", app.address))
            .bearer_auth("demo-admin")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
    let anonymous = client
        .get(format!(
            "{}/v1/stats?from=2026-11-01&to=2026-11-30",
            app.address
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let empty = app
        .admin_get("/v1/stats?from=2026-11-01&to=2026-11-30")
        .await;
    assert_eq!(empty["group"], "agency");
    assert_eq!(empty["rows"], json!([]));
    assert_eq!(empty["total"]["received"], 0);
    assert_eq!(empty["total"]["satisfied_share"], Value::Null);
    app.stop().await;
}
