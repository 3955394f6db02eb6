//! Building and running the sandbox.

use crate::{
    apps::Apps,
    routes,
    sandbox::Sandbox,
    webhooks::{self, WebhookJob, Webhooks, POST_TIMEOUT},
    SandboxSettings,
};
use anyhow::Context;
use axum::Router;
use std::sync::Arc;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::sync::CancellationToken;

/// A bound, ready-to-run sandbox.
pub struct Application {
    listener: TcpListener,
    port: u16,
    router: Router,
    sandbox: Arc<Sandbox>,
    webhook_rx: mpsc::Receiver<WebhookJob>,
    client: reqwest::Client,
}

impl Application {
    /// Registers one Zalo app per tenant and binds the listener (port 0 picks a free
    /// one). The sandbox owns no database, so it needs no common settings.
    pub async fn build(
        settings: &SandboxSettings,
        tenants: loa_platform::Tenants,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&settings.seen_rate),
            "sandbox.seen_rate must be between 0 and 1, got {}",
            settings.seen_rate
        );
        let apps = Apps::from_tenants(&tenants)?;
        crate::metrics::register();
        let (webhooks, webhook_rx) = Webhooks::new(settings.webhook_url.clone());
        let client = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            .build()
            .context("Failed to build the webhook HTTP client")?;
        let addr = loa_platform::config::parse_bind("sandbox.bind", &settings.bind)?;
        let listener = loa_platform::http::listen("sandbox.bind", addr).await?;
        let port = listener
            .local_addr()
            .context("Failed to read the bound address")?
            .port();
        let sandbox = Arc::new(Sandbox::new(settings.clone(), apps, Arc::new(webhooks)));
        let router = routes::router(Arc::clone(&sandbox));
        Ok(Self {
            listener,
            port,
            router,
            sandbox,
            webhook_rx,
            client,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `cancel` fires: hung and delayed answers are cut short, requests in
    /// flight finish, webhook POSTs in flight finish, webhooks not yet due are dropped.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let stop = self.sandbox.stop.clone();
        let link = {
            let stop = stop.clone();
            tokio::spawn(async move {
                cancel.cancelled().await;
                stop.cancel();
            })
        };
        let dispatcher = tokio::spawn(webhooks::run_dispatcher(
            Arc::clone(&self.sandbox.webhooks),
            self.webhook_rx,
            self.client,
            stop.clone(),
        ));
        tracing::info!(
            port = self.port,
            apps = self.sandbox.apps.len(),
            webhook_url = self.sandbox.webhooks.url().as_deref().unwrap_or("(none)"),
            "Zalo sandbox listening."
        );
        // A test double: the default limits.
        let http = loa_platform::http::HttpSettings::default();
        let served =
            loa_platform::http::serve(self.listener, self.router, stop.clone(), &http).await;
        stop.cancel();
        link.abort();
        if let Err(e) = dispatcher.await {
            tracing::error!(error.message = %e, "Webhook dispatcher ended abnormally.");
        }
        tracing::info!("Zalo sandbox stopped.");
        served
    }
}
