//! `loa bench fanout`: issue 10's benchmark. A broadcast audience of `--recipients`
//! (1,000,000) citizens is imported through `POST /v1/subscribers/import` (one
//! streamed ndjson request), then one broadcast to all of them is created and the
//! notifier expands and enqueues it, against the sandbox with Zalo's limits lifted.
//!
//! Reported: the import rate (lines/s, first byte sent to the answer), the fan-out's
//! enqueue rate (recipients/s, the broadcast's creation to its `expanded_at`, both
//! PostgreSQL's clock) and the notifier's peak RSS (`VmHWM` of its own process: the
//! services run split, as `loa run <target>` children). Each rate also as a ratio to
//! a baseline measured in the same run, since the machine is noisy: the raw broker
//! (one broadcast message per recipient, published with confirms to a quorum queue and
//! consumed) for the fan-out, and a plain PostgreSQL `COPY` of the same rows into a
//! copy of the subscribers table (its indexes included) for the import.
//!
//! The notifier's sender runs meanwhile, sending what the fan-out enqueues, as it
//! would in production: the fan-out's rate is what it achieves beside it. With
//! `--drain` the run also waits until every recipient was sent and checks, in the
//! notifier's database and at the sandbox, that each got exactly one message.

use super::{
    broker::{self, BrokerReport},
    load::Client,
    procstat::{self, CpuUsage, Machine, Measured},
    report::{num, opt_num, Table},
    system::{self, Mode, SystemUnderTest, ZaloRate},
    Goal, Outcome,
};
use crate::settings::Settings;
use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::tokio_postgres::{self, NoTls};
use futures_util::SinkExt;
use serde::Serialize;
use serde_json::{json, Value};
use std::{collections::BTreeMap, io::Write as _, path::Path, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    time::Instant,
};

/// Bytes of ndjson per HTTP chunk of the streamed import.
const IMPORT_CHUNK: usize = 64 * 1024;
/// Rows per `COPY` buffer of the PostgreSQL baseline.
const COPY_CHUNK: usize = 256 * 1024;
/// How often the broadcast's checkpoint is read while it expands.
const POLL: Duration = Duration::from_millis(100);

/// `loa bench fanout` options.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// Citizens imported and sent the broadcast.
    #[arg(long, default_value_t = 1_000_000)]
    pub recipients: usize,
    /// Messages of the same-run broker baseline (per run).
    #[arg(long, default_value_t = 100_000)]
    pub baseline_messages: usize,
    /// Broker baseline runs; the median one is the ratio's denominator.
    #[arg(long, default_value_t = 1)]
    pub baseline_runs: usize,
    /// Also wait until every recipient was sent, and check that each got exactly one
    /// message (in the database and at the sandbox).
    #[arg(long)]
    pub drain: bool,
    /// Give up waiting for the import, the fan-out or the drain after this many
    /// seconds each (default: 120 + 1 s per 5,000 recipients, 1 s per 1,000 to drain).
    #[arg(long)]
    pub timeout_secs: Option<u64>,
}

/// The import's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ImportFigures {
    /// Lines sent.
    pub lines: usize,
    /// Bytes sent.
    pub bytes: usize,
    /// First byte sent to the answer, seconds.
    pub seconds: f64,
    /// Lines per second.
    pub lines_per_second: f64,
    /// The answer's `imported`.
    pub imported: u64,
    /// The answer's `updated`.
    pub updated: u64,
    /// The answer's `rejected_total`.
    pub rejected: u64,
    /// CPU seconds per 1,000 lines: notifier, PostgreSQL, load generator.
    pub cpu_seconds_per_1000_lines: BTreeMap<String, f64>,
}

/// The PostgreSQL baseline: a plain `COPY` of the same rows.
#[derive(Debug, Clone, Serialize)]
pub struct CopyBaseline {
    /// Rows copied.
    pub rows: usize,
    /// Seconds.
    pub seconds: f64,
    /// Rows per second.
    pub rows_per_second: f64,
}

/// The fan-out's figures.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutFigures {
    /// The broadcast's audience when created.
    pub audience: i64,
    /// Recipients enqueued (the checkpoint's `queued` at the end).
    pub queued: i64,
    /// Creation to `expanded_at`, seconds.
    pub seconds: f64,
    /// Recipients enqueued per second.
    pub recipients_per_second: f64,
    /// Creation to the first checkpoint, seconds (the round's wait included).
    pub first_checkpoint_seconds: Option<f64>,
    /// Messages the sandbox had accepted when the expansion ended (the sender
    /// runs meanwhile).
    pub sent_meanwhile: u64,
    /// CPU seconds per 1,000 recipients: notifier, PostgreSQL, RabbitMQ, the whole
    /// machine (the sender's work meanwhile included).
    pub cpu_seconds_per_1000_recipients: BTreeMap<String, f64>,
}

/// The drain's figures (`--drain`).
#[derive(Debug, Clone, Serialize)]
pub struct DrainFigures {
    /// Whether the broadcast completed in time.
    pub completed: bool,
    /// Creation to completion, seconds.
    pub seconds: f64,
    /// The notifier's delivery rows of the broadcast.
    pub deliveries: i64,
    /// Distinct notification ids among them.
    pub distinct_recipients: i64,
    /// Of them, sent (or delivered, or seen).
    pub sent: i64,
    /// Messages the sandbox accepted.
    pub sandbox_accepted: u64,
    /// Distinct tracking ids among the sandbox's messages.
    pub sandbox_distinct: usize,
    /// Refusals by Zalo code.
    pub sandbox_refused: BTreeMap<String, u64>,
}

/// The fan-out run's result (the JSON report).
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    /// `fanout`.
    pub subcommand: &'static str,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// Always `split`: the notifier's memory is its own.
    pub mode: &'static str,
    /// The host.
    pub machine: Machine,
    /// Recipients.
    pub recipients: usize,
    /// Import lines per second.
    pub import_lines_per_second: f64,
    /// Recipients enqueued per second.
    pub enqueued_per_second: f64,
    /// The notifier's peak RSS (`VmHWM`), MiB.
    pub notifier_peak_rss_mb: f64,
    /// The notifier's RSS right after the import and after the fan-out, MiB.
    pub notifier_rss_mb: BTreeMap<String, f64>,
    /// The same-run broker baseline, messages per second.
    pub baseline_messages_per_second: f64,
    /// The same-run PostgreSQL `COPY` baseline, rows per second.
    pub baseline_copy_rows_per_second: f64,
    /// `enqueued_per_second / baseline_messages_per_second`.
    pub enqueue_ratio: f64,
    /// `import_lines_per_second / baseline_copy_rows_per_second`.
    pub import_ratio: f64,
    /// The import in full.
    pub import: ImportFigures,
    /// The fan-out in full.
    pub fanout: FanoutFigures,
    /// The drain (`--drain`).
    pub drain: Option<DrainFigures>,
    /// The broker baseline in full.
    pub baseline: BrokerReport,
    /// The PostgreSQL baseline in full.
    pub copy_baseline: CopyBaseline,
    /// Issue 10's goals.
    pub goals: Vec<Goal>,
    /// Remarks.
    pub notes: Vec<String>,
}

/// Runs the fan-out benchmark.
pub async fn run(
    base: &Settings,
    config_file: Option<&Path>,
    args: &FanoutArgs,
) -> anyhow::Result<Outcome> {
    anyhow::ensure!(args.recipients > 0, "--recipients must be at least 1");
    anyhow::ensure!(
        args.recipients <= 10_000_000,
        "--recipients is at most 10,000,000 (the phone numbers run out)"
    );
    let started_at = Utc::now();
    let machine = Machine::describe();
    let n = args.recipients;
    let timeout = Duration::from_secs(args.timeout_secs.unwrap_or(120 + n as u64 / 5_000));

    eprintln!(
        "Measuring the broker baseline ({} × {} broadcast messages)…",
        args.baseline_runs.max(1),
        args.baseline_messages
    );
    let baseline = broker::measure(
        args.baseline_messages.max(1),
        &sample_message(),
        args.baseline_runs,
    )
    .await?;

    eprintln!("Starting the services (split)…");
    let mut sut = system::start(base, config_file, 1, ZaloRate::LIFTED, Mode::Split).await?;
    let notifier_url = sut
        .url("notifier")
        .context("the split system has a notifier")?
        .to_owned();
    let notifier = sut
        .processes
        .iter()
        .find(|p| p.name == "notifier")
        .cloned()
        .context("the split system measures the notifier")?;
    let client = Client::new(&sut.intake, &sut.sandbox)?;
    client.set_zns_limits(None).await?;
    let db = connect(&sut.env.database_url).await?;

    eprintln!("PostgreSQL baseline: COPY of {n} subscriber rows…");
    let copy_baseline = copy_baseline(&db, n).await?;

    eprintln!("Importing {n} subscribers through POST /v1/subscribers/import (streamed)…");
    let import = import(&sut, &notifier, &notifier_url, n, timeout).await?;
    let rss_after_import = procstat::rss_mb(notifier.pid);

    eprintln!("Creating a broadcast to all of them and waiting for the fan-out…");
    let (id, fanout) = fan_out(&mut sut, &notifier, &db, &client, &notifier_url, timeout).await?;
    let rss_after_fanout = procstat::rss_mb(notifier.pid);
    let drain = if args.drain {
        eprintln!("Waiting until every recipient is sent…");
        let limit = timeout + Duration::from_secs(n as u64 / 1_000);
        Some(drain(&db, &client, &id, limit).await?)
    } else {
        None
    };
    let notifier_peak_rss_mb = procstat::peak_rss_mb(notifier.pid).unwrap_or(0.0);
    drop(db);
    sut.stop().await?;

    let enqueue_ratio = fanout.recipients_per_second / baseline.messages_per_second;
    let import_ratio = import.lines_per_second / copy_baseline.rows_per_second;
    let goals = vec![
        Goal::at_least(
            "recipients enqueued/s",
            50_000.0,
            fanout.recipients_per_second,
        ),
        Goal::at_least("import lines/s", 100_000.0, import.lines_per_second),
        Goal::below(
            "peak RSS of the notifier (MiB)",
            150.0,
            notifier_peak_rss_mb,
        ),
    ];
    let mut notes = vec![
        "The services run split (`loa run <target>` children), so the notifier's peak RSS is its own process's \
         VmHWM over the whole run: import, fan-out and the sends meanwhile."
            .to_owned(),
        "The enqueue rate runs from the broadcast's creation (the API's 201) to its `expanded_at`, both on \
         PostgreSQL's clock; it includes the fan-out's wait for its next round (at most \
         `notifier.broadcast_interval_ms`). The notifier's sender sends what is enqueued meanwhile (Zalo's \
         limits lifted in the sandbox), sharing the two cores, as in production."
            .to_owned(),
        "The broker baseline publishes one broadcast message per recipient (a real request's size) with \
         confirms to a quorum queue while one consumer drains it; the PostgreSQL baseline COPYs the same \
         number of rows into a copy of notifier.subscribers (its unique and GIN indexes included). The load \
         generator (this process) shares the machine in every figure."
            .to_owned(),
    ];
    let mut failure = None;
    if import.imported != n as u64 || import.rejected != 0 {
        failure = Some(format!(
            "the import took {} new of {n} lines ({} rejected)",
            import.imported, import.rejected
        ));
    } else if fanout.queued != n as i64 || fanout.audience != n as i64 {
        failure = Some(format!(
            "the broadcast's audience was {} and {} were enqueued, not {n}",
            fanout.audience, fanout.queued
        ));
    }
    if let Some(d) = &drain {
        let each_once = d.completed
            && d.deliveries == n as i64
            && d.distinct_recipients == n as i64
            && d.sent == n as i64
            && d.sandbox_accepted == n as u64
            && d.sandbox_distinct == n;
        if !each_once && failure.is_none() {
            failure = Some(format!(
                "not every recipient got exactly one message: {} deliveries ({} distinct, {} sent), the sandbox \
                 accepted {} ({} distinct), completed: {}",
                d.deliveries,
                d.distinct_recipients,
                d.sent,
                d.sandbox_accepted,
                d.sandbox_distinct,
                d.completed
            ));
        }
    } else {
        notes.push(
            "Without --drain the run ends once the broadcast is expanded; the messages still queued are dropped \
             with the run's vhost."
                .to_owned(),
        );
    }
    let notifier_rss_mb = [
        ("after_import", rss_after_import),
        ("after_fanout", rss_after_fanout),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k.to_owned(), v?)))
    .collect();
    let report = FanoutReport {
        subcommand: "fanout",
        started_at,
        mode: Mode::Split.as_str(),
        machine,
        recipients: n,
        import_lines_per_second: import.lines_per_second,
        enqueued_per_second: fanout.recipients_per_second,
        notifier_peak_rss_mb,
        notifier_rss_mb,
        baseline_messages_per_second: baseline.messages_per_second,
        baseline_copy_rows_per_second: copy_baseline.rows_per_second,
        enqueue_ratio,
        import_ratio,
        import,
        fanout,
        drain,
        baseline,
        copy_baseline,
        goals,
        notes,
    };
    Ok(Outcome {
        name: "fanout",
        tables: tables(&report),
        json: serde_json::to_value(&report)?,
        failure,
    })
}

/// One recipient's broadcast message as the fan-out publishes it (the baseline's body).
fn sample_message() -> Vec<u8> {
    let request = loa_contracts::NotificationRequest {
        notification_id: loa_contracts::notification::broadcast_notification_id(
            "bench-01", "b-sample", 1,
        ),
        tenant: "bench-01".into(),
        kind: loa_contracts::NotificationKind::Announcement,
        recipient: loa_contracts::Recipient {
            phone: Some("84900000001".into()),
            zalo_user_id: None,
        },
        params: message_params()
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect(),
        lane: loa_contracts::Lane::Broadcast,
        dossier_code: None,
        not_before: None,
        trace_context: None,
        event_accepted_at: None,
        created_at: Utc::now(),
        broadcast: Some(loa_contracts::BroadcastRef {
            id: "b-sample".into(),
            subscriber: 1,
        }),
    };
    loa_contracts::Envelope::NotificationRequestV1(request).to_bytes()
}

/// The announcement's parameters (a realistic length).
fn message_params() -> Value {
    json!({
        "title": "Thông báo lịch tiêm chủng mở rộng tháng 12",
        "body": "{name} thân mến, UBND tỉnh thông báo lịch tiêm chủng mở rộng tại các trạm y tế phường, xã từ ngày 15/12. Vui lòng mang theo sổ tiêm chủng.",
        "link": "https://dichvucong.example.gov.vn/thong-bao/tiem-chung-12",
    })
}

/// The `i`-th citizen's import line (distinct phones; ten wards, three topics).
fn import_line(out: &mut Vec<u8>, i: usize) {
    let _ = writeln!(
        out,
        r#"{{"phone":"090{i:07}","tags":["ward:phuong-{}","topic:chu-de-{}"],"announcements":true}}"#,
        i % 10,
        i % 3
    );
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .context("Failed to connect to the benchmark's database")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// COPYs `n` rows like the import's into a copy of `notifier.subscribers` (indexes
/// included), then drops it.
async fn copy_baseline(db: &tokio_postgres::Client, n: usize) -> anyhow::Result<CopyBaseline> {
    db.batch_execute(
        "DROP TABLE IF EXISTS public.bench_copy_baseline;
         CREATE TABLE public.bench_copy_baseline (LIKE notifier.subscribers INCLUDING ALL)",
    )
    .await
    .context("Failed to create the COPY baseline's table")?;
    let started = Instant::now();
    let sink = db
        .copy_in(
            "COPY public.bench_copy_baseline (tenant, phone, tags, announcements, updated_at, imported_at) \
             FROM STDIN",
        )
        .await
        .context("Failed to start the COPY baseline")?;
    futures_util::pin_mut!(sink);
    let mut buf = Vec::with_capacity(COPY_CHUNK + 256);
    for i in 0..n {
        let _ = writeln!(
            buf,
            "bench-01\t84900{i:07}\t{{topic:chu-de-{},ward:phuong-{}}}\tt\t-infinity\tnow",
            i % 3,
            i % 10
        );
        if buf.len() >= COPY_CHUNK {
            sink.send(std::io::Cursor::new(std::mem::take(&mut buf)))
                .await
                .context("Failed to COPY the baseline's rows")?;
        }
    }
    if !buf.is_empty() {
        sink.send(std::io::Cursor::new(buf))
            .await
            .context("Failed to COPY the baseline's rows")?;
    }
    let rows = sink
        .finish()
        .await
        .context("Failed to finish the COPY baseline")?;
    let seconds = started.elapsed().as_secs_f64();
    db.batch_execute("DROP TABLE public.bench_copy_baseline")
        .await
        .context("Failed to drop the COPY baseline's table")?;
    anyhow::ensure!(
        rows == n as u64,
        "the COPY baseline wrote {rows} of {n} rows"
    );
    Ok(CopyBaseline {
        rows: n,
        seconds,
        rows_per_second: n as f64 / seconds,
    })
}

/// Streams `n` ndjson lines to `POST /v1/subscribers/import` as one chunked request,
/// generated while it is sent, and reads the answer.
async fn import(
    sut: &SystemUnderTest,
    notifier: &Measured,
    base: &str,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<ImportFigures> {
    let addr = base
        .strip_prefix("http://")
        .context("the notifier is on plain http")?
        .to_owned();
    let token = sut_admin_token(sut);
    let measured = std::slice::from_ref(notifier);
    let cpu = procstat::snapshot(measured, &sut.env.name);
    let started = Instant::now();
    let (status, body, bytes) = tokio::time::timeout(timeout, stream_import(&addr, &token, n))
        .await
        .map_err(|_| anyhow::anyhow!("the import did not finish within {timeout:?}"))??;
    let seconds = started.elapsed().as_secs_f64();
    let used = cpu.usage_since(measured, &sut.env.name);
    anyhow::ensure!(
        status == 200,
        "the import answered {status}: {}",
        String::from_utf8_lossy(&body)
            .chars()
            .take(500)
            .collect::<String>()
    );
    let answer: Value = serde_json::from_slice(&body).context("the import's answer is not JSON")?;
    let count = |k: &str| answer[k].as_u64().unwrap_or(0);
    Ok(ImportFigures {
        lines: n,
        bytes,
        seconds,
        lines_per_second: n as f64 / seconds,
        imported: count("imported"),
        updated: count("updated"),
        rejected: count("rejected_total"),
        cpu_seconds_per_1000_lines: per_1000(&used, n),
    })
}

/// The benchmark tenant's admin token (see [`system::bench_tenants`]).
fn sut_admin_token(sut: &SystemUnderTest) -> String {
    let tenant = sut.tenants.first().map_or("bench-01", |t| t.id.as_str());
    tenant.replace("bench-", "bench-admin-")
}

/// One HTTP/1.1 request with a chunked body written as it is generated (reqwest
/// would need its `stream` feature for this); returns the status, the answer's body
/// and the bytes of ndjson sent.
async fn stream_import(addr: &str, token: &str, n: usize) -> anyhow::Result<(u16, Vec<u8>, usize)> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("Failed to connect to the notifier at {addr}"))?;
    stream.set_nodelay(true)?;
    let (mut reader, mut writer) = stream.into_split();
    let write = async move {
        writer
            .write_all(
                format!(
                    "POST /v1/subscribers/import HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
                     Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await?;
        let mut sent = 0usize;
        let mut buf = Vec::with_capacity(IMPORT_CHUNK + 256);
        let mut chunk = Vec::with_capacity(IMPORT_CHUNK + 512);
        for i in 0..n {
            import_line(&mut buf, i);
            if buf.len() >= IMPORT_CHUNK || i + 1 == n {
                chunk.clear();
                let _ = write!(chunk, "{:x}\r\n", buf.len());
                chunk.extend_from_slice(&buf);
                chunk.extend_from_slice(b"\r\n");
                writer.write_all(&chunk).await?;
                sent += buf.len();
                buf.clear();
            }
        }
        writer.write_all(b"0\r\n\r\n").await?;
        writer.flush().await?;
        // Kept open until the answer is read: dropping it half-closes the connection,
        // which the server takes for a client gone away.
        anyhow::Ok((sent, writer))
    };
    let read = async move {
        let mut answer = Vec::new();
        reader.read_to_end(&mut answer).await?;
        anyhow::Ok(answer)
    };
    let (sent, answer) = tokio::join!(write, read);
    let answer = answer.context("Failed to read the import's answer")?;
    let (status, body) = parse_response(&answer)?;
    // An early answer (a refusal) may cut the upload short: the answer says why.
    let sent = match sent {
        Ok((sent, _writer)) => sent,
        Err(e) if status == 200 => return Err(e.context("Failed to send the import")),
        Err(_) => 0,
    };
    Ok((status, body, sent))
}

/// The status and body of a whole HTTP/1.1 answer (`Content-Length` or chunked).
fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| {
            format!(
                "the import's answer has no header end: {:?}",
                String::from_utf8_lossy(&raw[..raw.len().min(300)])
            )
        })?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("the import's answer has no status")?;
    let mut body = raw[end + 4..].to_vec();
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16)
                .context("a bad chunk size in the import's answer")?;
            rest = &rest[eol + 2..];
            if size == 0 || rest.len() < size {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = rest.get(size + 2..).unwrap_or_default();
        }
        body = out;
    }
    Ok((status, body))
}

/// Creates the broadcast and waits until it is expanded.
async fn fan_out(
    sut: &mut SystemUnderTest,
    notifier: &Measured,
    db: &tokio_postgres::Client,
    client: &Client,
    base: &str,
    timeout: Duration,
) -> anyhow::Result<(String, FanoutFigures)> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let measured = std::slice::from_ref(notifier);
    let cpu = procstat::snapshot(measured, &sut.env.name);
    let resp = http
        .post(format!("{base}/v1/broadcasts"))
        .bearer_auth(sut_admin_token(sut))
        .json(&json!({
            "title": "loa bench fanout",
            "audience": {"all": true},
            "message": {"template": "announcement", "params": message_params()},
        }))
        .send()
        .await
        .context("the notifier did not answer the broadcast")?;
    let status = resp.status();
    let created: Value = resp.json().await.unwrap_or_default();
    anyhow::ensure!(
        status == reqwest::StatusCode::CREATED,
        "creating the broadcast answered {status}: {created}"
    );
    let id = created["id"]
        .as_str()
        .context("the created broadcast has an id")?
        .to_owned();
    let deadline = Instant::now() + timeout;
    let mut first_checkpoint: Option<f64> = None;
    let row = loop {
        let row = db
            .query_one(
                "SELECT audience, queued, extract(epoch FROM expanded_at - created_at)::float8,
                        extract(epoch FROM now() - created_at)::float8
                   FROM notifier.broadcasts WHERE id = $1",
                &[&id],
            )
            .await
            .context("Failed to read the broadcast's checkpoint")?;
        let queued: i64 = row.get(1);
        if queued > 0 && first_checkpoint.is_none() {
            first_checkpoint = Some(row.get(3));
        }
        if row.get::<_, Option<f64>>(2).is_some() {
            break row;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the broadcast was not expanded within {timeout:?} ({queued} enqueued)"
        );
        if let Some(dead) = sut.exited_child() {
            anyhow::bail!(
                "`loa run {dead}` exited during the fan-out:\n{}",
                sut.log_tails()
            );
        }
        tokio::time::sleep(POLL).await;
    };
    let used = cpu.usage_since(measured, &sut.env.name);
    let sent_meanwhile = client.stats().await.map_or(0, |s| s.accepted);
    let audience: i64 = row.get(0);
    let queued: i64 = row.get(1);
    let seconds: f64 = row.get(2);
    Ok((
        id,
        FanoutFigures {
            audience,
            queued,
            seconds,
            recipients_per_second: queued as f64 / seconds,
            first_checkpoint_seconds: first_checkpoint,
            sent_meanwhile,
            cpu_seconds_per_1000_recipients: per_1000(&used, queued.max(1) as usize),
        },
    ))
}

/// Waits until the broadcast completes, then counts its deliveries and the sandbox's
/// messages.
async fn drain(
    db: &tokio_postgres::Client,
    client: &Client,
    id: &str,
    timeout: Duration,
) -> anyhow::Result<DrainFigures> {
    let deadline = Instant::now() + timeout;
    let (completed, seconds) = loop {
        let row = db
            .query_one(
                "SELECT state, extract(epoch FROM coalesce(finished_at, now()) - created_at)::float8
                   FROM notifier.broadcasts WHERE id = $1",
                &[&id],
            )
            .await
            .context("Failed to read the broadcast's state")?;
        let state: &str = row.get(0);
        if state == "completed" || Instant::now() >= deadline {
            break (state == "completed", row.get::<_, f64>(1));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let row = db
        .query_one(
            "SELECT count(*), count(DISTINCT notification_id),
                    count(*) FILTER (WHERE status IN ('sent', 'delivered', 'seen'))
               FROM notifier.deliveries WHERE broadcast_id = $1",
            &[&id],
        )
        .await
        .context("Failed to count the broadcast's deliveries")?;
    let stats = client.stats().await?;
    let messages = client.messages().await?;
    let sandbox_distinct = messages
        .iter()
        .filter_map(|m| m.tracking_id.as_deref())
        .collect::<std::collections::HashSet<_>>()
        .len();
    Ok(DrainFigures {
        completed,
        seconds,
        deliveries: row.get(0),
        distinct_recipients: row.get(1),
        sent: row.get(2),
        sandbox_accepted: stats.accepted,
        sandbox_distinct,
        sandbox_refused: stats.refused.into_iter().collect(),
    })
}

/// CPU seconds per 1,000 items: the notifier, PostgreSQL, RabbitMQ, this process (the
/// load generator) and the whole machine.
fn per_1000(used: &CpuUsage, items: usize) -> BTreeMap<String, f64> {
    let scale = |s: f64| s * 1000.0 / items.max(1) as f64;
    let mut out: BTreeMap<String, f64> = used
        .services
        .iter()
        .map(|(name, s)| (name.clone(), scale(*s)))
        .collect();
    for (name, value) in [
        ("postgresql", used.postgres),
        ("rabbitmq", used.rabbitmq),
        ("load generator", used.harness),
        ("whole machine", used.machine),
    ] {
        if let Some(v) = value {
            out.insert(name.to_owned(), scale(v));
        }
    }
    out
}

/// One row per process: `CPU s / 1,000 <what>: <process>`.
fn cpu_rows(mut table: Table, what: &str, map: &BTreeMap<String, f64>) -> Table {
    for (process, seconds) in map {
        table = table.row(&[
            &format!("CPU s / 1,000 {what}: {process}"),
            &num(*seconds, 3),
        ]);
    }
    table
}

fn tables(r: &FanoutReport) -> Vec<(String, Table)> {
    let mut fanout = Table::new(&["fan-out", "value"])
        .row(&["recipients", &r.recipients.to_string()])
        .row(&[
            "audience / enqueued",
            &format!("{} / {}", r.fanout.audience, r.fanout.queued),
        ])
        .row(&["seconds (creation → expanded)", &num(r.fanout.seconds, 2)])
        .row(&[
            "recipients enqueued/s",
            &num(r.fanout.recipients_per_second, 0),
        ])
        .row(&[
            "broker baseline msg/s (same run)",
            &num(r.baseline_messages_per_second, 0),
        ])
        .row(&["ratio to the broker baseline", &num(r.enqueue_ratio, 2)])
        .row(&[
            "creation → first checkpoint (s)",
            &opt_num(r.fanout.first_checkpoint_seconds, 2),
        ])
        .row(&[
            "sent to the sandbox meanwhile",
            &r.fanout.sent_meanwhile.to_string(),
        ]);
    fanout = cpu_rows(
        fanout,
        "recipients",
        &r.fanout.cpu_seconds_per_1000_recipients,
    );
    if let Some(d) = &r.drain {
        fanout = fanout
            .row(&["completed (drain)", &d.completed.to_string()])
            .row(&["creation → completed (s)", &num(d.seconds, 1)])
            .row(&[
                "deliveries (distinct, sent)",
                &format!("{} ({}, {})", d.deliveries, d.distinct_recipients, d.sent),
            ])
            .row(&[
                "sandbox accepted (distinct)",
                &format!("{} ({})", d.sandbox_accepted, d.sandbox_distinct),
            ]);
    }
    let import = Table::new(&["import", "value"])
        .row(&[
            "lines (MiB)",
            &format!(
                "{} ({})",
                r.import.lines,
                num(r.import.bytes as f64 / 1048576.0, 1)
            ),
        ])
        .row(&[
            "imported / updated / rejected",
            &format!(
                "{} / {} / {}",
                r.import.imported, r.import.updated, r.import.rejected
            ),
        ])
        .row(&["seconds", &num(r.import.seconds, 2)])
        .row(&["lines/s", &num(r.import.lines_per_second, 0)])
        .row(&[
            "PostgreSQL COPY baseline rows/s (same run)",
            &num(r.baseline_copy_rows_per_second, 0),
        ])
        .row(&["ratio to the COPY baseline", &num(r.import_ratio, 2)]);
    let import = cpu_rows(import, "lines", &r.import.cpu_seconds_per_1000_lines);
    let mut memory = Table::new(&["notifier memory", "MiB"])
        .row(&["peak RSS (VmHWM)", &num(r.notifier_peak_rss_mb, 1)]);
    for (k, v) in &r.notifier_rss_mb {
        memory = memory.row(&[&format!("RSS {}", k.replace('_', " ")), &num(*v, 1)]);
    }
    vec![
        ("Fan-out".to_owned(), fanout),
        ("Import".to_owned(), import),
        ("Memory".to_owned(), memory),
        ("Goals (issue 10)".to_owned(), super::goals_table(&r.goals)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_read_with_a_length_or_in_chunks() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 14\r\n\r\n{\"imported\":1}";
        assert_eq!(
            parse_response(plain).unwrap(),
            (200, b"{\"imported\":1}".to_vec())
        );
        let chunked =
            b"HTTP/1.1 422 Unprocessable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).unwrap(),
            (422, b"{\"a\":1}".to_vec())
        );
    }

    #[test]
    fn every_import_line_is_a_distinct_valid_citizen() {
        let mut out = Vec::new();
        import_line(&mut out, 0);
        import_line(&mut out, 9_999_999);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for line in &lines {
            assert!(is_an_opted_in_citizen(line), "{line}");
        }
        assert_ne!(lines[0], lines[1]);
    }

    fn is_an_opted_in_citizen(line: &str) -> bool {
        let v: Value = serde_json::from_str(line).unwrap();
        let phone = v["phone"].as_str().unwrap();
        loa_contracts::PhoneNumber::parse(phone).is_ok() && v["announcements"] == true
    }
}
