//! `loa subjects erase`: a citizen's erasure request carried out by the tracker and
//! the notifier of a running system, driven by the real binary; afterwards no column
//! of either schema holds their number, in any written form.

use crate::{
    helpers::{receipt_event, TestSystem},
    ingress::publish_ingress,
};
use loa_platform::testing::{columns_naming, eventually};
use std::{process::Command, time::Duration};

/// Runs `loa subjects erase` against `sys`; its exit status and standard output.
async fn loa_subjects_erase(sys: &TestSystem, notifier: &str, phone: &str) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_loa"));
    command
        .args(["subjects", "erase", "--phone", phone, "--requested-by"])
        .arg("Nguyễn Văn An, phiếu yêu cầu PYC-2026-17")
        .env("LOA_TRACKER_URL", &sys.tracker)
        .env("LOA_NOTIFIER_URL", notifier)
        .env("LOA_ADMIN_TOKEN", "demo-admin")
        .env("LOA_DATABASE_URL", &sys.env.database_url)
        .env("LOA_AMQP_URL", &sys.env.amqp_url);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("the loa binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

async fn everywhere(sys: &TestSystem, digits: &str) -> Vec<String> {
    let pool = loa_platform::db::pool(&sys.env.database_url, 1).unwrap();
    let mut found = Vec::new();
    for schema in ["tracker", "notifier"] {
        for column in columns_naming(&pool, schema, digits).await.unwrap() {
            found.push(format!("{schema}.{column}"));
        }
    }
    found
}

#[tokio::test]
async fn loa_subjects_erase_leaves_no_trace_of_the_citizens_number_in_the_tracker_or_the_notifier()
{
    // Arrange: the citizen's dossier reached them on Zalo, they are in the broadcasts'
    // audience, and an upstream message naming them was refused at the ingress.
    let sys = TestSystem::start().await;
    let notifier = format!(
        "http://127.0.0.1:{}",
        sys.system.as_ref().unwrap().notifier_port.unwrap()
    );
    let code = "000.00.06.H56-261128-1701";
    let r = sys
        .post_event("demo-token", &receipt_event("erase-1", code))
        .await;
    assert_eq!(r.status(), 202);
    sys.settle_messages(1).await;
    let r = sys
        .client
        .post(format!("{notifier}/v1/subscribers/import"))
        .bearer_auth("demo-admin")
        .header("content-type", "application/x-ndjson")
        .body(r#"{"phone": "0903 123 456", "name": "Trần Thị Bích", "announcements": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    publish_ingress(
        &sys.env.amqp_url,
        Some("not-a-token"),
        receipt_event("erase-2", code).to_string().as_bytes(),
    )
    .await;
    let pool = loa_platform::db::pool(&sys.env.database_url, 1).unwrap();
    eventually(Duration::from_secs(20), || {
        let pool = pool.clone();
        async move {
            let client = pool.get().await.ok()?;
            let n: i64 = client
                .query_one("SELECT count(*) FROM notifier.dead_letters", &[])
                .await
                .ok()?
                .get(0);
            (n > 0).then_some(())
        }
    })
    .await
    .expect("the refused message is a dead letter");
    let before = everywhere(&sys, "903123456").await;
    assert!(
        before.contains(&"tracker.dossier_events.event".to_owned())
            && before.contains(&"notifier.subscribers.phone".to_owned())
            && before.contains(&"notifier.dead_letters.body".to_owned()),
        "{before:?}"
    );

    // Act
    let (ok, output) = loa_subjects_erase(&sys, &notifier, "0903 123 456").await;
    let (again_ok, again) = loa_subjects_erase(&sys, &notifier, "84903123456").await;

    // Assert
    assert!(ok, "{output}");
    assert!(
        output.contains("tracker: removed") && output.contains("notifier: removed"),
        "{output}"
    );
    assert_eq!(everywhere(&sys, "903123456").await, Vec::<String>::new());
    // The dossier itself stays: its status, for the province's statistics.
    assert_eq!(sys.dossier(code).await.status(), 200);
    assert!(again_ok, "{again}");
    assert!(again.contains("dossiers_masked=0"), "{again}");
    assert!(again.contains("subscribers=0"), "{again}");
    sys.stop().await;
}
