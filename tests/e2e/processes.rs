//! The services as separate processes (`loa run intake`, …), as production runs them.

use crate::{
    helpers::{receipt_event, settle_messages, wait_ready},
    helpers_process::{base, spawn, Ports, Process},
};
use loa_platform::testing::TestEnv;
use std::process::Command;

#[tokio::test]
async fn the_services_run_as_separate_processes_and_carry_an_event_to_zalo() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let ports = Ports::free();
    let _services: Vec<Process> = ["zalo-sandbox", "tracker", "notifier", "intake"]
        .into_iter()
        .map(|t| spawn(t, &env, &ports, &[]))
        .collect();
    let client = reqwest::Client::new();
    let (intake, tracker, notifier, sandbox) =
        (ports.intake, ports.tracker, ports.notifier, ports.sandbox);
    wait_ready(
        &client,
        &[
            &base(sandbox),
            &base(tracker),
            &base(notifier),
            &base(intake),
        ],
    )
    .await;

    // Act
    let resp = client
        .post(format!("{}/v1/events", base(intake)))
        .bearer_auth("demo-token")
        .json(&receipt_event("proc-1", "H56-0201"))
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(resp.status(), 202);
    let messages = settle_messages(&client, &base(sandbox), 1).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["phone"], "84903123456");
    assert_eq!(messages[0]["template_data"]["dossier_code"], "H56-0201");
}

#[tokio::test]
async fn loa_demo_tells_its_story_and_exits() {
    let env = TestEnv::new().await.unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_loa"))
        .args(["demo", "--exit"])
        .env("LOA_AMQP_URL", &env.amqp_url)
        .env("LOA_DATABASE_URL", &env.database_url)
        .env("LOA_INTAKE__BIND", "127.0.0.1:0")
        .env("LOA_TRACKER__BIND", "127.0.0.1:0")
        .env("LOA_NOTIFIER__BIND", "127.0.0.1:0")
        .env("LOA_SANDBOX__BIND", "127.0.0.1:0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("✉ ZNS to").count(), 4, "{stdout}");
    assert!(stdout.contains("Đã xử lý xong"), "{stdout}");
    assert!(stdout.contains("/tra-cuu/"), "{stdout}");
    assert!(
        !stdout.contains("0903123456") && !stdout.contains("84903123456"),
        "phones are masked: {stdout}"
    );
}

#[tokio::test]
async fn loa_migrate_creates_every_services_schema_and_is_idempotent() {
    let env = TestEnv::new().await.unwrap();
    for _ in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_loa"))
            .arg("migrate")
            .env("LOA_AMQP_URL", &env.amqp_url)
            .env("LOA_DATABASE_URL", &env.database_url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (client, conn) = tokio_postgres::connect(&env.database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let schemas: Vec<String> = client
        .query(
            "SELECT schema_name::text FROM information_schema.schemata ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        schemas.contains(&"tracker".to_owned()) && schemas.contains(&"notifier".to_owned()),
        "{schemas:?}"
    );
}

#[tokio::test]
async fn a_taken_port_is_one_line_naming_the_setting_that_moves_it_without_a_backtrace() {
    // Arrange: something else listens on the port intake is told to use.
    let env = TestEnv::new().await.unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();

    // Act
    let out = Command::new(env!("CARGO_BIN_EXE_loa"))
        .args(["run", "intake"])
        .env("LOA_AMQP_URL", &env.amqp_url)
        .env("LOA_DATABASE_URL", &env.database_url)
        .env("LOA_INTAKE__BIND", &addr)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();

    // Assert
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("loa: ")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let line = lines[0];
    assert!(
        line.contains(&format!("{addr} is already in use"))
            && line.contains("LOA_INTAKE__BIND=<host:port>"),
        "{line}"
    );
    assert!(
        !stderr.contains("backtrace") && !stderr.contains("Caused by"),
        "{stderr}"
    );
}
