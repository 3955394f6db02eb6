//! The console: the province staff's Vietnamese web console (`/admin/…`).
//!
//! It owns only accounts, sessions, sign-in attempts and the audit log (schema
//! `console`); everything else it shows or changes it asks of the tracker's and the
//! notifier's admin APIs, with a service credential and the signed-in account's
//! tenant (see [`backend`]), so it holds no copy of their data and needs no broker.
//! Pages are rendered on the server, in Vietnamese, usable on a phone, need no
//! JavaScript (one small script of the console's own adds a live audience count to
//! the broadcast compose form) and load nothing from elsewhere.
//!
//! # Layout
//!
//! - [`configuration`]: the [`ConsoleSettings`].
//! - [`store`]: the `console` schema's migrations.
//! - [`accounts`]: accounts, roles, argon2id password hashes, `add-user`.
//! - [`sessions`]: session ids (stored hashed), expiry, CSRF tokens.
//! - [`lockout`]: locking accounts and addresses after repeated failures.
//! - [`audit`]: the append-only audit log.
//! - [`backend`]: the tracker's and notifier's admin APIs.
//! - [`web`]: state, the signed-in extractor, forms, cookies, [`web::PageError`].
//! - [`html`]: the page frame, Vietnamese labels and formats, the stylesheet.
//! - [`routes`]: the pages.
//! - [`metrics`]: the `loa_console_*` Prometheus metrics.
//! - [`startup`]: the [`Application`].

pub mod accounts;
pub mod audit;
pub mod backend;
pub mod configuration;
pub mod html;
pub mod lockout;
pub mod metrics;
pub mod reasons;
pub mod routes;
pub mod sessions;
pub mod startup;
pub mod store;
pub mod web;

pub use configuration::ConsoleSettings;
pub use startup::Application;
pub use store::{migrate, SCHEMA};
