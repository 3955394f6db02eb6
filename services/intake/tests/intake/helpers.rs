//! Test support: an intake running in-process on a private vhost, an upstream that
//! publishes to `loa.ingress`, and a reader of the queues intake feeds.

use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions},
    types::{AMQPValue, FieldTable},
    BasicProperties, Channel, Connection,
};
use loa_contracts::Envelope;
use loa_intake::{Application, IntakeSettings};
use loa_platform::{
    amqp::{self, topology},
    tenants::demo_tenant,
    testing::TestEnv,
    CommonSettings, Credential, Tenants,
};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a test waits for something asynchronous.
pub const WAIT: Duration = Duration::from_secs(20);

/// Two tenants: `demo` (source `demo-one-stop`, token `demo-token`) and `other`
/// (source `other-one-stop`, token `other-token`).
pub fn tenants() -> Tenants {
    let demo = demo_tenant("http://127.0.0.1:1");
    let mut other = demo.clone();
    other.id = "other".into();
    other.sources[0].id = "other-one-stop".into();
    other.sources[0].token = Credential::new("other-token");
    other.admin_tokens = vec![Credential::new("other-admin")];
    Tenants::new(vec![demo, other]).unwrap()
}

/// Intake settings for tests: a free port, everything else as configured by default.
pub fn settings() -> IntakeSettings {
    IntakeSettings {
        bind: "127.0.0.1:0".into(),
        ..IntakeSettings::default()
    }
}

/// A running intake and a connection to its vhost.
pub struct TestApp {
    /// Its HTTP address.
    pub address: String,
    /// An HTTP client.
    pub http: reqwest::Client,
    cancel: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
    _connection: Connection,
    channel: Channel,
}

impl TestApp {
    /// Builds and starts an intake on `env` (declaring the topology first, so its
    /// queues exist before anything is published).
    pub async fn spawn(env: &TestEnv, settings: IntakeSettings) -> Self {
        let connection = amqp::connect(&env.amqp_url, "test-upstream").await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        topology::declare(&channel).await.unwrap();
        channel
            .confirm_select(ConfirmSelectOptions { nowait: false })
            .await
            .unwrap();
        let common = CommonSettings {
            amqp_url: env.amqp_url.clone(),
            ..CommonSettings::default()
        };
        let app = Application::build(&common, &settings, tenants())
            .await
            .unwrap();
        let address = format!("http://127.0.0.1:{}", app.port());
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(cancel.clone()));
        Self {
            address,
            http: reqwest::Client::new(),
            cancel,
            handle,
            _connection: connection,
            channel,
        }
    }

    /// Stops it gracefully and waits until it has.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.handle.await.unwrap().unwrap();
    }

    /// `POST /v1/events` as the source with `token`: (status, JSON body).
    pub async fn post_event(&self, token: &str, event: &Value) -> (u16, Value) {
        self.post("/v1/events", token, event).await
    }

    /// `POST /v1/events/batch` as the source with `token`: (status, JSON body).
    pub async fn post_batch(&self, token: &str, events: &[Value]) -> (u16, Value) {
        self.post("/v1/events/batch", token, &json!({ "events": events }))
            .await
    }

    async fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.address))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("intake answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON answer"))
    }

    /// Publishes `body` to `loa.ingress` as an upstream system would, with these
    /// headers, and waits for the broker's confirm.
    pub async fn publish_ingress(&self, headers: &[(&str, &str)], body: &[u8]) {
        let mut table = FieldTable::default();
        for (name, value) in headers {
            table.insert((*name).into(), AMQPValue::LongString((*value).into()));
        }
        let confirm = self
            .channel
            .basic_publish(
                topology::EX_INGRESS.into(),
                "upstream.test".into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                body,
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_headers(table),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(
            matches!(confirm, lapin::Confirmation::Ack(None)),
            "{confirm:?}"
        );
    }

    /// Takes (and acks) every message currently in `queue`.
    pub async fn take_all(&self, queue: &str) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Some(got) = self
            .channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
        {
            got.delivery
                .ack(BasicAckOptions { multiple: false })
                .await
                .unwrap();
            out.push(got.delivery);
        }
        out
    }

    /// Waits until `queue` has delivered `n` messages in all and returns them.
    pub async fn wait_for(&self, queue: &str, n: usize) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut seen = Vec::new();
        while seen.len() < n && tokio::time::Instant::now() < deadline {
            seen.extend(self.take_all(queue).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            seen.len() >= n,
            "expected {n} message(s) in {queue}, got {}",
            seen.len()
        );
        seen
    }

    /// The event ids of the events forwarded to `loa.events`, sorted, once `n` have
    /// arrived.
    pub async fn forwarded_event_ids(&self, n: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut ids = Vec::new();
        while ids.len() < n && tokio::time::Instant::now() < deadline {
            for d in self.take_all(topology::Q_TRACKER_EVENTS).await {
                match Envelope::from_bytes(&d.data).unwrap() {
                    Envelope::DossierEventV1(e) => ids.push(e.event_id),
                    Envelope::DossierEventBatchV1(b) => {
                        ids.extend(b.events.into_iter().map(|p| p.event.event_id))
                    }
                    other => panic!("not an event: {other:?}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            ids.len() >= n,
            "expected {n} forwarded event(s), got {ids:?}"
        );
        ids.sort();
        ids
    }
}

/// A valid event for tenant `demo`, its times around the present.
pub fn event(event_id: &str) -> Value {
    let now = chrono::Utc::now();
    let ts = |d: chrono::Duration| (now + d).to_rfc3339();
    json!({
        "event_id": event_id,
        "tenant": "demo",
        "dossier_code": format!("000.00.06.H56-261204-{event_id}"),
        "status": "received",
        "occurred_at": ts(chrono::Duration::minutes(-5)),
        "received_at": ts(chrono::Duration::minutes(-5)),
        "due_at": ts(chrono::Duration::days(5)),
        "procedure": {"code": "1.001193", "name": "Đăng ký khai sinh"},
        "agency": {"code": "000.00.06.H56", "name": "UBND phường Đức Thắng"},
        "applicant": {"name": "Trần Thị Bích", "phone": "0903 123 456"},
        "channels": {"zalo": true, "broadcast": false}
    })
}

/// Reads a string header of a delivery.
pub fn header(d: &Delivery, name: &str) -> Option<String> {
    amqp::consumer::header(d, name)
}
