//! The watcher: samples, several times a second, whether Zalo (the sandbox) accepted
//! anything since the last sample and whether work was waiting, and keeps the gaps in
//! sending while work waited. It also keeps the live notifier's resend count and
//! notices a service that exits without being killed.
//!
//! "Work waiting" is the outside view of the pipeline: events intake accepted so far
//! outnumber the deliveries that reached an end (`sent`, `delivered`, `seen`, or
//! `failed` for good). A gap is the time from the last accepted message (or from when
//! work began to wait) to the next one; while nothing waits, there is no gap. The
//! sandbox's counter starts from zero in each of its lifetimes, so a restart is told
//! apart by the [`Record`]'s generation.

use super::{faults::Chaos, record::Record};
use serde::Serialize;
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Time between two samples.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// Gaps at least this long are listed in the report.
const LISTED_GAP: Duration = Duration::from_secs(2);

/// A time in which Zalo accepted nothing while work waited.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Gap {
    /// Seconds from the start of the load.
    pub start_secs: f64,
    /// Its length in seconds.
    pub length_secs: f64,
}

/// What the watcher saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Watched {
    /// Samples taken.
    pub samples: u64,
    /// Samples in which the sandbox did not answer.
    pub sandbox_unreachable: u64,
    /// The longest gap.
    pub longest: Option<Gap>,
    /// Every gap of at least [`LISTED_GAP`], longest first (at most ten).
    pub gaps: Vec<Gap>,
    /// Services that exited without being killed, with when (seconds from the start).
    pub crashes: Vec<(String, f64)>,
}

impl Watched {
    fn close(&mut self, gap: Gap) {
        if self.longest.is_none_or(|l| gap.length_secs > l.length_secs) {
            self.longest = Some(gap);
        }
        if gap.length_secs >= LISTED_GAP.as_secs_f64() {
            self.gaps.push(gap);
            self.gaps
                .sort_by(|a, b| b.length_secs.total_cmp(&a.length_secs));
            self.gaps.truncate(10);
        }
    }
}

/// Samples until `stop` is cancelled, then returns what it saw. `accepted_so_far`
/// is the load's count of events intake accepted.
pub async fn watch(
    chaos: Arc<Chaos>,
    accepted_so_far: Arc<AtomicUsize>,
    stop: CancellationToken,
) -> Watched {
    let record: &Record = &chaos.record;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .expect("a client with a time-out builds");
    let mut seen = Watched::default();
    let mut generation = record.sandbox_generation();
    let mut last_accepted = 0u64;
    let mut last_progress = Instant::now();
    let mut pending = false;
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        seen.samples += 1;
        let now = Instant::now();

        // Did Zalo accept anything since the last sample?
        let current = record.sandbox_generation();
        if current != generation {
            generation = current;
            last_accepted = 0;
        }
        let progressed = match accepted(&http, &chaos.sandbox).await {
            Some(n) => {
                let more = n > last_accepted;
                last_accepted = n;
                more
            }
            None => {
                seen.sandbox_unreachable += 1;
                false
            }
        };
        // Is work waiting? (When the database does not answer, as before.)
        if let Some(finished) = finished_deliveries(&chaos).await {
            pending = accepted_so_far.load(Ordering::Relaxed) as i64 > finished;
        }
        if progressed || !pending {
            let length = now - last_progress;
            if length >= SAMPLE_EVERY * 2 {
                seen.close(Gap {
                    start_secs: (last_progress - chaos.started).as_secs_f64(),
                    length_secs: length.as_secs_f64(),
                });
            }
            last_progress = now;
        }

        if seen.samples % 5 == 0 {
            let generation = record.notifier_generation();
            if let Some(counts) = chaos.scrape_resends().await {
                record.observe_resends(generation, counts);
            }
            if let Ok(mut system) = chaos.system.try_lock() {
                if let Some(name) = system.exited_child() {
                    if !record.is_down(name) && !seen.crashes.iter().any(|(n, _)| n == name) {
                        let at = chaos.started.elapsed().as_secs_f64();
                        seen.crashes.push((name.to_owned(), at));
                    }
                }
            }
        }
    }
    if pending {
        seen.close(Gap {
            start_secs: (last_progress - chaos.started).as_secs_f64(),
            length_secs: last_progress.elapsed().as_secs_f64(),
        });
    }
    seen
}

/// The sandbox's count of accepted messages in its current lifetime.
async fn accepted(http: &reqwest::Client, sandbox: &str) -> Option<u64> {
    let stats: serde_json::Value = http
        .get(format!("{sandbox}/_sandbox/stats"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    stats["accepted"].as_u64()
}

/// Deliveries that reached an end.
async fn finished_deliveries(chaos: &Chaos) -> Option<i64> {
    let client = chaos.pool.get().await.ok()?;
    let row = tokio::time::timeout(
        Duration::from_secs(1),
        client.query_one(
            "SELECT count(*) FROM notifier.deliveries
              WHERE status IN ('sent', 'delivered', 'seen', 'failed')",
            &[],
        ),
    )
    .await
    .ok()?
    .ok()?;
    Some(row.get(0))
}
