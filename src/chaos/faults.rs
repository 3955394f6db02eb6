//! Carries out the schedule against the split system: kills and restarts, closed AMQP
//! connections, terminated PostgreSQL backends, Zalo faults and token expiry, each
//! logged in the [`Record`] with how it went.
//!
//! Two kills need care to keep the audit sound:
//! - **the notifier**: its `loa_notifier_ambiguous_resends_total` dies with it, so it
//!   is scraped right before the SIGKILL, with the system locked so nothing else
//!   happens in between;
//! - **the sandbox**: its record of accepted messages lives in its memory. It is
//!   stopped as Zalo would go away: first every send is answered `503` (from then on
//!   it accepts nothing), its messages are listed and archived, then it is SIGKILLed.
//!   Its queued webhooks (delivery receipts not yet sent) die with it, as receipts
//!   lost for good.

use super::{
    record::{counter_by_tenant, Record},
    schedule::{Action, Service, Step, ZaloFault},
};
use crate::bench::{load::SandboxMessage, system::SystemUnderTest};
use deadpool_postgres::Pool;
use serde_json::{json, Value};
use std::{collections::BTreeMap, sync::Arc, time::Duration};
use tokio::{sync::Mutex, time::Instant};

/// How long a killed service stays down before it is started again (a supervisor's
/// restart delay).
pub const DOWNTIME: Duration = Duration::from_secs(1);
/// How long a restarted service may take to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The application name of the harness's own database connections, which are spared
/// when the run terminates the services' backends.
pub const APPLICATION_NAME: &str = "loa-chaos";
/// The counter that bounds duplicates.
pub const RESENDS_METRIC: &str = "loa_notifier_ambiguous_resends_total";

/// The fault executor and what it acts on.
pub struct Chaos {
    /// The services (locked only for a kill or a restart).
    pub system: Arc<Mutex<SystemUnderTest>>,
    /// The run's memory.
    pub record: Arc<Record>,
    /// The harness's database pool ([`APPLICATION_NAME`]).
    pub pool: Pool,
    /// The run's vhost.
    pub vhost: String,
    /// The sandbox's base URL.
    pub sandbox: String,
    /// The notifier's base URL.
    pub notifier: String,
    /// When the load started.
    pub started: Instant,
    http: reqwest::Client,
    /// The Zalo faults turned on, with how many of their windows are open (two
    /// windows of one fault may overlap); held while the sandbox is changed or stopped.
    active: Mutex<BTreeMap<ZaloFault, u32>>,
    /// One kill of a given service at a time.
    kills: [Mutex<()>; 4],
}

impl Chaos {
    /// An executor for `system`, whose load started at `started`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        system: Arc<Mutex<SystemUnderTest>>,
        record: Arc<Record>,
        pool: Pool,
        vhost: String,
        sandbox: String,
        notifier: String,
        started: Instant,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            system,
            record,
            pool,
            vhost,
            sandbox,
            notifier,
            started,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
            active: Mutex::new(BTreeMap::new()),
            kills: Default::default(),
        })
    }

    /// Runs every step at its time; kills and their restarts run beside the later
    /// steps. Returns when all are done.
    pub async fn run(self: Arc<Self>, steps: Vec<Step>) {
        let mut restarts = tokio::task::JoinSet::new();
        for step in steps {
            tokio::time::sleep_until(self.started + step.at).await;
            match step.action {
                Action::Kill(service) => {
                    let me = Arc::clone(&self);
                    restarts.spawn(async move { me.kill_and_restart(service).await });
                }
                Action::CloseAmqp => self.close_amqp().await,
                Action::TerminatePostgres => self.terminate_postgres().await,
                Action::FaultOn(fault) => self.switch(fault, true).await,
                Action::FaultOff(fault) => self.switch(fault, false).await,
                Action::ExpireTokens => self.expire_tokens().await,
            }
        }
        while restarts.join_next().await.is_some() {}
    }

    fn log(&self, at: Duration, action: &Action, outcome: impl Into<String>, done: bool) {
        self.record.log(at, action.to_string(), outcome, done);
    }

    /// SIGKILL, [`DOWNTIME`], start again, wait until ready.
    async fn kill_and_restart(&self, service: Service) {
        let action = Action::Kill(service);
        let _one_at_a_time = self.kills[service as usize].lock().await;
        let at = self.started.elapsed();
        let target = service.target();
        let mut note = String::new();
        match service {
            Service::Notifier => {
                let mut system = self.system.lock().await;
                let generation = self.record.notifier_generation();
                let scraped = self.scrape_resends().await;
                if let Some(counts) = &scraped {
                    self.record.observe_resends(generation, counts.clone());
                }
                self.record.going_down(target);
                if let Err(e) = system.kill(target).await {
                    self.record.back_up(target);
                    self.log(at, &action, format!("not killed: {e:#}"), false);
                    return;
                }
                drop(system);
                self.record.notifier_killed(scraped.is_none());
                if scraped.is_none() {
                    note = " (its last resend count could not be read)".to_owned();
                }
            }
            Service::Sandbox => {
                let active = self.active.lock().await;
                let messages = match self.stop_accepting_and_list().await {
                    Ok(messages) => messages,
                    Err(e) => {
                        let _ = self.apply(&active).await;
                        self.log(at, &action, format!("not killed: {e:#}"), false);
                        return;
                    }
                };
                let mut system = self.system.lock().await;
                self.record.going_down(target);
                if let Err(e) = system.kill(target).await {
                    self.record.back_up(target);
                    let _ = self.apply(&active).await;
                    self.log(at, &action, format!("not killed: {e:#}"), false);
                    return;
                }
                note = format!(" ({} messages archived)", messages.len());
                self.record.archive_sandbox(messages);
            }
            Service::Intake | Service::Tracker => {
                let mut system = self.system.lock().await;
                self.record.going_down(target);
                if let Err(e) = system.kill(target).await {
                    self.record.back_up(target);
                    self.log(at, &action, format!("not killed: {e:#}"), false);
                    return;
                }
            }
        }
        let killed_at = Instant::now();
        tokio::time::sleep(DOWNTIME).await;
        let url = {
            let mut system = self.system.lock().await;
            if let Err(e) = system.respawn(target) {
                self.log(at, &action, format!("killed, not restarted: {e:#}"), false);
                return;
            }
            system.url(target).unwrap_or_default().to_owned()
        };
        let ready = self.wait_ready(&url).await;
        self.record.back_up(target);
        if service == Service::Sandbox {
            // A new sandbox starts without faults: the windows still open go back on.
            let active = self.active.lock().await;
            if let Err(e) = self.apply(&active).await {
                note.push_str(&format!("; faults not restored: {e:#}"));
            }
        }
        let outcome = if ready {
            format!(
                "ready again {:.1} s after the kill{note}",
                killed_at.elapsed().as_secs_f64()
            )
        } else {
            format!("not ready within {READY_TIMEOUT:?} of its restart{note}")
        };
        self.log(at, &action, outcome, ready);
    }

    async fn wait_ready(&self, base: &str) -> bool {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            let ok = self
                .http
                .get(format!("{base}/readyz"))
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// The live notifier's ambiguous resends per tenant, if it answers.
    pub async fn scrape_resends(&self) -> Option<std::collections::BTreeMap<String, f64>> {
        let text = self
            .http
            .get(format!("{}/metrics", self.notifier))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?
            .text()
            .await
            .ok()?;
        Some(counter_by_tenant(&text, RESENDS_METRIC))
    }

    /// Every send from now on is answered `503` (the sandbox records nothing more),
    /// then the messages it holds.
    async fn stop_accepting_and_list(&self) -> anyhow::Result<Vec<SandboxMessage>> {
        self.post(
            "faults",
            &json!([
                {"api": "zns", "http_status": 503},
                {"api": "oa", "http_status": 503},
            ]),
        )
        .await?;
        let messages = self
            .http
            .get(format!("{}/_sandbox/messages", self.sandbox))
            .timeout(Duration::from_secs(60))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(messages)
    }

    /// `POST /_sandbox/<what>`.
    async fn post(&self, what: &str, body: &Value) -> anyhow::Result<()> {
        self.http
            .post(format!("{}/_sandbox/{what}", self.sandbox))
            .json(body)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Makes the sandbox's faults exactly `active`.
    async fn apply(&self, active: &BTreeMap<ZaloFault, u32>) -> anyhow::Result<()> {
        self.http
            .delete(format!("{}/_sandbox/faults", self.sandbox))
            .send()
            .await?
            .error_for_status()?;
        let specs: Vec<Value> = active.keys().map(|f| fault_spec(*f)).collect();
        if !specs.is_empty() {
            self.post("faults", &Value::Array(specs)).await?;
        }
        Ok(())
    }

    /// Opens or closes a window of `fault`; the fault stays on while any of its
    /// windows is open.
    async fn switch(&self, fault: ZaloFault, on: bool) {
        let at = self.started.elapsed();
        let action = if on {
            Action::FaultOn(fault)
        } else {
            Action::FaultOff(fault)
        };
        let mut active = self.active.lock().await;
        let open = active.entry(fault).or_default();
        if on {
            *open += 1;
        } else {
            *open = open.saturating_sub(1);
        }
        if *open == 0 {
            active.remove(&fault);
        }
        match self.apply(&active).await {
            Ok(()) => {
                let outcome = match (on, active.contains_key(&fault)) {
                    (true, _) => describe(fault),
                    (false, true) => "still on: another window of it is open",
                    (false, false) => "off",
                };
                self.log(at, &action, outcome, true)
            }
            Err(_) if self.record.is_down(Service::Sandbox.target()) => self.log(
                at,
                &action,
                "the sandbox is down: set when it is back",
                true,
            ),
            Err(e) => self.log(at, &action, format!("failed: {e:#}"), false),
        }
    }

    async fn expire_tokens(&self) {
        let at = self.started.elapsed();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.post("tokens/expire", &json!({})).await {
                Ok(()) => {
                    self.log(
                        at,
                        &Action::ExpireTokens,
                        "every access token issued so far refused from now on",
                        true,
                    );
                    return;
                }
                Err(e) if Instant::now() >= deadline => {
                    self.log(at, &Action::ExpireTokens, format!("failed: {e:#}"), false);
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    async fn close_amqp(&self) {
        let at = self.started.elapsed();
        let open = self.amqp_connections().await;
        let out = tokio::process::Command::new("rabbitmqctl")
            .args(["close_all_connections", "-p", &self.vhost, "loa chaos"])
            .output()
            .await;
        match out {
            Ok(o) if o.status.success() => {
                let outcome = match open {
                    Some(n) => format!("{n} connections closed"),
                    None => "connections closed (not counted)".to_owned(),
                };
                self.log(at, &Action::CloseAmqp, outcome, true);
            }
            Ok(o) => self.log(
                at,
                &Action::CloseAmqp,
                format!(
                    "rabbitmqctl failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                false,
            ),
            Err(e) => self.log(at, &Action::CloseAmqp, format!("rabbitmqctl: {e}"), false),
        }
    }

    /// The client connections of the run's vhost right now.
    async fn amqp_connections(&self) -> Option<usize> {
        let out = tokio::process::Command::new("rabbitmqctl")
            .args(["list_connections", "-q", "--no-table-headers", "vhost"])
            .output()
            .await
            .ok()?;
        out.status.success().then(|| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.trim() == self.vhost)
                .count()
        })
    }

    async fn terminate_postgres(&self) {
        let at = self.started.elapsed();
        let result = async {
            let client = self.pool.get().await?;
            let row = client
                .query_one(
                    "SELECT count(*) FROM (
                         SELECT pg_terminate_backend(pid) AS gone FROM pg_stat_activity
                          WHERE datname = current_database() AND pid <> pg_backend_pid()
                            AND coalesce(application_name, '') <> $1
                     ) t WHERE gone",
                    &[&APPLICATION_NAME],
                )
                .await?;
            anyhow::Ok(row.get::<_, i64>(0))
        }
        .await;
        match result {
            Ok(n) => self.log(
                at,
                &Action::TerminatePostgres,
                format!("{n} backends terminated"),
                true,
            ),
            Err(e) => self.log(
                at,
                &Action::TerminatePostgres,
                format!("failed: {e:#}"),
                false,
            ),
        }
    }
}

/// The sandbox fault of a window.
fn fault_spec(fault: ZaloFault) -> Value {
    match fault {
        ZaloFault::ServerErrors => json!({"api": "zns", "http_status": 502, "rate": 0.5}),
        ZaloFault::Hangs => json!({"api": "zns", "hang_rate": 0.1}),
        ZaloFault::RateLimited => json!({"api": "zns", "error_code": -32, "rate": 0.5}),
    }
}

/// What a fault does while it is on.
fn describe(fault: ZaloFault) -> &'static str {
    match fault {
        ZaloFault::ServerErrors => "half the ZNS sends answered HTTP 502",
        ZaloFault::Hangs => "a tenth of accepted ZNS sends answered 30 s late",
        ZaloFault::RateLimited => "half the ZNS sends answered -32",
    }
}
