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

/// Publishes `body` to `loa.ingress` as an upstream system, with `token` if any.
async fn publish_ingress(publisher: &Publisher, id: &str, token: Option<&str>, body: &Value) {
    publisher
        .publish(&OutgoingMessage {
            exchange: topology::EX_INGRESS.into(),
            routing_key: "upstream.demo".into(),
            body: serde_json::to_vec(body).unwrap(),
            message_id: id.into(),
            headers: token
                .map(|t| vec![("x-loa-token".to_owned(), t.to_owned())])
                .unwrap_or_default(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn the_cli_lists_a_dead_letter_and_replays_it_to_where_it_came_from() {
    // Arrange: intake refuses an event with an unknown status sent with demo's token,
    // and an event sent without any token.
    let sys = TestSystem::start().await;
    let publisher = Publisher::new(sys.env.amqp_url.clone(), "cli-test");
    let mut unknown_status = receipt_event("cli-1", "CLI-1");
    unknown_status["status"] = 42.into();
    publish_ingress(&publisher, "cli-1", Some("demo-token"), &unknown_status).await;
    publish_ingress(&publisher, "cli-2", None, &receipt_event("cli-2", "CLI-2")).await;
    let env = &sys.env;
    let letters = eventually(Duration::from_secs(20), || async {
        let all = listed(env);
        (all.len() == 2).then_some(all)
    })
    .await
    .expect("both dead letters are stored");
    let by_id = |id: &str| {
        letters
            .iter()
            .find(|l| l["message_id"] == id)
            .unwrap_or_else(|| panic!("no dead letter {id}: {letters:?}"))
            .clone()
    };
    let (letter, anonymous) = (by_id("cli-1"), by_id("cli-2"));

    // Act
    let table = loa_dead_letters(env, &["list", "--tenant", "demo", "--unreplayed"]);
    let id = letter["id"].as_i64().unwrap().to_string();
    let anonymous_id = anonymous["id"].as_i64().unwrap().to_string();
    let replayed = loa_dead_letters(env, &["replay", "--id", &id]);
    let not_replayable = loa_dead_letters(env, &["replay", "--id", &anonymous_id]);
    let none = loa_dead_letters(env, &["replay", "--reason", "no such reason"]);

    // Assert: the refused event is demo's (its token was verified), the anonymous
    // one nobody's; neither row keeps a token.
    assert_eq!(letter["source_queue"], "intake.ingress");
    assert_eq!(letter["exchange"], "loa.ingress");
    assert_eq!(letter["tenant"], "demo");
    assert!(letter["reason"]
        .as_str()
        .unwrap()
        .starts_with("invalid_status"));
    assert_eq!(anonymous["tenant"], Value::Null);
    assert!(anonymous["reason"]
        .as_str()
        .unwrap()
        .starts_with("unauthorized"));
    assert!(table.contains("intake.ingress"), "{table}");
    assert!(table.contains("invalid_status"), "{table}");
    assert!(!table.contains("unauthorized"), "{table}");
    assert!(
        !table.contains("903"),
        "the table shows no phone number: {table}"
    );
    assert_eq!(replayed.trim(), "Replayed 1 dead letter(s).");
    assert!(
        not_replayable.starts_with("Replayed 0 dead letter(s).\nSkipped "),
        "{not_replayable}"
    );
    assert!(
        not_replayable.contains("without a valid token"),
        "{not_replayable}"
    );
    assert_eq!(none.trim(), "Replayed 0 dead letter(s).");
    // Intake consumed the replayed message again, with demo's token presented for
    // it, and refused it again for its status: the same row is back, replayed once
    // and dead twice.
    let revived = eventually(Duration::from_secs(20), || async {
        listed(env)
            .into_iter()
            .find(|l| l["deaths"] == 2 && l["replayed_at"].is_null())
    })
    .await
    .expect("the replayed message died again");
    assert_eq!(revived["id"], letter["id"]);
    assert_eq!(revived["replay_count"], 1);
    assert_eq!(revived["reason"], letter["reason"]);
    sys.stop().await;
}
