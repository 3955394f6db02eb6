//! The retry policy, in one place.
//!
//! [`decide`] turns what happened to one request ([`SendOutcome`]) into what to do
//! about it ([`Decision`]). Every error class of [`crate::zalo::errors`] ends here, and
//! nowhere else:
//!
//! | class / outcome | decision |
//! |---|---|
//! | success | `Sent` |
//! | `refresh_token` (-216, -220, -124, 401) | `Refresh` once, then as `transient` |
//! | `transient` (-32, -100, -200, 5xx, non-JSON, refused connect) | `Retry` via delay queue tier n; dead letter after `max_attempts` |
//! | `ambiguous` (time-out after sending), interrupted (its sender died after dispatching it) | `Park` until a receipt or `recheck_at` |
//! | not dispatched (the dispatch mark could not be written) | as `transient` |
//! | `defer_night` (-133, -234) | `Defer` to 06:05 Asia/Ho_Chi_Minh |
//! | `defer_quota` (-144, -147, -211, -1441) | `Defer` to the next quota day (00:05), -144 exhausts the day |
//! | `permanent_recipient` (-108, -118, -213, …) | `Fallback` to the other channel once, else `Fail` |
//! | `permanent_payload` (-109, -1122, -131, …), unsendable | `Fail` (dead letter) |
//! | `needs_operator` (-115, -321, -135, refused refresh token, …) | `Hold` and pause the tenant |
//! | `not_before` in the future | `Defer` to it |
//! | tenant paused | `Hold` |
//! | a broadcast's message: cancelled, ended, opted out, monthly cap, or Zalo's per-user limits (-1471, -1472) | `Skip` |
//! | broadcast at the transactional reserve, or quota spent | `Defer` to the next quota day |
//!
//! # How a retry waits: delay queues
//!
//! A `Retry` republishes the request, with publisher confirms and **before** the
//! original is acked, to a delay queue: a quorum queue with `x-message-ttl` and no
//! consumer that dead-letters (at least once) back to `loa.notifications` with the
//! request's own routing key, so it lands in its lane's work queue again. There is one
//! queue per configured delay (`retry_delays_ms`, e.g. 5 s, 30 s, 2 min, 10 min, 1 h;
//! attempt n waits in tier n, the last tier repeating), reached through a fanout
//! exchange of its own ([`topology::declare_delay_tier`] says why not one headers
//! exchange: that copied every retry into every tier). Each message also gets its own `expiration`, the tier's delay
//! ±20 % (the queue's TTL is the tier + 20 %, so the per-message one decides), so a
//! burst of failures does not come back as a burst. Expiry happens at the queue head,
//! so one message can wait behind another of the same tier by at most 40 % of the
//! tier. Our own `x-loa-attempt` header counts attempts; at `max_attempts` the request
//! is dead-lettered with its last error (`zalo error -100: … (gave up after 8
//! attempts)`). An undecodable message never gets here: it is dead-lettered at once.
//!
//! # How a deferral waits: in PostgreSQL
//!
//! Deferrals to a wall-clock time (06:05, the next quota day, `not_before`), requests
//! held for a paused tenant and ambiguous sends are parked in `notifier.deliveries`
//! (status `deferred` / `held` / `ambiguous`, the request body in `request`) and their
//! AMQP message is acked. [`super::scheduler`] republishes due rows in batches. Why
//! not a queue whose messages expire at the wall-clock time: a night's backlog would sit
//! in the broker for 8 hours, per-message TTLs only expire at the head of a queue (a
//! later deferral would block an earlier one), and a paused tenant has no known
//! resume time at all. In the table they cost nothing while waiting, and an operator
//! can see (and a receipt can settle) every one of them.

use crate::zalo::{errors, Accepted, ErrorClass, ZaloFailure};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The retry knobs (from [`crate::NotifierSettings`]).
#[derive(Debug, Clone)]
pub(crate) struct RetrySettings {
    /// Delay before attempt n+1 after attempt n failed transiently; the last repeats.
    pub delays: Vec<Duration>,
    /// Attempts (through the delay queues) before a request is dead-lettered.
    pub max_attempts: u32,
    /// How long an ambiguous send waits for its receipt before being resent.
    pub ambiguous_recheck: Duration,
}

impl RetrySettings {
    /// The delay after attempt `attempt` (1-based) failed.
    pub(crate) fn delay_after(&self, attempt: u32) -> Duration {
        let i = (attempt.max(1) - 1) as usize;
        self.delays
            .get(i)
            .or(self.delays.last())
            .copied()
            .unwrap_or(Duration::from_secs(5))
    }
}

/// What one attempt at a request came to (or why it was not made).
#[derive(Debug, Clone)]
pub(crate) enum SendOutcome {
    /// Zalo accepted it.
    Sent(Accepted),
    /// The request can never be sent as it is (unknown tenant, no template for the
    /// kind, no recipient). Nothing was sent.
    Unsendable(String),
    /// Zalo (or the token refresh before it) refused or did not answer.
    Failed(ZaloFailure),
    /// No access token could be had, for a reason that is not Zalo's answer.
    NoToken {
        /// What the missing token means for the message.
        class: ErrorClass,
        /// Why.
        reason: String,
    },
    /// Its `not_before` is still ahead. Nothing was sent.
    NotYet(DateTime<Utc>),
    /// Its tenant's sending is paused. Nothing was sent.
    Paused(String),
    /// The ZNS quota does not allow it today: a broadcast at the transactional
    /// reserve, or the day's quota is spent. Nothing was sent.
    QuotaWithheld,
    /// An earlier attempt was dispatched by a sender that stopped before recording
    /// its result, and no receipt proves it arrived. Nothing was sent now.
    Interrupted,
    /// The dispatch mark could not be written, so the call was not made: a crash
    /// after an unmarked call would leave its fate unknowable. Nothing was sent.
    NotDispatched(String),
    /// A broadcast's message that is not to be sent, and is no error: the broadcast
    /// was cancelled or ended, the citizen opted out or has had this month's
    /// promotions (see [`crate::broadcasts::gate`]). Nothing was sent.
    Skipped(&'static str),
}

/// What a request's attempt needs to know besides its outcome.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context {
    /// This attempt's number (1-based, from `x-loa-attempt`).
    pub attempt: u32,
    /// The access token was already refreshed once during this attempt.
    pub refreshed: bool,
    /// Another channel is left to try for this recipient.
    pub can_fall_back: bool,
    /// The notifier's clock.
    pub now: DateTime<Utc>,
}

/// What to do about an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Record `sent`, ack.
    Sent,
    /// Refresh the refused access token and resend at once (once per attempt).
    Refresh,
    /// Try the next channel at once.
    Fallback,
    /// Record `retrying`, republish to the delay queue, then ack.
    Retry {
        /// Metrics reason (an error class).
        label: &'static str,
        /// The error, for the record.
        reason: String,
        /// How long to wait (before jitter).
        delay: Duration,
        /// The attempt number the republished copy carries.
        next_attempt: u32,
        /// Zalo rate-limited us (-32): slow the tenant down for every replica.
        slow_down: bool,
    },
    /// Record `deferred` with the request until `until`, ack.
    Defer {
        /// Metrics reason.
        label: &'static str,
        /// Why, for the record.
        reason: String,
        /// When it is due.
        until: DateTime<Utc>,
        /// Zalo said the OA's daily quota is spent (-144).
        exhausts_quota: bool,
    },
    /// Record `ambiguous` with the request until `recheck_at`, ack.
    Park {
        /// Why, for the record.
        reason: String,
        /// When to resend it if no receipt came.
        recheck_at: DateTime<Utc>,
    },
    /// Record `held` with the request, ack; pause the tenant when `pause` says why.
    Hold {
        /// Why, for the record.
        reason: String,
        /// Pause the tenant: Zalo's code and message.
        pause: Option<(Option<i64>, String)>,
    },
    /// Record `skipped` with the reason, ack (no dead letter: nothing is wrong).
    Skip {
        /// `cancelled`, `ended`, `opted_out`, `monthly_cap`, `recipient_limit`.
        reason: &'static str,
    },
    /// Record `failed`, dead-letter with this reason.
    Fail {
        /// Metrics reason.
        label: &'static str,
        /// `zalo error -108: Phone number invalid`, `no template …`.
        reason: String,
    },
}

/// The retry policy: the one function that maps every outcome and error class to a
/// decision (see the module docs for the table).
pub(crate) fn decide(outcome: &SendOutcome, ctx: &Context, settings: &RetrySettings) -> Decision {
    match outcome {
        SendOutcome::Sent(_) => Decision::Sent,
        SendOutcome::Unsendable(reason) => Decision::Fail {
            label: "unsendable",
            reason: reason.clone(),
        },
        SendOutcome::Failed(failure) => {
            by_class(failure.class, failure.code, failure.reason(), ctx, settings)
        }
        SendOutcome::NoToken { class, reason } => {
            // Not Zalo's answer to the message: nothing was sent, so a time-out of the
            // refresh is no reason to park the message, and a token problem is not the
            // recipient's.
            let class = match class {
                ErrorClass::Ambiguous | ErrorClass::RefreshToken => ErrorClass::Transient,
                ErrorClass::PermanentRecipient => ErrorClass::NeedsOperator,
                other => *other,
            };
            by_class(class, None, reason.clone(), ctx, settings)
        }
        SendOutcome::NotYet(until) => Decision::Defer {
            label: "not_before",
            reason: format!("not before {}", until.to_rfc3339()),
            until: *until,
            exhausts_quota: false,
        },
        SendOutcome::Skipped(reason) => Decision::Skip { reason },
        SendOutcome::Paused(reason) => Decision::Hold {
            reason: format!("tenant paused: {reason}"),
            pause: None,
        },
        // Like a send that timed out: park it for its receipt, resend after the recheck.
        SendOutcome::Interrupted => by_class(
            ErrorClass::Ambiguous,
            None,
            "the sender stopped after dispatching it; waiting for its receipt".to_owned(),
            ctx,
            settings,
        ),
        SendOutcome::NotDispatched(reason) => {
            by_class(ErrorClass::Transient, None, reason.clone(), ctx, settings)
        }
        SendOutcome::QuotaWithheld => Decision::Defer {
            label: "quota_reserve",
            reason:
                "ZNS daily quota kept for case updates (or spent); waiting for the next quota day"
                    .to_owned(),
            until: errors::next_quota_day(ctx.now),
            exhausts_quota: false,
        },
    }
}

fn by_class(
    class: ErrorClass,
    code: Option<i64>,
    reason: String,
    ctx: &Context,
    settings: &RetrySettings,
) -> Decision {
    let give_up = |reason: String| Decision::Fail {
        label: class.as_str(),
        reason: format!("{reason} (gave up after {} attempts)", ctx.attempt),
    };
    let retry = |reason: String, slow_down: bool| {
        if ctx.attempt >= settings.max_attempts {
            give_up(reason)
        } else {
            Decision::Retry {
                label: class.as_str(),
                reason,
                delay: settings.delay_after(ctx.attempt),
                next_attempt: ctx.attempt + 1,
                slow_down,
            }
        }
    };
    match class {
        ErrorClass::RefreshToken if !ctx.refreshed => Decision::Refresh,
        // Refused again right after a refresh: wait, as for any passing failure.
        ErrorClass::RefreshToken => retry(reason, false),
        ErrorClass::Transient => retry(reason, code == Some(-32)),
        ErrorClass::Ambiguous if ctx.attempt >= settings.max_attempts => give_up(reason),
        ErrorClass::Ambiguous => Decision::Park {
            reason,
            recheck_at: ctx.now
                + chrono::Duration::from_std(settings.ambiguous_recheck)
                    .unwrap_or(chrono::Duration::minutes(10)),
        },
        ErrorClass::DeferNight | ErrorClass::DeferQuota => {
            match code.and_then(|c| errors::defer_until(c, ctx.now)) {
                Some(until) => Decision::Defer {
                    label: class.as_str(),
                    reason,
                    until,
                    exhausts_quota: code == Some(-144),
                },
                // A deferral without a code cannot happen; wait as for a passing failure.
                None => retry(reason, false),
            }
        }
        ErrorClass::PermanentRecipient if ctx.can_fall_back => Decision::Fallback,
        ErrorClass::PermanentRecipient | ErrorClass::PermanentPayload => Decision::Fail {
            label: class.as_str(),
            reason,
        },
        ErrorClass::NeedsOperator => Decision::Hold {
            reason: reason.clone(),
            pause: Some((code, reason)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zalo::{parse_envelope, Api, TransportFailure};

    fn settings() -> RetrySettings {
        RetrySettings {
            delays: vec![Duration::from_secs(5), Duration::from_secs(30)],
            max_attempts: 4,
            ambiguous_recheck: Duration::from_secs(600),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn ctx(attempt: u32) -> Context {
        Context {
            attempt,
            refreshed: false,
            can_fall_back: false,
            now: at("2026-03-10T16:30:00Z"), // 23:30 in Vietnam
        }
    }

    fn failed(code: i64) -> SendOutcome {
        SendOutcome::Failed(
            parse_envelope(
                Api::Zns,
                200,
                format!(r#"{{"error":{code},"message":"m"}}"#).as_bytes(),
            )
            .unwrap_err(),
        )
    }

    fn timed_out() -> SendOutcome {
        SendOutcome::Failed(ZaloFailure {
            api: Api::Zns,
            class: errors::classify_transport(TransportFailure::Timeout),
            code: None,
            http_status: None,
            transport: Some(TransportFailure::Timeout),
            detail: "timeout".into(),
        })
    }

    #[test]
    fn a_success_is_sent() {
        let accepted = Accepted {
            msg_id: "x".into(),
            daily_quota: None,
            remaining_quota: None,
        };
        assert_eq!(
            decide(&SendOutcome::Sent(accepted), &ctx(1), &settings()),
            Decision::Sent
        );
    }

    #[test]
    fn a_refused_token_is_refreshed_once_then_retried_with_a_delay() {
        assert_eq!(
            decide(&failed(-216), &ctx(1), &settings()),
            Decision::Refresh
        );
        let again = Context {
            refreshed: true,
            ..ctx(1)
        };
        assert!(matches!(
            decide(&failed(-124), &again, &settings()),
            Decision::Retry {
                label: "refresh_token",
                ..
            }
        ));
    }

    #[test]
    fn transient_errors_climb_the_delay_tiers_and_give_up_with_the_last_error() {
        match decide(&failed(-100), &ctx(1), &settings()) {
            Decision::Retry {
                delay,
                next_attempt,
                slow_down,
                label,
                ..
            } => {
                assert_eq!(
                    (delay, next_attempt, slow_down, label),
                    (Duration::from_secs(5), 2, false, "transient")
                );
            }
            other => panic!("{other:?}"),
        }
        // The last tier repeats.
        assert!(matches!(
            decide(&failed(-100), &ctx(3), &settings()),
            Decision::Retry { delay, .. } if delay == Duration::from_secs(30)
        ));
        // -32 also slows the tenant down.
        assert!(matches!(
            decide(&failed(-32), &ctx(1), &settings()),
            Decision::Retry {
                slow_down: true,
                ..
            }
        ));
        assert_eq!(
            decide(&failed(-100), &ctx(4), &settings()),
            Decision::Fail {
                label: "transient",
                reason: "zalo error -100: m (gave up after 4 attempts)".into()
            }
        );
    }

    #[test]
    fn an_ambiguous_send_is_parked_until_its_recheck() {
        assert_eq!(
            decide(&timed_out(), &ctx(1), &settings()),
            Decision::Park {
                reason: "zalo ambiguous: timeout".into(),
                recheck_at: at("2026-03-10T16:40:00Z"),
            }
        );
        assert!(matches!(
            decide(&timed_out(), &ctx(4), &settings()),
            Decision::Fail {
                label: "ambiguous",
                ..
            }
        ));
    }

    #[test]
    fn an_interrupted_send_is_parked_for_its_receipt_and_an_undispatched_one_retried() {
        assert!(matches!(
            decide(&SendOutcome::Interrupted, &ctx(2), &settings()),
            Decision::Park { recheck_at, .. } if recheck_at == at("2026-03-10T16:40:00Z")
        ));
        assert!(matches!(
            decide(&SendOutcome::Interrupted, &ctx(4), &settings()),
            Decision::Fail {
                label: "ambiguous",
                ..
            }
        ));
        assert!(matches!(
            decide(
                &SendOutcome::NotDispatched("db down".into()),
                &ctx(1),
                &settings()
            ),
            Decision::Retry {
                label: "transient",
                ..
            }
        ));
    }

    #[test]
    fn night_bans_and_spent_quotas_are_deferred_to_a_wall_clock_time() {
        assert_eq!(
            decide(&failed(-133), &ctx(1), &settings()),
            Decision::Defer {
                label: "defer_night",
                reason: "zalo error -133: m".into(),
                until: at("2026-03-10T23:05:00Z"),
                exhausts_quota: false,
            }
        );
        assert_eq!(
            decide(&failed(-144), &ctx(9), &settings()),
            Decision::Defer {
                label: "defer_quota",
                reason: "zalo error -144: m".into(),
                until: at("2026-03-10T17:05:00Z"),
                exhausts_quota: true,
            }
        );
        assert!(matches!(
            decide(&SendOutcome::QuotaWithheld, &ctx(1), &settings()),
            Decision::Defer { label: "quota_reserve", until, .. } if until == at("2026-03-10T17:05:00Z")
        ));
        let later = at("2026-03-11T02:00:00Z");
        assert!(matches!(
            decide(&SendOutcome::NotYet(later), &ctx(1), &settings()),
            Decision::Defer { label: "not_before", until, .. } if until == later
        ));
    }

    #[test]
    fn a_recipient_error_falls_back_to_the_other_channel_once_else_fails() {
        let with_fallback = Context {
            can_fall_back: true,
            ..ctx(1)
        };
        assert_eq!(
            decide(&failed(-213), &with_fallback, &settings()),
            Decision::Fallback
        );
        assert_eq!(
            decide(&failed(-118), &ctx(1), &settings()),
            Decision::Fail {
                label: "permanent_recipient",
                reason: "zalo error -118: m".into()
            }
        );
    }

    #[test]
    fn payload_errors_and_unsendable_requests_fail_at_once() {
        let with_fallback = Context {
            can_fall_back: true,
            ..ctx(1)
        };
        assert!(matches!(
            decide(&failed(-1122), &with_fallback, &settings()),
            Decision::Fail {
                label: "permanent_payload",
                ..
            }
        ));
        assert!(matches!(
            decide(
                &SendOutcome::Unsendable("no template".into()),
                &ctx(1),
                &settings()
            ),
            Decision::Fail {
                label: "unsendable",
                ..
            }
        ));
    }

    #[test]
    fn operator_errors_hold_the_message_and_pause_the_tenant() {
        assert_eq!(
            decide(&failed(-115), &ctx(1), &settings()),
            Decision::Hold {
                reason: "zalo error -115: m".into(),
                pause: Some((Some(-115), "zalo error -115: m".into())),
            }
        );
        // A refused refresh token, and a tenant already paused.
        assert!(matches!(
            decide(
                &SendOutcome::NoToken {
                    class: ErrorClass::NeedsOperator,
                    reason: "no access token: zalo error -14014: m".into()
                },
                &ctx(1),
                &settings()
            ),
            Decision::Hold { pause: Some(_), .. }
        ));
        assert!(matches!(
            decide(
                &SendOutcome::Paused("zalo error -321".into()),
                &ctx(1),
                &settings()
            ),
            Decision::Hold { pause: None, .. }
        ));
    }

    #[test]
    fn a_token_that_cannot_be_had_for_a_passing_reason_is_retried() {
        assert!(matches!(
            decide(
                &SendOutcome::NoToken {
                    class: ErrorClass::Ambiguous,
                    reason: "oauth timed out".into()
                },
                &ctx(1),
                &settings()
            ),
            Decision::Retry {
                label: "transient",
                ..
            }
        ));
    }
}
