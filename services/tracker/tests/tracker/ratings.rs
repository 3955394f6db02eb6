//! Citizens' ratings through the lookup page's form: only after the result was
//! returned, one per dossier, changeable inside the tenant's window and final after
//! it, forged posts refused, counted in `loa_tracker_ratings_total`.

use crate::helpers::*;
use chrono::{DateTime, Duration, Utc};
use loa_platform::{testing::TestEnv, Secret};
use loa_tracker::{lookup_token, ratings::form_token};
use serde_json::Value;

/// A tracker with the lookup rate limit out of the way.
async fn spawn(env: &TestEnv) -> TestApp {
    TestApp::spawn(
        env,
        loa_tracker::TrackerSettings {
            lookup_rate_per_minute: 6_000,
            lookup_burst: 1_000,
            ..settings(false)
        },
    )
    .await
}

/// A `demo` dossier received, ready and returned (status 10); its lookup token.
async fn returned_dossier(broker: &Broker, app: &TestApp, suffix: &str) -> String {
    let code = dossier_code(suffix);
    let ids = [2, 9, 10].map(|s| format!("evt-r{suffix}-{s}"));
    broker
        .publish(&event(&ids[0], &code, 2, "2026-11-28T09:30:00+07:00"))
        .await;
    broker
        .publish(&event(&ids[1], &code, 9, "2026-12-01T15:00:00+07:00"))
        .await;
    broker
        .publish(&event(&ids[2], &code, 10, "2026-12-02T08:00:00+07:00"))
        .await;
    app.wait_applied(&ids.each_ref().map(String::as_str)).await;
    lookup_token(&Secret::new(SECRET), "demo", &code)
}

/// Posts the form as a browser would, with `fields` as given.
async fn post(
    app: &TestApp,
    token: &str,
    fields: &[(&str, &str)],
    html: bool,
) -> reqwest::Response {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut request = reqwest::Client::new()
        .post(format!("{}/tra-cuu/{token}/danh-gia", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if html {
        request = request.header("accept", "text/html,application/xhtml+xml");
    }
    request.send().await.unwrap()
}

/// The form's hidden fields as the page served at the tracker's `now` carries them.
fn genuine(token: &str, now: DateTime<Utc>) -> (String, String) {
    let issued = now.timestamp();
    (
        issued.to_string(),
        form_token(&Secret::new(SECRET), token, issued),
    )
}

async fn rate(app: &TestApp, token: &str, level: &str, comment: &str) -> reqwest::Response {
    let (issued, form) = genuine(token, app.clock.now());
    post(
        app,
        token,
        &[
            ("issued", &issued),
            ("form_token", &form),
            ("level", level),
            ("comment", comment),
        ],
        true,
    )
    .await
}

async fn stored(app: &TestApp) -> Vec<(String, String, String, i32)> {
    let client = app.pool.get().await.unwrap();
    client
        .query(
            "SELECT dossier_code, level, comment, changes FROM tracker.ratings ORDER BY dossier_code",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

async fn ratings_metric(app: &TestApp, level: &str) -> f64 {
    app.metric(&format!(
        "loa_tracker_ratings_total{{level=\"{level}\",tenant=\"demo\"}}"
    ))
    .await
    .unwrap_or_else(|| panic!("no {level} series"))
}

#[tokio::test]
async fn a_returned_dossiers_page_carries_the_form_and_a_rating_is_recorded_once() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = spawn(&env).await;
    let token = returned_dossier(&broker, &app, "0501").await;
    let before = ratings_metric(&app, "satisfied").await;

    // Act
    let page = reqwest::get(format!("{}/tra-cuu/{token}", app.address))
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    let first = rate(
        &app,
        &token,
        "satisfied",
        "Cán bộ\r\nhướng dẫn tận tình\u{202E}",
    )
    .await;
    let first_status = first.status();
    let confirmation = first.text().await.unwrap();

    // Assert
    assert!(csp.contains("form-action 'self'"), "{csp}");
    for expected in [
        "Đánh giá mức độ hài lòng",
        &format!("action=\"{token}/danh-gia\""),
        "value=\"very_satisfied\"",
        "Rất hài lòng",
        "Hài lòng",
        "Không hài lòng",
        "name=\"form_token\"",
        "<textarea",
    ] {
        assert!(html.contains(expected), "missing {expected:?} in {html}");
    }
    assert!(!html.contains("<script"), "the form needs no JavaScript");
    assert_eq!(first_status, 200, "{confirmation}");
    assert!(
        confirmation.contains("Cảm ơn ông/bà đã đánh giá"),
        "{confirmation}"
    );
    assert!(confirmation.contains("Hài lòng"), "{confirmation}");
    assert!(
        confirmation.contains("có thể đổi đánh giá đến lúc "),
        "{confirmation}"
    );
    assert_eq!(
        stored(&app).await,
        vec![(
            dossier_code("0501"),
            "satisfied".to_owned(),
            "Cán bộ  hướng dẫn tận tình".to_owned(),
            0
        )]
    );
    // Other tests of this binary rate in the same process (one registry): at least ours.
    assert!(ratings_metric(&app, "satisfied").await >= before + 1.0);
    let again = app.page_of_token(&token).await;
    assert!(
        again.contains("Ông/bà đã đánh giá: <strong class=\"given\">Hài lòng</strong>"),
        "{again}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_organisation_s_page_and_rating_confirmation_address_it_not_ong_ba() {
    // Arrange: a company's dossier, returned.
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = spawn(&env).await;
    let code = dossier_code("0509");
    let ids = [2, 10].map(|s| format!("evt-org-{s}"));
    for (id, (status, at)) in ids.iter().zip([
        (2, "2026-11-28T09:30:00+07:00"),
        (10, "2026-12-02T08:00:00+07:00"),
    ]) {
        let company = event_with(id, &code, status, at, |v| {
            v["applicant"] = serde_json::json!({
                "name": "Công ty TNHH Thương mại Việt Tiến", "kind": "organisation",
                "tax_code": "0312345678", "phone": "0903 123 456"});
        });
        broker.publish(&company).await;
    }
    app.wait_applied(&ids.each_ref().map(String::as_str)).await;
    let token = lookup_token(&Secret::new(SECRET), "demo", &code);

    // Act
    let page = app.page_of_token(&token).await;
    let confirmation = rate(&app, &token, "very_satisfied", "").await;
    let status = confirmation.status();
    let confirmation = confirmation.text().await.unwrap();

    // Assert
    assert_eq!(status, 200, "{confirmation}");
    for html in [&page, &confirmation] {
        assert!(!html.to_lowercase().contains("ông/bà"), "{html}");
        assert!(html.contains("Quý tổ chức"), "{html}");
    }
    assert!(page.contains("Công ty TNHH Thương mại Việt Tiến"), "{page}");
    assert!(
        confirmation.contains("Cảm ơn Quý tổ chức đã đánh giá"),
        "{confirmation}"
    );
}

#[tokio::test]
async fn a_rating_is_changeable_inside_the_window_and_final_after_it() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = spawn(&env).await;
    let token = returned_dossier(&broker, &app, "0502").await;
    let start = app.clock.now();
    assert_eq!(
        rate(&app, &token, "dissatisfied", "Chờ lâu").await.status(),
        200
    );

    // Act: six days later the citizen changes it; eight days after the first rating
    // (the demo tenant's window is 7 days) they try again.
    app.clock.set_now(start + Duration::days(6));
    let changed = rate(&app, &token, "very_satisfied", "").await.status();
    let after_change = stored(&app).await;
    app.clock.set_now(start + Duration::days(8));
    let late = rate(&app, &token, "dissatisfied", "Đổi ý").await;
    let late_status = late.status();
    let late_page = late.text().await.unwrap();
    let page = app.page_of_token(&token).await;
    let (issued, form) = genuine(&token, app.clock.now());
    let late_json: Value = post(
        &app,
        &token,
        &[
            ("issued", &issued),
            ("form_token", &form),
            ("level", "satisfied"),
        ],
        false,
    )
    .await
    .json()
    .await
    .unwrap();

    // Assert
    assert_eq!(changed, 200);
    let one = vec![(
        dossier_code("0502"),
        "very_satisfied".to_owned(),
        String::new(),
        1,
    )];
    assert_eq!(after_change, one, "still one rating per dossier, changed");
    assert_eq!(late_status, 409);
    assert!(
        late_page.contains("Đã hết thời hạn đổi đánh giá"),
        "{late_page}"
    );
    assert_eq!(late_json["error"]["code"], "rating_final");
    assert_eq!(stored(&app).await, one, "a refused change changes nothing");
    assert!(page.contains("Rất hài lòng"), "{page}");
    assert!(
        !page.contains("<form"),
        "a final rating has no form: {page}"
    );
    app.stop().await;
}

#[tokio::test]
async fn forged_and_malformed_posts_are_refused_naming_the_field_and_change_nothing() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = spawn(&env).await;
    let token = returned_dossier(&broker, &app, "0503").await;
    let other = returned_dossier(&broker, &app, "0504").await;
    let now = app.clock.now();
    let (issued, form) = genuine(&token, now);
    let (other_issued, other_form) = genuine(&other, now);
    let (old_issued, old_form) = genuine(&token, now - Duration::hours(25));
    let long = "á".repeat(501);
    let zeros = "0".repeat(32);

    // Act + Assert
    type Fields<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Fields<'_>, u16, &str); 7] = [
        (&[("level", "satisfied")], 403, "form_token"),
        (
            &[
                ("issued", &issued),
                ("form_token", zeros.as_str()),
                ("level", "satisfied"),
            ],
            403,
            "form_token",
        ),
        (
            &[
                ("issued", &other_issued),
                ("form_token", &other_form),
                ("level", "satisfied"),
            ],
            403,
            "form_token",
        ),
        (
            &[
                ("issued", &old_issued),
                ("form_token", &old_form),
                ("level", "satisfied"),
            ],
            403,
            "form_token",
        ),
        (
            &[
                ("issued", &issued),
                ("form_token", &form),
                ("level", "rất hài lòng"),
            ],
            422,
            "level",
        ),
        (&[("issued", &issued), ("form_token", &form)], 422, "level"),
        (
            &[
                ("issued", &issued),
                ("form_token", &form),
                ("level", "satisfied"),
                ("comment", &long),
            ],
            422,
            "comment",
        ),
    ];
    for (fields, status, field) in cases {
        let response = post(&app, &token, fields, false).await;
        assert_eq!(response.status(), status, "{fields:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{fields:?}: {body}");
    }
    let cross_site = reqwest::Client::new()
        .post(format!("{}/tra-cuu/{token}/danh-gia", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("sec-fetch-site", "cross-site")
        .body(format!("issued={issued}&form_token={form}&level=satisfied"))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    let as_json = reqwest::Client::new()
        .post(format!("{}/tra-cuu/{token}/danh-gia", app.address))
        .json(&serde_json::json!({"level": "satisfied"}))
        .send()
        .await
        .unwrap();
    assert_eq!(as_json.status(), 415);
    let browser = post(&app, &token, &[("level", "satisfied")], true).await;
    assert_eq!(browser.status(), 403);
    let page = browser.text().await.unwrap();
    assert!(
        page.contains("Phiếu đánh giá đã hết hạn hoặc không hợp lệ"),
        "{page}"
    );
    assert!(stored(&app).await.is_empty(), "nothing was recorded");
    app.stop().await;
}

#[tokio::test]
async fn a_dossier_whose_result_was_not_returned_cannot_be_rated() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = spawn(&env).await;
    let code = dossier_code("0505");
    broker
        .publish(&event("evt-r0505-9", &code, 9, "2026-12-01T15:00:00+07:00"))
        .await;
    app.wait_applied(&["evt-r0505-9"]).await;
    let token = lookup_token(&Secret::new(SECRET), "demo", &code);

    // Act
    let page = app.lookup_page(&code).await;
    let (issued, form) = genuine(&token, app.clock.now());
    let response = post(
        &app,
        &token,
        &[
            ("issued", &issued),
            ("form_token", &form),
            ("level", "satisfied"),
        ],
        false,
    )
    .await;

    // Assert
    assert!(!page.contains("Đánh giá mức độ hài lòng"), "{page}");
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_rateable");
    assert!(stored(&app).await.is_empty());
    app.stop().await;
}

/// Publishes a rating given in Zalo as the notifier's relay does.
async fn publish_feedback(env: &TestEnv, feedback: &loa_contracts::CitizenFeedback) {
    use loa_platform::amqp::{topology, OutgoingMessage, Publisher};
    let publisher = Publisher::new(env.amqp_url.clone(), "test-feedback");
    publisher
        .publish(&OutgoingMessage {
            exchange: topology::EX_CITIZEN.into(),
            routing_key: feedback.routing_key(),
            body: loa_contracts::Envelope::CitizenFeedbackV1(feedback.clone()).to_bytes(),
            message_id: format!("feedback-{}", feedback.msg_id),
            headers: Vec::new(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_rating_given_in_zalo_counts_once_however_often_it_is_delivered() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = spawn(&env).await;
    returned_dossier(&broker, &app, "0506").await;
    let code = dossier_code("0507");
    broker
        .publish(&event("evt-r0507-9", &code, 9, "2026-12-01T15:00:00+07:00"))
        .await;
    app.wait_applied(&["evt-r0507-9"]).await;
    let feedback = loa_contracts::CitizenFeedback {
        tenant: "demo".into(),
        dossier_code: dossier_code("0506"),
        msg_id: "zalo-msg-1".into(),
        stars: 4,
        note: "Nhanh\u{0007} gọn".into(),
        submitted_at: app.clock.now(),
    };
    let not_returned = loa_contracts::CitizenFeedback {
        dossier_code: code.clone(),
        msg_id: "zalo-msg-2".into(),
        ..feedback.clone()
    };
    let outcome =
        |o: &str| format!("loa_tracker_zalo_feedback_total{{outcome=\"{o}\",tenant=\"demo\"}}");
    let duplicates = app.metric(&outcome("duplicate")).await.unwrap();

    // Act: the same rating delivered three times, and one for a dossier not returned.
    for _ in 0..3 {
        publish_feedback(&env, &feedback).await;
    }
    publish_feedback(&env, &not_returned).await;

    // Assert
    let first = loa_platform::testing::eventually(WAIT, || async {
        let got = stored(&app).await;
        (!got.is_empty()).then_some(got)
    })
    .await
    .unwrap();
    loa_platform::testing::eventually(WAIT, || async {
        (app.metric(&outcome("duplicate")).await? >= duplicates + 2.0).then_some(())
    })
    .await
    .expect("the repeats are counted as duplicates");
    assert_eq!(
        stored(&app).await,
        vec![(
            dossier_code("0506"),
            "satisfied".to_owned(),
            "Nhanh gọn".to_owned(),
            0
        )],
        "one rating, never changed by its repeats: {first:?}"
    );
    let page = app.lookup_page(&dossier_code("0506")).await;
    assert!(
        page.contains("Ông/bà đã đánh giá: <strong class=\"given\">Hài lòng</strong>"),
        "{page}"
    );
    loa_platform::testing::eventually(WAIT, || async {
        (app.metric(&outcome("not_rateable")).await? >= 1.0).then_some(())
    })
    .await
    .expect("the rating of a dossier not returned is refused");
    app.stop().await;
}
