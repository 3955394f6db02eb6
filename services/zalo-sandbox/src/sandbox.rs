//! The sandbox's shared state and the send pipeline every Zalo send path goes through:
//! count the request, apply faults, check the token, the rate limit, the body, the
//! follower, the night window and the quota, then record the message. All of it under
//! one short lock acquisition per request; webhooks and pauses happen outside it.

use crate::{
    apps::{App, Apps},
    clock::Clock,
    faults::{self, Failure, Fault, FaultEffect},
    limits::{
        self, ApiLimits, QuotaCounter, TokenBucket, NO_QUOTA_REPORTED, UNLIMITED_HEADER_VALUE,
    },
    tokens::{TokenBook, TokenProblem},
    webhooks::{self, WebhookJob, Webhooks},
    zalo::{codes, Api, Channel, ZaloError},
    SandboxSettings,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value};
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;

/// An accepted message, as `GET /_sandbox/messages` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedMessage {
    /// Zalo message id: 20 lowercase hex characters.
    pub msg_id: String,
    /// `zns`, `oa_cs` or `oa_template`.
    pub channel: Channel,
    /// The sending app.
    pub app_id: String,
    /// The sending OA.
    pub oa_id: String,
    /// Recipient phone (`84…`), ZNS only.
    pub phone: Option<String>,
    /// Recipient Zalo user id, OA channels only.
    pub user_id: Option<String>,
    /// Template id (ZNS and OA template).
    pub template_id: Option<String>,
    /// Template parameters as sent.
    pub template_data: Option<Map<String, Value>>,
    /// Text of a consultation message.
    pub text: Option<String>,
    /// What the citizen reads for a template message: the registered kind's text
    /// ([`loa_contracts::templates`]) with the parameters filled in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rendered: Option<String>,
    /// The client's correlation id.
    pub tracking_id: Option<String>,
    /// ZNS `mode` (`development`), when given.
    pub mode: Option<String>,
    /// When the sandbox accepted it (sandbox clock).
    #[serde(serialize_with = "rfc3339_millis")]
    pub received_at: DateTime<Utc>,
    /// Whether its answer was held by a hang fault.
    pub hung: bool,
}

impl RecordedMessage {
    /// The webhook recipient id: the phone for ZNS, the user id for OA messages.
    pub fn recipient(&self) -> &str {
        self.phone
            .as_deref()
            .or(self.user_id.as_deref())
            .unwrap_or_default()
    }
}

fn rfc3339_millis<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// The validated body of a send request.
#[derive(Debug, Clone, Default)]
pub struct Content {
    /// Recipient phone (ZNS).
    pub phone: Option<String>,
    /// Recipient user id (OA).
    pub user_id: Option<String>,
    /// Template id.
    pub template_id: Option<String>,
    /// Template parameters.
    pub template_data: Option<Map<String, Value>>,
    /// Consultation text.
    pub text: Option<String>,
    /// Correlation id.
    pub tracking_id: Option<String>,
    /// ZNS mode.
    pub mode: Option<String>,
}

/// A send request, parsed and validated before taking the lock.
#[derive(Debug)]
pub struct SendRequest {
    /// The path it came in on.
    pub channel: Channel,
    /// The app its access token belongs to.
    pub app: Result<Arc<App>, TokenProblem>,
    /// The validated body (only judged when the token is valid).
    pub content: Result<Content, ZaloError>,
    /// Phone and user id as written in the body, for phone-restricted faults.
    pub targets: Vec<String>,
}

/// Why a send was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A Zalo error answer.
    Zalo(ZaloError),
    /// An injected HTTP error with a non-JSON body.
    Http(u16),
}

/// An accepted send.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// What was recorded.
    pub message: Arc<RecordedMessage>,
    /// `(dailyQuota, remainingQuota)` of the OA after this message (`(0, 0)` when the OA
    /// has no daily quota).
    pub quota: (u64, u64),
}

/// What to answer a send request, and when.
#[derive(Debug)]
pub struct SendOutcome {
    /// Accepted or refused.
    pub result: Result<Accepted, Refusal>,
    /// `(X-RateLimit-Limit, X-RateLimit-Remain)` once the app is known.
    pub rate_headers: Option<(u64, u64)>,
    /// Added latency before answering (faults, and the hang).
    pub delay: Duration,
}

/// A follower of an OA.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Follower {
    /// Follows now (unfollow keeps the record).
    pub following: bool,
    /// The phone the follower shared, if any.
    pub phone: Option<String>,
    /// The user's last interaction with the OA (follow, a message, shared details),
    /// by the sandbox clock: consultation messages are refused 7 days after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_interaction_at: Option<DateTime<Utc>>,
}

/// How long after a user's last interaction the OA may send them consultation
/// messages (Zalo's rule; `-230` after it).
pub const CS_WINDOW: chrono::Duration = chrono::Duration::days(7);

#[derive(Debug, Default)]
struct Stats {
    accepted: u64,
    accepted_by_channel: [u64; 3],
    refused: BTreeMap<String, u64>,
    hung: u64,
    window: VecDeque<Instant>,
    peak: usize,
}

impl Stats {
    /// Counts a request in the sliding one-second window.
    fn register(&mut self, now: Instant) {
        while self
            .window
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= Duration::from_secs(1))
        {
            self.window.pop_front();
        }
        self.window.push_back(now);
        self.peak = self.peak.max(self.window.len());
    }
}

#[derive(Debug, Default)]
struct AppRuntime {
    buckets: [Option<TokenBucket>; 2],
    quota: [QuotaCounter; 2],
    /// Promotions sent today, against their share of the daily quota.
    promotions: [QuotaCounter; 2],
    /// Promotions per citizen this month.
    monthly: [limits::MonthlyPerUser; 2],
    followers: HashMap<String, Follower>,
}

#[derive(Debug)]
struct State {
    messages: VecDeque<Arc<RecordedMessage>>,
    stats: Stats,
    faults: Vec<Fault>,
    limits: [ApiLimits; 2],
    per_app: Vec<AppRuntime>,
}

fn limit_index(api: Api) -> Option<usize> {
    match api {
        Api::Zns => Some(0),
        Api::Oa => Some(1),
        Api::Oauth => None,
    }
}

fn channel_index(channel: Channel) -> usize {
    match channel {
        Channel::Zns => 0,
        Channel::OaCs => 1,
        Channel::OaTemplate => 2,
    }
}

fn default_limits() -> [ApiLimits; 2] {
    [ApiLimits::defaults(Api::Zns), ApiLimits::defaults(Api::Oa)]
}

/// Filters of `GET /_sandbox/messages`.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    /// Exact tracking id.
    pub tracking_id: Option<String>,
    /// Exact phone (already normalised).
    pub phone: Option<String>,
    /// Exact user id.
    pub user_id: Option<String>,
    /// Channel.
    pub channel: Option<Channel>,
    /// Sending app.
    pub app_id: Option<String>,
}

impl MessageFilter {
    fn matches(&self, m: &RecordedMessage) -> bool {
        fn eq(want: &Option<String>, got: &Option<String>) -> bool {
            want.is_none() || want == got
        }
        eq(&self.tracking_id, &m.tracking_id)
            && eq(&self.phone, &m.phone)
            && eq(&self.user_id, &m.user_id)
            && self.channel.is_none_or(|c| c == m.channel)
            && self.app_id.as_ref().is_none_or(|a| *a == m.app_id)
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub struct Sandbox {
    /// The settings it was built with.
    pub settings: SandboxSettings,
    /// Registered apps.
    pub apps: Apps,
    /// The adjustable clock.
    pub clock: Clock,
    /// Refresh-token generations and access-token revocation.
    pub tokens: TokenBook,
    /// The webhook outbox.
    pub webhooks: Arc<Webhooks>,
    /// Fired on shutdown: ends hangs and pauses early.
    pub stop: CancellationToken,
    state: Mutex<State>,
    next_fault_id: AtomicU64,
    /// Article broadcasts accepted (`POST /v2.0/oa/message`), oldest first.
    broadcasts: Mutex<Vec<crate::routes::broadcast::RecordedBroadcast>>,
}

impl Sandbox {
    /// A sandbox with nothing recorded.
    pub fn new(settings: SandboxSettings, apps: Apps, webhooks: Arc<Webhooks>) -> Self {
        let per_app = (0..apps.len()).map(|_| AppRuntime::default()).collect();
        Self {
            tokens: TokenBook::new(apps.len()),
            clock: Clock::default(),
            stop: CancellationToken::new(),
            state: Mutex::new(State {
                messages: VecDeque::new(),
                stats: Stats::default(),
                faults: Vec::new(),
                limits: default_limits(),
                per_app,
            }),
            next_fault_id: AtomicU64::new(1),
            broadcasts: Mutex::new(Vec::new()),
            settings,
            apps,
            webhooks,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the send pipeline for one request (see the module docs).
    pub fn process_send(&self, request: SendRequest) -> SendOutcome {
        let now = Instant::now();
        let clock_now = self.clock.now();
        let api = request.channel.api();
        let oa = api == Api::Oa;
        let limit_idx = limit_index(api).unwrap_or(0);

        let mut guard = self.lock();
        let st = &mut *guard;
        st.stats.register(now);

        let mut targets: Vec<&str> = request.targets.iter().map(String::as_str).collect();
        if let (Ok(app), Some(user)) = (&request.app, request.targets.first()) {
            if let Some(phone) = st.per_app[app.idx]
                .followers
                .get(user)
                .and_then(|f| f.phone.as_deref())
            {
                targets.push(phone);
            }
        }
        let effect = faults::apply(&mut st.faults, api, &targets);
        let mut delay = Duration::from_millis(effect.latency_ms);

        let outcome = |st: &mut State, refusal: Refusal, rate_headers, delay| {
            let key = match &refusal {
                Refusal::Zalo(e) => e.code.to_string(),
                Refusal::Http(status) => format!("http_{status}"),
            };
            *st.stats.refused.entry(key).or_default() += 1;
            SendOutcome {
                result: Err(refusal),
                rate_headers,
                delay,
            }
        };

        if let Some(failure) = effect.failure {
            let refusal = match failure {
                Failure::Zalo(code) => Refusal::Zalo(ZaloError::code(code)),
                Failure::Http(status) => Refusal::Http(status),
                // Only OAuth faults answer without tokens (refused for the send APIs
                // when the fault is added); a send gets its family's generic error.
                Failure::NoTokens => Refusal::Zalo(ZaloError::code(if oa {
                    codes::OA_SEND_FAILED
                } else {
                    codes::ZNS_UNKNOWN
                })),
            };
            return outcome(st, refusal, None, delay);
        }
        let app = match request.app {
            Ok(app) => app,
            Err(problem) => return outcome(st, Refusal::Zalo(problem.zalo_error(oa)), None, delay),
        };
        let limits = &st.limits[limit_idx];
        let runtime = &mut st.per_app[app.idx];

        let mut rate_headers = (UNLIMITED_HEADER_VALUE, UNLIMITED_HEADER_VALUE);
        if let (Some(rate), Some(burst)) = (limits.rate_per_second, limits.effective_burst()) {
            let bucket =
                runtime.buckets[limit_idx].get_or_insert_with(|| TokenBucket::full(burst, now));
            let took = bucket.try_take(rate, burst, now);
            // The bucket size is a small positive whole number of tokens.
            rate_headers = (burst as u64, bucket.remaining());
            if !took {
                return outcome(
                    st,
                    Refusal::Zalo(ZaloError::code(codes::RATE_LIMITED)),
                    Some(rate_headers),
                    delay,
                );
            }
        }
        let rate_headers = Some(rate_headers);
        let content = match request.content {
            Ok(c) => c,
            Err(e) => return outcome(st, Refusal::Zalo(e), rate_headers, delay),
        };
        if oa {
            let user = content.user_id.as_deref().unwrap_or_default();
            let follower = runtime.followers.get(user);
            if !follower.is_some_and(|f| f.following) {
                return outcome(
                    st,
                    Refusal::Zalo(ZaloError::code(codes::NOT_FOLLOWER)),
                    rate_headers,
                    delay,
                );
            }
            let in_window = follower
                .and_then(|f| f.last_interaction_at)
                .is_some_and(|at| clock_now - at <= CS_WINDOW);
            if request.channel == Channel::OaCs && !in_window {
                return outcome(
                    st,
                    Refusal::Zalo(ZaloError::code(codes::NOT_INTERACTED)),
                    rate_headers,
                    delay,
                );
            }
        }
        if limits.night_ban && request.channel != Channel::OaCs && limits::is_night(clock_now) {
            let code = if oa {
                codes::OA_NIGHT
            } else {
                codes::ZNS_NIGHT
            };
            return outcome(
                st,
                Refusal::Zalo(ZaloError::code(code)),
                rate_headers,
                delay,
            );
        }
        let promotion = content
            .template_id
            .as_deref()
            .and_then(|id| app.template_kinds.get(id))
            .is_some_and(|kind| kind.is_promotion());
        if promotion {
            let day = limits::quota_day(clock_now);
            if let (Some(share), Some(daily)) = (limits.promotion_share, limits.daily_quota) {
                // Whole messages only: a share is rounded down.
                let allowed = (daily as f64 * share.clamp(0.0, 1.0)).floor() as u64;
                if runtime.promotions[limit_idx].remaining(allowed, day) == 0 {
                    let refusal = Refusal::Zalo(ZaloError::code(codes::KIND_DAILY_QUOTA));
                    return outcome(st, refusal, rate_headers, delay);
                }
            }
            if let Some(cap) = limits.promotion_monthly_per_user {
                let recipient = content.phone.as_deref().or(content.user_id.as_deref());
                let recipient = recipient.unwrap_or_default();
                if !runtime.monthly[limit_idx].try_send(recipient, cap, clock_now) {
                    let refusal = Refusal::Zalo(ZaloError::code(codes::USER_MONTHLY_PROMOTIONS));
                    return outcome(st, refusal, rate_headers, delay);
                }
            }
            if let Some(daily) = limits.daily_quota {
                let allowed = limits
                    .promotion_share
                    .map_or(daily, |s| (daily as f64 * s.clamp(0.0, 1.0)).floor() as u64);
                let _ = runtime.promotions[limit_idx].try_use(allowed, day);
            }
        }
        let quota = match limits.daily_quota {
            Some(daily) => {
                match runtime.quota[limit_idx].try_use(daily, limits::quota_day(clock_now)) {
                    Some(remaining) => (daily, remaining),
                    None => {
                        return outcome(
                            st,
                            Refusal::Zalo(ZaloError::code(codes::DAILY_QUOTA)),
                            rate_headers,
                            delay,
                        );
                    }
                }
            }
            None => NO_QUOTA_REPORTED,
        };

        let rendered = content
            .template_id
            .as_deref()
            .zip(content.template_data.as_ref())
            .and_then(|(id, data)| app.render(id, data));
        let message = Arc::new(RecordedMessage {
            rendered,
            msg_id: new_msg_id(),
            channel: request.channel,
            app_id: app.app_id.clone(),
            oa_id: app.oa_id.clone(),
            phone: content.phone,
            user_id: content.user_id,
            template_id: content.template_id,
            template_data: content.template_data,
            text: content.text,
            tracking_id: content.tracking_id,
            mode: content.mode,
            received_at: clock_now,
            hung: effect.hang,
        });
        if st.messages.len() >= self.settings.max_recorded_messages.max(1) {
            st.messages.pop_front();
        }
        st.messages.push_back(Arc::clone(&message));
        st.stats.accepted += 1;
        st.stats.accepted_by_channel[channel_index(request.channel)] += 1;
        if effect.hang {
            st.stats.hung += 1;
            delay += Duration::from_secs(faults::HANG_SECS);
        }
        drop(guard);

        self.schedule_receipts(&app, &message, clock_now.timestamp_millis());
        SendOutcome {
            result: Ok(Accepted { message, quota }),
            rate_headers,
            delay,
        }
    }

    /// Queues the receipt (and sometimes the seen event) of an accepted message.
    fn schedule_receipts(&self, app: &App, message: &RecordedMessage, accepted_ms: i64) {
        if !self.webhooks.is_enabled() {
            return;
        }
        let delay = Duration::from_millis(self.settings.receipt_delay_ms);
        let delivered_ms = accepted_ms + millis(delay);
        let body = webhooks::received_event(app, message, delivered_ms);
        self.webhooks.enqueue(WebhookJob::new(
            app,
            "user_received_message",
            &body,
            &delivered_ms.to_string(),
            delay,
        ));
        let seen_rate = self.settings.seen_rate;
        if seen_rate > 0.0 && (seen_rate >= 1.0 || rand::random::<f64>() < seen_rate) {
            let delay = delay + Duration::from_secs(1);
            let seen_ms = accepted_ms + millis(delay);
            let body = webhooks::seen_event(app, message, seen_ms);
            self.webhooks.enqueue(WebhookJob::new(
                app,
                "user_seen_message",
                &body,
                &seen_ms.to_string(),
                delay,
            ));
        }
    }

    /// Applies the OAuth faults to one token request.
    pub fn oauth_faults(&self) -> FaultEffect {
        let mut st = self.lock();
        faults::apply(&mut st.faults, Api::Oauth, &[])
    }

    /// Sleeps `delay`, or less if the sandbox is shutting down.
    pub async fn pause(&self, delay: Duration) {
        if delay.is_zero() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.stop.cancelled() => {}
        }
    }

    /// Recorded messages matching `filter`, oldest first.
    pub fn messages(&self, filter: &MessageFilter) -> Vec<Arc<RecordedMessage>> {
        let st = self.lock();
        st.messages
            .iter()
            .filter(|m| filter.matches(m))
            .cloned()
            .collect()
    }

    /// The counters of `GET /_sandbox/stats`.
    pub fn stats(&self) -> Value {
        let (sent, failed) = self.webhooks.counts();
        let st = self.lock();
        let s = &st.stats;
        json!({
            "accepted": s.accepted,
            "accepted_by_channel": {
                "zns": s.accepted_by_channel[0],
                "oa_cs": s.accepted_by_channel[1],
                "oa_template": s.accepted_by_channel[2],
            },
            "refused": s.refused,
            "hung": s.hung,
            "peak_rate_per_second": s.peak,
            "recorded_messages": st.messages.len(),
            "webhooks_sent": sent,
            "webhooks_failed": failed,
        })
    }

    /// Adds a fault (its id is assigned here) and returns it.
    pub fn add_fault(&self, mut fault: Fault) -> Fault {
        fault.id = self.next_fault_id.fetch_add(1, Ordering::Relaxed);
        self.lock().faults.push(fault.clone());
        fault
    }

    /// The active faults.
    pub fn faults(&self) -> Vec<Fault> {
        self.lock().faults.clone()
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// The limits of a family (`None` for OAuth, which has none).
    pub fn limits(&self, api: Api) -> Option<ApiLimits> {
        limit_index(api).map(|i| self.lock().limits[i].clone())
    }

    /// Replaces the limits of a family and refills its buckets.
    pub fn set_limits(&self, api: Api, limits: ApiLimits) {
        let Some(i) = limit_index(api) else { return };
        let mut st = self.lock();
        st.limits[i] = limits;
        for runtime in &mut st.per_app {
            runtime.buckets[i] = None;
        }
    }

    /// `(dailyQuota, remainingQuota)` of an OA's ZNS quota today (`(0, 0)` without one).
    pub fn zns_quota(&self, app: &App) -> (u64, u64) {
        let day = limits::quota_day(self.clock.now());
        let st = self.lock();
        match st.limits[0].daily_quota {
            Some(daily) => (daily, st.per_app[app.idx].quota[0].remaining(daily, day)),
            None => NO_QUOTA_REPORTED,
        }
    }

    /// Keeps an accepted Article broadcast for `GET /_sandbox/broadcasts`.
    pub fn record_broadcast(&self, broadcast: crate::routes::broadcast::RecordedBroadcast) {
        self.broadcasts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(broadcast);
    }

    /// The Article broadcasts accepted so far, oldest first.
    pub fn broadcasts(&self) -> Vec<crate::routes::broadcast::RecordedBroadcast> {
        self.broadcasts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records that `user_id` follows (or stopped following) an app's OA, remembering
    /// the phone when one is given.
    pub fn set_follower(
        &self,
        app: &App,
        user_id: &str,
        following: bool,
        phone: Option<String>,
    ) -> Follower {
        let mut st = self.lock();
        let follower = st.per_app[app.idx]
            .followers
            .entry(user_id.to_owned())
            .or_default();
        follower.following = following;
        if phone.is_some() {
            follower.phone = phone;
        }
        if following {
            follower.last_interaction_at = Some(self.clock.now());
        }
        follower.clone()
    }

    /// Records that `user_id` interacted with an app's OA now (wrote to it, tapped a
    /// button): it opens the 7-day window for consultation messages.
    pub fn interacted(&self, app: &App, user_id: &str) {
        let now = self.clock.now();
        let mut st = self.lock();
        let follower = st.per_app[app.idx]
            .followers
            .entry(user_id.to_owned())
            .or_default();
        follower.last_interaction_at = Some(now);
    }

    /// Records the phone a user shared with an app's OA (`user_submit_info`), without
    /// changing whether they follow it (a user not on record does not).
    pub fn share_phone(&self, app: &App, user_id: &str, phone: String) -> Follower {
        let mut st = self.lock();
        let follower = st.per_app[app.idx]
            .followers
            .entry(user_id.to_owned())
            .or_default();
        follower.phone = Some(phone);
        follower.last_interaction_at = Some(self.clock.now());
        follower.clone()
    }

    /// The Zalo user id of the person whose phone `phone` is, as this app knows them:
    /// a user who shared that phone with its OA, else an id the sandbox derives from
    /// the phone (Zalo gives every account one id per app; the same phone always maps
    /// to the same id here).
    pub fn user_of_phone(&self, app: &App, phone: &str) -> String {
        let known = self.lock().per_app[app.idx]
            .followers
            .iter()
            .filter(|(_, f)| f.phone.as_deref() == Some(phone))
            .map(|(id, _)| id.clone())
            .min();
        known.unwrap_or_else(|| {
            use sha2::{Digest, Sha256};
            let digest = Sha256::digest(format!("{}:{phone}", app.app_id).as_bytes());
            let mut n = [0u8; 8];
            n.copy_from_slice(&digest[..8]);
            // Zalo's user ids are 19-digit decimal strings.
            format!(
                "{}",
                1_000_000_000_000_000_000 + u64::from_be_bytes(n) % 8_000_000_000_000_000_000
            )
        })
    }

    /// The recorded message with Zalo message id `msg_id`, if still recorded.
    pub fn message(&self, msg_id: &str) -> Option<Arc<RecordedMessage>> {
        self.lock()
            .messages
            .iter()
            .rev()
            .find(|m| m.msg_id == msg_id)
            .cloned()
    }

    /// A follower record, if the user ever followed.
    pub fn follower(&self, app: &App, user_id: &str) -> Option<Follower> {
        self.lock().per_app[app.idx].followers.get(user_id).cloned()
    }

    /// Clears messages, stats, faults, limits, quotas and the clock offset; keeps token
    /// state and followers.
    pub fn reset(&self) {
        {
            let mut st = self.lock();
            st.messages.clear();
            st.stats = Stats::default();
            st.faults.clear();
            st.limits = default_limits();
            for runtime in &mut st.per_app {
                runtime.buckets = [None, None];
                runtime.quota = Default::default();
            }
        }
        self.clock.reset();
        self.webhooks.reset_counts();
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A new Zalo message id: 20 lowercase hex characters.
pub fn new_msg_id() -> String {
    hex::encode(rand::random::<[u8; 10]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_twenty_lowercase_hex_characters() {
        let id = new_msg_id();
        assert_eq!(id.len(), 20);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        assert_ne!(id, new_msg_id());
    }

    #[test]
    fn peak_counts_requests_in_a_sliding_second() {
        let mut stats = Stats::default();
        let t0 = Instant::now();
        for i in 0..10 {
            stats.register(t0 + Duration::from_millis(i * 50));
        }
        stats.register(t0 + Duration::from_millis(1400));
        assert_eq!(stats.peak, 10);
        assert_eq!(stats.window.len(), 2);
    }
}
