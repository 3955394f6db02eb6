//! Notifier integration tests: real PostgreSQL and RabbitMQ (a private database and
//! vhost per test) and the Zalo sandbox in process.

mod claims;
mod deliveries_api;
mod delivery;
mod helpers;
mod ops;
mod tokens;
