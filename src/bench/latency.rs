//! `loa bench latency`: fixed offered loads (open loop: a small batch every tick, sent
//! whether or not earlier ones were answered) and the event-to-send latency at each, so
//! the tail under normal load is known. Limits lifted, as in the pipeline run.

use super::{
    load::{self, millis, Client, Percentiles},
    pipeline::{infrastructure, trace, warm_up},
    procstat::{self, Machine},
    report::{num, Table},
    stages::{self, Stage},
    system::{self, Mode, ZaloRate},
    Goal, Outcome,
};
use crate::settings::Settings;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::Arc,
    time::Duration,
};
use tokio::sync::Semaphore;

/// Most batch posts in flight at once; beyond it the offered load is not held and the
/// report says so.
const MAX_IN_FLIGHT: usize = 256;

/// `loa bench latency` options.
#[derive(Debug, Clone, clap::Args)]
pub struct LatencyArgs {
    /// Offered loads in events per second, one run each.
    #[arg(long, value_delimiter = ',', default_value = "200,1000")]
    pub rates: Vec<u32>,
    /// Seconds each load is offered.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// One batch is posted every this many milliseconds.
    #[arg(long, default_value_t = 10)]
    pub tick_ms: u64,
    /// Tenants; each tick's batch goes to the next one.
    #[arg(long, default_value_t = 8)]
    pub tenants: usize,
    /// Run each service as its own `loa run <target>` process.
    #[arg(long)]
    pub split: bool,
}

/// One offered load's result.
#[derive(Debug, Clone, Serialize)]
pub struct RateResult {
    /// Offered events per second.
    pub offered_per_second: u32,
    /// Events offered.
    pub events: usize,
    /// Events actually posted per second (first to last post).
    pub posted_per_second: f64,
    /// Events whose message reached the sandbox.
    pub delivered: usize,
    /// Sandbox `received_at` − the batch's 202, in ms.
    pub latency_ms: Percentiles,
    /// Sandbox `received_at` − the moment the batch was posted (adds intake's
    /// publish-and-confirm time), in ms.
    pub post_to_send_ms: Percentiles,
    /// Times the in-flight cap was hit (the load was not offered on time).
    pub late_ticks: usize,
    /// CPU seconds per 1,000 events per measured process at this load.
    pub cpu_seconds_per_1000_events: BTreeMap<String, f64>,
    /// PostgreSQL, RabbitMQ, load generator and machine CPU per 1,000 events.
    pub other_cpu_seconds_per_1000_events: BTreeMap<String, f64>,
    /// Where the latency goes, or why that is unknown.
    pub stages: Result<Vec<Stage>, String>,
}

/// Runs every offered load on one system.
pub async fn run(
    base: &Settings,
    config_file: Option<&Path>,
    args: &LatencyArgs,
) -> anyhow::Result<Outcome> {
    anyhow::ensure!(
        !args.rates.is_empty() && args.rates.iter().all(|r| *r > 0),
        "--rates must be positive"
    );
    anyhow::ensure!(
        args.seconds > 0 && args.tick_ms > 0,
        "--seconds and --tick-ms must be positive"
    );
    let started_at = Utc::now();
    let machine = Machine::describe();
    let mode = if args.split {
        Mode::Split
    } else {
        Mode::InProcess
    };
    eprintln!("Starting the services ({})…", mode.as_str());
    let sut = system::start(base, config_file, args.tenants, ZaloRate::LIFTED, mode).await?;
    let client = Client::new(&sut.intake, &sut.sandbox)?;
    warm_up(&client, &sut.tenants).await?;

    let mut results = Vec::new();
    let mut failure = None;
    for (n, &rate) in args.rates.iter().enumerate() {
        eprintln!("Offering {rate} events/s for {} s…", args.seconds);
        client.reset().await?;
        client.set_zns_limits(None).await?;
        let run_id = format!("l{n}{:x}", Utc::now().timestamp_millis() % 0xff_ffff);
        let result = offer(&client, &sut, &run_id, rate, args).await?;
        if result.delivered < result.events && failure.is_none() {
            failure = Some(format!(
                "at {rate}/s only {} of {} events were delivered",
                result.delivered, result.events
            ));
        }
        results.push(result);
        // Let the system settle between loads.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mode_name = sut.mode.as_str();
    sut.stop().await?;

    let goals: Vec<Goal> = results
        .iter()
        .filter(|r| r.offered_per_second == 1_000)
        .map(|r| {
            Goal::below(
                "p99 event-to-send latency at 1,000 events/s (ms)",
                50.0,
                r.latency_ms.p99,
            )
        })
        .collect();
    let mut notes = vec![format!(
        "Open loop: one batch every {} ms to the next of {} tenants; latency is the sandbox's received_at minus \
         the instant the batch got its 202 (post-to-send adds intake's confirmed publish).",
        args.tick_ms, args.tenants
    )];
    if mode == Mode::InProcess {
        notes.push(
            "In-process mode: `all` is this one process, services and load generator together."
                .to_owned(),
        );
    }
    let mut table = Table::new(&[
        "offered/s",
        "events",
        "delivered",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "post-to-send p99 ms",
    ]);
    for r in &results {
        table.push(vec![
            r.offered_per_second.to_string(),
            r.events.to_string(),
            r.delivered.to_string(),
            num(r.latency_ms.p50, 1),
            num(r.latency_ms.p95, 1),
            num(r.latency_ms.p99, 1),
            num(r.latency_ms.max, 1),
            num(r.post_to_send_ms.p99, 1),
        ]);
    }
    let mut cpu_table = Table::new(&["offered/s", "process", "CPU s / 1,000 events"]);
    for r in &results {
        for (name, s) in r
            .cpu_seconds_per_1000_events
            .iter()
            .chain(&r.other_cpu_seconds_per_1000_events)
        {
            cpu_table.push(vec![
                r.offered_per_second.to_string(),
                name.clone(),
                num(*s, 3),
            ]);
        }
    }
    let mut tables = vec![
        ("Latency at fixed offered loads".to_owned(), table),
        ("CPU per load".to_owned(), cpu_table),
    ];
    for r in &results {
        match &r.stages {
            Ok(s) => tables.push((
                format!("Where the latency goes at {}/s", r.offered_per_second),
                stages::table(s),
            )),
            Err(e) => notes.push(format!(
                "No stage breakdown at {}/s: {e}.",
                r.offered_per_second
            )),
        }
    }
    tables.push(("Goals (issue 4)".to_owned(), super::goals_table(&goals)));
    let json = serde_json::json!({
        "subcommand": "latency",
        "started_at": started_at,
        "mode": mode_name,
        "machine": machine,
        "seconds": args.seconds,
        "tick_ms": args.tick_ms,
        "tenants": args.tenants,
        "rates": results,
        "goals": goals,
        "notes": notes,
    });
    Ok(Outcome {
        name: "latency",
        tables,
        json,
        failure,
    })
}

/// Offers `rate` events/s for `args.seconds`, waits for the deliveries and measures.
async fn offer(
    client: &Client,
    sut: &system::SystemUnderTest,
    run_id: &str,
    rate: u32,
    args: &LatencyArgs,
) -> anyhow::Result<RateResult> {
    let ticks = (args.seconds * 1000 / args.tick_ms).max(1) as usize;
    let tick = Duration::from_millis(args.tick_ms);
    // Events due by tick k: round(rate * k * tick), so the total is exact.
    let due =
        |k: usize| ((rate as f64) * (k as f64) * (args.tick_ms as f64) / 1000.0).round() as usize;
    let now = Utc::now();
    let n_tenants = sut.tenants.len().max(1);
    let mut batches = Vec::with_capacity(ticks);
    for k in 1..=ticks {
        let tenant = &sut.tenants[k % n_tenants];
        let events: Vec<_> = (due(k - 1)..due(k))
            .map(|i| load::event(run_id, &tenant.id, i, now))
            .collect();
        batches.push((!events.is_empty()).then(|| load::make_batch(&tenant.token, &events)));
    }
    let total = due(ticks);

    let cpu_before = procstat::snapshot(&sut.processes, &sut.env.name);
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let mut late_ticks = 0;
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for batch in batches {
        interval.tick().await;
        let Some(batch) = batch else { continue };
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                late_ticks += 1;
                Arc::clone(&permits).acquire_owned().await?
            }
        };
        let client = client.clone();
        tasks.spawn(async move {
            let sent = Utc::now();
            let accepted = client.post_batch(&batch).await;
            drop(permit);
            accepted.map(|at| (sent, at, batch))
        });
    }
    let mut posted: HashMap<String, (DateTime<Utc>, DateTime<Utc>)> = HashMap::with_capacity(total);
    let (mut first_sent, mut last_sent) = (None::<DateTime<Utc>>, None::<DateTime<Utc>>);
    let mut done_batches = Vec::new();
    let mut done_accepted = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (sent, accepted, batch) = joined??;
        first_sent = Some(first_sent.map_or(sent, |f| f.min(sent)));
        last_sent = Some(last_sent.map_or(sent, |l| l.max(sent)));
        for id in &batch.tracking_ids {
            posted.insert(id.clone(), (sent, accepted));
        }
        done_batches.push(batch);
        done_accepted.push(accepted);
    }
    let (_, _complete) = client
        .wait_accepted(total as u64, Duration::from_secs(60 + args.seconds))
        .await?;
    let cpu = cpu_before.usage_since(&sut.processes, &sut.env.name);
    let messages = client.messages().await?;
    let traced = trace(&done_batches, &done_accepted, &messages);
    let stages = stages::breakdown(&sut.env.database_url, &traced).await;

    let mut seen: HashMap<&str, DateTime<Utc>> = HashMap::with_capacity(total);
    for m in &messages {
        if let Some(id) = m.tracking_id.as_deref() {
            if posted.contains_key(id) {
                seen.entry(id).or_insert(m.received_at);
            }
        }
    }
    let (mut latency, mut post_to_send): (Vec<f64>, Vec<f64>) = seen
        .iter()
        .filter_map(|(id, received)| {
            let (sent, accepted) = posted.get(*id)?;
            Some((millis(*accepted, *received), millis(*sent, *received)))
        })
        .unzip();
    let span = match (first_sent, last_sent) {
        (Some(f), Some(l)) => millis(f, l) / 1000.0 + args.tick_ms as f64 / 1000.0,
        _ => f64::NAN,
    };
    let per_1000 = |s: f64| s * 1000.0 / total.max(1) as f64;
    Ok(RateResult {
        offered_per_second: rate,
        events: total,
        posted_per_second: total as f64 / span,
        delivered: seen.len(),
        latency_ms: Percentiles::of(&mut latency),
        post_to_send_ms: Percentiles::of(&mut post_to_send),
        late_ticks,
        cpu_seconds_per_1000_events: cpu
            .services
            .iter()
            .map(|(n, s)| (n.clone(), per_1000(*s)))
            .collect(),
        other_cpu_seconds_per_1000_events: infrastructure(&cpu, sut.mode, per_1000),
        stages: stages.map_err(|e| format!("{e:#}")),
    })
}
