//! Broadcasts with the services as processes: the `loa broadcasts` and `loa
//! subscribers` commands against a running notifier, and a notifier killed with
//! SIGKILL in the middle of a fan-out that finishes the broadcast after a restart,
//! every citizen told exactly once.

use crate::{
    helpers::wait_ready,
    helpers_process::{base, spawn, Ports, Process},
    tenants_reload::tenant_toml,
};
use loa_platform::testing::{eventually, TestEnv};
use serde_json::Value;
use std::{collections::HashMap, io::Write, process::Command, time::Duration};

/// Small pages, so the kill lands between checkpoints. A send the killed notifier
/// had marked dispatched but not yet made (no receipt will ever come) is resent after
/// a minute instead of the default ten.
const NOTIFIER: &[(&str, &str)] = &[
    ("LOA_NOTIFIER__BROADCAST_CHUNK", "50"),
    ("LOA_NOTIFIER__BROADCAST_INTERVAL_MS", "100"),
    ("LOA_NOTIFIER__AMBIGUOUS_RECHECK_SECS", "60"),
];
/// How long the notifier stays down: a restart takes seconds, longer than the
/// sandbox's short webhook retries (about 4 s), so the receipts of the sends made
/// just before the kill reach the new notifier only through Zalo's redelivery.
const DOWN: Duration = Duration::from_secs(8);

/// Runs `loa <args>` as the demo tenant's admin against `notifier`; its stdout.
fn loa(notifier: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_loa"))
        .args(args)
        .env("LOA_NOTIFIER_URL", notifier)
        .env("LOA_ADMIN_TOKEN", "demo-admin")
        .output()
        .expect("the loa binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "loa {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn show(notifier: &str, id: &str) -> Value {
    serde_json::from_str(&loa(notifier, &["broadcasts", "show", id])).expect("JSON")
}

/// Messages the sandbox accepted, per phone.
async fn sends(client: &reqwest::Client, sandbox: &str) -> HashMap<String, usize> {
    let body: Value = client
        .get(format!("{sandbox}/_sandbox/messages"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = body
        .as_array()
        .cloned()
        .or_else(|| body["messages"].as_array().cloned())
        .unwrap_or_default();
    let mut by_phone = HashMap::new();
    for m in list {
        if let Some(p) = m["phone"].as_str() {
            *by_phone.entry(p.to_owned()).or_insert(0) += 1;
        }
    }
    by_phone
}

// The messages in flight at the kill were dispatched and (most of them) accepted by
// Zalo; the restarted notifier parks them until their receipts prove the sends. It
// used to fail when the notifier took longer to come back than the sandbox kept
// retrying those receipts (about 4 s, under a loaded machine's full suite): they were
// lost, and the broadcast waited ten minutes to resend. Zalo redelivers to a
// receiver it cannot connect to at +30 s, +5 min…; the sandbox does so too now.
#[tokio::test]
async fn a_notifier_killed_mid_fan_out_finishes_the_broadcast_after_a_restart_telling_everyone_once(
) {
    // Arrange: the sandbox and a notifier as processes; 1,000 citizens imported
    // with `loa subscribers import` (at the demo tenant's 50 messages a second).
    const CITIZENS: usize = 1_000;
    let env = TestEnv::new().await.unwrap();
    let ports = Ports::free();
    // The demo tenant without quiet hours: the test must not depend on the hour.
    let dir = std::env::temp_dir().join(format!("loa-broadcast-{}", ports.notifier));
    std::fs::create_dir_all(&dir).unwrap();
    let tenants_file = dir.join("tenants.toml");
    let tenants = tenant_toml("demo", &["demo-token"], 1, &base(ports.sandbox))
        + "[tenants.broadcasts]\nquiet_hours = \"\"\n";
    std::fs::write(&tenants_file, tenants).unwrap();
    let with_tenants = |extra: &[(&'static str, &'static str)]| -> Vec<(String, String)> {
        let mut all = vec![(
            "LOA_TENANTS_FILE".to_owned(),
            tenants_file.to_str().unwrap().to_owned(),
        )];
        all.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        all
    };
    let sandbox_env = with_tenants(&[]);
    let notifier_env = with_tenants(NOTIFIER);
    let _sandbox_process = spawn("zalo-sandbox", &env, &ports, &as_refs(&sandbox_env));
    let mut notifier_process: Process = spawn("notifier", &env, &ports, &as_refs(&notifier_env));
    let client = reqwest::Client::new();
    let (sandbox, notifier) = (base(ports.sandbox), base(ports.notifier));
    wait_ready(&client, &[&sandbox, &notifier]).await;
    let file = dir.join("citizens.ndjson");
    let mut lines = std::fs::File::create(&file).unwrap();
    for i in 0..CITIZENS {
        writeln!(
            lines,
            r#"{{"phone": "0912{i:06}", "tags": ["ward:a"], "announcements": true}}"#
        )
        .unwrap();
    }
    drop(lines);
    let imported = loa(
        &notifier,
        &["subscribers", "import", file.to_str().unwrap()],
    );
    assert!(
        imported.starts_with("imported 1000, updated 0, rejected 0"),
        "{imported}"
    );

    // Act: create it, SIGKILL the notifier mid fan-out, start a new one.
    let created: Value = serde_json::from_str(&loa(
        &notifier,
        &[
            "broadcasts",
            "create",
            "--title",
            "Bão số 9",
            "--tags",
            "ward:a",
            "--param",
            "title=Cảnh báo bão số 9",
            "--param",
            "body=Bão số 9 đổ bộ đêm 10/12/2026, người dân chủ động phòng tránh.",
            "--param",
            "link=https://dichvucong.example.gov.vn/bao-so-9",
        ],
    ))
    .expect("JSON");
    let id = created["id"].as_str().expect("an id").to_owned();
    eventually(Duration::from_secs(60), || async {
        (sends(&client, &sandbox).await.len() >= 150).then_some(())
    })
    .await
    .expect("the broadcast is under way");
    notifier_process.kill_hard();
    let at_kill = show_from_db(&env, &id).await;
    tokio::time::sleep(DOWN).await;
    let _restarted = spawn("notifier", &env, &ports, &as_refs(&notifier_env));
    wait_ready(&client, &[&notifier]).await;
    let done = eventually(Duration::from_secs(240), || async {
        let view = show(&notifier, &id);
        (view["state"] == "completed").then_some(view)
    })
    .await
    .expect("the broadcast completes");

    // Assert: killed mid fan-out; every citizen told, each once.
    assert!(
        at_kill < CITIZENS as i64,
        "the kill landed mid fan-out: {at_kill} queued"
    );
    let sent = sends(&client, &sandbox).await;
    assert_eq!(sent.len(), CITIZENS);
    let repeated: Vec<_> = sent.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "sent more than once: {repeated:?}");
    assert_eq!(done["sent"], CITIZENS, "{done}");
    let list = loa(&notifier, &["broadcasts", "list"]);
    assert!(list.contains(&id) && list.contains("completed"), "{list}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Recipients the broadcast had published when the notifier died (its checkpoint).
async fn show_from_db(env: &TestEnv, id: &str) -> i64 {
    let pool = loa_platform::db::pool(&env.database_url, 1).unwrap();
    let client = pool.get().await.unwrap();
    client
        .query_one(
            "SELECT queued FROM notifier.broadcasts WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

/// Borrowed `(name, value)` pairs, as [`spawn`] takes them.
fn as_refs(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}
