use crate::helpers::{receipt_request, spawn_app};
use serde_json::Value;

#[tokio::test]
async fn the_deliveries_api_refuses_requests_without_a_valid_admin_token() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let none = app.get_deliveries("?dossier_code=HS-0201", None).await;
    let wrong = app
        .get_deliveries("?dossier_code=HS-0201", Some("demo-token"))
        .await;

    // Assert: no token is unauthorised; an upstream source token is valid but of the
    // wrong kind, and the answer says so.
    assert_eq!(none.status(), 401);
    let body: Value = none.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(wrong.status(), 403);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "wrong_token_kind");
}

#[tokio::test]
async fn the_deliveries_api_shows_a_dossiers_deliveries_to_its_own_tenant_only() {
    // Arrange
    let app = spawn_app().await;
    let request = receipt_request("HS-0202");
    app.publish(&request).await;
    let (.., msg_id) = app
        .delivery_with_status(&request.notification_id, "sent")
        .await;

    // Act
    let own = app
        .get_deliveries("?dossier_code=HS-0202", Some("demo-admin"))
        .await;
    let other = app
        .get_deliveries("?dossier_code=HS-0202", Some("other-admin"))
        .await;

    // Assert
    assert_eq!(own.status(), 200);
    let body: Value = own.json().await.unwrap();
    let list = body["deliveries"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    let d = &list[0];
    assert_eq!(d["notification_id"], request.notification_id);
    assert_eq!(d["kind"], "receipt");
    assert_eq!(d["channel"], "zns");
    assert_eq!(d["status"], "sent");
    assert_eq!(d["zalo_msg_id"].as_str(), msg_id.as_deref());
    assert_eq!(d["attempts"], 1);
    assert!(d["sent_at"].is_string() && d["created_at"].is_string());
    assert!(d.get("phone").is_none());

    assert_eq!(other.status(), 200);
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["deliveries"], serde_json::json!([]));
}

#[tokio::test]
async fn the_deliveries_api_names_a_missing_dossier_code() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let response = app.get_deliveries("", Some("demo-admin")).await;

    // Assert
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["field"], "dossier_code");
}
