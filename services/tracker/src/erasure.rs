//! A citizen's erasure request in the tracker (`POST /v1/subjects/erase`, see
//! [`loa_platform::erasure`]): every dossier of the tenant that names the phone (as
//! applicant or authorised filer) has its history's persons reduced to masked forms,
//! its Zalo user ids dropped and its phone search keys deleted, as retention does
//! ([`crate::retention::erase_dossiers`]); notifications of those dossiers still in
//! the outbox are deleted unsent. The dossiers, their statuses and dates stay.
//!
//! The dossiers are found by their phone keys and, for histories recorded before
//! phone keys existed, by the stored events themselves. All of it, and the audit row,
//! is one transaction: a request is carried out whole or not at all, and a repeated
//! one finds nothing left (zero counts, audited again).

use crate::search::phone_key;
use anyhow::Context;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use loa_platform::{
    erasure::{self, ErasureReport, ErasureRequest},
    Secret,
};
use std::collections::BTreeMap;

/// Erases what the tracker holds of `request.phone` in `tenant`, and audits it.
pub async fn erase_subject(
    pool: &Pool,
    lookup_secret: &Secret,
    tenant: &str,
    request: &ErasureRequest,
    credential: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<ErasureReport> {
    let phone = request.phone.as_str();
    let key = phone_key(lookup_secret, tenant, &request.phone);
    let mut client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let tx = client
        .transaction()
        .await
        .context("Failed to begin the erasure")?;
    let codes: Vec<String> = tx
        .query(
            "SELECT dossier_code FROM tracker.dossier_phones
              WHERE tenant = $1 AND phone_key = $2
             UNION
             SELECT dossier_code FROM tracker.dossier_events
              WHERE tenant = $1
                AND (event -> 'applicant' ->> 'phone' = $3
                     OR event -> 'on_behalf_of' ->> 'phone' = $3)",
            &[&tenant, &key, &phone],
        )
        .await
        .context("Failed to find the dossiers naming the phone")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut removed = BTreeMap::new();
    let mut events = 0;
    if !codes.is_empty() {
        // Lock the dossiers against a concurrent event's refold.
        tx.execute(
            "SELECT 1 FROM tracker.dossiers WHERE tenant = $1 AND dossier_code = ANY($2)
               FOR UPDATE",
            &[&tenant, &codes],
        )
        .await
        .context("Failed to lock the dossiers to erase")?;
        events = crate::retention::erase_dossiers(&tx, tenant, &codes, now).await?;
    }
    let outbox = tx
        .execute(
            "DELETE FROM tracker.outbox
              WHERE tenant = $1
                AND (body ->> 'dossier_code' = ANY($2)
                     OR body -> 'recipient' ->> 'phone' = $3)",
            &[&tenant, &codes, &phone],
        )
        .await
        .context("Failed to delete the outbox rows naming the phone")?;
    removed.insert("dossiers_masked".to_owned(), codes.len() as u64);
    removed.insert("events_masked".to_owned(), events);
    removed.insert("outbox_deleted".to_owned(), outbox);
    let report = erasure::record(&tx, "tracker", request, tenant, credential, now, removed).await?;
    tx.commit().await.context("Failed to commit the erasure")?;
    Ok(report)
}
