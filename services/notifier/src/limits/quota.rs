//! The OA's ZNS daily quota, per tenant and Vietnamese quota day.
//!
//! Zalo reports `dailyQuota` and `remainingQuota` in every ZNS success; the notifier
//! keeps the latest in `notifier.zns_quota (tenant, day)` and the gate in front of each
//! batch (`notifier.take_send_slots`, see [`super::ratelimit`]) reads it:
//!
//! - broadcasts stop once `remaining` is down to the tenant's `transactional_reserve`
//!   share of the daily quota, so case updates keep the rest; the stopped broadcasts
//!   are deferred to the next quota day (00:05 Asia/Ho_Chi_Minh), not failed;
//! - only `-144` marks the day exhausted: every ZNS send of the tenant is then deferred
//!   to the next quota day without calling Zalo. A success reporting `remainingQuota`
//!   0 is not taken as the day spent: public captures show successes answering
//!   `"dailyQuota": "0", "remainingQuota": "0"` (an OA without a daily quota, or a
//!   figure Zalo did not fill in), so a reported `dailyQuota` of 0 carries no figure at
//!   all and is ignored, and a real 0 left only stops broadcasts at the reserve until
//!   Zalo itself refuses with `-144`.
//!
//! The gate lowers `remaining` by every ZNS send it lets through, so replicas cannot
//! overshoot the reserve between two answers; [`observe_many`] then takes Zalo's figure
//! (the lower of both: an answer may predate sends still in flight) and gives back the
//! reservations that did not reach Zalo. A new day starts without a row; before the
//! day's first promotion the sender asks Zalo (`GET /message/quota`) so the promotion
//! share holds from the first send; otherwise the first answer fills it in.

use crate::metrics;
use anyhow::Context;
use chrono::NaiveDate;
use deadpool_postgres::Pool;
use std::{collections::HashSet, sync::Arc};

/// The tenants whose quota one process asked Zalo for, per quota day, so it asks at
/// most once a day per tenant (see the sender's `know_quota`). Whoever holds it while
/// asking makes the other batches of the process wait for the answer, so none of them
/// sends a promotion before the quota is on record. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Asked(Arc<tokio::sync::Mutex<HashSet<(String, NaiveDate)>>>);

impl Asked {
    /// Locks the record of what was asked.
    pub(crate) async fn lock(&self) -> tokio::sync::MutexGuard<'_, HashSet<(String, NaiveDate)>> {
        self.0.lock().await
    }
}

/// Whether the tenant's quota for `day` is on record (Zalo reported it).
pub(crate) async fn is_known(pool: &Pool, tenant: &str, day: NaiveDate) -> anyhow::Result<bool> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let row = client
        .query_opt(
            "SELECT 1 FROM notifier.zns_quota WHERE tenant = $1 AND day = $2 AND daily_quota IS NOT NULL",
            &[&tenant, &day],
        )
        .await
        .context("Failed to read the ZNS quota")?;
    Ok(row.is_some())
}

/// What one batch learnt about a tenant's quota.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Observation {
    /// `dailyQuota` of the latest answer that had it.
    pub daily_quota: Option<i64>,
    /// The lowest `remainingQuota` reported.
    pub remaining: Option<i64>,
    /// Zalo refused a send with `-144`: the only thing that marks the day spent.
    pub exhausted: bool,
    /// ZNS sends the gate reserved quota for that Zalo did not accept.
    pub refund: i64,
    /// Of those, promotions (tag 3): given back to the day's promotion share too.
    pub promotion_refund: i64,
}

impl Observation {
    /// Folds one accepted ZNS answer in. A `dailyQuota` of 0 (or less) is Zalo
    /// reporting no quota figure, not a quota of nothing: the answer's figures are
    /// ignored (see the module docs).
    pub(crate) fn accepted(&mut self, daily_quota: Option<i64>, remaining: Option<i64>) {
        if daily_quota.is_some_and(|d| d <= 0) {
            return;
        }
        if daily_quota.is_some() {
            self.daily_quota = daily_quota;
        }
        if let Some(r) = remaining {
            self.remaining = Some(self.remaining.map_or(r, |m| m.min(r)));
        }
    }

    /// Whether there is anything to store.
    pub(crate) fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Stores what a batch learnt about each of its tenants in one statement (rows
/// locked in tenant order, as the gate locks them) and updates
/// `loa_notifier_quota_remaining`. Tenants must be distinct.
pub(crate) async fn observe_many(
    pool: &Pool,
    day: NaiveDate,
    seen: &[(&str, &Observation)],
) -> anyhow::Result<()> {
    let mut seen: Vec<&(&str, &Observation)> = seen.iter().filter(|(_, o)| !o.is_empty()).collect();
    if seen.is_empty() {
        return Ok(());
    }
    seen.sort_by_key(|(tenant, _)| *tenant);
    let clamp = |v: i64| i32::try_from(v.max(0)).unwrap_or(i32::MAX);
    let tenants: Vec<&str> = seen.iter().map(|(t, _)| *t).collect();
    let daily: Vec<Option<i32>> = seen.iter().map(|(_, o)| o.daily_quota.map(clamp)).collect();
    let remaining: Vec<Option<i32>> = seen
        .iter()
        .map(|(_, o)| {
            if o.exhausted {
                Some(0)
            } else {
                o.remaining.map(clamp)
            }
        })
        .collect();
    // Only Zalo's -144 spends the day; a reported 0 left does not (see the module docs).
    let exhausted: Vec<bool> = seen.iter().map(|(_, o)| o.exhausted).collect();
    let refund: Vec<i32> = seen.iter().map(|(_, o)| clamp(o.refund)).collect();
    let promotion_refund: Vec<i32> = seen
        .iter()
        .map(|(_, o)| clamp(o.promotion_refund))
        .collect();
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let statement = client
        .prepare_cached(
            "WITH o AS (
                 SELECT * FROM UNNEST($1::text[], $3::int4[], $4::int4[], $5::bool[], $6::int4[],
                                      $7::int4[])
                     AS o(tenant, daily_quota, remaining, exhausted, refund, promotion_refund)
             )
             INSERT INTO notifier.zns_quota AS q (tenant, day, daily_quota, remaining, exhausted)
             SELECT tenant, $2, daily_quota, remaining, exhausted FROM o
             ON CONFLICT (tenant, day) DO UPDATE
                SET daily_quota = COALESCE(EXCLUDED.daily_quota, q.daily_quota),
                    remaining = CASE
                        WHEN EXCLUDED.exhausted THEN 0
                        WHEN q.remaining IS NULL THEN EXCLUDED.remaining
                        WHEN EXCLUDED.remaining IS NULL THEN q.remaining + (SELECT o.refund FROM o WHERE o.tenant = q.tenant)
                        ELSE LEAST(q.remaining + (SELECT o.refund FROM o WHERE o.tenant = q.tenant), EXCLUDED.remaining)
                    END,
                    exhausted = q.exhausted OR EXCLUDED.exhausted,
                    promotion_sent = GREATEST(0, q.promotion_sent
                        - (SELECT o.promotion_refund FROM o WHERE o.tenant = q.tenant)),
                    updated_at = now()
             RETURNING tenant, remaining",
        )
        .await
        .context("Failed to prepare the quota update")?;
    let rows = client
        .query(
            &statement,
            &[
                &tenants,
                &day,
                &daily,
                &remaining,
                &exhausted,
                &refund,
                &promotion_refund,
            ],
        )
        .await
        .context("Failed to store the ZNS quota")?;
    for row in rows {
        if let Some(left) = row.get::<_, Option<i32>>(1) {
            metrics::quota_remaining(row.get::<_, &str>(0), i64::from(left));
        }
    }
    Ok(())
}

/// The stored quota of a tenant's day: `(daily_quota, remaining, exhausted)`.
pub(crate) async fn read(
    pool: &Pool,
    tenant: &str,
    day: NaiveDate,
) -> anyhow::Result<Option<(Option<i32>, Option<i32>, bool)>> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let row = client
        .query_opt(
            "SELECT daily_quota, remaining, exhausted FROM notifier.zns_quota
              WHERE tenant = $1 AND day = $2",
            &[&tenant, &day],
        )
        .await
        .context("Failed to read the ZNS quota")?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_keeps_the_lowest_remaining_and_the_latest_daily_quota() {
        let mut seen = Observation::default();
        assert!(seen.is_empty());
        seen.accepted(Some(500), Some(480));
        seen.accepted(None, Some(470));
        seen.accepted(Some(500), Some(475));
        assert_eq!(seen.daily_quota, Some(500));
        assert_eq!(seen.remaining, Some(470));
        assert!(!seen.is_empty());
    }

    #[test]
    fn a_success_reporting_a_daily_quota_of_zero_carries_no_figure() {
        let mut seen = Observation::default();
        seen.accepted(Some(0), Some(0));
        assert!(seen.is_empty(), "nothing to store: {seen:?}");
        seen.accepted(Some(500), Some(0));
        assert_eq!((seen.daily_quota, seen.remaining), (Some(500), Some(0)));
        assert!(!seen.exhausted, "only -144 spends the day");
    }
}
