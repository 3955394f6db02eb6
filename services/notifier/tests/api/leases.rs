//! Requests held by a sender that died: its short lease lapses within seconds, a copy
//! that arrives meanwhile is parked instead of holding up its batch, and a send it
//! may have made is settled by its receipt or, without one, resent once after the
//! recheck and counted.

use crate::helpers::{receipt_request, spawn_app_configured, TestApp, PATIENCE, PHONE};
use loa_contracts::NotificationRequest;
use loa_notifier::deliveries::{self, NewDelivery};
use loa_platform::testing::eventually;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The owner id of the sender that "died": nobody renews its leases.
const DEAD_SENDER: i64 = 999;

/// Claims `request` as a sender that then died would have: leased for `lease` and,
/// when `dispatched`, marked as sent to Zalo.
async fn claim_as_dead_sender(
    app: &TestApp,
    request: &NotificationRequest,
    lease: Duration,
    dispatched: bool,
) {
    let row = NewDelivery {
        notification_id: request.notification_id.clone(),
        tenant: request.tenant.clone(),
        kind: request.kind.as_str().to_owned(),
        lane: "transactional".into(),
        dossier_code: request.dossier_code.clone(),
        channel: "zns".into(),
        event_accepted_at: None,
        broadcast_id: None,
    };
    deliveries::claim(&app.pool, &[row], lease, DEAD_SENDER)
        .await
        .expect("claim");
    if dispatched {
        deliveries::mark_dispatched(&app.pool, &[request.notification_id.as_str()])
            .await
            .expect("mark");
    }
}

/// A sum over a counter's series in the notifier's `/metrics`.
async fn counter(app: &TestApp, name: &str) -> f64 {
    let text = app.metrics().await;
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A ZNS delivery receipt as Zalo sends it (signed for the demo tenant).
async fn post_zns_receipt(app: &TestApp, tracking_id: &str, msg_id: &str) -> reqwest::Response {
    let zalo = &app.tenants.get("demo").expect("demo").zalo;
    let at = chrono::Utc::now().timestamp_millis().to_string();
    let body = json!({
        "app_id": zalo.app_id,
        "sender": {"id": zalo.oa_id}, "recipient": {"id": PHONE},
        "event_name": "user_received_message",
        "message": {"msg_id": msg_id, "tracking_id": tracking_id, "delivery_time": at},
        "timestamp": at,
    });
    let raw = serde_json::to_vec(&body).unwrap();
    let signature =
        loa_zalo_sandbox::webhook_signature(&zalo.app_id, &raw, &at, zalo.oa_secret_key.expose());
    app.http
        .post(format!("{}/zalo/webhook", app.address))
        .header("content-type", "application/json")
        .header("X-ZEvent-Signature", signature)
        .body(raw)
        .send()
        .await
        .expect("notifier answers")
}

#[tokio::test]
async fn a_copy_of_a_request_a_dead_sender_holds_is_parked_without_holding_up_its_batch_and_sent_once_its_lease_lapses(
) {
    // Arrange: a dead sender holds `held` for 8 s (it never dispatched it); long
    // enough that the checks below run while it lives, even on a busy machine.
    let app = spawn_app_configured(|_| {}, |_| {}).await;
    let held = receipt_request("HS-L001");
    let free = receipt_request("HS-L002");
    let lease = Duration::from_secs(8);
    claim_as_dead_sender(&app, &held, lease, false).await;
    let start = Instant::now();

    // Act: the broker redelivers the dead sender's message with another in one batch.
    app.publish_many(&[held.clone(), free.clone()]).await;

    // Assert: the free one is sent and the queue drained while the lease still lives.
    app.delivery_with_status(&free.notification_id, "sent")
        .await;
    app.wait_until_settled().await;
    assert!(start.elapsed() < lease, "{:?}", start.elapsed());
    assert_eq!(
        app.delivery(&held.notification_id).await.unwrap().0,
        "sending"
    );
    assert!(app.messages_for(&held.notification_id).await.is_empty());

    // Assert: once the lease lapses the parked copy is sent, once.
    app.delivery_with_status(&held.notification_id, "sent")
        .await;
    assert!(start.elapsed() >= lease, "{:?}", start.elapsed());
    assert_eq!(app.messages_for(&held.notification_id).await.len(), 1);
    assert_eq!(app.messages_for(&free.notification_id).await.len(), 1);
}

#[tokio::test]
async fn a_send_a_dead_sender_may_have_made_is_settled_by_its_stored_receipt_and_not_sent_again() {
    // Arrange: the dead sender dispatched the request; Zalo delivered it and its
    // receipt arrived while the lease still lived (so it could only be stored).
    let app = spawn_app_configured(|_| {}, |_| {}).await;
    let request = receipt_request("HS-L003");
    claim_as_dead_sender(&app, &request, Duration::from_secs(2), true).await;
    let receipt = post_zns_receipt(&app, &request.notification_id, "m-before-the-crash").await;
    assert_eq!(receipt.status(), 200);
    assert_eq!(
        app.delivery(&request.notification_id).await.unwrap().0,
        "sending"
    );

    // Act: the dead sender's message comes back.
    app.publish(&request).await;

    // Assert: delivered on the receipt's word, never sent by this notifier.
    let (_, _, _, _, msg_id) = app
        .delivery_with_status(&request.notification_id, "delivered")
        .await;
    assert_eq!(msg_id.as_deref(), Some("m-before-the-crash"));
    app.wait_until_settled().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(app.messages_for(&request.notification_id).await.is_empty());
}

#[tokio::test]
async fn a_send_a_dead_sender_may_have_made_waits_for_its_receipt_then_is_resent_once_and_counted()
{
    // Arrange: dispatched by the dead sender; no receipt ever comes; recheck after 2 s.
    let app = spawn_app_configured(|_| {}, |s| s.ambiguous_recheck_secs = 2).await;
    let request = receipt_request("HS-L004");
    claim_as_dead_sender(&app, &request, Duration::from_secs(1), true).await;
    let resends_before = counter(&app, "loa_notifier_ambiguous_resends_total").await;

    // Act
    app.publish(&request).await;

    // Assert: parked as ambiguous first (not resent at once), then resent once.
    app.delivery_with_status(&request.notification_id, "ambiguous")
        .await;
    assert!(app.messages_for(&request.notification_id).await.is_empty());
    app.delivery_with_status(&request.notification_id, "sent")
        .await;
    let sent = eventually(PATIENCE, || async {
        let m: Vec<Value> = app.messages_for(&request.notification_id).await;
        (!m.is_empty()).then_some(m)
    })
    .await
    .unwrap();
    assert_eq!(sent.len(), 1);
    let resends = counter(&app, "loa_notifier_ambiguous_resends_total").await;
    assert!(
        resends >= resends_before + 1.0,
        "{resends_before} → {resends}"
    );
}

#[tokio::test]
async fn a_live_sender_renews_the_leases_of_requests_it_holds_longer_than_one_period() {
    // Arrange: 1 s leases; two messages a second, so a batch of eight waits ~4 s for
    // its send slots, its requests claimed (`sending`) all the while.
    let app = spawn_app_configured(
        |tenants| {
            tenants[0].zalo.rate_per_second = 2.0;
            tenants[0].zalo.burst = 1;
        },
        |settings| settings.lease_secs = 1,
    )
    .await;
    let requests: Vec<NotificationRequest> = (0..8)
        .map(|i| receipt_request(&format!("HS-LEASE-{i}")))
        .collect();

    // Act
    app.publish_many(&requests).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    // Assert: what is still waiting holds a lease reaching past now (renewed), not
    // one that lapsed a second after its claim.
    let client = app.pool.get().await.unwrap();
    let rows = client
        .query(
            "SELECT notification_id, lease_until > now()
               FROM notifier.deliveries WHERE status = 'sending'",
            &[],
        )
        .await
        .unwrap();
    assert!(!rows.is_empty(), "some requests still wait for their slots");
    let lapsed: Vec<String> = rows
        .iter()
        .filter(|r| !r.get::<_, bool>(1))
        .map(|r| r.get(0))
        .collect();
    assert!(lapsed.is_empty(), "leases lapsed while held: {lapsed:?}");
}
