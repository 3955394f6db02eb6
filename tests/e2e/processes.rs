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

/// Runs `loa demo --exit` on `env` with its stdout and stderr in one file, as a
/// terminal shows them, and returns what it printed.
fn run_demo(env: &TestEnv, name: &str) -> String {
    let path = std::env::temp_dir().join(format!("loa-demo-{}-{name}.txt", std::process::id()));
    let out = std::fs::File::create(&path).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_loa"))
        .args(["demo", "--exit"])
        .env("LOA_AMQP_URL", &env.amqp_url)
        .env("LOA_DATABASE_URL", &env.database_url)
        .env("LOA_INTAKE__BIND", "127.0.0.1:0")
        .env("LOA_TRACKER__BIND", "127.0.0.1:0")
        .env("LOA_NOTIFIER__BIND", "127.0.0.1:0")
        .env("LOA_SANDBOX__BIND", "127.0.0.1:0")
        .env("LOA_CONSOLE__BIND", "127.0.0.1:0")
        // Every log line the services have, to show that none cuts the story.
        .env("RUST_LOG", "info")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .status()
        .unwrap();
    let printed = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(status.success(), "{printed}");
    printed
}

/// The dossier codes a telling of the story printed (`Hồ sơ <code> (…`).
fn dossier_codes(printed: &str) -> Vec<String> {
    // One per message: the first "hồ sơ <code>" of a line (the templates name the
    // dossier once, where the sentence needs it).
    printed
        .lines()
        .filter_map(|l| {
            l.split("ồ sơ ")
                .skip(1)
                .filter_map(|rest| rest.split(' ').next())
                .find(|token| token.contains('-'))
        })
        .map(str::to_owned)
        .collect()
}

/// Whether a code has the real format `<agency>-<yymmdd>-<nnnn>`.
fn is_real_code(code: &str) -> bool {
    let parts: Vec<&str> = code.rsplitn(3, '-').collect();
    let [number, day, agency] = parts[..] else {
        return false;
    };
    number.len() == 4
        && number.chars().all(|c| c.is_ascii_digit())
        && day.len() == 6
        && day.chars().all(|c| c.is_ascii_digit())
        && agency.ends_with(".H56")
}

#[tokio::test]
async fn loa_demo_tells_its_whole_story_twice_in_a_row_with_new_dossier_codes_and_no_log_line_inside(
) {
    // Arrange: one database and vhost for both runs, as on a laptop.
    let env = TestEnv::new().await.unwrap();

    // Act
    let first = run_demo(&env, "first");
    let second = run_demo(&env, "second");

    // Assert
    for printed in [&first, &second] {
        assert_eq!(printed.matches("✉ ZNS to").count(), 4, "{printed}");
        assert!(
            printed.contains("đã có kết quả trước ngày hẹn trả"),
            "the early result, in the words of docs/zalo-templates.md: {printed}"
        );
        assert!(printed.contains("/tra-cuu/"), "{printed}");
        assert!(
            !printed.contains("0903123456") && !printed.contains("84903123456"),
            "phones are masked: {printed}"
        );
        // The story runs from its title to the console's address with no log line.
        let lines: Vec<&str> = printed.lines().collect();
        let from = lines
            .iter()
            .position(|l| l.starts_with("Loa demo:"))
            .unwrap();
        let to = lines
            .iter()
            .position(|l| l.starts_with("Admin console:"))
            .unwrap();
        for line in &lines[from..=to] {
            assert!(
                !["INFO", "WARN", "ERROR", "\u{1b}["]
                    .iter()
                    .any(|mark| line.contains(mark)),
                "a log line inside the story: {line:?}\n{printed}"
            );
        }
        assert!(
            lines[to..].iter().any(|l| l.contains("INFO")),
            "the held log lines follow the story: {printed}"
        );
    }
    let (one, two) = (dossier_codes(&first), dossier_codes(&second));
    assert_eq!(one.len(), 4, "{first}");
    assert!(
        one.iter().chain(&two).all(|c| is_real_code(c)),
        "{one:?} {two:?}"
    );
    assert!(
        one.iter().all(|c| !two.contains(c)),
        "the second run files new dossiers: {one:?} then {two:?}"
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
