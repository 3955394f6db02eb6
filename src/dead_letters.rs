//! `loa dead-letters list|replay`: the operator's view of `notifier.dead_letters`,
//! straight against the database (`LOA_DATABASE_URL`) and the broker
//! (`LOA_AMQP_URL`), through the same functions as the notifier's HTTP API. Without
//! `--tenant` it covers every tenant, including dead letters whose body names none.

use crate::settings::Settings;
use anyhow::Context;
use clap::{Args, Subcommand};
use loa_notifier::dead_letters::{self, DeadLetterView, ListFilter, Selection};
use loa_platform::amqp::Publisher;
use std::io::Write;

/// `loa dead-letters …`.
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// List stored dead letters, oldest first (bodies only with `--json`: they may
    /// hold citizens' phone numbers).
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// Only reasons starting with this (`zalo error -108`, `invalid_json`).
        #[arg(long)]
        reason: Option<String>,
        /// Only those from this queue (`notifier.transactional`, `tracker.events`).
        #[arg(long)]
        source_queue: Option<String>,
        /// Only those not replayed yet.
        #[arg(long)]
        unreplayed: bool,
        /// Only ids above this (paging).
        #[arg(long, default_value_t = 0)]
        after_id: i64,
        /// Most rows to show (1..=500).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=dead_letters::MAX_PAGE))]
        limit: i64,
        /// Print JSON (one array, bodies included) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Republish dead letters to their original exchange and routing key, and mark
    /// them replayed.
    Replay {
        /// What to replay.
        #[command(flatten)]
        selection: ReplaySelection,
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// Exactly one way to choose what a replay takes.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct ReplaySelection {
    /// Every dead letter not replayed yet.
    #[arg(long)]
    all: bool,
    /// These ids (replayed before or not); repeat or list them: `--id 3 4`.
    #[arg(long = "id", num_args = 1.., value_parser = clap::value_parser!(i64).range(1..))]
    ids: Vec<i64>,
    /// Those not replayed yet whose reason starts with this.
    #[arg(long)]
    reason: Option<String>,
}

impl ReplaySelection {
    fn selection(&self) -> Selection {
        if self.all {
            Selection::All
        } else if let Some(reason) = &self.reason {
            Selection::Filter {
                reason: Some(reason.clone()),
                source_queue: None,
            }
        } else {
            Selection::Ids(self.ids.clone())
        }
    }
}

/// Runs a `loa dead-letters` command, printing to stdout.
pub async fn run(command: DeadLettersCommand, settings: &Settings) -> anyhow::Result<()> {
    let pool = loa_platform::db::pool(&settings.common.database_url, 2)?;
    loa_notifier::migrate(&pool)
        .await
        .context("Failed to reach the notifier's schema (is LOA_DATABASE_URL right?)")?;
    let mut out = std::io::stdout().lock();
    match command {
        DeadLettersCommand::List {
            tenant,
            reason,
            source_queue,
            unreplayed,
            after_id,
            limit,
            json,
        } => {
            let filter = ListFilter {
                tenant,
                reason,
                source_queue,
                since: None,
                replayed: unreplayed.then_some(false),
                after_id,
                limit,
            };
            let rows = dead_letters::list(&pool, &filter).await?;
            if json {
                serde_json::to_writer_pretty(&mut out, &rows)?;
                writeln!(out)?;
            } else {
                print_table(&mut out, &rows)?;
            }
        }
        DeadLettersCommand::Replay { selection, tenant } => {
            let publisher = Publisher::new(settings.common.amqp_url.clone(), "loa-cli-replay");
            let report = dead_letters::replay(
                &pool,
                &publisher,
                &settings.tenants,
                tenant.as_deref(),
                &selection.selection(),
            )
            .await?;
            writeln!(out, "Replayed {} dead letter(s).", report.replayed)?;
            if !report.not_found.is_empty() {
                let ids: Vec<String> = report.not_found.iter().map(i64::to_string).collect();
                writeln!(out, "Not found: {}.", ids.join(", "))?;
            }
            for skipped in &report.skipped {
                writeln!(out, "Skipped {}: {}.", skipped.id, skipped.why)?;
            }
        }
    }
    Ok(())
}

fn print_table(out: &mut impl Write, rows: &[DeadLetterView]) -> std::io::Result<()> {
    if rows.is_empty() {
        return writeln!(out, "No dead letters.");
    }
    writeln!(
        out,
        "{:>8}  {:<12}  {:<24}  {:<20}  {:<8}  REASON",
        "ID", "TENANT", "SOURCE QUEUE", "DEAD AT (UTC)", "REPLAYED"
    )?;
    for row in rows {
        let reason: String = row.reason.chars().take(80).collect();
        writeln!(
            out,
            "{:>8}  {:<12}  {:<24}  {:<20}  {:<8}  {}",
            row.id,
            row.tenant.as_deref().unwrap_or("-"),
            row.source_queue,
            row.dead_at.format("%Y-%m-%d %H:%M:%S"),
            match (row.replayed_at, row.replay_count) {
                (Some(_), _) => "yes",
                (None, 0) => "no",
                (None, _) => "again", // replayed, then died again
            },
            reason
        )?;
    }
    Ok(())
}
