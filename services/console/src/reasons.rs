//! The notifier's reasons (why a message failed, waits, was held, skipped or
//! cancelled, why a letter is dead) in Vietnamese an admin can act on.
//!
//! The notifier records reasons in English for its logs and support
//! (`zalo error -108: Phone number invalid`, `Cancelled by an admin`, `opted_out`);
//! province staff read Vietnamese. The explanation comes from Zalo's error code
//! when there is one (the deliveries API's `last_error_code`, else the code in a
//! `zalo error <code>: …` reason), else from the notifier's known reason texts. The
//! raw reason stays on the page in small print and in a `title`, so support can
//! still match it to the logs; a reason nobody taught this module is shown raw.

use maud::{html, Markup};

/// Zalo's codes, grouped by what an admin can do about them
/// (`/work/shared/reference/zalo-platform.md`, error tables of the OA API and ZNS).
const ZALO_CODES: &[(&[i64], &str)] = &[
    (
        &[-108],
        "Số điện thoại không hợp lệ hoặc không dùng Zalo.",
    ),
    (
        &[-118, -119],
        "Số điện thoại này không có tài khoản Zalo nhận được tin.",
    ),
    (
        &[-110, -114, -227],
        "Người nhận không nhận được tin Zalo (tài khoản bị khoá, lâu không dùng hoặc ứng dụng Zalo quá cũ).",
    ),
    (
        &[-139, -140, -141, -217, -244],
        "Người nhận đã từ chối nhận loại tin này từ OA.",
    ),
    (&[-213], "Người nhận chưa quan tâm OA."),
    (
        &[-230, -232],
        "Người nhận không tương tác với OA trong 7 ngày qua nên không gửi được tin tư vấn.",
    ),
    (
        &[-124, -216, -220],
        "Mã truy cập Zalo không hợp lệ hoặc đã hết hạn: hãy cấp quyền lại Zalo OA ở trang Kết nối Zalo.",
    ),
    (
        &[-144, -147, -211, -218, -1441, -1471, -1472],
        "Đã hết hạn mức gửi tin của Zalo; tin sẽ được gửi khi có hạn mức mới.",
    ),
    (
        &[-115, -137, -321],
        "Tài khoản ZNS không đủ số dư: cần nạp thêm để gửi tiếp.",
    ),
    (
        &[-133, -234],
        "Zalo không cho gửi loại tin này ban đêm (22:00–06:00); tin sẽ được gửi sau 06:00.",
    ),
    (
        &[-109, -117, -131, -132, -146, -249],
        "Mẫu tin ZNS không dùng được (sai mã, chưa được duyệt hoặc bị khoá): kiểm tra cấu hình mẫu tin.",
    ),
    (
        &[-111, -112, -1121, -1122, -1124, -116, -130, -201, -210],
        "Nội dung điền vào mẫu tin không hợp lệ (thiếu, sai định dạng hoặc quá dài).",
    ),
    (
        &[
            -101, -102, -103, -104, -105, -125, -135, -1351, -136, -204, -205, -209, -212,
            -219, -221, -223, -224, -242, -1241,
        ],
        "Cấu hình ứng dụng hoặc OA trên Zalo chưa đúng hay chưa được cấp quyền: cần kỹ thuật viên kiểm tra.",
    ),
    (&[-32], "Gửi quá nhanh, vượt giới hạn tốc độ của Zalo; sẽ thử lại."),
    (&[-100, -200, -214], "Zalo tạm thời gặp lỗi."),
];

/// The notifier's own reasons: exact texts and `snake_case` codes (skips), then
/// prefixes (reasons followed by details).
const EXACT: &[(&str, &str)] = &[
    ("Cancelled by an admin", "Cán bộ đã huỷ tin nhắn này."),
    ("cancelled", "Thông báo đã bị huỷ nên tin không được gửi."),
    ("ended", "Thông báo đã kết thúc trước khi tin được gửi."),
    ("unknown_broadcast", "Không tìm thấy thông báo của tin này."),
    ("opted_out", "Công dân đã từ chối nhận thông báo."),
    (
        "monthly_cap",
        "Công dân đã nhận đủ số thông báo tối đa trong tháng.",
    ),
    (
        "recipient_limit",
        "Công dân đã nhận đủ số tin Zalo cho phép trong ngày.",
    ),
    (
        "outside_cs_window",
        "Công dân không tương tác với OA trong 7 ngày qua nên không gửi được tin tư vấn.",
    ),
    ("no_rating_template", "Chưa cấu hình mẫu tin mời đánh giá."),
    (
        "rating_in_result_message",
        "Lời mời đánh giá đã nằm trong tin báo kết quả.",
    ),
    (
        "Not sent within the tenant's personal data retention",
        "Không gửi được trong thời hạn lưu dữ liệu cá nhân nên đã bỏ.",
    ),
    (
        "Erased at the citizen's request",
        "Đã xoá theo yêu cầu của công dân.",
    ),
    (
        "delivery limit exceeded",
        "Xử lý lỗi quá nhiều lần nên đã dừng.",
    ),
    (
        "parked request cannot be read back",
        "Không đọc lại được nội dung tin đang chờ gửi.",
    ),
];

const PREFIXES: &[(&str, &str)] = &[
    ("tenant paused", "Đơn vị đang tạm dừng gửi tin."),
    ("not before ", "Chờ đến giờ gửi đã hẹn."),
    (
        "ZNS daily quota kept for case updates",
        "Hạn mức ZNS trong ngày được giữ cho tin về hồ sơ (hoặc đã hết); tin sẽ gửi vào ngày sau.",
    ),
    (
        "no access token",
        "Không lấy được mã truy cập Zalo: hãy cấp quyền lại Zalo OA ở trang Kết nối Zalo.",
    ),
    (
        "zalo ambiguous",
        "Chưa rõ Zalo đã nhận tin hay chưa; đang chờ xác nhận trước khi gửi lại.",
    ),
    (
        "the sender stopped after dispatching it",
        "Chưa rõ Zalo đã nhận tin hay chưa; đang chờ xác nhận trước khi gửi lại.",
    ),
    (
        "zalo http 401",
        "Mã truy cập Zalo không hợp lệ hoặc đã hết hạn: hãy cấp quyền lại Zalo OA ở trang Kết nối Zalo.",
    ),
    ("zalo http 5", "Máy chủ Zalo tạm thời gặp lỗi."),
    ("zalo transient", "Không kết nối được tới Zalo."),
    (
        "unauthorized",
        "Hệ thống nguồn gửi sai mã xác thực: kiểm tra cấu hình kết nối.",
    ),
    (
        "forbidden",
        "Hệ thống nguồn không được phép gửi cho đơn vị này.",
    ),
    (
        "undecodable",
        "Dữ liệu nhận được không đọc được (sai định dạng).",
    ),
    (
        "invalid_",
        "Hệ thống nguồn gửi dữ liệu sai (trường nêu trong lý do gốc): cần sửa ở hệ thống nguồn rồi xử lý lại.",
    ),
    (
        "missing_",
        "Hệ thống nguồn gửi thiếu dữ liệu (trường nêu trong lý do gốc): cần sửa ở hệ thống nguồn rồi xử lý lại.",
    ),
    (
        "dead-lettered by the broker",
        "Hàng đợi từ chối tin (quá hạn hoặc quá dài).",
    ),
];

/// Zalo's error code of a reason: the structured code when the API gives one, else
/// the one in `zalo error <code>: …` (dead letters carry only the text), or, for a
/// failed token refresh, in `…: zalo error -14014: …`.
fn zalo_code(reason: &str, code: Option<i64>) -> Option<i64> {
    code.or_else(|| {
        let rest = &reason[reason.find("zalo error ")? + "zalo error ".len()..];
        let end = rest
            .char_indices()
            .find(|(i, c)| !(c.is_ascii_digit() || (*i == 0 && *c == '-')))
            .map_or(rest.len(), |(i, _)| i);
        rest[..end].parse().ok()
    })
}

/// The Vietnamese explanation of a reason, or `None` when it is not a known one.
pub fn explain(reason: &str, code: Option<i64>) -> Option<&'static str> {
    let reason = reason.trim();
    if let Some(code) = zalo_code(reason, code) {
        if (-14999..=-14000).contains(&code) {
            return Some(
                "Không làm mới được mã truy cập Zalo: hãy cấp quyền lại Zalo OA ở trang Kết nối Zalo.",
            );
        }
        if let Some((_, vi)) = ZALO_CODES.iter().find(|(codes, _)| codes.contains(&code)) {
            return Some(vi);
        }
    }
    // "… (gave up after 8 attempts)": the reason is what came before.
    let base = reason
        .find(" (gave up after ")
        .map_or(reason, |i| &reason[..i]);
    EXACT
        .iter()
        .find(|(raw, _)| *raw == base)
        .or_else(|| PREFIXES.iter().find(|(raw, _)| base.starts_with(raw)))
        .map(|(_, vi)| *vi)
}

/// Why a tenant's sending is paused, for the overview.
const TOKEN_LOST: &str = "Mã truy cập Zalo hết hạn hoặc bị thu hồi, cần cấp quyền lại cho OA (nút «Cấp quyền lại cho OA» bên dưới), rồi bấm «Tiếp tục gửi tin».";

/// The Vietnamese explanation of a tenant's pause (`GET /v1/pause`: the reason and
/// Zalo's code): a refresh token Zalo refused, revoked or spent, or an access token it
/// no longer takes, means re-authorising the OA; any other reason is explained as a
/// message's would be ([`explain`]); `None` when it is not a known one.
pub fn pause(reason: &str, code: Option<i64>) -> Option<&'static str> {
    let lower = reason.to_ascii_lowercase();
    let token_code =
        code.is_some_and(|c| (-14999..=-14000).contains(&c) || [-124, -216, -220].contains(&c));
    if token_code
        || lower.starts_with("token refresh failed")
        || lower.contains("without an access token")
        || lower.starts_with("no access token")
    {
        return Some(TOKEN_LOST);
    }
    explain(reason, code)
}

/// A reason's table cell content: the Vietnamese explanation with the raw reason
/// (and code) in small print and as the `title`, or the raw reason alone when it is
/// unknown, or "—" when there is none.
pub fn cell(reason: Option<&str>, code: Option<i64>) -> Markup {
    cell_with(reason, code, explain)
}

/// The overview's pause reason, as [`cell`] shows a message's, explained by [`pause`].
pub fn pause_cell(reason: Option<&str>, code: Option<i64>) -> Markup {
    cell_with(reason, code, pause)
}

fn cell_with(
    reason: Option<&str>,
    code: Option<i64>,
    explain: fn(&str, Option<i64>) -> Option<&'static str>,
) -> Markup {
    let raw = match (reason.filter(|r| !r.trim().is_empty()), code) {
        (Some(r), Some(c)) if !r.contains(&c.to_string()) => format!("{r} (mã {c})"),
        (Some(r), _) => r.to_owned(),
        (None, Some(c)) => format!("mã {c}"),
        (None, None) => return html! { "—" },
    };
    match explain(reason.unwrap_or_default(), code) {
        Some(vi) => html! {
            span.reason title=(raw) { (vi) }
            br;
            small.muted.raw-reason { (raw) }
        },
        None => html! { span.reason { (raw) } },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_for_a_lost_token_asks_for_a_reauthorisation_and_others_are_explained_as_messages_are(
    ) {
        for (reason, code) in [
            (
                "token refresh failed: zalo error -14014: Invalid refresh token",
                None,
            ),
            ("token refresh failed: refused", Some(-14014)),
            ("token refresh failed: the answer holds no tokens", None),
        ] {
            assert_eq!(pause(reason, code), Some(TOKEN_LOST), "{reason}");
        }
        assert_eq!(
            pause("zalo error -115: Not enough balance", Some(-115)),
            Some("Tài khoản ZNS không đủ số dư: cần nạp thêm để gửi tiếp.")
        );
        assert_eq!(pause("something new", None), None);
    }

    #[test]
    fn zalo_error_codes_are_explained_from_the_text_or_the_structured_code() {
        assert_eq!(
            explain("zalo error -108: Phone number invalid", None),
            Some("Số điện thoại không hợp lệ hoặc không dùng Zalo.")
        );
        assert_eq!(
            explain("Phone number invalid", Some(-108)),
            explain("zalo error -108: Phone number invalid", None)
        );
        for token in [
            "zalo error -124: Access token invalid",
            "zalo error -216: x",
        ] {
            assert!(explain(token, None)
                .unwrap()
                .starts_with("Mã truy cập Zalo không hợp lệ"));
        }
        assert!(
            explain("zalo error -144: quota (gave up after 3 attempts)", None)
                .unwrap()
                .contains("hạn mức")
        );
        assert!(explain("zalo error -234: night", None)
            .unwrap()
            .contains("22:00–06:00"));
        assert!(explain("zalo error -230: no interaction", None)
            .unwrap()
            .contains("7 ngày"));
        assert!(explain(
            "no access token: zalo error -14014: Invalid refresh token",
            None
        )
        .unwrap()
        .contains("cấp quyền lại"));
    }

    #[test]
    fn the_notifiers_own_reasons_are_explained() {
        assert_eq!(
            explain("Cancelled by an admin", None),
            Some("Cán bộ đã huỷ tin nhắn này.")
        );
        assert!(explain("opted_out", None).unwrap().contains("từ chối"));
        assert!(explain("outside_cs_window", None)
            .unwrap()
            .contains("7 ngày"));
        assert!(explain("tenant paused: zalo error -115 (balance)", None).is_some());
        assert!(explain("not before 2026-12-05T06:05:00+07:00", None)
            .unwrap()
            .contains("giờ gửi"));
        assert!(explain("delivery limit exceeded", None).is_some());
        assert!(explain("unauthorized: unknown source token", None).is_some());
        assert!(
            explain("invalid_status: status: must be one of 1..10", None)
                .unwrap()
                .contains("dữ liệu sai")
        );
    }

    #[test]
    fn an_unknown_reason_or_code_is_shown_raw() {
        assert_eq!(explain("something new happened", None), None);
        assert_eq!(explain("zalo error -99999: new", None), None);
        let cell = cell(Some("something new happened"), None).into_string();
        assert!(cell.contains("something new happened"), "{cell}");
        assert!(!cell.contains("raw-reason"), "{cell}");
    }

    #[test]
    fn a_known_reason_keeps_the_raw_text_in_small_print_and_the_title() {
        let cell = cell(Some("Phone number invalid"), Some(-108)).into_string();
        assert!(cell.contains("Số điện thoại không hợp lệ"), "{cell}");
        assert!(
            cell.contains("title=\"Phone number invalid (mã -108)\""),
            "{cell}"
        );
        assert!(
            cell.contains(
                "<small class=\"muted raw-reason\">Phone number invalid (mã -108)</small>"
            ),
            "{cell}"
        );
        assert_eq!(super::cell(None, None).into_string(), "—");
    }
}
