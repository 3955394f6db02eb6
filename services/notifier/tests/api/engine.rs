//! The delivery engine, one test per class of fault: transient errors through the
//! delay queues, recipient errors and the channel fallback, night bans and quotas
//! deferred to a wall-clock time (with the notifier's and the sandbox's clocks moved
//! instead of waiting), operator errors pausing a tenant until it is resumed, and
//! ambiguous sends with and without a receipt.

use crate::helpers::{
    receipt_request, request_for, spawn_app, spawn_app_configured, spawn_app_with, TestApp,
    PATIENCE, PHONE,
};
use chrono::{DateTime, Duration as ChronoDuration, NaiveTime, TimeZone, Utc};
use loa_contracts::{time::vietnam, Lane, NotificationKind, NotificationRequest};
use loa_platform::testing::eventually;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn sandbox_post(app: &TestApp, path: &str, body: Value) -> Value {
    let r = app
        .http
        .post(format!("{}{path}", app.sandbox_url))
        .json(&body)
        .send()
        .await
        .expect("sandbox answers");
    assert!(r.status().is_success(), "{path} refused");
    r.json().await.expect("sandbox answers JSON")
}

/// Moves the notifier's and the sandbox's clocks to `at`.
async fn set_clocks(app: &TestApp, at: DateTime<Utc>) {
    sandbox_post(app, "/_sandbox/clock", json!({"now": at.to_rfc3339()})).await;
    app.clock.set_now(at);
}

/// The next instant after now that reads `h:m` in Vietnam.
/// `user` follows the demo OA and shared [`PHONE`] (in the sandbox, and as the
/// notifier's subscribers know it).
async fn follows_with_phone(app: &TestApp, user: &str) {
    sandbox_post(
        app,
        &format!("/_sandbox/users/{user}/follow"),
        json!({"phone": PHONE}),
    )
    .await;
    app.pool
        .get()
        .await
        .unwrap()
        .execute(
            "INSERT INTO notifier.subscribers (tenant, zalo_user_id, phone, following, updated_at)
             VALUES ('demo', $1, $2, true, now())",
            &[&user, &PHONE],
        )
        .await
        .unwrap();
}

fn next_vn(h: u32, m: u32) -> DateTime<Utc> {
    let now = Utc::now().with_timezone(&vietnam());
    let mut day = now.date_naive();
    loop {
        let at = vietnam()
            .from_local_datetime(&day.and_time(NaiveTime::from_hms_opt(h, m, 0).unwrap()))
            .unwrap();
        if at > now {
            return at.with_timezone(&Utc);
        }
        day = day.succ_opt().unwrap();
    }
}

/// `(status, channel, attempts, not_before, recheck_at, last_error)` of a delivery.
#[allow(clippy::type_complexity)]
async fn row(
    app: &TestApp,
    id: &str,
) -> (
    String,
    String,
    i32,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<String>,
) {
    let client = app.pool.get().await.unwrap();
    let r = client
        .query_one(
            "SELECT status, channel, attempts, not_before, recheck_at, last_error
               FROM notifier.deliveries WHERE notification_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))
}

/// The statuses of a delivery's history, oldest first, as the deliveries API shows it
/// (history rows and the recorded send).
async fn history(app: &TestApp, request: &NotificationRequest) -> Vec<String> {
    let views = loa_notifier::deliveries::views_for(
        &app.pool,
        &request.tenant,
        std::slice::from_ref(&request.notification_id),
    )
    .await
    .unwrap();
    views
        .get(&request.notification_id)
        .map(|v| v.history.iter().map(|h| h.status.clone()).collect())
        .unwrap_or_default()
}

/// The statuses of deliveries (`none` before their row exists).
async fn statuses(app: &TestApp, ids: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        out.push(
            app.delivery(id)
                .await
                .map_or_else(|| "none".to_owned(), |d| d.0),
        );
    }
    out
}

fn broadcast(dossier_code: &str) -> NotificationRequest {
    let mut r = receipt_request(dossier_code);
    r.lane = Lane::Broadcast;
    r
}

#[tokio::test]
async fn transient_errors_wait_in_the_delay_queues_and_the_message_is_sent_once_zalo_recovers() {
    // Arrange: Zalo answers -100 twice; the tiers are 200, 400 and 800 ms.
    let app = spawn_app().await;
    app.inject_fault(json!({"api": "zns", "error_code": -100, "count": 2}))
        .await;
    let request = receipt_request("HS-E001");
    let started = Instant::now();

    // Act
    app.publish(&request).await;

    // Assert: two waits (200 and 400 ms, ±20 %), then the send.
    let (_, attempts, ..) = app
        .delivery_with_status(&request.notification_id, "sent")
        .await;
    assert_eq!(attempts, 3);
    // Two waits of 200 and 400 ms, each at least 80 % of its tier (jitter).
    assert!(
        started.elapsed() >= Duration::from_millis(480),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(app.messages_for(&request.notification_id).await.len(), 1);
    assert_eq!(
        history(&app, &request).await,
        ["retrying", "retrying", "sent"]
    );
    // The tiers are quorum queues that nobody consumes.
    let queues = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-q",
            "--no-table-headers",
            "-p",
            &app.env.name,
            "name",
            "type",
            "consumers",
        ])
        .output()
        .unwrap();
    let queues = String::from_utf8_lossy(&queues.stdout);
    for tier in [
        "notifier.delay.240ms",
        "notifier.delay.480ms",
        "notifier.delay.960ms",
    ] {
        let line = queues
            .lines()
            .find(|l| l.split_whitespace().next() == Some(tier))
            .unwrap_or_else(|| panic!("{tier} missing in {queues}"));
        assert!(line.contains("quorum") && line.ends_with('0'), "{line}");
    }
}

#[tokio::test]
async fn a_transient_error_that_never_passes_is_dead_lettered_with_its_last_error_after_max_attempts(
) {
    // Arrange
    let app = spawn_app_configured(|_| {}, |s| s.max_attempts = 3).await;
    app.inject_fault(json!({"api": "zns", "error_code": -100}))
        .await;
    let request = receipt_request("HS-E002");

    // Act
    app.publish(&request).await;

    // Assert
    // (A redelivery under load may add a claim, never a fourth attempt's retry.)
    let (_, attempts, code, ..) = app
        .delivery_with_status(&request.notification_id, "failed")
        .await;
    assert!(attempts >= 3, "{attempts}");
    assert_eq!(code, Some(-100));
    let letters = app.dead_letters().await;
    assert_eq!(letters.len(), 1);
    let reason = letters[0].0.clone().unwrap();
    assert!(
        reason.starts_with("zalo error -100: ") && reason.ends_with("(gave up after 3 attempts)"),
        "{reason}"
    );
    assert!(app.messages_for(&request.notification_id).await.is_empty());
}

#[tokio::test]
async fn a_recipient_error_on_the_oa_falls_back_to_zns_once_and_records_the_channel() {
    // Arrange: the request names a Zalo user id that does not follow the OA (-213).
    let app = spawn_app().await;
    let mut request = receipt_request("HS-E003");
    request.recipient.zalo_user_id = Some("8000000000000000001".into());

    // Act
    app.publish(&request).await;

    // Assert: refused on the OA, sent by ZNS within the same attempt.
    app.delivery_with_status(&request.notification_id, "sent")
        .await;
    let (_, channel, attempts, ..) = row(&app, &request.notification_id).await;
    assert_eq!((channel.as_str(), attempts), ("zns", 1));
    let messages = app.messages_for(&request.notification_id).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["channel"], "zns");
    assert_eq!(messages[0]["phone"], PHONE);
    assert_eq!(app.sandbox_stats().await["refused"], json!({"-213": 1}));
    // Both attempts are in the delivery's history: the channel that failed, then the send.
    assert_eq!(history(&app, &request).await, ["channel_failed", "sent"]);
    let views = loa_notifier::deliveries::views_for(
        &app.pool,
        "demo",
        std::slice::from_ref(&request.notification_id),
    )
    .await
    .unwrap();
    let failed = &views[&request.notification_id].history[0].detail;
    assert_eq!(
        (&failed["channel"], &failed["code"], &failed["next_channel"]),
        (&json!("oa_template"), &json!(-213), &json!("zns"))
    );
}

#[tokio::test]
async fn a_follower_found_by_phone_gets_the_oa_template_by_user_id() {
    // Arrange: the citizen follows the OA and shared this phone.
    let app = spawn_app().await;
    let user = "8000000000000000002";
    follows_with_phone(&app, user).await;
    let request = receipt_request("HS-E004");

    // Act
    app.publish(&request).await;

    // Assert
    app.delivery_with_status(&request.notification_id, "sent")
        .await;
    let (_, channel, ..) = row(&app, &request.notification_id).await;
    assert_eq!(channel, "oa_template");
    let messages = app.messages_for(&request.notification_id).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["channel"], "oa_template");
    assert_eq!(messages[0]["user_id"], user);
    assert_eq!(
        messages[0]["template_id"],
        NotificationKind::Receipt.default_template_id()
    );
}

#[tokio::test]
async fn a_recipient_refused_on_both_channels_fails_without_a_retry() {
    // Arrange: not a follower (-213), and no Zalo account on the phone (-118).
    let app = spawn_app().await;
    app.inject_fault(json!({"api": "zns", "error_code": -118, "phone": PHONE}))
        .await;
    let mut request = receipt_request("HS-E005");
    request.recipient.zalo_user_id = Some("8000000000000000003".into());

    // Act
    app.publish(&request).await;

    // Assert: each channel tried once.
    let (_, attempts, code, ..) = app
        .delivery_with_status(&request.notification_id, "failed")
        .await;
    assert_eq!((attempts, code), (1, Some(-118)));
    let reason = app.dead_letters().await[0].0.clone().unwrap();
    assert!(reason.starts_with("zalo error -118"), "{reason}");
    assert_eq!(
        app.sandbox_stats().await["refused"],
        json!({"-213": 1, "-118": 1})
    );
}

#[tokio::test]
async fn a_night_ban_defers_the_message_to_0605_vietnam_time_without_spinning() {
    // Arrange: 23:00 in Vietnam for Zalo and for the notifier; Zalo bans nights.
    let app = spawn_app().await;
    let night = next_vn(23, 0);
    let morning = night + ChronoDuration::minutes(7 * 60 + 5);
    sandbox_post(
        &app,
        "/_sandbox/limits",
        json!({"api": "zns", "night_ban": true}),
    )
    .await;
    set_clocks(&app, night).await;
    let request = receipt_request("HS-E006");

    // Act
    app.publish(&request).await;

    // Assert: parked until 06:05, acked, not retried meanwhile.
    app.delivery_with_status(&request.notification_id, "deferred")
        .await;
    let (_, _, _, not_before, _, error) = row(&app, &request.notification_id).await;
    assert_eq!(not_before, Some(morning));
    assert!(error.unwrap().starts_with("zalo error -133"));
    app.wait_until_settled().await;
    tokio::time::sleep(Duration::from_millis(600)).await; // six scheduler rounds
    assert_eq!(row(&app, &request.notification_id).await.0, "deferred");
    assert_eq!(app.sandbox_stats().await["refused"]["-133"], 1);

    // Act: the morning comes.
    set_clocks(&app, morning).await;

    // Assert
    app.delivery_with_status(&request.notification_id, "sent")
        .await;
    assert_eq!(app.messages_for(&request.notification_id).await.len(), 1);
    assert_eq!(history(&app, &request).await, ["deferred", "sent"]);
}

#[tokio::test]
async fn a_request_is_not_sent_before_its_not_before() {
    // Arrange
    let app = spawn_app().await;
    let mut request = receipt_request("HS-E007");
    let later = app.clock.now() + ChronoDuration::hours(1);
    request.not_before = Some(later);

    // Act
    app.publish(&request).await;

    // Assert: parked without a Zalo call (and without counting an attempt).
    app.delivery_with_status(&request.notification_id, "deferred")
        .await;
    let (_, _, attempts, not_before, ..) = row(&app, &request.notification_id).await;
    assert_eq!(attempts, 0);
    assert_eq!(
        not_before.map(|t| t.timestamp_millis()),
        Some(later.timestamp_millis())
    );
    assert_eq!(app.sandbox_stats().await["accepted"], 0);

    // Act
    app.clock.set_now(later + ChronoDuration::seconds(1));

    // Assert
    let (_, attempts, ..) = app
        .delivery_with_status(&request.notification_id, "sent")
        .await;
    assert_eq!(attempts, 1);
}

#[tokio::test]
async fn a_spent_quota_defers_broadcasts_first_then_everything_until_the_next_quota_day() {
    // Arrange: 5 ZNS messages a day, 40 % of them (2) kept for case updates.
    let app = spawn_app_with(|tenants| tenants[0].zalo.transactional_reserve = 0.4).await;
    sandbox_post(
        &app,
        "/_sandbox/limits",
        json!({"api": "zns", "daily_quota": 5}),
    )
    .await;
    let first = receipt_request("HS-E010");
    app.publish(&first).await;
    app.delivery_with_status(&first.notification_id, "sent")
        .await;

    // Act 1: three broadcasts with 4 left: two go, the third would eat the reserve.
    let broadcasts: Vec<NotificationRequest> =
        (1..=3).map(|i| broadcast(&format!("HS-E01{i}"))).collect();
    for b in &broadcasts {
        app.publish(b).await;
    }
    let ids: Vec<&str> = broadcasts
        .iter()
        .map(|b| b.notification_id.as_str())
        .collect();
    eventually(PATIENCE, || async {
        let mut s = statuses(&app, &ids).await;
        s.sort();
        (s == ["deferred", "sent", "sent"]).then_some(())
    })
    .await
    .expect("two broadcasts sent, one deferred");

    // Act 2: three case updates with 2 left: two go, the third meets the spent quota.
    let updates: Vec<NotificationRequest> = (1..=3)
        .map(|i| request_for("demo", &format!("HS-E02{i}"), NotificationKind::ResultReady))
        .collect();
    app.publish_many(&updates).await;
    let update_ids: Vec<&str> = updates.iter().map(|u| u.notification_id.as_str()).collect();
    eventually(PATIENCE, || async {
        let mut s = statuses(&app, &update_ids).await;
        s.sort();
        (s == ["deferred", "sent", "sent"]).then_some(())
    })
    .await
    .expect("two case updates sent, one deferred");

    // Act 3: once the day is known to be spent, a case update waits without a call.
    let calls_before = app.sandbox_stats().await;
    let last = receipt_request("HS-E030");
    app.publish(&last).await;
    app.delivery_with_status(&last.notification_id, "deferred")
        .await;

    // Assert: nothing failed; every deferral waits for 00:05 of the next quota day.
    let calls_after = app.sandbox_stats().await;
    assert_eq!(calls_before["accepted"], calls_after["accepted"]);
    assert_eq!(calls_before["refused"], calls_after["refused"]);
    let next_day = loa_notifier::zalo::errors::next_quota_day(app.clock.now());
    let mut deferred: Vec<String> = Vec::new();
    for id in ids
        .iter()
        .chain(&update_ids)
        .chain([&last.notification_id.as_str()])
    {
        let (status, _, _, not_before, ..) = row(&app, id).await;
        assert_ne!(status, "failed");
        if status == "deferred" {
            assert_eq!(not_before, Some(next_day), "{id}");
            deferred.push((*id).to_owned());
        }
    }
    assert_eq!(deferred.len(), 3);
    let client = app.pool.get().await.unwrap();
    let quota = client
        .query_one(
            "SELECT daily_quota, remaining, exhausted FROM notifier.zns_quota WHERE tenant = 'demo'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            quota.get::<_, Option<i32>>(0),
            quota.get::<_, Option<i32>>(1),
            quota.get::<_, bool>(2)
        ),
        (Some(5), Some(0), true)
    );

    // Act 4: the next quota day.
    set_clocks(&app, next_day).await;

    // Assert: every deferred message goes, once.
    for id in &deferred {
        app.delivery_with_status(id, "sent").await;
        assert_eq!(app.messages_for(id).await.len(), 1);
    }
}

#[tokio::test]
async fn an_operator_error_pauses_the_tenant_holds_its_messages_and_a_resume_releases_them() {
    // Arrange: the ZNS balance is empty (-115) for one answer.
    let app = spawn_app().await;
    app.inject_fault(json!({"api": "zns", "error_code": -115, "count": 1}))
        .await;
    let first = receipt_request("HS-E040");
    let second = receipt_request("HS-E041");
    let elsewhere = request_for("other", "HS-E042", NotificationKind::Receipt);

    // Act: the first meets -115; the second comes while the tenant is paused.
    app.publish(&first).await;
    app.delivery_with_status(&first.notification_id, "held")
        .await;
    app.publish(&second).await;
    app.publish(&elsewhere).await;

    // Assert: held without another call; the other tenant is not paused.
    app.delivery_with_status(&second.notification_id, "held")
        .await;
    app.delivery_with_status(&elsewhere.notification_id, "sent")
        .await;
    let stats = app.sandbox_stats().await;
    assert_eq!(stats["refused"], json!({"-115": 1}));
    assert_eq!(stats["accepted"], 1);
    let pause = app.pause_state().await;
    assert_eq!(pause["paused"], true);
    assert_eq!(pause["error_code"], -115);
    assert_eq!(pause["held"], 2);
    let metrics = app.metrics().await;
    assert!(metrics.contains("loa_notifier_tenant_paused{tenant=\"demo\"}"));
    assert!(metrics.contains("loa_notifier_retries_total{"));

    // Act: resuming needs the tenant's own admin token.
    let resume = |token: Option<&'static str>| {
        let mut r = app.http.post(format!("{}/v1/pause/resume", app.address));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(resume(None).await.unwrap().status(), 401);
    let other: Value = resume(Some("other-admin"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other["released"], 0);
    assert_eq!(row(&app, &first.notification_id).await.0, "held");
    let resumed: Value = resume(Some("demo-admin"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Assert
    assert_eq!(
        resumed,
        json!({"tenant": "demo", "resumed": true, "released": 2})
    );
    for r in [&first, &second] {
        app.delivery_with_status(&r.notification_id, "sent").await;
        assert_eq!(app.messages_for(&r.notification_id).await.len(), 1);
    }
}

#[tokio::test]
async fn a_refused_refresh_token_pauses_the_tenant_instead_of_failing_its_messages() {
    // Arrange: the access token is revoked and Zalo refuses the refresh token.
    let app = spawn_app().await;
    app.expire_tokens().await;
    app.inject_fault(json!({"api": "oauth", "error_code": -14014}))
        .await;
    let request = receipt_request("HS-E045");

    // Act
    app.publish(&request).await;

    // Assert
    let (_, _, _, error, _) = app
        .delivery_with_status(&request.notification_id, "held")
        .await;
    assert!(error.unwrap().contains("-14014"));
    let pause = app.pause_state().await;
    assert_eq!(pause["paused"], true);
    assert!(app.take_dead_letters().await.is_empty());
}

/// A notifier whose Zalo calls time out after 1 s and that rechecks an ambiguous send
/// after 2 s, and a sandbox that takes the next ZNS but never answers it in time: the
/// start of both ambiguous-send tests.
async fn spawn_app_with_an_unanswered_send() -> TestApp {
    let app = spawn_app_configured(
        |_| {},
        |s| {
            s.http_timeout_ms = 1_000;
            s.ambiguous_recheck_secs = 2;
        },
    )
    .await;
    app.inject_fault(json!({"api": "zns", "hang_rate": 1.0, "count": 1}))
        .await;
    app
}

#[tokio::test]
async fn an_ambiguous_send_without_a_receipt_is_resent_after_its_recheck() {
    // Arrange: Zalo takes the message but its answer never comes in time.
    let app = spawn_app_with_an_unanswered_send().await;
    let request = receipt_request("HS-E050");

    // Act
    app.publish(&request).await;

    // Assert: parked first, resent when no receipt came: the one counted duplicate.
    app.delivery_with_status(&request.notification_id, "ambiguous")
        .await;
    let (_, _, _, _, recheck_at, _) = row(&app, &request.notification_id).await;
    assert!(recheck_at.unwrap() > app.clock.now());
    app.delivery_with_status(&request.notification_id, "sent")
        .await;
    let messages = app.messages_for(&request.notification_id).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["hung"], true);
    assert_eq!(history(&app, &request).await, ["ambiguous", "sent"]);
}

#[tokio::test]
async fn an_ambiguous_send_whose_receipt_arrives_is_not_sent_again() {
    // Arrange: as above, and Zalo's receipts reach the notifier's webhook.
    let app = spawn_app_with_an_unanswered_send().await;
    sandbox_post(
        &app,
        "/_sandbox/webhook",
        json!({"url": format!("{}/zalo/webhook", app.address)}),
    )
    .await;
    let request = receipt_request("HS-E051");

    // Act
    app.publish(&request).await;

    // Assert: the receipt settles it; the recheck finds nothing to resend.
    app.delivery_with_status(&request.notification_id, "delivered")
        .await;
    let deadline = app.clock.now() + ChronoDuration::seconds(3);
    eventually(PATIENCE, || async {
        (app.clock.now() > deadline).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(row(&app, &request.notification_id).await.0, "delivered");
    assert_eq!(app.messages_for(&request.notification_id).await.len(), 1);
    // The send the receipt proved is in the history, between the park and the receipt.
    assert_eq!(
        history(&app, &request).await,
        ["ambiguous", "sent", "delivered"]
    );
}

#[tokio::test]
async fn a_hung_zalo_call_holds_up_its_own_batch_only_while_the_lane_goes_on() {
    // Arrange: small batches, four at a time; Zalo takes the first message and holds
    // its answer (the sandbox answers after 30 s), within the notifier's time-out.
    let app = spawn_app_configured(
        |_| {},
        |s| {
            s.http_timeout_ms = 60_000;
            s.batch_size = 4;
            s.batch_wait_ms = 5;
            s.batches_in_flight = 4;
        },
    )
    .await;
    app.inject_fault(json!({"api": "zns", "hang_rate": 1.0, "count": 1}))
        .await;
    let hung = receipt_request("HS-E060");
    app.publish(&hung).await;
    app.wait_messages_for(
        &hung.notification_id,
        "the first call reaches Zalo and hangs",
    )
    .await;

    // Act: ten batches' worth of other requests.
    let others: Vec<NotificationRequest> = (0..40)
        .map(|i| receipt_request(&format!("HS-E06{i:02}")))
        .collect();
    app.publish_many(&others).await;

    // Assert: all of them reach Zalo long before the hung answer comes (30 s): the
    // hung call's batch takes one of the four slots, not the lane.
    eventually(Duration::from_secs(15), || async {
        let sent = app.sandbox_messages().await;
        let arrived = others
            .iter()
            .filter(|r| sent.iter().any(|m| m["tracking_id"] == r.notification_id))
            .count();
        (arrived == others.len()).then_some(())
    })
    .await
    .expect("the other requests are sent while one call hangs");
    for request in &others {
        app.delivery_with_status(&request.notification_id, "sent")
            .await;
    }
}

/// Publishes the two messages the tracker plans for one dossier reaching status 10
/// (the result, then the rating request), waits until the result is sent and the
/// rating request has `rating_status`, and returns the rating request's recorded
/// reason: the status-10 tests differ only in the tenant, the citizen and the outcome.
async fn run_status_10(app: &TestApp, dossier_code: &str, rating_status: &str) -> Option<String> {
    let result = request_for("demo", dossier_code, NotificationKind::ResultReturned);
    let rating = request_for("demo", dossier_code, NotificationKind::RatingRequest);
    app.publish(&result).await;
    app.publish(&rating).await;
    app.delivery_with_status(&result.notification_id, "sent")
        .await;
    let (_, _, _, reason, _) = app
        .delivery_with_status(&rating.notification_id, rating_status)
        .await;
    reason
}

/// The ZNS messages the sandbox has taken so far.
async fn zns_sent(app: &TestApp) -> Vec<Value> {
    app.sandbox_messages()
        .await
        .into_iter()
        .filter(|m| m["channel"] == "zns")
        .collect()
}

#[tokio::test]
async fn a_citizen_reached_only_by_zns_costs_one_zns_at_status_10_without_a_zns_rating_template() {
    // Arrange: the tenant's rating template is not a type-5 (rating) one.
    let app = spawn_app_with(|tenants| tenants[0].zalo.zns_rating_template = false).await;

    // Act
    let reason = run_status_10(&app, "HS-E10-A", "skipped").await;

    // Assert: the result's ZNS went; the rating request's was not sent, and why.
    assert_eq!(reason.as_deref(), Some("rating_in_result_message"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let zns = zns_sent(&app).await;
    assert_eq!(zns.len(), 1, "{zns:#?}");
    assert_eq!(
        zns[0]["template_id"],
        NotificationKind::ResultReturned.default_template_id()
    );
    assert!(app.take_dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_tenant_with_a_zns_rating_template_sends_the_rating_request_as_its_own_zns() {
    // Arrange: the demo tenant's rating template is a type-5 one.
    let app = spawn_app_with(|tenants| tenants[0].zalo.zns_rating_template = true).await;

    // Act
    run_status_10(&app, "HS-E10-B", "sent").await;

    // Assert
    assert_eq!(zns_sent(&app).await.len(), 2);
}

#[tokio::test]
async fn a_follower_gets_both_status_10_messages_on_the_oa_and_no_zns() {
    // Arrange: no ZNS rating template, but the citizen follows the OA (free).
    let app = spawn_app_with(|tenants| tenants[0].zalo.zns_rating_template = false).await;
    follows_with_phone(&app, "8000000000000000010").await;

    // Act
    run_status_10(&app, "HS-E10-C", "sent").await;

    // Assert
    let channels: Vec<Value> = app
        .sandbox_messages()
        .await
        .into_iter()
        .map(|m| m["channel"].clone())
        .collect();
    assert_eq!(channels, [json!("oa_template"), json!("oa_template")]);
}
