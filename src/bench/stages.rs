//! Where an event's latency goes, stage by stage, read from the timestamps the
//! services already store (PostgreSQL's `now()` is the start of the writing
//! transaction):
//!
//! 1. intake's 202 → the tracker's batch transaction (`tracker.dossier_events.recorded_at`):
//!    the first broker hop and the tracker's batching;
//! 2. → the notifier's claim (`notifier.deliveries.created_at`): the tracker's commit,
//!    the relay's pick-up and confirmed publish, the second hop and the notifier's
//!    batching (relayed outbox rows are deleted, so the relay leaves no timestamp);
//! 3. → the sandbox's `received_at`: the claim and the Zalo call.
//!
//! In a saturated run the stage where time piles up is the bottleneck. This reads the
//! services' own tables, so it is best-effort: when a schema changes the report says
//! the breakdown is unavailable instead of failing the run.

use super::load::Percentiles;
use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;

/// One stage's latency.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    /// What the stage covers.
    pub stage: &'static str,
    /// Its distribution in ms.
    pub ms: Percentiles,
}

/// One event as the harness saw it.
pub struct Traced {
    /// Its `event_id`.
    pub event_id: String,
    /// When its batch got the 202.
    pub accepted_at: DateTime<Utc>,
    /// When the sandbox received its message.
    pub received_at: DateTime<Utc>,
}

const STAGES: [&str; 3] = [
    "202 → tracker transaction (hop 1 + batching)",
    "tracker transaction → notifier claim (commit, relay, hop 2 + batching)",
    "notifier claim → Zalo accepted (claim + HTTP call)",
];

fn epoch(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

/// Reads the services' timestamps for `events` (keyed by tracking id) from the run's
/// database and returns the three stages.
pub async fn breakdown(
    database_url: &str,
    events: &HashMap<String, Traced>,
) -> anyhow::Result<Vec<Stage>> {
    let pool = loa_platform::db::pool(database_url, 1)?;
    let client = pool
        .get()
        .await
        .context("Failed to connect to the run's database")?;
    let recorded: HashMap<String, f64> = client
        .query(
            "SELECT event_id, extract(epoch FROM recorded_at)::float8 FROM tracker.dossier_events",
            &[],
        )
        .await
        .context("Failed to read tracker.dossier_events")?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let claimed: HashMap<String, f64> = client
        .query("SELECT notification_id, extract(epoch FROM created_at)::float8 FROM notifier.deliveries", &[])
        .await
        .context("Failed to read notifier.deliveries")?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut samples: [Vec<f64>; 3] = Default::default();
    for (tracking_id, e) in events {
        let (Some(t1), Some(t2)) = (recorded.get(&e.event_id), claimed.get(tracking_id)) else {
            continue;
        };
        let points = [epoch(e.accepted_at), *t1, *t2, epoch(e.received_at)];
        for (i, s) in samples.iter_mut().enumerate() {
            s.push((points[i + 1] - points[i]) * 1000.0);
        }
    }
    anyhow::ensure!(
        !samples[0].is_empty(),
        "no event could be traced through the services' tables"
    );
    Ok(STAGES
        .iter()
        .zip(samples.iter_mut())
        .map(|(stage, s)| Stage {
            stage,
            ms: Percentiles::of(s),
        })
        .collect())
}

/// The stages as a table.
pub fn table(stages: &[Stage]) -> super::report::Table {
    use super::report::num;
    let mut t = super::report::Table::new(&["stage", "p50 ms", "p95 ms", "p99 ms", "max ms"]);
    for s in stages {
        t.push(vec![
            s.stage.to_owned(),
            num(s.ms.p50, 1),
            num(s.ms.p95, 1),
            num(s.ms.p99, 1),
            num(s.ms.max, 1),
        ]);
    }
    t
}
