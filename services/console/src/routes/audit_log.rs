//! `GET /admin/audit`: the tenant's audit log, newest first, filterable by action.

use super::frame;
use crate::{
    audit::{self, Action},
    html::{self, Section},
    web::{page_response, AppState, PageError, SignedIn},
};
use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::Response,
};
use maud::html;
use std::collections::HashMap;

const PAGE: i64 = 50;

/// `GET /admin/audit?action=&before=`.
pub async fn show(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let action = match query.get("action").map(String::as_str) {
        None | Some("") => None,
        Some(name) => Some(
            Action::parse(name)
                .ok_or_else(|| PageError::BadRequest("Thao tác không hợp lệ.".into()))?,
        ),
    };
    let before = match query.get("before").map(String::as_str) {
        None | Some("") => None,
        Some(id) => Some(
            id.parse::<i64>()
                .map_err(|_| PageError::BadRequest("Trang không hợp lệ.".into()))?,
        ),
    };
    let entries = audit::list(&state.pool, signed_in.tenant(), action, before, PAGE).await?;
    let next = (entries.len() as i64 == PAGE)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let body = html! {
        h1 { "Nhật ký thao tác" }
        form.filters.card method="get" action="/admin/audit" {
            div {
                label for="action" { "Thao tác" }
                select id="action" name="action" {
                    option value="" { "Tất cả" }
                    @for a in Action::ALL {
                        option value=(a.as_str()) selected[Some(a) == action] { (a.label_vi()) }
                    }
                }
            }
            div { button type="submit" { "Lọc" } }
        }
        div.scroll {
            table #audit {
                thead { tr { th { "Thời gian" } th { "Người thực hiện" } th { "Thao tác" } th { "Đối tượng" } th { "Địa chỉ" } th { "Chi tiết" } } }
                tbody {
                    @for e in &entries {
                        tr {
                            td.nowrap { (html::datetime_vn(&e.at)) }
                            td.actor {
                                @match &e.actor_name {
                                    Some(name) => { (name) " " small.muted { "(" (e.actor) ")" } }
                                    None => { (e.actor) }
                                }
                            }
                            td { (action_label(&e.action)) }
                            td { (e.object.as_deref().unwrap_or("—")) }
                            td { (e.address.as_deref().unwrap_or("—")) }
                            td.muted { @if e.detail.as_object().is_some_and(|o| !o.is_empty()) { (e.detail.to_string()) } }
                        }
                    }
                    @if entries.is_empty() { tr { td colspan="6" { "Chưa có thao tác nào." } } }
                }
            }
        }
        @if let Some(next) = next {
            div.pager {
                a.button href={ "/admin/audit?before=" (next) "&action=" (action.map_or("", Action::as_str)) } { "Trang sau →" }
            }
        }
    };
    let tenant_name = state.tenant_name(signed_in.tenant());
    Ok(page_response(
        StatusCode::OK,
        html::page(
            "Nhật ký thao tác",
            Some(&frame(&signed_in, &tenant_name, Section::Audit)),
            body,
        ),
    ))
}

fn action_label(stored: &str) -> String {
    Action::parse(stored).map_or_else(|| stored.to_owned(), |a| a.label_vi().to_owned())
}
