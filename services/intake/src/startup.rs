//! Wiring: the HTTP server, the AMQP ingress consumer and graceful shutdown.

use crate::{ingress, routes, rules::EventRules, IntakeSettings};
use axum::{extract::DefaultBodyLimit, routing::post, Router};
use loa_platform::{
    amqp::{run_batch_consumer, topology, BatchConsumerSettings, BrokerStatus, Publisher},
    config::parse_bind,
    http::{self, Readiness},
    CommonSettings, LiveTenants,
};
use std::{sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A built intake, ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    port: u16,
    amqp_url: String,
    settings: IntakeSettings,
    tenants: LiveTenants,
    publisher: Arc<Publisher>,
    ingress_status: BrokerStatus,
    http: loa_platform::http::HttpSettings,
}

impl Application {
    /// Binds the listener and prepares the publisher (which connects on first use).
    pub async fn build(
        common: &CommonSettings,
        settings: &IntakeSettings,
        tenants: impl Into<LiveTenants>,
    ) -> anyhow::Result<Self> {
        let tenants = tenants.into();
        settings.validate()?;
        crate::metrics::register();
        let addr = parse_bind("intake.bind", &settings.bind)?;
        let listener = loa_platform::http::listen("intake.bind", addr).await?;
        let port = listener.local_addr()?.port();
        let publisher = Arc::new(Publisher::new(&common.amqp_url, "loa-intake-publisher"));
        if let Err(e) = publisher.ensure_connected().await {
            tracing::warn!(error.message = %e, "RabbitMQ is not reachable yet; intake answers 503 until it is.");
        }
        let state = routes::AppState {
            tenants: tenants.clone(),
            publisher: publisher.clone(),
            max_batch: settings.max_batch,
            rules: EventRules::from_settings(settings),
            pack_events: settings.pack_events,
        };
        let ingress_status = BrokerStatus::default();
        let ready_publisher = publisher.clone();
        let readiness = Readiness::new().check("rabbitmq", move || {
            let publisher = ready_publisher.clone();
            async move {
                publisher
                    .ensure_connected()
                    .await
                    .map_err(|e| e.to_string())
            }
        });
        let batch_limit = settings
            .max_event_bytes
            .saturating_mul(settings.max_batch)
            .min(16 * 1024 * 1024);
        let events = Router::new()
            .route(
                "/v1/events",
                post(routes::post_event).layer(DefaultBodyLimit::max(settings.max_event_bytes)),
            )
            .route(
                "/v1/events/batch",
                post(routes::post_batch).layer(DefaultBodyLimit::max(batch_limit)),
            )
            .with_state(state);
        // Requests are spans only when spans are exported.
        let events = if loa_platform::telemetry::traces_on() {
            events.layer(axum::middleware::from_fn(routes::trace_request))
        } else {
            events
        };
        let router = events
            .merge(http::ops_router(readiness))
            .merge(http::openapi::openapi_router(&crate::openapi::document()))
            .fallback(http::fallback);
        Ok(Self {
            listener,
            router,
            port,
            amqp_url: common.amqp_url.clone(),
            settings: settings.clone(),
            tenants,
            publisher,
            ingress_status,
            http: common.http.clone(),
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves HTTP and consumes the ingress queue until `cancel` fires.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(port = self.port, "Intake listening.");
        let server = http::serve(self.listener, self.router, cancel.clone(), &self.http);
        let ingress = async {
            if !self.settings.ingress_enabled {
                return;
            }
            let consumer = BatchConsumerSettings {
                queue: topology::Q_INGRESS.to_owned(),
                name: "loa-intake-ingress".to_owned(),
                prefetch: self.settings.ingress_prefetch,
                batch_size: self.settings.ingress_batch,
                batch_wait: Duration::from_millis(5),
                max_batches_in_flight: 1,
            };
            let (tenants, publisher, rules, pack) = (
                self.tenants,
                self.publisher,
                EventRules::from_settings(&self.settings),
                self.settings.pack_events,
            );
            run_batch_consumer(
                &self.amqp_url,
                consumer,
                self.ingress_status,
                cancel.clone(),
                |batch| {
                    // One version of the tenants for the whole batch.
                    ingress::handle_batch(batch, tenants.current(), publisher.clone(), rules, pack)
                },
            )
            .await;
        };
        let (served, ()) = tokio::join!(server, ingress);
        served
    }
}
