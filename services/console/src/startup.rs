//! Building and running the console: the pool and migrations, the demo account in
//! development mode (removed outside it), the HTTP listener.

use crate::{
    accounts, backend::Backend, configuration::ConsoleSettings, routes::router, sessions, store,
    web::AppState,
};
use anyhow::Context;
use loa_platform::{config::parse_bind, http::Readiness, CommonSettings, LiveTenants};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A built console: pool migrated, listener bound.
pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
}

impl Application {
    /// Connects the pool, runs the `console` migrations, creates the demo account in
    /// development mode (and removes it outside development mode), and binds the listener. Fails without a service credential
    /// (`LOA_SERVICE_TOKEN`): the console could not read anything.
    pub async fn build(
        common: &CommonSettings,
        settings: &ConsoleSettings,
        tenants: impl Into<LiveTenants>,
    ) -> anyhow::Result<Self> {
        let tenants = tenants.into();
        let addr = parse_bind("console.bind", &settings.bind)?;
        let token = tenants.current().service_token().cloned().context(
            "The console needs service_token (LOA_SERVICE_TOKEN), the same value the tracker and the notifier are given",
        )?;
        crate::metrics::register();
        loa_platform::db::ensure_database(&common.database_url).await?;
        let pool = loa_platform::db::pool(&common.database_url, common.database_pool_size.min(8))?;
        store::migrate(&pool)
            .await
            .context("Failed to migrate the console schema")?;
        if settings.dev_mode {
            tracing::warn!("The console runs in development mode: cookies without Secure, demo account enabled.");
            if tenants.current().get("demo").is_some() {
                accounts::ensure_demo_account(&pool).await?;
            }
        } else {
            let removed = accounts::remove_dev_mode_accounts(&pool).await?;
            if removed > 0 {
                tracing::warn!(
                    removed,
                    "Removed the development mode accounts (demo): the console is not in development mode."
                );
            }
        }
        let backend = Backend::new(
            &settings.tracker_url,
            &settings.notifier_url,
            token,
            Duration::from_millis(settings.backend_timeout_ms.max(100)),
        )?;
        let listener = loa_platform::http::listen("console.bind", addr).await?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            listener,
            port,
            state: AppState {
                pool,
                backend,
                tenants,
                sessions: settings.session_policy(),
                lockout: settings.lockout_policy(),
                settings: Arc::new(settings.clone()),
            },
        })
    }

    /// The bound HTTP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The console's pool (tests and the CLI reach the `console` tables through it).
    pub fn pool(&self) -> &deadpool_postgres::Pool {
        &self.state.pool
    }

    /// Serves until `cancel` fires, pruning expired sessions hourly.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let Self {
            listener,
            port,
            state,
        } = self;
        let readiness = Readiness::new().postgres(state.pool.clone());
        let pruner = {
            let (pool, policy, cancel) = (state.pool.clone(), state.sessions, cancel.clone());
            async move {
                loop {
                    if let Err(e) = sessions::prune(&pool, &policy).await {
                        tracing::warn!(error.message = %e, "Could not prune expired sessions.");
                    }
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(3600)) => {}
                    }
                }
            }
        };
        let app = router(state, readiness).into_make_service_with_connect_info::<SocketAddr>();
        tracing::info!(port, "Console listening.");
        let server = async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await
                .context("The console's HTTP server failed")
        };
        let (served, ()) = tokio::join!(server, pruner);
        served
    }
}
