//! `loa chaos`: the outside proof of Loa's delivery promises. It starts the four
//! services as separate `loa run <service>` processes on a fresh database and vhost
//! (receipts flowing from the sandbox to the notifier), offers a steady load of
//! dossier events for several tenants through intake, and meanwhile, on a seeded
//! schedule, SIGKILLs and restarts every service (the notifier more than once), closes
//! the run's AMQP connections, terminates its PostgreSQL backends, and makes Zalo
//! answer 5xx, hang or rate-limit for a while and expire its access tokens. When the
//! load is over and the system has settled (a bounded wait), it audits what reached
//! Zalo against what intake accepted and the tracker planned, prints the audit as a
//! table, writes it under `--out-dir`, and fails on any loss, unexplained duplicate or
//! stall longer than [`STALL_LIMIT`].
//!
//! # Layout
//!
//! - [`schedule`]: which fault strikes when, from a seed (pure).
//! - [`load`]: the offered load and what intake answered per item.
//! - [`faults`]: carries the schedule out against the system.
//! - [`watch`]: samples sending and waiting work; gaps, resend counts, crashes.
//! - [`record`]: what the run keeps across the processes it kills.
//! - [`evidence`]: the tables and messages read once the run has settled.
//! - [`audit`]: the verdict (pure).

pub mod audit;
pub mod evidence;
pub mod faults;
pub mod load;
pub mod record;
pub mod schedule;
pub mod watch;

use crate::{
    bench::{
        procstat::Machine,
        report::{self, Table},
        system::{self, Mode, SplitOptions, ZaloRate},
    },
    settings::Settings,
};
use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use std::{
    collections::BTreeSet,
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::{atomic::AtomicUsize, Arc},
    time::Duration,
};
use tokio::{sync::Mutex, time::Instant};
use tokio_util::sync::CancellationToken;

/// The longest time Zalo may accept nothing while work waits.
pub const STALL_LIMIT: Duration = Duration::from_secs(10);

/// Each tenant's Zalo app: 50 sends per second, as the demo tenant.
const RATE: ZaloRate = ZaloRate {
    per_second: 50.0,
    burst: 50,
};

/// The notifier's settings for the run, so that a fault's consequences play out in
/// seconds rather than in the production hours: retry tiers of 1, 2 and 4 s (the
/// last repeating) instead of 5 s … 1 h, a send in doubt rechecked after 6 s instead
/// of 10 minutes, a Zalo call timing out after 3 s instead of 10, and batches of 8 so
/// that a kill lands mid-batch. Leases are the default 5 s. A variable already set in
/// the environment wins (the services inherit it), so a run can try other values.
pub const NOTIFIER_TUNING: [(&str, &str); 4] = [
    ("LOA_NOTIFIER__RETRY_DELAYS_MS", "1000,2000,4000"),
    ("LOA_NOTIFIER__AMBIGUOUS_RECHECK_SECS", "6"),
    ("LOA_NOTIFIER__HTTP_TIMEOUT_MS", "3000"),
    ("LOA_NOTIFIER__BATCH_SIZE", "8"),
];

/// `loa chaos` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// Events offered (default 4,000; 600 with `--short`).
    #[arg(long)]
    pub events: Option<usize>,
    /// How long the load lasts: seconds, or a number with `s` or `m` (default 120 s;
    /// 30 s with `--short`).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Seed of the fault schedule; the same seed strikes the same faults at the same
    /// moments (default: from the clock, printed with the report).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The short variant: fewer events, every fault kind once and the notifier twice.
    #[arg(long)]
    pub short: bool,
    /// Tenants (provinces) the events are spread over.
    #[arg(long, default_value_t = 3)]
    pub tenants: usize,
    /// Longest wait for the system to settle after the load, in seconds (default 180;
    /// 60 with `--short`).
    #[arg(long)]
    pub settle_secs: Option<u64>,
    /// Keep the services' logs (their directory is printed).
    #[arg(long)]
    pub keep_logs: bool,
    /// Send no delivery receipts (the sandbox's webhooks off): every send in doubt is
    /// then resent after its recheck, and duplicates are bounded by the counted
    /// resends alone.
    #[arg(long)]
    pub no_receipts: bool,
    /// Run the services from this `loa` binary (another build: the audit then judges
    /// that build's delivery engine).
    #[arg(long)]
    pub services_bin: Option<PathBuf>,
    /// Print one JSON object on stdout (tables go to stderr).
    #[arg(long)]
    pub json: bool,
    /// Directory of the report files (`chaos-<timestamp>.{json,md}`, `latest-chaos.md`).
    #[arg(long, default_value = crate::bench::DEFAULT_OUT_DIR)]
    pub out_dir: PathBuf,
}

/// `90`, `90s`, `2m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.strip_suffix('m') {
        Some(n) => (n, 60),
        None => (text.strip_suffix('s').unwrap_or(text), 1),
    };
    let n: u64 = number.trim().parse().map_err(|_| {
        format!("`{text}` is not a duration: give seconds (90, 90s) or minutes (2m)")
    })?;
    if n == 0 {
        return Err("the duration must be at least one second".to_owned());
    }
    Ok(Duration::from_secs(n * unit))
}

/// The run's parameters, defaults applied.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Events offered.
    pub events: usize,
    /// Load duration, in seconds.
    pub duration_secs: u64,
    /// The schedule's seed.
    pub seed: u64,
    /// The short variant.
    pub short: bool,
    /// Whether delivery receipts flowed to the notifier.
    pub receipts: bool,
    /// Tenants.
    pub tenants: usize,
    /// Longest settle wait, in seconds.
    pub settle_secs: u64,
}

impl Plan {
    fn from_args(args: &ChaosArgs) -> anyhow::Result<Self> {
        let (events, duration, settle) = if args.short {
            (600, 30, 60)
        } else {
            (4_000, 120, 180)
        };
        let plan = Self {
            events: args.events.unwrap_or(events),
            duration_secs: args.duration.map_or(duration, |d| d.as_secs()),
            seed: args.seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            }),
            short: args.short,
            receipts: !args.no_receipts,
            tenants: args.tenants,
            settle_secs: args.settle_secs.unwrap_or(settle),
        };
        anyhow::ensure!(plan.events > 0, "--events must be at least 1");
        anyhow::ensure!(
            (1..=20).contains(&plan.tenants),
            "--tenants must be between 1 and 20"
        );
        anyhow::ensure!(plan.duration_secs >= 10, "--duration must be at least 10 s");
        Ok(plan)
    }

    fn load(&self) -> Duration {
        Duration::from_secs(self.duration_secs)
    }
}

/// The JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    /// `chaos`.
    pub subcommand: &'static str,
    /// `pass` or `fail`.
    pub verdict: &'static str,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// The host.
    pub machine: Machine,
    /// What was asked.
    pub plan: Plan,
    /// The notifier settings the run used.
    pub notifier_tuning: Vec<String>,
    /// The schedule: seconds from the start of the load, and the action.
    pub schedule: Vec<(f64, String)>,
    /// What was done, when and how it went.
    pub log: Vec<record::Entry>,
    /// How long the load took, in seconds.
    pub load_secs: f64,
    /// How long the system took to settle afterwards, in seconds.
    pub settle_secs: f64,
    /// Whether it settled within the bound.
    pub settled: bool,
    /// The load's retries, by cause.
    pub retries: std::collections::BTreeMap<String, u64>,
    /// The watcher's findings.
    pub watched: watch::Watched,
    /// The audit.
    pub audit: audit::Audit,
    /// Where the services' logs were kept (`--keep-logs`).
    pub logs: Option<PathBuf>,
    /// The binary the services ran from, when not this one (`--services-bin`).
    pub services_bin: Option<PathBuf>,
}

/// Runs `loa chaos`: prints the audit, writes the reports, and fails unless the audit
/// passed. Ctrl-C stops the run and still removes its processes, database and vhost.
pub async fn run(
    settings: &Settings,
    config_file: Option<&Path>,
    args: &ChaosArgs,
) -> anyhow::Result<()> {
    let plan = Plan::from_args(args)?;
    let report = tokio::select! {
        report = execute(settings, config_file, &plan, args) => report?,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the run's services, database and vhost were removed"),
    };
    let tables = tables(&report);
    let mut text = String::new();
    for (title, table) in &tables {
        let _ = write!(text, "\n{title}\n{table}");
    }
    let written = report::write(&args.out_dir, "chaos", &report, &markdown(&report, &tables))?;
    let _ = write!(
        text,
        "\nReports: {} and {} (also {})\nRepeat this schedule with --seed {}\n",
        written.json.display(),
        written.markdown.display(),
        written.latest.display(),
        report.plan.seed
    );
    if let Some(dir) = &report.logs {
        let _ = writeln!(text, "Service logs kept in {}", dir.display());
    }
    let failures = &report.audit.failures;
    if failures.is_empty() {
        text.push_str("\nChaos run passed: nothing lost, no unexplained duplicate, no stall.\n");
    } else {
        text.push_str("\nChaos run FAILED:\n");
        for f in failures {
            let _ = writeln!(text, "- {f}");
        }
    }
    if args.json {
        eprint!("{text}");
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{text}");
    }
    anyhow::ensure!(
        report.audit.passed(),
        "the chaos run's audit failed ({} finding(s))",
        failures.len()
    );
    Ok(())
}

/// The run proper: system, load, faults, settling, evidence, audit.
async fn execute(
    settings: &Settings,
    config_file: Option<&Path>,
    plan: &Plan,
    args: &ChaosArgs,
) -> anyhow::Result<ChaosReport> {
    let keep_logs = args.keep_logs;
    let started_at = Utc::now();
    let machine = Machine::describe();
    let steps = schedule::schedule(plan.seed, plan.load(), plan.short);
    let scheduled_kinds: Vec<String> = steps
        .iter()
        .map(|s| s.action.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    eprintln!(
        "Chaos run: {} events over {} s for {} tenants, {} scheduled faults (seed {}), receipts {}.",
        plan.events,
        plan.duration_secs,
        plan.tenants,
        steps.len(),
        plan.seed,
        if plan.receipts { "on" } else { "off" }
    );
    eprintln!("Starting the services as separate processes…");
    let options = SplitOptions {
        receipts: !args.no_receipts,
        settings: tuning()
            .into_iter()
            .filter(|(k, _)| std::env::var_os(k).is_none())
            .collect(),
        keep_logs,
        binary: args.services_bin.clone(),
    };
    let sut = system::start_with(
        settings,
        config_file,
        plan.tenants,
        RATE,
        Mode::Split,
        &options,
    )
    .await?;
    let intake = sut.intake.clone();
    let sandbox = sut.sandbox.clone();
    let notifier = sut.url("notifier").context("the notifier runs")?.to_owned();
    let tenants = sut.tenants.clone();
    let vhost = sut.env.name.clone();
    let logs = keep_logs.then(|| sut.log_dir().to_owned());
    let pool = harness_pool(&sut.env.database_url)?;
    let system = Arc::new(Mutex::new(sut));
    let record = Arc::new(record::Record::default());

    eprintln!("Offering the load and striking the faults…");
    let started = Instant::now();
    let chaos = Arc::new(faults::Chaos::new(
        Arc::clone(&system),
        Arc::clone(&record),
        pool.clone(),
        vhost,
        sandbox.clone(),
        notifier,
        started,
    )?);
    let accepted_so_far = Arc::new(AtomicUsize::new(0));
    let stop_watching = CancellationToken::new();
    let watcher = tokio::spawn(watch::watch(
        Arc::clone(&chaos),
        Arc::clone(&accepted_so_far),
        stop_watching.clone(),
    ));
    let striking = tokio::spawn(Arc::clone(&chaos).run(steps.clone()));
    let spec = load::LoadSpec {
        run: format!("{:x}", plan.seed % 0xff_ffff),
        events: plan.events,
        duration: plan.load(),
    };
    let offered = load::offer(&intake, &tenants, &spec, accepted_so_far).await;
    striking.await.context("the fault executor panicked")?;
    let offered = offered?;
    let load_secs = started.elapsed().as_secs_f64();

    eprintln!(
        "Load over after {load_secs:.0} s ({} events accepted); waiting for the system to settle…",
        offered.accepted.len()
    );
    let settle_started = Instant::now();
    let settled = settle(
        &pool,
        offered.accepted.len(),
        Duration::from_secs(plan.settle_secs),
    )
    .await;
    let settle_secs = settle_started.elapsed().as_secs_f64();
    // Late copies (a resend after a recheck) would land within this.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_watching.cancel();
    let watched = watcher.await.context("the watcher panicked")?;
    let generation = record.notifier_generation();
    if let Some(counts) = chaos.scrape_resends().await {
        record.observe_resends(generation, counts);
    }

    eprintln!("Auditing…");
    let evidence = evidence::gather(&pool, &sandbox, &record).await?;
    let (resends, missed_scrapes) = record.resends();
    let log = record.entries();
    let audit = audit::audit(&audit::Inputs {
        offered: &offered,
        evidence: &evidence,
        resends: &resends,
        missed_scrapes,
        watched: &watched,
        log: &log,
        stall_limit: STALL_LIMIT,
        scheduled_kinds: &scheduled_kinds,
    });

    drop(chaos);
    drop(pool);
    if let Ok(system) = Arc::try_unwrap(system) {
        system.into_inner().stop().await?;
    }
    Ok(ChaosReport {
        subcommand: "chaos",
        verdict: if audit.passed() { "pass" } else { "fail" },
        started_at,
        machine,
        plan: plan.clone(),
        notifier_tuning: tuning()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        schedule: steps
            .iter()
            .map(|s| (s.at.as_secs_f64(), s.action.to_string()))
            .collect(),
        log,
        load_secs,
        settle_secs,
        settled,
        retries: offered.retries.clone(),
        watched,
        audit,
        logs,
        services_bin: args.services_bin.clone(),
    })
}

/// [`NOTIFIER_TUNING`] with the environment's values where it sets them.
fn tuning() -> Vec<(String, String)> {
    NOTIFIER_TUNING
        .iter()
        .map(|(k, v)| {
            let value = std::env::var(k).unwrap_or_else(|_| (*v).to_owned());
            ((*k).to_owned(), value)
        })
        .collect()
}

/// A small pool on the run's database whose connections the run never terminates.
fn harness_pool(database_url: &str) -> anyhow::Result<Pool> {
    let separator = if database_url.contains('?') { '&' } else { '?' };
    loa_platform::db::pool(
        &format!(
            "{database_url}{separator}application_name={}",
            faults::APPLICATION_NAME
        ),
        4,
    )
}

/// Waits, at most `timeout`, until the tracker relayed everything it planned and
/// every delivery reached an end, as many as intake accepted events. Returns whether
/// it did.
async fn settle(pool: &Pool, accepted: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let done = async {
            let client = pool.get().await.ok()?;
            let row = client
                .query_one(
                    "SELECT (SELECT count(*) FROM tracker.outbox),
                            (SELECT count(*) FROM notifier.deliveries
                              WHERE status NOT IN ('sent', 'delivered', 'seen', 'failed')),
                            (SELECT count(*) FROM notifier.deliveries
                              WHERE status IN ('sent', 'delivered', 'seen', 'failed'))",
                    &[],
                )
                .await
                .ok()?;
            let (outbox, open, ended): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
            Some(outbox == 0 && open == 0 && ended >= accepted as i64)
        }
        .await;
        if done == Some(true) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "ok",
        Some(false) => "FAIL",
        None => "",
    }
}

/// The report's tables: the audit, what was done when, gaps and reasons.
fn tables(report: &ChaosReport) -> Vec<(String, Table)> {
    let mut audit = Table::new(&["check", "measured", "required", "verdict"]);
    for c in &report.audit.checks {
        audit.push(vec![
            c.check.clone(),
            c.measured.clone(),
            c.required.clone(),
            verdict(c.ok).to_owned(),
        ]);
    }
    let mut log = Table::new(&["at (s)", "action", "outcome"]);
    for e in &report.log {
        log.push(vec![
            report::num(e.at_secs, 1),
            e.action.clone(),
            if e.done {
                e.outcome.clone()
            } else {
                format!("NOT DONE: {}", e.outcome)
            },
        ]);
    }
    let settled = if report.settled {
        format!("settled {:.0} s after it", report.settle_secs)
    } else {
        format!("NOT settled within {:.0} s", report.settle_secs)
    };
    let mut out = vec![
        (
            format!(
                "Faults (seed {}; load {:.0} s, {settled})",
                report.plan.seed, report.load_secs
            ),
            log,
        ),
        ("Audit".to_owned(), audit),
    ];
    if !report.watched.gaps.is_empty() {
        let mut gaps = Table::new(&[
            "gap from (s)",
            "length (s)",
            "faults within 3 s before or during",
        ]);
        for g in &report.watched.gaps {
            let near: Vec<String> = report
                .log
                .iter()
                .filter(|e| {
                    e.at_secs >= g.start_secs - 3.0 && e.at_secs <= g.start_secs + g.length_secs
                })
                .map(|e| e.action.clone())
                .collect();
            gaps.push(vec![
                report::num(g.start_secs, 1),
                report::num(g.length_secs, 1),
                near.join("; "),
            ]);
        }
        out.push(("Gaps in sending while work waited (≥ 2 s)".to_owned(), gaps));
    }
    if !report.audit.undeliverable.is_empty() {
        let mut reasons = Table::new(&["reason (not at Zalo, ended)", "notifications"]);
        for (reason, n) in &report.audit.undeliverable {
            reasons.push(vec![reason.clone(), n.to_string()]);
        }
        out.push(("Undeliverable, by reason".to_owned(), reasons));
    }
    out
}

fn markdown(report: &ChaosReport, tables: &[(String, Table)]) -> String {
    let m = &report.machine;
    let mut md = format!(
        "# loa chaos\n\n- Verdict: **{}**\n- Started: {}\n- Machine: {}\n- Command: `{}`\n- Delivery receipts: {}\n- Notifier settings: `{}`\n{}\n",
        report.verdict,
        report.started_at.to_rfc3339(),
        m.line(),
        m.command,
        if report.plan.receipts { "on" } else { "off" },
        report.notifier_tuning.join(" "),
        report
            .services_bin
            .as_ref()
            .map(|b| format!("- Services run from: `{}`\n", b.display()))
            .unwrap_or_default(),
    );
    for (title, table) in tables {
        let _ = write!(md, "## {title}\n\n{}\n", table.markdown());
    }
    if !report.audit.failures.is_empty() {
        md.push_str("## Findings\n\n");
        for f in &report.audit.failures {
            let _ = writeln!(md, "- {f}");
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_read_in_seconds_or_minutes_and_zero_is_refused() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
