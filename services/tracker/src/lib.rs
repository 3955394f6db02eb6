//! The tracker: Loa's dossier state machine.
//!
//! It consumes validated dossier events from `tracker.events` in batches (one Postgres
//! transaction per batch), dedupes them by `(tenant, event_id)`, keeps each dossier's
//! current state and full history while tolerating out-of-order and repeated events,
//! derives early / on time / overdue, plans the Zalo notifications a change deserves,
//! and hands them to the notifier through a transactional outbox relayed with
//! publisher confirms. It also serves the public lookup page (the QR target on the
//! paper receipt), the authorised dossier API and receipt QR codes.
//!
//! # Layout
//!
//! - [`configuration`]: the [`TrackerSettings`].
//! - [`clock`]: the wall clock every date decision reads (movable in tests).
//! - [`domain`]: pure rules: ordering keys, timeliness, lookup tokens, name masking.
//! - [`lifecycle`]: the legal transitions between statuses, and the state a dossier's
//!   events fold into whatever their order ([`DossierState`]).
//! - [`planning`]: [`plan`], which notification an event deserves and its parameters.
//! - [`store`]: the `tracker` schema, its migrations and [`store::apply_batch`], the unit
//!   of work that applies one consumed batch.
//! - [`consumer`]: decoding deliveries, dead-lettering poison, settling after commit.
//! - [`relay`]: the outbox relay (`FOR UPDATE SKIP LOCKED`, confirms, then mark).
//! - [`routes`]: HTTP: `/v1/dossiers/{code}`, `/v1/dossiers/{code}/qr.svg`,
//!   `/tra-cuu/{token}`, the admin search `/v1/dossiers` and `/v1/overview`,
//!   `/healthz`, `/readyz`, `/metrics`.
//! - [`search`]: dossier search for the admin console (phone keys, filters,
//!   keyset pages) and today's numbers.
//! - [`overdue`]: the overdue sweep (one marker at a time across replicas) and
//!   `loa_tracker_overdue_dossiers`.
//! - [`retention`]: personal data past a tenant's `retention_days` reduced to masked
//!   forms (one eraser at a time across replicas).
//! - [`ratings`]: citizens' satisfaction ratings (one per dossier, changeable for a
//!   window), from the lookup page's form and Zalo's rating template.
//! - [`stats`]: `GET /v1/stats`, the province's report: received, completed, early /
//!   on time / late, median processing time, ratings.
//! - [`erasure`]: a citizen's erasure request: the dossiers naming their phone masked,
//!   audited in `tracker.erasures`.
//! - [`metrics`]: `loa_tracker_*` Prometheus metrics.
//! - [`openapi`]: the OpenAPI document (`/openapi.json`).
//! - [`startup`]: the [`Application`] (build, then run until stopped).
//! - [`testing`]: test support (a tenant of 100,000 dossiers) for the speed tests.

pub mod chat;
pub mod clock;
pub mod configuration;
pub mod consumer;
pub mod domain;
pub mod erasure;
pub mod lifecycle;
pub mod metrics;
pub mod openapi;
pub mod overdue;
pub mod planning;
pub mod ratings;
pub mod relay;
pub mod retention;
pub mod routes;
pub mod search;
pub mod startup;
pub mod stats;
pub mod store;
pub mod testing;

pub use configuration::TrackerSettings;
pub use domain::{lookup_token, Timeliness};
pub use lifecycle::DossierState;
pub use planning::{plan, PlanContext};
pub use startup::Application;
pub use store::{migrate, SCHEMA};
