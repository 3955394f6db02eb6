//! New appointment dates: the citizen is told the old and the new date and why, and
//! the history, the API and the lookup page keep every value the appointment had.

use crate::helpers::*;
use loa_contracts::{notification::notification_id, NotificationKind};
use loa_platform::testing::TestEnv;
use serde_json::{json, Value};

#[tokio::test]
async fn a_moved_appointment_is_announced_once_with_both_dates_and_kept_in_the_history() {
    // Arrange: received on 28/11, due on 03/12.
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(true)).await;
    let code = dossier_code("0901");
    broker
        .publish(&event("d-1", &code, 2, "2026-11-28T09:30:00+07:00"))
        .await;
    app.wait_applied(&["d-1"]).await;
    app.wait_relayed().await;
    broker.notifications().await;

    // Act: an apology letter moves it to 10/12; then another update repeats that date.
    let apology = event_with(
        "d-2",
        &code,
        4,
        "2026-12-02T14:00:00+07:00",
        |v: &mut Value| {
            v["due_at"] = json!("2026-12-10T17:00:00+07:00");
            v["reason"] = json!("Phiếu xin lỗi và hẹn lại ngày trả kết quả");
        },
    );
    let same_date = event_with(
        "d-3",
        &code,
        4,
        "2026-12-03T08:00:00+07:00",
        |v: &mut Value| {
            v["due_at"] = json!("2026-12-10T16:00:00+07:00");
        },
    );
    broker.publish(&apology).await;
    broker.publish(&same_date).await;
    app.wait_applied(&["d-2", "d-3"]).await;
    app.wait_relayed().await;

    // Assert: one message, with both dates and the reason.
    let observed = broker.notifications().await;
    assert_eq!(observed.len(), 1, "{observed:?}");
    let n = &observed[0].request;
    assert_eq!(n.kind, NotificationKind::DueDateChanged);
    assert_eq!(
        n.notification_id,
        notification_id("demo", "d-2", NotificationKind::DueDateChanged)
    );
    assert_eq!(n.params["old_due_date"], "03/12/2026");
    assert_eq!(n.params["new_due_date"], "10/12/2026");
    assert_eq!(
        n.params["reason"],
        "Phiếu xin lỗi và hẹn lại ngày trả kết quả"
    );
    assert_eq!(n.params["dossier_code"], code);

    // The API's history has every value; the dossier has the new one.
    let dossier = app.admin_get(&format!("/v1/dossiers/{code}")).await;
    assert_eq!(dossier["due_at"], "2026-12-10T16:00:00+07:00");
    let dues: Vec<&Value> = dossier["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| &h["due_at"])
        .collect();
    assert_eq!(
        dues,
        [
            "2026-12-03T17:00:00+07:00",
            "2026-12-10T17:00:00+07:00",
            "2026-12-10T16:00:00+07:00"
        ]
    );

    // The page shows the new date, and where it was set, once.
    let page = app.lookup_page(&code).await;
    assert!(
        page.contains("<dt>Ngày hẹn trả</dt><dd>10/12/2026</dd>"),
        "{page}"
    );
    assert_eq!(
        page.matches("Hẹn lại ngày trả kết quả: 10/12/2026").count(),
        1,
        "{page}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_dossier_received_again_after_a_supplement_announces_its_new_date_not_a_second_receipt() {
    // Arrange: received on 28/11, due on 03/12; the desk asks for a document.
    let env = TestEnv::new().await.unwrap();
    let broker = Broker::connect(&env).await;
    let app = TestApp::spawn(&env, settings(true)).await;
    let code = dossier_code("0902");
    broker
        .publish(&event("r-1", &code, 2, "2026-11-28T09:30:00+07:00"))
        .await;
    broker
        .publish(&event_with(
            "r-2",
            &code,
            5,
            "2026-11-30T09:00:00+07:00",
            |v: &mut Value| {
                v["required_documents"] = json!(["Bản sao sổ hộ khẩu"]);
            },
        ))
        .await;
    app.wait_applied(&["r-1", "r-2"]).await;
    app.wait_relayed().await;
    broker.notifications().await;

    // Act: the citizen brings it; the desk receives the dossier again (5 → 2), due later.
    broker
        .publish(&event_with(
            "r-3",
            &code,
            2,
            "2026-12-02T10:00:00+07:00",
            |v: &mut Value| {
                v["due_at"] = json!("2026-12-08T17:00:00+07:00");
                v["reason"] = json!("Đã nhận đủ giấy tờ bổ sung");
            },
        ))
        .await;
    app.wait_applied(&["r-3"]).await;
    app.wait_relayed().await;

    // Assert: the new date with the old one and the reason, and no second receipt.
    let observed = broker.notifications().await;
    let kinds: Vec<NotificationKind> = observed.iter().map(|o| o.request.kind).collect();
    assert_eq!(kinds, [NotificationKind::DueDateChanged], "{observed:?}");
    let n = &observed[0].request;
    assert_eq!(n.params["old_due_date"], "03/12/2026");
    assert_eq!(n.params["new_due_date"], "08/12/2026");
    assert_eq!(n.params["reason"], "Đã nhận đủ giấy tờ bổ sung");
    app.stop().await;
}
