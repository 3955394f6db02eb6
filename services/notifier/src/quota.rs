//! The OA's ZNS daily quota, per tenant and Vietnamese quota day.
//!
//! Zalo reports `dailyQuota` and `remainingQuota` in every ZNS success; the notifier
//! keeps the latest in `notifier.zns_quota (tenant, day)` and the gate in front of each
//! batch (`notifier.take_send_slots`, see [`crate::ratelimit`]) reads it:
//!
//! - broadcasts stop once `remaining` is down to the tenant's `transactional_reserve`
//!   share of the daily quota, so case updates keep the rest; the stopped broadcasts
//!   are deferred to the next quota day (00:05 Asia/Ho_Chi_Minh), not failed;
//! - `-144` (or a report of 0 left) marks the day exhausted: every ZNS send of the
//!   tenant is deferred to the next quota day without calling Zalo.
//!
//! The gate lowers `remaining` by every ZNS send it lets through, so replicas cannot
//! overshoot the reserve between two answers; [`observe`] then takes Zalo's figure
//! (the lower of both: an answer may predate sends still in flight) and gives back the
//! reservations that did not reach Zalo. A new day starts without a row: nothing is
//! known, everything may go, and the first answer fills it in.

use crate::metrics;
use anyhow::Context;
use chrono::NaiveDate;
use deadpool_postgres::Pool;

/// What one batch learnt about a tenant's quota.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// `dailyQuota` of the latest answer that had it.
    pub daily_quota: Option<i64>,
    /// The lowest `remainingQuota` reported.
    pub remaining: Option<i64>,
    /// Zalo refused a send with `-144`.
    pub exhausted: bool,
    /// ZNS sends the gate reserved quota for that Zalo did not accept.
    pub refund: i64,
}

impl Observation {
    /// Folds one accepted ZNS answer in.
    pub fn accepted(&mut self, daily_quota: Option<i64>, remaining: Option<i64>) {
        if daily_quota.is_some() {
            self.daily_quota = daily_quota;
        }
        if let Some(r) = remaining {
            self.remaining = Some(self.remaining.map_or(r, |m| m.min(r)));
        }
    }

    /// Whether there is anything to store.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Stores what a batch learnt and updates `loa_notifier_quota_remaining`.
pub async fn observe(
    pool: &Pool,
    tenant: &str,
    day: NaiveDate,
    seen: &Observation,
) -> anyhow::Result<()> {
    if seen.is_empty() {
        return Ok(());
    }
    let clamp = |v: i64| i32::try_from(v.max(0)).unwrap_or(i32::MAX);
    let daily = seen.daily_quota.map(clamp);
    let remaining = if seen.exhausted {
        Some(0)
    } else {
        seen.remaining.map(clamp)
    };
    let exhausted = seen.exhausted || remaining == Some(0);
    let refund = clamp(seen.refund);
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let row = client
        .query_one(
            "INSERT INTO notifier.zns_quota AS q (tenant, day, daily_quota, remaining, exhausted)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant, day) DO UPDATE
                SET daily_quota = COALESCE(EXCLUDED.daily_quota, q.daily_quota),
                    remaining = CASE
                        WHEN EXCLUDED.exhausted THEN 0
                        WHEN q.remaining IS NULL THEN EXCLUDED.remaining
                        WHEN EXCLUDED.remaining IS NULL THEN q.remaining + $6
                        ELSE LEAST(q.remaining + $6, EXCLUDED.remaining)
                    END,
                    exhausted = q.exhausted OR EXCLUDED.exhausted,
                    updated_at = now()
             RETURNING remaining",
            &[&tenant, &day, &daily, &remaining, &exhausted, &refund],
        )
        .await
        .context("Failed to store the ZNS quota")?;
    if let Some(left) = row.get::<_, Option<i32>>(0) {
        metrics::quota_remaining(tenant, i64::from(left));
    }
    Ok(())
}

/// The stored quota of a tenant's day: `(daily_quota, remaining, exhausted)`.
pub async fn read(
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
}
