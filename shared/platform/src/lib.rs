//! Plumbing every Loa service shares: configuration, tenants, telemetry, RabbitMQ,
//! PostgreSQL, HTTP and shutdown. Nothing here knows about dossiers.
//!
//! # Layout
//!
//! - [`clock`]: the wall clock services decide dates by, movable in tests.
//! - [`config`]: layered settings (defaults, TOML file, `LOA_*` environment).
//! - [`tenants`]: provinces / OAs, their Zalo apps, upstream sources and admin tokens,
//!   reloaded without restart.
//! - [`secret`]: a string that never prints.
//! - [`credential`]: bearer tokens in the tenants file, in clear or hashed.
//! - [`telemetry`]: `tracing` subscriber set-up (pretty or JSON).
//! - [`amqp`]: connections, the topology, a confirming publisher and a batch consumer.
//! - [`db`]: the Postgres pool and embedded migrations.
//! - [`erasure`]: a citizen's erasure request, its report and audit row, shared by
//!   the services that hold personal data.
//! - [`http`]: the JSON error body, health, readiness and metrics endpoints, serving.
//! - [`shutdown`]: one cancellation token tripped by SIGTERM or Ctrl-C.
//! - [`sweep`]: a periodic sweep done in batches by one replica at a time (an
//!   advisory lock per batch).
//! - [`testing`]: a fresh database and vhost per test.

pub mod amqp;
pub mod clock;
pub mod config;
pub mod credential;
pub mod db;
pub mod erasure;
pub mod http;
pub mod secret;
pub mod shutdown;
pub mod sweep;
pub mod telemetry;
pub mod tenants;
pub mod testing;

pub use config::CommonSettings;
pub use credential::Credential;
pub use secret::Secret;
pub use tenants::{LiveTenants, TenantSettings, Tenants};
