//! The notifier: turns notification requests into Zalo messages, exactly once per
//! notification id as far as Zalo lets anyone know, and records every delivery.
//!
//! It consumes `notifier.transactional` (case updates) and `notifier.broadcast`
//! (policy announcements) in batches, claims each request in `notifier.deliveries`
//! (so a redelivered request that was sent is acked, not resent), passes the tenant's
//! gate (pause, ZNS quota, a shared rate limit), sends it as the OA template to a
//! follower or a ZNS template by phone with the tenant's template for its kind and an
//! access token from the tenant's rotating refresh token, records the batch's results
//! in one statement and only then acks, retries through a delay queue, parks it in the
//! table (deferred, held, ambiguous) or dead-letters it.
//!
//! # Layout
//!
//! - [`zalo`]: the Zalo HTTP client and, in [`zalo::errors`], the one table that
//!   classifies every Zalo answer.
//! - [`tokens`]: OAuth tokens per tenant, row-locked refreshes, stored before use.
//! - [`deliveries`]: the `notifier.deliveries` table, written in batches.
//! - [`leases`]: short claim leases, renewed while their sender lives.
//! - [`sender`]: the unit of work (a batch in, one disposition per message out).
//! - [`retry`]: [`retry::decide`], the one retry policy for every error class, and the
//!   delay queues retries wait in.
//! - [`channel`]: OA template for followers, ZNS by phone, fallback between them.
//! - [`ratelimit`]: the per-tenant GCRA in PostgreSQL, exact across replicas, and the
//!   gate (pause, quota, slots) in front of every batch.
//! - [`quota`]: the ZNS daily quota and the transactional reserve.
//! - [`pause`]: pausing a tenant that needs an operator; `POST /v1/pause/resume`.
//! - [`scheduler`]: republishes parked requests (deferred, resumed, ambiguous, and copies
//!   parked behind the lease of a sender that died).
//! - [`clock`]: the wall clock of deferrals, movable in tests.
//! - [`routes`]: `GET /v1/deliveries`.
//! - [`admin`]: the console's API: overview, deliveries by state, resend, cancel,
//!   citizen messages.
//! - [`webhook`]: `POST /zalo/webhook`, signature-checked, fresh, deduplicated.
//! - [`receipts`]: receipts move deliveries to `delivered` / `seen`; every transition
//!   but a recorded send (whose entry is the delivery row's `sent_at`) goes to
//!   `delivery_events` through [`receipts::record_transitions`].
//! - [`subscribers`]: who follows each OA (for the OA channel) and chat lookups.
//! - [`dead_letters`]: stores every service's dead letters from `loa.dead-letters`;
//!   `GET /v1/dead-letters`, `POST /v1/dead-letters/replay` (and `loa dead-letters`).
//! - [`metrics`]: the notifier's Prometheus metrics.
//!
//! # Tables (schema `notifier`)
//!
//! - `oauth_tokens (tenant PK, access_token, access_expires_at, refresh_token,
//!   refreshed_at, created_at, updated_at)`.
//! - `deliveries (notification_id PK, tenant, kind, lane, dossier_code, channel,
//!   status sending|sent|delivered|seen|failed|retrying|deferred|held|ambiguous,
//!   zalo_msg_id, attempts, last_error_code, last_error, lease_until, not_before,
//!   recheck_at, request (parked body), event_accepted_at, created_at, sent_at,
//!   updated_at)`.
//! - `rate_limits (tenant PK, tat)`: the GCRA per tenant; `zns_quota ((tenant, day)
//!   PK, daily_quota, remaining, exhausted)`; `tenant_pauses (tenant PK, paused,
//!   error_code, reason, paused_at, resumed_at)`; function `take_send_slots`.
//! - `webhook_events ((tenant, event_name, dedup_key) PK, msg_id, occurred_at,
//!   received_at, body, outcome, attempts, next_attempt_at)`: every webhook, once.
//! - `delivery_events (id, notification_id, tenant, status, at, detail)`: history.
//! - `subscribers ((tenant, zalo_user_id) PK, phone, following, updated_at)`.
//! - `citizen_messages (id, tenant, zalo_user_id, kind, dossier_code, msg_id,
//!   received_at, forwarded_at)`: "tra cứu" chat lookups for the tracker.
//! - `citizen_feedback ((tenant, msg_id) PK, tracking_id, rating, note, feedbacks,
//!   submitted_at, received_at)`: ratings from `user_feedback`, for the ratings feature.
//! - `dead_letters (id PK, content_hash UNIQUE, tenant, source_queue, exchange,
//!   routing_key, reason, headers jsonb, body bytea, message_id, dead_at, deaths,
//!   replayed_at, replay_count, created_at)`: every dead letter, once, replayable.

pub mod admin;
pub mod channel;
pub mod clock;
pub mod dead_letters;
pub mod deliveries;
pub mod leases;
pub mod metrics;
pub mod pause;
pub mod quota;
pub mod ratelimit;
pub mod receipts;
pub mod retry;
pub mod routes;
pub mod scheduler;
pub mod sender;
pub mod subscribers;
pub mod tokens;
pub mod webhook;
pub mod zalo;

use anyhow::Context;
use loa_platform::{
    amqp::{run_batch_consumer, topology, BatchConsumerSettings, BrokerStatus},
    db::Migration,
    http::{fallback, ops_router, serve, Readiness},
    CommonSettings, LiveTenants,
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
    Migration {
        version: 2,
        name: "webhooks, receipts and subscribers",
        sql: include_str!("migrations/0002_webhooks_receipts_subscribers.sql"),
    },
    Migration {
        version: 3,
        name: "delivery engine",
        sql: include_str!("migrations/0003_delivery_engine.sql"),
    },
    Migration {
        version: 4,
        name: "dead letters",
        sql: include_str!("migrations/0004_dead_letters.sql"),
    },
    Migration {
        version: 5,
        name: "identifiers compare byte by byte",
        sql: include_str!("migrations/0005_identifiers_collate_c.sql"),
    },
    Migration {
        version: 6,
        name: "citizen feedback",
        sql: include_str!("migrations/0006_citizen_feedback.sql"),
    },
    Migration {
        version: 7,
        name: "short renewed leases and the dispatch mark",
        sql: include_str!("migrations/0007_short_leases_and_dispatch.sql"),
    },
    Migration {
        version: 8,
        name: "the admin console's indexes",
        sql: include_str!("migrations/0008_console_admin.sql"),
    },
    Migration {
        version: 9,
        name: "dead letters: no credentials, no tenant taken from an ingress body",
        sql: include_str!("migrations/0009_dead_letters_trusted_tenant.sql"),
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
    /// Most messages handled (claimed, sent, recorded) as one batch; a message packed
    /// by the tracker's relay holds up to its `relay_pack` requests.
    pub batch_size: usize,
    /// How long to wait for more requests after the first of a batch, in ms.
    pub batch_wait_ms: u64,
    /// Batches each lane handles at once: the next batch is claimed and sent while
    /// the previous one's sends are in flight and its results recorded (settled in
    /// order; requests are independent of each other). Zalo's round trip is what
    /// bounds a lane: at most `batches_in_flight × max_in_flight` calls per round
    /// trip (`loa bench pipeline --zalo-latency-ms 100`: 579 events/s with one
    /// batch of 64 calls, 2,997 with four of 128; no cost without the latency).
    pub batches_in_flight: usize,
    /// Most concurrent Zalo calls per batch (a lane has `batches_in_flight` batches).
    pub max_in_flight: usize,
    /// Time-out of one whole Zalo call, in ms.
    pub http_timeout_ms: u64,
    /// Refresh an access token this many seconds before it expires (Zalo's last
    /// 25 h; the default refreshes 5 h early).
    pub token_refresh_margin_secs: u64,
    /// Delays of the retry tiers, in ms: after attempt n fails for a passing reason
    /// the request waits the n-th (the last repeats), ±20 % jitter, in a delay queue.
    /// A list in the config file, comma-separated in `LOA_NOTIFIER__RETRY_DELAYS_MS`.
    #[serde(deserialize_with = "retry::deserialize_delays")]
    pub retry_delays_ms: Vec<u64>,
    /// Attempts before a request that keeps failing for a passing reason (or keeps
    /// timing out) is dead-lettered with its last error.
    pub max_attempts: u32,
    /// How long a send that may have reached Zalo (it timed out, or its sender died
    /// after dispatching it) waits for its delivery receipt before it is resent, in
    /// seconds.
    pub ambiguous_recheck_secs: u64,
    /// How long a claimed request stays reserved for its sender without renewal, in
    /// seconds (≥ 1). A live sender renews its leases four times per period, so this
    /// bounds how long a crashed sender's requests wait before another takes them.
    pub lease_secs: u64,
    /// How often each replica looks for parked requests that are due, in ms.
    pub scheduler_interval_ms: u64,
    /// Most parked requests republished per scheduler statement.
    pub scheduler_batch: usize,
    /// Share (0..0.9) of each tenant's `burst` never used: a cushion so network jitter
    /// does not make a request reach Zalo's bucket a little early and meet -32.
    pub rate_limit_headroom: f64,
    /// Send slots are handed out at most this far ahead, in ms, so a broadcast batch
    /// cannot book a tenant's next minute ahead of case updates.
    pub rate_limit_horizon_ms: u64,
    /// How long a -32 from Zalo pushes the tenant's next send back, in ms.
    pub rate_limit_penalty_ms: u64,
    /// Oldest Zalo webhook accepted, by its body's `timestamp`, in seconds; older ones
    /// are refused as replays. Zalo redelivers an event with its original timestamp
    /// for hours after an outage of ours, and a refused receipt is lost for good, so
    /// the default takes a day; deduplication keeps a replay harmless. With
    /// `webhook_max_ahead_secs` it may not exceed the 7 days webhook events are kept
    /// for deduplication (the notifier refuses to start otherwise).
    pub webhook_max_age_secs: u64,
    /// How far ahead of our clock a webhook's `timestamp` may be, in seconds.
    pub webhook_max_ahead_secs: u64,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        Self {
            bind: "0.0.0.0:8082".to_owned(),
            prefetch: 128,
            batch_size: 32,
            batch_wait_ms: 0,
            batches_in_flight: 4,
            max_in_flight: 128,
            http_timeout_ms: 10_000,
            token_refresh_margin_secs: 18_000,
            retry_delays_ms: vec![5_000, 30_000, 120_000, 600_000, 3_600_000],
            max_attempts: 8,
            ambiguous_recheck_secs: 600,
            lease_secs: 5,
            scheduler_interval_ms: 1_000,
            scheduler_batch: 500,
            rate_limit_headroom: 0.1,
            rate_limit_horizon_ms: 2_000,
            rate_limit_penalty_ms: 1_000,
            webhook_max_age_secs: 86_400,
            webhook_max_ahead_secs: 300,
        }
    }
}

/// A built notifier: listener bound, schema migrated, tokens seeded.
pub struct Application {
    listener: tokio::net::TcpListener,
    port: u16,
    pool: deadpool_postgres::Pool,
    tenants: LiveTenants,
    amqp_url: String,
    settings: NotifierSettings,
    tokens: Arc<TokenManager>,
    sender: Sender,
    clock: clock::Clock,
    scheduler: scheduler::Scheduler,
    freshness: webhook::Freshness,
    leases: Arc<leases::Leases>,
}

impl Application {
    /// Connects the pool, runs migrations, seeds refresh tokens, binds the listener.
    pub async fn build(
        common: &CommonSettings,
        settings: &NotifierSettings,
        tenants: impl Into<LiveTenants>,
    ) -> anyhow::Result<Self> {
        let tenants = tenants.into();
        let addr = loa_platform::config::parse_bind("notifier.bind", &settings.bind)?;
        let freshness = webhook::Freshness::from_settings(settings)?;
        metrics::init(&tenants.current());
        zalo::init_metrics();
        webhook::init_metrics(&tenants.current());
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
            &tenants.current(),
            Duration::from_secs(settings.token_refresh_margin_secs),
        ));
        tokens.seed().await?;
        let clock = clock::Clock::real();
        let publisher = Arc::new(loa_platform::amqp::Publisher::new(
            common.amqp_url.clone(),
            "loa-notifier-engine",
        ));
        let mut delays: Vec<Duration> = settings
            .retry_delays_ms
            .iter()
            .map(|ms| Duration::from_millis((*ms).max(1)))
            .collect();
        if delays.is_empty() {
            delays.push(Duration::from_secs(5));
        }
        let leases = leases::Leases::new(pool.clone(), Duration::from_secs(settings.lease_secs));
        let sender = Sender::new(sender::SenderParts {
            pool: pool.clone(),
            zalo,
            tokens: tokens.clone(),
            tenants: tenants.clone(),
            clock: clock.clone(),
            limiter: ratelimit::RateLimiter::new(
                pool.clone(),
                clock.clone(),
                ratelimit::LimiterSettings {
                    burst_headroom: settings.rate_limit_headroom,
                    horizon: Duration::from_millis(settings.rate_limit_horizon_ms.max(1)),
                    penalty: Duration::from_millis(settings.rate_limit_penalty_ms),
                },
            ),
            delays: Arc::new(retry::DelayQueues::new(
                publisher.clone(),
                &common.amqp_url,
                &delays,
            )),
            retry: retry::RetrySettings {
                delays,
                max_attempts: settings.max_attempts.max(1),
                ambiguous_recheck: Duration::from_secs(settings.ambiguous_recheck_secs),
            },
            max_in_flight: settings.max_in_flight,
            leases: leases.clone(),
            marks: deliveries::DispatchMarks::start(pool.clone()),
        });
        let scheduler = scheduler::Scheduler::new(
            pool.clone(),
            publisher,
            clock.clone(),
            tenants.clone(),
            Duration::from_millis(settings.scheduler_interval_ms.max(10)),
            settings.scheduler_batch,
        );
        let listener = loa_platform::http::listen("notifier.bind", addr).await?;
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
            clock,
            scheduler,
            freshness,
            leases,
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

    /// The clock every wall-clock decision reads (night ban, quota day, due parked
    /// requests); tests move it instead of waiting for the morning.
    pub fn clock(&self) -> clock::Clock {
        self.clock.clone()
    }

    /// Runs the HTTP server, both lane consumers and the token refresher until
    /// `cancel` fires; each consumer finishes and settles its in-flight batch first.
    pub async fn run_until_stopped(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let transactional_status = BrokerStatus::default();
        let broadcast_status = BrokerStatus::default();
        let dead_letters =
            dead_letters::DeadLetters::new(self.pool.clone(), self.tenants.clone(), &self.amqp_url);
        let dead_letter_status = BrokerStatus::default();
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
                .check("dead_letters", {
                    let d = dead_letter_status.clone();
                    move || {
                        let up = d.is_connected();
                        async move {
                            if up {
                                Ok(())
                            } else {
                                Err("the dead-letter consumer is not connected".to_owned())
                            }
                        }
                    }
                })
        };
        let router = routes::router(routes::AppState {
            pool: self.pool.clone(),
            tenants: self.tenants.clone(),
        })
        .merge(dead_letters.router())
        .merge(admin::router(admin::AdminState {
            pool: self.pool.clone(),
            tenants: self.tenants.clone(),
            publisher: Arc::new(loa_platform::amqp::Publisher::new(
                self.amqp_url.clone(),
                "loa-notifier-admin",
            )),
        }))
        .merge(webhook::router(webhook::WebhookState {
            pool: self.pool.clone(),
            tenants: self.tenants.clone(),
            freshness: self.freshness,
        }))
        .merge(ops_router(readiness))
        .fallback(fallback);

        let consumer = |queue: &str, status: BrokerStatus| {
            let sender = self.sender.clone();
            let batches = self.settings.batches_in_flight.max(1);
            let settings = BatchConsumerSettings {
                queue: queue.to_owned(),
                name: format!("loa-notifier-{}", queue.trim_start_matches("notifier.")),
                prefetch: self.settings.prefetch.max(
                    u16::try_from(self.settings.batch_size.saturating_mul(batches))
                        .unwrap_or(u16::MAX),
                ),
                batch_size: self.settings.batch_size.max(1),
                batch_wait: Duration::from_millis(self.settings.batch_wait_ms),
                max_batches_in_flight: batches,
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
        // The token refresher, the scheduler of parked requests and the lease
        // renewals run side by side; the retry delay queues are declared once, up front.
        let refresher = async {
            tokio::join!(
                self.tokens.run_refresher(cancel.clone()),
                self.scheduler.run(cancel.clone()),
                self.leases.clone().run_renewals(cancel.clone()),
                self.sender.declare_delay_queues(cancel.clone()),
                // A reloaded tenants file: new tenants get token state and series.
                self.tenants.for_each_change(cancel.clone(), |tenants| {
                    self.tokens.sync(tenants);
                    metrics::init(tenants);
                    webhook::init_metrics(tenants);
                })
            );
        };
        let receipts = receipts::run_reconciler(self.pool.clone(), cancel.clone());
        let dead_letter_consumer = dead_letters.run_consumer(dead_letter_status, cancel.clone());
        tracing::info!(port = self.port, "Notifier listening.");
        let (served, (), (), (), (), ()) = tokio::join!(
            serve(self.listener, router, cancel.clone()),
            transactional,
            broadcast,
            refresher,
            dead_letter_consumer,
            receipts
        );
        served
    }
}
