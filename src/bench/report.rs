//! Reports: aligned text tables for the terminal, the same tables in Markdown, and the
//! JSON + Markdown files written under `target/bench-results/` (or `--out-dir`).

use anyhow::Context;
use serde::Serialize;
use std::{
    fmt,
    path::{Path, PathBuf},
};

/// A small table: a header row and string cells, printed aligned or as Markdown.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells print empty, extra ones are dropped).
    pub fn row(mut self, cells: &[&str]) -> Self {
        self.push(cells.iter().map(|c| (*c).to_owned()).collect());
        self
    }

    /// Adds a row of owned cells.
    pub fn push(&mut self, mut cells: Vec<String>) {
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        widths
    }

    /// The table in GitHub Markdown; the first column is left-aligned, the others
    /// (numbers) right-aligned.
    pub fn markdown(&self) -> String {
        let line = |cells: &[String]| {
            format!(
                "| {} |\n",
                cells
                    .iter()
                    .map(|c| c.replace('|', "\\|"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            )
        };
        let mut out = line(&self.header);
        let rule: Vec<String> = (0..self.header.len())
            .map(|i| {
                if i == 0 {
                    "---".to_owned()
                } else {
                    "---:".to_owned()
                }
            })
            .collect();
        out.push_str(&line(&rule));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths = self.widths();
        let write_row = |f: &mut fmt::Formatter<'_>, cells: &[String]| -> fmt::Result {
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                let pad = w.saturating_sub(cell.chars().count());
                if i == 0 {
                    write!(f, "{cell}{}", " ".repeat(pad))?;
                } else {
                    write!(f, "  {}{cell}", " ".repeat(pad))?;
                }
            }
            writeln!(f)
        };
        write_row(f, &self.header)?;
        let total: usize = widths.iter().sum::<usize>() + 2 * widths.len().saturating_sub(1);
        writeln!(f, "{}", "-".repeat(total))?;
        for row in &self.rows {
            write_row(f, row)?;
        }
        Ok(())
    }
}

/// Formats a number with `digits` decimals, or `-` when it is not finite.
pub fn num(value: f64, digits: usize) -> String {
    if value.is_finite() {
        format!("{value:.digits$}")
    } else {
        "-".to_owned()
    }
}

/// Formats an optional number (see [`num`]).
pub fn opt_num(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| num(v, digits))
}

/// Where a report was written.
#[derive(Debug, Clone)]
pub struct Written {
    /// `<subcommand>-<timestamp>.json`.
    pub json: PathBuf,
    /// `<subcommand>-<timestamp>.md`.
    pub markdown: PathBuf,
    /// `latest-<subcommand>.md`.
    pub latest: PathBuf,
}

/// Writes `<dir>/<name>-<timestamp>.json` and `.md`, and copies the Markdown to
/// `<dir>/latest-<name>.md`.
pub fn write(
    dir: &Path,
    name: &str,
    json: &impl Serialize,
    markdown: &str,
) -> anyhow::Result<Written> {
    std::fs::create_dir_all(dir).with_context(|| format!("Failed to create {}", dir.display()))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let written = Written {
        json: dir.join(format!("{name}-{stamp}.json")),
        markdown: dir.join(format!("{name}-{stamp}.md")),
        latest: dir.join(format!("latest-{name}.md")),
    };
    let mut body = serde_json::to_vec_pretty(json).context("Failed to serialise the report")?;
    body.push(b'\n');
    std::fs::write(&written.json, body)
        .with_context(|| format!("Failed to write {}", written.json.display()))?;
    std::fs::write(&written.markdown, markdown)
        .with_context(|| format!("Failed to write {}", written.markdown.display()))?;
    std::fs::write(&written.latest, markdown)
        .with_context(|| format!("Failed to write {}", written.latest.display()))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_in_text_and_escape_pipes_in_markdown() {
        let t = Table::new(&["what", "value"])
            .row(&["events/s", "5000"])
            .row(&["a|b", "1"]);
        let text = t.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2], "events/s   5000", "{text}");
        assert!(
            lines
                .iter()
                .all(|l| l.chars().count() == lines[0].chars().count()),
            "{text}"
        );
        let md = t.markdown();
        assert!(md.starts_with("| what | value |\n| --- | ---: |\n"), "{md}");
        assert!(md.contains("a\\|b"), "{md}");
    }
}
