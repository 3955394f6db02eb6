//! The dossier state machine's pure rules: where an event sits in its dossier's life,
//! whether a dossier is early, on time or overdue, the unguessable lookup token, and
//! the masked name the public page may show (the transitions themselves are in
//! [`crate::lifecycle`]). Nothing here touches the database or the broker, so every
//! rule is unit-tested directly.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use hmac::{Hmac, Mac};
use loa_contracts::{time::vietnam_day, DossierEvent, DossierStatus};
use loa_platform::Secret;
use serde::Serialize;
use sha2::Sha256;

/// Length of a lookup token in hex characters (96 bits: unguessable, short enough for a
/// QR code that still scans from a crumpled paper receipt).
pub const LOOKUP_TOKEN_LEN: usize = 24;

/// The token in a dossier's public lookup link: the first 24 hex characters of
/// HMAC-SHA256(secret, tenant \x1f dossier code). Dossier codes are sequential and
/// printed on paper, so the link must not be derivable from the code; the token is
/// stable, so a QR code printed on the receipt keeps working for the dossier's life.
pub fn lookup_token(secret: &Secret, tenant: &str, dossier_code: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(tenant.as_bytes());
    mac.update(b"\x1f");
    mac.update(dossier_code.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut token = hex::encode(digest);
    token.truncate(LOOKUP_TOKEN_LEN);
    token
}

/// Whether a string has the shape of a lookup token (checked before any query).
pub fn is_lookup_token(candidate: &str) -> bool {
    candidate.len() == LOOKUP_TOKEN_LEN
        && candidate
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where an event sits in its dossier's life, so out-of-order and duplicate deliveries
/// cannot move a dossier backwards (see [`crate::lifecycle`] for the order built on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderingKey {
    /// Upstream's per-dossier sequence, when it sends one.
    pub sequence: Option<i64>,
    /// When the change happened.
    pub occurred_at: DateTime<Utc>,
    /// [`DossierStatus::stage`]: breaks ties between events of the same instant.
    pub stage: u8,
}

impl OrderingKey {
    /// The key of an event.
    pub fn of(event: &DossierEvent) -> Self {
        Self {
            sequence: event.sequence,
            occurred_at: event.occurred_at.with_timezone(&Utc),
            stage: event.status.stage(),
        }
    }
}

/// How a dossier stands against its appointment date (ngày hẹn trả), decided per
/// calendar day in Asia/Ho_Chi_Minh as the provinces report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Timeliness {
    /// Finished before the appointment day (trước hạn).
    Early,
    /// Finished on the appointment day, or there was no appointment (đúng hạn).
    OnTime,
    /// Finished after the appointment day, or still open after it (quá hạn).
    Overdue,
    /// Still open and not yet past its appointment day.
    InProgress,
    /// Waiting for the citizen's documents (status 5): the processing clock is stopped,
    /// so it is never overdue meanwhile.
    Paused,
}

impl Timeliness {
    /// The Vietnamese wording shown to citizens.
    pub fn label_vi(self) -> &'static str {
        match self {
            Self::Early => "Đã có kết quả trước hạn",
            Self::OnTime => "Đúng hạn",
            Self::Overdue => "Quá hạn",
            Self::InProgress => "Đang trong hạn",
            Self::Paused => "Tạm dừng, chờ bổ sung giấy tờ",
        }
    }
}

/// Derives timeliness from a dossier's state, as provinces report it: per calendar
/// day, against the appointment as the processing clock sees it (`effective_due`: the
/// appointment moved by the time spent waiting for the citizen, see
/// [`crate::lifecycle::DossierState::effective_due`]). `completed_at` is set once the
/// result is ready (9) or returned (10).
///
/// `None` for a dossier without an appointment (some procedures have none: it is never
/// overdue, and never "on time" either) and for one closed without a result (refused,
/// withdrawn, stopped). A dossier waiting for the citizen (5) is [`Timeliness::Paused`],
/// never overdue.
pub fn timeliness(
    status: DossierStatus,
    effective_due: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    today: NaiveDate,
) -> Option<Timeliness> {
    let due = vietnam_day(&effective_due?);
    if let Some(done) = completed_at {
        let done = vietnam_day(&done);
        return Some(match done.cmp(&due) {
            std::cmp::Ordering::Less => Timeliness::Early,
            std::cmp::Ordering::Equal => Timeliness::OnTime,
            std::cmp::Ordering::Greater => Timeliness::Overdue,
        });
    }
    if status.is_terminal() {
        return None;
    }
    Some(if status == DossierStatus::SupplementRequested {
        Timeliness::Paused
    } else if due < today {
        Timeliness::Overdue
    } else {
        Timeliness::InProgress
    })
}

/// The first instant of a Vietnamese calendar day.
pub fn day_start(day: NaiveDate) -> DateTime<Utc> {
    loa_contracts::time::vietnam()
        .from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight exists"))
        .single()
        .expect("a fixed offset has one midnight")
        .with_timezone(&Utc)
}

/// Whether a status means the result exists (9 ready, 10 returned): only then is
/// `completed_at` set.
pub fn is_completion(status: DossierStatus) -> bool {
    matches!(
        status,
        DossierStatus::ResultReady | DossierStatus::ResultReturned
    )
}

/// Masks a Vietnamese full name for the public page (`Trần Thị Bích` → `Trần T. B.`);
/// shared with retention and erasure, which leave the same form.
pub use loa_contracts::personal::mask_name;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn lookup_tokens_are_stable_hex_and_differ_per_tenant_code_and_secret() {
        let secret = Secret::new("s1");
        let t = lookup_token(&secret, "demo", "H56-0001");
        assert_eq!(t, lookup_token(&secret, "demo", "H56-0001"));
        assert_eq!(t.len(), LOOKUP_TOKEN_LEN);
        assert!(is_lookup_token(&t));
        assert_ne!(t, lookup_token(&secret, "demo", "H56-0002"));
        assert_ne!(t, lookup_token(&secret, "other", "H56-0001"));
        assert_ne!(t, lookup_token(&Secret::new("s2"), "demo", "H56-0001"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(
            lookup_token(&secret, "ab", "c"),
            lookup_token(&secret, "a", "bc")
        );
    }

    #[test]
    fn lookup_token_shape_check_refuses_anything_else() {
        assert!(!is_lookup_token("short"));
        assert!(!is_lookup_token("ABCDEFABCDEFABCDEFABCDEF"));
        assert!(!is_lookup_token("../../etc/passwd/xxxxxxxx"));
    }

    #[test]
    fn timeliness_compares_vietnamese_calendar_days() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let due = Some(at("2026-12-03T17:00:00+07:00"));
        let ready = DossierStatus::ResultReady;
        // 23:30 UTC on the 2nd is 06:30 on the 3rd in Vietnam: the due day itself.
        assert_eq!(
            timeliness(ready, due, Some(at("2026-12-02T23:30:00Z")), today),
            Some(Timeliness::OnTime)
        );
        assert_eq!(
            timeliness(ready, due, Some(at("2026-12-02T16:00:00Z")), today),
            Some(Timeliness::Early)
        );
        assert_eq!(
            timeliness(ready, due, Some(at("2026-12-04T08:00:00+07:00")), today),
            Some(Timeliness::Overdue)
        );
    }

    #[test]
    fn a_procedure_without_an_appointment_is_never_overdue_nor_on_time() {
        let after = NaiveDate::from_ymd_opt(2030, 1, 1).unwrap();
        let done = Some(at("2026-12-04T08:00:00+07:00"));
        assert_eq!(
            timeliness(DossierStatus::ResultReady, None, done, after),
            None
        );
        assert_eq!(
            timeliness(DossierStatus::Processing, None, None, after),
            None
        );
    }

    #[test]
    fn a_dossier_waiting_for_the_citizen_is_paused_never_overdue() {
        let long_after = NaiveDate::from_ymd_opt(2027, 6, 1).unwrap();
        let due = Some(at("2026-12-03T17:00:00+07:00"));
        assert_eq!(
            timeliness(DossierStatus::SupplementRequested, due, None, long_after),
            Some(Timeliness::Paused)
        );
    }

    #[test]
    fn open_dossiers_are_in_progress_until_their_due_day_has_passed() {
        let due = Some(at("2026-12-03T17:00:00+07:00"));
        let processing = DossierStatus::Processing;
        let on_due_day = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        let after = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
        assert_eq!(
            timeliness(processing, due, None, on_due_day),
            Some(Timeliness::InProgress)
        );
        assert_eq!(
            timeliness(processing, due, None, after),
            Some(Timeliness::Overdue)
        );
        assert_eq!(timeliness(DossierStatus::Stopped, due, None, after), None);
    }

    #[test]
    fn names_are_masked_to_family_name_and_initials() {
        assert_eq!(mask_name("Trần Thị Bích"), "Trần T. B.");
        assert_eq!(mask_name("  Lê   văn  Cường "), "Lê V. C.");
        assert_eq!(mask_name("Bích"), "B.");
        assert_eq!(mask_name(""), "");
    }
}
