//! The per-tenant (per Zalo app) rate limit, exact across lanes and replicas.
//!
//! # Design: a GCRA row per tenant in PostgreSQL, reserving paced slots
//!
//! `notifier.rate_limits` holds one theoretical arrival time (`tat`) per tenant. One
//! call of `notifier.take_send_slots` (migration 3) locks that row and reserves up to
//! N send slots at once: slot j starts at `max(tat, now) - tolerance + j × interval`,
//! and `tat` moves on by N intervals. The caller sleeps until each slot and sends, so a
//! batch of 64 costs one round trip and its requests leave evenly, never faster than
//! `rate_per_second` with at most `burst` at once, whatever the number of lanes and
//! replicas: they all queue on the same row. The same call reads the tenant's pause
//! and ZNS quota (see [`super::pause`], [`super::quota`]), so the gate in front of
//! every batch is one statement.
//!
//! Only slots that start within a horizon are handed out per call, so a broadcast
//! batch cannot book the next minute and delay a case update behind it: the
//! transactional lane's next call gets the slot after the broadcast's current horizon.
//! The broadcast lane's horizon is shorter (`rate_limit_broadcast_horizon_ms`, 250 ms
//! by default, against 2 s for case updates): a broadcast only books the slots that
//! start almost now, so however hard it saturates the tenant's rate, a case update
//! that arrives waits at most that long behind it, and the broadcast gets what case
//! updates leave.
//!
//! Why not single-active-consumer queues per tenant: the limit would be exact only per
//! queue, and the notifier has two lanes per tenant that share one Zalo app; the
//! database already sits on the send path (claims), survives restarts and is what the
//! tests run against. Why not a static split of the rate per replica: autoscaling.
//!
//! Part of the burst (`burst_headroom`, default 10 %) is never used: Zalo's bucket
//! sees our requests after network jitter, and a few tokens of slack keep a request
//! that arrives a little early from meeting `-32`. When `-32` comes anyway (another
//! client of the same app, a lower limit than configured), [`RateLimiter::penalize`]
//! pushes the tenant's `tat` forward so every replica slows down, and the message
//! itself goes to a delay queue: it never loops hot.

use crate::clock::Clock;
use anyhow::Context;
use chrono::NaiveDate;
use deadpool_postgres::Pool;
use loa_platform::tenants::ZaloAppSettings;
use std::time::Duration;

/// Share of the day's ZNS quota promotions (tag 3) may use: Zalo's rule.
pub(crate) const PROMOTION_SHARE: f64 = 0.25;

/// How the limiter turns a tenant's configured rate into slots.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LimiterSettings {
    /// Share (0..1) of the configured burst left unused as a cushion for jitter.
    pub burst_headroom: f64,
    /// Hand out only slots that start within this long from now (case updates).
    pub horizon: Duration,
    /// The same for broadcasts: shorter, so they never book ahead of case updates.
    pub broadcast_horizon: Duration,
    /// How long `-32` pushes the tenant's next slot back.
    pub penalty: Duration,
}

/// What a batch wants from its tenant's gate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Want {
    /// Sends on ZNS (they count against the daily quota).
    pub zns: u32,
    /// Sends on other channels (OA template by user id).
    pub other: u32,
    /// Broadcast lane (stops at the transactional reserve of the quota, books slots
    /// within the broadcast horizon only).
    pub broadcast: bool,
    /// Promotions (Zalo's tag 3): their ZNS sends stop at 25 % of the day's quota.
    pub promotion: bool,
}

/// What the gate granted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grant {
    /// The tenant is paused: send nothing, hold everything.
    pub paused: Option<String>,
    /// ZNS sends the quota allows (the rest wait for the next quota day).
    pub zns_allowed: u32,
    /// ZNS sends with a slot now (≤ `zns_allowed`).
    pub zns_granted: u32,
    /// Other sends with a slot now.
    pub other_granted: u32,
    /// When the first slot starts, from now (zero: already due).
    pub first_slot: Duration,
    /// Between two slots.
    pub interval: Duration,
    /// Nothing fitted the horizon: ask again after this long.
    pub retry_after: Duration,
    /// The quota left today as far as we know, after this reservation.
    pub remaining: Option<i64>,
}

impl Grant {
    /// When slot `j` of this grant starts, from when the grant was read.
    pub(crate) fn slot(&self, j: u32) -> Duration {
        self.first_slot + self.interval * j
    }
}

/// The shared limiter. Cheap to clone.
#[derive(Clone)]
pub(crate) struct RateLimiter {
    pool: Pool,
    clock: Clock,
    settings: LimiterSettings,
}

impl RateLimiter {
    /// A limiter over `notifier.rate_limits`; `clock` picks the quota day.
    pub(crate) fn new(pool: Pool, clock: Clock, settings: LimiterSettings) -> Self {
        Self {
            pool,
            clock,
            settings,
        }
    }

    /// The interval and tolerance (ms) of a tenant's GCRA, or `None` without a limit.
    pub(crate) fn gcra(&self, app: &ZaloAppSettings) -> Option<(f64, f64)> {
        if app.rate_per_second.is_nan() || app.rate_per_second <= 0.0 {
            return None;
        }
        let interval = 1000.0 / app.rate_per_second;
        let burst = f64::from(app.burst.max(1));
        let headroom = (burst * self.settings.burst_headroom.clamp(0.0, 0.9)).ceil();
        let usable = (burst - headroom).max(1.0);
        Some((interval, (usable - 1.0) * interval))
    }

    /// The gate of a whole batch: every tenant's pause, quota and slots in one
    /// statement, one grant per entry, in order. The rows are locked in tenant order
    /// (whatever the order of `wants`), so two replicas gating overlapping sets of
    /// tenants cannot deadlock. Tenants must be distinct.
    pub(crate) async fn take_many(
        &self,
        wants: &[(&str, &ZaloAppSettings, Want)],
    ) -> anyhow::Result<Vec<Grant>> {
        if wants.is_empty() {
            return Ok(Vec::new());
        }
        let mut order: Vec<usize> = (0..wants.len()).collect();
        order.sort_by_key(|&i| wants[i].0);
        let day: NaiveDate = loa_contracts::time::vietnam_day(&self.clock.now());
        let horizon_ms = |broadcast: bool| {
            let horizon = if broadcast {
                self.settings.broadcast_horizon
            } else {
                self.settings.horizon
            };
            horizon.as_secs_f64() * 1000.0
        };
        let count = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        let mut tenants = Vec::with_capacity(wants.len());
        let (mut zns, mut other, mut broadcast) = (Vec::new(), Vec::new(), Vec::new());
        let (mut intervals, mut tolerances, mut reserves) = (Vec::new(), Vec::new(), Vec::new());
        let (mut horizons, mut promotions) = (Vec::new(), Vec::new());
        for &i in &order {
            let (tenant, app, want) = wants[i];
            let (interval_ms, tolerance_ms) = self.gcra(app).unwrap_or((0.0, 0.0));
            tenants.push(tenant);
            zns.push(count(want.zns));
            other.push(count(want.other));
            broadcast.push(want.broadcast);
            intervals.push(interval_ms);
            tolerances.push(tolerance_ms);
            reserves.push(app.transactional_reserve.clamp(0.0, 1.0));
            horizons.push(horizon_ms(want.broadcast));
            promotions.push(want.promotion);
        }
        let client = self
            .pool
            .get()
            .await
            .context("Failed to get a PostgreSQL connection")?;
        let statement = client
            .prepare_cached(
                "SELECT s.paused, s.pause_reason, s.zns_allowed, s.zns_granted, s.other_granted,
                        s.first_slot_ms, s.retry_after_ms, s.remaining
                   FROM UNNEST($1::text[], $2::int4[], $3::int4[], $4::bool[], $5::float8[],
                               $6::float8[], $7::float8[], $9::float8[], $10::bool[])
                        WITH ORDINALITY
                        AS w(tenant, want_zns, want_other, broadcast, interval_ms, tolerance_ms,
                             reserve, horizon_ms, promotion, ord)
                  CROSS JOIN LATERAL notifier.take_send_slots(
                        w.tenant, $8, w.want_zns, w.want_other, w.broadcast, w.interval_ms,
                        w.tolerance_ms, w.horizon_ms, w.reserve, w.promotion, $11) AS s
                  ORDER BY w.ord",
            )
            .await
            .context("Failed to prepare the send gate")?;
        let rows = client
            .query(
                &statement,
                &[
                    &tenants,
                    &zns,
                    &other,
                    &broadcast,
                    &intervals,
                    &tolerances,
                    &reserves,
                    &day,
                    &horizons,
                    &promotions,
                    &PROMOTION_SHARE,
                ],
            )
            .await
            .context("Failed to take send slots")?;
        anyhow::ensure!(
            rows.len() == wants.len(),
            "take_send_slots returned {} rows for {} tenants",
            rows.len(),
            wants.len()
        );
        let ms = |v: f64| Duration::from_secs_f64((v.max(0.0)) / 1000.0);
        let count = |v: i32| u32::try_from(v).unwrap_or(0);
        let mut grants: Vec<Option<Grant>> = vec![None; wants.len()];
        for (&i, row) in order.iter().zip(&rows) {
            let paused: bool = row.get(0);
            let (interval_ms, _) = self.gcra(wants[i].1).unwrap_or((0.0, 0.0));
            grants[i] = Some(Grant {
                paused: paused.then(|| row.get::<_, Option<String>>(1).unwrap_or_default()),
                zns_allowed: count(row.get(2)),
                zns_granted: count(row.get(3)),
                other_granted: count(row.get(4)),
                first_slot: ms(row.get(5)),
                interval: ms(interval_ms),
                retry_after: ms(row.get(6)),
                remaining: row.get::<_, Option<i32>>(7).map(i64::from),
            });
        }
        Ok(grants.into_iter().flatten().collect())
    }

    /// Zalo answered `-32` for this tenant: push its next slot back for every replica.
    pub(crate) async fn penalize(&self, tenant: &str) -> anyhow::Result<()> {
        let client = self
            .pool
            .get()
            .await
            .context("Failed to get a PostgreSQL connection")?;
        client
            .execute(
                "UPDATE notifier.rate_limits
                    SET tat = GREATEST(tat, clock_timestamp()) + make_interval(secs => $2),
                        updated_at = clock_timestamp()
                  WHERE tenant = $1",
                &[&tenant, &self.settings.penalty.as_secs_f64()],
            )
            .await
            .context("Failed to push back the rate limit")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(headroom: f64) -> RateLimiter {
        let pool = loa_platform::db::pool("postgres://nobody@127.0.0.1:1/none", 1).unwrap();
        RateLimiter::new(
            pool,
            Clock::real(),
            LimiterSettings {
                burst_headroom: headroom,
                horizon: Duration::from_secs(1),
                broadcast_horizon: Duration::from_millis(250),
                penalty: Duration::from_secs(1),
            },
        )
    }

    fn app(rate: f64, burst: u32) -> ZaloAppSettings {
        let mut t = loa_platform::tenants::demo_tenant("http://127.0.0.1:1");
        t.zalo.rate_per_second = rate;
        t.zalo.burst = burst;
        t.zalo
    }

    #[test]
    fn the_gcra_keeps_a_cushion_of_the_burst_and_never_less_than_one_request() {
        let l = limiter(0.1);
        // 20/s with a burst of 20: 50 ms apart, 18 at once (2 kept as a cushion).
        assert_eq!(l.gcra(&app(20.0, 20)), Some((50.0, 850.0)));
        assert_eq!(l.gcra(&app(5.0, 1)), Some((200.0, 0.0)));
        assert_eq!(l.gcra(&app(0.0, 10)), None);
    }

    #[test]
    fn slots_are_spaced_by_the_interval() {
        let grant = Grant {
            paused: None,
            zns_allowed: 3,
            zns_granted: 3,
            other_granted: 0,
            first_slot: Duration::from_millis(10),
            interval: Duration::from_millis(50),
            retry_after: Duration::ZERO,
            remaining: None,
        };
        assert_eq!(grant.slot(2), Duration::from_millis(110));
    }
}
