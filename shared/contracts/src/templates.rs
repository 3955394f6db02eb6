//! What citizens read: the text of each notification kind's Zalo template, with its
//! parameters' types and lengths, and the short citizen-facing status each kind sends.
//!
//! One source for three readers: `docs/zalo-templates.md` (the drafts a province submits
//! to Zalo for approval) is this module written out, and a test holds the file to it;
//! the Zalo sandbox renders every template message it accepts with these texts, so the
//! demo shows what citizens will read; the tracker fills `status` from [`status_vi`].
//! Texts use ZNS's `<param>` placeholders; `customer_name` carries the address
//! ("ông/bà Trần Thị Bích", or an organisation's name as it is), and `addressee` how
//! the text speaks to the applicant ([`addressee`]: "ông/bà", or "Quý tổ chức").

use crate::{ApplicantKind, DossierStatus, NotificationKind};
use std::collections::BTreeMap;

/// A ZNS template's tag: every Loa message is about the citizen's own dossier, so
/// "Giao dịch" (Transaction, tag 1), which is allowed at any hour and needs no follow.
pub const TAG: &str = "1 – Giao dịch (Transaction)";

/// How the texts speak to an organisation (a business, an association, a state body):
/// "Quý tổ chức", as public services write to organisations ("tổ chức, cá nhân"),
/// never "ông/bà".
pub const ORGANISATION_ADDRESSEE: &str = "Quý tổ chức";

/// The `addressee` parameter: how a message speaks to an applicant of `kind` inside
/// its text ("mời ông/bà đến nhận", "mời Quý tổ chức đến nhận").
pub fn addressee(kind: ApplicantKind) -> &'static str {
    match kind {
        ApplicantKind::Person => "ông/bà",
        ApplicantKind::Organisation => ORGANISATION_ADDRESSEE,
    }
}

/// The `due_date` of a dossier without an appointment (procedures that have none):
/// ZNS refuses an empty parameter, and "Không có" would read as "you get nothing".
/// The citizen is told when the result is ready.
pub const NO_DUE_DATE: &str = "Sẽ thông báo sau";

/// The `electronic_copy` of a result the source attached no electronic copy to.
pub const NO_ELECTRONIC_COPY: &str = "Không kèm theo";

/// How Zalo checks one template parameter: the parameter type chosen when the
/// template is registered, and the longest value it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    /// The parameter's name, as in the template text and `template_data`.
    pub name: &'static str,
    /// The ZNS parameter type to choose when registering the template.
    pub zalo_type: &'static str,
    /// The longest value, in characters (what the tracker cuts to, at most).
    pub max_chars: usize,
    /// What it holds, for the province's reviewer.
    pub meaning: &'static str,
}

/// The specification of every parameter a Loa template may use (see
/// [`NotificationKind::required_params`] for which kind uses which).
pub fn param_spec(name: &str) -> Option<ParamSpec> {
    let spec = |name, zalo_type, max_chars, meaning| ParamSpec {
        name,
        zalo_type,
        max_chars,
        meaning,
    };
    Some(match name {
        "customer_name" => spec(
            "customer_name",
            "Tên khách hàng",
            30,
            "whom the message addresses: \"ông/bà\" and the person's name (the authorised \
             filer's when there is one), or an organisation's name as it is",
        ),
        "addressee" => spec(
            "addressee",
            "Tên khách hàng",
            20,
            "how the text speaks to the recipient: \"ông/bà\" for a person, \"Quý tổ \
             chức\" for an organisation",
        ),
        "dossier_code" => spec(
            "dossier_code",
            "Mã số",
            30,
            "the dossier code printed on the receipt",
        ),
        "procedure_name" => spec(
            "procedure_name",
            "Tên sản phẩm / Thương hiệu",
            100,
            "the procedure's name from the national catalogue, cut with …",
        ),
        "status" => spec(
            "status",
            "Trạng thái giao dịch",
            30,
            "the short citizen-facing status of the kind (below)",
        ),
        "agency_name" => spec(
            "agency_name",
            "Tên sản phẩm / Thương hiệu",
            200,
            "the agency handling the dossier",
        ),
        "lookup_url" => spec(
            "lookup_url",
            "URL",
            200,
            "the dossier's public lookup page (no personal data in it)",
        ),
        "received_date" => spec(
            "received_date",
            "Thời gian",
            20,
            "reception day, dd/MM/yyyy",
        ),
        "due_date" => spec(
            "due_date",
            "Thời gian",
            20,
            "appointment day, dd/MM/yyyy, or \"Sẽ thông báo sau\" for a procedure \
             without an appointment date (the citizen is told when the result is ready)",
        ),
        "old_due_date" => spec(
            "old_due_date",
            "Thời gian",
            20,
            "the appointment day before, dd/MM/yyyy",
        ),
        "new_due_date" => spec(
            "new_due_date",
            "Thời gian",
            20,
            "the new appointment day, dd/MM/yyyy",
        ),
        "reason" => spec(
            "reason",
            "Tên sản phẩm / Thương hiệu",
            200,
            "the reason the agency gave, or a sentence saying it gave none",
        ),
        "documents" => spec(
            "documents",
            "Tên sản phẩm / Thương hiệu",
            200,
            "the documents to bring, separated by \"; \", or, when the source listed \
             none, to ask the agency (as the lookup page says)",
        ),
        "electronic_copy" => spec(
            "electronic_copy",
            "Tên sản phẩm / Thương hiệu",
            250,
            "whether the result has an electronic copy: \"Đã sẵn sàng, tải tại \" and the \
             lookup page's download link (which counts the download and leads to the \
             province's document store), or \"Không kèm theo\"",
        ),
        "title" => spec(
            "title",
            "Tên sản phẩm / Thương hiệu",
            100,
            "an announcement's heading (policy broadcasts)",
        ),
        "body" => spec(
            "body",
            "Tên sản phẩm / Thương hiệu",
            1000,
            "an announcement's text, addressed to the citizen by name when known",
        ),
        "link" => spec(
            "link",
            "URL",
            200,
            "where the announcement is published in full",
        ),
        "amount" => spec(
            "amount",
            "Số lượng / Số tiền",
            20,
            "the amount due, \"150.000 đồng\", or \"Liên hệ cơ quan\" when the source \
             gave none (as the lookup page says)",
        ),
        _ => return None,
    })
}

/// Whether Loa may cut a parameter's value to its length: a name or free text reads
/// fine cut with "…"; a dossier code or a link cut short is wrong, not short.
pub fn cuttable(name: &str) -> bool {
    !matches!(
        name,
        "dossier_code" | "lookup_url" | "link" | "electronic_copy" | "status"
    )
}

/// `value` as parameter `name` may carry it to Zalo, which refuses a value longer than
/// the template registered (`-1121`): at most [`ParamSpec::max_chars`] characters (not
/// bytes: Vietnamese is multi-byte), cut with "…" when [`cuttable`]. Anything else
/// comes back whole, and whoever makes it keeps it within the limit (intake refuses a
/// dossier code longer than `dossier_code` takes).
pub fn fit(name: &str, value: &str) -> String {
    match param_spec(name) {
        Some(spec) if cuttable(name) && value.chars().count() > spec.max_chars => {
            let mut out: String = value.chars().take(spec.max_chars - 1).collect();
            out.truncate(out.trim_end().len());
            out.push('…');
            out
        }
        _ => value.to_owned(),
    }
}

/// The short status a kind's message carries in its `status` parameter (at most 30
/// characters, ZNS's limit for a status): what happened, in the citizen's words, not
/// the catalogue's ("Đã có kết quả", not "Đã xử lý xong"); an early result says so here.
pub fn status_vi(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Receipt => "Đã tiếp nhận hồ sơ",
        NotificationKind::Refused => "Không được tiếp nhận",
        NotificationKind::SupplementRequested => "Cần bổ sung giấy tờ",
        NotificationKind::PaymentRequested => "Chờ nộp phí, lệ phí",
        NotificationKind::Withdrawn => "Đã rút theo đề nghị",
        NotificationKind::Stopped => "Dừng giải quyết",
        NotificationKind::ResultReady => "Đã có kết quả",
        NotificationKind::ResultReadyEarly => "Có kết quả trước hạn",
        NotificationKind::ResultReturned => "Đã trả kết quả",
        NotificationKind::DueDateChanged => "Hẹn lại ngày trả kết quả",
        NotificationKind::RatingRequest => "Mời đánh giá sự hài lòng",
        NotificationKind::Announcement => "Thông báo chính sách",
        NotificationKind::ChatReply => "Trả lời tra cứu",
    }
}

/// The `electronic_copy` parameter of a result with an electronic copy: it is ready,
/// and where to download it (`download_url`, the lookup page's counted link).
pub fn electronic_copy_ready(download_url: &str) -> String {
    format!("Đã sẵn sàng, tải tại {download_url}")
}

/// The template's name in Zalo's template manager.
pub fn title_vi(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Receipt => "Tiếp nhận hồ sơ và hẹn trả kết quả",
        NotificationKind::Refused => "Hồ sơ không được tiếp nhận",
        NotificationKind::SupplementRequested => "Yêu cầu bổ sung giấy tờ",
        NotificationKind::PaymentRequested => "Thông báo nộp phí, lệ phí",
        NotificationKind::Withdrawn => "Rút hồ sơ theo đề nghị",
        NotificationKind::Stopped => "Dừng giải quyết hồ sơ",
        NotificationKind::ResultReady => "Hồ sơ đã có kết quả",
        NotificationKind::ResultReadyEarly => "Hồ sơ có kết quả trước hạn",
        NotificationKind::ResultReturned => "Đã trả kết quả",
        NotificationKind::DueDateChanged => "Hẹn lại ngày trả kết quả",
        NotificationKind::RatingRequest => "Đánh giá mức độ hài lòng",
        NotificationKind::Announcement => "Thông báo của tỉnh",
        NotificationKind::ChatReply => "Trả lời tra cứu hồ sơ qua tin nhắn",
    }
}

/// The template's text, with `<param>` placeholders for exactly the kind's
/// [`NotificationKind::required_params`].
pub fn text_vi(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Receipt => {
            "Kính gửi <customer_name>,\n\
             <agency_name> đã tiếp nhận hồ sơ <dossier_code> (<procedure_name>) ngày \
             <received_date>. Ngày hẹn trả kết quả: <due_date>.\n\
             Trạng thái: <status>.\n\
             Xin <addressee> vui lòng giữ Giấy tiếp nhận hồ sơ và hẹn trả kết quả. Theo dõi hồ \
             sơ tại: <lookup_url>"
        }
        NotificationKind::Refused => {
            "Kính gửi <customer_name>,\n\
             Hồ sơ <dossier_code> (<procedure_name>) không được <agency_name> tiếp nhận.\n\
             Lý do: <reason>\n\
             Trạng thái: <status>.\n\
             Chi tiết tại: <lookup_url>"
        }
        NotificationKind::SupplementRequested => {
            "Kính gửi <customer_name>,\n\
             Để <agency_name> tiếp tục giải quyết hồ sơ <dossier_code> (<procedure_name>), \
             <addressee> vui lòng bổ sung: <documents>\n\
             Thời gian chờ bổ sung không tính vào thời hạn giải quyết.\n\
             Trạng thái: <status>.\n\
             Chi tiết tại: <lookup_url>"
        }
        NotificationKind::PaymentRequested => {
            "Kính gửi <customer_name>,\n\
             Hồ sơ <dossier_code> (<procedure_name>) tại <agency_name> cần nộp phí, lệ phí: \
             <amount>.\n\
             Trạng thái: <status>.\n\
             Chi tiết tại: <lookup_url>"
        }
        NotificationKind::Withdrawn => {
            "Kính gửi <customer_name>,\n\
             Hồ sơ <dossier_code> (<procedure_name>) đã được rút theo đề nghị của <addressee>; \
             <agency_name> dừng giải quyết hồ sơ này.\n\
             Trạng thái: <status>.\n\
             Chi tiết tại: <lookup_url>"
        }
        NotificationKind::Stopped => {
            "Kính gửi <customer_name>,\n\
             <agency_name> đã dừng giải quyết hồ sơ <dossier_code> (<procedure_name>).\n\
             Lý do: <reason>\n\
             Trạng thái: <status>.\n\
             Chi tiết tại: <lookup_url>"
        }
        NotificationKind::ResultReady => {
            "Kính gửi <customer_name>,\n\
             Hồ sơ <dossier_code> (<procedure_name>) đã có kết quả, mời <addressee> đến \
             <agency_name> nhận kết quả và mang theo Giấy tiếp nhận hồ sơ và hẹn trả kết quả.\n\
             Bản điện tử của kết quả: <electronic_copy>\n\
             Trạng thái: <status>.\n\
             Chi tiết tại: <lookup_url>"
        }
        NotificationKind::ResultReadyEarly => {
            "Kính gửi <customer_name>,\n\
             Hồ sơ <dossier_code> (<procedure_name>) đã có kết quả trước ngày hẹn trả \
             (<due_date>), mời <addressee> đến <agency_name> nhận kết quả và mang theo Giấy tiếp \
             nhận hồ sơ và hẹn trả kết quả.\n\
             Bản điện tử của kết quả: <electronic_copy>\n\
             Trạng thái: <status>.\n\
             Chi tiết tại: <lookup_url>"
        }
        NotificationKind::ResultReturned => {
            "Kính gửi <customer_name>,\n\
             Hồ sơ <dossier_code> (<procedure_name>) đã được <agency_name> trả kết quả. Cảm \
             ơn <addressee> đã sử dụng dịch vụ công.\n\
             Bản điện tử của kết quả: <electronic_copy>\n\
             Trạng thái: <status>.\n\
             Đánh giá mức độ hài lòng và xem lại hồ sơ tại: <lookup_url>"
        }
        NotificationKind::DueDateChanged => {
            "Kính gửi <customer_name>,\n\
             <agency_name> hẹn lại ngày trả kết quả hồ sơ <dossier_code> (<procedure_name>): \
             từ ngày <old_due_date> sang ngày <new_due_date>.\n\
             Lý do: <reason>\n\
             Trạng thái: <status>.\n\
             Chi tiết tại: <lookup_url>"
        }
        NotificationKind::RatingRequest => {
            "Kính gửi <customer_name>,\n\
             Hồ sơ <dossier_code> (<procedure_name>) đã được <agency_name> trả kết quả. \
             Xin <addressee> vui lòng dành ít phút đánh giá mức độ hài lòng (Rất hài lòng, Hài lòng \
             hoặc Không hài lòng) để cơ quan phục vụ tốt hơn.\n\
             Trạng thái: <status>.\n\
             Đánh giá tại: <lookup_url>"
        }
        NotificationKind::Announcement => {
            "<title>\n\
             <body>\n\
             Chi tiết tại: <link>\n\
             (Nhắn \"huỷ\" để không nhận thông báo này nữa.)"
        }
        NotificationKind::ChatReply => "<text>",
    }
}

/// The text a citizen reads: the kind's template with every `<param>` replaced by its
/// value (a parameter without a value stays as its placeholder, so a gap shows).
pub fn render(kind: NotificationKind, params: &BTreeMap<String, String>) -> String {
    let mut out = text_vi(kind).to_owned();
    for name in kind.required_params() {
        if let Some(value) = params.get(*name) {
            out = out.replace(&format!("<{name}>"), value);
        }
    }
    out
}

/// The answer to a chat lookup from a user linked to the dossier (a consultation
/// message, free text, not a template): the status in the citizen's words, the
/// appointment date (`dd/MM/yyyy`, when the dossier has one) and the lookup link.
pub fn chat_reply_found(
    dossier_code: &str,
    status: &str,
    due_date: Option<&str>,
    lookup_url: &str,
) -> String {
    let due = due_date
        .map(|d| format!("Ngày hẹn trả kết quả: {d}.\n"))
        .unwrap_or_default();
    format!("Hồ sơ {dossier_code}: {status}.\n{due}Chi tiết tại: {lookup_url}")
}

/// The answer to a chat lookup the citizen may not see through chat (no phone the
/// user shared with the OA is the dossier's, or no such dossier: the same words, so the reply reveals
/// nothing about the dossier, not even whether it exists): how to look it up.
pub fn chat_reply_not_linked(dossier_code: &str) -> String {
    format!(
        "Cảm ơn ông/bà đã nhắn tin. Vì lý do bảo mật, thông tin hồ sơ {dossier_code} chỉ \
         được trả lời qua tin nhắn khi số điện thoại đăng ký hồ sơ đã được chia sẻ với Zalo \
         OA này.\n\
         Ông/bà có thể quét mã QR trên Giấy tiếp nhận hồ sơ và hẹn trả kết quả để tra cứu, \
         hoặc chia sẻ số điện thoại với OA rồi nhắn lại \"tra cứu {dossier_code}\"."
    )
}

/// The automatic answer to a citizen's other text to the OA (neither a lookup nor
/// "huỷ"), sent once per user and day: a message that goes unanswered looks like a
/// dead channel, so the citizen learns that it was received, that the province's staff
/// read the OA's messages, and how to look a dossier up themselves. It promises no
/// answer time and repeats nothing of what they wrote.
pub fn chat_reply_other_text() -> &'static str {
    "Cảm ơn ông/bà đã nhắn tin. Tin nhắn đã được ghi nhận; cán bộ phụ trách sẽ đọc và \
     phản hồi khi cần.\n\
     Để tra cứu hồ sơ, ông/bà nhắn \"tra cứu <mã hồ sơ>\" (mã in trên Giấy tiếp nhận hồ \
     sơ và hẹn trả kết quả) hoặc quét mã QR trên giấy đó."
}

/// `docs/zalo-templates.md`, the ready-to-submit drafts, as this module says them.
pub fn markdown() -> String {
    let mut doc = String::from(
        "# Zalo template drafts\n\n\
         Generated from `shared/contracts/src/templates.rs` (a test holds this file to it):\n\
         what every Loa message says, ready for a province to register as ZNS templates\n\
         (and the same texts as OA templates for followers). Register one template per\n\
         kind, then put its approved id in the tenants file under\n\
         `[tenants.zalo.templates]` (`<kind> = \"<template id>\"`). The Zalo sandbox\n\
         renders these texts, so `loa demo` shows what citizens will read.\n\n",
    );
    doc.push_str(&format!(
        "Every template: type 1 (custom, \"Tùy chỉnh\"), tag {TAG}, but the\n\
         announcement (policy broadcasts), tag 3. Dates are\n\
         `dd/MM/yyyy` in Asia/Ho_Chi_Minh; no parameter is ever sent empty.\n",
    ));
    for kind in NotificationKind::ALL {
        doc.push_str(&format!(
            "\n## `{}`: {}\n\n```text\n{}\n```\n\n| parameter | ZNS type | max length | holds |\n|---|---|---|---|\n",
            kind.as_str(),
            title_vi(kind),
            text_vi(kind)
        ));
        for name in kind.required_params() {
            let spec = param_spec(name).expect("every parameter has a specification");
            doc.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                spec.name, spec.zalo_type, spec.max_chars, spec.meaning
            ));
        }
        if kind == NotificationKind::Receipt {
            doc.push_str(
                "\nA procedure without an appointment date (no `due_date` in the event) \
                 gets \"Sẽ thông báo sau\" (\"to be announced\"): ZNS refuses an empty \
                 parameter, \"Không có\" would read as \"none\", and the citizen is told \
                 the moment the result is ready. The lookup page leaves the line out.\n",
            );
        }
        if kind == NotificationKind::ResultReturned {
            doc.push_str(
                "\nIts link opens the lookup page at its rating form (`#danh-gia`): a \
                 citizen reached by ZNS (paid per message) gets this one message at status \
                 10, which asks for the rating too; see `rating_request`.\n",
            );
        }
        if kind == NotificationKind::RatingRequest {
            doc.push_str(
                "\nSent after `result_returned` to a follower of the OA (an OA message, \
                 free). By ZNS, which the province pays per message, it is sent only when \
                 the tenant registered it as Zalo's type 5 (service rating, \"Đánh giá \
                 dịch vụ\") and says so (`zns_rating_template = true` under \
                 `[tenants.zalo]`): the citizen then rates inside Zalo, and Zalo's \
                 `user_feedback` webhook counts the rating (5 stars: Rất hài lòng, 3-4: Hài \
                 lòng, 1-2: Không hài lòng). Otherwise the ZNS is not sent (the delivery is \
                 `skipped`, `rating_in_result_message`): the `result_returned` ZNS already \
                 links to the rating form, and a second paid message for the same dossier \
                 on the same day would double the province's cost for it. The link leads \
                 to the lookup page's rating form either way.\n",
            );
        }
        if kind.is_promotion() {
            doc.push_str(&format!(
                "\nTag 3 – Hậu mãi (Promotion), not {TAG}: at most 25 % of the day's quota \
                 and 4 messages per citizen per month. Demo template id: `{}`.\n",
                kind.default_template_id()
            ));
        } else {
            doc.push_str(&format!(
                "\n`status` is \"{}\". Demo template id: `{}`.\n",
                status_vi(kind),
                kind.default_template_id()
            ));
        }
    }
    doc.push_str(&format!(
        "\n## `chat_reply`: {}\n\n\
         Not a template: the answer to a citizen who writes \"tra cứu <mã hồ sơ>\" (or the\n\
         code alone) to the OA, sent as an OA consultation message\n\
         (`/v3.0/oa/message/cs`) inside Zalo's 7-day window after their message. To a\n\
         user who shared the dossier's phone with the OA:\n\n```text\n{}\n```\n\n\
         To anyone else, whether or not the dossier exists:\n\n```text\n{}\n```\n\n\
         Any other text (neither a lookup nor \"huỷ\") gets this answer, once per user and\n\
         day (Vietnam time); the text is kept for the console's citizen messages page:\n\n\
         ```text\n{}\n```\n",
        title_vi(NotificationKind::ChatReply),
        chat_reply_found(
            "000.00.06.H56-261128-0001",
            DossierStatus::Processing.citizen_vi(),
            Some("15/12/2026"),
            "https://tracuu.example.vn/tra-cuu/<token>"
        ),
        chat_reply_not_linked("000.00.06.H56-261128-0001"),
        chat_reply_other_text()
    ));
    doc
}

#[cfg(test)]
mod tests {

    #[test]
    fn names_are_fitted_to_their_parameter_with_an_ellipsis_and_codes_never_cut() {
        let agency = "Ủ".repeat(300);
        let fitted = fit("agency_name", &agency);
        assert_eq!(fitted.chars().count(), 200);
        assert!(fitted.ends_with('…'));
        assert_eq!(
            fit("agency_name", "UBND phường Đức Thắng"),
            "UBND phường Đức Thắng"
        );
        let code = "x".repeat(40);
        assert_eq!(fit("dossier_code", &code), code, "a code is never cut");
        assert_eq!(
            param_spec("dossier_code").unwrap().max_chars,
            crate::event::MAX_DOSSIER_CODE,
            "intake refuses what the template cannot carry"
        );
    }

    use super::*;

    #[test]
    fn every_template_uses_exactly_its_kinds_parameters() {
        for kind in NotificationKind::ALL {
            let text = text_vi(kind);
            let mut used: Vec<&str> = text
                .split('<')
                .skip(1)
                .filter_map(|rest| rest.split_once('>').map(|(name, _)| name))
                .collect();
            used.sort_unstable();
            used.dedup();
            let mut want = kind.required_params().to_vec();
            want.sort_unstable();
            assert_eq!(used, want, "{kind}");
        }
    }

    #[test]
    fn statuses_fit_zns_and_every_parameter_is_specified() {
        for kind in NotificationKind::ALL {
            assert!(status_vi(kind).chars().count() <= 30, "{kind}");
            for name in kind.required_params() {
                assert!(param_spec(name).is_some(), "{name}");
            }
        }
    }

    #[test]
    fn rendering_fills_every_placeholder() {
        let params: BTreeMap<String, String> = NotificationKind::Withdrawn
            .required_params()
            .iter()
            .map(|p| ((*p).to_owned(), format!("[{p}]")))
            .collect();
        let text = render(NotificationKind::Withdrawn, &params);
        assert!(!text.contains('<'), "{text}");
        assert!(text.contains(
            "Hồ sơ [dossier_code] ([procedure_name]) đã được rút theo đề nghị của [addressee]"
        ));
    }

    #[test]
    fn the_template_drafts_document_is_this_module_written_out() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/zalo-templates.md");
        if std::env::var_os("LOA_WRITE_TEMPLATES_DOC").is_some() {
            std::fs::write(path, markdown()).unwrap();
        }
        let written = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            written == markdown(),
            "docs/zalo-templates.md is out of date: run \
             `LOA_WRITE_TEMPLATES_DOC=1 cargo test -p loa-contracts templates`"
        );
    }
}
