//! The province's report over a period (`GET /v1/stats`, `loa stats`): per agency or
//! per procedure, dossiers received and completed, completed early / on time / late,
//! the median processing time and the citizens' ratings.
//!
//! Every number is decided by the same rules as the lookup page and the dossier API:
//! timeliness by [`DossierState::timeliness`] (per Vietnamese calendar day, against the
//! appointment moved by the time the dossier waited for the citizen), processing time
//! by [`DossierState::processing_time`] (reception to result, the wait for the citizen
//! left out). The rows are streamed from PostgreSQL and folded here, so a year of a
//! province's dossiers never sits in memory at once; only the processing times of the
//! completed ones are kept, for the medians.
//!
//! A period is whole days in Asia/Ho_Chi_Minh, `from` and `to` included:
//! - `received`: dossiers received in it (`received_at`);
//! - `completed`: dossiers whose result became ready (status 9, or 10 without a 9) in
//!   it, split into `early`, `on_time`, `late` and `without_due_date` (procedures
//!   without an appointment are neither early nor late);
//! - ratings: the ratings last given (or changed) in it, by level; `satisfied_share` is
//!   (very satisfied + satisfied) / all, `null` without ratings.

use crate::{
    domain::day_start,
    ratings::RatingLevel,
    store::{state_from_row, STATE_COLUMNS},
    Timeliness,
};
use anyhow::Context;
use chrono::{DateTime, Days, NaiveDate, Utc};
use deadpool_postgres::Pool;
use futures_util::TryStreamExt;
use serde::Serialize;
use std::collections::BTreeMap;

/// The longest period one report covers, in days (a leap year).
pub const MAX_PERIOD_DAYS: u64 = 366;

/// What the rows of a report are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Grouping {
    /// One row per agency (cơ quan giải quyết).
    Agency,
    /// One row per procedure (thủ tục hành chính).
    Procedure,
}

impl Grouping {
    /// A grouping by its name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "agency" => Some(Self::Agency),
            "procedure" => Some(Self::Procedure),
            _ => None,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agency => "agency",
            Self::Procedure => "procedure",
        }
    }
}

/// Ratings by level.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RatingCounts {
    /// Rất hài lòng.
    pub very_satisfied: u64,
    /// Hài lòng.
    pub satisfied: u64,
    /// Không hài lòng.
    pub dissatisfied: u64,
    /// All three.
    pub total: u64,
}

impl RatingCounts {
    fn add(&mut self, level: RatingLevel) {
        match level {
            RatingLevel::VerySatisfied => self.very_satisfied += 1,
            RatingLevel::Satisfied => self.satisfied += 1,
            RatingLevel::Dissatisfied => self.dissatisfied += 1,
        }
        self.total += 1;
    }
}

/// One row of a report: an agency's or a procedure's numbers, or the total.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StatsRow {
    /// The agency's or procedure's code (`null` on the total).
    pub code: Option<String>,
    /// Its name (`null` on the total).
    pub name: Option<String>,
    /// Dossiers received in the period.
    pub received: u64,
    /// Dossiers whose result became ready in the period.
    pub completed: u64,
    /// Of those, before the appointment day.
    pub early: u64,
    /// On the appointment day.
    pub on_time: u64,
    /// After it.
    pub late: u64,
    /// Without an appointment.
    pub without_due_date: u64,
    /// Median processing time of the completed dossiers with a reception date, in
    /// seconds, the wait for the citizen left out (the mean of the two middle values
    /// for an even count); `null` when none.
    pub median_processing_seconds: Option<i64>,
    /// The same in days, to two decimals.
    pub median_processing_days: Option<f64>,
    /// Ratings given in the period.
    pub ratings: RatingCounts,
    /// (very satisfied + satisfied) / ratings, to four decimals; `null` without ratings.
    pub satisfied_share: Option<f64>,
}

/// A report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatsReport {
    /// The tenant.
    pub tenant: String,
    /// First day, YYYY-MM-DD (Asia/Ho_Chi_Minh).
    pub from: NaiveDate,
    /// Last day, included.
    pub to: NaiveDate,
    /// What the rows are.
    pub group: Grouping,
    /// One row per agency or procedure that had anything in the period, by code.
    pub rows: Vec<StatsRow>,
    /// The whole tenant.
    pub total: StatsRow,
}

#[derive(Default)]
struct Acc {
    row: StatsRow,
    times: Vec<i64>,
}

impl Acc {
    fn finish(mut self) -> StatsRow {
        self.times.sort_unstable();
        let n = self.times.len();
        let median = match n {
            0 => None,
            _ if n % 2 == 1 => Some(self.times[n / 2]),
            _ => Some((self.times[n / 2 - 1] + self.times[n / 2]) / 2),
        };
        self.row.median_processing_seconds = median;
        self.row.median_processing_days = median.map(|s| (s as f64 / 864.0).round() / 100.0);
        let r = &self.row.ratings;
        self.row.satisfied_share = (r.total > 0).then(|| {
            ((r.very_satisfied + r.satisfied) as f64 / r.total as f64 * 10_000.0).round() / 10_000.0
        });
        self.row
    }
}

/// Computes a tenant's report for the days `from..=to`.
pub async fn report(
    pool: &Pool,
    tenant: &str,
    from: NaiveDate,
    to: NaiveDate,
    group: Grouping,
) -> anyhow::Result<StatsReport> {
    let start = day_start(from);
    let end = day_start(
        to.checked_add_days(Days::new(1))
            .context("date out of range")?,
    );
    let in_period = |t: Option<DateTime<Utc>>| t.is_some_and(|t| t >= start && t < end);
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let mut groups: BTreeMap<String, Acc> = BTreeMap::new();
    let mut total = Acc::default();
    let select = format!(
        "SELECT {STATE_COLUMNS} FROM tracker.dossiers
         WHERE tenant = $1
           AND ((received_at >= $2 AND received_at < $3)
             OR (completed_at >= $2 AND completed_at < $3))"
    );
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&tenant, &start, &end];
    let rows = client
        .query_raw(&select, params)
        .await
        .context("Failed to read the period's dossiers")?;
    let mut rows = std::pin::pin!(rows);
    while let Some(row) = rows
        .try_next()
        .await
        .context("Failed to read the period's dossiers")?
    {
        let dossier = state_from_row(&row)?;
        let (code, name) = match group {
            Grouping::Agency => (&dossier.agency_code, &dossier.agency_name),
            Grouping::Procedure => (&dossier.procedure_code, &dossier.procedure_name),
        };
        let acc = groups.entry(code.clone()).or_insert_with(|| Acc {
            row: StatsRow {
                code: Some(code.clone()),
                name: Some(name.clone()),
                ..StatsRow::default()
            },
            times: Vec::new(),
        });
        for acc in [&mut *acc, &mut total] {
            if in_period(dossier.received_at) {
                acc.row.received += 1;
            }
            if in_period(dossier.completed_at) {
                acc.row.completed += 1;
                // Completed: the day is irrelevant to its timeliness.
                match dossier.timeliness(from) {
                    Some(Timeliness::Early) => acc.row.early += 1,
                    Some(Timeliness::OnTime) => acc.row.on_time += 1,
                    Some(Timeliness::Overdue) => acc.row.late += 1,
                    _ => acc.row.without_due_date += 1,
                }
                if let Some(took) = dossier.processing_time() {
                    acc.times.push(took.num_seconds());
                }
            }
        }
    }
    let column = match group {
        Grouping::Agency => "d.agency_code, d.agency_name",
        Grouping::Procedure => "d.procedure_code, d.procedure_name",
    };
    let ratings = client
        .query(
            &format!(
                "SELECT r.level, {column} FROM tracker.ratings AS r
                 JOIN tracker.dossiers AS d ON d.tenant = r.tenant AND d.dossier_code = r.dossier_code
                 WHERE r.tenant = $1 AND r.rated_at >= $2 AND r.rated_at < $3"
            ),
            &[&tenant, &start, &end],
        )
        .await
        .context("Failed to read the period's ratings")?;
    for row in &ratings {
        let level: &str = row.get(0);
        let Some(level) = RatingLevel::from_name(level) else {
            continue;
        };
        let code: String = row.get(1);
        let name: String = row.get(2);
        let acc = groups.entry(code.clone()).or_insert_with(|| Acc {
            row: StatsRow {
                code: Some(code),
                name: Some(name),
                ..StatsRow::default()
            },
            times: Vec::new(),
        });
        acc.row.ratings.add(level);
        total.row.ratings.add(level);
    }
    Ok(StatsReport {
        tenant: tenant.to_owned(),
        from,
        to,
        group,
        rows: groups.into_values().map(Acc::finish).collect(),
        total: total.finish(),
    })
}

/// The CSV columns, in order.
pub const CSV_HEADER: &str = "code,name,received,completed,early,on_time,late,without_due_date,\
median_processing_days,very_satisfied,satisfied,dissatisfied,ratings,satisfied_share";

/// The report as CSV (RFC 4180, CRLF line ends): [`CSV_HEADER`], one line per row,
/// then the total named "Tổng cộng". A cell a spreadsheet would run as a formula
/// (starting with `=`, `+`, `-`, `@`) is prefixed with `'`.
pub fn to_csv(report: &StatsReport) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push_str("\r\n");
    let total = StatsRow {
        name: Some("Tổng cộng".to_owned()),
        ..report.total.clone()
    };
    for row in report.rows.iter().chain(std::iter::once(&total)) {
        let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        let cells = [
            csv_cell(row.code.as_deref().unwrap_or_default()),
            csv_cell(row.name.as_deref().unwrap_or_default()),
            row.received.to_string(),
            row.completed.to_string(),
            row.early.to_string(),
            row.on_time.to_string(),
            row.late.to_string(),
            row.without_due_date.to_string(),
            opt(row.median_processing_days),
            row.ratings.very_satisfied.to_string(),
            row.ratings.satisfied.to_string(),
            row.ratings.dissatisfied.to_string(),
            row.ratings.total.to_string(),
            opt(row.satisfied_share),
        ];
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(times: &[i64]) -> StatsRow {
        Acc {
            row: StatsRow::default(),
            times: times.to_vec(),
        }
        .finish()
    }

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_two_middle_ones() {
        assert_eq!(acc(&[]).median_processing_seconds, None);
        assert_eq!(acc(&[30, 10, 20]).median_processing_seconds, Some(20));
        assert_eq!(acc(&[40, 10, 20, 30]).median_processing_seconds, Some(25));
        assert_eq!(acc(&[86_400 * 3 / 2]).median_processing_days, Some(1.5));
    }

    #[test]
    fn the_satisfied_share_counts_very_satisfied_and_satisfied() {
        let mut a = Acc::default();
        for level in [
            RatingLevel::VerySatisfied,
            RatingLevel::Satisfied,
            RatingLevel::Dissatisfied,
        ] {
            a.row.ratings.add(level);
        }
        assert_eq!(a.finish().satisfied_share, Some(0.6667));
        assert_eq!(Acc::default().finish().satisfied_share, None);
    }

    #[test]
    fn csv_quotes_what_needs_it_and_defuses_formulas() {
        assert_eq!(csv_cell("UBND phường Đức Thắng"), "UBND phường Đức Thắng");
        assert_eq!(
            csv_cell("Sở Tư pháp, tỉnh \"X\""),
            "\"Sở Tư pháp, tỉnh \"\"X\"\"\""
        );
        assert_eq!(csv_cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        let report = StatsReport {
            tenant: "demo".into(),
            from: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            to: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            group: Grouping::Agency,
            rows: vec![StatsRow {
                code: Some("H56".into()),
                name: Some("UBND phường Đức Thắng".into()),
                received: 3,
                ..StatsRow::default()
            }],
            total: StatsRow {
                received: 3,
                ..StatsRow::default()
            },
        };
        let csv = to_csv(&report);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines[1], "H56,UBND phường Đức Thắng,3,0,0,0,0,0,,0,0,0,0,");
        assert_eq!(lines[2], ",Tổng cộng,3,0,0,0,0,0,,0,0,0,0,");
        assert_eq!(lines[3], "");
    }
}
