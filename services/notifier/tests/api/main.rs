//! Notifier integration tests: real PostgreSQL and RabbitMQ (a private database and
//! vhost per test) and the Zalo sandbox in process.

mod admin_api;
mod broadcasts;
mod claims;
mod dead_letters;
mod deliveries_api;
mod delivery;
mod engine;
mod helpers;
mod leases;
mod ops;
mod packed;
mod personal_data;
mod quota;
mod rate_limit;
mod retries;
mod subscribers;
mod tokens;
mod webhooks;
