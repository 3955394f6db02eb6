//! The shipped ops assets are checked by the real Prometheus tools and against the
//! metrics the services really serve:
//!
//! - `deploy/prometheus/alerts.yml` passes `promtool check rules` and its unit tests
//!   (`alerts_test.yml`, `promtool test rules`);
//! - `deploy/prometheus/prometheus.yml` passes `promtool check config`;
//! - `deploy/grafana/loa-dashboard.json` is a dashboard whose every query is valid
//!   PromQL (checked by promtool as recording rules);
//! - every metric the dashboard and the alerts use is served on `/metrics` by a
//!   running system once some traffic (and a few injected faults) went through;
//! - every service's `/metrics` passes `promtool check metrics`.
//!
//! promtool comes with Debian's `prometheus` package (`scripts/ensure-tools`).

#[allow(dead_code)]
#[path = "e2e/helpers.rs"]
mod helpers;

use helpers::{receipt_event, test_settings, TestSystem};
use loa_platform::{amqp::topology, testing::TestEnv};
use serde_json::{json, Value};
use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs promtool with `args` (and `stdin`, if any) and fails with its output.
fn promtool(args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(root())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/ensure-tools)");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every `loa_…` metric name in a PromQL expression or a rules file.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while i < bytes.len() {
        if is_ident(bytes[i]) {
            let start = i;
            while i < bytes.len() && is_ident(bytes[i]) {
                i += 1;
            }
            let word = &text[start..i];
            if word.starts_with("loa_") && !word.ends_with('_') {
                names.insert(word.to_owned());
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Sample names (and family names) in a Prometheus text exposition.
fn served_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(name) = rest.split_whitespace().next() {
                names.insert(name.to_owned());
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(root().join("deploy/grafana/loa-dashboard.json"))
        .expect("the dashboard exists");
    serde_json::from_str(&text).expect("the dashboard is valid JSON")
}

/// Every PromQL expression of the dashboard's panels (rows may nest panels).
fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    fn walk(panels: &Value, out: &mut Vec<String>) {
        for panel in panels.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("every target has an expr");
                out.push(expr.to_owned());
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loa-ops-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_alert_rules_are_valid_and_pass_their_unit_tests() {
    promtool(&["check", "rules", "deploy/prometheus/alerts.yml"], None);
    promtool(
        &["test", "rules", "deploy/prometheus/alerts_test.yml"],
        None,
    );
}

#[test]
fn the_prometheus_config_is_valid() {
    promtool(
        &["check", "config", "deploy/prometheus/prometheus.yml"],
        None,
    );
}

#[test]
fn every_alert_has_a_duration_a_severity_and_an_english_summary_and_description() {
    let text = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    let alerts: Vec<&str> = text.split("- alert: ").skip(1).collect();
    assert!(alerts.len() >= 10, "{} alerts", alerts.len());
    for alert in alerts {
        let name = alert.lines().next().unwrap();
        for needed in ["for: ", "severity: ", "summary: ", "description: "] {
            assert!(alert.contains(needed), "{name} has no `{needed}`");
        }
        assert!(alert.is_ascii(), "{name}: annotations are plain English");
    }
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    // Arrange: each query as a recording rule, Grafana's variables replaced.
    let dashboard = dashboard();
    assert!(dashboard["title"].is_string());
    assert!(dashboard["uid"].is_string());
    let exprs = dashboard_exprs(&dashboard);
    assert!(exprs.len() >= 10, "{} queries", exprs.len());
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$tenant", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let path = scratch_dir("dashboard").join("dashboard_rules.yml");
    std::fs::write(&path, rules).unwrap();

    // Act + Assert
    promtool(&["check", "rules", path.to_str().unwrap()], None);
}

/// Starts a system, sends traffic that makes every metric appear (one event, a
/// retry, an ambiguous send, a token refresh failure, a dead letter and its replay)
/// and returns the system with the base URLs of its four services.
async fn system_with_traffic() -> (TestSystem, Vec<String>) {
    let env = TestEnv::new().await.unwrap();
    let mut settings = test_settings(&env);
    settings.services.notifier.http_timeout_ms = 1_000;
    settings.services.notifier.retry_delays_ms = vec![200];
    let sys = TestSystem::start_with(env, settings).await;
    let notifier = format!(
        "http://127.0.0.1:{}",
        sys.system.as_ref().unwrap().notifier_port.unwrap()
    );
    let bases = vec![
        sys.intake.clone(),
        sys.tracker.clone(),
        notifier.clone(),
        sys.sandbox.clone(),
    ];
    let fault = |body: Value| {
        let (client, sandbox) = (sys.client.clone(), sys.sandbox.clone());
        async move {
            let r = client
                .post(format!("{sandbox}/_sandbox/faults"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "fault {body} refused");
        }
    };

    // One event all the way through.
    assert_eq!(
        sys.post_event("demo-token", &receipt_event("ops-1", "OPS-1"))
            .await
            .status(),
        202
    );
    sys.settle_messages(1).await;
    // A transient Zalo error: one retry.
    fault(json!({"api": "zns", "error_code": -100, "rate": 1.0, "count": 1})).await;
    sys.post_event("demo-token", &receipt_event("ops-2", "OPS-2"))
        .await;
    sys.settle_messages(2).await;
    // A send that hangs past the notifier's time-out after Zalo accepted it.
    fault(json!({"api": "zns", "rate": 0.0, "hang_rate": 1.0, "count": 1})).await;
    sys.post_event("demo-token", &receipt_event("ops-3", "OPS-3"))
        .await;
    sys.settle_messages(3).await;
    // Zalo refuses the access token, and the refresh fails (OAuth answers 503).
    fault(json!({"api": "zns", "error_code": -124, "rate": 1.0, "count": 1})).await;
    fault(json!({"api": "oauth", "rate": 1.0, "http_status": 503, "count": 1})).await;
    sys.post_event("demo-token", &receipt_event("ops-4", "OPS-4"))
        .await;
    // A dead letter (an ingress message with demo's source token and a status intake
    // refuses: a dead letter belongs to the tenant whose token intake verified), replayed.
    let publisher = loa_platform::amqp::Publisher::new(sys.env.amqp_url.clone(), "ops-test");
    let mut refused = receipt_event("ops-5", "OPS-5");
    refused["status"] = json!(42);
    publisher
        .publish(&loa_platform::amqp::OutgoingMessage {
            exchange: topology::EX_INGRESS.into(),
            routing_key: "upstream.demo".into(),
            body: serde_json::to_vec(&refused).unwrap(),
            message_id: "ops-5".into(),
            headers: vec![("x-loa-token".into(), "demo-token".into())],
        })
        .await
        .unwrap();
    let id = loa_platform::testing::eventually(Duration::from_secs(20), || async {
        let page: Value = sys
            .client
            .get(format!("{notifier}/v1/dead-letters"))
            .bearer_auth("demo-admin")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        page["dead_letters"][0]["id"].as_i64()
    })
    .await
    .expect("the dead letter is stored");
    sys.client
        .post(format!("{notifier}/v1/dead-letters/replay"))
        .bearer_auth("demo-admin")
        .json(&json!({"ids": [id]}))
        .send()
        .await
        .unwrap();
    (sys, bases)
}

async fn scrape(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_alerts_use_is_served_and_every_service_passes_promtool_check_metrics(
) {
    // Arrange
    let mut needed = BTreeSet::new();
    for expr in dashboard_exprs(&dashboard()) {
        needed.extend(metric_names(&expr));
    }
    let alerts = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    needed.extend(metric_names(&alerts));
    assert!(needed.len() >= 15, "{needed:?}");

    // Act
    let (sys, bases) = system_with_traffic().await;

    // Assert: the series appear (the last ones may take the gauges' next refresh).
    let missing = loa_platform::testing::eventually(Duration::from_secs(30), || async {
        let served = served_names(&scrape(&sys.client, &bases[2]).await);
        let missing: Vec<&String> = needed.iter().filter(|n| !served.contains(*n)).collect();
        missing.is_empty().then_some(())
    })
    .await;
    if missing.is_err() {
        let served = served_names(&scrape(&sys.client, &bases[2]).await);
        let missing: Vec<&String> = needed.iter().filter(|n| !served.contains(*n)).collect();
        panic!("used by the dashboard or alerts but not served: {missing:?}");
    }
    for base in &bases {
        let text = scrape(&sys.client, base).await;
        assert!(text.contains("# TYPE loa_"), "{base} serves Loa metrics");
        promtool(&["check", "metrics"], Some(&text));
    }
    // Not stopped gracefully: the sandbox still holds the hung request for 30 s.
    drop(sys);
}

#[test]
fn metric_names_are_read_from_promql_and_expositions() {
    assert_eq!(
        metric_names(
            r#"sum by (le) (rate(loa_a_bucket{tenant=~"$tenant", job=~"loa-.*"}[5m])) / loa_b"#
        ),
        ["loa_a_bucket", "loa_b"].map(String::from).into()
    );
    assert_eq!(
        served_names("# HELP loa_c x\n# TYPE loa_c counter\nloa_c{a=\"b\"} 1\nloa_d 2\n"),
        ["loa_c", "loa_d"].map(String::from).into()
    );
}
