//! `loa chaos --short` in the test suite: the four services as processes under a
//! steady load while every fault kind strikes (each service killed, the notifier
//! twice; AMQP connections closed; database backends terminated; Zalo answering 5xx,
//! hanging, rate-limiting; access tokens expired), then the audit. The run must pass
//! it: nothing lost, no duplicate beyond the counted ambiguous resends, no stall
//! longer than 10 s.

use serde_json::Value;
use std::process::Command;

#[test]
fn a_short_chaos_run_loses_nothing_duplicates_nothing_unexplained_and_never_stalls() {
    // Arrange
    let out_dir = std::env::temp_dir().join(format!("loa-chaos-short-{}", std::process::id()));

    // Act
    let out = Command::new(env!("CARGO_BIN_EXE_loa"))
        .args(["chaos", "--short", "--json", "--out-dir"])
        .arg(&out_dir)
        .output()
        .expect("the loa binary runs");

    // Assert: the run passed its own audit …
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr:\n{stderr}");
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("one JSON object ({e}):\n{stdout}"));
    assert_eq!(report["verdict"], "pass", "{stderr}");
    // … and the audit judged real work: every fault kind struck, the notifier died
    // twice, events were accepted and planned, and all of them reached Zalo or ended
    // with a reason.
    let log = report["log"].as_array().expect("a chaos log");
    for kind in [
        "SIGKILL intake, restart",
        "SIGKILL tracker, restart",
        "SIGKILL zalo-sandbox, restart",
        "close the vhost's AMQP connections",
        "terminate the database's backends",
        "expire Zalo access tokens",
        "Zalo 5xx on",
        "Zalo hangs on",
        "Zalo -32 on",
    ] {
        assert!(
            log.iter().any(|e| e["action"] == kind && e["done"] == true),
            "{kind} did not strike: {stderr}"
        );
    }
    let notifier_kills = log
        .iter()
        .filter(|e| e["action"] == "SIGKILL notifier, restart" && e["done"] == true)
        .count();
    assert!(notifier_kills >= 2, "{stderr}");
    let audit = &report["audit"];
    let planned = audit["planned"].as_u64().unwrap();
    assert!(planned >= 500, "{stderr}");
    let undeliverable: u64 = audit["undeliverable"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(
        audit["exactly_once"].as_u64().unwrap()
            + audit["repeated"].as_u64().unwrap()
            + undeliverable,
        planned,
        "{stderr}"
    );
    assert_eq!(audit["lost"], 0, "{stderr}");
    assert!(
        audit["longest_gap_secs"].as_f64().unwrap() <= 10.0,
        "{stderr}"
    );
    std::fs::remove_dir_all(&out_dir).unwrap();
}
