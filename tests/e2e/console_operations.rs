//! The console's operations beyond the pages' first tour: the demo account and
//! development mode, the paused tenant explained and resumed, a broadcast scheduled
//! and cancelled (issue 11).

use crate::{
    helpers::{receipt_event, test_settings, TestSystem},
    helpers_console::{
        add_user, db, eventually_first, first_column, http_sign_in, id_in_url, signed_in_browser,
    },
};
use serde_json::json;

#[tokio::test]
async fn the_demo_account_signs_in_in_development_mode_and_is_removed_once_the_console_runs_outside_it(
) {
    // Arrange: development mode (as scripts/demo runs), the demo account signed in,
    // and an operator's own account beside it.
    let sys = TestSystem::start().await;
    let demo_session = http_sign_in(&sys, "demo", "demo", "demo-password").await;
    add_user(&sys, "demo", "lan", "admin", "mật-khẩu-của-Lan").await;
    let TestSystem { env, system, .. } = sys;
    system.expect("running").stop().await.unwrap();

    // Act: the same database, the console outside development mode.
    let mut settings = test_settings(&env);
    settings.services.console.dev_mode = false;
    let sys = TestSystem::start_with(env, settings).await;
    let demo_again = http_sign_in(&sys, "demo", "demo", "demo-password").await;
    let old_session = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/admin/overview", sys.console))
        .header(
            "Cookie",
            format!(
                "loa_console_session={}",
                demo_session.clone().unwrap_or_default()
            ),
        )
        .send()
        .await
        .unwrap();
    let operator = http_sign_in(&sys, "demo", "lan", "mật-khẩu-của-Lan").await;

    // Assert
    assert!(demo_session.is_some(), "demo signs in in development mode");
    assert_eq!(demo_again, None, "demo cannot sign in outside it");
    assert_eq!(old_session.status(), 303, "its session ended too");
    assert!(operator.is_some(), "an operator's account is kept");
    sys.stop().await;
}

#[tokio::test]
async fn a_tenant_paused_by_a_revoked_zalo_token_is_explained_in_vietnamese_and_resumed_from_the_overview(
) {
    // Arrange: Zalo revokes the access tokens and answers the refresh without tokens
    // (a revoked refresh token); a receipt then pauses the tenant.
    let sys = TestSystem::start().await;
    add_user(&sys, "demo", "hoa", "admin", "mật-khẩu-của-Hoa").await;
    let sandbox = |method: reqwest::Method, path: &str| {
        sys.client
            .request(method, format!("{}/_sandbox/{path}", sys.sandbox))
    };
    assert!(sandbox(reqwest::Method::POST, "tokens/expire")
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    assert!(sandbox(reqwest::Method::POST, "faults")
        .json(&json!({"api": "oauth", "no_tokens": true}))
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    assert_eq!(
        sys.post_event("demo-token", &receipt_event("pause-1", "PAUSE-1"))
            .await
            .status(),
        202
    );
    let client = db(&sys).await;
    let stored_reason: String = eventually_first(
        &client,
        "SELECT reason FROM notifier.tenant_pauses WHERE tenant = 'demo' AND paused",
        &[],
        "the tenant is paused",
    )
    .await;

    // Act: the overview while paused; then Zalo answers again and the admin resumes.
    let browser = signed_in_browser(&sys, "demo", "hoa", "mật-khẩu-của-Hoa").await;
    let paused = browser.text().await;
    let small_print = browser.text_of("#pause .raw-reason").await;
    browser.screenshot("operations-01-paused").await;
    assert!(sandbox(reqwest::Method::DELETE, "faults")
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    browser
        .click("form[action='/admin/overview/resume'] button")
        .await;
    let resumed = browser.text().await;
    browser.screenshot("operations-02-resumed").await;

    // Assert
    assert!(
        paused.contains(
            "Đang tạm dừng gửi tin: Mã truy cập Zalo hết hạn hoặc bị thu hồi, cần cấp quyền lại"
        ),
        "{paused}"
    );
    assert!(paused.contains("Tiếp tục gửi tin"), "{paused}");
    assert!(
        small_print.contains(&stored_reason),
        "the raw reason in small print: {small_print:?}, stored {stored_reason:?}"
    );
    assert!(resumed.contains("Đang gửi bình thường"), "{resumed}");
    assert!(!resumed.contains("Đang tạm dừng gửi tin"), "{resumed}");
    let audited: Vec<String> = first_column(
        &client,
        "SELECT actor FROM console.audit_log WHERE action = 'tenant_resume' AND tenant = 'demo'",
    )
    .await;
    assert_eq!(audited, ["hoa"]);
    browser.quit().await;
    sys.stop().await;
}

#[tokio::test]
async fn an_admin_schedules_a_broadcast_in_vietnam_time_sees_it_scheduled_and_cancels_it() {
    // Arrange: an admin; a start three days ahead, 08:30 in Vietnam.
    let sys = TestSystem::start().await;
    add_user(&sys, "demo", "hoa", "admin", "mật-khẩu-của-Hoa").await;
    let vietnam = chrono::FixedOffset::east_opt(7 * 3600).unwrap();
    let day = (chrono::Utc::now().with_timezone(&vietnam) + chrono::Duration::days(3)).date_naive();
    let picked = format!("{}T08:30", day.format("%Y-%m-%d"));
    let shown = format!("{} 08:30", day.format("%d/%m/%Y"));
    let browser = signed_in_browser(&sys, "demo", "hoa", "mật-khẩu-của-Hoa").await;

    // Act: compose with the start time, then open the list, then cancel.
    browser
        .click("nav.sections a[href='/admin/broadcasts']")
        .await;
    browser.click("#compose").await;
    browser.fill("#title", "Lịch tiêm phòng gia súc").await;
    browser.fill("#param_title", "Tiêm phòng gia súc").await;
    browser
        .fill(
            "#param_body",
            "Kính gửi {name}: phường tổ chức tiêm phòng gia súc miễn phí.",
        )
        .await;
    browser
        .fill("#param_link", "https://binhthuan.gov.vn/tiem-phong")
        .await;
    browser.set_value("#start_at", &picked).await;
    browser
        .screenshot("operations-03-broadcast-scheduling")
        .await;
    browser.click("#create").await;
    let created = browser.text().await;
    let state = browser.text_of("#broadcast-state").await;
    let id = id_in_url(&browser).await;
    browser
        .screenshot("operations-04-broadcast-scheduled")
        .await;
    browser
        .goto(&format!("{}/admin/broadcasts", sys.console))
        .await;
    let listed = browser.text().await;
    browser.screenshot("operations-05-broadcasts-list").await;
    browser
        .goto(&format!("{}/admin/broadcasts/{id}", sys.console))
        .await;
    browser.click("#broadcast-cancel").await;
    let cancelled = browser.text().await;
    let cancelled_state = browser.text_of("#broadcast-state").await;
    browser
        .screenshot("operations-06-broadcast-cancelled")
        .await;

    // Assert
    assert!(created.contains("Đã tạo thông báo."), "{created}");
    assert_eq!(state, "Đã lên lịch");
    assert!(created.contains(&shown), "start {shown} on {created}");
    assert!(
        listed.contains(&format!("Đã lên lịch\nBắt đầu {shown}"))
            || listed.contains(&format!("Đã lên lịch Bắt đầu {shown}")),
        "{listed}"
    );
    assert!(cancelled.contains("Đã huỷ thông báo."), "{cancelled}");
    assert_ne!(cancelled_state, "Đã lên lịch");
    let audited: Vec<(String, String)> = db(&sys)
        .await
        .query(
            "SELECT actor, object FROM console.audit_log WHERE action = 'broadcast_cancel'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(audited, [("hoa".to_owned(), id)]);
    browser.quit().await;
    sys.stop().await;
}

#[tokio::test]
async fn a_search_the_services_refuse_says_why_in_vietnamese_naming_the_filter() {
    // Arrange: an admin signed in over HTTP.
    let sys = TestSystem::start().await;
    add_user(&sys, "demo", "lan", "admin", "mật-khẩu-của-Lan").await;
    let session = http_sign_in(&sys, "demo", "lan", "mật-khẩu-của-Lan")
        .await
        .expect("signed in");
    let page = |path: &str| {
        sys.client
            .get(format!("{}{path}", sys.console))
            .header("cookie", format!("loa_console_session={session}"))
            .send()
    };

    // Act: a day the tracker cannot read; a page cursor the notifier cannot read.
    let dossiers = page("/admin/dossiers?from=04/12/2026").await.unwrap();
    let dossiers_status = dossiers.status();
    let dossiers = dossiers.text().await.unwrap();
    let subscribers = page("/admin/subscribers?after_id=tiếp").await.unwrap();
    let subscribers_status = subscribers.status();
    let subscribers = subscribers.text().await.unwrap();

    // Assert: the page is shown with the refusal above the form, not an error page.
    assert_eq!(dossiers_status, 200, "{dossiers}");
    assert!(
        dossiers.contains("Điều kiện tìm kiếm không hợp lệ (from): "),
        "{dossiers}"
    );
    assert_eq!(subscribers_status, 200, "{subscribers}");
    assert!(
        subscribers.contains("Điều kiện tìm kiếm không hợp lệ (after_id): "),
        "{subscribers}"
    );
    sys.stop().await;
}
