//! One procedure code, one name, from the national catalogue, everywhere Loa shows
//! one: the README, the demo, the benchmarks and every test's events. A newcomer who
//! reads `1.001193` in one place and `1.000894` for the same procedure in another
//! stops trusting the rest.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// The national catalogue's names for the codes Loa's examples use (Cơ sở dữ liệu
/// quốc gia về thủ tục hành chính).
const CATALOGUE: [(&str, &str); 2] = [
    ("1.001193", "Đăng ký khai sinh"),
    ("1.000894", "Đăng ký kết hôn"),
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("rs" | "md" | "json" | "toml" | "sh")
        ) {
            out.push(path);
        }
    }
}

/// Every `1.234567` code followed closely by a name (`"name": "…"` in JSON,
/// `name: "…"` in Rust) in `text`.
fn pairs(text: &str) -> Vec<(String, String)> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    for (i, window) in bytes.windows(10).enumerate() {
        let code = &window[1..9];
        let is_code = window[0] == b'"'
            && window[9] == b'"'
            && code[0].is_ascii_digit()
            && code[1] == b'.'
            && code[2..].iter().all(u8::is_ascii_digit);
        if !is_code {
            continue;
        }
        let after = &text[i + 10..];
        let near = &after[..after
            .char_indices()
            .map(|(j, _)| j)
            .find(|&j| j >= 120)
            .unwrap_or(after.len())];
        let Some(at) = near.find("name") else {
            continue;
        };
        let rest = &near[at + 4..];
        let Some(colon) = rest.find(':') else {
            continue;
        };
        let rest = &rest[colon..];
        let Some(open) = rest.find('"') else { continue };
        let Some(len) = rest[open + 1..].find('"') else {
            continue;
        };
        let name = &rest[open + 1..open + 1 + len];
        found.push((String::from_utf8_lossy(code).into_owned(), name.to_owned()));
    }
    found
}

#[test]
fn every_procedure_code_in_the_repository_has_one_name_and_the_catalogues() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    for dir in [
        "README.md",
        "src",
        "services",
        "shared",
        "tests",
        "docs",
        "deploy",
    ] {
        let path = root.join(dir);
        if path.is_file() {
            all.push(path);
        } else if path.is_dir() {
            files(&path, &mut all);
        }
    }
    let mut names: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for path in &all {
        if path.ends_with("tests/procedure_codes.rs") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let shown = path.strip_prefix(root).unwrap().display().to_string();
        for (code, name) in pairs(&text) {
            names.entry(code).or_default().insert((name, shown.clone()));
        }
    }
    assert!(
        names.contains_key("1.001193") && names.contains_key("1.000894"),
        "the scan finds the examples' codes: {names:?}"
    );
    for (code, uses) in &names {
        let distinct: BTreeSet<&str> = uses.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(distinct.len(), 1, "{code} has several names: {uses:?}");
        if let Some((_, official)) = CATALOGUE.iter().find(|(c, _)| c == code) {
            assert_eq!(distinct.first(), Some(official), "{code}: {uses:?}");
        }
    }
}

#[test]
fn the_scan_reads_json_and_rust_forms() {
    let json = r#"{"procedure": {"code": "1.001193", "name": "Đăng ký khai sinh"}}"#;
    let rust =
        "Procedure {\n    code: \"1.000894\".into(),\n    name: \"Đăng ký kết hôn\".into(),\n}";
    assert_eq!(
        pairs(json),
        [("1.001193".to_owned(), "Đăng ký khai sinh".to_owned())]
    );
    assert_eq!(
        pairs(rust),
        [("1.000894".to_owned(), "Đăng ký kết hôn".to_owned())]
    );
}
