//! `loa subjects erase --phone …`: a citizen's erasure request (Decree 13/2023), sent
//! to the tracker's and then the notifier's `POST /v1/subjects/erase` with the tenant's
//! admin token. Each service erases what it holds and audits it in its own schema;
//! the command prints both reports (what was removed, the audit ids, the phone's
//! hash) and fails if either service did not carry it out. Running it again is safe:
//! a service that finds nothing left answers zero counts.
//!
//! Why HTTP to each service and not a message over RabbitMQ: the admin learns at once,
//! from both services, that the erasure was done (or why not), and the services share
//! no database; a request that fails half-way is simply run again.

use crate::settings::Settings;
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::time::Duration;

/// Where the services are, and the admin token.
#[derive(Debug, Args)]
pub struct SubjectsArgs {
    /// The tracker's base URL (default: `http://127.0.0.1:<tracker port>`).
    #[arg(long, env = "LOA_TRACKER_URL", global = true)]
    tracker_url: Option<String>,
    /// The notifier's base URL (default: `http://127.0.0.1:<notifier port>`).
    #[arg(long, env = "LOA_NOTIFIER_URL", global = true)]
    notifier_url: Option<String>,
    /// The tenant's admin token.
    #[arg(long, env = "LOA_ADMIN_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
}

/// `loa subjects …`.
#[derive(Debug, Subcommand)]
pub enum SubjectsCommand {
    /// Erase a citizen's personal data in the tracker and the notifier: the dossiers
    /// naming their phone masked, their subscriptions, parked messages, chat lookups,
    /// webhooks, ratings and dead letters removed or masked; audited in both.
    Erase {
        /// The citizen's mobile number, in any written form.
        #[arg(long)]
        phone: String,
        /// Who asked: the official handling the request and its reference (audited).
        #[arg(long)]
        requested_by: String,
    },
}

/// Runs `loa subjects …`.
pub async fn run(
    command: SubjectsCommand,
    args: &SubjectsArgs,
    settings: &Settings,
) -> anyhow::Result<()> {
    let SubjectsCommand::Erase {
        phone,
        requested_by,
    } = command;
    let token = args
        .token
        .clone()
        .context("an admin token is needed: --token or LOA_ADMIN_TOKEN")?;
    let local = |bind: &str, default: &str| {
        let port = bind.rsplit(':').next().unwrap_or(default).to_owned();
        format!("http://127.0.0.1:{port}")
    };
    let services = [
        (
            "tracker",
            args.tracker_url
                .clone()
                .unwrap_or_else(|| local(&settings.services.tracker.bind, "8081")),
        ),
        (
            "notifier",
            args.notifier_url
                .clone()
                .unwrap_or_else(|| local(&settings.services.notifier.bind, "8082")),
        ),
    ];
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let body = json!({"phone": phone, "requested_by": requested_by});
    let mut failures = Vec::new();
    for (name, base) in services {
        let url = format!(
            "{}{}",
            base.trim_end_matches('/'),
            loa_platform::erasure::PATH
        );
        match erase_at(&http, &url, &token, &body).await {
            Ok(report) => println!("{name}: {}", summary(&report)),
            Err(e) => {
                println!("{name}: FAILED: {e:#}");
                failures.push(name);
            }
        }
    }
    if !failures.is_empty() {
        anyhow::bail!(
            "the erasure was not carried out by: {} (run the command again)",
            failures.join(", ")
        );
    }
    Ok(())
}

async fn erase_at(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let response = http
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .with_context(|| format!("{url} did not answer"))?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let e = &answer["error"];
        anyhow::bail!(
            "{status}: {}{}",
            e["message"].as_str().unwrap_or("no details"),
            e["field"]
                .as_str()
                .map(|f| format!(" (field `{f}`)"))
                .unwrap_or_default()
        );
    }
    Ok(answer)
}

/// `removed dossiers_masked=2 events_masked=5 outbox_deleted=0 (audit 7, phone
/// sha256 3f…)`.
fn summary(report: &Value) -> String {
    let removed = report["removed"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    format!(
        "removed {removed} (audit {}, phone sha256 {})",
        report["audit_id"],
        report["phone_hash"].as_str().unwrap_or("?")
    )
}
