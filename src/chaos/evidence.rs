//! What the audit judges, read once the run has settled: the tracker's events and
//! outbox, the notifier's deliveries, dead letters and pauses (straight from their
//! tables), and every message the sandbox accepted in each of its lifetimes.

use super::record::Record;
use crate::bench::load::SandboxMessage;
use anyhow::Context;
use deadpool_postgres::Pool;
use serde_json::Value;
use std::{collections::HashMap, time::Duration};

/// An event as the tracker stored it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Its tenant.
    pub tenant: String,
    /// Its id.
    pub event_id: String,
    /// Its dossier.
    pub dossier_code: String,
    /// The event as stored (a `DossierEvent`).
    pub event: Value,
}

/// A row of `notifier.deliveries`.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Its tenant.
    pub tenant: String,
    /// `sent`, `delivered`, `failed`, …
    pub status: String,
    /// Claims so far.
    pub attempts: i32,
    /// The last error, for a failed one.
    pub last_error: Option<String>,
}

/// A row of `notifier.dead_letters`, with the ids its body carries.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The queue that gave up on it.
    pub source_queue: String,
    /// Why.
    pub reason: String,
    /// Every `notification_id` and `event_id` found in its body.
    pub ids: Vec<String>,
}

/// Everything the audit reads.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// `tracker.dossier_events`.
    pub events: Vec<StoredEvent>,
    /// Rows left in `tracker.outbox` (planned, never relayed).
    pub outbox_left: i64,
    /// `notifier.deliveries` by notification id.
    pub deliveries: HashMap<String, Delivery>,
    /// `notifier.dead_letters`.
    pub dead_letters: Vec<DeadLetter>,
    /// Tenants paused (`notifier.tenant_pauses`), with the reason.
    pub pauses: Vec<(String, String)>,
    /// Every message the sandbox accepted, over all its lifetimes.
    pub messages: Vec<SandboxMessage>,
}

/// Reads the evidence: the tables through `pool`, the live sandbox's messages from
/// `sandbox`, the killed sandboxes' from the record.
pub async fn gather(pool: &Pool, sandbox: &str, record: &Record) -> anyhow::Result<Evidence> {
    let client = pool
        .get()
        .await
        .context("Failed to connect to the run's database")?;
    let events = client
        .query(
            "SELECT tenant, event_id, dossier_code, event::text FROM tracker.dossier_events",
            &[],
        )
        .await
        .context("Failed to read tracker.dossier_events")?
        .iter()
        .map(|r| {
            let text: String = r.get(3);
            Ok(StoredEvent {
                tenant: r.get(0),
                event_id: r.get(1),
                dossier_code: r.get(2),
                event: serde_json::from_str(&text).context("a stored event is not JSON")?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let outbox_left: i64 = client
        .query_one("SELECT count(*) FROM tracker.outbox", &[])
        .await
        .context("Failed to read tracker.outbox")?
        .get(0);
    let deliveries = client
        .query(
            "SELECT notification_id, tenant, status, attempts,
                    coalesce(last_error_code::text || ': ', '') || coalesce(last_error, '')
               FROM notifier.deliveries",
            &[],
        )
        .await
        .context("Failed to read notifier.deliveries")?
        .iter()
        .map(|r| {
            let error: String = r.get(4);
            (
                r.get(0),
                Delivery {
                    tenant: r.get(1),
                    status: r.get(2),
                    attempts: r.get(3),
                    last_error: Some(error).filter(|e| !e.is_empty()),
                },
            )
        })
        .collect();
    let dead_letters = client
        .query(
            "SELECT source_queue, reason, body FROM notifier.dead_letters",
            &[],
        )
        .await
        .context("Failed to read notifier.dead_letters")?
        .iter()
        .map(|r| {
            let body: Vec<u8> = r.get(2);
            let mut ids = Vec::new();
            if let Ok(value) = serde_json::from_slice::<Value>(&body) {
                collect_ids(&value, &mut ids);
            }
            DeadLetter {
                source_queue: r.get(0),
                reason: r.get(1),
                ids,
            }
        })
        .collect();
    let pauses = client
        .query(
            "SELECT tenant, reason FROM notifier.tenant_pauses WHERE paused",
            &[],
        )
        .await
        .context("Failed to read notifier.tenant_pauses")?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let live: Vec<SandboxMessage> = reqwest::Client::new()
        .get(format!("{sandbox}/_sandbox/messages"))
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .context("the sandbox did not answer")?
        .error_for_status()?
        .json()
        .await
        .context("the sandbox's messages are not what the run expects")?;
    Ok(Evidence {
        events,
        outbox_left,
        deliveries,
        dead_letters,
        pauses,
        messages: record.all_messages(live),
    })
}

/// Every string under a `notification_id` or `event_id` key, at any depth.
fn collect_ids(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("notification_id" | "event_id", Value::String(id)) => out.push(id.clone()),
                    _ => collect_ids(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_ids(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_found_at_any_depth_of_a_dead_letters_body() {
        let body = json!({"type": "notification_batch.v1", "requests": [
            {"notification_id": "n1", "tenant": "t"},
            {"notification_id": "n2", "params": {"event_id": "e9"}},
        ]});
        let mut ids = Vec::new();
        collect_ids(&body, &mut ids);
        ids.sort();
        assert_eq!(ids, vec!["e9", "n1", "n2"]);
    }
}
