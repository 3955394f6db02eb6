//! The unit of work: a batch of notification requests becomes Zalo messages, delivery
//! records and one [`Disposition`] per AMQP delivery.
//!
//! For each batch:
//! 1. decode every body (undecodable → dead letter at once) with its `x-loa-attempt`,
//!    and fold duplicates of the same notification id onto one request;
//! 2. claim all of them in `notifier.deliveries` with one statement, under a short
//!    lease this process renews while it lives ([`super::leases`]): an id already
//!    sent (or delivered, or seen) is acked without sending, and so is one parked in
//!    the table (deferred, held, ambiguous: the scheduler owns it); a copy of one that
//!    another sender holds right now is parked on its row and acked, never waited
//!    for (the scheduler republishes it if that sender dies); one whose earlier send
//!    is in doubt (its sender died after dispatching it, or an ambiguous send came
//!    due) is first looked up among the stored delivery receipts, and a receipt
//!    carrying its tracking id settles it without a resend; an interrupted one
//!    without a receipt is parked as ambiguous to wait for one;
//! 3. check what can be decided without Zalo: unknown tenant or template, no
//!    recipient (fail), `not_before` ahead (defer); plan each request's channels
//!    ([`super::channel`], one subscribers look-up for the batch);
//! 4. send in rounds: per tenant, one call of the gate ([`crate::limits::ratelimit`]) reads the
//!    pause and the quota and reserves paced send slots; the granted requests are
//!    sent concurrently, each marked dispatched right before its call (at most `max_in_flight` Zalo calls), each leaving at its slot; a
//!    refused token is refreshed and the request resent, a recipient error moves the
//!    request to its other channel, and both go round again (through the gate: every
//!    Zalo call has a slot);
//! 5. turn every outcome into a decision with [`super::policy::decide`], the one policy
//!    function; pause the tenant on an operator error, slow it down on `-32`, store
//!    what the answers said about the ZNS quota;
//! 6. record the whole batch's results with one statement (parked requests with their
//!    body), publish the retries to their delay queues with confirms, and only then
//!    let the consumer ack or dead-letter.
//!
//! If the results cannot be recorded the batch goes back to the queue: a failed send
//! is never lost, and a sent one is in doubt like an interrupted one (receipt first,
//! then a resend after the recheck time, counted in
//! `loa_notifier_ambiguous_resends_total`).

use super::{
    channel::{self, Channel, Route},
    delay_queues::{DelayQueues, DelayedRetry},
    leases::Leases,
    policy::{self, Context, Decision, RetrySettings, SendOutcome},
};
use crate::{
    broadcasts::gate::{self, Verdict},
    clock::Clock,
    deliveries::{
        self, Claim, DeliveryStatus, NewDelivery, Outcome, Prior, Record, Status, Transition,
    },
    limits::{
        pacer::Pacer,
        pause, quota,
        ratelimit::{RateLimiter, Want},
    },
    metrics,
    zalo::{
        Accepted, CsMessage, CsRecipient, CsText, ErrorClass, OaTemplateMessage, TokenError,
        TokenManager, ZaloClient, ZnsMessage,
    },
    zalo_webhooks,
};
use anyhow::Context as _;
use deadpool_postgres::Pool;
use futures_util::StreamExt;
use lapin::message::Delivery;
use loa_contracts::{phone::mask_phone, Envelope, Lane, NotificationRequest};
use loa_platform::{
    amqp::{consumer::header, topology, Disposition, OutgoingMessage},
    telemetry,
    tenants::ZaloAppSettings,
    LiveTenants, Secret, TenantSettings,
};
use serde_json::json;
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};
use tokio::time::Instant;
use tracing::Instrument;

/// How often a batch still waiting for send slots looks at its broadcasts again
/// (pause, cancel, end, quiet hours take effect within this, plus one send).
const BROADCAST_RECHECK: Duration = Duration::from_millis(500);

/// Why a rating request to a citizen reached only by ZNS is not sent: the tenant has
/// no ZNS rating template (type 5), and the result's message already links to the
/// rating form, so a second paid message would double the cost of status 10.
pub const RATING_IN_RESULT_MESSAGE: &str = "rating_in_result_message";

/// One decoded request with what its AMQP message said about it.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    /// The request.
    pub request: NotificationRequest,
    /// Its attempt number (`x-loa-attempt`, 1 when absent).
    pub attempt: u32,
    /// The routing key it came with (retries keep it).
    pub routing_key: Option<String>,
}

impl Incoming {
    /// A first attempt at `request`.
    pub(crate) fn new(request: NotificationRequest) -> Self {
        Self {
            request,
            attempt: 1,
            routing_key: None,
        }
    }

    /// A decoded body with its delivery's attempt header and routing key.
    fn from_envelope(
        envelope: Result<Envelope, serde_json::Error>,
        delivery: &Delivery,
    ) -> Result<Self, String> {
        let request = match envelope {
            Ok(Envelope::NotificationRequestV1(r)) => r,
            Ok(other) => {
                return Err(format!(
                    "not a notification request: {}",
                    envelope_type(&other)
                ))
            }
            Err(e) => return Err(format!("undecodable notification request: {e}")),
        };
        let attempt = header(delivery, topology::H_ATTEMPT)
            .and_then(|a| a.trim().parse::<u32>().ok())
            .unwrap_or(1)
            .max(1);
        Ok(Self {
            request,
            attempt,
            routing_key: Some(delivery.routing_key.as_str().to_owned()).filter(|k| !k.is_empty()),
        })
    }
}

/// What one delivery carries: a request (or why it cannot be read), or a batch of
/// requests packed by the tracker's relay.
// Lives only between decoding and processing; boxing would cost an allocation per
// message for nothing.
#[allow(clippy::large_enum_variant)]
enum Unpacked {
    /// One request, or why the body is not one.
    One(Result<Incoming, String>),
    /// The requests of a `notification_batch.v1`, each a first attempt with no routing
    /// key of its own (a retry takes its request's).
    Batch(Vec<Incoming>),
}

impl Unpacked {
    /// Reads a delivery.
    fn from_delivery(delivery: &Delivery) -> Self {
        match Envelope::from_bytes(&delivery.data) {
            Ok(Envelope::NotificationBatchV1(batch)) => {
                Self::Batch(batch.requests.into_iter().map(Incoming::new).collect())
            }
            other => Self::One(Incoming::from_envelope(other, delivery)),
        }
    }
}

/// What a [`Sender`] is made of.
pub(crate) struct SenderParts {
    /// The notifier's database.
    pub pool: Pool,
    /// The Zalo client.
    pub zalo: ZaloClient,
    /// Access tokens.
    pub tokens: Arc<TokenManager>,
    /// Tenants (Zalo apps, templates, limits), as the tenants file says now.
    pub tenants: LiveTenants,
    /// The wall clock of deferrals.
    pub clock: Clock,
    /// The shared rate limit, pause and quota gate.
    pub limiter: RateLimiter,
    /// Where retries wait.
    pub delays: Arc<DelayQueues>,
    /// The retry policy's knobs.
    pub retry: RetrySettings,
    /// Most concurrent Zalo calls per batch.
    pub max_in_flight: usize,
    /// This process's claims: short leases, renewed while it lives.
    pub leases: Arc<Leases>,
    /// Where each send's dispatch mark is written before its call.
    pub marks: deliveries::DispatchMarks,
    /// Spreads late sends that would leave together (see [`crate::limits::pacer`]).
    pub pacer: Pacer,
    /// The tenants whose ZNS quota this process asked Zalo for, per quota day.
    pub quota_asked: quota::Asked,
}

/// Sends notification requests. Cheap to clone (`Arc` inside).
#[derive(Clone)]
pub(crate) struct Sender {
    inner: Arc<SenderParts>,
}

/// A request being sent: where it stands within this batch.
#[derive(Clone)]
struct Work<'a> {
    /// Index among the batch's distinct requests.
    at: usize,
    incoming: &'a Incoming,
    tenant: &'a TenantSettings,
    template_id: &'a str,
    route: Route,
    channel: Channel,
    refreshed: bool,
    attempted: bool,
    /// An earlier attempt timed out and no receipt came: sending it is a resend.
    resend: bool,
}

/// How a request's attempt ended.
struct Settled {
    outcome: SendOutcome,
    decision: Decision,
    channel: Channel,
    attempted: bool,
}

impl Sender {
    /// Assembles a sender.
    pub(crate) fn new(parts: SenderParts) -> Self {
        let mut parts = parts;
        parts.max_in_flight = parts.max_in_flight.max(1);
        Self {
            inner: Arc::new(parts),
        }
    }

    /// Declares the retry delay queues, trying again until it works or `cancel` fires,
    /// so the first retry does not wait for their declaration.
    pub(crate) async fn declare_delay_queues(&self, cancel: tokio_util::sync::CancellationToken) {
        let mut attempt = 0;
        while let Err(e) = self.inner.delays.declare().await {
            tracing::warn!(error.message = %e, "Failed to declare the retry delay queues; trying again.");
            attempt += 1;
            if !loa_platform::amqp::backoff(attempt, &cancel).await {
                return;
            }
        }
    }

    /// The batch consumer's handler: decodes the bodies (unpacking batches of
    /// requests) and processes every request; one disposition per delivery.
    ///
    /// A packed delivery is acked once each of its requests is settled: sent, parked,
    /// in a delay queue, or dead-lettered on its own (published to `loa.dead` with its
    /// reason, confirmed, before the ack). If any of its requests must go back to the
    /// queue, the whole delivery does; its settled requests are then recognised by
    /// their claims and not sent again.
    pub(crate) async fn handle_deliveries(&self, batch: &[Delivery]) -> Vec<Disposition> {
        let mut items = Vec::with_capacity(batch.len());
        let mut owners = Vec::with_capacity(batch.len());
        let mut packed = vec![false; batch.len()];
        for (d, delivery) in batch.iter().enumerate() {
            match Unpacked::from_delivery(delivery) {
                Unpacked::One(item) => {
                    items.push(item);
                    owners.push(d);
                }
                Unpacked::Batch(requests) => {
                    packed[d] = true;
                    for request in requests {
                        items.push(Ok(request));
                        owners.push(d);
                    }
                }
            }
        }
        let decided = self.process(&items).await;
        if !packed.contains(&true) {
            return decided;
        }

        // A single delivery's is set below; a pack starts acked and loses that on the
        // first request that goes back to the queue.
        let mut dispositions: Vec<Disposition> = packed
            .iter()
            .map(|&p| {
                if p {
                    Disposition::Ack
                } else {
                    Disposition::Retry
                }
            })
            .collect();
        let mut letters: Vec<(usize, OutgoingMessage)> = Vec::new();
        for (i, disposition) in decided.into_iter().enumerate() {
            let d = owners[i];
            if !packed[d] {
                dispositions[d] = disposition;
                continue;
            }
            match disposition {
                Disposition::Ack => {}
                Disposition::Retry => dispositions[d] = Disposition::Retry,
                Disposition::DeadLetter(reason) => {
                    if let Ok(incoming) = &items[i] {
                        letters.push((d, dead_letter_of(&incoming.request, &reason)));
                    }
                }
            }
        }
        // Dead letters of requests whose delivery goes back to the queue anyway are
        // decided again when it returns.
        letters.retain(|(d, _)| dispositions[*d] == Disposition::Ack);
        if !letters.is_empty() {
            let messages: Vec<OutgoingMessage> = letters.iter().map(|(_, m)| m.clone()).collect();
            if let Err(e) = self.inner.delays.publisher().publish_all(&messages).await {
                tracing::error!(error.message = %e, count = messages.len(), "Failed to dead-letter requests of a packed delivery; returning it to the queue.");
                for (d, _) in &letters {
                    dispositions[*d] = Disposition::Retry;
                }
            }
        }
        dispositions
    }

    /// Processes a batch of decoded requests (or decoding errors) and returns one
    /// disposition per item, in order. Every delivery record is durable, and every
    /// retry confirmed by the broker, before this returns.
    pub(crate) async fn process(&self, items: &[Result<Incoming, String>]) -> Vec<Disposition> {
        let mut dispositions: Vec<Option<Disposition>> = vec![None; items.len()];
        let mut primaries: Vec<(usize, &Incoming)> = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            match item {
                Err(reason) => {
                    tracing::warn!(reason, "Refusing an undecodable notification request.");
                    metrics::delivery("unknown", Channel::None.as_str(), "unknown", "invalid");
                    dispositions[i] = Some(Disposition::DeadLetter(reason.clone()));
                }
                Ok(incoming) => {
                    let request = &incoming.request;
                    if seen.insert(request.notification_id.as_str(), i).is_some() {
                        // Another copy in this batch carries it.
                        self.count(request, Channel::for_request(request), "duplicate");
                        dispositions[i] = Some(Disposition::Ack);
                    } else {
                        primaries.push((i, incoming));
                    }
                }
            }
        }
        let distinct: Vec<&Incoming> = primaries.iter().map(|(_, r)| *r).collect();
        let settled = self.process_distinct(&distinct).await;
        for ((i, _), disposition) in primaries.iter().zip(settled) {
            dispositions[*i] = Some(disposition);
        }
        dispositions
            .into_iter()
            .map(|d| d.unwrap_or(Disposition::Retry))
            .collect()
    }

    /// Claims, sends, records and settles requests with distinct ids.
    async fn process_distinct(&self, items: &[&Incoming]) -> Vec<Disposition> {
        if items.is_empty() {
            return Vec::new();
        }
        let requests: Vec<&NotificationRequest> = items.iter().map(|i| &i.request).collect();
        let rows: Vec<NewDelivery> = requests.iter().map(|r| new_delivery(r)).collect();
        let pool = &self.inner.pool;
        let leases = &self.inner.leases;
        let mut claims = match with_db_retries("claim deliveries", || {
            deliveries::claim(pool, &rows, leases.period(), leases.owner())
        })
        .await
        {
            Ok(claims) => claims,
            Err(_) => return vec![Disposition::Retry; items.len()],
        };
        let parked_behind = self.park_behind_leases(&requests, &rows, &mut claims).await;
        let held: Vec<&str> = (0..claims.len())
            .filter(|&i| matches!(claims[i], Claim::Claimed { .. }))
            .map(|i| requests[i].notification_id.as_str())
            .collect();
        leases.hold(held.iter().copied());
        let delivered = self.settle_from_receipts(&requests, &claims).await;
        let priors: Vec<Prior> = claims
            .iter()
            .map(|c| match c {
                Claim::Claimed { prior, .. } => *prior,
                _ => Prior::Known,
            })
            .collect();

        let claimed: Vec<usize> = (0..claims.len())
            .filter(|&i| matches!(claims[i], Claim::Claimed { .. }) && !delivered.contains(&i))
            .collect();
        let mut settled: HashMap<usize, Settled> = HashMap::new();
        let mut transitions: Vec<Transition> = Vec::new();
        self.send_all(items, &claimed, &priors, &mut settled, &mut transitions)
            .await;

        // Record the batch's results in one statement before settling anything.
        let records: Vec<Record> = claimed
            .iter()
            .filter_map(|i| settled.get(i).map(|s| record_of(requests[*i], s)))
            .collect();
        transitions.extend(
            claimed
                .iter()
                .filter_map(|i| settled.get(i).and_then(|s| transition_of(requests[*i], s))),
        );
        let recorded = with_db_retries("record deliveries", || {
            record_with_history(pool, &records, &transitions)
        })
        .await
        .is_ok();
        // Recorded, or given back to the queue: either way this sender is done with
        // them (an unrecorded lease lapses within one period).
        leases.release(held);

        // Retries wait in their delay queue before the originals are acked.
        let mut retries: Vec<(usize, DelayedRetry<'_>)> = Vec::new();
        if recorded {
            for &i in &claimed {
                if let Some(Settled {
                    decision:
                        Decision::Retry {
                            delay,
                            next_attempt,
                            ..
                        },
                    ..
                }) = settled.get(&i)
                {
                    retries.push((
                        i,
                        DelayedRetry {
                            request: requests[i],
                            routing_key: items[i]
                                .routing_key
                                .clone()
                                .unwrap_or_else(|| requests[i].routing_key()),
                            attempt: *next_attempt,
                            delay: *delay,
                        },
                    ));
                }
            }
        }
        let delayed: Vec<DelayedRetry<'_>> = retries.iter().map(|(_, r)| r.clone()).collect();
        let retries_published = match self.inner.delays.publish(&delayed).await {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error.message = %e, count = delayed.len(), "Failed to publish retries to their delay queue; returning them to the work queue.");
                false
            }
        };

        let mut dispositions = vec![Disposition::Retry; items.len()];
        for (i, claim) in claims.iter().enumerate() {
            let request = requests[i];
            match claim {
                Claim::AlreadySent => {
                    self.count(request, Channel::for_request(request), "duplicate");
                    dispositions[i] = Disposition::Ack;
                }
                Claim::Parked => {
                    self.count(request, Channel::for_request(request), "duplicate_parked");
                    dispositions[i] = Disposition::Ack;
                }
                Claim::InFlight if parked_behind.contains(&i) => {
                    self.count(
                        request,
                        Channel::for_request(request),
                        "parked_behind_lease",
                    );
                    dispositions[i] = Disposition::Ack;
                }
                Claim::InFlight => {
                    self.count(request, Channel::for_request(request), "retry_in_flight");
                }
                Claim::Claimed { .. } if delivered.contains(&i) => {
                    self.count(
                        request,
                        Channel::for_request(request),
                        "duplicate_delivered",
                    );
                    dispositions[i] = Disposition::Ack;
                }
                Claim::Claimed { .. } => {
                    let Some(s) = settled.get(&i) else { continue };
                    dispositions[i] = self.settle(request, s, recorded, retries_published);
                }
            }
        }
        dispositions
    }

    /// Parks the copies of requests another sender holds ([`Claim::InFlight`]) on
    /// their rows, to be acked; an id whose lease ended meanwhile is claimed again.
    /// Returns the indexes parked. Never waits for the holder: a lease held by a dead
    /// sender must not hold up the rest of the batch.
    async fn park_behind_leases(
        &self,
        requests: &[&NotificationRequest],
        rows: &[NewDelivery],
        claims: &mut [Claim],
    ) -> HashSet<usize> {
        let in_flight: Vec<usize> = (0..claims.len())
            .filter(|&i| claims[i] == Claim::InFlight)
            .collect();
        if in_flight.is_empty() {
            return HashSet::new();
        }
        let copies: Vec<(&str, serde_json::Value)> = in_flight
            .iter()
            .filter_map(|&i| {
                let body =
                    serde_json::to_value(Envelope::NotificationRequestV1(requests[i].clone()))
                        .ok()?;
                Some((requests[i].notification_id.as_str(), body))
            })
            .collect();
        let pool = &self.inner.pool;
        let parked_ids = match deliveries::park_behind_lease(pool, &copies).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error.message = %e, "Failed to park copies behind their leases; returning them to the queue.");
                return HashSet::new();
            }
        };
        let mut parked = HashSet::new();
        let mut again = Vec::new();
        for &i in &in_flight {
            if parked_ids.contains(&requests[i].notification_id) {
                parked.insert(i);
            } else {
                again.push(i);
            }
        }
        if !again.is_empty() {
            let rows: Vec<NewDelivery> = again.iter().map(|&i| rows[i].clone()).collect();
            let leases = &self.inner.leases;
            if let Ok(reclaimed) =
                deliveries::claim(pool, &rows, leases.period(), leases.owner()).await
            {
                for (&i, claim) in again.iter().zip(reclaimed) {
                    claims[i] = claim;
                }
            }
        }
        parked
    }

    /// For claimed requests whose earlier send is in doubt, looks for a delivery
    /// receipt already stored under their tracking id: each one found settles its
    /// request as delivered (never resent). Returns the indexes so settled, and
    /// counts the doubts.
    async fn settle_from_receipts(
        &self,
        requests: &[&NotificationRequest],
        claims: &[Claim],
    ) -> HashSet<usize> {
        let doubtful: Vec<usize> = (0..claims.len())
            .filter(|&i| matches!(claims[i], Claim::Claimed { prior, .. } if prior != Prior::Known))
            .collect();
        if doubtful.is_empty() {
            return HashSet::new();
        }
        let keys: Vec<(&str, &str)> = doubtful
            .iter()
            .map(|&i| {
                (
                    requests[i].tenant.as_str(),
                    requests[i].notification_id.as_str(),
                )
            })
            .collect();
        let proven = match zalo_webhooks::settle_from_stored_receipts(&self.inner.pool, &keys).await
        {
            Ok(proven) => proven,
            Err(e) => {
                tracing::warn!(error.message = %e, "Failed to look up stored receipts; treating the sends as unproven.");
                HashSet::new()
            }
        };
        let mut delivered = HashSet::new();
        for &i in &doubtful {
            let request = requests[i];
            if proven.contains(&request.notification_id) {
                tracing::info!(
                    notification_id = %request.notification_id,
                    tenant = %request.tenant,
                    "A stored delivery receipt proves an earlier send; not sending it again."
                );
                delivered.insert(i);
            } else if let Claim::Claimed {
                prior: Prior::Interrupted,
                attempts,
            } = claims[i]
            {
                metrics::ambiguous_send(self.tenant_label(request), "interrupted");
                tracing::warn!(
                    notification_id = %request.notification_id,
                    tenant = %request.tenant,
                    attempts,
                    "A sender stopped after dispatching this request; waiting for its receipt before any resend."
                );
            }
        }
        delivered
    }

    /// Counts, logs and turns one settled request into its disposition.
    fn settle(
        &self,
        request: &NotificationRequest,
        s: &Settled,
        recorded: bool,
        retries_published: bool,
    ) -> Disposition {
        let tenant = self.tenant_label(request);
        if !recorded {
            // Unrecorded: give it back. A sent one may be resent after its lease.
            self.count(request, s.channel, "retry_unrecorded");
            return Disposition::Retry;
        }
        if request.broadcast.is_some() {
            let state = match &s.decision {
                Decision::Sent => Some("sent"),
                Decision::Fail { .. } => Some("failed"),
                Decision::Skip { .. } => Some("skipped"),
                Decision::Defer { .. } | Decision::Hold { .. } | Decision::Park { .. } => {
                    Some("deferred")
                }
                Decision::Retry { .. } | Decision::Refresh | Decision::Fallback => None,
            };
            if let Some(state) = state {
                metrics::broadcast_recipients(tenant, state, 1);
            }
        }
        match &s.decision {
            Decision::Sent => {
                self.count(request, s.channel, "sent");
                Disposition::Ack
            }
            Decision::Fail { reason, .. } => {
                let unsendable = matches!(s.outcome, SendOutcome::Unsendable(_));
                self.count(
                    request,
                    s.channel,
                    if unsendable { "invalid" } else { "failed" },
                );
                tracing::warn!(
                    notification_id = %request.notification_id,
                    tenant = %request.tenant,
                    kind = %request.kind,
                    reason = %reason,
                    "Delivery failed permanently; dead-lettering it."
                );
                Disposition::DeadLetter(reason.clone())
            }
            Decision::Retry {
                label,
                reason,
                delay,
                next_attempt,
                ..
            } => {
                self.count(request, s.channel, &format!("retry_{label}"));
                metrics::retry(tenant, label);
                tracing::info!(
                    notification_id = %request.notification_id,
                    tenant = %request.tenant,
                    error.class = label,
                    reason = %reason,
                    next_attempt,
                    delay_ms = delay.as_millis() as u64,
                    "Delivery failed for now; retrying it after a delay."
                );
                if retries_published {
                    Disposition::Ack
                } else {
                    Disposition::Retry
                }
            }
            Decision::Defer {
                label,
                reason,
                until,
                ..
            } => {
                self.count(request, s.channel, &format!("retry_{label}"));
                metrics::retry(tenant, label);
                tracing::info!(
                    notification_id = %request.notification_id,
                    tenant = %request.tenant,
                    reason = %reason,
                    until = %until,
                    "Delivery deferred."
                );
                Disposition::Ack
            }
            Decision::Park { reason, recheck_at } => {
                self.count(request, s.channel, "retry_ambiguous");
                metrics::retry(tenant, "ambiguous");
                metrics::ambiguous_send(tenant, "timeout");
                tracing::warn!(
                    notification_id = %request.notification_id,
                    tenant = %request.tenant,
                    reason = %reason,
                    recheck_at = %recheck_at,
                    "Zalo may have accepted this message; waiting for its receipt before resending."
                );
                Disposition::Ack
            }
            Decision::Hold { reason, .. } => {
                self.count(request, s.channel, "retry_held");
                metrics::retry(tenant, "held");
                tracing::info!(
                    notification_id = %request.notification_id,
                    tenant = %request.tenant,
                    reason = %reason,
                    "Delivery held until the tenant is resumed."
                );
                Disposition::Ack
            }
            Decision::Skip { reason } => {
                self.count(request, s.channel, &format!("skipped_{reason}"));
                Disposition::Ack
            }
            // Never final (they go round again); give it back to be safe.
            Decision::Refresh | Decision::Fallback => Disposition::Retry,
        }
    }

    /// Steps 3 to 5: decides every claimed request (`claimed` and `priors` index
    /// `items`). History rows of attempts that are not the final one (a channel that
    /// failed before the fallback) go to `history`.
    async fn send_all<'a>(
        &'a self,
        items: &[&'a Incoming],
        claimed: &[usize],
        priors: &[Prior],
        settled: &mut HashMap<usize, Settled>,
        history: &mut Vec<Transition>,
    ) {
        let now = self.inner.clock.now();
        // One version of the tenants for the whole batch.
        let tenants = self.inner.tenants.current();
        // Broadcast messages: still wanted, now, by this citizen, this month?
        let of_broadcasts: Vec<&NotificationRequest> = claimed
            .iter()
            .map(|&i| &items[i].request)
            .filter(|r| r.broadcast.is_some())
            .collect();
        let verdicts = match gate::verdicts(&self.inner.pool, &tenants, &of_broadcasts, now).await {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error.message = %e, "Failed to read the broadcasts of a batch; their messages go round again.");
                None
            }
        };
        let mut plans: Vec<(usize, &'a Incoming, &TenantSettings, &str)> = Vec::new();
        for &i in claimed {
            let incoming = items[i];
            let request = &incoming.request;
            if priors[i] == Prior::Interrupted {
                // Zalo may have it: wait for its receipt (parked), resend only after.
                let channel = Channel::for_request(request);
                let s = self.settled_early(SendOutcome::Interrupted, channel, false, incoming, now);
                settled.insert(i, s);
                continue;
            }
            let unsendable = |reason: String| {
                let channel = Channel::for_request(request);
                self.settled_early(
                    SendOutcome::Unsendable(reason),
                    channel,
                    false,
                    incoming,
                    now,
                )
            };
            let Some(tenant) = tenants.get(&request.tenant) else {
                settled.insert(
                    i,
                    unsendable(format!("unknown tenant `{}`", request.tenant)),
                );
                continue;
            };
            let template_id = if request.kind.is_consultation() {
                Some("")
            } else {
                tenant.zalo.template_for(request.kind)
            };
            let Some(template_id) = template_id else {
                // A province that registered no rating template asks for ratings on the
                // lookup page only: no error, nothing to replay.
                if request.kind == loa_contracts::NotificationKind::RatingRequest {
                    let channel = Channel::for_request(request);
                    let skipped = SendOutcome::Skipped("no_rating_template");
                    settled.insert(
                        i,
                        self.settled_early(skipped, channel, false, incoming, now),
                    );
                    continue;
                }
                settled.insert(
                    i,
                    unsendable(format!(
                        "no Zalo template configured for kind `{}` in tenant `{}`",
                        request.kind, tenant.id
                    )),
                );
                continue;
            };
            if request.broadcast.is_some() {
                let outcome = match verdicts.as_ref().map(|v| v.get(&request.notification_id)) {
                    Some(Some(Verdict::Send)) => None,
                    Some(Some(Verdict::Wait { until })) => Some(SendOutcome::NotYet(*until)),
                    Some(Some(Verdict::Skip(reason))) => Some(SendOutcome::Skipped(reason)),
                    Some(None) | None => Some(SendOutcome::NotDispatched(
                        "the broadcast gate could not be read".to_owned(),
                    )),
                };
                if let Some(outcome) = outcome {
                    let channel = Channel::for_request(request);
                    settled.insert(
                        i,
                        self.settled_early(outcome, channel, false, incoming, now),
                    );
                    continue;
                }
            }
            if let Some(until) = request.not_before.filter(|nb| *nb > now) {
                let s = self.settled_early(
                    SendOutcome::NotYet(until),
                    Channel::for_request(request),
                    false,
                    incoming,
                    now,
                );
                settled.insert(i, s);
                continue;
            }
            plans.push((i, incoming, tenant, template_id));
        }

        // Followers get the OA template: one look-up for the batch.
        let wanted: Vec<(&str, &str)> = plans
            .iter()
            .filter(|(_, inc, ..)| inc.request.recipient.zalo_user_id.is_none())
            .filter_map(|(_, inc, ..)| {
                inc.request
                    .recipient
                    .phone
                    .as_deref()
                    .map(|p| (inc.request.tenant.as_str(), p))
            })
            .collect();
        let followers = match channel::followers_by_phone(&self.inner.pool, &wanted).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error.message = %e, "Failed to look up followers; sending by phone.");
                HashMap::new()
            }
        };

        let mut pending: Vec<Work<'_>> = Vec::new();
        for (i, incoming, tenant, template_id) in plans {
            let request = &incoming.request;
            let follower = request.recipient.phone.as_ref().and_then(|p| {
                followers
                    .get(&(request.tenant.clone(), p.clone()))
                    .map(String::as_str)
            });
            let mut route = Route::plan(request, follower);
            if request.kind == loa_contracts::NotificationKind::RatingRequest
                && !tenant.zalo.zns_rating_template
            {
                // One paid ZNS at status 10, not two: the result's own message links
                // to the rating form. Followers still get the rating request (free).
                route = route.without_zns();
                if route.first() == Channel::None {
                    let skipped = SendOutcome::Skipped(RATING_IN_RESULT_MESSAGE);
                    let s = self.settled_early(skipped, Channel::Zns, false, incoming, now);
                    settled.insert(i, s);
                    continue;
                }
            }
            let channel = route.first();
            if channel == Channel::None {
                let s = self.settled_early(
                    SendOutcome::Unsendable(
                        "the request has neither a phone number nor a Zalo user id".to_owned(),
                    ),
                    channel,
                    false,
                    incoming,
                    now,
                );
                settled.insert(i, s);
                continue;
            }
            pending.push(Work {
                at: i,
                incoming,
                tenant,
                template_id,
                route,
                channel,
                refreshed: false,
                attempted: false,
                resend: priors[i] == Prior::Unanswered,
            });
        }

        let mut quotas: HashMap<String, quota::Observation> = HashMap::new();
        let mut paused: HashSet<String> = HashSet::new();
        let mut rechecked = Instant::now();
        while !pending.is_empty() {
            if rechecked.elapsed() >= BROADCAST_RECHECK {
                pending = self.recheck_broadcasts(pending, settled).await;
                rechecked = Instant::now();
                if pending.is_empty() {
                    break;
                }
            }
            let (sends, later, wait) = self.gate(pending, settled, &mut paused).await;
            if sends.is_empty() {
                pending = later;
                if !pending.is_empty() {
                    tokio::time::sleep(wait.max(Duration::from_millis(5))).await;
                }
                continue;
            }
            let max_in_flight = self.inner.max_in_flight;
            let (works, leave_at): (Vec<Work<'_>>, Vec<Instant>) = sends.into_iter().unzip();
            let results: Vec<(usize, SendOutcome, Option<Secret>)> =
                futures_util::stream::iter(0..works.len())
                    .map(|k| {
                        let (work, at) = (&works[k], leave_at[k]);
                        async move {
                            tokio::time::sleep_until(at).await;
                            if let Err(e) = self.dispatch(work).await {
                                let reason = format!("the send was not made: {e:#}");
                                return (k, SendOutcome::NotDispatched(reason), None);
                            }
                            let app = &work.tenant.zalo;
                            self.inner
                                .pacer
                                .wait(&work.tenant.id, app.rate_per_second, app.burst)
                                .await;
                            let (outcome, token) = self.send_once(work).await;
                            (k, outcome, token)
                        }
                    })
                    .buffer_unordered(max_in_flight)
                    .collect()
                    .await;

            let mut works: Vec<Option<Work<'_>>> = works.into_iter().map(Some).collect();
            let mut next = later;
            let mut slow_down: HashSet<&str> = HashSet::new();
            for (k, mut outcome, token) in results {
                let Some(mut work) = works[k].take() else {
                    continue;
                };
                work.attempted = true;
                let tenant = work.tenant.id.as_str();
                let observed = quotas.entry(tenant.to_owned()).or_default();
                if work.channel == Channel::Zns {
                    match &outcome {
                        SendOutcome::Sent(a) => observed.accepted(a.daily_quota, a.remaining_quota),
                        SendOutcome::Failed(f) if f.class == ErrorClass::Ambiguous => {}
                        // The gate reserved quota for a message Zalo did not take.
                        _ => {
                            observed.refund += 1;
                            if work.incoming.request.kind.is_promotion() {
                                observed.promotion_refund += 1;
                            }
                        }
                    }
                }
                let mut decision =
                    decide_for(&self.inner.retry, &outcome, &work, self.inner.clock.now());
                if decision == Decision::Refresh {
                    tracing::info!(
                        tenant,
                        "Zalo refused the access token; refreshing it and resending once."
                    );
                    let refreshed = match token {
                        Some(rejected) => {
                            self.inner.tokens.replace_rejected(tenant, &rejected).await
                        }
                        None => self.inner.tokens.access_token(tenant).await,
                    };
                    match refreshed {
                        Ok(_) => {
                            work.refreshed = true;
                            next.push(work);
                            continue;
                        }
                        Err(e) => {
                            outcome = no_token(e);
                            decision = decide_for(
                                &self.inner.retry,
                                &outcome,
                                &work,
                                self.inner.clock.now(),
                            );
                        }
                    }
                }
                match &decision {
                    Decision::Fallback => {
                        if let Some(other) = work.route.after(work.channel) {
                            history.push(channel_failed(&work, &outcome, other));
                            tracing::info!(
                                notification_id = %work.incoming.request.notification_id,
                                from = work.channel.as_str(),
                                to = other.as_str(),
                                "The recipient cannot get it on this channel; trying the other one."
                            );
                            work.channel = other;
                            work.refreshed = false;
                            next.push(work);
                            continue;
                        }
                    }
                    Decision::Retry {
                        slow_down: true, ..
                    } => {
                        slow_down.insert(tenant);
                    }
                    Decision::Defer {
                        exhausts_quota: true,
                        ..
                    } => observed.exhausted = true,
                    Decision::Hold {
                        pause: Some((code, reason)),
                        ..
                    } if paused.insert(tenant.to_owned()) => {
                        if let Err(e) = pause::pause(&self.inner.pool, tenant, *code, reason).await
                        {
                            tracing::error!(tenant, error.message = %e, "Failed to store the tenant's pause.");
                        }
                    }
                    _ => {}
                }
                settled.insert(
                    work.at,
                    Settled {
                        outcome,
                        decision,
                        channel: work.channel,
                        attempted: work.attempted,
                    },
                );
            }
            for tenant in slow_down {
                tracing::warn!(
                    tenant,
                    "Zalo rate-limited the tenant (-32); slowing every replica down."
                );
                if let Err(e) = self.inner.limiter.penalize(tenant).await {
                    tracing::warn!(tenant, error.message = %e, "Failed to push back the rate limit.");
                }
            }
            pending = next;
        }

        let day = loa_contracts::time::vietnam_day(&self.inner.clock.now());
        let seen: Vec<(&str, &quota::Observation)> =
            quotas.iter().map(|(t, o)| (t.as_str(), o)).collect();
        if let Err(e) = quota::observe_many(&self.inner.pool, day, &seen).await {
            tracing::warn!(error.message = %e, "Failed to store the ZNS quota.");
        }
    }

    /// One round of the gate: per tenant, reads the pause and quota and reserves
    /// slots. Returns the sends with the instant each may leave, the requests to try
    /// in a later round, and how long to wait when nothing could be sent now.
    #[allow(clippy::type_complexity)]
    async fn gate<'a>(
        &'a self,
        pending: Vec<Work<'a>>,
        settled: &mut HashMap<usize, Settled>,
        paused: &mut HashSet<String>,
    ) -> (Vec<(Work<'a>, Instant)>, Vec<Work<'a>>, Duration) {
        let mut by_tenant: HashMap<&str, (Vec<Work<'a>>, Vec<Work<'a>>)> = HashMap::new();
        for work in pending {
            let entry = by_tenant.entry(work.tenant.id.as_str()).or_default();
            if work.channel == Channel::Zns {
                entry.0.push(work);
            } else {
                entry.1.push(work);
            }
        }
        let mut sends = Vec::new();
        let mut later = Vec::new();
        let mut wait = Duration::from_secs(1);
        let now = self.inner.clock.now();
        let groups: Vec<(&str, &'a TenantSettings, Vec<Work<'a>>, Vec<Work<'a>>)> = by_tenant
            .into_iter()
            .filter_map(|(tenant_id, (zns, other))| {
                let tenant = zns.first().or(other.first())?.tenant;
                Some((tenant_id, tenant, zns, other))
            })
            .collect();
        // One gate call for every tenant of the round.
        let wants: Vec<(&str, &ZaloAppSettings, Want)> = groups
            .iter()
            .map(|(tenant_id, tenant, zns, other)| {
                let want = Want {
                    zns: u32::try_from(zns.len()).unwrap_or(u32::MAX),
                    other: u32::try_from(other.len()).unwrap_or(u32::MAX),
                    broadcast: zns
                        .iter()
                        .chain(other)
                        .next()
                        .is_some_and(|w| w.incoming.request.lane == Lane::Broadcast),
                    promotion: zns
                        .iter()
                        .chain(other)
                        .next()
                        .is_some_and(|w| w.incoming.request.kind.is_promotion()),
                };
                (*tenant_id, &tenant.zalo, want)
            })
            .collect();
        // Promotions stop at a share of the day's quota: know it before the first one.
        for (tenant_id, app, want) in &wants {
            if want.promotion && want.zns > 0 {
                self.know_quota(tenant_id, app).await;
            }
        }
        let limiter = &self.inner.limiter;
        let grants = match with_db_retries("take send slots", || limiter.take_many(&wants)).await {
            Ok(grants) => grants,
            Err(e) => {
                let reason = format!("the send gate is unavailable: {e:#}");
                for (_, _, zns, other) in groups {
                    for work in zns.into_iter().chain(other) {
                        let outcome = SendOutcome::NoToken {
                            class: ErrorClass::Transient,
                            reason: reason.clone(),
                        };
                        self.settle_unsent(work, outcome, now, settled);
                    }
                }
                return (sends, later, wait);
            }
        };
        let read_at = Instant::now();
        for ((tenant_id, _, zns, other), grant) in groups.into_iter().zip(grants) {
            if let Some(remaining) = grant.remaining {
                metrics::quota_remaining(tenant_id, remaining);
            }
            if let Some(reason) = grant.paused {
                paused.insert(tenant_id.to_owned());
                for work in zns.into_iter().chain(other) {
                    self.settle_unsent(work, SendOutcome::Paused(reason.clone()), now, settled);
                }
                continue;
            }
            let mut slot = 0u32;
            let allowed = grant.zns_allowed as usize;
            let granted = grant.zns_granted as usize;
            for (k, work) in zns.into_iter().enumerate() {
                if k >= allowed {
                    self.settle_unsent(work, SendOutcome::QuotaWithheld, now, settled);
                } else if k < granted {
                    sends.push((work, read_at + grant.slot(slot)));
                    slot += 1;
                } else {
                    later.push(work);
                }
            }
            for (k, work) in other.into_iter().enumerate() {
                if k < grant.other_granted as usize {
                    sends.push((work, read_at + grant.slot(slot)));
                    slot += 1;
                } else {
                    later.push(work);
                }
            }
            if slot == 0 {
                wait = wait.min(grant.retry_after);
            }
        }
        (sends, later, wait)
    }

    /// Makes sure the day's ZNS quota of `tenant` is on record before promotions go:
    /// Zalo reports it in every ZNS success, but the day's first sends would otherwise
    /// go before any answer, past the promotion share. Asks `GET /message/quota` once
    /// per tenant and quota day when nothing is on record; a failure is logged and the
    /// sends go as before (the first answer fills the figure in).
    async fn know_quota(&self, tenant: &str, app: &ZaloAppSettings) {
        let day = loa_contracts::time::vietnam_day(&self.inner.clock.now());
        let key = (tenant.to_owned(), day);
        let mut asked_today = self.inner.quota_asked.lock().await;
        if asked_today.contains(&key) {
            return;
        }
        let asked = async {
            if quota::is_known(&self.inner.pool, tenant, day).await? {
                return Ok(());
            }
            let token = self
                .inner
                .tokens
                .access_token(tenant)
                .await
                .map_err(|e| anyhow::anyhow!("no access token: {e}"))?;
            let (daily, remaining) = self
                .inner
                .zalo
                .zns_quota(app, token.expose())
                .await
                .map_err(|f| anyhow::anyhow!("{}", f.detail))?;
            let mut seen = quota::Observation::default();
            seen.accepted(daily, remaining);
            quota::observe_many(&self.inner.pool, day, &[(tenant, &seen)]).await
        };
        asked_today.retain(|(_, d)| *d >= day);
        asked_today.insert(key);
        if let Err(e) = asked.await {
            tracing::warn!(tenant, error.message = %e, "Failed to read the day's ZNS quota; promotions go until Zalo's first answer.");
        }
    }

    /// Settles the broadcast messages among `pending` whose broadcast was paused,
    /// cancelled or ended (or whose quiet hours began) since the batch started;
    /// returns the rest.
    async fn recheck_broadcasts<'a>(
        &self,
        pending: Vec<Work<'a>>,
        settled: &mut HashMap<usize, Settled>,
    ) -> Vec<Work<'a>> {
        let requests: Vec<&NotificationRequest> = pending
            .iter()
            .map(|w| &w.incoming.request)
            .filter(|r| r.broadcast.is_some())
            .collect();
        if requests.is_empty() {
            return pending;
        }
        let now = self.inner.clock.now();
        let tenants = self.inner.tenants.current();
        let stop = match gate::recheck(&self.inner.pool, &tenants, &requests, now).await {
            Ok(stop) => stop,
            Err(e) => {
                tracing::warn!(error.message = %e, "Failed to look at the broadcasts again; sending as decided.");
                return pending;
            }
        };
        let mut rest = Vec::with_capacity(pending.len());
        for work in pending {
            let outcome = match stop.get(&work.incoming.request.notification_id) {
                Some(Verdict::Wait { until }) => SendOutcome::NotYet(*until),
                Some(Verdict::Skip(reason)) => SendOutcome::Skipped(reason),
                Some(Verdict::Send) | None => {
                    rest.push(work);
                    continue;
                }
            };
            self.settle_unsent(work, outcome, now, settled);
        }
        rest
    }

    /// Settles a request the gate let through no slot for (see [`Self::settled_early`]).
    fn settle_unsent(
        &self,
        work: Work<'_>,
        outcome: SendOutcome,
        now: chrono::DateTime<chrono::Utc>,
        settled: &mut HashMap<usize, Settled>,
    ) {
        let s = self.settled_early(outcome, work.channel, work.attempted, work.incoming, now);
        settled.insert(work.at, s);
    }

    /// Settles a request whose outcome is known before (or instead of) a Zalo call:
    /// the policy decides, as for every other outcome.
    fn settled_early(
        &self,
        outcome: SendOutcome,
        channel: Channel,
        attempted: bool,
        incoming: &Incoming,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Settled {
        let ctx = Context {
            attempt: incoming.attempt,
            refreshed: false,
            can_fall_back: false,
            now,
        };
        let decision = policy::decide(&outcome, &ctx, &self.inner.retry);
        Settled {
            outcome,
            decision,
            channel,
            attempted,
        }
    }

    /// Marks a request dispatched right before its Zalo call (nothing leaves
    /// unmarked: a crash would leave its fate unknowable), and counts a resend of an
    /// unanswered send.
    async fn dispatch(&self, work: &Work<'_>) -> anyhow::Result<()> {
        let request = &work.incoming.request;
        self.inner.marks.mark(&request.notification_id).await?;
        if work.resend && !work.attempted {
            metrics::ambiguous_resend(self.tenant_label(request));
            tracing::warn!(
                notification_id = %request.notification_id,
                tenant = %request.tenant,
                "No receipt came for an ambiguous send; resending it (the citizen may get it twice)."
            );
        }
        Ok(())
    }

    /// One Zalo call for a request on its current channel. Returns the outcome and
    /// the access token it used (to replace it if Zalo refused it).
    ///
    /// With traces exported, the attempt is a `notifier.send` span continuing the
    /// request's trace (the child of the tracker's span, through its `trace_context`),
    /// around a `zalo.call` span for the HTTP call itself.
    async fn send_once(&self, work: &Work<'_>) -> (SendOutcome, Option<Secret>) {
        if !telemetry::traces_on() {
            return self.attempt(work).await;
        }
        let request = &work.incoming.request;
        let span = tracing::info_span!(
            parent: None,
            "notifier.send",
            otel.kind = "client",
            notification_id = %request.notification_id,
            tenant = %work.tenant.id,
            kind = request.kind.as_str(),
            channel = work.channel.as_str(),
            outcome = tracing::field::Empty,
        );
        telemetry::set_remote_parent(&span, request.trace_context.as_deref());
        let (outcome, token) = self.attempt(work).instrument(span.clone()).await;
        span.record(
            "outcome",
            match &outcome {
                SendOutcome::Sent(_) => "sent",
                SendOutcome::Failed(_) => "failed",
                _ => "not_sent",
            },
        );
        (outcome, token)
    }

    /// [`Self::send_once`]'s attempt itself.
    #[tracing::instrument(level = "debug", skip_all, fields(notification_id = %work.incoming.request.notification_id, tenant = %work.tenant.id, channel = work.channel.as_str()))]
    async fn attempt(&self, work: &Work<'_>) -> (SendOutcome, Option<Secret>) {
        let request = &work.incoming.request;
        let app = &work.tenant.zalo;
        let token = match self.inner.tokens.access_token(&work.tenant.id).await {
            Ok(t) => t,
            Err(e) => return (no_token(e), None),
        };
        let result = match work.channel {
            Channel::Zns => {
                let phone = work.route.phone.as_deref().unwrap_or_default();
                tracing::debug!(phone = %mask_phone(phone), template_id = work.template_id, "Sending a ZNS message.");
                let message = ZnsMessage {
                    phone,
                    template_id: work.template_id,
                    template_data: &request.params,
                    tracking_id: &request.notification_id,
                };
                self.inner
                    .zalo
                    .send_zns(app, token.expose(), &message)
                    .instrument(zalo_call_span("zns"))
                    .await
            }
            Channel::OaTemplate => {
                let message = OaTemplateMessage {
                    user_id: work.route.user_id.as_deref().unwrap_or_default(),
                    template_id: work.template_id,
                    template_data: &request.params,
                    tracking_id: &request.notification_id,
                };
                self.inner
                    .zalo
                    .send_oa_template(app, token.expose(), &message)
                    .instrument(zalo_call_span("oa_template"))
                    .await
            }
            Channel::OaCs => {
                let text = request.params.get("text").map(String::as_str);
                let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
                    return (
                        SendOutcome::Unsendable("a chat reply without `text`".to_owned()),
                        None,
                    );
                };
                let message = CsMessage {
                    recipient: CsRecipient {
                        user_id: work.route.user_id.as_deref().unwrap_or_default(),
                    },
                    message: CsText { text },
                };
                self.inner.zalo.send_cs(app, token.expose(), &message).await
            }
            Channel::None => {
                return (
                    SendOutcome::Unsendable("no channel for this recipient".to_owned()),
                    None,
                )
            }
        };
        match result {
            Ok(accepted) => {
                if let Some(at) = request.event_accepted_at {
                    metrics::event_to_send(request.kind.as_str(), at);
                }
                (SendOutcome::Sent(accepted), Some(token))
            }
            Err(failure) => (SendOutcome::Failed(failure), Some(token)),
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
        if self.inner.tenants.current().get(&request.tenant).is_some() {
            request.tenant.as_str()
        } else {
            "unknown"
        }
    }
}

fn decide_for(
    settings: &RetrySettings,
    outcome: &SendOutcome,
    work: &Work<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Decision {
    let ctx = Context {
        attempt: work.incoming.attempt,
        refreshed: work.refreshed,
        can_fall_back: work.route.after(work.channel).is_some(),
        now,
    };
    // Zalo's per-citizen limits on promotions: that citizen misses this broadcast,
    // which is no error (a case update keeps the usual fallback).
    if work.incoming.request.broadcast.is_some() {
        if let SendOutcome::Failed(f) = outcome {
            if matches!(f.code, Some(-1471 | -1472)) {
                return Decision::Skip {
                    reason: "recipient_limit",
                };
            }
        }
    }
    // A chat reply to a user whose last message to the OA is more than 7 days old:
    // Zalo never takes it, and it is no error (the citizen can write again).
    if work.channel == Channel::OaCs {
        if let SendOutcome::Failed(f) = outcome {
            if matches!(f.code, Some(-230 | -232)) {
                return Decision::Skip {
                    reason: "outside_cs_window",
                };
            }
        }
    }
    policy::decide(outcome, &ctx, settings)
}

/// The span of one Zalo API call (`api`: `zns`, `oa_template`), a child of the
/// current `notifier.send`; none when traces are off.
fn zalo_call_span(api: &'static str) -> tracing::Span {
    if telemetry::traces_on() {
        tracing::info_span!("zalo.call", otel.kind = "client", zalo.api = api)
    } else {
        tracing::Span::none()
    }
}

fn no_token(e: TokenError) -> SendOutcome {
    match e {
        TokenError::UnknownTenant(t) => SendOutcome::Unsendable(format!("unknown tenant `{t}`")),
        e => SendOutcome::NoToken {
            class: e.class(),
            reason: match &e {
                TokenError::Refused(failure) => format!("no access token: {}", failure.reason()),
                other => format!("no access token: {other:#}"),
            },
        },
    }
}

fn new_delivery(request: &NotificationRequest) -> NewDelivery {
    NewDelivery {
        notification_id: request.notification_id.clone(),
        tenant: request.tenant.clone(),
        kind: request.kind.as_str().to_owned(),
        lane: request.lane.as_str().to_owned(),
        dossier_code: request.dossier_code.clone(),
        channel: Channel::for_request(request).as_str().to_owned(),
        event_accepted_at: request.event_accepted_at,
        broadcast_id: request.broadcast.as_ref().map(|b| b.id.clone()),
    }
}

fn record_of(request: &NotificationRequest, s: &Settled) -> Record {
    let code = match &s.outcome {
        SendOutcome::Failed(f) => f.code.and_then(|c| i32::try_from(c).ok()),
        _ => None,
    };
    let parked = |status: Status, reason: &str| {
        (
            status,
            None,
            code,
            Some(reason.to_owned()),
            serde_json::to_value(Envelope::NotificationRequestV1(request.clone())).ok(),
        )
    };
    let (status, zalo_msg_id, error_code, error, body) = match &s.decision {
        Decision::Sent => {
            let msg_id = match &s.outcome {
                SendOutcome::Sent(Accepted { msg_id, .. }) => Some(msg_id.clone()),
                _ => None,
            };
            (Status::Sent, msg_id, None, None, None)
        }
        Decision::Fail { reason, .. } => (Status::Failed, None, code, Some(reason.clone()), None),
        Decision::Skip { reason } => (
            Status::Skipped,
            None,
            code,
            Some((*reason).to_owned()),
            None,
        ),
        Decision::Retry { reason, .. } => {
            (Status::Retrying, None, code, Some(reason.clone()), None)
        }
        Decision::Defer { reason, until, .. } => parked(
            Status::Deferred {
                until: Some(*until),
            },
            reason,
        ),
        Decision::Park { reason, recheck_at } => parked(
            Status::Ambiguous {
                recheck_at: *recheck_at,
            },
            reason,
        ),
        Decision::Hold { reason, .. } => parked(Status::Held, reason),
        Decision::Refresh | Decision::Fallback => (Status::Pending, None, code, None, None),
    };
    Record {
        outcome: Outcome {
            notification_id: request.notification_id.clone(),
            status,
            channel: s.channel.as_str().to_owned(),
            zalo_msg_id,
            error_code,
            error,
        },
        request: body,
        attempted: s.attempted,
    }
}

/// The history row of a settled request (`notifier.delivery_events`), if it needs one:
/// a send is not written twice, the delivery row's `sent_at`, `channel` and
/// `zalo_msg_id` are its history entry ([`crate::deliveries::views_for`] shows it), which
/// spares the hot path a row and three index entries per message.
fn transition_of(request: &NotificationRequest, s: &Settled) -> Option<Transition> {
    let code = match &s.outcome {
        SendOutcome::Failed(f) => f.code,
        _ => None,
    };
    let (status, detail) = match &s.decision {
        Decision::Sent => return None,
        Decision::Fail { label, reason } => (
            DeliveryStatus::Failed,
            json!({"channel": s.channel.as_str(), "class": label, "code": code, "reason": reason}),
        ),
        Decision::Retry {
            label,
            reason,
            next_attempt,
            ..
        } => (
            DeliveryStatus::Retrying,
            json!({"channel": s.channel.as_str(), "class": label, "code": code, "reason": reason,
                   "next_attempt": next_attempt}),
        ),
        Decision::Defer {
            label,
            reason,
            until,
            ..
        } => (
            DeliveryStatus::Deferred,
            json!({"channel": s.channel.as_str(), "class": label, "code": code, "reason": reason,
                   "until": until}),
        ),
        Decision::Park { reason, recheck_at } => (
            DeliveryStatus::Ambiguous,
            json!({"channel": s.channel.as_str(), "reason": reason, "recheck_at": recheck_at}),
        ),
        Decision::Hold { reason, .. } => (
            DeliveryStatus::Held,
            json!({"channel": s.channel.as_str(), "code": code, "reason": reason}),
        ),
        Decision::Skip { reason } => (
            DeliveryStatus::Skipped,
            json!({"channel": s.channel.as_str(), "code": code, "reason": reason}),
        ),
        Decision::Refresh | Decision::Fallback => (DeliveryStatus::Sending, json!({})),
    };
    Some(
        Transition::new(
            &request.notification_id,
            &request.tenant,
            status.as_str(),
            chrono::Utc::now(),
        )
        .with_detail(detail),
    )
}

/// The history row of an attempt on a channel the recipient could not get it on,
/// before the fallback to `next`: the delivery's history shows both attempts.
fn channel_failed(work: &Work<'_>, outcome: &SendOutcome, next: Channel) -> Transition {
    let (code, reason) = match outcome {
        SendOutcome::Failed(f) => (f.code, f.reason()),
        other => (None, format!("{other:?}")),
    };
    Transition::new(
        &work.incoming.request.notification_id,
        &work.incoming.request.tenant,
        "channel_failed",
        chrono::Utc::now(),
    )
    .with_detail(json!({
        "channel": work.channel.as_str(),
        "code": code,
        "reason": reason,
        "next_channel": next.as_str(),
    }))
}

/// Records a batch's results and their history in one statement.
async fn record_with_history(
    pool: &Pool,
    records: &[Record],
    transitions: &[Transition],
) -> anyhow::Result<()> {
    let client = pool
        .get()
        .await
        .context("Failed to get a PostgreSQL connection")?;
    deliveries::record_batch_with_history(&client, records, transitions).await
}

/// One request of a packed delivery as a dead letter of its own, as the consumer
/// would have dead-lettered it had it come alone.
fn dead_letter_of(request: &NotificationRequest, reason: &str) -> OutgoingMessage {
    let queue = match request.lane {
        Lane::Transactional => topology::Q_NOTIFIER_TRANSACTIONAL,
        Lane::Broadcast => topology::Q_NOTIFIER_BROADCAST,
    };
    let mut headers = vec![
        (topology::H_REASON.to_owned(), reason.to_owned()),
        (topology::H_SOURCE_QUEUE.to_owned(), queue.to_owned()),
        // Requests descend from events intake verified: the dead letter is the tenant's.
        (
            loa_platform::amqp::consumer::H_TENANT.to_owned(),
            request.tenant.clone(),
        ),
    ];
    if let Some(trace) = &request.trace_context {
        headers.push((topology::H_TRACEPARENT.to_owned(), trace.clone()));
    }
    OutgoingMessage {
        exchange: topology::EX_DEAD.to_owned(),
        routing_key: request.routing_key(),
        body: Envelope::NotificationRequestV1(request.clone()).to_bytes(),
        message_id: request.notification_id.clone(),
        headers,
    }
}

fn envelope_type(envelope: &Envelope) -> &'static str {
    match envelope {
        Envelope::DossierEventV1(_) => "dossier_event.v1",
        Envelope::DossierEventBatchV1(_) => "dossier_event_batch.v1",
        Envelope::NotificationRequestV1(_) => "notification_request.v1",
        Envelope::NotificationBatchV1(_) => "notification_batch.v1",
        Envelope::ChatLookupV1(_) => "chat_lookup.v1",
        Envelope::CitizenFeedbackV1(_) => "citizen_feedback.v1",
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
                tracing::error!(step = what, error.cause_chain = ?e, error.message = %e, "Database step failed; giving up on it.");
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

    /// Compiles only if a batch's future can move between threads (the consumer is
    /// spawned on tokio's multi-threaded runtime).
    #[allow(dead_code)]
    fn a_batch_can_be_processed_on_any_thread(
        sender: &Sender,
        items: Vec<Result<Incoming, String>>,
    ) {
        fn is_send<T: Send>(_: &T) {}
        is_send(&sender.process(&items));
    }

    #[test]
    fn the_attempt_header_and_routing_key_are_read_from_the_delivery() {
        let request = loa_contracts::NotificationRequest {
            notification_id: "n1".into(),
            tenant: "demo".into(),
            kind: loa_contracts::NotificationKind::Receipt,
            recipient: loa_contracts::Recipient {
                phone: Some("84903123456".into()),
                zalo_user_id: None,
            },
            params: Default::default(),
            lane: Lane::Transactional,
            dossier_code: None,
            not_before: None,
            trace_context: None,
            event_accepted_at: None,
            created_at: chrono::Utc::now(),
            broadcast: None,
        };
        let mut headers = lapin::types::FieldTable::default();
        headers.insert(
            topology::H_ATTEMPT.into(),
            lapin::types::AMQPValue::LongString("3".into()),
        );
        let mut delivery = Delivery::mock(
            1,
            "loa.notifications".into(),
            "transactional.demo.receipt".into(),
            false,
            Envelope::NotificationRequestV1(request.clone()).to_bytes(),
        );
        delivery.properties = lapin::BasicProperties::default().with_headers(headers);
        let incoming =
            Incoming::from_envelope(Envelope::from_bytes(&delivery.data), &delivery).unwrap();
        assert_eq!(incoming.attempt, 3);
        assert_eq!(
            incoming.routing_key.as_deref(),
            Some("transactional.demo.receipt")
        );
        assert_eq!(incoming.request, request);

        let poison = Delivery::mock(
            2,
            "loa.notifications".into(),
            "transactional.demo.receipt".into(),
            false,
            b"{\"type\":\"nonsense\"}".to_vec(),
        );
        assert!(
            Incoming::from_envelope(Envelope::from_bytes(&poison.data), &poison)
                .unwrap_err()
                .starts_with("undecodable notification request")
        );
    }
}
