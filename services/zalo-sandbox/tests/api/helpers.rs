//! Spawning a sandbox and a webhook receiver, and one method per endpoint.

use axum::{body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post, Router};
use loa_contracts::NotificationKind;
use loa_platform::{tenants::demo_tenant, TenantSettings, Tenants};
use loa_zalo_sandbox::{Application, SandboxSettings};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};
use tokio_util::sync::CancellationToken;

/// A valid recipient.
pub const PHONE: &str = "84903123456";

/// A running sandbox; stopped on drop.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub tenant: TenantSettings,
    pub tenants: Tenants,
    refresh_token: Mutex<String>,
    cancel: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Settings every test starts from: fast receipts, an ephemeral port.
pub fn test_settings() -> SandboxSettings {
    SandboxSettings {
        bind: "127.0.0.1:0".into(),
        receipt_delay_ms: 20,
        ..SandboxSettings::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(test_settings()).await
}

pub async fn spawn_app_with(settings: SandboxSettings) -> TestApp {
    let tenants = Tenants::new(vec![demo_tenant("http://unused")]).unwrap();
    spawn_app_for(settings, tenants).await
}

/// A sandbox built from `settings` whose webhooks go, from the start, to a receiver of
/// its own that answers 500 to its first `fail_first` deliveries: every webhook test
/// began by wiring the two together.
pub async fn spawn_app_with_receiver(
    settings: SandboxSettings,
    fail_first: usize,
) -> (TestApp, WebhookReceiver) {
    let receiver = WebhookReceiver::spawn(fail_first).await;
    let app = spawn_app_with(SandboxSettings {
        webhook_url: Some(receiver.url.clone()),
        ..settings
    })
    .await;
    (app, receiver)
}

pub async fn spawn_app_for(settings: SandboxSettings, tenants: Tenants) -> TestApp {
    let app = Application::build(&settings, tenants.clone())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let cancel = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(cancel.clone()));
    let tenant = tenants.all()[0].clone();
    TestApp {
        base,
        client: reqwest::Client::new(),
        refresh_token: Mutex::new(tenant.zalo.refresh_token.expose().to_owned()),
        tenant,
        tenants,
        cancel,
    }
}

impl TestApp {
    pub fn app_id(&self) -> &str {
        &self.tenant.zalo.app_id
    }

    /// `POST /v4/oa/access_token` as the SDKs send it.
    pub async fn refresh(&self, refresh_token: &str) -> Value {
        self.refresh_as(
            self.app_id(),
            self.tenant.zalo.app_secret.expose(),
            refresh_token,
        )
        .await
    }

    pub async fn refresh_as(&self, app_id: &str, secret: &str, refresh_token: &str) -> Value {
        let response = self
            .client
            .post(format!("{}/v4/oa/access_token", self.base))
            .header("secret_key", secret)
            .form(&[
                ("refresh_token", refresh_token),
                ("app_id", app_id),
                ("grant_type", "refresh_token"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// A fresh access token, rotating the refresh token this helper keeps.
    pub async fn access_token(&self) -> String {
        let current = self.refresh_token.lock().unwrap().clone();
        let answer = self.refresh(&current).await;
        let next = answer["refresh_token"]
            .as_str()
            .expect("refresh succeeded")
            .to_owned();
        *self.refresh_token.lock().unwrap() = next;
        answer["access_token"].as_str().unwrap().to_owned()
    }

    pub fn template_id(&self, kind: NotificationKind) -> String {
        self.tenant.zalo.templates[kind.as_str()].clone()
    }

    /// A valid ZNS receipt body.
    pub fn zns_body(&self, phone: &str, tracking_id: &str) -> Value {
        let data: serde_json::Map<String, Value> = NotificationKind::Receipt
            .required_params()
            .iter()
            // Within each parameter's registered length, as Loa sends them.
            .map(|p| {
                let value = loa_contracts::templates::fit(p, &format!("giá trị {p}"));
                ((*p).to_owned(), Value::from(value))
            })
            .collect();
        json!({
            "phone": phone,
            "template_id": self.template_id(NotificationKind::Receipt),
            "template_data": data,
            "tracking_id": tracking_id,
        })
    }

    /// Sends a valid receipt ZNS to [`PHONE`] with a fresh token, and returns the
    /// `msg_id` the sandbox gave it: the tests of what a citizen does with a ZNS start
    /// from one.
    pub async fn send_receipt(&self, tracking_id: &str) -> String {
        let token = self.access_token().await;
        let sent = self
            .send_zns(&token, &self.zns_body(PHONE, tracking_id))
            .await;
        sent["data"]["msg_id"].as_str().unwrap().to_owned()
    }

    pub async fn post_zalo(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header("access_token", token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `POST /message/template`, answer body.
    pub async fn send_zns(&self, token: &str, body: &Value) -> Value {
        let response = self.post_zalo("/message/template", token, body).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn send_cs(&self, token: &str, user_id: &str, text: &str) -> Value {
        let body = json!({"recipient": {"user_id": user_id}, "message": {"text": text}});
        let response = self.post_zalo("/v3.0/oa/message/cs", token, &body).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn control(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}/_sandbox/{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A control call that must succeed.
    pub async fn control_ok(&self, path: &str, body: Value) -> Value {
        let response = self.control(path, body).await;
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// A control call's JSON answer, whatever its status.
    pub async fn control_json(&self, path: &str, body: Value) -> Value {
        self.control(path, body).await.json().await.unwrap()
    }

    /// `GET /_sandbox/{path_and_query}`, as JSON: what the control API reports.
    async fn control_get<T: serde::de::DeserializeOwned>(&self, path_and_query: &str) -> T {
        self.client
            .get(format!("{}/_sandbox/{path_and_query}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn messages(&self, query: &str) -> Vec<Value> {
        self.control_get(&format!("messages{query}")).await
    }

    pub async fn stats(&self) -> Value {
        self.control_get("stats").await
    }

    /// Waits (up to `within`) until the sandbox counts `sent` webhooks delivered, and
    /// returns its stats then: deliveries are asynchronous to the calls that cause them.
    pub async fn wait_webhooks_sent(&self, sent: u64, within: Duration) -> Value {
        loa_platform::testing::eventually(within, || async {
            let stats = self.stats().await;
            (stats["webhooks_sent"] == sent).then_some(stats)
        })
        .await
        .unwrap()
    }

    /// Whether `received` bears this sandbox's signature (its app id and OA secret
    /// key), as [`signature_is_valid`] checks it.
    pub fn signed(&self, received: &Received) -> bool {
        signature_is_valid(
            received,
            self.app_id(),
            self.tenant.zalo.oa_secret_key.expose(),
        )
    }

    pub async fn follow(&self, user_id: &str, body: Option<Value>) -> Value {
        let mut request = self
            .client
            .post(format!("{}/_sandbox/users/{user_id}/follow", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }
}

/// One webhook as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone, Default)]
struct ReceiverState {
    received: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<AtomicUsize>,
}

/// A small axum webhook receiver on 127.0.0.1:0.
pub struct WebhookReceiver {
    pub url: String,
    state: ReceiverState,
    cancel: CancellationToken,
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl WebhookReceiver {
    /// A receiver that answers 500 to its first `fail_first` deliveries.
    pub async fn spawn(fail_first: usize) -> Self {
        let state = ReceiverState {
            fail_first: Arc::new(AtomicUsize::new(fail_first)),
            ..ReceiverState::default()
        };
        let router = Router::new()
            .route(
                "/zalo/webhook",
                post(
                    |State(s): State<ReceiverState>, headers: HeaderMap, body: Bytes| async move {
                        let left = s.fail_first.load(Ordering::SeqCst);
                        if left > 0 {
                            s.fail_first.store(left - 1, Ordering::SeqCst);
                            return StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        s.received.lock().unwrap().push(Received { headers, body });
                        StatusCode::OK
                    },
                ),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://127.0.0.1:{}/zalo/webhook",
            listener.local_addr().unwrap().port()
        );
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .unwrap();
        });
        Self { url, state, cancel }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits for a webhook with this `event_name` (and matching `pred`).
    pub async fn wait_for(&self, event_name: &str, pred: impl Fn(&Value) -> bool) -> Received {
        loa_platform::testing::eventually(Duration::from_secs(10), || async {
            self.received()
                .into_iter()
                .find(|r| r.json()["event_name"] == event_name && pred(&r.json()))
        })
        .await
        .unwrap_or_else(|e| panic!("no {event_name} webhook: {e}"))
    }
}

/// Checks `X-ZEvent-Signature` independently of the sandbox's code:
/// `mac=` + hex(sha256(app_id + body + timestamp + oa_secret_key)).
pub fn signature_is_valid(received: &Received, app_id: &str, oa_secret_key: &str) -> bool {
    let header = received
        .headers
        .get("x-zevent-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let timestamp = received.json()["timestamp"].as_str().unwrap().to_owned();
    let mut input = app_id.as_bytes().to_vec();
    input.extend_from_slice(&received.body);
    input.extend_from_slice(timestamp.as_bytes());
    input.extend_from_slice(oa_secret_key.as_bytes());
    header == format!("mac={}", hex::encode(Sha256::digest(&input)))
}
