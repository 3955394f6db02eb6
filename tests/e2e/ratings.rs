//! A citizen rates the service: the result returned (status 10) brings a rating
//! request on Zalo whose link opens the lookup page's form, submitted in headless
//! Chromium (screenshots under `target/console-screenshots/rating-*.png`); then
//! `loa stats` counts the rating.

use crate::{
    helpers::{receipt_event, status_event, TestSystem},
    helpers_webdriver::Browser,
};
use loa_contracts::NotificationKind;
use serde_json::{json, Value};

/// Runs `loa stats <args>` against the system's tracker as the demo admin; stdout.
async fn loa_stats(tracker: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_loa"))
        .arg("stats")
        .args(args)
        .env("LOA_TRACKER_URL", tracker)
        .env("LOA_ADMIN_TOKEN", "demo-admin")
        .output()
        .await
        .expect("the loa binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "loa stats {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn a_citizen_rates_from_the_rating_requests_link_in_a_real_browser_and_stats_count_it() {
    // Arrange: a dossier received, ready early and returned.
    let sys = TestSystem::start().await;
    for event in [
        receipt_event("rate-2", "H56-0501"),
        status_event("rate-9", "H56-0501", json!(9), "2026-12-01T10:00:00+07:00"),
        status_event(
            "rate-10",
            "H56-0501",
            json!(10),
            "2026-12-02T08:30:00+07:00",
        ),
    ] {
        assert_eq!(sys.post_event("demo-token", &event).await.status(), 202);
    }
    let messages = sys.settle_messages(4).await;
    let request = messages
        .iter()
        .find(|m| m["template_id"] == NotificationKind::RatingRequest.default_template_id())
        .unwrap_or_else(|| panic!("a rating request reached Zalo: {messages:#?}"));
    let link = request["template_data"]["lookup_url"].as_str().unwrap();
    let path = &link[link.find("/tra-cuu/").unwrap()..];
    let browser = Browser::start().await;
    browser.resize(390, 844).await;

    // Act: the citizen follows the link, picks a level, writes a comment, sends.
    browser.goto(&format!("{}{path}", sys.tracker)).await;
    let form_page = browser.text().await;
    browser.screenshot("rating-01-form").await;
    browser
        .check("input[name=level][value=very_satisfied]")
        .await;
    browser
        .fill("#comment", "Cán bộ hướng dẫn tận tình, trả kết quả sớm")
        .await;
    browser.screenshot("rating-02-filled").await;
    browser.click("form button[type=submit]").await;
    let thanks = browser.text().await;
    browser.screenshot("rating-03-thanks").await;
    browser.goto(&format!("{}{path}", sys.tracker)).await;
    let after = browser.text().await;
    browser.quit().await;
    let table = loa_stats(
        &sys.tracker,
        &["--from", "2026-11-01", "--to", "2026-12-31"],
    )
    .await;
    let csv = loa_stats(
        &sys.tracker,
        &["--from", "2026-11-01", "--to", "2026-12-31", "--csv"],
    )
    .await;

    // Assert
    let read = request["rendered"].as_str().unwrap();
    assert!(
        read.contains("vui lòng dành ít phút đánh giá mức độ hài lòng"),
        "{read}"
    );
    assert!(link.ends_with("#danh-gia"), "{link}");
    for expected in [
        "Đánh giá mức độ hài lòng",
        "Rất hài lòng",
        "Không hài lòng",
        "Gửi đánh giá",
    ] {
        assert!(
            form_page.contains(expected),
            "missing {expected:?} in {form_page}"
        );
    }
    assert!(thanks.contains("Cảm ơn ông/bà đã đánh giá"), "{thanks}");
    assert!(thanks.contains("Hồ sơ H56-0501: Rất hài lòng"), "{thanks}");
    assert!(
        after.contains("Ông/bà đã đánh giá: Rất hài lòng"),
        "{after}"
    );
    assert!(after.contains("Đổi đánh giá"), "still changeable: {after}");
    let client = &sys.client;
    let stored: Value = client
        .get(format!(
            "{}/v1/stats?from=2026-11-01&to=2026-12-31",
            sys.tracker
        ))
        .bearer_auth("demo-admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stored["total"]["ratings"]["very_satisfied"], 1,
        "{stored:#}"
    );
    assert_eq!(stored["total"]["early"], 1, "{stored:#}");
    let total = table.lines().last().unwrap();
    assert!(total.contains("TOTAL"), "{table}");
    assert!(total.trim_end().ends_with("100.0"), "{table}");
    assert!(
        table.contains("UBND phường Đức Thắng"),
        "a row per agency: {table}"
    );
    let last = csv.trim_end().lines().last().unwrap();
    assert_eq!(
        last, ",Tổng cộng,1,1,1,0,0,0,3.02,1,0,0,1,1",
        "received 28/11 09:30, ready 01/12 10:00: {csv}"
    );
    sys.stop().await;
}
