//! The notifier: turns notification requests into Zalo messages, exactly once per
//! notification id as far as Zalo lets anyone know, and records every delivery.
//!
//! It consumes `notifier.transactional` (case updates) and `notifier.broadcast`
//! (policy announcements) in batches, claims each request in `notifier.deliveries`
//! (so a redelivered request that was sent is acked, not resent), sends it as a ZNS
//! template by phone (or the OA template by Zalo user id when there is no phone) with
//! the tenant's template for its kind and an access token from the tenant's rotating
//! refresh token, records the batch's results in one statement and only then acks,
//! requeues or dead-letters.
//!
//! # Layout
//!
//! - [`zalo`]: the Zalo HTTP client and, in [`zalo::errors`], the one table that
//!   classifies every Zalo answer.
//! - [`tokens`]: OAuth tokens per tenant, row-locked refreshes, stored before use.
//! - [`deliveries`]: the `notifier.deliveries` table, written in batches.
//! - [`sender`]: the unit of work (a batch in, one disposition per message out) and
//!   [`sender::decide`], the retry policy.
//! - [`routes`]: `GET /v1/deliveries`.
//! - [`metrics`]: the notifier's Prometheus metrics.
//!
//! # Tables (schema `notifier`)
//!
//! - `oauth_tokens (tenant PK, access_token, access_expires_at, refresh_token,
//!   refreshed_at, created_at, updated_at)`.
//! - `deliveries (notification_id PK, tenant, kind, lane, dossier_code, channel,
//!   status sending|sent|failed, zalo_msg_id, attempts, last_error_code, last_error,
//!   lease_until, event_accepted_at, created_at, sent_at, updated_at)`.

pub mod deliveries;
pub mod metrics;
pub mod routes;
pub mod sender;
pub mod tokens;
pub mod zalo;

use anyhow::Context;
use loa_platform::{
    amqp::{run_batch_consumer, topology, BatchConsumerSettings, BrokerStatus},
    db::Migration,
    http::{fallback, ops_router, serve, Readiness},
    CommonSettings, Tenants,
};
use sender::Sender;
use serde::Deserialize;
use std::{sync::Arc, time::Duration};
use tokens::TokenManager;
use tokio_util::sync::CancellationToken;

/// The Postgres schema the notifier owns.
pub const SCHEMA: &str = "notifier";

/// Every migration, in order. One SQL file per version under `src/migrations/`.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "oauth tokens and deliveries",
        sql: include_str!("migrations/0001_tokens_and_deliveries.sql"),
    },
];

/// Applies the notifier's migrations. Idempotent; safe with replicas starting at once.
pub async fn migrate(pool: &deadpool_postgres::Pool) -> anyhow::Result<()> {
    loa_platform::db::migrate(pool, SCHEMA, MIGRATIONS).await
}

/// The notifier's settings (`[notifier]` in the config file, `LOA_NOTIFIER__*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct NotifierSettings {
    /// Listen address of the HTTP API, health and metrics.
    pub bind: String,
    /// Unacked deliveries RabbitMQ may push ahead per lane (≥ `batch_size`).
    pub prefetch: u16,
    /// Most requests handled (claimed, sent, recorded) as one batch.
    pub batch_size: usize,
    /// How long to wait for more requests after the first of a batch, in ms.
    pub batch_wait_ms: u64,
    /// Most concurrent Zalo calls per lane (transactional and broadcast each).
    pub max_in_flight: usize,
    /// Time-out of one whole Zalo call, in ms.
    pub http_timeout_ms: u64,
    /// Refresh an access token this many seconds before it expires (Zalo's last
    /// 25 h; the default refreshes 5 h early).
    pub token_refresh_margin_secs: u64,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        Self {
            bind: "0.0.0.0:8082".to_owned(),
            prefetch: 256,
            batch_size: 128,
            batch_wait_ms: 5,
            max_in_flight: 64,
            http_timeout_ms: 10_000,
            token_refresh_margin_secs: 18_000,
        }
    }
}

impl NotifierSettings {
    /// How long a claimed request stays reserved for its sender: long enough for a
    /// whole batch of sends, each possibly a send, a token refresh and a resend.
    fn lease(&self) -> Duration {
        let rounds = self.batch_size.div_ceil(self.max_in_flight.max(1)) as u32 + 1;
        Duration::from_millis(self.http_timeout_ms) * 3 * rounds
    }
}

/// A built notifier: listener bound, schema migrated, tokens seeded.
pub struct Application {
    listener: tokio::net::TcpListener,
    port: u16,
    pool: deadpool_postgres::Pool,
    tenants: Tenants,
    amqp_url: String,
    settings: NotifierSettings,
    tokens: Arc<TokenManager>,
    sender: Sender,
}

impl Application {
    /// Connects the pool, runs migrations, seeds refresh tokens, binds the listener.
    pub async fn build(
        common: &CommonSettings,
        settings: &NotifierSettings,
        tenants: Tenants,
    ) -> anyhow::Result<Self> {
        let addr = loa_platform::config::parse_bind("notifier.bind", &settings.bind)?;
        loa_platform::db::ensure_database(&common.database_url).await?;
        let pool = loa_platform::db::pool(&common.database_url, common.database_pool_size)?;
        migrate(&pool)
            .await
            .context("Failed to migrate the notifier schema")?;
        let zalo = zalo::ZaloClient::new(Duration::from_millis(settings.http_timeout_ms))
            .context("Failed to build the Zalo HTTP client")?;
        let tokens = Arc::new(TokenManager::new(
            pool.clone(),
            zalo.clone(),
            &tenants,
            Duration::from_secs(settings.token_refresh_margin_secs),
        ));
        tokens.seed().await?;
        let sender = Sender::new(
            pool.clone(),
            zalo,
            tokens.clone(),
            tenants.clone(),
            settings.max_in_flight,
            settings.lease(),
        );
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("Failed to bind the notifier to {addr}"))?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            listener,
            port,
            pool,
            tenants,
            amqp_url: common.amqp_url.clone(),
            settings: settings.clone(),
            tokens,
            sender,
        })
    }

    /// The port the HTTP API listens on (useful with `:0`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The sender, to process requests directly (tests, tools).
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// Runs the HTTP server, both lane consumers and the token refresher until
    /// `cancel` fires; each consumer finishes and settles its in-flight batch first.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let transactional_status = BrokerStatus::default();
        let broadcast_status = BrokerStatus::default();
        let readiness = {
            let (t, b) = (transactional_status.clone(), broadcast_status.clone());
            Readiness::new()
                .postgres(self.pool.clone())
                .check("rabbitmq", move || {
                    let up = t.is_connected() && b.is_connected();
                    async move {
                        if up {
                            Ok(())
                        } else {
                            Err("a lane consumer is not connected".to_owned())
                        }
                    }
                })
        };
        let router = routes::router(routes::AppState {
            pool: self.pool.clone(),
            tenants: self.tenants.clone(),
        })
        .merge(ops_router(readiness))
        .fallback(fallback);

        let consumer = |queue: &str, status: BrokerStatus| {
            let sender = self.sender.clone();
            let settings = BatchConsumerSettings {
                queue: queue.to_owned(),
                name: format!("loa-notifier-{}", queue.trim_start_matches("notifier.")),
                prefetch: self
                    .settings
                    .prefetch
                    .max(self.settings.batch_size.min(u16::MAX as usize) as u16),
                batch_size: self.settings.batch_size.max(1),
                batch_wait: Duration::from_millis(self.settings.batch_wait_ms),
            };
            run_batch_consumer(
                &self.amqp_url,
                settings,
                status,
                cancel.clone(),
                move |batch| {
                    let sender = sender.clone();
                    async move { sender.handle_deliveries(&batch).await }
                },
            )
        };
        let transactional = consumer(topology::Q_NOTIFIER_TRANSACTIONAL, transactional_status);
        let broadcast = consumer(topology::Q_NOTIFIER_BROADCAST, broadcast_status);
        let refresher = self.tokens.run_refresher(cancel.clone());
        tracing::info!(port = self.port, "Notifier listening.");
        let (served, (), (), ()) = tokio::join!(
            serve(self.listener, router, cancel.clone()),
            transactional,
            broadcast,
            refresher
        );
        served
    }
}
