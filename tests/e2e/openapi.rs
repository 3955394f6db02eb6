//! Each service's `/openapi.json` checked by a client nobody here wrote: Schemathesis
//! generates requests from the document (valid ones and invalid ones), sends them to
//! the running service with a valid token, and checks every answer against the
//! document: a documented status, content type, headers and body, and never a 5xx.

use crate::helpers::{receipt_event, TestSystem};
use std::path::Path;

/// Runs `scripts/schemathesis` against `base` with `token`, and fails with its report
/// if any check failed. A run that found no failure but stopped on an error inside
/// Schemathesis itself (Hypothesis' source inspection now and then trips over its own
/// recursion limit) is run once more; a failing check is never retried.
async fn schemathesis(base: &str, token: &str) {
    for attempt in 1..=2 {
        let (ok, report) = run_schemathesis(base, token).await;
        if ok && report.contains("passed") {
            return;
        }
        let internal_only = !report.contains("FAILURES") && report.contains("Runtime Error");
        assert!(
            internal_only && attempt == 1,
            "Schemathesis found answers that break {base}/openapi.json:\n{report}"
        );
    }
}

async fn run_schemathesis(base: &str, token: &str) -> (bool, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = root.join("tests/e2e/schemathesis.toml");
    let output = tokio::process::Command::new(root.join("scripts/schemathesis"))
        .args([
            "--config-file",
            config.to_str().expect("a UTF-8 path"),
            "run",
            &format!("{base}/openapi.json"),
            "--url",
            base,
            "--header",
            &format!("Authorization: Bearer {token}"),
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "40",
            // One worker: with two, Hypothesis parses Python sources in two threads
            // at once, which CPython 3.11's parser does not survive ("AST
            // constructor recursion depth mismatch", a SystemError that ended runs
            // with an error of the tool, not of the API).
            "--workers",
            "1",
            "--request-timeout",
            "10",
            // Hypothesis' own checks of its generator, not of the API: drawing form
            // bodies for a path whose token must match a pattern (the rating form)
            // filters many drafts, and on a loaded machine the check aborted a run
            // that had found nothing wrong.
            "--suppress-health-check",
            "filter_too_much,too_slow",
            "--no-color",
        ])
        // Schemathesis keeps a cache in its working directory: not in the checkout.
        .current_dir(env!("CARGO_TARGET_TMPDIR"))
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .await
        .expect("scripts/schemathesis runs (python3 and PyPI on first use)");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_answers_as_its_openapi_document_says_under_schemathesis() {
    let system = TestSystem::start().await;
    // A dossier, a delivery and its history exist, so reads have something to show.
    let r = system
        .post_event(
            "demo-token",
            &receipt_event("evt-openapi-1", "OPENAPI-0001"),
        )
        .await;
    assert_eq!(r.status(), 202);
    system.settle_messages(1).await;
    let notifier = format!(
        "http://127.0.0.1:{}",
        system
            .system
            .as_ref()
            .and_then(|s| s.notifier_port)
            .expect("the notifier runs")
    );
    schemathesis(&system.intake, "demo-token").await;
    schemathesis(&system.tracker, "demo-admin").await;
    schemathesis(&notifier, "demo-admin").await;
    system.stop().await;
}
