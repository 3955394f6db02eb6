use crate::helpers::{spawn_app, PHONE};
use chrono::DateTime;
use serde_json::{json, Value};

fn is_msg_id(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        s.len() == 20
            && s.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

#[tokio::test]
async fn zns_send_with_a_valid_token_is_recorded_with_normalised_fields() {
    // Arrange
    let app = spawn_app().await;
    let token = app.access_token().await;
    let body = app.zns_body(PHONE, "track-1");

    // Act
    let response = app.post_zalo("/message/template", &token, &body).await;
    let headers = response.headers().clone();
    let answer: Value = response.json().await.unwrap();
    let recorded = app.messages("?tracking_id=track-1").await;

    // Assert: the answer has Zalo's shape, numbers as strings.
    assert_eq!(answer["error"], 0, "{answer}");
    assert_eq!(answer["message"], "Success");
    let data = &answer["data"];
    assert!(is_msg_id(&data["msg_id"]), "{data}");
    assert!(data["sent_time"].as_str().unwrap().parse::<i64>().is_ok());
    assert_eq!(data["sending_mode"], "1");
    assert_eq!(data["quota"]["dailyQuota"], "100000");
    assert_eq!(data["quota"]["remainingQuota"], "99999");
    assert!(
        headers.contains_key("x-ratelimit-limit") && headers.contains_key("x-ratelimit-remain")
    );

    // And it is recorded.
    assert_eq!(recorded.len(), 1);
    let m = &recorded[0];
    assert_eq!(m["msg_id"], data["msg_id"]);
    assert_eq!(m["channel"], "zns");
    assert_eq!(m["phone"], PHONE);
    assert_eq!(m["template_id"], body["template_id"]);
    assert_eq!(m["template_data"], body["template_data"]);
    assert_eq!(m["tracking_id"], "track-1");
    assert_eq!(m["app_id"], app.app_id());
    assert!(DateTime::parse_from_rfc3339(m["received_at"].as_str().unwrap()).is_ok());
    assert_eq!(app.messages("?phone=0903123456").await.len(), 1);
    assert_eq!(app.messages("?tracking_id=other").await.len(), 0);
    assert_eq!(app.stats().await["accepted"], 1);
}

#[tokio::test]
async fn zns_send_with_a_bad_or_missing_token_answers_minus_124() {
    let app = spawn_app().await;
    let body = app.zns_body(PHONE, "t");

    let garbage = app.send_zns("not-a-token", &body).await;
    let missing: Value = app
        .client
        .post(format!("{}/message/template", app.base))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(
        garbage,
        json!({"error": -124, "message": "Access token invalid"})
    );
    assert_eq!(missing["error"], -124);
    assert!(app.messages("").await.is_empty());
}

#[tokio::test]
async fn zns_takes_every_phone_form_zalo_delivers_to_and_records_it_as_84() {
    // Arrange: Zalo's guide for -108 says ZNS delivers to 0…, 84…, +84… and to the
    // national digits whose leading zero a spreadsheet dropped.
    let app = spawn_app().await;
    let token = app.access_token().await;

    // Act
    let mut answers = Vec::new();
    for (i, phone) in ["84903123456", "+84903123456", "0903123456", "903123456"]
        .iter()
        .enumerate()
    {
        let tracking_id = format!("form-{i}");
        answers.push(
            app.send_zns(&token, &app.zns_body(phone, &tracking_id))
                .await,
        );
    }

    // Assert
    for answer in &answers {
        assert_eq!(answer["error"], 0, "{answer}");
    }
    let recorded = app.messages("?phone=84903123456").await;
    assert_eq!(recorded.len(), 4);
    assert!(recorded.iter().all(|m| m["phone"] == PHONE));
}

#[tokio::test]
async fn zns_send_to_a_phone_zalo_cannot_deliver_to_answers_minus_108() {
    let app = spawn_app().await;
    let token = app.access_token().await;
    for phone in ["84243123456", "0243123456", "8490312345", "+0903123456", ""] {
        let answer = app.send_zns(&token, &app.zns_body(phone, "t")).await;
        assert_eq!(answer["error"], -108, "{phone}: {answer}");
    }
    assert_eq!(app.stats().await["refused"]["-108"], 5);
}

#[tokio::test]
async fn zns_send_with_an_unknown_template_answers_minus_109() {
    let app = spawn_app().await;
    let token = app.access_token().await;
    let mut body = app.zns_body(PHONE, "t");
    body["template_id"] = json!("999999");

    let answer = app.send_zns(&token, &body).await;

    assert_eq!(answer["error"], -109);
}

#[tokio::test]
async fn zns_send_with_a_missing_or_empty_param_answers_minus_1122_and_a_long_one_minus_1121() {
    let app = spawn_app().await;
    let token = app.access_token().await;

    let mut missing = app.zns_body(PHONE, "t");
    missing["template_data"]
        .as_object_mut()
        .unwrap()
        .remove("dossier_code");
    let mut empty = app.zns_body(PHONE, "t");
    empty["template_data"]["due_date"] = json!("");
    let mut long = app.zns_body(PHONE, "t");
    long["template_data"]["reason"] = json!("x".repeat(401));
    // Longer than the receipt template registered (agency_name 200, dossier_code 30).
    let mut long_agency = app.zns_body(PHONE, "t");
    long_agency["template_data"]["agency_name"] = json!("Ủ".repeat(201));
    let mut long_code = app.zns_body(PHONE, "t");
    long_code["template_data"]["dossier_code"] = json!("x".repeat(31));

    assert_eq!(app.send_zns(&token, &missing).await["error"], -1122);
    assert_eq!(app.send_zns(&token, &empty).await["error"], -1122);
    assert_eq!(app.send_zns(&token, &long).await["error"], -1121);
    assert_eq!(app.send_zns(&token, &long_agency).await["error"], -1121);
    assert_eq!(app.send_zns(&token, &long_code).await["error"], -1121);
}

#[tokio::test]
async fn zns_send_with_a_body_that_is_not_json_answers_minus_122() {
    let app = spawn_app().await;
    let token = app.access_token().await;
    let answer: Value = app
        .client
        .post(format!("{}/message/template", app.base))
        .header("access_token", &token)
        .body("phone=84903123456")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["error"], -122);
}

#[tokio::test]
async fn quota_endpoint_reports_what_is_left_today() {
    let app = spawn_app().await;
    let token = app.access_token().await;
    app.send_zns(&token, &app.zns_body(PHONE, "t")).await;

    let answer: Value = app
        .client
        .get(format!("{}/message/quota", app.base))
        .header("access_token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(answer["data"]["dailyQuota"], "100000");
    assert_eq!(answer["data"]["remainingQuota"], "99999");
}

#[tokio::test]
async fn reset_clears_messages_and_stats_but_keeps_tokens_valid() {
    let app = spawn_app().await;
    let token = app.access_token().await;
    app.send_zns(&token, &app.zns_body(PHONE, "t")).await;

    app.control_ok("reset", json!({})).await;

    assert!(app.messages("").await.is_empty());
    assert_eq!(app.stats().await["accepted"], 0);
    assert_eq!(
        app.send_zns(&token, &app.zns_body(PHONE, "t")).await["error"],
        0
    );
}
