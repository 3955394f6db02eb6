//! The lookup page's rating form and `POST /tra-cuu/{token}/danh-gia`, where it posts.
//!
//! The form works without JavaScript: three radio buttons (Rất hài lòng / Hài lòng /
//! Không hài lòng), an optional comment and a submit button, posted as
//! `application/x-www-form-urlencoded`. It carries a form token bound to the lookup
//! token and the moment the page was served ([`ratings::form_token`]); a post without
//! a valid one, or one a browser marks as coming from another site
//! (`Sec-Fetch-Site: cross-site`), is refused and changes nothing. A browser gets its
//! answers as Vietnamese pages (the confirmation, or what to correct, with the same
//! 4xx status); any other client gets the JSON error naming the field.

use super::{lookup::escape, AppState};
use crate::{
    domain::is_lookup_token,
    ratings::{self, Rating, RatingLevel, RatingSource, Submission, Submitted, MAX_COMMENT},
    store::{self, DossierState},
};
use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{header, HeaderMap, HeaderName, StatusCode},
    response::{Html, IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use loa_contracts::{templates, time::format_moment_vn, ApplicantKind, DossierStatus};
use loa_platform::{http::ApiError, Secret};
use std::fmt::Write;

/// Headers of the pages this answers with: as the lookup page's.
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

/// The rating section of a dossier's lookup page on `now`: nothing before the result
/// was returned; the form while the dossier may be rated (again); the rating alone
/// once it is final. `window_days` is the tenant's `rating_window_days`.
pub fn render_section(
    secret: &Secret,
    dossier: &DossierState,
    rating: Option<&Rating>,
    window_days: u32,
    reader: ApplicantKind,
    now: DateTime<Utc>,
) -> String {
    if dossier.status != DossierStatus::ResultReturned {
        return String::new();
    }
    // "ông/bà", or "Quý tổ chức" for an organisation's dossier.
    let you = templates::addressee(reader);
    let you_first = match reader {
        ApplicantKind::Person => "Ông/bà",
        ApplicantKind::Organisation => templates::ORGANISATION_ADDRESSEE,
    };
    let mut html = String::from(
        "<section class=\"card rating\" id=\"danh-gia\"><h2>Đánh giá mức độ hài lòng</h2>",
    );
    if let Some(r) = rating {
        let until = r.changeable_until(window_days);
        let _ = write!(
            html,
            "<p>{you_first} đã đánh giá: <strong class=\"given\">{}</strong></p>",
            escape(r.level.label_vi())
        );
        if now > until {
            let _ = write!(
                html,
                "<p class=\"muted\">Cảm ơn {you} đã đánh giá.</p></section>"
            );
            return html;
        }
        let _ = write!(
            html,
            "<p class=\"muted\">{you_first} có thể đổi đánh giá đến {}.</p>",
            escape(&format_moment_vn(&until))
        );
    } else {
        let _ = write!(
            html,
            "<p>{you_first} hài lòng thế nào với việc giải quyết hồ sơ này? \
             Ý kiến của {you} giúp cơ quan phục vụ tốt hơn.</p>"
        );
    }
    let issued = now.timestamp();
    let _ = write!(
        html,
        "<form method=\"post\" action=\"{token}/danh-gia\">\
         <input type=\"hidden\" name=\"issued\" value=\"{issued}\">\
         <input type=\"hidden\" name=\"form_token\" value=\"{form}\">\
         <fieldset><legend>Mức độ hài lòng</legend>",
        token = escape(&dossier.lookup_token),
        form = ratings::form_token(secret, &dossier.lookup_token, issued),
    );
    for level in RatingLevel::ALL {
        let checked = if rating.map(|r| r.level) == Some(level) {
            " checked"
        } else {
            ""
        };
        let _ = write!(
            html,
            "<label class=\"level\"><input type=\"radio\" name=\"level\" value=\"{}\" required{checked}> {}</label>",
            level.as_str(),
            escape(level.label_vi())
        );
    }
    let _ = write!(
        html,
        "</fieldset><label for=\"comment\">Góp ý (không bắt buộc, tối đa {MAX_COMMENT} ký tự)</label>\
         <textarea id=\"comment\" name=\"comment\" maxlength=\"{MAX_COMMENT}\" rows=\"3\">{}</textarea>\
         <button type=\"submit\">{}</button></form></section>",
        rating.map(|r| escape(&r.comment)).unwrap_or_default(),
        if rating.is_some() {
            "Đổi đánh giá"
        } else {
            "Gửi đánh giá"
        }
    );
    html
}

/// Why a post was refused: its status, JSON error and Vietnamese explanation.
struct Refusal {
    error: ApiError,
    message_vi: &'static str,
}

impl Refusal {
    fn new(
        status: StatusCode,
        code: &'static str,
        field: &str,
        message: &str,
        message_vi: &'static str,
    ) -> Self {
        Self {
            error: ApiError::new(status, code, message).with_field(field),
            message_vi,
        }
    }
}

/// `POST /tra-cuu/{token}/danh-gia`.
#[utoipa::path(post, path = "/tra-cuu/{token}/danh-gia", tag = "public",
    params(("token" = String, Path, description = "The lookup token of the dossier's link")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "`level` (very_satisfied | satisfied | dissatisfied), `comment` (optional, at most 500 characters), `issued` and `form_token` as the lookup page's form carries them"),
    responses(
        (status = 200, body = String, content_type = "text/html", description = "Recorded (or changed): the confirmation page"),
        (status = 403, body = loa_platform::http::openapi::ErrorBody, description = "No valid form token, or a post from another site (`forged_form`, field `form_token`)"),
        (status = 404, body = loa_platform::http::openapi::ErrorBody, description = "No dossier has this token"),
        (status = 409, body = loa_platform::http::openapi::ErrorBody, description = "The result was not returned yet (`not_rateable`), or the rating is final (`rating_final`)"),
        (status = 415, body = loa_platform::http::openapi::ErrorBody, description = "Not a form post (`unsupported_media_type`)"),
        (status = 422, body = loa_platform::http::openapi::ErrorBody, description = "`level` missing or unknown, or `comment` too long (`invalid_field`, named in `field`)"),
        (status = 429, body = loa_platform::http::openapi::ErrorBody, description = "Too many lookups from this address (`rate_limited`)",
            headers(("Retry-After" = u64, description = "Seconds"))),
    ))]
pub async fn submit_rating(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let html = wants_html(&headers);
    match submit(&state, &token, &headers, &body).await {
        Ok(page) => (StatusCode::OK, PAGE_HEADERS, Html(page)).into_response(),
        Err(Outcome::Refused(r)) if html => {
            let status = r.error.status;
            let back = if status == StatusCode::NOT_FOUND {
                String::new()
            } else {
                format!(
                    "<p><a href=\"../{}#danh-gia\">Quay lại trang tra cứu</a></p>",
                    escape(&token)
                )
            };
            let body = format!(
                "<h1>Chưa ghi nhận đánh giá</h1><section class=\"card\"><p>{}</p>{back}</section>",
                escape(r.message_vi)
            );
            (
                status,
                PAGE_HEADERS,
                Html(page_layout("Chưa ghi nhận đánh giá", &body)),
            )
                .into_response()
        }
        Err(Outcome::Refused(r)) => r.error.into_response(),
        Err(Outcome::Failed(e)) => {
            tracing::error!(error.cause_chain = ?e, error.message = %e, "Recording a rating failed.");
            ApiError::unavailable("The rating could not be recorded; try again shortly.", 5)
                .into_response()
        }
    }
}

enum Outcome {
    Refused(Refusal),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Outcome {
    fn from(e: anyhow::Error) -> Self {
        Self::Failed(e)
    }
}

impl From<Refusal> for Outcome {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// Checks and records one post; the confirmation page, or why not.
async fn submit(
    state: &AppState,
    token: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Outcome> {
    let not_found = || {
        Refusal::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "token",
            "No dossier has this lookup token.",
            "Không tìm thấy hồ sơ. Ông/bà vui lòng mở lại đường dẫn tra cứu.",
        )
    };
    if !is_lookup_token(token) {
        return Err(not_found().into());
    }
    let forged = || {
        Refusal::new(
            StatusCode::FORBIDDEN,
            "forged_form",
            "form_token",
            "The form token is missing, expired or not this dossier's; reload the lookup page.",
            "Phiếu đánh giá đã hết hạn hoặc không hợp lệ. Ông/bà vui lòng mở lại trang tra cứu và đánh giá lại.",
        )
    };
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
    if cross_site {
        return Err(forged().into());
    }
    let form_post = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_post {
        return Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "content-type",
            "Send the form as application/x-www-form-urlencoded.",
            "Trình duyệt gửi phiếu không đúng cách. Ông/bà vui lòng thử lại từ trang tra cứu.",
        )
        .into());
    }
    let mut level = None;
    let mut comment = None;
    let mut issued = None;
    let mut form_token = None;
    for (key, value) in form_urlencoded::parse(body) {
        match &*key {
            "level" => level = Some(value.into_owned()),
            "comment" => comment = Some(value.into_owned()),
            "issued" => issued = Some(value.into_owned()),
            "form_token" => form_token = Some(value.into_owned()),
            _ => {}
        }
    }
    let now = state.clock.now();
    let genuine = match (issued.and_then(|i| i.parse::<i64>().ok()), form_token) {
        (Some(issued), Some(candidate)) => {
            ratings::check_form_token(&state.lookup_secret, token, issued, &candidate, now)
        }
        _ => false,
    };
    if !genuine {
        return Err(forged().into());
    }
    let level = level
        .as_deref()
        .and_then(RatingLevel::from_name)
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "level",
                "level must be very_satisfied, satisfied or dissatisfied.",
                "Ông/bà vui lòng chọn một mức độ hài lòng.",
            )
        })?;
    let comment =
        ratings::clean_comment(comment.as_deref().unwrap_or_default()).ok_or_else(|| {
            Refusal::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                "comment",
                "comment is longer than 500 characters.",
                "Góp ý dài quá 500 ký tự. Ông/bà vui lòng rút gọn.",
            )
        })?;
    let dossier = store::dossier_by_token(&state.pool, token)
        .await?
        .ok_or_else(not_found)?;
    if dossier.status != DossierStatus::ResultReturned {
        return Err(Refusal::new(
            StatusCode::CONFLICT,
            "not_rateable",
            "token",
            "Only a dossier whose result was returned (status 10) can be rated.",
            "Hồ sơ chưa trả kết quả nên chưa thể đánh giá.",
        )
        .into());
    }
    let window_days = state
        .tenants
        .current()
        .get(&dossier.tenant)
        .map_or(7, |t| t.rating_window_days);
    // "ông/bà", or "Quý tổ chức" for an organisation's dossier, as on its page.
    let history = store::history(&state.pool, &dossier.tenant, &dossier.dossier_code).await?;
    let reader = super::lookup::applicant_kind(&history);
    let you = templates::addressee(reader);
    let you_first = match reader {
        ApplicantKind::Person => "Ông/bà",
        ApplicantKind::Organisation => templates::ORGANISATION_ADDRESSEE,
    };
    let submitted = ratings::submit(
        &state.pool,
        &Submission {
            tenant: &dossier.tenant,
            dossier_code: &dossier.dossier_code,
            level,
            comment: &comment,
            source: RatingSource::Page,
            zalo_msg_id: None,
            at: now,
            window_days,
        },
    )
    .await?;
    let rating = match submitted {
        Submitted::Recorded(r) | Submitted::Changed(r) => r,
        Submitted::WindowClosed(_) | Submitted::Duplicate(_) => return Err(Refusal::new(
            StatusCode::CONFLICT,
            "rating_final",
            "level",
            "The rating of this dossier can no longer be changed.",
            match reader {
                ApplicantKind::Person => {
                    "Đã hết thời hạn đổi đánh giá của hồ sơ này. Cảm ơn ông/bà đã đánh giá."
                }
                ApplicantKind::Organisation => {
                    "Đã hết thời hạn đổi đánh giá của hồ sơ này. Cảm ơn Quý tổ chức đã đánh giá."
                }
            },
        )
        .into()),
    };
    let until = rating.changeable_until(window_days);
    let body = format!(
        "<h1>Cảm ơn {you} đã đánh giá</h1><section class=\"card\">\
         <p>Hồ sơ {code}: <strong class=\"given\">{level}</strong></p>\
         <p class=\"muted\">{you_first} có thể đổi đánh giá đến {until}.</p>\
         <p><a href=\"../{token}\">Quay lại trang tra cứu</a></p></section>",
        code = escape(&dossier.dossier_code),
        level = escape(rating.level.label_vi()),
        until = escape(&format_moment_vn(&until)),
        token = escape(token),
    );
    Ok(page_layout(&format!("Cảm ơn {you} đã đánh giá"), &body))
}

fn page_layout(title: &str, body: &str) -> String {
    super::lookup::layout(title, body)
}
