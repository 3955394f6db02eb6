//! The supply chain: `scripts/deny` (cargo deny with `deny.toml`) passes: only
//! permissive licences, only crates.io, no duplicate version that `deny.toml` does not
//! explain, and no RustSec advisory against the tree when the advisory database is at
//! hand (the script says loudly when it is not; docs/security.md).

use std::process::Command;

#[test]
fn cargo_deny_finds_no_advisory_licence_duplicate_or_source_problem() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/scripts/deny"))
        .current_dir(root)
        .output()
        .expect("bash runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(
        out.status.code(),
        Some(127),
        "cargo-deny is missing: run scripts/ensure-tools"
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("bans ok, licenses ok, sources ok"), "{text}");
    if !text.contains("advisories ok") {
        eprintln!("{text}");
    }
}
