use crate::helpers::{spawn_app, spawn_app_with_receiver, test_settings, PHONE};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_fault_with_rate_one_and_a_count_fails_exactly_the_next_n_requests() {
    // Arrange
    let app = spawn_app().await;
    let token = app.access_token().await;
    app.control_ok(
        "faults",
        json!({"api": "zns", "error_code": -100, "rate": 1.0, "count": 2}),
    )
    .await;
    let body = app.zns_body(PHONE, "fault");

    // Act
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(app.send_zns(&token, &body).await["error"].as_i64().unwrap());
    }

    // Assert
    assert_eq!(codes, [-100, -100, 0]);
    assert_eq!(app.messages("").await.len(), 1);
    let active: Vec<Value> = app
        .client
        .get(format!("{}/_sandbox/faults", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(active.is_empty(), "{active:?}");
}

#[tokio::test]
async fn a_phone_restricted_fault_spares_other_phones_and_oa_faults_spare_zns() {
    let app = spawn_app().await;
    let token = app.access_token().await;
    app.control_ok(
        "faults",
        json!([
            {"api": "zns", "error_code": -118, "phone": "0903123456"},
            {"api": "oa", "error_code": -200}
        ]),
    )
    .await;

    let hit = app.send_zns(&token, &app.zns_body(PHONE, "a")).await;
    let spared = app
        .send_zns(&token, &app.zns_body("84987654321", "b"))
        .await;

    assert_eq!(hit["error"], -118);
    assert_eq!(hit["message"], "Zalo account not existed");
    assert_eq!(spared["error"], 0);
    app.client
        .delete(format!("{}/_sandbox/faults", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        app.send_zns(&token, &app.zns_body(PHONE, "c")).await["error"],
        0
    );
}

#[tokio::test]
async fn an_http_status_fault_answers_that_status_with_a_non_json_body() {
    let app = spawn_app().await;
    let token = app.access_token().await;
    app.control_ok(
        "faults",
        json!({"api": "zns", "http_status": 502, "count": 1}),
    )
    .await;

    let response = app
        .post_zalo("/message/template", &token, &app.zns_body(PHONE, "x"))
        .await;

    assert_eq!(response.status(), 502);
    let text = response.text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    assert_eq!(app.stats().await["refused"]["http_502"], 1);
}

#[tokio::test]
async fn latency_is_added_to_every_request_of_the_api() {
    let app = spawn_app().await;
    let token = app.access_token().await;
    app.control_ok("faults", json!({"api": "zns", "latency_ms": 300}))
        .await;

    let started = Instant::now();
    let answer = app.send_zns(&token, &app.zns_body(PHONE, "slow")).await;

    assert_eq!(answer["error"], 0);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_hang_fault_records_the_message_and_sends_its_receipt_but_the_client_times_out() {
    // Arrange
    let (app, receiver) = spawn_app_with_receiver(test_settings(), 0).await;
    let token = app.access_token().await;
    app.control_ok(
        "faults",
        json!({"api": "zns", "hang_rate": 1.0, "count": 1}),
    )
    .await;

    // Act
    let started = Instant::now();
    let result = app
        .client
        .post(format!("{}/message/template", app.base))
        .header("access_token", &token)
        .json(&app.zns_body(PHONE, "hung-1"))
        .timeout(Duration::from_millis(500))
        .send()
        .await;

    // Assert
    assert!(result.unwrap_err().is_timeout());
    assert!(started.elapsed() < Duration::from_secs(5));
    let recorded = app.messages("?tracking_id=hung-1").await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["hung"], true);
    let receipt = receiver
        .wait_for("user_received_message", |b| {
            b["message"]["tracking_id"] == "hung-1"
        })
        .await;
    assert_eq!(receipt.json()["message"]["msg_id"], recorded[0]["msg_id"]);
    assert_eq!(app.stats().await["hung"], 1);
}

#[tokio::test]
async fn an_oauth_fault_answers_an_oauth_shaped_error_without_spending_the_token() {
    let app = spawn_app().await;
    app.control_ok(
        "faults",
        json!({"api": "oauth", "error_code": -14014, "count": 1}),
    )
    .await;
    let seed = app.tenant.zalo.refresh_token.expose().to_owned();

    let refused = app.refresh(&seed).await;
    let granted = app.refresh(&seed).await;

    assert_eq!(refused["error"], -14014);
    assert!(granted["access_token"].is_string());
}

#[tokio::test]
async fn a_no_tokens_fault_answers_http_200_without_tokens_or_error_code() {
    // Arrange
    let app = spawn_app().await;
    app.control_ok(
        "faults",
        json!({"api": "oauth", "no_tokens": true, "count": 1}),
    )
    .await;
    let seed = app.tenant.zalo.refresh_token.expose().to_owned();
    let form = [
        ("refresh_token", seed.as_str()),
        ("app_id", app.app_id()),
        ("grant_type", "refresh_token"),
    ];

    // Act
    let response = app
        .client
        .post(format!("{}/v4/oa/access_token", app.base))
        .header("secret_key", app.tenant.zalo.app_secret.expose())
        .form(&form)
        .send()
        .await
        .unwrap();

    // Assert: a 200 with nothing in it, and the refresh token not spent.
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "");
    assert!(app.refresh(&seed).await["access_token"].is_string());
}

#[tokio::test]
async fn bad_fault_input_is_refused_naming_the_field() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({"api": "zns", "rate": "half"}), "rate"),
        (json!({"api": "sms"}), "api"),
        (json!({"error_code": -100}), "api"),
        (json!({"api": "zns", "rate": 2.0}), "rate"),
        (json!({"api": "zns", "count": -1}), "count"),
        (json!({"api": "zns", "http_status": 200}), "http_status"),
        (json!({"api": "zns", "eror_code": -100}), "eror_code"),
        (json!({"api": "zns", "no_tokens": true}), "no_tokens"),
        (
            json!({"api": "oauth", "no_tokens": true, "error_code": -14014}),
            "no_tokens",
        ),
        (json!({"api": "oauth", "no_tokens": "yes"}), "no_tokens"),
        (
            json!([{"api": "zns"}, {"api": "zns", "latency_ms": "1s"}]),
            "[1].latency_ms",
        ),
    ] {
        let response = app.control("faults", body.clone()).await;
        assert_eq!(response.status(), 422, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["field"], field, "{error}");
    }
    let malformed = app
        .client
        .post(format!("{}/_sandbox/faults", app.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
}
