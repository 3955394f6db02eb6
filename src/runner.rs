//! Starting services: one, or all in one process.

use crate::settings::Settings;
use anyhow::Context;
use loa_platform::{config::ConfigError, tenants::live, LiveTenants, Tenants};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Which service(s) to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Every service in one process.
    All,
    /// The upstream-facing intake.
    Intake,
    /// The dossier state machine and lookup page.
    Tracker,
    /// The Zalo delivery engine.
    Notifier,
    /// The local Zalo stand-in.
    ZaloSandbox,
    /// The admins' web console.
    Console,
}

/// Ports of a running system, and the handle to stop it.
pub struct RunningSystem {
    /// Intake's port, if running.
    pub intake_port: Option<u16>,
    /// Tracker's port, if running.
    pub tracker_port: Option<u16>,
    /// Notifier's port, if running.
    pub notifier_port: Option<u16>,
    /// Sandbox's port, if running.
    pub sandbox_port: Option<u16>,
    /// Console's port, if running.
    pub console_port: Option<u16>,
    /// The port of the metrics listener, when `http.metrics_bind` moves `/metrics` there.
    pub metrics_port: Option<u16>,
    /// Cancelling it stops every service gracefully.
    pub cancel: CancellationToken,
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
}

impl RunningSystem {
    /// Waits until every service stopped (after `cancel`, or when one fails, in which
    /// case the others are stopped too). Returns the first failure.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            let (name, result) = joined.context("a service task panicked")?;
            if let Err(e) = result {
                tracing::error!(service = name, error.cause_chain = ?e, "Service failed; stopping the others.");
                self.cancel.cancel();
                first_error.get_or_insert(e.context(format!("{name} failed")));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stops everything and waits.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.wait().await
    }
}

/// Builds and starts `target`. Services with a Postgres schema run their migrations
/// at start-up. When the built-in demo tenant is used and the sandbox runs in this
/// process, the tenant is pointed at the sandbox's actual port.
pub async fn start(
    target: Target,
    settings: &Settings,
    cancel: CancellationToken,
) -> anyhow::Result<RunningSystem> {
    let production = settings.common.mode == loa_platform::config::Mode::Production;
    anyhow::ensure!(
        !(production && target == Target::ZaloSandbox),
        "production mode (LOA_MODE=production) does not run the Zalo sandbox, a test double"
    );
    // In production, `loa run` (everything) is everything but the sandbox.
    let runs = |t: Target| {
        (target == Target::All && !(production && t == Target::ZaloSandbox)) || target == t
    };
    let mut tasks = JoinSet::new();
    let mut tenants = settings.tenants.clone();
    let mut system = RunningSystem {
        intake_port: None,
        tracker_port: None,
        notifier_port: None,
        sandbox_port: None,
        console_port: None,
        metrics_port: None,
        cancel: cancel.clone(),
        tasks: JoinSet::new(),
    };
    if runs(Target::Tracker) || runs(Target::Notifier) || runs(Target::Console) {
        loa_platform::db::ensure_database(&settings.common.database_url).await?;
    }
    // Every service in this process: a credential nobody else knows will do.
    let own_service_token = (target == Target::All && tenants.service_token().is_none())
        .then(|| loa_platform::Secret::new(loa_console::sessions::random_token()));
    if let Some(token) = &own_service_token {
        tenants = tenants.with_service_token(token.clone());
    }

    if let Some(bind) = &settings.common.http.metrics_bind {
        // One listener for the process: every service's series are in one registry.
        let key = "http.metrics_bind";
        let addr = loa_platform::config::parse_bind(key, bind)?;
        let listener = loa_platform::http::listen(key, addr).await?;
        system.metrics_port = Some(listener.local_addr()?.port());
        let http = loa_platform::http::HttpSettings {
            metrics_bind: None,
            ..settings.common.http.clone()
        };
        let c = cancel.clone();
        tasks.spawn(async move {
            let router = loa_platform::http::metrics_router();
            (
                "metrics",
                loa_platform::http::serve(listener, router, c, &http).await,
            )
        });
    }
    if runs(Target::ZaloSandbox) {
        let mut sandbox_settings = settings.services.sandbox.clone();
        if target == Target::All && sandbox_settings.webhook_url.is_none() {
            let notifier_port = port_of(&settings.services.notifier.bind);
            sandbox_settings.webhook_url =
                notifier_port.map(|p| format!("http://127.0.0.1:{p}/zalo/webhook"));
        }
        let app = loa_zalo_sandbox::Application::build(&sandbox_settings, tenants.clone())
            .await
            .context("Failed to start the Zalo sandbox")?;
        let port = app.port();
        system.sandbox_port = Some(port);
        if settings.common.tenants_file.is_none() {
            tenants = tenants.pointed_at(&format!("http://127.0.0.1:{port}"));
        }
        let c = cancel.clone();
        tasks.spawn(async move { ("zalo-sandbox", app.run_until_stopped(c).await) });
    }
    // From here on the tenants follow the tenants file: every service of this
    // process sees a reload (SIGHUP, or a change of the file) at once.
    let tenants = LiveTenants::new(tenants);
    {
        let (live, common, c) = (tenants.clone(), settings.common.clone(), cancel.clone());
        let load = move || -> Result<Tenants, ConfigError> {
            let loaded = common.load_tenants()?;
            Ok(match &own_service_token {
                Some(token) if loaded.service_token().is_none() => {
                    loaded.with_service_token(token.clone())
                }
                _ => loaded,
            })
        };
        let (file, poll) = (
            settings.common.tenants_file.clone(),
            Duration::from_millis(settings.common.tenants_poll_ms),
        );
        tasks.spawn(async move {
            live::watch_until_stopped(live, file, load, poll, c).await;
            ("tenants", Ok(()))
        });
    }
    if runs(Target::Tracker) {
        let app = loa_tracker::Application::build(
            &settings.common,
            &settings.services.tracker,
            tenants.clone(),
        )
        .await
        .context("Failed to start the tracker")?;
        system.tracker_port = Some(app.port());
        let c = cancel.clone();
        tasks.spawn(async move { ("tracker", app.run_until_stopped(c).await) });
    }
    if runs(Target::Notifier) {
        let app = loa_notifier::Application::build(
            &settings.common,
            &settings.services.notifier,
            tenants.clone(),
        )
        .await
        .context("Failed to start the notifier")?;
        system.notifier_port = Some(app.port());
        let c = cancel.clone();
        tasks.spawn(async move { ("notifier", app.run_until_stopped(c).await) });
    }
    if runs(Target::Intake) {
        let app = loa_intake::Application::build(
            &settings.common,
            &settings.services.intake,
            tenants.clone(),
        )
        .await
        .context("Failed to start intake")?;
        system.intake_port = Some(app.port());
        let c = cancel.clone();
        tasks.spawn(async move { ("intake", app.run_until_stopped(c).await) });
    }
    if runs(Target::Console) {
        let mut console_settings = settings.services.console.clone();
        let local = |port: Option<u16>| port.map(|p| format!("http://127.0.0.1:{p}"));
        if let Some(url) = local(system.tracker_port) {
            console_settings.tracker_url = url;
        }
        if let Some(url) = local(system.notifier_port) {
            console_settings.notifier_url = url;
        }
        let app = loa_console::Application::build(&settings.common, &console_settings, tenants)
            .await
            .context("Failed to start the console")?;
        system.console_port = Some(app.port());
        let c = cancel.clone();
        tasks.spawn(async move { ("console", app.run_until_stopped(c).await) });
    }
    system.tasks = tasks;
    Ok(system)
}

/// Applies every service's migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    loa_platform::db::ensure_database(&settings.common.database_url).await?;
    let pool = loa_platform::db::pool(&settings.common.database_url, 2)?;
    loa_tracker::migrate(&pool).await?;
    loa_notifier::migrate(&pool).await?;
    loa_console::migrate(&pool).await?;
    Ok(())
}

fn port_of(bind: &str) -> Option<u16> {
    bind.rsplit(':').next()?.parse().ok().filter(|p| *p != 0)
}
