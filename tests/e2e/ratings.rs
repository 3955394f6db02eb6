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

#[tokio::test]
async fn a_rating_given_in_zalo_on_the_rating_request_counts_as_the_dossiers_rating() {
    // Arrange: a returned dossier whose rating request reached the citizen; the
    // sandbox's webhooks go to this system's notifier.
    let sys = TestSystem::start().await;
    let notifier = sys
        .system
        .as_ref()
        .and_then(|s| s.notifier_port)
        .expect("the notifier runs");
    let pointed = sys
        .client
        .post(format!("{}/_sandbox/webhook", sys.sandbox))
        .json(&json!({"url": format!("http://127.0.0.1:{notifier}/zalo/webhook")}))
        .send()
        .await
        .unwrap();
    assert!(pointed.status().is_success());
    for event in [
        receipt_event("zrate-2", "H56-0502"),
        status_event(
            "zrate-10",
            "H56-0502",
            json!(10),
            "2026-12-02T08:30:00+07:00",
        ),
    ] {
        assert_eq!(sys.post_event("demo-token", &event).await.status(), 202);
    }
    let messages = sys.settle_messages(3).await;
    let request = messages
        .iter()
        .find(|m| m["template_id"] == NotificationKind::RatingRequest.default_template_id())
        .unwrap_or_else(|| panic!("a rating request reached Zalo: {messages:#?}"))
        .clone();
    let msg_id = request["msg_id"].as_str().unwrap();

    // Act: the citizen gives it two stars inside Zalo; Zalo's webhook reaches the
    // notifier, which forwards the rating to the tracker.
    let rated = sys
        .client
        .post(format!(
            "{}/_sandbox/messages/{msg_id}/feedback",
            sys.sandbox
        ))
        .json(&json!({"rate": 2, "note": "Phải chờ\nlâu"}))
        .send()
        .await
        .unwrap();
    assert!(
        rated.status().is_success(),
        "{}",
        rated.text().await.unwrap()
    );
    let stats = loa_platform::testing::eventually(std::time::Duration::from_secs(30), || async {
        let v: Value = sys
            .client
            .get(format!(
                "{}/v1/stats?from=2026-11-01&to=2026-12-31",
                sys.tracker
            ))
            .bearer_auth("demo-admin")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (v["total"]["ratings"]["total"] == 1).then_some(v)
    })
    .await
    .expect("the rating given in Zalo reached the statistics");
    let link = request["template_data"]["lookup_url"].as_str().unwrap();
    let path = &link[link.find("/tra-cuu/").unwrap()..];
    let page = sys
        .client
        .get(format!("{}{path}", sys.tracker))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // Assert
    assert_eq!(stats["total"]["ratings"]["dissatisfied"], 1, "{stats:#}");
    assert_eq!(stats["total"]["satisfied_share"], 0.0, "{stats:#}");
    assert!(
        page.contains("Ông/bà đã đánh giá: <strong class=\"given\">Không hài lòng</strong>"),
        "{page}"
    );
    assert!(
        page.contains("Phải chờ lâu"),
        "the note, its line break a space: {page}"
    );
    sys.stop().await;
}
