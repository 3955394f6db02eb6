//! `GET /admin/dossiers`: search by code or applicant phone, with filters (agency,
//! procedure, status, timeliness, date range), paged; `GET /admin/dossiers/{code}`:
//! one dossier with its timeline, every message sent for it with its history, the
//! lookup link and the QR code to print (`/admin/dossiers/{code}/qr.svg`).

use super::{section_page, text};
use crate::{
    backend::{segment, Service},
    html::{self, Section},
    reasons,
    web::{AppState, PageError, SignedIn},
};
use axum::{
    extract::{Path, Query, State},
    http::header,
    response::{IntoResponse, Response},
};
use loa_contracts::DossierStatus;
use maud::{html, Markup};
use serde_json::Value;
use std::collections::HashMap;

/// The search parameters passed on to the tracker, in form order.
const FILTERS: [&str; 7] = [
    "q",
    "agency",
    "procedure",
    "status",
    "timeliness",
    "from",
    "to",
];

/// `GET /admin/dossiers?q=&agency=&procedure=&status=&timeliness=&from=&to=&after=`.
pub async fn search(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let value = |k: &str| query.get(k).map(|v| v.trim()).unwrap_or_default();
    let mut params: Vec<(&str, String)> = FILTERS
        .iter()
        .filter(|k| !value(k).is_empty())
        .map(|k| (*k, value(k).to_owned()))
        .collect();
    if !value("after").is_empty() {
        params.push(("after", value("after").to_owned()));
    }
    params.push(("limit", "20".to_owned()));
    let answer = state
        .backend
        .get::<Value>(
            Service::Tracker,
            signed_in.tenant(),
            "/v1/dossiers",
            &params,
        )
        .await;
    let (found, error) = super::searched(answer)?;
    let dossiers = found["dossiers"].as_array().cloned().unwrap_or_default();
    let next = found["next"].as_str();
    let next_link = next.map(|cursor| {
        let mut link = String::from("/admin/dossiers?");
        let mut pairs = form_urlencoded::Serializer::new(String::new());
        for k in FILTERS {
            if !value(k).is_empty() {
                pairs.append_pair(k, value(k));
            }
        }
        pairs.append_pair("after", cursor);
        link.push_str(&pairs.finish());
        link
    });
    let body = html! {
        h1 { "Tra cứu hồ sơ" }
        form.filters.card method="get" action="/admin/dossiers" {
            div {
                label for="q" { "Mã hồ sơ hoặc số điện thoại" }
                input id="q" name="q" value=(value("q")) placeholder="000.00.06.H56-261128-0001";
            }
            div { label for="agency" { "Mã cơ quan" } input id="agency" name="agency" value=(value("agency")); }
            div { label for="procedure" { "Mã thủ tục" } input id="procedure" name="procedure" value=(value("procedure")); }
            div {
                label for="status" { "Trạng thái" }
                select id="status" name="status" {
                    option value="" { "Tất cả" }
                    @for s in DossierStatus::ALL {
                        option value=(s.code()) selected[value("status") == s.code().to_string()] { (s.label_vi()) }
                    }
                }
            }
            div {
                label for="timeliness" { "Tiến độ" }
                select id="timeliness" name="timeliness" {
                    option value="" { "Tất cả" }
                    option value="overdue" selected[value("timeliness") == "overdue"] { "Quá hạn" }
                    option value="early" selected[value("timeliness") == "early"] { "Trước hạn" }
                }
            }
            div { label for="from" { "Tiếp nhận từ ngày" } input id="from" name="from" type="date" value=(value("from")); }
            div { label for="to" { "đến ngày" } input id="to" name="to" type="date" value=(value("to")); }
            div { button type="submit" { "Tìm kiếm" } }
        }
        @if let Some(error) = &error { (html::notice(error, false)) }
        div.scroll {
            table #dossiers {
                thead { tr { th { "Mã hồ sơ" } th { "Thủ tục" } th { "Cơ quan" } th { "Trạng thái" } th { "Tiến độ" } th { "Tiếp nhận" } th { "Hẹn trả" } } }
                tbody {
                    @for d in &dossiers { (row(d)) }
                    @if dossiers.is_empty() && error.is_none() { tr { td colspan="7" { "Không có hồ sơ nào phù hợp." } } }
                }
            }
        }
        @if let Some(link) = next_link {
            div.pager { a.button href=(link) { "Trang sau →" } }
        }
    };
    Ok(section_page(
        &state,
        &signed_in,
        Section::Dossiers,
        "Hồ sơ",
        body,
    ))
}

fn row(d: &Value) -> Markup {
    let code = text(&d["code"], "");
    let timeliness = d["timeliness"].as_str().unwrap_or("");
    html! {
        tr {
            td.nowrap { a href={ "/admin/dossiers/" (segment(&code)) } { (code) } }
            td { (text(&d["procedure"]["name"], "")) }
            td { (text(&d["agency"]["name"], "")) }
            td { (text(&d["status"]["label_vi"], "")) }
            td { @if !timeliness.is_empty() { span class={ "badge " (timeliness) } { (html::timeliness_vi(timeliness)) } } }
            td.nowrap { (d["received_at"].as_str().map(html::date_vn_str).unwrap_or_default()) }
            td.nowrap { (d["due_at"].as_str().map(html::date_vn_str).unwrap_or_default()) }
        }
    }
}

/// `GET /admin/dossiers/{code}`.
pub async fn show(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(code): Path<String>,
) -> Result<Response, PageError> {
    let tenant = signed_in.tenant();
    let path = format!("/v1/dossiers/{}", segment(&code));
    let by_dossier = [("dossier_code", code.clone())];
    let (dossier, deliveries) = tokio::join!(
        state
            .backend
            .get::<Value>(Service::Tracker, tenant, &path, &[]),
        state
            .backend
            .get::<Value>(Service::Notifier, tenant, "/v1/deliveries", &by_dossier),
    );
    let dossier = dossier?;
    let deliveries = deliveries?;
    let deliveries = deliveries["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let timeliness = dossier["timeliness"].as_str().unwrap_or("");
    let lookup_url = text(&dossier["lookup_url"], "");
    let date = |k: &str| {
        dossier[k]
            .as_str()
            .map(html::date_vn_str)
            .unwrap_or_else(|| "—".into())
    };
    let body = html! {
        p.no-print { a href="/admin/dossiers" { "← Tra cứu hồ sơ" } }
        h1 { "Hồ sơ " (code) }
        section.card {
            dl {
                dt { "Trạng thái" } dd { (text(&dossier["status"]["label_vi"], "")) }
                dt { "Tiến độ" } dd { @if timeliness.is_empty() { "—" } @else { span class={ "badge " (timeliness) } { (html::timeliness_vi(timeliness)) } } }
                dt { "Thủ tục" } dd { (text(&dossier["procedure"]["name"], "")) " (" (text(&dossier["procedure"]["code"], "")) ")" }
                dt { "Cơ quan giải quyết" } dd { (text(&dossier["agency"]["name"], "")) " (" (text(&dossier["agency"]["code"], "")) ")" }
                dt { "Ngày tiếp nhận" } dd { (date("received_at")) }
                dt { "Ngày hẹn trả" } dd { (date("due_at")) }
                dt { "Ngày có kết quả" } dd { (date("completed_at")) }
                dt { "Cập nhật lúc" } dd { (dossier["updated_at"].as_str().map(html::datetime_vn_str).unwrap_or_default()) }
            }
        }
        section.card.qr {
            h2 { "Đường dẫn tra cứu cho công dân" }
            p { a href=(lookup_url) rel="noreferrer" { (lookup_url) } }
            img src={ "/admin/dossiers/" (segment(&code)) "/qr.svg" } alt={ "Mã QR tra cứu hồ sơ " (code) };
            p.muted.no-print { "In trang này để dán mã QR vào phiếu tiếp nhận." }
        }
        section.card {
            h2 { "Quá trình xử lý" }
            ol.timeline {
                @for h in dossier["history"].as_array().into_iter().flatten() {
                    li {
                        (text(&h["status"]["label_vi"], ""))
                        span.muted { " · " (h["occurred_at"].as_str().map(html::datetime_vn_str).unwrap_or_default()) }
                        @if let Some(due) = h["due_at"].as_str() {
                            span.muted { " · hẹn trả " (html::date_vn_str(due)) }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Tin nhắn đã gửi" }
            @if deliveries.is_empty() { p.muted { "Chưa có tin nhắn nào cho hồ sơ này." } }
            @for d in &deliveries {
                (delivery(d))
            }
        }
    };
    Ok(section_page(
        &state,
        &signed_in,
        Section::Dossiers,
        &format!("Hồ sơ {code}"),
        body,
    ))
}

fn delivery(d: &Value) -> Markup {
    let status = d["status"].as_str().unwrap_or("");
    html! {
        div.card {
            p {
                b { (html::kind_vi(d["kind"].as_str().unwrap_or(""))) }
                " · " (html::channel_vi(d["channel"].as_str().unwrap_or("")))
                " · " span class={ "badge " (status) } { (html::delivery_status_vi(status)) }
            }
            @if d["last_error"].is_string() || !d["last_error_code"].is_null() {
                p { "Lý do gần nhất: " (reasons::cell(d["last_error"].as_str(), d["last_error_code"].as_i64())) }
            }
            ol.timeline {
                @for h in d["history"].as_array().into_iter().flatten() {
                    li {
                        (html::delivery_status_vi(h["status"].as_str().unwrap_or("")))
                        span.muted { " · " (h["at"].as_str().map(html::datetime_vn_str).unwrap_or_default()) }
                    }
                }
            }
        }
    }
}

/// `GET /admin/dossiers/{code}/qr.svg`: the tracker's QR code of the lookup link.
pub async fn qr(
    State(state): State<AppState>,
    signed_in: SignedIn,
    Path(code): Path<String>,
) -> Result<Response, PageError> {
    let svg = state
        .backend
        .get_bytes(
            Service::Tracker,
            signed_in.tenant(),
            &format!("/v1/dossiers/{}/qr.svg", segment(&code)),
        )
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        svg,
    )
        .into_response())
}
