//! Intake: the front door for upstream one-stop systems.
//!
//! It authenticates each source (a bearer token bound to one tenant), validates and
//! normalises [`DossierEvent`]s, and publishes them to `loa.events` with publisher
//! confirms before it answers: a `202` means RabbitMQ has the event. It is stateless
//! and scales by replicas.
//!
//! # Layout
//!
//! - [`configuration`] holds [`IntakeSettings`].
//! - [`startup`]: [`Application`], wiring HTTP, the AMQP ingress consumer and shutdown.
//! - [`routes`]: `POST /v1/events` and `POST /v1/events/batch`.
//! - [`rules`]: what every event is checked against (contract, then times), on both
//!   paths.
//! - [`ingress`]: the AMQP path (`loa.ingress` → validated → `loa.events`), and the
//!   dead letters of what it refuses (stamped with the verified tenant only).
//! - [`publish`]: turning accepted events into confirmed messages.
//! - [`metrics`]: Prometheus counters.
//! - [`openapi`]: the OpenAPI document (`/openapi.json`).
//!
//! [`DossierEvent`]: loa_contracts::DossierEvent

pub mod configuration;
pub mod ingress;
pub mod metrics;
pub mod openapi;
pub mod publish;
pub mod routes;
pub mod rules;
pub mod startup;

pub use configuration::IntakeSettings;
pub use startup::Application;
