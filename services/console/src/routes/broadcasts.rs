//! Policy broadcasts, over the notifier's `/v1/broadcasts` API:
//!
//! - `GET /admin/broadcasts`: past and running broadcasts with their progress;
//! - `GET /admin/broadcasts/new`: the compose form (admins only), whose audience
//!   count follows the tag expression as it is typed when scripts run
//!   ([`super::audience`]);
//! - `POST /admin/broadcasts/new` with `action=preview`: the same form again with the
//!   audience it reaches now and what one citizen would receive (a dry run, nothing
//!   created); with `action=create`: the broadcast is created (now or at the time
//!   given) and the browser goes to its page (audited);
//! - `GET /admin/broadcasts/{id}`: its progress, reloading itself every few seconds
//!   while it runs (no script);
//! - `POST /admin/broadcasts/{id}/pause`, `/resume`, `/cancel` (admins only, audited).

use super::{audited, frame, int, section_page, text, NotifierAction, ObjectButton};
use crate::{
    audit::Action,
    backend::{segment, BackendError, Service},
    html::{self, Section},
    web::{page_response, see_other, AppState, FormData, PageError, SignedIn},
};
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::Response,
};
use chrono::{NaiveDateTime, TimeZone};
use loa_contracts::NotificationKind;
use maud::{html, Markup};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Seconds between reloads of a running broadcast's page.
const REFRESH_SECONDS: u32 = 3;

/// A broadcast's state in Vietnamese.
fn state_vi(state: &str) -> &'static str {
    match state {
        "scheduled" => "Đã lên lịch",
        "running" => "Đang gửi",
        "paused" => "Tạm dừng",
        "completed" => "Hoàn thành",
        "cancelled" => "Đã huỷ",
        _ => "—",
    }
}

/// Why recipients were skipped, in Vietnamese.
fn skipped_vi(reason: &str) -> String {
    match reason {
        "cancelled" => "Thông báo bị huỷ".to_owned(),
        "ended" => "Quá thời hạn kết thúc".to_owned(),
        "opted_out" => "Công dân đã từ chối nhận".to_owned(),
        "monthly_cap" => "Đã nhận đủ 4 tin quảng bá trong tháng".to_owned(),
        "recipient_limit" => "Vượt giới hạn người nhận của Zalo".to_owned(),
        other => other.to_owned(),
    }
}

/// Progress in percent of the audience settled (sent, failed or skipped).
fn percent(b: &Value) -> i64 {
    let audience = int(&b["audience"]);
    if audience <= 0 {
        return if b["state"] == "completed" { 100 } else { 0 };
    }
    let sum = |v: &Value| -> i64 {
        v.as_object()
            .map(|m| m.values().map(int).sum())
            .unwrap_or(0)
    };
    let settled = int(&b["sent"]) + sum(&b["failed"]) + sum(&b["skipped"]);
    (settled * 100 / audience).clamp(0, 100)
}

fn eta_vi(seconds: i64) -> String {
    match seconds {
        s if s < 60 => format!("khoảng {s} giây"),
        s if s < 3600 => format!("khoảng {} phút", (s + 59) / 60),
        s => format!("khoảng {} giờ {} phút", s / 3600, (s % 3600) / 60),
    }
}

/// `GET /admin/broadcasts`.
pub async fn list(
    State(state): State<AppState>,
    signed_in: SignedIn,
) -> Result<Response, PageError> {
    let answer: Value = state
        .backend
        .get(
            Service::Notifier,
            signed_in.tenant(),
            "/v1/broadcasts",
            &[("limit", "100".to_owned())],
        )
        .await?;
    let broadcasts = answer["broadcasts"].as_array().cloned().unwrap_or_default();
    let body = html! {
        h1 { "Thông báo chính sách" }
        p.muted { "Thông báo gửi tới công dân đã đồng ý nhận tin từ Official Account của tỉnh. Tin cập nhật hồ sơ luôn được gửi trước." }
        @if signed_in.account().can_act() {
            p { a.button #compose href="/admin/broadcasts/new" { "Soạn thông báo mới" } }
        }
        div.scroll {
            table #broadcasts {
                thead { tr { th { "Tạo lúc" } th { "Tiêu đề" } th { "Trạng thái" } th { "Người nhận" } th { "Đã gửi" } th { "Tiến độ" } } }
                tbody {
                    @for b in &broadcasts {
                        @let id = text(&b["id"], "");
                        tr {
                            td.nowrap { (b["created_at"].as_str().map(html::datetime_vn_str).unwrap_or_default()) }
                            td { a href={ "/admin/broadcasts/" (segment(&id)) } { (text(&b["title"], "")) } }
                            td {
                                span class={ "badge " (text(&b["state"], "")) } { (state_vi(b["state"].as_str().unwrap_or(""))) }
                                @if b["state"] == "scheduled" {
                                    br; small.muted.nowrap { "Bắt đầu " (b["start_at"].as_str().map(html::datetime_vn_str).unwrap_or_default()) }
                                }
                            }
                            td { (int(&b["audience"])) }
                            td { (int(&b["sent"])) }
                            td.nowrap { (percent(b)) " %" }
                        }
                    }
                    @if broadcasts.is_empty() { tr { td colspan="6" { "Chưa có thông báo nào." } } }
                }
            }
        }
    };
    Ok(section_page(
        &state,
        &signed_in,
        Section::Broadcasts,
        "Thông báo",
        body,
    ))
}

/// What the compose form holds, as typed.
#[derive(Debug, Default)]
struct Draft {
    title: String,
    template: String,
    params: Vec<(String, String)>,
    audience_all: bool,
    tags: String,
    start_at: String,
    end_at: String,
}

impl Draft {
    fn from_form(form: &FormData, templates: &[NotificationKind]) -> Self {
        let value = |k: &str| form.get(k).map(str::trim).unwrap_or_default().to_owned();
        let template = value("template");
        let kind = templates
            .iter()
            .find(|k| k.as_str() == template)
            .or(templates.first());
        let params = kind
            .map(|k| {
                k.required_params()
                    .iter()
                    .map(|p| ((*p).to_owned(), value(&format!("param_{p}"))))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            title: value("title"),
            template,
            params,
            audience_all: form.get("audience") != Some("tags"),
            tags: value("tags"),
            start_at: value("start_at"),
            end_at: value("end_at"),
        }
    }

    /// The notifier's request body, or the Vietnamese reason it cannot be one.
    fn request(&self, dry_run: bool) -> Result<Value, String> {
        let mut body = Map::new();
        body.insert("title".into(), json!(self.title));
        body.insert(
            "audience".into(),
            if self.audience_all {
                json!({"all": true})
            } else {
                json!({"tags": self.tags})
            },
        );
        let params: Map<String, Value> = self
            .params
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        body.insert(
            "message".into(),
            json!({"template": self.template, "params": params}),
        );
        for (field, typed, label) in [
            ("start_at", &self.start_at, "Thời điểm bắt đầu"),
            ("end_at", &self.end_at, "Thời điểm kết thúc"),
        ] {
            if !typed.is_empty() {
                let at = vietnam_local(typed)
                    .ok_or_else(|| format!("{label} không hợp lệ (dd/MM/yyyy HH:mm)."))?;
                body.insert(field.into(), json!(at));
            }
        }
        if dry_run {
            body.insert("dry_run".into(), json!(true));
        }
        Ok(Value::Object(body))
    }
}

/// A `datetime-local` value (`2026-12-05T08:00`), read in Asia/Ho_Chi_Minh, as RFC 3339.
fn vietnam_local(typed: &str) -> Option<String> {
    let naive = NaiveDateTime::parse_from_str(typed, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(typed, "%Y-%m-%dT%H:%M:%S"))
        .ok()?;
    let vietnam = chrono::FixedOffset::east_opt(7 * 3600)?;
    Some(vietnam.from_local_datetime(&naive).single()?.to_rfc3339())
}

/// The tenant's announcement templates (promotion kinds it has a Zalo template for).
fn templates(state: &AppState, tenant: &str) -> Vec<NotificationKind> {
    let tenants = state.tenants.current();
    let Some(settings) = tenants.get(tenant) else {
        return Vec::new();
    };
    NotificationKind::ALL
        .into_iter()
        .filter(|k| k.is_promotion() && settings.zalo.template_for(*k).is_some())
        .collect()
}

fn param_label(name: &str) -> &str {
    match name {
        "title" => "Tiêu đề trong tin",
        "body" => "Nội dung",
        "link" => "Đường dẫn (https://…)",
        other => other,
    }
}

/// The compose page: the form, and after a preview the audience and the message.
fn compose_page(
    state: &AppState,
    signed_in: &SignedIn,
    draft: &Draft,
    preview: Option<&Value>,
    error: Option<&str>,
) -> Response {
    let kinds = templates(state, signed_in.tenant());
    let csrf = &signed_in.session.csrf_token;
    let body = html! {
        h1 { "Soạn thông báo" }
        @if let Some(error) = error { (html::notice(error, false)) }
        @if kinds.is_empty() {
            (html::notice("Tỉnh chưa đăng ký mẫu tin thông báo với Zalo (announcement), nên chưa gửi được thông báo.", false))
        }
        form.compose.card method="post" action="/admin/broadcasts/new" {
            input type="hidden" name="csrf" value=(csrf);
            div { label for="title" { "Tên đợt thông báo (chỉ cán bộ thấy)" } input #title name="title" required maxlength="200" value=(draft.title); }
            div {
                label for="template" { "Mẫu tin" }
                select #template name="template" {
                    @for k in &kinds {
                        option value=(k.as_str()) selected[k.as_str() == draft.template] { (html::kind_vi(k.as_str())) " (" (k.as_str()) ")" }
                    }
                }
            }
            @for (name, value) in &draft.params {
                div {
                    label for={ "param_" (name) } { (param_label(name)) }
                    @if name == "body" {
                        textarea id={ "param_" (name) } name={ "param_" (name) } maxlength="1000" { (value) }
                    } @else {
                        input id={ "param_" (name) } name={ "param_" (name) } maxlength="1000" value=(value);
                    }
                }
            }
            p.muted { "Viết {name} để chèn tên của từng công dân." }
            fieldset {
                legend { "Người nhận" }
                label { input type="radio" name="audience" value="all" checked[draft.audience_all]; " Mọi công dân đã đồng ý nhận thông báo" }
                label { input type="radio" name="audience" value="tags" checked[!draft.audience_all]; " Theo nhãn" }
                input #tags name="tags" placeholder="ward:phu-thuy AND (topic:nong-nghiep OR topic:thuy-san)" value=(draft.tags) aria-label="Biểu thức nhãn" aria-describedby="live-audience";
                p.muted { "Dùng AND, OR, NOT và dấu ngoặc." }
                // Filled by the compose script as the admin types; empty without it.
                p #live-audience .live aria-live="polite" {}
            }
            div.grid {
                div { label for="start_at" { "Bắt đầu (để trống: gửi ngay)" } input #start_at type="datetime-local" name="start_at" value=(draft.start_at); }
                div { label for="end_at" { "Kết thúc (không bắt buộc)" } input #end_at type="datetime-local" name="end_at" value=(draft.end_at); }
            }
            p.muted { "Giờ Việt Nam. Thông báo không gửi trong giờ yên tĩnh của tỉnh (mặc định 22:00–06:00) và tiếp tục sau đó." }
            div.actions {
                button.secondary #preview type="submit" name="action" value="preview" { "Xem trước" }
                button #create type="submit" name="action" value="create" { "Tạo thông báo" }
            }
        }
        script src=(super::audience::SCRIPT_PATH) defer {}
        @if let Some(p) = preview {
            section.card #preview-result {
                h2 { "Xem trước" }
                p { "Số người nhận hiện tại: " b #audience-count { (int(&p["audience"])) } }
                div.preview {
                    @if let Some(params) = p["preview"]["params"].as_object() {
                        @for (name, value) in params {
                            div { span.muted { (param_label(name)) ": " } (text(value, "")) }
                        }
                    }
                }
                p.muted { "Mẫu Zalo: " (text(&p["preview"]["template_id"], "—")) }
            }
        }
    };
    let tenant_name = state.tenant_name(signed_in.tenant());
    page_response(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        html::page(
            "Soạn thông báo",
            Some(&frame(signed_in, &tenant_name, Section::Broadcasts)),
            body,
        ),
    )
}

/// `GET /admin/broadcasts/new`.
pub async fn compose(
    State(state): State<AppState>,
    signed_in: SignedIn,
) -> Result<Response, PageError> {
    signed_in.require_admin()?;
    let kinds = templates(&state, signed_in.tenant());
    let draft = Draft {
        template: kinds
            .first()
            .map(|k| k.as_str().to_owned())
            .unwrap_or_default(),
        params: kinds
            .first()
            .map(|k| {
                k.required_params()
                    .iter()
                    .map(|p| ((*p).to_owned(), String::new()))
                    .collect()
            })
            .unwrap_or_default(),
        audience_all: true,
        ..Draft::default()
    };
    Ok(compose_page(&state, &signed_in, &draft, None, None))
}

/// The notifier's refusal as a sentence for the form.
fn refusal_vi(error: BackendError) -> Result<String, PageError> {
    match error {
        BackendError::Refused { message, field, .. } => Ok(match field.as_deref() {
            Some("title") => format!("Tên đợt thông báo: {message}"),
            Some("audience.tags") => format!("Biểu thức nhãn không hợp lệ: {message}"),
            Some("audience") => "Chọn người nhận.".to_owned(),
            Some("end_at") => format!("Thời điểm kết thúc: {message}"),
            Some("start_at") => format!("Thời điểm bắt đầu: {message}"),
            Some(f) if f.starts_with("message.params.") => format!(
                "{}: {message}",
                param_label(f.trim_start_matches("message.params."))
            ),
            Some(f) => format!("{f}: {message}"),
            None => message,
        }),
        other => Err(other.into()),
    }
}

/// `POST /admin/broadcasts/new` (`action=preview` or `action=create`).
pub async fn submit(
    State(state): State<AppState>,
    signed_in: SignedIn,
    form: FormData,
) -> Result<Response, PageError> {
    signed_in.require_csrf(&form)?;
    signed_in.require_admin()?;
    let kinds = templates(&state, signed_in.tenant());
    let draft = Draft::from_form(&form, &kinds);
    let dry_run = form.get("action") != Some("create");
    let request = match draft.request(dry_run) {
        Ok(r) => r,
        Err(reason) => {
            return Ok(compose_page(
                &state,
                &signed_in,
                &draft,
                None,
                Some(&reason),
            ));
        }
    };
    let answer: Result<Value, _> = state
        .backend
        .post(
            Service::Notifier,
            signed_in.tenant(),
            "/v1/broadcasts",
            &request,
        )
        .await;
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            let reason = refusal_vi(e)?;
            return Ok(compose_page(
                &state,
                &signed_in,
                &draft,
                None,
                Some(&reason),
            ));
        }
    };
    if dry_run {
        return Ok(compose_page(
            &state,
            &signed_in,
            &draft,
            Some(&answer),
            None,
        ));
    }
    let id = text(&answer["id"], "");
    audited(
        &state,
        &signed_in,
        Action::BroadcastCreate,
        Some(&id),
        json!({"title": draft.title, "audience": answer["audience"], "tags": (!draft.audience_all).then_some(&draft.tags), "start_at": request["start_at"]}),
    )
    .await?;
    Ok(see_other(&format!(
        "/admin/broadcasts/{}?done=created",
        segment(&id)
    )))
}

/// `GET /admin/broadcasts/{id}`.
pub async fn show(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let b: Value = state
        .backend
        .get(
            Service::Notifier,
            signed_in.tenant(),
            &format!("/v1/broadcasts/{}", segment(&id)),
            &[],
        )
        .await?;
    let broadcast_state = b["state"].as_str().unwrap_or("");
    let live = matches!(broadcast_state, "running" | "scheduled");
    let can_act = signed_in.account().can_act();
    let csrf = &signed_in.session.csrf_token;
    let action = |verb: &str, label: &str, class: &str| -> Markup {
        html! {
            form.inline method="post" action={ "/admin/broadcasts/" (segment(&id)) "/" (verb) } {
                input type="hidden" name="csrf" value=(csrf);
                button class=(class) id={ "broadcast-" (verb) } type="submit" { (label) }
            }
        }
    };
    let reasons = |v: &Value, label: &dyn Fn(&str) -> String| -> Vec<(String, i64)> {
        v.as_object()
            .map(|m| m.iter().map(|(k, n)| (label(k), int(n))).collect())
            .unwrap_or_default()
    };
    let failed = reasons(&b["failed"], &|code| match code {
        "other" => "Lỗi khác".to_owned(),
        code => format!("Zalo trả mã {code}"),
    });
    let skipped = reasons(&b["skipped"], &skipped_vi);
    let body = html! {
        p.muted { a href="/admin/broadcasts" { "← Danh sách thông báo" } }
        h1 { (text(&b["title"], "")) }
        @match query.get("done").map(String::as_str) {
            Some("created") => (html::notice("Đã tạo thông báo.", true)),
            Some("pause") => (html::notice("Đã tạm dừng thông báo.", true)),
            Some("resume") => (html::notice("Đã tiếp tục gửi thông báo.", true)),
            Some("cancel") => (html::notice("Đã huỷ thông báo. Những người chưa nhận sẽ không nhận nữa.", true)),
            _ => {}
        }
        section.card {
            p {
                span #broadcast-state class={ "badge " (broadcast_state) } { (state_vi(broadcast_state)) }
                @if live { span.muted { " · tự cập nhật mỗi " (REFRESH_SECONDS) " giây" } }
            }
            progress #broadcast-progress max="100" value=(percent(&b)) { (percent(&b)) " %" }
            p { b #broadcast-percent { (percent(&b)) " %" } " đã xử lý"
                @if let Some(eta) = b["eta_seconds"].as_i64() { " · còn " (eta_vi(eta)) } }
            @if can_act {
                div.actions {
                    @if broadcast_state == "running" || broadcast_state == "scheduled" { (action("pause", "Tạm dừng", "secondary")) }
                    @if broadcast_state == "paused" { (action("resume", "Tiếp tục", "")) }
                    @if matches!(broadcast_state, "running" | "scheduled" | "paused") { (action("cancel", "Huỷ thông báo", "danger")) }
                }
            }
        }
        div.grid #broadcast-counts {
            div.stat { b #count-audience { (int(&b["audience"])) } span { "Người nhận" } }
            div.stat { b #count-queued { (int(&b["queued"])) } span { "Đã xếp hàng" } }
            div.stat { b #count-sent { (int(&b["sent"])) } span { "Zalo đã nhận" } }
            div.stat { b #count-delivered { (int(&b["delivered"])) } span { "Đã đến máy" } }
            div.stat { b #count-seen { (int(&b["seen"])) } span { "Đã xem" } }
            div.stat { b #count-deferred { (int(&b["deferred"])) } span { "Đang hoãn" } }
        }
        @if !failed.is_empty() || !skipped.is_empty() {
            section.card {
                h2 { "Không gửi được / bỏ qua" }
                table {
                    tbody {
                        @for (label, n) in &failed { tr { td { "Thất bại: " (label) } td { (n) } } }
                        @for (label, n) in &skipped { tr { td { "Bỏ qua: " (label) } td { (n) } } }
                    }
                }
            }
        }
        section.card {
            h2 { "Nội dung" }
            dl {
                dt { "Người nhận" } dd { @if let Some(tags) = b["tags"].as_str() { "Nhãn: " code { (tags) } } @else { "Mọi công dân đã đồng ý nhận" } }
                dt { "Mẫu tin" } dd { (html::kind_vi(b["template"].as_str().unwrap_or(""))) }
                @if let Some(params) = b["params"].as_object() {
                    @for (name, value) in params { dt { (param_label(name)) } dd { (text(value, "")) } }
                }
                dt { "Bắt đầu" } dd { (b["start_at"].as_str().map(html::datetime_vn_str).unwrap_or_default()) }
                @if let Some(end) = b["end_at"].as_str() { dt { "Kết thúc" } dd { (html::datetime_vn_str(end)) } }
                @if let Some(done) = b["finished_at"].as_str() { dt { "Xong lúc" } dd { (html::datetime_vn_str(done)) } }
            }
        }
    };
    let tenant_name = state.tenant_name(signed_in.tenant());
    let mut frame = frame(&signed_in, &tenant_name, Section::Broadcasts);
    frame.refresh_seconds = live.then_some(REFRESH_SECONDS);
    Ok(page_response(
        StatusCode::OK,
        html::page("Thông báo", Some(&frame), body),
    ))
}

async fn act(button: ObjectButton, verb: &str, action: Action) -> Result<Response, PageError> {
    let id = segment(&button.id);
    let act = NotifierAction {
        action,
        object: Some(&button.id),
        path: format!("/v1/broadcasts/{id}/{verb}"),
        audit_fields: &["state", "sent", "audience"],
        then: format!("/admin/broadcasts/{id}?done={verb}"),
    };
    button.act(act).await
}

/// `POST /admin/broadcasts/{id}/pause`.
pub async fn pause(button: ObjectButton) -> Result<Response, PageError> {
    act(button, "pause", Action::BroadcastPause).await
}

/// `POST /admin/broadcasts/{id}/resume`.
pub async fn resume(button: ObjectButton) -> Result<Response, PageError> {
    act(button, "resume", Action::BroadcastResume).await
}

/// `POST /admin/broadcasts/{id}/cancel`.
pub async fn cancel(button: ObjectButton) -> Result<Response, PageError> {
    act(button, "cancel", Action::BroadcastCancel).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_typed_in_the_form_is_read_as_vietnam_time() {
        assert_eq!(
            vietnam_local("2026-12-05T08:00").as_deref(),
            Some("2026-12-05T08:00:00+07:00")
        );
        assert_eq!(vietnam_local("05/12/2026 08:00"), None);
    }

    #[test]
    fn progress_counts_sent_failed_and_skipped_against_the_audience() {
        let b = json!({"audience": 200, "sent": 100, "failed": {"-124": 10}, "skipped": {"monthly_cap": 40}, "state": "running"});
        assert_eq!(percent(&b), 75);
        assert_eq!(percent(&json!({"audience": 0, "state": "completed"})), 100);
    }

    #[test]
    fn a_draft_without_times_asks_for_a_broadcast_starting_now() {
        let form = FormData::parse(
            b"title=B%C3%A3o&template=announcement&param_title=T&param_body=N%E1%BB%99i&param_link=https%3A%2F%2Fa.vn&audience=tags&tags=ward%3Aa",
        );
        let draft = Draft::from_form(&form, &[NotificationKind::Announcement]);
        let request = draft.request(true).unwrap();
        assert_eq!(request["audience"], json!({"tags": "ward:a"}));
        assert_eq!(request["message"]["params"]["body"], "Nội");
        assert_eq!(request["dry_run"], true);
        assert!(request.get("start_at").is_none());
    }
}
