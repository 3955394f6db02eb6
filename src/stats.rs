//! `loa stats`: the province's report over a period, per agency or procedure, through
//! the tracker's `GET /v1/stats` with the tenant's admin token (`--token` or
//! `LOA_ADMIN_TOKEN`). The tracker is `--tracker-url` (`LOA_TRACKER_URL`), by default
//! this machine on the configured tracker port. A table by default; `--csv` prints the
//! tracker's CSV as it is (for a spreadsheet), `--json` its JSON.

use crate::settings::Settings;
use anyhow::Context;
use clap::Args;
use serde_json::Value;
use std::{io::Write, time::Duration};

/// `loa stats …`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// First day of the period, YYYY-MM-DD (Asia/Ho_Chi_Minh).
    #[arg(long)]
    from: String,
    /// Last day of the period, included.
    #[arg(long)]
    to: String,
    /// One row per `agency` or per `procedure`.
    #[arg(long, default_value = "agency", value_parser = ["agency", "procedure"])]
    group: String,
    /// Print CSV (as `Accept: text/csv` gets it) instead of a table.
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// The tracker's base URL (default: `http://127.0.0.1:<tracker port>`).
    #[arg(long, env = "LOA_TRACKER_URL")]
    tracker_url: Option<String>,
    /// The tenant's admin token.
    #[arg(long, env = "LOA_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Runs `loa stats`.
pub async fn run(args: &StatsArgs, settings: &Settings) -> anyhow::Result<()> {
    let base = match &args.tracker_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let port = settings
                .services
                .tracker
                .bind
                .rsplit(':')
                .next()
                .unwrap_or("8081")
                .to_owned();
            format!("http://127.0.0.1:{port}")
        }
    };
    let token = args
        .token
        .as_deref()
        .context("an admin token is needed: --token or LOA_ADMIN_TOKEN")?;
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?
        .get(format!("{base}/v1/stats"))
        .query(&[
            ("from", args.from.as_str()),
            ("to", args.to.as_str()),
            ("group", args.group.as_str()),
        ])
        .header(
            "accept",
            if args.csv {
                "text/csv"
            } else {
                "application/json"
            },
        )
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("the tracker at {base} did not answer"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let e = &body["error"];
        anyhow::bail!(
            "{status}: {}{}",
            e["message"].as_str().unwrap_or("no details"),
            e["field"]
                .as_str()
                .map(|f| format!(" (field `{f}`)"))
                .unwrap_or_default()
        );
    }
    let mut out = std::io::stdout().lock();
    if args.csv {
        out.write_all(text.as_bytes())?;
        return Ok(());
    }
    let report: Value = serde_json::from_str(&text).context("the tracker's answer is not JSON")?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        out.write_all(table(&report).as_bytes())?;
    }
    Ok(())
}

/// The report as an aligned text table: a line per row, then the total.
pub fn table(report: &Value) -> String {
    const HEADER: [&str; 13] = [
        "code",
        "name",
        "received",
        "completed",
        "early",
        "on time",
        "late",
        "no due",
        "median days",
        "very sat.",
        "satisfied",
        "dissat.",
        "satisfied %",
    ];
    let number = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let line = |row: &Value, name: Option<&str>| -> Vec<String> {
        let share = row["satisfied_share"]
            .as_f64()
            .map(|s| format!("{:.1}", s * 100.0))
            .unwrap_or_else(|| "-".to_owned());
        vec![
            row["code"].as_str().unwrap_or("").to_owned(),
            name.or(row["name"].as_str()).unwrap_or("").to_owned(),
            number(&row["received"]),
            number(&row["completed"]),
            number(&row["early"]),
            number(&row["on_time"]),
            number(&row["late"]),
            number(&row["without_due_date"]),
            number(&row["median_processing_days"]),
            number(&row["ratings"]["very_satisfied"]),
            number(&row["ratings"]["satisfied"]),
            number(&row["ratings"]["dissatisfied"]),
            share,
        ]
    };
    let mut lines: Vec<Vec<String>> = vec![HEADER.iter().map(|h| (*h).to_owned()).collect()];
    for row in report["rows"].as_array().into_iter().flatten() {
        lines.push(line(row, None));
    }
    lines.push(line(&report["total"], Some("TOTAL")));
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = format!(
        "{} {} .. {}, by {}\n",
        report["tenant"].as_str().unwrap_or(""),
        report["from"].as_str().unwrap_or(""),
        report["to"].as_str().unwrap_or(""),
        report["group"].as_str().unwrap_or("")
    );
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, &w))| {
                let pad = " ".repeat(w - cell.chars().count());
                // Names left-aligned, numbers right-aligned.
                if i < 2 {
                    format!("{cell}{pad}")
                } else {
                    format!("{pad}{cell}")
                }
            })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_aligns_vietnamese_names_and_ends_with_the_total() {
        let row = json!({"code": "H56", "name": "UBND phường Đức Thắng", "received": 12,
            "completed": 10, "early": 4, "on_time": 3, "late": 2, "without_due_date": 1,
            "median_processing_days": 2.5,
            "ratings": {"very_satisfied": 3, "satisfied": 1, "dissatisfied": 1, "total": 5},
            "satisfied_share": 0.8});
        let mut total = row.clone();
        total["code"] = Value::Null;
        total["name"] = Value::Null;
        let text = table(
            &json!({"tenant": "demo", "from": "2026-11-01", "to": "2026-11-30",
            "group": "agency", "rows": [row], "total": total}),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "demo 2026-11-01 .. 2026-11-30, by agency");
        assert!(lines[1].starts_with("code  name "), "{text}");
        assert!(
            lines[2].starts_with("H56   UBND phường Đức Thắng"),
            "{text}"
        );
        assert!(lines[2].ends_with("80.0"), "{text}");
        assert!(lines[3].contains("TOTAL"), "{text}");
        assert_eq!(
            lines[1].chars().count(),
            lines[2].chars().count(),
            "columns line up: {text}"
        );
    }
}
