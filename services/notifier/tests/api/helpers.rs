//! A notifier on a private database and vhost, talking to an in-process Zalo sandbox.

use loa_contracts::{
    notification::notification_id, Envelope, Lane, NotificationKind, NotificationRequest, Recipient,
};
use loa_notifier::{Application, NotifierSettings};
use loa_platform::{
    amqp::{consumer::H_TENANT, topology, OutgoingMessage, Publisher},
    tenants::{demo_tenant, TenantSettings},
    testing::{eventually, TestEnv},
    CommonSettings, Credential, Secret, Tenants,
};
use loa_zalo_sandbox::SandboxSettings;
use serde_json::Value;
use std::{collections::BTreeMap, time::Duration};
use tokio_util::sync::CancellationToken;

/// How long a test waits for anything asynchronous.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The phone every test citizen has.
pub const PHONE: &str = "84903123456";

pub struct TestApp {
    pub env: TestEnv,
    pub address: String,
    pub sandbox_url: String,
    /// The tenants as the notifier sees them (pointed at the sandbox).
    pub tenants: Tenants,
    pub pool: deadpool_postgres::Pool,
    pub publisher: Publisher,
    pub http: reqwest::Client,
    /// The notifier's wall clock (night ban, quota day, parked requests).
    pub clock: loa_notifier::clock::Clock,
    /// The keys the notifier seals its Zalo tokens with.
    pub keyring: loa_notifier::zalo::sealing::Keyring,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A second tenant, for tenant-scoping tests: its own app, OA and admin token.
pub fn other_tenant(sandbox_url: &str) -> TenantSettings {
    let mut t = demo_tenant(sandbox_url);
    t.id = "other".into();
    t.name = "Tỉnh khác".into();
    t.sources.clear();
    t.admin_tokens = vec![Credential::new("other-admin")];
    t.zalo.app_id = "1000000000000000002".into();
    t.zalo.oa_id = "2000000000000000002".into();
    t.zalo.app_secret = Secret::new("other-app-secret");
    t.zalo.refresh_token = Secret::new("other-refresh-token");
    t
}

/// Starts the sandbox and the notifier with the demo tenant.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the sandbox and the notifier; `edit` may change or add tenants (their Zalo
/// URLs are pointed at the sandbox afterwards).
pub async fn spawn_app_with(edit: impl FnOnce(&mut Vec<TenantSettings>)) -> TestApp {
    spawn_app_configured(edit, |_| {}).await
}

/// The notifier's settings in tests: short time-outs, retry delay tiers of 200 to
/// 800 ms, parked requests looked at every 100 ms.
pub fn test_settings() -> NotifierSettings {
    NotifierSettings {
        bind: "127.0.0.1:0".into(),
        http_timeout_ms: 3_000,
        retry_delays_ms: vec![200, 400, 800],
        scheduler_interval_ms: 100,
        ..NotifierSettings::default()
    }
}

/// Like [`spawn_app_with`]; `configure` may change the notifier's settings (they start
/// from [`test_settings`]).
pub async fn spawn_app_configured(
    edit: impl FnOnce(&mut Vec<TenantSettings>),
    configure: impl FnOnce(&mut NotifierSettings),
) -> TestApp {
    let _ = std::env::var("TEST_LOG").map(|_| {
        loa_platform::telemetry::init(
            loa_platform::telemetry::LogFormat::Pretty,
            "info",
            std::io::stdout,
        )
    });
    let env = TestEnv::new().await.expect("test database and vhost");
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();

    // The sandbox registers the apps and templates as Zalo knows them; `edit` changes
    // only what the notifier is configured with. URLs are set once the sandbox is bound.
    let zalo_side = vec![
        demo_tenant("http://127.0.0.1:1"),
        other_tenant("http://127.0.0.1:1"),
    ];
    let mut notifier_side = zalo_side.clone();
    edit(&mut notifier_side);
    let tenants = Tenants::new(zalo_side).expect("valid tenants");
    let sandbox_settings = SandboxSettings {
        bind: "127.0.0.1:0".into(),
        ..SandboxSettings::default()
    };
    let sandbox = loa_zalo_sandbox::Application::build(&sandbox_settings, tenants.clone())
        .await
        .expect("sandbox builds");
    let sandbox_url = format!("http://127.0.0.1:{}", sandbox.port());
    let stop = cancel.clone();
    tasks.push(tokio::spawn(async move {
        let _ = sandbox.run_until_stopped(stop).await;
    }));

    let tenants = Tenants::new(notifier_side)
        .expect("valid tenants")
        .pointed_at(&sandbox_url);
    let common = CommonSettings {
        amqp_url: env.amqp_url.clone(),
        database_url: env.database_url.clone(),
        database_pool_size: 8,
        ..CommonSettings::default()
    };
    let mut settings = test_settings();
    configure(&mut settings);
    let keyring = settings.keyring().expect("valid token keys");
    let app = Application::build(&common, &settings, tenants.clone())
        .await
        .expect("notifier builds");
    let clock = app.clock();
    let address = format!("http://127.0.0.1:{}", app.port());
    let pool = loa_platform::db::pool(&env.database_url, 2).expect("pool");
    let stop = cancel.clone();
    tasks.push(tokio::spawn(async move {
        app.run_until_stopped(stop).await.expect("notifier runs");
    }));

    let test_app = TestApp {
        publisher: Publisher::new(env.amqp_url.clone(), "notifier-tests"),
        env,
        address,
        sandbox_url,
        tenants,
        pool,
        http: reqwest::Client::new(),
        cancel,
        tasks,
        clock,
        keyring,
    };
    test_app.wait_until_ready().await;
    test_app
}

impl TestApp {
    /// Starts another notifier on the same database, vhost and sandbox (a second
    /// replica), with the test settings changed by `configure`, and waits until it is
    /// ready. Returns its clock.
    pub async fn spawn_replica(
        &mut self,
        configure: impl FnOnce(&mut NotifierSettings),
    ) -> loa_notifier::clock::Clock {
        let common = CommonSettings {
            amqp_url: self.env.amqp_url.clone(),
            database_url: self.env.database_url.clone(),
            database_pool_size: 8,
            ..CommonSettings::default()
        };
        let mut settings = test_settings();
        configure(&mut settings);
        let app = Application::build(&common, &settings, self.tenants.clone())
            .await
            .expect("replica builds");
        let clock = app.clock();
        let ready = format!("http://127.0.0.1:{}/readyz", app.port());
        let stop = self.cancel.clone();
        self.tasks.push(tokio::spawn(async move {
            app.run_until_stopped(stop).await.expect("replica runs");
        }));
        eventually(PATIENCE, || async {
            let r = self.http.get(&ready).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await
        .expect("the replica becomes ready");
        clock
    }

    async fn wait_until_ready(&self) {
        eventually(PATIENCE, || async {
            let r = self
                .http
                .get(format!("{}/readyz", self.address))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        })
        .await
        .expect("the notifier becomes ready");
    }

    /// Publishes a request the way the tracker does, to its own lane.
    pub async fn publish(&self, request: &NotificationRequest) {
        self.publish_raw(
            &request.routing_key(),
            Envelope::NotificationRequestV1(request.clone()).to_bytes(),
            &request.notification_id,
        )
        .await;
    }

    /// Publishes many requests pipelined (they arrive in the same batches), each to
    /// its own lane.
    pub async fn publish_many(&self, requests: &[NotificationRequest]) {
        let messages: Vec<OutgoingMessage> = requests
            .iter()
            .map(|r| OutgoingMessage {
                exchange: topology::EX_NOTIFICATIONS.into(),
                routing_key: r.routing_key(),
                body: Envelope::NotificationRequestV1(r.clone()).to_bytes(),
                message_id: r.notification_id.clone(),
                headers: vec![(H_TENANT.to_owned(), r.tenant.clone())],
            })
            .collect();
        self.publisher
            .publish_all(&messages)
            .await
            .expect("the broker confirms");
    }

    /// Publishes any body to the notifications exchange, stamped with the tenant of
    /// its routing key (`<lane>.<tenant>.<kind>`) as the tracker's relay stamps it.
    pub async fn publish_raw(&self, routing_key: &str, body: Vec<u8>, message_id: &str) {
        let tenant = routing_key.split('.').nth(1).unwrap_or_default();
        self.publisher
            .publish(&OutgoingMessage {
                exchange: topology::EX_NOTIFICATIONS.into(),
                routing_key: routing_key.into(),
                body,
                message_id: message_id.into(),
                headers: vec![(H_TENANT.to_owned(), tenant.to_owned())],
            })
            .await
            .expect("the broker confirms");
    }

    /// The sandbox's counters (`GET /_sandbox/stats`): calls accepted and refused,
    /// webhooks sent and failed.
    pub async fn sandbox_stats(&self) -> Value {
        self.http
            .get(format!("{}/_sandbox/stats", self.sandbox_url))
            .send()
            .await
            .expect("sandbox answers")
            .json()
            .await
            .expect("sandbox answers JSON")
    }

    /// The notifier's Prometheus text, as a scraper reads it.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The demo tenant's pause state (`GET /v1/pause` as its admin), which the tests
    /// of operator errors read after each fault.
    pub async fn pause_state(&self) -> Value {
        self.http
            .get(format!("{}/v1/pause", self.address))
            .bearer_auth("demo-admin")
            .send()
            .await
            .expect("pause state")
            .json()
            .await
            .expect("pause state JSON")
    }

    /// Every message the sandbox accepted.
    pub async fn sandbox_messages(&self) -> Vec<Value> {
        let body: Value = self
            .http
            .get(format!("{}/_sandbox/messages", self.sandbox_url))
            .send()
            .await
            .expect("sandbox answers")
            .json()
            .await
            .expect("sandbox answers JSON");
        match body {
            Value::Array(list) => list,
            Value::Object(mut o) => match o.remove("messages") {
                Some(Value::Array(list)) => list,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// The sandbox's messages carrying `tracking_id`.
    pub async fn messages_for(&self, tracking_id: &str) -> Vec<Value> {
        self.sandbox_messages()
            .await
            .into_iter()
            .filter(|m| m["tracking_id"] == tracking_id)
            .collect()
    }

    /// Waits until the sandbox took at least one message carrying `tracking_id`, and
    /// returns them; `what` says in the failure what was awaited.
    pub async fn wait_messages_for(&self, tracking_id: &str, what: &str) -> Vec<Value> {
        eventually(PATIENCE, || async {
            let messages = self.messages_for(tracking_id).await;
            (!messages.is_empty()).then_some(messages)
        })
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Injects a sandbox fault.
    pub async fn inject_fault(&self, fault: Value) {
        let r = self
            .http
            .post(format!("{}/_sandbox/faults", self.sandbox_url))
            .json(&fault)
            .send()
            .await
            .expect("sandbox answers");
        assert!(
            r.status().is_success(),
            "fault refused: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Makes the sandbox refuse every access token issued so far.
    pub async fn expire_tokens(&self) {
        let r = self
            .http
            .post(format!("{}/_sandbox/tokens/expire", self.sandbox_url))
            .send()
            .await
            .expect("sandbox answers");
        assert!(r.status().is_success());
    }

    /// The delivery row: (status, attempts, last_error_code, last_error, zalo_msg_id).
    pub async fn delivery(
        &self,
        id: &str,
    ) -> Option<(String, i32, Option<i32>, Option<String>, Option<String>)> {
        let client = self.pool.get().await.ok()?;
        let row = client
            .query_opt(
                "SELECT status, attempts, last_error_code, last_error, zalo_msg_id
                   FROM notifier.deliveries WHERE notification_id = $1",
                &[&id],
            )
            .await
            .ok()??;
        Some((row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)))
    }

    /// Waits until the delivery row has `status`, and returns it.
    pub async fn delivery_with_status(
        &self,
        id: &str,
        status: &str,
    ) -> (String, i32, Option<i32>, Option<String>, Option<String>) {
        match eventually(PATIENCE, || async {
            self.delivery(id).await.filter(|d| d.0 == status)
        })
        .await
        {
            Ok(row) => row,
            Err(_) => panic!(
                "delivery {id} never became {status}: {:?}",
                self.delivery(id).await
            ),
        }
    }

    /// The tenant's stored token pair, opened: (access_token, refresh_token).
    pub async fn stored_tokens(&self, tenant: &str) -> (Option<String>, String) {
        let (access, refresh) = self.sealed_tokens(tenant).await;
        let open = |column: &str, value: &str| {
            self.keyring
                .open(tenant, column, value)
                .expect("the stored token opens")
                .expose()
                .to_owned()
        };
        (
            access.map(|a| open("access_token", &a)),
            open("refresh_token", &refresh),
        )
    }

    /// The tenant's token pair as the table holds it: (access_token, refresh_token).
    pub async fn sealed_tokens(&self, tenant: &str) -> (Option<String>, String) {
        let client = self.pool.get().await.expect("db");
        let row = client
            .query_one(
                "SELECT access_token, refresh_token FROM notifier.oauth_tokens WHERE tenant = $1",
                &[&tenant],
            )
            .await
            .expect("token row");
        (row.get(0), row.get(1))
    }

    /// Waits until both lanes' work queues are empty (every request settled).
    pub async fn wait_until_settled(&self) {
        eventually(PATIENCE, || async {
            let lanes = [
                topology::Q_NOTIFIER_TRANSACTIONAL,
                topology::Q_NOTIFIER_BROADCAST,
            ];
            let depths = self.env.queue_depths(&lanes).ok()?;
            depths.iter().all(|d| *d == 0).then_some(())
        })
        .await
        .expect("the queues drain");
    }

    /// Takes (deletes and returns) every dead letter the notifier has stored from
    /// `loa.dead-letters` so far, oldest first: (reason, body).
    pub async fn take_dead_letters(&self) -> Vec<(Option<String>, Vec<u8>)> {
        let client = self.pool.get().await.expect("db");
        let mut rows: Vec<(i64, Option<String>, Vec<u8>)> = client
            .query(
                "DELETE FROM notifier.dead_letters RETURNING id, reason, body",
                &[],
            )
            .await
            .expect("dead letters")
            .iter()
            .map(|r| (r.get(0), Some(r.get(1)), r.get(2)))
            .collect();
        rows.sort_by_key(|r| r.0);
        rows.into_iter()
            .map(|(_, reason, body)| (reason, body))
            .collect()
    }

    /// Waits for at least one dead letter and returns them all.
    pub async fn dead_letters(&self) -> Vec<(Option<String>, Vec<u8>)> {
        eventually(PATIENCE, || async {
            let letters = self.take_dead_letters().await;
            (!letters.is_empty()).then_some(letters)
        })
        .await
        .expect("a dead letter arrives")
    }

    /// `GET /v1/deliveries` with an optional bearer token.
    pub async fn get_deliveries(&self, query: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http
            .get(format!("{}/v1/deliveries{query}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("notifier answers")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.cancel.cancel();
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// A receipt for a fresh dossier of the demo tenant, with every parameter its
/// template needs.
pub fn receipt_request(dossier_code: &str) -> NotificationRequest {
    request_for("demo", dossier_code, NotificationKind::Receipt)
}

/// A request of `kind` for `tenant` with every parameter its template needs.
pub fn request_for(
    tenant: &str,
    dossier_code: &str,
    kind: NotificationKind,
) -> NotificationRequest {
    let event_id = format!("evt-{dossier_code}-{}", rand::random::<u64>());
    let params: BTreeMap<String, String> = kind
        .required_params()
        .iter()
        .map(|p| {
            let value = match *p {
                "customer_name" => "Nguyễn Thị Hoàng Anh".to_owned(),
                "dossier_code" => dossier_code.to_owned(),
                "procedure_name" => "Đăng ký kết hôn".to_owned(),
                "status" => "Được tiếp nhận".to_owned(),
                "agency_name" => "UBND phường Bến Nghé".to_owned(),
                "lookup_url" => format!("http://127.0.0.1:8081/tra-cuu/{dossier_code}"),
                "received_date" => "28/11/2026".to_owned(),
                "due_date" => "03/12/2026".to_owned(),
                other => format!("giá trị {other}"),
            };
            ((*p).to_owned(), value)
        })
        .collect();
    NotificationRequest {
        notification_id: notification_id(tenant, &event_id, kind),
        tenant: tenant.to_owned(),
        kind,
        recipient: Recipient {
            phone: Some(PHONE.to_owned()),
            zalo_user_id: None,
        },
        params,
        lane: Lane::Transactional,
        dossier_code: Some(dossier_code.to_owned()),
        not_before: None,
        trace_context: None,
        event_accepted_at: Some(chrono::Utc::now()),
        created_at: chrono::Utc::now(),
        broadcast: None,
    }
}
