//! The one table that says what every Zalo answer means for us.
//!
//! Zalo answers HTTP 200 with a negative `error` code for almost every failure, and the
//! same code can mean "try again in a second", "try again tomorrow", "this citizen can
//! never get it" or "a human must top up the account". Every caller decides from the
//! [`ErrorClass`] computed here, never from raw codes, so the classification lives in
//! one place (`zalo-platform.md` §4.3) and is tested per class below; what the engine
//! does about each class is decided in one place too, [`crate::engine::policy::decide`].

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use loa_contracts::time::vietnam;

/// What a failed Zalo call means for the message that caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The access token was refused (`-216`, `-220`, `-124`, HTTP 401): refresh it once
    /// and retry once. Never loop.
    RefreshToken,
    /// A passing failure (`-32` rate limit, `-100`, `-200`, `-214`, 5xx, non-JSON,
    /// connection refused before the request left): retry with back-off.
    Transient,
    /// The request left but no answer came back (time-out, reset): Zalo may have
    /// accepted the message, so a blind resend risks a duplicate.
    Ambiguous,
    /// Night ban (`-133`, `-234`, 22:00–06:00 in Vietnam): wait for the morning.
    DeferNight,
    /// The OA's daily (or monthly) quota is spent (`-144`, `-147`, `-211`, `-1441`):
    /// wait for the next quota window; never fail the message for it.
    DeferQuota,
    /// This recipient cannot get this message on this channel (`-108`, `-118`, `-213`,
    /// …): do not retry; another channel may work.
    PermanentRecipient,
    /// The request itself is wrong (`-109`, `-1122`, `-131`, …): retrying cannot help;
    /// dead-letter it, it is a bug or a template problem.
    PermanentPayload,
    /// The app or OA needs a human (`-115` balance, `-321`, `-135`, refresh token
    /// refused, …): retries only burn attempts, so sending for the tenant should pause.
    NeedsOperator,
}

impl ErrorClass {
    /// Every class, for creating the metrics' series at zero.
    pub const ALL: [ErrorClass; 8] = [
        Self::RefreshToken,
        Self::Transient,
        Self::Ambiguous,
        Self::DeferNight,
        Self::DeferQuota,
        Self::PermanentRecipient,
        Self::PermanentPayload,
        Self::NeedsOperator,
    ];

    /// Stable snake_case name for logs, metrics and stored errors.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::RefreshToken => "refresh_token",
            Self::Transient => "transient",
            Self::Ambiguous => "ambiguous",
            Self::DeferNight => "defer_night",
            Self::DeferQuota => "defer_quota",
            Self::PermanentRecipient => "permanent_recipient",
            Self::PermanentPayload => "permanent_payload",
            Self::NeedsOperator => "needs_operator",
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies a Zalo error code (non-zero `error` field of a JSON answer), for the OA,
/// ZNS/ZBS and OAuth APIs alike (their code ranges do not collide).
///
/// Codes not in the table are treated as [`ErrorClass::Transient`]: retried a bounded
/// number of times and then dead-lettered with the code, which loses nothing and
/// pages nobody for a code Zalo may have added yesterday.
pub(crate) fn classify_code(code: i64) -> ErrorClass {
    use ErrorClass::*;
    match code {
        // Refresh the access token once, then retry once.
        -216 | -220 | -124 => RefreshToken,

        // Transient: back off and retry.
        -32    // rate limit (per app or per OA, per minute)
        | -100 // ZNS unknown error "please try again later" (OA: attachment expired)
        | -200 // OA send failed
        | -214 // article still being processed
        => Transient,

        // Night ban: defer to 06:00 Asia/Ho_Chi_Minh.
        -133 | -234 => DeferNight,

        // Quota windows: defer to the next quota day (or month for -1441).
        -144 | -147 | -211 | -1441 => DeferQuota,

        // Permanent for this recipient on this channel.
        -108 | -110 | -114 | -118 | -119 | -139 | -140 | -141 // ZNS
        | -213 | -217 | -227 | -230 | -232 | -244 | -249       // OA
        // Per-recipient receive limits ("defer or drop"): dropped, because a quota
        // deferral is OA-wide and would hold every other citizen's message too.
        | -218 | -1471 | -1472
        => PermanentRecipient,

        // Permanent for this payload: a bug or a template problem.
        -201 | -210 | -233 | -240 | -248 | -403                  // OA request
        | -106 | -107 | -121 | -122                              // malformed request
        | -109 | -111 | -112 | -1121 | -1122 | -1123 | -1124     // template and its data
        | -113 | -1131 | -116 | -117 | -130 | -131 | -132 | -146 // content and template state
        | -148 | -149 | -150 | -1491                             // journey token
        | -151 | -152 | -153                                    // E2EE
        | -158 | -159 | -160                                    // uploads
        | -161 | -162                                           // sending_mode
        => PermanentPayload,

        // The app, OA or billing needs a human.
        -115 | -136 | -137 | -320 | -321         // money and Zalo Cloud Account
        | -105..=-101 | -125 | -126 | -127       // app / OA identity and dev mode
        | -120 | -1201 | -1202 | -135 | -1351 | -138 | -1381 | -145 // permissions
        | -123 | -128 | -129 | -142 | -143       // RSA keys
        | -204 | -205 | -209 | -212 | -219 | -221 | -223 | -224 | -235 // OA / app state
        | -237 | -238 | -241                     // group / asset state
        | -242 | -1241                           // appsecret_proof
        => NeedsOperator,

        // OAuth (-14xxx): the refresh token or app credentials were refused. A lost
        // refresh token needs an OA admin to re-authorise in a browser.
        -14999..=-14000 => NeedsOperator,

        _ => Transient,
    }
}

/// Classifies an HTTP answer: `code` is Zalo's `error` field when the body was JSON
/// with one. Zalo signals errors inside HTTP 200, so the code wins when present,
/// except that HTTP 401 always means a refused token.
pub(crate) fn classify_http(status: u16, code: Option<i64>) -> ErrorClass {
    match (status, code) {
        (401, _) => ErrorClass::RefreshToken,
        (_, Some(code)) if code != 0 => classify_code(code),
        // A wrong base URL or path: retrying will not fix the configuration.
        (404 | 405, _) => ErrorClass::NeedsOperator,
        // 5xx, 429, 408, gateways' HTML pages, a 200 we could not read: passing.
        _ => ErrorClass::Transient,
    }
}

/// What went wrong on the wire, before any Zalo answer could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// The connection could not be opened: the request never left, so a retry is safe.
    Connect,
    /// The request was sent (or may have been) and no complete answer arrived in time.
    Timeout,
    /// The connection broke after the request was sent.
    Interrupted,
    /// The request could not even be built (a bug).
    Build,
}

impl TransportFailure {
    /// Reads a `reqwest` error.
    pub(crate) fn of(error: &reqwest::Error) -> Self {
        // Connect first: a connect time-out is also a time-out, but a safe one.
        if error.is_connect() {
            Self::Connect
        } else if error.is_builder() {
            Self::Build
        } else if error.is_timeout() {
            Self::Timeout
        } else {
            Self::Interrupted
        }
    }

    /// Stable label for metrics (`code` of `loa_notifier_zalo_requests_total`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Interrupted => "interrupted",
            Self::Build => "build",
        }
    }
}

/// Classifies a transport failure.
pub(crate) fn classify_transport(failure: TransportFailure) -> ErrorClass {
    match failure {
        TransportFailure::Connect => ErrorClass::Transient,
        TransportFailure::Timeout | TransportFailure::Interrupted => ErrorClass::Ambiguous,
        TransportFailure::Build => ErrorClass::PermanentPayload,
    }
}

/// When a deferred message may be tried again, for the classes that wait for a wall
/// clock time rather than a back-off: night bans until 06:05 in Vietnam (a few minutes
/// after the ban lifts, so the whole backlog does not hit Zalo at 06:00:00), daily
/// quotas until the next Vietnamese day, the monthly promotion quota until the next
/// month. `None` for every other code.
pub(crate) fn defer_until(code: i64, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let vn = vietnam();
    let local = now.with_timezone(&vn);
    let at_local = |date: NaiveDate, h: u32, m: u32| {
        let naive = date.and_hms_opt(h, m, 0)?;
        vn.from_local_datetime(&naive)
            .single()
            .map(|t| t.with_timezone(&Utc))
    };
    match classify_code(code) {
        ErrorClass::DeferNight => {
            let today = local.date_naive();
            let morning = at_local(today, 6, 5)?;
            if now < morning {
                Some(morning)
            } else {
                at_local(today.succ_opt()?, 6, 5)
            }
        }
        ErrorClass::DeferQuota if code == -1441 => {
            let (y, m) = (local.year(), local.month());
            let first = if m == 12 {
                NaiveDate::from_ymd_opt(y + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(y, m + 1, 1)?
            };
            at_local(first, 0, 5)
        }
        ErrorClass::DeferQuota => at_local(local.date_naive().succ_opt()?, 0, 5),
        _ => None,
    }
}

/// 00:05 of the next quota day in Vietnam: when a spent daily ZNS quota (or a
/// broadcast held back by the transactional reserve) may send again.
pub fn next_quota_day(now: DateTime<Utc>) -> DateTime<Utc> {
    defer_until(-144, now).unwrap_or(now + chrono::Duration::days(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::*;

    fn assert_all(codes: &[i64], class: ErrorClass) {
        for &code in codes {
            assert_eq!(classify_code(code), class, "code {code}");
            assert_eq!(
                classify_http(200, Some(code)),
                class,
                "code {code} in HTTP 200"
            );
        }
    }

    #[test]
    fn refused_access_tokens_are_refreshed_then_retried_once() {
        assert_all(&[-216, -220, -124], RefreshToken);
        assert_eq!(classify_http(401, None), RefreshToken);
        assert_eq!(classify_http(401, Some(-100)), RefreshToken);
    }

    #[test]
    fn rate_limits_unknown_errors_and_server_errors_are_transient() {
        assert_all(&[-32, -100, -200, -214], Transient);
        for status in [500, 502, 503, 504, 429, 408] {
            assert_eq!(classify_http(status, None), Transient, "HTTP {status}");
        }
        // A 200 whose body was not JSON (no code could be read).
        assert_eq!(classify_http(200, None), Transient);
        // A code Zalo added after this table was written.
        assert_eq!(classify_code(-99_999), Transient);
        assert_eq!(classify_code(7), Transient);
    }

    #[test]
    fn time_outs_are_ambiguous_and_refused_connections_are_safe_to_retry() {
        assert_eq!(classify_transport(TransportFailure::Timeout), Ambiguous);
        assert_eq!(classify_transport(TransportFailure::Interrupted), Ambiguous);
        assert_eq!(classify_transport(TransportFailure::Connect), Transient);
        assert_eq!(
            classify_transport(TransportFailure::Build),
            PermanentPayload
        );
    }

    #[test]
    fn night_bans_defer_to_the_vietnamese_morning() {
        assert_all(&[-133, -234], DeferNight);
        // 23:30 in Vietnam (16:30 UTC) → 06:05 the next morning (23:05 UTC).
        let late = DateTime::parse_from_rfc3339("2026-03-10T16:30:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            defer_until(-133, late).unwrap(),
            DateTime::parse_from_rfc3339("2026-03-10T23:05:00Z").unwrap()
        );
        // 02:00 in Vietnam (19:00 UTC the day before) → 06:05 the same morning.
        let early = DateTime::parse_from_rfc3339("2026-03-10T19:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            defer_until(-234, early).unwrap(),
            DateTime::parse_from_rfc3339("2026-03-10T23:05:00Z").unwrap()
        );
    }

    #[test]
    fn spent_quotas_defer_to_the_next_quota_window() {
        assert_all(&[-144, -147, -211, -1441], DeferQuota);
        // 10:00 in Vietnam on 31 Dec → 00:05 on 1 Jan, Vietnamese time, both for the
        // daily quota and the monthly one.
        let now = DateTime::parse_from_rfc3339("2026-12-31T03:00:00Z")
            .unwrap()
            .to_utc();
        let new_year = DateTime::parse_from_rfc3339("2026-12-31T17:05:00Z").unwrap();
        assert_eq!(defer_until(-144, now).unwrap(), new_year);
        assert_eq!(defer_until(-1441, now).unwrap(), new_year);
        let mid_month = DateTime::parse_from_rfc3339("2026-04-15T03:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            defer_until(-1441, mid_month).unwrap(),
            DateTime::parse_from_rfc3339("2026-04-30T17:05:00Z").unwrap()
        );
        assert_eq!(defer_until(-100, now), None);
    }

    #[test]
    fn recipients_who_cannot_receive_are_permanent_for_that_recipient() {
        assert_all(
            &[
                -108, -110, -114, -118, -119, -139, -140, -141, -213, -217, -227, -230, -232, -244,
                -249, -218, -1471, -1472,
            ],
            PermanentRecipient,
        );
    }

    #[test]
    fn bad_templates_and_payloads_are_permanent_for_the_payload() {
        assert_all(
            &[
                -201, -210, -233, -240, -109, -111, -112, -1121, -1122, -1124, -113, -116, -117,
                -130, -131, -132, -146, -161, -162,
            ],
            PermanentPayload,
        );
    }

    #[test]
    fn billing_permission_and_credential_problems_need_an_operator() {
        assert_all(
            &[
                -115, -137, -321, -320, -136, -135, -1351, -101, -102, -103, -104, -105, -209,
                -212, -219, -221, -223, -224, -242, -1241,
            ],
            NeedsOperator,
        );
        // A refused refresh token (OAuth -14xxx).
        assert_all(&[-14014, -14020, -14002], NeedsOperator);
        assert_eq!(classify_http(404, None), NeedsOperator);
    }
}
