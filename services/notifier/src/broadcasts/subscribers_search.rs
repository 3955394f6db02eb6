//! `GET /v1/subscribers`: the tenant's audience, one page at a time, for the admin
//! console's subscribers page (tenant admin token, or the console's service credential
//! with `X-Loa-Tenant`).
//!
//! Query: `q` (a phone, in any format intake accepts, or a Zalo user id: exact match),
//! `tag` (subscribers carrying that tag), `opted` (`in`: opted in to announcements and
//! reachable; `out`: opted out), `after_id` and `limit` (1–200, default 50) for keyset
//! pages. Phones and Zalo user ids are answered masked (`8491*****78`, `…4567`): an
//! admin finds a citizen by the full value but a page never lists them.

use super::subscribers_api::SubscribersState;
use crate::routes::query::{invalid_query, QueryParams};
use anyhow::Context;
use axum::{
    extract::{rejection::QueryRejection, Query, State},
    http::HeaderMap,
    routing::get,
    Json, Router,
};
use chrono::{DateTime, Utc};
use loa_contracts::{phone::mask_phone, PhoneNumber};
use loa_platform::http::{
    admin_tenant,
    openapi::{AdminRefusals, ErrorBody},
    ApiError,
};
use serde::Serialize;
use std::collections::HashMap;
use tokio_postgres::types::ToSql;

/// Largest page.
const MAX_LIMIT: i64 = 200;
/// The query parameters it reads; any other is refused, so a misspelt filter is not
/// silently ignored.
const PARAMETERS: [&str; 5] = ["q", "tag", "opted", "after_id", "limit"];

/// The search route.
pub(crate) fn router(state: SubscribersState) -> Router {
    Router::new()
        .route("/v1/subscribers", get(search))
        .with_state(state)
}

/// One subscriber as a page shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SubscriberView {
    id: i64,
    /// Masked: the first four and last two digits.
    phone: Option<String>,
    /// Masked: `…` and the last four characters.
    zalo_user_id: Option<String>,
    name: Option<String>,
    tags: Vec<String>,
    /// Opted in to announcements.
    announcements: bool,
    /// `null` until Zalo said (an imported citizen), `false` after an unfollow.
    following: Option<bool>,
    opted_out_at: Option<DateTime<Utc>>,
    imported_at: Option<DateTime<Utc>>,
    /// Whether the next broadcast to `all` reaches them.
    reachable: bool,
}

/// A page of subscribers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct SubscriberPage {
    subscribers: Vec<SubscriberView>,
    /// Pass as `after_id` for the next page; `null` on the last.
    next_after_id: Option<i64>,
    /// Subscribers the next broadcast to `all` would reach (the whole tenant, not
    /// this page).
    reachable_total: i64,
}

fn mask_user(user: &str) -> String {
    let tail: String = user
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

/// `GET /v1/subscribers`.
#[utoipa::path(get, path = "/v1/subscribers", tag = "admin",
    security(("admin_token" = []), ("service_token" = [], "tenant" = [])),
    params(
        ("q" = Option<String>, Query, description = "A phone (any format intake accepts) or a Zalo user id: exact match"),
        ("tag" = Option<String>, Query, description = "Subscribers carrying this tag"),
        ("opted" = Option<String>, Query, description = "`in`: opted in and reachable; `out`: opted out"),
        ("after_id" = Option<i64>, Query, description = "The `next_after_id` of the previous page"),
        ("limit" = Option<i64>, Query, description = "1..200 (50)"),
    ),
    responses(
        (status = 200, body = SubscriberPage),
        (status = 400, body = ErrorBody, description = "A parameter out of its rules; `field` names it"),
        AdminRefusals,
    ))]
pub(crate) async fn search(
    State(state): State<SubscribersState>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<SubscriberPage>, ApiError> {
    let tenant = admin_tenant(&state.tenants.current(), &headers)?;
    let query = QueryParams::read(query)?;
    query.allow_only(&PARAMETERS)?;
    let limit = query.limit(50, MAX_LIMIT)?;
    let after_id = query
        .int("after_id", 0..=i64::MAX, "`after_id` is a subscriber id")?
        .unwrap_or(0);
    let mut conditions = vec!["tenant = $1".to_owned(), "id > $2".to_owned()];
    let mut binds: Vec<Box<dyn ToSql + Sync + Send>> =
        vec![Box::new(tenant.id.clone()), Box::new(after_id)];
    if let Some(q) = query.text("q") {
        // A phone when it reads as one, else a Zalo user id.
        match PhoneNumber::parse(q) {
            Ok(phone) => {
                binds.push(Box::new(phone.as_str().to_owned()));
                conditions.push(format!("phone = ${}", binds.len()));
            }
            Err(_) if q.len() <= 64 && q.chars().all(|c| c.is_ascii_alphanumeric()) => {
                binds.push(Box::new(q.to_owned()));
                conditions.push(format!("zalo_user_id = ${}", binds.len()));
            }
            Err(_) => {
                return Err(invalid_query(
                    "q",
                    "`q` is a phone number or a Zalo user id (letters and digits)",
                ))
            }
        }
    }
    if let Some(tag) = query.text("tag") {
        // Stored tags are normalised: search by the same form (and never send
        // PostgreSQL text it cannot hold, such as a NUL).
        let tag = super::targeting::normalize_tag(tag).map_err(|m| invalid_query("tag", m))?;
        binds.push(Box::new(vec![tag]));
        conditions.push(format!("tags @> ${}::text[]", binds.len()));
    }
    match query.text("opted") {
        None => {}
        Some("in") => conditions.push(format!("({})", super::api::REACHABLE)),
        Some("out") => conditions.push("opted_out_at IS NOT NULL".to_owned()),
        Some(_) => return Err(invalid_query("opted", "`opted` is `in` or `out`")),
    }
    binds.push(Box::new(limit + 1));
    let sql = format!(
        "SELECT id, phone, zalo_user_id, name, tags, announcements, following,
                opted_out_at, imported_at, ({reachable}) AS reachable
           FROM notifier.subscribers
          WHERE {conditions}
          ORDER BY id
          LIMIT ${last}",
        reachable = super::api::REACHABLE,
        conditions = conditions.join(" AND "),
        last = binds.len(),
    );
    let params: Vec<&(dyn ToSql + Sync)> = binds
        .iter()
        .map(|b| b.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let client = state
        .pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    let rows = client
        .query(&sql, &params)
        .await
        .context("Failed to search subscribers")?;
    let reachable_total: i64 = client
        .query_one(
            &format!(
                "SELECT count(*) FROM notifier.subscribers WHERE tenant = $1 AND {}",
                super::api::REACHABLE
            ),
            &[&tenant.id],
        )
        .await
        .context("Failed to count reachable subscribers")?
        .get(0);
    let more = rows.len() as i64 > limit;
    let subscribers: Vec<SubscriberView> = rows
        .iter()
        .take(limit as usize)
        .map(|r| SubscriberView {
            id: r.get("id"),
            phone: r.get::<_, Option<String>>("phone").map(|p| mask_phone(&p)),
            zalo_user_id: r
                .get::<_, Option<String>>("zalo_user_id")
                .map(|u| mask_user(&u)),
            name: r.get("name"),
            tags: r.get("tags"),
            announcements: r.get("announcements"),
            following: r.get("following"),
            opted_out_at: r.get("opted_out_at"),
            imported_at: r.get("imported_at"),
            reachable: r.get("reachable"),
        })
        .collect();
    let next_after_id = more.then(|| subscribers.last().map(|s| s.id)).flatten();
    Ok(Json(SubscriberPage {
        subscribers,
        next_after_id,
        reachable_total,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zalo_user_id_is_shown_by_its_last_four_characters_only() {
        assert_eq!(mask_user("3512873524511234567"), "…4567");
        assert_eq!(mask_user("ab"), "…ab");
    }
}
