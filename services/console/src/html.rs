//! Rendering: the page frame (header, navigation, sign-out), Vietnamese labels and
//! formats, and the one stylesheet.
//!
//! Pages are [`maud`] templates: markup checked at compile time, and every
//! interpolated value HTML-escaped unless explicitly marked otherwise (which nothing
//! in the console does). The stylesheet is embedded and served by the console; no
//! page loads anything from elsewhere, and none needs JavaScript (the one script,
//! the compose form's live audience count, only adds to a form that works without
//! it: [`crate::routes::audience`]).

use crate::sessions::Session;
use chrono::{DateTime, Utc};
use loa_contracts::time::vietnam;
use maud::{html, Markup, DOCTYPE};

/// The console's sections, in navigation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Today's numbers, pause and token.
    Overview,
    /// Dossier search and pages.
    Dossiers,
    /// Deliveries by state.
    Messages,
    /// Policy broadcasts: compose, progress, pause / resume / cancel.
    Broadcasts,
    /// The broadcasts' audience: search, import, opt-outs.
    Subscribers,
    /// Dead letters.
    DeadLetters,
    /// What citizens texted the OA.
    CitizenMessages,
    /// The audit log.
    Audit,
}

/// The navigation: (section, label, path).
pub const NAV: [(Section, &str, &str); 8] = [
    (Section::Overview, "Tổng quan", "/admin/overview"),
    (Section::Dossiers, "Hồ sơ", "/admin/dossiers"),
    (Section::Messages, "Tin nhắn", "/admin/messages"),
    (Section::Broadcasts, "Thông báo", "/admin/broadcasts"),
    (Section::Subscribers, "Người nhận", "/admin/subscribers"),
    (Section::DeadLetters, "Thư lỗi", "/admin/dead-letters"),
    (
        Section::CitizenMessages,
        "Tin công dân",
        "/admin/citizen-messages",
    ),
    (Section::Audit, "Nhật ký", "/admin/audit"),
];

/// Path of the stylesheet.
pub const STYLESHEET_PATH: &str = "/admin/assets/console.css";

/// What the frame of a signed-in page shows.
pub struct Frame<'a> {
    /// The session (user, role, CSRF token for the sign-out form).
    pub session: &'a Session,
    /// The tenant's display name.
    pub tenant_name: &'a str,
    /// The highlighted section.
    pub section: Section,
    /// Reload the page every so many seconds (a running broadcast's progress), with
    /// no script.
    pub refresh_seconds: Option<u32>,
}

/// A whole page: `frame` is `None` for the sign-in and error pages.
pub fn page(title: &str, frame: Option<&Frame<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="vi" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex, nofollow";
                title { (title) " · Loa" }
                link rel="stylesheet" href=(STYLESHEET_PATH);
                @if let Some(seconds) = frame.and_then(|f| f.refresh_seconds) {
                    meta http-equiv="refresh" content=(seconds);
                }
            }
            body {
                @if let Some(frame) = frame {
                    header.top {
                        div.brand {
                            a href="/admin/overview" { "Loa" }
                            span.tenant { (frame.tenant_name) }
                        }
                        div.who {
                            span { (frame.session.account.display_name) }
                            span.role { (frame.session.account.role.label_vi()) }
                            form method="post" action="/admin/sign-out" {
                                input type="hidden" name="csrf" value=(frame.session.csrf_token);
                                button.link type="submit" { "Đăng xuất" }
                            }
                        }
                    }
                    nav.sections {
                        @for (section, label, path) in NAV {
                            a href=(path) class=(if section == frame.section { "current" } else { "" }) { (label) }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A notice above a page's content (after an action).
pub fn notice(text: &str, ok: bool) -> Markup {
    html! { p class=(if ok { "notice ok" } else { "notice error" }) role="status" { (text) } }
}

/// `dd/MM/yyyy HH:mm` in Asia/Ho_Chi_Minh.
pub fn datetime_vn(at: &DateTime<Utc>) -> String {
    at.with_timezone(&vietnam())
        .format("%d/%m/%Y %H:%M")
        .to_string()
}

/// `dd/MM/yyyy HH:mm` of an RFC 3339 string from an API, or the string itself.
pub fn datetime_vn_str(at: &str) -> String {
    DateTime::parse_from_rfc3339(at)
        .map(|d| datetime_vn(&d.with_timezone(&Utc)))
        .unwrap_or_else(|_| at.to_owned())
}

/// `dd/MM/yyyy` of an RFC 3339 string from an API, or the string itself.
pub fn date_vn_str(at: &str) -> String {
    DateTime::parse_from_rfc3339(at)
        .map(|d| d.with_timezone(&vietnam()).format("%d/%m/%Y").to_string())
        .unwrap_or_else(|_| at.to_owned())
}

/// A delivery status in Vietnamese.
pub fn delivery_status_vi(status: &str) -> &'static str {
    match status {
        "sending" => "Đang gửi",
        "sent" => "Đã gửi",
        "delivered" => "Đã nhận",
        "seen" => "Đã xem",
        "failed" => "Thất bại",
        "retrying" => "Đang thử lại",
        "deferred" => "Hoãn gửi",
        "held" => "Tạm giữ",
        "ambiguous" => "Chưa rõ kết quả",
        "cancelled" => "Đã huỷ",
        "skipped" => "Bỏ qua",
        _ => "Khác",
    }
}

/// A channel in Vietnamese.
pub fn channel_vi(channel: &str) -> &'static str {
    match channel {
        "zns" => "ZNS (số điện thoại)",
        "oa_template" => "Tin OA (người quan tâm)",
        _ => "—",
    }
}

/// A notification kind in Vietnamese.
pub fn kind_vi(kind: &str) -> &'static str {
    match kind {
        "receipt" => "Tiếp nhận hồ sơ",
        "refused" => "Không tiếp nhận",
        "supplement_requested" => "Yêu cầu bổ sung",
        "payment_requested" => "Yêu cầu nộp phí, lệ phí",
        "withdrawn" => "Rút hồ sơ",
        "stopped" => "Dừng xử lý",
        "result_ready" => "Có kết quả",
        "result_ready_early" => "Có kết quả trước hạn",
        "result_returned" => "Đã trả kết quả",
        "due_date_changed" => "Hẹn lại ngày trả kết quả",
        "announcement" => "Thông báo chính sách",
        "rating_request" => "Mời đánh giá",
        "chat_reply" => "Trả lời tra cứu qua chat",
        _ => "Khác",
    }
}

/// A timeliness (`early`, `on_time`, `overdue`, `in_progress`, `paused`) in Vietnamese.
pub fn timeliness_vi(t: &str) -> &'static str {
    match t {
        "early" => "Trước hạn",
        "on_time" => "Đúng hạn",
        "overdue" => "Quá hạn",
        "in_progress" => "Đang trong hạn",
        "paused" => "Chờ công dân bổ sung",
        _ => "—",
    }
}

/// The stylesheet: mobile first, one column on a phone, tables scroll sideways.
pub const STYLESHEET: &str = "\
*{box-sizing:border-box}\
body{margin:0;font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;background:#f3f5f8;color:#1c2430;line-height:1.45;font-size:15px}\
a{color:#0b5cad}\
header.top{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:center;gap:8px;background:#0b3d6e;color:#fff;padding:10px 16px}\
header.top a{color:#fff;font-weight:700;text-decoration:none;font-size:1.1rem;margin-right:10px}\
.tenant{opacity:.85;font-size:.9rem}\
.who{display:flex;align-items:center;gap:10px;font-size:.9rem}\
.who form{margin:0}\
.role{background:rgba(255,255,255,.15);border-radius:999px;padding:1px 8px;font-size:.8rem}\
button.link{background:none;border:1px solid rgba(255,255,255,.5);color:#fff;border-radius:6px;padding:4px 10px;cursor:pointer}\
nav.sections{display:flex;flex-wrap:wrap;background:#fff;border-bottom:1px solid #d4dbe4;padding:0 8px}\
nav.sections a{padding:10px 12px;white-space:nowrap;text-decoration:none;color:#1c2430;border-bottom:3px solid transparent}\
nav.sections a.current{border-bottom-color:#0b5cad;font-weight:600}\
main{max-width:1100px;margin:0 auto;padding:16px}\
h1{font-size:1.35rem;margin:4px 0 14px}h2{font-size:1.1rem;margin:0 0 10px}\
.card{background:#fff;border-radius:10px;padding:14px;margin-bottom:14px;box-shadow:0 1px 3px rgba(0,0,0,.08)}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px}\
.stat{background:#fff;border-radius:10px;padding:12px;box-shadow:0 1px 3px rgba(0,0,0,.08)}\
.stat b{display:block;font-size:1.5rem}.stat span{color:#5a6675;font-size:.85rem}\
.scroll{overflow-x:auto}\
table{width:100%;border-collapse:collapse;background:#fff}\
th,td{text-align:left;padding:8px;border-bottom:1px solid #e3e8ef;vertical-align:top}\
th{font-size:.85rem;color:#5a6675;font-weight:600;white-space:nowrap}\
td.nowrap{white-space:nowrap}\
.citizen-text{white-space:pre-wrap;overflow-wrap:anywhere}\
.live{min-height:1.4em;margin:4px 0 0;font-size:.9rem;color:#1c5d2b}.live.error{color:#a3261b}\
form.filters{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px;align-items:end}\
label{display:block;font-size:.85rem;color:#5a6675}\
input,select{width:100%;padding:8px;border:1px solid #c4ccd7;border-radius:6px;font-size:1rem;background:#fff}\
input[type=checkbox],input[type=radio]{width:auto;margin:0}\
fieldset{border:1px solid #d4dbe4;border-radius:8px;padding:10px 12px;display:grid;gap:8px}legend{font-size:.85rem;color:#5a6675;padding:0 4px}\
fieldset label{display:flex;gap:8px;align-items:center;color:inherit;font-size:1rem}\
button,.button{display:inline-block;background:#0b5cad;color:#fff;border:0;border-radius:6px;padding:9px 14px;font-size:.95rem;cursor:pointer;text-decoration:none}\
button.secondary{background:#e8eef6;color:#0b3d6e}button.danger{background:#a3231a}\
form.inline{display:inline;margin:0}\
.actions{display:flex;gap:6px;flex-wrap:wrap}\
.notice{padding:10px 12px;border-radius:8px}.notice.ok{background:#e3f6e8;color:#17692f}.notice.error{background:#fdecea;color:#a3231a}\
.badge{display:inline-block;padding:2px 8px;border-radius:999px;font-size:.8rem;font-weight:600;background:#e8eef6;color:#0b3d6e}\
.badge.overdue,.badge.failed{background:#fdecea;color:#a3231a}.badge.early,.badge.delivered,.badge.seen{background:#e3f6e8;color:#17692f}\
.badge.deferred,.badge.held,.badge.ambiguous,.badge.retrying{background:#fff6e0;color:#7a5200}\
.muted{color:#5a6675;font-size:.85rem}\
dl{display:grid;grid-template-columns:auto 1fr;gap:6px 14px;margin:0}dt{color:#5a6675}dd{margin:0;word-break:break-word}\
ol.timeline{list-style:none;margin:0;padding:0}\
ol.timeline li{position:relative;padding:0 0 12px 20px;border-left:2px solid #d4dbe4;margin-left:6px}\
ol.timeline li::before{content:'';position:absolute;left:-7px;top:4px;width:12px;height:12px;border-radius:50%;background:#0b5cad}\
.qr img{width:200px;height:200px;background:#fff}\
.signin{max-width:380px;margin:40px auto}.signin form{display:grid;gap:12px}\
.pager{display:flex;justify-content:flex-end;margin-top:10px}\
textarea{width:100%;min-height:110px;padding:8px;border:1px solid #c4ccd7;border-radius:6px;font:inherit}\
form.compose{display:grid;gap:12px}\
progress{width:100%;height:14px}\
.preview{border-left:4px solid #0b5cad;background:#f7f9fc;padding:10px 12px;border-radius:6px;white-space:pre-wrap}\
@media print{header.top,nav.sections,form,.no-print{display:none}body{background:#fff}.card{box-shadow:none}}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{Account, Role};

    fn session(display_name: &str) -> Session {
        Session {
            account: Account {
                id: 1,
                tenant: "demo".into(),
                username: "an".into(),
                display_name: display_name.into(),
                role: Role::Viewer,
            },
            csrf_token: "tok\"en".into(),
            id_hash: vec![],
        }
    }

    #[test]
    fn every_interpolated_value_is_escaped() {
        let session = session("<script>alert('x')</script>");
        let frame = Frame {
            session: &session,
            tenant_name: "Sở \"A\" & <B>",
            section: Section::Dossiers,
            refresh_seconds: None,
        };
        let html = page("<Hồ sơ>", Some(&frame), html! { p { ("a<b") } }).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("Sở &quot;A&quot; &amp; &lt;B&gt;"));
        assert!(html.contains("value=\"tok&quot;en\""));
        assert!(html.contains("<title>&lt;Hồ sơ&gt; · Loa</title>"));
        assert!(html.contains("<p>a&lt;b</p>"));
    }

    #[test]
    fn the_frame_is_vietnamese_and_marks_the_current_section() {
        let session = session("Nguyễn Văn An");
        let frame = Frame {
            session: &session,
            tenant_name: "Demo",
            section: Section::Dossiers,
            refresh_seconds: None,
        };
        let html = page("Hồ sơ", Some(&frame), html! {}).into_string();
        assert!(html.contains("lang=\"vi\""));
        assert!(html.contains("<a href=\"/admin/dossiers\" class=\"current\">Hồ sơ</a>"));
        assert!(html.contains("Đăng xuất"));
        assert!(html.contains("Chỉ xem"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no external assets"
        );
    }

    #[test]
    fn times_are_shown_as_dd_mm_yyyy_hh_mm_in_vietnam() {
        assert_eq!(datetime_vn_str("2026-12-03T18:30:00Z"), "04/12/2026 01:30");
        assert_eq!(date_vn_str("2026-12-03T18:30:00Z"), "04/12/2026");
        assert_eq!(datetime_vn_str("not a date"), "not a date");
    }
}
