//! Injected faults: Zalo error codes, non-JSON HTTP errors, token answers without
//! tokens, added latency and hangs (accepted, recorded, answered too late), optionally
//! for one phone only and for the next N matching requests only, so tests can be
//! deterministic.

use crate::zalo::Api;
use serde::Serialize;

/// How long a hung request waits before answering; longer than any sane client timeout.
pub const HANG_SECS: u64 = 30;

/// One active fault, as set by `POST /_sandbox/faults`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fault {
    /// Position in creation order (for listing).
    pub id: u64,
    /// The API family it applies to.
    pub api: Api,
    /// Zalo error code answered with probability `rate`.
    pub error_code: Option<i64>,
    /// Probability (0..=1) of answering the error.
    pub rate: f64,
    /// Added to every matching request.
    pub latency_ms: u64,
    /// Probability (0..=1) that an accepted request's answer is held for [`HANG_SECS`].
    pub hang_rate: f64,
    /// When set, the error is this HTTP status with a non-JSON body instead.
    pub http_status: Option<u16>,
    /// OAuth only: answer HTTP 200 with an empty body, no tokens and no error code,
    /// as Zalo may answer a spent or revoked refresh token.
    pub no_tokens: bool,
    /// Only requests for this phone (or this user id, or a follower with this phone).
    pub phone: Option<String>,
    /// Only the next N matching requests; `None` means until cleared.
    pub count: Option<u64>,
}

/// What a fault does to an answer that would otherwise fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Answer this Zalo error code (HTTP 200).
    Zalo(i64),
    /// Answer this HTTP status with a non-JSON body.
    Http(u16),
    /// Answer HTTP 200 without tokens (OAuth only; see [`Fault::no_tokens`]).
    NoTokens,
}

/// The combined effect of the faults matching one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultEffect {
    /// Total added latency.
    pub latency_ms: u64,
    /// The first failure rolled, if any.
    pub failure: Option<Failure>,
    /// Hold the answer of an accepted request.
    pub hang: bool,
}

/// Applies the faults of `api` matching a request for any of `targets` (its phone,
/// user id, follower phone), consuming one use of counted faults.
pub fn apply(faults: &mut Vec<Fault>, api: Api, targets: &[&str]) -> FaultEffect {
    let mut effect = FaultEffect::default();
    if faults.is_empty() {
        return effect;
    }
    let mut exhausted = false;
    for fault in faults.iter_mut().filter(|f| f.api == api) {
        if fault
            .phone
            .as_deref()
            .is_some_and(|p| !targets.contains(&p))
        {
            continue;
        }
        if let Some(count) = &mut fault.count {
            if *count == 0 {
                continue;
            }
            *count -= 1;
            exhausted |= *count == 0;
        }
        effect.latency_ms = effect.latency_ms.saturating_add(fault.latency_ms);
        if effect.failure.is_none() && roll(fault.rate) {
            effect.failure = match (fault.no_tokens, fault.http_status, fault.error_code) {
                (true, ..) => Some(Failure::NoTokens),
                (false, Some(status), _) => Some(Failure::Http(status)),
                (false, None, Some(code)) => Some(Failure::Zalo(code)),
                (false, None, None) => None,
            };
        }
        effect.hang |= roll(fault.hang_rate);
    }
    if exhausted {
        faults.retain(|f| f.count != Some(0));
    }
    effect
}

fn roll(probability: f64) -> bool {
    if probability >= 1.0 {
        true
    } else if probability <= 0.0 {
        false
    } else {
        rand::random::<f64>() < probability
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(api: Api) -> Fault {
        Fault {
            id: 1,
            api,
            error_code: Some(-100),
            rate: 1.0,
            latency_ms: 5,
            hang_rate: 0.0,
            http_status: None,
            no_tokens: false,
            phone: None,
            count: Some(2),
        }
    }

    #[test]
    fn counted_faults_apply_to_the_next_n_matching_requests_then_vanish() {
        let mut faults = vec![fault(Api::Zns)];
        assert_eq!(apply(&mut faults, Api::Oa, &[]), FaultEffect::default());
        for _ in 0..2 {
            let e = apply(&mut faults, Api::Zns, &["84903123456"]);
            assert_eq!(e.failure, Some(Failure::Zalo(-100)));
            assert_eq!(e.latency_ms, 5);
        }
        assert!(faults.is_empty());
        assert_eq!(apply(&mut faults, Api::Zns, &[]).failure, None);
    }

    #[test]
    fn phone_restricted_faults_spare_other_phones_and_http_status_wins() {
        let mut f = fault(Api::Zns);
        f.phone = Some("84903123456".into());
        f.http_status = Some(502);
        f.count = None;
        let mut faults = vec![f];
        assert_eq!(apply(&mut faults, Api::Zns, &["84903000000"]).failure, None);
        assert_eq!(
            apply(&mut faults, Api::Zns, &["84903123456"]).failure,
            Some(Failure::Http(502))
        );
        assert_eq!(faults.len(), 1);
    }
}
