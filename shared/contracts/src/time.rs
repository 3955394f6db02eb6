//! Vietnamese local time.
//!
//! Vietnam has kept UTC+07:00 without daylight saving since 1975, so
//! `Asia/Ho_Chi_Minh` is a fixed offset; a fixed offset avoids shipping the tz database.

use chrono::{DateTime, FixedOffset, TimeZone, Utc};

/// The `Asia/Ho_Chi_Minh` offset (UTC+07:00).
pub fn vietnam() -> FixedOffset {
    FixedOffset::east_opt(7 * 3600).expect("UTC+07:00 is a valid offset")
}

/// Formats an instant as a Vietnamese date, `dd/MM/yyyy`, in Asia/Ho_Chi_Minh.
pub fn format_date_vn<Tz: TimeZone>(at: &DateTime<Tz>) -> String {
    at.with_timezone(&vietnam()).format("%d/%m/%Y").to_string()
}

/// Formats an instant as `HH:mm dd/MM/yyyy` in Asia/Ho_Chi_Minh.
pub fn format_datetime_vn<Tz: TimeZone>(at: &DateTime<Tz>) -> String {
    at.with_timezone(&vietnam())
        .format("%H:%M %d/%m/%Y")
        .to_string()
}

/// Formats an instant as citizens read it in a sentence, `lúc 04:54 ngày 02/12/2026`,
/// in Asia/Ho_Chi_Minh.
pub fn format_moment_vn<Tz: TimeZone>(at: &DateTime<Tz>) -> String {
    at.with_timezone(&vietnam())
        .format("lúc %H:%M ngày %d/%m/%Y")
        .to_string()
}

/// The calendar day in Vietnam of an instant, for date-granularity comparisons
/// (early / on time / overdue are decided per day, as the provinces report them).
pub fn vietnam_day(at: &DateTime<Utc>) -> chrono::NaiveDate {
    at.with_timezone(&vietnam()).date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_evening_utc_is_next_day_in_vietnam() {
        let at = DateTime::parse_from_rfc3339("2026-11-28T18:30:00Z").unwrap();
        assert_eq!(format_date_vn(&at), "29/11/2026");
        assert_eq!(format_datetime_vn(&at), "01:30 29/11/2026");
        assert_eq!(format_moment_vn(&at), "lúc 01:30 ngày 29/11/2026");
    }
}
