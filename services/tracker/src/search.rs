//! Dossier search for the admin console: by code (prefix) or applicant phone (exact),
//! agency, procedure, status, timeliness (overdue, early) and received date, newest
//! first, paged by keyset.
//!
//! Phones are not stored: each applied event's applicant (and authorised filer) phone
//! is kept as a **keyed hash** in `tracker.dossier_phones`, `HMAC-SHA256(lookup_secret,
//! "phone" ␟ tenant ␟ 84…)` (16 bytes, hex), written in the same transaction as the
//! event ([`record_phones`]). A search for a phone normalises it as intake does and
//! looks up its key: exact matches only, and a copy of the table reveals no number
//! without the secret. Dossiers whose events arrived before this table existed are
//! found by code only.
//!
//! Every filter has an index (migration 5 in [`crate::store`]): the newest-first walk
//! `(tenant, created_at, dossier_code)` (also the keyset), the same by agency and by
//! procedure, by received date (a date range pages newest received first, on that
//! index), open dossiers by due date, and the phone keys. The walk
//! indexes use columns an update rarely changes (`created_at` never), so a status
//! change stays a HOT update.

use crate::{
    domain::day_start,
    overdue::{closed_statuses, overdue_open_sql},
    routes::api::{local, NamedView, StatusView},
    store::{self, IncomingEvent, STATE_COLUMNS},
    Timeliness,
};
use axum::http::StatusCode;
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use hmac::{Hmac, Mac};
use loa_contracts::{
    event::MAX_DOSSIER_CODE, phone::PhoneNumber, time::vietnam_day, DossierStatus,
};
use loa_platform::{http::ApiError, Secret};
use serde::Serialize;
use sha2::Sha256;
use std::collections::HashMap;
use tokio_postgres::types::ToSql;

/// The keyed hash a phone is found by.
pub fn phone_key(secret: &Secret, tenant: &str, phone: &PhoneNumber) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(b"phone\x1f");
    mac.update(tenant.as_bytes());
    mac.update(b"\x1f");
    mac.update(phone.as_str().as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// Records the phone keys of `events[i]` for every `i` in `applied` (inside the
/// batch's transaction; a key already recorded for the dossier is skipped).
pub async fn record_phones(
    tx: &deadpool_postgres::Transaction<'_>,
    secret: &Secret,
    events: &[IncomingEvent],
    applied: &[usize],
) -> anyhow::Result<()> {
    let mut tenants = Vec::new();
    let mut keys = Vec::new();
    let mut codes = Vec::new();
    for &i in applied {
        let event = &events[i].event;
        let filer = event.on_behalf_of.iter().map(|p| &p.phone);
        for phone in std::iter::once(&event.applicant.phone).chain(filer) {
            tenants.push(event.tenant.as_str());
            keys.push(phone_key(secret, &event.tenant, phone));
            codes.push(event.dossier_code.as_str());
        }
    }
    if keys.is_empty() {
        return Ok(());
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO tracker.dossier_phones (tenant, phone_key, dossier_code)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
             ON CONFLICT DO NOTHING",
        )
        .await
        .map_err(|e| anyhow::anyhow!("Failed to prepare the phone keys insert: {e}"))?;
    tx.execute(&insert, &[&tenants, &keys, &codes])
        .await
        .map_err(|e| anyhow::anyhow!("Failed to record phone keys: {e}"))?;
    Ok(())
}

/// Most dossiers in one page.
pub const MAX_LIMIT: i64 = 100;

/// The timeliness filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelinessFilter {
    /// Completed after the due day, or open past it.
    Overdue,
    /// Completed before the due day.
    Early,
}

/// Where a page starts: after this dossier in newest-first order (by `created_at`,
/// or by `received_at` when a received date range is asked: see
/// [`SearchQuery::by_received`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Its ordering time (`created_at` or `received_at`), in microseconds.
    pub at_micros: i64,
    /// Its code.
    pub code: String,
}

impl Cursor {
    /// `<micros>_<code>`.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.at_micros, self.code)
    }

    /// The inverse of [`Cursor::encode`].
    pub fn decode(text: &str) -> Option<Self> {
        let (micros, code) = text.split_once('_')?;
        Some(Self {
            at_micros: micros.parse().ok()?,
            code: code.to_owned(),
        })
    }
}

/// A parsed search.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// Code prefix (LIKE-escaped, with the trailing `%`).
    pub code_prefix: Option<String>,
    /// The phone key, when `q` is a phone number.
    pub phone_key: Option<String>,
    /// Agency code.
    pub agency: Option<String>,
    /// Procedure code.
    pub procedure: Option<String>,
    /// Status code.
    pub status: Option<i16>,
    /// Overdue or early.
    pub timeliness: Option<TimelinessFilter>,
    /// Received at or after.
    pub received_from: Option<DateTime<Utc>>,
    /// Received before.
    pub received_before: Option<DateTime<Utc>>,
    /// Start of today in Vietnam (what "overdue" compares with).
    pub today_start: DateTime<Utc>,
    /// Keyset.
    pub after: Option<Cursor>,
    /// Page size.
    pub limit: i64,
}

impl SearchQuery {
    /// A received date range orders by `received_at` (newest first), so that the range's
    /// own index gives the page straight away, however far back the range lies.
    pub fn by_received(&self) -> bool {
        self.received_from.is_some() || self.received_before.is_some()
    }

    fn order_column(&self) -> &'static str {
        if self.by_received() {
            "received_at"
        } else {
            "created_at"
        }
    }
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message).with_field(field)
}

fn code_like(text: &str, field: &str) -> Result<String, ApiError> {
    if text.chars().count() > MAX_DOSSIER_CODE {
        return Err(bad(
            field,
            format!("`{field}` has at most {MAX_DOSSIER_CODE} characters"),
        ));
    }
    Ok(text.to_owned())
}

fn parse_day(field: &str, text: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| bad(field, format!("`{field}` is a date, YYYY-MM-DD")))
}

/// Parses `GET /v1/dossiers` query parameters for `tenant` at `now`.
pub fn parse(
    params: &HashMap<String, String>,
    secret: &Secret,
    tenant: &str,
    now: DateTime<Utc>,
) -> Result<SearchQuery, ApiError> {
    let mut query = SearchQuery {
        limit: 20,
        today_start: day_start(vietnam_day(&now)),
        ..SearchQuery::default()
    };
    let mut from = None;
    let mut to = None;
    for (key, raw) in params {
        let value = raw.trim();
        // An empty form field means no filter; an empty `limit` is no number (the
        // console always sends one).
        if value.is_empty() && key != "limit" {
            continue;
        }
        match key.as_str() {
            "q" => {
                let text = code_like(value, "q")?;
                let escaped = text
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                query.code_prefix = Some(format!("{escaped}%"));
                query.phone_key = PhoneNumber::parse(&text)
                    .ok()
                    .map(|p| phone_key(secret, tenant, &p));
            }
            "agency" => query.agency = Some(code_like(value, "agency")?),
            "procedure" => query.procedure = Some(code_like(value, "procedure")?),
            "status" => {
                let status = value
                    .parse::<i64>()
                    .ok()
                    .and_then(DossierStatus::from_code)
                    .or_else(|| DossierStatus::from_name(value))
                    .ok_or_else(|| {
                        bad(
                            "status",
                            "`status` is a national status code 1..10 or its name",
                        )
                    })?;
                query.status = Some(i16::from(status.code()));
            }
            "timeliness" => {
                query.timeliness = Some(match value {
                    "overdue" => TimelinessFilter::Overdue,
                    "early" => TimelinessFilter::Early,
                    _ => return Err(bad("timeliness", "`timeliness` is `overdue` or `early`")),
                })
            }
            "from" => from = Some(parse_day("from", value)?),
            "to" => to = Some(parse_day("to", value)?),
            "after" => {
                query.after = Some(
                    Cursor::decode(value)
                        .ok_or_else(|| bad("after", "`after` is the `next` of a previous page"))?,
                )
            }
            "limit" => {
                query.limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        bad(
                            "limit",
                            format!("`limit` is an integer from 1 to {MAX_LIMIT}"),
                        )
                    })?
            }
            other => return Err(bad(other, format!("unknown query parameter `{other}`"))),
        }
    }
    if let (Some(from), Some(to)) = (from, to) {
        if to < from {
            return Err(bad("to", "`to` is on or after `from`"));
        }
    }
    query.received_from = from.map(day_start);
    query.received_before = to.and_then(|d| d.succ_opt()).map(day_start);
    Ok(query)
}

type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// The statement and parameters of a search for `tenant` (one row more than the page,
/// to know whether there is a next one).
pub fn statement(tenant: &str, q: &SearchQuery) -> (String, Params) {
    let mut params: Params = vec![Box::new(tenant.to_owned())];
    let mut bind = |p: Box<dyn ToSql + Sync + Send>| {
        params.push(p);
        format!("${}", params.len())
    };
    let order = q.order_column();
    let mut sql = format!(
        "SELECT {STATE_COLUMNS}, {order} AS ordered_at FROM tracker.dossiers WHERE tenant = $1"
    );
    match (&q.code_prefix, &q.phone_key) {
        (Some(prefix), Some(key)) => {
            let (prefix, key) = (bind(Box::new(prefix.clone())), bind(Box::new(key.clone())));
            sql.push_str(&format!(
                " AND dossier_code IN (SELECT dossier_code FROM tracker.dossiers
                                        WHERE tenant = $1 AND dossier_code LIKE {prefix}
                                       UNION
                                       SELECT dossier_code FROM tracker.dossier_phones
                                        WHERE tenant = $1 AND phone_key = {key})"
            ));
        }
        (Some(prefix), None) => {
            let prefix = bind(Box::new(prefix.clone()));
            sql.push_str(&format!(" AND dossier_code LIKE {prefix}"));
        }
        _ => {}
    }
    if let Some(agency) = &q.agency {
        sql.push_str(&format!(
            " AND agency_code = {}",
            bind(Box::new(agency.clone()))
        ));
    }
    if let Some(procedure) = &q.procedure {
        sql.push_str(&format!(
            " AND procedure_code = {}",
            bind(Box::new(procedure.clone()))
        ));
    }
    if let Some(status) = q.status {
        sql.push_str(&format!(" AND status = {}", bind(Box::new(status))));
    }
    if let Some(from) = q.received_from {
        sql.push_str(&format!(" AND received_at >= {}", bind(Box::new(from))));
    }
    if let Some(before) = q.received_before {
        sql.push_str(&format!(" AND received_at < {}", bind(Box::new(before))));
    }
    const DAY: &str = "AT TIME ZONE 'Asia/Ho_Chi_Minh')::date";
    // The due day, pauses after the due date added. The seconds are added to the local
    // time (Vietnam keeps no daylight saving time, so it is the same day as adding them
    // to `due_at`): `timestamptz + interval` is only STABLE, and the partial index
    // `dossiers_completed_early` (migration 15) needs an IMMUTABLE predicate, written
    // exactly as here.
    const DUE_DAY: &str = "((due_at AT TIME ZONE 'Asia/Ho_Chi_Minh') + paused_after_due_secs * interval '1 second')::date";
    match q.timeliness {
        Some(TimelinessFilter::Overdue) => {
            let (today, closed) = (
                bind(Box::new(q.today_start)),
                bind(Box::new(closed_statuses())),
            );
            sql.push_str(&format!(
                " AND (({})
                    OR (completed_at IS NOT NULL AND (completed_at {DAY} > {DUE_DAY}))",
                overdue_open_sql(&today, &closed)
            ));
        }
        Some(TimelinessFilter::Early) => sql.push_str(&format!(
            " AND completed_at IS NOT NULL AND (completed_at {DAY} < {DUE_DAY}"
        )),
        None => {}
    }
    if let Some(after) = &q.after {
        let at = DateTime::from_timestamp_micros(after.at_micros).unwrap_or_default();
        let (at, code) = (bind(Box::new(at)), bind(Box::new(after.code.clone())));
        sql.push_str(&format!(" AND ({order}, dossier_code) < ({at}, {code})"));
    }
    let limit = bind(Box::new(q.limit + 1));
    sql.push_str(&format!(
        " ORDER BY {order} DESC, dossier_code DESC LIMIT {limit}"
    ));
    (sql, params)
}

/// One dossier in a search result.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DossierSummary {
    /// The code printed on the receipt.
    pub code: String,
    /// Current status.
    pub status: StatusView,
    /// The procedure.
    pub procedure: NamedView,
    /// The handling agency.
    pub agency: NamedView,
    /// When the desk received it.
    pub received_at: Option<DateTime<FixedOffset>>,
    /// The appointment date.
    pub due_at: Option<DateTime<FixedOffset>>,
    /// When the result became ready.
    pub completed_at: Option<DateTime<FixedOffset>>,
    /// `early`, `on_time`, `overdue`, `in_progress`, or null.
    pub timeliness: Option<Timeliness>,
    /// When the state last changed.
    pub updated_at: DateTime<FixedOffset>,
}

/// A page of results.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchPage {
    /// Newest first.
    pub dossiers: Vec<DossierSummary>,
    /// Pass as `after` for the next page; null on the last.
    pub next: Option<String>,
}

/// Runs a search.
pub async fn search(
    pool: &deadpool_postgres::Pool,
    tenant: &str,
    q: &SearchQuery,
    now: DateTime<Utc>,
) -> anyhow::Result<SearchPage> {
    let (sql, params) = statement(tenant, q);
    let client = pool
        .get()
        .await
        .map_err(|e| anyhow::anyhow!("Failed to get a PostgreSQL connection: {e}"))?;
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let rows = client
        .query(&sql, &refs)
        .await
        .map_err(|e| anyhow::anyhow!("Failed to search dossiers: {e}"))?;
    let today = vietnam_day(&now);
    let limit = usize::try_from(q.limit).unwrap_or(20);
    let mut next = None;
    let mut dossiers = Vec::with_capacity(limit);
    for (i, row) in rows.iter().enumerate() {
        let state = store::state_from_row(row)?;
        if i == limit {
            break;
        }
        if i + 1 == limit && rows.len() > limit {
            let ordered_at: DateTime<Utc> = row.get("ordered_at");
            next = Some(
                Cursor {
                    at_micros: ordered_at.timestamp_micros(),
                    code: state.dossier_code.clone(),
                }
                .encode(),
            );
        }
        dossiers.push(DossierSummary {
            timeliness: state.timeliness(today),
            status: state.status.into(),
            procedure: NamedView {
                code: state.procedure_code,
                name: state.procedure_name,
            },
            agency: NamedView {
                code: state.agency_code,
                name: state.agency_name,
            },
            received_at: state.received_at.map(local),
            due_at: state.due_at.map(local),
            completed_at: state.completed_at.map(local),
            updated_at: local(state.updated_at),
            code: state.dossier_code,
        });
    }
    Ok(SearchPage { dossiers, next })
}

/// Today's numbers for the overview page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Overview {
    /// Today in Vietnam.
    pub day: NaiveDate,
    /// Events recorded today.
    pub events_today: i64,
    /// Dossiers received today.
    pub received_today: i64,
    /// Open dossiers past their due day.
    pub overdue_open: i64,
}

/// Counts today's numbers (each through an index: the events' BRIN on `recorded_at`,
/// received date, open dossiers by due date).
pub async fn overview(
    pool: &deadpool_postgres::Pool,
    tenant: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<Overview> {
    let day = vietnam_day(&now);
    let start = day_start(day);
    let client = pool
        .get()
        .await
        .map_err(|e| anyhow::anyhow!("Failed to get a PostgreSQL connection: {e}"))?;
    let row = client
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM tracker.dossier_events WHERE tenant = $1 AND recorded_at >= $2),
                        (SELECT count(*) FROM tracker.dossiers WHERE tenant = $1 AND received_at >= $2),
                        (SELECT count(*) FROM tracker.dossiers WHERE tenant = $1 AND {})",
                overdue_open_sql("$2", "$3")
            ),
            &[&tenant, &start, &closed_statuses()],
        )
        .await
        .map_err(|e| anyhow::anyhow!("Failed to count today's numbers: {e}"))?;
    Ok(Overview {
        day,
        events_today: row.get(0),
        received_today: row.get(1),
        overdue_open: row.get(2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-04T09:00:00+07:00")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_phone_is_found_by_the_same_key_however_it_is_written() {
        let secret = Secret::new("s");
        let a = PhoneNumber::parse("0903 123 456").unwrap();
        let b = PhoneNumber::parse("+84 903.123.456").unwrap();
        assert_eq!(
            phone_key(&secret, "demo", &a),
            phone_key(&secret, "demo", &b)
        );
        assert_ne!(
            phone_key(&secret, "demo", &a),
            phone_key(&secret, "other", &a)
        );
        assert_ne!(
            phone_key(&secret, "demo", &a),
            phone_key(&Secret::new("t"), "demo", &a)
        );
        assert_eq!(phone_key(&secret, "demo", &a).len(), 32);
        let q = parse(&params(&[("q", "0903-123-456")]), &secret, "demo", now()).unwrap();
        assert_eq!(q.phone_key, Some(phone_key(&secret, "demo", &a)));
    }

    #[test]
    fn a_code_is_searched_by_prefix_with_like_wildcards_escaped() {
        let q = parse(
            &params(&[("q", " H56_10%")]),
            &Secret::new("s"),
            "demo",
            now(),
        )
        .unwrap();
        assert_eq!(q.code_prefix.as_deref(), Some("H56\\_10\\%%"));
        assert_eq!(q.phone_key, None);
    }

    #[test]
    fn dates_are_vietnamese_days_and_to_is_inclusive() {
        let q = parse(
            &params(&[("from", "2026-12-01"), ("to", "2026-12-03")]),
            &Secret::new("s"),
            "demo",
            now(),
        )
        .unwrap();
        assert_eq!(
            q.received_from.unwrap().to_rfc3339(),
            "2026-11-30T17:00:00+00:00"
        );
        assert_eq!(
            q.received_before.unwrap().to_rfc3339(),
            "2026-12-03T17:00:00+00:00"
        );
        assert_eq!(q.today_start.to_rfc3339(), "2026-12-03T17:00:00+00:00");
    }

    #[test]
    fn bad_parameters_are_refused_naming_the_field() {
        let secret = Secret::new("s");
        for (pairs, field) in [
            (vec![("status", "11")], "status"),
            (vec![("timeliness", "late")], "timeliness"),
            (vec![("from", "04/12/2026")], "from"),
            (vec![("from", "2026-12-04"), ("to", "2026-12-01")], "to"),
            (vec![("limit", "0")], "limit"),
            (vec![("limit", "")], "limit"),
            (vec![("after", "garbage")], "after"),
            (vec![("q", &"x".repeat(51))], "q"),
            (vec![("sort", "name")], "sort"),
        ] {
            let e = parse(&params(&pairs), &secret, "demo", now()).unwrap_err();
            assert_eq!(
                (e.status, e.field.as_deref()),
                (StatusCode::BAD_REQUEST, Some(field)),
                "{pairs:?}"
            );
        }
        let by_name = parse(
            &params(&[("status", "result_ready")]),
            &secret,
            "demo",
            now(),
        )
        .unwrap();
        assert_eq!(by_name.status, Some(9));
    }

    #[test]
    fn a_cursor_round_trips_even_with_underscores_in_the_code() {
        let c = Cursor {
            at_micros: 1_764_806_400_000_000,
            code: "A_B_C".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
    }
}
