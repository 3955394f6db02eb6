use crate::helpers::{spawn_app, PHONE};
use chrono::Utc;
use futures_util::future::join_all;
use loa_contracts::NotificationKind;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn sends_beyond_the_configured_rate_answer_minus_32_and_the_peak_is_reported() {
    // Arrange
    let app = spawn_app().await;
    let token = app.access_token().await;
    app.control_ok(
        "limits",
        json!({"api": "zns", "rate_per_second": 5, "burst": 5}),
    )
    .await;
    let body = app.zns_body(PHONE, "burst");

    // Act: 30 requests at once.
    let started = std::time::Instant::now();
    let answers = join_all((0..30).map(|_| app.send_zns(&token, &body))).await;
    let refilled = (started.elapsed().as_secs_f64() * 5.0).ceil() as usize;

    // Assert
    let accepted = answers.iter().filter(|a| a["error"] == 0).count();
    let limited = answers.iter().filter(|a| a["error"] == -32).count();
    assert_eq!(accepted + limited, 30);
    assert!(
        (5..=5 + refilled).contains(&accepted),
        "accepted {accepted}, refill {refilled}"
    );
    let stats = app.stats().await;
    assert_eq!(stats["refused"]["-32"], limited as u64);
    assert_eq!(stats["accepted"], accepted as u64);
    assert!(
        stats["peak_rate_per_second"].as_u64().unwrap() >= 30,
        "{stats}"
    );
    let limited_answer = app.post_zalo("/message/template", &token, &body).await;
    assert_eq!(limited_answer.headers()["x-ratelimit-limit"], "5");
}

#[tokio::test]
async fn the_daily_quota_counts_down_and_then_answers_minus_144() {
    let app = spawn_app().await;
    let token = app.access_token().await;
    app.control_ok("limits", json!({"daily_quota": 3})).await;
    let body = app.zns_body(PHONE, "quota");

    let mut remaining = Vec::new();
    for _ in 0..3 {
        let answer = app.send_zns(&token, &body).await;
        assert_eq!(answer["data"]["quota"]["dailyQuota"], "3");
        remaining.push(
            answer["data"]["quota"]["remainingQuota"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let over = app.send_zns(&token, &body).await;

    assert_eq!(remaining, ["2", "1", "0"]);
    assert_eq!(over["error"], -144);
    // The next Vietnamese day brings a fresh quota.
    app.control_ok("clock", json!({"offset_secs": 86_400}))
        .await;
    assert_eq!(app.send_zns(&token, &body).await["error"], 0);
}

#[tokio::test]
async fn without_a_daily_quota_successes_report_zero_quota_as_zalo_does_and_sending_goes_on() {
    // Arrange
    let app = spawn_app().await;
    let token = app.access_token().await;
    app.control_ok("limits", json!({"api": "zns", "daily_quota": null}))
        .await;
    let body = app.zns_body(PHONE, "no-quota");

    // Act
    let answers = join_all((0..3).map(|_| app.send_zns(&token, &body))).await;
    let quota = app
        .client
        .get(format!("{}/message/quota", app.base))
        .header("access_token", &token)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();

    // Assert
    for answer in &answers {
        assert_eq!(answer["error"], 0, "{answer}");
        assert_eq!(
            answer["data"]["quota"],
            json!({"dailyQuota": "0", "remainingQuota": "0"})
        );
    }
    assert_eq!(quota["data"]["dailyQuota"], "0");
    assert_eq!(quota["data"]["remainingQuota"], "0");
}

#[tokio::test]
async fn the_night_ban_answers_minus_133_at_night_on_the_injected_clock() {
    // Arrange: today's 23:30 and 10:00 in Vietnam, both within the token's 25 h life.
    let app = spawn_app().await;
    let token = app.access_token().await;
    app.control_ok("limits", json!({"api": "zns", "night_ban": true}))
        .await;
    let today = loa_contracts::time::vietnam_day(&Utc::now());
    let body = app.zns_body(PHONE, "night");

    // Act
    app.control_ok("clock", json!({"now": format!("{today}T23:30:00+07:00")}))
        .await;
    let at_night = app.send_zns(&token, &body).await;
    app.control_ok("clock", json!({"now": format!("{today}T10:00:00+07:00")}))
        .await;
    let by_day = app.send_zns(&token, &body).await;

    // Assert
    assert_eq!(at_night["error"], -133, "{at_night}");
    assert_eq!(by_day["error"], 0, "{by_day}");
}

#[tokio::test]
async fn bad_limit_input_is_refused_naming_the_field() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({"rate_per_second": "fast"}), "rate_per_second"),
        (json!({"api": "oauth"}), "api"),
        (json!({"night_bam": true}), "night_bam"),
        (json!({"burst": 0}), "burst"),
    ] {
        let response = app.control("limits", body).await;
        assert_eq!(response.status(), 422);
        let error: serde_json::Value = response.json().await.unwrap();
        assert_eq!(error["error"]["field"], field, "{error}");
    }
}

#[tokio::test]
async fn promotions_are_refused_beyond_their_share_of_the_day_and_a_citizen_s_monthly_cap() {
    // Arrange: 8 ZNS messages a day, a quarter (2) for promotions; one a month each.
    let app = spawn_app().await;
    let token = app.access_token().await;
    let set = app
        .control_ok(
            "limits",
            json!({"api": "zns", "daily_quota": 8, "promotion_share": 0.25,
                   "promotion_monthly_per_user": 1}),
        )
        .await;
    let promotion = |phone: &str| {
        let data: serde_json::Map<String, serde_json::Value> = NotificationKind::Announcement
            .required_params()
            .iter()
            .map(|p| {
                let value = loa_contracts::templates::fit(p, &format!("giá trị {p}"));
                ((*p).to_owned(), json!(value))
            })
            .collect();
        json!({
            "phone": phone,
            "template_id": app.template_id(NotificationKind::Announcement),
            "template_data": data,
            "tracking_id": format!("promo-{phone}"),
        })
    };

    // Act
    let first = app.send_zns(&token, &promotion("84912000001")).await;
    let again = app.send_zns(&token, &promotion("84912000001")).await;
    let second = app.send_zns(&token, &promotion("84912000002")).await;
    let third = app.send_zns(&token, &promotion("84912000003")).await;
    let receipt = app
        .send_zns(&token, &app.zns_body(PHONE, "not-a-promotion"))
        .await;
    let bad = app
        .control("limits", json!({"api": "zns", "promotion_share": 1.5}))
        .await;

    // Assert: the cap per citizen, then the share; other templates unaffected, and
    // only accepted messages use the daily quota.
    assert_eq!(set["limits"]["promotion_share"], 0.25);
    assert_eq!(first["error"], 0, "{first}");
    assert_eq!(again["error"], -1471, "{again}");
    assert_eq!(second["error"], 0, "{second}");
    assert_eq!(third["error"], -147, "{third}");
    assert_eq!(receipt["error"], 0, "{receipt}");
    assert_eq!(receipt["data"]["quota"]["remainingQuota"], "5");
    assert_eq!(bad.status(), 422);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["error"]["field"], "promotion_share", "{body}");
}

#[tokio::test]
async fn requests_sent_within_the_rate_are_counted_as_they_arrive_while_the_host_runtime_is_stalled(
) {
    // Arrange: 10 a second, burst 2. A client on its own thread sends one request
    // every 200 ms (half the rate: each one finds the bucket refilled), as Loa's
    // notifier would from another machine.
    let app = spawn_app().await;
    let token = app.access_token().await;
    app.control_ok(
        "limits",
        json!({"api": "zns", "rate_per_second": 10, "burst": 2}),
    )
    .await;
    let body = app.zns_body(PHONE, "paced");
    let url = format!("{}/message/template", app.base);
    let client = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let http = reqwest::Client::new();
            let started = tokio::time::Instant::now();
            let mut sends = tokio::task::JoinSet::new();
            for k in 0..5 {
                tokio::time::sleep_until(started + Duration::from_millis(200) * k).await;
                let request = http
                    .post(&url)
                    .header("access_token", &token)
                    .json(&body)
                    .send();
                sends.spawn(async move { request.await.unwrap().json::<Value>().await.unwrap() });
            }
            sends.join_all().await
        })
    });

    // Act: the runtime that started the sandbox (this test's only thread) is stalled
    // meanwhile, as a starved CPU or a long poll of its host stalls it.
    std::thread::sleep(Duration::from_millis(1_200));
    let answers = tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();

    // Assert: Zalo counts a request when it arrives, not when its host gets to it.
    let errors: Vec<&Value> = answers.iter().map(|a| &a["error"]).collect();
    assert_eq!(errors, vec![&json!(0); 5]);
    assert_eq!(app.stats().await["refused"], json!({}));
}
