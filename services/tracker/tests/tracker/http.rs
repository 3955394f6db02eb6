//! The public lookup page, the authorised dossier API and QR codes.

use crate::helpers::*;
use loa_platform::{testing::TestEnv, Secret};
use loa_tracker::lookup_token;
use serde_json::{json, Value};

#[tokio::test]
async fn the_lookup_page_renders_vietnamese_and_no_phone_number() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(true)).await;
    let code = dossier_code("0201");
    broker
        .publish(&event("evt-p1", &code, 2, "2026-11-28T09:30:00+07:00"))
        .await;
    broker
        .publish(&event_with(
            "evt-p2",
            &code,
            9,
            "2026-12-01T15:00:00+07:00",
            |v| {
                v["on_behalf_of"] = json!({"name": "Lê Văn Cường", "phone": "0912345678"});
            },
        ))
        .await;
    app.wait_applied(&["evt-p1", "evt-p2"]).await;
    let token = lookup_token(&Secret::new(SECRET), "demo", &code);

    // Act
    let response = reqwest::get(format!("{}/tra-cuu/{token}", app.address))
        .await
        .unwrap();

    // Assert
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(response.headers()["referrer-policy"], "no-referrer");
    let html = response.text().await.unwrap();
    for expected in [
        "<meta name=\"viewport\"",
        "Tra cứu hồ sơ",
        code.as_str(),
        "Đăng ký kết hôn",
        "UBND phường Đức Thắng",
        "Đã có kết quả, mời ông/bà đến nhận",
        "Hồ sơ đã được tiếp nhận",
        "Ngày tiếp nhận",
        "28/11/2026",
        "Ngày hẹn trả",
        "03/12/2026",
        "Đã có kết quả trước hạn",
        "Trần T. B.",
    ] {
        assert!(html.contains(expected), "missing {expected:?} in {html}");
    }
    for personal in [
        "0903123456",
        "903123456",
        "84903123456",
        "0912345678",
        "912345678",
        "Trần Thị Bích",
        "Cường",
        "3512873524511234567",
    ] {
        assert!(!html.contains(personal), "the page leaks {personal:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_lookup_token_gets_a_vietnamese_404_page() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let app = TestApp::spawn(&env, settings(false)).await;

    // Act
    let unknown = reqwest::get(format!("{}/tra-cuu/0123456789abcdef01234567", app.address))
        .await
        .unwrap();
    let malformed = reqwest::get(format!("{}/tra-cuu/%3Cscript%3E", app.address))
        .await
        .unwrap();

    // Assert
    for response in [unknown, malformed] {
        assert_eq!(response.status(), 404);
        let html = response.text().await.unwrap();
        assert!(html.contains("Không tìm thấy hồ sơ"));
        assert!(!html.contains("<script>"));
    }
    app.stop().await;
}

#[tokio::test]
async fn the_dossier_api_refuses_a_missing_token_and_hides_other_tenants_dossiers() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(false)).await;
    let code = dossier_code("0202");
    broker
        .publish(&event("evt-api", &code, 2, "2026-11-28T09:30:00+07:00"))
        .await;
    app.wait_applied(&["evt-api"]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/v1/dossiers/{code}", app.address);

    // Act
    let missing = client.get(&url).send().await.unwrap();
    let unknown = client.get(&url).bearer_auth("nobody").send().await.unwrap();
    let other = client
        .get(&url)
        .bearer_auth("other-admin")
        .send()
        .await
        .unwrap();
    let other_qr = client
        .get(format!("{url}/qr.svg"))
        .bearer_auth("other-admin")
        .send()
        .await
        .unwrap();
    let own = client
        .get(&url)
        .bearer_auth("demo-admin")
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(missing.status(), 401);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(unknown.status(), 401);
    assert_eq!(other.status(), 404);
    assert_eq!(other_qr.status(), 404);
    assert_eq!(own.status(), 200);
    let dossier: Value = own.json().await.unwrap();
    let token = lookup_token(&Secret::new(SECRET), "demo", &code);
    assert_eq!(dossier["code"], code);
    assert_eq!(
        dossier["status"],
        json!({"code": 2, "name": "received", "label_vi": "Được tiếp nhận"})
    );
    assert_eq!(dossier["procedure"]["name"], "Đăng ký kết hôn");
    assert_eq!(dossier["agency"]["name"], "UBND phường Đức Thắng");
    assert_eq!(dossier["due_at"], "2026-12-03T17:00:00+07:00");
    assert_eq!(dossier["lookup_url"], format!("{BASE_URL}/tra-cuu/{token}"));
    assert!(dossier["timeliness"].is_string());
    assert_eq!(dossier["history"].as_array().unwrap().len(), 1);
    assert_eq!(dossier["history"][0]["event_id"], "evt-api");
    app.stop().await;
}

#[tokio::test]
async fn the_receipt_qr_code_is_an_svg_for_the_tenants_admin() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(false)).await;
    let code = dossier_code("0203");
    broker
        .publish(&event("evt-qr", &code, 2, "2026-11-28T09:30:00+07:00"))
        .await;
    app.wait_applied(&["evt-qr"]).await;

    // Act
    let response = reqwest::Client::new()
        .get(format!("{}/v1/dossiers/{code}/qr.svg", app.address))
        .bearer_auth("demo-admin")
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    assert!(response.text().await.unwrap().contains("<svg"));
    app.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let app = TestApp::spawn(&env, settings(true)).await;

    // Act
    let health = reqwest::get(format!("{}/healthz", app.address))
        .await
        .unwrap();
    let ready = loa_platform::testing::eventually(WAIT, || async {
        let r = reqwest::get(format!("{}/readyz", app.address)).await.ok()?;
        (r.status() == 200).then_some(r)
    })
    .await
    .unwrap();
    let metrics = reqwest::get(format!("{}/metrics", app.address))
        .await
        .unwrap();

    // Assert
    assert_eq!(health.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["postgres"], "ok");
    assert_eq!(body["checks"]["rabbitmq"], "ok");
    assert_eq!(metrics.status(), 200);
    assert!(metrics
        .text()
        .await
        .unwrap()
        .contains("loa_tracker_batch_size"));
    app.stop().await;
}

#[tokio::test]
async fn a_late_receipt_gives_the_page_its_reception_date_beside_its_timeline_entry() {
    // Arrange: processing (4), then the receipt (2) arrives late, then the result (9);
    // only the receipt says when the dossier was received (by its own time).
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(true)).await;
    let code = dossier_code("0202");
    let without_dates = |v: &mut Value| {
        let v = v.as_object_mut().unwrap();
        v.remove("received_at");
        v.remove("due_at");
    };
    let processing = event_with(
        "late-4",
        &code,
        4,
        "2026-11-29T08:00:00+07:00",
        without_dates,
    );
    let receipt = event_with("late-2", &code, 2, "2026-11-28T09:30:00+07:00", |v| {
        v.as_object_mut().unwrap().remove("received_at");
    });
    let ready = event_with(
        "late-9",
        &code,
        9,
        "2026-12-01T10:00:00+07:00",
        without_dates,
    );

    // Act
    broker.publish(&processing).await;
    app.wait_applied(&["late-4"]).await;
    broker.publish(&receipt).await;
    app.wait_applied(&["late-2"]).await;
    broker.publish(&ready).await;
    app.wait_applied(&["late-9"]).await;
    let token = lookup_token(&Secret::new(SECRET), "demo", &code);
    let html = app.page_of_token(&token).await;

    // Assert: the state is the result's, the dates are the receipt's.
    assert_eq!(app.status_of(&code).await, Some(9));
    assert!(
        html.contains(
            "Hồ sơ đã được tiếp nhận<span class=\"when\">lúc 09:30 ngày 28/11/2026</span>"
        ),
        "{html}"
    );
    assert!(
        html.contains("<dt>Ngày tiếp nhận</dt><dd>28/11/2026</dd>"),
        "{html}"
    );
    assert!(
        html.contains("<dt>Ngày hẹn trả</dt><dd>03/12/2026</dd>"),
        "{html}"
    );
    assert!(html.contains("Đã có kết quả trước hạn"), "{html}");
    assert!(!html.contains("Chưa tiếp nhận"), "{html}");
    app.stop().await;
}
