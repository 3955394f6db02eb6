//! Start-up: the schema's migrations and [`Application`], which wires the rooms
//! together (consumers, scheduler, token refresher, lease renewals, receipts, HTTP).

use crate::{
    broadcasts::fanout::Fanout,
    clock::Clock,
    dead_letters,
    deliveries::DispatchMarks,
    engine::{DelayQueues, Leases, RetrySettings, Scheduler, Sender, SenderParts},
    limits::ratelimit::{LimiterSettings, RateLimiter},
    metrics, routes,
    zalo::{self, sealing, TokenManager, ZaloClient},
    zalo_webhooks::{self, Freshness},
    NotifierSettings,
};
use anyhow::Context;
use loa_platform::{
    amqp::{run_batch_consumer, topology, BatchConsumerSettings, BrokerStatus},
    db::Migration,
    http::{fallback, ops_router, serve, Readiness},
    CommonSettings, LiveTenants,
};
use std::{sync::Arc, time::Duration};
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
    Migration {
        version: 10,
        name: "room on the deliveries' pages for in-place marks",
        sql: include_str!("migrations/0010_deliveries_room_for_marks.sql"),
    },
    Migration {
        version: 11,
        name: "broadcasts: audience, progress, promotion caps",
        sql: include_str!("migrations/0011_broadcasts.sql"),
    },
    Migration {
        version: 12,
        name: "chat lookups: what became of each, the per-user limit's index",
        sql: include_str!("migrations/0012_chat_lookups.sql"),
    },
    Migration {
        version: 13,
        name: "personal data: erased dead letters, the erasures' audit",
        sql: include_str!("migrations/0013_personal_data.sql"),
    },
    Migration {
        version: 14,
        name: "ratings given in Zalo forwarded to the tracker",
        sql: include_str!("migrations/0014_feedback_forwarding.sql"),
    },
    Migration {
        version: 15,
        name: "cancelled deliveries are final",
        sql: include_str!("migrations/0015_cancelled_deliveries.sql"),
    },
    Migration {
        version: 16,
        name: "other citizen texts kept with their automatic reply",
        sql: include_str!("migrations/0016_citizen_texts.sql"),
    },
    Migration {
        version: 17,
        name: "phones linked by a citizen's answer to a ZNS",
        sql: include_str!("migrations/0017_zns_interaction_links.sql"),
    },
    Migration {
        version: 18,
        name: "partial unique subscriber keys",
        sql: include_str!("migrations/0018_partial_unique_subscriber_keys.sql"),
    },
    Migration {
        version: 19,
        name: "broadcast progress counted per statement",
        sql: include_str!("migrations/0019_broadcast_counts_per_statement.sql"),
    },
];

/// Applies the notifier's migrations. Idempotent; safe with replicas starting at once.
pub async fn migrate(pool: &deadpool_postgres::Pool) -> anyhow::Result<()> {
    loa_platform::db::migrate(pool, SCHEMA, MIGRATIONS).await
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
    zalo: ZaloClient,
    keyring: sealing::Keyring,
    sender: Sender,
    clock: Clock,
    scheduler: Scheduler,
    freshness: Freshness,
    leases: Arc<Leases>,
    fanout: Fanout,
    http: loa_platform::http::HttpSettings,
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
        let freshness = Freshness::from_settings(settings)?;
        metrics::init(&tenants.current());
        zalo::init_metrics();
        routes::init_metrics(&tenants.current());
        loa_platform::db::ensure_database(&common.database_url).await?;
        let pool = loa_platform::db::pool(&common.database_url, common.database_pool_size)?;
        migrate(&pool)
            .await
            .context("Failed to migrate the notifier schema")?;
        let zalo = ZaloClient::new(Duration::from_millis(settings.http_timeout_ms))
            .context("Failed to build the Zalo HTTP client")?;
        let keyring = settings.keyring()?;
        let sealed = sealing::seal_plaintext_rows(&pool, &keyring).await?;
        if sealed > 0 {
            tracing::info!(
                rows = sealed,
                key_id = keyring.current_id(),
                "Sealed Zalo tokens stored in clear before sealing existed."
            );
        }
        sealing::check_all_open(&pool, &keyring).await.context(
            "The Zalo tokens in notifier.oauth_tokens do not open with notifier.token_keys",
        )?;
        let tokens = Arc::new(TokenManager::new(
            pool.clone(),
            zalo.clone(),
            &tenants.current(),
            Duration::from_secs(settings.token_refresh_margin_secs),
            keyring.clone(),
        ));
        tokens.seed().await?;
        let clock = Clock::real();
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
        let leases = Leases::new(pool.clone(), Duration::from_secs(settings.lease_secs));
        let sender = Sender::new(SenderParts {
            pool: pool.clone(),
            zalo: zalo.clone(),
            tokens: tokens.clone(),
            tenants: tenants.clone(),
            clock: clock.clone(),
            limiter: RateLimiter::new(
                pool.clone(),
                clock.clone(),
                LimiterSettings {
                    burst_headroom: settings.rate_limit_headroom,
                    horizon: Duration::from_millis(settings.rate_limit_horizon_ms.max(1)),
                    broadcast_horizon: Duration::from_millis(
                        settings.rate_limit_broadcast_horizon_ms.max(1),
                    ),
                    penalty: Duration::from_millis(settings.rate_limit_penalty_ms),
                },
            ),
            delays: Arc::new(DelayQueues::new(
                publisher.clone(),
                &common.amqp_url,
                &delays,
            )),
            retry: RetrySettings {
                delays,
                max_attempts: settings.max_attempts.max(1),
                ambiguous_recheck: Duration::from_secs(settings.ambiguous_recheck_secs),
            },
            max_in_flight: settings.max_in_flight,
            leases: leases.clone(),
            marks: DispatchMarks::start(pool.clone()),
            pacer: Default::default(),
            quota_asked: Default::default(),
        });
        let fanout = Fanout {
            pool: pool.clone(),
            publisher: publisher.clone(),
            tenants: tenants.clone(),
            clock: clock.clone(),
            owner: leases.owner(),
            chunk: settings.broadcast_chunk.max(1),
            pack: settings.broadcast_pack.max(1),
            interval: Duration::from_millis(settings.broadcast_interval_ms.max(10)),
        };
        let scheduler = Scheduler::new(
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
            zalo,
            keyring,
            sender,
            clock,
            scheduler,
            freshness,
            leases,
            fanout,
            http: common.http.clone(),
        })
    }

    /// The port the HTTP API listens on (useful with `:0`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The clock every wall-clock decision reads (night ban, quota day, due parked
    /// requests); tests move it instead of waiting for the morning.
    pub fn clock(&self) -> Clock {
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
        let router = routes::router(routes::Api {
            pool: self.pool.clone(),
            tenants: self.tenants.clone(),
            freshness: self.freshness,
            lookup_limit: self.settings.lookup_limit(),
            publisher: Arc::new(loa_platform::amqp::Publisher::new(
                self.amqp_url.clone(),
                "loa-notifier-admin",
            )),
            dead_letters: dead_letters.clone(),
            keyring: self.keyring.clone(),
            clock: self.clock.clone(),
            zalo: self.zalo.clone(),
            tokens: self.tokens.clone(),
        })
        .merge(ops_router(readiness))
        .merge(loa_platform::http::openapi::openapi_router(
            &crate::openapi::document(),
        ))
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
                self.fanout.clone().run(cancel.clone()),
                self.sender.declare_delay_queues(cancel.clone()),
                // A reloaded tenants file: new tenants get token state and series.
                self.tenants.for_each_change(cancel.clone(), |tenants| {
                    self.tokens.sync(tenants);
                    metrics::init(tenants);
                    routes::init_metrics(tenants);
                })
            );
        };
        let receipts = zalo_webhooks::run_reconciler(self.pool.clone(), cancel.clone());
        let pruner = zalo_webhooks::run_pruner(self.pool.clone(), cancel.clone());
        let lookups = zalo_webhooks::run_relay(
            &zalo_webhooks::CHAT_LOOKUPS,
            self.pool.clone(),
            self.amqp_url.clone(),
            cancel.clone(),
        );
        let text_replies = zalo_webhooks::run_relay(
            &zalo_webhooks::TEXT_REPLIES,
            self.pool.clone(),
            self.amqp_url.clone(),
            cancel.clone(),
        );
        let retention = crate::personal_data::retention::run_retention(
            self.pool.clone(),
            self.tenants.clone(),
            self.clock.clone(),
            Duration::from_secs(self.settings.retention_sweep_secs.max(1)),
            cancel.clone(),
        );
        let feedback = zalo_webhooks::run_relay(
            &zalo_webhooks::RATINGS,
            self.pool.clone(),
            self.amqp_url.clone(),
            cancel.clone(),
        );
        let dead_letter_consumer = dead_letters.run_consumer(dead_letter_status, cancel.clone());
        tracing::info!(port = self.port, "Notifier listening.");
        let (served, (), (), (), (), (), (), (), (), (), ()) = tokio::join!(
            serve(self.listener, router, cancel.clone(), &self.http),
            transactional,
            broadcast,
            refresher,
            dead_letter_consumer,
            receipts,
            pruner,
            lookups,
            text_replies,
            retention,
            feedback
        );
        served
    }
}
