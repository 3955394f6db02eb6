//! Test support: a tracker running in-process against a private database and vhost,
//! a publisher feeding `loa.events`, and an observer of `notifier.transactional`.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use lapin::{
    options::{BasicAckOptions, BasicGetOptions},
    types::AMQPValue,
    Channel, Connection,
};
use loa_contracts::{DossierEvent, Envelope, NotificationRequest};
use loa_platform::{
    amqp::{topology, OutgoingMessage, Publisher},
    http::HttpSettings,
    tenants::demo_tenant,
    testing::{eventually, TestEnv},
    CommonSettings, Credential, Secret, Tenants,
};
use loa_tracker::{
    store::{apply_batch, ApplyContext, BatchOutcome, IncomingEvent},
    Application, TrackerSettings,
};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Public base URL the tests configure.
pub const BASE_URL: &str = "https://tracuu.example.vn";
/// The trace context every test event carries.
pub const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
/// How long a test waits for something asynchronous.
pub const WAIT: Duration = Duration::from_secs(20);
/// The lookup secret the tests configure.
pub const SECRET: &str = "test-lookup-secret";

/// Two tenants: `demo` (admin `demo-admin`) and `other` (admin `other-admin`).
pub fn tenants() -> Tenants {
    let demo = demo_tenant("http://127.0.0.1:1");
    let mut other = demo.clone();
    other.id = "other".into();
    other.name = "Trung tâm Phục vụ hành chính công (other)".into();
    other.admin_tokens = vec![Credential::new("other-admin")];
    other.sources = Vec::new();
    Tenants::new(vec![demo, other]).unwrap()
}

/// Tracker settings for tests: a free port, the test secret, relay as asked.
pub fn settings(relay_enabled: bool) -> TrackerSettings {
    TrackerSettings {
        bind: "127.0.0.1:0".into(),
        lookup_secret: Secret::new(SECRET),
        relay_enabled,
        ..TrackerSettings::default()
    }
}

/// A running tracker.
pub struct TestApp {
    /// Its HTTP address.
    pub address: String,
    /// Its database.
    pub pool: Pool,
    /// Its clock (tests move it).
    pub clock: loa_tracker::clock::Clock,
    cancel: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    /// Builds and starts a tracker on `env`.
    pub async fn spawn(env: &TestEnv, settings: TrackerSettings) -> Self {
        Self::spawn_with_http(env, settings, HttpSettings::default()).await
    }

    /// Builds and starts a tracker on `env` whose listener has the settings `http`.
    pub async fn spawn_with_http(
        env: &TestEnv,
        settings: TrackerSettings,
        http: HttpSettings,
    ) -> Self {
        let common = CommonSettings {
            amqp_url: env.amqp_url.clone(),
            database_url: env.database_url.clone(),
            database_pool_size: 4,
            public_base_url: format!("{BASE_URL}/"),
            http,
            ..CommonSettings::default()
        };
        let app = Application::build(&common, &settings, tenants())
            .await
            .unwrap();
        let address = format!("http://127.0.0.1:{}", app.port());
        let pool = app.pool().clone();
        let clock = app.clock();
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(cancel.clone()));
        Self {
            address,
            pool,
            clock,
            cancel,
            handle,
        }
    }

    /// Stops it gracefully and waits until it has.
    pub async fn stop(self) {
        self.cancel.cancel();
        self.handle.await.unwrap().unwrap();
    }

    /// Runs a query returning one bigint.
    pub async fn count(&self, sql: &str) -> i64 {
        let client = self.pool.get().await.unwrap();
        client.query_one(sql, &[]).await.unwrap().get(0)
    }

    /// Waits until every event id is recorded in the history.
    pub async fn wait_applied(&self, event_ids: &[&str]) {
        let ids: Vec<String> = event_ids.iter().map(|s| (*s).to_owned()).collect();
        eventually(WAIT, || async {
            let client = self.pool.get().await.ok()?;
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM tracker.dossier_events WHERE event_id = ANY($1)",
                    &[&ids],
                )
                .await
                .ok()?
                .get(0);
            (n == ids.len() as i64).then_some(())
        })
        .await
        .unwrap();
    }

    /// Waits until the outbox has no unpublished row.
    pub async fn wait_relayed(&self) {
        eventually(WAIT, || async {
            let client = self.pool.get().await.ok()?;
            let n: i64 = client
                .query_one("SELECT count(*) FROM tracker.outbox", &[])
                .await
                .ok()?
                .get(0);
            (n == 0).then_some(())
        })
        .await
        .unwrap();
    }

    /// The tracker's Prometheus text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.address))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one series of `/metrics`, by its name and labels as printed
    /// (`loa_tracker_overdue_dossiers{tenant="demo"}`).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    /// A GET with the demo admin's token, as JSON.
    pub async fn admin_get(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.address))
            .bearer_auth("demo-admin")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The public lookup page of a `demo` dossier.
    pub async fn lookup_page(&self, code: &str) -> String {
        let token = loa_tracker::lookup_token(&Secret::new(SECRET), "demo", code);
        self.page_of_token(&token).await
    }

    /// The public lookup page behind `token`, as a citizen's browser gets it.
    pub async fn page_of_token(&self, token: &str) -> String {
        reqwest::get(format!("{}/tra-cuu/{token}", self.address))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A dossier's stored status.
    pub async fn status_of(&self, code: &str) -> Option<i16> {
        let client = self.pool.get().await.unwrap();
        client
            .query_opt(
                "SELECT status FROM tracker.dossiers WHERE tenant = 'demo' AND dossier_code = $1",
                &[&code],
            )
            .await
            .unwrap()
            .map(|r| r.get(0))
    }
}

/// Feeds `loa.events` like intake does, and reads what leaves the tracker.
pub struct Broker {
    publisher: Publisher,
    _connection: Connection,
    channel: Channel,
}

/// A notification as observed on `notifier.transactional`.
#[derive(Debug)]
pub struct Observed {
    /// The decoded request.
    pub request: NotificationRequest,
    /// The AMQP message id.
    pub message_id: String,
    /// The `traceparent` header.
    pub traceparent: Option<String>,
}

impl Broker {
    /// Connects to the env's vhost (declaring the topology).
    pub async fn connect(env: &TestEnv) -> Self {
        let publisher = Publisher::new(env.amqp_url.clone(), "test-feeder");
        publisher.ensure_connected().await.unwrap();
        let connection = loa_platform::amqp::connect(&env.amqp_url, "test-observer")
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        Self {
            publisher,
            _connection: connection,
            channel,
        }
    }

    /// Publishes an event to `loa.events` as intake does.
    pub async fn publish(&self, event: &DossierEvent) {
        let mut event = event.clone();
        event.accepted_at = Some(chrono::Utc::now());
        self.publish_raw(
            &event.routing_key(),
            Envelope::DossierEventV1(event.clone()).to_bytes(),
            &event.event_id,
        )
        .await;
    }

    /// Publishes any body to `loa.events`.
    pub async fn publish_raw(&self, routing_key: &str, body: Vec<u8>, message_id: &str) {
        self.publisher
            .publish(&OutgoingMessage {
                exchange: topology::EX_EVENTS.into(),
                routing_key: routing_key.into(),
                body,
                message_id: message_id.into(),
                headers: vec![(topology::H_TRACEPARENT.into(), TRACEPARENT.into())],
            })
            .await
            .unwrap();
    }

    /// Takes (and acks) every message currently in `queue`.
    pub async fn take_all(&self, queue: &str) -> Vec<lapin::message::Delivery> {
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

    /// Takes every notification currently in `notifier.transactional`, one per
    /// request: a packed message (`notification_batch.v1`) counts for each of its
    /// requests, with the request's id and trace context as its own.
    pub async fn notifications(&self) -> Vec<Observed> {
        let mut observed = Vec::new();
        for d in self.take_all(topology::Q_NOTIFIER_TRANSACTIONAL).await {
            match Envelope::from_bytes(&d.data).unwrap() {
                Envelope::NotificationRequestV1(request) => observed.push(Observed {
                    request,
                    message_id: d.properties.message_id().as_ref().unwrap().to_string(),
                    traceparent: loa_platform::amqp::consumer::header(&d, topology::H_TRACEPARENT),
                }),
                Envelope::NotificationBatchV1(batch) => {
                    observed.extend(batch.requests.into_iter().map(|request| Observed {
                        message_id: request.notification_id.clone(),
                        traceparent: request.trace_context.clone(),
                        request,
                    }))
                }
                other => panic!("unexpected message {other:?}"),
            }
        }
        observed
    }

    /// Takes every message currently in `notifier.transactional`: (routing key,
    /// decoded body).
    pub async fn notification_messages(&self) -> Vec<(String, Envelope)> {
        self.take_all(topology::Q_NOTIFIER_TRANSACTIONAL)
            .await
            .into_iter()
            .map(|d| {
                (
                    d.routing_key.as_str().to_owned(),
                    Envelope::from_bytes(&d.data).unwrap(),
                )
            })
            .collect()
    }

    /// Waits until at least one dead letter arrived and returns them.
    pub async fn dead_letters(&self) -> Vec<lapin::message::Delivery> {
        eventually(WAIT, || async {
            let got = self.take_all(topology::Q_DEAD).await;
            (!got.is_empty()).then_some(got)
        })
        .await
        .unwrap()
    }
}

/// Reads a string header of a delivery.
pub fn header(d: &lapin::message::Delivery, name: &str) -> Option<String> {
    match d.properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    }
}

/// A valid event for tenant `demo`, as upstream would send it (then normalised).
pub fn event(event_id: &str, code: &str, status: u8, occurred_at: &str) -> DossierEvent {
    event_with(event_id, code, status, occurred_at, |_| {})
}

/// [`event`] with changes to its JSON before validation.
pub fn event_with(
    event_id: &str,
    code: &str,
    status: u8,
    occurred_at: &str,
    change: impl FnOnce(&mut Value),
) -> DossierEvent {
    let mut v = json!({
        "event_id": event_id,
        "tenant": "demo",
        "dossier_code": code,
        "status": status,
        "occurred_at": occurred_at,
        "received_at": "2026-11-28T09:30:00+07:00",
        "due_at": "2026-12-03T17:00:00+07:00",
        "procedure": {"code": "1.000894", "name": "Đăng ký kết hôn"},
        "agency": {"code": "000.00.06.H56", "name": "UBND phường Đức Thắng"},
        "applicant": {"name": "Trần Thị Bích", "phone": "0903 123 456", "zalo_user_id": "3512873524511234567"},
        "channels": {"zalo": true, "broadcast": false}
    });
    change(&mut v);
    DossierEvent::from_json(&v).unwrap()
}

/// A unique dossier code per call.
pub fn dossier_code(suffix: &str) -> String {
    format!("000.00.06.H56-261128-{suffix}")
}

/// A migrated database of its own and what the unit of work needs, for the tests that
/// call `apply_batch` directly rather than through the consumer: each of them built the
/// same pool, secret and context by hand.
pub struct Direct {
    /// The migrated database.
    pub pool: Pool,
    /// The private database and vhost (kept so that they outlive the pool).
    pub env: TestEnv,
    secret: Secret,
    now: DateTime<Utc>,
}

impl Direct {
    /// A fresh database, migrated, and a processing instant fixed at "now".
    pub async fn new() -> Self {
        let env = TestEnv::new().await.unwrap();
        let pool = loa_platform::db::pool(&env.database_url, 4).unwrap();
        loa_tracker::migrate(&pool).await.unwrap();
        Self {
            pool,
            env,
            secret: Secret::new(SECRET),
            now: Utc::now(),
        }
    }

    /// The context of every batch this fixture applies: the test secret, the test base
    /// URL and the instant fixed at creation.
    pub fn context(&self) -> ApplyContext<'_> {
        self.context_at(self.now)
    }

    /// [`Direct::context`] at another processing instant.
    pub fn context_at(&self, now: DateTime<Utc>) -> ApplyContext<'_> {
        ApplyContext {
            lookup_secret: &self.secret,
            public_base_url: BASE_URL,
            now,
        }
    }

    /// Applies `events` as one batch with [`Direct::context`], on `pool`.
    pub async fn apply_on(&self, pool: &Pool, events: &[DossierEvent]) -> BatchOutcome {
        apply_batch(pool, &self.context(), &incoming(events))
            .await
            .unwrap()
    }

    /// Applies `events` as one batch with [`Direct::context`].
    pub async fn apply(&self, events: &[DossierEvent]) -> BatchOutcome {
        self.apply_on(&self.pool, events).await
    }
}

/// Events as the consumer hands them to the store, each with the test trace context.
pub fn incoming(events: &[DossierEvent]) -> Vec<IncomingEvent> {
    events
        .iter()
        .map(|e| IncomingEvent {
            event: e.clone(),
            traceparent: Some(TRACEPARENT.into()),
        })
        .collect()
}
