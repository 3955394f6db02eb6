//! `loa bench ratelimit`: one tenant whose Zalo app allows `--limit` sends per second
//! (the sandbox enforces it with -32, and the tenant's `zalo.rate_per_second` / `burst`
//! say the same), and enough events queued up front to keep it busy for `--seconds`.
//! Reports the sustained rate achieved as a share of the limit and the -32 answers
//! (which must be 0: the notifier is meant to pace itself, not to be refused).

use super::{
    load::{self, Client, SandboxMessage},
    pipeline::{post_all, warm_up},
    procstat::Machine,
    report::{num, Table},
    system::{self, Mode, ZaloRate},
    Goal, Outcome,
};
use crate::settings::Settings;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::{collections::HashSet, path::Path, sync::Arc, time::Duration};

/// `loa bench ratelimit` options.
#[derive(Debug, Clone, clap::Args)]
pub struct RatelimitArgs {
    /// The Zalo rate limit, in sends per second (sandbox and tenant alike).
    #[arg(long, default_value_t = 50.0)]
    pub limit: f64,
    /// Burst on top of the rate (default: one second's worth).
    #[arg(long)]
    pub burst: Option<u32>,
    /// How long the limit is held, in seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Run each service as its own `loa run <target>` process.
    #[arg(long)]
    pub split: bool,
}

/// The rate-limit run's result.
#[derive(Debug, Clone, Serialize)]
pub struct RatelimitReport {
    /// `ratelimit`.
    pub subcommand: &'static str,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// `split` or `in-process`.
    pub mode: &'static str,
    /// The host.
    pub machine: Machine,
    /// The limit (sends per second).
    pub limit_per_second: f64,
    /// The burst.
    pub burst: u32,
    /// Seconds the limit was meant to be held.
    pub seconds: u64,
    /// Events queued (limit × seconds + burst).
    pub events: usize,
    /// Of those, messages the sandbox accepted while observed.
    pub delivered: usize,
    /// Events not delivered by the end of the observation (refused, waiting for a
    /// retry, or dead-lettered).
    pub undelivered: usize,
    /// Sustained rate in the steady window (after the burst), sends per second.
    pub achieved_per_second: f64,
    /// `achieved_per_second / limit_per_second`.
    pub share_of_limit: f64,
    /// The steady window, seconds (first delivery + warm-up to the end).
    pub steady_window_seconds: f64,
    /// First to last delivery, seconds.
    pub delivery_seconds: f64,
    /// `-32` answers the sandbox gave.
    pub refused_rate_limit: u64,
    /// Every refusal by code.
    pub refused: std::collections::HashMap<String, u64>,
    /// The most ZNS requests (accepted or refused) the sandbox saw in one second.
    pub sandbox_peak_rate_per_second: Option<f64>,
    /// Whether the notifier held the limit (no -32).
    pub limit_held: bool,
    /// The verdict in words.
    pub verdict: String,
    /// Issue 4's goals.
    pub goals: Vec<Goal>,
    /// Remarks.
    pub notes: Vec<String>,
}

/// Runs the rate-limit benchmark.
pub async fn run(
    base: &Settings,
    config_file: Option<&Path>,
    args: &RatelimitArgs,
) -> anyhow::Result<Outcome> {
    anyhow::ensure!(
        args.limit > 0.0 && args.limit.is_finite(),
        "--limit must be positive"
    );
    anyhow::ensure!(args.seconds > 0, "--seconds must be positive");
    let started_at = Utc::now();
    let machine = Machine::describe();
    let mode = if args.split {
        Mode::Split
    } else {
        Mode::InProcess
    };
    let burst = args
        .burst
        .unwrap_or_else(|| args.limit.ceil().max(1.0) as u32)
        .max(1);
    let rate = ZaloRate {
        per_second: args.limit,
        burst,
    };
    eprintln!("Starting the services ({})…", mode.as_str());
    let sut = system::start(base, config_file, 1, rate, mode).await?;
    let client = Client::new(&sut.intake, &sut.sandbox)?;
    warm_up(&client, &sut.tenants).await?;
    client.set_zns_limits(Some((args.limit, burst))).await?;

    let events = (args.limit * args.seconds as f64).ceil() as usize + burst as usize;
    eprintln!(
        "Queueing {events} events against a limit of {}/s (burst {burst}) for {} s…",
        args.limit, args.seconds
    );
    let run_id = format!("r{:x}", Utc::now().timestamp_millis() % 0xff_ffff);
    let batches = Arc::new(load::batches(&run_id, &sut.tenants, events, 500));
    let ours: HashSet<String> = batches
        .iter()
        .flat_map(|b| b.tracking_ids.iter().cloned())
        .collect();
    post_all(&client, &batches, 4).await?;
    let grace = Duration::from_secs(10.max(args.seconds / 4));
    let (stats, _) = client
        .wait_accepted(events as u64, Duration::from_secs(args.seconds) + grace)
        .await?;
    let messages = client.messages().await?;
    let mode_name = sut.mode.as_str();
    sut.stop().await?;

    let mut times: Vec<DateTime<Utc>> = messages
        .iter()
        .filter(|m: &&SandboxMessage| m.tracking_id.as_ref().is_some_and(|id| ours.contains(id)))
        .map(|m| m.received_at)
        .collect();
    times.sort();
    let (achieved, window, span) = steady_rate(&times, args.seconds as f64);
    let share = achieved / args.limit;
    let refused_rate_limit = stats.refused(-32);
    let limit_held = refused_rate_limit == 0;
    let verdict = if !limit_held {
        format!(
            "The notifier does not hold the Zalo rate limit yet: the sandbox refused {refused_rate_limit} sends with \
             -32 (rate limit exceeded) and {} of {events} events were not delivered while observed. The tenant's \
             zalo.rate_per_second = {} / burst = {burst} were configured but not honoured, so the achieved rate \
             only shows what the sandbox let through.",
            events.saturating_sub(times.len()),
            args.limit
        )
    } else if share < 0.98 {
        format!(
            "No -32 answers, but only {:.1} % of the limit was used (goal: at least 98 %).",
            share * 100.0
        )
    } else {
        format!(
            "The limit was held: {:.1} % of it used and no -32 answers.",
            share * 100.0
        )
    };
    let goals = vec![
        // Above the limit is no better than below it: Zalo would refuse the excess.
        Goal::between("share of the Zalo rate limit achieved", 0.98, 1.02, share),
        Goal::at_most(
            "-32 answers (rate limit exceeded)",
            0.0,
            refused_rate_limit as f64,
        ),
    ];
    let report = RatelimitReport {
        subcommand: "ratelimit",
        started_at,
        mode: mode_name,
        machine,
        limit_per_second: args.limit,
        burst,
        seconds: args.seconds,
        events,
        delivered: times.len(),
        undelivered: events.saturating_sub(times.len()),
        achieved_per_second: achieved,
        share_of_limit: share,
        steady_window_seconds: window,
        delivery_seconds: span,
        refused_rate_limit,
        refused: stats.refused.clone(),
        sandbox_peak_rate_per_second: stats.peak_rate_per_second,
        limit_held,
        verdict: verdict.clone(),
        goals,
        notes: vec![format!(
            "The achieved rate counts deliveries between {} s after the first one (the burst) and the end of the \
             {}-second hold, or the last delivery if earlier.",
            num(warm_up_seconds(args.seconds as f64), 1),
            args.seconds
        )],
    };
    let table = Table::new(&["rate limit", "value"])
        .row(&["limit (burst)", &format!("{}/s ({burst})", args.limit)])
        .row(&["events queued", &events.to_string()])
        .row(&["delivered while observed", &report.delivered.to_string()])
        .row(&["not delivered", &report.undelivered.to_string()])
        .row(&["achieved sends/s (steady)", &num(achieved, 2)])
        .row(&[
            "share of the limit",
            &format!("{} %", num(share * 100.0, 1)),
        ])
        .row(&["-32 answers", &refused_rate_limit.to_string()])
        .row(&[
            "sandbox peak requests in one second",
            &report
                .sandbox_peak_rate_per_second
                .map_or("-".into(), |p| num(p, 0)),
        ]);
    let verdict_table = Table::new(&["verdict"]).row(&[&verdict]);
    Ok(Outcome {
        name: "ratelimit",
        tables: vec![
            ("Rate limit".to_owned(), table),
            (
                "Goals (issue 4)".to_owned(),
                super::goals_table(&report.goals),
            ),
            ("Verdict".to_owned(), verdict_table),
        ],
        json: serde_json::to_value(&report)?,
        failure: None,
    })
}

/// The steady window starts this long after the first delivery, so the initial burst
/// does not count.
fn warm_up_seconds(hold: f64) -> f64 {
    (hold / 4.0).min(5.0)
}

/// Sustained rate in `(first + warm-up, min(first + hold, last)]`, the window's length
/// and first-to-last span. Falls back to the whole span when the window is empty.
pub fn steady_rate(sorted: &[DateTime<Utc>], hold: f64) -> (f64, f64, f64) {
    let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else {
        return (0.0, 0.0, 0.0);
    };
    let span = load::millis(*first, *last) / 1000.0;
    let start = warm_up_seconds(hold);
    let end = span.min(hold);
    if end - start < 1.0 {
        let rate = if span > 0.0 {
            (sorted.len() - 1) as f64 / span
        } else {
            0.0
        };
        return (rate, span, span);
    }
    let in_window = sorted
        .iter()
        .filter(|t| {
            let s = load::millis(*first, **t) / 1000.0;
            s > start && s <= end
        })
        .count();
    (in_window as f64 / (end - start), end - start, span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_a_steady_pace_measures_the_pace() {
        let t0 = Utc::now();
        let mut times: Vec<DateTime<Utc>> = (0..50).map(|_| t0).collect();
        // 50/s for 60 s after the burst.
        times.extend((1..=3000).map(|i| t0 + chrono::Duration::milliseconds(i * 20)));
        let (rate, window, _) = steady_rate(&times, 60.0);
        assert!((rate - 50.0).abs() < 0.5, "{rate}");
        assert!((window - 55.0).abs() < 0.01, "{window}");
    }
}
