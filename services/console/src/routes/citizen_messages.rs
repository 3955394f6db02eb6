//! `GET /admin/citizen-messages?kind=lookup|text`: what citizens texted the OA (chat
//! lookups "tra cứu <mã hồ sơ>", and any other text), newest first, each with what
//! Loa answered. A citizen's text is shown as text (escaped), never as markup.

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

/// The filter's tabs: the notifier's `kind` (none: both) and its label.
const KINDS: [(&str, &str); 3] = [
    ("", "Tất cả"),
    ("lookup", "Tra cứu"),
    ("text", "Tin nhắn khác"),
];

/// `GET /admin/citizen-messages?kind=&before_id=`.
pub async fn list(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let kind = query.get("kind").map(String::as_str).unwrap_or("");
    if !KINDS.iter().any(|(k, _)| *k == kind) {
        return Err(PageError::BadRequest("Loại tin nhắn không hợp lệ.".into()));
    }
    let before = query.get("before_id").filter(|a| !a.is_empty());
    if before.is_some_and(|b| b.parse::<i64>().is_err()) {
        return Err(PageError::BadRequest("Trang không hợp lệ.".into()));
    }
    let mut params = vec![("limit", "50".to_owned())];
    if !kind.is_empty() {
        params.push(("kind", kind.to_owned()));
    }
    if let Some(before) = before {
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
        nav.sections #citizen-message-kinds {
            @for (k, label) in KINDS {
                a href={ "/admin/citizen-messages" @if !k.is_empty() { "?kind=" (k) } }
                    class=(if k == kind { "current" } else { "" }) { (label) }
            }
        }
        div.scroll {
            table #citizen-messages {
                thead { tr { th { "Thời gian" } th { "Người gửi (Zalo)" } th { "Nội dung" } th { "Loa đã trả lời" } } }
                tbody {
                    @for m in &messages {
                        tr {
                            td.nowrap { (m["received_at"].as_str().map(html::datetime_vn_str).unwrap_or_default()) }
                            td { (m["zalo_user"].as_str().unwrap_or("—")) }
                            td {
                                @match (m["kind"].as_str(), m["dossier_code"].as_str(), m["text"].as_str()) {
                                    (Some("lookup"), Some(code), _) => {
                                        "Tra cứu hồ sơ " a href={ "/admin/dossiers/" (segment(code)) } { (code) }
                                    }
                                    (Some("text"), _, Some(text)) => {
                                        span.citizen-text { @if text.is_empty() { "(tin nhắn trống)" } @else { (text) } }
                                        @if m["text_truncated"] == true {
                                            " " span.muted { "(đã cắt bớt, chỉ lưu 2.000 ký tự đầu)" }
                                        }
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
            div.pager { a.button href={ "/admin/citizen-messages?" @if !kind.is_empty() { "kind=" (kind) "&" } "before_id=" (next) } { "Trang sau →" } }
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
    if m["outcome"] == "answered_today" {
        return "Không trả lời tự động: công dân đã nhận lời hướng dẫn trong ngày; cán bộ \
                đọc và phản hồi trên Zalo OA nếu cần."
            .to_owned();
    }
    let is_text = m["kind"] == "text";
    let reply = &m["reply"];
    match reply["status"].as_str() {
        Some("sent" | "delivered" | "seen") => format!(
            "{}{}",
            if is_text {
                "Đã gửi lời hướng dẫn tự động (tin tư vấn OA)"
            } else {
                "Đã trả lời (tin tư vấn OA)"
            },
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
        None if m["forwarded_at"].is_string() => if is_text {
            "Đang gửi lời hướng dẫn."
        } else {
            "Đang soạn câu trả lời."
        }
        .to_owned(),
        None => "Chưa xử lý.".to_owned(),
    }
}
