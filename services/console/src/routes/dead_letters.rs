//! `GET /admin/dead-letters`: the tenant's dead letters with their reasons;
//! `POST /admin/dead-letters/replay`: replay the selected ones, or every one not yet
//! replayed whose reason starts with a text (admins only, audited).

use super::{audited, int, section_page, text};
use crate::{
    audit::Action,
    backend::Service,
    html::{self, Section},
    reasons,
    web::{see_other, AppState, FormData, PageError, SignedIn},
};
use axum::{
    extract::{Query, State},
    response::Response,
};
use maud::html;
use serde_json::{json, Value};
use std::collections::HashMap;

/// `GET /admin/dead-letters?replayed=true|false&reason=`.
pub async fn list(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let replayed = query.get("replayed").map(String::as_str) == Some("true");
    let reason = query.get("reason").map(|r| r.trim()).unwrap_or_default();
    let mut params = vec![
        ("replayed", replayed.to_string()),
        ("limit", "100".to_owned()),
    ];
    if !reason.is_empty() {
        params.push(("reason", reason.to_owned()));
    }
    if let Some(after) = query.get("after_id").filter(|a| !a.is_empty()) {
        params.push(("after_id", after.clone()));
    }
    let page: Value = state
        .backend
        .get(
            Service::Notifier,
            signed_in.tenant(),
            "/v1/dead-letters",
            &params,
        )
        .await?;
    let letters = page["dead_letters"].as_array().cloned().unwrap_or_default();
    let can_act = signed_in.account().can_act() && !replayed;
    let csrf = &signed_in.session.csrf_token;
    let table = html! {
        div.scroll {
            table #dead-letters {
                thead { tr { @if can_act { th { "Chọn" } } th { "Thời gian" } th { "Lý do" } th { "Hàng đợi" } th { "Khoá định tuyến" } th { "Số lần lỗi" } th { "Đã xử lý lại" } } }
                tbody {
                    @for l in &letters {
                        @let id = int(&l["id"]);
                        tr {
                            @if can_act { td { input type="checkbox" name="id" value=(id) id={ "dl-" (id) } aria-label={ "Chọn thư lỗi " (id) }; } }
                            td.nowrap { (l["dead_at"].as_str().map(html::datetime_vn_str).unwrap_or_default()) }
                            td { (reasons::cell(l["reason"].as_str(), None)) }
                            td { (text(&l["source_queue"], "")) }
                            td { (text(&l["routing_key"], "")) }
                            td { (int(&l["deaths"])) }
                            td { (int(&l["replay_count"])) @if let Some(at) = l["replayed_at"].as_str() { span.muted { " · " (html::datetime_vn_str(at)) } } }
                        }
                    }
                    @if letters.is_empty() { tr { td colspan="7" { "Không có thư lỗi nào." } } }
                }
            }
        }
    };
    let body = html! {
        h1 { "Thư lỗi" }
        p.muted { "Tin không xử lý được (dữ liệu sai, lỗi cấu hình, gửi thất bại nhiều lần). Sau khi sửa nguyên nhân, chọn để xử lý lại." }
        @if let Some(n) = query.get("replayed_count") {
            (html::notice(&format!("Đã xử lý lại {n} thư lỗi."), true))
        }
        nav.sections {
            a href="/admin/dead-letters" class=(if replayed { "" } else { "current" }) { "Chưa xử lý lại" }
            a href="/admin/dead-letters?replayed=true" class=(if replayed { "current" } else { "" }) { "Đã xử lý lại" }
        }
        form.filters.card method="get" action="/admin/dead-letters" {
            input type="hidden" name="replayed" value=(replayed);
            div { label for="reason" { "Lý do bắt đầu bằng" } input id="reason" name="reason" value=(reason); }
            div { button type="submit" { "Lọc" } }
        }
        @if can_act && !reason.is_empty() && !letters.is_empty() {
            form.card method="post" action="/admin/dead-letters/replay" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="reason" value=(reason);
                button type="submit" { "Xử lý lại mọi thư lỗi có lý do này" }
            }
        }
        @if can_act {
            form #replay-selected method="post" action="/admin/dead-letters/replay" {
                input type="hidden" name="csrf" value=(csrf);
                (table)
                @if !letters.is_empty() {
                    p { button type="submit" { "Xử lý lại các thư đã chọn" } }
                }
            }
        } @else {
            (table)
        }
        @if let Some(next) = page["next_after_id"].as_i64() {
            div.pager { a.button href={ "/admin/dead-letters?replayed=" (replayed) "&after_id=" (next) } { "Trang sau →" } }
        }
    };
    Ok(section_page(
        &state,
        &signed_in,
        Section::DeadLetters,
        "Thư lỗi",
        body,
    ))
}

/// `POST /admin/dead-letters/replay` with `id` (repeated) or `reason`.
pub async fn replay(
    State(state): State<AppState>,
    signed_in: SignedIn,
    form: FormData,
) -> Result<Response, PageError> {
    signed_in.require_csrf(&form)?;
    signed_in.require_admin()?;
    let ids: Vec<i64> = form
        .all("id")
        .into_iter()
        .map(|id| id.parse::<i64>())
        .collect::<Result<_, _>>()
        .map_err(|_| PageError::BadRequest("Mã thư lỗi không hợp lệ.".into()))?;
    let reason = form.get("reason").map(str::trim).unwrap_or_default();
    let (body, object) = match (ids.is_empty(), reason.is_empty()) {
        (false, _) => (
            json!({"ids": ids}),
            ids.iter().map(i64::to_string).collect::<Vec<_>>().join(","),
        ),
        (true, false) => (
            json!({"filter": {"reason": reason}}),
            format!("reason: {reason}"),
        ),
        (true, true) => {
            return Err(PageError::BadRequest(
                "Chọn ít nhất một thư lỗi, hoặc nhập lý do.".into(),
            ))
        }
    };
    let report: Value = state
        .backend
        .post(
            Service::Notifier,
            signed_in.tenant(),
            "/v1/dead-letters/replay",
            &body,
        )
        .await?;
    audited(
        &state,
        &signed_in,
        Action::DeadLetterReplay,
        Some(&object),
        json!({"replayed_ids": report["replayed_ids"], "not_found": report["not_found"], "skipped": report["skipped"]}),
    )
    .await?;
    Ok(see_other(&format!(
        "/admin/dead-letters?replayed_count={}",
        int(&report["replayed"])
    )))
}
