//! The broadcasts' audience, over the notifier's `/v1/subscribers` API:
//!
//! - `GET /admin/subscribers?q=&tag=&opted=`: search by phone or Zalo user id
//!   (exact), by tag, by opt-in; phones and user ids shown masked;
//! - `POST /admin/subscribers/import`: a CSV file (`phone,zalo_user_id,tags,
//!   announcements`) uploaded as `multipart/form-data`, passed on to the notifier's
//!   import; the page lists the lines it refused (admins only, audited);
//! - `POST /admin/subscribers/opt-out`: a citizen who asked (by phone, at the desk or
//!   on the hotline) gets no later broadcast (admins only, audited).

use super::{audited, int, section_page, text};
use crate::{
    audit::Action,
    backend::{BackendError, Service},
    html::{self, Section},
    web::{see_other, AppState, FormData, PageError, SignedIn},
};
use axum::{
    extract::{DefaultBodyLimit, Multipart, Query, State},
    response::Response,
};
use maud::html;
use serde_json::{json, Value};
use std::{collections::HashMap, time::Duration};

/// Largest CSV file the page takes; a larger one goes through `loa subscribers import`.
pub const MAX_UPLOAD_BYTES: usize = 20 * 1024 * 1024;
/// How long the notifier may take over an uploaded import.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(120);

/// The upload limit layer for the import route.
pub fn upload_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_UPLOAD_BYTES + 64 * 1024)
}

/// `GET /admin/subscribers`.
pub async fn list(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let value = |k: &str| query.get(k).map(|v| v.trim()).unwrap_or_default();
    let mut params: Vec<(&str, String)> = ["q", "tag", "opted", "after_id"]
        .into_iter()
        .filter(|k| !value(k).is_empty())
        .map(|k| (k, value(k).to_owned()))
        .collect();
    params.push(("limit", "50".to_owned()));
    let answer: Result<Value, _> = state
        .backend
        .get(
            Service::Notifier,
            signed_in.tenant(),
            "/v1/subscribers",
            &params,
        )
        .await;
    let (page, error) = super::searched(answer)?;
    let subscribers = page["subscribers"].as_array().cloned().unwrap_or_default();
    let can_act = signed_in.account().can_act();
    let csrf = &signed_in.session.csrf_token;
    let opted = value("opted");
    let body = html! {
        h1 { "Người nhận thông báo" }
        @if let Some(error) = &error { (html::notice(error, false)) }
        @match query.get("done").map(String::as_str) {
            Some("opt-out") => (html::notice("Công dân này sẽ không nhận thông báo nào nữa.", true)),
            Some("already") => (html::notice("Công dân này đã ngừng nhận thông báo từ trước.", true)),
            _ => {}
        }
        @if !page.is_null() {
            p { "Hiện có " b #reachable-total { (int(&page["reachable_total"])) } " công dân đồng ý nhận thông báo." }
        }
        form.filters.card method="get" action="/admin/subscribers" {
            div { label for="q" { "Số điện thoại hoặc Zalo ID" } input #q name="q" value=(value("q")); }
            div { label for="tag" { "Nhãn" } input #tag name="tag" placeholder="ward:phu-thuy" value=(value("tag")); }
            div {
                label for="opted" { "Đồng ý nhận" }
                select #opted name="opted" {
                    option value="" selected[opted.is_empty()] { "Tất cả" }
                    option value="in" selected[opted == "in"] { "Đang nhận" }
                    option value="out" selected[opted == "out"] { "Đã ngừng nhận" }
                }
            }
            div { button type="submit" { "Tìm" } }
        }
        div.scroll {
            table #subscribers {
                thead { tr { th { "Số điện thoại" } th { "Zalo" } th { "Tên" } th { "Nhãn" } th { "Nhận thông báo" } } }
                tbody {
                    @for s in &subscribers {
                        tr {
                            td.nowrap { (text(&s["phone"], "—")) }
                            td.nowrap { (text(&s["zalo_user_id"], "—")) @if s["following"] == false { span.muted { " (đã bỏ theo dõi)" } } }
                            td { (text(&s["name"], "—")) }
                            td { @for t in s["tags"].as_array().into_iter().flatten() { span.badge { (text(t, "")) } " " } }
                            td.nowrap {
                                @if s["opted_out_at"].is_string() { span.badge.failed { "Đã ngừng" } }
                                @else if s["reachable"] == true { span.badge.delivered { "Đang nhận" } }
                                @else { span.badge { "Chưa đồng ý" } }
                            }
                        }
                    }
                    @if subscribers.is_empty() { tr { td colspan="5" { "Không tìm thấy người nhận nào." } } }
                }
            }
        }
        @if let Some(next) = page["next_after_id"].as_i64() {
            div.pager { a.button href={ "/admin/subscribers?q=" (value("q")) "&tag=" (value("tag")) "&opted=" (opted) "&after_id=" (next) } { "Trang sau →" } }
        }
        @if can_act {
            section.card {
                h2 { "Ngừng gửi thông báo cho một công dân" }
                p.muted { "Khi công dân đề nghị (tại bộ phận một cửa hoặc qua đường dây nóng). Công dân vẫn nhận tin về hồ sơ của mình." }
                form.filters method="post" action="/admin/subscribers/opt-out" {
                    input type="hidden" name="csrf" value=(csrf);
                    div { label for="who" { "Số điện thoại hoặc Zalo ID" } input #who name="who" required; }
                    div { button.danger #opt-out type="submit" { "Ngừng gửi" } }
                }
            }
            section.card {
                h2 { "Nhập danh sách từ tệp CSV" }
                p.muted { "Dòng đầu: phone,zalo_user_id,tags,announcements (nhãn cách nhau bởi |). Tối đa 20 MB; tệp lớn hơn dùng lệnh loa subscribers import." }
                form method="post" action="/admin/subscribers/import" enctype="multipart/form-data" {
                    input type="hidden" name="csrf" value=(csrf);
                    input #file type="file" name="file" accept=".csv,text/csv" required aria-label="Tệp CSV";
                    p { button #import type="submit" { "Nhập" } }
                }
            }
        }
    };
    Ok(section_page(
        &state,
        &signed_in,
        Section::Subscribers,
        "Người nhận",
        body,
    ))
}

/// `POST /admin/subscribers/opt-out` with `who` (a phone or a Zalo user id).
pub async fn opt_out(
    State(state): State<AppState>,
    signed_in: SignedIn,
    form: FormData,
) -> Result<Response, PageError> {
    signed_in.require_csrf(&form)?;
    signed_in.require_admin()?;
    let who = form.get("who").map(str::trim).unwrap_or_default();
    if who.is_empty() {
        return Err(PageError::BadRequest(
            "Nhập số điện thoại hoặc Zalo ID của công dân.".into(),
        ));
    }
    let is_phone = loa_contracts::PhoneNumber::parse(who).is_ok();
    let body = if is_phone {
        json!({"phone": who})
    } else {
        json!({"zalo_user_id": who})
    };
    let answer: Value = state
        .backend
        .post(
            Service::Notifier,
            signed_in.tenant(),
            "/v1/subscribers/opt-out",
            &body,
        )
        .await?;
    // The audit log names the citizen masked, as every page does.
    let masked = if is_phone {
        loa_contracts::phone::mask_phone(who)
    } else {
        format!("…{}", &who[who.len().saturating_sub(4)..])
    };
    audited(
        &state,
        &signed_in,
        Action::SubscriberOptOut,
        Some(&masked),
        json!({"changed": answer["changed"]}),
    )
    .await?;
    let done = if answer["changed"] == true {
        "opt-out"
    } else {
        "already"
    };
    Ok(see_other(&format!("/admin/subscribers?done={done}")))
}

/// `POST /admin/subscribers/import`: `csrf` and `file` fields.
pub async fn import(
    State(state): State<AppState>,
    signed_in: SignedIn,
    mut multipart: Multipart,
) -> Result<Response, PageError> {
    let unreadable = || PageError::BadRequest("Không đọc được tệp gửi lên.".into());
    let mut fields = FormData::default();
    let mut file: Option<(String, Vec<u8>)> = None;
    while let Some(field) = multipart.next_field().await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            PageError::BadRequest("Tệp lớn hơn 20 MB: hãy dùng lệnh loa subscribers import.".into())
        } else {
            unreadable()
        }
    })? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let file_name = field.file_name().unwrap_or("").to_owned();
            let bytes = field.bytes().await.map_err(|_| unreadable())?;
            file = Some((file_name, bytes.to_vec()));
        } else {
            let value = field.text().await.map_err(|_| unreadable())?;
            fields.0.push((name, value));
        }
    }
    signed_in.require_csrf(&fields)?;
    signed_in.require_admin()?;
    let Some((file_name, bytes)) = file.filter(|(_, b)| !b.is_empty()) else {
        return Err(PageError::BadRequest("Chọn một tệp CSV.".into()));
    };
    let answer: Result<Value, _> = state
        .backend
        .post_raw(
            Service::Notifier,
            signed_in.tenant(),
            "/v1/subscribers/import",
            "text/csv",
            bytes,
            IMPORT_TIMEOUT,
        )
        .await;
    let result = match answer {
        Ok(r) => r,
        Err(BackendError::Refused { message, .. }) => {
            return Err(PageError::BadRequest(format!(
                "Tệp không nhập được: {message}"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    audited(
        &state,
        &signed_in,
        Action::SubscribersImport,
        Some(&file_name.chars().take(100).collect::<String>()),
        json!({"imported": result["imported"], "updated": result["updated"], "rejected": result["rejected_total"]}),
    )
    .await?;
    let rejected = result["rejected"].as_array().cloned().unwrap_or_default();
    let body = html! {
        p.muted { a href="/admin/subscribers" { "← Người nhận" } }
        h1 { "Kết quả nhập danh sách" }
        (html::notice(&format!(
            "Đã thêm {} người, cập nhật {} người, {} dòng bị từ chối.",
            int(&result["imported"]), int(&result["updated"]), int(&result["rejected_total"])
        ), true))
        @if !rejected.is_empty() {
            div.scroll {
                table #rejected {
                    thead { tr { th { "Dòng" } th { "Cột" } th { "Lý do" } } }
                    tbody {
                        @for r in &rejected {
                            tr { td { (int(&r["line"])) } td { (text(&r["field"], "")) } td { (text(&r["message"], "")) } }
                        }
                    }
                }
            }
        }
    };
    Ok(section_page(
        &state,
        &signed_in,
        Section::Subscribers,
        "Kết quả nhập",
        body,
    ))
}
