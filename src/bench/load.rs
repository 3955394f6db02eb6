//! The load: realistic dossier events (statuses 2, 5, 6 and 9, each planning exactly
//! one notification), grouped into per-tenant batches for `POST /v1/events/batch`, and
//! the sandbox's control API to lift limits and read what was delivered.
//!
//! Every event's notification id is computed here exactly as the tracker computes it,
//! so each message at the sandbox (its `tracking_id`) is matched to the batch that
//! carried the event, and to the instant intake answered 202 for it.

use super::system::BenchTenant;
use anyhow::Context;
use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Utc};
use loa_contracts::{notification::notification_id, NotificationKind};
use serde::Deserialize;
use serde_json::{json, Value};
use std::{collections::HashMap, time::Duration};

/// Statuses cycled through: received (receipt), supplement requested, payment
/// requested, result ready. Each plans exactly one notification for a fresh dossier.
const STATUSES: [(u8, NotificationKind); 4] = [
    (2, NotificationKind::Receipt),
    (5, NotificationKind::SupplementRequested),
    (6, NotificationKind::PaymentRequested),
    (9, NotificationKind::ResultReady),
];

/// A batch ready to post: its tenant's token, the serialised body and the notification
/// ids its events will produce.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Bearer token of the tenant's source.
    pub token: String,
    /// `{"events": [...]}`, serialised before the clock starts.
    pub body: Vec<u8>,
    /// One tracking id per event.
    pub tracking_ids: Vec<String>,
    /// The events' ids, in the same order.
    pub event_ids: Vec<String>,
}

/// One event of run `run` for `tenant`, number `i` (a fresh dossier each).
pub fn event(run: &str, tenant: &str, i: usize, now: DateTime<Utc>) -> (Value, String) {
    let (status, kind) = STATUSES[(i / 7) % STATUSES.len()];
    let event_id = format!("bench-{run}-{i}");
    let vn = now.with_timezone(&loa_contracts::time::vietnam());
    let ts = |d: ChronoDuration| (vn + d).to_rfc3339_opts(SecondsFormat::Secs, false);
    // Result ready on or after the appointment day (not "early"): the due date is
    // in the past for status 9.
    let due = if status == 9 {
        ts(-ChronoDuration::days(1))
    } else {
        ts(ChronoDuration::days(5))
    };
    let mut e = json!({
        "event_id": event_id,
        "tenant": tenant,
        "dossier_code": format!("000.00.06.H56-{run}-{i:07}"),
        "status": status,
        "occurred_at": ts(ChronoDuration::zero()),
        "received_at": ts(-ChronoDuration::days(3)),
        "due_at": due,
        "procedure": {"code": "1.001193", "name": "Đăng ký khai sinh"},
        "agency": {"code": "000.00.06.H56", "name": "UBND phường Đức Thắng"},
        "applicant": {"name": "Nguyễn Thị Minh Khai", "phone": format!("09{:08}", i % 100_000_000)},
        "channels": {"zalo": true, "broadcast": false}
    });
    match status {
        5 => e["required_documents"] = json!(["Bản sao giấy chứng nhận kết hôn có chứng thực"]),
        6 => e["fee"] = json!({"amount_vnd": 50_000, "description": "Lệ phí đăng ký"}),
        _ => {}
    }
    (e, notification_id(tenant, &event_id, kind))
}

/// `events` events spread over `tenants`, in batches of at most `batch_size`, each
/// batch for one tenant; the batches of different tenants are interleaved.
pub fn batches(run: &str, tenants: &[BenchTenant], events: usize, batch_size: usize) -> Vec<Batch> {
    let now = Utc::now();
    let batch_size = batch_size.clamp(1, 500);
    let n_tenants = tenants.len().max(1);
    let mut per_tenant: Vec<Vec<(Value, String)>> = vec![Vec::new(); n_tenants];
    for i in 0..events {
        let t = i % n_tenants;
        per_tenant[t].push(event(run, &tenants[t].id, i, now));
    }
    let mut chunks: Vec<std::vec::IntoIter<Batch>> = per_tenant
        .into_iter()
        .enumerate()
        .map(|(t, list)| {
            list.chunks(batch_size)
                .map(|chunk| make_batch(&tenants[t].token, chunk))
                .collect::<Vec<_>>()
                .into_iter()
        })
        .collect();
    let mut out = Vec::new();
    loop {
        let before = out.len();
        for c in chunks.iter_mut() {
            out.extend(c.next());
        }
        if out.len() == before {
            return out;
        }
    }
}

/// A batch of already-built events.
pub fn make_batch(token: &str, events: &[(Value, String)]) -> Batch {
    let list: Vec<&Value> = events.iter().map(|(e, _)| e).collect();
    Batch {
        token: token.to_owned(),
        body: serde_json::to_vec(&json!({ "events": list })).expect("JSON values serialise"),
        tracking_ids: events.iter().map(|(_, id)| id.clone()).collect(),
        event_ids: events
            .iter()
            .map(|(e, _)| e["event_id"].as_str().unwrap_or_default().to_owned())
            .collect(),
    }
}

/// The size in bytes of one event as it travels on `loa.events` (for the baseline).
pub fn event_message_bytes(tenants: &[BenchTenant]) -> anyhow::Result<Vec<u8>> {
    let tenant = tenants.first().map_or("bench-01", |t| t.id.as_str());
    let (value, _) = event("sizing", tenant, 0, Utc::now());
    let mut e = loa_contracts::DossierEvent::from_json(&value).map_err(|e| {
        anyhow::anyhow!(
            "the benchmark's event is invalid: {}: {}",
            e.field,
            e.message
        )
    })?;
    e.accepted_at = Some(Utc::now());
    Ok(loa_contracts::Envelope::DossierEventV1(e).to_bytes())
}

/// A client for intake and the sandbox on loopback.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    intake: String,
    sandbox: String,
}

/// One message as `GET /_sandbox/messages` lists it (the fields the harness reads).
#[derive(Debug, Clone, Deserialize)]
pub struct SandboxMessage {
    /// Zalo's message id.
    #[serde(default)]
    pub msg_id: String,
    /// The notification id the notifier sent.
    #[serde(default)]
    pub tracking_id: Option<String>,
    /// When the sandbox accepted it.
    pub received_at: DateTime<Utc>,
    /// Whether its answer was held back by a hang fault.
    #[serde(default)]
    pub hung: bool,
}

/// The sandbox's counters.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SandboxStats {
    /// Messages accepted.
    pub accepted: u64,
    /// Refusals by Zalo error code (`"-32"`).
    #[serde(default)]
    pub refused: HashMap<String, u64>,
    /// Highest accepted messages in one second.
    #[serde(default)]
    pub peak_rate_per_second: Option<f64>,
}

impl SandboxStats {
    /// Refusals with one code.
    pub fn refused(&self, code: i64) -> u64 {
        self.refused.get(&code.to_string()).copied().unwrap_or(0)
    }
}

/// How many times a 503 (broker did not confirm) is retried before the run fails.
const POST_ATTEMPTS: u32 = 20;

impl Client {
    /// A client with a pool of keep-alive connections.
    pub fn new(intake: &str, sandbox: &str) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(256)
                .build()
                .context("Failed to build the HTTP client")?,
            intake: intake.to_owned(),
            sandbox: sandbox.to_owned(),
        })
    }

    /// Posts a batch until intake answers 202 (retrying a bounded number of 503s) and
    /// returns the instant of the 202.
    pub async fn post_batch(&self, batch: &Batch) -> anyhow::Result<DateTime<Utc>> {
        for attempt in 1..=POST_ATTEMPTS {
            let resp = self
                .http
                .post(format!("{}/v1/events/batch", self.intake))
                .bearer_auth(&batch.token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(batch.body.clone())
                .send()
                .await
                .context("intake did not answer")?;
            let at = Utc::now();
            let status = resp.status();
            if status == reqwest::StatusCode::ACCEPTED {
                return Ok(at);
            }
            let text = resp.text().await.unwrap_or_default();
            anyhow::ensure!(
                status == reqwest::StatusCode::SERVICE_UNAVAILABLE,
                "intake answered {status} to a benchmark batch: {}",
                text.chars().take(500).collect::<String>()
            );
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
        }
        anyhow::bail!("intake kept answering 503 after {POST_ATTEMPTS} attempts")
    }

    /// `GET /_sandbox/stats`.
    pub async fn stats(&self) -> anyhow::Result<SandboxStats> {
        self.http
            .get(format!("{}/_sandbox/stats", self.sandbox))
            .send()
            .await
            .context("the sandbox did not answer")?
            .error_for_status()?
            .json()
            .await
            .context("the sandbox's stats are not what the harness expects")
    }

    /// `GET /_sandbox/messages`.
    pub async fn messages(&self) -> anyhow::Result<Vec<SandboxMessage>> {
        self.http
            .get(format!("{}/_sandbox/messages", self.sandbox))
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .context("the sandbox did not answer")?
            .error_for_status()?
            .json()
            .await
            .context("the sandbox's messages are not what the harness expects")
    }

    /// `POST /_sandbox/reset`: clears messages, counters and limits.
    pub async fn reset(&self) -> anyhow::Result<()> {
        self.http
            .post(format!("{}/_sandbox/reset", self.sandbox))
            .send()
            .await
            .context("the sandbox did not answer")?
            .error_for_status()?;
        Ok(())
    }

    /// `POST /_sandbox/limits` for ZNS: `None` rate lifts the rate limit; the daily
    /// quota is always lifted (a benchmark sends more than a day's quota).
    pub async fn set_zns_limits(&self, rate: Option<(f64, u32)>) -> anyhow::Result<()> {
        let body = match rate {
            Some((per_second, burst)) => {
                json!({"api": "zns", "rate_per_second": per_second, "burst": burst, "daily_quota": null, "night_ban": false})
            }
            None => {
                json!({"api": "zns", "rate_per_second": null, "burst": null, "daily_quota": null, "night_ban": false})
            }
        };
        self.control("limits", &body).await
    }

    /// `POST /_sandbox/faults`: every ZNS call answers `ms` later.
    pub async fn add_zns_latency(&self, ms: u64) -> anyhow::Result<()> {
        self.control("faults", &json!({"api": "zns", "latency_ms": ms}))
            .await
    }

    /// `POST /_sandbox/<what>` with `body`; fails unless the sandbox took it.
    async fn control(&self, what: &str, body: &Value) -> anyhow::Result<()> {
        let resp = self
            .http
            .post(format!("{}/_sandbox/{what}", self.sandbox))
            .json(body)
            .send()
            .await
            .context("the sandbox did not answer")?;
        let status = resp.status();
        anyhow::ensure!(
            status.is_success(),
            "the sandbox refused the {what}: {}",
            resp.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// Polls the sandbox until it accepted at least `n` messages or `timeout` passed;
    /// returns the last stats and whether `n` was reached.
    pub async fn wait_accepted(
        &self,
        n: u64,
        timeout: Duration,
    ) -> anyhow::Result<(SandboxStats, bool)> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let stats = self.stats().await?;
            if stats.accepted >= n {
                return Ok((stats, true));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok((stats, false));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (milliseconds); zeros when empty.
    pub fn of(samples: &mut [f64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1]
        };
        Self {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: samples[samples.len() - 1],
            mean: samples.iter().sum::<f64>() / samples.len() as f64,
        }
    }
}

/// Milliseconds from `from` to `to`.
pub fn millis(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from)
        .num_microseconds()
        .map_or(f64::NAN, |us| us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants(n: usize) -> Vec<BenchTenant> {
        (1..=n)
            .map(|i| BenchTenant {
                id: format!("bench-{i:02}"),
                token: format!("bench-token-{i:02}"),
            })
            .collect()
    }

    #[test]
    fn every_generated_event_is_valid_and_the_statuses_are_mixed() {
        let mut statuses = std::collections::BTreeSet::new();
        for i in 0..64 {
            let (value, id) = event("t", "bench-01", i, Utc::now());
            let e = loa_contracts::DossierEvent::from_json(&value).expect("valid event");
            statuses.insert(e.status.code());
            assert_eq!(id.len(), 32);
        }
        assert_eq!(statuses.into_iter().collect::<Vec<_>>(), vec![2, 5, 6, 9]);
    }

    #[test]
    fn batches_hold_one_tenant_each_and_cover_every_event_once() {
        let t = tenants(3);
        let all = batches("t", &t, 1000, 64);
        let ids: std::collections::HashSet<&String> =
            all.iter().flat_map(|b| &b.tracking_ids).collect();
        assert_eq!(ids.len(), 1000);
        assert!(all.iter().all(|b| b.tracking_ids.len() <= 64));
        assert_ne!(all[0].token, all[1].token, "tenants are interleaved");
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!((p.p50, p.p95, p.p99, p.max), (50.0, 95.0, 99.0, 100.0));
    }
}
