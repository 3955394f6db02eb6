//! The unit of work: a batch of notification requests becomes Zalo messages, delivery
//! records and one [`Disposition`] per AMQP delivery.
//!
//! For each batch:
//! 1. decode every body (undecodable → dead letter) and fold duplicates of the same
//!    notification id onto one request (the copies are acked: the first carries it);
//! 2. claim all of them in `notifier.deliveries` with one statement: an id already
//!    `sent` is acked without sending, so a redelivered request is never sent twice;
//!    one leased by another sender right now is waited for;
//! 3. send the claimed ones concurrently (at most `max_in_flight` Zalo calls), each
//!    as one [`attempt`](Sender::attempt) that refreshes a refused token once and
//!    retries once;
//! 4. turn each [`SendOutcome`] into a [`Decision`] with [`decide`], the one policy
//!    function the retry engine (delay queues, deferrals, parking) will replace;
//! 5. record the whole batch's results with one statement, and only then let the
//!    consumer ack, retry or dead-letter.
//!
//! If the results cannot be recorded the batch goes back to the queue: a failed send
//! is never lost (a sent one may be resent after its lease: counted in
//! `loa_notifier_ambiguous_sends_total`).

use crate::{
    deliveries::{self, Claim, NewDelivery, Outcome, Status},
    metrics,
    tokens::{TokenError, TokenManager},
    zalo::{Accepted, ErrorClass, OaTemplateMessage, ZaloClient, ZaloFailure, ZnsMessage},
};
use deadpool_postgres::Pool;
use futures_util::StreamExt;
use lapin::message::Delivery;
use loa_contracts::{phone::mask_phone, Envelope, NotificationRequest};
use loa_platform::{amqp::Disposition, Tenants};
use std::{collections::HashMap, sync::Arc, time::Duration};

/// Which Zalo channel carried (or was to carry) a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// ZNS template by phone number.
    Zns,
    /// ZBS template by Zalo user id (followers).
    OaTemplate,
    /// No channel could be chosen (no recipient, no template).
    None,
}

impl Channel {
    /// Stable name, stored and used as a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zns => "zns",
            Self::OaTemplate => "oa_template",
            Self::None => "none",
        }
    }

    /// The channel a request will be tried on: ZNS by phone when there is a phone,
    /// else the OA template by user id.
    pub fn for_request(request: &NotificationRequest) -> Self {
        if request.recipient.phone.is_some() {
            Self::Zns
        } else if request.recipient.zalo_user_id.is_some() {
            Self::OaTemplate
        } else {
            Self::None
        }
    }
}

/// What one attempt at a request came to.
#[derive(Debug, Clone)]
pub enum SendOutcome {
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
}

/// What to do about an outcome: record it and settle the AMQP delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Record `sent`, ack.
    Sent,
    /// Record `failed`, dead-letter with this reason.
    Fail {
        /// `zalo error -108: Phone number invalid`, `no template …`.
        reason: String,
    },
    /// Record the error, give the request back to the queue; its delivery limit
    /// dead-letters it eventually.
    Retry {
        /// Error class (a metrics label).
        class: ErrorClass,
        /// Why.
        reason: String,
    },
}

/// The retry policy, in one place. Today: permanent errors fail and dead-letter,
/// everything else goes back to the queue. The delivery engine replaces the `Retry`
/// arm with delay-queue tiers, wall-clock deferrals (night, quota), parking ambiguous
/// sends until a receipt, and pausing a tenant that needs an operator.
pub fn decide(outcome: &SendOutcome) -> Decision {
    match outcome {
        SendOutcome::Sent(_) => Decision::Sent,
        SendOutcome::Unsendable(reason) => Decision::Fail {
            reason: reason.clone(),
        },
        SendOutcome::Failed(failure) if failure.class.is_permanent() => Decision::Fail {
            reason: failure.reason(),
        },
        SendOutcome::Failed(failure) => Decision::Retry {
            class: failure.class,
            reason: failure.reason(),
        },
        SendOutcome::NoToken { class, reason } => Decision::Retry {
            class: *class,
            reason: reason.clone(),
        },
    }
}

/// Sends notification requests. Cheap to clone (`Arc` inside).
#[derive(Clone)]
pub struct Sender {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    zalo: ZaloClient,
    tokens: Arc<TokenManager>,
    tenants: Tenants,
    max_in_flight: usize,
    lease: Duration,
}

impl Sender {
    /// `lease`: how long a claimed request is reserved for this sender (longer than
    /// a batch can take).
    pub fn new(
        pool: Pool,
        zalo: ZaloClient,
        tokens: Arc<TokenManager>,
        tenants: Tenants,
        max_in_flight: usize,
        lease: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                zalo,
                tokens,
                tenants,
                max_in_flight: max_in_flight.max(1),
                lease,
            }),
        }
    }

    /// The batch consumer's handler: decodes the bodies and processes them.
    pub async fn handle_deliveries(&self, batch: &[Delivery]) -> Vec<Disposition> {
        let requests = batch
            .iter()
            .map(|d| match Envelope::from_bytes(&d.data) {
                Ok(Envelope::NotificationRequestV1(r)) => Ok(r),
                Ok(other) => Err(format!(
                    "not a notification request: {}",
                    envelope_type(&other)
                )),
                Err(e) => Err(format!("undecodable notification request: {e}")),
            })
            .collect();
        self.process(requests).await
    }

    /// Processes a batch of decoded requests (or decoding errors) and returns one
    /// disposition per item, in order. Every delivery record is durable before this
    /// returns.
    pub async fn process(
        &self,
        requests: Vec<Result<NotificationRequest, String>>,
    ) -> Vec<Disposition> {
        let mut dispositions: Vec<Option<Disposition>> = vec![None; requests.len()];
        // Index of the first copy of each notification id.
        let mut primaries: Vec<(usize, &NotificationRequest)> = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, r) in requests.iter().enumerate() {
            match r {
                Err(reason) => {
                    tracing::warn!(reason, "Refusing an undecodable notification request.");
                    metrics::delivery("unknown", Channel::None.as_str(), "unknown", "invalid");
                    dispositions[i] = Some(Disposition::DeadLetter(reason.clone()));
                }
                Ok(request) => {
                    if seen.insert(request.notification_id.as_str(), i).is_some() {
                        // Another copy in this batch carries it.
                        self.count(request, Channel::for_request(request), "duplicate");
                        dispositions[i] = Some(Disposition::Ack);
                    } else {
                        primaries.push((i, request));
                    }
                }
            }
        }

        let primary_requests: Vec<&NotificationRequest> =
            primaries.iter().map(|(_, r)| *r).collect();
        let settled = self.process_distinct(&primary_requests).await;
        for ((i, _), disposition) in primaries.iter().zip(settled) {
            dispositions[*i] = Some(disposition);
        }
        dispositions
            .into_iter()
            .map(|d| d.unwrap_or(Disposition::Retry))
            .collect()
    }

    /// Claims, sends and records requests with distinct ids.
    async fn process_distinct(&self, requests: &[&NotificationRequest]) -> Vec<Disposition> {
        if requests.is_empty() {
            return Vec::new();
        }
        let rows: Vec<NewDelivery> = requests.iter().map(|r| new_delivery(r)).collect();
        let mut claims = match with_db_retries("claim deliveries", || {
            deliveries::claim(&self.inner.pool, &rows, self.inner.lease)
        })
        .await
        {
            Ok(claims) => claims,
            Err(_) => return vec![Disposition::Retry; requests.len()],
        };

        // Another sender is on some of them (a redelivery overtook its first
        // delivery): wait for it to finish or for its lease to run out, then claim
        // those again. Rare, and bounded by the lease.
        let waiting: Vec<usize> = (0..claims.len())
            .filter(|&i| claims[i] == Claim::InFlight)
            .collect();
        if !waiting.is_empty() {
            let ids: Vec<String> = waiting
                .iter()
                .map(|&i| rows[i].notification_id.clone())
                .collect();
            self.wait_for_leases(&ids).await;
            let again: Vec<NewDelivery> = waiting.iter().map(|&i| rows[i].clone()).collect();
            if let Ok(reclaimed) =
                deliveries::claim(&self.inner.pool, &again, self.inner.lease).await
            {
                for (&i, claim) in waiting.iter().zip(reclaimed) {
                    claims[i] = claim;
                }
            }
        }

        // Send what we claimed, concurrently, bounded.
        let claimed: Vec<usize> = (0..claims.len())
            .filter(|&i| matches!(claims[i], Claim::Claimed { .. }))
            .collect();
        let mut outcomes: Vec<(usize, SendOutcome)> = futures_util::stream::iter(claimed.iter().copied())
            .map(|i| {
                let request = requests[i];
                let claim = claims[i];
                async move {
                    if let Claim::Claimed { resumed: true, attempts } = claim {
                        metrics::ambiguous_send(self.tenant_label(request), "interrupted");
                        tracing::warn!(
                            notification_id = %request.notification_id,
                            attempts,
                            "Resending a request whose previous attempt ended without a result; Zalo may have accepted it."
                        );
                    }
                    (i, self.attempt(request).await)
                }
            })
            .buffer_unordered(self.inner.max_in_flight)
            .collect()
            .await;
        outcomes.sort_by_key(|(i, _)| *i);

        // Record the batch's results in one statement before settling anything.
        let decided: Vec<(usize, Decision)> = outcomes
            .iter()
            .map(|(i, outcome)| (*i, decide(outcome)))
            .collect();
        let records: Vec<Outcome> = decided
            .iter()
            .zip(&outcomes)
            .map(|((i, decision), (_, outcome))| record_of(requests[*i], outcome, decision))
            .collect();
        let recorded = with_db_retries("record deliveries", || {
            deliveries::record(&self.inner.pool, &records)
        })
        .await
        .is_ok();

        let mut dispositions = vec![Disposition::Retry; requests.len()];
        for (i, claim) in claims.iter().enumerate() {
            match claim {
                Claim::AlreadySent => {
                    self.count(requests[i], Channel::for_request(requests[i]), "duplicate");
                    dispositions[i] = Disposition::Ack;
                }
                Claim::InFlight => {
                    self.count(
                        requests[i],
                        Channel::for_request(requests[i]),
                        "retry_in_flight",
                    );
                }
                Claim::Claimed { .. } => {}
            }
        }
        for ((i, decision), (_, outcome)) in decided.into_iter().zip(&outcomes) {
            let request = requests[i];
            let channel = Channel::for_request(request);
            if !recorded {
                // Unrecorded: give it back. A sent one may be resent after its lease.
                self.count(request, channel, "retry_unrecorded");
                continue;
            }
            dispositions[i] = match decision {
                Decision::Sent => {
                    self.count(request, channel, "sent");
                    Disposition::Ack
                }
                Decision::Fail { reason } => {
                    let unsendable = matches!(outcome, SendOutcome::Unsendable(_));
                    self.count(
                        request,
                        channel,
                        if unsendable { "invalid" } else { "failed" },
                    );
                    tracing::warn!(
                        notification_id = %request.notification_id,
                        tenant = %request.tenant,
                        kind = %request.kind,
                        reason = %reason,
                        "Delivery failed permanently; dead-lettering it."
                    );
                    Disposition::DeadLetter(reason)
                }
                Decision::Retry { class, reason } => {
                    if class == ErrorClass::Ambiguous {
                        metrics::ambiguous_send(self.tenant_label(request), "timeout");
                    }
                    self.count(request, channel, &format!("retry_{class}"));
                    tracing::info!(
                        notification_id = %request.notification_id,
                        tenant = %request.tenant,
                        error.class = %class,
                        reason = %reason,
                        "Delivery failed for now; returning it to the queue."
                    );
                    Disposition::Retry
                }
            };
        }
        dispositions
    }

    /// One attempt at one request: picks the channel and template, gets a token,
    /// sends, and on a refused token refreshes once and sends once more.
    #[tracing::instrument(skip_all, fields(notification_id = %request.notification_id, tenant = %request.tenant, kind = %request.kind))]
    pub async fn attempt(&self, request: &NotificationRequest) -> SendOutcome {
        let Some(tenant) = self.inner.tenants.get(&request.tenant) else {
            return SendOutcome::Unsendable(format!("unknown tenant `{}`", request.tenant));
        };
        let Some(template_id) = tenant.zalo.template_for(request.kind) else {
            return SendOutcome::Unsendable(format!(
                "no Zalo template configured for kind `{}` in tenant `{}`",
                request.kind, tenant.id
            ));
        };
        let channel = Channel::for_request(request);
        if channel == Channel::None {
            return SendOutcome::Unsendable(
                "the request has neither a phone number nor a Zalo user id".to_owned(),
            );
        }

        let token = match self.inner.tokens.access_token(&tenant.id).await {
            Ok(t) => t,
            Err(e) => return no_token(e),
        };
        let send = |token: loa_platform::Secret| async move {
            let app = &tenant.zalo;
            match channel {
                Channel::Zns => {
                    let phone = request.recipient.phone.as_deref().unwrap_or_default();
                    tracing::debug!(phone = %mask_phone(phone), template_id, "Sending a ZNS message.");
                    let message = ZnsMessage {
                        phone,
                        template_id,
                        template_data: &request.params,
                        tracking_id: &request.notification_id,
                    };
                    self.inner
                        .zalo
                        .send_zns(app, token.expose(), &message)
                        .await
                }
                _ => {
                    let message = OaTemplateMessage {
                        user_id: request
                            .recipient
                            .zalo_user_id
                            .as_deref()
                            .unwrap_or_default(),
                        template_id,
                        template_data: &request.params,
                        tracking_id: &request.notification_id,
                    };
                    self.inner
                        .zalo
                        .send_oa_template(app, token.expose(), &message)
                        .await
                }
            }
        };

        let sent = |accepted: Accepted| {
            if let Some(at) = request.event_accepted_at {
                metrics::event_to_send(request.kind.as_str(), at);
            }
            SendOutcome::Sent(accepted)
        };
        match send(token.clone()).await {
            Ok(accepted) => sent(accepted),
            Err(failure) if failure.class == ErrorClass::RefreshToken => {
                tracing::info!(code = ?failure.code, "Zalo refused the access token; refreshing it and retrying once.");
                let fresh = match self.inner.tokens.replace_rejected(&tenant.id, &token).await {
                    Ok(t) => t,
                    Err(e) => return no_token(e),
                };
                match send(fresh).await {
                    Ok(accepted) => sent(accepted),
                    Err(failure) => SendOutcome::Failed(failure),
                }
            }
            Err(failure) => SendOutcome::Failed(failure),
        }
    }

    /// Polls until none of `ids` is leased by another sender, at most one lease long.
    async fn wait_for_leases(&self, ids: &[String]) {
        let deadline = tokio::time::Instant::now() + self.inner.lease + Duration::from_secs(1);
        while tokio::time::Instant::now() < deadline {
            match deliveries::any_in_flight(&self.inner.pool, ids).await {
                Ok(false) => return,
                Ok(true) => {}
                Err(e) => tracing::warn!(error.message = %e, "Failed to read delivery leases."),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn count(&self, request: &NotificationRequest, channel: Channel, outcome: &str) {
        metrics::delivery(
            self.tenant_label(request),
            channel.as_str(),
            request.kind.as_str(),
            outcome,
        );
    }

    /// The tenant as a metrics label: only configured ids, so labels stay bounded.
    fn tenant_label<'a>(&self, request: &'a NotificationRequest) -> &'a str {
        if self.inner.tenants.get(&request.tenant).is_some() {
            request.tenant.as_str()
        } else {
            "unknown"
        }
    }
}

fn no_token(e: TokenError) -> SendOutcome {
    match e {
        TokenError::Refused(failure) => {
            let class = TokenError::Refused(failure.clone()).class();
            SendOutcome::NoToken {
                class,
                reason: format!("no access token: {}", failure.reason()),
            }
        }
        TokenError::UnknownTenant(t) => SendOutcome::Unsendable(format!("unknown tenant `{t}`")),
        e @ TokenError::Unexpected(_) => SendOutcome::NoToken {
            class: e.class(),
            reason: format!("no access token: {e:#}"),
        },
    }
}

fn new_delivery(request: &NotificationRequest) -> NewDelivery {
    NewDelivery {
        notification_id: request.notification_id.clone(),
        tenant: request.tenant.clone(),
        kind: request.kind.as_str().to_owned(),
        lane: match request.lane {
            loa_contracts::Lane::Transactional => "transactional",
            loa_contracts::Lane::Broadcast => "broadcast",
        }
        .to_owned(),
        dossier_code: request.dossier_code.clone(),
        channel: Channel::for_request(request).as_str().to_owned(),
        event_accepted_at: request.event_accepted_at,
    }
}

fn record_of(request: &NotificationRequest, outcome: &SendOutcome, decision: &Decision) -> Outcome {
    let (status, zalo_msg_id, error_code, error) = match (decision, outcome) {
        (Decision::Sent, SendOutcome::Sent(accepted)) => {
            (Status::Sent, Some(accepted.msg_id.clone()), None, None)
        }
        (Decision::Sent, _) => (Status::Sent, None, None, None),
        (Decision::Fail { reason }, o) => (Status::Failed, None, code_of(o), Some(reason.clone())),
        (Decision::Retry { reason, .. }, o) => {
            (Status::Pending, None, code_of(o), Some(reason.clone()))
        }
    };
    Outcome {
        notification_id: request.notification_id.clone(),
        status,
        channel: Channel::for_request(request).as_str().to_owned(),
        zalo_msg_id,
        error_code,
        error,
    }
}

fn code_of(outcome: &SendOutcome) -> Option<i32> {
    match outcome {
        SendOutcome::Failed(f) => f.code.and_then(|c| i32::try_from(c).ok()),
        _ => None,
    }
}

fn envelope_type(envelope: &Envelope) -> &'static str {
    match envelope {
        Envelope::DossierEventV1(_) => "dossier_event.v1",
        Envelope::NotificationRequestV1(_) => "notification_request.v1",
    }
}

/// Runs a database step again with a back-off when it fails, so a blip does not send
/// a whole batch back to the queue (which would burn its delivery limit).
async fn with_db_retries<T, F, Fut>(what: &'static str, mut step: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    // About 11 s in all: a batch returned to the queue costs each of its messages one
    // of its ten deliveries, so a short database outage must not.
    const DELAYS_MS: [u64; 5] = [200, 800, 2_000, 4_000, 4_000];
    let mut attempt = 0;
    loop {
        match step().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt >= DELAYS_MS.len() => {
                tracing::error!(step = what, error.cause_chain = ?e, error.message = %e, "Database step failed; returning the batch to the queue.");
                return Err(e);
            }
            Err(e) => {
                tracing::warn!(step = what, attempt, error.message = %e, "Database step failed; retrying.");
                tokio::time::sleep(Duration::from_millis(DELAYS_MS[attempt])).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zalo::Api;

    fn failure(code: i64) -> ZaloFailure {
        crate::zalo::parse_envelope(
            Api::Zns,
            200,
            format!(r#"{{"error":{code},"message":"m"}}"#).as_bytes(),
        )
        .unwrap_err()
    }

    #[test]
    fn success_is_recorded_as_sent() {
        let accepted = Accepted {
            msg_id: "x".into(),
            daily_quota: None,
            remaining_quota: None,
        };
        assert_eq!(decide(&SendOutcome::Sent(accepted)), Decision::Sent);
    }

    #[test]
    fn permanent_errors_fail_with_the_code_and_message() {
        assert_eq!(
            decide(&SendOutcome::Failed(failure(-108))),
            Decision::Fail {
                reason: "zalo error -108: m".into()
            }
        );
        assert!(matches!(
            decide(&SendOutcome::Failed(failure(-109))),
            Decision::Fail { .. }
        ));
        assert!(matches!(
            decide(&SendOutcome::Unsendable("no template".into())),
            Decision::Fail { .. }
        ));
    }

    #[test]
    fn everything_else_goes_back_to_the_queue_with_its_class() {
        for (code, class) in [
            (-100, ErrorClass::Transient),
            (-124, ErrorClass::RefreshToken),
            (-133, ErrorClass::DeferNight),
            (-144, ErrorClass::DeferQuota),
            (-115, ErrorClass::NeedsOperator),
        ] {
            match decide(&SendOutcome::Failed(failure(code))) {
                Decision::Retry { class: c, .. } => assert_eq!(c, class, "{code}"),
                other => panic!("{code}: {other:?}"),
            }
        }
    }
}
