//! A tenant's broadcast settings (`[tenants.broadcasts]`): quiet hours and whether
//! Article broadcasts through the OA's own broadcast endpoint are allowed.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use loa_contracts::time::vietnam;
use serde::Deserialize;
use std::fmt;

/// `[tenants.broadcasts]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BroadcastSettings {
    /// Hours, in Asia/Ho_Chi_Minh, in which Loa sends no broadcast message and holds
    /// them until the window ends (`"22:00-06:00"`, Zalo's own night ban for
    /// promotions; `""`: none). Case updates are not affected.
    pub quiet_hours: QuietHours,
    /// Whether this tenant's admins may send an Article broadcast: one call to the
    /// OA's broadcast endpoint, targeted by city, instead of a fan-out to subscribers.
    pub article_broadcasts: bool,
}

/// A daily window in Asia/Ho_Chi_Minh, `HH:MM-HH:MM`, that may run past midnight;
/// empty for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours(Option<(NaiveTime, NaiveTime)>);

impl Default for QuietHours {
    /// `22:00-06:00`: the hours Zalo refuses promotions in anyway (`-234`, `-133`).
    fn default() -> Self {
        Self(Some((
            NaiveTime::from_hms_opt(22, 0, 0).expect("a valid time"),
            NaiveTime::from_hms_opt(6, 0, 0).expect("a valid time"),
        )))
    }
}

impl QuietHours {
    /// No quiet hours.
    pub const NONE: Self = Self(None);

    /// Parses `HH:MM-HH:MM` (start and end differ), or `""` for none.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Self(None));
        }
        let (start, end) = text
            .split_once('-')
            .ok_or_else(|| format!("`{text}` is not `HH:MM-HH:MM`"))?;
        let time = |t: &str| {
            NaiveTime::parse_from_str(t.trim(), "%H:%M")
                .map_err(|_| format!("`{}` is not a time `HH:MM`", t.trim()))
        };
        let (start, end) = (time(start)?, time(end)?);
        if start == end {
            return Err(format!("`{text}` starts and ends at the same time"));
        }
        Ok(Self(Some((start, end))))
    }

    /// Whether `at` falls in the window.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.ends_after(at).is_some()
    }

    /// When the window `at` falls in ends (`None` when `at` is outside it).
    pub fn ends_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (start, end) = self.0?;
        let local = at.with_timezone(&vietnam());
        let now = local.time();
        let inside = if start < end {
            start <= now && now < end
        } else {
            now >= start || now < end
        };
        if !inside {
            return None;
        }
        let mut day = local.date_naive();
        if now >= end {
            // Past midnight's window start: it ends tomorrow.
            day = day.succ_opt()?;
        }
        let ends = vietnam()
            .from_local_datetime(&day.and_time(end))
            .single()?
            .with_timezone(&Utc);
        Some(ends.max(at + Duration::seconds(1)))
    }
}

impl fmt::Display for QuietHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => Ok(()),
            Some((start, end)) => write!(f, "{}-{}", start.format("%H:%M"), end.format("%H:%M")),
        }
    }
}

impl<'de> Deserialize<'de> for QuietHours {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn the_default_window_runs_from_ten_at_night_to_six_in_the_morning_in_vietnam() {
        let q = QuietHours::default();
        assert_eq!(q.to_string(), "22:00-06:00");
        assert!(!q.contains(at("2026-12-04T21:59:59+07:00")));
        assert_eq!(
            q.ends_after(at("2026-12-04T22:00:00+07:00")),
            Some(at("2026-12-05T06:00:00+07:00"))
        );
        assert_eq!(
            q.ends_after(at("2026-12-05T05:59:00+07:00")),
            Some(at("2026-12-05T06:00:00+07:00"))
        );
        assert!(!q.contains(at("2026-12-05T06:00:00+07:00")));
    }

    #[test]
    fn a_window_within_one_day_ends_that_day() {
        let q = QuietHours::parse("12:00-13:30").unwrap();
        assert_eq!(
            q.ends_after(at("2026-12-04T12:10:00+07:00")),
            Some(at("2026-12-04T13:30:00+07:00"))
        );
        assert!(!q.contains(at("2026-12-04T13:30:00+07:00")));
        assert!(!q.contains(at("2026-12-04T11:59:00+07:00")));
    }

    #[test]
    fn an_empty_setting_means_none_and_a_malformed_one_is_refused() {
        let none = QuietHours::parse("").unwrap();
        assert_eq!(none, QuietHours::NONE);
        assert!(!none.contains(at("2026-12-04T23:00:00+07:00")));
        for bad in ["22:00", "25:00-06:00", "22:00-22:00", "ten-six"] {
            assert!(QuietHours::parse(bad).is_err(), "{bad}");
        }
    }
}
