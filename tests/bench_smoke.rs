//! A short `loa bench pipeline` run: checks that the harness starts the system, pushes
//! every event through to the sandbox, cleans up and reports what issue 4 asks for. It
//! does not check the speed (a debug build on a shared machine says nothing about it).

use serde_json::Value;
use std::process::Command;

#[test]
fn loa_bench_pipeline_delivers_every_event_and_reports_the_required_fields() {
    // Arrange
    let out_dir = std::env::temp_dir().join(format!("loa-bench-smoke-{}", std::process::id()));

    // Act
    let out = Command::new(env!("CARGO_BIN_EXE_loa"))
        .args([
            "bench",
            "pipeline",
            "--events",
            "5000",
            "--json",
            "--baseline-messages",
            "5000",
            "--out-dir",
        ])
        .arg(&out_dir)
        .output()
        .expect("the loa binary runs");

    // Assert
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("one JSON object ({e}):\n{stdout}"));
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
    let files: Vec<String> = std::fs::read_dir(&out_dir)
        .expect("the report directory exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("pipeline-") && f.ends_with(".json")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|f| f.starts_with("pipeline-") && f.ends_with(".md")),
        "{files:?}"
    );
    assert!(
        files.contains(&"latest-pipeline.md".to_owned()),
        "{files:?}"
    );
    std::fs::remove_dir_all(&out_dir).unwrap();
}
