//! `GET /admin/messages?status=failed|deferred|held|ambiguous|retrying|cancelled`: deliveries in
//! one state with their reasons; `POST /admin/messages/{id}/resend` and `/cancel`
//! act on one (admins only, audited).

use super::{int, section_page, text, NotifierAction, ObjectButton};
use crate::{
    audit::Action,
    backend::{segment, Service},
    html::{self, Section},
    reasons,
    web::{AppState, PageError, SignedIn},
};
use axum::{
    extract::{Query, State},
    response::Response,
};
use maud::html;
use serde_json::Value;
use std::collections::HashMap;

/// The states an admin looks at, with their tab labels.
const STATES: [(&str, &str); 6] = [
    ("failed", "Thất bại"),
    ("deferred", "Hoãn gửi"),
    ("held", "Tạm giữ"),
    ("ambiguous", "Chưa rõ kết quả"),
    ("retrying", "Đang thử lại"),
    ("cancelled", "Đã huỷ"),
];

/// `GET /admin/messages`.
pub async fn list(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let status = query.get("status").map(String::as_str).unwrap_or("failed");
    if !STATES.iter().any(|(s, _)| *s == status) {
        return Err(PageError::BadRequest(
            "Trạng thái tin nhắn không hợp lệ.".into(),
        ));
    }
    let mut params = vec![("status", status.to_owned()), ("limit", "50".to_owned())];
    if let Some(after) = query.get("after").filter(|a| !a.is_empty()) {
        params.push(("after", after.clone()));
    }
    let page: Value = state
        .backend
        .get(
            Service::Notifier,
            signed_in.tenant(),
            "/v1/deliveries",
            &params,
        )
        .await?;
    let deliveries = page["deliveries"].as_array().cloned().unwrap_or_default();
    let can_act = signed_in.account().can_act();
    let csrf = &signed_in.session.csrf_token;
    let done = query.get("done").map(String::as_str);
    let body = html! {
        h1 { "Tin nhắn cần chú ý" }
        @match done {
            Some("resend") => (html::notice("Đã đưa tin nhắn vào hàng gửi lại.", true)),
            Some("cancel") => (html::notice("Đã huỷ tin nhắn.", true)),
            _ => {}
        }
        nav.sections {
            @for (s, label) in STATES {
                a href={ "/admin/messages?status=" (s) } class=(if s == status { "current" } else { "" }) { (label) }
            }
        }
        div.scroll {
            table #deliveries {
                thead { tr { th { "Cập nhật" } th { "Hồ sơ" } th { "Loại tin" } th { "Kênh" } th { "Lần gửi" } th { "Lý do" } @if can_act { th { "Thao tác" } } } }
                tbody {
                    @for d in &deliveries {
                        @let id = text(&d["notification_id"], "");
                        @let dossier = d["dossier_code"].as_str();
                        tr {
                            td.nowrap { (d["updated_at"].as_str().map(html::datetime_vn_str).unwrap_or_default()) }
                            td.nowrap { @if let Some(code) = dossier { a href={ "/admin/dossiers/" (segment(code)) } { (code) } } @else { "—" } }
                            td { (html::kind_vi(d["kind"].as_str().unwrap_or(""))) }
                            td { (html::channel_vi(d["channel"].as_str().unwrap_or(""))) }
                            td { (int(&d["attempts"])) }
                            td {
                                (reasons::cell(d["last_error"].as_str(), d["last_error_code"].as_i64()))
                                @if let Some(at) = d["not_before"].as_str() { br; span.muted { "Gửi lúc " (html::datetime_vn_str(at)) } }
                            }
                            @if can_act {
                                td.actions {
                                    @if d["can_resend"].as_bool() == Some(true) {
                                        form.inline method="post" action={ "/admin/messages/" (segment(&id)) "/resend" } {
                                            input type="hidden" name="csrf" value=(csrf);
                                            input type="hidden" name="status" value=(status);
                                            button.secondary type="submit" { "Gửi lại" }
                                        }
                                    }
                                    @if d["can_cancel"].as_bool() == Some(true) {
                                        form.inline method="post" action={ "/admin/messages/" (segment(&id)) "/cancel" } {
                                            input type="hidden" name="csrf" value=(csrf);
                                            input type="hidden" name="status" value=(status);
                                            button.danger type="submit" { "Huỷ" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if deliveries.is_empty() { tr { td colspan="7" { "Không có tin nhắn nào ở trạng thái này." } } }
                }
            }
        }
        @if let Some(next) = page["next_after"].as_str() {
            div.pager { a.button href={ "/admin/messages?status=" (status) "&after=" (segment(next)) } { "Trang sau →" } }
        }
    };
    Ok(section_page(
        &state,
        &signed_in,
        Section::Messages,
        "Tin nhắn",
        body,
    ))
}

async fn act(button: ObjectButton, action: Action, verb: &str) -> Result<Response, PageError> {
    let id = segment(&button.id);
    let status = button
        .form
        .get("status")
        .filter(|s| STATES.iter().any(|(k, _)| k == s))
        .unwrap_or("failed");
    let act = NotifierAction {
        action,
        object: Some(&button.id),
        path: format!("/v1/deliveries/{id}/{verb}"),
        audit_fields: &["result"],
        then: format!("/admin/messages?status={status}&done={verb}"),
    };
    button.act(act).await
}

/// `POST /admin/messages/{id}/resend`.
pub async fn resend(button: ObjectButton) -> Result<Response, PageError> {
    act(button, Action::DeliveryResend, "resend").await
}

/// `POST /admin/messages/{id}/cancel`.
pub async fn cancel(button: ObjectButton) -> Result<Response, PageError> {
    act(button, Action::DeliveryCancel, "cancel").await
}
