//! `loa bench pipeline`: N events through intake's batch endpoint as fast as the
//! system accepts them, each becoming one ZNS message at the sandbox (limits lifted).
//!
//! The broker baseline runs first, in the same run. Throughput is N divided by the time
//! from the first 202 to the sandbox's `received_at` of the last message; each event's
//! latency is its message's `received_at` minus the instant its batch got its 202.

use super::{
    broker::{self, BrokerReport},
    load::{self, millis, Client, Percentiles},
    procstat::{self, CpuUsage, Machine},
    report::{num, opt_num, Table},
    stages::{self, Stage, Traced},
    system::{self, Mode, ZaloRate},
    Goal, Outcome,
};
use crate::settings::Settings;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

/// `loa bench pipeline` options.
#[derive(Debug, Clone, clap::Args)]
pub struct PipelineArgs {
    /// Events pushed through the pipeline.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Tenants (provinces) the events are spread over, each with its own Zalo app.
    #[arg(long, default_value_t = 8)]
    pub tenants: usize,
    /// Concurrent HTTP posters.
    #[arg(long, default_value_t = 8)]
    pub posters: usize,
    /// Events per `POST /v1/events/batch` (at most 500).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Messages of the same-run broker baseline (per run).
    #[arg(long, default_value_t = 50_000)]
    pub baseline_messages: usize,
    /// Baseline runs; the median one is the ratio's denominator.
    #[arg(long, default_value_t = 3)]
    pub baseline_runs: usize,
    /// Give up waiting for deliveries after this many seconds (default: 120 + 1 s per
    /// 100 events).
    #[arg(long)]
    pub timeout_secs: Option<u64>,
    /// Run each service as its own `loa run <target>` process.
    #[arg(long)]
    pub split: bool,
    /// Latency the sandbox adds to every ZNS call, in ms (a sandbox fault), to see
    /// the pipeline against Zalo's real round trip (tens to hundreds of ms) rather
    /// than a loopback answer.
    #[arg(long, default_value_t = 0)]
    pub zalo_latency_ms: u64,
}

/// The pipeline run's result (the JSON report).
#[derive(Debug, Clone, Serialize)]
pub struct PipelineReport {
    /// `pipeline`.
    pub subcommand: &'static str,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// `split` or `in-process`.
    pub mode: &'static str,
    /// The host.
    pub machine: Machine,
    /// Events posted (each plans exactly one notification).
    pub events: usize,
    /// Tenants.
    pub tenants: usize,
    /// Latency the sandbox added to every ZNS call (`--zalo-latency-ms`).
    pub zalo_latency_ms: u64,
    /// Concurrent posters.
    pub posters: usize,
    /// Events per HTTP batch.
    pub batch_size: usize,
    /// Messages the sandbox accepted for this run's events (distinct tracking ids).
    pub delivered: usize,
    /// Messages beyond one per event.
    pub duplicates: usize,
    /// First 202 to last `received_at`, in seconds.
    pub seconds: f64,
    /// Sustained events per second end to end.
    pub events_per_second: f64,
    /// Start of posting to the last 202, in seconds.
    pub accept_seconds: f64,
    /// Events per second intake accepted.
    pub accepted_per_second: f64,
    /// The same-run raw broker figure.
    pub baseline_messages_per_second: f64,
    /// The baseline run in full.
    pub baseline: BrokerReport,
    /// `events_per_second / baseline_messages_per_second`.
    pub ratio: f64,
    /// Event-to-send latency (`received_at` − the batch's 202), in ms.
    pub latency_ms: Percentiles,
    /// Peak RSS (`VmHWM`) per measured process, MiB.
    pub peak_rss_mb: BTreeMap<String, f64>,
    /// CPU seconds per 1,000 events per measured process.
    pub cpu_seconds_per_1000_events: BTreeMap<String, f64>,
    /// CPU seconds per 1,000 events of PostgreSQL (this run's backends), RabbitMQ (the
    /// whole node), the load generator (split mode) and the whole machine (anything
    /// else running on it included).
    pub other_cpu_seconds_per_1000_events: BTreeMap<String, f64>,
    /// Where the latency goes, stage by stage (`None` when the services' tables could
    /// not be read).
    pub stages: Option<Vec<Stage>>,
    /// The sandbox's highest one-second rate.
    pub sandbox_peak_rate_per_second: Option<f64>,
    /// Issue 4's goals and whether this run met them.
    pub goals: Vec<Goal>,
    /// Remarks a reader needs (e.g. what `all` includes).
    pub notes: Vec<String>,
}

/// Runs the pipeline benchmark.
pub async fn run(
    base: &Settings,
    config_file: Option<&Path>,
    args: &PipelineArgs,
) -> anyhow::Result<Outcome> {
    anyhow::ensure!(args.events > 0, "--events must be at least 1");
    let started_at = Utc::now();
    let machine = Machine::describe();
    let mode = if args.split {
        Mode::Split
    } else {
        Mode::InProcess
    };

    eprintln!(
        "Measuring the broker baseline ({} × {} messages)…",
        args.baseline_runs.max(1),
        args.baseline_messages
    );
    let probe = system::bench_tenants(1, "http://127.0.0.1:1", ZaloRate::LIFTED);
    let body = load::event_message_bytes(&[system::BenchTenant {
        id: probe[0].id.clone(),
        token: String::new(),
    }])?;
    let baseline =
        broker::measure(args.baseline_messages.max(1), &body, args.baseline_runs).await?;

    eprintln!("Starting the services ({})…", mode.as_str());
    let sut = system::start(base, config_file, args.tenants, ZaloRate::LIFTED, mode).await?;
    let client = Client::new(&sut.intake, &sut.sandbox)?;
    warm_up(&client, &sut.tenants).await?;
    if args.zalo_latency_ms > 0 {
        client.add_zns_latency(args.zalo_latency_ms).await?;
    }

    let run_id = format!("{:x}", Utc::now().timestamp_millis() % 0xff_ffff);
    let batches = Arc::new(load::batches(
        &run_id,
        &sut.tenants,
        args.events,
        args.batch,
    ));
    eprintln!(
        "Posting {} events in {} batches from {} posters…",
        args.events,
        batches.len(),
        args.posters
    );
    let cpu_before = procstat::snapshot(&sut.processes, &sut.env.name);
    let posting_started = Utc::now();
    let accepted_at = post_all(&client, &batches, args.posters).await?;
    let last_accept = accepted_at.iter().copied().max().unwrap_or(posting_started);

    let timeout = Duration::from_secs(args.timeout_secs.unwrap_or(120 + args.events as u64 / 100));
    let (stats, complete) = client.wait_accepted(args.events as u64, timeout).await?;
    let cpu = cpu_before.usage_since(&sut.processes, &sut.env.name);
    let peak_rss_mb: BTreeMap<String, f64> = sut
        .processes
        .iter()
        .filter_map(|p| Some((p.name.clone(), procstat::peak_rss_mb(p.pid)?)))
        .collect();
    let messages = client.messages().await?;
    let mode_name = sut.mode.as_str();
    let traced = trace(&batches, &accepted_at, &messages);
    let stages = stages::breakdown(&sut.env.database_url, &traced).await;
    sut.stop().await?;

    // Match each message to its batch's 202.
    let mut accepted_by_id: HashMap<&str, DateTime<Utc>> = HashMap::with_capacity(args.events);
    for (batch, at) in batches.iter().zip(&accepted_at) {
        for id in &batch.tracking_ids {
            accepted_by_id.insert(id.as_str(), *at);
        }
    }
    let mut seen: HashMap<&str, DateTime<Utc>> = HashMap::with_capacity(args.events);
    let mut ours = 0usize;
    for m in &messages {
        let Some(id) = m.tracking_id.as_deref() else {
            continue;
        };
        if accepted_by_id.contains_key(id) {
            ours += 1;
            seen.entry(id).or_insert(m.received_at);
        }
    }
    let mut latencies: Vec<f64> = seen
        .iter()
        .filter_map(|(id, received)| Some(millis(*accepted_by_id.get(id)?, *received)))
        .collect();
    let first_accept = accepted_at.iter().copied().min().unwrap_or(posting_started);
    let last_delivery = seen.values().copied().max().unwrap_or(last_accept);
    let seconds = millis(first_accept, last_delivery) / 1000.0;
    let delivered = seen.len();
    let events_per_second = delivered as f64 / seconds;
    let accept_seconds = millis(posting_started, last_accept) / 1000.0;
    let per_1000 = |s: f64| s * 1000.0 / args.events as f64;
    let ratio = events_per_second / baseline.messages_per_second;
    let latency = Percentiles::of(&mut latencies);

    let mut notes = Vec::new();
    if mode == Mode::InProcess {
        notes.push(
            "In-process mode: `all` is this one process, which runs the four services and the load generator \
             (HTTP posters, pre-serialised bodies); use --split for per-service figures and the per-service \
             memory goal."
                .to_owned(),
        );
    }
    notes.push(
        "PostgreSQL CPU counts this run's backends only; RabbitMQ CPU is the whole node and the machine figure \
         is every process on the host, so both include anything else running at the time."
            .to_owned(),
    );
    let stages = match stages {
        Ok(s) => Some(s),
        Err(e) => {
            notes.push(format!("No stage breakdown: {e:#}."));
            None
        }
    };
    if !complete {
        notes.push(format!(
            "Incomplete: only {} of {} events reached the sandbox within {timeout:?}.",
            stats.accepted, args.events
        ));
    }

    let mut goals = vec![
        Goal::at_least("pipeline events/s", 5_000.0, events_per_second),
        Goal::at_least("ratio to the broker baseline", 0.25, ratio),
    ];
    // The memory goal is per service: `all` (four services and the load generator in
    // one process) is not held to it; the sandbox stands in for Zalo.
    for (name, mb) in &peak_rss_mb {
        if name != "zalo-sandbox" && name != "all" {
            goals.push(Goal::at_most(
                &format!("peak RSS of {name} (MiB)"),
                100.0,
                *mb,
            ));
        }
    }

    let report = PipelineReport {
        subcommand: "pipeline",
        started_at,
        mode: mode_name,
        machine,
        events: args.events,
        tenants: args.tenants,
        zalo_latency_ms: args.zalo_latency_ms,
        posters: args.posters,
        batch_size: args.batch.clamp(1, 500),
        delivered,
        duplicates: ours - delivered,
        seconds,
        events_per_second,
        accept_seconds,
        accepted_per_second: args.events as f64 / accept_seconds,
        baseline_messages_per_second: baseline.messages_per_second,
        baseline,
        ratio,
        latency_ms: latency,
        cpu_seconds_per_1000_events: cpu
            .services
            .iter()
            .map(|(n, s)| (n.clone(), per_1000(*s)))
            .collect(),
        other_cpu_seconds_per_1000_events: infrastructure(&cpu, mode, per_1000),
        peak_rss_mb,
        sandbox_peak_rate_per_second: stats.peak_rate_per_second,
        stages,
        goals,
        notes,
    };
    let failure = (!complete || delivered < args.events).then(|| {
        format!(
            "only {delivered} of {} events were delivered (the sandbox counted {})",
            args.events, stats.accepted
        )
    });
    Ok(Outcome {
        name: "pipeline",
        tables: tables(&report),
        json: serde_json::to_value(&report)?,
        failure,
    })
}

/// PostgreSQL, RabbitMQ, the load generator (when it is a process of its own) and
/// machine CPU per 1,000 events.
pub fn infrastructure(
    cpu: &CpuUsage,
    mode: Mode,
    per_1000: impl Fn(f64) -> f64,
) -> BTreeMap<String, f64> {
    let harness = if mode == Mode::Split {
        cpu.harness
    } else {
        None
    };
    // What the machine spent on anything else: a shared host's noise, made visible.
    let ours: f64 = cpu.services.iter().map(|(_, s)| s).sum::<f64>()
        + cpu.postgres.unwrap_or(0.0)
        + cpu.rabbitmq.unwrap_or(0.0)
        + harness.unwrap_or(0.0);
    let others = cpu.machine.map(|m| (m - ours).max(0.0));
    let mut out: BTreeMap<String, f64> = [
        ("postgres (this database)", cpu.postgres),
        ("rabbitmq (whole node)", cpu.rabbitmq),
        ("load generator (loa bench)", harness),
        ("other processes on the host", others),
        ("machine (everything)", cpu.machine),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k.to_owned(), per_1000(v?))))
    .collect();
    if mode == Mode::Split {
        for (service, s) in &cpu.postgres_by_service {
            out.insert(format!("postgres for {service}"), per_1000(*s));
        }
    }
    out
}

/// Posts one small batch per tenant and waits for its messages, so connections,
/// access tokens and caches are warm; then clears the sandbox and lifts its limits.
pub async fn warm_up(client: &Client, tenants: &[system::BenchTenant]) -> anyhow::Result<()> {
    let batches = load::batches("warm", tenants, tenants.len() * 4, 4);
    for b in &batches {
        client.post_batch(b).await?;
    }
    let n = batches.iter().map(|b| b.tracking_ids.len()).sum::<usize>() as u64;
    let (_, done) = client.wait_accepted(n, Duration::from_secs(60)).await?;
    anyhow::ensure!(
        done,
        "the warm-up events did not reach the sandbox within 60 s; is the pipeline working?"
    );
    client.reset().await?;
    client.set_zns_limits(None).await
}

/// Posts every batch from `posters` concurrent posters as fast as intake accepts
/// them; returns each batch's 202 instant, by batch index.
pub async fn post_all(
    client: &Client,
    batches: &Arc<Vec<load::Batch>>,
    posters: usize,
) -> anyhow::Result<Vec<DateTime<Utc>>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..posters.max(1) {
        let (client, batches, next) = (client.clone(), Arc::clone(batches), Arc::clone(&next));
        tasks.spawn(async move {
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(batch) = batches.get(i) else { break };
                done.push((i, client.post_batch(batch).await?));
            }
            anyhow::Ok(done)
        });
    }
    let mut accepted = vec![DateTime::<Utc>::MIN_UTC; batches.len()];
    while let Some(joined) = tasks.join_next().await {
        for (i, at) in joined?? {
            accepted[i] = at;
        }
    }
    Ok(accepted)
}

/// Each delivered event of `batches` with its 202 and its sandbox arrival, by tracking id.
pub fn trace(
    batches: &[load::Batch],
    accepted_at: &[DateTime<Utc>],
    messages: &[load::SandboxMessage],
) -> HashMap<String, Traced> {
    let received: HashMap<&str, DateTime<Utc>> = messages
        .iter()
        .filter_map(|m| Some((m.tracking_id.as_deref()?, m.received_at)))
        .collect();
    let mut out = HashMap::new();
    for (batch, at) in batches.iter().zip(accepted_at) {
        for (tracking_id, event_id) in batch.tracking_ids.iter().zip(&batch.event_ids) {
            if let Some(r) = received.get(tracking_id.as_str()) {
                out.insert(
                    tracking_id.clone(),
                    Traced {
                        event_id: event_id.clone(),
                        accepted_at: *at,
                        received_at: *r,
                    },
                );
            }
        }
    }
    out
}

fn tables(r: &PipelineReport) -> Vec<(String, Table)> {
    let summary = Table::new(&["pipeline", "value"])
        .row(&["mode", r.mode])
        .row(&["Zalo latency added (ms)", &r.zalo_latency_ms.to_string()])
        .row(&["events (tenants)", &format!("{} ({})", r.events, r.tenants)])
        .row(&[
            "delivered (duplicates)",
            &format!("{} ({})", r.delivered, r.duplicates),
        ])
        .row(&["events/s end to end", &num(r.events_per_second, 0)])
        .row(&[
            "events/s accepted by intake",
            &num(r.accepted_per_second, 0),
        ])
        .row(&[
            "broker baseline msg/s (same run, median)",
            &num(r.baseline_messages_per_second, 0),
        ])
        .row(&["ratio to baseline", &format!("{:.1} %", r.ratio * 100.0)])
        .row(&[
            "event-to-send latency p50 / p95 / p99 / max (ms)",
            &format!(
                "{} / {} / {} / {}",
                num(r.latency_ms.p50, 1),
                num(r.latency_ms.p95, 1),
                num(r.latency_ms.p99, 1),
                num(r.latency_ms.max, 1)
            ),
        ]);
    let mut per_process = Table::new(&["process", "CPU s / 1,000 events", "peak RSS (MiB)"]);
    for (name, cpu) in &r.cpu_seconds_per_1000_events {
        per_process.push(vec![
            name.clone(),
            num(*cpu, 3),
            opt_num(r.peak_rss_mb.get(name).copied(), 1),
        ]);
    }
    for (name, cpu) in &r.other_cpu_seconds_per_1000_events {
        per_process.push(vec![name.clone(), num(*cpu, 3), "-".to_owned()]);
    }
    let mut out = vec![
        ("Pipeline".to_owned(), summary),
        ("Per process".to_owned(), per_process),
    ];
    if let Some(s) = &r.stages {
        out.push(("Where the latency goes".to_owned(), stages::table(s)));
    }
    out.push(("Goals (issue 4)".to_owned(), super::goals_table(&r.goals)));
    out
}
