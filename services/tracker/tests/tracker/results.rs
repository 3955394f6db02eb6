//! Electronic results: a result event's `result_document` reaches the citizen's message
//! and the lookup page as Loa's counted download link, which redirects to the
//! province's document store.

use crate::helpers::*;
use loa_contracts::NotificationKind;
use loa_platform::{testing::TestEnv, Secret};
use loa_tracker::lookup_token;
use serde_json::json;

const STORE_URL: &str = "https://vbdt.example.gov.vn/ket-qua/HS-0301.pdf?sig=abc";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_result_with_an_electronic_copy_is_announced_offered_on_the_page_and_each_download_counted_and_redirected(
) {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(true)).await;
    let code = dossier_code("0301");
    broker
        .publish(&event("evt-r1", &code, 2, "2026-11-28T09:30:00+07:00"))
        .await;
    broker
        .publish(&event_with(
            "evt-r2",
            &code,
            9,
            "2026-12-03T10:00:00+07:00",
            |v| {
                v["result_document"] = json!({"name": "Giấy chứng nhận kết hôn <bản điện tử>",
                                              "url": STORE_URL});
            },
        ))
        .await;
    app.wait_applied(&["evt-r1", "evt-r2"]).await;
    app.wait_relayed().await;
    let token = lookup_token(&Secret::new(SECRET), "demo", &code);
    let series = "loa_tracker_result_downloads_total{tenant=\"demo\"}";
    let downloads_before = app.metric(series).await;

    // Act
    let html = app.lookup_page(&code).await;
    let mut redirects = Vec::new();
    for _ in 0..2 {
        redirects.push(
            no_redirects()
                .get(format!("{}/tra-cuu/{token}/ket-qua", app.address))
                .send()
                .await
                .unwrap(),
        );
    }

    // Assert: the message says a copy is ready and links to the counted download.
    let observed = broker.notifications().await;
    let ready = observed
        .iter()
        .find(|o| o.request.kind == NotificationKind::ResultReady)
        .unwrap_or_else(|| panic!("no result_ready in {observed:?}"));
    assert_eq!(
        ready.request.params["electronic_copy"],
        format!("Đã sẵn sàng, tải tại {BASE_URL}/tra-cuu/{token}/ket-qua")
    );
    let receipt = observed
        .iter()
        .find(|o| o.request.kind == NotificationKind::Receipt)
        .unwrap();
    assert!(!receipt.request.params.contains_key("electronic_copy"));
    // The page offers the download through Loa, never the store's own link.
    assert!(
        html.contains(&format!(
            "<a class=\"follow\" href=\"{token}/ket-qua\" rel=\"noopener noreferrer\">\
             Tải kết quả điện tử</a>"
        )),
        "{html}"
    );
    assert!(html.contains("Giấy chứng nhận kết hôn &lt;bản điện tử&gt;"));
    assert!(!html.contains("vbdt.example.gov.vn"), "{html}");
    // Each download is a 303 to the stored link, counted.
    for response in &redirects {
        assert_eq!(response.status(), 303);
        assert_eq!(response.headers()["location"], STORE_URL);
        assert_eq!(response.headers()["referrer-policy"], "no-referrer");
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
    assert_eq!(
        app.count(&format!(
            "SELECT result_downloads FROM tracker.dossiers WHERE dossier_code = '{code}'"
        ))
        .await,
        2
    );
    assert_eq!(downloads_before, Some(0.0), "the series exists at zero");
    assert_eq!(app.metric(series).await, Some(2.0));
    app.stop().await;
}

#[tokio::test]
async fn a_result_without_an_electronic_copy_offers_no_download_and_a_bad_token_gets_a_404() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(true)).await;
    let code = dossier_code("0302");
    broker
        .publish(&event("evt-n1", &code, 2, "2026-11-28T09:30:00+07:00"))
        .await;
    broker
        .publish(&event("evt-n2", &code, 9, "2026-12-03T10:00:00+07:00"))
        .await;
    app.wait_applied(&["evt-n1", "evt-n2"]).await;
    app.wait_relayed().await;
    let token = lookup_token(&Secret::new(SECRET), "demo", &code);

    // Act
    let html = app.lookup_page(&code).await;
    let mut answers = Vec::new();
    for path in [
        format!("/tra-cuu/{token}/ket-qua"),
        "/tra-cuu/0123456789abcdef01234567/ket-qua".to_owned(),
        "/tra-cuu/%3Cscript%3E/ket-qua".to_owned(),
    ] {
        let response = no_redirects()
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        answers.push((response.status(), response.text().await.unwrap()));
    }

    // Assert
    assert!(!html.contains("Tải kết quả điện tử"), "{html}");
    let observed = broker.notifications().await;
    let ready = observed
        .iter()
        .find(|o| o.request.kind == NotificationKind::ResultReady)
        .unwrap();
    assert_eq!(ready.request.params["electronic_copy"], "Không kèm theo");
    let (status, page) = &answers[0];
    assert_eq!(*status, 404);
    assert!(page.contains("Chưa có kết quả điện tử"), "{page}");
    for (status, page) in &answers[1..] {
        assert_eq!(*status, 404);
        assert!(page.contains("Không tìm thấy hồ sơ"), "{page}");
        assert!(!page.contains("<script>"));
    }
    assert_eq!(
        app.count(&format!(
            "SELECT result_downloads FROM tracker.dossiers WHERE dossier_code = '{code}'"
        ))
        .await,
        0
    );
    app.stop().await;
}
