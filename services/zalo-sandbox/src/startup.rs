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
    ///
    /// The sandbox runs on a thread and runtime of its own, whatever runtime calls
    /// this. Zalo counts a request against its rate limit when the request reaches
    /// it, and the sandbox can only count it when a handler runs: on the caller's
    /// runtime (the notifier's, in its tests and when every service runs in one
    /// process), a request sent on time waited for whatever that runtime was doing,
    /// and requests sent evenly while it stalled were counted together when it
    /// resumed, a burst Zalo never saw (-32 to a notifier within its rate). On its
    /// own thread a handler runs when its request arrives, as far as the machine's
    /// CPUs allow.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let listener = self
            .listener
            .into_std()
            .context("Failed to move the sandbox's listener to its own runtime")?;
        let Self {
            port,
            router,
            sandbox,
            webhook_rx,
            client,
            ..
        } = self;
        // Stopping the caller's task (its runtime ending, say) stops the thread too.
        let cancel = cancel.child_token();
        let _stop_with_caller = cancel.clone().drop_guard();
        let (done, finished) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("zalo-sandbox".to_owned())
            .spawn(move || {
                let served = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("Failed to start the sandbox's runtime")
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            let listener = TcpListener::from_std(listener)
                                .context("Failed to register the sandbox's listener")?;
                            let parts = Parts {
                                port,
                                router,
                                sandbox,
                                webhook_rx,
                                client,
                            };
                            parts.serve(listener, cancel).await
                        })
                    });
                let _ = done.send(served);
            })
            .context("Failed to start the sandbox's thread")?;
        finished
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the sandbox's thread ended abnormally")))
    }
}

/// What serving needs, on the sandbox's own thread.
struct Parts {
    port: u16,
    router: Router,
    sandbox: Arc<Sandbox>,
    webhook_rx: mpsc::Receiver<WebhookJob>,
    client: reqwest::Client,
}

impl Parts {
    /// [`Application::run_until_stopped`], on the runtime of the sandbox's thread.
    async fn serve(self, listener: TcpListener, cancel: CancellationToken) -> anyhow::Result<()> {
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
        let served = loa_platform::http::serve(listener, self.router, stop.clone(), &http).await;
        stop.cancel();
        link.abort();
        if let Err(e) = dispatcher.await {
            tracing::error!(error.message = %e, "Webhook dispatcher ended abnormally.");
        }
        tracing::info!("Zalo sandbox stopped.");
        served
    }
}
