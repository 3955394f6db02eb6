//! One procedure code, one name, from the national catalogue, everywhere Loa shows
//! one: the README, the demo, the benchmarks, the docs and every test's events. A
//! newcomer who reads `1.001022` beside "Đăng ký khai tử" in one place and "Đăng ký
//! nhận cha, mẹ, con" in the catalogue stops trusting the rest.
//!
//! Every code/name pair the scan finds, in any of the forms Loa writes them (JSON
//! `"code": …, "name": …`, a Rust struct's `code: …, name: …`, a Rust tuple
//! `("…", "…")`), must be one of [`CATALOGUE`]'s verified pairs, and every code
//! written in quotes must be in it: a new example code needs its catalogue name
//! checked and added here first.

use std::path::{Path, PathBuf};

/// The verified pairs: each code as the national database of administrative
/// procedures (Cơ sở dữ liệu quốc gia về thủ tục hành chính, csdl.dichvucong.gov.vn)
/// names it, checked against provinces' public-service portals that publish the
/// national code with the procedure (December 2026).
const CATALOGUE: [(&str, &str); 5] = [
    ("1.001193", "Đăng ký khai sinh"),
    ("1.000894", "Đăng ký kết hôn"),
    ("1.000656", "Đăng ký khai tử"),
    ("1.001022", "Đăng ký nhận cha, mẹ, con"),
    // A Land Law 2024 procedure, as Bắc Ninh's portal publishes it
    // (`maThuTucHanhChinh=1.013831`; another province lists `1.013831.H19`). The
    // demo's land dossier used `1.003003` before, which no published list pairs with
    // a land registration.
    (
        "1.013831",
        "Đăng ký biến động quyền sử dụng đất, quyền sở hữu tài sản gắn liền với đất \
         trong các trường hợp chuyển nhượng, thừa kế, tặng cho, góp vốn bằng quyền sử \
         dụng đất, quyền sở hữu tài sản gắn liền với đất; cho thuê, cho thuê lại quyền \
         sử dụng đất",
    ),
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
            Some("rs" | "md" | "json" | "toml" | "sh" | "yaml" | "yml" | "txt")
        ) {
            out.push(path);
        }
    }
}

/// Whether `w` (10 bytes) is a quoted code: `"1.234567"`.
fn is_quoted_code(w: &[u8]) -> bool {
    w[0] == b'"'
        && w[9] == b'"'
        && w[1].is_ascii_digit()
        && w[2] == b'.'
        && w[3..9].iter().all(u8::is_ascii_digit)
}

/// Every quoted `"1.234567"` code in `text`.
fn codes(text: &str) -> Vec<String> {
    text.as_bytes()
        .windows(10)
        .filter(|w| is_quoted_code(w))
        .map(|w| String::from_utf8_lossy(&w[1..9]).into_owned())
        .collect()
}

/// The quoted string starting at the first `"` of `rest`, unescaping `\"` and joining
/// Rust's `\` line continuations, so a long name split over lines reads as one.
fn quoted(rest: &str) -> Option<String> {
    let open = rest.find('"')?;
    let mut out = String::new();
    let mut chars = rest[open + 1..].chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                '\n' => {
                    while chars.peek().is_some_and(|c| c.is_whitespace()) {
                        chars.next();
                    }
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// Every code followed closely by its name in `text`: `"name": "…"` in JSON, `name:
/// "…"` in Rust, or the next string of a tuple `("1.234567", "…")`.
fn pairs(text: &str) -> Vec<(String, String)> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    for (i, window) in bytes.windows(10).enumerate() {
        if !is_quoted_code(window) {
            continue;
        }
        let code = String::from_utf8_lossy(&window[1..9]).into_owned();
        let after = &text[i + 10..];
        if text[..i].trim_end().ends_with('(') {
            if let Some(name) = after.trim_start().strip_prefix(',').and_then(quoted) {
                found.push((code, name));
            }
            continue;
        }
        let near = &after[..after
            .char_indices()
            .map(|(j, _)| j)
            .find(|&j| j >= 120)
            .unwrap_or(after.len())];
        let Some(at) = near.find("name") else {
            continue;
        };
        let rest = &after[at + 4..];
        let Some(colon) = rest.find(':') else {
            continue;
        };
        // Only a literal: a name held in a constant is read where the constant is.
        let value = rest[colon + 1..].trim_start();
        if value.starts_with('"') {
            if let Some(name) = quoted(value) {
                found.push((code, name));
            }
        }
    }
    found
}

#[test]
fn every_procedure_code_in_the_repository_is_paired_with_its_catalogue_name() {
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
        "scripts",
    ] {
        let path = root.join(dir);
        if path.is_file() {
            all.push(path);
        } else if path.is_dir() {
            files(&path, &mut all);
        }
    }
    let mut wrong = Vec::new();
    let mut seen = 0;
    for path in &all {
        if path.ends_with("tests/procedure_codes.rs") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let shown = path.strip_prefix(root).unwrap().display().to_string();
        for code in codes(&text) {
            if !CATALOGUE.iter().any(|(c, _)| *c == code) {
                wrong.push(format!("{shown}: {code} is not in the verified table"));
            }
        }
        for (code, name) in pairs(&text) {
            seen += 1;
            if !CATALOGUE.contains(&(code.as_str(), name.as_str())) {
                let official = CATALOGUE.iter().find(|(c, _)| *c == code).map(|p| p.1);
                wrong.push(format!(
                    "{shown}: {code} is named {name:?}, the catalogue says {official:?}"
                ));
            }
        }
    }
    assert!(seen > 10, "the scan finds the examples' pairs ({seen})");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_scan_reads_json_rust_and_tuple_forms() {
    let json = r#"{"procedure": {"code": "1.001193", "name": "Đăng ký khai sinh"}}"#;
    let rust =
        "Procedure {\n    code: \"1.000894\".into(),\n    name: \"Đăng ký kết hôn\".into(),\n}";
    let tuple = "const P: [(&str, &str); 1] = [(\"1.001022\", \"Đăng ký khai tử\")];";
    let split = "(\n    \"1.013831\",\n    \"Đăng ký biến động \\\n     quyền sử dụng đất\",\n)";
    assert_eq!(
        pairs(json),
        [("1.001193".to_owned(), "Đăng ký khai sinh".to_owned())]
    );
    assert_eq!(
        pairs(rust),
        [("1.000894".to_owned(), "Đăng ký kết hôn".to_owned())]
    );
    assert_eq!(
        pairs(tuple),
        [("1.001022".to_owned(), "Đăng ký khai tử".to_owned())]
    );
    assert_eq!(
        pairs(split),
        [(
            "1.013831".to_owned(),
            "Đăng ký biến động quyền sử dụng đất".to_owned()
        )]
    );
}

#[test]
fn the_verified_table_pairs_each_code_once() {
    for (i, (code, _)) in CATALOGUE.iter().enumerate() {
        assert!(
            CATALOGUE[i + 1..].iter().all(|(c, _)| c != code),
            "{code} twice"
        );
    }
}
