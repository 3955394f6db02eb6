//! `GET /tra-cuu/{token}`: the public, mobile-first lookup page the QR code on the
//! paper receipt and every Zalo message link to.
//!
//! It is public, so it shows only what the citizen needs to follow the dossier: code,
//! procedure, agency, status, dates and the timeline. No phone number, no full name
//! (at most the masked owner name, `Trần T. B.`), nothing else from the event. The
//! token is unguessable; an unknown token gets a Vietnamese 404 page. Everything is
//! HTML-escaped, and the page loads nothing from elsewhere (inline CSS, strict CSP).

use super::AppState;
use crate::{
    domain::{is_lookup_token, Timeliness},
    store::{self, DossierState, HistoryEntry},
};
use crate::{planning::format_vnd, store::EventDetails};
use axum::{
    extract::{Path, State},
    http::{header, HeaderName, StatusCode},
    response::{Html, IntoResponse, Response},
};
use chrono::NaiveDate;
use loa_contracts::{
    templates,
    time::{format_date_vn, format_moment_vn, vietnam_day},
    ApplicantKind, DossierStatus, ResultDocument,
};
use std::fmt::Write;

/// Headers of every lookup response: not cached, not indexed, the token not leaked
/// through `Referer`, and nothing loaded from elsewhere.
const PAGE_HEADERS: [(HeaderName, &str); 5] = [
    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
    (header::CACHE_CONTROL, "no-store"),
    (header::REFERRER_POLICY, "no-referrer"),
    (HeaderName::from_static("x-robots-tag"), "noindex, nofollow"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
];

/// `GET /tra-cuu/{token}`.
#[utoipa::path(get, path = "/tra-cuu/{token}", tag = "public",
    params(("token" = String, Path, description = "The lookup token of the dossier's link")),
    responses(
        (status = 200, body = String, content_type = "text/html", description = "The dossier's public page, in Vietnamese"),
        (status = 404, body = String, content_type = "text/html", description = "No dossier has this token"),
        (status = 429, body = loa_platform::http::openapi::ErrorBody, description = "Too many lookups from this address (`rate_limited`)",
            headers(("Retry-After" = u64, description = "Seconds"))),
    ))]
pub async fn lookup_page(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    if !is_lookup_token(&token) {
        return page(StatusCode::NOT_FOUND, render_not_found());
    }
    let found = match store::dossier_by_token(&state.pool, &token).await {
        Ok(found) => found,
        Err(e) => return failure(&e),
    };
    let Some(dossier) = found else {
        return page(StatusCode::NOT_FOUND, render_not_found());
    };
    let history = match store::history(&state.pool, &dossier.tenant, &dossier.dossier_code).await {
        Ok(history) => history,
        Err(e) => return failure(&e),
    };
    let (office, oa_id) = state
        .tenants
        .current()
        .get(&dossier.tenant)
        .map(|t| (t.name.clone(), t.zalo.oa_id.clone()))
        .unwrap_or_default();
    let now = state.clock.now();
    let today = vietnam_day(&now);
    let reader = applicant_kind(&history);
    let rating = match rating_section(&state, &dossier, reader, now).await {
        Ok(section) => section,
        Err(e) => return failure(&e),
    };
    page(
        StatusCode::OK,
        render_page_with(&office, &oa_id, &dossier, &history, today, &rating),
    )
}

/// `GET /tra-cuu/{token}/ket-qua`: the electronic result's download, through Loa so it
/// is counted (column `result_downloads`, metric `loa_tracker_result_downloads_total`),
/// answered with a `303` to the link the source gave. Loa never holds the document. No
/// `Referer` leaves with the redirect, so the store never sees the lookup token.
#[utoipa::path(get, path = "/tra-cuu/{token}/ket-qua", tag = "public",
    params(("token" = String, Path, description = "The lookup token of the dossier's link")),
    responses(
        (status = 303, description = "To the electronic result in the province's document store",
            headers(("Location" = String, description = "The https link the result event carried"))),
        (status = 404, body = String, content_type = "text/html", description = "No dossier has this token, or it has no electronic result"),
        (status = 429, body = loa_platform::http::openapi::ErrorBody, description = "Too many lookups from this address (`rate_limited`)",
            headers(("Retry-After" = u64, description = "Seconds"))),
    ))]
pub async fn download_result(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    if !is_lookup_token(&token) {
        return page(StatusCode::NOT_FOUND, render_not_found());
    }
    let dossier = match store::dossier_by_token(&state.pool, &token).await {
        Ok(Some(dossier)) => dossier,
        Ok(None) => return page(StatusCode::NOT_FOUND, render_not_found()),
        Err(e) => return failure(&e),
    };
    let history = match store::history(&state.pool, &dossier.tenant, &dossier.dossier_code).await {
        Ok(history) => history,
        Err(e) => return failure(&e),
    };
    let Some(document) = store::result_document(&history) else {
        return page(StatusCode::NOT_FOUND, render_no_result(&token));
    };
    if let Err(e) =
        store::count_result_download(&state.pool, &dossier.tenant, &dossier.dossier_code).await
    {
        return failure(&e);
    }
    crate::metrics::result_download(&dossier.tenant);
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, document.url.as_str()),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
    )
        .into_response()
}

/// The page for a dossier whose result has no electronic copy (a link kept from
/// before, or typed by hand).
fn render_no_result(token: &str) -> String {
    layout(
        "Chưa có kết quả điện tử",
        &format!(
            "<h1>Chưa có kết quả điện tử</h1>\
             <p>Hồ sơ này chưa có bản điện tử của kết quả.</p>\
             <p><a href=\"../{}\">Quay lại trang tra cứu</a></p>",
            escape(token)
        ),
    )
}

/// The rating form or the rating given, once the result was returned.
async fn rating_section(
    state: &AppState,
    dossier: &DossierState,
    reader: ApplicantKind,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<String> {
    if dossier.status != DossierStatus::ResultReturned {
        return Ok(String::new());
    }
    let rating =
        crate::ratings::rating_of(&state.pool, &dossier.tenant, &dossier.dossier_code).await?;
    let window_days = state
        .tenants
        .current()
        .get(&dossier.tenant)
        .map_or(7, |t| t.rating_window_days);
    Ok(super::rating::render_section(
        &state.lookup_secret,
        dossier,
        rating.as_ref(),
        window_days,
        reader,
        now,
    ))
}

/// Whom the page speaks to: the applicant of the newest applied event (a person is
/// "ông/bà", an organisation "Quý tổ chức").
pub fn applicant_kind(history: &[HistoryEntry]) -> ApplicantKind {
    history
        .iter()
        .rev()
        .find(|e| !e.invalid_transition)
        .map_or(ApplicantKind::Person, |e| e.details.applicant_kind)
}

/// "Ông/bà" or "Quý tổ chức", to begin a sentence with.
fn addressee_capitalised(reader: ApplicantKind) -> String {
    let you = templates::addressee(reader);
    let mut chars = you.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn failure(e: &anyhow::Error) -> Response {
    tracing::error!(error.cause_chain = ?e, error.message = %e, "Lookup page failed.");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        layout(
            "Tạm thời không tra cứu được",
            "<h1>Tạm thời không tra cứu được</h1>\
             <p class=\"muted\">Hệ thống đang bận. Ông/bà vui lòng thử lại sau ít phút.</p>",
        ),
    )
}

fn page(status: StatusCode, html: String) -> Response {
    (status, PAGE_HEADERS, Html(html)).into_response()
}

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;background:#f3f5f8;color:#1c2430;line-height:1.5}\
main{max-width:560px;margin:0 auto;padding:16px}\
.office{color:#5a6675;font-size:.9rem;margin:0 0 4px}\
h1{font-size:1.4rem;margin:0 0 12px}\
.card{background:#fff;border-radius:12px;padding:16px;margin-bottom:12px;box-shadow:0 1px 3px rgba(0,0,0,.08)}\
.status{font-size:1.15rem;font-weight:600;color:#0b5cad;margin:0}\
.badge{display:inline-block;margin-top:8px;padding:4px 10px;border-radius:999px;font-size:.9rem;font-weight:600}\
.early{background:#e3f6e8;color:#17692f}.on_time{background:#e8f0fb;color:#0b5cad}\
.overdue{background:#fdecea;color:#a3231a}.in_progress,.paused{background:#fff6e0;color:#7a5200}\
dl{margin:0;display:grid;grid-template-columns:auto 1fr;gap:6px 12px}\
dt{color:#5a6675}dd{margin:0;font-weight:500;word-break:break-word}\
h2{font-size:1.05rem;margin:0 0 8px}\
ol{list-style:none;margin:0;padding:0}\
li{position:relative;padding:0 0 12px 20px;border-left:2px solid #d4dbe4;margin-left:6px}\
li:last-child{border-left-color:transparent}\
li::before{content:'';position:absolute;left:-7px;top:4px;width:12px;height:12px;border-radius:50%;background:#0b5cad}\
.when{display:block;color:#5a6675;font-size:.85rem}\
a.follow{display:inline-block;padding:8px 16px;border-radius:8px;background:#0068ff;color:#fff;font-weight:600;text-decoration:none}\
ul.docs{margin:4px 0 0;padding-left:20px}ul.docs li{border:0;padding:0;margin:0}ul.docs li::before{display:none}\
.muted{color:#5a6675;font-size:.85rem}\
fieldset{border:0;margin:0 0 8px;padding:0}legend{font-weight:600;margin-bottom:4px}\
label.level{display:block;padding:8px 0;font-size:1.05rem}label.level input{margin-right:8px}\
textarea{width:100%;font:inherit;padding:8px;border:1px solid #c4ccd6;border-radius:8px;margin:4px 0 8px}\
button{padding:10px 18px;border:0;border-radius:8px;background:#0b5cad;color:#fff;font:inherit;font-weight:600}";

pub(crate) fn layout(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"vi\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex, nofollow\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n",
        escape(title)
    )
}

/// The page for a dossier on `today` (a Vietnamese day). `office` is the tenant's
/// display name, `oa_id` its Zalo Official Account (the page invites the citizen to
/// follow it; none when empty). Statuses read as citizens say them
/// ([`DossierStatus::citizen_vi`]), moments as "lúc 04:54 ngày 02/12/2026".
pub fn render_page(
    office: &str,
    oa_id: &str,
    dossier: &DossierState,
    history: &[HistoryEntry],
    today: NaiveDate,
) -> String {
    render_page_with(office, oa_id, dossier, history, today, "")
}

/// [`render_page`] with the rating section (already rendered, see
/// [`super::rating::render_section`]) after the dossier's facts.
pub fn render_page_with(
    office: &str,
    oa_id: &str,
    dossier: &DossierState,
    history: &[HistoryEntry],
    today: NaiveDate,
    rating: &str,
) -> String {
    // An event the lifecycle refused did not change the dossier: not the citizen's news.
    let applied: Vec<&HistoryEntry> = history.iter().filter(|e| !e.invalid_transition).collect();
    let reader = applicant_kind(history);
    let mut body = String::new();
    if !office.is_empty() {
        let _ = write!(body, "<p class=\"office\">{}</p>", escape(office));
    }
    body.push_str("<h1>Tra cứu hồ sơ</h1>");

    body.push_str("<section class=\"card\"><p class=\"muted\">Trạng thái hiện tại</p>");
    let _ = write!(
        body,
        "<p class=\"status\">{}</p>",
        escape(dossier.status.citizen_vi_for(reader))
    );
    if let Some(t) = dossier.timeliness(today) {
        let class = match t {
            Timeliness::Early => "early",
            Timeliness::OnTime => "on_time",
            Timeliness::Overdue => "overdue",
            Timeliness::InProgress => "in_progress",
            Timeliness::Paused => "paused",
        };
        let _ = write!(
            body,
            "<span class=\"badge {class}\">{}</span>",
            escape(t.label_vi())
        );
    }
    // What the current status's message pointed the citizen here for.
    let current = applied
        .iter()
        .rev()
        .find(|e| e.status == dossier.status)
        .map(|e| &e.details);
    render_details(&mut body, dossier, current, reader);
    body.push_str("</section>");

    render_facts(&mut body, dossier);
    if let Some(document) = store::result_document(history) {
        render_result_document(&mut body, dossier, document);
    }
    body.push_str(rating);
    render_timeline(&mut body, &applied, reader);
    render_invite(&mut body, office, oa_id, &dossier.dossier_code, reader);
    let _ = write!(
        body,
        "<p class=\"muted\">Cập nhật {}. Thông tin chỉ dùng để theo dõi tiến độ.",
        escape(&format_moment_vn(&dossier.updated_at))
    );
    // The paper matters only where a result waits to be collected.
    if dossier.status == DossierStatus::ResultReady {
        let _ = write!(
            body,
            " Khi đến nhận kết quả, {} vui lòng mang theo Giấy tiếp nhận hồ sơ và hẹn \
             trả kết quả.",
            templates::addressee(reader)
        );
    }
    body.push_str("</p>");
    layout(&format!("Tra cứu hồ sơ {}", dossier.dossier_code), &body)
}

/// The electronic result's download, through Loa's counted link (relative to the
/// page, so it works behind any base URL); the store's own link is never on the page.
fn render_result_document(body: &mut String, dossier: &DossierState, document: &ResultDocument) {
    let _ = write!(
        body,
        "<section class=\"card result\"><h2>Kết quả điện tử</h2><p>{}</p>\
         <p><a class=\"follow\" href=\"{}/ket-qua\" rel=\"noopener noreferrer\">\
         Tải kết quả điện tử</a></p></section>",
        escape(&document.name),
        escape(&dossier.lookup_token)
    );
}

/// The invitation to follow the province's Zalo OA, and what a follower gets: every
/// change of the dossier as a free OA message instead of a paid ZNS, lookups by chat
/// ("tra cứu <mã hồ sơ>", answered once the dossier's phone is linked to the follower)
/// and the province's announcements. The QR code on the receipt leads here.
fn render_invite(
    body: &mut String,
    office: &str,
    oa_id: &str,
    dossier_code: &str,
    reader: ApplicantKind,
) {
    if oa_id.is_empty() {
        return;
    }
    let who = if office.is_empty() {
        "cơ quan giải quyết".to_owned()
    } else {
        escape(office)
    };
    let _ = write!(
        body,
        "<section class=\"card invite\"><h2>Nhận thông báo qua Zalo</h2>\
         <p>Quan tâm Zalo OA của {who} để nhận ngay trên Zalo mỗi thay đổi của hồ sơ, \
         đường dẫn tra cứu này và các thông báo của tỉnh. Khi đã chia sẻ số điện thoại \
         đăng ký hồ sơ với OA, {you} nhắn “tra cứu {code}” cho OA để tra cứu hồ sơ ngay \
         trong Zalo.</p>\
         <p><a class=\"follow\" href=\"https://zalo.me/{}\" rel=\"noopener noreferrer\">\
         Quan tâm Zalo OA</a></p></section>",
        escape(oa_id),
        you = templates::addressee(reader),
        code = escape(dossier_code),
    );
}

/// The details of the current status: the documents to bring (5), the amount due (6),
/// the reason of a refusal or a stop (3, 8) when one was given; never "Lý do: Không có".
fn render_details(
    body: &mut String,
    dossier: &DossierState,
    details: Option<&EventDetails>,
    reader: ApplicantKind,
) {
    let you = addressee_capitalised(reader);
    let none = EventDetails::default();
    let details = details.unwrap_or(&none);
    match dossier.status {
        DossierStatus::SupplementRequested => {
            let documents: Vec<&str> = details
                .documents
                .iter()
                .map(|d| d.trim())
                .filter(|d| !d.is_empty())
                .collect();
            if documents.is_empty() {
                let _ = write!(
                    body,
                    "<p>{you} vui lòng liên hệ {} để biết giấy tờ cần bổ sung.</p>",
                    escape(&dossier.agency_name)
                );
            } else {
                body.push_str("<p>Giấy tờ cần bổ sung:</p><ul class=\"docs\">");
                for d in documents {
                    let _ = write!(body, "<li>{}</li>", escape(d));
                }
                body.push_str("</ul>");
            }
        }
        DossierStatus::PaymentRequested => match details.fee_vnd {
            Some(amount) => {
                let _ = write!(
                    body,
                    "<p>Số tiền cần nộp: <strong>{}</strong>",
                    escape(&format_vnd(amount))
                );
                if let Some(what) = details.fee_description.as_deref().map(str::trim) {
                    if !what.is_empty() {
                        let _ = write!(body, " ({})", escape(what));
                    }
                }
                body.push_str("</p>");
            }
            None => {
                let _ = write!(
                    body,
                    "<p>{you} vui lòng liên hệ {} để biết số tiền và cách nộp.</p>",
                    escape(&dossier.agency_name)
                );
            }
        },
        DossierStatus::Refused | DossierStatus::Stopped => {
            if let Some(reason) = details.reason.as_deref().map(str::trim) {
                if !reason.is_empty() {
                    let _ = write!(body, "<p>Lý do: {}</p>", escape(reason));
                }
            }
        }
        _ => {}
    }
}

/// The dossier's facts: code, procedure, agency, owner (masked), dates, waiting time.
fn render_facts(body: &mut String, dossier: &DossierState) {
    body.push_str("<section class=\"card\"><dl>");
    let mut row = |label: &str, value: &str| {
        let _ = write!(body, "<dt>{}</dt><dd>{}</dd>", escape(label), escape(value));
    };
    row("Mã hồ sơ", &dossier.dossier_code);
    row("Thủ tục", &dossier.procedure_name);
    row("Cơ quan giải quyết", &dossier.agency_name);
    if !dossier.applicant_masked.is_empty() {
        row("Chủ hồ sơ", &dossier.applicant_masked);
    }
    row(
        "Ngày tiếp nhận",
        &dossier
            .received_at
            .map(|d| format_date_vn(&d))
            .unwrap_or_else(|| "Chưa tiếp nhận".to_owned()),
    );
    // A procedure without an appointment date has no line for it (never "Không có").
    if let Some(due) = dossier.due_at {
        row("Ngày hẹn trả", &format_date_vn(&due));
    }
    // The processing clock stops while the dossier waits for the citizen.
    if let Some(since) = dossier.paused_since {
        row(
            "Chờ bổ sung giấy tờ",
            &format!(
                "từ ngày {} (không tính vào thời hạn giải quyết)",
                format_date_vn(&since)
            ),
        );
    } else if dossier.paused_secs > 0 {
        row(
            "Thời gian chờ bổ sung giấy tờ",
            &format!(
                "{} (không tính vào thời hạn giải quyết)",
                format_wait(dossier.paused_secs)
            ),
        );
    }
    if let (Some(due), None, true) = (
        dossier.effective_due(),
        dossier.completed_at,
        dossier.paused_after_due_secs > 0,
    ) {
        row("Hạn giải quyết sau khi bổ sung", &format_date_vn(&due));
    }
    if let Some(done) = dossier.completed_at {
        row("Ngày có kết quả", &format_date_vn(&done));
    }
    body.push_str("</dl></section>");
}

/// The applied events in order; every appointment the dossier was given shows where
/// it was given.
fn render_timeline(body: &mut String, applied: &[&HistoryEntry], reader: ApplicantKind) {
    body.push_str("<section class=\"card\"><h2>Quá trình xử lý</h2><ol>");
    let mut appointment: Option<NaiveDate> = None;
    for entry in applied {
        let day = entry.due_at.map(|d| vietnam_day(&d));
        let _ = write!(
            body,
            "<li>{}<span class=\"when\">{}</span>",
            escape(entry.status.citizen_vi_for(reader)),
            escape(&format_moment_vn(&entry.occurred_at))
        );
        if let (Some(before), Some(after), Some(due)) = (appointment, day, entry.due_at) {
            if before != after {
                let _ = write!(
                    body,
                    "<span class=\"when\">Hẹn lại ngày trả kết quả: {}</span>",
                    escape(&format_date_vn(&due))
                );
            }
        }
        body.push_str("</li>");
        appointment = day.or(appointment);
    }
    body.push_str("</ol></section>");
}

/// A waiting time in days and hours, as a citizen reads it (`2 ngày 3 giờ`).
pub fn format_wait(secs: i64) -> String {
    let hours = secs.max(0) / 3_600;
    match (hours / 24, hours % 24) {
        (0, 0) => "dưới 1 giờ".to_owned(),
        (0, h) => format!("{h} giờ"),
        (d, 0) => format!("{d} ngày"),
        (d, h) => format!("{d} ngày {h} giờ"),
    }
}

/// The page for an unknown token.
pub fn render_not_found() -> String {
    layout(
        "Không tìm thấy hồ sơ",
        "<h1>Không tìm thấy hồ sơ</h1>\
         <section class=\"card\"><p>Đường dẫn tra cứu không đúng hoặc hồ sơ chưa được cập nhật.</p>\
         <p class=\"muted\">Ông/bà vui lòng quét lại mã QR trên Giấy tiếp nhận hồ sơ và hẹn trả kết quả, \
         hoặc liên hệ bộ phận một cửa nơi đã nộp hồ sơ.</p></section>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrderingKey;
    use chrono::{DateTime, Utc};
    use loa_contracts::DossierStatus;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn dossier() -> DossierState {
        DossierState {
            tenant: "demo".into(),
            dossier_code: "H56-<0001>".into(),
            status: DossierStatus::ResultReady,
            procedure_code: "1.001193".into(),
            procedure_name: "Đăng ký khai sinh".into(),
            agency_code: "H56".into(),
            agency_name: "UBND phường Đức Thắng".into(),
            applicant_masked: "Trần T. B.".into(),
            received_at: Some(at("2026-11-28T09:30:00+07:00")),
            due_at: Some(at("2026-12-03T17:00:00+07:00")),
            due_ordering: None,
            completed_at: Some(at("2026-12-01T10:00:00+07:00")),
            lookup_token: "0123456789abcdef01234567".into(),
            last_event_id: "e2".into(),
            ordering: OrderingKey {
                sequence: None,
                occurred_at: at("2026-12-01T10:00:00+07:00"),
                stage: 3,
            },
            all_sequenced: false,
            paused_secs: 0,
            paused_since: None,
            paused_after_due_secs: 0,
            overdue_since: None,
            updated_at: at("2026-12-01T10:00:01+07:00"),
        }
    }

    #[test]
    fn the_page_is_vietnamese_escaped_and_says_early() {
        let history = [
            HistoryEntry {
                event_id: "e1".into(),
                status: DossierStatus::Received,
                occurred_at: at("2026-11-28T09:30:00+07:00"),
                sequence: None,
                due_at: None,
                details: EventDetails::default(),
                invalid_transition: false,
            },
            HistoryEntry {
                event_id: "e2".into(),
                status: DossierStatus::ResultReady,
                occurred_at: at("2026-12-01T10:00:00+07:00"),
                sequence: None,
                due_at: None,
                details: EventDetails::default(),
                invalid_transition: false,
            },
        ];
        let html = render_page(
            "Trung tâm <Phục vụ>",
            "",
            &dossier(),
            &history,
            NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
        );
        assert!(html.contains("<title>Tra cứu hồ sơ H56-&lt;0001&gt;</title>"));
        assert!(html.contains("<meta name=\"viewport\""));
        assert!(html.contains("Trung tâm &lt;Phục vụ&gt;"));
        assert!(html.contains("Đăng ký khai sinh"));
        assert!(html.contains("Đã có kết quả, mời ông/bà đến nhận"));
        assert!(html.contains("Đã có kết quả trước hạn"));
        assert!(html.contains("<dt>Ngày tiếp nhận</dt><dd>28/11/2026</dd>"));
        assert!(html.contains("<dt>Ngày hẹn trả</dt><dd>03/12/2026</dd>"));
        assert!(html.contains(
            "Hồ sơ đã được tiếp nhận<span class=\"when\">lúc 09:30 ngày 28/11/2026</span>"
        ));
        assert!(html.contains("mang theo Giấy tiếp nhận hồ sơ và hẹn trả kết quả"));
        assert!(!html.contains("http"), "no external assets or links");
    }

    fn entry(status: DossierStatus, details: EventDetails) -> HistoryEntry {
        HistoryEntry {
            event_id: "e9".into(),
            status,
            occurred_at: at("2026-11-30T10:00:00+07:00"),
            sequence: None,
            due_at: None,
            details,
            invalid_transition: false,
        }
    }

    fn page_in(status: DossierStatus, details: EventDetails) -> String {
        let mut d = dossier();
        d.status = status;
        d.completed_at = None;
        render_page(
            "",
            "",
            &d,
            &[entry(status, details)],
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        )
    }

    #[test]
    fn the_page_shows_what_the_message_sent_the_citizen_to_see() {
        let html = page_in(
            DossierStatus::SupplementRequested,
            EventDetails {
                documents: vec!["Bản sao CCCD".into(), "Giấy <chứng> sinh".into()],
                ..EventDetails::default()
            },
        );
        assert!(html.contains("<li>Bản sao CCCD</li><li>Giấy &lt;chứng&gt; sinh</li>"));
        let html = page_in(
            DossierStatus::PaymentRequested,
            EventDetails {
                fee_vnd: Some(150_000),
                fee_description: Some("Lệ phí đăng ký".into()),
                ..EventDetails::default()
            },
        );
        assert!(html.contains("Số tiền cần nộp: <strong>150.000 đồng</strong> (Lệ phí đăng ký)"));
        let html = page_in(
            DossierStatus::Refused,
            EventDetails {
                reason: Some("Thiếu tờ khai".into()),
                ..EventDetails::default()
            },
        );
        assert!(html.contains("<p>Lý do: Thiếu tờ khai</p>"));
        assert!(html.contains("Hồ sơ không được tiếp nhận"));
    }

    #[test]
    fn a_refusal_without_a_reason_says_no_reason_and_only_a_ready_result_mentions_the_paper() {
        let html = page_in(DossierStatus::Refused, EventDetails::default());
        assert!(!html.contains("Lý do"), "{html}");
        assert!(!html.contains("Giấy tiếp nhận"), "{html}");
        let html = page_in(DossierStatus::SupplementRequested, EventDetails::default());
        assert!(html.contains("liên hệ UBND phường Đức Thắng để biết giấy tờ cần bổ sung"));
        let html = page_in(DossierStatus::ResultReturned, EventDetails::default());
        assert!(!html.contains("Giấy tiếp nhận"), "{html}");
        let html = page_in(DossierStatus::Withdrawn, EventDetails::default());
        assert!(html.contains("Hồ sơ đã được rút theo đề nghị của ông/bà"));
    }

    #[test]
    fn an_organisation_s_page_addresses_it_and_never_says_ong_ba() {
        let organisation = || EventDetails {
            applicant_kind: ApplicantKind::Organisation,
            ..EventDetails::default()
        };
        let mut pages = Vec::new();
        for status in DossierStatus::ALL {
            pages.push((status, page_in(status, organisation())));
        }
        // With the rating section a returned result carries.
        let mut d = dossier();
        d.status = DossierStatus::ResultReturned;
        let section = crate::routes::rating::render_section(
            &loa_platform::Secret::new("k"),
            &d,
            None,
            7,
            ApplicantKind::Organisation,
            at("2026-12-02T10:00:00+07:00"),
        );
        assert!(section.contains("Ý kiến của Quý tổ chức"), "{section}");
        pages.push((
            DossierStatus::ResultReturned,
            render_page_with(
                "",
                "",
                &d,
                &[entry(DossierStatus::ResultReturned, organisation())],
                NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
                &section,
            ),
        ));
        for (status, html) in &pages {
            assert!(
                !html.to_lowercase().contains("ông/bà"),
                "{status:?}: {html}"
            );
        }
        let ready = &pages[8].1;
        assert!(
            ready.contains("Đã có kết quả, mời Quý tổ chức đến nhận"),
            "{ready}"
        );
        assert!(ready.contains("Khi đến nhận kết quả, Quý tổ chức vui lòng mang theo"));
        let html = page_in(DossierStatus::SupplementRequested, organisation());
        assert!(html.contains("<p>Quý tổ chức vui lòng liên hệ UBND phường Đức Thắng"));
    }

    #[test]
    fn a_dossier_without_an_appointment_date_has_no_such_line_and_no_khong_co() {
        let mut d = dossier();
        d.due_at = None;
        d.status = DossierStatus::Processing;
        d.completed_at = None;
        let html = render_page(
            "",
            "",
            &d,
            &[entry(DossierStatus::Processing, EventDetails::default())],
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        );
        assert!(!html.contains("Ngày hẹn trả"), "{html}");
        assert!(!html.contains("Không có"), "{html}");
        assert!(html.contains("<dt>Ngày tiếp nhận</dt>"), "{html}");
    }

    #[test]
    fn the_page_invites_the_citizen_to_follow_the_provinces_oa_and_to_look_up_by_chat() {
        let html = render_page(
            "Trung tâm Phục vụ hành chính công",
            "9876543210987654321",
            &dossier(),
            &[],
            NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
        );
        assert!(
            html.contains("href=\"https://zalo.me/9876543210987654321\""),
            "{html}"
        );
        assert!(html.contains("Quan tâm Zalo OA của Trung tâm Phục vụ hành chính công"));
        assert!(html.contains("các thông báo của tỉnh"));
        // Chat lookups, with this dossier's code (escaped) to write.
        assert!(
            html.contains("ông/bà nhắn “tra cứu H56-&lt;0001&gt;” cho OA để tra cứu"),
            "{html}"
        );
        assert!(
            !html.contains(" src="),
            "still nothing loaded from elsewhere"
        );
    }

    #[test]
    fn an_organisation_owner_is_shown_by_its_name() {
        let mut d = dossier();
        d.applicant_masked = "Công ty TNHH Thương mại Việt Tiến".into();
        let html = render_page(
            "",
            "",
            &d,
            &[],
            NaiveDate::from_ymd_opt(2026, 12, 2).unwrap(),
        );
        assert!(html.contains("<dt>Chủ hồ sơ</dt><dd>Công ty TNHH Thương mại Việt Tiến</dd>"));
    }

    #[test]
    fn waiting_times_read_in_days_and_hours() {
        assert_eq!(format_wait(600), "dưới 1 giờ");
        assert_eq!(format_wait(5 * 3_600 + 59), "5 giờ");
        assert_eq!(format_wait(2 * 86_400), "2 ngày");
        assert_eq!(format_wait(2 * 86_400 + 3 * 3_600), "2 ngày 3 giờ");
    }

    #[test]
    fn the_not_found_page_is_vietnamese() {
        let html = render_not_found();
        assert!(html.contains("Không tìm thấy hồ sơ"));
        assert!(html.contains("lang=\"vi\""));
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
