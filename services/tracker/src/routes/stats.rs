//! `GET /v1/stats?from=&to=&group=`: the province's report ([`crate::stats`]) for a
//! tenant's admins (or the console's service credential with `X-Loa-Tenant`), as JSON
//! or, with `Accept: text/csv`, as CSV for the province's spreadsheets.

use super::AppState;
use crate::stats::{self, Grouping, StatsReport, MAX_PERIOD_DAYS};
use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use chrono::NaiveDate;
use loa_platform::http::{
    admin_tenant,
    openapi::{AdminRefusals, ErrorBody},
    ApiError,
};
use std::collections::HashMap;

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_query", message).with_field(field)
}

fn day(params: &HashMap<String, String>, field: &str) -> Result<NaiveDate, ApiError> {
    let value = params
        .get(field)
        .ok_or_else(|| invalid(field, format!("{field} is required (YYYY-MM-DD)")))?;
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .filter(|_| value.len() == 10)
        .ok_or_else(|| invalid(field, format!("{field} must be a day, YYYY-MM-DD")))
}

/// The period and grouping a query asks for, or a 422 naming the parameter.
pub fn parse(
    params: &HashMap<String, String>,
) -> Result<(NaiveDate, NaiveDate, Grouping), ApiError> {
    let from = day(params, "from")?;
    let to = day(params, "to")?;
    if to < from {
        return Err(invalid("to", "to must not be before from"));
    }
    if (to - from).num_days() >= MAX_PERIOD_DAYS as i64 {
        return Err(invalid(
            "to",
            format!("a report covers at most {MAX_PERIOD_DAYS} days"),
        ));
    }
    let group = match params.get("group") {
        None => Grouping::Agency,
        Some(g) => Grouping::from_name(g)
            .ok_or_else(|| invalid("group", "group must be agency or procedure"))?,
    };
    Ok((from, to, group))
}

fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/csv"))
}

/// `GET /v1/stats`.
#[utoipa::path(get, path = "/v1/stats", tag = "dossiers",
    security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    params(
        ("from" = String, Query, description = "First day of the period, YYYY-MM-DD (Asia/Ho_Chi_Minh)"),
        ("to" = String, Query, description = "Last day of the period, included; at most 366 days after `from`"),
        ("group" = Option<String>, Query, description = "`agency` (default) or `procedure`"),
    ),
    responses(
        (status = 200, body = StatsReport, description = "The report; as CSV (one line per row, then the total) with `Accept: text/csv`",
            content(
                (StatsReport = "application/json"),
                (String = "text/csv"),
            )),
        (status = 422, body = ErrorBody, description = "A parameter missing or out of its rules (`invalid_query`), named in `field`"),
        AdminRefusals,
    ))]
pub async fn get_stats(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?;
    let Query(params) = query.map_err(|e| invalid("query", e.body_text()))?;
    let (from, to, group) = parse(&params)?;
    let report = stats::report(&state.pool, &tenant.id, from, to, group).await?;
    if wants_csv(&headers) {
        let disposition = format!("attachment; filename=\"loa-stats-{from}-{to}.csv\"");
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            stats::to_csv(&report),
        )
            .into_response());
    }
    Ok(Json(report).into_response())
}
