//! Which notification a dossier change deserves, and its template parameters.
//!
//! [`plan`] is pure: the consumer calls it for every event that became the dossier's
//! current state, inside the batch transaction, and writes what it returns to the
//! outbox. Every parameter is non-empty (ZNS refuses empty parameters), dates are
//! `dd/MM/yyyy` in Asia/Ho_Chi_Minh, and lengths respect ZNS limits.

use chrono::{DateTime, Utc};
use loa_contracts::{
    notification::notification_id,
    templates,
    time::{format_date_vn, vietnam_day},
    ApplicantKind, DossierEvent, DossierStatus, Lane, NotificationKind, NotificationRequest,
    Person, Recipient,
};
use std::collections::BTreeMap;

/// ZNS limit for the customer-name parameter.
pub const MAX_CUSTOMER_NAME: usize = 30;
/// Our limit for the procedure name (procedure names run long).
pub const MAX_PROCEDURE_NAME: usize = 100;
/// Our limit for free text (reason, documents), in line with ZNS's 200-character fields.
pub const MAX_FREE_TEXT: usize = 200;
/// The reason of a refusal, a stop or a new appointment the source gave none for (ZNS
/// refuses an empty parameter; "Lý do: Không có" would tell the citizen nothing).
pub const NO_REASON_GIVEN_VI: &str = "Cơ quan giải quyết chưa ghi lý do";
/// Placeholder pointing to the lookup page when the detail is not in the event.
pub const SEE_LOOKUP_VI: &str = "Xem chi tiết tại trang tra cứu";
/// The documents of a supplement request the source did not list: the lookup page has
/// none to show either, so the message sends the citizen where the page does (to the
/// agency), not to the page.
pub const DOCUMENTS_ASK_AGENCY_VI: &str = "Liên hệ cơ quan giải quyết để biết giấy tờ cần bổ sung";
/// The amount of a payment request the source did not give (the page says to ask the
/// agency too); it fits the 20 characters of ZNS's amount parameter.
pub const AMOUNT_ASK_AGENCY_VI: &str = "Liên hệ cơ quan";

/// What planning needs besides the event: the dossier's effective dates (the event's
/// own, or those the dossier already had when the event does not repeat them), the
/// lookup link and the trace context.
#[derive(Debug, Clone)]
pub struct PlanContext<'a> {
    /// When the desk received the dossier.
    pub received_at: Option<DateTime<Utc>>,
    /// The appointment date (ngày hẹn trả), if any.
    pub due_at: Option<DateTime<Utc>>,
    /// The appointment the dossier had before this event, if any: when the event moves
    /// it to another day, the citizen is told ([`NotificationKind::DueDateChanged`]).
    pub previous_due_at: Option<DateTime<Utc>>,
    /// The dossier's status before this event (`None` for its first event): a status 2
    /// after the desk already received it (back from a supplement, 5 → 2) is a
    /// re-reception, which owes no second receipt.
    pub previous_status: Option<DossierStatus>,
    /// `{public_base_url}/tra-cuu/{lookup_token}`: no personal data in it.
    pub lookup_url: &'a str,
    /// The event's W3C `traceparent`, carried on to the notifier.
    pub trace_context: Option<&'a str>,
    /// The planning instant (`created_at`).
    pub now: DateTime<Utc>,
}

/// The notification kind an event in `status` deserves, if any. Status 9 is "early"
/// when it happened on a day before the appointment day.
pub fn kind_for(event: &DossierEvent, due_at: Option<DateTime<Utc>>) -> Option<NotificationKind> {
    Some(match event.status {
        DossierStatus::Submitted | DossierStatus::Processing => return None,
        DossierStatus::Received => NotificationKind::Receipt,
        DossierStatus::Refused => NotificationKind::Refused,
        DossierStatus::SupplementRequested => NotificationKind::SupplementRequested,
        DossierStatus::PaymentRequested => NotificationKind::PaymentRequested,
        DossierStatus::Withdrawn => NotificationKind::Withdrawn,
        DossierStatus::Stopped => NotificationKind::Stopped,
        DossierStatus::ResultReady => {
            let occurred = vietnam_day(&event.occurred_at.with_timezone(&Utc));
            match due_at {
                Some(due) if occurred < vietnam_day(&due) => NotificationKind::ResultReadyEarly,
                _ => NotificationKind::ResultReady,
            }
        }
        DossierStatus::ResultReturned => NotificationKind::ResultReturned,
    })
}

/// Plans the notifications for an event that became its dossier's current state:
/// the one its status deserves, a [`NotificationKind::DueDateChanged`] when it
/// moved the appointment of a dossier still being processed to another day, and the
/// [`NotificationKind::RatingRequest`] once the result was returned (status 10). Nothing
/// when the citizen did not opt into Zalo. The recipient is the authorised filer when
/// there is one; the parameters are exactly the kind's
/// [`NotificationKind::required_params`].
pub fn plan(event: &DossierEvent, context: &PlanContext<'_>) -> Vec<NotificationRequest> {
    if !event.channels.zalo {
        return Vec::new();
    }
    let mut planned = Vec::new();
    if let Some(kind) = kind_for(event, context.due_at).filter(|_| !re_reception(event, context)) {
        planned.push(request(kind, event, context));
    }
    if moves_appointment(event, context) {
        planned.push(request(NotificationKind::DueDateChanged, event, context));
    }
    if event.status == DossierStatus::ResultReturned {
        // Its link opens the lookup page at its rating form. The notifier sends it to
        // followers (free) and by ZNS only as a rating template: the result message
        // links to the same form, so a ZNS-only citizen pays for one message.
        planned.push(request(NotificationKind::RatingRequest, event, context));
    }
    planned
}

/// The id of the lookup page's rating section: a rating request's link ends in
/// `#danh-gia`.
pub const RATING_ANCHOR: &str = "danh-gia";

/// Whether `event` receives again a dossier the desk had already received: status 2
/// after a later status (back from a supplement, 5 → 2, dossier-domain §1) or after
/// status 2 itself. The citizen holds the receipt already; a second one, with the new
/// date and no word of the old, would read like another dossier. A new date is
/// announced as [`NotificationKind::DueDateChanged`] instead (old and new date, and the
/// reason), and the same date needs no message.
pub fn re_reception(event: &DossierEvent, context: &PlanContext<'_>) -> bool {
    event.status == DossierStatus::Received
        && context
            .previous_status
            .is_some_and(|s| s != DossierStatus::Submitted)
}

/// Whether `event` set an appointment on another day than the one the dossier had,
/// while the dossier is still being processed (a re-reception included). A first
/// receipt already carries its date, and once the result exists (or the dossier
/// closed) a new date means nothing to the citizen.
pub fn moves_appointment(event: &DossierEvent, context: &PlanContext<'_>) -> bool {
    let (Some(old), Some(new), Some(_)) = (context.previous_due_at, context.due_at, event.due_at)
    else {
        return false;
    };
    vietnam_day(&old) != vietnam_day(&new)
        && (re_reception(event, context)
            || matches!(
                event.status,
                DossierStatus::Processing
                    | DossierStatus::SupplementRequested
                    | DossierStatus::PaymentRequested
            ))
}

/// One notification of `kind` about `event`.
fn request(
    kind: NotificationKind,
    event: &DossierEvent,
    context: &PlanContext<'_>,
) -> NotificationRequest {
    let person = event.recipient();
    let params = kind
        .required_params()
        .iter()
        .map(|&name| (name.to_owned(), param(kind, name, event, context)))
        .collect::<BTreeMap<_, _>>();
    NotificationRequest {
        notification_id: notification_id(&event.tenant, &event.event_id, kind),
        tenant: event.tenant.clone(),
        kind,
        recipient: Recipient {
            phone: Some(person.phone.as_str().to_owned()),
            zalo_user_id: person.zalo_user_id.clone(),
        },
        params,
        lane: Lane::Transactional,
        dossier_code: Some(event.dossier_code.clone()),
        not_before: None,
        trace_context: context.trace_context.map(str::to_owned),
        event_accepted_at: event.accepted_at,
        created_at: context.now,
        broadcast: None,
    }
}

/// One template parameter's value; never empty.
fn param(
    kind: NotificationKind,
    name: &str,
    event: &DossierEvent,
    context: &PlanContext<'_>,
) -> String {
    let value = match name {
        "customer_name" => truncate(&address(event.recipient()), MAX_CUSTOMER_NAME, true),
        "dossier_code" => event.dossier_code.clone(),
        "procedure_name" => truncate(event.procedure.name.trim(), MAX_PROCEDURE_NAME, true),
        "status" => templates::status_vi(kind).to_owned(),
        "agency_name" => event.agency.name.trim().to_owned(),
        // A returned result's messages ask for the rating: their link opens the form.
        "lookup_url" => match kind {
            NotificationKind::ResultReturned | NotificationKind::RatingRequest => {
                format!("{}#{RATING_ANCHOR}", context.lookup_url)
            }
            _ => context.lookup_url.to_owned(),
        },
        "addressee" => templates::addressee(event.recipient().kind).to_owned(),
        // A receipt is issued when the desk receives the dossier: without an explicit
        // reception time, the event's own time is it.
        "received_date" => format_date_vn(
            &context
                .received_at
                .unwrap_or_else(|| event.occurred_at.with_timezone(&Utc)),
        ),
        "due_date" | "new_due_date" => context
            .due_at
            .map(|d| format_date_vn(&d))
            .unwrap_or_else(|| templates::NO_DUE_DATE.to_owned()),
        "old_due_date" => context
            .previous_due_at
            .map(|d| format_date_vn(&d))
            .unwrap_or_else(|| templates::NO_DUE_DATE.to_owned()),
        "reason" => event
            .reason
            .as_deref()
            .map(|r| truncate(r.trim(), MAX_FREE_TEXT, true))
            .unwrap_or_default(),
        "documents" => event
            .required_documents
            .as_ref()
            .map(|docs| {
                let joined = docs
                    .iter()
                    .map(|d| d.trim())
                    .filter(|d| !d.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ");
                truncate(&joined, MAX_FREE_TEXT, true)
            })
            .unwrap_or_default(),
        // A result with an electronic copy links to it through the lookup page, which
        // counts the download (followers get the same link in the OA message).
        "electronic_copy" => match &event.result_document {
            Some(_) => templates::electronic_copy_ready(&result_download_url(context.lookup_url)),
            None => templates::NO_ELECTRONIC_COPY.to_owned(),
        },
        "amount" => event
            .fee
            .as_ref()
            .map(|f| format_vnd(f.amount_vnd))
            .unwrap_or_default(),
        _ => String::new(),
    };
    if !value.trim().is_empty() {
        return templates::fit(name, &value);
    }
    match (kind, name) {
        (_, "documents") => DOCUMENTS_ASK_AGENCY_VI.to_owned(),
        (_, "amount") => AMOUNT_ASK_AGENCY_VI.to_owned(),
        (_, "reason") => NO_REASON_GIVEN_VI.to_owned(),
        _ => SEE_LOOKUP_VI.to_owned(),
    }
}

/// The lookup page's link to a dossier's electronic result (`…/tra-cuu/{token}/ket-qua`),
/// from its lookup link: it counts the download and redirects to the document store.
pub fn result_download_url(lookup_url: &str) -> String {
    format!("{}/ket-qua", lookup_url.trim_end_matches('/'))
}

/// How a message addresses its recipient: "ông/bà" and a person's name, an
/// organisation by its name as it is (never "ông/bà Công ty …").
pub fn address(person: &Person) -> String {
    let name = person.name.trim();
    match person.kind {
        ApplicantKind::Person => format!("ông/bà {name}"),
        ApplicantKind::Organisation => name.to_owned(),
    }
}

/// Formats đồng the Vietnamese way: `150.000 đồng`.
pub fn format_vnd(amount: i64) -> String {
    let digits = amount.unsigned_abs().to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && i % 3 == digits.len() % 3 {
            grouped.push('.');
        }
        grouped.push(c);
    }
    let sign = if amount < 0 { "-" } else { "" };
    format!("{sign}{grouped} đồng")
}

/// Cuts `text` to at most `max` characters (not bytes: Vietnamese is multi-byte),
/// ending with `…` when `ellipsis` is set and something was cut.
pub fn truncate(text: &str, max: usize, ellipsis: bool) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let keep = if ellipsis { max.saturating_sub(1) } else { max };
    let mut out: String = text.chars().take(keep).collect();
    out.truncate(out.trim_end().len());
    if ellipsis {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use loa_contracts::{Agency, Channels, Fee, PhoneNumber, Procedure};

    const URL: &str = "https://tracuu.example.vn/tra-cuu/0123456789abcdef01234567";

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn event(status: DossierStatus) -> DossierEvent {
        DossierEvent {
            event_id: "evt-1".into(),
            tenant: "demo".into(),
            dossier_code: "000.00.06.H56-261128-0001".into(),
            status,
            occurred_at: DateTime::parse_from_rfc3339("2026-11-28T09:30:00+07:00").unwrap(),
            sequence: None,
            procedure: Procedure {
                code: "1.001193".into(),
                name: "Đăng ký khai sinh".into(),
            },
            agency: Agency {
                code: "000.00.06.H56".into(),
                name: "UBND phường Đức Thắng".into(),
            },
            applicant: Person {
                name: "Trần Thị Bích".into(),
                kind: ApplicantKind::Person,
                tax_code: None,
                phone: PhoneNumber::parse("0903123456").unwrap(),
                zalo_user_id: Some("zu-owner".into()),
            },
            on_behalf_of: None,
            received_at: Some(DateTime::parse_from_rfc3339("2026-11-28T09:30:00+07:00").unwrap()),
            due_at: Some(DateTime::parse_from_rfc3339("2026-12-03T17:00:00+07:00").unwrap()),
            reason: None,
            required_documents: None,
            fee: None,
            result_document: None,
            channels: Channels {
                zalo: true,
                broadcast: false,
            },
            accepted_at: Some(at("2026-11-28T02:30:01Z")),
        }
    }

    fn context(e: &DossierEvent) -> PlanContext<'static> {
        PlanContext {
            received_at: e.received_at.map(|d| d.with_timezone(&Utc)),
            due_at: e.due_at.map(|d| d.with_timezone(&Utc)),
            previous_due_at: None,
            previous_status: None,
            lookup_url: URL,
            trace_context: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            now: at("2026-11-28T02:30:02Z"),
        }
    }

    fn plan_one(e: &DossierEvent) -> NotificationRequest {
        let mut planned = plan(e, &context(e));
        assert_eq!(planned.len(), 1, "{:?}", e.status);
        planned.remove(0)
    }

    fn keys(n: &NotificationRequest) -> Vec<&str> {
        n.params.keys().map(String::as_str).collect()
    }

    #[test]
    fn a_receipt_carries_every_required_param_with_vietnamese_dates() {
        let e = event(DossierStatus::Received);
        let n = plan_one(&e);
        assert_eq!(n.kind, NotificationKind::Receipt);
        assert_eq!(
            n.notification_id,
            notification_id("demo", "evt-1", NotificationKind::Receipt)
        );
        let mut want: Vec<&str> = NotificationKind::Receipt.required_params().to_vec();
        want.sort_unstable();
        assert_eq!(keys(&n), want);
        assert_eq!(n.params["customer_name"], "ông/bà Trần Thị Bích");
        assert_eq!(n.params["dossier_code"], "000.00.06.H56-261128-0001");
        assert_eq!(n.params["procedure_name"], "Đăng ký khai sinh");
        assert_eq!(n.params["status"], "Đã tiếp nhận hồ sơ");
        assert_eq!(n.params["agency_name"], "UBND phường Đức Thắng");
        assert_eq!(n.params["lookup_url"], URL);
        assert_eq!(n.params["received_date"], "28/11/2026");
        assert_eq!(n.params["due_date"], "03/12/2026");
        assert_eq!(n.recipient.phone.as_deref(), Some("84903123456"));
        assert_eq!(n.recipient.zalo_user_id.as_deref(), Some("zu-owner"));
        assert_eq!(n.lane, Lane::Transactional);
        assert_eq!(n.event_accepted_at, e.accepted_at);
        assert_eq!(n.trace_context.as_deref(), context(&e).trace_context);
        assert_eq!(n.dossier_code.as_deref(), Some("000.00.06.H56-261128-0001"));
    }

    #[test]
    fn params_are_exactly_the_required_ones_and_never_empty_for_every_kind() {
        for status in DossierStatus::ALL {
            let mut e = event(status);
            e.due_at = None;
            e.received_at = None;
            for n in plan(&e, &context(&e)) {
                let mut want: Vec<&str> = n.kind.required_params().to_vec();
                want.sort_unstable();
                assert_eq!(keys(&n), want, "{}", n.kind);
                for (k, v) in &n.params {
                    assert!(!v.trim().is_empty(), "{} {k} is empty", n.kind);
                }
            }
        }
    }

    #[test]
    fn statuses_submitted_and_processing_plan_nothing() {
        for status in [DossierStatus::Submitted, DossierStatus::Processing] {
            let e = event(status);
            assert!(plan(&e, &context(&e)).is_empty(), "{status:?}");
        }
    }

    #[test]
    fn each_notifiable_status_maps_to_its_kind() {
        let cases = [
            (DossierStatus::Received, NotificationKind::Receipt),
            (DossierStatus::Refused, NotificationKind::Refused),
            (
                DossierStatus::SupplementRequested,
                NotificationKind::SupplementRequested,
            ),
            (
                DossierStatus::PaymentRequested,
                NotificationKind::PaymentRequested,
            ),
            (DossierStatus::Withdrawn, NotificationKind::Withdrawn),
            (DossierStatus::Stopped, NotificationKind::Stopped),
        ];
        for (status, kind) in cases {
            assert_eq!(plan_one(&event(status)).kind, kind);
        }
    }

    #[test]
    fn a_returned_result_plans_its_message_and_a_rating_request_both_linking_to_the_form() {
        let e = event(DossierStatus::ResultReturned);
        let planned = plan(&e, &context(&e));
        let kinds: Vec<NotificationKind> = planned.iter().map(|n| n.kind).collect();
        assert_eq!(
            kinds,
            [
                NotificationKind::ResultReturned,
                NotificationKind::RatingRequest
            ]
        );
        let rating = &planned[1];
        assert_eq!(rating.params["lookup_url"], format!("{URL}#danh-gia"));
        // A citizen reached by ZNS gets only the first (see the notifier's sender): it
        // asks for the rating itself.
        assert_eq!(planned[0].params["lookup_url"], format!("{URL}#danh-gia"));
        let text = loa_contracts::templates::render(planned[0].kind, &planned[0].params);
        assert!(
            text.contains(&format!(
                "Đánh giá mức độ hài lòng và xem lại hồ sơ tại: {URL}#danh-gia"
            )),
            "{text}"
        );
        assert_eq!(rating.params["status"], "Mời đánh giá sự hài lòng");
        assert_ne!(rating.notification_id, planned[0].notification_id);
        assert_eq!(
            rating.notification_id,
            notification_id("demo", "evt-1", NotificationKind::RatingRequest)
        );
    }

    #[test]
    fn a_result_with_an_electronic_copy_says_it_is_ready_and_links_to_the_counted_download() {
        let mut e = event(DossierStatus::ResultReady);
        e.occurred_at = DateTime::parse_from_rfc3339("2026-12-03T08:00:00+07:00").unwrap();
        assert_eq!(plan_one(&e).params["electronic_copy"], "Không kèm theo");
        e.result_document = Some(loa_contracts::ResultDocument {
            name: "Trích lục khai sinh".into(),
            url: "https://vbdt.example.gov.vn/kq/1.pdf".into(),
        });
        for status in [DossierStatus::ResultReady, DossierStatus::ResultReturned] {
            e.status = status;
            let n = plan(&e, &context(&e)).remove(0);
            assert_eq!(
                n.params["electronic_copy"],
                format!("Đã sẵn sàng, tải tại {URL}/ket-qua"),
                "{status:?}"
            );
            let text = templates::render(n.kind, &n.params);
            assert!(
                text.contains(&format!(
                    "Bản điện tử của kết quả: Đã sẵn sàng, tải tại {URL}/ket-qua"
                )),
                "{text}"
            );
            assert!(
                !text.contains("vbdt.example.gov.vn"),
                "the store's own link never leaves through a message"
            );
        }
        e.status = DossierStatus::ResultReady;
        e.occurred_at = DateTime::parse_from_rfc3339("2026-12-01T08:00:00+07:00").unwrap();
        let early = plan_one(&e);
        assert_eq!(early.kind, NotificationKind::ResultReadyEarly);
        assert!(early.params["electronic_copy"].ends_with("/ket-qua"));
    }

    #[test]
    fn a_result_ready_before_the_due_day_is_early() {
        let mut e = event(DossierStatus::ResultReady);
        e.occurred_at = DateTime::parse_from_rfc3339("2026-12-02T16:00:00+07:00").unwrap();
        let n = plan_one(&e);
        assert_eq!(n.kind, NotificationKind::ResultReadyEarly);
        assert_eq!(n.params["due_date"], "03/12/2026");
        assert_eq!(
            n.params["status"], "Có kết quả trước hạn",
            "the early message says so in its own parameters"
        );
    }

    #[test]
    fn a_result_ready_on_the_due_day_or_without_one_is_not_early() {
        let mut e = event(DossierStatus::ResultReady);
        e.occurred_at = DateTime::parse_from_rfc3339("2026-12-03T07:00:00+07:00").unwrap();
        assert_eq!(plan_one(&e).kind, NotificationKind::ResultReady);
        e.due_at = None;
        e.occurred_at = DateTime::parse_from_rfc3339("2026-11-29T07:00:00+07:00").unwrap();
        assert_eq!(plan_one(&e).kind, NotificationKind::ResultReady);
    }

    #[test]
    fn the_early_check_uses_the_dossiers_due_date_when_the_event_omits_it() {
        let mut e = event(DossierStatus::ResultReady);
        e.due_at = None;
        e.occurred_at = DateTime::parse_from_rfc3339("2026-11-30T10:00:00+07:00").unwrap();
        let mut ctx = context(&e);
        ctx.due_at = Some(at("2026-12-03T17:00:00+07:00"));
        assert_eq!(plan(&e, &ctx)[0].kind, NotificationKind::ResultReadyEarly);
    }

    #[test]
    fn the_filer_receives_the_message_when_filing_on_behalf_of_the_owner() {
        let mut e = event(DossierStatus::Received);
        e.on_behalf_of = Some(Person {
            name: "Lê Văn Cường".into(),
            kind: ApplicantKind::Person,
            tax_code: None,
            phone: PhoneNumber::parse("0912345678").unwrap(),
            zalo_user_id: None,
        });
        let n = plan_one(&e);
        assert_eq!(n.recipient.phone.as_deref(), Some("84912345678"));
        assert_eq!(n.recipient.zalo_user_id, None);
        assert_eq!(n.params["customer_name"], "ông/bà Lê Văn Cường");
    }

    #[test]
    fn nothing_is_planned_without_a_zalo_opt_in() {
        let mut e = event(DossierStatus::Received);
        e.channels.zalo = false;
        e.channels.broadcast = true;
        assert!(plan(&e, &context(&e)).is_empty());
    }

    #[test]
    fn supplement_payment_and_refusal_carry_their_details() {
        let mut e = event(DossierStatus::SupplementRequested);
        e.required_documents = Some(vec!["Bản sao CCCD".into(), "Giấy chứng sinh".into()]);
        assert_eq!(
            plan_one(&e).params["documents"],
            "Bản sao CCCD; Giấy chứng sinh"
        );

        let mut e = event(DossierStatus::PaymentRequested);
        e.fee = Some(Fee {
            amount_vnd: 150_000,
            description: Some("Lệ phí".into()),
        });
        assert_eq!(plan_one(&e).params["amount"], "150.000 đồng");

        let mut e = event(DossierStatus::Refused);
        assert_eq!(plan_one(&e).params["reason"], NO_REASON_GIVEN_VI);
        e.reason = Some("Thiếu giấy tờ".into());
        assert_eq!(plan_one(&e).params["reason"], "Thiếu giấy tờ");
    }

    #[test]
    fn a_receipt_without_dates_uses_the_event_day_and_says_the_appointment_will_be_announced() {
        let mut e = event(DossierStatus::Received);
        e.received_at = None;
        e.due_at = None;
        let n = plan_one(&e);
        assert_eq!(n.params["received_date"], "28/11/2026");
        assert_eq!(n.params["due_date"], "Sẽ thông báo sau");
        let text = loa_contracts::templates::render(n.kind, &n.params);
        assert!(
            text.contains("Ngày hẹn trả kết quả: Sẽ thông báo sau."),
            "{text}"
        );
    }

    /// Every status an event can carry, each planned for `e` as it is otherwise.
    fn every_kind_planned(e: &DossierEvent) -> Vec<NotificationRequest> {
        let mut planned = Vec::new();
        for status in DossierStatus::ALL {
            let mut e = e.clone();
            e.status = status;
            let mut ctx = context(&e);
            if status == DossierStatus::Processing {
                // And a moved appointment.
                ctx.previous_due_at = Some(at("2026-12-01T10:00:00Z"));
            }
            planned.extend(plan(&e, &ctx));
        }
        planned
    }

    #[test]
    fn no_message_says_khong_co_for_what_the_event_did_not_carry() {
        // A procedure without an appointment date, a refusal and a stop without a
        // reason, a result without an electronic copy, no documents, no amount.
        let mut e = event(DossierStatus::Received);
        e.due_at = None;
        let mut planned = every_kind_planned(&e);
        planned.extend(every_kind_planned(&event(DossierStatus::Received)));
        let kinds: std::collections::HashSet<NotificationKind> =
            planned.iter().map(|n| n.kind).collect();
        assert!(kinds.len() >= 11, "{kinds:?}");
        for n in &planned {
            let text = loa_contracts::templates::render(n.kind, &n.params);
            assert!(!text.contains("Không có"), "{}: {text}", n.kind);
            assert!(!text.contains('<'), "{}: {text}", n.kind);
        }
    }

    #[test]
    fn every_kind_rendered_for_an_organisation_addresses_it_and_never_says_ong_ba() {
        let mut e = event(DossierStatus::Received);
        e.applicant.name = "Công ty TNHH Thương mại Việt Tiến".into();
        e.applicant.kind = ApplicantKind::Organisation;
        let mut planned = every_kind_planned(&e);
        e.due_at = None;
        planned.extend(every_kind_planned(&e));
        let kinds: std::collections::HashSet<NotificationKind> =
            planned.iter().map(|n| n.kind).collect();
        assert!(kinds.len() >= 11, "{kinds:?}");
        for n in &planned {
            let text = loa_contracts::templates::render(n.kind, &n.params);
            assert!(
                !text.to_lowercase().contains("ông/bà"),
                "{}: {text}",
                n.kind
            );
            assert!(
                !text.to_lowercase().contains("ông bà"),
                "{}: {text}",
                n.kind
            );
            assert!(
                text.starts_with("Kính gửi Công ty TNHH"),
                "{}: {text}",
                n.kind
            );
            if n.kind.required_params().contains(&"addressee") {
                assert!(text.contains("Quý tổ chức"), "{}: {text}", n.kind);
            }
        }
        // A person is still "ông/bà", in the address and in the text.
        let person = every_kind_planned(&event(DossierStatus::Received));
        let withdrawn = person
            .iter()
            .find(|n| n.kind == NotificationKind::Withdrawn)
            .unwrap();
        let text = loa_contracts::templates::render(withdrawn.kind, &withdrawn.params);
        assert!(
            text.contains("đã được rút theo đề nghị của ông/bà;"),
            "{text}"
        );
    }

    #[test]
    fn long_names_are_cut_by_characters_not_bytes() {
        let mut e = event(DossierStatus::Received);
        e.applicant.name = "Nguyễn Thị Hồng Nhung Phương Thảo Ngọc Ánh".into();
        e.procedure.name = "Cấp đổi giấy chứng nhận ".repeat(10);
        let n = plan_one(&e);
        assert!(n.params["customer_name"].chars().count() <= MAX_CUSTOMER_NAME);
        assert!(n.params["customer_name"].starts_with("ông/bà Nguyễn Thị Hồng"));
        let procedure = &n.params["procedure_name"];
        assert_eq!(procedure.chars().count(), MAX_PROCEDURE_NAME);
        assert!(procedure.ends_with('…'));
    }

    #[test]
    fn a_new_appointment_on_another_day_tells_the_old_and_new_dates_and_the_reason() {
        let mut e = event(DossierStatus::Processing);
        e.due_at = Some(DateTime::parse_from_rfc3339("2026-12-10T17:00:00+07:00").unwrap());
        e.reason = Some("Phiếu xin lỗi và hẹn lại ngày trả kết quả".into());
        let mut ctx = context(&e);
        ctx.previous_due_at = Some(at("2026-12-03T17:00:00+07:00"));
        let planned = plan(&e, &ctx);
        assert_eq!(planned.len(), 1, "status 4 itself notifies nobody");
        let n = &planned[0];
        assert_eq!(n.kind, NotificationKind::DueDateChanged);
        assert_eq!(n.params["old_due_date"], "03/12/2026");
        assert_eq!(n.params["new_due_date"], "10/12/2026");
        assert_eq!(
            n.params["reason"],
            "Phiếu xin lỗi và hẹn lại ngày trả kết quả"
        );
        assert_eq!(
            n.notification_id,
            notification_id("demo", "evt-1", NotificationKind::DueDateChanged)
        );
        let mut want: Vec<&str> = NotificationKind::DueDateChanged.required_params().to_vec();
        want.sort_unstable();
        assert_eq!(keys(n), want);

        e.reason = None;
        assert_eq!(plan(&e, &ctx)[0].params["reason"], NO_REASON_GIVEN_VI);
    }

    #[test]
    fn a_supplement_that_moves_the_appointment_sends_both_messages() {
        let mut e = event(DossierStatus::SupplementRequested);
        e.due_at = Some(DateTime::parse_from_rfc3339("2026-12-10T17:00:00+07:00").unwrap());
        let mut ctx = context(&e);
        ctx.previous_due_at = Some(at("2026-12-03T17:00:00+07:00"));
        let kinds: Vec<_> = plan(&e, &ctx).iter().map(|n| n.kind).collect();
        assert_eq!(
            kinds,
            [
                NotificationKind::SupplementRequested,
                NotificationKind::DueDateChanged
            ]
        );
    }

    #[test]
    fn without_documents_or_an_amount_the_message_sends_the_citizen_where_the_page_does() {
        // The page says "liên hệ {agency} để biết giấy tờ cần bổ sung / số tiền và cách
        // nộp" then: the message does not send the citizen to the page for them.
        let e = event(DossierStatus::SupplementRequested);
        let documents = &plan_one(&e).params["documents"];
        assert_eq!(documents, DOCUMENTS_ASK_AGENCY_VI);
        let e = event(DossierStatus::PaymentRequested);
        let n = plan_one(&e);
        assert_eq!(n.params["amount"], AMOUNT_ASK_AGENCY_VI);
        for value in n.params.values() {
            assert_ne!(value, SEE_LOOKUP_VI);
        }
        // The page shows no way to pay: the message promises none.
        let text = templates::render(n.kind, &n.params);
        assert!(!text.contains("cách nộp"), "{text}");
    }

    #[test]
    fn no_parameter_is_longer_than_its_template_takes_and_long_names_are_cut() {
        // Intake takes names of 300 characters; ZNS parameters take less.
        for status in DossierStatus::ALL {
            let mut e = event(status);
            e.agency.name = "Ủy ban nhân dân ".repeat(19);
            e.procedure.name = "Đăng ký ".repeat(40);
            e.applicant.name = "Nguyễn ".repeat(40);
            e.reason = Some("Lý do ".repeat(300));
            e.required_documents = Some(vec!["Giấy tờ ".repeat(200)]);
            for n in plan(&e, &context(&e)) {
                for (name, value) in &n.params {
                    let max = templates::param_spec(name).unwrap().max_chars;
                    assert!(value.chars().count() <= max, "{} {name}: {value}", n.kind);
                }
                if let Some(agency) = n.params.get("agency_name") {
                    // Cut at 199 characters, a space before the cut dropped.
                    assert!(agency.chars().count() >= 198, "{agency}");
                    assert!(agency.ends_with('…'), "{agency}");
                }
            }
        }
    }

    #[test]
    fn a_dossier_received_again_after_a_supplement_gets_the_new_date_not_a_second_receipt() {
        // Back at status 2 after the citizen brought the documents (5 → 2), due later.
        let mut e = event(DossierStatus::Received);
        e.due_at = Some(DateTime::parse_from_rfc3339("2026-12-10T17:00:00+07:00").unwrap());
        e.reason = Some("Đã nhận đủ giấy tờ bổ sung".into());
        let mut ctx = context(&e);
        ctx.previous_due_at = Some(at("2026-12-03T10:00:00Z"));
        ctx.previous_status = Some(DossierStatus::SupplementRequested);
        let planned = plan(&e, &ctx);
        let kinds: Vec<_> = planned.iter().map(|n| n.kind).collect();
        assert_eq!(kinds, [NotificationKind::DueDateChanged]);
        assert_eq!(planned[0].params["old_due_date"], "03/12/2026");
        assert_eq!(planned[0].params["new_due_date"], "10/12/2026");
        assert_eq!(planned[0].params["reason"], "Đã nhận đủ giấy tờ bổ sung");

        // The same appointment day: the citizen's receipt still holds, nothing to send.
        ctx.previous_due_at = Some(at("2026-12-10T02:00:00Z"));
        assert!(plan(&e, &ctx).is_empty());

        // The first reception, after an online submission (1 → 2), is the receipt.
        ctx.previous_status = Some(DossierStatus::Submitted);
        ctx.previous_due_at = Some(at("2026-12-03T10:00:00Z"));
        let kinds: Vec<_> = plan(&e, &ctx).iter().map(|n| n.kind).collect();
        assert_eq!(kinds, [NotificationKind::Receipt]);
    }

    #[test]
    fn the_same_day_a_receipt_a_result_or_no_new_date_announce_no_new_appointment() {
        let previous = Some(at("2026-12-03T08:00:00+07:00"));
        // Another hour of the same day.
        let e = event(DossierStatus::Processing);
        let mut ctx = context(&e);
        ctx.previous_due_at = previous;
        assert!(plan(&e, &ctx).is_empty());
        // A date the event does not carry is the dossier's own.
        let mut e = event(DossierStatus::Processing);
        e.due_at = None;
        let mut ctx = context(&e);
        ctx.due_at = Some(at("2026-12-10T17:00:00+07:00"));
        ctx.previous_due_at = previous;
        assert!(plan(&e, &ctx).is_empty());
        // Statuses whose own message says enough, or where a date means nothing now.
        for status in [
            DossierStatus::Received,
            DossierStatus::ResultReady,
            DossierStatus::ResultReturned,
            DossierStatus::Stopped,
        ] {
            let mut e = event(status);
            e.due_at = Some(DateTime::parse_from_rfc3339("2026-12-10T17:00:00+07:00").unwrap());
            let mut ctx = context(&e);
            ctx.previous_due_at = previous;
            assert!(
                plan(&e, &ctx)
                    .iter()
                    .all(|n| n.kind != NotificationKind::DueDateChanged),
                "{status:?}"
            );
        }
    }

    #[test]
    fn an_organisation_is_addressed_by_its_name_and_its_filer_as_a_person() {
        let mut e = event(DossierStatus::Received);
        e.applicant.name = "Công ty TNHH Thương mại Việt Tiến".into();
        e.applicant.kind = ApplicantKind::Organisation;
        assert_eq!(
            plan_one(&e).params["customer_name"],
            "Công ty TNHH Thương mại Việt…"
        );
        e.on_behalf_of = Some(Person {
            name: "Lê Văn Cường".into(),
            kind: ApplicantKind::Person,
            tax_code: None,
            phone: PhoneNumber::parse("0912345678").unwrap(),
            zalo_user_id: None,
        });
        assert_eq!(plan_one(&e).params["customer_name"], "ông/bà Lê Văn Cường");
    }

    #[test]
    fn amounts_use_dots_between_thousands() {
        assert_eq!(format_vnd(0), "0 đồng");
        assert_eq!(format_vnd(999), "999 đồng");
        assert_eq!(format_vnd(1_000), "1.000 đồng");
        assert_eq!(format_vnd(150_000), "150.000 đồng");
        assert_eq!(format_vnd(12_345_678), "12.345.678 đồng");
    }
}
