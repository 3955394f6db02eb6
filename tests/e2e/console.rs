//! The admin console in a real browser (Debian's headless Chromium through
//! chromedriver), against the whole system in one process on real PostgreSQL and
//! RabbitMQ. Every page visited is kept as a screenshot under
//! `target/console-screenshots/`.

use crate::{
    helpers::{receipt_event, status_event, TestSystem},
    helpers_console::{
        add_user, db, eventually_first, first_column, id_in_url, sign_in, signed_in_browser, WAIT,
    },
    helpers_webdriver::Browser,
};
use loa_platform::{
    amqp::{topology, OutgoingMessage, Publisher},
    testing::eventually,
};
use serde_json::json;
use std::time::Duration;

/// Posts a dossier event through intake and waits until the tracker has it.
async fn post_dossier(sys: &TestSystem, token: &str, event: serde_json::Value, admin: &str) {
    let code = event["dossier_code"].as_str().unwrap().to_owned();
    assert_eq!(sys.post_event(token, &event).await.status(), 202);
    eventually(WAIT, || async {
        let r = sys
            .client
            .get(format!("{}/v1/dossiers/{code}", sys.tracker))
            .bearer_auth(admin)
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())
    })
    .await
    .expect("the tracker applied the event");
}

#[tokio::test]
async fn an_admin_signs_in_finds_a_dossier_by_phone_opens_it_and_replays_a_dead_letter() {
    // Arrange: an account, a dossier that moved on, a dead letter (an ingress message
    // with demo's source token and a status intake refuses: a dead letter belongs to
    // the tenant of the token intake verified), a citizen's chat lookup, and two other
    // texts the citizen writes to the OA through the sandbox (the first of the day
    // answered automatically, the second not).
    let sys = TestSystem::start().await;
    add_user(&sys, "demo", "lan", "admin", "mật-khẩu-của-Lan").await;
    let code = "000.00.06.H56-261204-0777";
    let mut received = receipt_event("console-1", code);
    received["applicant"]["phone"] = json!("0912 777 888");
    post_dossier(&sys, "demo-token", received.clone(), "demo-admin").await;
    let mut ready = status_event("console-2", code, json!(9), "2026-12-01T10:00:00+07:00");
    ready["applicant"] = received["applicant"].clone();
    assert_eq!(sys.post_event("demo-token", &ready).await.status(), 202);
    Publisher::new(sys.env.amqp_url.clone(), "console-test")
        .publish(&OutgoingMessage {
            exchange: topology::EX_INGRESS.into(),
            routing_key: "upstream.demo".into(),
            body: serde_json::to_vec(&{
                let mut refused = receipt_event("console-dl", "DL-1");
                refused["status"] = json!(42);
                refused
            })
            .unwrap(),
            message_id: "console-dl".into(),
            headers: vec![("x-loa-token".into(), "demo-token".into())],
        })
        .await
        .unwrap();
    let client = db(&sys).await;
    let dead_letter: i64 = eventually_first(
        &client,
        "SELECT id FROM notifier.dead_letters WHERE tenant = 'demo'",
        &[],
        "the dead letter is stored",
    )
    .await;
    client
        .execute(
            "INSERT INTO notifier.citizen_messages (tenant, zalo_user_id, kind, dossier_code, msg_id, received_at, forwarded_at)
             VALUES ('demo', '3512873524511234567', 'lookup', $1, 'chat-1', now() - interval '1 minute', now())",
            &[&code],
        )
        .await
        .unwrap();
    // What Loa answered it (the reply's delivery), and a lookup over the limit.
    client
        .execute(
            "INSERT INTO notifier.deliveries (notification_id, tenant, kind, lane, dossier_code, channel, status, sent_at)
             VALUES ($1, 'demo', 'chat_reply', 'transactional', $2, 'oa_cs', 'sent', '2026-12-04T09:30:00Z')",
            &[&loa_contracts::citizen::chat_reply_id("demo", "chat-1"), &code],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO notifier.citizen_messages (tenant, zalo_user_id, kind, dossier_code, msg_id, received_at, outcome)
             VALUES ('demo', '3512873524511234567', 'lookup', $1, 'chat-2', now(), 'rate_limited')",
            &[&code],
        )
        .await
        .unwrap();
    sys.point_webhooks_at_notifier(true).await;
    let followed = sys
        .client
        .post(format!(
            "{}/_sandbox/users/3512873524511234567/follow",
            sys.sandbox
        ))
        .send()
        .await
        .unwrap();
    assert!(followed.status().is_success());
    let write = |text: &'static str| {
        sys.client
            .post(format!(
                "{}/_sandbox/users/3512873524511234567/text",
                sys.sandbox
            ))
            .json(&json!({ "text": text }))
            .send()
    };
    let wrote: serde_json::Value = write("<b>Cho hỏi</b> thủ tục cấp lại sổ đỏ\ncần giấy tờ gì?")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reply_id = loa_contracts::citizen::chat_reply_id("demo", wrote["msg_id"].as_str().unwrap());
    eventually_first::<i32>(
        &client,
        "SELECT 1 FROM notifier.deliveries WHERE notification_id = $1 AND status = 'sent'",
        &[&reply_id],
        "the first text of the day is answered",
    )
    .await;
    assert!(write("Cảm ơn cán bộ").await.unwrap().status().is_success());
    eventually_first::<i32>(
        &client,
        "SELECT 1 FROM notifier.citizen_messages WHERE outcome = 'answered_today'",
        &[],
        "the second text is kept",
    )
    .await;
    let browser = Browser::start().await;

    // Act + Assert, page by page.
    browser.goto(&format!("{}/admin/", sys.console)).await;
    browser.screenshot("01-sign-in").await;
    sign_in(&browser, &sys, Some("demo"), "lan", "mật-khẩu-của-Lan").await;
    assert!(browser.url().await.ends_with("/admin/overview"));
    let cookie = browser
        .cookies()
        .await
        .into_iter()
        .find(|c| c["name"] == "loa_console_session")
        .expect("a session cookie");
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Strict");
    let overview = browser.text().await;
    for expected in [
        "Tổng quan hôm nay",
        "Sự kiện nhận hôm nay",
        "Đã gửi",
        "Hạn mức ZNS",
        "Đang gửi bình thường",
        "Cán bộ lan",
    ] {
        assert!(
            overview.contains(expected),
            "missing {expected:?} in {overview}"
        );
    }
    browser.screenshot("02-overview").await;

    browser
        .click("nav.sections a[href='/admin/dossiers']")
        .await;
    browser.fill("#q", "+84 912.777.888").await;
    browser.click("form.filters button[type=submit]").await;
    let found = browser.text().await;
    assert!(found.contains(code), "the phone finds the dossier: {found}");
    assert!(
        found.contains("Đã xử lý xong") && found.contains("Trước hạn"),
        "{found}"
    );
    browser.screenshot("03-dossier-search").await;

    browser
        .click(&format!("#dossiers a[href='/admin/dossiers/{code}']"))
        .await;
    let page = browser.text().await;
    for expected in [
        "Quá trình xử lý",
        "Được tiếp nhận",
        "Đã xử lý xong",
        "Tin nhắn đã gửi",
        "Tiếp nhận hồ sơ",
        "/tra-cuu/",
        "28/11/2026",
    ] {
        assert!(page.contains(expected), "missing {expected:?} in {page}");
    }
    let qr = sys
        .client
        .get(format!("{}/admin/dossiers/{code}/qr.svg", sys.console))
        .send()
        .await
        .unwrap();
    assert_eq!(
        qr.url().path(),
        "/admin/sign-in",
        "the QR code needs a session too"
    );
    browser.screenshot("04-dossier").await;

    browser
        .click("nav.sections a[href='/admin/messages']")
        .await;
    assert!(browser.text().await.contains("Tin nhắn cần chú ý"));
    browser.screenshot("05-messages").await;

    browser
        .click("nav.sections a[href='/admin/dead-letters']")
        .await;
    let letters = browser.text().await;
    assert!(
        letters.contains("invalid_status") && letters.contains("intake.ingress"),
        "{letters}"
    );
    assert!(
        browser
            .text_of("#dead-letters")
            .await
            .contains("Hệ thống nguồn gửi dữ liệu sai"),
        "the dead letter's reason in Vietnamese, the raw one kept: {letters}"
    );
    browser.check(&format!("#dl-{dead_letter}")).await;
    browser.screenshot("06-dead-letters").await;
    browser.click("#replay-selected button[type=submit]").await;
    assert!(
        browser.text().await.contains("Đã xử lý lại 1 thư lỗi."),
        "{}",
        browser.text().await
    );
    let replays: i32 = client
        .query_one(
            "SELECT replay_count FROM notifier.dead_letters WHERE id = $1",
            &[&dead_letter],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(replays, 1);
    browser.screenshot("07-dead-letter-replayed").await;

    browser
        .click("nav.sections a[href='/admin/citizen-messages']")
        .await;
    let chats = browser.text().await;
    assert!(
        chats.contains(&format!("Tra cứu hồ sơ {code}")) && chats.contains("…4567"),
        "{chats}"
    );
    assert!(!chats.contains("3512873524511234567"));
    assert!(
        chats.contains("Đã trả lời (tin tư vấn OA) lúc 04/12/2026 16:30"),
        "what Loa answered: {chats}"
    );
    assert!(
        chats.contains("Không trả lời: công dân tra cứu quá nhiều lần"),
        "{chats}"
    );
    // The texts, as written (escaped: the markup shows as typed), with their answers.
    assert!(
        chats.contains("<b>Cho hỏi</b> thủ tục cấp lại sổ đỏ\ncần giấy tờ gì?"),
        "{chats}"
    );
    assert!(browser
        .source()
        .await
        .contains("&lt;b&gt;Cho hỏi&lt;/b&gt;"));
    assert!(
        chats.contains("Đã gửi lời hướng dẫn tự động (tin tư vấn OA) lúc"),
        "{chats}"
    );
    assert!(
        chats.contains("Không trả lời tự động: công dân đã nhận lời hướng dẫn trong ngày"),
        "{chats}"
    );
    browser.screenshot("08-citizen-messages").await;
    browser
        .click("#citizen-message-kinds a[href='/admin/citizen-messages?kind=text']")
        .await;
    let texts = browser.text_of("#citizen-messages").await;
    assert!(
        texts.contains("Cảm ơn cán bộ") && !texts.contains("Tra cứu hồ sơ"),
        "{texts}"
    );
    browser.screenshot("08b-citizen-texts").await;
    browser
        .click("#citizen-message-kinds a[href='/admin/citizen-messages?kind=lookup']")
        .await;
    let lookups = browser.text_of("#citizen-messages").await;
    assert!(
        lookups.contains("Tra cứu hồ sơ") && !lookups.contains("Cảm ơn cán bộ"),
        "{lookups}"
    );

    browser.click("nav.sections a[href='/admin/audit']").await;
    let audit = browser.text().await;
    for expected in ["Đăng nhập", "Xử lý lại thư lỗi", "Tạo tài khoản", "lan"] {
        assert!(audit.contains(expected), "missing {expected:?} in {audit}");
    }
    // Who acted: her display name, her username in small print.
    assert!(
        browser
            .text_of("#audit")
            .await
            .lines()
            .any(|row| row.contains("Cán bộ lan (lan)") && row.contains("Xử lý lại thư lỗi")),
        "the replay by Lan's display name: {audit}"
    );
    browser.screenshot("09-audit").await;
    browser.resize(390, 844).await;
    browser
        .click("nav.sections a[href='/admin/overview']")
        .await;
    browser.screenshot("10-overview-phone").await;

    browser.click("form[action='/admin/sign-out'] button").await;
    assert!(browser.url().await.ends_with("/admin/sign-in"));
    browser
        .goto(&format!("{}/admin/overview", sys.console))
        .await;
    assert!(
        browser.url().await.ends_with("/admin/sign-in"),
        "signed out"
    );
    let actions: Vec<String> = first_column(
        &client,
        "SELECT action FROM console.audit_log WHERE tenant = 'demo' ORDER BY id",
    )
    .await;
    assert_eq!(
        actions,
        [
            "account_create",
            "sign_in",
            "dead_letter_replay",
            "sign_out"
        ]
    );
    browser.quit().await;
    sys.stop().await;
}

#[tokio::test]
async fn wrong_passwords_lock_the_account_and_a_form_without_its_csrf_token_changes_nothing() {
    // Arrange
    let sys = TestSystem::start().await;
    add_user(&sys, "demo", "minh", "admin", "đúng-mật-khẩu").await;
    let browser = Browser::start().await;

    // Act: a wrong password, then two more (the test threshold is three).
    sign_in(&browser, &sys, Some("demo"), "minh", "sai-mật-khẩu").await;
    let wrong = browser.text().await;
    browser.screenshot("11-wrong-password").await;
    for _ in 0..2 {
        sign_in(&browser, &sys, Some("demo"), "minh", "sai-mật-khẩu").await;
    }
    sign_in(&browser, &sys, Some("demo"), "minh", "đúng-mật-khẩu").await;
    let locked = browser.text().await;
    browser.screenshot("12-locked").await;

    // Assert
    assert!(
        wrong.contains("Tên đăng nhập hoặc mật khẩu không đúng."),
        "{wrong}"
    );
    assert!(
        locked.contains("tạm khoá đến"),
        "even the right password waits: {locked}"
    );
    assert!(browser.url().await.ends_with("/admin/sign-in"));

    // Act: another account signs in; a forged form (its session cookie, no token)
    // asks for a resume and a replay.
    add_user(&sys, "demo", "hoa", "admin", "mật-khẩu-của-Hoa").await;
    sign_in(&browser, &sys, Some("demo"), "hoa", "mật-khẩu-của-Hoa").await;
    assert!(browser.url().await.ends_with("/admin/overview"));
    let session = browser
        .cookie("loa_console_session")
        .await
        .expect("signed in");
    let forged = |path: &str, body: &'static str| {
        sys.client
            .post(format!("{}{path}", sys.console))
            .header("cookie", format!("loa_console_session={session}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let without = forged("/admin/overview/resume", "").await.unwrap();
    let wrong_token = forged(
        "/admin/dead-letters/replay",
        "csrf=0000&reason=unauthorized",
    )
    .await
    .unwrap();
    let status = (without.status().as_u16(), wrong_token.status().as_u16());
    let page = without.text().await.unwrap();

    // Assert: refused, and nothing but the sign-ins and failures was audited.
    assert_eq!(status, (403, 403));
    assert!(page.contains("Phiên làm việc không hợp lệ"), "{page}");
    let client = db(&sys).await;
    let actions: Vec<String> =
        first_column(&client, "SELECT action FROM console.audit_log ORDER BY id").await;
    assert_eq!(
        actions,
        [
            "account_create",
            "sign_in_failed",
            "sign_in_failed",
            "sign_in_failed",
            "sign_in_locked",
            "account_create",
            "sign_in"
        ]
    );
    browser.quit().await;
    sys.stop().await;
}

#[tokio::test]
async fn an_admin_of_one_tenant_sees_nothing_of_another_and_a_viewer_cannot_act() {
    // Arrange: a dossier of `other`; a viewer of `demo`; a deferred delivery of `demo`.
    let sys = TestSystem::start().await;
    let other_code = "OTHER-0001";
    let mut theirs = receipt_event("console-other", other_code);
    theirs["tenant"] = json!("other");
    post_dossier(&sys, "other-token", theirs, "other-admin").await;
    add_user(&sys, "demo", "xem", "viewer", "chỉ-xem-thôi").await;
    let client = db(&sys).await;
    client
        .execute(
            "INSERT INTO notifier.deliveries (notification_id, tenant, kind, lane, dossier_code, channel,
                 status, not_before, request)
             VALUES ('n-deferred', 'demo', 'receipt', 'transactional', 'D-1', 'zns', 'deferred',
                     now() + interval '1 day', '{}')",
            &[],
        )
        .await
        .unwrap();
    let browser = signed_in_browser(&sys, "demo", "xem", "chỉ-xem-thôi").await;

    // Act
    browser
        .goto(&format!("{}/admin/dossiers/{other_code}", sys.console))
        .await;
    let title = browser.title().await;
    browser.screenshot("13-other-tenant-dossier").await;
    browser
        .goto(&format!("{}/admin/dossiers?q={other_code}", sys.console))
        .await;
    let search = browser.text().await;
    browser
        .goto(&format!("{}/admin/messages?status=deferred", sys.console))
        .await;
    let messages = browser.source().await;
    browser.screenshot("14-viewer-messages").await;
    browser
        .goto(&format!("{}/admin/dead-letters", sys.console))
        .await;
    let letters = browser.source().await;
    let session = browser
        .cookie("loa_console_session")
        .await
        .expect("signed in");
    let overview = sys
        .client
        .get(format!("{}/admin/overview", sys.console))
        .header("cookie", format!("loa_console_session={session}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = overview
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the sign-out form carries the CSRF token")
        .to_owned();
    let acted = sys
        .client
        .post(format!("{}/admin/messages/n-deferred/cancel", sys.console))
        .header("cookie", format!("loa_console_session={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();

    // Assert
    assert!(title.starts_with("Không tìm thấy"), "{title}");
    assert!(search.contains("Không có hồ sơ nào phù hợp."), "{search}");
    assert!(
        messages.contains("n-deferred") || messages.contains("D-1"),
        "the viewer reads"
    );
    assert!(
        !messages.contains("/cancel") && !messages.contains("/resend"),
        "no action for a viewer"
    );
    assert!(
        !letters.contains("/admin/dead-letters/replay"),
        "no replay for a viewer"
    );
    assert_eq!(acted.status(), 403);
    let status: String = client
        .query_one(
            "SELECT status FROM notifier.deliveries WHERE notification_id = 'n-deferred'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(status, "deferred");
    browser.quit().await;
    sys.stop().await;
}

#[tokio::test]
async fn an_admin_reauthorises_the_zalo_oa_and_sending_goes_on_with_the_new_refresh_token() {
    // Arrange: the notifier holds a token pair from the seed.
    let sys = TestSystem::start().await;
    add_user(&sys, "demo", "tuan", "admin", "mật-khẩu-của-Tuấn").await;
    let client = db(&sys).await;
    let stored = || async {
        client
            .query_one(
                "SELECT refresh_token FROM notifier.oauth_tokens WHERE tenant = 'demo'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
    };
    let before = stored().await;
    let browser = signed_in_browser(&sys, "demo", "tuan", "mật-khẩu-của-Tuấn").await;

    // Act: start the consent, approve it on the (sandbox's) Zalo page, come back.
    browser.click("#reauthorize").await;
    browser.screenshot("15-reauthorize").await;
    browser.click("#zalo-permission").await;
    assert!(
        browser.url().await.starts_with(&sys.sandbox),
        "{}",
        browser.url().await
    );
    let consent = browser.text().await;
    browser.screenshot("16-zalo-consent").await;
    browser.click("#approve").await;
    let callback = browser.url().await;
    let done = browser.text().await;
    browser.screenshot("17-reauthorized").await;
    let replayed = sys.client.get(&callback).send().await.unwrap();
    let after = stored().await;
    // The next send needs a refresh: it must work with the new refresh token.
    let expired = sys
        .client
        .post(format!("{}/_sandbox/tokens/expire", sys.sandbox))
        .send()
        .await
        .unwrap();
    assert!(expired.status().is_success());
    assert_eq!(
        sys.post_event("demo-token", &receipt_event("reauth-1", "REAUTH-1"))
            .await
            .status(),
        202
    );
    let messages = sys.settle_messages(1).await;

    // Assert
    assert!(consent.contains("Cấp quyền cho ứng dụng"), "{consent}");
    assert!(
        callback.contains("/admin/zalo/callback?code="),
        "{callback}"
    );
    assert!(done.contains("Đã kết nối lại Zalo OA"), "{done}");
    assert_eq!(replayed.status(), 400, "a state is single use");
    assert_ne!(after, before, "the consent's refresh token is stored");
    // Sealed at rest (the system runs on the development key), and it is the token
    // the consent gave.
    assert!(after.starts_with("sealed:v1:"), "{after}");
    let opened = loa_notifier::zalo::sealing::Keyring::development()
        .open("demo", "refresh_token", &after)
        .expect("the stored refresh token opens");
    assert!(
        opened.expose().starts_with("zrt1."),
        "a sandbox refresh token"
    );
    assert_eq!(messages.len(), 1);
    assert_ne!(
        stored().await,
        after,
        "the next refresh used (and rotated) the new token"
    );
    let audited: Vec<(String, String)> = client
        .query(
            "SELECT actor, detail::text FROM console.audit_log WHERE action = 'zalo_reauthorize'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].0, "tuan");
    assert!(audited[0].1.contains("\"stored\": true"), "{audited:?}");
    browser.quit().await;
    sys.stop().await;
}

/// A system whose `demo` tenant sends slowly (5 a second) and has no quiet hours, so a
/// broadcast runs long enough to be watched and paused whatever the hour.
async fn slow_system() -> TestSystem {
    let env = loa_platform::testing::TestEnv::new()
        .await
        .expect("PostgreSQL and RabbitMQ are reachable");
    let mut settings = crate::helpers::test_settings(&env);
    let mut tenants: Vec<loa_platform::TenantSettings> = settings.tenants.all().to_vec();
    for t in &mut tenants {
        t.broadcasts.quiet_hours = loa_platform::tenants::QuietHours::NONE;
        if t.id == "demo" {
            t.zalo.rate_per_second = 5.0;
            t.zalo.burst = 5;
        }
    }
    settings.tenants = loa_platform::Tenants::new(tenants).expect("valid tenants");
    TestSystem::start_with(env, settings).await
}

/// Announcements the sandbox accepted, per phone.
async fn announcements(sys: &TestSystem) -> std::collections::HashMap<String, usize> {
    let template = loa_contracts::NotificationKind::Announcement.default_template_id();
    let mut by_phone = std::collections::HashMap::new();
    for m in sys.sandbox_messages().await {
        if m["template_id"].as_str() == Some(template) {
            if let Some(p) = m["phone"].as_str() {
                *by_phone.entry(p.to_owned()).or_insert(0) += 1;
            }
        }
    }
    by_phone
}

fn number(text: &str) -> i64 {
    text.chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

#[tokio::test]
async fn an_admin_imports_citizens_opts_one_out_composes_a_broadcast_with_a_preview_and_watches_it_move_pause_and_finish(
) {
    // Arrange: an admin and a viewer of `demo`, an admin of `other`; a CSV of 400
    // citizens (odd lines in ward phu-thuy and topic nong-nghiep) and one bad line.
    let sys = slow_system().await;
    add_user(&sys, "demo", "hoa", "admin", "mật-khẩu-của-Hoa").await;
    add_user(&sys, "demo", "xem", "viewer", "chỉ-xem-thôi").await;
    add_user(&sys, "other", "tuan", "admin", "mật-khẩu-của-Tuấn").await;
    let dir = std::env::temp_dir().join(format!("loa-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("cong-dan.csv");
    let mut lines = vec!["phone,zalo_user_id,tags,announcements".to_owned()];
    for i in 1..=400 {
        let tags = if i % 2 == 1 {
            "ward:phu-thuy|topic:nong-nghiep"
        } else {
            "ward:duc-long"
        };
        lines.push(format!("0912 {i:06},,{tags},true"));
    }
    lines.push("12,,ward:phu-thuy,true".to_owned());
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();
    let browser = signed_in_browser(&sys, "demo", "hoa", "mật-khẩu-của-Hoa").await;

    // Act + Assert: the import, page by page.
    browser
        .click("nav.sections a[href='/admin/subscribers']")
        .await;
    browser.screenshot("20-subscribers-empty").await;
    browser.upload("#file", &csv).await;
    browser.click("#import").await;
    let imported = browser.text().await;
    assert!(
        imported.contains("Đã thêm 400 người, cập nhật 0 người, 1 dòng bị từ chối."),
        "{imported}"
    );
    let rejected = browser.text_of("#rejected").await;
    assert!(
        rejected.contains("402"),
        "the bad line is named: {rejected}"
    );
    browser.screenshot("21-subscribers-imported").await;

    // Search by phone (shown masked), then opt that citizen out.
    browser
        .goto(&format!(
            "{}/admin/subscribers?q=0912%20000%20003",
            sys.console
        ))
        .await;
    let found = browser.text_of("#subscribers").await;
    assert!(found.contains("8491*****03"), "{found}");
    assert!(
        !found.contains("84912000003"),
        "never the whole phone: {found}"
    );
    assert!(
        found.contains("ward:phu-thuy") && found.contains("Đang nhận"),
        "{found}"
    );
    browser.fill("#who", "0912000003").await;
    browser.click("#opt-out").await;
    assert!(browser
        .text()
        .await
        .contains("Công dân này sẽ không nhận thông báo nào nữa."));
    assert_eq!(number(&browser.text_of("#reachable-total").await), 399);
    browser.screenshot("22-subscriber-opted-out").await;

    // Compose: a wrong expression is named, the preview counts the audience.
    browser
        .click("nav.sections a[href='/admin/broadcasts']")
        .await;
    browser.click("#compose").await;
    browser
        .fill("#title", "Hỗ trợ giống lúa vụ Đông Xuân")
        .await;
    browser.fill("#param_title", "Hỗ trợ giống lúa").await;
    browser
        .fill(
            "#param_body",
            "Kính gửi {name}: UBND tỉnh hỗ trợ 50% giá giống lúa vụ Đông Xuân 2026–2027.",
        )
        .await;
    browser
        .fill("#param_link", "https://binhthuan.gov.vn/ho-tro-giong")
        .await;
    browser.check("input[name=audience][value=tags]").await;
    browser
        .fill("#tags", "ward:phu-thuy AND (topic:nong-nghiep")
        .await;
    // While typing, the script says where the expression goes wrong; no button pressed.
    let live = eventually(WAIT, || async {
        let live = browser.text_of("#live-audience").await;
        live.contains("ký tự thứ 37").then_some(live)
    })
    .await
    .expect("the live count names the position of the error");
    assert!(live.contains("Biểu thức nhãn không hợp lệ"), "{live}");
    browser.screenshot("23a-broadcast-live-error").await;
    browser.click("#preview").await;
    let refused = browser.text().await;
    assert!(refused.contains("Biểu thức nhãn không hợp lệ"), "{refused}");
    assert_eq!(
        browser.find_all("#title").await.len(),
        1,
        "the form comes back filled"
    );
    browser.screenshot("23-broadcast-bad-expression").await;
    browser.fill("#tags", "ward:duc-long").await;
    // The live count follows the expression as it is typed, without any button.
    eventually(WAIT, || async {
        (number(&browser.text_of("#live-audience").await) == 200).then_some(())
    })
    .await
    .expect("the live count of the other ward");
    browser
        .fill("#tags", "ward:phu-thuy AND topic:nong-nghiep")
        .await;
    eventually(WAIT, || async {
        (number(&browser.text_of("#live-audience").await) == 199).then_some(())
    })
    .await
    .expect("the live count changes with the expression");
    browser.screenshot("23b-broadcast-live-count").await;
    browser.click("#preview").await;
    assert_eq!(
        number(&browser.text_of("#audience-count").await),
        199,
        "200 in the ward, one opted out"
    );
    assert!(browser
        .text_of("#preview-result")
        .await
        .contains("hỗ trợ 50% giá giống lúa"));
    browser.screenshot("24-broadcast-preview").await;

    // Start it, and watch the page move on its own.
    browser.click("#create").await;
    assert!(browser.text().await.contains("Đã tạo thông báo."));
    let id = id_in_url(&browser).await;
    let first = eventually(WAIT, || async {
        let sent = number(&browser.text_of("#count-sent").await);
        (sent > 0).then_some(sent)
    })
    .await
    .expect("sending starts");
    browser.screenshot("25-broadcast-running").await;
    eventually(WAIT, || async {
        (number(&browser.text_of("#count-sent").await) > first).then_some(())
    })
    .await
    .expect("the page refreshes itself and the count moves");
    browser.click("#broadcast-pause").await;
    assert!(browser.text().await.contains("Đã tạm dừng thông báo."));
    assert_eq!(browser.text_of("#broadcast-state").await, "Tạm dừng");
    browser.screenshot("26-broadcast-paused").await;
    // What was in flight lands (however loaded the machine); then nothing more.
    let at_pause = eventually(WAIT, || async {
        let before: usize = announcements(&sys).await.values().sum();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after: usize = announcements(&sys).await.values().sum();
        (before == after).then_some(after)
    })
    .await
    .expect("the sends in flight at the pause settle");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later: usize = announcements(&sys).await.values().sum();
    assert_eq!(at_pause, later, "a paused broadcast sends nothing");
    assert!(later < 199, "paused before the end ({later} sent)");

    // Another tenant's admin cannot open it; a viewer sees it but cannot act.
    let other = signed_in_browser(&sys, "other", "tuan", "mật-khẩu-của-Tuấn").await;
    other
        .goto(&format!("{}/admin/broadcasts/{id}", sys.console))
        .await;
    assert!(other.title().await.starts_with("Không tìm thấy"));
    other
        .goto(&format!("{}/admin/subscribers", sys.console))
        .await;
    assert_eq!(number(&other.text_of("#reachable-total").await), 0);
    other.quit().await;
    let viewer = signed_in_browser(&sys, "demo", "xem", "chỉ-xem-thôi").await;
    viewer
        .goto(&format!("{}/admin/broadcasts/{id}", sys.console))
        .await;
    assert!(viewer
        .text()
        .await
        .contains("Hỗ trợ giống lúa vụ Đông Xuân"));
    assert!(viewer.find_all("#broadcast-resume").await.is_empty());
    viewer
        .goto(&format!("{}/admin/broadcasts/new", sys.console))
        .await;
    assert!(
        viewer.find_all("#create").await.is_empty(),
        "no compose for a viewer"
    );
    viewer.quit().await;

    // Resume: it finishes, everyone in the audience told once, the opted-out never.
    browser.click("#broadcast-resume").await;
    eventually(Duration::from_secs(180), || async {
        (browser.text_of("#broadcast-state").await == "Hoàn thành").then_some(())
    })
    .await
    .expect("the broadcast completes");
    browser.screenshot("27-broadcast-completed").await;
    let told = announcements(&sys).await;
    assert_eq!(told.len(), 199, "{told:?}");
    assert!(told.values().all(|n| *n == 1), "each once: {told:?}");
    assert!(!told.contains_key("84912000003"), "the opted-out citizen");
    assert!(!told.contains_key("84912000002"), "outside the tags");
    browser
        .click("nav.sections a[href='/admin/broadcasts']")
        .await;
    assert!(browser.text_of("#broadcasts").await.contains("Hoàn thành"));
    browser.screenshot("28-broadcasts-list").await;

    let client = db(&sys).await;
    let actions: Vec<String> = client
        .query(
            "SELECT action FROM console.audit_log WHERE tenant = 'demo' AND actor = 'hoa' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        actions,
        [
            "sign_in",
            "subscribers_import",
            "subscriber_opt_out",
            "broadcast_create",
            "broadcast_pause",
            "broadcast_resume"
        ]
    );
    browser.quit().await;
    sys.stop().await;
}
