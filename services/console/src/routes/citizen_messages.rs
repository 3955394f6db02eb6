//! `GET /admin/citizen-messages`: what citizens texted the OA (chat lookups
//! "tra cứu <mã hồ sơ>"), newest first.

use super::section_page;
use crate::{
    backend::{segment, Service},
    html::{self, Section},
    web::{AppState, PageError, SignedIn},
};
use axum::{
    extract::{Query, State},
    response::Response,
};
use maud::html;
use serde_json::Value;
use std::collections::HashMap;

/// `GET /admin/citizen-messages?before_id=`.
pub async fn list(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let mut params = vec![("limit", "50".to_owned())];
    if let Some(before) = query.get("before_id").filter(|a| !a.is_empty()) {
        params.push(("before_id", before.clone()));
    }
    let page: Value = state
        .backend
        .get(
            Service::Notifier,
            signed_in.tenant(),
            "/v1/citizen-messages",
            &params,
        )
        .await?;
    let messages = page["messages"].as_array().cloned().unwrap_or_default();
    let body = html! {
        h1 { "Tin nhắn công dân gửi OA" }
        div.scroll {
            table #citizen-messages {
                thead { tr { th { "Thời gian" } th { "Người gửi (Zalo)" } th { "Nội dung" } th { "Loa đã trả lời" } } }
                tbody {
                    @for m in &messages {
                        tr {
                            td.nowrap { (m["received_at"].as_str().map(html::datetime_vn_str).unwrap_or_default()) }
                            td { (m["zalo_user"].as_str().unwrap_or("—")) }
                            td {
                                @match (m["kind"].as_str(), m["dossier_code"].as_str()) {
                                    (Some("lookup"), Some(code)) => {
                                        "Tra cứu hồ sơ " a href={ "/admin/dossiers/" (segment(code)) } { (code) }
                                    }
                                    _ => { "—" }
                                }
                            }
                            td.answer { (answer_vi(m)) }
                        }
                    }
                    @if messages.is_empty() { tr { td colspan="4" { "Chưa có tin nhắn nào." } } }
                }
            }
        }
        @if let Some(next) = page["next_before_id"].as_i64() {
            div.pager { a.button href={ "/admin/citizen-messages?before_id=" (next) } { "Trang sau →" } }
        }
    };
    Ok(section_page(
        &state,
        &signed_in,
        Section::CitizenMessages,
        "Tin công dân",
        body,
    ))
}

/// What Loa did with a citizen's message, in Vietnamese: the reply's delivery, or why
/// there is none (yet).
fn answer_vi(m: &Value) -> String {
    if m["outcome"] == "rate_limited" {
        return "Không trả lời: công dân tra cứu quá nhiều lần trong thời gian ngắn.".to_owned();
    }
    let reply = &m["reply"];
    match reply["status"].as_str() {
        Some("sent" | "delivered" | "seen") => format!(
            "Đã trả lời (tin tư vấn OA){}",
            reply["sent_at"]
                .as_str()
                .map(|at| format!(" lúc {}", html::datetime_vn_str(at)))
                .unwrap_or_default()
        ),
        Some("skipped") if reply["last_error"] == "outside_cs_window" => {
            "Không gửi được: đã quá 7 ngày kể từ lần cuối công dân tương tác với OA.".to_owned()
        }
        Some("failed") => format!(
            "Gửi trả lời thất bại: {}",
            reply["last_error"].as_str().unwrap_or("không rõ lý do")
        ),
        Some(status) => format!("Trả lời: {}", html::delivery_status_vi(status)),
        None if m["forwarded_at"].is_string() => "Đang soạn câu trả lời.".to_owned(),
        None => "Chưa xử lý.".to_owned(),
    }
}
