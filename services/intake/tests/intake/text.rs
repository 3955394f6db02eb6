//! Names and texts that would reach a citizen's message or the console are refused at
//! the door when they carry characters that change how the text reads.

use crate::helpers::*;
use loa_platform::testing::TestEnv;
use serde_json::json;

#[tokio::test]
async fn an_event_whose_name_carries_a_direction_override_gets_a_422_naming_the_field_and_is_not_published(
) {
    // Arrange: a name that would make the rest of the message read backwards, and a
    // procedure name with a zero-width space.
    let env = TestEnv::new().await.unwrap();
    let app = TestApp::spawn(&env, settings()).await;
    let mut reversed = event("x-bidi");
    reversed["applicant"]["name"] = json!("Lê Văn A\u{202E} 000.005.1 đ");
    let mut hidden = event("x-zwsp");
    hidden["procedure"]["name"] = json!("Đăng ký\u{200B} khai sinh");

    // Act
    let (status_a, body_a) = app.post_event("demo-token", &reversed).await;
    let (status_b, body_b) = app.post_event("demo-token", &hidden).await;
    let (accepted, _) = app.post_event("demo-token", &event("x-ok")).await;

    // Assert
    assert_eq!((status_a, status_b), (422, 422), "{body_a} {body_b}");
    assert_eq!(body_a["error"]["field"], "applicant.name");
    assert_eq!(body_a["error"]["code"], "invalid_text");
    assert!(
        body_a["error"]["message"]
            .as_str()
            .unwrap()
            .contains("U+202E"),
        "{body_a}"
    );
    assert_eq!(body_b["error"]["field"], "procedure.name");
    assert_eq!(accepted, 202);
    assert_eq!(app.forwarded_event_ids(1).await, ["x-ok"]);
    app.stop().await;
}

#[tokio::test]
async fn an_electronic_result_is_accepted_with_a_result_over_https_and_otherwise_gets_a_422_naming_the_field(
) {
    // Arrange: the same document on a result (accepted), on a supplement request, and
    // over plain http.
    let env = TestEnv::new().await.unwrap();
    let app = TestApp::spawn(&env, settings()).await;
    let document = json!({"name": "Trích lục khai sinh (bản điện tử)",
                          "url": "https://vbdt.example.gov.vn/ket-qua/HS-1.pdf"});
    let mut ready = event("x-result");
    ready["status"] = json!("result_ready");
    ready["result_document"] = document.clone();
    let mut supplement = event("x-suppl");
    supplement["status"] = json!(5);
    supplement["result_document"] = document;
    let mut plain_http = ready.clone();
    plain_http["event_id"] = json!("x-http");
    plain_http["result_document"]["url"] = json!("http://vbdt.example.gov.vn/ket-qua/HS-1.pdf");

    // Act
    let (accepted, body) = app.post_event("demo-token", &ready).await;
    let (status_5, body_5) = app.post_event("demo-token", &supplement).await;
    let (http, body_http) = app.post_event("demo-token", &plain_http).await;

    // Assert
    assert_eq!(accepted, 202, "{body}");
    assert_eq!((status_5, http), (422, 422), "{body_5} {body_http}");
    assert_eq!(body_5["error"]["field"], "result_document");
    assert_eq!(body_5["error"]["code"], "result_document_not_allowed");
    assert_eq!(body_http["error"]["field"], "result_document.url");
    assert_eq!(body_http["error"]["code"], "invalid_url");
    assert_eq!(app.forwarded_event_ids(1).await, ["x-result"]);
    app.stop().await;
}
