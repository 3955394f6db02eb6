//! The shipped ops assets are checked by the real Prometheus tools and against the
//! metrics the services really serve:
//!
//! - `deploy/prometheus/alerts.yml` passes `promtool check rules` and its unit tests
//!   (`alerts_test.yml`, `promtool test rules`);
//! - `deploy/prometheus/prometheus.yml` passes `promtool check config`;
//! - `deploy/grafana/loa-dashboard.json` is a dashboard whose every query is valid
//!   PromQL (checked by promtool as recording rules);
//! - each service, started as its own `loa run <target>` process, serves from its
//!   start exactly the metrics `docs/metrics.md` lists for it (names, types, labels),
//!   every metric the dashboard and the alerts use among them, and passes
//!   `promtool check metrics`;
//! - a real Prometheus (Debian's `prometheus` binary on a free port, never the
//!   packaged service) scrapes every service, evaluates every alert rule without an
//!   error and without a false alarm, and sees a delivery made in the test.
//!
//! promtool and prometheus come with Debian's `prometheus` package (`scripts/ensure-tools`).

#[allow(dead_code)]
#[path = "e2e/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "e2e/helpers_process.rs"]
mod helpers_process;

use helpers::{receipt_event, settle_messages, wait_ready};
use helpers_process::{base, free_port, spawn, Ports, Process};
use loa_platform::testing::{eventually, TestEnv};
use serde_json::Value;
use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
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
fn every_alert_has_a_runbook_section_saying_what_it_means_how_to_confirm_it_and_what_to_do() {
    let alerts = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    let runbook = std::fs::read_to_string(root().join("docs/runbook.md")).unwrap();
    let names: Vec<&str> = alerts
        .split("- alert: ")
        .skip(1)
        .map(|a| a.lines().next().unwrap().trim())
        .collect();
    assert!(names.len() >= 15, "{names:?}");
    for name in names {
        let heading = format!("### {name}\n");
        let section = runbook
            .split_once(&heading)
            .unwrap_or_else(|| panic!("docs/runbook.md has no section {heading:?}"))
            .1;
        let section = section.split("\n### ").next().unwrap();
        let section = section.split("\n## ").next().unwrap();
        assert!(section.contains("**Means.**"), "{name}: what it means");
        assert!(
            section.contains("**Confirm") && section.contains("**Do.**")
                || section.contains("**Confirm and do.**"),
            "{name}: how to confirm it and what to do"
        );
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

/// A metric family as served or as documented: its type and label names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

/// The label names of one sample line (`name{a="x",b="y"} 1`), without `le`.
fn sample_labels(line: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    let Some(open) = line.find('{') else {
        return labels;
    };
    let mut rest = &line[open + 1..];
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].trim_start_matches(',').trim();
        if name != "le" {
            labels.insert(name.to_owned());
        }
        // Skip the quoted value, honouring escaped quotes.
        let value = &rest[eq + 2..];
        let mut end = 0;
        let bytes = value.as_bytes();
        while end < bytes.len() && !(bytes[end] == b'"' && (end == 0 || bytes[end - 1] != b'\\')) {
            end += 1;
        }
        rest = &value[(end + 1).min(value.len())..];
        if rest.starts_with('}') {
            break;
        }
    }
    labels
}

/// The `loa_…` families of an exposition, with their types and label names.
fn families(exposition: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            out.insert(
                name.to_owned(),
                Family {
                    kind: kind.to_owned(),
                    labels: BTreeSet::new(),
                },
            );
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let sample = &line[..line.find(['{', ' ']).unwrap_or(line.len())];
            let family = ["_bucket", "_sum", "_count", ""]
                .iter()
                .filter_map(|suffix| sample.strip_suffix(suffix))
                .find(|f| out.contains_key(*f))
                .map(str::to_owned);
            if let Some(f) = family {
                out.get_mut(&f).unwrap().labels.extend(sample_labels(line));
            }
        }
    }
    out.retain(|name, _| name.starts_with("loa_"));
    out
}

/// `docs/metrics.md`'s catalogue: each metric with its type and labels, by the
/// `loa run` target that serves it.
fn catalogue() -> BTreeMap<&'static str, BTreeMap<String, Family>> {
    let text = std::fs::read_to_string(root().join("docs/metrics.md")).expect("docs/metrics.md");
    let mut by_service: BTreeMap<&'static str, BTreeMap<String, Family>> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `loa_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (name, kind, labels, served_by) = (cells[1], cells[2], cells[3], cells[4]);
        let family = Family {
            kind: kind.to_owned(),
            labels: labels
                .split(',')
                .map(|l| l.trim().trim_matches('`').to_owned())
                .filter(|l| !l.is_empty())
                .collect(),
        };
        for service in served_by.split(',').map(str::trim) {
            let service = SERVICES
                .iter()
                .copied()
                .find(|s| *s == service)
                .unwrap_or_else(|| panic!("docs/metrics.md: unknown service {service:?}"));
            by_service
                .entry(service)
                .or_default()
                .insert(name.trim_matches('`').to_owned(), family.clone());
        }
    }
    by_service
}

/// The `loa run` targets a deployment runs, each its own process here.
const SERVICES: [&str; 5] = ["intake", "tracker", "notifier", "console", "zalo-sandbox"];

/// The five services as separate `loa run <target>` processes on one test database
/// and vhost, each on a free port, as production runs them.
struct Services {
    _processes: Vec<Process>,
    bases: BTreeMap<&'static str, String>,
    client: reqwest::Client,
}

impl Services {
    async fn start(env: &TestEnv) -> Self {
        let ports = Ports::free();
        let console = free_port();
        let console_bind = format!("127.0.0.1:{console}");
        let (tracker_url, notifier_url) = (base(ports.tracker), base(ports.notifier));
        let settings = [
            (
                "LOA_SERVICE_TOKEN",
                "ops-test-service-token-0123456789abcdef",
            ),
            ("LOA_CONSOLE__BIND", console_bind.as_str()),
            ("LOA_CONSOLE__TRACKER_URL", tracker_url.as_str()),
            ("LOA_CONSOLE__NOTIFIER_URL", notifier_url.as_str()),
        ];
        let processes = SERVICES
            .iter()
            .map(|t| spawn(t, env, &ports, &settings))
            .collect();
        let bases: BTreeMap<&'static str, String> = SERVICES
            .into_iter()
            .zip([
                ports.intake,
                ports.tracker,
                ports.notifier,
                console,
                ports.sandbox,
            ])
            .map(|(s, p)| (s, base(p)))
            .collect();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let all: Vec<&str> = bases.values().map(String::as_str).collect();
        wait_ready(&client, &all).await;
        Self {
            _processes: processes,
            bases,
            client,
        }
    }

    async fn scrape(&self, service: &str) -> String {
        self.client
            .get(format!("{}/metrics", self.bases[service]))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn each_service_serves_from_its_start_exactly_the_metrics_docs_metrics_md_lists_for_it_and_all_the_dashboard_and_alerts_use(
) {
    // Arrange
    let documented = catalogue();
    let mut needed = BTreeSet::new();
    for expr in dashboard_exprs(&dashboard()) {
        needed.extend(metric_names(&expr));
    }
    let alerts = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    needed.extend(metric_names(&alerts));
    assert!(needed.len() >= 20, "{needed:?}");
    let env = TestEnv::new().await.unwrap();

    // Act: no traffic at all, only start-up (the queue gauges' first sample is taken
    // as the consumers connect).
    let services = Services::start(&env).await;
    let served = |service: &'static str| {
        let services = &services;
        async move { families(&services.scrape(service).await) }
    };

    // Assert
    let mut served_anywhere = BTreeSet::new();
    for service in SERVICES {
        let want = documented.get(service).cloned().unwrap_or_default();
        let in_step = eventually(Duration::from_secs(10), || async {
            (served(service).await == want).then_some(())
        })
        .await;
        let got = served(service).await;
        if in_step.is_err() {
            let extra: Vec<_> = got
                .iter()
                .filter(|(n, f)| want.get(*n) != Some(f))
                .collect();
            let missing: Vec<_> = want
                .iter()
                .filter(|(n, f)| got.get(*n) != Some(f))
                .collect();
            panic!(
                "{service} is not what docs/metrics.md says:\n served, not as documented: {extra:#?}\n documented, not as served: {missing:#?}"
            );
        }
        let text = services.scrape(service).await;
        served_anywhere.extend(served_names(&text));
        promtool(&["check", "metrics"], Some(&text));
    }
    let missing: Vec<&String> = needed
        .iter()
        .filter(|n| !served_anywhere.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "used by the dashboard or alerts, not served from the start: {missing:?}"
    );
}

/// A Prometheus server of the test's own: Debian's binary on a free port, with a
/// scratch data directory; killed on drop.
struct Prometheus {
    child: Child,
    base: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts it scraping every service each second, with the shipped alert rules.
    fn start(services: &Services) -> Self {
        let dir = scratch_dir(&format!("prometheus-{}", free_port()));
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n",
        );
        config.push_str(&format!(
            "  - {}\nscrape_configs:\n",
            root().join("deploy/prometheus/alerts.yml").display()
        ));
        for (service, base) in &services.bases {
            config.push_str(&format!(
                "  - job_name: loa-{service}\n    static_configs:\n      - targets: [\"{}\"]\n",
                base.trim_start_matches("http://")
            ));
        }
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        promtool(&["check", "config", config_path.to_str().unwrap()], None);
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus is installed (scripts/ensure-tools)");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// `GET /api/v1/<path>`'s `data`, if Prometheus answered with success.
    async fn api(
        &self,
        client: &reqwest::Client,
        path: &str,
        query: &[(&str, &str)],
    ) -> Option<Value> {
        let body: Value = client
            .get(format!("{}/api/v1/{path}", self.base))
            .query(query)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (body["status"] == "success").then(|| body["data"].clone())
    }

    /// The value of an instant query returning one series.
    async fn value(&self, client: &reqwest::Client, query: &str) -> Option<f64> {
        let data = self.api(client, "query", &[("query", query)]).await?;
        data["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

#[tokio::test]
async fn a_real_prometheus_scrapes_every_service_evaluates_every_alert_and_sees_a_delivery() {
    // Arrange
    let env = TestEnv::new().await.unwrap();
    let services = Services::start(&env).await;
    let prometheus = Prometheus::start(&services);
    let client = &services.client;

    // Act + Assert: every target is up.
    let targets = eventually(Duration::from_secs(30), || async {
        let data = prometheus.api(client, "targets", &[]).await?;
        let active = data["activeTargets"].as_array()?.clone();
        let up = active.iter().filter(|t| t["health"] == "up").count();
        (active.len() == SERVICES.len() && up == active.len()).then_some(active)
    })
    .await
    .expect("Prometheus scrapes all five services and finds them up");
    let jobs: BTreeSet<&str> = targets
        .iter()
        .filter_map(|t| t["labels"]["job"].as_str())
        .collect();
    assert_eq!(jobs.len(), SERVICES.len(), "{jobs:?}");

    // Act: one dossier event through intake, delivered to the sandbox.
    let resp = client
        .post(format!("{}/v1/events", services.bases["intake"]))
        .bearer_auth("demo-token")
        .json(&receipt_event("prom-1", "000.00.06.H56-261128-0001"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    settle_messages(client, &services.bases["zalo-sandbox"], 1).await;

    // Assert: Prometheus saw it, counted from zero (the series existed before).
    let sent =
        r#"sum(loa_notifier_deliveries_total{tenant="demo", kind="receipt", outcome="sent"})"#;
    eventually(Duration::from_secs(30), || async {
        (prometheus.value(client, sent).await? >= 1.0).then_some(())
    })
    .await
    .expect("loa_notifier_deliveries_total counts the delivery in Prometheus");
    let increase = r#"sum(increase(loa_notifier_deliveries_total{outcome="sent"}[1m]))"#;
    eventually(Duration::from_secs(10), || async {
        (prometheus.value(client, increase).await? > 0.0).then_some(())
    })
    .await
    .expect("the first delivery shows as an increase, not as a series born at 1");

    // Every alert rule evaluates without an error, and a healthy system raises none.
    let rules = eventually(Duration::from_secs(20), || async {
        let data = prometheus.api(client, "rules", &[]).await?;
        let rules: Vec<Value> = data["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        rules
            .iter()
            .all(|r| r["health"] == "ok" && r["lastEvaluation"] != "0001-01-01T00:00:00Z")
            .then_some(rules)
    })
    .await
    .expect("every alert rule is evaluated without an error");
    assert!(rules.len() >= 15, "{} rules loaded", rules.len());
    let alerts = prometheus.api(client, "alerts", &[]).await.unwrap();
    assert_eq!(
        alerts["alerts"].as_array().map(Vec::len),
        Some(0),
        "no alert pending or firing on a healthy system: {alerts}"
    );
}

#[test]
fn metric_names_families_and_labels_are_read_from_promql_and_expositions() {
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
    let served = families(
        "# TYPE loa_h histogram\nloa_h_bucket{api=\"zns\",le=\"0.1\"} 0\nloa_h_sum{api=\"zns\"} 0\n\
         # TYPE loa_g gauge\nloa_g{tenant=\"a \\\"b\\\"\",queue=\"q\"} NaN\n# TYPE other counter\nother 1\n",
    );
    assert_eq!(
        served,
        BTreeMap::from([
            (
                "loa_g".to_owned(),
                Family {
                    kind: "gauge".into(),
                    labels: ["queue", "tenant"].map(String::from).into()
                }
            ),
            (
                "loa_h".to_owned(),
                Family {
                    kind: "histogram".into(),
                    labels: ["api"].map(String::from).into()
                }
            ),
        ])
    );
}
