//! Tenants without restart: the tenants file is reloaded on SIGHUP and when it
//! changes, validated first; a broken file is refused and the tenants in force stay.

use crate::{
    helpers::{receipt_event, wait_ready},
    helpers_process::{base, spawn, spawn_with_stderr, Ports, Process},
};
use loa_contracts::NotificationKind;
use loa_platform::testing::{eventually, TestEnv};
use std::{path::PathBuf, process::Stdio, time::Duration};

/// One `[[tenants]]` table: a province with its upstream sources' tokens, its admin
/// token `<id>-admin`, and a Zalo app (`app` tells the apps apart) on `zalo_url` with a
/// template for every notification kind.
pub fn tenant_toml(id: &str, source_tokens: &[&str], app: u32, zalo_url: &str) -> String {
    let sources: Vec<String> = source_tokens
        .iter()
        .enumerate()
        .map(|(i, token)| format!(r#"{{ id = "{id}-mot-cua-{i}", token = "{token}" }}"#))
        .collect();
    let templates: Vec<String> = NotificationKind::ALL
        .iter()
        .map(|k| format!(r#"{} = "{}""#, k.as_str(), k.default_template_id()))
        .collect();
    format!(
        r#"
[[tenants]]
id = "{id}"
name = "Trung tâm Phục vụ hành chính công {id}"
admin_tokens = ["{id}-admin"]
sources = [{sources}]
[tenants.zalo]
app_id = "100000000000000000{app}"
app_secret = "{id}-app-secret"
oa_id = "200000000000000000{app}"
oa_secret_key = "{id}-oa-secret-key"
refresh_token = "{id}-refresh-token"
openapi_url = "{zalo_url}"
business_url = "{zalo_url}"
oauth_url = "{zalo_url}"
templates = {{ {templates} }}
"#,
        sources = sources.join(", "),
        templates = templates.join(", "),
    )
}

/// A scratch file for a test's tenants (and the log of the process reading it).
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loa-e2e-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn post_as(client: &reqwest::Client, intake: &str, token: &str, id: &str) -> u16 {
    client
        .post(format!("{intake}/v1/events"))
        .bearer_auth(token)
        .json(&receipt_event(
            id,
            &format!("000.00.06.H56-261128-{}", &id[id.len() - 4..]),
        ))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_source_token_added_to_the_tenants_file_works_after_sighup_and_a_broken_file_changes_nothing(
) {
    // Arrange: intake alone, reading a tenants file only on SIGHUP.
    let env = TestEnv::new().await.unwrap();
    let dir = scratch("sighup");
    let (file, log) = (dir.join("tenants.toml"), dir.join("intake.log"));
    let zalo = "http://127.0.0.1:1";
    std::fs::write(&file, tenant_toml("demo", &["first-token"], 1, zalo)).unwrap();
    let ports = Ports::free();
    let settings = [
        ("LOA_TENANTS_FILE", file.to_str().unwrap()),
        ("LOA_TENANTS_POLL_MS", "0"),
    ];
    let mut intake: Process = spawn_with_stderr(
        "intake",
        &env,
        &ports,
        &settings,
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let client = reqwest::Client::new();
    let url = base(ports.intake);
    wait_ready(&client, &[&url]).await;
    assert_eq!(post_as(&client, &url, "first-token", "hup-0001").await, 202);
    assert_eq!(
        post_as(&client, &url, "second-token", "hup-0002").await,
        401
    );

    // Act: the province gets a second source; the file changes, then SIGHUP.
    std::fs::write(
        &file,
        tenant_toml("demo", &["first-token", "second-token"], 1, zalo),
    )
    .unwrap();
    assert_eq!(
        post_as(&client, &url, "second-token", "hup-0003").await,
        401,
        "polling is off: nothing changes before the signal"
    );
    intake.signal("HUP");

    // Assert
    eventually(Duration::from_secs(10), || async {
        (post_as(&client, &url, "second-token", "hup-0004").await == 202).then_some(())
    })
    .await
    .expect("the new source token is accepted without a restart");

    // Act: a broken file (the province twice), then SIGHUP.
    std::fs::write(
        &file,
        tenant_toml("demo", &["third-token"], 1, zalo)
            + &tenant_toml("demo", &["fourth-token"], 2, zalo),
    )
    .unwrap();
    intake.signal("HUP");
    let refused = eventually(Duration::from_secs(10), || async {
        let text = std::fs::read_to_string(&log).ok()?;
        text.lines()
            .find(|l| l.contains("Tenants file refused"))
            .map(str::to_owned)
    })
    .await
    .expect("the broken file is refused in the log");

    // Assert: refused with the reason, the tenants in force kept, still running.
    assert!(
        refused.contains("duplicate tenant id") && refused.contains("tenants.demo"),
        "{refused}"
    );
    assert!(!refused.contains("third-token") && !refused.contains("fourth-token"));
    assert!(intake.is_running(), "a broken file never stops the service");
    assert_eq!(
        post_as(&client, &url, "second-token", "hup-0005").await,
        202
    );
    assert_eq!(post_as(&client, &url, "third-token", "hup-0006").await, 401);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_province_added_to_the_tenants_file_is_served_end_to_end_without_a_restart() {
    // Arrange: the services as processes reading a tenants file with one province; the
    // sandbox (Zalo) already knows the second province's app.
    let env = TestEnv::new().await.unwrap();
    let dir = scratch("province");
    let ports = Ports::free();
    let zalo = base(ports.sandbox);
    let demo = tenant_toml("demo", &["demo-token"], 1, &zalo);
    let binh_duong = tenant_toml("binh-duong", &["bd-token"], 2, &zalo);
    let (ours, zalos) = (dir.join("tenants.toml"), dir.join("zalo-apps.toml"));
    std::fs::write(&ours, &demo).unwrap();
    std::fs::write(&zalos, demo.clone() + &binh_duong).unwrap();
    let watched = [
        ("LOA_TENANTS_FILE", ours.to_str().unwrap()),
        ("LOA_TENANTS_POLL_MS", "100"),
    ];
    let _sandbox = spawn(
        "zalo-sandbox",
        &env,
        &ports,
        &[("LOA_TENANTS_FILE", zalos.to_str().unwrap())],
    );
    let _services: Vec<Process> = ["tracker", "notifier", "intake"]
        .into_iter()
        .map(|t| spawn(t, &env, &ports, &watched))
        .collect();
    let client = reqwest::Client::new();
    let (intake, tracker, notifier) = (
        base(ports.intake),
        base(ports.tracker),
        base(ports.notifier),
    );
    wait_ready(&client, &[&zalo, &tracker, &notifier, &intake]).await;
    let mut event = receipt_event("bd-evt-1", "000.00.01.H57-261204-0001");
    event["tenant"] = "binh-duong".into();
    let post = || {
        client
            .post(format!("{intake}/v1/events"))
            .bearer_auth("bd-token")
            .json(&event)
            .send()
    };
    assert_eq!(post().await.unwrap().status(), 401, "not a province yet");

    // Act: the province is added to the file; nothing is restarted.
    std::fs::write(&ours, demo + &binh_duong).unwrap();

    // Assert: every process reloads on its own; the tracker and the notifier take the
    // province's admin token once they have.
    for (service, url) in [
        (
            "tracker",
            format!("{tracker}/v1/dossiers/000.00.01.H57-261204-0001"),
        ),
        (
            "notifier",
            format!("{notifier}/v1/deliveries?dossier_code=000.00.01.H57-261204-0001"),
        ),
    ] {
        eventually(Duration::from_secs(10), || async {
            let status = client
                .get(&url)
                .bearer_auth("binh-duong-admin")
                .send()
                .await
                .ok()?
                .status();
            (status != 401).then_some(())
        })
        .await
        .unwrap_or_else(|_| panic!("the {service} takes the new province's admin token"));
    }
    // Then intake takes its events, the tracker tracks them, the notifier sends on the
    // province's own Zalo app, and its metrics series exist.
    eventually(Duration::from_secs(10), || async {
        (post().await.ok()?.status() == 202).then_some(())
    })
    .await
    .expect("intake accepts the new province's source token");
    let sent = eventually(Duration::from_secs(30), || async {
        let messages: Vec<serde_json::Value> = client
            .get(format!("{zalo}/_sandbox/messages"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        messages
            .into_iter()
            .find(|m| m["template_data"]["dossier_code"] == "000.00.01.H57-261204-0001")
    })
    .await;
    let Ok(sent) = sent else {
        let ask = |url: String| {
            let client = client.clone();
            async move {
                let r = client.get(url).bearer_auth("binh-duong-admin").send().await;
                match r {
                    Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                    Err(e) => e.to_string(),
                }
            }
        };
        panic!(
            "the new province's citizen got no receipt on Zalo;\n tracker: {}\n notifier: {}",
            ask(format!("{tracker}/v1/dossiers/000.00.01.H57-261204-0001")).await,
            ask(format!(
                "{notifier}/v1/deliveries?dossier_code=000.00.01.H57-261204-0001"
            ))
            .await,
        );
    };
    assert_eq!(sent["app_id"], "1000000000000000002", "sent by its own app");
    let dossier = client
        .get(format!("{tracker}/v1/dossiers/000.00.01.H57-261204-0001"))
        .bearer_auth("binh-duong-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(
        dossier.status(),
        200,
        "its admin token works at the tracker"
    );
    let deliveries = client
        .get(format!(
            "{notifier}/v1/deliveries?dossier_code=000.00.01.H57-261204-0001"
        ))
        .bearer_auth("binh-duong-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(deliveries.status(), 200, "and at the notifier");
    let metrics = client
        .get(format!("{notifier}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"loa_notifier_retries_total{reason="transient",tenant="binh-duong"} 0"#),
        "the new province's series start at zero"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
