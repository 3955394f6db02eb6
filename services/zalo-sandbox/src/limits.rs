//! Zalo's throttles: a token bucket per app and API family (-32), a daily quota per OA
//! (-144, counted per Vietnamese calendar day), the ZNS night window (-133) and, when
//! asked, Zalo's rules for promotions (tag 3): at most a share of the day's quota
//! (25 % on Zalo) and at most a few per citizen per calendar month (4 on Zalo).

use crate::zalo::Api;
use chrono::{DateTime, NaiveDate, Timelike, Utc};
use serde::Serialize;
use std::time::Instant;

/// The limits of one API family, as set by `POST /_sandbox/limits`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiLimits {
    /// Sustained requests per second per app; `None` means unlimited.
    pub rate_per_second: Option<f64>,
    /// Bucket size; defaults to the rate (at least 1).
    pub burst: Option<u32>,
    /// Accepted messages per OA per Vietnamese day; `None` means unlimited, and then
    /// successes report `"dailyQuota": "0", "remainingQuota": "0"`, as public captures
    /// of Zalo's answers show: a client must not take that for a spent day.
    pub daily_quota: Option<u64>,
    /// Refuse sends between 22:00 and 06:00 Asia/Ho_Chi_Minh.
    pub night_ban: bool,
    /// Promotions (tag-3 templates) per day at most this share of `daily_quota`
    /// (Zalo's is 0.25); `None`: not enforced. Beyond it: `-147`.
    pub promotion_share: Option<f64>,
    /// Promotions one citizen (phone or user id) gets per calendar month in Vietnam
    /// at most (Zalo's is 4); `None`: not enforced. Beyond it: `-1471`.
    pub promotion_monthly_per_user: Option<u32>,
}

/// ZNS OAs get a daily quota by default, like on Zalo; OA messages do not.
pub const DEFAULT_ZNS_DAILY_QUOTA: u64 = 100_000;

/// What ZNS answers report as `dailyQuota` and `remainingQuota` when the OA has no
/// daily quota (Zalo's own answers do so in public captures).
pub const NO_QUOTA_REPORTED: (u64, u64) = (0, 0);

/// What `X-RateLimit-*` report when no rate limit is configured.
pub const UNLIMITED_HEADER_VALUE: u64 = 1_000_000;

impl ApiLimits {
    /// The limits in force before any `POST /_sandbox/limits`.
    pub fn defaults(api: Api) -> Self {
        Self {
            rate_per_second: None,
            burst: None,
            daily_quota: (api == Api::Zns).then_some(DEFAULT_ZNS_DAILY_QUOTA),
            night_ban: false,
            promotion_share: None,
            promotion_monthly_per_user: None,
        }
    }

    /// The bucket size in force.
    pub fn effective_burst(&self) -> Option<f64> {
        let rate = self.rate_per_second?;
        Some(match self.burst {
            Some(b) => f64::from(b.max(1)),
            None => rate.ceil().max(1.0),
        })
    }
}

/// A token bucket on the real monotonic clock.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            last: now,
        }
    }

    /// Refills for the time elapsed, then takes one token if there is one.
    pub fn try_take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whole tokens left (for `X-RateLimit-Remain`).
    pub fn remaining(&self) -> u64 {
        // Saturating float-to-int: tokens are never negative.
        self.tokens.floor() as u64
    }
}

/// Messages used on the current quota day.
#[derive(Debug, Clone, Default)]
pub struct QuotaCounter {
    day: Option<NaiveDate>,
    used: u64,
}

impl QuotaCounter {
    /// Uses one message of `quota` on `day`; the remaining count, or `None` when the
    /// quota is exhausted.
    pub fn try_use(&mut self, quota: u64, day: NaiveDate) -> Option<u64> {
        if self.day != Some(day) {
            self.day = Some(day);
            self.used = 0;
        }
        if self.used >= quota {
            return None;
        }
        self.used += 1;
        Some(quota - self.used)
    }

    /// What is left of `quota` on `day` without using any.
    pub fn remaining(&self, quota: u64, day: NaiveDate) -> u64 {
        if self.day == Some(day) {
            quota.saturating_sub(self.used)
        } else {
            quota
        }
    }
}

/// Promotions each citizen got per calendar month (Asia/Ho_Chi_Minh).
#[derive(Debug, Clone, Default)]
pub struct MonthlyPerUser {
    month: Option<(i32, u32)>,
    sent: std::collections::HashMap<String, u32>,
}

impl MonthlyPerUser {
    /// Counts one promotion to `recipient` in the month of `at` unless they already
    /// had `cap` this month (then `false`, nothing counted).
    pub fn try_send(&mut self, recipient: &str, cap: u32, at: DateTime<Utc>) -> bool {
        use chrono::Datelike;
        let day = quota_day(at);
        let month = (day.year(), day.month());
        if self.month != Some(month) {
            self.month = Some(month);
            self.sent.clear();
        }
        let n = self.sent.entry(recipient.to_owned()).or_default();
        if *n >= cap {
            return false;
        }
        *n += 1;
        true
    }
}

/// The quota day of an instant (quotas reset at 00:00 Asia/Ho_Chi_Minh).
pub fn quota_day(at: DateTime<Utc>) -> NaiveDate {
    loa_contracts::time::vietnam_day(&at)
}

/// Whether an instant falls in Zalo's night window, 22:00 to 06:00 Asia/Ho_Chi_Minh.
pub fn is_night(at: DateTime<Utc>) -> bool {
    let hour = at.with_timezone(&loa_contracts::time::vietnam()).hour();
    !(6..22).contains(&hour)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_a_burst_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(3.0, t0);
        assert!((0..3).all(|_| bucket.try_take(10.0, 3.0, t0)));
        assert!(!bucket.try_take(10.0, 3.0, t0));
        assert!(bucket.try_take(10.0, 3.0, t0 + Duration::from_millis(100)));
        assert!(!bucket.try_take(10.0, 3.0, t0 + Duration::from_millis(100)));
        assert_eq!(bucket.remaining(), 0);
    }

    #[test]
    fn quota_counts_down_and_resets_on_a_new_day() {
        let d1 = NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        let mut q = QuotaCounter::default();
        assert_eq!(q.try_use(2, d1), Some(1));
        assert_eq!(q.try_use(2, d1), Some(0));
        assert_eq!(q.try_use(2, d1), None);
        assert_eq!(q.try_use(2, d1.succ_opt().unwrap()), Some(1));
    }

    #[test]
    fn a_citizen_gets_at_most_the_cap_of_promotions_in_a_vietnamese_month() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let mut m = MonthlyPerUser::default();
        let nov = at("2026-11-30T10:00:00+07:00");
        assert!((0..4).all(|_| m.try_send("84912000001", 4, nov)));
        assert!(!m.try_send("84912000001", 4, nov));
        assert!(m.try_send("84912000002", 4, nov), "another citizen");
        // 17:00 UTC on 30/11 is already December in Vietnam.
        assert!(m.try_send("84912000001", 4, at("2026-11-30T17:00:00Z")));
    }

    #[test]
    fn night_is_22_to_06_in_vietnam() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert!(is_night(at("2026-11-28T22:00:00+07:00")));
        assert!(is_night(at("2026-11-28T05:59:59+07:00")));
        assert!(!is_night(at("2026-11-28T06:00:00+07:00")));
        assert!(!is_night(at("2026-11-28T14:59:00Z")));
        assert!(is_night(at("2026-11-28T15:00:00Z")));
    }
}
