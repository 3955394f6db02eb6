//! Starting a whole Loa system for a test, and talking to it.

use loa::{
    runner::{self, RunningSystem, Target},
    settings::{ServiceSettings, Settings},
};
use loa_platform::{tenants::demo_tenant, testing::TestEnv, CommonSettings, Credential, Tenants};
use serde_json::{json, Value};
use std::time::Duration;

/// A running system with its private database and vhost.
pub struct TestSystem {
    pub env: TestEnv,
    pub system: Option<RunningSystem>,
    pub intake: String,
    pub tracker: String,
    pub sandbox: String,
    pub console: String,
    pub client: reqwest::Client,
}

/// Two tenants: `demo` (source token `demo-token`, admin `demo-admin`) and `other`
/// (source token `other-token`, admin `other-admin`), both on the sandbox.
pub fn test_tenants() -> Tenants {
    let demo = demo_tenant("http://127.0.0.1:1");
    let mut other = demo_tenant("http://127.0.0.1:1");
    other.id = "other".into();
    other.name = "Tỉnh khác".into();
    other.sources[0].id = "other-one-stop".into();
    other.sources[0].token = Credential::new("other-token");
    other.admin_tokens = vec![Credential::new("other-admin")];
    other.zalo.app_id = "1000000000000000002".into();
    other.zalo.oa_id = "2000000000000000002".into();
    Tenants::new(vec![demo, other]).expect("test tenants are valid")
}

/// Settings for a system on ephemeral ports in `env`.
pub fn test_settings(env: &TestEnv) -> Settings {
    let common = CommonSettings {
        amqp_url: env.amqp_url.clone(),
        database_url: env.database_url.clone(),
        database_pool_size: 4,
        ..CommonSettings::default()
    };
    let mut services = ServiceSettings::default();
    services.intake.bind = "127.0.0.1:0".into();
    services.tracker.bind = "127.0.0.1:0".into();
    services.notifier.bind = "127.0.0.1:0".into();
    services.sandbox.bind = "127.0.0.1:0".into();
    services.console.bind = "127.0.0.1:0".into();
    // Plain HTTP on loopback: no `Secure` cookies; a short lockout threshold.
    services.console.dev_mode = true;
    services.console.lockout_account_failures = 3;
    Settings {
        common,
        services,
        tenants: test_tenants(),
    }
}

impl TestSystem {
    /// Starts every service in this process.
    pub async fn start() -> Self {
        let env = TestEnv::new()
            .await
            .expect("PostgreSQL and RabbitMQ are reachable");
        let settings = test_settings(&env);
        Self::start_with(env, settings).await
    }

    /// Starts every service with custom settings.
    pub async fn start_with(env: TestEnv, settings: Settings) -> Self {
        if std::env::var_os("TEST_LOG").is_some() {
            loa_platform::telemetry::init(Default::default(), "info,lapin=warn", std::io::stderr);
        }
        let cancel = tokio_util::sync::CancellationToken::new();
        let system = runner::start(Target::All, &settings, cancel)
            .await
            .expect("the system starts");
        let url = |p: Option<u16>| format!("http://127.0.0.1:{}", p.expect("service running"));
        let this = Self {
            intake: url(system.intake_port),
            tracker: url(system.tracker_port),
            sandbox: url(system.sandbox_port),
            console: url(system.console_port),
            system: Some(system),
            env,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("a client builds"),
        };
        this.wait_ready().await;
        this
    }

    async fn wait_ready(&self) {
        wait_ready(&self.client, &[&self.intake, &self.tracker]).await;
    }

    /// `POST /v1/events` with a bearer token.
    pub async fn post_event(&self, token: &str, event: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/events", self.intake))
            .bearer_auth(token)
            .json(event)
            .send()
            .await
            .expect("intake answers")
    }

    /// `POST /v1/events/batch` with `body` (`{"events": [...]}`) as `token`'s source.
    pub async fn post_batch(&self, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/events/batch", self.intake))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("intake answers")
    }

    /// Every message the sandbox accepted.
    pub async fn sandbox_messages(&self) -> Vec<Value> {
        sandbox_messages(&self.client, &self.sandbox).await
    }

    /// Waits until the sandbox holds at least `n` messages, then waits a little longer
    /// to catch any extra (duplicate) one, and returns them all.
    pub async fn settle_messages(&self, n: usize) -> Vec<Value> {
        settle_messages(&self.client, &self.sandbox, n).await
    }

    /// `GET /v1/dossiers/{code}` as the demo admin.
    pub async fn dossier(&self, code: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/v1/dossiers/{code}", self.tracker))
            .bearer_auth("demo-admin")
            .send()
            .await
            .expect("tracker answers")
    }

    /// Points the sandbox's webhooks at this system's notifier (`on`), or turns them
    /// off.
    pub async fn point_webhooks_at_notifier(&self, on: bool) {
        let port = self
            .system
            .as_ref()
            .and_then(|s| s.notifier_port)
            .expect("the notifier runs");
        let url = on.then(|| format!("http://127.0.0.1:{port}/zalo/webhook"));
        let r = self
            .client
            .post(format!("{}/_sandbox/webhook", self.sandbox))
            .json(&json!({ "url": url }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    /// Stops the system gracefully.
    pub async fn stop(mut self) {
        if let Some(system) = self.system.take() {
            system.stop().await.expect("services stop cleanly");
        }
    }
}

pub async fn wait_ready(client: &reqwest::Client, bases: &[&str]) {
    for base in bases {
        loa_platform::testing::eventually(Duration::from_secs(30), || async {
            let r = client.get(format!("{base}/readyz")).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await
        .unwrap_or_else(|_| panic!("{base} became ready"));
    }
}

pub async fn sandbox_messages(client: &reqwest::Client, sandbox: &str) -> Vec<Value> {
    client
        .get(format!("{sandbox}/_sandbox/messages"))
        .send()
        .await
        .expect("sandbox answers")
        .json()
        .await
        .expect("messages are JSON")
}

pub async fn settle_messages(client: &reqwest::Client, sandbox: &str, n: usize) -> Vec<Value> {
    loa_platform::testing::eventually(Duration::from_secs(30), || async {
        let m = sandbox_messages(client, sandbox).await;
        (m.len() >= n).then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("{n} message(s) reached the sandbox"));
    tokio::time::sleep(Duration::from_millis(700)).await;
    sandbox_messages(client, sandbox).await
}

/// A valid receipt event (status 2) for the demo tenant.
pub fn receipt_event(event_id: &str, dossier_code: &str) -> Value {
    json!({
        "event_id": event_id,
        "tenant": "demo",
        "dossier_code": dossier_code,
        "status": 2,
        "occurred_at": "2026-11-28T09:30:00+07:00",
        "received_at": "2026-11-28T09:30:00+07:00",
        "due_at": "2026-12-03T17:00:00+07:00",
        "procedure": {"code": "1.001193", "name": "Đăng ký khai sinh"},
        "agency": {"code": "000.00.06.H56", "name": "UBND phường Đức Thắng"},
        "applicant": {"name": "Trần Thị Bích", "phone": "+84 903.123.456"},
        "channels": {"zalo": true, "broadcast": false}
    })
}

/// The same dossier at another status and time.
pub fn status_event(event_id: &str, dossier_code: &str, status: Value, occurred_at: &str) -> Value {
    let mut e = receipt_event(event_id, dossier_code);
    e["status"] = status;
    e["occurred_at"] = json!(occurred_at);
    e
}
