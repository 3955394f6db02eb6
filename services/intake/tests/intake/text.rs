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
