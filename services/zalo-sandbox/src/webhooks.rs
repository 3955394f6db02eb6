//! Webhooks as Zalo sends them: JSON bodies whose ids and timestamps are strings, signed
//! with `X-ZEvent-Signature: mac=<hex sha256(app_id + body + timestamp + oa_secret_key)>`,
//! POSTed from a background dispatcher so sending is never slowed, retried a few times
//! with a short back-off when the receiver fails. When the receiver's connection
//! cannot be opened at all (it is down, or restarting), the event is redelivered
//! afterwards on Zalo's own schedule (+30 s, +5 min, +15 min, +30 min, +1 h, each with
//! a `num_retry` header), so a receiver restarted within that time still gets the
//! receipts of messages sent just before it went down, as it would from Zalo.

use crate::{apps::App, sandbox::RecordedMessage};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, PoisonError, RwLock,
    },
    time::Duration,
};
use tokio::{
    sync::{mpsc, Semaphore},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-ZEvent-Signature";

/// Jobs waiting in the queue before new ones are dropped (and counted as failed).
const QUEUE_CAPACITY: usize = 100_000;
/// Jobs scheduled (waiting for their due time or being posted) at once.
const MAX_PENDING: usize = 100_000;
/// Concurrent POSTs to the receiver.
const MAX_IN_FLIGHT: usize = 64;
/// Back-off between attempts; its length is the number of retries.
const RETRY_BACKOFF: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_secs(1),
    Duration::from_secs(3),
];
/// Zalo's redeliveries of an event whose receiver could not be connected to, after
/// the first attempt: "sau 30 giây, sau 5 phút, sau 15 phút, sau 30 phút, sau 1 giờ".
/// The sandbox starts them once its short retries have failed to connect too.
const REDELIVERY: [Duration; 5] = [
    Duration::from_secs(30),
    Duration::from_secs(5 * 60),
    Duration::from_secs(15 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
];
/// How long one POST may take.
pub const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// The `X-ZEvent-Signature` value of a webhook: `mac=` and the lowercase hex of the plain
/// SHA-256 (not HMAC) of `app_id + raw_body + timestamp + oa_secret_key`, where
/// `timestamp` is the body's `timestamp` string.
pub fn webhook_signature(
    app_id: &str,
    body: &[u8],
    timestamp: &str,
    oa_secret_key: &str,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(app_id.as_bytes());
    hasher.update(body);
    hasher.update(timestamp.as_bytes());
    hasher.update(oa_secret_key.as_bytes());
    format!("mac={}", hex::encode(hasher.finalize()))
}

/// One signed webhook, due at a given time.
#[derive(Debug)]
pub struct WebhookJob {
    /// When to POST it.
    pub due: Instant,
    /// `event_name`, for metrics and logs.
    pub event: &'static str,
    /// The exact bytes to POST.
    pub body: Vec<u8>,
    /// The `X-ZEvent-Signature` value.
    pub signature: String,
}

impl WebhookJob {
    /// Serialises and signs `body` (whose `timestamp` must be `timestamp`).
    pub fn new(
        app: &App,
        event: &'static str,
        body: &Value,
        timestamp: &str,
        delay: Duration,
    ) -> Self {
        let bytes = serde_json::to_vec(body).expect("a JSON value always serialises");
        let signature =
            webhook_signature(&app.app_id, &bytes, timestamp, app.oa_secret_key.expose());
        Self {
            due: Instant::now() + delay,
            event,
            body: bytes,
            signature,
        }
    }
}

/// The webhook outbox: where to send, the queue to the dispatcher, delivery counts.
#[derive(Debug)]
pub struct Webhooks {
    tx: mpsc::Sender<WebhookJob>,
    url: RwLock<Option<Arc<str>>>,
    sent: AtomicU64,
    failed: AtomicU64,
}

impl Webhooks {
    /// An outbox and the receiving end for [`run_dispatcher`].
    pub fn new(url: Option<String>) -> (Self, mpsc::Receiver<WebhookJob>) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let webhooks = Self {
            tx,
            url: RwLock::new(url.filter(|u| !u.is_empty()).map(Arc::from)),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        };
        (webhooks, rx)
    }

    /// The receiver URL, if webhooks are on.
    pub fn url(&self) -> Option<Arc<str>> {
        self.url
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Points webhooks at `url` (`None` turns them off).
    pub fn set_url(&self, url: Option<String>) {
        *self.url.write().unwrap_or_else(PoisonError::into_inner) =
            url.filter(|u| !u.is_empty()).map(Arc::from);
    }

    /// Whether events should be built at all.
    pub fn is_enabled(&self) -> bool {
        self.url
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Queues a job without waiting; a full queue drops it and counts a failure.
    pub fn enqueue(&self, job: WebhookJob) -> bool {
        let event = job.event;
        match self.tx.try_send(job) {
            Ok(()) => true,
            Err(_) => {
                self.count_failure(event, "dropped");
                false
            }
        }
    }

    /// Delivered and failed webhooks since start or the last reset.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// Zeroes the counts (`POST /_sandbox/reset`).
    pub fn reset_counts(&self) {
        self.sent.store(0, Ordering::Relaxed);
        self.failed.store(0, Ordering::Relaxed);
    }

    fn count_failure(&self, event: &'static str, outcome: &'static str) {
        let failed = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
        crate::metrics::record_webhook(event, outcome);
        // Log the 1st, 2nd, 4th, 8th… failure: a dead receiver must not flood the log.
        if failed.is_power_of_two() {
            tracing::warn!(
                event,
                outcome,
                failed_so_far = failed,
                "Webhook could not be delivered."
            );
        }
    }
}

/// Delivers queued webhooks at their due time until `stop` fires; then lets POSTs in
/// flight finish (bounded by [`POST_TIMEOUT`]) and drops what is not yet due.
pub async fn run_dispatcher(
    webhooks: Arc<Webhooks>,
    mut rx: mpsc::Receiver<WebhookJob>,
    client: reqwest::Client,
    stop: CancellationToken,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = Arc::clone(&pending).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let job = tokio::select! {
            _ = stop.cancelled() => break,
            job = rx.recv() => match job {
                Some(job) => job,
                None => break,
            },
        };
        let (webhooks, client, in_flight, stop) = (
            Arc::clone(&webhooks),
            client.clone(),
            Arc::clone(&in_flight),
            stop.clone(),
        );
        tokio::spawn(async move {
            deliver(&webhooks, &client, &in_flight, job, &stop).await;
            drop(permit);
        });
    }
    rx.close();
    let all = u32::try_from(MAX_PENDING).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(
        POST_TIMEOUT + Duration::from_secs(1),
        pending.acquire_many(all),
    )
    .await;
    if drained.is_err() {
        tracing::warn!("Webhook dispatcher stopped with deliveries still in flight.");
    }
}

async fn deliver(
    webhooks: &Webhooks,
    client: &reqwest::Client,
    in_flight: &Semaphore,
    job: WebhookJob,
    stop: &CancellationToken,
) {
    tokio::select! {
        _ = tokio::time::sleep_until(job.due) => {}
        _ = stop.cancelled() => return,
    }
    // Since the first attempt: the short retries, then (while the receiver cannot be
    // connected to) Zalo's redeliveries, each measured from the first attempt.
    let first_attempt = Instant::now();
    let mut redeliveries = REDELIVERY.iter();
    for attempt in 0.. {
        let Some(url) = webhooks.url() else { return };
        let result = {
            let Ok(_slot) = in_flight.acquire().await else {
                return;
            };
            let mut request = client
                .post(&*url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, &job.signature)
                .body(job.body.clone());
            if attempt > 0 {
                request = request.header("num_retry", attempt.to_string());
            }
            request.send().await
        };
        let unreachable = matches!(&result, Err(e) if e.is_connect());
        match result {
            Ok(response) if response.status().is_success() => {
                webhooks.sent.fetch_add(1, Ordering::Relaxed);
                crate::metrics::record_webhook(job.event, "delivered");
                return;
            }
            Ok(response) => {
                tracing::debug!(
                    event = job.event,
                    status = response.status().as_u16(),
                    attempt,
                    "Webhook receiver refused the event."
                );
            }
            Err(e) => {
                tracing::debug!(event = job.event, error.message = %e, attempt, "Webhook POST failed.");
            }
        }
        let next = match RETRY_BACKOFF.get(attempt) {
            Some(backoff) => Instant::now() + *backoff,
            None if unreachable => match redeliveries.next() {
                Some(after) => (first_attempt + *after).max(Instant::now()),
                None => break,
            },
            None => break,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.cancelled() => break,
        }
    }
    webhooks.count_failure(job.event, "failed");
}

// Event bodies carry what Zalo's carry and nothing more: a client must not come to
// depend on a field only the sandbox sends. Events with a sender and a recipient name
// the OA there and have no top-level `oa_id` (a ZNS receipt has none); `follow` and
// `unfollow` have no sender and name the OA in `oa_id`. A citizen's answer to a ZNS
// (`user_feedback`, `user_click_response_button`) comes from the citizen: `sender.id`
// is their Zalo user id, unlike the ZNS receipt, whose recipient is only the phone.

/// `user_received_message`: a ZNS receipt (recipient = phone, with `delivery_time` and
/// `tracking_id`) or an OA receipt (recipient = user id, `msg_id` only).
pub fn received_event(app: &App, msg: &RecordedMessage, at_ms: i64) -> Value {
    let timestamp = at_ms.to_string();
    let message = match &msg.phone {
        Some(_) => json!({
            "msg_id": msg.msg_id,
            "tracking_id": msg.tracking_id.clone().unwrap_or_default(),
            "delivery_time": timestamp,
        }),
        None => json!({"msg_id": msg.msg_id}),
    };
    json!({
        "app_id": app.app_id,
        "sender": {"id": app.oa_id},
        "recipient": {"id": msg.recipient()},
        "event_name": "user_received_message",
        "message": message,
        "timestamp": timestamp,
    })
}

/// `user_seen_message` for one message.
pub fn seen_event(app: &App, msg: &RecordedMessage, at_ms: i64) -> Value {
    json!({
        "app_id": app.app_id,
        "sender": {"id": app.oa_id},
        "recipient": {"id": msg.recipient()},
        "event_name": "user_seen_message",
        "message": {"msg_ids": [msg.msg_id]},
        "timestamp": at_ms.to_string(),
    })
}

/// `follow` or `unfollow` (no sender / recipient, as on Zalo).
pub fn follow_event(app: &App, user_id: &str, follow: bool, at_ms: i64) -> Value {
    json!({
        "app_id": app.app_id,
        "oa_id": app.oa_id,
        "event_name": if follow { "follow" } else { "unfollow" },
        "follower": {"id": user_id},
        "user_id_by_app": user_id,
        "source": "oa_profile",
        "timestamp": at_ms.to_string(),
    })
}

/// `user_send_text`: a citizen wrote to the OA.
pub fn user_text_event(app: &App, user_id: &str, text: &str, msg_id: &str, at_ms: i64) -> Value {
    json!({
        "app_id": app.app_id,
        "sender": {"id": user_id},
        "recipient": {"id": app.oa_id},
        "user_id_by_app": user_id,
        "event_name": "user_send_text",
        "message": {"text": text, "msg_id": msg_id},
        "timestamp": at_ms.to_string(),
    })
}

/// `user_submit_info`: the user shared their details with the OA (the answer to a
/// `request_user_info` message): `info` holds the phone they chose to share, in the
/// canonical `84…` form, and whichever other details they filled in.
pub fn submit_info_event(app: &App, user_id: &str, info: &Value, at_ms: i64) -> Value {
    json!({
        "app_id": app.app_id,
        "sender": {"id": user_id},
        "recipient": {"id": app.oa_id},
        "user_id_by_app": user_id,
        "event_name": "user_submit_info",
        "info": info,
        "timestamp": at_ms.to_string(),
    })
}

/// What a citizen answered a rating (service feedback) template with.
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    /// Stars, 1 to 5.
    pub rate: u8,
    /// Free text, possibly empty.
    pub note: String,
    /// The ready-made phrases ticked ("Nhân viên nhiệt tình", …).
    pub feedbacks: Vec<String>,
}

/// `user_feedback`: a citizen rated a ZNS message sent with a rating template. It
/// comes from the citizen (`sender.id`, their Zalo user id for this app) to the OA;
/// `message` names the rated message by its `msg_id` and our `tracking_id`, with the
/// rating, the note and the phrases ticked.
pub fn feedback_event(
    app: &App,
    msg: &RecordedMessage,
    user_id: &str,
    feedback: &Feedback,
    at_ms: i64,
) -> Value {
    let timestamp = at_ms.to_string();
    json!({
        "app_id": app.app_id,
        "oa_id": app.oa_id,
        "sender": {"id": user_id},
        "recipient": {"id": app.oa_id},
        "user_id_by_app": user_id,
        "event_name": "user_feedback",
        "message": {
            "msg_id": msg.msg_id,
            "tracking_id": msg.tracking_id.clone().unwrap_or_default(),
            "rate": feedback.rate,
            "note": feedback.note,
            "feedbacks": feedback.feedbacks,
            "submit_time": timestamp,
        },
        "timestamp": timestamp,
    })
}

/// `user_click_response_button`: a citizen tapped a button of a ZNS message they
/// received. From the citizen (`sender.id`) to the OA; `message` names the ZNS by its
/// `msg_id` and our `tracking_id`, with the button's title and payload.
pub fn click_event(
    app: &App,
    msg: &RecordedMessage,
    user_id: &str,
    button: &Value,
    at_ms: i64,
) -> Value {
    json!({
        "app_id": app.app_id,
        "sender": {"id": user_id},
        "recipient": {"id": app.oa_id},
        "user_id_by_app": user_id,
        "event_name": "user_click_response_button",
        "message": {
            "msg_id": msg.msg_id,
            "tracking_id": msg.tracking_id.clone().unwrap_or_default(),
            "button": button,
        },
        "timestamp": at_ms.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_plain_sha256_of_app_id_body_timestamp_and_oa_secret() {
        // printf '%s' '123{"a":1}1700000000000secret' | sha256sum
        let sig = webhook_signature("123", br#"{"a":1}"#, "1700000000000", "secret");
        assert_eq!(
            sig,
            "mac=9250931b5910c27c398934788bf72f7c92b5414cabd937e946c76dd2c50f5fc4"
        );
    }
}
