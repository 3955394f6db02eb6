//! Personal data retention: a tenant's `retention_days` after a dossier's last event,
//! the names and phones in its history are reduced to masked forms (`Trần T. B.`,
//! `8490*****56`), Zalo user ids dropped, its phone search keys
//! (`tracker.dossier_phones`) deleted and its rating's comment cleared; the dossier,
//! its statuses, dates and rating stay, so the province's statistics and the lookup
//! page still work.
//!
//! Every replica runs the sweep on a timer; one at a time erases (a transaction-scoped
//! advisory lock), in batches of [`BATCH`] dossiers per transaction, each counted in
//! `loa_tracker_personal_data_erased_total{tenant}`. A dossier's last event is its
//! `updated_at` (set by every applied event); an erased one carries
//! `personal_data_erased_at` and is not looked at again unless an event arrived after
//! it (which brings a name and a phone again).
//!
//! An erased event still decodes for a late event's refold ([`decode_erased`]): its
//! masked phones are read as a placeholder that is never sent to (only the incoming
//! event's own recipient is ever notified).

use crate::{domain::mask_name, metrics};
use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use loa_contracts::{phone::mask_phone, DossierEvent};
use loa_platform::{
    sweep::{in_locked_batches, SweepLock},
    LiveTenants,
};
use serde_json::Value;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Advisory lock of the retention sweep: one eraser at a time.
const RETENTION_LOCK: SweepLock = SweepLock {
    key: (7302, 2),
    name: "the retention sweep",
};

/// Dossiers erased per transaction.
pub const BATCH: i64 = 200;

/// The phone an erased event decodes with: a valid form no one is sent to.
const PLACEHOLDER_PHONE: &str = "84300000000";

/// What one pass over a tenant did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    /// Whether this replica held the lock (false: another one is erasing).
    pub erased_here: bool,
    /// Dossiers whose personal data was erased.
    pub dossiers: u64,
}

/// The persons of a stored event (`applicant`, `on_behalf_of`) reduced to masked
/// forms: family name and initials, the phone's first four and last two digits, no
/// Zalo user id. The link to the electronic result goes too: the document behind it
/// is the citizen's, and the lookup page would keep offering it. Idempotent.
pub fn erase_persons(event: &mut Value) {
    if let Some(fields) = event.as_object_mut() {
        fields.remove("result_document");
    }
    for key in ["applicant", "on_behalf_of"] {
        let Some(person) = event.get_mut(key).and_then(Value::as_object_mut) else {
            continue;
        };
        if let Some(name) = person.get("name").and_then(Value::as_str) {
            // Masking a masked name gives it back: idempotent.
            let masked = mask_name(name);
            person.insert("name".into(), Value::String(masked));
        }
        if let Some(phone) = person.get("phone").and_then(Value::as_str) {
            if !phone.contains('*') {
                let masked = mask_phone(phone);
                person.insert("phone".into(), Value::String(masked));
            }
        }
        person.remove("zalo_user_id");
    }
}

/// Decodes a stored event whose persons were erased ([`erase_persons`]): its masked
/// phones read as a placeholder. `None` when it is not such an event.
pub fn decode_erased(text: &str) -> Option<DossierEvent> {
    let mut value: Value = serde_json::from_str(text).ok()?;
    let mut masked = false;
    for key in ["applicant", "on_behalf_of"] {
        if let Some(phone) = value.pointer_mut(&format!("/{key}/phone")) {
            if phone.as_str().is_some_and(|p| p.contains('*')) {
                *phone = Value::String(PLACEHOLDER_PHONE.into());
                masked = true;
            }
        }
    }
    masked.then(|| serde_json::from_value(value).ok()).flatten()
}

/// Erases the personal data of `tenant`'s dossiers whose last event is more than
/// `days` before `now`, [`BATCH`] at a time, until none is left or another replica
/// holds the lock.
pub async fn erase_expired(
    pool: &Pool,
    tenant: &str,
    days: u32,
    now: DateTime<Utc>,
) -> anyhow::Result<Erased> {
    let cutoff = now - chrono::Duration::days(i64::from(days));
    let mut total = Erased::default();
    let held = in_locked_batches(
        pool,
        &RETENTION_LOCK,
        |tx| {
            let tenant = tenant.to_owned();
            Box::pin(async move {
                let codes: Vec<String> = tx
                    .query(
                        "SELECT dossier_code FROM tracker.dossiers
                          WHERE tenant = $1 AND updated_at < $2
                            AND (personal_data_erased_at IS NULL OR personal_data_erased_at < updated_at)
                          ORDER BY updated_at LIMIT $3
                          FOR UPDATE SKIP LOCKED",
                        &[&tenant, &cutoff, &BATCH],
                    )
                    .await
                    .context("Failed to find dossiers past their retention")?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                if !codes.is_empty() {
                    erase_dossiers(tx, &tenant, &codes, now).await?;
                }
                Ok(codes.len() as u64)
            })
        },
        |dossiers| {
            if dossiers > 0 {
                metrics::personal_data_erased(tenant, dossiers);
                total.dossiers += dossiers;
            }
            // Until a batch finds none left.
            dossiers > 0
        },
    )
    .await?;
    total.erased_here = held || total.dossiers > 0;
    Ok(total)
}

/// Masks the persons of every event of `codes`, drops their phone keys and clears
/// their ratings' comments, in `tx`;
/// returns how many events were masked. Retention and a citizen's erasure
/// ([`crate::erasure`]) both leave this.
pub(crate) async fn erase_dossiers(
    tx: &deadpool_postgres::Transaction<'_>,
    tenant: &str,
    codes: &[String],
    now: DateTime<Utc>,
) -> anyhow::Result<u64> {
    let rows = tx
        .query(
            "SELECT event_id, event::text FROM tracker.dossier_events
              WHERE tenant = $1 AND dossier_code = ANY($2)",
            &[&tenant, &codes],
        )
        .await
        .context("Failed to read the events to erase")?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut bodies = Vec::with_capacity(rows.len());
    for row in rows {
        let text: &str = row.get(1);
        let mut event: Value = serde_json::from_str(text).context("a stored event is not JSON")?;
        erase_persons(&mut event);
        ids.push(row.get::<_, String>(0));
        bodies.push(event.to_string());
    }
    tx.execute(
        "UPDATE tracker.dossier_events AS e SET event = u.body::json
           FROM unnest($2::text[], $3::text[]) AS u(id, body)
          WHERE e.tenant = $1 AND e.event_id = u.id",
        &[&tenant, &ids, &bodies],
    )
    .await
    .context("Failed to store the erased events")?;
    tx.execute(
        "DELETE FROM tracker.dossier_phones WHERE tenant = $1 AND dossier_code = ANY($2)",
        &[&tenant, &codes],
    )
    .await
    .context("Failed to delete the phone keys")?;
    // What the citizen wrote with their rating may name them; the rating stays.
    tx.execute(
        "UPDATE tracker.ratings SET comment = ''
          WHERE tenant = $1 AND dossier_code = ANY($2) AND comment <> ''",
        &[&tenant, &codes],
    )
    .await
    .context("Failed to clear the ratings' comments")?;
    tx.execute(
        "UPDATE tracker.dossiers SET personal_data_erased_at = $3
          WHERE tenant = $1 AND dossier_code = ANY($2)",
        &[&tenant, &codes, &now],
    )
    .await
    .context("Failed to mark the dossiers erased")?;
    Ok(ids.len() as u64)
}

/// Erases what is past every tenant's retention every `interval` until `cancel`.
pub async fn run_retention(
    pool: Pool,
    tenants: LiveTenants,
    clock: crate::clock::Clock,
    interval: Duration,
    cancel: CancellationToken,
) {
    loop {
        for tenant in tenants.current().all() {
            let Some(days) = tenant.retention_days else {
                continue;
            };
            match erase_expired(&pool, &tenant.id, days, clock.now()).await {
                Ok(done) if done.dossiers > 0 => tracing::info!(
                    tenant = %tenant.id,
                    dossiers = done.dossiers,
                    "Erased the personal data of dossiers past their retention."
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(tenant = %tenant.id, error.message = %e, "The retention sweep failed; retrying at the next tick.")
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn erasing_masks_names_and_phones_drops_zalo_ids_and_result_links_and_is_idempotent() {
        let mut event = json!({
            "applicant": {"name": "Trần Thị Bích", "phone": "84903123456", "zalo_user_id": "123"},
            "on_behalf_of": {"name": "Lê Văn Tám", "phone": "84912345678"},
            "reason": "Thiếu giấy tờ",
            "result_document": {"name": "Trích lục", "url": "https://vbdt.example.gov.vn/1.pdf"}
        });
        erase_persons(&mut event);
        let once = event.clone();
        erase_persons(&mut event);
        assert_eq!(event, once);
        assert_eq!(
            event,
            json!({
                "applicant": {"name": "Trần T. B.", "phone": "8490*****56"},
                "on_behalf_of": {"name": "Lê V. T.", "phone": "8491*****78"},
                "reason": "Thiếu giấy tờ"
            })
        );
    }
}
