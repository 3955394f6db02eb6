//! `loa dead-letters list|replay` against a running system's database and broker.

use crate::helpers::{receipt_event, TestSystem};
use loa_platform::{
    amqp::{topology, OutgoingMessage, Publisher},
    testing::{eventually, TestEnv},
};
use serde_json::Value;
use std::{process::Command, time::Duration};

/// Runs `loa dead-letters <args>` on the test's database and vhost; returns stdout.
fn loa_dead_letters(env: &TestEnv, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_loa"))
        .arg("dead-letters")
        .args(args)
        .env("LOA_AMQP_URL", &env.amqp_url)
        .env("LOA_DATABASE_URL", &env.database_url)
        .output()
        .expect("the loa binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "loa dead-letters {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn listed(env: &TestEnv) -> Vec<Value> {
    serde_json::from_str(&loa_dead_letters(env, &["list", "--json"])).expect("JSON")
}

#[tokio::test]
async fn the_cli_lists_a_dead_letter_and_replays_it_to_where_it_came_from() {
    // Arrange: an ingress message without a source token is dead-lettered by intake.
    let sys = TestSystem::start().await;
    let publisher = Publisher::new(sys.env.amqp_url.clone(), "cli-test");
    publisher
        .publish(&OutgoingMessage {
            exchange: topology::EX_INGRESS.into(),
            routing_key: "upstream.demo".into(),
            body: serde_json::to_vec(&receipt_event("cli-1", "CLI-1")).unwrap(),
            message_id: "cli-1".into(),
            headers: Vec::new(),
        })
        .await
        .unwrap();
    let env = &sys.env;
    let letter = eventually(Duration::from_secs(20), || async {
        listed(env).into_iter().next()
    })
    .await
    .expect("the dead letter is stored");

    // Act
    let table = loa_dead_letters(env, &["list", "--tenant", "demo", "--unreplayed"]);
    let id = letter["id"].as_i64().unwrap().to_string();
    let replayed = loa_dead_letters(env, &["replay", "--id", &id]);
    let none = loa_dead_letters(env, &["replay", "--reason", "no such reason"]);

    // Assert
    assert_eq!(letter["source_queue"], "intake.ingress");
    assert_eq!(letter["exchange"], "loa.ingress");
    assert_eq!(letter["tenant"], "demo");
    assert!(letter["reason"]
        .as_str()
        .unwrap()
        .starts_with("unauthorized"));
    assert!(table.contains("intake.ingress"), "{table}");
    assert!(table.contains("unauthorized"), "{table}");
    assert!(
        !table.contains("903"),
        "the table shows no phone number: {table}"
    );
    assert_eq!(replayed.trim(), "Replayed 1 dead letter(s).");
    assert_eq!(none.trim(), "Replayed 0 dead letter(s).");
    // Intake consumed the replayed message again and refused it again: the same row
    // is back, replayed once and dead twice.
    let revived = eventually(Duration::from_secs(20), || async {
        listed(env)
            .into_iter()
            .find(|l| l["deaths"] == 2 && l["replayed_at"].is_null())
    })
    .await
    .expect("the replayed message died again");
    assert_eq!(revived["id"], letter["id"]);
    assert_eq!(revived["replay_count"], 1);
    sys.stop().await;
}
