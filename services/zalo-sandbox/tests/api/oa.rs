use crate::helpers::spawn_app;
use loa_contracts::NotificationKind;
use serde_json::{json, Value};

#[tokio::test]
async fn a_consultation_message_to_a_follower_is_accepted_and_recorded() {
    // Arrange
    let app = spawn_app().await;
    let token = app.access_token().await;
    app.follow("5001", None).await;

    // Act
    let answer = app
        .send_cs(&token, "5001", "Hồ sơ của bạn đã được tiếp nhận.")
        .await;

    // Assert
    assert_eq!(answer["error"], 0, "{answer}");
    assert_eq!(answer["data"]["user_id"], "5001");
    assert_eq!(answer["data"]["message_id"].as_str().unwrap().len(), 20);
    let recorded = app.messages("?user_id=5001").await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["channel"], "oa_cs");
    assert_eq!(recorded[0]["text"], "Hồ sơ của bạn đã được tiếp nhận.");
    assert_eq!(recorded[0]["msg_id"], answer["data"]["message_id"]);
}

#[tokio::test]
async fn oa_messages_to_a_non_follower_answer_minus_213_and_bad_tokens_minus_216() {
    let app = spawn_app().await;
    let token = app.access_token().await;
    app.follow("5002", None).await;
    app.client
        .post(format!("{}/_sandbox/users/5002/unfollow", app.base))
        .send()
        .await
        .unwrap();

    assert_eq!(app.send_cs(&token, "5002", "hi").await["error"], -213);
    assert_eq!(app.send_cs(&token, "never", "hi").await["error"], -213);
    assert_eq!(app.send_cs("garbage", "5002", "hi").await["error"], -216);
}

#[tokio::test]
async fn consultation_text_over_2000_characters_is_refused() {
    let app = spawn_app().await;
    let token = app.access_token().await;
    app.follow("5003", None).await;

    let answer = app.send_cs(&token, "5003", &"a".repeat(2001)).await;

    assert_eq!(answer["error"], -210);
    assert_eq!(
        app.send_cs(&token, "5003", &"a".repeat(2000)).await["error"],
        0
    );
}

#[tokio::test]
async fn a_zbs_template_by_user_id_accepts_flat_and_nested_recipients_with_template_checks() {
    let app = spawn_app().await;
    let token = app.access_token().await;
    app.follow("5004", None).await;
    let template_id = app.template_id(NotificationKind::Withdrawn);
    let data: serde_json::Map<String, Value> = NotificationKind::Withdrawn
        .required_params()
        .iter()
        .map(|p| ((*p).to_owned(), Value::from("x")))
        .collect();

    let flat = json!({"user_id": "5004", "template_id": template_id, "template_data": data, "tracking_id": "zbs-1"});
    let nested = json!({"recipient": {"user_id": "5004"}, "template_id": template_id, "template_data": data});
    let unknown = json!({"user_id": "5004", "template_id": "1", "template_data": data});
    let missing = json!({"user_id": "5004", "template_id": template_id, "template_data": {"customer_name": "A"}});
    let send = |body: Value| {
        let app = &app;
        let token = token.clone();
        async move {
            app.post_zalo("/v3.0/oa/message/template", &token, &body)
                .await
                .json::<Value>()
                .await
                .unwrap()
        }
    };

    assert_eq!(send(flat).await["error"], 0);
    assert_eq!(send(nested).await["error"], 0);
    assert_eq!(send(unknown).await["error"], -109);
    assert_eq!(send(missing).await["error"], -1122);
    let recorded = app.messages("?tracking_id=zbs-1").await;
    assert_eq!(recorded[0]["channel"], "oa_template");
    assert_eq!(recorded[0]["user_id"], "5004");
}

#[tokio::test]
async fn user_detail_shows_the_phone_a_follower_shared() {
    let app = spawn_app().await;
    let token = app.access_token().await;
    app.follow("5005", Some(json!({"phone": "0903123456"})))
        .await;

    let detail: Value = app
        .client
        .get(format!("{}/v3.0/oa/user/detail", app.base))
        .query(&[("data", r#"{"user_id":"5005"}"#)])
        .header("access_token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(detail["data"]["user_is_follower"], true);
    assert_eq!(detail["data"]["shared_info"]["phone"], "84903123456");
}

#[tokio::test]
async fn a_consultation_message_more_than_7_days_after_the_user_s_last_interaction_answers_minus_230(
) {
    // Arrange: the user followed, then wrote nothing for 8 days.
    let app = spawn_app().await;
    app.follow("5006", None).await;
    app.control_ok("clock", json!({"offset_secs": 8 * 86_400}))
        .await;
    let token = app.access_token().await;

    // Act
    let outside = app.send_cs(&token, "5006", "Trả lời tra cứu").await;
    let user_text = app
        .client
        .post(format!("{}/_sandbox/users/5006/text", app.base))
        .json(&json!({"text": "tra cứu H56-261128-0001"}))
        .send()
        .await
        .unwrap();
    assert_eq!(user_text.status(), 200);
    let after_writing = app.send_cs(&token, "5006", "Trả lời tra cứu").await;

    // Assert: refused outside the window, accepted once the user wrote again; a ZBS
    // template by user id is not bound to the window.
    assert_eq!(outside["error"], -230, "{outside}");
    assert_eq!(after_writing["error"], 0, "{after_writing}");
    let recorded = app.messages("?user_id=5006").await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["channel"], "oa_cs");
}

/// An Article broadcast's body with `target`.
fn article_broadcast(target: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "recipient": {"target": target},
        "message": {"attachment": {"type": "template", "payload": {
            "template_type": "media",
            "elements": [{"media_type": "article", "attachment_id": "article-bao-so-9"}]
        }}}
    })
}

#[tokio::test]
async fn an_article_broadcast_is_accepted_in_both_sdk_encodings_of_its_target() {
    // Arrange
    let app = crate::helpers::spawn_app().await;
    let token = app.access_token().await;

    // Act: the Java SDK's integers and `platform`, the .NET SDK's strings and
    // `platforms`; a 1:1 message on the same path; a bad target; a bad token.
    let mut answers = Vec::new();
    for target in [
        serde_json::json!({"cities": 4, "platform": 2}),
        serde_json::json!({"cities": "4,9", "platforms": "1,2"}),
        serde_json::json!({"cities": "4,x"}),
    ] {
        let r = app
            .post_zalo("/v2.0/oa/message", &token, &article_broadcast(target))
            .await;
        answers.push(r.json::<serde_json::Value>().await.unwrap());
    }
    let one_to_one =
        serde_json::json!({"recipient": {"user_id": "7001"}, "message": {"text": "chào"}});
    let v2 = app.post_zalo("/v2.0/oa/message", &token, &one_to_one).await;
    let v2: serde_json::Value = v2.json().await.unwrap();
    let no_token = app
        .post_zalo(
            "/v2.0/oa/message",
            "nope",
            &article_broadcast(serde_json::json!({})),
        )
        .await;
    let no_token: serde_json::Value = no_token.json().await.unwrap();
    let recorded: serde_json::Value = app
        .client
        .get(format!("{}/_sandbox/broadcasts", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Assert
    assert_eq!(answers[0]["error"], 0, "{}", answers[0]);
    assert!(answers[0]["data"]["message_id"].is_string());
    assert_eq!(answers[1]["error"], 0, "{}", answers[1]);
    assert_eq!(answers[2]["error"], -201, "{}", answers[2]);
    assert!(answers[2]["message"].as_str().unwrap().contains("cities"));
    assert_eq!(v2["error"], -240, "{v2}");
    assert_ne!(no_token["error"], 0, "{no_token}");
    let list = recorded["broadcasts"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{recorded}");
    assert_eq!(list[0]["target"]["cities"], serde_json::json!([4]));
    assert_eq!(list[0]["target"]["platforms"], serde_json::json!([2]));
    assert_eq!(list[0]["target"]["encoding"], "java");
    assert_eq!(list[1]["target"]["cities"], serde_json::json!([4, 9]));
    assert_eq!(list[1]["target"]["encoding"], "dotnet");
    assert_eq!(list[1]["attachment_id"], "article-bao-so-9");
}
