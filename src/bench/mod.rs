//! `loa bench`: the benchmark harness. Each subcommand starts what it needs on a private
//! database and vhost (and removes them), prints a table, and writes a JSON and a
//! Markdown report under `target/bench-results/`, outside the tracked tree
//! (`<subcommand>-<timestamp>.{json,md}` and `latest-<subcommand>.md`). With `--json`,
//! stdout carries one JSON object. Results worth keeping go to `docs/performance.md`.
//!
//! All traffic stays on 127.0.0.1; every loop is bounded in count and time.
//!
//! # Layout
//!
//! - [`broker`]: the raw RabbitMQ baseline (confirms, persistent, quorum, acks).
//! - [`pipeline`]: N events end to end, with the baseline measured in the same run.
//! - [`latency`]: fixed offered loads and their latency distribution.
//! - [`ratelimit`]: a Zalo rate limit held for a while: share achieved, -32 seen.
//! - [`fanout`]: a 1,000,000-citizen import and broadcast fan-out (issue 10), with
//!   the broker and a PostgreSQL `COPY` as same-run baselines.
//! - [`system`]: the services under test, in this process or as child processes.
//! - [`load`]: the events, batches and the intake / sandbox client.
//! - [`procstat`]: CPU and memory from `/proc`, and the machine's description.
//! - [`stages`]: where the latency goes, from the services' own timestamps.
//! - [`report`]: tables and report files.

pub mod broker;
pub mod fanout;
pub mod latency;
pub mod load;
pub mod pipeline;
pub mod procstat;
pub mod ratelimit;
pub mod report;
pub mod stages;
pub mod system;

use crate::settings::Settings;
use report::Table;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Where reports go unless `--out-dir` says otherwise.
pub const DEFAULT_OUT_DIR: &str = "target/bench-results";

/// Options every subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Print one JSON object on stdout (tables go to stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// Directory of the report files (created if missing; outside the tracked tree by
    /// default, so runs never leave the checkout dirty).
    #[arg(long, global = true, default_value = DEFAULT_OUT_DIR)]
    pub out_dir: PathBuf,
}

/// `loa bench` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// The raw RabbitMQ baseline: publish with confirms (persistent, quorum queue),
    /// consume with acks, real event size.
    Broker(broker::BrokerArgs),
    /// N events through intake's batch endpoint to the sandbox, as fast as accepted.
    Pipeline(pipeline::PipelineArgs),
    /// Fixed offered loads and the event-to-send latency distribution at each.
    Latency(latency::LatencyArgs),
    /// A Zalo rate limit held for a while: achieved share of it and -32 answers.
    Ratelimit(ratelimit::RatelimitArgs),
    /// A broadcast audience imported through the streamed import, then one broadcast
    /// to all of it expanded and enqueued: lines/s, recipients/s, the notifier's peak
    /// RSS.
    Fanout(fanout::FanoutArgs),
}

/// A goal of an issue (4, 10) and how this run did against it.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    /// What is measured.
    pub goal: String,
    /// `>=` or `<=` or `==`.
    pub comparison: &'static str,
    /// The target (the lower bound of a range).
    pub target: f64,
    /// The upper bound, for a range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
    /// What this run measured.
    pub measured: f64,
    /// Whether the target was met.
    pub met: bool,
}

impl Goal {
    /// `measured >= target`.
    pub fn at_least(goal: &str, target: f64, measured: f64) -> Self {
        Self {
            goal: goal.to_owned(),
            comparison: ">=",
            target,
            upper: None,
            measured,
            met: measured >= target,
        }
    }

    /// `measured <= target`.
    pub fn at_most(goal: &str, target: f64, measured: f64) -> Self {
        Self {
            goal: goal.to_owned(),
            comparison: "<=",
            target,
            upper: None,
            measured,
            met: measured <= target,
        }
    }

    /// `measured < target`.
    pub fn below(goal: &str, target: f64, measured: f64) -> Self {
        Self {
            goal: goal.to_owned(),
            comparison: "<",
            target,
            upper: None,
            measured,
            met: measured < target,
        }
    }

    /// `low <= measured <= high`.
    pub fn between(goal: &str, low: f64, high: f64, measured: f64) -> Self {
        Self {
            goal: goal.to_owned(),
            comparison: "in",
            target: low,
            upper: Some(high),
            measured,
            met: (low..=high).contains(&measured),
        }
    }

    /// By how much the goal is missed, as a sentence fragment.
    fn gap(&self) -> String {
        if self.met {
            return "met".to_owned();
        }
        if self.target == 0.0 {
            return format!("missed ({} instead of 0)", report::num(self.measured, 0));
        }
        if let Some(upper) = self.upper.filter(|u| self.measured > *u) {
            return format!("over by {:.0} %", (self.measured / upper - 1.0) * 100.0);
        }
        let pct = (self.measured / self.target - 1.0) * 100.0;
        format!("missed by {:.0} %", pct.abs())
    }
}

/// The goals as a table.
pub fn goals_table(goals: &[Goal]) -> Table {
    let mut t = Table::new(&["goal", "target", "measured", "verdict"]);
    for g in goals {
        let digits = if g.target.abs() < 10.0 && g.target.fract() != 0.0 {
            2
        } else {
            1
        };
        let target = match g.upper {
            Some(upper) => format!(
                "{} – {}",
                report::num(g.target, digits),
                report::num(upper, digits)
            ),
            None => format!("{} {}", g.comparison, report::num(g.target, digits)),
        };
        t.push(vec![
            g.goal.clone(),
            target,
            report::num(g.measured, digits),
            g.gap(),
        ]);
    }
    t
}

/// What a subcommand produced.
pub struct Outcome {
    /// The subcommand's name (file names).
    pub name: &'static str,
    /// Titled tables for the terminal and the Markdown report.
    pub tables: Vec<(String, Table)>,
    /// The JSON report.
    pub json: serde_json::Value,
    /// Set when the run could not measure what it should (the command then fails
    /// after writing its report).
    pub failure: Option<String>,
}

impl Outcome {
    fn markdown(&self) -> String {
        let mut md = format!("# loa bench {}\n\n", self.name);
        if let Some(m) = self.json.get("machine") {
            let s = |k: &str| {
                m.get(k)
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .unwrap_or_default()
            };
            md.push_str(&format!(
                "- Started: {}\n- Machine: {} CPUs ({}), {} GiB RAM, load average at start {}\n- Build: {}\n- Command: `{}`\n",
                self.json.get("started_at").and_then(|v| v.as_str()).unwrap_or(""),
                s("nproc"),
                s("cpu_model"),
                s("ram_gib"),
                s("load_average_at_start"),
                s("build_profile"),
                s("command"),
            ));
        }
        if let Some(mode) = self.json.get("mode").and_then(|v| v.as_str()) {
            md.push_str(&format!("- Services: {mode}\n"));
        }
        md.push('\n');
        for (title, table) in &self.tables {
            md.push_str(&format!("## {title}\n\n{}\n", table.markdown()));
        }
        if let Some(notes) = self.json.get("notes").and_then(|n| n.as_array()) {
            if !notes.is_empty() {
                md.push_str("## Notes\n\n");
                for n in notes.iter().filter_map(|n| n.as_str()) {
                    md.push_str(&format!("- {n}\n"));
                }
                md.push('\n');
            }
        }
        md
    }
}

/// Runs a `loa bench` subcommand: measures, prints, writes the reports. Ctrl-C stops
/// the run and still removes what it created.
pub async fn run(
    command: BenchCommand,
    output: &OutputArgs,
    settings: &Settings,
    config_file: Option<&Path>,
) -> anyhow::Result<()> {
    let work = async {
        match &command {
            BenchCommand::Broker(args) => broker::run_command(args).await,
            BenchCommand::Pipeline(args) => pipeline::run(settings, config_file, args).await,
            BenchCommand::Latency(args) => latency::run(settings, config_file, args).await,
            BenchCommand::Ratelimit(args) => ratelimit::run(settings, config_file, args).await,
            BenchCommand::Fanout(args) => fanout::run(settings, config_file, args).await,
        }
    };
    let outcome = tokio::select! {
        outcome = work => outcome?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the benchmark's services, database and vhost were removed"),
    };
    let mut text = String::new();
    for (title, table) in &outcome.tables {
        text.push_str(&format!("\n{title}\n{table}"));
    }
    let written = report::write(
        &output.out_dir,
        outcome.name,
        &outcome.json,
        &outcome.markdown(),
    )?;
    let files = format!(
        "\nReports: {} and {} (also {})",
        written.json.display(),
        written.markdown.display(),
        written.latest.display()
    );
    if output.json {
        eprintln!("{text}{files}");
        println!("{}", serde_json::to_string(&outcome.json)?);
    } else {
        println!("{text}{files}");
    }
    match outcome.failure {
        Some(why) => anyhow::bail!("the benchmark did not complete: {why}"),
        None => Ok(()),
    }
}
