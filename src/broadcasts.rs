//! `loa broadcasts …` and `loa subscribers import`: an admin's policy broadcasts from
//! the command line, through the notifier's HTTP API (as the console does), with the
//! tenant's admin token (`--token` or `LOA_ADMIN_TOKEN`). The notifier is
//! `--notifier-url` (`LOA_NOTIFIER_URL`), by default this machine on the configured
//! notifier port.

use crate::settings::Settings;
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::{io::Write, path::PathBuf, time::Duration};

/// Where the notifier is and who asks.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The notifier's base URL (default: `http://127.0.0.1:<notifier port>`).
    #[arg(long, env = "LOA_NOTIFIER_URL", global = true)]
    notifier_url: Option<String>,
    /// The tenant's admin token.
    #[arg(long, env = "LOA_ADMIN_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
}

/// `loa broadcasts …`.
#[derive(Debug, Subcommand)]
pub enum BroadcastsCommand {
    /// Create a broadcast (or, with `--dry-run`, count its audience and preview it).
    Create {
        /// The broadcast's title (for admins; the message's is `--param title=…`).
        #[arg(long)]
        title: String,
        /// Every opted-in subscriber.
        #[arg(long, conflicts_with = "tags", required_unless_present = "tags")]
        all: bool,
        /// A tag expression: `ward:phu-thuy AND (topic:a OR topic:b)`.
        #[arg(long)]
        tags: Option<String>,
        /// The announcement template.
        #[arg(long, default_value = "announcement")]
        template: String,
        /// A template parameter, `name=value` (repeat: title, body, link).
        #[arg(long = "param", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Start then (RFC 3339), not now.
        #[arg(long)]
        start_at: Option<String>,
        /// Cancel what is left then (RFC 3339).
        #[arg(long)]
        end_at: Option<String>,
        /// Count and preview only; create nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// The tenant's latest broadcasts.
    List {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// One broadcast and its progress (JSON).
    Show {
        /// Its id.
        id: String,
    },
    /// Pause a broadcast: nothing more is sent until a resume.
    Pause {
        /// Its id.
        id: String,
    },
    /// Resume a paused broadcast.
    Resume {
        /// Its id.
        id: String,
    },
    /// Cancel a broadcast: what is left is skipped.
    Cancel {
        /// Its id.
        id: String,
    },
    /// Follow a broadcast live: a progress bar with the rate and the time left,
    /// until it completes or is cancelled.
    Watch {
        /// Its id.
        id: String,
        /// Seconds between looks.
        #[arg(long, default_value_t = 1.0)]
        every: f64,
    },
}

/// `loa subscribers …`.
#[derive(Debug, Subcommand)]
pub enum SubscribersCommand {
    /// Import citizens from an ndjson or CSV file (by its extension, or `--csv`).
    Import {
        /// The file: one JSON object per line (`.ndjson`, `.jsonl`) or CSV with a header.
        file: PathBuf,
        /// Read the file as CSV whatever its name.
        #[arg(long)]
        csv: bool,
    },
}

fn parse_param(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{raw}` is not `name=value`"))
}

/// The notifier's API for one admin.
struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    fn new(args: &ApiArgs, settings: &Settings) -> anyhow::Result<Self> {
        let base = match &args.notifier_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let port = settings
                    .services
                    .notifier
                    .bind
                    .rsplit(':')
                    .next()
                    .unwrap_or("8082")
                    .to_owned();
                format!("http://127.0.0.1:{port}")
            }
        };
        let token = args
            .token
            .clone()
            .context("an admin token is needed: --token or LOA_ADMIN_TOKEN")?;
        Ok(Self {
            base,
            token,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()?,
        })
    }

    /// Sends a request; the JSON answer, or the API's error as an error.
    async fn call(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("the notifier at {} did not answer", self.base))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
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
        Ok(body)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }
}

/// Runs a `loa broadcasts` command.
pub async fn run(
    command: BroadcastsCommand,
    args: &ApiArgs,
    settings: &Settings,
) -> anyhow::Result<()> {
    let api = Api::new(args, settings)?;
    let mut out = std::io::stdout();
    match command {
        BroadcastsCommand::Create {
            title,
            all,
            tags,
            template,
            params,
            start_at,
            end_at,
            dry_run,
        } => {
            let audience = match tags {
                Some(tags) if !all => json!({ "tags": tags }),
                _ => json!({ "all": true }),
            };
            let params: serde_json::Map<String, Value> = params
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            let mut body = json!({
                "title": title,
                "audience": audience,
                "message": {"template": template, "params": params},
                "dry_run": dry_run,
            });
            if let Some(at) = start_at {
                body["start_at"] = json!(at);
            }
            if let Some(at) = end_at {
                body["end_at"] = json!(at);
            }
            let answer = api.post("/v1/broadcasts", &body).await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&answer)?)?;
        }
        BroadcastsCommand::List { json } => {
            let answer = api.get("/v1/broadcasts").await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&answer)?)?;
            } else {
                write!(out, "{}", table(&answer))?;
            }
        }
        BroadcastsCommand::Show { id } => {
            let answer = api.get(&format!("/v1/broadcasts/{id}")).await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&answer)?)?;
        }
        BroadcastsCommand::Pause { id } => act(&api, &id, "pause").await?,
        BroadcastsCommand::Resume { id } => act(&api, &id, "resume").await?,
        BroadcastsCommand::Cancel { id } => act(&api, &id, "cancel").await?,
        BroadcastsCommand::Watch { id, every } => {
            let every = Duration::from_secs_f64(every.max(0.2));
            loop {
                let view = api.get(&format!("/v1/broadcasts/{id}")).await?;
                write!(out, "\r{}", progress_line(&view, 30))?;
                out.flush()?;
                if matches!(view["state"].as_str(), Some("completed" | "cancelled")) {
                    writeln!(out)?;
                    return Ok(());
                }
                tokio::time::sleep(every).await;
            }
        }
    }
    Ok(())
}

async fn act(api: &Api, id: &str, action: &str) -> anyhow::Result<()> {
    let view = api
        .post(&format!("/v1/broadcasts/{id}/{action}"), &json!({}))
        .await?;
    println!("{id}: {}", view["state"].as_str().unwrap_or("?"));
    Ok(())
}

/// The list as a table: id, state, progress, title.
fn table(list: &Value) -> String {
    let mut text = format!(
        "{:<18} {:<10} {:>9} {:>9} {:>9}  {}\n",
        "id", "state", "audience", "sent", "skipped", "title"
    );
    for b in list["broadcasts"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "{:<18} {:<10} {:>9} {:>9} {:>9}  {}\n",
            b["id"].as_str().unwrap_or(""),
            b["state"].as_str().unwrap_or(""),
            b["audience"].as_i64().unwrap_or(0),
            b["sent"].as_i64().unwrap_or(0),
            sum(&b["skipped"]),
            b["title"].as_str().unwrap_or(""),
        ));
    }
    text
}

fn sum(map: &Value) -> i64 {
    map.as_object()
        .map(|m| m.values().filter_map(Value::as_i64).sum())
        .unwrap_or(0)
}

/// One line of `watch`: `[#####-----] 1200/5000 24% sent 1100 failed 3 skipped 97 · 48.0/s · ETA 1m19s · running`.
pub fn progress_line(view: &Value, width: usize) -> String {
    let audience = view["audience"].as_i64().unwrap_or(0).max(0);
    let sent = view["sent"].as_i64().unwrap_or(0);
    let (failed, skipped) = (sum(&view["failed"]), sum(&view["skipped"]));
    let done = (sent + failed + skipped).min(audience.max(sent + failed + skipped));
    let share = if audience > 0 {
        done as f64 / audience as f64
    } else {
        1.0
    };
    let filled = ((share * width as f64).round() as usize).min(width);
    let eta = view["eta_seconds"]
        .as_i64()
        .map(|s| format!("ETA {}m{:02}s", s / 60, s % 60))
        .unwrap_or_else(|| "ETA -".to_owned());
    let rate = if audience > 0 && done < audience {
        view["eta_seconds"]
            .as_i64()
            .filter(|s| *s > 0)
            .map(|s| format!("{:.1}/s", (audience - done) as f64 / s as f64))
            .unwrap_or_else(|| "-/s".to_owned())
    } else {
        "-/s".to_owned()
    };
    format!(
        "[{}{}] {done}/{audience} {:>3.0}% sent {sent} failed {failed} skipped {skipped} deferred {} · {rate} · {eta} · {}",
        "#".repeat(filled),
        "-".repeat(width - filled),
        share * 100.0,
        view["deferred"].as_i64().unwrap_or(0),
        view["state"].as_str().unwrap_or("?"),
    )
}

/// Bytes of whole lines sent per import request: the file is read and sent part by
/// part, so a million-line file never sits in memory (the notifier itself writes each
/// part's lines as they arrive).
const IMPORT_PART_BYTES: usize = 8 * 1024 * 1024;
/// Bad lines printed (all are counted).
const MAX_REJECTIONS_LISTED: usize = 1_000;

/// One import request's body: whole lines of the file (a CSV part starts with the
/// file's header again) and where they start in the file.
#[derive(Debug, PartialEq, Eq)]
struct ImportPart {
    body: Vec<u8>,
    /// The file's line number (1-based) of the part's first line after its header.
    first_line: u64,
    /// Whether the part starts with a repeated CSV header.
    header: bool,
}

impl ImportPart {
    /// The file's line number of the part's `line` (as the notifier numbers it).
    fn file_line(&self, line: u64) -> u64 {
        let skipped = u64::from(self.header);
        (self.first_line + line).saturating_sub(1 + skipped)
    }
}

/// Reads an import file into parts of at most about `limit` bytes of whole lines.
struct ImportParts<R> {
    reader: R,
    csv: bool,
    limit: usize,
    /// The CSV header (the file's first line), repeated at the start of later parts.
    header: Option<Vec<u8>>,
    /// The file's line number of the next line to read.
    next_line: u64,
    done: bool,
}

impl<R: std::io::BufRead> ImportParts<R> {
    fn new(reader: R, csv: bool, limit: usize) -> Self {
        Self {
            reader,
            csv,
            limit,
            header: None,
            next_line: 1,
            done: false,
        }
    }

    /// The next part, or `None` at the end of the file.
    fn next_part(&mut self) -> std::io::Result<Option<ImportPart>> {
        if self.done {
            return Ok(None);
        }
        let mut body = Vec::new();
        let header = self.header.is_some();
        if let Some(h) = &self.header {
            body.extend_from_slice(h);
        }
        let first_line = self.next_line;
        let mut lines = 0;
        loop {
            let start = body.len();
            if self.reader.read_until(b'\n', &mut body)? == 0 {
                self.done = true;
                break;
            }
            if !body.ends_with(b"\n") {
                body.push(b'\n');
            }
            if self.csv && self.header.is_none() {
                self.header = Some(body[start..].to_vec());
            }
            self.next_line += 1;
            lines += 1;
            if body.len() >= self.limit {
                break;
            }
        }
        if lines == 0 && first_line > 1 {
            return Ok(None);
        }
        Ok(Some(ImportPart {
            body,
            first_line,
            header,
        }))
    }
}

/// Runs a `loa subscribers` command.
pub async fn run_subscribers(
    command: SubscribersCommand,
    args: &ApiArgs,
    settings: &Settings,
) -> anyhow::Result<()> {
    let api = Api::new(args, settings)?;
    match command {
        SubscribersCommand::Import { file, csv } => {
            let csv = csv
                || file
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
            let file_name = file.display().to_string();
            let reader = std::io::BufReader::new(
                std::fs::File::open(&file)
                    .with_context(|| format!("Failed to read {file_name}"))?,
            );
            let content_type = if csv {
                "text/csv"
            } else {
                "application/x-ndjson"
            };
            let mut parts = ImportParts::new(reader, csv, IMPORT_PART_BYTES);
            let (mut imported, mut updated, mut rejected_total) = (0u64, 0u64, 0u64);
            let mut rejected: Vec<Value> = Vec::new();
            while let Some(mut part) = parts
                .next_part()
                .with_context(|| format!("Failed to read {file_name}"))?
            {
                let answer = api
                    .call(
                        api.http
                            .post(format!("{}/v1/subscribers/import", api.base))
                            .header("content-type", content_type)
                            .body(std::mem::take(&mut part.body)),
                    )
                    .await?;
                imported += answer["imported"].as_u64().unwrap_or(0);
                updated += answer["updated"].as_u64().unwrap_or(0);
                rejected_total += answer["rejected_total"].as_u64().unwrap_or(0);
                for r in answer["rejected"].as_array().into_iter().flatten() {
                    if rejected.len() < MAX_REJECTIONS_LISTED {
                        let mut r = r.clone();
                        let line = r["line"].as_u64().unwrap_or(0);
                        r["line"] = json!(part.file_line(line));
                        rejected.push(r);
                    }
                }
            }
            println!("imported {imported}, updated {updated}, rejected {rejected_total}");
            for r in &rejected {
                println!(
                    "  line {}: {} ({})",
                    r["line"],
                    r["message"].as_str().unwrap_or(""),
                    r["field"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(parts: &[ImportPart]) -> Vec<&str> {
        parts
            .iter()
            .map(|p| std::str::from_utf8(&p.body).unwrap())
            .collect()
    }

    fn parts(text: &str, csv: bool, limit: usize) -> Vec<ImportPart> {
        let mut parts = ImportParts::new(text.as_bytes(), csv, limit);
        std::iter::from_fn(|| parts.next_part().unwrap()).collect()
    }

    #[test]
    fn an_ndjson_file_is_sent_in_parts_of_whole_lines_numbered_as_in_the_file() {
        let file = "{\"phone\": \"0912000001\"}\n{\"phone\": \"0912000002\"}\nbad\n{}";
        let parts = parts(file, false, 30);
        let bodies = bodies(&parts);
        assert_eq!(
            bodies,
            [
                "{\"phone\": \"0912000001\"}\n{\"phone\": \"0912000002\"}\n",
                "bad\n{}\n"
            ]
        );
        // The notifier's line 1 of the second part is the file's line 3.
        assert_eq!(parts[1].file_line(1), 3);
        assert_eq!(parts[0].file_line(2), 2);
    }

    #[test]
    fn a_csv_file_s_later_parts_repeat_its_header() {
        let file = "phone,tags\n0912000001,a\n0912000002,b\n0912000003,c\n";
        let parts = parts(file, true, 37);
        let bodies = bodies(&parts);
        assert_eq!(
            bodies,
            [
                "phone,tags\n0912000001,a\n0912000002,b\n",
                "phone,tags\n0912000003,c\n"
            ]
        );
        // The notifier's line 2 (after the header) of each part, in the file.
        assert_eq!(parts[0].file_line(2), 2);
        assert_eq!(parts[1].file_line(2), 4);
        assert!(
            self::parts("", true, 24).len() == 1,
            "an empty file is one (empty) import"
        );
    }

    #[test]
    fn the_watch_line_shows_the_share_done_the_rate_and_the_time_left() {
        let view = json!({"audience": 100, "sent": 40, "failed": {"-108": 2},
            "skipped": {"monthly_cap": 8}, "deferred": 0, "eta_seconds": 25, "state": "running"});
        let line = progress_line(&view, 10);
        assert!(line.starts_with("[#####-----] 50/100  50%"), "{line}");
        assert!(
            line.contains("2.0/s") && line.contains("ETA 0m25s"),
            "{line}"
        );
        assert!(line.ends_with("running"));
    }

    #[test]
    fn a_param_is_name_equals_value() {
        assert_eq!(
            parse_param("body=a=b").unwrap(),
            ("body".to_owned(), "a=b".to_owned())
        );
        assert!(parse_param("=x").is_err());
        assert!(parse_param("x").is_err());
    }
}
