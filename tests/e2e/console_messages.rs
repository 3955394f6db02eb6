//! The console's message buttons in a real browser: an admin resends a failed
//! delivery and cancels a held one, and the citizens get exactly what that means.
//! Screenshots under `target/console-screenshots/messages-*.png`.

use crate::{
    helpers::{receipt_event, TestSystem},
    helpers_console::{add_user, db, signed_in_browser, WAIT},
    helpers_webdriver::Browser,
};
use loa_platform::testing::eventually;
use serde_json::{json, Value};

/// Makes the sandbox answer `error_code` to the next ZNS request for `phone`.
async fn zalo_refuses_once(sys: &TestSystem, phone: &str, error_code: i64) {
    let fault = sys
        .client
        .post(format!("{}/_sandbox/faults", sys.sandbox))
        .json(&json!({"api": "zns", "error_code": error_code, "rate": 1.0, "count": 1, "phone": phone}))
        .send()
        .await
        .unwrap();
    assert!(fault.status().is_success(), "the sandbox takes the fault");
}

/// Posts a receipt for `code` to `phone` and waits until its delivery is `status`
/// (and, for a failed one, until a resend applies: its dead letter is stored);
/// returns the delivery's notification id.
async fn receipt_until(sys: &TestSystem, code: &str, phone: &str, status: &str) -> String {
    let mut event = receipt_event(&format!("resend-{code}"), code);
    event["applicant"]["phone"] = json!(phone);
    assert_eq!(sys.post_event("demo-token", &event).await.status(), 202);
    let client = db(sys).await;
    eventually(WAIT, || async {
        let row = client
            .query_opt(
                "SELECT d.notification_id,
                        EXISTS (SELECT 1 FROM notifier.dead_letters l
                                 WHERE l.message_id = d.notification_id AND l.replayed_at IS NULL)
                   FROM notifier.deliveries d
                  WHERE d.dossier_code = $1 AND d.status = $2",
                &[&code, &status],
            )
            .await
            .ok()??;
        (status != "failed" || row.get::<_, bool>(1)).then(|| row.get(0))
    })
    .await
    .unwrap_or_else(|_| panic!("the receipt of {code} is {status}"))
}

/// The messages the sandbox accepted for a delivery (its tracking id).
fn accepted_for<'a>(messages: &'a [Value], id: &str) -> Vec<&'a Value> {
    messages.iter().filter(|m| m["tracking_id"] == id).collect()
}

/// Asserts that exactly one line of the text of `css` (a table's one-line rows) holds
/// every one of `words`, showing the table when not: each row the test looks for is
/// expected once.
async fn assert_one_row_with(browser: &Browser, css: &str, words: &[&str]) {
    let text = browser.text_of(css).await;
    let rows = text
        .lines()
        .filter(|row| words.iter().all(|w| row.contains(w)))
        .count();
    assert_eq!(rows, 1, "{words:?} once in {css}: {text}");
}

#[tokio::test]
async fn an_admin_resends_a_failed_message_and_cancels_a_held_one_and_the_citizens_get_the_resent_one_once_and_never_the_cancelled_one(
) {
    // Arrange: Zalo refuses the first citizen's receipt for good (-108, dead-lettered),
    // then answers the second's with an empty ZNS balance (-115), which pauses the
    // tenant and holds that receipt.
    let sys = TestSystem::start().await;
    add_user(&sys, "demo", "mai", "admin", "mật-khẩu-của-Mai").await;
    let (failed_phone, held_phone) = ("84903111222", "84903333444");
    zalo_refuses_once(&sys, failed_phone, -108).await;
    let failed = receipt_until(&sys, "RESEND-0001", "0903 111 222", "failed").await;
    zalo_refuses_once(&sys, held_phone, -115).await;
    let held = receipt_until(&sys, "CANCEL-0001", "0903 333 444", "held").await;
    let browser = signed_in_browser(&sys, "demo", "mai", "mật-khẩu-của-Mai").await;

    // Act + Assert: the failed tab offers a resend; the held tab a cancel.
    browser
        .click("nav.sections a[href='/admin/messages']")
        .await;
    let resend = format!("form[action='/admin/messages/{failed}/resend'] button");
    assert!(
        browser.text_of("#deliveries").await.contains("RESEND-0001"),
        "the failed receipt is listed: {}",
        browser.text().await
    );
    assert_eq!(browser.find_all(&resend).await.len(), 1, "with its button");
    // Zalo's -108 in Vietnamese, Zalo's own words kept in small print for support.
    assert_one_row_with(
        &browser,
        "#deliveries",
        &[
            "RESEND-0001",
            "Số điện thoại không hợp lệ hoặc không dùng Zalo.",
        ],
    )
    .await;
    assert!(
        browser
            .text_of("#deliveries small.raw-reason")
            .await
            .contains("-108"),
        "the raw reason kept: {}",
        browser.text_of("#deliveries").await
    );
    browser.screenshot("messages-01-failed").await;
    browser.click("a[href='/admin/messages?status=held']").await;
    let cancel = format!("form[action='/admin/messages/{held}/cancel'] button");
    assert!(
        browser.text_of("#deliveries").await.contains("CANCEL-0001"),
        "the held receipt is listed: {}",
        browser.text().await
    );
    assert_eq!(browser.find_all(&cancel).await.len(), 1, "with its button");
    assert!(
        browser
            .text_of("#deliveries")
            .await
            .contains("Tài khoản ZNS không đủ số dư"),
        "the held receipt's reason in Vietnamese: {}",
        browser.text_of("#deliveries").await
    );
    browser.screenshot("messages-02-held").await;

    // Cancel the held receipt: it is listed under "Đã huỷ".
    browser.click(&cancel).await;
    assert!(
        browser.text().await.contains("Đã huỷ tin nhắn."),
        "{}",
        browser.text().await
    );
    browser
        .click("a[href='/admin/messages?status=cancelled']")
        .await;
    assert!(
        browser.text_of("#deliveries").await.contains("CANCEL-0001"),
        "{}",
        browser.text().await
    );
    assert!(browser.find_all(&cancel).await.is_empty(), "cancelled once");
    // The cancellation's reason in Vietnamese.
    assert_one_row_with(
        &browser,
        "#deliveries",
        &["CANCEL-0001", "Cán bộ đã huỷ tin nhắn này."],
    )
    .await;
    browser.screenshot("messages-03-cancelled").await;

    // Resume the tenant: what it still holds is released, the cancelled one is not.
    browser
        .click("nav.sections a[href='/admin/overview']")
        .await;
    assert!(
        browser
            .text_of("#pause")
            .await
            .contains("Đang tạm dừng gửi tin: Tài khoản ZNS không đủ số dư"),
        "the pause's reason in Vietnamese: {}",
        browser.text_of("#pause").await
    );
    browser
        .click("form[action='/admin/overview/resume'] button")
        .await;
    assert!(
        browser.text().await.contains("Đã cho gửi tin tiếp."),
        "{}",
        browser.text().await
    );

    // Resend the failed receipt: its dead letter is replayed and Zalo accepts it.
    browser
        .goto(&format!("{}/admin/messages?status=failed", sys.console))
        .await;
    browser.click(&resend).await;
    assert!(
        browser
            .text()
            .await
            .contains("Đã đưa tin nhắn vào hàng gửi lại."),
        "{}",
        browser.text().await
    );
    browser.screenshot("messages-04-resent").await;
    let client = db(&sys).await;
    eventually(WAIT, || async {
        let status: String = client
            .query_one(
                "SELECT status FROM notifier.deliveries WHERE notification_id = $1",
                &[&failed],
            )
            .await
            .ok()?
            .get(0);
        ["sent", "delivered", "seen"]
            .contains(&status.as_str())
            .then_some(())
    })
    .await
    .expect("the resent receipt went out");
    browser
        .goto(&format!("{}/admin/dossiers/RESEND-0001", sys.console))
        .await;
    // The one message of the dossier, a card whose badge is its delivery status.
    let message = browser.text_of("div.card p:has(span.badge)").await;
    assert!(
        message.starts_with("Tiếp nhận hồ sơ")
            && ["Đã gửi", "Đã nhận", "Đã xem"]
                .iter()
                .any(|s| message.ends_with(s)),
        "the dossier shows the receipt sent: {message}"
    );
    browser.screenshot("messages-05-dossier-sent").await;
    browser
        .goto(&format!("{}/admin/messages?status=failed", sys.console))
        .await;
    assert!(
        !browser.text_of("#deliveries").await.contains("RESEND-0001"),
        "no longer failed: {}",
        browser.text().await
    );

    // The audit page shows both actions (and the resume) by the admin: her display
    // name, with her username in small print.
    browser.click("nav.sections a[href='/admin/audit']").await;
    assert_one_row_with(
        &browser,
        "#audit",
        &["Cán bộ mai (mai)", "Gửi lại tin nhắn", &failed],
    )
    .await;
    assert_one_row_with(
        &browser,
        "#audit",
        &["Cán bộ mai (mai)", "Huỷ tin nhắn", &held],
    )
    .await;
    assert_one_row_with(
        &browser,
        "#audit",
        &["Cán bộ mai (mai)", "Tiếp tục gửi tin"],
    )
    .await;
    browser.screenshot("messages-06-audit").await;

    // The citizens: the resent receipt exactly once, the cancelled one never.
    let accepted = sys.settle_messages(1).await;
    assert_eq!(
        accepted_for(&accepted, &failed).len(),
        1,
        "the resent receipt once: {accepted:?}"
    );
    assert_eq!(accepted_for(&accepted, &failed)[0]["phone"], failed_phone);
    assert!(
        accepted_for(&accepted, &held).is_empty()
            && !accepted.iter().any(|m| m["phone"] == held_phone),
        "never the cancelled one: {accepted:?}"
    );
    let (status, audited): (String, Vec<(String, String, String)>) = (
        client
            .query_one(
                "SELECT status FROM notifier.deliveries WHERE notification_id = $1",
                &[&held],
            )
            .await
            .unwrap()
            .get(0),
        client
            .query(
                "SELECT actor, action, detail::text FROM console.audit_log
                  WHERE action IN ('delivery_resend', 'delivery_cancel', 'tenant_resume') ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect(),
    );
    assert_eq!(status, "cancelled");
    let audited: Vec<(&str, &str, &str)> = audited
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        audited,
        [
            ("mai", "delivery_cancel", r#"{"result": "cancelled"}"#),
            ("mai", "tenant_resume", r#"{"released": 0}"#),
            ("mai", "delivery_resend", r#"{"result": "replayed"}"#),
        ]
    );
    browser.quit().await;
    sys.stop().await;
}
