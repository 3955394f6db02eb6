//! Building and running the tracker: the pool and migrations, the HTTP listener, the
//! batch consumer and the outbox relay.

use crate::{
    clock::Clock,
    configuration::{TrackerSettings, DEFAULT_LOOKUP_SECRET},
    consumer::EventHandler,
    relay::{run_relay, Relay},
    routes::{router, AppState},
    store,
};
use anyhow::Context;
use deadpool_postgres::Pool;
use loa_platform::{
    amqp::{run_batch_consumer, topology, BatchConsumerSettings, BrokerStatus, Publisher},
    config::parse_bind,
    http::{
        rate::{RateLimiter, RatePolicy},
        serve, HttpSettings, Readiness,
    },
    CommonSettings, LiveTenants,
};
use std::{sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::Notify};
use tokio_util::sync::CancellationToken;

/// A built tracker: connected pool, migrated schema, bound listener. Nothing runs
/// until [`Application::run_until_stopped`].
pub struct Application {
    listener: TcpListener,
    port: u16,
    pool: Pool,
    amqp_url: String,
    public_base_url: String,
    settings: TrackerSettings,
    tenants: LiveTenants,
    http: HttpSettings,
    clock: Clock,
}

impl Application {
    /// Connects the pool (creating the database if missing), runs the `tracker`
    /// migrations and binds the listener (port 0 picks a free port).
    pub async fn build(
        common: &CommonSettings,
        settings: &TrackerSettings,
        tenants: impl Into<LiveTenants>,
    ) -> anyhow::Result<Self> {
        let tenants = tenants.into();
        let addr = parse_bind("tracker.bind", &settings.bind)?;
        if settings.lookup_secret.matches(DEFAULT_LOOKUP_SECRET) {
            tracing::warn!(
                "The tracker uses the development lookup secret; anyone can compute lookup links. \
                 Set LOA_TRACKER__LOOKUP_SECRET in production."
            );
        }
        anyhow::ensure!(
            settings.batch_size > 0,
            "tracker.batch_size must be at least 1"
        );
        anyhow::ensure!(
            settings.relay_batch > 0,
            "tracker.relay_batch must be at least 1"
        );
        anyhow::ensure!(
            settings.overdue_sweep_secs > 0,
            "tracker.overdue_sweep_secs must be at least 1"
        );
        crate::metrics::register();
        crate::metrics::init(&tenants.current());
        loa_platform::db::ensure_database(&common.database_url).await?;
        let pool = loa_platform::db::pool(&common.database_url, common.database_pool_size)?;
        store::migrate(&pool)
            .await
            .context("Failed to migrate the tracker schema")?;
        let listener = loa_platform::http::listen("tracker.bind", addr).await?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            listener,
            port,
            pool,
            amqp_url: common.amqp_url.clone(),
            public_base_url: common.public_base_url.trim_end_matches('/').to_owned(),
            settings: settings.clone(),
            tenants,
            http: common.http.clone(),
            clock: Clock::real(),
        })
    }

    /// The clock every date decision of this tracker reads; tests move it.
    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }

    /// The bound HTTP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The tracker's pool (tests inspect the tables through it).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Serves HTTP, consumes `tracker.events` and relays the outbox until `cancel`
    /// fires. On cancellation the server drains its requests, the consumer finishes
    /// and settles its in-flight batch, and only then does the relay drain (bounded)
    /// what that batch planned and stop.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        // Our own child token: a failing server stops this tracker's loops without
        // cancelling the caller's token (other services may share it).
        let cancel = cancel.child_token();
        let Self {
            listener,
            port,
            pool,
            amqp_url,
            public_base_url,
            settings,
            tenants,
            http,
            clock,
        } = self;
        let consumer_status = BrokerStatus::default();
        let readiness = Readiness::new()
            .postgres(pool.clone())
            .broker(consumer_status.clone());
        let state = AppState {
            pool: pool.clone(),
            tenants: tenants.clone(),
            public_base_url: public_base_url.clone().into(),
            lookup_secret: settings.lookup_secret.clone(),
            clock: clock.clone(),
        };
        let lookup_limit = RateLimiter::new(RatePolicy {
            per_minute: settings.lookup_rate_per_minute,
            burst: settings.lookup_burst,
            max_addresses: 100_000,
        });
        let relay_wake = Arc::new(Notify::new());
        let handler = Arc::new(
            EventHandler::new(
                pool.clone(),
                tenants.clone(),
                settings.lookup_secret.clone(),
                public_base_url.clone(),
                relay_wake.clone(),
                cancel.clone(),
                Arc::new(Publisher::new(&amqp_url, "loa-tracker-dead-letters")),
            )
            .with_clock(clock.clone()),
        );
        let lookups = Arc::new(crate::chat::LookupHandler {
            pool: pool.clone(),
            tenants: tenants.clone(),
            lookup_secret: settings.lookup_secret.clone(),
            public_base_url: public_base_url.clone(),
            relay_wake: relay_wake.clone(),
        });
        let relay_stop = CancellationToken::new();
        tracing::info!(port, relay = settings.relay_enabled, "Tracker started.");

        let server = {
            let cancel = cancel.clone();
            async move {
                let served = serve(
                    listener,
                    router(state, readiness, lookup_limit),
                    cancel.clone(),
                    &http,
                )
                .await;
                if let Err(e) = &served {
                    tracing::error!(error.cause_chain = ?e, error.message = %e, "The tracker's HTTP server failed; stopping.");
                    cancel.cancel();
                }
                served
            }
        };
        let lookup_consumer = {
            let lookup_settings = BatchConsumerSettings {
                queue: topology::Q_TRACKER_CITIZEN.to_owned(),
                name: "loa-tracker-citizen".to_owned(),
                prefetch: 64,
                batch_size: 32,
                batch_wait: Duration::ZERO,
                max_batches_in_flight: 1,
            };
            let amqp_url = amqp_url.clone();
            let cancel = cancel.clone();
            async move {
                run_batch_consumer(
                    &amqp_url,
                    lookup_settings,
                    BrokerStatus::default(),
                    cancel,
                    |batch| {
                        let lookups = lookups.clone();
                        async move { lookups.handle(&batch).await }
                    },
                )
                .await;
            }
        };
        let consumer = {
            let relay_stop = relay_stop.clone();
            let consumer_settings = BatchConsumerSettings {
                queue: topology::Q_TRACKER_EVENTS.to_owned(),
                name: "loa-tracker".to_owned(),
                prefetch: settings.prefetch.max(
                    u16::try_from(
                        settings
                            .batch_size
                            .saturating_mul(settings.batches_in_flight.max(1)),
                    )
                    .unwrap_or(u16::MAX),
                ),
                batch_size: settings.batch_size,
                batch_wait: Duration::from_millis(settings.batch_wait_ms),
                max_batches_in_flight: settings.batches_in_flight.max(1),
            };
            let amqp_url = amqp_url.clone();
            let cancel = cancel.clone();
            async move {
                // Chat lookups write to the outbox too: both consumers settle their last
                // batch before the relay drains.
                tokio::join!(
                    run_batch_consumer(
                        &amqp_url,
                        consumer_settings,
                        consumer_status,
                        cancel,
                        |batch| {
                            let handler = handler.clone();
                            async move { handler.handle(&batch).await }
                        },
                    ),
                    lookup_consumer
                );
                // The last batch is settled: now the relay may drain and stop.
                relay_stop.cancel();
            }
        };
        let retention = crate::retention::run_retention(
            pool.clone(),
            tenants.clone(),
            clock.clone(),
            Duration::from_secs(settings.retention_sweep_secs.max(1)),
            cancel.clone(),
        );
        let sweeper = crate::overdue::run_sweeper(
            pool.clone(),
            tenants.clone(),
            clock,
            Duration::from_secs(settings.overdue_sweep_secs),
            cancel.clone(),
        );
        let relay = async move {
            if settings.relay_enabled {
                let relay = Relay {
                    pool,
                    publisher: Arc::new(Publisher::new(amqp_url, "loa-tracker-relay")),
                    batch: settings.relay_batch,
                    pack: settings.relay_pack,
                    wake: relay_wake,
                };
                run_relay(relay, relay_stop).await;
            }
        };
        // A reloaded tenants file brings its new tenants' series.
        let tenant_metrics = tenants.for_each_change(cancel.clone(), crate::metrics::init);
        let (served, (), (), (), (), ()) =
            tokio::join!(server, consumer, relay, tenant_metrics, sweeper, retention);
        tracing::info!("Tracker stopped.");
        served
    }
}
