//! Short `loa bench` runs: each checks that the harness starts the system, pushes its
//! load through to the sandbox, cleans up and reports what its issue asks for
//! (`pipeline`: issue 4; `fanout`: issue 10). They do not check the speed (a debug
//! build on a shared machine says nothing about it).

use serde_json::Value;
use std::{path::Path, process::Command};

#[test]
fn loa_bench_pipeline_delivers_every_event_and_reports_the_required_fields() {
    // Arrange
    let out_dir = std::env::temp_dir().join(format!("loa-bench-smoke-{}", std::process::id()));

    // Act
    let report = bench(
        &[
            "pipeline",
            "--events",
            "5000",
            "--baseline-messages",
            "5000",
        ],
        &out_dir,
    );

    // Assert
    assert_eq!(report["events"], 5000, "{report}");
    assert_eq!(report["delivered"], 5000, "{report}");
    for field in ["events_per_second", "baseline_messages_per_second", "ratio"] {
        assert!(
            report[field].as_f64().is_some_and(|v| v > 0.0),
            "{field}: {report}"
        );
    }
    for p in ["p50", "p95", "p99"] {
        assert!(
            report["latency_ms"][p].as_f64().is_some_and(|v| v >= 0.0),
            "latency_ms.{p}: {report}"
        );
    }
    for field in ["peak_rss_mb", "cpu_seconds_per_1000_events"] {
        let per_service = report[field]
            .as_object()
            .unwrap_or_else(|| panic!("{field}: {report}"));
        assert!(
            per_service
                .get("all")
                .and_then(Value::as_f64)
                .is_some_and(|v| v > 0.0),
            "{field}: {report}"
        );
    }
    assert_reports_written(&out_dir, "pipeline");
    std::fs::remove_dir_all(&out_dir).unwrap();
}

/// Runs `loa bench <args> --json --out-dir <dir>` and returns its JSON report.
fn bench(args: &[&str], out_dir: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_loa"))
        .arg("bench")
        .args(args)
        .args(["--json", "--out-dir"])
        .arg(out_dir)
        .output()
        .expect("the loa binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("one JSON object ({e}):\n{stdout}"))
}

/// The JSON and Markdown reports of `name` and its `latest-` copy are in `out_dir`.
fn assert_reports_written(out_dir: &Path, name: &str) {
    let files: Vec<String> = std::fs::read_dir(out_dir)
        .expect("the report directory exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for ext in [".json", ".md"] {
        assert!(
            files
                .iter()
                .any(|f| f.starts_with(&format!("{name}-")) && f.ends_with(ext)),
            "{files:?}"
        );
    }
    assert!(files.contains(&format!("latest-{name}.md")), "{files:?}");
}

#[test]
fn loa_bench_fanout_imports_and_enqueues_5000_recipients_each_exactly_once_and_reports_every_figure(
) {
    // Arrange
    let out_dir =
        std::env::temp_dir().join(format!("loa-bench-fanout-smoke-{}", std::process::id()));

    // Act: the broadcast is also drained, so each recipient's delivery can be counted.
    let report = bench(
        &[
            "fanout",
            "--recipients",
            "5000",
            "--baseline-messages",
            "5000",
            "--drain",
        ],
        &out_dir,
    );

    // Assert: every recipient imported, enqueued, sent and received exactly once.
    assert_eq!(report["recipients"], 5000, "{report}");
    assert_eq!(report["import"]["imported"], 5000, "{report}");
    assert_eq!(report["import"]["rejected"], 0, "{report}");
    assert_eq!(report["fanout"]["audience"], 5000, "{report}");
    assert_eq!(report["fanout"]["queued"], 5000, "{report}");
    let drain = &report["drain"];
    assert_eq!(drain["completed"], true, "{report}");
    for field in [
        "deliveries",
        "distinct_recipients",
        "sent",
        "sandbox_accepted",
        "sandbox_distinct",
    ] {
        assert_eq!(drain[field], 5000, "drain.{field}: {report}");
    }
    for field in [
        "import_lines_per_second",
        "enqueued_per_second",
        "notifier_peak_rss_mb",
        "baseline_messages_per_second",
        "baseline_copy_rows_per_second",
        "enqueue_ratio",
        "import_ratio",
    ] {
        assert!(
            report[field].as_f64().is_some_and(|v| v > 0.0),
            "{field}: {report}"
        );
    }
    let goals = report["goals"].as_array().expect("goals");
    assert_eq!(goals.len(), 3, "{report}");
    assert_reports_written(&out_dir, "fanout");
    std::fs::remove_dir_all(&out_dir).unwrap();
}
