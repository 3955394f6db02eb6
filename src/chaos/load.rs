//! The offered load: dossier events for several tenants at a steady pace through
//! intake's batch endpoint, retried as an upstream one-stop system retries them, and
//! a record of what intake accepted, item by item.
//!
//! Each tenant has its own poster, which sends its share of the events in batches
//! spread evenly over the load's duration (a poster that fell behind, because intake
//! was down, catches up). Every event is a fresh dossier in status 2, 5, 6 or 9
//! ([`crate::bench::load::event`]), so each plans exactly one notification of one of
//! four kinds. One event in [`INVALID_EVERY`] carries an impossible `occurred_at` and
//! must be refused (`422` inside a `207`) and never reach the tracker.
//!
//! A batch's body is built once and resent byte for byte: a retry is the same events
//! (the same content under the same ids), as an upstream system's retry is. A batch is
//! retried on `503` (after `Retry-After`, at most [`MAX_BACKOFF`]), on a refused,
//! broken or timed-out connection, and on any other `5xx`, until intake answers or
//! [`GIVE_UP_AFTER`] passes.

use crate::bench::{load::event, system::BenchTenant};
use anyhow::Context;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::time::Instant;

/// Every this many events, one is made invalid on purpose.
pub const INVALID_EVERY: usize = 50;
/// The impossible time the invalid events carry.
const IMPOSSIBLE_TIME: &str = "9999-12-31T23:59:59Z";
/// The longest wait between two attempts at one batch.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a batch is retried before its poster gives up on it.
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);
/// Time-out of one `POST`.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest pause between two batches of one tenant.
const MIN_BATCH_INTERVAL: Duration = Duration::from_millis(250);

/// What to offer.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Distinguishes this run's event ids and dossier codes.
    pub run: String,
    /// Events in total, spread over the tenants.
    pub events: usize,
    /// Over how long.
    pub duration: Duration,
}

/// An event, by tenant and id.
pub type EventKey = (String, String);

/// An item intake refused.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The event.
    pub key: EventKey,
    /// Its HTTP status inside the `207`.
    pub status: u16,
    /// The error code intake gave.
    pub code: String,
}

/// What the load offered and what intake answered.
#[derive(Debug, Clone, Default)]
pub struct Offered {
    /// Events offered.
    pub events: usize,
    /// Events intake accepted (`202`, alone or inside a `207`).
    pub accepted: Vec<EventKey>,
    /// Events intake refused, with why.
    pub refused: Vec<Refusal>,
    /// Events made invalid on purpose.
    pub meant_invalid: HashSet<EventKey>,
    /// Events of batches given up on after [`GIVE_UP_AFTER`] without an answer.
    pub unanswered: Vec<EventKey>,
    /// Attempts that had to be repeated, by cause (`503`, `connection`, …).
    pub retries: BTreeMap<String, u64>,
}

impl Offered {
    fn merge(&mut self, other: Offered) {
        self.events += other.events;
        self.accepted.extend(other.accepted);
        self.refused.extend(other.refused);
        self.meant_invalid.extend(other.meant_invalid);
        self.unanswered.extend(other.unanswered);
        for (cause, n) in other.retries {
            *self.retries.entry(cause).or_default() += n;
        }
    }
}

/// Offers `spec.events` events over `spec.duration`, one poster per tenant, and
/// returns what intake answered. `accepted_so_far` counts accepted events as they are
/// (the watcher's measure of work waiting).
pub async fn offer(
    intake: &str,
    tenants: &[BenchTenant],
    spec: &LoadSpec,
    accepted_so_far: Arc<AtomicUsize>,
) -> anyhow::Result<Offered> {
    let http = reqwest::Client::builder()
        .timeout(POST_TIMEOUT)
        .build()
        .context("Failed to build the HTTP client")?;
    let started = Instant::now();
    let n = tenants.len().max(1);
    let mut posters = tokio::task::JoinSet::new();
    for (t, tenant) in tenants.iter().enumerate() {
        let indices: Vec<usize> = (0..spec.events).filter(|i| i % n == t).collect();
        let poster = Poster {
            http: http.clone(),
            url: format!("{intake}/v1/events/batch"),
            tenant: tenant.clone(),
            run: spec.run.clone(),
            accepted_so_far: Arc::clone(&accepted_so_far),
        };
        let duration = spec.duration;
        posters.spawn(async move { poster.post_all(indices, started, duration).await });
    }
    let mut offered = Offered::default();
    while let Some(done) = posters.join_next().await {
        offered.merge(done.context("a poster panicked")??);
    }
    Ok(offered)
}

/// One tenant's upstream system.
struct Poster {
    http: reqwest::Client,
    url: String,
    tenant: BenchTenant,
    run: String,
    accepted_so_far: Arc<AtomicUsize>,
}

/// How a batch ended.
enum Answer {
    /// Intake's status per item, in order.
    Items(Vec<(u16, String)>),
    /// No answer within [`GIVE_UP_AFTER`].
    GaveUp,
}

impl Poster {
    async fn post_all(
        self,
        indices: Vec<usize>,
        started: Instant,
        duration: Duration,
    ) -> anyhow::Result<Offered> {
        let batches = (duration.as_secs_f64() / MIN_BATCH_INTERVAL.as_secs_f64())
            .floor()
            .max(1.0) as usize;
        let per_batch = indices.len().div_ceil(batches).max(1);
        let chunks: Vec<&[usize]> = indices.chunks(per_batch).collect();
        let mut offered = Offered::default();
        for (k, chunk) in chunks.iter().enumerate() {
            tokio::time::sleep_until(started + duration.mul_f64(k as f64 / chunks.len() as f64))
                .await;
            let now = chrono::Utc::now();
            let mut keys = Vec::with_capacity(chunk.len());
            let events: Vec<Value> = chunk
                .iter()
                .map(|&i| {
                    let (mut e, _) = event(&self.run, &self.tenant.id, i, now);
                    let key = (
                        self.tenant.id.clone(),
                        e["event_id"].as_str().unwrap_or_default().to_owned(),
                    );
                    if i % INVALID_EVERY == INVALID_EVERY - 1 {
                        e["occurred_at"] = json!(IMPOSSIBLE_TIME);
                        offered.meant_invalid.insert(key.clone());
                    }
                    keys.push(key);
                    e
                })
                .collect();
            offered.events += keys.len();
            let body =
                serde_json::to_vec(&json!({ "events": events })).expect("JSON values serialise");
            match self.post_until_answered(body, &mut offered.retries).await? {
                Answer::GaveUp => offered.unanswered.extend(keys),
                Answer::Items(items) => {
                    anyhow::ensure!(
                        items.len() == keys.len(),
                        "intake answered {} results for {} events",
                        items.len(),
                        keys.len()
                    );
                    for (key, (status, code)) in keys.into_iter().zip(items) {
                        if status == 202 {
                            offered.accepted.push(key);
                            self.accepted_so_far.fetch_add(1, Ordering::Relaxed);
                        } else {
                            offered.refused.push(Refusal { key, status, code });
                        }
                    }
                }
            }
        }
        Ok(offered)
    }

    /// Posts `body` until intake answers for every item, counting each retry's cause.
    async fn post_until_answered(
        &self,
        body: Vec<u8>,
        retries: &mut BTreeMap<String, u64>,
    ) -> anyhow::Result<Answer> {
        let deadline = Instant::now() + GIVE_UP_AFTER;
        let mut backoff = Duration::from_millis(200);
        loop {
            let sent = self
                .http
                .post(&self.url)
                .bearer_auth(&self.tenant.token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            let (cause, wait) = match sent {
                Err(e) => (
                    if e.is_timeout() {
                        "time-out"
                    } else {
                        "connection"
                    }
                    .to_owned(),
                    backoff,
                ),
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    match status {
                        StatusCode::ACCEPTED | StatusCode::MULTI_STATUS => {
                            // A body cut short by a kill is no answer: retry.
                            match resp.json::<Value>().await {
                                Ok(answer) => return items(status, &answer).map(Answer::Items),
                                Err(_) => ("truncated answer".to_owned(), backoff),
                            }
                        }
                        s if s.is_server_error() => (
                            s.as_u16().to_string(),
                            retry_after.unwrap_or(backoff).min(MAX_BACKOFF),
                        ),
                        other => {
                            let text = resp.text().await.unwrap_or_default();
                            anyhow::bail!(
                                "intake answered {other} to a chaos batch: {}",
                                text.chars().take(500).collect::<String>()
                            );
                        }
                    }
                }
            };
            *retries.entry(cause).or_default() += 1;
            if Instant::now() + wait >= deadline {
                return Ok(Answer::GaveUp);
            }
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Each item's status and error code from a `202` or `207` answer.
fn items(status: StatusCode, answer: &Value) -> anyhow::Result<Vec<(u16, String)>> {
    let results = answer["results"]
        .as_array()
        .with_context(|| format!("intake's {status} has no results: {answer}"))?;
    Ok(results
        .iter()
        .map(|r| {
            let code = r["error"]["code"].as_str().unwrap_or_default().to_owned();
            (r["status"].as_u64().unwrap_or(0) as u16, code)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_status_answer_gives_each_items_status_and_code_in_order() {
        let answer = json!({"accepted": 1, "rejected": 1, "results": [
            {"index": 0, "status": 202, "event_id": "a"},
            {"index": 1, "status": 422, "event_id": "b", "error": {"code": "time_in_future", "message": "…", "field": "events[1].occurred_at"}},
        ]});
        let got = items(StatusCode::MULTI_STATUS, &answer).unwrap();
        assert_eq!(
            got,
            vec![(202, String::new()), (422, "time_in_future".to_owned())]
        );
    }

    #[test]
    fn an_event_made_invalid_is_refused_by_intakes_own_rules() {
        let (mut e, _) = event("t", "bench-01", INVALID_EVERY - 1, chrono::Utc::now());
        e["occurred_at"] = json!(IMPOSSIBLE_TIME);
        let parsed = loa_contracts::DossierEvent::from_json(&e).expect("well-formed");
        let refused = parsed
            .check_times(chrono::Utc::now(), chrono::Duration::minutes(10))
            .expect_err("a time in year 9999 is refused");
        assert_eq!(refused.code, "time_in_future");
    }
}
