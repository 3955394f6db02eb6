//! `GET /admin/overview`: today's numbers (events, messages by state, quota, rate),
//! the pause with its reason and a resume button, and the OA token's expiry.
//! `POST /admin/overview/resume` resumes a paused tenant.

use super::{act_on_notifier, frame, int, text, NotifierAction};
use crate::{
    audit::Action,
    backend::Service,
    html::{self, Section},
    reasons,
    web::{page_response, AppState, FormData, PageError, SignedIn},
};
use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::Response,
};
use maud::html;
use serde_json::Value;
use std::collections::HashMap;

/// `GET /admin/overview`.
pub async fn show(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let tenant = signed_in.tenant();
    let (tracker, notifier) = tokio::join!(
        state
            .backend
            .get::<Value>(Service::Tracker, tenant, "/v1/overview", &[]),
        state
            .backend
            .get::<Value>(Service::Notifier, tenant, "/v1/overview", &[]),
    );
    let (tracker, notifier) = (tracker?, notifier?);
    let d = &notifier["deliveries_today"];
    let sent = int(&d["sent"]) + int(&d["delivered"]) + int(&d["seen"]);
    let delivered = int(&d["delivered"]) + int(&d["seen"]);
    let pause = &notifier["pause"];
    let paused = pause["paused"].as_bool().unwrap_or(false);
    let quota = &notifier["quota"];
    let rate = &notifier["rate"];
    let token = &notifier["token"];
    let stat = |value: String, label: &str| {
        html! { div.stat { b { (value) } span { (label) } } }
    };
    let body = html! {
        h1 { "Tổng quan hôm nay" }
        @if query.get("done").map(String::as_str) == Some("resumed") {
            (html::notice("Đã cho gửi tin tiếp. Các tin bị tạm giữ sẽ được gửi lại.", true))
        }
        section.card {
            h2 { "Hồ sơ" }
            div.grid {
                (stat(int(&tracker["events_today"]).to_string(), "Sự kiện nhận hôm nay"))
                (stat(int(&tracker["received_today"]).to_string(), "Hồ sơ tiếp nhận hôm nay"))
                (stat(int(&tracker["overdue_open"]).to_string(), "Hồ sơ đang quá hạn"))
            }
        }
        section.card {
            h2 { "Tin nhắn hôm nay" }
            div.grid {
                (stat(sent.to_string(), "Đã gửi"))
                (stat(delivered.to_string(), "Đã đến người nhận"))
                (stat(int(&d["failed"]).to_string(), "Thất bại"))
                (stat((int(&d["deferred"]) + int(&d["retrying"])).to_string(), "Hoãn / đang thử lại"))
                (stat(int(&d["held"]).to_string(), "Tạm giữ"))
                (stat(int(&notifier["dead_letters_unreplayed"]).to_string(), "Thư lỗi chưa xử lý"))
            }
        }
        section.card {
            h2 { "Giới hạn của Zalo" }
            div.grid {
                @if quota.is_null() || quota["remaining"].is_null() {
                    (stat("—".into(), "Hạn mức ZNS còn lại (chưa có số liệu hôm nay)"))
                } @else {
                    (stat(format!("{} / {}", int(&quota["remaining"]), text(&quota["daily_quota"], "—")), "Hạn mức ZNS còn lại"))
                }
                (stat(format!("{:.1}/giây", int(&rate["sent_last_minute"]) as f64 / 60.0), "Tốc độ gửi (1 phút qua)"))
                (stat(format!("{}/giây", text(&rate["limit_per_second"], "—")), "Giới hạn tốc độ"))
            }
            @if quota["exhausted"].as_bool() == Some(true) {
                (html::notice("Đã hết hạn mức ZNS hôm nay: tin được hoãn sang ngày mai.", false))
            }
        }
        section.card #pause {
            h2 { "Trạng thái gửi tin" }
            @if paused {
                p.notice.error role="status" {
                    "Đang tạm dừng gửi tin: "
                    @if pause["reason"].is_string() || !pause["error_code"].is_null() {
                        (reasons::pause_cell(pause["reason"].as_str(), pause["error_code"].as_i64()))
                    } @else { "không rõ lý do" }
                }
                p.muted {
                    "Từ " (pause["paused_at"].as_str().map(html::datetime_vn_str).unwrap_or_default())
                    " · " (int(&pause["held"])) " tin đang tạm giữ"
                }
                @if signed_in.account().can_act() {
                    form method="post" action="/admin/overview/resume" {
                        input type="hidden" name="csrf" value=(signed_in.session.csrf_token);
                        button type="submit" { "Tiếp tục gửi tin" }
                    }
                }
            } @else {
                p { span.badge.delivered { "Đang gửi bình thường" } }
            }
        }
        section.card {
            h2 { "Kết nối Zalo OA" }
            dl {
                dt { "Access token hết hạn" }
                dd { (token["access_expires_at"].as_str().map(html::datetime_vn_str).unwrap_or_else(|| "Chưa cấp".into())) }
                dt { "Làm mới lần cuối" }
                dd { (token["refreshed_at"].as_str().map(html::datetime_vn_str).unwrap_or_else(|| "Chưa làm mới".into())) }
            }
            @if signed_in.account().can_act() {
                p.muted { "Khi refresh token hết hạn hoặc bị thu hồi, quản trị viên OA cấp quyền lại cho ứng dụng trên trang của Zalo." }
                form method="post" action="/admin/zalo/authorize" {
                    input type="hidden" name="csrf" value=(signed_in.session.csrf_token);
                    button.secondary #reauthorize type="submit" { "Cấp quyền lại cho OA" }
                }
            }
        }
    };
    let tenant_name = state.tenant_name(tenant);
    Ok(page_response(
        StatusCode::OK,
        html::page(
            "Tổng quan",
            Some(&frame(&signed_in, &tenant_name, Section::Overview)),
            body,
        ),
    ))
}

/// `POST /admin/overview/resume`.
pub async fn resume(
    State(state): State<AppState>,
    signed_in: SignedIn,
    form: FormData,
) -> Result<Response, PageError> {
    let act = NotifierAction {
        action: Action::TenantResume,
        object: None,
        path: "/v1/pause/resume".to_owned(),
        audit_fields: &["released"],
        then: "/admin/overview?done=resumed".to_owned(),
    };
    act_on_notifier(&state, &signed_in, &form, act).await
}
