//! What a newcomer on a fresh clone meets: every document is reachable from the
//! README and every link in the docs leads somewhere, the scripts find the binary
//! where Cargo put it, and benchmarks leave the checkout clean.

use clap::Parser;
use loa::cli::{Cli, Command};
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The targets of the Markdown links `[text](target)` in `text`, without anchors and
/// without links to the web.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split('#').next().unwrap_or_default();
        if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
            out.push(target.to_owned());
        }
    }
    out
}

/// Every Markdown file of the project's own documentation.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    docs.sort();
    docs
}

#[test]
fn every_document_is_linked_from_the_readme() {
    // Arrange
    let linked: BTreeSet<PathBuf> = links(&read(&root().join("README.md")))
        .iter()
        .map(|l| root().join(l))
        .collect();

    // Act
    let unlinked: Vec<PathBuf> = documents()
        .into_iter()
        .filter(|d| !d.ends_with("README.md") && !linked.contains(d))
        .collect();

    // Assert
    assert!(
        unlinked.is_empty(),
        "not linked from README.md: {unlinked:?}"
    );
}

#[test]
fn every_link_in_the_documentation_leads_to_a_file_of_the_project() {
    let mut broken = Vec::new();
    for doc in documents() {
        let dir = doc.parent().unwrap();
        for link in links(&read(&doc)) {
            if !dir.join(&link).exists() {
                broken.push(format!("{}: {link}", doc.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}

#[test]
fn the_scripts_find_the_binary_under_cargo_target_dir() {
    for entry in std::fs::read_dir(root().join("scripts")).unwrap() {
        let path = entry.unwrap().path();
        let text = read(&path);
        for (at, _) in text.match_indices("target/") {
            let after = &text[at + "target/".len()..];
            if !(after.starts_with("debug/") || after.starts_with("release/")) {
                continue;
            }
            let before = &text[..at];
            assert!(
                before.ends_with("${CARGO_TARGET_DIR:-"),
                "{} names target/ without CARGO_TARGET_DIR: …{}",
                path.display(),
                &text[at.saturating_sub(30)..(at + 20).min(text.len())]
            );
        }
    }
}

#[test]
fn loa_bench_writes_its_reports_outside_the_tracked_tree_by_default() {
    // Arrange + Act
    let cli = Cli::try_parse_from(["loa", "bench", "broker"]).unwrap();
    let Command::Bench { output, .. } = cli.command else {
        panic!("loa bench parses as the bench command");
    };

    // Assert: under target/, which git ignores, and nothing tracked under bench/.
    assert!(output.out_dir.starts_with("target"), "{:?}", output.out_dir);
    let ignored = std::process::Command::new("git")
        .args(["check-ignore", "-q"])
        .arg(output.out_dir.join("pipeline-20261128T193700Z.md"))
        .current_dir(root())
        .status()
        .expect("git runs");
    assert!(ignored.success(), "git ignores the reports");
    let tracked = std::process::Command::new("git")
        .args(["ls-files", "bench"])
        .current_dir(root())
        .output()
        .expect("git runs");
    assert!(
        tracked.stdout.is_empty(),
        "no report is tracked: {}",
        String::from_utf8_lossy(&tracked.stdout)
    );
}

#[test]
fn the_performance_page_reads_as_results_and_method() {
    let text = read(&root().join("docs/performance.md")).to_lowercase();
    for phrase in ["this round", "issue ", "earlier round", "before this"] {
        assert!(
            !text.contains(phrase),
            "docs/performance.md says {phrase:?}"
        );
    }
    for heading in ["## method", "## results", "### reproduce"] {
        assert!(
            text.contains(heading),
            "docs/performance.md lacks {heading:?}"
        );
    }
}
